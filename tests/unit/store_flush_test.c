/*
 * The WAL pre-sync of an exclusive SQLite store at NORMAL
 * (src/store/store_sqlite_flush.c): a thread syncs the -wal file while the
 * writer goes on, so the writer's own checkpoint finds little left to sync.
 * It runs only where it helps (exclusive, NORMAL), keeps pace with the WAL's
 * growth, counts and names its failures without failing a commit, and leaves
 * the store's contents and checkpoints as they were.
 */
#include "harness.h"

#include "store/store.h"
#include "store/store_testhooks.h"

#include <sys/stat.h>

static tether__store *open_store(const char *name, tether_durability d, unsigned flags)
{
    char path[512], err[512];
    tt_path(path, sizeof path, name);
    tether__store *st = NULL;
    CHECK_OK(
        tether__store_sqlite_open_flags(path, TETHER__ROLE_CLIENT, d, flags, &st, err, sizeof err));
    return st;
}

static tether__session_rec new_session(tether__store *st, uint8_t tag)
{
    tether__session_rec r;
    memset(&r, 0, sizeof r);
    r.id[0] = tag;
    r.token[0] = tag;
    CHECK_OK(st->ops->session_put(st, &r));
    return r;
}

/* n appends of one 1 KiB message each: at least one WAL page per commit. */
static void append_n(tether__store *st, const tether__session_rec *r, int n)
{
    static uint8_t buf[1024];
    memset(buf, 'f', sizeof buf);
    tether_msg m = {buf, sizeof buf};
    for (int i = 0; i < n; i++) {
        uint64_t first = 0;
        CHECK_OK(st->ops->append(st, r->id, &m, 1, 0, 0, &first));
    }
}

static unsigned long flushes(tether__store *st, unsigned long *failed, char *err, size_t len)
{
    unsigned long done = 0, bad = 0;
    CHECK(tether__store_sqlite_flushes(st, &done, &bad, err, len) == 1);
    if (failed) {
        *failed = bad;
    }
    return done;
}

/* It syncs once the WAL grew by its step, and not before. */
TEST(presync_follows_the_wal)
{
    tether__store *st = open_store("grow.db", TETHER_DURABILITY_NORMAL, TETHER__SQLITE_EXCLUSIVE);
    if (!st) {
        return;
    }
    tether__store_sqlite_set_flush(st, 200, NULL);
    tether__session_rec r = new_session(st, 1);
    append_n(st, &r, 20); /* about 20 pages: below the step */
    unsigned long failed = 99;
    CHECK_EQ_U64(flushes(st, &failed, NULL, 0), 0);
    CHECK_EQ_U64(failed, 0);
    tether__store_sqlite_set_flush(st, 8, NULL);
    append_n(st, &r, 80);
    /* each sync runs while the writer goes on: some steps are merged into one */
    unsigned long done = flushes(st, &failed, NULL, 0);
    CHECK(done >= 1);
    CHECK(done < 40); /* far fewer syncs than commits */
    CHECK_EQ_U64(failed, 0);
    uint64_t count = 0, bytes = 0;
    CHECK_OK(st->ops->pending(st, r.id, &count, &bytes));
    CHECK_EQ_U64(count, 100);
    CHECK_EQ_U64(bytes, 100 * 1024);
    st->ops->close(st);
}

/* OFF never syncs, FULL syncs each commit, a shared store has the checkpoint
 * thread: none of them gets a pre-sync thread. */
TEST(presync_only_exclusive_normal)
{
    static const struct {
        const char *name;
        tether_durability d;
        unsigned flags;
    } cases[] = {
        {"off.db", TETHER_DURABILITY_OFF, TETHER__SQLITE_EXCLUSIVE},
        {"full.db", TETHER_DURABILITY_FULL, TETHER__SQLITE_EXCLUSIVE},
        {"shared.db", TETHER_DURABILITY_NORMAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tether__store *st = open_store(cases[i].name, cases[i].d, cases[i].flags);
        if (!st) {
            continue;
        }
        tether__store_sqlite_set_flush(st, 1, NULL); /* no effect without the thread */
        tether__session_rec r = new_session(st, 2);
        append_n(st, &r, 10);
        unsigned long done = 7, failed = 7;
        CHECK_EQ_INT(tether__store_sqlite_flushes(st, &done, &failed, NULL, 0), 0);
        CHECK_EQ_U64(done, 7); /* untouched */
        st->ops->close(st);
    }
}

/* A sync that fails is counted with its reason; commits go on, and what was
 * committed is all there after a reopen. */
TEST(presync_failure_is_counted_not_fatal)
{
    char path[512], missing[512], err[256];
    tether__store *st = open_store("fail.db", TETHER_DURABILITY_NORMAL, TETHER__SQLITE_EXCLUSIVE);
    if (!st) {
        return;
    }
    tt_path(missing, sizeof missing, "no-such-dir/fail.db-wal");
    tether__store_sqlite_set_flush(st, 4, missing);
    tether__session_rec r = new_session(st, 3);
    append_n(st, &r, 30);
    unsigned long failed = 0;
    err[0] = '\0';
    CHECK_EQ_U64(flushes(st, &failed, err, sizeof err), 0);
    CHECK(failed >= 1);
    CHECK(strstr(err, "WAL pre-sync of") != NULL);
    CHECK(strstr(err, "no-such-dir/fail.db-wal") != NULL);
    CHECK(strstr(err, "No such file") != NULL);
    st->ops->close(st);
    tt_path(path, sizeof path, "fail.db");
    char e2[512];
    st = NULL;
    CHECK_OK(tether__store_sqlite_open_flags(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL,
                                             TETHER__SQLITE_EXCLUSIVE, &st, e2, sizeof e2));
    if (st) {
        uint64_t count = 0, bytes = 0;
        CHECK_OK(st->ops->pending(st, r.id, &count, &bytes));
        CHECK_EQ_U64(count, 30);
        st->ops->close(st);
    }
}

/* With the pre-sync running, the writer still checkpoints at hard_pages, so
 * the WAL stays bounded, and acks prune as before. */
TEST(checkpoints_still_bound_the_wal)
{
    char path[512], wal[600];
    tether__store *st = open_store("bound.db", TETHER_DURABILITY_NORMAL, TETHER__SQLITE_EXCLUSIVE);
    if (!st) {
        return;
    }
    tether__store_sqlite_set_checkpoint(st, 32, 64, 1000);
    tether__store_sqlite_set_flush(st, 16, NULL);
    tether__session_rec r = new_session(st, 4);
    for (int round = 0; round < 10; round++) {
        append_n(st, &r, 40);
        CHECK_OK(st->ops->ack(st, r.id, (uint64_t)(round + 1) * 40 - 5));
    }
    CHECK(tether__store_sqlite_checkpoints(st) >= 3);
    unsigned long failed = 9;
    CHECK(flushes(st, &failed, NULL, 0) >= 3);
    CHECK_EQ_U64(failed, 0);
    tt_path(path, sizeof path, "bound.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    CHECK(stat(wal, &sb) == 0);
    /* at most about 2 x hard_pages frames of 4 KiB plus their headers */
    CHECK(sb.st_size <= 2 * 64 * (4096 + 24) + 32);
    uint64_t count = 0, bytes = 0;
    CHECK_OK(st->ops->pending(st, r.id, &count, &bytes));
    CHECK_EQ_U64(count, 5);
    st->ops->close(st);
}

int main(void)
{
    RUN(presync_follows_the_wal);
    RUN(presync_only_exclusive_normal);
    RUN(presync_failure_is_counted_not_fatal);
    RUN(checkpoints_still_bound_the_wal);
    return tt_finish();
}

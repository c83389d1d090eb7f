/*
 * The store seen from outside (store/store.h): inspect() on both stores, the
 * read-only SQLite open and its error codes, the empty-store rule (a zero-byte
 * file is a new store), the integrity check on a damaged page, and a -wal
 * file removed after a crash.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"
#include "store/store_testhooks.h"

#define PAGE 4096 /* SQLite's default page size on Debian */

static void make_id(uint8_t id[16], uint8_t tag)
{
    memset(id, 0, 16);
    id[0] = tag;
}

/* A session tagged tag with n messages of len bytes, the first acked of them acknowledged. */
static void fill(tether__store *st, uint8_t tag, size_t n, size_t len, uint64_t acked)
{
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    make_id(rec.id, tag);
    memset(rec.token, tag, sizeof rec.token);
    CHECK_OK(st->ops->session_put(st, &rec));
    uint8_t buf[256];
    memset(buf, tag, sizeof buf);
    for (size_t i = 0; i < n; i++) {
        tether_msg m = {buf, len};
        uint64_t first = 0;
        CHECK_OK(st->ops->append(st, rec.id, &m, 1, 0, 0, &first));
        CHECK_EQ_U64(first, i + 1);
    }
    if (acked > 0) {
        CHECK_OK(st->ops->ack(st, rec.id, acked));
    }
}

static tether__store *open_rw(const char *path, tether__store_role role)
{
    tether__store *st = NULL;
    char err[512];
    int rc = tether__store_sqlite_open(path, role, TETHER_DURABILITY_NORMAL, &st, err, sizeof err);
    CHECK_OK(rc);
    if (rc != TETHER_OK) {
        fprintf(stderr, "  %s\n", err);
    }
    return st;
}

static int open_ro(const char *path, tether__store **st, char *err, size_t errlen)
{
    return tether__store_sqlite_open_readonly(path, st, err, errlen);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void with_suffix(char *out, size_t len, const char *path, const char *suffix)
{
    snprintf(out, len, "%s%s", path, suffix);
}

static int count_cb(void *arg, const tether__session_rec *rec)
{
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

TEST(inspect_counts_on_both_stores)
{
    char path[512];
    tether__store *stores[2] = {NULL, NULL};
    CHECK_OK(tether__store_memory_open(TETHER__ROLE_SERVER, &stores[0]));
    stores[1] = open_rw(tt_path(path, sizeof path, "totals.db"), TETHER__ROLE_SERVER);
    for (int i = 0; i < 2; i++) {
        tether__store *st = stores[i];
        if (!st) {
            continue;
        }
        tether__store_info info;
        CHECK_OK(st->ops->inspect(st, 0, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_SERVER);
        CHECK_EQ_U64(info.sessions, 0);
        fill(st, 1, 5, 10, 2); /* 3 pending, 30 bytes */
        fill(st, 2, 4, 7, 0);  /* 4 pending, 28 bytes */
        CHECK_OK(st->ops->inspect(st, TETHER__INSPECT_CHECK, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_SERVER);
        CHECK_EQ_U64(info.sessions, 2);
        CHECK_EQ_U64(info.pending, 7);
        CHECK_EQ_U64(info.pending_bytes, 58);
        CHECK_ERR(st->ops->inspect(st, 0, NULL), TETHER_EINVAL);
        CHECK_ERR(st->ops->inspect(st, 2u, &info), TETHER_EINVAL); /* an unknown flag */
        st->ops->close(st);
    }
}

TEST(readonly_open_reads_and_never_writes)
{
    char path[512], err[512];
    tether__store *w = open_rw(tt_path(path, sizeof path, "ro.db"), TETHER__ROLE_CLIENT);
    if (!w) {
        return;
    }
    fill(w, 7, 3, 5, 1);
    /* Read while the writer has the store open. */
    tether__store *r = NULL;
    CHECK_OK(open_ro(path, &r, err, sizeof err));
    if (r) {
        tether__store_info info;
        CHECK_OK(r->ops->inspect(r, TETHER__INSPECT_CHECK, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_CLIENT);
        CHECK_EQ_U64(info.sessions, 1);
        CHECK_EQ_U64(info.pending, 2);
        uint8_t id[16];
        make_id(id, 7);
        tether__session_rec rec;
        CHECK_OK(r->ops->session_get(r, id, &rec));
        CHECK_EQ_U64(rec.out_last, 3);
        CHECK_EQ_U64(rec.peer_acked, 1);
        tether_msg m = {"x", 1};
        uint64_t first;
        CHECK_ERR(r->ops->append(r, id, &m, 1, 0, 0, &first), TETHER_ESTORE_READONLY);
        CHECK_ERR(r->ops->set_cursor(r, id, 9), TETHER_ESTORE_READONLY);
        CHECK(strstr(r->ops->errmsg(r), "readonly") != NULL ||
              strstr(r->ops->errmsg(r), "read-only") != NULL);
        r->ops->close(r);
    }
    w->ops->close(w);
    /* And after it closed: nothing changed. */
    CHECK_OK(open_ro(path, &r, err, sizeof err));
    if (r) {
        tether__store_info info;
        CHECK_OK(r->ops->inspect(r, 0, &info));
        CHECK_EQ_U64(info.pending, 2);
        r->ops->close(r);
    }
}

static void make_sqlite_db(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

TEST(readonly_open_names_each_failure)
{
    char path[512], err[512];
    tether__store *st = (tether__store *)1;
    CHECK_ERR(open_ro(tt_path(path, sizeof path, "missing.db"), &st, err, sizeof err),
              TETHER_ENOTFOUND);
    CHECK(st == NULL);
    CHECK(!exists(path)); /* never created */
    CHECK(strstr(err, "missing.db") != NULL);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/inside.db", path); /* a component that is not a directory */
    CHECK_ERR(open_ro(sub, &st, err, sizeof err), TETHER_ENOTFOUND);

    CHECK_ERR(open_ro(tt_tmpdir(), &st, err, sizeof err), TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "not a regular file") != NULL);

    int fd = open(tt_path(path, sizeof path, "junk.db"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    static const char junk[] = "not a database, just some text that fills a header......\n";
    for (int i = 0; fd >= 0 && i < 100; i++) {
        CHECK(write(fd, junk, sizeof junk - 1) == (ssize_t)(sizeof junk - 1));
    }
    close(fd);
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(err, "not a SQLite database") != NULL);

    make_sqlite_db(tt_path(path, sizeof path, "foreign.db"), "CREATE TABLE t(x)");
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "not a tether store") != NULL);

    make_sqlite_db(tt_path(path, sizeof path, "newer.db"), "PRAGMA user_version = 3");
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "newer") != NULL);

    make_sqlite_db(tt_path(path, sizeof path, "negative.db"), "PRAGMA user_version = -3");
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_SCHEMA);

    make_sqlite_db(tt_path(path, sizeof path, "norole.db"),
                   "CREATE TABLE meta(key, value); PRAGMA user_version = 1");
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "role") != NULL);

    make_sqlite_db(tt_path(path, sizeof path, "nometa.db"),
                   "CREATE TABLE other(x); PRAGMA user_version = 1");
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_SCHEMA);

    char longp[6000];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    CHECK_ERR(open_ro(longp, &st, err, sizeof err), TETHER_ESTORE); /* ENAMETOOLONG */

    CHECK_ERR(open_ro(NULL, &st, err, sizeof err), TETHER_EINVAL);
    CHECK_ERR(open_ro("", &st, err, sizeof err), TETHER_EINVAL);
    CHECK_ERR(open_ro(path, NULL, err, sizeof err), TETHER_EINVAL);
}

TEST(zero_byte_file_is_an_empty_store)
{
    char path[512], err[512];
    int fd = open(tt_path(path, sizeof path, "zero.db"), O_WRONLY | O_CREAT | O_TRUNC, 0640);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(chmod(path, 0640));
    tether__store *st = NULL;
    CHECK_OK(open_ro(path, &st, err, sizeof err));
    if (st) {
        tether__store_info info;
        CHECK_OK(st->ops->inspect(st, TETHER__INSPECT_CHECK, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_NONE);
        CHECK_EQ_U64(info.sessions, 0);
        int n = 0;
        CHECK_OK(st->ops->session_list(st, count_cb, &n));
        CHECK_EQ_INT(n, 0);
        CHECK_ERR(st->ops->session_list(st, NULL, NULL), TETHER_EINVAL);
        uint8_t id[16];
        make_id(id, 1);
        tether__session_rec rec;
        memset(&rec, 0, sizeof rec);
        uint64_t c, b;
        CHECK_ERR(st->ops->session_get(st, id, &rec), TETHER_ENOTFOUND);
        CHECK_ERR(st->ops->pending(st, id, &c, &b), TETHER_ENOTFOUND);
        CHECK_ERR(st->ops->load(st, id, 1, 10, NULL, NULL), TETHER_ENOTFOUND);
        CHECK_ERR(st->ops->session_put(st, &rec), TETHER_ESTORE_READONLY);
        CHECK_ERR(st->ops->session_delete(st, id), TETHER_ESTORE_READONLY);
        tether_msg m = {"x", 1};
        CHECK_ERR(st->ops->append(st, id, &m, 1, 0, 0, &c), TETHER_ESTORE_READONLY);
        CHECK_ERR(st->ops->ack(st, id, 1), TETHER_ESTORE_READONLY);
        CHECK_ERR(st->ops->set_cursor(st, id, 1), TETHER_ESTORE_READONLY);
        CHECK_ERR(st->ops->rebase(st, id, &rec, 0), TETHER_ESTORE_READONLY);
        CHECK(strstr(st->ops->errmsg(st), "read-only") != NULL);
        st->ops->close(st);
    }
    CHECK_EQ_INT(file_size(path), 0); /* reading changed nothing */

    /* The library takes it as a new store, like a missing file, and keeps its mode. */
    tether__store *w = open_rw(path, TETHER__ROLE_CLIENT);
    if (w) {
        fill(w, 3, 1, 4, 0);
        w->ops->close(w);
    }
    struct stat sb;
    CHECK_OK(stat(path, &sb));
    CHECK_EQ_INT(sb.st_mode & 0777, 0640);
    CHECK_OK(open_ro(path, &st, err, sizeof err));
    if (st) {
        tether__store_info info;
        CHECK_OK(st->ops->inspect(st, 0, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_CLIENT);
        CHECK_EQ_U64(info.sessions, 1);
        st->ops->close(st);
    }
}

TEST(check_finds_a_damaged_page)
{
    char path[512], err[512];
    tether__store *w = open_rw(tt_path(path, sizeof path, "damaged.db"), TETHER__ROLE_CLIENT);
    if (!w) {
        return;
    }
    fill(w, 5, 200, 200, 0); /* an outbox of several pages after the session's */
    w->ops->close(w);        /* checkpoints: everything is in the database file */
    off_t size = file_size(path);
    CHECK(size >= 8 * PAGE && size % PAGE == 0);

    tether__store *r = NULL;
    tether__store_info info;
    CHECK_OK(open_ro(path, &r, err, sizeof err));
    if (r) {
        CHECK_OK(r->ops->inspect(r, TETHER__INSPECT_CHECK, &info)); /* intact so far */
        r->ops->close(r);
    }
    /* The last page belongs to the outbox. Give it a page type that does not exist. */
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    static const uint8_t bad = 0x00;
    CHECK(pwrite(fd, &bad, 1, size - PAGE) == 1);
    close(fd);

    CHECK_OK(open_ro(path, &r, err, sizeof err));
    if (r) {
        /* Without the check only the sessions are read, and they are intact. */
        CHECK_OK(r->ops->inspect(r, 0, &info));
        CHECK_EQ_U64(info.sessions, 1);
        CHECK_EQ_U64(info.pending, 200);
        CHECK_ERR(r->ops->inspect(r, TETHER__INSPECT_CHECK, &info), TETHER_ESTORE_CORRUPT);
        CHECK(strstr(r->ops->errmsg(r), "integrity check") != NULL);
        r->ops->close(r);
    }
    /* The writing open agrees on the code when it meets the page. */
    w = open_rw(path, TETHER__ROLE_CLIENT);
    if (w) {
        CHECK_ERR(w->ops->inspect(w, TETHER__INSPECT_CHECK, &info), TETHER_ESTORE_CORRUPT);
        w->ops->close(w);
    }
}

/* inspect --check with the file as it is: TETHER_OK, or the code with errmsg in msg. */
static int check_file(const char *path, char *msg, size_t len)
{
    tether__store *r = NULL;
    tether__store_info info;
    int rc = open_ro(path, &r, msg, len);
    if (rc == TETHER_OK) {
        rc = r->ops->inspect(r, TETHER__INSPECT_CHECK, &info);
        snprintf(msg, len, "%s", r->ops->errmsg(r));
        r->ops->close(r);
    }
    return rc;
}

/* --check compares the stored pending totals with the outbox rows, as the
 * PostgreSQL store's check does: a total written by a second writer (or by
 * hand) that disagrees is corruption, not "ok". */
TEST(check_compares_pending_totals_with_the_outbox)
{
    char path[512], msg[512];
    tether__store *w = open_rw(tt_path(path, sizeof path, "tampered.db"), TETHER__ROLE_SERVER);
    if (!w) {
        return;
    }
    fill(w, 1, 150, 10, 50);
    fill(w, 2, 30, 20, 0);
    /* while the writer runs, its session rows lag the outbox (meta 'unsaved'):
     * the check counts the rows above out_last, so this is no false alarm */
    CHECK_OK(check_file(path, msg, sizeof msg));
    w->ops->close(w);
    CHECK_OK(check_file(path, msg, sizeof msg));

    /* the wrapped counts seen after two servers shared a file */
    make_sqlite_db(path, "UPDATE sessions SET pending_count = pending_count - 200 "
                         "WHERE hex(id) LIKE '01%'");
    CHECK_ERR(check_file(path, msg, sizeof msg), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(msg, "1 sessions' pending totals disagree with their outbox") != NULL);
    CHECK(strstr(msg, "records -100 messages and 1000 bytes; its outbox holds 100 and 1000") !=
          NULL);
    CHECK(strstr(msg, path) != NULL);
    /* without --check the totals are read as they are */
    tether__store *r = NULL;
    tether__store_info info;
    CHECK_OK(open_ro(path, &r, msg, sizeof msg));
    CHECK_OK(r->ops->inspect(r, 0, &info));
    r->ops->close(r);

    make_sqlite_db(path, "UPDATE sessions SET pending_count = pending_count + 200 "
                         "WHERE hex(id) LIKE '01%'; UPDATE sessions SET pending_bytes = 1 "
                         "WHERE hex(id) LIKE '02%'");
    CHECK_ERR(check_file(path, msg, sizeof msg), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(msg, "records 30 messages and 1 bytes; its outbox holds 30 and 600") != NULL);

    make_sqlite_db(path, "UPDATE sessions SET pending_bytes = 600 WHERE hex(id) LIKE '02%'");
    CHECK_OK(check_file(path, msg, sizeof msg));
    make_sqlite_db(path, "INSERT INTO outbox(session, seq, payload) VALUES (x'0900', 1, x'00')");
    CHECK_ERR(check_file(path, msg, sizeof msg), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(msg, "1 outbox rows belong to no session") != NULL);
}

/* In a child process: writes a session whose 10 messages were all acked, then
 * dies without closing the store, with checkpoints held off, so that every
 * commit is still in the -wal file, as after a crash. */
static void crash_after_acks(const char *path)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        tether__store *st = NULL;
        if (tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                      NULL, 0) != TETHER_OK) {
            _exit(2);
        }
        tether__store_sqlite_set_checkpoint(st, 1u << 30, 1u << 30, 3600u * 1000u);
        tether__session_rec rec;
        memset(&rec, 0, sizeof rec);
        make_id(rec.id, 9);
        rec.established = 1;
        uint64_t first;
        tether_msg m = {"payload", 7};
        int ok = st->ops->session_put(st, &rec) == TETHER_OK;
        for (int i = 0; ok && i < 10; i++) {
            ok = st->ops->append(st, rec.id, &m, 1, 0, 0, &first) == TETHER_OK;
        }
        ok = ok && st->ops->ack(st, rec.id, 10) == TETHER_OK;
        _exit(ok && tether__store_sqlite_checkpoints(st) == 0 ? 0 : 3);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(removed_wal_after_a_crash_is_refused)
{
    char path[512], wal[600], shm[600], kept[600], err[512];
    tt_path(path, sizeof path, "crashed.db");
    with_suffix(wal, sizeof wal, path, "-wal");
    with_suffix(shm, sizeof shm, path, "-shm");
    with_suffix(kept, sizeof kept, path, "-wal.kept");
    crash_after_acks(path);
    CHECK(exists(wal) && exists(shm));
    CHECK_OK(rename(wal, kept)); /* the operator's "cleanup" */

    tether__store *st = NULL;
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(err, "-wal file is missing") != NULL);
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_CORRUPT);
    CHECK(strstr(err, "-wal file is missing") != NULL);
    CHECK(!exists(wal)); /* the refusals created nothing */
    /* A -wal emptied rather than removed is the same loss. */
    int fd = open(wal, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(open_ro(path, &st, err, sizeof err), TETHER_ESTORE_CORRUPT);
    CHECK_OK(unlink(wal));

    /* Put back, the -wal gives everything that was committed. */
    CHECK_OK(rename(kept, wal));
    CHECK_OK(open_ro(path, &st, err, sizeof err));
    if (st) {
        uint8_t id[16];
        make_id(id, 9);
        tether__session_rec rec;
        CHECK_OK(st->ops->session_get(st, id, &rec));
        CHECK_EQ_U64(rec.out_last, 10);
        CHECK_EQ_U64(rec.peer_acked, 10);
        st->ops->close(st);
    }
}

TEST(removing_wal_and_shm_together_cannot_be_told)
{
    char path[512], wal[600], shm[600], err[512];
    tt_path(path, sizeof path, "both.db");
    with_suffix(wal, sizeof wal, path, "-wal");
    with_suffix(shm, sizeof shm, path, "-shm");
    crash_after_acks(path);
    CHECK_OK(unlink(wal));
    CHECK_OK(unlink(shm));
    /* What the database file holds is a store before its schema: empty. This is
     * the documented limit (docs/guarantees.md): it opens as a new store. */
    tether__store *st = NULL;
    CHECK_OK(open_ro(path, &st, err, sizeof err));
    if (st) {
        tether__store_info info;
        CHECK_OK(st->ops->inspect(st, 0, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_NONE);
        st->ops->close(st);
    }
}

/* A client store is locked for one process (TETHER__SQLITE_EXCLUSIVE): its WAL
 * index lives in memory, so a -shm left by an earlier shared open would go
 * stale. The exclusive open removes it; the lost -wal check must not later
 * take the stale index for lost commits once the exclusive client closed. */
TEST(exclusive_open_leaves_no_stale_index)
{
    char path[512], wal[600], shm[600], err[512];
    tt_path(path, sizeof path, "excl.db");
    with_suffix(wal, sizeof wal, path, "-wal");
    with_suffix(shm, sizeof shm, path, "-shm");
    crash_after_acks(path); /* a shared open died with commits in its -wal and -shm */
    CHECK(exists(wal) && exists(shm));
    tether__store *st = NULL;
    CHECK_OK(tether__store_sqlite_open_flags(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL,
                                             TETHER__SQLITE_EXCLUSIVE, &st, err, sizeof err));
    CHECK(!exists(shm));
    if (st) {
        st->ops->close(st); /* a clean close checkpoints and removes the -wal */
    }
    CHECK(!exists(wal));
    st = NULL;
    CHECK_OK(open_ro(path, &st, err, sizeof err));
    if (st) {
        tether__store_info info;
        CHECK_OK(st->ops->inspect(st, 0, &info));
        CHECK_EQ_INT(info.role, TETHER__ROLE_CLIENT);
        CHECK_EQ_U64(info.sessions, 1);
        st->ops->close(st);
    }
}

int main(void)
{
    RUN(check_compares_pending_totals_with_the_outbox);
    RUN(inspect_counts_on_both_stores);
    RUN(readonly_open_reads_and_never_writes);
    RUN(readonly_open_names_each_failure);
    RUN(zero_byte_file_is_an_empty_store);
    RUN(check_finds_a_damaged_page);
    RUN(removed_wal_after_a_crash_is_refused);
    RUN(removing_wal_and_shm_together_cannot_be_told);
    RUN(exclusive_open_leaves_no_stale_index);
    return tt_finish();
}

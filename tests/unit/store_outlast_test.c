/*
 * out_last and the pending totals stay exact although a SQLite append no
 * longer rewrites the session row (store_sqlite.c, "out_last"): what get,
 * list, pending and inspect report, and the next seq, against both stores
 * (and, run as `store_outlast_test pg`, against PostgreSQL); then, for SQLite, a process that dies without closing (the rows above the
 * session row are the only record of the last seqs), a clean close (the rows
 * alone are the truth again), and the bound on how far a row lags.
 */
#include <sys/wait.h>
#include <unistd.h>

#include "store_fixture.h"

#include "pgtest.h"

#define SAVE_EVERY 1024 /* store_sqlite_int.h: a row lags its outbox by fewer rows */

typedef struct impl {
    const char *name;                                          /* shown in the test name */
    int (*open)(tether__store_role role, tether__store **out); /* opens a fresh, empty store */
} impl;

static const impl *cur;

static int open_memory(tether__store_role role, tether__store **out)
{
    return tether__store_memory_open(role, out);
}

static int open_sqlite(tether__store_role role, tether__store **out)
{
    static int n;
    char name[64], path[512], err[256];
    snprintf(name, sizeof name, "outlast-%d.db", n++);
    int rc = tether__store_sqlite_open(tt_path(path, sizeof path, name), role,
                                       TETHER_DURABILITY_NORMAL, out, err, sizeof err);
    if (rc != TETHER_OK) {
        fprintf(stderr, "open %s: %s\n", path, err);
    }
    return rc;
}

static int open_pg(tether__store_role role, tether__store **out)
{
    char db[64], ci[256], err[512];
    if (pgt_createdb("outlast", db, sizeof db) != 0) {
        return TETHER_ESTORE;
    }
    int rc = tether__store_pg_open(pgt_conninfo(db, ci, sizeof ci), role, TETHER_DURABILITY_NORMAL,
                                   out, err, sizeof err);
    if (rc != TETHER_OK) {
        fprintf(stderr, "open %s: %s\n", db, err);
    }
    return rc;
}

static const impl impls[] = {{"memory", open_memory}, {"sqlite", open_sqlite}};
static const impl impls_pg[] = {{"pg", open_pg}};
static const impl *run_impls = impls;                 /* the set this run checks */
static size_t run_n = sizeof impls / sizeof impls[0]; /* its size */

static tether__store *fresh(tether__session_rec *rec, uint8_t tag)
{
    tether__store *st = NULL;
    CHECK_OK(cur->open(TETHER__ROLE_SERVER, &st));
    if (st) {
        *rec = mkrec(tag);
        CHECK_OK(st->ops->session_put(st, rec));
    }
    return st;
}

/* A fingerprint of what list() reports (list() returns a static). */
static uint64_t listed(tether__store *st)
{
    return list(st)->hash;
}

/* ---- both stores ---- */

TEST(reads_see_every_append)
{
    tether__session_rec r;
    tether__store *st = fresh(&r, 1);
    if (!st) {
        return;
    }
    for (int i = 1; i <= 10; i++) {
        CHECK_EQ_U64(app(st, r.id, "abcd"), (uint64_t)i);
    }
    CHECK_EQ_U64(get(st, r.id).out_last, 10);
    check_pending(st, r.id, 10, 40);
    tether__store_info info;
    CHECK_OK(st->ops->inspect(st, 0, &info));
    CHECK_EQ_U64(info.pending, 10);
    CHECK_EQ_U64(info.pending_bytes, 40);
    /* list reports the same record as get (compared through a memory store) */
    tether__session_rec want = get(st, r.id);
    CHECK_EQ_U64(list(st)->n, 1);
    tether__store *probe = NULL;
    CHECK_OK(tether__store_memory_open(TETHER__ROLE_SERVER, &probe));
    if (probe) {
        CHECK_OK(probe->ops->session_put(probe, &want));
        CHECK_EQ_U64(listed(st), listed(probe));
        probe->ops->close(probe);
    }
    st->ops->close(st);
}

TEST(pruned_to_empty_never_reuses_a_seq)
{
    tether__session_rec r;
    tether__store *st = fresh(&r, 2);
    if (!st) {
        return;
    }
    for (int i = 0; i < 5; i++) {
        app(st, r.id, "x");
    }
    CHECK_OK(st->ops->ack(st, r.id, 5));
    check_pending(st, r.id, 0, 0);
    CHECK_EQ_U64(get(st, r.id).out_last, 5);
    CHECK_EQ_U64(get(st, r.id).peer_acked, 5);
    CHECK_EQ_U64(app(st, r.id, "y"), 6);
    check_pending(st, r.id, 1, 1);
    st->ops->close(st);
}

TEST(partial_ack_and_stale_ack_keep_totals)
{
    tether__session_rec r;
    tether__store *st = fresh(&r, 3);
    if (!st) {
        return;
    }
    app(st, r.id, "aa");
    app(st, r.id, "bbb");
    app(st, r.id, "cccc");
    CHECK_OK(st->ops->ack(st, r.id, 2));
    check_pending(st, r.id, 1, 4);
    CHECK_OK(st->ops->ack(st, r.id, 1)); /* stale */
    check_pending(st, r.id, 1, 4);
    app(st, r.id, "d");
    check_pending(st, r.id, 2, 5);
    CHECK_EQ_U64(get(st, r.id).out_last, 4);
    CHECK_ERR(st->ops->ack(st, r.id, 5), TETHER_EINVAL);
    check_pending(st, r.id, 2, 5);
    st->ops->close(st);
}

TEST(put_after_appends_keeps_totals)
{
    tether__session_rec r;
    tether__store *st = fresh(&r, 4);
    if (!st) {
        return;
    }
    app(st, r.id, "12345");
    app(st, r.id, "678");
    tether__session_rec u = get(st, r.id);
    u.established = 1;
    CHECK_OK(st->ops->session_put(st, &u));
    check_pending(st, r.id, 2, 8);
    CHECK_EQ_U64(get(st, r.id).out_last, 2);
    CHECK_EQ_U64(app(st, r.id, "9"), 3);
    check_pending(st, r.id, 3, 9);
    /* out_last below the outbox is still refused */
    u = get(st, r.id);
    u.out_last = 1;
    CHECK_ERR(st->ops->session_put(st, &u), TETHER_EINVAL);
    check_pending(st, r.id, 3, 9);
    st->ops->close(st);
}

TEST(rebase_after_appends)
{
    tether__session_rec r;
    tether__store *st = fresh(&r, 5);
    if (!st) {
        return;
    }
    app(st, r.id, "a");
    app(st, r.id, "bb");
    app(st, r.id, "ccc");
    CHECK_OK(st->ops->ack(st, r.id, 1));
    app(st, r.id, "dddd");
    tether__session_rec n = mkrec(50);
    n.out_last = 3; /* 4 - peer_acked 1 */
    CHECK_OK(st->ops->rebase(st, r.id, &n, 1));
    CHECK_EQ_U64(get(st, n.id).out_last, 3);
    check_pending(st, n.id, 3, 9);
    CHECK_EQ_U64(app(st, n.id, "e"), 4);
    check_pending(st, n.id, 4, 10);
    st->ops->close(st);
}

TEST(two_sessions_interleaved)
{
    tether__session_rec a, b;
    tether__store *st = fresh(&a, 6);
    if (!st) {
        return;
    }
    b = mkrec(90);
    CHECK_OK(st->ops->session_put(st, &b));
    for (int i = 1; i <= 20; i++) {
        CHECK_EQ_U64(app(st, a.id, "aa"), (uint64_t)i);
        if (i % 3 == 0) {
            CHECK_EQ_U64(app(st, b.id, "b"), (uint64_t)(i / 3));
        }
    }
    CHECK_OK(st->ops->ack(st, b.id, 6));
    CHECK_EQ_U64(app(st, b.id, "b"), 7);
    check_pending(st, a.id, 20, 40);
    check_pending(st, b.id, 1, 1);
    tether__store_info info;
    CHECK_OK(st->ops->inspect(st, 0, &info));
    CHECK_EQ_U64(info.pending, 21);
    CHECK_EQ_U64(info.pending_bytes, 41);
    st->ops->close(st);
}

/* ---- SQLite: files ---- */

static tether__store *open_path(const char *path)
{
    tether__store *st = NULL;
    char err[256];
    CHECK_OK(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                       err, sizeof err));
    return st;
}

/* In a child: opens path, appends n one by one (and acks up to ack_to if not
 * 0), then dies without closing the store. */
static void die_after(const char *path, const uint8_t id[16], int n, uint64_t ack_to)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        tether__store *st = NULL;
        char err[256];
        if (tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                      err, sizeof err) != TETHER_OK) {
            _exit(2);
        }
        for (int i = 0; i < n; i++) {
            tether_msg m = {"zz", 2};
            uint64_t seq;
            if (st->ops->append(st, id, &m, 1, 0, 0, &seq) != TETHER_OK) {
                _exit(3);
            }
        }
        if (ack_to && st->ops->ack(st, id, ack_to) != TETHER_OK) {
            _exit(4);
        }
        _exit(0); /* no close: as if killed */
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(sqlite_death_keeps_out_last)
{
    char path[512];
    tt_path(path, sizeof path, "death.db");
    tether__session_rec r = mkrec(7);
    tether__store *st = open_path(path);
    if (!st) {
        return;
    }
    CHECK_OK(st->ops->session_put(st, &r));
    st->ops->close(st);

    die_after(path, r.id, 7, 0);
    /* the row still says 0 at most for some of them; the outbox says 7 */
    CHECK(tt_sqlite_int(path, "SELECT out_last FROM sessions") < 7);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT count(*) FROM meta WHERE key = 'unsaved'"), 1);
    st = open_path(path);
    if (!st) {
        return;
    }
    CHECK_EQ_U64(get(st, r.id).out_last, 7);
    check_pending(st, r.id, 7, 14);
    tether__store_info info;
    CHECK_OK(st->ops->inspect(st, 0, &info));
    CHECK_EQ_U64(info.pending, 7);
    CHECK_EQ_U64(info.pending_bytes, 14);
    CHECK_EQ_U64(list(st)->n, 1);
    CHECK_EQ_U64(app(st, r.id, "n"), 8);
    st->ops->close(st);

    /* everything acked and pruned, then death: the seq goes on from 9 */
    die_after(path, r.id, 3, 11);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT count(*) FROM outbox"), 0);
    st = open_path(path);
    if (!st) {
        return;
    }
    CHECK_EQ_U64(get(st, r.id).out_last, 11);
    check_pending(st, r.id, 0, 0);
    CHECK_EQ_U64(app(st, r.id, "m"), 12);
    st->ops->close(st);

    /* appends after the last ack die with the process's cache: the outbox has them */
    die_after(path, r.id, 2, 0);
    st = open_path(path);
    if (st) {
        CHECK_EQ_U64(get(st, r.id).out_last, 14);
        check_pending(st, r.id, 3, 5);
        CHECK_EQ_U64(app(st, r.id, "k"), 15);
        st->ops->close(st);
    }
}

TEST(sqlite_close_settles_the_rows)
{
    char path[512];
    tt_path(path, sizeof path, "settle.db");
    tether__session_rec r = mkrec(8);
    tether__store *st = open_path(path);
    if (!st) {
        return;
    }
    CHECK_OK(st->ops->session_put(st, &r));
    for (int i = 0; i < 5; i++) {
        app(st, r.id, "abc");
    }
    st->ops->close(st);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT out_last FROM sessions"), 5);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT pending_count FROM sessions"), 5);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT pending_bytes FROM sessions"), 15);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT count(*) FROM meta WHERE key = 'unsaved'"), 0);

    /* a death leaves the mark; the next clean close settles and clears it */
    die_after(path, r.id, 4, 0);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT count(*) FROM meta WHERE key = 'unsaved'"), 1);
    st = open_path(path);
    if (st) {
        st->ops->close(st);
    }
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT out_last FROM sessions"), 9);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT pending_count FROM sessions"), 9);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT pending_bytes FROM sessions"), 23);
    CHECK_EQ_INT(tt_sqlite_int(path, "SELECT count(*) FROM meta WHERE key = 'unsaved'"), 0);
}

TEST(sqlite_row_lags_by_less_than_save_every)
{
    char path[512];
    tt_path(path, sizeof path, "lag.db");
    tether__session_rec r = mkrec(9);
    tether__store *st = open_path(path);
    if (!st) {
        return;
    }
    CHECK_OK(st->ops->session_put(st, &r));
    long long worst = 0;
    for (int i = 1; i <= 3 * SAVE_EVERY; i++) {
        app(st, r.id, "q");
        if (i % 97 == 0 || i % SAVE_EVERY == 0 || i % SAVE_EVERY == 1) {
            long long row = tt_sqlite_int(path, "SELECT out_last FROM sessions");
            CHECK(row >= 0);
            if (i - row > worst) {
                worst = i - row;
            }
        }
    }
    CHECK(worst > 0);          /* appends left the row behind ... */
    CHECK(worst < SAVE_EVERY); /* ... but never by SAVE_EVERY rows */
    CHECK_EQ_U64(get(st, r.id).out_last, 3 * SAVE_EVERY);
    st->ops->close(st);
}

static void run_both(const char *name, void (*fn)(void))
{
    static char names[32][96];
    static int used;
    for (size_t i = 0; i < run_n; i++) {
        char *full = names[used++ % 32];
        snprintf(full, sizeof names[0], "%s/%s", run_impls[i].name, name);
        cur = &run_impls[i];
        tt_run(full, fn);
    }
}

#define BOTH(name) run_both(#name, test_##name)

int main(int argc, char **argv)
{
    int pg = argc > 1 && strcmp(argv[1], "pg") == 0;
    if (pg) {
        /* the generic half on PostgreSQL (ctest store_outlast_pg) */
        pgt_start();
        run_impls = impls_pg;
        run_n = 1;
    } else if (argc > 1) {
        fprintf(stderr, "usage: store_outlast_test [pg]\n");
        return 2;
    }
    BOTH(reads_see_every_append);
    BOTH(pruned_to_empty_never_reuses_a_seq);
    BOTH(partial_ack_and_stale_ack_keep_totals);
    BOTH(put_after_appends_keeps_totals);
    BOTH(rebase_after_appends);
    BOTH(two_sessions_interleaved);
    if (pg) {
        return tt_finish();
    }
    RUN(sqlite_death_keeps_out_last);
    RUN(sqlite_close_settles_the_rows);
    RUN(sqlite_row_lags_by_less_than_save_every);
    return tt_finish();
}

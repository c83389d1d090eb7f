/*
 * The SQLite store only (src/store/store_sqlite*.c): files and their mode,
 * schema versions, roles, garbage, disk full, read-only, checkpoints and a
 * bounded WAL. The contract both stores keep is in store_contract_test.c.
 */
#include "store_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store_testhooks.h"

/* ---- SQLite only ---- */

static tether__store *sq_open(const char *path, tether__store_role role, tether_durability dur)
{
    tether__store *st = NULL;
    char err[256];
    int rc = tether__store_sqlite_open(path, role, dur, &st, err, sizeof err);
    CHECK_OK(rc);
    if (rc != TETHER_OK) {
        fprintf(stderr, "open %s: %s\n", path, err);
        exit(2);
    }
    return st;
}

static long long pragma(tether__store *st, const char *sql)
{
    sqlite3_stmt *q = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(tether__store_sqlite_handle(st), sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        v = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    return v;
}

/* Runs sql on a database file directly, with no store open. */
static void raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* PRAGMA user_version of a database file, read with no store open. */
static long long file_version(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    long long v = -1;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        v = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* Rows of table in a database file, or -1 when there is no such table. */
static int sqlite_count(const char *path, const char *table)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    char sql[128];
    int v = -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
        v = sqlite3_column_int(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void fill(tether__store *st, const uint8_t id[16])
{
    app(st, id, "first");
    app(st, id, "second");
    app(st, id, "");
    app(st, id, "fourth");
    CHECK_OK(st->ops->ack(st, id, 1));
    CHECK_OK(st->ops->set_cursor(st, id, 7));
}

TEST(sqlite_reopen)
{
    static const struct {
        tether_durability dur; /* what is asked */
        long long sync;        /* the synchronous pragma it must set */
    } cases[] = {
        {TETHER_DURABILITY_DEFAULT, 1},
        {TETHER_DURABILITY_OFF, 0},
        {TETHER_DURABILITY_NORMAL, 1},
        {TETHER_DURABILITY_FULL, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32], path[512];
        snprintf(name, sizeof name, "reopen-%zu.db", i);
        tt_path(path, sizeof path, name);
        tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, cases[i].dur);
        CHECK_EQ_INT(pragma(st, "PRAGMA synchronous"), cases[i].sync);
        CHECK_EQ_INT(pragma(st, "PRAGMA wal_autocheckpoint"), 0);
        CHECK_EQ_INT(pragma(st, "PRAGMA user_version"), TETHER__STORE_SQLITE_SCHEMA_VERSION);
        tether__session_rec a = mkrec(13);
        a.established = 1;
        CHECK_OK(st->ops->session_put(st, &a));
        fill(st, a.id);
        uint64_t d = digest(st);
        st->ops->close(st);

        st = sq_open(path, TETHER__ROLE_CLIENT, cases[i].dur);
        CHECK_EQ_U64(digest(st), d);
        tether__session_rec r = get(st, a.id);
        CHECK_EQ_U64(r.out_last, 4);
        CHECK_EQ_U64(r.peer_acked, 1);
        CHECK_EQ_U64(r.recv_cursor, 7);
        CHECK_EQ_INT(r.established, 1);
        check_pending(st, a.id, 3, 12);
        got g = load(st, a.id, 0, 10);
        CHECK_EQ_U64(g.n, 3);
        CHECK_EQ_STR(g.data[0], "second");
        CHECK_EQ_U64(app(st, a.id, "fifth"), 5);
        st->ops->close(st);
    }
}

TEST(sqlite_file_mode)
{
    mode_t old = umask(022);
    char path[512], wal[540], shm[540];
    tt_path(path, sizeof path, "mode.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    tether__session_rec a = mkrec(14);
    CHECK_OK(st->ops->session_put(st, &a));
    app(st, a.id, "secret");
    struct stat sb;
    CHECK_EQ_INT(stat(path, &sb), 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    CHECK_EQ_INT(stat(wal, &sb), 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    CHECK_EQ_INT(stat(shm, &sb), 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    st->ops->close(st);
    umask(old);
}

TEST(sqlite_schema_newer)
{
    char path[512], err[256];
    tt_path(path, sizeof path, "newer.db");
    tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    st->ops->close(st);
    raw_sql(path, "PRAGMA user_version = 7");
    st = (tether__store *)1;
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(st == NULL);
    CHECK(strstr(err, "database schema 7 is newer than this tether (2)") != NULL);
    /* it was not touched */
    raw_sql(path, "PRAGMA user_version = 2");
    st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    st->ops->close(st);
}

/* A schema-1 file (before the verdicts table) is brought to schema 2 at its
 * first read-write open, its sessions kept; a read-only open before that
 * finds no verdict; a file claiming schema 1 with other tables is refused
 * and left as it was. */
TEST(sqlite_schema_migrate)
{
    char path[512], err[256];
    tt_path(path, sizeof path, "v1.db");
    tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    tether__session_rec a = mkrec(21);
    CHECK_OK(st->ops->session_put(st, &a));
    app(st, a.id, "kept");
    st->ops->close(st);
    raw_sql(path, "DROP TABLE verdicts; PRAGMA user_version = 1");

    tether__verdict v = {1800000000000ull, 3}, r;
    CHECK_OK(tether__store_sqlite_open_readonly(path, &st, err, sizeof err));
    CHECK_ERR(st->ops->verdict_get(st, "ws://h:1/", &r), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->verdict_put(st, "ws://h:1/", &v), TETHER_ESTORE_READONLY);
    st->ops->close(st);

    st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    CHECK_EQ_INT(pragma(st, "PRAGMA user_version"), 2);
    CHECK_EQ_U64(get(st, a.id).out_last, 1);
    CHECK_ERR(st->ops->verdict_get(st, "ws://h:1/", &r), TETHER_ENOTFOUND);
    CHECK_OK(st->ops->verdict_put(st, "ws://h:1/", &v));
    st->ops->close(st);

    st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    CHECK_OK(st->ops->verdict_get(st, "ws://h:1/", &r));
    CHECK_EQ_U64(r.until_ms, 1800000000000ull);
    CHECK_EQ_U64(r.probes_failed, 3);
    st->ops->close(st);
    CHECK_OK(tether__store_sqlite_open_readonly(path, &st, err, sizeof err));
    CHECK_OK(st->ops->verdict_get(st, "ws://h:1/", &r));
    CHECK_EQ_U64(r.probes_failed, 3);
    st->ops->close(st);

    /* schema 1 with a sessions table of something else: refused, untouched */
    tt_path(path, sizeof path, "v1-partial.db");
    raw_sql(path, "CREATE TABLE meta(key, value); INSERT INTO meta VALUES ('role', 'client');"
                  "CREATE TABLE sessions(id); CREATE TABLE outbox(x); PRAGMA user_version = 1");
    st = NULL;
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "unknown database schema") != NULL);
    CHECK(st == NULL);
    CHECK_EQ_INT(file_version(path), 1); /* left as it was */
    CHECK_ERR(sqlite_count(path, "verdicts"), -1);
}

TEST(sqlite_schema_unknown)
{
    char path[512], err[256];
    tether__store *st = NULL;
    /* somebody else's SQLite database */
    tt_path(path, sizeof path, "foreign.db");
    raw_sql(path, "CREATE TABLE notes(x)");
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "not a tether store") != NULL);
    /* schema 1 claimed, tables missing */
    tt_path(path, sizeof path, "claims.db");
    raw_sql(path, "CREATE TABLE notes(x); PRAGMA user_version = 1");
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    /* schema 1 and a meta table, but the other tables differ */
    tt_path(path, sizeof path, "partial.db");
    raw_sql(path, "CREATE TABLE meta(key, value); INSERT INTO meta VALUES ('role', 'client');"
                  "CREATE TABLE sessions(id); PRAGMA user_version = 1");
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "unknown database schema") != NULL);
    CHECK(st == NULL);
}

TEST(sqlite_wrong_role)
{
    char path[512], err[256];
    tether__store *st = NULL;
    tt_path(path, sizeof path, "client.db");
    st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    st->ops->close(st);
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "belongs to a tether client, not a server") != NULL);
    CHECK(st == NULL);
    tt_path(path, sizeof path, "server.db");
    st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    st->ops->close(st);
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    st->ops->close(st);
}

TEST(sqlite_garbage_file)
{
    char path[512], err[256];
    tt_path(path, sizeof path, "garbage.db");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    for (int i = 0; f && i < 200; i++) {
        fputs("this is not a database. ", f);
    }
    if (f) {
        fclose(f);
    }
    tether__store *st = NULL;
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE_CORRUPT);
    CHECK(strstr(err, "not a database") != NULL);
    CHECK(st == NULL);
}

TEST(sqlite_open_errors)
{
    char path[512], err[256];
    tether__store *st = NULL;
    tt_path(path, sizeof path, "no-such-dir/x.db");
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_ESTORE);
    CHECK(strstr(err, "unable to open") != NULL);
    CHECK(st == NULL);
    /* a directory where the file should be */
    CHECK_ERR(tether__store_sqlite_open(tt_tmpdir(), TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL,
                                        &st, err, sizeof err),
              TETHER_ESTORE);
    tt_path(path, sizeof path, "args.db");
    CHECK_ERR(tether__store_sqlite_open(NULL, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_EINVAL);
    CHECK_ERR(tether__store_sqlite_open("", TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st, err,
                                        sizeof err),
              TETHER_EINVAL);
    CHECK_ERR(tether__store_sqlite_open(path, (tether__store_role)3, TETHER_DURABILITY_NORMAL, &st,
                                        err, sizeof err),
              TETHER_EINVAL);
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, (tether_durability)9, &st, err,
                                        sizeof err),
              TETHER_EINVAL);
    CHECK_ERR(tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, NULL,
                                        NULL, 0),
              TETHER_EINVAL);
    /* a page size SQLite would ignore is refused before anything is created */
    static const uint32_t bad_pages[] = {256, 1000, 131072};
    for (size_t i = 0; i < sizeof bad_pages / sizeof bad_pages[0]; i++) {
        tether__sqlite_opts o = {.page_size = bad_pages[i]};
        CHECK_ERR(tether__store_sqlite_open_opts(path, TETHER__ROLE_CLIENT,
                                                 TETHER_DURABILITY_NORMAL, &o, &st, err,
                                                 sizeof err),
                  TETHER_EINVAL);
        CHECK(st == NULL);
        CHECK(strstr(err, "is not a power of two from 512 to 65536") != NULL);
        CHECK(access(path, F_OK) != 0);
    }
    CHECK_EQ_INT(tether__store_page_size_ok(0), 0);
    CHECK_EQ_INT(tether__store_page_size_ok(512), 1);
    CHECK_EQ_INT(tether__store_page_size_ok(65536), 1);
    CHECK_EQ_INT(tether__store_page_size_ok(768), 0);
    CHECK_ERR(tether__store_memory_open((tether__store_role)0, &st), TETHER_EINVAL);
}

TEST(sqlite_full)
{
    char path[512];
    tt_path(path, sizeof path, "full.db");
    tether__store *st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    tether__session_rec a = mkrec(15);
    CHECK_OK(st->ops->session_put(st, &a));
    fill(st, a.id);
    CHECK_OK(tether__store_sqlite_set_max_pages(st, 1));

    static char big[3000];
    memset(big, 'F', sizeof big);
    tether_msg m = {big, sizeof big};
    uint64_t before = 0, first = 0;
    int rc = TETHER_OK;
    for (int i = 0; i < 1000 && rc == TETHER_OK; i++) {
        before = digest(st);
        rc = st->ops->append(st, a.id, &m, 1, 0, 0, &first);
    }
    CHECK_EQ_INT(rc, TETHER_ESTORE_FULL);
    CHECK(strstr(st->ops->errmsg(st), "append") != NULL);
    CHECK(strstr(st->ops->errmsg(st), "full") != NULL);
    CHECK_EQ_U64(digest(st), before);
    tether__session_rec r = get(st, a.id);
    uint64_t c = 0, b = 0;
    CHECK_OK(st->ops->pending(st, a.id, &c, &b));
    /* a new session does not fit either, and is not half-made */
    tether__session_rec n = mkrec(16);
    int prc = st->ops->session_put(st, &n);
    CHECK(prc == TETHER_OK || prc == TETHER_ESTORE_FULL);
    if (prc == TETHER_ESTORE_FULL) {
        CHECK_EQ_U64(digest(st), before);
    } else {
        CHECK_OK(st->ops->session_delete(st, n.id));
    }
    st->ops->close(st);

    st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    CHECK_EQ_U64(digest(st), before);
    tether__session_rec r2 = get(st, a.id);
    CHECK(rec_eq(&r, &r2));
    check_pending(st, a.id, c, b);
    CHECK_EQ_U64(app(st, a.id, "room again"), r.out_last + 1);
    st->ops->close(st);
}

TEST(sqlite_readonly)
{
    char path[512];
    tt_path(path, sizeof path, "ro.db");
    tether__store *st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    tether__session_rec a = mkrec(17), b = mkrec(18), nr = mkrec(19);
    CHECK_OK(st->ops->session_put(st, &a));
    fill(st, a.id);
    uint64_t d = digest(st);
    CHECK_OK(tether__store_sqlite_reopen_readonly(st));

    tether_msg m = {"nope", 4};
    uint64_t first = 0;
    CHECK_ERR(st->ops->session_put(st, &b), TETHER_ESTORE_READONLY);
    CHECK(strstr(st->ops->errmsg(st), "session_put") != NULL);
    CHECK(strstr(st->ops->errmsg(st), "readonly") != NULL);
    a.out_last = 4;
    a.peer_acked = 1;
    a.recv_cursor = 100;
    CHECK_ERR(st->ops->session_put(st, &a), TETHER_ESTORE_READONLY);
    CHECK_ERR(st->ops->append(st, a.id, &m, 1, 0, 0, &first), TETHER_ESTORE_READONLY);
    CHECK_ERR(st->ops->ack(st, a.id, 3), TETHER_ESTORE_READONLY);
    CHECK_ERR(st->ops->set_cursor(st, a.id, 50), TETHER_ESTORE_READONLY);
    CHECK_ERR(st->ops->session_delete(st, a.id), TETHER_ESTORE_READONLY);
    nr.out_last = 3;
    CHECK_ERR(st->ops->rebase(st, a.id, &nr, 1), TETHER_ESTORE_READONLY);
    /* reads still work */
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(get(st, a.id).recv_cursor, 7);
    st->ops->close(st);

    st = sq_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL);
    CHECK_EQ_U64(digest(st), d);
    st->ops->close(st);

    /* a file that cannot be written is refused at open */
    char err[256];
    tether__store *ro = (tether__store *)1;
    CHECK_ERR(tether__store_sqlite_open_flags(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL,
                                              TETHER__SQLITE_READONLY, &ro, err, sizeof err),
              TETHER_ESTORE_READONLY);
    CHECK(ro == NULL);
    CHECK(strstr(err, "read-only") != NULL);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

TEST(sqlite_checkpoint_periodic)
{
    char path[512];
    tt_path(path, sizeof path, "periodic.db");
    tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    tether__store_sqlite_set_checkpoint(st, 1000000, 2000000, 20);
    unsigned long base = tether__store_sqlite_checkpoints(st);
    tether__session_rec a = mkrec(21);
    CHECK_OK(st->ops->session_put(st, &a));
    app(st, a.id, "tick");
    for (int i = 0; i < 200 && tether__store_sqlite_checkpoints(st) == base; i++) {
        sleep_ms(10);
    }
    unsigned long after = tether__store_sqlite_checkpoints(st);
    CHECK(after > base);
    /* idle: no more checkpoints */
    sleep_ms(100);
    CHECK_EQ_U64(tether__store_sqlite_checkpoints(st), after);
    st->ops->close(st);
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

TEST(sqlite_wal_bounded)
{
    enum { SOFT = 64, HARD = 256, N = 5000 };
    char path[512], wal[540];
    tt_path(path, sizeof path, "bounded.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    tether__store *st = sq_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL);
    tether__store_sqlite_set_checkpoint(st, SOFT, HARD, 1000);
    tether__session_rec a = mkrec(22);
    CHECK_OK(st->ops->session_put(st, &a));
    static char payload[1000];
    memset(payload, 'w', sizeof payload);
    tether_msg m = {payload, sizeof payload};
    long long biggest = 0;
    uint64_t first;
    for (int i = 1; i <= N; i++) {
        CHECK_OK(st->ops->append(st, a.id, &m, 1, 0, 0, &first));
        if (i % 10 == 0) {
            CHECK_OK(st->ops->ack(st, a.id, (uint64_t)i));
            long long sz = file_size(wal);
            biggest = sz > biggest ? sz : biggest;
        }
    }
    /* without checkpoints this WAL would pass 20 MB */
    long long bound = 3LL * HARD * (4096 + 24);
    if (getenv("STORE_TEST_VERBOSE") || biggest > bound) {
        fprintf(stderr, "WAL reached %lld bytes (bound %lld)\n", biggest, bound);
    }
    CHECK(biggest <= bound);
    CHECK(tether__store_sqlite_checkpoints(st) > 0);
    check_pending(st, a.id, 0, 0);
    st->ops->close(st);
}

int main(void)
{
    RUN(sqlite_reopen);
    RUN(sqlite_file_mode);
    RUN(sqlite_schema_newer);
    RUN(sqlite_schema_migrate);
    RUN(sqlite_schema_unknown);
    RUN(sqlite_wrong_role);
    RUN(sqlite_garbage_file);
    RUN(sqlite_open_errors);
    RUN(sqlite_full);
    RUN(sqlite_readonly);
    RUN(sqlite_checkpoint_periodic);
    RUN(sqlite_wal_bounded);
    return tt_finish();
}

/*
 * The PostgreSQL store's own cases (src/store/store_pg*.c), against a private
 * server this run starts (tests/support/pgtest.h): a server that cannot be
 * reached, a password never shown, a schema from the future, instances
 * creating the schema at once, a batch that
 * fails part-way (a CHECK constraint, and the backend killed mid-statement),
 * an append whose reply is lost after it committed, or whose request is lost
 * (through the fault relay: append finds out which after reconnecting),
 * the server restarted and a backend terminated between two operations (the
 * operation that meets it fails, the next reconnects), a row locked by
 * another connection (lock_timeout, not a stall), the read-only open of
 * `tether status`, roles kept apart,
 * inspect's check, and the server opening a postgresql:// db_path.
 * The store contract itself runs on PostgreSQL as store_contract_pg.
 */
#include "store_fixture.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tether/server.h>

#include "chaos/chaos.h"
#include "pgtest.h"
#include "store/store_testhooks.h"

static tether__store *open_db(const char *db, tether__store_role role)
{
    char ci[256], err[512];
    tether__store *st = NULL;
    int rc = tether__store_pg_open(pgt_conninfo(db, ci, sizeof ci), role, TETHER_DURABILITY_NORMAL,
                                   &st, err, sizeof err);
    CHECK_OK(rc);
    if (rc != TETHER_OK) {
        fprintf(stderr, "  open %s: %s\n", db, err);
        exit(1);
    }
    return st;
}

static tether__store *open_fresh(char *db, size_t len, tether__store_role role)
{
    if (pgt_createdb("pgstore", db, len) != 0) {
        fprintf(stderr, "  cannot create a database\n");
        exit(1);
    }
    return open_db(db, role);
}

/* A loopback port nothing listens on (the system's pick, closed again). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* How many databases the server holds (to see that a failed open created none). */
static long long count_dbs(void)
{
    long long n = -1;
    CHECK_EQ_INT(pgt_query_int("postgres", "SELECT count(*) FROM pg_database", &n), 0);
    return n;
}

TEST(unreachable_server_is_a_clear_error)
{
    char ci[256], err[512];
    int port = dead_port();
    tether__store *st = (tether__store *)&st;
    snprintf(ci, sizeof ci, "postgresql://alice:s3cr3t-pw@127.0.0.1:%d/nowhere", port);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_ESTORE);
    CHECK(st == NULL);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d/nowhere as user alice", port);
    CHECK(strstr(err, where) != NULL);
    CHECK(strstr(err, "cannot connect") != NULL);
    CHECK(strstr(err, "s3cr3t") == NULL);

    /* keyword form, password keyword: never shown either */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d dbname=x user=bob password=hunter2", port);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_ESTORE);
    CHECK(strstr(err, "hunter2") == NULL);
    char d[256];
    tether__store_pg_describe(ci, d, sizeof d);
    CHECK(strstr(d, "hunter2") == NULL);
    CHECK(strstr(d, "as user bob") != NULL);

    /* the server runs, the database does not exist: refused, nothing created */
    long long before = count_dbs();
    CHECK(before > 0);
    CHECK_ERR(tether__store_pg_open(pgt_conninfo("no_such_db", ci, sizeof ci), TETHER__ROLE_SERVER,
                                    TETHER_DURABILITY_NORMAL, &st, err, sizeof err),
              TETHER_ESTORE);
    CHECK(strstr(err, "no_such_db") != NULL);
    CHECK_EQ_INT(count_dbs(), before);

    /* not a connection string at all */
    CHECK_ERR(tether__store_pg_open("postgresql://h:notaport/db?bogus=1", TETHER__ROLE_SERVER,
                                    TETHER_DURABILITY_NORMAL, &st, err, sizeof err),
              TETHER_ECONFIG);
    CHECK(strstr(err, "invalid PostgreSQL connection string") != NULL);
    CHECK_ERR(tether__store_pg_open("", TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_EINVAL);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_NONE, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_EINVAL);
    CHECK(tether__store_pg_is_uri("postgresql://x/y"));
    CHECK(tether__store_pg_is_uri("postgres://x/y"));
    CHECK(!tether__store_pg_is_uri("/tmp/postgresql://x"));
    CHECK(!tether__store_pg_is_uri(NULL));
}

TEST(schema_from_the_future_is_refused)
{
    char db[64], ci[256], err[512];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(1);
    CHECK_OK(st->ops->session_put(st, &a));
    st->ops->close(st);
    /* a second open finds the schema and keeps the data */
    st = open_db(db, TETHER__ROLE_SERVER);
    CHECK_EQ_U64(list(st)->n, 1);
    st->ops->close(st);

    CHECK_EQ_INT(pgt_exec(db, "UPDATE tether_meta SET value = '3' WHERE key = 'schema_version'", 0),
                 0);
    st = (tether__store *)&st;
    CHECK_ERR(tether__store_pg_open(pgt_conninfo(db, ci, sizeof ci), TETHER__ROLE_SERVER,
                                    TETHER_DURABILITY_NORMAL, &st, err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(st == NULL);
    CHECK(strstr(err, "version 3, newer than this tether's (2)") != NULL);

    CHECK_EQ_INT(
        pgt_exec(db, "UPDATE tether_meta SET value = 'one' WHERE key = 'schema_version'", 0), 0);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "unknown database schema") != NULL);

    CHECK_EQ_INT(pgt_exec(db, "DELETE FROM tether_meta", 0), 0);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "no schema version") != NULL);

    /* tables named like ours without tether_meta: someone else's */
    CHECK_EQ_INT(pgt_exec(db, "DROP TABLE tether_meta", 0), 0);
    CHECK_ERR(tether__store_pg_open(ci, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                    sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "not a tether store") != NULL);
    /* and the refusal created nothing */
    long long made = -1;
    CHECK_EQ_INT(
        pgt_query_int(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'tether_meta'", &made),
        0);
    CHECK_EQ_INT(made, 0);
}

/* A batch of n messages "m<i>", the one at index bad being "x". */
static void batch(tether_msg *m, char (*buf)[16], size_t n, size_t bad)
{
    for (size_t i = 0; i < n; i++) {
        if (i == bad) {
            snprintf(buf[i], 16, "x");
        } else {
            snprintf(buf[i], 16, "m%zu", i);
        }
        m[i].data = buf[i];
        m[i].len = strlen(buf[i]);
    }
}

typedef struct opener {
    const char *db; /* the database all of them open */
    int rc;         /* what the open returned */
    char err[512];  /* its message */
} opener;

static void *open_one(void *arg)
{
    opener *o = arg;
    char ci[256];
    tether__store *st = NULL;
    o->rc = tether__store_pg_open(pgt_conninfo(o->db, ci, sizeof ci), TETHER__ROLE_SERVER,
                                  TETHER_DURABILITY_NORMAL, &st, o->err, sizeof o->err);
    if (st) {
        st->ops->close(st);
    }
    return NULL;
}

TEST(instances_opening_at_once_agree_on_the_schema)
{
    enum { N = 6 };
    char db[64];
    CHECK_EQ_INT(pgt_createdb("race", db, sizeof db), 0);
    opener o[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        o[i].db = db;
        o[i].rc = -100;
        o[i].err[0] = '\0';
        CHECK_EQ_INT(pthread_create(&t[i], NULL, open_one, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_OK(o[i].rc);
        if (o[i].rc != TETHER_OK) {
            fprintf(stderr, "  open %d: %s\n", i, o[i].err);
        }
    }
    long long versions = 0;
    CHECK_EQ_INT(pgt_query_int(db, "SELECT count(*) FROM tether_meta", &versions), 0);
    CHECK_EQ_INT(versions, 1);
}

TEST(failure_mid_batch_leaves_nothing)
{
    char db[64];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(2);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "first"), 1);
    uint64_t d = digest(st);

    /* a CHECK constraint refuses the 50th row of 100 */
    CHECK_EQ_INT(pgt_exec(db,
                          "ALTER TABLE tether_outbox ADD CONSTRAINT tt_no_x "
                          "CHECK (payload <> '\\x78'::bytea)",
                          0),
                 0);
    static char buf[100][16];
    tether_msg m[100];
    batch(m, buf, 100, 49);
    uint64_t first = 77;
    CHECK_ERR(st->ops->append(st, a.id, m, 100, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "23514") != NULL);
    CHECK_EQ_U64(first, 77);
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(get(st, a.id).out_last, 1);
    check_pending(st, a.id, 1, 5);

    /* the backend itself is killed by a trigger while inserting row 30 */
    CHECK_EQ_INT(
        pgt_exec(db,
                 "ALTER TABLE tether_outbox DROP CONSTRAINT tt_no_x;"
                 "CREATE FUNCTION tt_die() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$BEGIN IF NEW.seq = 31 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
                 "END IF; RETURN NEW; END$$;"
                 "CREATE TRIGGER tt_die BEFORE INSERT ON tether_outbox FOR EACH ROW "
                 "EXECUTE FUNCTION tt_die()",
                 0),
        0);
    int pid = tether__store_pg_backend_pid(st);
    CHECK(pid > 0);
    batch(m, buf, 100, 100);
    CHECK_ERR(st->ops->append(st, a.id, m, 100, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "was lost") != NULL);
    /* it asked again at once: a definite answer, not "may have committed" */
    CHECK(strstr(st->ops->errmsg(st), "nothing was stored") != NULL);
    CHECK_EQ_U64(first, 77);
    CHECK_EQ_INT(pgt_exec(db, "DROP TRIGGER tt_die ON tether_outbox", 0), 0);
    /* the next operation reconnects (another backend) and sees nothing of it */
    CHECK_EQ_U64(digest(st), d);
    CHECK(tether__store_pg_backend_pid(st) != pid);
    CHECK_OK(st->ops->append(st, a.id, m, 100, 0, 0, &first));
    CHECK_EQ_U64(first, 2);
    check_pending(st, a.id, 101, 5 + 10 * 2 + 90 * 3);
    st->ops->close(st);
}

static void relay_log(void *arg, const char *line)
{
    (void)arg;
    if (getenv("TETHER_TEST_VERBOSE")) {
        fprintf(stderr, "  relay: %s\n", line);
    }
}

/* The relay applies commands on its own thread: waits (bounded) until it
 * has turned on n stalls in all. */
static int stalls_applied(tether__chaos *relay, uint64_t n)
{
    for (int i = 0; i < 200; i++) {
        tether__chaos_stats cs;
        tether__chaos_get_stats(relay, &cs);
        if (cs.faults[TETHER__CHAOS_STALL] >= n) {
            return 1;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

TEST(reply_lost_after_commit_is_resolved)
{
    char db[64], ci[256], err[512];
    CHECK_EQ_INT(pgt_createdb("doubt", db, sizeof db), 0);
    /* the store talks to PostgreSQL through the fault relay */
    tether__chaos_cfg cc;
    memset(&cc, 0, sizeof cc);
    cc.listen_host = "127.0.0.1";
    cc.upstream_host = "127.0.0.1";
    cc.upstream_port = (uint16_t)pgt_port();
    cc.log = relay_log;
    cc.log_conns = 1;
    tether__chaos *relay = NULL;
    CHECK_EQ_INT(tether__chaos_start(&cc, &relay, err, sizeof err), 0);
    if (!relay) {
        fprintf(stderr, "  relay: %s\n", err);
        return;
    }
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%u user=postgres dbname=%s",
             (unsigned)tether__chaos_port(relay), db);
    tether__store *st = NULL;
    CHECK_OK(tether__store_pg_open(ci, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st, err,
                                   sizeof err));
    if (!st) {
        fprintf(stderr, "  open: %s\n", err);
        tether__chaos_stop(relay);
        return;
    }
    tether__session_rec a = mkrec(12);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "one"), 1);
    /* the next answer is held back, then the connection is reset: the
     * append reaches PostgreSQL and commits, its reply never arrives */
    CHECK_EQ_INT(tether__chaos_command(relay, "stall down for 600ms", err, sizeof err), 0);
    CHECK_EQ_INT(tether__chaos_command(relay, "in 300ms cut rst both", err, sizeof err), 0);
    CHECK(stalls_applied(relay, 1));
    tether_msg m[2] = {{"two", 3}, {"three", 5}};
    uint64_t first = 0;
    CHECK_OK(st->ops->append(st, a.id, m, 2, 0, 0, &first));
    CHECK_EQ_U64(first, 2);
    tether__chaos_stats cs;
    tether__chaos_get_stats(relay, &cs);
    CHECK(cs.cut_conns >= 1); /* the reply really was lost */
    got g = load(st, a.id, 0, 10);
    CHECK_EQ_U64(g.n, 3);
    CHECK_EQ_STR(g.data[2], "three");
    CHECK_EQ_U64(app(st, a.id, "four"), 4);

    /* the request itself lost (the cut before it arrives): nothing stored, and said so */
    uint64_t d = digest(st);
    CHECK_EQ_INT(tether__chaos_command(relay, "stall up for 600ms", err, sizeof err), 0);
    CHECK_EQ_INT(tether__chaos_command(relay, "in 300ms cut rst both", err, sizeof err), 0);
    CHECK(stalls_applied(relay, 2));
    first = 0;
    CHECK_ERR(st->ops->append(st, a.id, m, 2, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "nothing was stored") != NULL);
    CHECK_EQ_U64(first, 0);
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(app(st, a.id, "five"), 5);
    st->ops->close(st);
    tether__chaos_stop(relay);
}

TEST(restart_between_operations)
{
    char db[64];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(3);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "before"), 1);
    uint64_t d = digest(st);

    pgt_stop();
    /* the first operation meets the closed connection */
    tether_msg m = {"during", 6};
    uint64_t first = 0;
    CHECK_ERR(st->ops->append(st, a.id, &m, 1, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "was lost") != NULL);
    /* the next one tries to reconnect, once, and says where */
    CHECK_ERR(st->ops->append(st, a.id, &m, 1, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "reconnecting failed") != NULL);
    CHECK(strstr(st->ops->errmsg(st), "127.0.0.1:") != NULL);
    CHECK_EQ_U64(first, 0);

    CHECK_EQ_INT(pgt_restart(), 0);
    /* back: the store reconnects by itself, the data is as it was */
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(app(st, a.id, "after"), 2);
    check_pending(st, a.id, 2, 11);

    /* a backend terminated from outside between two operations */
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", tether__store_pg_backend_pid(st));
    CHECK_EQ_INT(pgt_exec("postgres", sql, 0), 0);
    tether__session_rec r;
    int rc = st->ops->session_get(st, a.id, &r);
    CHECK_ERR(rc, TETHER_ESTORE);
    CHECK_OK(st->ops->session_get(st, a.id, &r));
    CHECK_EQ_U64(r.out_last, 2);
    st->ops->close(st);
}

TEST(row_locked_elsewhere_times_out)
{
    char db[64], ci[256];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(6);
    CHECK_OK(st->ops->session_put(st, &a));
    uint64_t d = digest(st);
    /* another connection holds the session row in an open transaction */
    PGconn *other = PQconnectdb(pgt_conninfo(db, ci, sizeof ci));
    CHECK(PQstatus(other) == CONNECTION_OK);
    PQclear(PQexec(other, "BEGIN"));
    PGresult *r = PQexec(other, "SELECT 1 FROM tether_sessions FOR UPDATE");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    tether_msg m = {"blocked", 7};
    uint64_t first = 0;
    /* lock_timeout (5 s) ends the wait: an error, not a stall */
    CHECK_ERR(st->ops->append(st, a.id, &m, 1, 0, 0, &first), TETHER_ESTORE);
    CHECK(strstr(st->ops->errmsg(st), "55P03") != NULL);
    PQclear(PQexec(other, "ROLLBACK"));
    PQfinish(other);
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(app(st, a.id, "free"), 1);
    st->ops->close(st);
}

TEST(readonly_open_never_writes)
{
    char db[64], ci[256], err[512];
    tether__store *w = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(7);
    CHECK_OK(w->ops->session_put(w, &a));
    CHECK_EQ_U64(app(w, a.id, "kept"), 1);
    tether__store *r = NULL;
    CHECK_OK(tether__store_pg_open_readonly(pgt_conninfo(db, ci, sizeof ci), &r, err, sizeof err));
    if (r) {
        CHECK_EQ_U64(list(r)->n, 1);
        check_pending(r, a.id, 1, 4);
        tether__session_rec b = mkrec(8);
        CHECK_ERR(r->ops->session_put(r, &b), TETHER_ESTORE_READONLY);
        CHECK_ERR(r->ops->ack(r, a.id, 1), TETHER_ESTORE_READONLY);
        CHECK(strstr(r->ops->errmsg(r), "25006") != NULL);
        r->ops->close(r);
    }
    check_pending(w, a.id, 1, 4);
    w->ops->close(w);
    /* a database without tether tables is no store, and stays without */
    char empty[64];
    CHECK_EQ_INT(pgt_createdb("ro", empty, sizeof empty), 0);
    r = (tether__store *)&r;
    CHECK_ERR(
        tether__store_pg_open_readonly(pgt_conninfo(empty, ci, sizeof ci), &r, err, sizeof err),
        TETHER_ENOTFOUND);
    CHECK(r == NULL);
    CHECK(strstr(err, "holds no tether store") != NULL);
    long long tables = -1;
    CHECK_EQ_INT(pgt_query_int(empty,
                               "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tether%'",
                               &tables),
                 0);
    CHECK_EQ_INT(tables, 0);
}

TEST(durability_and_session_settings)
{
    char db[64], ci[256], err[512], v[64];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    CHECK_OK(tether__store_pg_show(st, "synchronous_commit", v, sizeof v));
    CHECK_EQ_STR(v, "on");
    CHECK_OK(tether__store_pg_show(st, "lock_timeout", v, sizeof v));
    CHECK_EQ_STR(v, "5s");
    CHECK_OK(tether__store_pg_show(st, "default_transaction_read_only", v, sizeof v));
    CHECK_EQ_STR(v, "off");
    st->ops->close(st);
    st = NULL;
    CHECK_OK(tether__store_pg_open(pgt_conninfo(db, ci, sizeof ci), TETHER__ROLE_SERVER,
                                   TETHER_DURABILITY_OFF, &st, err, sizeof err));
    if (st) {
        CHECK_OK(tether__store_pg_show(st, "synchronous_commit", v, sizeof v));
        CHECK_EQ_STR(v, "off");
        /* kept across a reconnect */
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)",
                 tether__store_pg_backend_pid(st));
        CHECK_EQ_INT(pgt_exec("postgres", sql, 0), 0);
        tether__session_rec r;
        tether__session_rec a = mkrec(9);
        CHECK_ERR(st->ops->session_get(st, a.id, &r), TETHER_ESTORE);
        CHECK_ERR(st->ops->session_get(st, a.id, &r), TETHER_ENOTFOUND);
        CHECK_OK(tether__store_pg_show(st, "synchronous_commit", v, sizeof v));
        CHECK_EQ_STR(v, "off");
        st->ops->close(st);
    }
    tether__store *mem = NULL;
    CHECK_OK(tether__store_memory_open(TETHER__ROLE_SERVER, &mem));
    CHECK_ERR(tether__store_pg_show(mem, "synchronous_commit", v, sizeof v), TETHER_EINVAL);
    mem->ops->close(mem);
}

TEST(roles_are_kept_apart)
{
    char db[64];
    tether__store *srv = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__store *cli = open_db(db, TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(4), b = mkrec(4);
    b.token[0] ^= 1;
    CHECK_OK(srv->ops->session_put(srv, &a));
    CHECK_EQ_U64(app(srv, a.id, "to the client"), 1);
    tether__session_rec r;
    CHECK_ERR(cli->ops->session_get(cli, a.id, &r), TETHER_ENOTFOUND);
    CHECK_EQ_U64(list(cli)->n, 0);
    /* the same id in the other role is another session */
    CHECK_OK(cli->ops->session_put(cli, &b));
    CHECK_EQ_U64(app(cli, b.id, "x"), 1);
    CHECK_EQ_U64(app(cli, b.id, "y"), 2);
    check_pending(srv, a.id, 1, 13);
    check_pending(cli, b.id, 2, 2);
    CHECK_OK(cli->ops->session_delete(cli, b.id));
    check_pending(srv, a.id, 1, 13);
    r = get(srv, a.id);
    CHECK(rec_eq(&r, &a) || r.out_last == 1);
    tether__store_info info;
    CHECK_OK(cli->ops->inspect(cli, TETHER__INSPECT_CHECK, &info));
    CHECK_EQ_INT(info.role, TETHER__ROLE_CLIENT);
    CHECK_EQ_U64(info.sessions, 0);
    CHECK_OK(srv->ops->inspect(srv, TETHER__INSPECT_CHECK, &info));
    CHECK_EQ_INT(info.role, TETHER__ROLE_SERVER);
    CHECK_EQ_U64(info.sessions, 1);
    CHECK_EQ_U64(info.pending, 1);
    CHECK_EQ_U64(info.pending_bytes, 13);
    cli->ops->close(cli);
    srv->ops->close(srv);
}

TEST(inspect_check_finds_wrong_totals)
{
    char db[64];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(5);
    CHECK_OK(st->ops->session_put(st, &a));
    app(st, a.id, "abc");
    tether__store_info info;
    CHECK_OK(st->ops->inspect(st, TETHER__INSPECT_CHECK, &info));
    CHECK_EQ_U64(info.pending_bytes, 3);
    CHECK_EQ_INT(pgt_exec(db, "UPDATE tether_sessions SET pending_bytes = 4", 0), 0);
    CHECK_ERR(st->ops->inspect(st, TETHER__INSPECT_CHECK, &info), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(st->ops->errmsg(st), "1 sessions' pending totals disagree") != NULL);
    CHECK_OK(st->ops->inspect(st, 0, &info)); /* without the check: the rows' word */
    CHECK_EQ_U64(info.pending_bytes, 4);
    /* a dropped table: the schema error, not a crash */
    CHECK_EQ_INT(pgt_exec(db, "DROP TABLE tether_outbox", 0), 0);
    got g;
    CHECK_ERR(st->ops->load(st, a.id, 0, 10, on_load, &g), TETHER_ESTORE_SCHEMA);
    CHECK(strstr(st->ops->errmsg(st), "42P01") != NULL);
    st->ops->close(st);
}

TEST(server_opens_a_postgresql_db_path)
{
    char db[64], uri[256];
    CHECK_EQ_INT(pgt_createdb("server", db, sizeof db), 0);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = pgt_uri(db, uri, sizeof uri);
    tether_server *srv = NULL;
    CHECK_OK(tether_server_create(&cfg, &srv));
    tether_server_destroy(srv);
    /* the server made the schema there */
    long long v = 0;
    CHECK_EQ_INT(
        pgt_query_int(db, "SELECT value::int FROM tether_meta WHERE key = 'schema_version'", &v),
        0);
    CHECK_EQ_INT(v, 2);
    /* an unreachable one: the error names it without the password */
    char bad[256];
    snprintf(bad, sizeof bad, "postgresql://tt:pa55word@127.0.0.1:%d/x", dead_port());
    cfg.db_path = bad;
    srv = NULL;
    CHECK_ERR(tether_server_create(&cfg, &srv), TETHER_ESTORE);
    CHECK(srv == NULL);
    CHECK(strstr(tether_errmsg(), "pa55word") == NULL);
    CHECK(strstr(tether_errmsg(), "cannot connect") != NULL);
    cfg.db_path = "postgresql://h:port/x?no_such_option=1";
    CHECK_ERR(tether_server_create(&cfg, &srv), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "invalid PostgreSQL connection string") != NULL);
}

static void no_wake(void *arg, const uint8_t id[16])
{
    (void)arg;
    (void)id;
}

/* The LISTEN connection's end (a restart, a terminated backend) reaches libpq
 * as an error outside any query; libpq would print it on stderr ("FATAL:
 * terminating connection ...") unless its notices are silenced, as on the main
 * connection. The store reports it through its return code only. */
TEST(lost_wake_connection_prints_nothing)
{
    char db[64], sql[256];
    tether__store *st = open_fresh(db, sizeof db, TETHER__ROLE_SERVER);
    CHECK_OK(st->ops->wait_wakes(st, 10, no_wake, NULL)); /* opens the LISTEN connection */
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' "
             "AND application_name = 'tether-wake'",
             db);
    CHECK_EQ_INT(pgt_exec("postgres", sql, 0), 0);
    char path[] = "/tmp/tether-pg-stderr-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fd, 2) == 2);
    for (int i = 0; i < 5; i++) { /* the FATAL arrives, then the reopen */
        (void)st->ops->wait_wakes(st, 100, no_wake, NULL);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t printed = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    CHECK_EQ_INT((int)printed, 0);
    CHECK_OK(st->ops->wait_wakes(st, 10, no_wake, NULL)); /* and it listens again */
    st->ops->close(st);
}

/* 1 when a TCP connection with this password entry (appended to the
 * conninfo) gets in; the reason on a refusal is PostgreSQL's. */
static int tcp_connects(const char *pw_entry, char *why, size_t len)
{
    char ci[320];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres "
                            "connect_timeout=10 %s", pgt_port(), pw_entry);
    PGconn *c = PQconnectdb(ci);
    int ok = PQstatus(c) == CONNECTION_OK;
    snprintf(why, len, "%s", PQerrorMessage(c));
    PQfinish(c);
    return ok;
}

/* The private server (src/tools/pgserver) lets nobody in over TCP without
 * its password: not with none, not with a wrong one; the password it made
 * (exported as PGPASSWORD, which an absent entry takes) gets in. */
TEST(tcp_needs_the_password)
{
    char why[512];
    CHECK(!tcp_connects("password=''", why, sizeof why));
    CHECK(strstr(why, "password") != NULL);
    CHECK(!tcp_connects("password=not-the-password", why, sizeof why));
    CHECK(strstr(why, "password authentication failed") != NULL);
    CHECK(tcp_connects("", why, sizeof why));
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(tcp_needs_the_password);
    RUN(unreachable_server_is_a_clear_error);
    RUN(schema_from_the_future_is_refused);
    RUN(instances_opening_at_once_agree_on_the_schema);
    RUN(failure_mid_batch_leaves_nothing);
    RUN(reply_lost_after_commit_is_resolved);
    RUN(restart_between_operations);
    RUN(row_locked_elsewhere_times_out);
    RUN(readonly_open_never_writes);
    RUN(durability_and_session_settings);
    RUN(roles_are_kept_apart);
    RUN(inspect_check_finds_wrong_totals);
    RUN(server_opens_a_postgresql_db_path);
    RUN(lost_wake_connection_prints_nothing);
    return tt_finish();
}

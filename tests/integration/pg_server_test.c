/*
 * A tether server whose store is PostgreSQL (db_path postgresql://...),
 * against a private server this run starts (tests/support/pgtest.h), with a
 * real client on loopback: the server restarted mid-stream resumes every
 * session from the database; messages to an offline client wait there; and
 * PostgreSQL itself restarted mid-stream costs a reconnect, not a message
 * (at most the redelivery window's repeats, flagged); and `tether serve --db
 * postgresql://...` with `tether send`, then `tether status` on the same URI.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "itest.h"
#include "pgtest.h"
#include "procs.h"

#define WAIT_MS 30000

typedef struct pair {
    recorder srec;             /* what the server saw */
    recorder crec;             /* what the client saw */
    tether_server_config scfg; /* server config, db_path a postgresql:// URI */
    tether_client_config ccfg; /* client config (SQLite store) */
    tether_server *s;          /* the server, when running */
    tether_client *c;          /* the client, when running */
    char url[64];              /* ws://127.0.0.1:port/ */
    char uri[256];             /* the server's database */
    uint16_t port;             /* the server's port, kept across restarts */
} pair;

static void pair_init(pair *p, const char *cdb)
{
    memset(p, 0, sizeof *p);
    char db[64];
    if (pgt_createdb("srv", db, sizeof db) != 0) {
        exit(1);
    }
    rec_init(&p->srec);
    rec_init(&p->crec);
    tether_server_config_init(&p->scfg);
    p->scfg.db_path = pgt_uri(db, p->uri, sizeof p->uri);
    rec_server_callbacks(&p->scfg, &p->srec);
    tether_client_config_init(&p->ccfg);
    p->ccfg.db_path = cdb;
    p->ccfg.backoff_base_ms = 20;
    p->ccfg.backoff_cap_ms = 200;
    p->ccfg.random_seed = 7;
    rec_client_callbacks(&p->ccfg, &p->crec);
}

static int start_server(pair *p)
{
    p->scfg.port = p->port; /* a restart reuses the first port */
    int rc = server_create_start(&p->scfg, &p->s);
    if (p->s && !p->port) {
        p->port = tether_server_port(p->s);
    }
    return rc;
}

static int start_client(pair *p)
{
    p->ccfg.url = url_for(p->url, sizeof p->url, p->port);
    return client_create_start(&p->ccfg, &p->c);
}

static void pair_free(pair *p)
{
    tether_client_destroy(p->c);
    tether_server_destroy(p->s);
    rec_free(&p->srec);
    rec_free(&p->crec);
}

/* Every seq 1..n delivered in order, each exactly once apart from rewinds: a
 * store failure between a delivery and its cursor commit is the redelivery
 * window (docs/guarantees.md), so the sender resends from the committed
 * cursor with redelivered = 1. Returns the number of repeats. */
static uint64_t check_in_order(recorder *r, uint64_t n, const char *what)
{
    pthread_mutex_lock(&r->mu);
    uint64_t top = 0, repeats = 0;
    int ok = 1;
    for (uint64_t i = 0; i < r->n && i < REC_MAX; i++) {
        uint64_t seq = r->seqs[i];
        if (r->tags[i] != seq) {
            ok = 0;
        } else if (seq == top + 1) {
            top = seq;
        } else if (seq <= top) {
            repeats++; /* a rewind to the committed cursor, then forward again */
        } else {
            ok = 0; /* a gap */
        }
    }
    if (!ok || top != n) {
        tt_fail(__FILE__, __LINE__, "%s: deliveries reach seq %llu of %llu%s", what,
                (unsigned long long)top, (unsigned long long)n,
                ok ? "" : ", with a gap or a bad tag");
    }
    if (repeats > r->redelivered) {
        tt_fail(__FILE__, __LINE__, "%s: %llu repeats but only %llu flagged redelivered", what,
                (unsigned long long)repeats, (unsigned long long)r->redelivered);
    }
    pthread_mutex_unlock(&r->mu);
    return repeats;
}

TEST(server_restart_resumes_from_postgresql)
{
    char cdb[512];
    pair p;
    pair_init(&p, tt_path(cdb, sizeof cdb, "restart-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 3000, 64));
    CHECK(rec_wait_count(&p.srec, 500, WAIT_MS));
    tether_server_destroy(p.s);
    p.s = NULL;
    CHECK_OK(send_tagged(p.c, 2000, 64));
    sleep_ms(100);
    CHECK_OK(start_server(&p));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    rec_check_exact(&p.srec, 5000, "server across restart");
    CHECK_EQ_INT(p.srec.last_open_resumed, 1);
    pair_free(&p);
}

TEST(offline_client_gets_server_messages_on_resume)
{
    char cdb[512];
    pair p;
    tether_session_id id;
    pair_init(&p, tt_path(cdb, sizeof cdb, "offline-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 10, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    CHECK_OK(tether_client_session(p.c, &id));
    tether_client_destroy(p.c);
    p.c = NULL;
    uint8_t buf[64];
    for (uint64_t i = 1; i <= 1000; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, NULL));
    }
    uint64_t pending = 0;
    CHECK_OK(tether_server_pending(p.s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 1000);
    /* the totals come from the database (inspect) */
    tether_server_statistics stats;
    memset(&stats, 0, sizeof stats);
    CHECK_OK(tether_server_stats(p.s, &stats));
    CHECK_EQ_U64(stats.pending_messages, 1000);
    CHECK_EQ_U64(stats.pending_bytes, 64000);
    CHECK_EQ_U64(stats.sessions, 1);
    /* the outbox is in the database: a new server process would find it */
    tether_server_destroy(p.s);
    p.s = NULL;
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK(rec_wait_count(&p.crec, 1000, WAIT_MS));
    rec_check_exact(&p.crec, 1000, "client after resume");
    pair_free(&p);
}

TEST(postgresql_restart_mid_stream_loses_nothing)
{
    char cdb[512];
    pair p;
    pair_init(&p, tt_path(cdb, sizeof cdb, "pgrestart-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 2000, 64));
    CHECK(rec_wait_count(&p.srec, 300, WAIT_MS));
    pgt_stop();
    CHECK_OK(send_tagged(p.c, 1000, 64));
    sleep_ms(300);
    CHECK_EQ_INT(pgt_restart(), 0);
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    uint64_t repeats = check_in_order(&p.srec, 3000, "server across a PostgreSQL restart");
    printf("  %llu deliveries, %llu repeated in the redelivery window\n",
           (unsigned long long)rec_count(&p.srec), (unsigned long long)repeats);
    /* the server's store failed while PostgreSQL was down: the session was closed */
    CHECK(rec_saw_state(&p.crec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL) >= 1);
    pair_free(&p);
}

TEST(cli_serve_and_status_take_a_postgresql_uri)
{
    const char *cli = getenv("TETHER_CLI");
    if (!cli) {
        tt_fail(__FILE__, __LINE__, "TETHER_CLI is not set (run through ctest)");
        return;
    }
    char db[64], uri[256], pf[512], sout[512], cout[512], cdb[512];
    CHECK_EQ_INT(pgt_createdb("cli", db, sizeof db), 0);
    pgt_uri(db, uri, sizeof uri);
    tt_path(pf, sizeof pf, "serve.port");
    char *sargv[] = {(char *)cli, "serve",       "--listen", "127.0.0.1:0", "--db",
                     uri,         "--port-file", pf,         "--quiet",     NULL};
    pid_t serve = procs_spawn(sargv, tt_path(sout, sizeof sout, "serve.out"));
    int port = 0;
    for (int t = 0; t < 1000 && !port; t++) {
        sleep_ms(20);
        port = procs_file_port(pf);
    }
    CHECK(port > 0);
    char url[64];
    url_for(url, sizeof url, (unsigned)port);
    tt_path(cdb, sizeof cdb, "send.db");
    char *cargv[] = {(char *)cli, "send", url, "--db", cdb, "--count", "200", "--size", "64", NULL};
    pid_t send = procs_spawn(cargv, tt_path(cout, sizeof cout, "send.out"));
    CHECK_EQ_INT(procs_reap(send, WAIT_MS), 0);
    kill(serve, SIGTERM);
    CHECK_EQ_INT(procs_reap(serve, WAIT_MS), 0);
    /* what the server took in is in the database: one session, all acked */
    long long sessions = -1, cursor = -1;
    CHECK_EQ_INT(
        pgt_query_int(db, "SELECT count(*) FROM tether_sessions WHERE role = 2", &sessions), 0);
    CHECK_EQ_INT(sessions, 1);
    CHECK_EQ_INT(pgt_query_int(db, "SELECT max(recv_cursor) FROM tether_sessions", &cursor), 0);
    CHECK_EQ_INT(cursor, 200);

    /* tether status reads it, and prints no password */
    char secret[300], stout[512], text[4096];
    snprintf(secret, sizeof secret, "postgresql://postgres:%s@127.0.0.1:%d/%s", pgt_password(),
             pgt_port(), db);
    char *targv[] = {(char *)cli, "status", "--db", secret, "--check", NULL};
    CHECK_EQ_INT(procs_reap(procs_spawn(targv, tt_path(stout, sizeof stout, "status.out")), WAIT_MS), 0);
    FILE *f = fopen(stout, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f) {
        fclose(f);
    }
    CHECK(strstr(text, "server") != NULL);
    CHECK(strstr(text, pgt_password()) == NULL);
    char where[128];
    snprintf(where, sizeof where, "127.0.0.1:%d/%s", pgt_port(), db);
    CHECK(strstr(text, where) != NULL);
    if (tt_failed_checks) {
        fprintf(stderr, "  status printed:\n%s\n", text);
    } else if (getenv("TETHER_TEST_VERBOSE")) {
        printf("%s", text);
    }
    /* a database without tether tables: status 3, and nothing created there */
    char empty[64], euri[256];
    CHECK_EQ_INT(pgt_createdb("empty", empty, sizeof empty), 0);
    pgt_uri(empty, euri, sizeof euri);
    char *eargv[] = {(char *)cli, "status", "--db", euri, NULL};
    CHECK_EQ_INT(procs_reap(procs_spawn(eargv, tt_path(stout, sizeof stout, "status2.out")), WAIT_MS), 3);
    long long tables = -1;
    CHECK_EQ_INT(pgt_query_int(empty,
                               "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tether%'",
                               &tables),
                 0);
    CHECK_EQ_INT(tables, 0);
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(server_restart_resumes_from_postgresql);
    RUN(offline_client_gets_server_messages_on_resume);
    RUN(postgresql_restart_mid_stream_loses_nothing);
    RUN(cli_serve_and_status_take_a_postgresql_uri);
    return tt_finish();
}

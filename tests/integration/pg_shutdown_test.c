/*
 * A server on PostgreSQL shut down while the database is gone
 * (tests/support/pgtest.h): tether_server_destroy() must return promptly,
 * not after a connect timeout per operation, and lose nothing committed.
 *
 * Two ways the database can be gone: stopped (its port refuses connections:
 * every reconnect fails at once), and not answering (a host that is down
 * behind a firewall, a frozen machine: here a socket on its port that
 * accepts and never answers, so that libpq waits for its connect timeout,
 * 10 s). In both, sessions are connected and their clients sending when the
 * database goes, and the server is destroyed with work in flight; the bound
 * asserted is 5 s (the shutdown's own work takes well under 2 s). Then the
 * database comes back and a new server resumes every session: everything
 * the clients saw acknowledged is there, and the rest arrives, each message
 * once. `tether serve` on SIGTERM the same (exit status 0 within the bound).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "itest.h"
#include "pgtest.h"
#include "procs.h"
#include "store/store.h"

#define WAIT_MS 20000
#define CLIENTS 3
#define BOUND_MS 5000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A socket on PostgreSQL's port that takes connections and never answers. */
static int silent_listener(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static void shutdown_with_database_gone(int silent)
{
    char db[64], uri[256];
    CHECK(pgt_createdb(silent ? "sdsilent" : "sdstopped", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    srv a;
    srv_init(&a);
    a.cfg.db_path = uri;
    a.cfg.lease_ms = 1000;
    CHECK_OK(srv_start(&a));
    cli k[CLIENTS];
    char cdb[CLIENTS][512];
    for (int c = 0; c < CLIENTS; c++) {
        char name[48];
        snprintf(name, sizeof name, "sd-%d-c%d.db", silent, c);
        cli_init(&k[c], "ws", "127.0.0.1", a.port);
        k[c].cfg.db_path = tt_path(cdb[c], sizeof cdb[c], name);
        k[c].cfg.backoff_base_ms = 20;
        k[c].cfg.backoff_cap_ms = 200;
        CHECK_OK(cli_start(&k[c]));
        CHECK_OK(send_tagged(k[c].c, 20, 64));
        CHECK_OK(tether_client_wait_acked(k[c].c, WAIT_MS));
    }
    int port = pgt_port();
    pgt_stop(); /* by its PID */
    int fd = -1;
    if (silent) {
        fd = silent_listener(port);
        CHECK(fd >= 0);
    }
    /* more in flight: the server's commits meet the lost database */
    for (int c = 0; c < CLIENTS; c++) {
        CHECK_OK(send_tagged(k[c].c, 20, 64));
    }
    sleep_ms(300);
    uint64_t acked[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        CHECK_OK(tether_client_acked(k[c].c, &acked[c]));
    }
    uint64_t t0 = now_ms();
    tether_server_destroy(a.s);
    a.s = NULL;
    uint64_t took = now_ms() - t0;
    printf("  database %s: tether_server_destroy() took %llu ms\n",
           silent ? "not answering" : "stopped", (unsigned long long)took);
    CHECK(took <= BOUND_MS);
    srv_free(&a);
    for (int c = 0; c < CLIENTS; c++) {
        cli_free(&k[c]);
    }
    if (fd >= 0) {
        close(fd);
    }

    /* the database is back: nothing acknowledged is missing, the rest comes */
    CHECK(pgt_restart() == 0);
    srv b;
    srv_init(&b);
    b.cfg.db_path = uri;
    b.cfg.lease_ms = 1000;
    CHECK_OK(srv_start(&b));
    for (int c = 0; c < CLIENTS; c++) {
        cli_init(&k[c], "ws", "127.0.0.1", b.port);
        k[c].cfg.db_path = cdb[c];
        CHECK_OK(cli_start(&k[c]));
        CHECK_OK(tether_client_wait_acked(k[c].c, WAIT_MS));
        uint64_t now = 0;
        CHECK_OK(tether_client_acked(k[c].c, &now));
        CHECK_EQ_U64(now, 40);
        CHECK(acked[c] <= now);
        CHECK_EQ_INT(k[c].rec.mismatches, 0);
    }
    /* b received exactly what the first server had not committed: 40 per
     * client in all, no seq twice beyond the documented redelivery */
    uint64_t first_cursor = 0;
    long long total = -1;
    CHECK(pgt_query_int(db, "SELECT sum(recv_cursor) FROM tether_sessions WHERE role = 2",
                        &total) == 0);
    CHECK_EQ_INT(total, 40 * CLIENTS);
    for (int c = 0; c < CLIENTS; c++) {
        first_cursor += acked[c];
    }
    CHECK(rec_count(&b.rec) <= 40 * CLIENTS - first_cursor);
    CHECK_EQ_INT(b.rec.mismatches, 0);
    for (int c = 0; c < CLIENTS; c++) {
        cli_free(&k[c]);
    }
    srv_free(&b);
}

TEST(shutdown_with_postgresql_stopped_is_prompt)
{
    shutdown_with_database_gone(0);
}

TEST(shutdown_with_postgresql_not_answering_is_prompt)
{
    shutdown_with_database_gone(1);
}

/* The same through `tether serve`: SIGTERM with PostgreSQL not answering,
 * and it exits 0 within the bound. */
TEST(tether_serve_exits_promptly_on_sigterm_with_postgresql_silent)
{
    const char *tether = getenv("TETHER_CLI");
    CHECK(tether != NULL);
    if (!tether) {
        return;
    }
    char db[64], uri[256], pf[512], out[512], cdb[512];
    CHECK(pgt_createdb("sdserve", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    tt_path(pf, sizeof pf, "sdserve.port");
    tt_path(out, sizeof out, "sdserve.out");
    char *argv[] = {(char *)tether, "serve", "--listen", "127.0.0.1:0", "--db", uri,
                    "--lease-ms",   "1000",  "--quiet",  "--port-file", pf,     NULL};
    pid_t pid = procs_spawn(argv, out);
    CHECK(pid > 0);
    int port = 0;
    for (int i = 0; i < 1000 && !(port = procs_file_port(pf)); i++) {
        sleep_ms(10);
    }
    CHECK(port > 0);
    cli k;
    cli_init(&k, "ws", "127.0.0.1", (unsigned)port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "sdserve-c.db");
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 20, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    int pgport = pgt_port();
    pgt_stop();
    int fd = silent_listener(pgport);
    CHECK(fd >= 0);
    CHECK_OK(send_tagged(k.c, 20, 64));
    sleep_ms(300);
    uint64_t t0 = now_ms();
    CHECK(pid > 0 && kill(pid, SIGTERM) == 0);
    int st = pid > 0 ? procs_reap(pid, BOUND_MS) : -1;
    uint64_t took = now_ms() - t0;
    printf("  tether serve exited %d, %llu ms after SIGTERM\n", st, (unsigned long long)took);
    CHECK_EQ_INT(st, 0);
    CHECK(took <= BOUND_MS);
    cli_free(&k);
    close(fd);
    CHECK(pgt_restart() == 0);
}

/* The store's side: an operation under way when the server starts closing
 * stops waiting for the silent database within about a second, with a
 * clear error; the next one fails at once. */
typedef struct op_arg {
    tether__store *st;
    int rc;
    uint64_t took;
} op_arg;

static void *one_get(void *arg)
{
    op_arg *o = arg;
    uint8_t id[16] = {1, 2, 3};
    tether__session_rec rec;
    uint64_t t0 = now_ms();
    o->rc = o->st->ops->session_get(o->st, id, &rec);
    o->took = now_ms() - t0;
    return NULL;
}

TEST(closing_store_stops_waiting_for_a_silent_database)
{
    char db[64], ci[256], err[256];
    CHECK(pgt_createdb("sdstore", db, sizeof db) == 0);
    pgt_conninfo(db, ci, sizeof ci);
    tether__store *st = NULL;
    CHECK_OK(tether__store_pg_open(ci, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, &st, err,
                                   sizeof err));
    if (!st) {
        return;
    }
    op_arg o = {st, 0, 0};
    one_get(&o);
    CHECK_EQ_INT(o.rc, TETHER_ENOTFOUND); /* connected: no such session */
    int port = pgt_port();
    pgt_stop();
    int fd = silent_listener(port);
    CHECK(fd >= 0);
    one_get(&o); /* finds the connection lost; the next operation reconnects */
    CHECK_EQ_INT(o.rc, TETHER_ESTORE);
    /* an operation reconnecting into the silence, then the server closes */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, one_get, &o) == 0);
    sleep_ms(300);
    uint64_t t0 = now_ms();
    tether__store_pg_closing(st);
    pthread_join(th, NULL);
    uint64_t after = now_ms() - t0;
    printf("  an operation under way gave up %llu ms after the closing (%llu ms in all): %s\n",
           (unsigned long long)after, (unsigned long long)o.took, st->ops->errmsg(st));
    CHECK_EQ_INT(o.rc, TETHER_ESTORE);
    CHECK(after <= 3000);
    CHECK(strstr(st->ops->errmsg(st), "is lost and reconnecting failed") != NULL);
    /* and the next one does not try again */
    one_get(&o);
    CHECK_EQ_INT(o.rc, TETHER_ESTORE);
    CHECK(o.took <= 500);
    CHECK(strstr(st->ops->errmsg(st), "server is shutting down: not reconnecting again") != NULL);
    st->ops->close(st);
    close(fd);
    CHECK(pgt_restart() == 0);
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(shutdown_with_postgresql_stopped_is_prompt);
    RUN(shutdown_with_postgresql_not_answering_is_prompt);
    RUN(tether_serve_exits_promptly_on_sigterm_with_postgresql_silent);
    RUN(closing_store_stops_waiting_for_a_silent_database);
    return tt_finish();
}

/*
 * Two server instances on one PostgreSQL database (tests/support/pgtest.h):
 * a session moves from one to the other and back, each time at once because
 * the instance its client left released the lease, with every message in
 * both directions exactly once and in order (messages sent by an instance
 * while the session was offline arrive on resume, on the other instance);
 * and an instance paused with SIGSTOP (a `tether serve` process) loses the
 * session once its lease lapses, and after SIGCONT is fenced: its write for
 * the session is refused with TETHER_EFENCED and it closes that connection;
 * and a send from the instance a session is not attached to reaches it at
 * once (NOTIFY wakes the owner), with its latency printed.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "itest.h"
#include "pgtest.h"
#include "procs.h"

#define WAIT_MS 20000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Deliveries are exactly seqs first..last in order, each tagged with its seq. */
static void check_range(recorder *r, uint64_t first, uint64_t last, const char *what)
{
    pthread_mutex_lock(&r->mu);
    int ok = r->n == last - first + 1;
    for (uint64_t i = 0; ok && i < r->n; i++) {
        ok = r->seqs[i] == first + i && r->tags[i] == first + i;
    }
    if (!ok) {
        tt_fail(__FILE__, __LINE__, "%s: %llu deliveries, not exactly %llu..%llu in order", what,
                (unsigned long long)r->n, (unsigned long long)first, (unsigned long long)last);
    }
    pthread_mutex_unlock(&r->mu);
}

static void fleet_server(srv *v, const char *uri)
{
    srv_init(v);
    v->cfg.db_path = uri;
    v->cfg.lease_ms = 1000;
}

TEST(session_moves_between_instances_exactly_once)
{
    char db[64], uri[256], cdb[512];
    CHECK(pgt_createdb("fleet", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    srv a, b;
    fleet_server(&a, uri);
    fleet_server(&b, uri);
    CHECK_OK(srv_start(&a));
    CHECK_OK(srv_start(&b));
    srv *at[3] = {&a, &b, &a};
    recorder crec; /* the client's deliveries across its three lives */
    rec_init(&crec);
    tether_session_id id;
    tt_path(cdb, sizeof cdb, "fleet-c.db");
    uint64_t up = 0, down = 0;
    for (int hop = 0; hop < 3; hop++) {
        cli k;
        cli_init(&k, "ws", "127.0.0.1", at[hop]->port);
        k.cfg.db_path = cdb;
        k.cfg.backoff_base_ms = 20;
        k.cfg.backoff_cap_ms = 200;
        rec_client_callbacks(&k.cfg, &crec);
        CHECK_OK(cli_start(&k));
        if (hop > 0) {
            /* what the other instance sent while the session was offline */
            CHECK(rec_wait_count(&crec, down, WAIT_MS));
        }
        CHECK_OK(send_tagged(k.c, 30, 64));
        up += 30;
        CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
        CHECK_OK(tether_client_session(k.c, &id));
        /* the instance serving it now sends too */
        CHECK_OK(srv_send_range(at[hop]->s, &id, down + 1, 10));
        down += 10;
        CHECK(rec_wait_count(&crec, down, WAIT_MS));
        tether_client_destroy(k.c); /* BYE: the instance releases the lease */
        k.c = NULL;
        cli_free(&k);
        /* and, with the client gone, the other one sends to the offline session */
        srv *other = at[hop] == &a ? &b : &a;
        CHECK_OK(srv_send_range(other->s, &id, down + 1, 5));
        down += 5;
    }
    /* the client's 90 went 1..30 to a, 31..60 to b, 61..90 to a */
    pthread_mutex_lock(&a.rec.mu);
    uint64_t na = a.rec.n;
    int a_ok = na == 60;
    for (uint64_t i = 0; a_ok && i < na; i++) {
        uint64_t want = i < 30 ? i + 1 : i + 31;
        a_ok = a.rec.seqs[i] == want && a.rec.tags[i] == want;
    }
    pthread_mutex_unlock(&a.rec.mu);
    CHECK(a_ok);
    check_range(&b.rec, 31, 60, "instance b");
    /* the server's 45 reached the client in order, each once (the last 5 wait) */
    check_range(&crec, 1, down - 5, "client");
    CHECK_EQ_U64(up, 90);
    rec_free(&crec);
    srv_free(&a);
    srv_free(&b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* b sends to a session attached to a: b's NOTIFY wakes a, which streams it.
 * Prints the latency of such a send (b's send returning to the client's
 * delivery), one at a time. */
TEST(send_from_another_instance_reaches_an_attached_session)
{
    char db[64], uri[256], cdb[512];
    CHECK(pgt_createdb("xsend", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    srv a, b;
    fleet_server(&a, uri);
    fleet_server(&b, uri);
    b.cfg.lease_ms = 600000; /* no renewal during the test: only the wake-up can deliver */
    a.cfg.lease_ms = 600000;
    CHECK_OK(srv_start(&a));
    CHECK_OK(srv_start(&b));
    cli k;
    cli_init(&k, "ws", "127.0.0.1", a.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "xsend-c.db");
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    enum { N = 20 };
    uint64_t lat[N];
    for (uint64_t i = 1; i <= N; i++) {
        uint64_t t0 = now_ms();
        CHECK_OK(srv_send_range(b.s, &id, i, 1));
        CHECK(rec_wait_count(&k.rec, i, 5000));
        lat[i - 1] = now_ms() - t0;
    }
    CHECK_EQ_INT(b.rec.opens, 0); /* it never moved */
    /* b cannot delete a session a serves: the store refuses it, nothing changes */
    uint64_t dropped = 99;
    CHECK_ERR(tether_server_session_delete(b.s, &id, &dropped), TETHER_EFENCED);
    CHECK_EQ_U64(dropped, 0);
    CHECK_OK(srv_send_range(b.s, &id, N + 1, 1));
    CHECK(rec_wait_count(&k.rec, N + 1, 5000));
    check_range(&k.rec, 1, N + 1, "client, sent by the instance it is not attached to");
    qsort(lat, N, sizeof lat[0], cmp_u64);
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
            load[0] = -1;
        }
        fclose(f);
    }
    printf("  cross-instance send latency over %d sends: p50 %llu ms, max %llu ms "
           "(load average %.2f)\n",
           N, (unsigned long long)lat[N / 2], (unsigned long long)lat[N - 1], load[0]);
    cli_free(&k);
    srv_free(&a);
    srv_free(&b);
}

/* A message added to the outbox without a wake-up (as if the notification
 * were lost: here written by SQL, as another instance's append would) is
 * found by the owner's periodic check, its lease renewal, within lease_ms/3. */
TEST(missed_wakeup_is_covered_by_the_periodic_check)
{
    char db[64], uri[256], cdb[512];
    CHECK(pgt_createdb("missed", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    srv a;
    fleet_server(&a, uri); /* lease_ms 1000: a check every 333 ms */
    CHECK_OK(srv_start(&a));
    cli k;
    cli_init(&k, "ws", "127.0.0.1", a.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "missed-c.db");
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 2, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    for (int i = 1; i <= 3; i++) {
        CHECK(pgt_exec(db,
                       "WITH s AS (UPDATE tether_sessions SET out_last = out_last + 1, "
                       "pending_count = pending_count + 1, pending_bytes = pending_bytes + 64 "
                       "WHERE role = 2 RETURNING id, out_last) "
                       "INSERT INTO tether_outbox SELECT 2, id, out_last, "
                       "decode(lpad(to_hex(out_last), 16, '0') || repeat('00', 56), 'hex') FROM s",
                       0) == 0);
        uint64_t t0 = now_ms();
        CHECK(rec_wait_count(&k.rec, (uint64_t)i, 5000));
        CHECK(now_ms() - t0 < 3000);
    }
    check_range(&k.rec, 1, 3, "client, rows added without a wake-up");
    cli_free(&k);
    srv_free(&a);
}

TEST(paused_instance_is_fenced_after_the_session_moved)
{
    const char *tether = getenv("TETHER_CLI");
    CHECK(tether != NULL);
    if (!tether) {
        return;
    }
    char db[64], uri[256], cdb[512], pfile[512], out[512];
    CHECK(pgt_createdb("fence", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    tt_path(cdb, sizeof cdb, "fence-c.db");
    tt_path(pfile, sizeof pfile, "fence.port");
    tt_path(out, sizeof out, "fence.out");
    char *argv[] = {(char *)tether, "serve", "--listen",    "127.0.0.1:0", "--db", uri,
                    "--lease-ms",   "1000",  "--port-file", pfile,         NULL};
    pid_t pa = procs_spawn(argv, out);
    int port = 0;
    for (int i = 0; i < 500 && !(port = procs_file_port(pfile)); i++) {
        sleep_ms(10);
    }
    CHECK(port > 0);
    srv b;
    fleet_server(&b, uri);
    CHECK_OK(srv_start(&b));

    /* the client's first 20 on the process a */
    cli k;
    cli_init(&k, "ws", "127.0.0.1", (unsigned)port);
    k.cfg.db_path = cdb;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 200;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 20, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* a is paused (all its threads: after kill() alone they may still read the
     * next 5 and commit them, and b then rightly starts from 25); 5 more reach
     * its socket, unread; the client leaves */
    CHECK(procs_stop(pa, 5000) == 0);
    CHECK_OK(send_tagged(k.c, 5, 64));
    sleep_ms(100);
    cli_free(&k);

    /* on b the session is refused while a's lease lasts, then taken over */
    uint64_t t0 = now_ms();
    cli_init(&k, "ws", "127.0.0.1", b.port);
    k.cfg.db_path = cdb;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 200;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 15, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(now_ms() - t0 >= 700); /* not before the lease lapsed */
    check_range(&b.rec, 21, 40, "instance b");

    /* a wakes up: the 5 in its socket are read, their cursor commit is
     * refused and a closes that connection; nothing of b's is touched */
    CHECK(kill(pa, SIGCONT) == 0);
    int fenced = 0;
    for (int i = 0; i < 500 && !fenced; i++) {
        fenced = (procs_count_lines(out, "closed (TETHER_EFENCED)") > 0);
        sleep_ms(10);
    }
    CHECK(fenced);
    long long cursor = -1;
    CHECK(pgt_query_int(db, "SELECT recv_cursor FROM tether_sessions WHERE role = 2", &cursor) ==
          0);
    CHECK_EQ_INT(cursor, 40);
    /* b still serves the session */
    CHECK_OK(send_tagged(k.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    check_range(&b.rec, 21, 45, "instance b after a woke");
    cli_free(&k);
    srv_free(&b);
    kill(pa, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500 && waitpid(pa, &status, WNOHANG) != pa; i++) {
        sleep_ms(10);
        if (i == 499) {
            kill(pa, SIGKILL);
            waitpid(pa, &status, 0);
        }
    }
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(session_moves_between_instances_exactly_once);
    RUN(send_from_another_instance_reaches_an_attached_session);
    RUN(missed_wakeup_is_covered_by_the_periodic_check);
    RUN(paused_instance_is_fenced_after_the_session_moved);
    return tt_finish();
}

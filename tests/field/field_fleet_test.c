/*
 * A fleet in the field: three `tether serve --db postgresql://... --echo`
 * processes on one private PostgreSQL (tests/support/pgtest.h), a real nginx
 * in front of them with plain round robin (no stickiness), clients spread
 * over them through nginx. One instance is killed with SIGKILL mid-stream:
 * its clients reconnect through nginx, land on the others, which take their
 * sessions over at once (the dead one's database connection is gone), and
 * every message is acknowledged; in the other direction every client
 * receives the server's messages exactly once and in order (seqs 1..n, no
 * gap, no repeat), and every one of its own messages came back as an echo.
 * Then PostgreSQL itself is restarted mid-stream under two instances: the
 * clients see their sessions close, reconnect, and nothing is lost. Last,
 * the HTTP carriage through nginx configured as docs/scaling.md says
 * (/.tether/ by client address), with the instance it reached killed.
 */
#include "field_env.h"
#include "pgtest.h"
#include "procs.h"

#define INSTANCES 3
#define CLIENTS 4
#define PER_PHASE 60 /* messages per client before and after the kill */

/* The client's deliveries: seqs exactly 1..n in order; every tag 1..want
 * among them (an echo of a message an instance delivered twice, when it was
 * killed between delivery and commit, may come twice: counted in *dups). */
static int check_client(recorder *r, uint64_t want, uint64_t *dups)
{
    pthread_mutex_lock(&r->mu);
    int ok = 1;
    uint8_t *seen = calloc(want + 1, 1);
    for (uint64_t i = 0; i < r->n; i++) {
        ok = ok && r->seqs[i] == i + 1;
        uint64_t tag = r->tags[i];
        if (tag >= 1 && tag <= want) {
            *dups += seen[tag];
            seen[tag] = 1;
        }
    }
    for (uint64_t t = 1; t <= want; t++) {
        ok = ok && seen[t];
    }
    free(seen);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Starts n `tether serve --db uri --echo` instances on free ports; their
 * output goes to <tag>N.out (out[i] when out is not NULL). Returns 0 when
 * every one printed its port. */
static int start_instances(const char *tether, const char *uri, const char *tag, int n,
                           pid_t *pid, uint16_t *port, char (*out)[512])
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        char pf[512], o[512], name[48];
        snprintf(name, sizeof name, "%s%d.port", tag, i);
        tt_path(pf, sizeof pf, name);
        snprintf(name, sizeof name, "%s%d.out", tag, i);
        tt_path(o, sizeof o, name);
        if (out) {
            snprintf(out[i], sizeof out[i], "%s", o);
        }
        char *argv[] = {(char *)tether, "serve",       "--listen", "127.0.0.1:0", "--db", (char *)uri,
                        "--echo",       "--port-file", pf,         NULL};
        pid[i] = procs_spawn(argv, o);
        int p = 0;
        for (int t = 0; t < 1000 && !(p = procs_file_port(pf)); t++) {
            sleep_ms(10);
        }
        ok = ok && p > 0;
        port[i] = (uint16_t)p;
    }
    return ok ? 0 : -1;
}

/* n `tether serve` instances on a fresh database of their own behind one
 * nginx (round robin; with http_affinity, /.tether/ by client address). */
typedef struct fleet {
    int n;
    pid_t pid[INSTANCES]; /* 0: stopped (killed by the test) */
    uint16_t port[INSTANCES];
    char out[INSTANCES][512];
    nginx ng;
} fleet;

static int fleet_up(fleet *f, const char *tether, const char *tag, int n, int http_affinity)
{
    char db[64], uri[256];
    memset(f, 0, sizeof *f);
    f->n = n;
    if (pgt_createdb(tag, db, sizeof db) != 0) {
        return -1;
    }
    pgt_uri(db, uri, sizeof uri);
    if (start_instances(tether, uri, tag, n, f->pid, f->port, f->out) != 0) {
        return -1;
    }
    f->ng.http_affinity = http_affinity;
    return nginx_start_many(&f->ng, 0, f->port, (size_t)n);
}

static void fleet_kill(fleet *f, int i)
{
    if (f->pid[i] > 0 && kill(f->pid[i], SIGKILL) == 0) {
        waitpid(f->pid[i], NULL, 0);
    }
    f->pid[i] = 0;
}

static void fleet_down(fleet *f)
{
    nginx_stop(&f->ng);
    for (int i = 0; i < f->n; i++) {
        if (f->pid[i] > 0) {
            stop_pid(f->pid[i], 5000);
        }
    }
}

/* The second half of a stream after a fault: PER_PHASE more messages from
 * each client, all acknowledged, and every client's deliveries exactly
 * 1..2*PER_PHASE in order with every echo among them (repeats of echoes
 * counted in *dups). 0 when all of that held. */
static int second_phase(cli *k, int n, uint64_t *dups)
{
    int ok = 1;
    for (int c = 0; c < n; c++) {
        ok = ok && send_tagged(k[c].c, PER_PHASE, 64) == TETHER_OK;
    }
    for (int c = 0; c < n; c++) {
        ok = ok && tether_client_wait_acked(k[c].c, WAIT_MS) == TETHER_OK;
        ok = ok && rec_wait_count(&k[c].rec, 2 * PER_PHASE, WAIT_MS);
    }
    sleep_ms(200); /* a late duplicate echo would show now */
    for (int c = 0; c < n; c++) {
        ok = ok && check_client(&k[c].rec, 2 * PER_PHASE, dups);
    }
    return ok ? 0 : -1;
}

/* PostgreSQL itself restarted mid-stream under two instances: every
 * instance's operations meet the lost connection, the sessions close, the
 * clients reconnect through nginx; once the database is back every message
 * is acknowledged and the echoes arrive exactly once in order. */
TEST(postgresql_restart_under_the_fleet_loses_nothing)
{
    const char *tether = getenv("TETHER_CLI");
    CHECK(tether != NULL);
    fleet f;
    if (!tether || fleet_up(&f, tether, "restart", 2, 0) != 0) {
        CHECK(!"the fleet started");
        return;
    }
    cli k[2];
    for (int c = 0; c < 2; c++) {
        char cdb[512], name[32];
        snprintf(name, sizeof name, "restart-c%d.db", c);
        field_cli_init(&k[c], "ws", "127.0.0.1", f.ng.port);
        k[c].cfg.db_path = tt_path(cdb, sizeof cdb, name);
        k[c].cfg.random_seed = 21 + (uint64_t)c;
        CHECK_OK(cli_start(&k[c]));
        CHECK_OK(send_tagged(k[c].c, PER_PHASE, 64));
    }
    CHECK(rec_wait_count(&k[0].rec, 10, WAIT_MS));
    pgt_stop();
    for (int c = 0; c < 2; c++) {
        CHECK_OK(send_tagged(k[c].c, PER_PHASE, 64)); /* into the clients' outboxes */
    }
    sleep_ms(300);
    CHECK(pgt_restart() == 0);
    uint64_t dups = 0;
    for (int c = 0; c < 2; c++) {
        CHECK_OK(tether_client_wait_acked(k[c].c, WAIT_MS));
        CHECK(rec_wait_count(&k[c].rec, 2 * PER_PHASE, WAIT_MS));
    }
    sleep_ms(200);
    for (int c = 0; c < 2; c++) {
        CHECK(check_client(&k[c].rec, 2 * PER_PHASE, &dups));
        /* the clients saw the sessions close and reconnected */
        CHECK(rec_saw_state(&k[c].rec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL) >= 1);
    }
    printf("  PostgreSQL restarted under 2 instances: %llu echoes repeated\n",
           (unsigned long long)dups);
    for (int c = 0; c < 2; c++) {
        cli_free(&k[c]);
    }
    fleet_down(&f);
}

TEST(three_instances_behind_nginx_one_killed_mid_stream)
{
    const char *tether = getenv("TETHER_CLI");
    CHECK(tether != NULL);
    fleet f;
    if (!tether || fleet_up(&f, tether, "fleet", INSTANCES, 0) != 0) {
        CHECK(!"the fleet started");
        return;
    }
    cli k[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        char cdb[512], name[32];
        snprintf(name, sizeof name, "fleet-c%d.db", c);
        field_cli_init(&k[c], "ws", "127.0.0.1", f.ng.port);
        k[c].cfg.db_path = tt_path(cdb, sizeof cdb, name);
        k[c].cfg.random_seed = 11 + (uint64_t)c;
        CHECK_OK(cli_start(&k[c]));
        CHECK_OK(send_tagged(k[c].c, PER_PHASE, 64));
    }
    /* mid-stream: some acknowledged, the rest in flight */
    CHECK(rec_wait_count(&k[0].rec, 10, WAIT_MS));
    int served = procs_count_lines(f.out[0], "opened");
    CHECK(served >= 1); /* round robin gave instance 0 a client */
    fleet_kill(&f, 0);
    uint64_t dups = 0;
    CHECK(second_phase(k, CLIENTS, &dups) == 0);
    /* the killed instance's sessions moved to the others, at once */
    int resumed = procs_count_lines(f.out[1], "resumed") + procs_count_lines(f.out[2], "resumed");
    CHECK(resumed >= served);
    printf("  %d sessions moved off the killed instance; %llu echoes repeated (messages the "
           "killed instance delivered but had not committed)\n",
           served, (unsigned long long)dups);
    for (int c = 0; c < CLIENTS; c++) {
        cli_free(&k[c]);
    }
    fleet_down(&f);
}

/* The HTTP carriage through the fleet, nginx configured as docs/scaling.md
 * says: WebSocket round robin, /.tether/ by client address. Clients forced
 * onto HTTP all land on one instance (one client address); it is killed
 * mid-stream, nginx sends the carriage's next requests to another instance,
 * which takes the sessions over, and every message arrives exactly once in
 * order both ways. */
TEST(http_carriage_through_the_fleet_one_instance_killed)
{
    const char *tether = getenv("TETHER_CLI");
    CHECK(tether != NULL);
    fleet f;
    if (!tether || fleet_up(&f, tether, "http", INSTANCES, 1) != 0) {
        CHECK(!"the fleet started");
        return;
    }
    enum { HTTP_CLIENTS = 2 };
    cli k[HTTP_CLIENTS];
    for (int c = 0; c < HTTP_CLIENTS; c++) {
        char cdb[512], name[32];
        snprintf(name, sizeof name, "http-c%d.db", c);
        field_cli_init(&k[c], "ws", "127.0.0.1", f.ng.port);
        k[c].cfg.transport = TETHER_TRANSPORT_HTTP;
        k[c].cfg.db_path = tt_path(cdb, sizeof cdb, name);
        k[c].cfg.random_seed = 31 + (uint64_t)c;
        CHECK_OK(cli_start(&k[c]));
        CHECK_OK(send_tagged(k[c].c, PER_PHASE, 64));
    }
    for (int c = 0; c < HTTP_CLIENTS; c++) { /* both carriages open and carrying */
        CHECK(rec_wait_count(&k[c].rec, 10, WAIT_MS));
    }
    /* the instance the carriages reached: the only one that opened sessions */
    int victim = 0, holders = 0;
    for (int i = 0; i < INSTANCES; i++) {
        if (procs_count_lines(f.out[i], "opened") > 0) {
            victim = i;
            holders++;
        }
    }
    CHECK(holders == 1); /* one client address, one instance */
    fleet_kill(&f, victim);
    uint64_t dups = 0;
    CHECK(second_phase(k, HTTP_CLIENTS, &dups) == 0);
    for (int c = 0; c < HTTP_CLIENTS; c++) {
        CHECK(rec_saw_state(&k[c].rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL) >= 2);
    }
    int resumed = 0;
    for (int i = 0; i < INSTANCES; i++) {
        resumed += i == victim ? 0 : procs_count_lines(f.out[i], "resumed");
    }
    CHECK(resumed >= HTTP_CLIENTS);
    printf("  HTTP carriage: %d sessions moved off the killed instance; %llu echoes repeated\n",
           resumed, (unsigned long long)dups);
    for (int c = 0; c < HTTP_CLIENTS; c++) {
        cli_free(&k[c]);
    }
    fleet_down(&f);
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(three_instances_behind_nginx_one_killed_mid_stream);
    RUN(postgresql_restart_under_the_fleet_loses_nothing);
    RUN(http_carriage_through_the_fleet_one_instance_killed);
    return tt_finish();
}

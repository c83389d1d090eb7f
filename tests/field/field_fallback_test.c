/*
 * Field: the HTTP carriage delivering where WebSocket cannot, against the real
 * things started here on loopback (issue 10): squid with its stock rules
 * refusing CONNECT (fallback, 10,000 messages exactly once across a SIGKILL
 * of the sending process); squid as a reverse proxy stripping Upgrade (426,
 * fallback); nginx buffering answers with gzip on (long polls in both
 * directions, latency bounded); nginx killing held polls; the chaos relay
 * cutting connections mid-poll; a server backlog drained through polls.
 * Helpers in field_env.h.
 */
#include "chaos/chaos.h"
#include "field_env.h"
#include "procs.h"

#define TOTAL 10000

/* CONNECTED over the carriage, per the client's last state report. */
static int connected_http(void *arg)
{
    cli *k = arg;
    tether_state_info in;
    return tether_client_last_state(k->c, &in, NULL, 0) == TETHER_OK &&
           in.state == TETHER_STATE_CONNECTED && in.transport == TETHER_TRANSPORT_HTTP;
}

/* ------------------------------------------------------------------------ */
/* squid, stock rules: CONNECT refused, the carriage forwarded               */
/* ------------------------------------------------------------------------ */

/* The child: an AUTO client through the proxy on a SQLite outbox, sending
 * TOTAL messages at a steady pace, then waiting to be killed. */
static int child_send(const char *url, const char *proxy, const char *db)
{
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url;
    cfg.db_path = db;
    cfg.proxy = proxy;
    cfg.transport = TETHER_TRANSPORT_AUTO;
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 200;
    if (client_create_start(&cfg, &c) != TETHER_OK) {
        return 3;
    }
    for (int i = 0; i < TOTAL / 50; i++) {
        send_tagged(c, 50, 64);
        sleep_ms(2); /* a steady stream, so the kill lands mid-stream */
    }
    sleep(60); /* the parent kills us long before this */
    return 4;
}

TEST(squid_stock_rules_fallback_10000_exactly_once_across_a_sigkill)
{
    squid sq;
    if (squid_start(&sq, NULL, NULL) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    char sdb[600], cdb[600], url[128], proxy[64];
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "squid-s.db");
    /* ACKs every 1000 messages only: a kill between two leaves messages the
     * server stored but the client never heard about */
    v.cfg.ack_every = 1000;
    v.cfg.ack_delay_ms = 10000;
    CHECK_OK(srv_start(&v));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", v.port);
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    tt_path(cdb, sizeof cdb, "squid-c.db");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "field_fallback_test", "--child-send", url, proxy, cdb,
              (char *)NULL);
        _exit(127);
    }
    CHECK(rec_wait_count(&v.rec, 2000, WAIT_MS));
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    uint64_t delivered_at_kill = rec_count(&v.rec);
    CHECK(delivered_at_kill < TOTAL); /* the kill landed mid-stream */

    /* a new process on the same outbox: the verdict stored by the first one starts it on
       HTTP at once (no refused CONNECT first); it resends the tail and sends the rest */
    cli k;
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = cdb;
    k.cfg.proxy = proxy;
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    CHECK_OK(cli_start(&k));
    uint64_t last = 0, acked = 0;
    CHECK_OK(tether_client_last_seq(k.c, &last));
    CHECK_OK(tether_client_acked(k.c, &acked));
    fprintf(stderr, "  at the kill: %llu assigned, %llu acked, %llu delivered to the server\n",
            (unsigned long long)last, (unsigned long long)acked,
            (unsigned long long)delivered_at_kill);
    CHECK(last >= delivered_at_kill && last <= TOTAL);
    CHECK_OK(send_tagged(k.c, TOTAL - last, 64));
    CHECK(wait_until(connected_http, &k, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, TOTAL, "server, through squid over HTTP, across a SIGKILL");
    CHECK(v.rec.last_open_resumed == 1);
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, NULL, NULL, NULL), 0);
    CHECK(squid_log_count(&sq, "CONNECT 127.0.0.1:") >= 1); /* the first process tried */
    CHECK(squid_log_count(&sq, "/.tether/v1/send") >= 2);
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

/* ------------------------------------------------------------------------ */
/* squid as a reverse proxy stripping Upgrade: 426, fallback                 */
/* ------------------------------------------------------------------------ */

TEST(squid_stripping_upgrade_426_falls_back_and_delivers)
{
    srv v;
    squid sq;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    if (squid_start_reverse(&sq, v.port) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        srv_free(&v);
        return;
    }
    field_cli_init(&k, "ws", "127.0.0.1", sq.port);
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, &k, WAIT_MS));
    int err = 0, http = 0;
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, &http, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EHTTP");
    CHECK_EQ_INT(http, 426);
    CHECK_OK(send_tagged(k.c, 1000, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 1000));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 1000, WAIT_MS));
    rec_check_exact(&v.rec, 1000, "server behind squid stripping Upgrade");
    rec_check_exact(&k.rec, 1000, "client behind squid stripping Upgrade");
    CHECK(squid_log_count(&sq, "/.tether/v1/poll") >= 1);
    cli_free(&k);
    squid_stop(&sq);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */
/* nginx: buffering and gzip on, polls killed by proxy_read_timeout          */
/* ------------------------------------------------------------------------ */

/* The server behind nginx with this location's extra settings, and an HTTP
 * client in front. Returns 0 when both run. */
static int behind_nginx(srv *v, nginx *ng, cli *k, unsigned read_timeout_s, const char *extra)
{
    memset(ng, 0, sizeof *ng);
    ng->read_timeout_s = read_timeout_s;
    ng->extra = extra;
    srv_init(v);
    if (srv_start(v) != TETHER_OK) {
        return -1;
    }
    if (nginx_start(ng, 0, v->port) != 0) {
        tt_fail(__FILE__, __LINE__, "nginx did not start");
        return -1;
    }
    field_cli_init(k, "ws", "127.0.0.1", ng->port);
    k->cfg.transport = TETHER_TRANSPORT_HTTP;
    return cli_start(k) == TETHER_OK && wait_until(connected_http, k, WAIT_MS) ? 0 : -1;
}

static int nginx_log_count(nginx *ng, const char *needle)
{
    char path[700];
    snprintf(path, sizeof path, "%s/access.log", ng->dir);
    return procs_count_lines(path, needle);
}

#define LAT_ROUNDS 20
#define LAT_BOUND_MS 3000 /* a failure guard, not a benchmark: a poll held to its end is 25 s */

TEST(nginx_buffering_gzip_long_polls_both_directions_bounded_latency)
{
    srv v;
    nginx ng;
    cli k;
    if (behind_nginx(&v, &ng, &k, 0,
                     "proxy_buffering on; proxy_request_buffering on; gzip on; gzip_types *; "
                     "gzip_proxied any; gzip_min_length 1;") != 0) {
        CHECK(0);
        goto out;
    }
    uint64_t worst_up = 0, worst_down = 0;
    for (uint64_t i = 1; i <= LAT_ROUNDS; i++) {
        /* up: one message, until the server has it */
        uint64_t t0 = now_ms();
        CHECK_OK(send_tagged(k.c, 1, 64));
        CHECK(rec_wait_count(&v.rec, i, WAIT_MS));
        uint64_t up = now_ms() - t0;
        /* down: one message, until the client has it (a poll was held for it) */
        sleep_ms(20);
        t0 = now_ms();
        CHECK_OK(srv_send_tagged(v.s, k.c, i, 1));
        CHECK(rec_wait_count(&k.rec, i, WAIT_MS));
        uint64_t down = now_ms() - t0;
        worst_up = up > worst_up ? up : worst_up;
        worst_down = down > worst_down ? down : worst_down;
    }
    fprintf(stderr, "  behind nginx (buffering, gzip): worst latency up %llu ms, down %llu ms\n",
            (unsigned long long)worst_up, (unsigned long long)worst_down);
    CHECK(worst_up < LAT_BOUND_MS);
    CHECK(worst_down < LAT_BOUND_MS);
    /* then a bulk both ways */
    CHECK_OK(send_tagged(k.c, 2000, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, LAT_ROUNDS + 1, 2000));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, LAT_ROUNDS + 2000, WAIT_MS));
    rec_check_exact(&v.rec, LAT_ROUNDS + 2000, "server behind a buffering nginx");
    rec_check_exact(&k.rec, LAT_ROUNDS + 2000, "client behind a buffering nginx");
    CHECK(nginx_log_count(&ng, "/.tether/v1/poll") >= LAT_ROUNDS);
out:
    cli_free(&k);
    nginx_stop(&ng);
    srv_free(&v);
}

TEST(nginx_read_timeout_kills_polls_nothing_lost)
{
    srv v;
    nginx ng;
    cli k;
    /* nginx gives up on the server after 1 s without a byte: every held poll dies with 504 */
    if (behind_nginx(&v, &ng, &k, 1, NULL) != 0) {
        CHECK(0);
        goto out;
    }
    /* pauses above 1 s leave a poll held long enough for nginx to kill it; the
     * shorter ones put frames on a poll that follows a killed one */
    static const unsigned pause_ms[] = {300, 2200, 450, 1500, 300};
    uint64_t sent = 0;
    for (size_t i = 0; i < sizeof pause_ms / sizeof pause_ms[0]; i++) {
        CHECK_OK(send_tagged(k.c, 100, 64));
        CHECK_OK(srv_send_tagged(v.s, k.c, sent + 1, 100));
        sent += 100;
        sleep_ms(pause_ms[i]);
    }
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, sent, WAIT_MS));
    rec_check_exact(&v.rec, sent, "server, polls killed by nginx");
    rec_check_exact(&k.rec, sent, "client, polls killed by nginx");
    int killed = nginx_log_count(&ng, "\" 504 ");
    fprintf(stderr, "  %llu messages each way, %d polls killed by nginx (504)\n",
            (unsigned long long)sent, killed);
    CHECK(killed >= 1);
out:
    cli_free(&k);
    nginx_stop(&ng);
    srv_free(&v);
}

TEST(nginx_hiding_upgrade_in_the_101_falls_back_and_delivers)
{
    /* a proxy that passes the 101 but drops its Upgrade header (a rewriting
     * filter): EHANDSHAKE on a 101, then the carriage through the same proxy */
    srv v;
    nginx ng;
    cli k;
    memset(&ng, 0, sizeof ng);
    ng.extra = "proxy_hide_header Upgrade;";
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    if (nginx_start(&ng, 0, v.port) != 0) {
        tt_fail(__FILE__, __LINE__, "nginx did not start");
        srv_free(&v);
        return;
    }
    field_cli_init(&k, "ws", "127.0.0.1", ng.port);
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, &k, WAIT_MS));
    int err = 0, http = 0;
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, &http, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EHANDSHAKE");
    CHECK_EQ_INT(http, 101);
    CHECK_OK(send_tagged(k.c, 1000, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 1000));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 1000, WAIT_MS));
    rec_check_exact(&v.rec, 1000, "server behind nginx hiding Upgrade");
    rec_check_exact(&k.rec, 1000, "client behind nginx hiding Upgrade");
    cli_free(&k);
    nginx_stop(&ng);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */
/* The chaos relay cutting every connection while polls are held             */
/* ------------------------------------------------------------------------ */

TEST(relay_cuts_during_polls_nothing_lost)
{
    srv v;
    cli k;
    char err[200] = "", url[128];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    tether__chaos_cfg rc;
    memset(&rc, 0, sizeof rc);
    rc.upstream_host = "127.0.0.1";
    rc.upstream_port = v.port;
    rc.seed = 9;
    tether__chaos *relay = NULL;
    CHECK_EQ_INT(tether__chaos_start(&rc, &relay, err, sizeof err), 0);
    if (!relay) {
        srv_free(&v);
        return;
    }
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(relay));
    k.cfg.url = url;
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, &k, WAIT_MS));
    static const char *cuts[] = {"cut rst", "cut fin", "cut rst after 300 bytes down",
                                 "cut fin after 40 bytes up", "cut rst after 1000 bytes both"};
    uint64_t sent = 0;
    for (int round = 0; round < 15; round++) {
        CHECK_OK(send_tagged(k.c, 200, 64));
        CHECK_OK(srv_send_tagged(v.s, k.c, sent + 1, 200));
        sent += 200;
        sleep_ms(60 + (unsigned)(round % 4) * 40);
        CHECK_EQ_INT(tether__chaos_command(relay, cuts[round % 5], err, sizeof err), 0);
    }
    CHECK_EQ_INT(tether__chaos_command(relay, "clear", err, sizeof err), 0);
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, sent, WAIT_MS));
    rec_check_exact(&v.rec, sent, "server, relay cutting the carriage");
    rec_check_exact(&k.rec, sent, "client, relay cutting the carriage");
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */
/* Server to client over HTTP: an offline backlog drained through polls      */
/* ------------------------------------------------------------------------ */

#define BACKLOG 6000

TEST(server_backlog_drained_through_polls)
{
    srv v;
    cli k;
    char cdb[600], sdb[600];
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "backlog-s.db");
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "backlog-c.db");
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, &k, WAIT_MS));
    /* the client goes away; the server piles up a backlog for its session */
    tether_client_destroy(k.c);
    k.c = NULL;
    tether_client *probe = NULL;
    CHECK_OK(tether_client_create(&k.cfg, &probe)); /* not started: only reads the store */
    CHECK_OK(srv_send_tagged(v.s, probe, 1, BACKLOG));
    tether_client_destroy(probe);
    CHECK_EQ_U64(rec_count(&k.rec), 0);
    /* back over HTTP: the backlog (about 80 bodies' worth of 64 KiB) comes through polls */
    uint64_t t0 = now_ms();
    CHECK_OK(client_create_start(&k.cfg, &k.c));
    CHECK(rec_wait_count(&k.rec, BACKLOG, WAIT_MS));
    fprintf(stderr, "  backlog of %d drained over HTTP in %llu ms\n", BACKLOG,
            (unsigned long long)(now_ms() - t0));
    rec_check_exact(&k.rec, BACKLOG, "client, server backlog drained through polls");
    CHECK(connected_http(&k));
    cli_free(&k);
    srv_free(&v);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 5 && strcmp(argv[1], "--child-send") == 0) {
        return child_send(argv[2], argv[3], argv[4]);
    }
    RUN(squid_stock_rules_fallback_10000_exactly_once_across_a_sigkill);
    RUN(squid_stripping_upgrade_426_falls_back_and_delivers);
    RUN(nginx_buffering_gzip_long_polls_both_directions_bounded_latency);
    RUN(nginx_read_timeout_kills_polls_nothing_lost);
    RUN(nginx_hiding_upgrade_in_the_101_falls_back_and_delivers);
    RUN(relay_cuts_during_polls_nothing_lost);
    RUN(server_backlog_drained_through_polls);
    return tt_finish();
}

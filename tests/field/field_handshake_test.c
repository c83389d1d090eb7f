/*
 * Field: the handshake diagnostics a client reports, against scripted
 * loopback peers (fake.c): refused, DNS failure, timeouts, TLS to a plain
 * server, HTTP statuses and Retry-After, bad 101 answers, headers sent,
 * stalls and dead links. Helpers in field_env.h.
 */
#include "field_env.h"

/* Handshake diagnostics                                                     */
/* ------------------------------------------------------------------------ */

TEST(refused_is_ECONNREFUSED)
{
    cli k;
    slog_ent d;
    field_cli_init(&k, "ws", "127.0.0.1", free_port());
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ECONNREFUSED");
    CHECK(contains(d.detail, "refused"));
    slog_ent r;
    CHECK(slog_get(TETHER_STATE_RECONNECTING, 0, &r));
    CHECK_EQ_INT(r.error, TETHER_ECONNREFUSED); /* retried */
    cli_free(&k);
}

/* Runs in a child with a private mount namespace whose resolv.conf points at
 * 127.0.0.1, so the lookup of a .invalid name never leaves the machine. */
static int dns_child(void)
{
    char rc_path[256];
    snprintf(rc_path, sizeof rc_path, "%s", getenv("FIELD_RESOLV"));
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(rc_path, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0) {
        fprintf(stderr, "dns child: cannot isolate the resolver: %s\n", strerror(errno));
        return 77;
    }
    cli k;
    slog_ent d;
    field_cli_init(&k, "wss", "tether-test.invalid", 443);
    int ok = fail_once(&k, &d);
    cli_free(&k);
    if (!ok) {
        return 3;
    }
    fprintf(stderr, "dns child: %s: %s\n", tether_err_name(d.error), d.detail);
    return d.error == TETHER_EDNS && strstr(d.detail, "tether-test.invalid") ? 0 : 4;
}

TEST(dns_failure_is_EDNS)
{
    char rc_path[600];
    tt_path(rc_path, sizeof rc_path, "resolv.conf");
    FILE *f = fopen(rc_path, "w");
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    fputs("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", f);
    fclose(f);
    setenv("FIELD_RESOLV", rc_path, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "field_handshake_test", "--dns-child", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        fprintf(stderr, "  SKIP dns_failure_is_EDNS: no private mount namespace here, and the "
                        "test will not send a DNS query off the machine\n");
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(timeout_waiting_for_the_answer_is_ECONNECT_TIMEOUT)
{
    fake_server *f = fake_start(FAKE_SILENT, 0, NULL);
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    cli k;
    slog_ent d;
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    k.cfg.connect_timeout_ms = 1000;
    uint64_t t0 = now_ms();
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ECONNECT_TIMEOUT");
    CHECK(contains(d.detail, "waiting for the answer to the upgrade request"));
    CHECK(d.at_ms - t0 >= 900 && d.at_ms - t0 < 4000);
    cli_free(&k);
    fake_stop(f);
}

TEST(timeout_in_tcp_connect_is_ECONNECT_TIMEOUT)
{
    uint16_t port = 0;
    int fds[4];
    CHECK_EQ_INT(backlog_full_listener(&port, fds), 0);
    cli k;
    slog_ent d;
    field_cli_init(&k, "ws", "127.0.0.1", port);
    k.cfg.connect_timeout_ms = 1000;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ECONNECT_TIMEOUT");
    CHECK(contains(d.detail, "within 1000 ms"));
    fprintf(stderr, "  (backlog-full listener: %s)\n", d.detail);
    cli_free(&k);
    backlog_close(fds);
}

TEST(tls_to_a_plain_server_is_ETLS)
{
    fake_server *f = fake_start(FAKE_NOT_TLS, 0, NULL);
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    cli k;
    slog_ent d;
    field_cli_init(&k, "wss", "127.0.0.1", fake_port(f));
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ETLS");
    cli_free(&k);
    fake_stop(f);
}

static void status_case(int status, int permanent)
{
    fake_server *f = fake_start(FAKE_STATUS, status, NULL);
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    cli k;
    slog_ent d, last;
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EHTTP");
    CHECK_EQ_INT(d.http, status);
    CHECK_EQ_INT(d.proxy, 0);
    char want[64];
    snprintf(want, sizeof want, "HTTP %d", status);
    CHECK(contains(d.detail, want));
    CHECK(slog_get(TETHER_STATE_STOPPED, 0, &last));
    if (permanent) {
        CHECK_EQ_INT(last.error, TETHER_EHTTP);
        CHECK_EQ_INT(last.http, status);
        CHECK_EQ_INT(slog_count(TETHER_STATE_RECONNECTING, ANY), 0);
    } else {
        CHECK_EQ_INT(last.error, TETHER_EGIVEUP);
        CHECK_EQ_INT(slog_count(TETHER_STATE_RECONNECTING, ANY), 1);
    }
    tether_state_info info;
    CHECK_OK(tether_client_last_state(k.c, &info, NULL, 0));
    CHECK_EQ_INT(info.state, TETHER_STATE_STOPPED);
    if (tt_failed_checks) {
        fprintf(stderr, "  (with HTTP %d)\n", status);
    }
    cli_free(&k);
    fake_stop(f);
}

TEST(http_statuses_are_reported)
{
    status_case(401, 1);
    status_case(403, 1);
    status_case(404, 0);
    status_case(426, 0);
    status_case(429, 0);
    status_case(503, 0);
    status_case(502, 0);
}

TEST(retry_after_is_honoured_in_the_backoff)
{
    /* delta-seconds on a 429 */
    fake_server *f = fake_start(FAKE_STATUS, 429, "Retry-After: 2\r\n");
    cli k;
    slog_ent r, d1, d2;
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    CHECK(slog_get(TETHER_STATE_RECONNECTING, 0, &r));
    CHECK_EQ_INT(r.http, 429);
    CHECK_EQ_U64(r.retry_after, 2000);
    CHECK(r.retry_in >= 2000);
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 0, &d1));
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 1, &d2));
    CHECK(d2.at_ms - d1.at_ms >= 1900); /* the second attempt waited as asked */
    CHECK_EQ_U64(d1.retry_after, 2000);
    cli_free(&k);
    fake_stop(f);

    /* an HTTP-date on a 503, and retry_after_max_ms bounding a huge value */
    char extra[128];
    time_t at = time(NULL) + 3;
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(extra, sizeof extra, "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    f = fake_start(FAKE_STATUS, 503, extra);
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_RECONNECTING, ANY, 1, WAIT_MS));
    CHECK(slog_get(TETHER_STATE_RECONNECTING, 0, &r));
    CHECK(r.retry_after >= 1000 && r.retry_after <= 3000);
    CHECK(r.retry_in >= r.retry_after);
    cli_free(&k);
    fake_stop(f);

    f = fake_start(FAKE_STATUS, 503, "Retry-After: 3600\r\n");
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    k.cfg.backoff_max_attempts = 1;
    k.cfg.retry_after_max_ms = 1500;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    CHECK(slog_get(TETHER_STATE_RECONNECTING, 0, &r));
    CHECK_EQ_U64(r.retry_after, 3600000);
    CHECK_EQ_U64(r.retry_in, 1500);
    cli_free(&k);
    fake_stop(f);
}

static void bad_101(fake_mode mode, const char *words, int http)
{
    fake_server *f = fake_start(mode, 0, NULL);
    cli k;
    slog_ent d;
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EHANDSHAKE");
    CHECK_EQ_INT(d.http, http); /* 101: mangled on the path (the fallback's rule) */
    CHECK(contains(d.detail, words));
    CHECK_EQ_INT(slog_count(TETHER_STATE_CONNECTED, ANY), 0);
    cli_free(&k);
    fake_stop(f);
}

TEST(bad_101_answers_are_EHANDSHAKE)
{
    bad_101(FAKE_BAD_ACCEPT, "Sec-WebSocket-Accept does not match", 101);
    bad_101(FAKE_CONN_REWRITE, "Connection header", 101);
    bad_101(FAKE_NO_PROTOCOL, "did not choose the tether.v1 subprotocol", 0);
    bad_101(FAKE_OTHER_PROTOCOL, "subprotocol other than tether.v1", 0);
}

TEST(origin_and_headers_are_sent)
{
    fake_server *f = fake_start(FAKE_STATUS, 403, NULL);
    cli k;
    slog_ent d;
    char req[4096];
    const char *hdrs[] = {"Authorization: Bearer t0k", "X-Tenant: blue", NULL};
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    k.cfg.origin = "https://app.example";
    k.cfg.headers = hdrs;
    CHECK(fail_once(&k, &d));
    fake_last_request(f, req, sizeof req);
    CHECK(contains(req, "Authorization: Bearer t0k\r\n"));
    CHECK(contains(req, "X-Tenant: blue\r\n"));
    CHECK(strcasestr(req, "Origin: https://app.example\r\n") != NULL);
    CHECK(strcasestr(req, "Sec-WebSocket-Protocol: tether.v1") != NULL);
    cli_free(&k);
    /* by default no Origin header is sent */
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    CHECK(fail_once(&k, &d));
    fake_last_request(f, req, sizeof req);
    CHECK(strcasestr(req, "\r\nOrigin:") == NULL);
    cli_free(&k);
    fake_stop(f);
}

TEST(stalled_after_upgrade_is_ESTALLED_then_resumes)
{
    srv v;
    cli k;
    char db[600];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    relay *r = relay_start(v.port);
    relay_stall_after_upgrade(r, 1);
    field_cli_init(&k, "ws", "127.0.0.1", relay_port(r));
    k.cfg.db_path = tt_path(db, sizeof db, "stall-c.db");
    k.cfg.welcome_timeout_ms = 800;
    k.cfg.backoff_base_ms = 100;
    k.cfg.backoff_cap_ms = 300;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 200, 64));
    CHECK(slog_wait(TETHER_STATE_DISCONNECTED, ANY, 2, WAIT_MS));
    slog_ent d, c0;
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 0, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ESTALLED");
    CHECK(contains(d.detail, "800 ms"));
    CHECK(slog_get(TETHER_STATE_CONNECTING, 0, &c0));
    CHECK(d.at_ms - c0.at_ms >= 700 && d.at_ms - c0.at_ms < 3000);
    CHECK(slog_count(TETHER_STATE_RECONNECTING, ANY) >= 1); /* keeps trying, with backoff */
    /* the path heals: the session resumes with nothing lost */
    relay_stall_after_upgrade(r, 0);
    CHECK_OK(send_tagged(k.c, 100, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&v.rec, 300, WAIT_MS));
    rec_check_exact(&v.rec, 300, "server after the stall");
    cli_free(&k);
    relay_stop(r);
    srv_free(&v);
}

TEST(dead_link_is_detected_by_ping_and_nothing_is_lost)
{
    srv v;
    cli k;
    char db[600];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    relay *r = relay_start(v.port);
    field_cli_init(&k, "ws", "127.0.0.1", relay_port(r));
    k.cfg.db_path = tt_path(db, sizeof db, "dead-c.db");
    k.cfg.ping_interval_ms = 1000;
    k.cfg.pong_timeout_ms = 1000;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 300, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* the path turns into a black hole mid-stream */
    relay_blackhole(r, 1);
    uint64_t t0 = now_ms();
    CHECK_OK(send_tagged(k.c, 300, 64));
    CHECK(slog_wait(TETHER_STATE_DISCONNECTED, ANY, 1, 10000));
    slog_ent d;
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 0, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EPING");
    CHECK(d.at_ms - t0 <= 1000 + 1000 + 2500); /* interval + timeout, whole seconds, slack */
    relay_blackhole(r, 0);
    relay_cut_all(r); /* the dead connections' other ends */
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&v.rec, 600, WAIT_MS));
    rec_check_exact(&v.rec, 600, "server after the dead link");
    cli_free(&k);
    relay_stop(r);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "--dns-child") == 0) {
        return dns_child();
    }
    RUN(refused_is_ECONNREFUSED);
    RUN(dns_failure_is_EDNS);
    RUN(timeout_waiting_for_the_answer_is_ECONNECT_TIMEOUT);
    RUN(timeout_in_tcp_connect_is_ECONNECT_TIMEOUT);
    RUN(tls_to_a_plain_server_is_ETLS);
    RUN(http_statuses_are_reported);
    RUN(retry_after_is_honoured_in_the_backoff);
    RUN(bad_101_answers_are_EHANDSHAKE);
    RUN(origin_and_headers_are_sent);
    RUN(stalled_after_upgrade_is_ESTALLED_then_resumes);
    RUN(dead_link_is_detected_by_ping_and_nothing_is_lost);
    return tt_finish();
}

/*
 * Field connectivity, against the real things where they can run here: TLS
 * with certificates made by the openssl command, a real squid with Debian's
 * stock rules, a real nginx reverse proxy, and scripted loopback peers for the
 * failures real servers and proxies produce (tests/field/). Every outcome is
 * observed through the public API: state reports, http_status, proxy_status,
 * retry_after_ms, tether_client_last_state().
 *
 * Port 443: squid's stock rules let CONNECT through only to port 443, so the
 * squid tests bind the tether server to 127.0.0.1:443. That needs root (or a
 * lowered net.ipv4.ip_unprivileged_port_start) and a free port 443; when
 * either is missing those tests fail with a message saying so.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ext.h"
#include "fake.h"
#include "harness.h"
#include "itest.h"
#include "statelog.h"
#include "transport/proxy.h"

#define WAIT_MS 20000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* Clients and servers (itest.h); states go to the state log (statelog.h)    */
/* ------------------------------------------------------------------------ */

/* A client of the field tests: direct unless a test says otherwise, short backoff. */
static void field_cli_init(cli *k, const char *scheme, const char *host, unsigned port)
{
    cli_init(k, scheme, host, port);
    k->cfg.proxy = ""; /* direct unless a test says otherwise, whatever the environment */
    k->cfg.backoff_base_ms = 20;
    k->cfg.backoff_cap_ms = 100;
    k->cfg.connect_timeout_ms = 5000;
    k->cfg.random_seed = 11;
}

/* A client to a fake peer that must fail: returns the first DISCONNECTED report. */
static int fail_once(cli *k, slog_ent *d)
{
    k->cfg.backoff_max_attempts = 1;
    if (cli_start(k) != TETHER_OK) {
        return 0;
    }
    int ok = slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS);
    return ok && slog_get(TETHER_STATE_DISCONNECTED, 0, d);
}

static int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  '%s' does not contain '%s'\n", hay, needle);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Pure helpers: proxy settings, no_proxy, Retry-After, HTTP scraps          */
/* ------------------------------------------------------------------------ */

TEST(proxy_spec_parsing)
{
    tether__proxy p;
    CHECK_OK(tether__proxy_parse("http://proxy.example:3128", &p));
    CHECK_EQ_STR(p.host, "proxy.example");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_EQ_STR(p.user, "");
    CHECK_OK(tether__proxy_parse("http://al%40ice:p%3Ass@127.0.0.1:8080/", &p));
    CHECK_EQ_STR(p.user, "al@ice");
    CHECK_EQ_STR(p.pass, "p:ss");
    CHECK_EQ_STR(p.host, "127.0.0.1");
    CHECK_OK(tether__proxy_parse("[::1]:3128", &p));
    CHECK_EQ_STR(p.host, "::1");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_OK(tether__proxy_parse("proxy", &p));
    CHECK_EQ_INT(p.port, 80);
    CHECK_ERR(tether__proxy_parse("https://proxy:443", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("socks5://proxy:1080", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:0", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:99999", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:80/path", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://u:%zz@proxy:80", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("", &p), TETHER_ECONFIG);
    char auth[200];
    CHECK_OK(tether__proxy_parse("http://u:pw@h:1", &p));
    tether__proxy_auth(&p, auth, sizeof auth);
    CHECK_EQ_STR(auth, "u:pw");
    char b64[64];
    CHECK_EQ_INT(tether__base64("alice:secret", 12, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "YWxpY2U6c2VjcmV0");
    CHECK_EQ_INT(tether__base64("ab", 2, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "YWI=");
}

static const char *fake_env_vals[8][2];

static const char *fake_getenv(const char *name)
{
    for (int i = 0; i < 8 && fake_env_vals[i][0]; i++) {
        if (strcmp(fake_env_vals[i][0], name) == 0) {
            return fake_env_vals[i][1];
        }
    }
    return NULL;
}

static void fake_env(const char *a, const char *av, const char *b, const char *bv)
{
    memset(fake_env_vals, 0, sizeof fake_env_vals);
    fake_env_vals[0][0] = a;
    fake_env_vals[0][1] = av;
    fake_env_vals[1][0] = b;
    fake_env_vals[1][1] = bv;
}

TEST(proxy_from_env_and_no_proxy)
{
    tether__proxy p;
    fake_env("https_proxy", "http://sq:3128", "no_proxy", "localhost,.corp.example, 10.0.0.7");
    CHECK_EQ_INT(tether__proxy_from_env(1, "api.example", fake_getenv, &p), 1);
    CHECK_EQ_STR(p.host, "sq");
    CHECK_EQ_INT(p.from_env, 1);
    CHECK_EQ_STR(p.env_name, "https_proxy");
    CHECK_EQ_INT(tether__proxy_from_env(0, "api.example", fake_getenv, &p), 0); /* ws: http_proxy */
    CHECK_EQ_INT(tether__proxy_from_env(1, "localhost", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "a.corp.example", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "corp.example", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "notcorp.example", fake_getenv, &p), 1);
    CHECK_EQ_INT(tether__proxy_from_env(1, "10.0.0.7", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "10.0.0.70", fake_getenv, &p), 1);
    fake_env("HTTPS_PROXY", "sq2:8080", "NO_PROXY", "*");
    CHECK_EQ_INT(tether__proxy_from_env(1, "anything", fake_getenv, &p), 0);
    fake_env("HTTPS_PROXY", "sq2:8080", NULL, NULL);
    CHECK_EQ_INT(tether__proxy_from_env(1, "anything", fake_getenv, &p), 1);
    CHECK_EQ_INT(p.port, 8080);
    /* HTTP_PROXY (upper case) is ignored, as curl does (CGI sets it from a header) */
    fake_env("HTTP_PROXY", "evil:1", NULL, NULL);
    CHECK_EQ_INT(tether__proxy_from_env(0, "anything", fake_getenv, &p), 0);
    fake_env("http_proxy", "http://sq:3128", "no_proxy", "example.com:443");
    CHECK_EQ_INT(tether__proxy_from_env(0, "example.com", fake_getenv, &p), 0);
    fake_env("http_proxy", "https://sq:3128", NULL, NULL);
    CHECK_ERR(tether__proxy_from_env(0, "example.com", fake_getenv, &p), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "http_proxy") != NULL);
    CHECK_EQ_INT(tether__no_proxy_match("[::1]", "::1"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("", "x"), 0);
}

TEST(retry_after_values)
{
    time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    CHECK_EQ_U64(tether__retry_after_ms("120", now), 120000);
    CHECK_EQ_U64(tether__retry_after_ms(" 2 ", now), 2000);
    CHECK_EQ_U64(tether__retry_after_ms("0", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:50:07 GMT", now), 30000);
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:49:00 GMT", now), 0); /* past */
    CHECK_EQ_U64(tether__retry_after_ms("soon", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("12abc", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms(NULL, now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("99999999999", now), UINT32_MAX);
}

TEST(http_response_scraps)
{
    const char *r = "HTTP/1.1 407 Proxy Authentication Required\r\nServer: squid\r\n"
                    "Proxy-Authenticate: Basic realm=\"x\"\r\nRetry-After:  5 \r\n\r\nbody";
    char v[64];
    CHECK_EQ_INT(tether__http_status(r, strlen(r)), 407);
    CHECK_EQ_INT(tether__http_status("HTTP/1.0 200 OK\r\n", 17), 200);
    CHECK_EQ_INT(tether__http_status("HTTP/1.1 20", 11), 0);
    CHECK_EQ_INT(tether__http_status("SSH-2.0-x\r\n", 11), 0);
    CHECK_EQ_INT(tether__http_header(r, strlen(r), "proxy-authenticate", v, sizeof v), 1);
    CHECK_EQ_STR(v, "Basic realm=\"x\"");
    CHECK_EQ_INT(tether__http_header(r, strlen(r), "Retry-After", v, sizeof v), 1);
    CHECK_EQ_STR(v, "5");
    CHECK_EQ_INT(tether__http_header(r, strlen(r), "body", v, sizeof v), 0);
    CHECK_EQ_INT(tether__http_header(r, strlen(r), "Server", v, sizeof v), 1);
}

/* ------------------------------------------------------------------------ */
/* wss: verification on by default                                           */
/* ------------------------------------------------------------------------ */

static certs C;

static int need_certs(void)
{
    if (C.ca[0]) {
        return 1;
    }
    if (certs_make(&C) != 0) {
        tt_fail(__FILE__, __LINE__, "cannot make test certificates with the openssl command");
        return 0;
    }
    return 1;
}

/* A TLS server with cert/key; the client trusts ca (NULL: the system's CAs). */
static void tls_attempt(const char *cert, const char *key, const char *ca, const char *host,
                        int expect_error)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.tls_cert_file = cert;
    v.cfg.tls_key_file = key;
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "wss", host, v.port);
    k.cfg.tls_ca_file = ca;
    slog_ent d;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), tether_err_name(expect_error));
    CHECK_EQ_INT(d.http, 0);
    CHECK(strstr(d.detail, "certificate") != NULL);
    CHECK_EQ_INT(v.rec.opens, 0);
    /* the query says the same */
    tether_state_info info;
    char detail[256];
    CHECK_OK(tether_client_last_state(k.c, &info, detail, sizeof detail));
    CHECK_EQ_INT(info.state, TETHER_STATE_STOPPED);
    cli_free(&k);
    srv_free(&v);
}

TEST(wss_good_certificate_delivers)
{
    if (!need_certs()) {
        return;
    }
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.tls_cert_file = C.srv;
    v.cfg.tls_key_file = C.srv_key;
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "wss", "127.0.0.1", v.port);
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 500, 100));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 500, "server over wss");
    CHECK_EQ_INT(slog_count(TETHER_STATE_DISCONNECTED, ANY), 0);
    cli_free(&k);
    /* the host name may be a DNS name too (localhost is in the certificate) */
    field_cli_init(&k, "wss", "localhost", v.port);
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    cli_free(&k);
    srv_free(&v);
}

TEST(wss_wrong_host_name_is_ETLS_HOSTNAME)
{
    if (need_certs()) {
        tls_attempt(C.wrong, C.wrong_key, C.ca, "127.0.0.1", TETHER_ETLS_HOSTNAME);
        tls_attempt(C.wrong, C.wrong_key, C.ca, "localhost", TETHER_ETLS_HOSTNAME);
    }
}

TEST(wss_unknown_ca_is_ETLS_UNTRUSTED)
{
    if (need_certs()) {
        tls_attempt(C.unknown, C.unknown_key, C.ca, "127.0.0.1", TETHER_ETLS_UNTRUSTED);
        /* verification is on by default: the system's CAs do not know the test CA */
        tls_attempt(C.srv, C.srv_key, NULL, "127.0.0.1", TETHER_ETLS_UNTRUSTED);
    }
}

TEST(wss_expired_certificate_is_ETLS_EXPIRED)
{
    if (need_certs()) {
        tls_attempt(C.expired, C.expired_key, C.ca, "127.0.0.1", TETHER_ETLS_EXPIRED);
    }
}

TEST(wss_insecure_option_accepts_any_certificate)
{
    if (!need_certs()) {
        return;
    }
    const char *certs_[][2] = {{C.unknown, C.unknown_key}, {C.wrong, C.wrong_key},
                               {C.expired, C.expired_key}};
    for (int i = 0; i < 3; i++) {
        srv v;
        cli k;
        srv_init(&v);
        v.cfg.tls_cert_file = certs_[i][0];
        v.cfg.tls_key_file = certs_[i][1];
        CHECK_OK(srv_start(&v));
        field_cli_init(&k, "wss", "127.0.0.1", v.port);
        k.cfg.tls_insecure_skip_verify = 1;
        CHECK_OK(cli_start(&k));
        CHECK_OK(send_tagged(k.c, 10, 64));
        CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
        cli_free(&k);
        srv_free(&v);
    }
}

TEST(wss_client_certificates)
{
    if (!need_certs()) {
        return;
    }
    srv v;
    cli k;
    slog_ent d;
    srv_init(&v);
    v.cfg.tls_cert_file = C.srv;
    v.cfg.tls_key_file = C.srv_key;
    v.cfg.tls_client_ca_file = C.ca;
    CHECK_OK(srv_start(&v));
    /* none */
    field_cli_init(&k, "wss", "127.0.0.1", v.port);
    k.cfg.tls_ca_file = C.ca;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ETLS");
    CHECK(contains(d.detail, "certificate"));
    cli_free(&k);
    /* one from a CA the server does not trust */
    field_cli_init(&k, "wss", "127.0.0.1", v.port);
    k.cfg.tls_ca_file = C.ca;
    k.cfg.tls_cert_file = C.rogue;
    k.cfg.tls_key_file = C.rogue_key;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_ETLS");
    cli_free(&k);
    /* a good one */
    field_cli_init(&k, "wss", "127.0.0.1", v.port);
    k.cfg.tls_ca_file = C.ca;
    k.cfg.tls_cert_file = C.cli;
    k.cfg.tls_key_file = C.cli_key;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 20, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK_EQ_INT(v.rec.opens, 1);
    cli_free(&k);
    srv_free(&v);
}

TEST(connectivity_config_errors)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_client_config_init(&cfg);
    cfg.url = "wss://127.0.0.1:1/";
    cfg.tls_ca_file = "/nonexistent/ca.pem";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "tls_ca_file") != NULL);
    cfg.tls_ca_file = NULL;
    cfg.tls_cert_file = "/etc/hostname";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG); /* cert without key */
    cfg.tls_cert_file = NULL;
    cfg.proxy = "socks5://127.0.0.1:1080";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.proxy = "";
    const char *bad[] = {"X-Evil: a\r\nInjected: b", NULL};
    cfg.headers = bad;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    const char *nocolon[] = {"Authorization", NULL};
    cfg.headers = nocolon;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.headers = NULL;
    cfg.proxy_user = "a:b";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.proxy_user = NULL;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_ERR(tether_client_set_proxy_credentials(c, "u", "p"), TETHER_EINVAL); /* no proxy */
    tether_client_destroy(c);

    tether_server_config scfg;
    tether_server *s = NULL;
    tether_server_config_init(&scfg);
    scfg.tls_cert_file = "/nonexistent.pem";
    scfg.tls_key_file = "/nonexistent.key";
    CHECK_ERR(tether_server_create(&scfg, &s), TETHER_ECONFIG);
    scfg.tls_cert_file = NULL;
    scfg.tls_key_file = NULL;
    const char *origins[] = {"", NULL};
    scfg.allowed_origins = origins;
    CHECK_ERR(tether_server_create(&scfg, &s), TETHER_ECONFIG);
}

/* ------------------------------------------------------------------------ */
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
        execl("/proc/self/exe", "field_test", "--dns-child", (char *)NULL);
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

static void bad_101(fake_mode mode, const char *words)
{
    fake_server *f = fake_start(mode, 0, NULL);
    cli k;
    slog_ent d;
    field_cli_init(&k, "ws", "127.0.0.1", fake_port(f));
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EHANDSHAKE");
    CHECK_EQ_INT(d.http, 0);
    CHECK(contains(d.detail, words));
    CHECK_EQ_INT(slog_count(TETHER_STATE_CONNECTED, ANY), 0);
    cli_free(&k);
    fake_stop(f);
}

TEST(bad_101_answers_are_EHANDSHAKE)
{
    bad_101(FAKE_BAD_ACCEPT, "Sec-WebSocket-Accept does not match");
    bad_101(FAKE_CONN_REWRITE, "Connection header");
    bad_101(FAKE_NO_PROTOCOL, "did not choose the tether.v1 subprotocol");
    bad_101(FAKE_OTHER_PROTOCOL, "subprotocol other than tether.v1");
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
/* Server admission                                                          */
/* ------------------------------------------------------------------------ */

TEST(origin_allow_list)
{
    srv v;
    cli k;
    slog_ent d;
    const char *origins[] = {"https://app.example", "https://admin.example", NULL};
    srv_init(&v);
    v.cfg.allowed_origins = origins;
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.origin = "https://evil.example";
    CHECK(fail_once(&k, &d));
    CHECK_EQ_INT(d.error, TETHER_EHTTP);
    CHECK_EQ_INT(d.http, 403);
    cli_free(&k);
    field_cli_init(&k, "ws", "127.0.0.1", v.port); /* no Origin at all */
    CHECK(fail_once(&k, &d));
    CHECK_EQ_INT(d.http, 403);
    cli_free(&k);
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.origin = "HTTPS://ADMIN.example";
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK_EQ_INT(v.rec.opens, 1);
    cli_free(&k);
    srv_free(&v);
}

static char hook_seen[1024];

static int auth_hook(tether_server *s, tether_handshake *hs, void *user)
{
    const char *a = tether_handshake_header(hs, "Authorization");
    const char *t = tether_handshake_header(hs, "x-tenant");
    snprintf(hook_seen, sizeof hook_seen, "path=%s peer=%s auth=%s tenant=%s",
             tether_handshake_path(hs), tether_handshake_peer(hs), a ? a : "(none)",
             t ? t : "(none)");
    if (!a) {
        tether_handshake_reply_header(hs, "WWW-Authenticate", "Bearer realm=\"tether\"");
        return 401;
    }
    if (strcmp(a, "Bearer good") != 0) {
        return 403;
    }
    return 0;
}

TEST(auth_hook_sees_headers_and_refuses)
{
    srv v;
    cli k;
    slog_ent d;
    srv_init(&v);
    v.cfg.cb.on_handshake = auth_hook;
    CHECK_OK(srv_start(&v));
    snprintf(hook_seen, sizeof hook_seen, "%s", "");
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK(fail_once(&k, &d));
    CHECK_EQ_INT(d.error, TETHER_EHTTP);
    CHECK_EQ_INT(d.http, 401);
    CHECK_EQ_INT(slog_count(TETHER_STATE_RECONNECTING, ANY), 0); /* 401 is permanent */
    CHECK(contains(hook_seen, "auth=(none)"));
    cli_free(&k);

    const char *wrong[] = {"Authorization: Bearer bad", NULL};
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.headers = wrong;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_INT(d.http, 403);
    cli_free(&k);

    const char *good[] = {"Authorization: Bearer good", "X-Tenant: blue", NULL};
    char url[128];
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/room/7?x=1", v.port);
    k.cfg.url = url;
    k.cfg.headers = good;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(contains(hook_seen, "path=/room/7?x=1"));
    CHECK(contains(hook_seen, "peer=127.0.0.1"));
    CHECK(contains(hook_seen, "auth=Bearer good"));
    CHECK(contains(hook_seen, "tenant=blue"));
    cli_free(&k);
    srv_free(&v);
}

/* A raw WebSocket upgrade that never sends HELLO (a slow-loris peer). */
static int loris(uint16_t port, char *answer, size_t len)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n\r\n",
                     port);
    send(fd, req, (size_t)n, MSG_NOSIGNAL);
    size_t got = 0;
    for (int i = 0; i < 200 && got + 1 < len; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10) > 0) {
            ssize_t r = recv(fd, answer + got, len - 1 - got, 0);
            if (r <= 0) {
                break;
            }
            got += (size_t)r;
            answer[got] = '\0';
            if (strstr(answer, "\r\n\r\n")) {
                break;
            }
        }
    }
    answer[got] = '\0';
    return fd;
}

/* 1 when the server closed fd within timeout_ms. */
static int closed_by_peer(int fd, unsigned timeout_ms)
{
    char b[256];
    for (unsigned t = 0; t < timeout_ms; t += 10) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10) > 0) {
            ssize_t r = recv(fd, b, sizeof b, 0);
            if (r <= 0) {
                return 1;
            }
        }
    }
    return 0;
}

TEST(handshake_cap_and_hello_timeout)
{
    srv v;
    cli k;
    char ans[1024];
    srv_init(&v);
    v.cfg.max_pending_handshakes = 2;
    v.cfg.hello_timeout_ms = 1500;
    v.cfg.busy_retry_after_s = 1;
    CHECK_OK(srv_start(&v));
    int l1 = loris(v.port, ans, sizeof ans);
    CHECK(strstr(ans, " 101 ") != NULL);
    int l2 = loris(v.port, ans, sizeof ans);
    CHECK(strstr(ans, " 101 ") != NULL);
    int l3 = loris(v.port, ans, sizeof ans);
    CHECK(strstr(ans, " 503 ") != NULL);
    CHECK(strstr(ans, "Retry-After: 1") != NULL || strstr(ans, "retry-after: 1") != NULL);
    uint64_t t0 = now_ms();
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&k));
    slog_ent r;
    CHECK(slog_wait(TETHER_STATE_RECONNECTING, ANY, 1, WAIT_MS));
    CHECK(slog_get(TETHER_STATE_RECONNECTING, 0, &r));
    CHECK_EQ_INT(r.error, TETHER_EHTTP);
    CHECK_EQ_INT(r.http, 503);
    CHECK_EQ_U64(r.retry_after, 1000);
    CHECK(r.retry_in >= 1000);
    /* the slow peers are cut at hello_timeout_ms, and the client gets in */
    CHECK(closed_by_peer(l1, 4000));
    CHECK(closed_by_peer(l2, 1000));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    CHECK(now_ms() - t0 >= 1000);
    CHECK_OK(send_tagged(k.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    close(l1);
    close(l2);
    close(l3);
    cli_free(&k);
    srv_free(&v);
}

TEST(per_session_limits_and_the_errors_senders_see)
{
    srv v;
    cli k;
    char db[600];
    srv_init(&v);
    v.cfg.outbox_max_messages = 5;
    v.cfg.max_message_bytes = 1000;
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = tt_path(db, sizeof db, "limits-c.db");
    k.cfg.max_message_bytes = 4000;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* the server's per-session outbox cap: its sender gets TETHER_EOUTBOX_FULL */
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    tether_client_destroy(k.c); /* offline, so nothing gets acked */
    k.c = NULL;
    for (int i = 0; i < 5; i++) {
        CHECK_OK(tether_server_send(v.s, &id, "x", 1, NULL));
    }
    CHECK_ERR(tether_server_send(v.s, &id, "x", 1, NULL), TETHER_EOUTBOX_FULL);
    uint8_t big[2000];
    CHECK_ERR(tether_server_send(v.s, &id, big, sizeof big, NULL), TETHER_ETOOBIG);
    /* a client message larger than the server accepts: the client stops with TETHER_ETOOBIG */
    CHECK_OK(cli_start(&k));
    CHECK(rec_wait_count(&k.rec, 5, WAIT_MS));
    memset(big, 'b', sizeof big);
    CHECK_OK(tether_client_send(k.c, big, sizeof big, NULL));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    slog_ent st;
    CHECK(slog_get(TETHER_STATE_STOPPED, 0, &st));
    CHECK_EQ_STR(tether_err_name(st.error), "TETHER_ETOOBIG");
    /* and its own limit is checked at send */
    uint8_t huge[5000];
    CHECK_ERR(tether_client_send(k.c, huge, sizeof huge, NULL), TETHER_ETOOBIG);
    cli_free(&k);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */
/* Back-pressure                                                             */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t bp_mu = PTHREAD_MUTEX_INITIALIZER;
static int bp_kinds[64];
static int bp_n;

static void bp_cb(tether_client *c, const tether_backpressure_info *bi, void *user)
{
    pthread_mutex_lock(&bp_mu);
    if (bp_n < 64) {
        bp_kinds[bp_n++] = (int)bi->kind;
    }
    pthread_mutex_unlock(&bp_mu);
}

static int bp_count(int kind)
{
    int n = 0;
    pthread_mutex_lock(&bp_mu);
    for (int i = 0; i < bp_n; i++) {
        n += bp_kinds[i] == kind;
    }
    pthread_mutex_unlock(&bp_mu);
    return n;
}

static int bp_wait(int kind, int count)
{
    for (int i = 0; i < 2000; i++) {
        if (bp_count(kind) >= count) {
            return 1;
        }
        sleep_ms(5);
    }
    return 0;
}

TEST(backpressure_window_and_outbox_events)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.manual_ack = 1; /* nothing is acked until the test says so */
    CHECK_OK(srv_start(&v));
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.window_messages = 8;
    k.cfg.ack_every = 4;
    k.cfg.outbox_max_messages = 20;
    k.cfg.cb.on_backpressure = bp_cb;
    bp_n = 0;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    CHECK_OK(send_tagged(k.c, 7, 64));
    sleep_ms(100);
    CHECK_EQ_INT(bp_count(TETHER_BP_WINDOW_FULL), 0);
    CHECK_OK(send_tagged(k.c, 1, 64));
    CHECK(bp_wait(TETHER_BP_WINDOW_FULL, 1));
    CHECK(rec_wait_count(&v.rec, 8, WAIT_MS)); /* the window's worth is on the wire, no more */
    sleep_ms(100);
    CHECK_EQ_U64(rec_count(&v.rec), 8);
    CHECK_OK(send_tagged(k.c, 12, 64));
    CHECK_ERR(tether_client_send(k.c, "12345678", 8, NULL), TETHER_EOUTBOX_FULL);
    CHECK_ERR(tether_client_send(k.c, "12345678", 8, NULL), TETHER_EOUTBOX_FULL);
    CHECK(bp_wait(TETHER_BP_OUTBOX_FULL, 1));
    sleep_ms(100);
    CHECK_EQ_INT(bp_count(TETHER_BP_OUTBOX_FULL), 1); /* once until it opens */
    CHECK_EQ_INT(bp_count(TETHER_BP_OUTBOX_OPEN), 0);
    /* the server's application acknowledges: room again */
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    CHECK_OK(tether_server_ack(v.s, &id, 8));
    CHECK(bp_wait(TETHER_BP_OUTBOX_OPEN, 1));
    CHECK(rec_wait_count(&v.rec, 16, WAIT_MS));
    CHECK_OK(tether_server_ack(v.s, &id, 16));
    CHECK(rec_wait_count(&v.rec, 20, WAIT_MS));
    CHECK_OK(tether_server_ack(v.s, &id, 20));
    CHECK(bp_wait(TETHER_BP_WINDOW_OPEN, 1));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK_OK(send_tagged(k.c, 1, 64));
    rec_check_exact(&v.rec, 20, "server under back-pressure");
    pthread_mutex_lock(&bp_mu);
    /* each FULL is followed by its OPEN */
    int wf = 0, of = 0;
    for (int i = 0; i < bp_n; i++) {
        wf += bp_kinds[i] == TETHER_BP_WINDOW_FULL ? 1 : bp_kinds[i] == TETHER_BP_WINDOW_OPEN ? -1 : 0;
        of += bp_kinds[i] == TETHER_BP_OUTBOX_FULL ? 1 : bp_kinds[i] == TETHER_BP_OUTBOX_OPEN ? -1 : 0;
        CHECK(wf == 0 || wf == 1);
        CHECK(of == 0 || of == 1);
    }
    pthread_mutex_unlock(&bp_mu);
    cli_free(&k);
    srv_free(&v);
}

/* ------------------------------------------------------------------------ */
/* A real squid                                                              */
/* ------------------------------------------------------------------------ */

/* A tether server on 127.0.0.1:443 with the test CA's certificate. */
static int srv_443(srv *v, const char *db)
{
    srv_init(v);
    v->cfg.tls_cert_file = C.srv;
    v->cfg.tls_key_file = C.srv_key;
    v->cfg.db_path = db;
    v->port = 443;
    for (int i = 0; i < 50; i++) { /* a previous server may still be letting go of it */
        v->cfg.port = 443;
        if (tether_server_create(&v->cfg, &v->s) == TETHER_OK) {
            return tether_server_start(v->s);
        }
        sleep_ms(100);
    }
    tt_fail(__FILE__, __LINE__,
            "cannot listen on 127.0.0.1:443 (%s): the squid tests need it, because squid's "
            "stock rules CONNECT only to port 443; run as root, or free port 443",
            tether_errmsg());
    return -1;
}

TEST(squid_refuses_ws_to_a_non_443_port_with_403)
{
    squid sq;
    if (squid_start(&sq, NULL, NULL) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    slog_ent d;
    char proxy[64];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.proxy = proxy;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EPROXY");
    CHECK_EQ_INT(d.proxy, 403);
    CHECK_EQ_INT(d.http, 0);
    CHECK(contains(d.detail, "with HTTP 403"));
    CHECK_EQ_INT(v.rec.opens, 0);
    CHECK(squid_log_count(&sq, "CONNECT 127.0.0.1:") >= 1);
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

TEST(squid_wss_to_443_works_end_to_end_with_resume)
{
    if (!need_certs()) {
        return;
    }
    squid sq;
    if (squid_start(&sq, NULL, NULL) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    char proxy[64], sdb[600], cdb[600];
    tt_path(sdb, sizeof sdb, "squid-s.db");
    tt_path(cdb, sizeof cdb, "squid-c.db");
    if (srv_443(&v, sdb) != 0) {
        rec_free(&v.rec);
        squid_stop(&sq);
        return;
    }
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = proxy;
    k.cfg.tls_ca_file = C.ca;
    k.cfg.db_path = cdb;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 2000, 64));
    CHECK(rec_wait_count(&v.rec, 500, WAIT_MS));
    /* the server restarts mid-stream; the client comes back through squid and resumes */
    tether_server_destroy(v.s);
    v.s = NULL;
    CHECK_OK(send_tagged(k.c, 1000, 64));
    v.cfg.port = 443;
    for (int i = 0; i < 50 && tether_server_create(&v.cfg, &v.s) != TETHER_OK; i++) {
        sleep_ms(100);
    }
    CHECK(v.s != NULL);
    if (v.s) {
        CHECK_OK(tether_server_start(v.s));
    }
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 3000, "server behind squid across a restart");
    CHECK_EQ_INT(v.rec.last_open_resumed, 1);
    CHECK(slog_count(TETHER_STATE_CONNECTED, ANY) >= 2);
    CHECK(squid_log_count(&sq, "CONNECT 127.0.0.1:443") >= 2);
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

TEST(squid_407_then_credentials_then_connect)
{
    if (!need_certs()) {
        return;
    }
    squid sq;
    if (squid_start(&sq, "alice", "s3cret") != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    char proxy[64];
    if (srv_443(&v, NULL) != 0) {
        rec_free(&v.rec);
        squid_stop(&sq);
        return;
    }
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = proxy;
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 50, 64));
    /* no credentials: 407, reported as such, and the client waits for credentials */
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    slog_ent d, st;
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 0, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EPROXY_AUTH");
    CHECK_EQ_INT(d.proxy, 407);
    CHECK(contains(d.detail, "requires authentication"));
    CHECK(contains(d.detail, "Basic"));
    CHECK(slog_get(TETHER_STATE_STOPPED, 0, &st));
    CHECK_EQ_INT(st.error, TETHER_EPROXY_AUTH);
    CHECK_EQ_INT(st.proxy, 407);
    /* wrong credentials: 407 again, worded differently */
    CHECK_OK(tether_client_set_proxy_credentials(k.c, "alice", "wrong"));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 2, WAIT_MS));
    CHECK(slog_get(TETHER_STATE_DISCONNECTED, 1, &d));
    CHECK_EQ_INT(d.error, TETHER_EPROXY_AUTH);
    CHECK(contains(d.detail, "refused the credentials"));
    /* the right ones: connected, and everything queued meanwhile is delivered */
    CHECK_OK(tether_client_set_proxy_credentials(k.c, "alice", "s3cret"));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 50, "server behind an authenticating squid");
    cli_free(&k);
    /* credentials in the config work from the start */
    char proxy2[128];
    snprintf(proxy2, sizeof proxy2, "http://alice:s3cret@127.0.0.1:%u", sq.port);
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = proxy2;
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

TEST(proxy_from_the_environment_and_no_proxy)
{
    if (!need_certs()) {
        return;
    }
    squid sq;
    if (squid_start(&sq, NULL, NULL) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    char proxy[64];
    if (srv_443(&v, NULL) != 0) {
        rec_free(&v.rec);
        squid_stop(&sq);
        return;
    }
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    setenv("https_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = NULL; /* from the environment */
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    cli_free(&k);
    /* squid logs a CONNECT when the tunnel closes */
    int via = 0;
    for (int i = 0; i < 300 && via == 0; i++) {
        via = squid_log_count(&sq, "CONNECT 127.0.0.1:443");
        sleep_ms(10);
    }
    CHECK_EQ_INT(via, 1);
    setenv("no_proxy", "localhost,127.0.0.1", 1);
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = NULL;
    k.cfg.tls_ca_file = C.ca;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    cli_free(&k);
    sleep_ms(500);
    CHECK_EQ_INT(squid_log_count(&sq, "CONNECT 127.0.0.1:443"), via); /* went direct */
    unsetenv("https_proxy");
    unsetenv("no_proxy");
    srv_free(&v);
    squid_stop(&sq);
}

TEST(unreachable_proxy_is_EPROXY)
{
    cli k;
    slog_ent d;
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", free_port());
    field_cli_init(&k, "wss", "127.0.0.1", 443);
    k.cfg.proxy = proxy;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EPROXY");
    CHECK_EQ_INT(d.proxy, 0);
    CHECK(contains(d.detail, "refused"));
    cli_free(&k);
}

/* ------------------------------------------------------------------------ */
/* A real nginx reverse proxy                                                */
/* ------------------------------------------------------------------------ */

/* The child of the nginx test: sends until killed. */
static int child_send(const char *url, const char *db)
{
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url;
    cfg.db_path = db;
    cfg.proxy = "";
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 200;
    if (client_create_start(&cfg, &c) != TETHER_OK) {
        return 3;
    }
    for (int i = 0; i < 400; i++) {
        send_tagged(c, 100, 64);
        sleep_ms(1); /* a steady stream, so the kills land mid-stream */
    }
    sleep(60); /* the parent kills us long before this */
    return 4;
}

TEST(nginx_reverse_proxy_client_kill_and_restart)
{
    srv v;
    nginx ng;
    char sdb[600], cdb[600], url[128];
    memset(&ng, 0, sizeof ng);
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "nginx-s.db");
    /* the server acknowledges every 1000 messages only, so a kill between two ACKs
     * leaves messages the server stored but the client never heard about */
    v.cfg.ack_every = 1000;
    v.cfg.ack_delay_ms = 10000;
    CHECK_OK(srv_start(&v));
    if (nginx_start(&ng, 0, v.port) != 0) {
        tt_fail(__FILE__, __LINE__, "nginx did not start");
        srv_free(&v);
        return;
    }
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", ng.port);
    tt_path(cdb, sizeof cdb, "nginx-c.db");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "field_test", "--child-send", url, cdb, (char *)NULL);
        _exit(127);
    }
    CHECK(rec_wait_count(&v.rec, 3000, WAIT_MS));
    /* nginx restarts mid-stream: every proxied connection drops */
    uint16_t port = ng.port;
    nginx_stop(&ng);
    CHECK_EQ_INT(nginx_start(&ng, port, v.port), 0);
    uint64_t before = rec_count(&v.rec);
    CHECK(rec_wait_count(&v.rec, before + 3000, WAIT_MS));
    for (int i = 0; i < 4000; i++) { /* between two of the server's ACKs */
        uint64_t n = rec_count(&v.rec) % 1000;
        if (n >= 200 && n <= 800) {
            break;
        }
        sleep_ms(1);
    }
    /* the client process dies mid-stream: what nginx accepted but the server never
     * acknowledged is still in the client's outbox */
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    uint64_t delivered_at_kill = rec_count(&v.rec);

    cli k;
    field_cli_init(&k, "ws", "127.0.0.1", ng.port);
    k.cfg.db_path = cdb;
    CHECK_OK(tether_client_create(&k.cfg, &k.c));
    uint64_t last = 0, acked = 0, pending = 0;
    CHECK_OK(tether_client_last_seq(k.c, &last));
    CHECK_OK(tether_client_acked(k.c, &acked));
    CHECK_OK(tether_client_pending(k.c, &pending, NULL));
    fprintf(stderr, "  at the kill: %llu assigned, %llu acked, %llu delivered to the server\n",
            (unsigned long long)last, (unsigned long long)acked,
            (unsigned long long)delivered_at_kill);
    CHECK(acked <= delivered_at_kill);
    CHECK(last >= delivered_at_kill);
    CHECK(last > acked); /* killed mid-stream: written (to nginx) is not acknowledged */
    CHECK_EQ_U64(pending, last - acked);
    CHECK_OK(tether_client_start(k.c));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* exactly once, in order: the unacked tail was resent and the server kept one copy */
    rec_check_exact(&v.rec, last, "server behind nginx after a restart and a SIGKILL");
    CHECK(v.rec.last_open_resumed == 1);
    cli_free(&k);
    nginx_stop(&ng);
    srv_free(&v);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "--dns-child") == 0) {
        return dns_child();
    }
    if (argc == 4 && strcmp(argv[1], "--child-send") == 0) {
        return child_send(argv[2], argv[3]);
    }
    RUN(proxy_spec_parsing);
    RUN(proxy_from_env_and_no_proxy);
    RUN(retry_after_values);
    RUN(http_response_scraps);
    RUN(wss_good_certificate_delivers);
    RUN(wss_wrong_host_name_is_ETLS_HOSTNAME);
    RUN(wss_unknown_ca_is_ETLS_UNTRUSTED);
    RUN(wss_expired_certificate_is_ETLS_EXPIRED);
    RUN(wss_insecure_option_accepts_any_certificate);
    RUN(wss_client_certificates);
    RUN(connectivity_config_errors);
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
    RUN(origin_allow_list);
    RUN(auth_hook_sees_headers_and_refuses);
    RUN(handshake_cap_and_hello_timeout);
    RUN(per_session_limits_and_the_errors_senders_see);
    RUN(backpressure_window_and_outbox_events);
    RUN(squid_refuses_ws_to_a_non_443_port_with_403);
    RUN(squid_wss_to_443_works_end_to_end_with_resume);
    RUN(squid_407_then_credentials_then_connect);
    RUN(proxy_from_the_environment_and_no_proxy);
    RUN(unreachable_proxy_is_EPROXY);
    RUN(nginx_reverse_proxy_client_kill_and_restart);
    return tt_finish();
}

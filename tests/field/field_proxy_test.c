/*
 * Field: proxies. The pure parts first (proxy settings, no_proxy, Retry-After,
 * HTTP answers), then a real squid with Debian's stock rules.
 *
 * Port 443: squid's stock rules let CONNECT through only to port 443, so the
 * squid tests bind the tether server to 127.0.0.1:443. That needs root (or a
 * lowered net.ipv4.ip_unprivileged_port_start) and a free port 443; when
 * either is missing those tests fail with a message saying so.
 * Helpers in field_env.h.
 */
#include "field_env.h"

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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(proxy_spec_parsing);
    RUN(proxy_from_env_and_no_proxy);
    RUN(retry_after_values);
    RUN(http_response_scraps);
    RUN(squid_refuses_ws_to_a_non_443_port_with_403);
    RUN(squid_wss_to_443_works_end_to_end_with_resume);
    RUN(squid_407_then_credentials_then_connect);
    RUN(proxy_from_the_environment_and_no_proxy);
    RUN(unreachable_proxy_is_EPROXY);
    return tt_finish();
}

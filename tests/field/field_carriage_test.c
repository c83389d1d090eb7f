/*
 * The client's HTTP carriage through a real squid with Debian's stock rules
 * (CONNECT only to port 443): a ws:// url on another port is refused CONNECT
 * with 403, the client falls back to the carriage, whose plain http://
 * requests squid forwards; and the carriage with proxy credentials.
 */
#include "field_env.h"

#define N 300

static int connected_http(void *arg)
{
    cli *k = arg;
    tether_state_info in;
    return tether_client_last_state(k->c, &in, NULL, 0) == TETHER_OK &&
           in.state == TETHER_STATE_CONNECTED && in.transport == TETHER_TRANSPORT_HTTP;
}

TEST(squid_403_to_connect_falls_back_to_http_through_the_proxy)
{
    squid sq;
    if (squid_start(&sq, NULL, NULL) != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    char proxy[64];
    int err = 0;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.proxy = proxy;
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, &k, 30000));
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, NULL, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EPROXY");
    CHECK_OK(send_tagged(k.c, N, 64));
    CHECK_OK(tether_client_wait_acked(k.c, 30000));
    rec_check_exact(&v.rec, N, "server, through squid over HTTP");
    CHECK(squid_log_count(&sq, "CONNECT 127.0.0.1:") >= 1);
    CHECK(squid_log_count(&sq, "/.tether/v1/open") >= 1);
    CHECK(squid_log_count(&sq, "/.tether/v1/send") >= 1);
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

TEST(http_carriage_through_squid_with_credentials)
{
    squid sq;
    if (squid_start(&sq, "alice", "s3cret") != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        return;
    }
    srv v;
    cli k;
    char proxy[64];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", sq.port);
    field_cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.proxy = proxy;
    k.cfg.proxy_user = "alice";
    k.cfg.proxy_password = "s3cret";
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, N, 64));
    CHECK_OK(tether_client_wait_acked(k.c, 30000));
    rec_check_exact(&v.rec, N, "server, through squid with credentials");
    CHECK(connected_http(&k));
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

TEST(http_carriage_through_squid_without_credentials_is_EPROXY_AUTH)
{
    squid sq;
    if (squid_start(&sq, "alice", "s3cret") != 0) {
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
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK(fail_once(&k, &d));
    CHECK_EQ_STR(tether_err_name(d.error), "TETHER_EPROXY_AUTH");
    CHECK_EQ_INT(d.proxy, 407);
    cli_free(&k);
    srv_free(&v);
    squid_stop(&sq);
}

int main(void)
{
    RUN(squid_403_to_connect_falls_back_to_http_through_the_proxy);
    RUN(http_carriage_through_squid_with_credentials);
    RUN(http_carriage_through_squid_without_credentials_is_EPROXY_AUTH);
    return tt_finish();
}

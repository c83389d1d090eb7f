/*
 * Field: wss against certificates made by the openssl command. Verification
 * is on by default: wrong host names, unknown CAs and expired certificates
 * fail with their own codes; the insecure option; client certificates; the
 * connectivity settings a configuration can get wrong. Helpers in field_env.h.
 */
#include "field_env.h"

/* ------------------------------------------------------------------------ */
/* wss: verification on by default                                           */
/* ------------------------------------------------------------------------ */

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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(wss_good_certificate_delivers);
    RUN(wss_wrong_host_name_is_ETLS_HOSTNAME);
    RUN(wss_unknown_ca_is_ETLS_UNTRUSTED);
    RUN(wss_expired_certificate_is_ETLS_EXPIRED);
    RUN(wss_insecure_option_accepts_any_certificate);
    RUN(wss_client_certificates);
    RUN(connectivity_config_errors);
    return tt_finish();
}

/*
 * tether__classify(): one case per failure class, decided from facts alone
 * (no libwebsockets, no text). lws's words, when given, only reach the detail.
 */
#include <errno.h>
#include <netdb.h>

#include <openssl/x509_vfy.h>

#include <tether/tether.h>

#include "harness.h"
#include "transport/classify.h"

/* Facts of a plain ws:// attempt to srv.example:8080 that got nowhere. */
static tether__facts base(void)
{
    tether__facts f;
    memset(&f, 0, sizeof f);
    f.server_host = "srv.example";
    f.server_port = 8080;
    f.connect_timeout_ms = 1500;
    return f;
}

static tether__facts via_proxy(void)
{
    tether__facts f = base();
    f.via_proxy = 1;
    f.proxy_host = "proxy.example";
    f.proxy_port = 3128;
    return f;
}

/* A 101 whose headers are all right. */
static tether__facts good_101(void)
{
    tether__facts f = base();
    f.step = TETHER__STEP_ANSWERED;
    f.http_status = 101;
    f.hdr_accept = 1;
    f.hdr_upgrade = TETHER__HDR_OK;
    f.hdr_connection = TETHER__HDR_OK;
    f.hdr_protocol = TETHER__HDR_OK;
    return f;
}

static int has(const tether__tp_close *w, const char *s)
{
    if (strstr(w->detail, s)) {
        return 1;
    }
    fprintf(stderr, "  detail \"%s\" lacks \"%s\"\n", w->detail, s);
    return 0;
}

TEST(refused_from_errno)
{
    tether__facts f = base();
    tether__tp_close w;
    f.sys_errno = ECONNREFUSED;
    CHECK_EQ_INT(tether__classify(&f, &w), 0);
    CHECK_EQ_INT(w.error, TETHER_ECONNREFUSED);
    CHECK(has(&w, "srv.example:8080 refused"));
    /* firewall rejects look the same */
    f.sys_errno = EACCES;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNREFUSED);
}

TEST(refused_without_errno)
{
    /* an asynchronous connect: lws keeps SO_ERROR to itself */
    tether__facts f = base();
    tether__tp_close w;
    f.lws_text = "Unable to connect";
    CHECK_EQ_INT(tether__classify(&f, &w), 0);
    CHECK_EQ_INT(w.error, TETHER_ECONNREFUSED);
    CHECK(has(&w, "refused the TCP connection"));
}

TEST(unreachable_is_ECONNECT)
{
    tether__facts f = base();
    tether__tp_close w;
    f.sys_errno = EHOSTUNREACH;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT);
    CHECK(has(&w, "unreachable"));
    f.sys_errno = ENETUNREACH;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT);
}

TEST(dns_is_EDNS)
{
    tether__facts f = base();
    tether__tp_close w;
    f.gai_error = EAI_NONAME;
    f.sys_errno = ECONNREFUSED; /* the resolver's verdict comes first */
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EDNS);
    CHECK(has(&w, "'srv.example' did not resolve"));
}

TEST(timeouts_are_ECONNECT_TIMEOUT)
{
    tether__facts f = base();
    tether__tp_close w;
    f.timed_out = 1;
    f.step = TETHER__STEP_SENT;
    f.http_status = 0;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT_TIMEOUT);
    CHECK(has(&w, "within 1500 ms while waiting for the answer to the upgrade request"));
    f.step = TETHER__STEP_CONNECTING;
    tether__classify(&f, &w);
    CHECK(has(&w, "connecting (TCP) to the server"));
    /* the kernel's own SYN timeout */
    f = base();
    f.sys_errno = ETIMEDOUT;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT_TIMEOUT);
}

TEST(certificate_errors)
{
    static const struct {
        int x509;
        int want;
    } cases[] = {
        {X509_V_ERR_CERT_HAS_EXPIRED, TETHER_ETLS_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, TETHER_ETLS_EXPIRED},
        {X509_V_ERR_HOSTNAME_MISMATCH, TETHER_ETLS_HOSTNAME},
        {X509_V_ERR_IP_ADDRESS_MISMATCH, TETHER_ETLS_HOSTNAME},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, TETHER_ETLS_UNTRUSTED},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, TETHER_ETLS_UNTRUSTED},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, TETHER_ETLS_UNTRUSTED},
        {X509_V_ERR_CERT_REVOKED, TETHER_ETLS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tether__facts f = base();
        tether__tp_close w;
        f.tls = 1;
        f.step = TETHER__STEP_TCP;
        f.tls_started = 1;
        f.x509_error = cases[i].x509;
        f.x509_text = "what OpenSSL said";
        tether__classify(&f, &w);
        CHECK_EQ_INT(w.error, cases[i].want);
        CHECK_EQ_INT(tether__classify_x509(cases[i].x509), cases[i].want);
        CHECK(has(&w, "what OpenSSL said"));
    }
}

TEST(tls_alerts_and_handshakes_are_ETLS)
{
    tether__facts f = base();
    tether__tp_close w;
    f.tls = 1;
    f.step = TETHER__STEP_TCP;
    f.tls_started = 1;
    f.tls_alert = 0x200 | 116;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ETLS);
    CHECK(has(&w, "'certificate required': it wants a client certificate"));
    f.tls_alert = 0x200 | 99; /* not in the table: its number */
    tether__classify(&f, &w);
    CHECK(has(&w, "number 99"));

    /* TLS 1.3: asked for a certificate, then closed without an alert */
    f.tls_alert = 0;
    f.tls_done = 1;
    f.step = TETHER__STEP_SENT;
    f.cert_requested = 1;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ETLS);
    CHECK(has(&w, "configure one"));
    f.have_client_cert = 1;
    tether__classify(&f, &w);
    CHECK(has(&w, "refused ours"));

    /* the far end does not speak TLS: the handshake began and never finished */
    f = base();
    f.tls = 1;
    f.step = TETHER__STEP_TCP;
    f.tls_started = 1;
    f.lws_text = "whatever lws says";
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ETLS);
    CHECK(has(&w, "TLS handshake failed"));
    CHECK(has(&w, "whatever lws says"));
}

TEST(statuses_are_EHTTP)
{
    tether__facts f = base();
    tether__tp_close w;
    f.step = TETHER__STEP_ANSWERED;
    f.http_status = 429;
    f.retry_after_ms = 2000;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EHTTP);
    CHECK_EQ_INT(w.http_status, 429);
    CHECK_EQ_U64(w.retry_after_ms, 2000);
    CHECK(has(&w, "HTTP 429 (Retry-After 2000 ms)"));
    f.http_status = 401;
    f.retry_after_ms = 0;
    f.lws_text = "HS: ws upgrade unauthorized"; /* not needed, not used */
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.http_status, 401);
    CHECK_EQ_U64(w.retry_after_ms, 0);
}

TEST(bad_101_is_EHANDSHAKE_with_the_rule_broken)
{
    tether__tp_close w;
    tether__facts f = good_101();
    f.hdr_accept = 0;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EHANDSHAKE);
    CHECK_EQ_INT(w.http_status, 101); /* mangled on the path: the fallback's rule */
    CHECK(has(&w, "no Sec-WebSocket-Accept"));

    f = good_101();
    f.hdr_upgrade = TETHER__HDR_ABSENT;
    tether__classify(&f, &w);
    CHECK(has(&w, "no Upgrade header"));
    CHECK_EQ_INT(w.http_status, 101);
    f.hdr_upgrade = TETHER__HDR_OTHER;
    tether__classify(&f, &w);
    CHECK(has(&w, "other than websocket"));
    CHECK_EQ_INT(w.http_status, 101);

    f = good_101();
    f.hdr_connection = TETHER__HDR_OTHER;
    tether__classify(&f, &w);
    CHECK(has(&w, "Connection header"));
    CHECK_EQ_INT(w.http_status, 101);

    f = good_101();
    f.hdr_protocol = TETHER__HDR_OTHER;
    tether__classify(&f, &w);
    CHECK(has(&w, "subprotocol other than tether.v1"));
    CHECK_EQ_INT(w.http_status, 0); /* the far end chose it: not the path */

    f = good_101();
    f.hdr_extensions = 1;
    tether__classify(&f, &w);
    CHECK(has(&w, "extension"));
    CHECK_EQ_INT(w.http_status, 0);

    /* every header right, lws never asked our filter: the Accept hash */
    f = good_101();
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EHANDSHAKE);
    CHECK(has(&w, "Sec-WebSocket-Accept does not match"));
    CHECK_EQ_INT(w.http_status, 101);

    /* lws passed it, our filter refused it for want of a subprotocol */
    f = good_101();
    f.hdr_protocol = TETHER__HDR_ABSENT;
    f.upgrade_checked = 1;
    tether__classify(&f, &w);
    CHECK(has(&w, "did not choose the tether.v1 subprotocol"));
    CHECK_EQ_INT(w.http_status, 0);
}

TEST(proxy_refusals_ask_for_a_probe_then_are_EPROXY)
{
    tether__facts f = via_proxy();
    tether__tp_close w;
    f.step = TETHER__STEP_TCP;
    CHECK_EQ_INT(tether__classify(&f, &w), 1); /* probe first */
    CHECK_EQ_INT(w.error, TETHER_EPROXY);
    f.proxy_probed = 1;
    f.proxy_status = 403;
    f.proxy_retry_after_ms = 5000;
    CHECK_EQ_INT(tether__classify(&f, &w), 0);
    CHECK_EQ_INT(w.error, TETHER_EPROXY);
    CHECK_EQ_INT(w.proxy_status, 403);
    CHECK_EQ_U64(w.retry_after_ms, 5000);
    CHECK(has(&w, "answered CONNECT srv.example:8080 with HTTP 403"));
    /* the probe got 200, or nothing */
    f.proxy_status = 200;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.proxy_status, 0);
    CHECK(has(&w, "a second CONNECT got 200"));
    f.proxy_status = 0;
    f.probe_failure = "no answer in time";
    tether__classify(&f, &w);
    CHECK(has(&w, "asking it again: no answer in time"));
    /* a wss tunnel that opened: TLS began, so it is not the proxy's doing */
    f = via_proxy();
    f.tls = 1;
    f.step = TETHER__STEP_TCP;
    f.tls_started = 1;
    CHECK_EQ_INT(tether__classify(&f, &w), 0);
    CHECK_EQ_INT(w.error, TETHER_ETLS);
}

TEST(proxy_407_is_EPROXY_AUTH)
{
    tether__facts f = via_proxy();
    tether__tp_close w;
    f.step = TETHER__STEP_TCP;
    f.proxy_probed = 1;
    f.proxy_status = 407;
    f.proxy_authenticate = "Basic realm=\"corp\"";
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EPROXY_AUTH);
    CHECK_EQ_INT(w.proxy_status, 407);
    CHECK(has(&w, "requires authentication"));
    CHECK(has(&w, "Basic realm"));
    f.proxy_has_creds = 1;
    f.proxy_authenticate = NULL;
    tether__classify(&f, &w);
    CHECK(has(&w, "refused the credentials given"));
    CHECK(has(&w, "no Proxy-Authenticate header"));
}

TEST(unreachable_proxy_is_EPROXY)
{
    tether__facts f = via_proxy();
    tether__tp_close w;
    CHECK_EQ_INT(tether__classify(&f, &w), 0); /* refused, errno unknown */
    CHECK_EQ_INT(w.error, TETHER_EPROXY);
    CHECK_EQ_INT(w.proxy_status, 0);
    CHECK(has(&w, "proxy proxy.example:3128 refused"));
    f.gai_error = EAI_NONAME;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EPROXY);
    CHECK(has(&w, "proxy's name 'proxy.example' did not resolve"));
    f.gai_error = 0;
    f.sys_errno = EHOSTUNREACH;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_EPROXY);
    CHECK(has(&w, "unreachable"));
}

TEST(a_connection_that_ends_is_ECONNECT)
{
    tether__facts f = base();
    tether__tp_close w;
    f.step = TETHER__STEP_SENT;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT);
    CHECK(has(&w, "ended while waiting for the answer to the upgrade request"));
    f.step = TETHER__STEP_TCP;
    tether__classify(&f, &w);
    CHECK(has(&w, "ended while sending the upgrade request"));
}

TEST(precedence)
{
    /* a timeout we decided beats what came later; a certificate error beats
     * the HTTP status a TLS-intercepting box might have made up */
    tether__facts f = base();
    tether__tp_close w;
    f.tls = 1;
    f.timed_out = 1;
    f.x509_error = X509_V_ERR_CERT_HAS_EXPIRED;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ECONNECT_TIMEOUT);
    f.timed_out = 0;
    f.http_status = 403;
    tether__classify(&f, &w);
    CHECK_EQ_INT(w.error, TETHER_ETLS_EXPIRED);
    CHECK_EQ_INT(w.http_status, 0);
}

int main(void)
{
    RUN(refused_from_errno);
    RUN(refused_without_errno);
    RUN(unreachable_is_ECONNECT);
    RUN(dns_is_EDNS);
    RUN(timeouts_are_ECONNECT_TIMEOUT);
    RUN(certificate_errors);
    RUN(tls_alerts_and_handshakes_are_ETLS);
    RUN(statuses_are_EHTTP);
    RUN(bad_101_is_EHANDSHAKE_with_the_rule_broken);
    RUN(proxy_refusals_ask_for_a_probe_then_are_EPROXY);
    RUN(proxy_407_is_EPROXY_AUTH);
    RUN(unreachable_proxy_is_EPROXY);
    RUN(a_connection_that_ends_is_ECONNECT);
    RUN(precedence);
    return tt_finish();
}

/*
 * The client side of the libwebsockets glue: checking and splitting ws:// and
 * wss:// urls, the proxy for the next attempts, and starting an attempt.
 * Failures of an attempt are classified in transport_lws_diag.c.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"

/* The url's port as written: 0 when it has none, -1 when it is not 1..65535. */
static int url_port(const char *url)
{
    const char *a = strstr(url, "://");
    const char *end, *colon = NULL;
    if (!a) {
        return 0;
    }
    a += 3;
    end = a + strcspn(a, "/?#");
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));
        if (rb && rb + 1 < end && rb[1] == ':') {
            colon = rb + 1;
        }
    } else {
        colon = memchr(a, ':', (size_t)(end - a));
    }
    if (!colon) {
        return 0;
    }
    long v = 0;
    const char *d = colon + 1;
    if (d == end) {
        return -1;
    }
    for (; d < end; d++) {
        if (*d < '0' || *d > '9' || v > 65535) {
            return -1;
        }
        v = v * 10 + (*d - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int tether__tp_check_url(const char *url)
{
    char buf[1024];
    const char *proto, *addr, *path;
    int port;
    if (!url || strlen(url) >= sizeof buf) {
        return tether__fail(TETHER_ECONFIG, "the url is missing or too long");
    }
    snprintf(buf, sizeof buf, "%s", url);
    if (lws_parse_uri(buf, &proto, &addr, &port, &path) || !addr[0]) {
        return tether__fail(TETHER_ECONFIG, "cannot parse the url '%s'", url);
    }
    if (strcmp(proto, "ws") && strcmp(proto, "wss")) {
        return tether__fail(TETHER_ECONFIG, "the url must start with ws:// or wss:// (got '%s')",
                            url);
    }
    if (url_port(url) < 0) {
        /* lws_parse_uri() takes any number and it wraps at 65536 */
        return tether__fail(TETHER_ECONFIG, "the url's port must be 1 to 65535 (got '%s')", url);
    }
    /* lws_parse_uri() leaves an unclosed '[', a query or fragment without a
     * path, or user info in the host (found by fuzzing) */
    if (strpbrk(addr, "/?#@[] \t")) {
        return tether__fail(TETHER_ECONFIG, "the url '%s' has an invalid host", url);
    }
    return TETHER_OK;
}

int tether__tp_url_host(const char *url, int *tls, char *host, size_t len)
{
    char buf[1024];
    const char *proto, *addr, *path;
    int port;
    if (tether__tp_check_url(url) != TETHER_OK) {
        return TETHER_ECONFIG;
    }
    snprintf(buf, sizeof buf, "%s", url);
    if (lws_parse_uri(buf, &proto, &addr, &port, &path)) {
        return TETHER_ECONFIG;
    }
    *tls = strcmp(proto, "wss") == 0;
    snprintf(host, len, "%s", addr);
    return TETHER_OK;
}

void tether__tp_set_proxy(tether__tp *tp, const tether__proxy *proxy)
{
    char spec[512], auth[200];
    if (proxy && proxy->host[0]) {
        tp->proxy = *proxy;
    } else {
        memset(&tp->proxy, 0, sizeof tp->proxy);
    }
    if (!tp->cvhost) {
        return;
    }
    if (!tp->proxy.host[0]) {
        lws_set_proxy(tp->cvhost, ""); /* fails harmlessly, leaving no proxy */
        return;
    }
    tether__proxy_auth(&tp->proxy, auth, sizeof auth);
    snprintf(spec, sizeof spec, "%s%s%s%s%s:%d", auth, auth[0] ? "@" : "",
             strchr(tp->proxy.host, ':') ? "[" : "", tp->proxy.host,
             strchr(tp->proxy.host, ':') ? "]" : "", tp->proxy.port);
    lws_set_proxy(tp->cvhost, spec);
}

int tether__tp_connect(tether__tp *tp, const char *url)
{
    struct lws_client_connect_info ci;
    const char *proto, *addr, *path;
    int port, rc;
    tether__conn *c;

    if ((rc = tether__tp_check_url(url)) != TETHER_OK) {
        return rc;
    }
    c = tether__calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->tp = tp;
    snprintf(tp->url, sizeof tp->url, "%s", url);
    if (lws_parse_uri(tp->url, &proto, &addr, &port, &path)) {
        tether__free(c);
        return tether__fail(TETHER_ECONFIG, "cannot parse the url '%s'", url);
    }
    int tls = strcmp(proto, "wss") == 0;
    snprintf(tp->host_hdr, sizeof tp->host_hdr, "%s%s%s:%d", strchr(addr, ':') ? "[" : "", addr,
             strchr(addr, ':') ? "]" : "", port);
    tp->tls = tls;
    snprintf(tp->target_host, sizeof tp->target_host, "%s", addr);
    tp->target_port = port;
    /* lws_parse_uri strips the leading '/' of a path, but gives "/" itself for a
     * url without one: lws wants exactly one back */
    static _Thread_local char pathbuf[1024];
    snprintf(pathbuf, sizeof pathbuf, "%s%s", path[0] == '/' ? "" : "/", path);

    memset(&ci, 0, sizeof ci);
    ci.context = tp->ctx;
    ci.address = addr;
    ci.port = port;
    ci.path = pathbuf;
    ci.host = tp->host_hdr;
    ci.origin = tp->cfg.origin; /* NULL: no Origin header */
    ci.protocol = TETHER_SUBPROTOCOL;
    ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    if (tls && tp->cfg.tls_insecure) {
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                             LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    ci.userdata = &tp->client;
    ci.retry_and_idle_policy = &tp->retry;
    tp->client = c;
    lws_sul_schedule(tp->ctx, 0, &c->sul_attempt, tether__tp_attempt_timeout_cb,
                     (lws_usec_t)tp->cfg.connect_timeout_ms * LWS_US_PER_MS);
    /* lws may report CONNECTION_ERROR (and we free c) before this returns */
    struct lws *w = lws_client_connect_via_info(&ci);
    if (tp->client == c) {
        c->wsi = w;
    }
    if (!w) {
        /* lws may already have reported CONNECTION_ERROR and freed the attempt */
        if (tp->client == c) {
            /* lws 4.1 fails a name that does not resolve here, without a report:
             * the facts (the resolver's code, errno) say why */
            tp->client = NULL;
            tether__tp_client_failed(tp, c, NULL, NULL, 0);
        }
        return TETHER_OK;
    }
    return TETHER_OK;
}

int tether__conn_is_http(const tether__conn *c)
{
    return c && c->cc != NULL;
}

int tether__tp_connect_http(tether__tp *tp, const char *url)
{
    int rc = tether__tp_check_url(url);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (!tp->curl) {
        return tether__fail(TETHER_EINVAL, "this transport has no HTTP carriage");
    }
    tether__conn *c = tether__calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->tp = tp;
    /* the client sets max_rx to its max_message + 1024 (client.c) */
    uint32_t max_message = tp->cfg.max_rx > 1024 ? tp->cfg.max_rx - 1024 : tp->cfg.max_rx;
    rc = tether__curl_connect(tp->curl, c, url, max_message);
    if (rc != TETHER_OK) {
        tether__free(c);
    }
    return rc;
}

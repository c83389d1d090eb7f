/*
 * Why a client attempt failed: lws's text, the HTTP status, TLS verification
 * results and alerts, the attempt's own timeout, and the proxy probe that
 * learns a proxy's refusal status. Part of the libwebsockets glue.
 */
#include "transport_lws_int.h"

static int classify_failure(const char *why, int http_status)
{
    if (http_status && http_status != 101) {
        return TETHER_EHTTP;
    }
    if (strstr(why, "getaddrinfo") || strstr(why, "resolve") || strstr(why, "DNS")) {
        return TETHER_EDNS;
    }
    if (strstr(why, "ssl") || strstr(why, "SSL") || strstr(why, "tls") || strstr(why, "TLS") ||
        strstr(why, "certificate")) {
        return TETHER_ETLS;
    }
    if (strstr(why, "not 101")) {
        return TETHER_EHTTP;
    }
    if (strstr(why, "Accept hash") || strstr(why, "PROTOCOL") || strstr(why, "protocol") ||
        strstr(why, "UPGRADE") || strstr(why, "CONNECTION missing") ||
        strstr(why, "ACCEPT missing") || strstr(why, "Upgrade to") ||
        strstr(why, "Rejected by filter")) {
        return TETHER_EHANDSHAKE;
    }
    if (strstr(why, "refused") || strstr(why, "ECONNREFUSED")) {
        return TETHER_ECONNREFUSED;
    }
    return TETHER_ECONNECT;
}

/* The status line of a refused upgrade, while lws still holds the headers. */
static int response_status(struct lws *wsi)
{
    int st = (int)lws_http_client_http_response(wsi);
    if (st > 0) {
        return st;
    }
    char line[64];
    if (lws_hdr_copy(wsi, line, sizeof line, WSI_TOKEN_HTTP) > 0) {
        int v = atoi(line);
        if (v >= 100 && v <= 999) {
            return v;
        }
    }
    return 0;
}

/* ---- client diagnostics: why an attempt failed ---- */

/* The tether code for an X509 verification error. */
static int tls_verify_code(int x509)
{
    switch (x509) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TETHER_ETLS_EXPIRED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return TETHER_ETLS_HOSTNAME;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return TETHER_ETLS_UNTRUSTED;
    default:
        return TETHER_ETLS;
    }
}

/* What the attempt was doing, for a timeout's detail. */
static const char *stage_text(const tether__tp *tp, const tether__conn *c)
{
    int proxy = tp->proxy.host[0] != 0;
    switch (c->stage) {
    case ST_CONNECTING:
        return proxy ? "connecting (TCP) to the proxy" : "connecting (TCP) to the server";
    case ST_TCP:
        return proxy ? "waiting for the proxy's answer to CONNECT, or in the TLS handshake"
                     : (tp->tls ? "in the TLS handshake" : "sending the upgrade request");
    case ST_SENT:
        return "waiting for the answer to the upgrade request";
    default:
        return "completing the upgrade";
    }
}

/* A sentence for lws's handshake reasons; NULL when there is none. */
static const char *handshake_text(const char *lws_why)
{
    static const struct {
        const char *lws;
        const char *text;
    } map[] = {
        {"UPGRADE malformed", "the 101 answer's Connection header does not say 'Upgrade': something "
                              "on the path rewrote it"},
        {"UPGRADE missing", "the 101 answer has no Upgrade header"},
        {"Upgrade to", "the 101 answer upgrades to something other than websocket"},
        {"Accept hash", "the 101 answer's Sec-WebSocket-Accept does not match the key we sent"},
        {"ACCEPT missing", "the 101 answer has no Sec-WebSocket-Accept header"},
        {"PROTOCOL malformed", "the server chose a subprotocol other than " TETHER_SUBPROTOCOL},
        {"Rejected by filter", "the 101 answer did not choose the " TETHER_SUBPROTOCOL
                               " subprotocol"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strstr(lws_why, map[i].lws)) {
            return map[i].text;
        }
    }
    return NULL;
}

static void probe_start(tether__tp *tp, tether__conn *c);
static const char *alert_name(int alert);

/* A client attempt failed: decide the error and report it (or probe the proxy first). */
void tether__tp_client_failed(tether__tp *tp, tether__conn *c, struct lws *wsi, const char *in,
                          size_t len)
{
    int sys_err = errno;
    int proxy = tp->proxy.host[0] != 0;
    char lws_why[160];
    tether__tp_close why;

    memset(&why, 0, sizeof why);
    lws_sul_cancel(&c->sul_attempt);
    snprintf(lws_why, sizeof lws_why, "%.*s", in ? (int)len : 0, in ? in : "");
    lws_why[strcspn(lws_why, "\r\n")] = '\0';
    if (!lws_why[0]) {
        snprintf(lws_why, sizeof lws_why, "connection failed");
    }
    if (!c->fail_error) {
        why.http_status = response_status(wsi);
        if (why.http_status == 101) {
            why.http_status = 0;
        }
        if (!why.http_status && strstr(lws_why, "unauthorized")) {
            why.http_status = 401; /* lws words a 401 this way */
        }
        if (why.http_status) {
            char ra[80];
            if (lws_hdr_copy(wsi, ra, sizeof ra, WSI_TOKEN_HTTP_RETRY_AFTER) > 0) {
                why.retry_after_ms = tether__retry_after_ms(ra, time(NULL));
            }
        }
    }
    /* a timeout we decided stands; a plain "the connection ended" yields to what TLS said */
    int tls_knows = (c->tls_err && !tp->cfg.tls_insecure) || c->tls_alert ||
                    (c->cert_requested && tp->tls && c->stage < ST_ANSWERED);
    if (c->fail_error && (c->fail_error != TETHER_ECONNECT || !tls_knows)) {
        why.error = c->fail_error;
        snprintf(why.detail, sizeof why.detail, "%s", c->fail_detail);
    } else if (c->tls_err && !tp->cfg.tls_insecure) {
        why.error = tls_verify_code(c->tls_err);
        snprintf(why.detail, sizeof why.detail, "the server's certificate was refused: %s",
                 X509_verify_cert_error_string(c->tls_err));
    } else if (c->tls_alert) {
        const char *desc = alert_name(c->tls_alert);
        why.error = TETHER_ETLS;
        snprintf(why.detail, sizeof why.detail, "the server ended TLS with the alert '%s'%s", desc,
                 strstr(desc, "certificate") || strstr(desc, "CA")
                     ? ": it wants a client certificate it trusts (tls_cert_file, tls_key_file)"
                     : "");
    } else if (c->cert_requested && tp->tls && c->stage >= ST_TCP && c->stage < ST_ANSWERED &&
               !strstr(lws_why, "HS:")) {
        /* TLS 1.3: the server checks our certificate after the client's handshake is done,
         * and its alert may be lost when it closes at once */
        why.error = TETHER_ETLS;
        snprintf(why.detail, sizeof why.detail,
                 "the server asked for a client certificate and closed the connection: %s",
                 tp->cfg.tls_cert_file ? "it refused ours (tls_cert_file)"
                                       : "configure one (tls_cert_file, tls_key_file)");
    } else if (why.http_status) {
        why.error = TETHER_EHTTP;
        snprintf(why.detail, sizeof why.detail, "the server answered the upgrade with HTTP %d",
                 why.http_status);
        if (why.retry_after_ms) {
            size_t n = strlen(why.detail);
            snprintf(why.detail + n, sizeof why.detail - n, " (Retry-After %u ms)",
                     why.retry_after_ms);
        }
    } else if (proxy && c->stage == ST_TCP &&
               (strstr(lws_why, "proxy") || strstr(lws_why, "before") ||
                strstr(lws_why, "hung up"))) {
        /* lws reads only "HTTP/1.x 200" from the proxy and drops any other answer:
         * ask the proxy again ourselves to learn its status */
        why.error = TETHER_EPROXY;
        snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d did not open the tunnel (%.60s)",
                 tp->proxy.host, tp->proxy.port, lws_why);
        c->probe_why = why;
        probe_start(tp, c);
        return;
    } else if (strstr(lws_why, "getaddrinfo")) {
        why.error = proxy ? TETHER_EPROXY : TETHER_EDNS;
        snprintf(why.detail, sizeof why.detail, "the %s name '%.80s' did not resolve",
                 proxy ? "proxy's" : "server's", proxy ? tp->proxy.host : tp->target_host);
    } else if (strstr(lws_why, "Unable to connect")) {
        const char *what = sys_err == EHOSTUNREACH || sys_err == ENETUNREACH
                               ? "is unreachable"
                               : "refused the TCP connection";
        if (proxy) {
            why.error = TETHER_EPROXY;
            snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d %s", tp->proxy.host,
                     tp->proxy.port, what);
        } else {
            why.error = sys_err == EHOSTUNREACH || sys_err == ENETUNREACH ? TETHER_ECONNECT
                                                                         : TETHER_ECONNREFUSED;
            snprintf(why.detail, sizeof why.detail, "the server %.80s:%d %s", tp->target_host,
                     tp->target_port, what);
        }
    } else {
        const char *hs = handshake_text(lws_why);
        why.error = classify_failure(lws_why, 0);
        if (hs) {
            snprintf(why.detail, sizeof why.detail, "%s (%.60s)", hs, lws_why);
        } else if (why.error == TETHER_ECONNECT) {
            snprintf(why.detail, sizeof why.detail, "the connection ended while %s (%.80s)",
                     stage_text(tp, c), lws_why);
        } else {
            snprintf(why.detail, sizeof why.detail, "%s", lws_why);
        }
    }
    tether__tp_conn_end(c, &why);
    tether__tp_conn_free(c);
}

/* connect_timeout_ms passed: fail the attempt with TETHER_ECONNECT_TIMEOUT. */
void tether__tp_attempt_timeout_cb(lws_sorted_usec_list_t *sul)
{
    tether__conn *c = lws_container_of(sul, tether__conn, sul_attempt);
    tether__tp *tp = c->tp;
    if (c->ended || c->established || c->fail_error || !c->wsi) {
        return;
    }
    c->fail_error = TETHER_ECONNECT_TIMEOUT;
    snprintf(c->fail_detail, sizeof c->fail_detail, "no progress within %u ms while %s",
             tp->cfg.connect_timeout_ms, stage_text(tp, c));
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- the proxy probe ---- */

void tether__tp_probe_free(tether__tp *tp)
{
    probe *p = tp->probe;
    if (!p) {
        return;
    }
    lws_sul_cancel(&p->sul);
    if (p->fd >= 0) {
        close(p->fd);
    }
    tp->probe = NULL;
    free(p);
}

/* Reports the failed attempt, refined by what the probe learnt. */
void tether__tp_probe_finish(tether__tp *tp, const char *failure)
{
    probe *p = tp->probe;
    tether__conn *c = p->c;
    tether__tp_close why = c->probe_why;
    int st = tether__http_status(p->resp, p->resp_len);
    char hv[120];

    if (st && st != 200) {
        why.proxy_status = st;
        if (tether__http_header(p->resp, p->resp_len, "Retry-After", hv, sizeof hv)) {
            why.retry_after_ms = tether__retry_after_ms(hv, time(NULL));
        }
        if (st == 407) {
            why.error = TETHER_EPROXY_AUTH;
            if (!tether__http_header(p->resp, p->resp_len, "Proxy-Authenticate", hv, sizeof hv)) {
                snprintf(hv, sizeof hv, "no Proxy-Authenticate header");
            }
            snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d %s (407; %.60s)",
                     tp->proxy.host, tp->proxy.port,
                     tp->proxy.user[0] ? "refused the credentials given"
                                       : "requires authentication",
                     hv);
        } else {
            why.error = TETHER_EPROXY;
            snprintf(why.detail, sizeof why.detail,
                     "the proxy %.80s:%d answered CONNECT %.60s:%d with HTTP %d", tp->proxy.host,
                     tp->proxy.port, tp->target_host, tp->target_port, st);
        }
    } else if (st == 200) {
        snprintf(why.detail, sizeof why.detail,
                 "the proxy %.80s:%d gave an answer to CONNECT that libwebsockets could not use "
                 "(a second CONNECT got 200)",
                 tp->proxy.host, tp->proxy.port);
    } else if (failure) {
        size_t n = strlen(why.detail);
        snprintf(why.detail + n, sizeof why.detail - n, "; asking it again: %s", failure);
    }
    tether__tp_probe_free(tp);
    c->probing = 0;
    tether__tp_conn_end(c, &why);
    tether__tp_conn_free(c);
}

static void probe_step(lws_sorted_usec_list_t *sul)
{
    probe *p = lws_container_of(sul, probe, sul);
    tether__tp *tp = lws_context_user(p->ctx);
    struct pollfd pfd = {p->fd, 0, 0};

    if (tether__now_ms() >= p->deadline) {
        tether__tp_probe_finish(tp, "no answer in time");
        return;
    }
    pfd.events = p->phase == 0 || p->phase == 1 ? POLLOUT : POLLIN;
    if (poll(&pfd, 1, 0) > 0) {
        if (p->phase == 0) {
            int e = 0;
            socklen_t sl = sizeof e;
            if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0 || e) {
                tether__tp_probe_finish(tp, strerror(e ? e : errno));
                return;
            }
            p->phase = 1;
        }
        if (p->phase == 1) {
            ssize_t n = send(p->fd, p->req + p->req_off, p->req_len - p->req_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                tether__tp_probe_finish(tp, strerror(errno));
                return;
            }
            p->req_off += n > 0 ? (size_t)n : 0;
            if (p->req_off == p->req_len) {
                p->phase = 2;
            }
        } else if (p->phase == 2) {
            ssize_t n = recv(p->fd, p->resp + p->resp_len, sizeof p->resp - 1 - p->resp_len,
                             MSG_DONTWAIT);
            if (n > 0) {
                p->resp_len += (size_t)n;
                p->resp[p->resp_len] = '\0';
            }
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                strstr(p->resp, "\r\n\r\n") || p->resp_len + 1 >= sizeof p->resp) {
                tether__tp_probe_finish(tp, n == 0 ? "the proxy closed the connection" : NULL);
                return;
            }
        }
    }
    lws_sul_schedule(p->ctx, 0, &p->sul, probe_step, 5 * LWS_US_PER_MS);
}

/* Opens our own connection to the proxy and sends the same CONNECT lws sent. */
static void probe_start(tether__tp *tp, tether__conn *c)
{
    struct addrinfo hints, *ai = NULL;
    char port[16], auth[200], b64[300];
    probe *p = calloc(1, sizeof *p);

    c->probing = 1;
    c->wsi = NULL;
    tp->client = NULL;
    if (!p) {
        tether__tp_conn_end(c, &c->probe_why);
        tether__tp_conn_free(c);
        return;
    }
    p->c = c;
    p->fd = -1;
    p->ctx = tp->ctx;
    tp->probe = p;
    p->deadline = tether__now_ms() +
                  (tp->cfg.connect_timeout_ms < 5000 ? tp->cfg.connect_timeout_ms : 5000);
    const char *ob = strchr(tp->target_host, ':') ? "[" : "";
    const char *cb = *ob ? "]" : "";
    int n = snprintf(p->req, sizeof p->req,
                     "CONNECT %s%s%s:%d HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: tether\r\n",
                     ob, tp->target_host, cb, tp->target_port, ob, tp->target_host, cb,
                     tp->target_port);
    tether__proxy_auth(&tp->proxy, auth, sizeof auth);
    if (auth[0] && tether__base64(auth, strlen(auth), b64, sizeof b64) == 0) {
        n += snprintf(p->req + n, sizeof p->req - (size_t)n, "Proxy-Authorization: Basic %s\r\n",
                      b64);
    }
    n += snprintf(p->req + n, sizeof p->req - (size_t)n, "\r\n");
    p->req_len = (size_t)n < sizeof p->req ? (size_t)n : sizeof p->req - 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", tp->proxy.port);
    if (getaddrinfo(tp->proxy.host, port, &hints, &ai) != 0 || !ai) {
        tether__tp_probe_finish(tp, "the proxy's name did not resolve");
        return;
    }
    p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0 || (connect(p->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        freeaddrinfo(ai);
        tether__tp_probe_finish(tp, strerror(errno));
        return;
    }
    freeaddrinfo(ai);
    lws_sul_schedule(p->ctx, 0, &p->sul, probe_step, 1 * LWS_US_PER_MS);
}

/* Records the first verification error of the server's chain (client side). */
int tether__tp_verify_cert(tether__tp *tp, X509_STORE_CTX *x, int preverify_ok)
{
    if (preverify_ok) {
        return 0;
    }
    int err = X509_STORE_CTX_get_error(x);
    if (tp->cfg.tls_insecure) {
        X509_STORE_CTX_set_error(x, X509_V_OK); /* the user asked for no verification */
        return 0;
    }
    if (tp->client && !tp->client->tls_err) {
        tp->client->tls_err = err;
    }
    return 0;
}

/* Notes a fatal alert from the server, and whether it asked for a client certificate. */
void tether__tp_tls_info_cb(const SSL *ssl, int where, int ret)
{
    tether__tp *tp = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!tp || !tp->client) {
        return;
    }
    if ((where & SSL_CB_LOOP) && SSL_get_state(ssl) == TLS_ST_CR_CERT_REQ) {
        tp->client->cert_requested = 1;
    }
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL && !tp->client->tls_alert) {
        tp->client->tls_alert = ret;
    }
}

/* The name of a TLS alert (OpenSSL 3.0 calls the TLS 1.3 ones "unknown"). */
static const char *alert_name(int alert)
{
    switch (alert & 0xff) {
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "certificate revoked";
    case 45: return "certificate expired";
    case 46: return "certificate unknown";
    case 48: return "unknown CA";
    case 70: return "protocol version";
    case 112: return "unrecognized name";
    case 116: return "certificate required";
    default: return SSL_alert_desc_string_long(alert);
    }
}


/*
 * Why a client attempt failed: gathers the facts (how far it got, errno, the
 * resolver, TLS verification results and alerts, the HTTP status and headers
 * of the answer, the attempt's own timeout) for tether__classify(), and runs
 * the proxy probe that learns a proxy's refusal status. Part of the
 * libwebsockets glue.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"

/* The status line of an answer to the upgrade, while lws still holds the headers. */
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

/* The headers of a 101 answer, read while lws still holds them. */
static void read_101(struct lws *wsi, tether__facts *f)
{
    char v[128];
    f->hdr_accept = lws_hdr_total_length(wsi, WSI_TOKEN_ACCEPT) > 0;
    f->hdr_upgrade = TETHER__HDR_ABSENT;
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_UPGRADE) > 0) {
        f->hdr_upgrade = strcasecmp(v, "websocket") == 0 ? TETHER__HDR_OK : TETHER__HDR_OTHER;
    }
    f->hdr_connection = TETHER__HDR_ABSENT;
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_CONNECTION) > 0) {
        f->hdr_connection = tether__http_list_has(v, "upgrade") ? TETHER__HDR_OK : TETHER__HDR_OTHER;
    }
    f->hdr_protocol = TETHER__HDR_ABSENT;
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_PROTOCOL) > 0) {
        f->hdr_protocol = strcmp(v, TETHER_SUBPROTOCOL) == 0 ? TETHER__HDR_OK : TETHER__HDR_OTHER;
    }
    f->hdr_extensions = lws_hdr_total_length(wsi, WSI_TOKEN_EXTENSIONS) > 0;
}

/* errno values that can be the result of a TCP connect; anything else is stale. */
static int connect_errno(int e)
{
    switch (e) {
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
    case ETIMEDOUT:
    case EACCES:
    case EPERM:
        return e;
    default:
        return 0;
    }
}

/* getaddrinfo()'s code for name, 0 when it resolves. */
static int resolve_code(const char *name)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(name, NULL, &hints, &ai);
    if (gai == 0) {
        freeaddrinfo(ai);
    }
    return gai;
}

void tether__tp_facts_base(tether__tp *tp, tether__conn *c, tether__facts *f)
{
    memset(f, 0, sizeof *f);
    f->step = c->stage;
    f->tls = tp->tls;
    f->via_proxy = tp->proxy.host[0] != 0;
    f->timed_out = c->timed_out;
    f->connect_timeout_ms = tp->cfg.connect_timeout_ms;
    if (c->tls_err && !tp->cfg.tls_insecure) {
        f->x509_error = c->tls_err;
        f->x509_text = X509_verify_cert_error_string(c->tls_err);
    }
    f->tls_alert = c->tls_alert;
    f->tls_started = c->tls_started;
    f->tls_done = c->tls_done;
    f->cert_requested = c->cert_requested;
    f->have_client_cert = tp->cfg.tls_cert_file != NULL;
    f->upgrade_checked = c->upgrade_checked;
    f->proxy_has_creds = tp->proxy.user[0] != 0;
    f->server_host = tp->target_host;
    f->server_port = tp->target_port;
    f->proxy_host = tp->proxy.host;
    f->proxy_port = tp->proxy.port;
}

static void probe_start(tether__tp *tp, tether__conn *c, const tether__facts *f,
                        const char *lws_why);

/* A client attempt failed: gather the facts, classify, report (or probe the proxy first). */
void tether__tp_client_failed(tether__tp *tp, tether__conn *c, struct lws *wsi, const char *in,
                              size_t len)
{
    int sys_err = errno; /* set by a synchronous connect() that failed; stale otherwise */
    tether__facts facts, *f = &facts;
    char lws_why[96];
    tether__tp_close why;

    memset(&why, 0, sizeof why);
    lws_sul_cancel(&c->sul_attempt);
    snprintf(lws_why, sizeof lws_why, "%.*s", in ? (int)len : 0, in ? in : "");
    lws_why[strcspn(lws_why, "\r\n")] = '\0';
    tether__tp_facts_base(tp, c, f);
    f->lws_text = lws_why;
    if (wsi && !c->timed_out) {
        f->http_status = response_status(wsi);
        if (f->http_status == 101) {
            read_101(wsi, f);
        } else if (f->http_status) {
            char ra[80];
            if (lws_hdr_copy(wsi, ra, sizeof ra, WSI_TOKEN_HTTP_RETRY_AFTER) > 0) {
                f->retry_after_ms = tether__retry_after_ms(ra, time(NULL));
            }
        }
    }
    if (f->step == ST_CONNECTING && !f->timed_out) {
        f->sys_errno = connect_errno(sys_err);
        if (!f->sys_errno) {
            f->gai_error = resolve_code(f->via_proxy ? tp->proxy.host : tp->target_host);
        }
    }
    if (tether__classify(f, &why)) {
        /* lws reads only "HTTP/1.x 200" from the proxy and drops any other answer:
         * ask the proxy again ourselves to learn its status */
        probe_start(tp, c, f, lws_why);
        return;
    }
    tether__tp_conn_end(c, &why);
    tether__tp_conn_free(c);
}

/* connect_timeout_ms passed: fail the attempt with TETHER_ECONNECT_TIMEOUT. */
void tether__tp_attempt_timeout_cb(lws_sorted_usec_list_t *sul)
{
    tether__conn *c = lws_container_of(sul, tether__conn, sul_attempt);
    tether__tp *tp = c->tp;
    (void)tp;
    if (c->ended || c->established || c->timed_out || !c->wsi) {
        return;
    }
    c->timed_out = 1;
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
    tether__free(p);
}

/* Reports the failed attempt, refined by what the probe learnt. */
void tether__tp_probe_finish(tether__tp *tp, const char *failure)
{
    probe *p = tp->probe;
    tether__conn *c = p->c;
    tether__facts *f = &p->facts;
    tether__tp_close why;
    char ra[80], pa[120];

    memset(&why, 0, sizeof why);
    f->lws_text = p->lws_why;
    f->proxy_probed = 1;
    f->proxy_status = tether__http_status(p->resp, p->resp_len);
    if (tether__http_header(p->resp, p->resp_len, "Retry-After", ra, sizeof ra)) {
        f->proxy_retry_after_ms = tether__retry_after_ms(ra, time(NULL));
    }
    if (tether__http_header(p->resp, p->resp_len, "Proxy-Authenticate", pa, sizeof pa)) {
        f->proxy_authenticate = pa;
    }
    f->probe_failure = failure;
    tether__classify(f, &why);
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
static void probe_start(tether__tp *tp, tether__conn *c, const tether__facts *f,
                        const char *lws_why)
{
    struct addrinfo hints, *ai = NULL;
    char port[16], auth[200], b64[300];
    probe *p = tether__calloc(1, sizeof *p);

    c->probing = 1;
    c->wsi = NULL;
    tp->client = NULL;
    if (!p) {
        tether__tp_close why;
        memset(&why, 0, sizeof why);
        tether__facts oom = *f;
        oom.proxy_probed = 1;
        oom.probe_failure = "out of memory";
        tether__classify(&oom, &why);
        tether__tp_conn_end(c, &why);
        tether__tp_conn_free(c);
        return;
    }
    p->c = c;
    p->facts = *f;
    snprintf(p->lws_why, sizeof p->lws_why, "%s", lws_why);
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

/* Notes how far our TLS handshake got, a fatal alert from the server, and whether it
 * asked for a client certificate. */
void tether__tp_tls_info_cb(const SSL *ssl, int where, int ret)
{
    tether__tp *tp = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!tp || !tp->client) {
        return;
    }
    if (where & SSL_CB_HANDSHAKE_START) {
        tp->client->tls_started = 1;
    }
    if (where & SSL_CB_HANDSHAKE_DONE) {
        tp->client->tls_done = 1;
    }
    if ((where & SSL_CB_LOOP) && SSL_get_state(ssl) == TLS_ST_CR_CERT_REQ) {
        tp->client->cert_requested = 1;
    }
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL && !tp->client->tls_alert) {
        tp->client->tls_alert = ret;
    }
}

/*
 * The client side of the HTTP carriage (proto/HTTP.md) with libcurl: a
 * tether__conn whose frames travel in POST open, POST send and GET poll
 * requests. libcurl's multi interface runs on the transport's libuv loop
 * (socket and timer callbacks, curl_multi_socket_action), on the service
 * thread, beside libwebsockets. With transport_curl_conn.c the only code that
 * includes curl.
 *
 * To the client core this is a connection like a WebSocket: open() comes
 * first, the first frame written is the HELLO (sent as the open request), the
 * open answer's frames and every poll answer's frames arrive through
 * message(), written frames are batched into sends (one in flight, retried
 * with the same frame numbers), and closed() reports the end.
 */
#include "transport_curl_int.h"

/* ---- the multi handle on libuv ---- */

typedef struct cc_sock {
    uv_poll_t poll;   /* the socket's watcher */
    curl_socket_t fd; /* the socket */
    tether__curl *cu; /* the carriage */
} cc_sock;

static void sock_close_cb(uv_handle_t *h)
{
    tether__free(h->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    cc_sock *s = p->data;
    tether__curl *cu = s->cu;
    int flags = 0, running;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    }
    if (events & UV_READABLE) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & UV_WRITABLE) {
        flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(cu->multi, s->fd, flags, &running);
    tether__cc_done(cu);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
    tether__curl *cu = arg;
    cc_sock *s = sockp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_close_cb);
            curl_multi_assign(cu->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = tether__calloc(1, sizeof *s);
        if (!s || uv_poll_init_socket(cu->loop, &s->poll, fd) != 0) {
            tether__free(s);
            return -1;
        }
        s->fd = fd;
        s->cu = cu;
        s->poll.data = s;
        curl_multi_assign(cu->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, poll_cb);
    return 0;
}

static void multi_timer_cb(uv_timer_t *t)
{
    tether__curl *cu = t->data;
    int running;
    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    tether__cc_done(cu);
}

static int timer_cb(CURLM *m, long timeout_ms, void *arg)
{
    tether__curl *cu = arg;
    (void)m;
    if (timeout_ms < 0) {
        uv_timer_stop(&cu->timer);
    } else {
        /* 0 too goes through the loop: curl must not be re-entered from here */
        uv_timer_start(&cu->timer, multi_timer_cb, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void multi_setup(tether__curl *cu)
{
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
}

int tether__curl_create(tether__tp *tp, uv_loop_t *loop, tether__curl **out)
{
    *out = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        return tether__fail(TETHER_ESYS, "libcurl failed to initialise: %s",
                            curl_easy_strerror(global_rc));
    }
    tether__curl *cu = tether__calloc(1, sizeof *cu);
    if (!cu) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    cu->tp = tp;
    cu->loop = loop;
    cu->multi = curl_multi_init();
    if (!cu->multi || uv_timer_init(loop, &cu->timer) != 0) {
        if (cu->multi) {
            curl_multi_cleanup(cu->multi);
        }
        tether__free(cu);
        return tether__fail(TETHER_ENOMEM, "cannot create the HTTP carriage");
    }
    cu->timer.data = cu;
    multi_setup(cu);
    *out = cu;
    return TETHER_OK;
}

void tether__curl_drop_pool(tether__curl *cu)
{
    CURLM *m = curl_multi_init();
    if (!m) {
        return; /* keep the old pool: a dead connection in it costs one more timeout */
    }
    curl_multi_cleanup(cu->multi); /* closes every pooled connection (socket_cb) */
    uv_timer_stop(&cu->timer);
    cu->multi = m;
    multi_setup(cu);
}

/* ---- requests ---- */

void tether__cc_req_free(tether__curl *cu, cc_req *r)
{
    if (!r) {
        return;
    }
    if (r->easy) {
        if (r->added) {
            curl_multi_remove_handle(cu->multi, r->easy);
            cu->reqs--;
        }
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->hdrs);
    tether__free(r->rx);
    tether__free(r);
}

static size_t write_cb(char *p, size_t sz, size_t n, void *arg)
{
    cc_req *r = arg;
    size_t len = sz * n;
    if (len > r->rx_max - r->rx_len) {
        r->rx_over = 1;
        return 0; /* aborts the transfer */
    }
    if (r->rx_len + len > r->rx_cap) {
        size_t cap = r->rx_cap ? r->rx_cap : 4096;
        while (cap < r->rx_len + len) {
            cap *= 2;
        }
        uint8_t *nb = tether__realloc(r->rx, cap);
        if (!nb) {
            return 0;
        }
        r->rx = nb;
        r->rx_cap = cap;
    }
    memcpy(r->rx + r->rx_len, p, len);
    r->rx_len += len;
    return len;
}

/* Copies the value of header line p (of len bytes) into out when its name is name. */
static void header_value(const char *p, size_t len, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':') {
        return;
    }
    p += nl + 1;
    len -= nl + 1;
    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' ')) {
        len--;
    }
    snprintf(out, out_len, "%.*s", (int)(len < out_len ? len : out_len - 1), p);
}

static size_t header_cb(char *p, size_t sz, size_t n, void *arg)
{
    cc_req *r = arg;
    size_t len = sz * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new answer (a proxy's CONNECT answer or a 100 came first): forget the last */
        r->id[0] = r->ctype[0] = r->first[0] = r->retry_after[0] = '\0';
        return len;
    }
    header_value(p, len, "Tether-Connection", r->id, sizeof r->id);
    header_value(p, len, "Content-Type", r->ctype, sizeof r->ctype);
    header_value(p, len, "Tether-First", r->first, sizeof r->first);
    header_value(p, len, "Retry-After", r->retry_after, sizeof r->retry_after);
    return len;
}

/* Starts a request of op; body (NULL for a GET) must outlive it. */
cc_req *tether__cc_req_start(tether__cc *cc, int op, const uint8_t *body, size_t len,
                             uint64_t first)
{
    tether__tp *tp = cc->c->tp;
    const tether__tp_cfg *cfg = &tp->cfg;
    const tether__proxy *px = &tp->proxy;
    if (op == TETHER__HC_OP_OPEN && cc->cu->drop_pool && cc->cu->reqs == 0) {
        cc->cu->drop_pool = 0; /* the open is the connection's first request: none in the pool */
        tether__curl_drop_pool(cc->cu);
    }
    cc_req *r = tether__calloc(1, sizeof *r);
    char h[1200];
    if (!r || !(r->easy = curl_easy_init())) {
        tether__free(r);
        return NULL;
    }
    r->cc = cc;
    r->op = op;
    tether__hc_limits lim;
    tether__hc_limits_for(&lim, op == TETHER__HC_OP_OPEN ? TETHER__HC_ANSWER : TETHER__HC_POLL,
                          cc->max_rx);
    r->rx_max = (size_t)lim.body_max;
    CURL *e = r->easy;
    int ui = op == TETHER__HC_OP_OPEN ? 0 : op == TETHER__HC_OP_SEND ? 1 : 2;
    curl_easy_setopt(e, CURLOPT_URL, cc->url[ui]);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(op == TETHER__HC_OP_POLL ? cc_dead_ms(cfg) : CC_SEND_TIMEOUT_MS));
    /* the client chose the proxy (configured, or from the environment with
     * no_proxy applied): never let curl read the environment again */
    if (px && px->host[0]) {
        snprintf(h, sizeof h, "http://%s%s%s:%d", strchr(px->host, ':') ? "[" : "", px->host,
                 strchr(px->host, ':') ? "]" : "", px->port);
        curl_easy_setopt(e, CURLOPT_PROXY, h);
        if (px->user[0]) {
            curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, px->user);
            curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, px->pass);
            curl_easy_setopt(e, CURLOPT_PROXYAUTH, (long)CURLAUTH_ANY);
        }
    } else {
        curl_easy_setopt(e, CURLOPT_PROXY, "");
    }
    if (cfg->tls_ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->tls_ca_file);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }
    if (cfg->tls_cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->tls_cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->tls_key_file);
    }
    if (cfg->tls_insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    struct curl_slist *l = NULL, *t;
#define ADD(s)                                                                                     \
    do {                                                                                           \
        if (!(t = curl_slist_append(l, (s)))) {                                                    \
            goto fail;                                                                             \
        }                                                                                          \
        l = t;                                                                                     \
    } while (0)
    ADD("Expect:"); /* no 100-continue round trip */
    if (cfg->origin) {
        snprintf(h, sizeof h, "Origin: %s", cfg->origin);
        ADD(h);
    }
    for (const char *const *x = cfg->headers; x && *x; x++) {
        ADD(*x);
    }
    if (op != TETHER__HC_OP_OPEN) {
        snprintf(h, sizeof h, "Tether-Connection: %s", cc->id);
        ADD(h);
        snprintf(h, sizeof h, "Tether-Received: %llu", (unsigned long long)cc->received);
        ADD(h);
    }
    if (op == TETHER__HC_OP_POLL) {
        ADD("Cache-Control: no-store");
        snprintf(h, sizeof h, "Tether-Hold: %u", (unsigned)cc_hold_s(cfg));
        ADD(h);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        ADD("Content-Type: " TETHER__HC_CONTENT_TYPE);
        if (op == TETHER__HC_OP_SEND) {
            snprintf(h, sizeof h, "Tether-First: %llu", (unsigned long long)first);
            ADD(h);
        }
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
#undef ADD
    r->hdrs = l;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
    if (curl_multi_add_handle(cc->cu->multi, e) != CURLM_OK) {
        goto fail;
    }
    r->added = 1;
    cc->cu->reqs++;
    return r;
fail:
    curl_slist_free_all(l);
    r->hdrs = NULL;
    tether__cc_req_free(cc->cu, r);
    return NULL;
}

static void curl_freed(uv_handle_t *h)
{
    tether__free(h->data);
}

void tether__curl_destroy(tether__curl *cu)
{
    if (!cu) {
        return;
    }
    if (cu->cur) {
        tether__cc_end(cu->cur, TETHER_EPEER_CLOSED, 0, 0, 0, "the client is shutting down");
    }
    curl_multi_cleanup(cu->multi); /* removes the sockets (socket_cb) */
    uv_timer_stop(&cu->timer);
    uv_close((uv_handle_t *)&cu->timer, curl_freed);
}

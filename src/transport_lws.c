/*
 * libwebsockets glue for tether: the only file that includes libwebsockets.
 *
 * One context and one service thread per tether__tp. Connections carry a
 * pointer to their tether__conn in lws's per-session data, so server and
 * client connections are handled by the same callback.
 */
#include "transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include <tether/tether.h>

#include "util.h"

struct tether__conn {
    struct lws *wsi;              /* the lws connection, NULL once closed */
    tether__tp *tp;               /* owner transport */
    void *user;                   /* client.c / server.c state for this connection */
    uint8_t *rx;                  /* message being assembled */
    size_t rx_len;                /* bytes in rx */
    size_t rx_cap;                /* bytes allocated at rx */
    int rx_bad;                   /* the current message is being discarded (error reported) */
    int established;              /* the WebSocket is open */
    int closing;                  /* close requested: the next writable closes */
    int ended;                    /* closed() was reported */
    uint64_t last_rx_ms;          /* when the peer last sent anything */
    lws_sorted_usec_list_t sul;   /* per-connection timer */
};

struct tether__tp {
    tether__tp_cfg cfg;           /* copy of the configuration */
    tether__tp_cb cb;             /* owner callbacks */
    void *owner;                  /* passed to every callback */
    struct lws_context *ctx;      /* the lws context */
    struct lws_vhost *vhost;      /* the server's listening vhost, or NULL */
    lws_retry_bo_t retry;         /* ping/idle policy given to lws */
    struct lws_protocols protocols[2]; /* tether.v1 and the terminator */
    pthread_t thread;             /* service thread */
    int started;                  /* thread is running */
    atomic_int stop;              /* asks the service thread to finish */
    lws_sorted_usec_list_t sul;   /* transport-wide timer */
    tether__conn *client;         /* the client's current attempt/connection, or NULL */
    char url[1024];               /* scratch copy for lws_parse_uri */
    char host_hdr[300];           /* Host header "host:port" */
};

static tether__tp *tp_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

size_t tether__tp_headroom(void)
{
    return LWS_PRE;
}

/* ---- connection bookkeeping ---- */

static void conn_free(tether__conn *c)
{
    lws_sul_cancel(&c->sul);
    free(c->rx);
    free(c);
}

static void conn_end(tether__conn *c, tether__tp_close *why)
{
    if (c->ended) {
        return;
    }
    c->ended = 1;
    lws_sul_cancel(&c->sul);
    why->established = c->established;
    if (c->tp->cb.closed) {
        c->tp->cb.closed(c->tp->owner, c, why);
    }
    c->wsi = NULL;
}

static void conn_timer_cb(lws_sorted_usec_list_t *sul)
{
    tether__conn *c = lws_container_of(sul, tether__conn, sul);
    if (!c->ended && c->tp->cb.timer) {
        c->tp->cb.timer(c->tp->owner, c);
    }
}

static void tp_timer_cb(lws_sorted_usec_list_t *sul)
{
    tether__tp *tp = lws_container_of(sul, tether__tp, sul);
    if (tp->cb.timer) {
        tp->cb.timer(tp->owner, NULL);
    }
}

/* Classifies lws's text reason for a failed client connection. */
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

static void rx_append(tether__conn *c, const uint8_t *in, size_t len, int first, int final,
                      int binary)
{
    tether__tp *tp = c->tp;
    if (first) {
        c->rx_len = 0;
        c->rx_bad = 0;
        if (!binary) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_EMALFORMED);
        }
    }
    if (c->rx_bad) {
        return;
    }
    if (len > tp->cfg.max_rx - c->rx_len) {
        c->rx_bad = 1;
        tp->cb.message(tp->owner, c, NULL, 0, TETHER_EFRAME_OVERSIZE);
        return;
    }
    if (first && final) {
        /* the common case: the whole message in one piece, no copy */
        tp->cb.message(tp->owner, c, in, len, 0);
        return;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len) {
            cap *= 2;
        }
        uint8_t *p = realloc(c->rx, cap);
        if (!p) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_ENOMEM);
            return;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (final) {
        tp->cb.message(tp->owner, c, c->rx, c->rx_len, 0);
        c->rx_len = 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    tether__tp *tp = tp_of(wsi);
    tether__conn **slot = user;
    tether__conn *c = slot ? *slot : NULL;
    tether__tp_close why;

    if (!tp) {
        return 0;
    }
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (tp->cb.wake && !atomic_load(&tp->stop)) {
            tp->cb.wake(tp->owner);
        }
        return 0;

    case LWS_CALLBACK_ESTABLISHED: /* server side */
        c = calloc(1, sizeof *c);
        if (!c) {
            return -1;
        }
        c->wsi = wsi;
        c->tp = tp;
        c->established = 1;
        c->last_rx_ms = tether__now_ms();
        *slot = c;
        if (tp->cb.open) {
            tp->cb.open(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        /* lws falls back to its first protocol when the 101 names none: tether.v1 must be chosen */
        char proto[64];
        if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) <= 0 ||
            strcmp(proto, TETHER_SUBPROTOCOL) != 0) {
            return 1; /* reported as "HS: Rejected by filter cb" */
        }
        return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c = tp->client;
        if (!c) {
            return -1;
        }
        c->established = 1;
        c->last_rx_ms = tether__now_ms();
        lws_sul_cancel(&c->sul);
        if (tp->cb.open) {
            tp->cb.open(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c || c->ended || c->closing) {
            return 0;
        }
        c->last_rx_ms = tether__now_ms();
        rx_append(c, in, len, lws_is_first_fragment(wsi), lws_is_final_fragment(wsi),
                  lws_frame_is_binary(wsi));
        return 0;

    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) {
            c->last_rx_ms = tether__now_ms();
        }
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c || c->ended) {
            return 0;
        }
        if (c->closing) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        if (tp->cb.writable) {
            tp->cb.writable(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        c = tp->client;
        if (!c) {
            return 0;
        }
        memset(&why, 0, sizeof why);
        snprintf(why.detail, sizeof why.detail, "%.*s", in ? (int)len : 0,
                 in ? (const char *)in : "");
        if (!why.detail[0]) {
            snprintf(why.detail, sizeof why.detail, "connection failed");
        }
        why.http_status = response_status(wsi);
        if (why.http_status == 101) {
            why.http_status = 0;
        }
        if (!why.http_status && strstr(why.detail, "unauthorized")) {
            why.http_status = 401; /* lws words a 401 this way */
        }
        why.error = classify_failure(why.detail, why.http_status);
        if (why.error == TETHER_EHTTP && why.http_status) {
            snprintf(why.detail, sizeof why.detail, "the server answered the upgrade with HTTP %d",
                     why.http_status);
        }
        tp->client = NULL;
        conn_end(c, &why);
        conn_free(c);
        return 0;

    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (reason == LWS_CALLBACK_CLIENT_CLOSED) {
            c = tp->client;
            tp->client = NULL;
        } else if (slot) {
            *slot = NULL;
        }
        if (!c) {
            return 0;
        }
        memset(&why, 0, sizeof why);
        why.error = TETHER_EPEER_CLOSED;
        {
            uint64_t idle = tether__now_ms() - c->last_rx_ms;
            uint64_t limit = (uint64_t)tp->cfg.ping_interval_ms + tp->cfg.pong_timeout_ms;
            if (!c->closing && limit && idle + 1000 >= limit) {
                why.idle_timeout = 1;
                why.error = TETHER_EPING;
                snprintf(why.detail, sizeof why.detail,
                         "no traffic for %llu ms after a ping: the link is dead",
                         (unsigned long long)idle);
            } else {
                snprintf(why.detail, sizeof why.detail, "%s",
                         c->closing ? "closed by us" : "the connection closed");
            }
        }
        conn_end(c, &why);
        conn_free(c);
        return 0;

    case LWS_CALLBACK_HTTP:
        /* tether speaks WebSocket only */
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "tether speaks WebSocket only");
        return -1;

    default:
        return 0;
    }
}

/* ---- the transport ---- */

static void *service(void *arg)
{
    tether__tp *tp = arg;
    while (!atomic_load(&tp->stop)) {
        if (lws_service(tp->ctx, 0) < 0) {
            break;
        }
    }
    return NULL;
}

static uint16_t secs_up(uint32_t ms)
{
    uint32_t s = (ms + 999) / 1000;
    return (uint16_t)(s > 65535 ? 65535 : (s ? s : 1));
}

int tether__tp_create(const tether__tp_cfg *cfg, const tether__tp_cb *cb, void *owner,
                      tether__tp **out)
{
    struct lws_context_creation_info info;
    tether__tp *tp = calloc(1, sizeof *tp);

    *out = NULL;
    if (!tp) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    tp->cfg = *cfg;
    tp->cb = *cb;
    tp->owner = owner;
    tp->retry.secs_since_valid_ping = secs_up(cfg->ping_interval_ms);
    tp->retry.secs_since_valid_hangup = secs_up(cfg->ping_interval_ms + cfg->pong_timeout_ms);
    tp->protocols[0].name = TETHER_SUBPROTOCOL;
    tp->protocols[0].callback = callback;
    tp->protocols[0].per_session_data_size = sizeof(tether__conn *);
    tp->protocols[0].rx_buffer_size = 65536;

    {
        const char *lv = getenv("TETHER_LWS_LOG");
        lws_set_log_level(lv ? atoi(lv) : 0, NULL);
    }
    memset(&info, 0, sizeof info);
    info.protocols = tp->protocols;
    info.user = tp;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 65536;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.retry_and_idle_policy = &tp->retry;
    info.timeout_secs = secs_up(cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000);
    info.connect_timeout_secs = info.timeout_secs;
    if (cfg->listen_host) {
        info.port = cfg->listen_port;
        info.iface = cfg->listen_host;
        info.vhost_name = "tether";
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(cfg->listen_host, ':') == NULL);
    } else {
        info.port = CONTEXT_PORT_NO_LISTEN;
    }
    tp->ctx = lws_create_context(&info);
    if (!tp->ctx) {
        free(tp);
        if (cfg->listen_host) {
            return tether__fail(TETHER_ESYS, "cannot listen on %s:%d (address in use or invalid?)",
                                cfg->listen_host, cfg->listen_port);
        }
        return tether__fail(TETHER_ESYS, "cannot create the libwebsockets context");
    }
    if (cfg->listen_host) {
        tp->vhost = lws_get_vhost_by_name(tp->ctx, "tether");
    }
    *out = tp;
    return TETHER_OK;
}

int tether__tp_port(tether__tp *tp)
{
    return tp->vhost ? lws_get_vhost_listen_port(tp->vhost) : 0;
}

int tether__tp_start(tether__tp *tp)
{
    if (tp->started) {
        return tether__fail(TETHER_EINVAL, "already started");
    }
    int rc = pthread_create(&tp->thread, NULL, service, tp);
    if (rc) {
        return tether__fail(TETHER_ESYS, "cannot start the service thread: %s", strerror(rc));
    }
    tp->started = 1;
    return TETHER_OK;
}

void tether__tp_wake(tether__tp *tp)
{
    lws_cancel_service(tp->ctx);
}

void tether__tp_destroy(tether__tp *tp)
{
    if (!tp) {
        return;
    }
    if (tp->started) {
        atomic_store(&tp->stop, 1);
        lws_cancel_service(tp->ctx);
        pthread_join(tp->thread, NULL);
        tp->started = 0;
    }
    lws_sul_cancel(&tp->sul);
    /* closed callbacks run from inside lws_context_destroy for open connections */
    lws_context_destroy(tp->ctx);
    if (tp->client) {
        conn_free(tp->client);
        tp->client = NULL;
    }
    free(tp);
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
    return TETHER_OK;
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
    c = calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->tp = tp;
    snprintf(tp->url, sizeof tp->url, "%s", url);
    if (lws_parse_uri(tp->url, &proto, &addr, &port, &path)) {
        free(c);
        return tether__fail(TETHER_ECONFIG, "cannot parse the url '%s'", url);
    }
    int tls = strcmp(proto, "wss") == 0;
    snprintf(tp->host_hdr, sizeof tp->host_hdr, "%s:%d", addr, port);
    /* lws_parse_uri strips the leading '/'; lws wants it back */
    static _Thread_local char pathbuf[1024];
    snprintf(pathbuf, sizeof pathbuf, "/%s", path);

    memset(&ci, 0, sizeof ci);
    ci.context = tp->ctx;
    ci.address = addr;
    ci.port = port;
    ci.path = pathbuf;
    ci.host = tp->host_hdr;
    ci.origin = tp->host_hdr;
    ci.protocol = TETHER_SUBPROTOCOL;
    ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    ci.userdata = &tp->client;
    ci.retry_and_idle_policy = &tp->retry;
    tp->client = c;
    c->wsi = lws_client_connect_via_info(&ci);
    if (!c->wsi) {
        /* lws may already have reported CONNECTION_ERROR and freed the attempt */
        if (tp->client == c) {
            tp->client = NULL;
            tether__tp_close why;
            memset(&why, 0, sizeof why);
            why.error = TETHER_ECONNECT;
            snprintf(why.detail, sizeof why.detail, "could not start a connection to %s", url);
            conn_end(c, &why);
            conn_free(c);
        }
        return TETHER_OK;
    }
    return TETHER_OK;
}

void tether__tp_timer(tether__tp *tp, uint64_t delay_ms)
{
    lws_sul_schedule(tp->ctx, 0, &tp->sul, tp_timer_cb, (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

void tether__tp_timer_cancel(tether__tp *tp)
{
    lws_sul_cancel(&tp->sul);
}

void tether__conn_want_write(tether__conn *c)
{
    if (c->wsi && !c->ended) {
        lws_callback_on_writable(c->wsi);
    }
}

int tether__conn_write(tether__conn *c, tether__buf *b)
{
    if (!c->wsi || c->ended) {
        return TETHER_ECONNECT;
    }
    int n = lws_write(c->wsi, tether__buf_frame(b), b->len, LWS_WRITE_BINARY);
    if (n < (int)b->len) {
        return tether__fail(TETHER_ECONNECT, "write failed");
    }
    return TETHER_OK;
}

int tether__conn_busy(tether__conn *c)
{
    return c->wsi && lws_partial_buffered(c->wsi);
}

void tether__conn_close(tether__conn *c)
{
    if (c->wsi && !c->ended && !c->closing) {
        c->closing = 1;
        if (c->established) {
            lws_callback_on_writable(c->wsi);
        } else {
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
}

void tether__conn_timer(tether__conn *c, uint64_t delay_ms)
{
    if (c->wsi && !c->ended) {
        lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul, conn_timer_cb,
                         (lws_usec_t)delay_ms * LWS_US_PER_MS);
    }
}

void tether__conn_timer_cancel(tether__conn *c)
{
    lws_sul_cancel(&c->sul);
}

void tether__conn_set_user(tether__conn *c, void *user)
{
    c->user = user;
}

void *tether__conn_user(tether__conn *c)
{
    return c->user;
}

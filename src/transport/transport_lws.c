/*
 * libwebsockets glue for tether: the context, the service thread and the
 * one callback. With the other transport_lws_*.c files (client connect and
 * proxy set-up, failure diagnosis, admission, HTTP answers, the thread
 * hook) the only code that includes libwebsockets.
 *
 * One context and one service thread per tether__tp. Connections carry a
 * pointer to their tether__conn in lws's per-session data, so server and
 * client connections are handled by the same callback.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"
#include "engine/httpcarry.h"

/* The server's per-connection receive buffer when its configuration names
 * none, bytes (lws allocates it for every WebSocket and reads at most this
 * much per wake-up); tether_server_config.rx_buffer_bytes. */
#define SERVER_RX_BUFFER 1024

static tether__tp *tp_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

size_t tether__tp_headroom(void)
{
    return LWS_PRE;
}

/* ---- connection bookkeeping ---- */

void tether__tp_conn_free(tether__conn *c)
{
    tether__tp_ka_stop(c);
    lws_sul_cancel(&c->sul);
    lws_sul_cancel(&c->sul_attempt);
    tether__free(c->rx);
    tether__free(c);
}

void tether__tp_conn_end(tether__conn *c, tether__tp_close *why)
{
    if (c->ended) {
        return;
    }
    c->ended = 1;
    tether__tp_ka_stop(c);
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

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    tether__tp *tp = tp_of(wsi);
    tp_pss *pss = user;
    tether__conn **slot = pss ? &pss->c : NULL;
    tether__conn *c = NULL;
    tether__tp_close why;
    int ret;

    if (!tp) {
        return 0;
    }
    if (tp->car && tether__car_http(tp, wsi, (int)reason, pss, in, len, &ret)) {
        return ret; /* an HTTP carriage request (transport_lws_carriage.c) */
    }
    switch (reason) { /* user is our slot only for the connection's own reasons */
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    case LWS_CALLBACK_WSI_CREATE:
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        break;
    default:
        c = slot ? *slot : NULL;
        break;
    }
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* client side: user is the X509_STORE_CTX, len says whether OpenSSL accepted it */
        return tether__tp_verify_cert(tp, user, (int)len);

    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* server side: lws accepts any client certificate unless we say no (0 means OK),
         * so pass on OpenSSL's verdict against tls_client_ca_file */
        return len ? 0 : 1;

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* user is the client SSL_CTX: watch for fatal alerts from servers */
        SSL_CTX_set_app_data((SSL_CTX *)user, tp);
        SSL_CTX_set_info_callback((SSL_CTX *)user, tether__tp_tls_info_cb);
        return 0;

    case LWS_CALLBACK_WSI_CREATE:
        /* client: the TCP connection (to the server or the proxy) is up */
        if (tp->client && tp->client->stage < ST_TCP) {
            tp->client->stage = ST_TCP;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (tp->client) {
            tp->client->stage = ST_SENT;
        }
        if (tp->cfg.headers && in) {
            char **pp = in, *end = *pp + len;
            for (const char *const *h = tp->cfg.headers; *h; h++) {
                size_t n = strlen(*h);
                if ((size_t)(end - *pp) < n + 3) {
                    return -1;
                }
                memcpy(*pp, *h, n);
                *pp += n;
                *(*pp)++ = '\r';
                *(*pp)++ = '\n';
            }
        }
        return 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* server: admit or refuse before the 101 */
        if (in && strcasecmp(in, "websocket") == 0) {
            char offered[256];
            int n = lws_hdr_copy(wsi, offered, sizeof offered, WSI_TOKEN_PROTOCOL);
            if (n != 0 && (n < 0 || !tether__http_list_has(offered, TETHER_SUBPROTOCOL))) {
                /* lws would drop the connection without a word: say why */
                return tether__tp_refuse_upgrade(wsi, HTTP_STATUS_BAD_REQUEST,
                                      "this server speaks the subprotocol " TETHER_SUBPROTOCOL
                                      " only, and the request did not offer it",
                                      NULL);
            }
        }
        if (tp->cb.admit && in && strcasecmp(in, "websocket") == 0) {
            char extra[640] = "";
            tether__tp_hs hs = {wsi, NULL};
            int st = tp->cb.admit(tp->owner, &hs, extra, sizeof extra);
            if (st) {
                return tether__tp_refuse_upgrade(wsi, st, NULL, extra);
            }
        }
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (atomic_load(&tp->stop)) {
            if (tp->uv) {
                uv_stop(&tp->loop); /* uv_run() returns to service() */
            }
            return 0;
        }
        if (atomic_exchange(&tp->tick_due, 0) && tp->cb.timer) {
            tp->cb.timer(tp->owner, NULL);
        }
        if (tp->cb.wake) {
            tp->cb.wake(tp->owner);
        }
        return 0;

    case LWS_CALLBACK_ESTABLISHED: /* server side */
        c = tether__calloc(1, sizeof *c);
        if (!c) {
            return -1;
        }
        c->wsi = wsi;
        c->tp = tp;
        c->established = 1;
        c->last_rx_ms = tether__now_ms();
        *slot = c;
        tether__tp_ka_start(c);
        if (tp->cb.open) {
            tp->cb.open(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        /* lws falls back to its first protocol when the 101 names none: tether.v1 must be chosen */
        char proto[64];
        if (tp->client) {
            tp->client->stage = ST_ANSWERED;
        }
        if (tp->client) {
            tp->client->upgrade_checked = 1;
        }
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
        lws_sul_cancel(&c->sul_attempt);
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
        tether__stat_add(tp->cfg.stats, TETHER__ST_BYTES_IN, len);
        tether__tp_rx_append(c, in, len, lws_is_first_fragment(wsi), lws_is_final_fragment(wsi),
                  lws_frame_is_binary(wsi), lws_remaining_packet_payload(wsi));
        return 0;

    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) {
            c->last_rx_ms = tether__now_ms();
            tether__tp_ka_pong(c);
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
        ret = tether__tp_ka_write(c);
        if (ret != 0) {
            return ret < 0 ? -1 : 0; /* a ping went out (server) */
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
        tp->client = NULL;
        tether__tp_client_failed(tp, c, wsi, in, in ? len : 0);
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* lws frees a client attempt without CONNECTION_ERROR when writing the
         * upgrade request fails (closed as "cws": the peer reset the connection
         * at once). Report it here, or the client waits forever for a callback. */
        c = tp->client;
        if (c && c->wsi == wsi && !c->ended && !c->established) {
            tp->client = NULL;
            tether__tp_client_failed(tp, c, wsi, NULL, 0);
        }
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
            int server = reason == LWS_CALLBACK_CLOSED;
            if (server ? c->ka_hup : !c->closing && limit && idle + 1000 >= limit) {
                /* a server's keepalive hung up on a silent client; a client's lws did */
                why.idle_timeout = 1;
                why.error = server ? TETHER_EDROPPED : TETHER_EPING;
                snprintf(why.detail, sizeof why.detail,
                         "no traffic for %llu ms after a ping: the link is dead%s",
                         (unsigned long long)idle, server ? "; the server closed it" : "");
            } else if (server && c->closing) {
                why.error = TETHER_EDROPPED;
                snprintf(why.detail, sizeof why.detail, "closed by the server");
            } else {
                snprintf(why.detail, sizeof why.detail, "%s",
                         c->closing ? "closed by us" : "the connection closed");
            }
        }
        tether__tp_conn_end(c, &why);
        tether__tp_conn_free(c);
        return 0;

    case LWS_CALLBACK_HTTP:
        if (tp->cfg.http_get && in && tether__tp_http_answer(tp, wsi, in) < 0) {
            return -1; /* answered (GET /metrics) */
        }
        if (tp->cfg.www_root && in) {
            int w = tether__tp_www_answer(tp, wsi, in);
            if (w != 0) {
                return w < 0 ? -1 : 0; /* a file (in progress), or a 404 */
            }
        }
        /* neither an upgrade nor the carriage (HTTP.md section 2.3): 426, so a
           client whose Upgrade a proxy stripped knows to fall back */
        tether__tp_refuse_upgrade(wsi, 426,
                                  "this endpoint speaks WebSocket (subprotocol tether.v1) and, "
                                  "below " TETHER__HC_MARKER ", the HTTP carriage",
                                  "Upgrade: websocket\r\n");
        return -1;

    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        /* a static file (transport_lws_www.c) is out: keep the connection for the next request */
        return lws_http_transaction_completed(wsi) ? -1 : 0;

    default:
        return 0;
    }
}

/* ---- the transport ---- */

static void *service(void *arg)
{
    tether__tp *tp = arg;
    while (!atomic_load(&tp->stop)) {
        if (tp->uv) {
            /* returns at uv_stop(), from the wake that carries tp->stop */
            uv_run(&tp->loop, UV_RUN_DEFAULT);
        } else if (lws_service(tp->ctx, 0) < 0) {
            break;
        }
    }
    return NULL;
}

static void uv_tick_cb(uv_timer_t *t)
{
    tether__tp *tp = t->data;
    if (!tp->cfg.listen_host) {
        /* client: run the timer inside lws's service (EVENT_WAIT_CANCELLED),
         * where a connection attempt it starts gets its lws timers armed; lws
         * on libuv does not notice timers scheduled from a foreign callback */
        atomic_store(&tp->tick_due, 1);
        lws_cancel_service(tp->ctx);
        return;
    }
    if (tp->cb.timer && !atomic_load(&tp->stop)) {
        tp->cb.timer(tp->owner, NULL);
    }
}

/* 1 if host:port can be bound now (as lws will, with SO_REUSEADDR). lws on
 * a libuv loop cannot be torn down cleanly after a failed bind, so a port in
 * use is found here first. errno says why on 0. */
static int can_bind(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a->sin6_addr);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a->sin_addr);
        len = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    int e = errno;
    close(fd);
    errno = e;
    return ok;
}

/* lws on our own libuv loop (epoll; timers in a heap) instead of its default
 * poll() loop that walks every connection per wake-up (server), and so that
 * the client's HTTP carriage shares the loop (client). The loop is "foreign"
 * to lws, so lws installs no signal handlers and never runs it. */
static int uv_setup(tether__tp *tp, struct lws_context_creation_info *info, void **loops)
{
    if (uv_loop_init(&tp->loop) != 0) {
        return -1;
    }
    if (uv_timer_init(&tp->loop, &tp->tick) != 0) {
        uv_loop_close(&tp->loop);
        return -1;
    }
    tp->tick.data = tp;
    tp->uv = 1;
    loops[0] = &tp->loop;
    info->options |= LWS_SERVER_OPTION_LIBUV;
    info->foreign_loops = loops;
    return 0;
}

static void close_left(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Closes our timer handle and the loop once lws has let go of it. */
static void uv_teardown(tether__tp *tp)
{
    if (!tp->uv) {
        return;
    }
    if (!tp->ctx) {
        /* lws_create_context() failed: it has freed its context but left close
         * callbacks on the loop that would touch it; never run them. The loop
         * is closed if lws left nothing open, else abandoned (a failed create
         * only). */
        uv_timer_stop(&tp->tick);
        uv_loop_close(&tp->loop);
        tp->uv = 0;
        return;
    }
    uv_timer_stop(&tp->tick);
    uv_close((uv_handle_t *)&tp->tick, NULL);
    if (tp->ka_on) {
        uv_timer_stop(&tp->ka_timer);
        uv_close((uv_handle_t *)&tp->ka_timer, NULL);
        tp->ka_on = 0;
    }
    while (uv_run(&tp->loop, UV_RUN_NOWAIT)) {
    }
    if (uv_loop_close(&tp->loop) == UV_EBUSY) {
        /* a stopped watcher nobody closed (seen rarely after a client whose
           every connection was reset; lws or libcurl's socket left behind):
           close what is left so the loop's own memory is freed, not leaked */
        uv_walk(&tp->loop, close_left, NULL);
        while (uv_run(&tp->loop, UV_RUN_NOWAIT)) {
        }
        uv_loop_close(&tp->loop);
    }
    tp->uv = 0;
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
    void *loops[1];
    tether__tp *tp = tether__calloc(1, sizeof *tp);

    *out = NULL;
    if (!tp) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    tp->cfg = *cfg;
    tp->cb = *cb;
    tp->owner = owner;
    if (!cfg->listen_host) { /* a server's pings: transport_lws_keepalive.c, not lws's */
        tp->retry.secs_since_valid_ping = secs_up(cfg->ping_interval_ms);
        tp->retry.secs_since_valid_hangup = secs_up(cfg->ping_interval_ms + cfg->pong_timeout_ms);
    }
    tp->protocols[0].name = TETHER_SUBPROTOCOL;
    tp->protocols[0].callback = callback;
    tp->protocols[0].per_session_data_size = sizeof(tp_pss);
    /* a server holds thousands of connections: a small per-connection receive
     * buffer, which lws allocates for every WebSocket (larger messages arrive
     * in pieces and are assembled in transport_lws_rx.c, in memory held only while a
     * message is being assembled); docs/decisions.md, "Idle memory" */
    tp->protocols[0].rx_buffer_size =
        cfg->listen_host ? (cfg->rx_buffer ? cfg->rx_buffer : SERVER_RX_BUFFER) : 65536;

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
    /* never let lws read http_proxy itself (it ignores no_proxy): "" sets no proxy */
    info.http_proxy_address = "";
    if (cfg->listen_host) {
        unsigned char a6[16];
        if (inet_pton(AF_INET, cfg->listen_host, a6) != 1 &&
            inet_pton(AF_INET6, cfg->listen_host, a6) != 1) {
            /* lws would take it for an interface name, fail to bind and carry on */
            tether__free(tp);
            return tether__fail(TETHER_ESYS,
                                "cannot listen on '%s': not an IPv4 or IPv6 address",
                                cfg->listen_host);
        }
        if (cfg->listen_port < 0 || cfg->listen_port > 65535) {
            tether__free(tp);
            return tether__fail(TETHER_ESYS, "cannot listen on port %d: not 0 to 65535",
                                cfg->listen_port);
        }
        if (!can_bind(cfg->listen_host, cfg->listen_port)) {
            int e = errno;
            tether__free(tp);
            return tether__fail(TETHER_ESYS, "cannot listen on %s:%d: %s", cfg->listen_host,
                                cfg->listen_port, strerror(e));
        }
        if (uv_setup(tp, &info, loops) != 0) {
            tether__free(tp);
            return tether__fail(TETHER_ESYS, "cannot create the event loop");
        }
        info.port = cfg->listen_port;
        info.iface = cfg->listen_host;
        info.vhost_name = "tether";
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(cfg->listen_host, ':') == NULL);
        if (cfg->tls_server_cert) {
            /* HTTP/1.1 only: the carriage's answers and streams are written as
             * HTTP/1.1 bytes (transport_lws_carriage.c), and WebSocket uses it anyway */
            info.alpn = "http/1.1";
            info.ssl_cert_filepath = cfg->tls_server_cert;
            info.ssl_private_key_filepath = cfg->tls_server_key;
            if (cfg->tls_client_ca) {
                info.ssl_ca_filepath = cfg->tls_client_ca;
                info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
            }
        }
    } else {
        /* the client runs on libuv too, so the HTTP carriage (transport_curl.c)
         * drives libcurl's sockets and timers on the same loop and thread */
        if (uv_setup(tp, &info, loops) != 0) {
            tether__free(tp);
            return tether__fail(TETHER_ESYS, "cannot create the event loop");
        }
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.options |= LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN; /* else lws adds "http://" */
        /* our own attempt timer (connect_timeout_ms) must fire before lws's */
        info.timeout_secs = (unsigned int)secs_up(cfg->connect_timeout_ms) + 5;
        info.connect_timeout_secs = info.timeout_secs;
        info.client_ssl_ca_filepath = cfg->tls_ca_file;
        info.client_ssl_cert_filepath = cfg->tls_cert_file;
        info.client_ssl_private_key_filepath = cfg->tls_key_file;
        if (cfg->tls_ca_file) {
            info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
        }
    }
    tp->ctx = lws_create_context(&info);
    if (!tp->ctx) {
        uv_teardown(tp);
        tether__free(tp);
        if (cfg->listen_host) {
            return tether__fail(TETHER_ESYS, "cannot listen on %s:%d (address in use or invalid?%s)",
                                cfg->listen_host, cfg->listen_port,
                                cfg->tls_server_cert ? " or the TLS certificate and key do not "
                                                       "load or match"
                                                     : "");
        }
        return tether__fail(TETHER_ESYS, "cannot create the libwebsockets context");
    }
    if (cfg->listen_host) {
        tp->vhost = lws_get_vhost_by_name(tp->ctx, "tether");
        if (!tp->vhost || lws_get_vhost_listen_port(tp->vhost) <= 0) {
            lws_context_destroy(tp->ctx);
            tp->ctx = NULL; /* see uv_teardown(): its loop is not run again */
            uv_teardown(tp);
            tether__free(tp);
            return tether__fail(TETHER_ESYS, "cannot listen on %s:%d: libwebsockets bound nothing",
                                cfg->listen_host, cfg->listen_port);
        }
    } else {
        tp->cvhost = lws_get_vhost_by_name(tp->ctx, "default");
        tether__tp_set_proxy(tp, cfg->proxy);
    }
    tp->cfg.proxy = NULL; /* tp->proxy holds it; the caller's copy may go away */
    if (!cfg->listen_host && tether__curl_create(tp, &tp->loop, &tp->curl) != TETHER_OK) {
        lws_context_destroy(tp->ctx);
        uv_teardown(tp);
        tether__free(tp);
        return TETHER_ENOMEM; /* tether_errmsg() says why */
    }
    if (cfg->listen_host && (tether__tp_ka_setup(tp) != 0 || tether__car_create(tp) != TETHER_OK)) {
        lws_context_destroy(tp->ctx);
        uv_teardown(tp);
        tether__free(tp);
        return tether__fail(TETHER_ENOMEM, "out of memory");
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
    if (tp->probe) {
        tether__conn *pc = tp->probe->c;
        tether__tp_probe_free(tp);
        tether__tp_conn_free(pc); /* as for an attempt in progress below: no closed() during destroy */
    }
    /* closed callbacks run from inside lws_context_destroy for open connections */
    lws_context_destroy(tp->ctx);
    tether__car_destroy(tp); /* then for the carriage's connections */
    tether__curl_destroy(tp->curl); /* the client's HTTP connection, if any */
    tp->curl = NULL;
    uv_teardown(tp);
    if (tp->client) {
        tether__tp_conn_free(tp->client);
        tp->client = NULL;
    }
    tether__free(tp);
}

void tether__tp_timer(tether__tp *tp, uint64_t delay_ms)
{
    if (tp->uv) {
        uv_timer_start(&tp->tick, uv_tick_cb, delay_ms, 0);
        return;
    }
    lws_sul_schedule(tp->ctx, 0, &tp->sul, tp_timer_cb, (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

void tether__tp_timer_cancel(tether__tp *tp)
{
    if (tp->uv) {
        uv_timer_stop(&tp->tick);
        return;
    }
    lws_sul_cancel(&tp->sul);
}

void tether__conn_want_write(tether__conn *c)
{
    if (c->hc) {
        tether__car_want_write(c);
        return;
    }
    if (c->cc) {
        tether__cc_want_write(c->cc);
        return;
    }
    if (c->wsi && !c->ended) {
        lws_callback_on_writable(c->wsi);
    }
}

int tether__conn_write(tether__conn *c, tether__buf *b)
{
    if (c->hc) {
        return tether__car_write(c, b);
    }
    if (c->cc) {
        return tether__cc_write(c->cc, b);
    }
    if (!c->wsi || c->ended) {
        return TETHER_ECONNECT;
    }
    int n = lws_write(c->wsi, tether__buf_frame(b), b->len, LWS_WRITE_BINARY);
    if (n < (int)b->len) {
        return tether__fail(TETHER_ECONNECT, "write failed");
    }
    tether__stat_add(c->tp->cfg.stats, TETHER__ST_BYTES_OUT, b->len);
    return TETHER_OK;
}

int tether__conn_busy(tether__conn *c)
{
    if (c->cc) {
        return tether__cc_busy(c->cc);
    }
    return c->wsi && lws_partial_buffered(c->wsi);
}

void tether__conn_close(tether__conn *c)
{
    if (c->hc) {
        tether__car_close(c);
        return;
    }
    if (c->cc) {
        tether__cc_close(c->cc);
        return;
    }
    if (c->probing && c->tp->probe && c->tp->probe->c == c) {
        tether__tp_probe_finish(c->tp, "abandoned: the client is closing");
        return;
    }
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
    if (c->cc) {
        tether__cc_timer(c->cc, delay_ms);
        return;
    }
    if (c->wsi && !c->ended) {
        lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul, conn_timer_cb,
                         (lws_usec_t)delay_ms * LWS_US_PER_MS);
    }
}

void tether__conn_timer_cancel(tether__conn *c)
{
    if (c->cc) {
        tether__cc_timer_cancel(c->cc);
        return;
    }
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

/*
 * The raw libwebsockets baseline: the same message sizes and payload layout
 * as the tether runs, one binary WebSocket message per message, one lws_write()
 * per WRITEABLE callback (the documented lws pattern), no sequence numbers,
 * no ACKs, no store. The lws context is set up like tether's transport
 * (64 KiB rx and service buffers, logging off) and served from one thread.
 *
 * The server counts messages and, once it has all of them, sends one byte
 * back, so the client knows the run is over. Send-to-deliver latency comes
 * from the timestamp in each payload, as for tether; there is no send-to-ack.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "bench.h"

#define RAW_PROTOCOL "tether-bench-raw"
#define BUF_SIZE 65536

typedef struct raw {
    const bench_peer_opts *o; /* the run */
    struct lws_context *ctx;  /* the context */
    struct lws *wsi;          /* the one connection */
    lws_sorted_usec_list_t tick; /* wakes the loop for the deadline check */
    int finished;             /* leave the service loop */
    int ok;                   /* the run completed */
    char why[200];            /* why not */
    uint64_t deadline;        /* give up at this time, ns */

    /* client */
    uint8_t *tx;              /* LWS_PRE + one message */
    uint64_t sent;            /* messages written */
    uint64_t t0;              /* paced: when message 0 is due */
    double period;            /* paced: ns between messages, 0 = as fast as possible */
    uint64_t t_start, t_live, t_end;
    double cpu0, cpu1;
    uint64_t tcp_tx0, tcp_rx0, tcp_tx1, tcp_rx1;

    /* server */
    uint64_t got;             /* messages received, all connections */
    uint64_t order_err;       /* out of order (never expected) */
    uint32_t conns, closed;   /* connections established, and closed */
    uint64_t t_open, t_first, t_last;
    bench_hist lat;           /* send-to-deliver, ns */
} raw;

/* The server's state per connection (lws per-session data). */
typedef struct raw_conn {
    uint64_t next_index; /* expected index of the next message */
    uint8_t head[16];    /* the first bytes of the message being received */
    size_t head_len;     /* bytes in head */
    int done_sent;       /* the "all received" byte was written */
} raw_conn;

static raw *raw_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    raw *r = lws_container_of(sul, raw, tick);
    if (bench_now_ns() > r->deadline) {
        snprintf(r->why, sizeof r->why, "raw %s: timed out after %u s",
                 r->o->server ? "server" : "client", r->o->timeout_s);
        r->finished = 1;
        return;
    }
    lws_sul_schedule(r->ctx, 0, &r->tick, on_tick, 100 * LWS_US_PER_MS);
}

/* ---- client ---- */

static int client_write(raw *r, struct lws *wsi)
{
    const bench_peer_opts *o = r->o;
    if (r->sent >= o->count) {
        return 0;
    }
    uint64_t now = bench_now_ns();
    uint64_t ts = now;
    if (r->period > 0) {
        uint64_t due = r->t0 + (uint64_t)((double)r->sent * r->period);
        if (now < due) {
            /* at most one period ahead: wait here, so pacing is exact */
            bench_sleep_until_ns(due);
        }
        ts = due;
    }
    if (r->sent == 0) {
        r->t_start = r->period > 0 ? r->t0 : now;
    }
    bench_fill(r->tx + LWS_PRE, o->size, ts, r->sent);
    int n = lws_write(wsi, r->tx + LWS_PRE, o->size, LWS_WRITE_BINARY);
    if (n < (int)o->size) {
        snprintf(r->why, sizeof r->why, "raw client: lws_write failed");
        return -1;
    }
    r->sent++;
    if (r->sent < o->count) {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static int client_cb(raw *r, struct lws *wsi, enum lws_callback_reasons reason, void *in,
                     size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        r->wsi = wsi;
        r->t_live = bench_now_ns();
        bench_rusage(&r->cpu0, NULL);
        bench_tcp_bytes(&r->tcp_tx0, &r->tcp_rx0);
        r->t0 = bench_now_ns() + 1000000;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return client_write(r, wsi);
    case LWS_CALLBACK_CLIENT_RECEIVE:
        /* the server has every message */
        r->t_end = bench_now_ns();
        bench_rusage(&r->cpu1, NULL);
        bench_tcp_bytes(&r->tcp_tx1, &r->tcp_rx1);
        r->ok = 1;
        r->finished = 1;
        return -1;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        snprintf(r->why, sizeof r->why, "raw client: connection failed: %.*s",
                 in ? (int)len : 0, in ? (const char *)in : "");
        r->finished = 1;
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!r->ok && !r->why[0]) {
            snprintf(r->why, sizeof r->why, "raw client: the connection closed early");
        }
        r->finished = 1;
        return 0;
    default:
        return 0;
    }
}

/* ---- server ---- */

/* The server: any number of connections (o->sessions, the fleet rows);
 * once it has o->count messages in all it sends each one byte. */
static int server_cb(raw *r, struct lws *wsi, enum lws_callback_reasons reason, raw_conn *pc,
                     void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(pc, 0, sizeof *pc);
        if (r->conns++ == 0) {
            r->t_open = bench_now_ns();
            bench_rusage(&r->cpu0, NULL);
        }
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        if (lws_is_first_fragment(wsi)) {
            pc->head_len = 0;
        }
        if (pc->head_len < sizeof pc->head) {
            size_t k = sizeof pc->head - pc->head_len;
            k = k < len ? k : len;
            memcpy(pc->head + pc->head_len, in, k);
            pc->head_len += k;
        }
        if (!lws_is_final_fragment(wsi)) {
            return 0;
        }
        uint64_t now = bench_now_ns();
        if (r->got == 0) {
            r->t_first = now;
        }
        if (pc->head_len == sizeof pc->head) {
            uint64_t ts = bench_get64(pc->head);
            hist_add(&r->lat, now > ts ? now - ts : 0);
            uint64_t idx = bench_get64(pc->head + 8);
            if (idx != pc->next_index) {
                r->order_err++;
            }
            pc->next_index = idx + 1;
        }
        r->got++;
        if (r->got == r->o->count) {
            r->t_last = now;
            bench_rusage(&r->cpu1, NULL);
            r->ok = 1;
            lws_callback_on_writable_all_protocol(r->ctx, lws_get_protocol(wsi));
        }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (r->ok && !pc->done_sent) {
            uint8_t b[LWS_PRE + 1];
            b[LWS_PRE] = 'D';
            pc->done_sent = 1;
            lws_write(wsi, b + LWS_PRE, 1, LWS_WRITE_BINARY);
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        /* done when every expected connection has come and gone, or one
         * closed before the run completed */
        r->closed++;
        if (!r->ok || r->closed >= (r->o->sessions ? r->o->sessions : 1)) {
            r->finished = 1;
        }
        return 0;
    default:
        return 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    raw *r = raw_of(wsi);
    if (!r) {
        return 0;
    }
    return r->o->server ? server_cb(r, wsi, reason, user, in, len)
                        : client_cb(r, wsi, reason, in, len);
}

int bench_peer_raw(const bench_peer_opts *o)
{
    raw r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.period = o->rate > 0 ? 1e9 / o->rate : 0;
    r.deadline = bench_now_ns() + (uint64_t)(o->timeout_s + (o->server ? 10 : 0)) * 1000000000ull;

    struct lws_protocols protocols[2];
    memset(protocols, 0, sizeof protocols);
    protocols[0].name = RAW_PROTOCOL;
    protocols[0].callback = callback;
    protocols[0].rx_buffer_size = BUF_SIZE;
    protocols[0].per_session_data_size = sizeof(raw_conn);

    lws_set_log_level(0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.protocols = protocols;
    info.user = &r;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = BUF_SIZE;
    if (o->server) {
        info.port = 0;
        info.iface = "127.0.0.1";
        info.vhost_name = "raw";
        info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    } else {
        info.port = CONTEXT_PORT_NO_LISTEN;
    }
    r.ctx = lws_create_context(&info);
    bench_json j;
    if (!r.ctx) {
        bj_begin(&j);
        bj_str(&j, "role", o->server ? "server" : "client");
        bj_int(&j, "ok", 0);
        bj_str(&j, "error", "raw: cannot create the lws context");
        bj_emit(&j);
        return 1;
    }
    lws_sul_schedule(r.ctx, 0, &r.tick, on_tick, 100 * LWS_US_PER_MS);

    if (o->server) {
        struct lws_vhost *vh = lws_get_vhost_by_name(r.ctx, "raw");
        bj_begin(&j);
        bj_str(&j, "role", "ready");
        bj_int(&j, "port", vh ? (uint64_t)lws_get_vhost_listen_port(vh) : 0);
        bj_emit(&j);
    } else {
        r.tx = malloc(LWS_PRE + o->size);
        if (!r.tx) {
            lws_context_destroy(r.ctx);
            return 1;
        }
        for (size_t i = 0; i < o->size; i++) {
            r.tx[LWS_PRE + i] = (uint8_t)('a' + i % 26);
        }
        char url[256];
        snprintf(url, sizeof url, "%s", o->url);
        const char *proto, *addr, *path;
        int port;
        struct lws_client_connect_info ci;
        memset(&ci, 0, sizeof ci);
        if (lws_parse_uri(url, &proto, &addr, &port, &path) == 0) {
            ci.context = r.ctx;
            ci.address = addr;
            ci.port = port;
            ci.path = "/";
            ci.host = addr;
            ci.origin = addr;
            ci.protocol = RAW_PROTOCOL;
            if (!lws_client_connect_via_info(&ci) && !r.why[0]) {
                snprintf(r.why, sizeof r.why, "raw client: cannot connect to %s", o->url);
                r.finished = 1;
            }
        } else {
            snprintf(r.why, sizeof r.why, "raw client: bad url %s", o->url);
            r.finished = 1;
        }
    }

    while (!r.finished) {
        if (lws_service(r.ctx, 0) < 0) {
            break;
        }
    }
    long rss;
    bench_rusage(NULL, &rss);
    bj_begin(&j);
    bj_str(&j, "role", o->server ? "server" : "client");
    bj_int(&j, "ok", (uint64_t)r.ok);
    if (!r.ok) {
        bj_str(&j, "error", r.why[0] ? r.why : "raw: failed");
    }
    if (o->server) {
        bj_int(&j, "n", r.got);
        bj_int(&j, "t_open", r.t_open);
        bj_int(&j, "t_first", r.t_first);
        bj_int(&j, "t_last", r.t_last);
        bj_num(&j, "cpu_s", r.cpu1 - r.cpu0);
        bj_int(&j, "rss_kb", (uint64_t)rss);
        bj_int(&j, "order_err", r.order_err);
        bj_hist(&j, "dlv", &r.lat);
    } else {
        bj_int(&j, "n", r.sent);
        bj_int(&j, "t_start", r.t_start);
        bj_int(&j, "t_live", r.t_live);
        bj_int(&j, "t_end", r.t_end);
        bj_num(&j, "cpu_s", r.cpu1 - r.cpu0);
        bj_int(&j, "rss_kb", (uint64_t)rss);
        bj_int(&j, "tcp_tx", r.tcp_tx1 - r.tcp_tx0);
        bj_int(&j, "tcp_rx", r.tcp_rx1 - r.tcp_rx0);
        bj_int(&j, "acks", 0);
    }
    bj_emit(&j);
    lws_sul_cancel(&r.tick);
    lws_context_destroy(r.ctx);
    free(r.tx);
    return r.ok ? 0 : 1;
}

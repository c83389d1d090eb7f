/*
 * One driver of `tether bench --sessions`: its share of the sessions on one
 * thread and one libwebsockets context (sessions.h says how the parts fit).
 *
 * Protocol with the orchestrator, one line each:
 *   stdout {"phase":"live",...}   every session is welcomed (or the connect
 *                                 timeout passed): the idle measurement may start
 *   stdin  go                     start the rate phase (or, at rate 0, finish)
 *   stdout {"phase":"done",...}   rate phase and drain over: counts and latencies
 *   stdin  end (or EOF)           close every connection and exit
 *
 * Messages are due at a steady total rate (sessions x rate), spread evenly
 * over the sessions in turn, and timed from when they were due.
 *
 * The driver runs lws on its own libuv loop (epoll), as `tether serve` does:
 * on lws's default poll() loop every wake-up walked all of its connections,
 * and at 5,000 sessions that took most of the driver's CPU, so the measuring
 * client, not the server, set the send-to-ack tail. Its tick is a libuv timer
 * that wakes lws (lws_cancel_service), and the work runs from lws's
 * EVENT_WAIT_CANCELLED callback, inside lws, where the connections it starts
 * get their lws timers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "bench.h"
#include "common/engine_cfg.h"
#include "common/util.h"
#include "engine/session.h"
#include "sessions.h"
#include "store/store.h"

#define RING 64           /* send times kept per session, by seq */
#define MAX_CONNECTING 64 /* connection attempts in flight (the server admits 256) */
#define TICK_US 5000      /* the driver's own timer */
#define MAX_RETRIES 20    /* failed attempts per session before giving up */
#define PER_SOURCE 250    /* sessions per local source address on loopback */

/* One session. */
typedef struct sconn {
    struct drv *d;         /* owner */
    struct lws *wsi;       /* its connection, NULL when none */
    tether__store *st;     /* its memory store */
    tether__engine *e;     /* its engine */
    int live;              /* welcomed */
    int connecting;        /* an attempt is in flight */
    int retries;           /* failed attempts */
    uint64_t retry_at;     /* next attempt not before, ns */
    uint8_t *rx;           /* message being assembled */
    size_t rx_len, rx_cap; /* bytes in rx, allocated */
    uint64_t due[RING];    /* due time of seq, by seq % RING, ns */
} sconn;

/* The driver. */
typedef struct drv {
    const bench_driver_opts *o;    /* options */
    struct lws_context *ctx;       /* the context */
    struct lws_protocols proto[2]; /* tether.v1 and the end */
    uv_loop_t loop;                /* the libuv loop lws runs on */
    uv_timer_t timer;              /* wakes lws every TICK_US for the tick */
    int tick_due;                  /* the timer fired: run the tick from lws's callback */
    tether__engine_cfg ecfg;       /* engine configuration */
    sconn *s;                      /* the sessions */
    uint32_t n;                    /* sessions */
    uint32_t next_connect;         /* first session never tried */
    uint32_t connecting;           /* attempts in flight */
    uint32_t live;                 /* sessions welcomed now */
    uint32_t failed;               /* sessions given up */
    uint64_t closed;               /* connections lost after being live */
    int phase;            /* 0 connecting, 1 idle (live reported), 2 rate, 3 drain, 4 done */
    uint64_t t0;          /* start, ns */
    uint64_t live_at;     /* all live, ns */
    uint64_t rate_t0;     /* rate phase start, ns */
    uint64_t sent;        /* messages sent in the rate phase */
    uint64_t acked;       /* of those, acknowledged */
    uint64_t late;        /* sends with RING or more unacked on their session */
    uint64_t send_err;    /* sends that failed */
    uint64_t drain_until; /* drain deadline, ns */
    tether__buf out;      /* frame being written */
    uint8_t *payload;     /* scratch payload */
    bench_hist ack;       /* send-to-ack */
    char cmd[64];         /* stdin bytes not yet a line */
    size_t cmd_len;       /* bytes in cmd */
    int stdin_eof;        /* stdin closed */
    int quit;             /* leave the service loop */
    int spread;           /* the server is on loopback: bind sources across 127.0.0.0/8 */
} drv;

static void on_acked(void *arg, uint64_t first, uint64_t last)
{
    sconn *k = arg;
    drv *d = k->d;
    uint64_t now = bench_now_ns();
    for (uint64_t q = first; q <= last; q++) {
        uint64_t due = k->due[q % RING];
        if (due && now >= due) {
            hist_add(&d->ack, now - due);
        }
        k->due[q % RING] = 0;
        d->acked++;
    }
}

static void on_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    (void)arg, (void)seq, (void)data, (void)len, (void)redelivered;
}

static void on_mismatch(void *arg, const tether_mismatch_info *info)
{
    (void)arg, (void)info;
}

static int make_session(drv *d, sconn *k)
{
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    k->d = d;
    if (tether__random(rec.id, sizeof rec.id) != TETHER_OK ||
        tether__random(rec.token, sizeof rec.token) != TETHER_OK ||
        tether__store_memory_open(TETHER__ROLE_CLIENT, &k->st) != TETHER_OK ||
        k->st->ops->session_put(k->st, &rec) != TETHER_OK) {
        return -1;
    }
    tether__engine_cb cb = {on_message, on_acked, on_mismatch, k};
    return tether__engine_create(&d->ecfg, k->st, &rec, &cb, &k->e) == TETHER_OK ? 0 : -1;
}

/* No lws validity timer on the driver's connections (the server pings them,
 * and lws answers): lws's default (a ping after 300 s) would put every
 * connection in its one sorted timer list, a walk of all of them per insert. */
static const lws_retry_bo_t no_validity;

static void connect_one(drv *d, sconn *k)
{
    struct lws_client_connect_info ci;
    static char addr[256], path[256];
    const char *proto, *a, *p;
    int port;
    char url[512];
    snprintf(url, sizeof url, "%s", d->o->url);
    if (lws_parse_uri(url, &proto, &a, &port, &p)) {
        d->failed++;
        return;
    }
    snprintf(addr, sizeof addr, "%s", a);
    snprintf(path, sizeof path, "/%s", p[0] == '/' ? p + 1 : p);
    memset(&ci, 0, sizeof ci);
    ci.context = d->ctx;
    ci.address = addr;
    ci.port = port;
    ci.path = path;
    ci.host = addr;
    ci.protocol = TETHER_SUBPROTOCOL;
    ci.opaque_user_data = k;
    ci.retry_and_idle_policy = &no_validity;
    if (d->spread) {
        /* Linux picks a connect()'s local port by walking the ephemeral range
         * (even ports first) for a free 4-tuple: with one source address and
         * one server port, past ~14,000 connections (the even half of the
         * default 32768-60999) each connect walked them all, 7 ms each, and
         * 20,000 sessions took minutes to connect. PER_SOURCE sessions per
         * source address keep every walk short. */
        static char src[20];
        uint32_t a = (uint32_t)(k - d->s) / PER_SOURCE;
        snprintf(src, sizeof src, "127.%u.%u.%u", 1 + a / 62500, 1 + a / 250 % 250, 1 + a % 250);
        ci.iface = src;
    }
    k->connecting = 1;
    d->connecting++;
    k->wsi = lws_client_connect_via_info(&ci);
    if (!k->wsi && k->connecting) {
        k->connecting = 0;
        d->connecting--;
        k->retries++;
        k->retry_at = bench_now_ns() + 100000000ull;
    }
}

/* The connection ended or the attempt failed. */
static void conn_gone(drv *d, sconn *k)
{
    if (k->connecting) {
        k->connecting = 0;
        d->connecting--;
    }
    if (k->live) {
        k->live = 0;
        d->live--;
        d->closed++;
    }
    if (k->e) {
        tether__engine_disconnect(k->e);
    }
    k->wsi = NULL;
    k->retries++;
    k->retry_at = bench_now_ns() + 100000000ull * (uint64_t)(k->retries < 10 ? k->retries : 10);
    if (k->retries >= MAX_RETRIES) {
        d->failed++;
    }
}

static void tick(drv *d);

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        drv *dd = lws_context_user(lws_get_context(wsi));
        if (dd && dd->tick_due) {
            dd->tick_due = 0;
            tick(dd);
        }
        return 0;
    }
    sconn *k = lws_get_opaque_user_data(wsi);
    (void)user;
    if (!k) {
        return 0;
    }
    drv *d = k->d;
    uint64_t now_ms = tether__now_ms();
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        k->connecting = 0;
        d->connecting--;
        tether__engine_connect(k->e, now_ms);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        const uint8_t *msg = in;
        size_t mlen = len;
        if (!lws_is_first_fragment(wsi) || !lws_is_final_fragment(wsi)) {
            if (lws_is_first_fragment(wsi)) {
                k->rx_len = 0;
            }
            if (k->rx_len + len > k->rx_cap) {
                size_t cap = (k->rx_len + len) * 2;
                uint8_t *p = realloc(k->rx, cap);
                if (!p) {
                    return -1;
                }
                k->rx = p;
                k->rx_cap = cap;
            }
            memcpy(k->rx + k->rx_len, in, len);
            k->rx_len += len;
            if (!lws_is_final_fragment(wsi)) {
                return 0;
            }
            msg = k->rx;
            mlen = k->rx_len;
        }
        tether__engine_event ev;
        tether__engine_on_frame(k->e, msg, mlen, now_ms, &ev);
        if (ev.welcomed && !k->live) {
            k->live = 1;
            k->retries = 0;
            d->live++;
        }
        if (ev.close || tether__engine_want_write(k->e, now_ms)) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (tether__engine_close_event(k->e, NULL) && !tether__engine_want_write(k->e, now_ms)) {
            return -1;
        }
        int rc = tether__engine_next_frame(k->e, now_ms, &d->out);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1 && lws_write(wsi, tether__buf_frame(&d->out), d->out.len, LWS_WRITE_BINARY) <
                           (int)d->out.len) {
            return -1;
        }
        if (tether__engine_want_write(k->e, now_ms) || tether__engine_close_event(k->e, NULL)) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        conn_gone(d, k);
        return 0;
    default:
        return 0;
    }
}

static void emit_live(drv *d)
{
    double cpu;
    long rss;
    bench_rusage(&cpu, &rss);
    bench_json j;
    bj_begin(&j);
    bj_str(&j, "phase", "live");
    bj_int(&j, "sessions", d->n);
    bj_int(&j, "live", d->live);
    bj_int(&j, "failed", d->failed);
    bj_num(&j, "connect_s", (double)(d->live_at - d->t0) / 1e9);
    bj_int(&j, "rss_kb", (uint64_t)rss);
    bj_emit(&j);
}

static void emit_done(drv *d, uint64_t end)
{
    uint64_t pending = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        uint64_t c = 0;
        if (d->s[i].e) {
            tether__engine_pending(d->s[i].e, &c, NULL);
        }
        pending += c;
    }
    double secs = d->rate_t0 && end > d->rate_t0 ? (double)(end - d->rate_t0) / 1e9 : 0;
    bench_json j;
    bj_begin(&j);
    bj_str(&j, "phase", "done");
    bj_int(&j, "sent", d->sent);
    bj_int(&j, "acked", d->acked);
    bj_int(&j, "pending", pending);
    bj_int(&j, "late", d->late);
    bj_int(&j, "send_errors", d->send_err);
    bj_int(&j, "live", d->live);
    bj_int(&j, "closed", d->closed);
    bj_num(&j, "seconds", secs);
    bj_hist(&j, "ack", &d->ack);
    bj_emit(&j);
}

/* Sends every message due by now (rate phase). */
static void send_due(drv *d, uint64_t now)
{
    double per_ns = d->o->rate * d->n / 1e9;
    uint64_t total_due = (uint64_t)((double)(now - d->rate_t0) * per_ns);
    uint64_t stop = (uint64_t)(d->o->duration_s * d->o->rate * d->n);
    if (total_due > stop) {
        total_due = stop;
    }
    while (d->sent < total_due) {
        sconn *k = &d->s[d->sent % d->n];
        uint64_t due = d->rate_t0 + (uint64_t)((double)d->sent / per_ns);
        tether_msg m = {d->payload, d->o->size};
        uint64_t seq = 0;
        bench_fill(d->payload, d->o->size, due, d->sent);
        const tether__session_rec *r = tether__engine_rec(k->e);
        if (r->out_last - r->peer_acked >= RING) {
            d->late++;
        }
        if (tether__engine_send(k->e, &m, 1, &seq) != TETHER_OK) {
            d->send_err++;
        } else {
            k->due[seq % RING] = due;
            if (k->wsi && k->live) {
                lws_callback_on_writable(k->wsi);
            }
        }
        d->sent++;
    }
    if (d->sent >= stop && d->phase == 2) {
        d->phase = 3;
        d->drain_until = now + (uint64_t)d->o->timeout_s * 1000000000ull;
    }
}

/* One line from stdin, if complete: 1 and the word in cmd; 0 otherwise. */
static int read_cmd(drv *d, char *word, size_t len)
{
    ssize_t r = read(0, d->cmd + d->cmd_len, sizeof d->cmd - 1 - d->cmd_len);
    if (r == 0) {
        d->stdin_eof = 1;
    } else if (r > 0) {
        d->cmd_len += (size_t)r;
    }
    char *nl = memchr(d->cmd, '\n', d->cmd_len);
    if (!nl) {
        if (d->cmd_len == sizeof d->cmd - 1) {
            d->cmd_len = 0;
        }
        return 0;
    }
    size_t k = (size_t)(nl - d->cmd);
    snprintf(word, len, "%.*s", (int)k, d->cmd);
    memmove(d->cmd, nl + 1, d->cmd_len - k - 1);
    d->cmd_len -= k + 1;
    return 1;
}

static void timer_cb(uv_timer_t *t)
{
    drv *d = t->data;
    d->tick_due = 1;
    lws_cancel_service(d->ctx);
}

static void tick(drv *d)
{
    uint64_t now = bench_now_ns();
    char word[32];

    /* ramp: a bounded number of attempts in flight, a bounded scan per tick */
    for (uint32_t i = 0; i < d->n && i < 4 * MAX_CONNECTING && d->connecting < MAX_CONNECTING;
         i++) {
        sconn *k = &d->s[d->next_connect];
        d->next_connect = (d->next_connect + 1) % d->n;
        if (!k->wsi && !k->connecting && !k->live && k->retries < MAX_RETRIES &&
            now >= k->retry_at && d->phase < 4) {
            connect_one(d, k);
        }
    }
    if (d->phase == 0 &&
        (d->live + d->failed >= d->n || now - d->t0 > (uint64_t)d->o->timeout_s * 1000000000ull)) {
        d->live_at = now;
        d->phase = 1;
        emit_live(d);
    }
    int got = read_cmd(d, word, sizeof word);
    if (d->phase == 1 && got && strcmp(word, "go") == 0) {
        d->rate_t0 = bench_now_ns();
        d->phase = d->o->rate > 0 ? 2 : 4;
        if (d->phase == 4) {
            emit_done(d, d->rate_t0);
        }
        got = 0;
    }
    if (d->phase == 2) {
        send_due(d, bench_now_ns());
    }
    if (d->phase == 3) {
        uint64_t pending = d->sent - d->acked - d->send_err;
        if (pending == 0 || now > d->drain_until) {
            d->phase = 4;
            emit_done(d, now);
        }
    }
    /* engine deadlines (delayed ACKs of anything the server sent) */
    uint64_t now_ms = tether__now_ms();
    static uint32_t sweep;
    for (uint32_t i = 0; i < 256 && d->n; i++, sweep++) {
        sconn *k = &d->s[sweep % d->n];
        if (k->live && tether__engine_deadline(k->e) <= now_ms) {
            tether__engine_tick(k->e, now_ms);
            if (tether__engine_want_write(k->e, now_ms)) {
                lws_callback_on_writable(k->wsi);
            }
        }
    }
    if ((got && strcmp(word, "end") == 0) || d->stdin_eof) {
        d->quit = 1;
        uv_timer_stop(&d->timer);
        uv_stop(&d->loop);
    }
}

int bench_sessions_driver(const bench_driver_opts *o)
{
    static drv d;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(&d, 0, sizeof d);
    d.o = o;
    d.n = o->sessions;
    d.s = calloc(d.n, sizeof *d.s);
    d.payload = calloc(1, o->size);
    {
        /* a server on 127.0.0.0/8: any 127.x.y.z is local to this host too */
        char url[512];
        const char *proto, *a, *p;
        int port;
        struct in_addr ia;
        snprintf(url, sizeof url, "%s", o->url);
        d.spread = lws_parse_uri(url, &proto, &a, &port, &p) == 0 &&
                   inet_pton(AF_INET, a, &ia) == 1 && (ntohl(ia.s_addr) >> 24) == 127;
    }
    if (!d.s || !d.payload ||
        tether__engine_cfg_fill(&d.ecfg, TETHER__ROLE_CLIENT, 0, 0, 0, 0, 0, 0, 0, 1u << 16) !=
            TETHER_OK) {
        fprintf(stderr, "tether bench: driver: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < d.n; i++) {
        if (make_session(&d, &d.s[i]) != 0) {
            fprintf(stderr, "tether bench: driver: cannot make session %u\n", i);
            return 1;
        }
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    tether__buf_init(&d.out, LWS_PRE);

    struct lws_context_creation_info info;
    void *loops[1] = {&d.loop};
    if (uv_loop_init(&d.loop) != 0 || uv_timer_init(&d.loop, &d.timer) != 0) {
        fprintf(stderr, "tether bench: driver: cannot make the libuv loop\n");
        return 1;
    }
    d.timer.data = &d;
    memset(&info, 0, sizeof info);
    d.proto[0].name = TETHER_SUBPROTOCOL;
    d.proto[0].callback = callback;
    d.proto[0].rx_buffer_size = 65536;
    lws_set_log_level(0, NULL);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = d.proto;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 65536;
    info.timeout_secs = 30;
    info.connect_timeout_secs = 30;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.user = &d;
    d.ctx = lws_create_context(&info);
    if (!d.ctx) {
        fprintf(stderr, "tether bench: driver: cannot create the libwebsockets context\n");
        return 1;
    }
    d.t0 = bench_now_ns();
    uv_timer_start(&d.timer, timer_cb, 1, TICK_US / 1000);
    while (!d.quit) {
        uv_run(&d.loop, UV_RUN_DEFAULT); /* returns at uv_stop() from the tick */
    }
    lws_context_destroy(d.ctx);
    uv_close((uv_handle_t *)&d.timer, NULL);
    while (uv_run(&d.loop, UV_RUN_NOWAIT)) {
    }
    uv_loop_close(&d.loop);
    for (uint32_t i = 0; i < d.n; i++) {
        tether__engine_destroy(d.s[i].e);
        if (d.s[i].st) {
            d.s[i].st->ops->close(d.s[i].st);
        }
        free(d.s[i].rx);
    }
    tether__buf_free(&d.out);
    free(d.s);
    free(d.payload);
    return 0;
}

/*
 * The tether peers of the benchmark: a client that sends `count` messages
 * (as fast as the window allows, or at a fixed offered rate, or as a backlog
 * queued before it connects) and a server that receives them. Each prints one
 * JSON line of results on stdout; run.c reads it.
 *
 * Timestamps: every payload starts with the CLOCK_MONOTONIC time at which the
 * producer handed it to tether (at a fixed rate: the time it was due), so the
 * server computes send-to-deliver latency directly; the client keeps the same
 * time per sequence number in a ring and computes send-to-ack in on_acked.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "bench.h"

#define BATCH_BYTES_MAX (1u << 20) /* one send_batch() call carries at most this many bytes */
#define FILL_BATCH 1000u           /* backlog: messages per send_batch() while offline */
#define PENDING_BYTES_MAX (64u << 20) /* full load: unacked payload the producer allows itself */

static tether_durability durability_of(bench_store s)
{
    switch (s) {
    case BS_OFF:
        return TETHER_DURABILITY_OFF;
    case BS_FULL:
        return TETHER_DURABILITY_FULL;
    default:
        return TETHER_DURABILITY_NORMAL;
    }
}

static void abs_deadline(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

static int fail_line(const char *role, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail_line(const char *role, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bench_json j;
    bj_begin(&j);
    bj_str(&j, "role", role);
    bj_int(&j, "ok", 0);
    bj_str(&j, "error", msg);
    bj_emit(&j);
    return 1;
}

/* ======================================================================== */
/* client                                                                   */
/* ======================================================================== */

typedef struct tcli {
    pthread_mutex_t mu;    /* guards the fields below */
    pthread_cond_t cv;     /* acks, connection state */
    int connected;         /* CONNECTED was reported */
    int failed;            /* the connection dropped or stopped: the run is void */
    char why[256];         /* ... and why */
    uint64_t acked;        /* highest seq acknowledged */
    uint64_t acks;         /* on_acked calls (one per ACK the client processed) */
    uint64_t wake_at;      /* the producer sleeps until acked >= wake_at (0: not sleeping) */
    uint64_t *ts;          /* send time by seq & ts_mask (written by the producer only) */
    uint64_t ts_mask;      /* ring size - 1 */
    int record;            /* 1: record send-to-ack latency */
    uint64_t record_upto;  /* ... of the messages up to this seq (later ones are padding) */
    bench_hist lat;        /* send-to-ack, ns */
    bench_hist call;       /* duration of each send call (producer only), ns */
    uint64_t tcp_tx0, tcp_rx0; /* TCP counters when the session went live */
    double cpu0;           /* CPU seconds when the session went live */
    uint64_t t_live;       /* when the session went live */
} tcli;

static void c_on_acked(tether_client *c, uint64_t first, uint64_t last, void *user)
{
    tcli *t = user;
    uint64_t now = bench_now_ns();
    pthread_mutex_lock(&t->mu);
    if (t->record) {
        uint64_t upto = last < t->record_upto ? last : t->record_upto;
        for (uint64_t s = first; s <= upto; s++) {
            uint64_t ts = t->ts[s & t->ts_mask];
            hist_add(&t->lat, now > ts ? now - ts : 0);
        }
    }
    t->acked = last;
    t->acks++;
    if (t->wake_at && last >= t->wake_at) {
        t->wake_at = 0;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

static void c_on_state(tether_client *c, const tether_state_info *in, void *user)
{
    tcli *t = user;
    if (in->state == TETHER_STATE_CONNECTED) {
        uint64_t tx, rx;
        double cpu;
        bench_tcp_bytes(&tx, &rx);
        bench_rusage(&cpu, NULL);
        pthread_mutex_lock(&t->mu);
        if (!t->connected) {
            t->tcp_tx0 = tx;
            t->tcp_rx0 = rx;
            t->cpu0 = cpu;
            t->t_live = bench_now_ns();
        }
        t->connected = 1;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    } else if ((in->state == TETHER_STATE_DISCONNECTED || in->state == TETHER_STATE_STOPPED) &&
               in->error != TETHER_ECLOSED) {
        pthread_mutex_lock(&t->mu);
        if (!t->failed) {
            t->failed = 1;
            snprintf(t->why, sizeof t->why, "client: connection %s: %s: %s",
                     in->state == TETHER_STATE_STOPPED ? "stopped" : "dropped",
                     tether_err_name(in->error), in->detail);
        }
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
}

/* Waits until acked >= want; 0, or -1 on failure or timeout. */
static int wait_acked(tcli *t, uint64_t want, uint32_t timeout_s)
{
    struct timespec until;
    abs_deadline(&until, timeout_s * 1000u);
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    while (t->acked < want && !t->failed) {
        t->wake_at = want;
        if (pthread_cond_timedwait(&t->cv, &t->mu, &until) == ETIMEDOUT) {
            snprintf(t->why, sizeof t->why, "client: timed out waiting for ack %llu (acked %llu)",
                     (unsigned long long)want, (unsigned long long)t->acked);
            rc = -1;
            break;
        }
    }
    if (t->failed) {
        rc = -1;
    }
    t->wake_at = 0;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static uint64_t acked_now(tcli *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t a = t->acked;
    pthread_mutex_unlock(&t->mu);
    return a;
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v) {
        p <<= 1;
    }
    return p;
}

static int client_main(const bench_peer_opts *o)
{
    tcli t;
    memset(&t, 0, sizeof t);
    pthread_mutex_init(&t.mu, NULL);
    cond_init_mono(&t.cv);

    uint32_t window = o->window ? o->window : 1024;
    /* The producer keeps at most 4 windows unacked, and at most PENDING_BYTES_MAX of
     * payload (but never less than one window). */
    uint64_t max_pending = o->max_pending ? o->max_pending : 4ull * window;
    if (!o->max_pending && max_pending * o->size > PENDING_BYTES_MAX) {
        max_pending = PENDING_BYTES_MAX / o->size;
        max_pending = max_pending < window ? window : max_pending;
    }
    uint32_t batch = o->batch ? o->batch : 1;
    if ((uint64_t)batch * o->size > BATCH_BYTES_MAX) {
        batch = BATCH_BYTES_MAX / o->size ? BATCH_BYTES_MAX / o->size : 1;
    }
    if (batch > max_pending) {
        batch = (uint32_t)max_pending;
    }
    uint32_t buf_msgs = o->backlog ? FILL_BATCH : batch;
    uint64_t ring = pow2_at_least(max_pending + batch);
    t.ts = calloc(ring, sizeof *t.ts);
    t.ts_mask = ring - 1;
    uint8_t *buf = malloc((size_t)buf_msgs * o->size);
    tether_msg *msgs = malloc(buf_msgs * sizeof *msgs);
    if (!t.ts || !buf || !msgs) {
        return fail_line("client", "out of memory");
    }
    for (size_t i = 0; i < (size_t)buf_msgs * o->size; i++) {
        buf[i] = (uint8_t)('a' + i % 26);
    }
    for (uint32_t i = 0; i < buf_msgs; i++) {
        msgs[i].data = buf + (size_t)i * o->size;
        msgs[i].len = o->size;
    }

    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = o->url;
    cfg.db_path = o->store == BS_MEMORY ? NULL : o->db;
    cfg.durability = durability_of(o->store);
    cfg.store_page_size = o->page_size;
    cfg.window_messages = o->window;
    cfg.ack_every = o->ack_every;
    cfg.ack_delay_ms = o->ack_delay;
    cfg.max_message_bytes = o->size > (1u << 20) ? o->size : 0;
    cfg.backoff_base_ms = 50;
    if (o->http) {
        cfg.transport = TETHER_TRANSPORT_HTTP;
    }
    cfg.cb.on_acked = c_on_acked;
    cfg.cb.on_state = c_on_state;
    cfg.user = &t;
    tether_client *c = NULL;
    int rc = tether_client_create(&cfg, &c);
    if (rc != TETHER_OK) {
        return fail_line("client", "tether_client_create: %s: %s", tether_err_name(rc),
                         tether_errmsg());
    }

    bench_json j;
    bj_begin(&j);
    bj_str(&j, "role", "client");
    int ok = 1;
    char why[300] = "";
    uint64_t t_start = 0;

    if (o->backlog) {
        /* Queue everything while offline, then connect and drain. */
        uint64_t f0 = bench_now_ns();
        for (uint64_t sent = 0; sent < o->count && ok;) {
            uint32_t n = (uint32_t)(o->count - sent < FILL_BATCH ? o->count - sent : FILL_BATCH);
            uint64_t now = bench_now_ns();
            for (uint32_t i = 0; i < n; i++) {
                bench_fill(buf + (size_t)i * o->size, o->size, now, sent + i);
            }
            rc = tether_client_send_batch(c, msgs, n, NULL);
            if (rc != TETHER_OK) {
                snprintf(why, sizeof why, "client: backlog send: %s: %s", tether_err_name(rc),
                         tether_errmsg());
                ok = 0;
            }
            sent += n;
        }
        double fill_s = (double)(bench_now_ns() - f0) / 1e9;
        bj_num(&j, "fill_s", fill_s);
        long rss_fill = 0;
        bench_rusage(NULL, &rss_fill);
        bj_int(&j, "fill_rss_kb", (uint64_t)rss_fill);
        t_start = bench_now_ns();
    }
    if (ok) {
        rc = tether_client_start(c);
        if (rc != TETHER_OK) {
            snprintf(why, sizeof why, "client: start: %s: %s", tether_err_name(rc),
                     tether_errmsg());
            ok = 0;
        }
    }
    if (ok && !o->backlog) {
        /* Wait for the session, then produce. */
        struct timespec until;
        abs_deadline(&until, 10000);
        pthread_mutex_lock(&t.mu);
        while (!t.connected && !t.failed) {
            if (pthread_cond_timedwait(&t.cv, &t.mu, &until) == ETIMEDOUT) {
                snprintf(t.why, sizeof t.why, "client: no session within 10 s");
                t.failed = 1;
            }
        }
        pthread_mutex_unlock(&t.mu);
        if (t.failed) {
            ok = 0;
        }
        if (ok && o->wait_go) {
            /* a fleet run: say the session is live, start when every client is */
            bench_json live;
            bj_begin(&live);
            bj_str(&live, "role", "live");
            bj_emit(&live);
            char go;
            if (read(0, &go, 1) != 1) {
                snprintf(why, sizeof why, "client: no start signal on stdin");
                ok = 0;
            }
        }
        t.record = 1;
        t.record_upto = o->count;
        double period = o->rate > 0 ? 1e9 / o->rate : 0;
        uint64_t t0 = bench_now_ns() + 1000000; /* paced: first message due in 1 ms */
        if (period > 0) {
            bench_sleep_until_ns(t0);
        }
        t_start = bench_now_ns();
        uint64_t sent = 0;
        uint64_t deadline = t_start + (uint64_t)o->timeout_s * 1000000000ull;
        /* At a fixed rate the producer goes on at the same rate after the last
         * measured message until that one is acked, so the last messages are
         * acked as in the steady state, not by the ACK timer of a stream that
         * stopped. Those padding messages are not measured. */
        int pad = period > 0;
        while (ok && (sent < o->count || (pad && acked_now(&t) < o->count))) {
            uint64_t left = sent < o->count ? o->count - sent : batch;
            uint64_t n = left < batch ? left : batch;
            uint64_t now = bench_now_ns();
            if (period > 0) {
                uint64_t due = t0 + (uint64_t)((double)sent * period);
                if (now < due) {
                    bench_sleep_until_ns(due);
                    now = bench_now_ns();
                }
                /* every message due by now, up to the batch */
                uint64_t upto = (uint64_t)((double)(now - t0) / period) + 1;
                if (upto <= sent) {
                    n = 1;
                } else if (upto - sent < n) {
                    n = upto - sent;
                }
            }
            /* room in the window of unacked messages the producer allows itself */
            uint64_t acked = acked_now(&t);
            if (sent - acked + n > max_pending) {
                if (sent - acked >= max_pending) {
                    if (wait_acked(&t, sent + n - max_pending, o->timeout_s) != 0) {
                        ok = 0;
                        break;
                    }
                    acked = acked_now(&t);
                }
                if (sent - acked + n > max_pending) {
                    n = max_pending - (sent - acked);
                }
                if (period == 0) {
                    now = bench_now_ns();
                }
            }
            for (uint64_t i = 0; i < n; i++) {
                uint64_t ts = period > 0 ? t0 + (uint64_t)((double)(sent + i) * period) : now;
                bench_fill(buf + (size_t)i * o->size, o->size, ts, sent + i);
                t.ts[(sent + 1 + i) & t.ts_mask] = ts;
            }
            uint64_t first = 0;
            uint64_t c0 = bench_now_ns();
            if (o->async) {
                /* one asynchronous hand-over per message; the library groups the commits */
                for (uint64_t i = 0; i < n && rc == TETHER_OK; i++) {
                    uint64_t seq = 0;
                    rc = tether_client_send_async(c, msgs[i].data, msgs[i].len, &seq);
                    first = i == 0 ? seq : first;
                }
            } else if (n == 1) {
                rc = tether_client_send(c, msgs[0].data, msgs[0].len, &first);
            } else {
                rc = tether_client_send_batch(c, msgs, (size_t)n, &first);
            }
            hist_add(&t.call, bench_now_ns() - c0);
            if (rc != TETHER_OK) {
                snprintf(why, sizeof why, "client: send: %s: %s", tether_err_name(rc),
                         tether_errmsg());
                ok = 0;
                break;
            }
            if (first != sent + 1) {
                snprintf(why, sizeof why, "client: seq %llu, expected %llu",
                         (unsigned long long)first, (unsigned long long)(sent + 1));
                ok = 0;
                break;
            }
            sent += n;
            if (bench_now_ns() > deadline) {
                snprintf(why, sizeof why, "client: timed out after %u s", o->timeout_s);
                ok = 0;
            }
        }
    }
    if (ok && wait_acked(&t, o->count, o->timeout_s) != 0) {
        ok = 0;
    }
    uint64_t t_end = bench_now_ns();
    double cpu1;
    long rss;
    uint64_t tx, rx;
    bench_rusage(&cpu1, &rss);
    bench_tcp_bytes(&tx, &rx);
    pthread_mutex_lock(&t.mu);
    if (!ok && !why[0]) {
        snprintf(why, sizeof why, "%s", t.why[0] ? t.why : "client failed");
    }
    bj_int(&j, "ok", (uint64_t)ok);
    if (!ok) {
        bj_str(&j, "error", why);
    }
    bj_int(&j, "n", o->count);
    bj_int(&j, "t_start", t_start);
    bj_int(&j, "t_live", t.t_live);
    bj_int(&j, "t_end", t_end);
    bj_num(&j, "cpu_s", cpu1 - t.cpu0);
    bj_int(&j, "rss_kb", (uint64_t)rss);
    bj_int(&j, "tcp_tx", tx - t.tcp_tx0);
    bj_int(&j, "tcp_rx", rx - t.tcp_rx0);
    bj_int(&j, "acks", t.acks);
    bj_hist(&j, "ack", &t.lat);
    bj_hist(&j, "call", &t.call);
    pthread_mutex_unlock(&t.mu);
    bj_emit(&j);

    tether_client_destroy(c);
    free(t.ts);
    free(buf);
    free(msgs);
    return ok ? 0 : 1;
}

/* ======================================================================== */
/* server                                                                   */
/* ======================================================================== */

typedef struct tsrv {
    pthread_mutex_t mu;   /* guards done and the wait */
    pthread_cond_t cv;    /* signalled when done */
    uint64_t want;        /* messages expected */
    int record;           /* 1: record send-to-deliver latency */
    int opaque;           /* 1: payloads are not the bench layout: only count them */
    int opened;           /* a session opened */
    uint64_t got;         /* messages delivered */
    uint64_t next_index;  /* index expected in the next payload */
    uint64_t order_err;   /* payloads out of order (never expected) */
    uint64_t redelivered; /* deliveries flagged redelivered */
    uint64_t t_open, t_first, t_last; /* session open, first and last delivery */
    double cpu0, cpu1;    /* CPU at session open and at the last delivery */
    int done;             /* got == want */
    bench_hist lat;       /* send-to-deliver, ns */
    int multi;            /* several sessions: deliveries may run on several threads at once,
                             so on_message takes mu, and the order is checked per session */
    uint32_t nslot;       /* sessions seen (multi) */
    struct {
        tether_session_id id; /* the session */
        uint64_t next_index;  /* index expected in its next payload */
    } slot[BENCH_SESSIONS_MAX];
} tsrv;

/* The expected next index of session id (multi); NULL when more sessions
 * came than the run has (counted as an order error). */
static uint64_t *next_of(tsrv *t, const tether_session_id *id)
{
    for (uint32_t i = 0; i < t->nslot; i++) {
        if (memcmp(t->slot[i].id.bytes, id->bytes, sizeof id->bytes) == 0) {
            return &t->slot[i].next_index;
        }
    }
    if (t->nslot == BENCH_SESSIONS_MAX) {
        return NULL;
    }
    t->slot[t->nslot].id = *id;
    t->slot[t->nslot].next_index = 0;
    return &t->slot[t->nslot++].next_index;
}

static void s_on_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    tsrv *t = user;
    if (t->multi) {
        pthread_mutex_lock(&t->mu);
    }
    if (!t->opened) {
        t->opened = 1;
        t->t_open = bench_now_ns();
        bench_rusage(&t->cpu0, NULL);
    }
    if (t->multi) {
        pthread_mutex_unlock(&t->mu);
    }
}

static void s_on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                         const void *data, size_t len, int redelivered, void *user)
{
    tsrv *t = user;
    uint64_t now = bench_now_ns();
    if (t->multi) {
        pthread_mutex_lock(&t->mu);
    }
    if (t->got == 0) {
        t->t_first = now;
    }
    if (len >= 16 && !t->opaque) {
        const uint8_t *p = data;
        uint64_t idx = bench_get64(p + 8);
        if (t->record && idx < t->want) {
            uint64_t ts = bench_get64(p);
            hist_add(&t->lat, now > ts ? now - ts : 0);
        }
        uint64_t *next = t->multi ? next_of(t, id) : &t->next_index;
        if (!next || idx != *next) {
            t->order_err++;
        }
        if (next) {
            *next = idx + 1;
        }
    }
    t->redelivered += redelivered ? 1 : 0;
    t->got++;
    if (t->got == t->want) { /* later ones are the client's padding */
        t->t_last = now;
        bench_rusage(&t->cpu1, NULL);
        if (!t->multi) {
            pthread_mutex_lock(&t->mu);
        }
        t->done = 1;
        pthread_cond_broadcast(&t->cv);
        if (!t->multi) {
            pthread_mutex_unlock(&t->mu);
        }
    }
    if (t->multi) {
        pthread_mutex_unlock(&t->mu);
    }
}

static int server_main(const bench_peer_opts *o)
{
    tsrv t;
    memset(&t, 0, sizeof t);
    pthread_mutex_init(&t.mu, NULL);
    cond_init_mono(&t.cv);
    t.want = o->count;
    t.record = !o->backlog;
    t.opaque = o->opaque;
    t.multi = o->sessions > 1;

    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = o->store == BS_MEMORY ? NULL : o->db;
    cfg.durability = durability_of(o->store);
    cfg.window_messages = o->window;
    cfg.ack_every = o->ack_every;
    cfg.ack_delay_ms = o->ack_delay;
    cfg.max_message_bytes = o->size > (1u << 20) ? o->size : 0;
    cfg.cb.on_session_open = s_on_open;
    cfg.cb.on_message = s_on_message;
    cfg.user = &t;
    tether_server *s = NULL;
    int rc = tether_server_create(&cfg, &s);
    if (rc == TETHER_OK) {
        rc = tether_server_start(s);
    }
    if (rc != TETHER_OK) {
        tether_server_destroy(s);
        return fail_line("server", "tether_server: %s: %s", tether_err_name(rc), tether_errmsg());
    }
    bench_json j;
    bj_begin(&j);
    bj_str(&j, "role", "ready");
    bj_int(&j, "port", tether_server_port(s));
    bj_emit(&j);

    struct timespec until;
    abs_deadline(&until, o->timeout_s * 1000u + 10000u);
    pthread_mutex_lock(&t.mu);
    while (!t.done) {
        if (pthread_cond_timedwait(&t.cv, &t.mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    int ok = t.done;
    pthread_mutex_unlock(&t.mu);

    long rss;
    bench_rusage(NULL, &rss);
    bj_begin(&j);
    bj_str(&j, "role", "server");
    bj_int(&j, "ok", (uint64_t)ok);
    if (!ok) {
        char why[128];
        snprintf(why, sizeof why, "server: received %llu of %llu messages", (unsigned long long)t.got,
                 (unsigned long long)t.want);
        bj_str(&j, "error", why);
    }
    bj_int(&j, "n", t.got);
    bj_int(&j, "t_open", t.t_open);
    bj_int(&j, "t_first", t.t_first);
    bj_int(&j, "t_last", t.t_last);
    bj_num(&j, "cpu_s", t.cpu1 - t.cpu0);
    bj_int(&j, "rss_kb", (uint64_t)rss);
    bj_int(&j, "order_err", t.order_err);
    bj_int(&j, "redelivered", t.redelivered);
    bj_hist(&j, "dlv", &t.lat);
    bj_emit(&j);

    /* Stay up (sending the last ACKs) until the orchestrator closes stdin. */
    char c;
    while (read(0, &c, 1) > 0) {
    }
    tether_server_destroy(s);
    return ok ? 0 : 1;
}

int bench_peer_tether(const bench_peer_opts *o)
{
    return o->server ? server_main(o) : client_main(o);
}

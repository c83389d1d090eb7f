/*
 * The tether client object: configuration, the store, the session engine,
 * reconnection with backoff, and the public client API.
 *
 * Locking: c->lock (recursive, so callbacks may call send) guards every field
 * below it in struct tether_client; the service thread takes it in each
 * transport callback and application threads take it in each API call.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tether/tether.h>

#include "backoff.h"
#include "link.h"
#include "proxy.h"
#include "session.h"
#include "store.h"
#include "transport.h"
#include "defaults.h"
#include "util.h"

#define CLIENT_QUEUE_BYTES (16u << 20)
#define DESTROY_FLUSH_MS 1000u

/* Where the connection life stands (service thread's view). */
enum phase {
    PH_IDLE,       /* not started */
    PH_WAITING,    /* between attempts; the transport timer starts the next one */
    PH_CONNECTING, /* TCP/TLS/upgrade in progress */
    PH_OPEN,       /* upgraded, HELLO sent, waiting for WELCOME */
    PH_LIVE,       /* welcomed */
    PH_STOPPED,    /* no further attempts */
};

struct tether_client {
    tether_client_config cfg;  /* copy of the configuration, defaults filled */
    char *url;                 /* owned copy of cfg.url */
    char *db_path;             /* owned copy of cfg.db_path, or NULL */
    atomic_int svc_waiting;    /* the service thread waits for lock: senders let it go first */
    pthread_mutex_t lock;      /* recursive; guards everything below */
    pthread_cond_t cond;       /* signalled on acks and state changes */
    tether__store *store;      /* the outbox and session record */
    tether__engine_cfg ecfg;   /* engine configuration */
    tether__engine *engine;    /* the session engine */
    tether__backoff backoff;   /* reconnect delays */
    tether__tp *tp;            /* transport, once started */
    tether__conn *conn;        /* the current attempt or connection, or NULL */
    tether__buf out;           /* frame being written */
    enum phase phase;          /* connection life */
    int stopping;              /* destroy() asked the service thread to finish */
    int close_error;           /* error that made us close the current connection, 0 if none */
    int close_code;            /* reject/bye code received on the current connection */
    int closing;               /* close once queued frames are written */
    int reset_requested;       /* reset_session() asked for a new session */
    uint64_t live_since;       /* when the current connection was welcomed */
    uint64_t welcome_deadline; /* PH_OPEN: WELCOME due by then */
    tether_state_info last;    /* the most recent state report */
    char last_detail[256];     /* its detail text */
    char *strs;                /* owned copies of the config's connectivity strings */
    const char **headers;      /* owned copy of cfg.headers (pointers into strs) */
    tether__proxy proxy;       /* the proxy in use (host "" for none) */
    int proxy_dirty;           /* proxy credentials changed: give them to the transport */
    int stopped_for_auth;      /* STOPPED by a proxy 407: new credentials restart */
    int bp_window;             /* on_backpressure last said WINDOW_FULL (1) or OPEN (0) */
    int bp_outbox;             /* ... OUTBOX_FULL (1) or OPEN (0) */
    int bp_outbox_hit;         /* a send hit the outbox cap and it was not reported yet */
    uint64_t bp_full_n;        /* pending messages when OUTBOX_FULL was reported */
};

static void lock(tether_client *c)
{
    pthread_mutex_lock(&c->lock);
}

static void unlock(tether_client *c)
{
    pthread_mutex_unlock(&c->lock);
}

/*
 * Lock fairness. A thread that sends in a loop takes the lock for a store
 * commit each time (an fsync under FULL) and takes it again at once; glibc
 * mutexes are not fair, so the service thread, which writes the messages out,
 * could wait for many commits in a row (measured: send-to-deliver p99 of
 * 50-100 ms at 20k msg/s with FULL). So the service thread waits for the lock
 * at most SVC_WAIT_US as usual; after that it raises svc_waiting and senders
 * hold back (yield) until it got the lock.
 */
#define SVC_WAIT_US 1000

/* The service thread takes the lock through this (transport callbacks). */
static void lock_svc(tether_client *c)
{
    if (pthread_mutex_trylock(&c->lock) == 0) {
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SVC_WAIT_US * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&c->lock, &until) == 0) {
        return;
    }
    atomic_store(&c->svc_waiting, 1);
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->svc_waiting, 0);
}

/* Application threads take the lock through this in the send path. */
static void lock_send(tether_client *c)
{
    for (int i = 0; i < 10000 && atomic_load(&c->svc_waiting); i++) {
        sched_yield();
    }
    pthread_mutex_lock(&c->lock);
}

/* ---- reports to the application ---- */

static void report_ex(tether_client *c, tether_state state, int error, int http_status,
                      int reject_code, uint32_t retry_in_ms, int resumed, const char *detail,
                      int proxy_status, uint32_t retry_after_ms)
{
    tether_state_info *in = &c->last;
    memset(in, 0, sizeof *in);
    in->state = state;
    in->error = error;
    in->http_status = http_status;
    in->reject_code = reject_code;
    in->attempt = c->backoff.attempt;
    in->retry_in_ms = retry_in_ms;
    in->resumed = resumed;
    in->proxy_status = proxy_status;
    in->retry_after_ms = retry_after_ms;
    snprintf(c->last_detail, sizeof c->last_detail, "%s", detail ? detail : "");
    in->detail = c->last_detail;
    pthread_cond_broadcast(&c->cond);
    if (c->cfg.cb.on_state) {
        c->cfg.cb.on_state(c, in, c->cfg.user);
    }
}

static void report(tether_client *c, tether_state state, int error, int http_status,
                   int reject_code, uint32_t retry_in_ms, int resumed, const char *detail)
{
    report_ex(c, state, error, http_status, reject_code, retry_in_ms, resumed, detail, 0, 0);
}

/* Back-pressure (service thread, lock held): reports the window and outbox
 * crossing their limits, each FULL followed by one OPEN. */
static void bp_update(tether_client *c)
{
    uint64_t n = 0, b = 0;
    int window, outbox;
    tether_backpressure_info bi;

    tether__engine_pending(c->engine, &n, &b);
    window = n >= c->ecfg.window;
    /* full until acknowledgements removed something and the caps have room */
    outbox = c->bp_outbox_hit ||
             (c->bp_outbox && (n >= c->bp_full_n ||
                               (c->cfg.outbox_max_messages && n >= c->cfg.outbox_max_messages) ||
                               (c->cfg.outbox_max_bytes && b >= c->cfg.outbox_max_bytes)));
    c->bp_outbox_hit = 0;
    if (outbox && !c->bp_outbox) {
        c->bp_full_n = n;
    }
    memset(&bi, 0, sizeof bi);
    bi.pending_messages = n;
    bi.pending_bytes = b;
    if (window != c->bp_window) {
        c->bp_window = window;
        bi.kind = window ? TETHER_BP_WINDOW_FULL : TETHER_BP_WINDOW_OPEN;
        if (c->cfg.cb.on_backpressure) {
            c->cfg.cb.on_backpressure(c, &bi, c->cfg.user);
        }
    }
    if (outbox != c->bp_outbox) {
        c->bp_outbox = outbox;
        bi.kind = outbox ? TETHER_BP_OUTBOX_FULL : TETHER_BP_OUTBOX_OPEN;
        if (c->cfg.cb.on_backpressure) {
            c->cfg.cb.on_backpressure(c, &bi, c->cfg.user);
        }
    }
}

static void ev_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    tether_client *c = arg;
    if (c->cfg.cb.on_message) {
        c->cfg.cb.on_message(c, seq, data, len, redelivered, c->cfg.user);
    }
}

static void ev_acked(void *arg, uint64_t first, uint64_t last)
{
    tether_client *c = arg;
    pthread_cond_broadcast(&c->cond);
    if (c->cfg.cb.on_acked) {
        c->cfg.cb.on_acked(c, first, last, c->cfg.user);
    }
    if (c->tp) {
        bp_update(c);
    }
}

static void ev_mismatch(void *arg, const tether_mismatch_info *info)
{
    tether_client *c = arg;
    if (c->cfg.cb.on_mismatch) {
        c->cfg.cb.on_mismatch(c, info, c->cfg.user);
    }
}

static int make_engine(tether_client *c, const tether__session_rec *rec)
{
    tether__engine_cb cb = {ev_message, ev_acked, ev_mismatch, c};
    return tether__engine_create(&c->ecfg, c->store, rec, &cb, &c->engine);
}

/* ---- connection life (service thread, lock held) ---- */

/* Errors that another attempt cannot cure. A message larger than the server
 * accepts blocks the stream; retrying would hit it again. */
static int permanent(int error, int http_status)
{
    return error == TETHER_ETOKEN || error == TETHER_EVERSION || error == TETHER_ETOOBIG ||
           error == TETHER_EPROXY_AUTH ||
           (error == TETHER_EHTTP && (http_status == 401 || http_status == 403));
}

static void attempt(tether_client *c)
{
    c->phase = PH_CONNECTING;
    c->close_error = 0;
    c->close_code = 0;
    c->closing = 0;
    report(c, TETHER_STATE_CONNECTING, TETHER_OK, 0, 0, 0, 0, c->url);
    if (c->proxy_dirty) {
        tether__tp_set_proxy(c->tp, &c->proxy);
        c->proxy_dirty = 0;
    }
    /* failures, even immediate ones, and lws's connect timeout arrive through on_closed */
    tether__tp_connect(c->tp, c->url);
}

static int reset_session_locked(tether_client *c)
{
    const tether__session_rec *old = tether__engine_rec(c->engine);
    tether__session_rec rec;
    int rc;

    memset(&rec, 0, sizeof rec);
    if ((rc = tether__random(rec.id, sizeof rec.id)) != TETHER_OK ||
        (rc = tether__random(rec.token, sizeof rec.token)) != TETHER_OK) {
        return rc;
    }
    rec.out_last = old->out_last - old->peer_acked;
    rc = c->store->ops->rebase(c->store, old->id, &rec, old->peer_acked);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot start a new session: %s", c->store->ops->errmsg(c->store));
    }
    tether__engine_destroy(c->engine);
    c->engine = NULL;
    rc = make_engine(c, &rec);
    if (rc != TETHER_OK) {
        return rc;
    }
    c->reset_requested = 0;
    tether__backoff_reset(&c->backoff);
    return TETHER_OK;
}

/* The connection (or attempt) is gone: decide what comes next. */
static void after_close(tether_client *c, int error, int http_status, int code,
                        const char *detail, uint64_t now, const tether__tp_close *why)
{
    uint32_t delay = 0;
    int proxy_status = why ? why->proxy_status : 0;
    uint32_t retry_after = why ? why->retry_after_ms : 0;

    c->conn = NULL;
    tether__engine_disconnect(c->engine);
    report_ex(c, TETHER_STATE_DISCONNECTED, error, http_status, code, 0, 0, detail, proxy_status,
              retry_after);
    if (c->stopping) {
        c->phase = PH_STOPPED;
        pthread_cond_broadcast(&c->cond);
        return;
    }
    if (error == TETHER_EMISMATCH && c->cfg.mismatch_policy == TETHER_MISMATCH_RESET) {
        int rc = reset_session_locked(c);
        if (rc != TETHER_OK) {
            c->phase = PH_STOPPED;
            report(c, TETHER_STATE_STOPPED, rc, 0, 0, 0, 0, tether_errmsg());
            return;
        }
        c->phase = PH_WAITING;
        tether__tp_timer(c->tp, 0);
        return;
    }
    if (error == TETHER_EMISMATCH || (permanent(error, http_status) && !c->cfg.retry_permanent)) {
        c->phase = PH_STOPPED;
        c->stopped_for_auth = error == TETHER_EPROXY_AUTH;
        report_ex(c, TETHER_STATE_STOPPED, error, http_status, code, 0, 0,
                  error == TETHER_EMISMATCH
                      ? "session state mismatch: call tether_client_reset_session() to continue"
                  : error == TETHER_EPROXY_AUTH
                      ? "the proxy wants credentials: call tether_client_set_proxy_credentials()"
                      : detail,
                  proxy_status, retry_after);
        return;
    }
    if (c->live_since && now - c->live_since >= c->cfg.backoff_reset_ms) {
        tether__backoff_reset(&c->backoff);
    }
    c->live_since = 0;
    if (tether__backoff_next(&c->backoff, &delay) != TETHER_OK) {
        c->phase = PH_STOPPED;
        report(c, TETHER_STATE_STOPPED, TETHER_EGIVEUP, 0, 0, 0, 0,
               "gave up: the maximum number of attempts was reached");
        return;
    }
    if (retry_after) {
        /* the server (or proxy) said when to come back: never sooner, within reason */
        uint32_t ra = retry_after < c->cfg.retry_after_max_ms ? retry_after
                                                              : c->cfg.retry_after_max_ms;
        delay = delay > ra ? delay : ra;
    }
    c->phase = PH_WAITING;
    report_ex(c, TETHER_STATE_RECONNECTING, error, http_status, code, delay, 0, detail,
              proxy_status, retry_after);
    tether__tp_timer(c->tp, delay);
}

/* Closes the connection after the engine's queued frames are written. */
static void close_soon(tether_client *c, int error, int code, const char *detail, uint64_t now)
{
    if (!c->close_error) {
        c->close_error = error;
        c->close_code = code;
        snprintf(c->last_detail, sizeof c->last_detail, "%s", detail);
    }
    c->closing = 1;
    if (c->conn) {
        tether__conn_want_write(c->conn);
    }
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    tether__tp_timer_cancel(c->tp);
    c->conn = conn;
    c->phase = PH_OPEN;
    c->welcome_deadline = now + c->cfg.welcome_timeout_ms;
    if (tether__engine_connect(c->engine, now) != TETHER_OK) {
        close_soon(c, TETHER_ENOMEM, 0, "cannot queue HELLO", now);
    }
    tether__conn_want_write(conn);
    tether__link_arm(c->engine, conn, now, c->welcome_deadline);
    unlock(c);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    tether__engine_event ev;

    lock_svc(c);
    if (conn != c->conn || c->closing) {
        unlock(c);
        return;
    }
    if (err) {
        char d[160];
        snprintf(d, sizeof d, "the server sent an unacceptable message: %s",
                 tether_strerror(err));
        tether__engine_bye(c->engine, tether__link_close_code(err), d);
        close_soon(c, err, 0, d, now);
        unlock(c);
        return;
    }
    memset(&ev, 0, sizeof ev);
    tether__engine_on_frame(c->engine, buf, len, now, &ev);
    if (ev.welcomed) {
        c->phase = PH_LIVE;
        c->live_since = now;
        c->welcome_deadline = UINT64_MAX;
        report(c, TETHER_STATE_CONNECTED, TETHER_OK, 0, 0, 0, ev.resumed,
               ev.resumed ? "session resumed" : "new session");
    }
    if (ev.close) {
        close_soon(c, ev.error ? ev.error : TETHER_EPEER_CLOSED, (int)ev.peer_code,
                   ev.detail[0] ? ev.detail : tether_strerror(ev.error), now);
    } else if (tether__engine_want_write(c->engine, now)) {
        tether__conn_want_write(conn);
    }
    if (c->conn) {
        tether__link_arm(c->engine, conn, now,
                         c->phase == PH_OPEN ? c->welcome_deadline : UINT64_MAX);
    }
    unlock(c);
}

static void on_writable(void *owner, tether__conn *conn)
{
    tether_client *c = owner;
    tether__engine_event why;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (conn == c->conn &&
        tether__link_pump(c->engine, conn, &c->out, now, c->closing, &why) != TETHER_OK) {
        close_soon(c, why.error, 0, why.detail[0] ? why.detail : tether_strerror(why.error), now);
    }
    unlock(c);
}

static void on_closed(void *owner, tether__conn *conn, const tether__tp_close *why)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (conn != c->conn && c->conn != NULL) {
        unlock(c);
        return;
    }
    tether__tp_timer_cancel(c->tp);
    if (c->close_error) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", c->last_detail);
        after_close(c, c->close_error, 0, c->close_code, detail, now, NULL);
    } else if (c->phase == PH_CONNECTING && why->error == TETHER_EPEER_CLOSED) {
        after_close(c, TETHER_ECONNECT, why->http_status, 0, why->detail, now, why);
    } else {
        after_close(c, why->error, why->http_status, 0, why->detail, now, why);
    }
    unlock(c);
}

static void on_wake(void *owner)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (c->stopping) {
        if (c->conn && c->phase == PH_LIVE && !c->closing) {
            tether__engine_bye(c->engine, TETHER_REJECT_NONE, "client shutting down");
            close_soon(c, TETHER_ECLOSED, 0, "client shutting down", now);
        } else if (c->conn && !c->closing) {
            close_soon(c, TETHER_ECLOSED, 0, "client shutting down", now);
        } else if (!c->conn && c->phase != PH_STOPPED) {
            tether__tp_timer_cancel(c->tp);
            c->phase = PH_STOPPED;
            pthread_cond_broadcast(&c->cond);
        }
    } else if (c->phase == PH_IDLE) {
        attempt(c);
    } else if (c->conn && c->phase == PH_LIVE && tether__engine_want_write(c->engine, now)) {
        tether__conn_want_write(c->conn);
    }
    if (!c->stopping) {
        bp_update(c);
    }
    unlock(c);
}

static void on_timer(void *owner, tether__conn *conn)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (!conn) {
        /* the transport-wide timer: the backoff delay is over */
        if (c->phase == PH_WAITING && !c->stopping) {
            attempt(c);
        }
    } else if (conn == c->conn) {
        if (c->phase == PH_OPEN && now >= c->welcome_deadline && !c->closing) {
            char d[160];
            snprintf(d, sizeof d,
                     "the upgrade succeeded but no WELCOME arrived within %u ms: frames are "
                     "blocked on the path",
                     c->cfg.welcome_timeout_ms);
            close_soon(c, TETHER_ESTALLED, 0, d, now);
            tether__conn_close(conn);
        } else {
            tether__engine_tick(c->engine, now);
            if (tether__engine_want_write(c->engine, now)) {
                tether__conn_want_write(conn);
            }
            tether__link_arm(c->engine, conn, now,
                             c->phase == PH_OPEN ? c->welcome_deadline : UINT64_MAX);
        }
    }
    unlock(c);
}

/* ---- public API ---- */

void tether_client_config_init(tether_client_config *cfg)
{
    if (cfg) {
        memset(cfg, 0, sizeof *cfg);
    }
}

static int check_connectivity(tether_client_config *k);

static int check_config(tether_client_config *k)
{
    int rc = tether__tp_check_url(k->url);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (k->durability < TETHER_DURABILITY_DEFAULT || k->durability > TETHER_DURABILITY_FULL) {
        return tether__fail(TETHER_ECONFIG, "durability %d is not one of the tether_durability values",
                            (int)k->durability);
    }
    if (k->mismatch_policy != TETHER_MISMATCH_STOP && k->mismatch_policy != TETHER_MISMATCH_RESET) {
        return tether__fail(TETHER_ECONFIG, "mismatch_policy %d is unknown", (int)k->mismatch_policy);
    }
    k->backoff_base_ms = k->backoff_base_ms ? k->backoff_base_ms : TETHER__DEFAULT_BACKOFF_BASE_MS;
    k->backoff_cap_ms = k->backoff_cap_ms ? k->backoff_cap_ms : TETHER__DEFAULT_BACKOFF_CAP_MS;
    k->backoff_reset_ms = k->backoff_reset_ms ? k->backoff_reset_ms : TETHER__DEFAULT_BACKOFF_RESET_MS;
    k->connect_timeout_ms = k->connect_timeout_ms ? k->connect_timeout_ms : TETHER__DEFAULT_CONNECT_TIMEOUT_MS;
    k->welcome_timeout_ms = k->welcome_timeout_ms ? k->welcome_timeout_ms : TETHER__DEFAULT_WELCOME_TIMEOUT_MS;
    k->ping_interval_ms = k->ping_interval_ms ? k->ping_interval_ms : TETHER__DEFAULT_PING_INTERVAL_MS;
    k->pong_timeout_ms = k->pong_timeout_ms ? k->pong_timeout_ms : TETHER__DEFAULT_PONG_TIMEOUT_MS;
    k->retry_after_max_ms =
        k->retry_after_max_ms ? k->retry_after_max_ms : TETHER__DEFAULT_RETRY_AFTER_MAX_MS;
    if ((rc = check_connectivity(k)) != TETHER_OK) {
        return rc;
    }
    if (k->backoff_base_ms > k->backoff_cap_ms) {
        return tether__fail(TETHER_ECONFIG, "backoff_base_ms (%u) exceeds backoff_cap_ms (%u)",
                            k->backoff_base_ms, k->backoff_cap_ms);
    }
    if (k->ping_interval_ms < 1000 || k->pong_timeout_ms < 1000) {
        return tether__fail(TETHER_ECONFIG,
                            "ping_interval_ms and pong_timeout_ms must be at least 1000 "
                            "(liveness is checked with one-second resolution)");
    }
    return TETHER_OK;
}

/* Loads the client's session from the store, or makes a new one. */
static int load_session(tether__store *st, tether__session_rec *rec);

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* Copies the connectivity strings of c->cfg into one allocation (c->strs) and
 * points the config at the copies. */
static int copy_strings(tether_client *c)
{
    const char **fields[] = {&c->cfg.tls_ca_file, &c->cfg.tls_cert_file, &c->cfg.tls_key_file,
                             &c->cfg.proxy,       &c->cfg.proxy_user,    &c->cfg.proxy_password,
                             &c->cfg.origin};
    size_t need = 0, nh = 0, off = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        need += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    }
    for (const char *const *h = c->cfg.headers; h && *h; h++) {
        need += strlen(*h) + 1;
        nh++;
    }
    c->strs = malloc(need + 1);
    c->headers = nh ? calloc(nh + 1, sizeof *c->headers) : NULL;
    if (!c->strs || (nh && !c->headers)) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (*fields[i]) {
            size_t n = strlen(*fields[i]) + 1;
            memcpy(c->strs + off, *fields[i], n);
            *fields[i] = c->strs + off;
            off += n;
        }
    }
    for (size_t i = 0; i < nh; i++) {
        size_t n = strlen(c->cfg.headers[i]) + 1;
        memcpy(c->strs + off, c->cfg.headers[i], n);
        c->headers[i] = c->strs + off;
        off += n;
    }
    c->cfg.headers = c->headers;
    return TETHER_OK;
}

static int check_credentials(const char *user, const char *pass)
{
    if (user && strchr(user, ':')) {
        return tether__fail(TETHER_ECONFIG, "the proxy user name must not contain ':'");
    }
    if ((user ? strlen(user) : 0) + (pass ? strlen(pass) : 0) + 1 > 95) {
        return tether__fail(TETHER_ECONFIG, "the proxy user and password exceed 94 bytes");
    }
    return TETHER_OK;
}

/* TLS files, proxy, headers (k is the client's own copy). */
static int check_connectivity(tether_client_config *k)
{
    const char *files[][2] = {{"tls_ca_file", k->tls_ca_file},
                              {"tls_cert_file", k->tls_cert_file},
                              {"tls_key_file", k->tls_key_file}};
    for (size_t i = 0; i < 3; i++) {
        if (files[i][1] && access(files[i][1], R_OK) != 0) {
            return tether__fail(TETHER_ECONFIG, "cannot read %s '%s': %s", files[i][0], files[i][1],
                                strerror(errno));
        }
    }
    if (!k->tls_cert_file != !k->tls_key_file) {
        return tether__fail(TETHER_ECONFIG, "tls_cert_file and tls_key_file go together");
    }
    for (const char *const *h = k->headers; h && *h; h++) {
        const char *colon = strchr(*h, ':');
        if (!colon || colon == *h || strpbrk(*h, "\r\n") || strlen(*h) > 1024) {
            return tether__fail(TETHER_ECONFIG,
                                "header '%.80s' is not one \"Name: value\" line of at most 1024 bytes",
                                *h);
        }
    }
    if (k->origin && strpbrk(k->origin, "\r\n")) {
        return tether__fail(TETHER_ECONFIG, "origin must be one line");
    }
    return check_credentials(k->proxy_user, k->proxy_password);
}

/* Decides the proxy: configured, none, or from the environment. */
static int choose_proxy(tether_client *c)
{
    int rc = TETHER_OK;
    memset(&c->proxy, 0, sizeof c->proxy);
    if (!c->cfg.proxy) {
        char host[256];
        int tls = 0;
        tether__tp_url_host(c->cfg.url, &tls, host, sizeof host);
        rc = tether__proxy_from_env(tls, host, env_get, &c->proxy);
        rc = rc < 0 ? rc : TETHER_OK;
    } else if (c->cfg.proxy[0]) {
        rc = tether__proxy_parse(c->cfg.proxy, &c->proxy);
    }
    if (rc == TETHER_OK && c->proxy.host[0] && c->cfg.proxy_user) {
        snprintf(c->proxy.user, sizeof c->proxy.user, "%s", c->cfg.proxy_user);
        snprintf(c->proxy.pass, sizeof c->proxy.pass, "%s",
                 c->cfg.proxy_password ? c->cfg.proxy_password : "");
    }
    return rc;
}

static int first_session(void *arg, const tether__session_rec *rec)
{
    *(tether__session_rec *)arg = *rec;
    return 1;
}

static int load_session(tether__store *st, tether__session_rec *rec)
{
    int rc;
    memset(rec, 0, sizeof *rec);
    rc = st->ops->session_list(st, first_session, rec);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot read the session: %s", st->ops->errmsg(st));
    }
    static const uint8_t zero[16];
    if (memcmp(rec->id, zero, sizeof zero) != 0) {
        return TETHER_OK;
    }
    if ((rc = tether__random(rec->id, sizeof rec->id)) != TETHER_OK ||
        (rc = tether__random(rec->token, sizeof rec->token)) != TETHER_OK) {
        return rc;
    }
    rc = st->ops->session_put(st, rec);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot create the session: %s", st->ops->errmsg(st));
    }
    return TETHER_OK;
}

int tether_client_create(const tether_client_config *cfg, tether_client **out)
{
    tether_client *c;
    tether__session_rec rec;
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    int rc;

    if (!out) {
        return tether__fail(TETHER_EINVAL, "out is NULL");
    }
    *out = NULL;
    if (!cfg) {
        return tether__fail(TETHER_EINVAL, "cfg is NULL");
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->cfg = *cfg;
    if ((rc = check_config(&c->cfg)) != TETHER_OK || (rc = copy_strings(c)) != TETHER_OK ||
        (rc = choose_proxy(c)) != TETHER_OK) {
        free(c->strs);
        free(c->headers);
        free(c);
        return rc;
    }
    if (c->cfg.tls_insecure_skip_verify) {
        fprintf(stderr, "tether: WARNING: tls_insecure_skip_verify is set for %s: the server's "
                        "certificate is NOT checked, so anyone on the path can read and change "
                        "this connection. Never use it in production.\n",
                c->cfg.url);
    }
    rc = tether__link_engine_cfg(&c->ecfg, TETHER__ROLE_CLIENT, cfg->max_message_bytes,
                                 cfg->window_messages, cfg->ack_every, cfg->ack_delay_ms,
                                 cfg->outbox_max_messages, cfg->outbox_max_bytes, cfg->manual_ack,
                                 CLIENT_QUEUE_BYTES);
    if (rc != TETHER_OK) {
        free(c->strs);
        free(c->headers);
        free(c);
        return rc;
    }
    c->url = strdup(cfg->url);
    c->db_path = cfg->db_path ? strdup(cfg->db_path) : NULL;
    if (!c->url || (cfg->db_path && !c->db_path)) {
        free(c->url);
        free(c->db_path);
        free(c->strs);
        free(c->headers);
        free(c);
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->cfg.url = c->url;
    c->cfg.db_path = c->db_path;

    if (c->db_path) {
        char err[256] = "";
        rc = tether__store_sqlite_open(c->db_path, TETHER__ROLE_CLIENT, c->cfg.durability,
                                       &c->store, err, sizeof err);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot open the store %s: %s", c->db_path, err);
        }
    } else {
        rc = tether__store_memory_open(TETHER__ROLE_CLIENT, &c->store);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot create the memory store");
        }
    }
    if (rc == TETHER_OK) {
        rc = load_session(c->store, &rec);
    }
    if (rc == TETHER_OK) {
        rc = make_engine(c, &rec);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot start the session engine: %s",
                         c->store->ops->errmsg(c->store));
        }
    }
    if (rc != TETHER_OK) {
        if (c->store) {
            c->store->ops->close(c->store);
        }
        free(c->url);
        free(c->db_path);
        free(c->strs);
        free(c->headers);
        free(c);
        return rc;
    }

    uint64_t seed = c->cfg.random_seed;
    if (!seed && tether__random(&seed, sizeof seed) != TETHER_OK) {
        seed = tether__now_ms() ^ (uint64_t)(uintptr_t)c;
    }
    tether__backoff_init(&c->backoff, c->cfg.backoff_base_ms, c->cfg.backoff_cap_ms,
                         c->cfg.backoff_max_attempts, seed);
    tether__buf_init(&c->out, tether__tp_headroom());
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->phase = PH_IDLE;
    c->last.detail = c->last_detail;
    *out = c;
    return TETHER_OK;
}

int tether_client_start(tether_client *c)
{
    static const tether__tp_cb cb = {on_open, on_message, on_writable, on_closed,
                                     on_wake, on_timer, NULL};
    tether__tp_cfg tc;
    int rc;

    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    lock(c);
    if (c->tp) {
        unlock(c);
        return tether__fail(TETHER_EINVAL, "the client is already started");
    }
    memset(&tc, 0, sizeof tc);
    tc.max_rx = c->ecfg.max_message + 1024;
    tc.ping_interval_ms = c->cfg.ping_interval_ms;
    tc.pong_timeout_ms = c->cfg.pong_timeout_ms;
    tc.connect_timeout_ms = c->cfg.connect_timeout_ms;
    tc.tls_ca_file = c->cfg.tls_ca_file;
    tc.tls_cert_file = c->cfg.tls_cert_file;
    tc.tls_key_file = c->cfg.tls_key_file;
    tc.tls_insecure = c->cfg.tls_insecure_skip_verify != 0;
    tc.proxy = &c->proxy;
    tc.origin = c->cfg.origin;
    tc.headers = c->cfg.headers;
    rc = tether__tp_create(&tc, &cb, c, &c->tp);
    if (rc == TETHER_OK) {
        rc = tether__tp_start(c->tp);
        if (rc != TETHER_OK) {
            tether__tp_destroy(c->tp);
            c->tp = NULL;
        }
    }
    unlock(c);
    if (rc == TETHER_OK) {
        tether__tp_wake(c->tp);
    }
    return rc;
}

static void wake(tether_client *c)
{
    if (c->tp) {
        tether__tp_wake(c->tp);
    }
}

int tether_client_send_batch(tether_client *c, const tether_msg *msgs, size_t n,
                             uint64_t *first_seq)
{
    int rc;
    if (!c || (!msgs && n)) {
        return tether__fail(TETHER_EINVAL, "client or messages NULL");
    }
    if (n == 0) {
        return tether__fail(TETHER_EINVAL, "no messages to send");
    }
    lock_send(c);
    if (c->stopping) {
        unlock(c);
        return tether__fail(TETHER_ECLOSED, "the client is shutting down");
    }
    rc = tether__engine_send(c->engine, msgs, n, first_seq);
    /* back-pressure is reported on the service thread: wake it when it changes */
    uint64_t bp_n = 0;
    tether__engine_pending(c->engine, &bp_n, NULL);
    int bp = (bp_n >= c->ecfg.window) != c->bp_window;
    if (rc == TETHER_EOUTBOX_FULL && !c->bp_outbox) {
        c->bp_outbox_hit = 1;
        bp = 1;
    }
    if (rc != TETHER_OK) {
        tether__fail(rc, "send failed: %s%s%s", tether_strerror(rc),
                     rc <= TETHER_ESTORE && rc >= TETHER_ESTORE_READONLY ? " " : "",
                     rc <= TETHER_ESTORE && rc >= TETHER_ESTORE_READONLY
                         ? c->store->ops->errmsg(c->store)
                         : "");
    }
    int live = c->phase == PH_LIVE;
    unlock(c);
    if ((rc == TETHER_OK && live) || bp) {
        wake(c);
    }
    return rc;
}

int tether_client_send(tether_client *c, const void *data, size_t len, uint64_t *seq)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    return tether_client_send_batch(c, &m, 1, seq);
}

int tether_client_ack(tether_client *c, uint64_t seq)
{
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    lock(c);
    int rc = tether__engine_ack(c->engine, seq, tether__now_ms());
    if (rc != TETHER_OK) {
        tether__fail(rc, "ack of %llu failed: %s", (unsigned long long)seq, tether_strerror(rc));
    }
    unlock(c);
    if (rc == TETHER_OK) {
        wake(c);
    }
    return rc;
}

int tether_client_acked(tether_client *c, uint64_t *seq)
{
    if (!c || !seq) {
        return tether__fail(TETHER_EINVAL, "client or seq is NULL");
    }
    lock(c);
    *seq = tether__engine_rec(c->engine)->peer_acked;
    unlock(c);
    return TETHER_OK;
}

int tether_client_last_seq(tether_client *c, uint64_t *seq)
{
    if (!c || !seq) {
        return tether__fail(TETHER_EINVAL, "client or seq is NULL");
    }
    lock(c);
    *seq = tether__engine_rec(c->engine)->out_last;
    unlock(c);
    return TETHER_OK;
}

int tether_client_pending(tether_client *c, uint64_t *count, uint64_t *bytes)
{
    uint64_t n, b;
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    lock(c);
    tether__engine_pending(c->engine, &n, &b);
    unlock(c);
    if (count) {
        *count = n;
    }
    if (bytes) {
        *bytes = b;
    }
    return TETHER_OK;
}

int tether_client_wait_acked(tether_client *c, uint32_t timeout_ms)
{
    struct timespec until;
    uint64_t n, b;
    int rc = TETHER_OK;

    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    lock(c);
    for (;;) {
        tether__engine_pending(c->engine, &n, &b);
        if (n == 0) {
            break;
        }
        if (c->phase == PH_STOPPED || !c->tp) {
            rc = tether__fail(TETHER_ECLOSED, "%llu messages unacked and the client is %s: %s",
                              (unsigned long long)n, !c->tp ? "not started" : "stopped",
                              c->last_detail);
            break;
        }
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT) {
            tether__engine_pending(c->engine, &n, &b);
            if (n) {
                rc = tether__fail(TETHER_ETIMEDOUT, "%llu messages still unacked after %u ms",
                                  (unsigned long long)n, timeout_ms);
            }
            break;
        }
    }
    unlock(c);
    return rc;
}

int tether_client_session(tether_client *c, tether_session_id *id)
{
    if (!c || !id) {
        return tether__fail(TETHER_EINVAL, "client or id is NULL");
    }
    lock(c);
    memcpy(id->bytes, tether__engine_rec(c->engine)->id, 16);
    unlock(c);
    return TETHER_OK;
}

int tether_client_last_state(tether_client *c, tether_state_info *info, char *detail,
                             size_t detail_len)
{
    if (!c || !info) {
        return tether__fail(TETHER_EINVAL, "client or info is NULL");
    }
    lock(c);
    *info = c->last;
    if (detail && detail_len) {
        snprintf(detail, detail_len, "%s", c->last_detail);
        info->detail = detail;
    } else {
        info->detail = "";
    }
    unlock(c);
    return TETHER_OK;
}

int tether_client_reset_session(tether_client *c)
{
    int rc;
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    lock(c);
    if (c->phase != PH_IDLE && c->phase != PH_STOPPED) {
        unlock(c);
        return tether__fail(TETHER_EINVAL,
                            "the session can only be reset while the client is stopped or not "
                            "yet started");
    }
    rc = reset_session_locked(c);
    if (rc == TETHER_OK && c->phase == PH_STOPPED && c->tp && !c->stopping) {
        c->phase = PH_IDLE; /* the wake below starts a new attempt */
    }
    unlock(c);
    if (rc == TETHER_OK) {
        wake(c);
    }
    return rc;
}

void tether_client_destroy(tether_client *c)
{
    if (!c) {
        return;
    }
    if (c->tp) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += DESTROY_FLUSH_MS / 1000;
        lock(c);
        c->stopping = 1;
        unlock(c);
        tether__tp_wake(c->tp);
        lock(c);
        while (c->phase != PH_STOPPED && c->phase != PH_IDLE) {
            if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT) {
                break;
            }
        }
        unlock(c);
        tether__tp_destroy(c->tp);
        c->tp = NULL;
    }
    tether__engine_destroy(c->engine);
    c->store->ops->close(c->store);
    tether__buf_free(&c->out);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c->url);
    free(c->db_path);
    free(c->strs);
    free(c->headers);
    free(c);
}

int tether_client_set_proxy_credentials(tether_client *c, const char *user, const char *password)
{
    int rc, restart = 0;
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    if ((rc = check_credentials(user, password)) != TETHER_OK) {
        return rc;
    }
    lock(c);
    if (!c->proxy.host[0]) {
        unlock(c);
        return tether__fail(TETHER_EINVAL, "the client does not use a proxy");
    }
    snprintf(c->proxy.user, sizeof c->proxy.user, "%s", user ? user : "");
    snprintf(c->proxy.pass, sizeof c->proxy.pass, "%s", user && password ? password : "");
    c->proxy_dirty = 1;
    if (c->phase == PH_STOPPED && c->stopped_for_auth && c->tp && !c->stopping) {
        c->stopped_for_auth = 0;
        tether__backoff_reset(&c->backoff);
        c->phase = PH_IDLE; /* the wake below starts a new attempt */
        restart = 1;
    }
    unlock(c);
    if (restart) {
        wake(c);
    }
    return TETHER_OK;
}

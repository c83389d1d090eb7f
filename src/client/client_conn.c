/*
 * The client's connection life, on the service thread: attempts, HELLO and
 * WELCOME, frames in and out, closes, and what comes next (backoff, stop,
 * session reset). Every function here runs with c->lock held; the
 * application's callbacks are queued (client_events.c) and run when a
 * transport callback leaves the lock.
 */
#include "client_int.h"

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
    in->transport = c->fb.http ? TETHER_TRANSPORT_HTTP : TETHER_TRANSPORT_WEBSOCKET;
    snprintf(c->last_detail, sizeof c->last_detail, "%.*s", (int)sizeof c->last_detail - 1,
             detail ? detail : "");
    in->detail = c->last_detail;
    pthread_cond_broadcast(&c->cond);
    if (c->cfg.cb.on_state) {
        tether__client_ev_state_locked(c, in);
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
    tether_backpressure_info bi[2];
    int n = tether__bp_update(&c->bp, c->engine, c->ecfg.window, c->cfg.outbox_max_messages,
                              c->cfg.outbox_max_bytes, bi);
    for (int i = 0; i < n && c->cfg.cb.on_backpressure; i++) {
        tether__client_ev_bp_locked(c, &bi[i]);
    }
}

static void ev_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    tether_client *c = arg;
    tether__stat_add(&c->stats, TETHER__ST_DELIVERED, 1);
    tether__stat_add(&c->stats, TETHER__ST_REDELIVERED, redelivered != 0);
    if (c->cfg.cb.on_message) {
        tether__client_ev_message_locked(c, seq, data, len, redelivered);
    }
}

static void ev_acked(void *arg, uint64_t first, uint64_t last)
{
    tether_client *c = arg;
    tether__stat_add(&c->stats, TETHER__ST_ACKED, last - first + 1);
    c->conn_acked = 1;
    pthread_cond_broadcast(&c->cond);
    if (c->cfg.cb.on_acked) {
        tether__client_ev_acked_locked(c, first, last);
    }
    if (c->tp) {
        bp_update(c);
    }
}

static void ev_mismatch(void *arg, const tether_mismatch_info *info)
{
    tether_client *c = arg;
    if (c->cfg.cb.on_mismatch) {
        tether__client_ev_mismatch_locked(c, info);
    }
}

int tether__client_make_engine(tether_client *c, const tether__session_rec *rec)
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

static void after_close(tether_client *c, int error, int http_status, int code,
                        const char *detail, uint64_t now, const tether__tp_close *why);

static void attempt(tether_client *c)
{
    if (c->probe_state == PROBE_ATTEMPT || c->probe_state == PROBE_DROPPED) {
        /* the abandoned probe's WebSocket attempt still holds the transport's
         * attempt: the next attempt follows once it ended */
        c->phase = PH_WAITING;
        tether__tp_timer(c->tp, 20);
        return;
    }
    c->phase = PH_ATTEMPT;
    c->conn_acked = 0;
    tether__stat_add(&c->stats, TETHER__ST_ATTEMPTS, 1);
    tether__fb_before_attempt(&c->fb, tether__now_ms());
    atomic_store(&c->transport_now, c->fb.http ? TETHER_TRANSPORT_HTTP : TETHER_TRANSPORT_WEBSOCKET);
    {
        char d[512];
        snprintf(d, sizeof d, "%.120s%s%s%.110s%s%.110s", c->url, c->fb.http ? " (HTTP carriage)" : "",
                 c->verdict_restored ? ": " : "", c->verdict_restored ? c->fb.why : "",
                 c->verdict_err[0] ? "; " : "", c->verdict_err);
        c->verdict_restored = 0;
        c->verdict_err[0] = '\0';
        report(c, TETHER_STATE_CONNECTING, TETHER_OK, 0, 0, 0, 0, d);
    }
    if (c->proxy_dirty) {
        tether__tp_set_proxy(c->tp, &c->proxy);
        c->proxy_dirty = 0;
    }
    /* failures, even immediate ones, and lws's connect timeout arrive through on_closed */
    int rc = c->fb.http ? tether__tp_connect_http(c->tp, c->url) : tether__tp_connect(c->tp, c->url);
    if (rc != TETHER_OK) {
        /* except those before any attempt existed (out of memory): no on_closed
         * follows, so the attempt fails here, and is retried as usual */
        char detail[256];
        snprintf(detail, sizeof detail, "%s", tether_errmsg());
        after_close(c, rc, 0, 0, detail, tether__now_ms(), NULL);
    }
}

void tether__client_attempt_locked(tether_client *c)
{
    attempt(c);
}

int tether__client_reset_session_locked(tether_client *c)
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
    rc = tether__client_make_engine(c, &rec);
    if (rc != TETHER_OK) {
        return rc;
    }
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
    tether__fb_event fe = {error, http_status, proxy_status, c->live_since != 0, c->conn_acked,
                           strncmp(c->url, "wss:", 4) == 0};

    c->conn = NULL;
    tether__engine_disconnect(c->engine);
    if (!c->stopping && tether__client_probe_keep_locked(c)) {
        /* a probe's HELLO is out: it displaced this connection on the server
         * (or this one failed meanwhile); the session waits for its outcome */
        char d[320];
        snprintf(d, sizeof d, "%.200s; the WebSocket probe's answer is awaited", detail);
        report_ex(c, TETHER_STATE_DISCONNECTED, error, http_status, code, 0, 0, d, proxy_status,
                  retry_after);
        c->live_since = 0;
        c->phase = PH_ATTEMPT;
        return;
    }
    tether__client_probe_abandon_locked(c);
    /* reported with the carriage that failed; the choice of the next one follows */
    report_ex(c, TETHER_STATE_DISCONNECTED, error, http_status, code, 0, 0, detail, proxy_status,
              retry_after);
    int fb = c->stopping ? TETHER__FB_SAME : tether__fb_after_close(&c->fb, &fe, now);
    tether__client_verdict_save_locked(c);
    if (c->stopping) {
        c->phase = PH_STOPPED;
        pthread_cond_broadcast(&c->cond);
        return;
    }
    if (fb == TETHER__FB_SWITCHED) {
        /* another carriage may pass where this one did not: try it at once */
        c->live_since = 0;
        c->phase = PH_WAITING;
        atomic_store(&c->transport_now,
                     c->fb.http ? TETHER_TRANSPORT_HTTP : TETHER_TRANSPORT_WEBSOCKET);
        report_ex(c, TETHER_STATE_RECONNECTING, error, http_status, code, 0, 0, c->fb.why,
                  proxy_status, retry_after);
        tether__tp_timer(c->tp, 0);
        return;
    }
    if (fb == TETHER__FB_PERMANENT && !c->cfg.retry_permanent) {
        c->phase = PH_STOPPED;
        report_ex(c, TETHER_STATE_STOPPED, error, http_status, code, 0, 0, detail, proxy_status,
                  retry_after);
        return;
    }
    if (error == TETHER_EMISMATCH && c->cfg.mismatch_policy == TETHER_MISMATCH_RESET) {
        int rc = tether__client_reset_session_locked(c);
        if (rc != TETHER_OK) {
            c->phase = PH_STOPPED;
            report(c, TETHER_STATE_STOPPED, rc, 0, 0, 0, 0, tether_errmsg());
            return;
        }
        c->phase = PH_WAITING;
        tether__tp_timer(c->tp, 0);
        return;
    }
    if (error == TETHER_EMISMATCH || error == TETHER_EDISPLACED ||
        (permanent(error, http_status) && !c->cfg.retry_permanent)) {
        c->phase = PH_STOPPED;
        c->stopped_for_auth = error == TETHER_EPROXY_AUTH;
        report_ex(c, TETHER_STATE_STOPPED, error, http_status, code, 0, 0,
                  error == TETHER_EMISMATCH
                      ? "session state mismatch: call tether_client_reset_session() to continue"
                  : error == TETHER_EPROXY_AUTH
                      ? "the proxy wants credentials: call tether_client_set_proxy_credentials()"
                  : error == TETHER_EDISPLACED
                      ? "another connection of this session took over: this client stops"
                      : detail,
                  proxy_status, retry_after);
        return;
    }
    if (c->live_since && now - c->live_since >= c->cfg.backoff_reset_ms) {
        tether__backoff_reset(&c->backoff);
    }
    if (!c->live_since) {
        /* several urls: an attempt that failed moves on to the next; a
         * connection that was welcomed retries its own url first (a dead
         * server then fails that attempt, and the next url follows) */
        tether__client_next_url_locked(c);
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

/* Closes the connection for error once the engine's queued frames are written
 * (link.h); the engine keeps the reason until on_closed reports it. */
static void close_soon(tether_client *c, int error, uint32_t code, const char *detail)
{
    tether__engine_close(c->engine, error, code, detail);
    if (c->conn) {
        tether__conn_want_write(c->conn);
    }
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (tether__client_probe_open_locked(c, conn)) {
        tether__client_leave(c);
        return;
    }
    tether__tp_timer_cancel(c->tp);
    c->conn = conn;
    c->welcome_deadline = now + c->cfg.welcome_timeout_ms;
    if (tether__engine_connect(c->engine, now) != TETHER_OK) {
        close_soon(c, TETHER_ENOMEM, TETHER__NO_BYE, "cannot queue HELLO");
    }
    tether__conn_want_write(conn);
    tether__link_arm(c->engine, conn, now, c->welcome_deadline);
    tether__client_leave(c);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    tether__engine_event ev;

    lock_svc(c);
    int pr = tether__client_probe_message_locked(c, conn, buf, len, err, now);
    if (pr == 1) {
        tether__client_leave(c);
        return;
    }
    if (pr == 2) {
        /* the carriage changed under a live session: said as RECONNECTING */
        report(c, TETHER_STATE_RECONNECTING, TETHER_OK, 0, 0, 0, 0, c->fb.why);
    }
    if (conn != c->conn || tether__engine_close_event(c->engine, NULL)) {
        tether__client_leave(c);
        return;
    }
    if (err) {
        char d[160];
        snprintf(d, sizeof d, "the server sent an unacceptable message: %s",
                 tether_strerror(err));
        close_soon(c, err, tether__close_code(err), d);
        tether__client_leave(c);
        return;
    }
    tether__engine_on_frame(c->engine, buf, len, now, &ev);
    if (ev.welcomed) {
        tether__stat_add(&c->stats, TETHER__ST_CONNECTS, 1);
        c->live_since = now;
        c->welcome_deadline = UINT64_MAX;
        tether__fb_welcomed(&c->fb);
        tether__client_verdict_save_locked(c);
        report(c, TETHER_STATE_CONNECTED, TETHER_OK, 0, 0, 0, ev.resumed,
               c->fb.http ? (ev.resumed ? "session resumed over the HTTP carriage"
                                        : "new session over the HTTP carriage")
                          : (ev.resumed ? "session resumed" : "new session"));
        tether__client_probe_arm_locked(c, now);
    }
    if (ev.close || tether__engine_want_write(c->engine, now)) {
        tether__conn_want_write(conn);
    }
    if (c->conn) {
        tether__link_arm(c->engine, conn, now, c->welcome_deadline);
    }
    tether__client_leave(c);
}

static void on_writable(void *owner, tether__conn *conn)
{
    tether_client *c = owner;
    lock_svc(c);
    if (tether__client_probe_writable_locked(c, conn)) {
        tether__client_leave(c);
        return;
    }
    if (conn == c->conn) {
        uint64_t now = tether__now_ms();
        tether__link_pump_engine(c->engine, conn, &c->out, now);
        /* writing may have committed the receive cursor (recv_group) and so
           started the ACK delay: its deadline needs the timer now, or an idle
           client would acknowledge only at its next ping */
        if (c->conn) {
            tether__link_arm(c->engine, conn, now, c->welcome_deadline);
        }
    }
    tether__client_leave(c);
}

static void on_closed(void *owner, tether__conn *conn, const tether__tp_close *why)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    tether__engine_event ev;
    lock_svc(c);
    if (tether__client_probe_closed_locked(c, conn, why) ||
        (conn != c->conn && c->conn != NULL)) {
        tether__client_leave(c);
        return;
    }
    tether__tp_timer_cancel(c->tp);
    if (c->conn && tether__engine_close_event(c->engine, &ev)) {
        /* we chose to close: the engine's reason stands */
        char detail[256];
        int error = tether__close_client_error(&ev);
        snprintf(detail, sizeof detail, "%s", ev.detail[0] ? ev.detail : tether_strerror(error));
        after_close(c, error, 0, (int)ev.peer_code, detail, now, NULL);
    } else if (!c->conn && why->error == TETHER_EPEER_CLOSED) {
        /* the attempt ended before the upgrade */
        after_close(c, TETHER_ECONNECT, why->http_status, 0, why->detail, now, why);
    } else {
        after_close(c, why->error, why->http_status, 0, why->detail, now, why);
    }
    tether__client_leave(c);
}

static void on_wake(void *owner)
{
    tether_client *c = owner;
    uint64_t now = tether__now_ms();
    lock_svc(c);
    if (c->stopping) {
        tether__client_probe_abandon_locked(c);
        if (c->conn && !tether__engine_close_event(c->engine, NULL)) {
            /* a live session says goodbye; an unwelcomed connection just closes */
            close_soon(c, TETHER_ECLOSED,
                       tether__engine_live(c->engine) ? TETHER_REJECT_NONE : TETHER__NO_BYE,
                       "client shutting down");
        } else if (!c->conn && c->phase != PH_STOPPED) {
            tether__tp_timer_cancel(c->tp);
            c->phase = PH_STOPPED;
            pthread_cond_broadcast(&c->cond);
        }
    } else if (c->phase == PH_IDLE) {
        attempt(c);
    } else if (c->conn && tether__engine_live(c->engine) &&
               tether__engine_want_write(c->engine, now)) {
        tether__conn_want_write(c->conn);
    }
    if (!c->stopping) {
        bp_update(c);
    }
    tether__client_leave(c);
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
        } else if (c->phase == PH_ATTEMPT && !c->stopping) {
            tether__client_probe_start_locked(c, now); /* the verdict's time is up */
        }
    } else if (tether__client_probe_timer_locked(c, conn, now)) {
        /* the probe's WELCOME did not come in time */
    } else if (conn == c->conn) {
        if (now >= c->welcome_deadline && !tether__engine_close_event(c->engine, NULL)) {
            char d[160];
            snprintf(d, sizeof d,
                     c->fb.http ? "the HTTP carriage's open got no answer within %u ms"
                                : "the upgrade succeeded but no WELCOME arrived within %u ms: "
                                  "frames are blocked on the path",
                     c->cfg.welcome_timeout_ms);
            /* at once: a blocked path may never let queued frames drain */
            tether__engine_close(c->engine, TETHER_ESTALLED, TETHER__NO_BYE, d);
            tether__conn_close(conn);
        } else {
            tether__engine_tick(c->engine, now);
            if (tether__engine_want_write(c->engine, now)) {
                tether__conn_want_write(conn);
            }
            tether__link_arm(c->engine, conn, now, c->welcome_deadline);
        }
    }
    tether__client_leave(c);
}

const tether__tp_cb tether__client_tp_cb = {on_open, on_message, on_writable, on_closed,
                                            on_wake, on_timer, NULL};

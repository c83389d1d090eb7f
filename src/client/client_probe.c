/*
 * The background WebSocket probe (issue 10: "probe WebSocket again in the
 * background and switch back only after a full HELLO->WELCOME round trip").
 *
 * While the session lives on the HTTP carriage in AUTO, the transport timer
 * fires when the verdict's time is up (engine/fallback.c) and a second
 * connection, over WebSocket, is opened beside the HTTP one. It sends the
 * session's HELLO as it stands at that moment; the HTTP connection carries on
 * meanwhile. Then:
 *
 * - WELCOME on the probe: the server made the probe the session's connection
 *   when it took that HELLO (the last connection to HELLO owns the session),
 *   so what the HTTP connection still carries is stale. The engine ends the
 *   HTTP connection as a disconnect does (its unacked messages are due
 *   again), adopts the probe, and takes the WELCOME there: it resends from
 *   the server's cursor, and what the server resends from the HELLO's cursor
 *   that already arrived over HTTP is a duplicate, acknowledged again and
 *   dropped. Nothing is lost (the outbox keeps every message until its ACK),
 *   nothing is delivered twice (the cursor), nothing is reordered (one
 *   connection at a time carries the session from the WELCOME on). The HTTP
 *   connection is closed without BYE.
 * - No WELCOME within welcome_timeout_ms, a refusal, or a failed attempt: the
 *   probe is closed, the session stays on HTTP, and the next probe waits
 *   twice as long (at most 12 times fallback_memory_ms); the verdict in the
 *   store is extended. If the probe's HELLO reached the server, the server
 *   displaced the HTTP connection (BYE DISPLACED): the session then waits for
 *   the probe's outcome (PROBE_ORPHAN) instead of stopping, and a failed probe
 *   is followed at once by a new HTTP attempt.
 *
 * Everything here runs on the service thread with c->lock held.
 */
#include "client_int.h"

void tether__client_probe_arm_locked(tether_client *c, uint64_t now)
{
    if (c->probe_state != PROBE_NONE || c->cfg.transport != TETHER_TRANSPORT_AUTO || !c->fb.http ||
        c->fb.auth_try || !c->conn || c->stopping) {
        return;
    }
    uint64_t at = c->fb.http_until;
    tether__tp_timer(c->tp, at > now ? at - now : 1);
}

static void probe_reset(tether_client *c)
{
    c->probe = NULL;
    c->probe_state = PROBE_NONE;
}

/* Closes the probe's connection; its closed() is then ignored. */
static void close_probe(tether_client *c)
{
    tether__conn *p = c->probe;
    c->probe_closing = p;
    c->probe = NULL;
    tether__conn_timer_cancel(p);
    tether__conn_close(p);
}

/* The probe failed: HTTP stays, the next probe waits longer; when the HTTP
 * connection was displaced meanwhile, a new HTTP attempt starts now. */
static void probe_failed(tether_client *c, uint64_t now, const char *why)
{
    int orphan = c->probe_state == PROBE_ORPHAN;
    if (c->probe) {
        close_probe(c);
    }
    probe_reset(c);
    tether__fb_probe_lost(&c->fb, now, why);
    tether__client_verdict_save_locked(c);
    if (c->stopping) {
        return;
    }
    if (orphan) {
        tether__client_attempt_locked(c);
    } else {
        tether__client_probe_arm_locked(c, now);
    }
}

void tether__client_probe_start_locked(tether_client *c, uint64_t now)
{
    if (c->probe_state != PROBE_NONE || !c->conn || !tether__engine_live(c->engine) ||
        c->stopping || !tether__fb_probe_due(&c->fb, now)) {
        tether__client_probe_arm_locked(c, now);
        return;
    }
    if (c->proxy_dirty) {
        tether__tp_set_proxy(c->tp, &c->proxy);
        c->proxy_dirty = 0;
    }
    c->probe_state = PROBE_ATTEMPT;
    int rc = tether__tp_connect(c->tp, c->url);
    if (rc != TETHER_OK) {
        probe_failed(c, now, tether_errmsg());
    }
}

int tether__client_probe_open_locked(tether_client *c, tether__conn *conn)
{
    if ((c->probe_state != PROBE_ATTEMPT && c->probe_state != PROBE_DROPPED) ||
        tether__conn_is_http(conn)) {
        return 0;
    }
    if (c->probe_state == PROBE_DROPPED) {
        c->probe = conn;
        close_probe(c);
        probe_reset(c);
        return 1;
    }
    c->probe = conn;
    c->probe_state = PROBE_OPEN;
    tether__conn_timer(conn, c->cfg.welcome_timeout_ms);
    tether__conn_want_write(conn);
    return 1;
}

int tether__client_probe_writable_locked(tether_client *c, tether__conn *conn)
{
    if (!c->probe || conn != c->probe) {
        return 0;
    }
    if (c->probe_state == PROBE_OPEN) {
        int rc = tether__engine_hello_frame(c->engine, &c->probe_out, &c->probe_cursor);
        if (rc == TETHER_OK) {
            rc = tether__conn_write(conn, &c->probe_out);
        }
        if (rc != TETHER_OK) {
            probe_failed(c, tether__now_ms(), "cannot write its HELLO");
            return 1;
        }
        c->probe_state = PROBE_HELLO;
    }
    return 1;
}

int tether__client_probe_message_locked(tether_client *c, tether__conn *conn, const uint8_t *buf,
                                        size_t len, int err, uint64_t now)
{
    if (!c->probe || conn != c->probe) {
        return 0;
    }
    if ((c->probe_state != PROBE_HELLO && c->probe_state != PROBE_ORPHAN) || err ||
        !tether__engine_is_welcome(c->engine, buf, len)) {
        probe_failed(c, now, err ? tether_strerror(err) : "its first frame was not WELCOME");
        return 1;
    }
    /* the WELCOME: the session moves onto the probe */
    tether__conn *old = c->conn;
    tether__conn_timer_cancel(conn);
    if (tether__engine_adopt(c->engine, c->probe_cursor) != TETHER_OK) {
        probe_failed(c, now, "the session cannot adopt it");
        return 1;
    }
    c->conn = conn; /* first: the old connection's closed() is then ignored */
    probe_reset(c);
    if (old) {
        c->old_closing = old; /* its closed() is ignored even once c->conn is gone */
        tether__conn_close(old);
    }
    c->phase = PH_ATTEMPT;
    c->live_since = 0;
    c->conn_acked = 0;
    c->welcome_deadline = now + c->cfg.welcome_timeout_ms;
    tether__fb_probe_won(&c->fb);
    tether__client_verdict_save_locked(c);
    atomic_store(&c->transport_now, TETHER_TRANSPORT_WEBSOCKET);
    return 2;
}

int tether__client_probe_closed_locked(tether_client *c, tether__conn *conn,
                                       const tether__tp_close *why)
{
    if (conn && conn == c->probe_closing) {
        c->probe_closing = NULL;
        return 1;
    }
    if (conn && conn == c->old_closing) {
        c->old_closing = NULL;
        return 1;
    }
    if (c->probe_state == PROBE_NONE) {
        return 0;
    }
    if (c->probe ? conn != c->probe : (conn == c->conn || tether__conn_is_http(conn))) {
        return 0;
    }
    if (c->probe_state == PROBE_DROPPED) {
        probe_reset(c); /* the attempt failed before it opened */
        return 1;
    }
    c->probe = NULL; /* closed already */
    char d[200];
    snprintf(d, sizeof d, "%s: %.150s", tether_err_name(why->error), why->detail);
    probe_failed(c, tether__now_ms(), d);
    return 1;
}

int tether__client_probe_timer_locked(tether_client *c, tether__conn *conn, uint64_t now)
{
    if (!c->probe || conn != c->probe) {
        return 0;
    }
    char d[120];
    snprintf(d, sizeof d, "no WELCOME within %u ms: frames are blocked on the path",
             c->cfg.welcome_timeout_ms);
    probe_failed(c, now, d);
    return 1;
}

void tether__client_probe_abandon_locked(tether_client *c)
{
    switch (c->probe_state) {
    case PROBE_ATTEMPT:
        c->probe_state = PROBE_DROPPED; /* no handle yet: closed when it opens or fails */
        break;
    case PROBE_OPEN:
    case PROBE_HELLO:
    case PROBE_ORPHAN:
        close_probe(c);
        probe_reset(c);
        break;
    default:
        break;
    }
}

int tether__client_probe_keep_locked(tether_client *c)
{
    if (c->probe_state != PROBE_HELLO) {
        return 0;
    }
    c->probe_state = PROBE_ORPHAN;
    return 1;
}

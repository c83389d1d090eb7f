/*
 * The server's connections, on the service thread: admission at the HTTP
 * upgrade, the handshake (the decision is engine/handshake.c's; this file
 * looks sessions up, stores new ones and writes what it is told), frames in
 * and out, closes and timers. Every function here runs with s->lock held.
 */
#include "server_int.h"
#include "common/alloc.h"

/* ---- connections (service thread, lock held) ---- */

static void detach(tether_server *s, srv_session *ss, int error)
{
    srv_conn *old = ss->conn;
    if (!old) {
        return;
    }
    tether__engine_disconnect(ss->engine);
    ss->conn = NULL;
    old->sess = NULL;
    s->connected--;
    tether__srv_admin_offline(s, ss);
    if (old->opened && s->cfg.cb.on_session_close) {
        s->cfg.cb.on_session_close(s, &ss->id, error, s->cfg.user);
    }
}

/* A newer connection of the session takes over: the older one is told so
 * with BYE(DISPLACED), written from its own handshake answer, and closes. */
static void displace(tether_server *s, srv_session *ss)
{
    srv_conn *old = ss->conn;
    detach(s, ss, TETHER_EDISPLACED);
    tether__hs_refuse(&old->hs, 1, TETHER_REJECT_DISPLACED, TETHER_EDISPLACED,
                      "a newer connection of this session took over");
    tether__conn_want_write(old->conn);
}

static int hs_lookup(void *arg, const uint8_t id[16], tether__session_rec *rec)
{
    srv_session *ss = NULL;
    int rc = tether__srv_lookup(arg, id, &ss);
    if (rc == TETHER_OK) {
        *rec = *tether__engine_rec(ss->engine);
    }
    return rc;
}

static void hs_mismatch(void *arg, const tether_mismatch_info *info)
{
    tether_server *s = arg;
    if (s->cfg.cb.on_mismatch) {
        s->cfg.cb.on_mismatch(s, info, s->cfg.user);
    }
}

/* Carries out the handshake module's decision: store a new session, displace
 * an older connection, hand the HELLO to the session's engine; or write the
 * refusal and close. */
static void handle_hello(tether_server *s, srv_conn *sc, const tether__hello *h, uint64_t now)
{
    uint8_t hash[32];
    tether__hs_server env;
    srv_session *known = tether__srv_find(s, h->session_id);
    srv_session *ss = NULL;
    int rc;

    memset(&env, 0, sizeof env);
    env.stopping = s->stopping;
    env.at_cap = s->connected >= s->cfg.max_sessions;
    env.connected = known && known->conn;
    env.hash_rc = tether__sha256(h->token, sizeof h->token, hash);
    env.token_hash = hash;
    env.max_message = s->ecfg.max_message;
    env.window = s->ecfg.window;
    env.lookup = hs_lookup;
    env.on_mismatch = hs_mismatch;
    env.arg = s;
    tether__hs_decide(h, &env, &sc->hs);
    if (sc->hs.verdict == TETHER__HS_CREATE) {
        rc = s->store->ops->session_put(s->store, &sc->hs.rec);
        TETHER__KILLPOINT("server.after_session_create");
        if (rc == TETHER_OK) {
            rc = tether__srv_add_session(s, &sc->hs.rec, &ss);
        }
        if (rc != TETHER_OK) {
            tether__hs_refuse(&sc->hs, 0, TETHER_REJECT_STORE, rc, "the server's store failed");
        }
    } else if (sc->hs.verdict == TETHER__HS_ACCEPT) {
        ss = tether__srv_find(s, h->session_id); /* the lookup loaded it */
    }
    if (!ss) {
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__conn_want_write(sc->conn); /* the refusal, then close */
        return;
    }
    if (sc->hs.displace && ss->conn) {
        displace(s, ss);
    }
    int resumed = tether__engine_rec(ss->engine)->established;
    tether__engine_event ev;
    rc = tether__engine_accept(ss->engine, h, now, &ev);
    ss->conn = sc;
    sc->sess = ss;
    s->connected++;
    tether__conn_timer_cancel(sc->conn);
    tether__conn_want_write(sc->conn);
    if (rc != TETHER_OK) {
        /* a mismatch or a store failure closed it already; anything else closes here */
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__engine_close(ss->engine, rc, TETHER__NO_BYE, "cannot accept the session");
        return;
    }
    sc->opened = 1;
    tether__srv_stat(s, TETHER__ST_CONNECTS, 1);
    if (s->cfg.cb.on_session_open) {
        s->cfg.cb.on_session_open(s, &ss->id, resumed, s->cfg.user);
    }
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = tether__calloc(1, sizeof *sc);
    if (!sc) {
        tether__conn_close(conn);
        return;
    }
    lock(s);
    sc->conn = conn;
    sc->hello_deadline = tether__now_ms() + s->cfg.hello_timeout_ms;
    sc->pending = 1;
    s->pending++;
    tether__conn_set_user(conn, sc);
    tether__conn_timer(conn, s->cfg.hello_timeout_ms);
    unlock(s);
}

/* A frame on a connection with a session: its engine handles it. */
static void session_message(srv_conn *sc, const uint8_t *buf, size_t len, int err, uint64_t now)
{
    tether__engine *e = sc->sess->engine;
    tether__engine_event ev;
    if (err) {
        tether__engine_close(e, err, tether__close_code(err), tether_strerror(err));
    } else {
        tether__engine_on_frame(e, buf, len, now, &ev);
    }
    if (tether__engine_close_event(e, NULL) || tether__engine_want_write(e, now)) {
        tether__conn_want_write(sc->conn);
    }
    tether__link_arm(e, sc->conn, now, UINT64_MAX);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    uint64_t now = tether__now_ms();
    tether__hello h;

    if (!sc) {
        return;
    }
    lock(s);
    if (sc->sess) {
        if (!tether__engine_close_event(sc->sess->engine, NULL)) {
            session_message(sc, buf, len, err, now);
        }
    } else if (sc->hs.nframes == 0) {
        /* no session yet: the first frame must be HELLO */
        if (sc->pending) {
            sc->pending = 0;
            s->pending--;
        }
        if (tether__hs_first(&s->dec, buf, len, err, &h, &sc->hs)) {
            handle_hello(s, sc, &h, now);
        } else {
            tether__srv_stat(s, TETHER__ST_REFUSED, 1);
            tether__conn_want_write(conn);
        }
    }
    unlock(s);
}

static void on_writable(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (sc->sess) {
        tether__link_pump_engine(sc->sess->engine, conn, &s->out, tether__now_ms());
    } else if (sc->hs.nframes > 0) {
        tether__link_pump_hs(&sc->hs, conn, &s->out);
    }
    unlock(s);
}

static void on_closed(void *owner, tether__conn *conn, const tether__tp_close *why)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (sc->pending) {
        sc->pending = 0;
        s->pending--;
    }
    if (sc->sess && sc->sess->conn == sc) {
        /* when we chose to close, our reason stands (TETHER_OK for a BYE(0) from the client) */
        tether__engine_event ev;
        int error = why->error;
        if (tether__engine_close_event(sc->sess->engine, &ev)) {
            error = tether__close_server_error(&ev);
        }
        detach(s, sc->sess, error);
    }
    tether__conn_set_user(conn, NULL);
    tether__free(sc);
    unlock(s);
}

static void on_wake(void *owner)
{
    tether_server *s = owner;
    uint64_t now = tether__now_ms();
    lock(s);
    srv_session *ss = s->dirty;
    s->dirty = NULL;
    while (ss) {
        srv_session *next = ss->next_dirty;
        ss->dirty = 0;
        ss->next_dirty = NULL;
        tether__srv_bp_update(s, ss);
        if (ss->conn && (tether__engine_close_event(ss->engine, NULL) ||
                         tether__engine_want_write(ss->engine, now))) {
            tether__conn_want_write(ss->conn->conn);
        }
        ss = next;
    }
    unlock(s);
}

static void on_timer(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    uint64_t now = tether__now_ms();
    if (!conn) {
        lock(s);
        tether__srv_admin_timer(s); /* the transport-wide timer is the expiry sweep's */
        unlock(s);
        return;
    }
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (!sc->sess) {
        if (now >= sc->hello_deadline && sc->hs.nframes == 0) {
            /* no HELLO in time: close at once, without a frame (PROTOCOL.md section 10) */
            tether__conn_close(conn);
        }
    } else {
        tether__engine_tick(sc->sess->engine, now);
        if (tether__engine_want_write(sc->sess->engine, now)) {
            tether__conn_want_write(conn);
        }
        tether__link_arm(sc->sess->engine, conn, now, UINT64_MAX);
    }
    unlock(s);
}

/* ---- admission (service thread) ---- */

struct tether_handshake {
    tether__tp_hs *t;         /* the transport's request */
    char arena[4096];         /* copies of the header values handed out */
    size_t used;              /* bytes of arena in use */
    char path[1024];          /* the request path */
    char peer[64];            /* the peer's address */
    char reply[512];          /* extra refusal headers, "Name: value\r\n" lines */
    int nreply;               /* headers in reply */
};

const char *tether_handshake_header(const tether_handshake *hs, const char *name)
{
    tether_handshake *h = (tether_handshake *)hs;
    if (!h || !name || !*name || h->used + 2 >= sizeof h->arena) {
        return NULL;
    }
    const char *v = tether__tp_hs_header(h->t, name, h->arena + h->used,
                                         sizeof h->arena - h->used);
    if (v) {
        h->used += strlen(v) + 1;
    }
    return v;
}

const char *tether_handshake_path(const tether_handshake *hs)
{
    return hs ? hs->path : "";
}

const char *tether_handshake_peer(const tether_handshake *hs)
{
    return hs ? hs->peer : "";
}

int tether_handshake_reply_header(tether_handshake *hs, const char *name, const char *value)
{
    if (!hs || !name || !value || !*name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") ||
        hs->nreply >= 4) {
        return tether__fail(TETHER_EINVAL, "bad header, or 4 headers already");
    }
    size_t n = strlen(hs->reply);
    int w = snprintf(hs->reply + n, sizeof hs->reply - n, "%s: %s\r\n", name, value);
    if (w < 0 || (size_t)w >= sizeof hs->reply - n) {
        hs->reply[n] = '\0';
        return tether__fail(TETHER_EINVAL, "no room for the header");
    }
    hs->nreply++;
    return TETHER_OK;
}

/* The transport's admit callback: Origin allow-list, handshake cap, the app's hook. */
static int admit(void *owner, tether__tp_hs *t, char *reply, size_t reply_len)
{
    tether_server *s = owner;
    tether_handshake *hs = tether__calloc(1, sizeof *hs);
    int st = 0;

    if (!hs) {
        return 503;
    }
    hs->t = t;
    tether__tp_hs_path(t, hs->path, sizeof hs->path);
    tether__tp_hs_peer(t, hs->peer, sizeof hs->peer);
    lock(s);
    if (s->stopping) {
        st = 503;
    } else if (s->cfg.allowed_origins) {
        const char *origin = tether_handshake_header(hs, "Origin");
        st = 403;
        for (const char *const *o = s->cfg.allowed_origins; origin && *o; o++) {
            if (strcasecmp(*o, origin) == 0) {
                st = 0;
                break;
            }
        }
    }
    if (!st && s->pending >= s->cfg.max_pending_handshakes) {
        /* a slow-loris peer cannot hold more than the cap; tell clients when to come back */
        st = 503;
        snprintf(reply, reply_len, "Retry-After: %u\r\n", s->cfg.busy_retry_after_s);
    } else if (!st && s->cfg.cb.on_handshake) {
        st = s->cfg.cb.on_handshake(s, hs, s->cfg.user);
        if (st && (st < 400 || st > 599)) {
            st = 403;
        }
        if (st) {
            snprintf(reply, reply_len, "%s", hs->reply);
        }
    }
    unlock(s);
    tether__free(hs);
    if (st) {
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
    }
    return st;
}

const tether__tp_cb tether__server_tp_cb = {on_open, on_message, on_writable, on_closed,
                                            on_wake, on_timer,   admit};

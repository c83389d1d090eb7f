/*
 * The server's connections, on the service thread: admission at the HTTP
 * upgrade, HELLO (session lookup, token check, limits), frames in and out,
 * closes and timers. Every function here runs with s->lock held.
 */
#include "server_int.h"

/* ---- connections (service thread, lock held) ---- */

static void close_conn(srv_conn *sc, int error)
{
    if (!sc->closing) {
        sc->closing = 1;
        sc->error = error;
    }
    tether__conn_want_write(sc->conn);
}

/* Queues a frame for a connection that has no session yet. */
static int queue_pre(srv_conn *sc, int (*encode)(tether__buf *, uint32_t, const char *),
                     uint32_t code, const char *reason)
{
    if (sc->npre >= 2) {
        return TETHER_EINVAL;
    }
    tether__buf *b = &sc->pre[sc->npre];
    int rc = encode(b, code, reason);
    if (rc == TETHER_OK) {
        sc->npre++;
    }
    return rc;
}

static void reject(tether_server *s, srv_conn *sc, uint32_t code, int error, const char *reason)
{
    queue_pre(sc, tether__encode_reject, code, reason);
    close_conn(sc, error);
}

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
    if (old->opened && s->cfg.cb.on_session_close) {
        s->cfg.cb.on_session_close(s, &ss->id, error, s->cfg.user);
    }
}

static void handle_hello(tether_server *s, srv_conn *sc, const tether__hello *h, uint64_t now)
{
    srv_session *ss = NULL;
    uint8_t hash[32];
    tether__engine_event ev;
    int rc;

    if (h->version != TETHER__PROTO_VERSION) {
        reject(s, sc, TETHER_REJECT_VERSION, TETHER_EVERSION, "unsupported protocol version");
        return;
    }
    if (s->stopping) {
        reject(s, sc, TETHER_REJECT_SHUTDOWN, TETHER_ECLOSED, "the server is shutting down");
        return;
    }
    srv_session *known = tether__srv_find(s, h->session_id);
    if (s->connected >= s->cfg.max_sessions && !(known && known->conn)) {
        /* a session coming back on a new connection replaces its old one */
        reject(s, sc, TETHER_REJECT_LIMIT, TETHER_ELIMIT, "too many sessions");
        return;
    }
    if (tether__sha256(h->token, sizeof h->token, hash) != TETHER_OK) {
        reject(s, sc, TETHER_REJECT_STORE, TETHER_ENOMEM, "server error");
        return;
    }
    rc = tether__srv_lookup(s, h->session_id, &ss);
    if (rc == TETHER_ENOTFOUND) {
        if (h->resume) {
            /* the client was welcomed before, but we have no record: never paper over it */
            tether_mismatch_info mi;
            tether__welcome w;
            memset(&mi, 0, sizeof mi);
            memcpy(mi.session.bytes, h->session_id, 16);
            mi.peer_knows_session = 1;
            mi.peer_out_last = h->out_last;
            mi.peer_recv_cursor = h->recv_cursor;
            mi.unknown_received = 0;
            if (s->cfg.cb.on_mismatch) {
                s->cfg.cb.on_mismatch(s, &mi, s->cfg.user);
            }
            memset(&w, 0, sizeof w);
            memcpy(w.session_id, h->session_id, 16);
            w.max_message = s->ecfg.max_message;
            w.window = s->ecfg.window;
            if (tether__encode_welcome(&sc->pre[0], &w) == TETHER_OK) {
                sc->npre = 1;
            }
            queue_pre(sc, tether__encode_bye, TETHER_REJECT_MISMATCH,
                      "the server has no record of this session");
            close_conn(sc, TETHER_EMISMATCH);
            return;
        }
        tether__session_rec rec;
        memset(&rec, 0, sizeof rec);
        memcpy(rec.id, h->session_id, 16);
        memcpy(rec.token, hash, 32);
        rc = s->store->ops->session_put(s->store, &rec);
        TETHER__KILLPOINT("server.after_session_create");
        if (rc == TETHER_OK) {
            rc = tether__srv_add_session(s, &rec, &ss);
        }
    }
    if (rc != TETHER_OK) {
        reject(s, sc, TETHER_REJECT_STORE, rc, "the server's store failed");
        return;
    }
    if (tether__ct_memcmp(tether__engine_rec(ss->engine)->token, hash, 32) != 0) {
        reject(s, sc, TETHER_REJECT_TOKEN, TETHER_ETOKEN, "wrong resume token");
        return;
    }
    if (ss->conn) {
        /* the client came back before we noticed its old connection die */
        srv_conn *old = ss->conn;
        detach(s, ss, TETHER_EPEER_CLOSED);
        close_conn(old, TETHER_EPEER_CLOSED);
    }
    int resumed = tether__engine_rec(ss->engine)->established;
    memset(&ev, 0, sizeof ev);
    rc = tether__engine_accept(ss->engine, h, now, &ev);
    ss->conn = sc;
    sc->sess = ss;
    s->connected++;
    tether__conn_timer_cancel(sc->conn);
    if (ev.close || rc != TETHER_OK) {
        close_conn(sc, ev.error ? ev.error : rc);
        return;
    }
    sc->opened = 1;
    if (s->cfg.cb.on_session_open) {
        s->cfg.cb.on_session_open(s, &ss->id, resumed, s->cfg.user);
    }
    tether__conn_want_write(sc->conn);
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = calloc(1, sizeof *sc);
    if (!sc) {
        tether__conn_close(conn);
        return;
    }
    lock(s);
    sc->conn = conn;
    tether__buf_init(&sc->pre[0], tether__tp_headroom());
    tether__buf_init(&sc->pre[1], tether__tp_headroom());
    sc->hello_deadline = tether__now_ms() + s->cfg.hello_timeout_ms;
    sc->pending = 1;
    s->pending++;
    tether__conn_set_user(conn, sc);
    tether__conn_timer(conn, s->cfg.hello_timeout_ms);
    unlock(s);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    uint64_t now = tether__now_ms();
    tether__frame f;
    tether__engine_event ev;

    if (!sc) {
        return;
    }
    lock(s);
    if (sc->closing) {
        unlock(s);
        return;
    }
    if (sc->sess) {
        tether__engine *e = sc->sess->engine;
        if (err) {
            tether__engine_bye(e, tether__link_close_code(err), tether_strerror(err));
            close_conn(sc, err);
        } else {
            memset(&ev, 0, sizeof ev);
            tether__engine_on_frame(e, buf, len, now, &ev);
            if (ev.close) {
                int graceful = ev.error == TETHER_EPEER_CLOSED && ev.peer_code == TETHER_REJECT_NONE;
                close_conn(sc, graceful ? TETHER_OK : ev.error);
            } else if (tether__engine_want_write(e, now)) {
                tether__conn_want_write(conn);
            }
            tether__link_arm(e, conn, now, UINT64_MAX);
        }
        unlock(s);
        return;
    }
    /* no session yet: the first frame must be HELLO */
    if (sc->pending) {
        sc->pending = 0;
        s->pending--;
    }
    int rc = err ? err : tether__decode(&s->dec, buf, len, &f);
    if (rc != TETHER_OK) {
        queue_pre(sc, tether__encode_bye, tether__link_close_code(rc), tether_strerror(rc));
        close_conn(sc, rc);
    } else if (f.type != TETHER__F_HELLO) {
        queue_pre(sc, tether__encode_bye, TETHER_REJECT_PROTOCOL, "the first frame must be HELLO");
        close_conn(sc, TETHER_EPROTO);
    } else {
        handle_hello(s, sc, &f.u.hello, now);
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
    if (sc->ipre < sc->npre) {
        if (tether__conn_write(conn, &sc->pre[sc->ipre++]) != TETHER_OK) {
            tether__conn_close(conn);
        } else {
            tether__conn_want_write(conn);
        }
    } else if (sc->sess) {
        tether__engine_event why;
        if (tether__link_pump(sc->sess->engine, conn, &s->out, tether__now_ms(), sc->closing,
                              &why) != TETHER_OK &&
            !sc->closing) {
            sc->closing = 1;
            sc->error = why.error;
        }
    } else if (sc->closing) {
        tether__conn_close(conn);
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
        detach(s, sc->sess, sc->closing ? sc->error : why->error);
    }
    tether__conn_set_user(conn, NULL);
    tether__buf_free(&sc->pre[0]);
    tether__buf_free(&sc->pre[1]);
    free(sc);
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
        if (ss->conn && (ss->conn->closing || tether__engine_want_write(ss->engine, now))) {
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
        return;
    }
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (!sc->sess) {
        if (now >= sc->hello_deadline && !sc->closing) {
            sc->closing = 1;
            sc->error = TETHER_ETIMEDOUT;
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
    tether_handshake *hs = calloc(1, sizeof *hs);
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
    free(hs);
    return st;
}

const tether__tp_cb tether__server_tp_cb = {on_open, on_message, on_writable, on_closed,
                                            on_wake, on_timer,   admit};

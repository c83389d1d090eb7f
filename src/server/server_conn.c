/*
 * The server's connections, on the service thread: admission at the HTTP
 * upgrade, the handshake (the decision is engine/handshake.c's; this file
 * looks sessions up, stores new ones and hands the HELLO to the session's
 * delivery thread), frames in (to the delivery threads) and out (the pump),
 * closes, and the timer wheel that holds every connection's deadline.
 * Nothing here waits for a busy session: its lock is only try-locked.
 */
#include <stddef.h>

#include "server_int.h"
#include "common/alloc.h"

#define CONN_OF(node) ((srv_conn *)((char *)(node) - offsetof(srv_conn, tw)))

/* ---- the timer wheel, driven by one transport timer ticking while armed ---- */

static void arm(tether_server *s, srv_conn *sc, uint64_t due)
{
    tether__tw_arm(&s->wheel, &sc->tw, due);
    if (!s->ticking) {
        s->ticking = 1;
        tether__tp_timer(s->tp, TICK_MS);
    }
}

/*
 * Everything the service thread does for a session: pump its connection when
 * writable, else give its engine the time and ask for a writable call when
 * it has something to write; re-arm its deadline; and hand a back-pressure
 * change to its delivery thread. When a delivery or API thread holds the
 * session, kick says so and the holder wakes us again when it lets go.
 */
static void touch(tether_server *s, srv_session *ss, int writable, uint64_t now)
{
    atomic_store(&ss->kick, 1);
    if (pthread_mutex_trylock(&ss->mu) != 0) {
        return;
    }
    atomic_store(&ss->kick, 0);
    srv_conn *sc = ss->conn;
    tether__engine *e = ss->engine;
    srv_work *post_commit = NULL;
    if (sc && ss->wconn == sc) {
        int pending; /* a writable call has been asked for */
        if (writable) {
            tether__link_pump_engine(e, sc->conn, &s->out, now);
            pending = tether__engine_close_event(e, NULL) || tether__engine_want_write(e, now);
        } else {
            tether__engine_tick(e, now);
            pending = tether__engine_close_event(e, NULL) || tether__engine_want_write(e, now);
            if (pending) {
                tether__conn_want_write(sc->conn);
            }
        }
        uint64_t due = tether__engine_deadline(e);
        /* recv_lazy: the ACK's deadline passed with deliveries not yet committed;
         * the commit is the delivery thread's (a store write never runs here) */
        int commit = !ss->commit_posted && tether__engine_recv_lazy_due(e, now);
        if (commit) {
            srv_work *w = tether__srv_work_new(W_COMMIT, NULL, NULL, 0);
            if (w) {
                ss->commit_posted = 1;
                post_commit = w;
            }
        }
        if ((pending || ss->commit_posted) && due <= now) {
            /* the ACK that is due goes out at the writable call, which re-arms;
             * re-arming it for the next tick instead touched every such session
             * 200 times a second while the service thread was behind, and so
             * fell further behind (docs/performance.md, "20,000 sessions") */
            due = now + WRITE_WAIT_MS;
        }
        if (due == UINT64_MAX) {
            tether__tw_disarm(&s->wheel, &sc->tw);
        } else {
            arm(s, sc, due);
        }
    }
    tether__bp probe = ss->bp;
    tether_backpressure_info bi[2];
    int bp = tether__bp_update(&probe, e, s->ecfg.window, s->cfg.outbox_max_messages,
                               s->cfg.outbox_max_bytes, bi);
    pthread_mutex_unlock(&ss->mu);
    if (post_commit) {
        tether__srv_post(s, ss, post_commit);
    }
    if (bp > 0) {
        srv_work *w = tether__srv_work_new(W_BP, NULL, NULL, 0);
        if (w) {
            tether__srv_post(s, ss, w);
        }
    }
}

static void fire(tether__tw_node *node, void *arg)
{
    tether_server *s = arg;
    srv_conn *sc = CONN_OF(node);
    uint64_t now = tether__now_ms();
    if (!sc->sess) {
        if (now >= sc->hello_deadline && !sc->hs) {
            /* no HELLO in time: close at once, without a frame (PROTOCOL.md section 10) */
            tether__conn_close(sc->conn);
        }
        return;
    }
    touch(s, sc->sess, 0, now);
    if (!sc->tw.armed && sc->sess->conn == sc && atomic_load(&sc->sess->kick)) {
        arm(s, sc, now + TICK_MS); /* the session was busy: look again next tick */
    }
}

static void on_timer(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    (void)conn; /* only the transport-wide timer is used */
    s->ticking = 0;
    tether__tw_advance(&s->wheel, tether__now_ms(), fire, s);
    if (tether__tw_count(&s->wheel) > 0 && !s->ticking) {
        s->ticking = 1;
        tether__tp_timer(s->tp, TICK_MS);
    }
}

/* ---- connections (service thread) ---- */

/* What the handshake's lookup found, kept for the rest of handle_hello. */
typedef struct hs_ctx {
    tether_server *s;  /* the server */
    srv_session *ss;   /* the session found (a reference), or NULL */
} hs_ctx;

static int hs_lookup(void *arg, const uint8_t id[16], tether__session_rec *rec)
{
    hs_ctx *x = arg;
    int rc = x->ss ? TETHER_OK : tether__srv_get(x->s, id, &x->ss);
    if (rc == TETHER_OK) {
        tether__srv_lock(x->ss);
        *rec = *tether__engine_rec(x->ss->engine);
        tether__srv_unlock(x->s, x->ss);
    }
    return rc;
}

static void hs_mismatch(void *arg, const tether_mismatch_info *info)
{
    hs_ctx *x = arg;
    if (x->s->cfg.cb.on_mismatch) {
        x->s->cfg.cb.on_mismatch(x->s, info, x->s->cfg.user);
    }
}

/* Keeps a refusal for the connection to write, then close (link.h); when it
 * cannot be kept (out of memory), the connection closes at once without it. */
static void keep_refusal(srv_conn *sc, const tether__hs_out *out)
{
    if (!sc->hs) {
        sc->hs = tether__malloc(sizeof *sc->hs);
    }
    if (!sc->hs) {
        tether__conn_close(sc->conn);
        return;
    }
    *sc->hs = *out;
    tether__conn_want_write(sc->conn);
}

/* A newer connection of the session takes over: the older one is told so
 * with BYE(DISPLACED), written from its own handshake answer, and closes;
 * its session hears of it through its delivery thread. */
static void displace(tether_server *s, srv_session *ss)
{
    srv_conn *old = ss->conn;
    srv_work *w = tether__srv_work_new(W_DETACH, old, NULL, 0);
    ss->conn = NULL;
    old->sess = NULL;
    atomic_fetch_sub(&s->connected, 1);
    tether__tw_disarm(&s->wheel, &old->tw);
    if (w) {
        w->err = TETHER_EDISPLACED;
        tether__srv_post(s, ss, w);
    }
    tether__hs_out out;
    memset(&out, 0, sizeof out);
    tether__hs_refuse(&out, 1, TETHER_REJECT_DISPLACED, TETHER_EDISPLACED,
                      "a newer connection of this session took over");
    keep_refusal(old, &out);
    tether__srv_unref(s, ss); /* the old connection's reference */
}

/* Carries out the handshake module's decision: store a new session, displace
 * an older connection, hand the HELLO to the session's delivery thread; or
 * write the refusal and close. Returns 1 when the session it found was
 * deleted (expired) meanwhile: the caller decides again, for a session the
 * server no longer knows. */
static int handle_hello(tether_server *s, srv_conn *sc, const tether__hello *h, uint64_t now)
{
    uint8_t hash[32];
    tether__hs_server env;
    tether__hs_out out; /* the decision; kept in sc->hs only when it is a refusal */
    hs_ctx x = {s, NULL};
    srv_session *ss = NULL;
    int rc;

    memset(&env, 0, sizeof env);
    if (tether__srv_get(s, h->session_id, &x.ss) != TETHER_OK) {
        x.ss = NULL; /* unknown (or unreadable: the lookup says so again) */
    }
    env.stopping = atomic_load(&s->stopping);
    env.at_cap = atomic_load(&s->connected) >= s->cfg.max_sessions;
    env.connected = x.ss && x.ss->conn;
    env.hash_rc = tether__sha256(h->token, sizeof h->token, hash);
    env.token_hash = hash;
    env.max_message = s->ecfg.max_message;
    env.window = s->ecfg.window;
    env.lookup = hs_lookup;
    env.on_mismatch = hs_mismatch;
    env.arg = &x;
    memset(&out, 0, sizeof out);
    tether__hs_decide(h, &env, &out);
    (void)now;
    if (out.verdict == TETHER__HS_CREATE) {
        rc = s->store->ops->session_put(s->store, &out.rec);
        TETHER__KILLPOINT("server.after_session_create");
        if (rc == TETHER_OK) {
            rc = tether__srv_add(s, &out.rec, &ss);
        }
        if (rc != TETHER_OK) {
            tether__hs_refuse(&out, 0, TETHER_REJECT_STORE, rc, "the server's store failed");
        }
    } else if (out.verdict == TETHER__HS_ACCEPT) {
        ss = x.ss;
        x.ss = NULL; /* its reference becomes the connection's */
    }
    if (x.ss) {
        tether__srv_unref(s, x.ss);
    }
    if (!ss) {
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__srv_refused_hs(s, sc->conn, &out);
        keep_refusal(sc, &out); /* the refusal, then close */
        return 0;
    }
    if (out.displace && ss->conn) {
        displace(s, ss);
    }
    srv_work *w = tether__srv_work_new(W_ACCEPT, sc, NULL, 0);
    if (!w) {
        tether__srv_unref(s, ss);
        tether__hs_refuse(&out, 0, TETHER_REJECT_STORE, TETHER_ENOMEM, "out of memory");
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__srv_refused_hs(s, sc->conn, &out);
        keep_refusal(sc, &out);
        return 0;
    }
    w->hello = *h;
    /* under the session's lock: a delete or expiry (server_admin.c) either
     * sees this connection and leaves the session alone, or has already
     * removed it, and this HELLO is decided again as for an unknown session */
    tether__srv_lock(ss);
    int gone = atomic_load(&ss->gone);
    if (!gone) {
        ss->conn = sc;
        tether__srv_admin_online(s, ss);
    }
    tether__srv_unlock(s, ss);
    if (gone) {
        tether__free(w);
        tether__srv_unref(s, ss);
        return 1;
    }
    sc->sess = ss;
    atomic_fetch_add(&s->connected, 1);
    tether__tw_disarm(&s->wheel, &sc->tw);
    tether__srv_post(s, ss, w);
    return 0;
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = tether__calloc(1, sizeof *sc);
    if (!sc) {
        tether__conn_close(conn);
        return;
    }
    sc->conn = conn;
    sc->hello_deadline = tether__now_ms() + s->cfg.hello_timeout_ms;
    sc->pending = 1;
    atomic_fetch_add(&s->pending, 1);
    tether__conn_set_user(conn, sc);
    arm(s, sc, sc->hello_deadline);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    tether__hello h;

    if (!sc) {
        return;
    }
    if (sc->sess) {
        /* the session's delivery thread decodes and delivers it, in order */
        srv_work *w = tether__srv_work_new(W_FRAME, sc, buf, err ? 0 : len);
        if (!w) {
            tether__conn_close(conn); /* the client resends what was not acknowledged */
            return;
        }
        w->err = err;
        tether__srv_post(s, sc->sess, w);
    } else if (!sc->hs) {
        /* no session yet: the first frame must be HELLO */
        if (sc->pending) {
            sc->pending = 0;
            atomic_fetch_sub(&s->pending, 1);
        }
        tether__hs_out out;
        memset(&out, 0, sizeof out);
        if (tether__hs_first(&s->dec, buf, len, err, &h, &out)) {
            if (handle_hello(s, sc, &h, tether__now_ms())) {
                handle_hello(s, sc, &h, tether__now_ms()); /* it expired: unknown now */
            }
        } else {
            tether__srv_stat(s, TETHER__ST_REFUSED, 1);
            tether__srv_refused_hs(s, sc->conn, &out);
            keep_refusal(sc, &out);
        }
    }
}

static void on_writable(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    if (sc->sess) {
        touch(s, sc->sess, 1, tether__now_ms());
    } else if (sc->hs) {
        tether__link_pump_hs(sc->hs, conn, &s->out);
    }
}

static void on_closed(void *owner, tether__conn *conn, const tether__tp_close *why)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    if (sc->pending) {
        sc->pending = 0;
        atomic_fetch_sub(&s->pending, 1);
    }
    tether__tw_disarm(&s->wheel, &sc->tw);
    srv_session *ss = sc->sess;
    if (ss && ss->conn == sc) {
        srv_work *w = tether__srv_work_new(W_DETACH, sc, NULL, 0);
        ss->conn = NULL;
        atomic_fetch_sub(&s->connected, 1);
        if (w) {
            w->err = why->error;
            tether__srv_post(s, ss, w);
        } else {
            /* cannot queue it: detach here, so the session is not left attached */
            tether__srv_lock(ss);
            if (ss->wconn == sc) {
                tether__engine_disconnect(ss->engine);
                ss->wconn = NULL;
                ss->opened = 0;
            }
            if (!ss->conn) {
                tether__srv_admin_offline(s, ss);
            }
            tether__srv_unlock(s, ss);
        }
        tether__srv_unref(s, ss); /* the connection's reference */
    }
    tether__conn_set_user(conn, NULL);
    tether__free(sc->hs);
    tether__free(sc);
}

static void on_wake(void *owner)
{
    tether_server *s = owner;
    uint64_t now = tether__now_ms();
    pthread_mutex_lock(&s->plock);
    srv_session *ss = s->dirty;
    s->dirty = NULL;
    pthread_mutex_unlock(&s->plock);
    while (ss) {
        /* off the list first, so that a wake-up from now on lists it again */
        pthread_mutex_lock(&s->plock);
        srv_session *next = ss->next_dirty;
        ss->dirty = 0;
        ss->next_dirty = NULL;
        pthread_mutex_unlock(&s->plock);
        touch(s, ss, 0, now);
        tether__srv_unref(s, ss); /* the wake list's reference */
        ss = next;
    }
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
    const char *why = "refused by the on_handshake hook";
    if (atomic_load(&s->stopping)) {
        st = 503;
        why = "the server is shutting down";
    } else if (s->cfg.allowed_origins) {
        why = "the Origin is not in allowed_origins";
        const char *origin = tether_handshake_header(hs, "Origin");
        st = 403;
        for (const char *const *o = s->cfg.allowed_origins; origin && *o; o++) {
            if (strcasecmp(*o, origin) == 0) {
                st = 0;
                break;
            }
        }
    }
    if (!st && atomic_load(&s->pending) >= s->cfg.max_pending_handshakes) {
        /* a slow-loris peer cannot hold more than the cap; tell clients when to come back */
        st = 503;
        why = "max_pending_handshakes upgraded connections are waiting for their HELLO";
        snprintf(reply, reply_len, "Retry-After: %u\r\n", s->cfg.busy_retry_after_s);
    } else if (!st && s->cfg.cb.on_handshake) {
        why = "refused by the on_handshake hook";
        st = s->cfg.cb.on_handshake(s, hs, s->cfg.user);
        if (st && (st < 400 || st > 599)) {
            st = 403;
        }
        if (st) {
            snprintf(reply, reply_len, "%s", hs->reply);
        }
    }
    if (st) {
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__srv_refused(s, tether__now_ms(), hs->peer, TETHER_EHTTP, st, 0, why);
    }
    tether__free(hs);
    return st;
}

const tether__tp_cb tether__server_tp_cb = {on_open, on_message, on_writable, on_closed,
                                            on_wake, on_timer,   admit};

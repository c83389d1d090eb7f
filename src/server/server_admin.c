/*
 * Server operations: sessions that were offline too long expire (a coarse
 * sweep on the transport-wide timer, never per message), sessions can be
 * deleted and listed, and the counters behind tether_server_stats().
 *
 * Idle time is kept in memory: a session's idle time starts when its last
 * connection in this process ended; for a session this process has not seen
 * connected (left in the store by an earlier run) it starts when the server
 * was created. So a restart gives every stored session a fresh expiry period,
 * never a shorter one (docs/operations.md).
 *
 * Totals without a walk of the store: at create the store's inspect() gives
 * the number of sessions and their pending messages; sessions loaded into the
 * session table are then counted from their engines, and the rest
 * ("unloaded") from what inspect() said, minus what was loaded or removed
 * since.
 */
#include "server_int.h"
#include "common/alloc.h"

#define SWEEP_MIN_MS 1000u
#define SWEEP_MAX_MS 60000u

/* ---- clock and counters ---- */

uint64_t tether__srv_admin_now(tether_server *s)
{
    return s->admin.clock ? s->admin.clock(s->admin.clock_arg) : tether__now_ms();
}

void tether__srv_stat(tether_server *s, tether__stat which, uint64_t n)
{
    tether__stat_add(&s->admin.stats, which, n);
}

void tether__server_set_clock(tether_server *s, tether__srv_clock clock, void *arg)
{
    lock(s);
    s->admin.clock = clock;
    s->admin.clock_arg = arg;
    s->admin.created_ms = tether__srv_admin_now(s);
    for (unsigned b = 0; b < BUCKETS; b++) {
        for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
            ss->idle_since = s->admin.created_ms;
        }
    }
    unlock(s);
}

/* ---- hooks from the server core ---- */

int tether__srv_admin_init(tether_server *s)
{
    tether__store_info info;
    srv_admin *a = &s->admin;
    a->created_ms = tether__srv_admin_now(s);
    if (s->cfg.session_idle_expiry_ms) {
        uint64_t p = s->cfg.session_idle_expiry_ms / 8;
        a->sweep_ms = p < SWEEP_MIN_MS ? SWEEP_MIN_MS : (p > SWEEP_MAX_MS ? SWEEP_MAX_MS : p);
    }
    int rc = s->store->ops->inspect(s->store, 0, &info);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot read the store's totals: %s",
                            s->store->ops->errmsg(s->store));
    }
    a->unloaded = info.sessions;
    a->unloaded_pending = info.pending;
    a->unloaded_bytes = info.pending_bytes;
    return TETHER_OK;
}

void tether__srv_admin_start(tether_server *s)
{
    if (s->admin.sweep_ms) {
        tether__tp_timer(s->tp, s->admin.sweep_ms);
        s->admin.timer_armed = 1;
    }
}

void tether__srv_admin_added(tether_server *s, srv_session *ss)
{
    s->admin.loaded++;
    ss->idle_since = tether__srv_admin_now(s);
}

void tether__srv_admin_loaded(tether_server *s, srv_session *ss)
{
    uint64_t n = 0, b = 0;
    srv_admin *a = &s->admin;
    tether__engine_pending(ss->engine, &n, &b);
    a->unloaded -= a->unloaded ? 1 : 0;
    a->unloaded_pending -= n < a->unloaded_pending ? n : a->unloaded_pending;
    a->unloaded_bytes -= b < a->unloaded_bytes ? b : a->unloaded_bytes;
    ss->idle_since = a->created_ms; /* not seen connected by this process */
}

void tether__srv_admin_offline(tether_server *s, srv_session *ss)
{
    ss->idle_since = tether__srv_admin_now(s);
}

/* ---- removing sessions (lock held) ---- */

/* Removes a loaded, offline session: store first (on error nothing changes),
 * then the table, the wake list and the engine. *dropped gets its pending count. */
static int remove_loaded(tether_server *s, srv_session *ss, uint64_t *dropped)
{
    uint64_t n = 0, b = 0;
    tether__engine_pending(ss->engine, &n, &b);
    int rc = s->store->ops->session_delete(s->store, ss->id.bytes);
    if (rc != TETHER_OK && rc != TETHER_ENOTFOUND) {
        return tether__fail(rc, "cannot delete the session: %s", s->store->ops->errmsg(s->store));
    }
    for (srv_session **pp = &s->table[bucket(ss->id.bytes)]; *pp; pp = &(*pp)->next) {
        if (*pp == ss) {
            *pp = ss->next;
            break;
        }
    }
    for (srv_session **pp = &s->dirty; *pp; pp = &(*pp)->next_dirty) {
        if (*pp == ss) {
            *pp = ss->next_dirty;
            break;
        }
    }
    tether__engine_destroy(ss->engine);
    tether__free(ss); /* the allocation starts with the session */
    s->admin.loaded--;
    *dropped = n;
    return TETHER_OK;
}

/* Removes a session that is only in the store. */
static int remove_stored(tether_server *s, const uint8_t id[16], uint64_t *dropped)
{
    uint64_t n = 0, b = 0;
    int rc = s->store->ops->pending(s->store, id, &n, &b);
    if (rc == TETHER_OK) {
        rc = s->store->ops->session_delete(s->store, id);
    }
    if (rc == TETHER_ENOTFOUND) {
        return tether__fail(rc, "no such session");
    }
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot delete the session: %s", s->store->ops->errmsg(s->store));
    }
    srv_admin *a = &s->admin;
    a->unloaded -= a->unloaded ? 1 : 0;
    a->unloaded_pending -= n < a->unloaded_pending ? n : a->unloaded_pending;
    a->unloaded_bytes -= b < a->unloaded_bytes ? b : a->unloaded_bytes;
    *dropped = n;
    return TETHER_OK;
}

/* ---- the expiry sweep ---- */

/* A growable array of session ids. */
typedef struct idlist {
    uint8_t (*ids)[16]; /* the ids */
    size_t n;           /* ids held */
    size_t cap;         /* ids allocated */
    int oom;            /* an allocation failed: the list is incomplete */
} idlist;

static int idlist_add(idlist *l, const uint8_t id[16])
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = tether__realloc(l->ids, cap * sizeof *l->ids);
        if (!p) {
            l->oom = 1;
            return TETHER_ENOMEM;
        }
        l->ids = p;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], id, 16);
    return TETHER_OK;
}

/* session_list() callback: collects the ids not in the session table. */
static int collect_unloaded(void *arg, const tether__session_rec *rec)
{
    void **ctx = arg;
    tether_server *s = ctx[0];
    if (tether__srv_find(s, rec->id)) {
        return 0;
    }
    return idlist_add(ctx[1], rec->id) != TETHER_OK;
}

static void expired(tether_server *s, const uint8_t id[16], uint64_t dropped)
{
    tether__srv_stat(s, TETHER__ST_EXPIRED, 1);
    tether__srv_stat(s, TETHER__ST_DROPPED, dropped);
    if (s->cfg.cb.on_session_expired) {
        tether_session_id sid;
        memcpy(sid.bytes, id, 16);
        s->cfg.cb.on_session_expired(s, &sid, dropped, s->cfg.user);
    }
}

static void sweep_locked(tether_server *s)
{
    uint64_t limit = s->cfg.session_idle_expiry_ms, now = tether__srv_admin_now(s), dropped;
    idlist due = {0};
    if (!limit || s->stopping) {
        return;
    }
    /* ids first: a callback may change the table */
    for (unsigned b = 0; b < BUCKETS; b++) {
        for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
            if (!ss->conn && now - ss->idle_since >= limit && now >= ss->idle_since) {
                idlist_add(&due, ss->id.bytes); /* out of memory: the next sweep */
            }
        }
    }
    for (size_t i = 0; i < due.n; i++) {
        srv_session *ss = tether__srv_find(s, due.ids[i]);
        if (ss && !ss->conn && now - ss->idle_since >= limit &&
            remove_loaded(s, ss, &dropped) == TETHER_OK) {
            expired(s, due.ids[i], dropped);
        }
    }
    due.n = 0;
    due.oom = 0;
    if (!s->admin.store_swept && now - s->admin.created_ms >= limit && now >= s->admin.created_ms) {
        /* sessions an earlier run left in the store and this one never loaded */
        void *ctx[2] = {s, &due};
        if (s->store->ops->session_list(s->store, collect_unloaded, ctx) == TETHER_OK && !due.oom) {
            s->admin.store_swept = 1;
            for (size_t i = 0; i < due.n; i++) {
                if (!tether__srv_find(s, due.ids[i]) &&
                    remove_stored(s, due.ids[i], &dropped) == TETHER_OK) {
                    expired(s, due.ids[i], dropped);
                }
            }
        }
    }
    tether__free(due.ids);
}

void tether__srv_admin_timer(tether_server *s)
{
    sweep_locked(s);
    if (s->admin.sweep_ms && !s->stopping) {
        tether__tp_timer(s->tp, s->admin.sweep_ms);
    }
}

void tether__server_sweep(tether_server *s)
{
    lock(s);
    sweep_locked(s);
    unlock(s);
}

/* ---- public API ---- */

int tether_server_session_delete(tether_server *s, const tether_session_id *id, uint64_t *dropped)
{
    uint64_t n = 0;
    int rc;
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    lock(s);
    srv_session *ss = tether__srv_find(s, id->bytes);
    if (s->stopping) {
        rc = tether__fail(TETHER_ECLOSED, "the server is shutting down");
    } else if (tether__tp_on_service_thread(s->tp)) {
        /* a callback: the server core may still be working on the session */
        rc = tether__fail(TETHER_EINVAL, "tether_server_session_delete() must not be called "
                                         "from a server callback");
    } else if (ss && ss->conn) {
        rc = tether__fail(TETHER_EONLINE, "the session is connected; it can be deleted once "
                                          "its connection has ended");
    } else if (ss) {
        rc = remove_loaded(s, ss, &n);
    } else {
        rc = remove_stored(s, id->bytes, &n);
    }
    if (rc == TETHER_OK) {
        tether__srv_stat(s, TETHER__ST_DELETED, 1);
        tether__srv_stat(s, TETHER__ST_DROPPED, n);
    }
    unlock(s);
    if (dropped) {
        *dropped = rc == TETHER_OK ? n : 0;
    }
    return rc;
}

/* A growable array of session infos. */
typedef struct infolist {
    tether_server_session_info *v; /* the infos */
    size_t n;                      /* infos held */
    size_t cap;                    /* infos allocated */
    int oom;                       /* an allocation failed: the list is incomplete */
} infolist;

static int collect_info(void *arg, const tether__session_rec *rec)
{
    infolist *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = tether__realloc(l->v, cap * sizeof *l->v);
        if (!p) {
            l->oom = 1;
            return 1;
        }
        l->v = p;
        l->cap = cap;
    }
    tether_server_session_info *in = &l->v[l->n++];
    memset(in, 0, sizeof *in);
    memcpy(in->id.bytes, rec->id, 16);
    in->established = rec->established != 0;
    in->out_last = rec->out_last;
    in->peer_acked = rec->peer_acked;
    in->recv_cursor = rec->recv_cursor;
    return 0;
}

/* Lock held: the list of every stored session with its state now. */
static int snapshot_locked(tether_server *s, infolist *l)
{
    uint64_t now = tether__srv_admin_now(s);
    int rc = s->store->ops->session_list(s->store, collect_info, l);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot list the sessions: %s", s->store->ops->errmsg(s->store));
    }
    if (l->oom) {
        return tether__fail(TETHER_ENOMEM, "out of memory listing the sessions");
    }
    for (size_t i = 0; i < l->n; i++) {
        tether_server_session_info *in = &l->v[i];
        srv_session *ss = tether__srv_find(s, in->id.bytes);
        uint64_t since = s->admin.created_ms;
        if (ss) {
            const tether__session_rec *r = tether__engine_rec(ss->engine);
            in->established = r->established != 0;
            in->out_last = r->out_last;
            in->peer_acked = r->peer_acked;
            in->recv_cursor = r->recv_cursor;
            in->online = ss->conn != NULL;
            tether__engine_pending(ss->engine, &in->pending_messages, &in->pending_bytes);
            since = ss->idle_since;
        } else {
            rc = s->store->ops->pending(s->store, in->id.bytes, &in->pending_messages,
                                        &in->pending_bytes);
            if (rc != TETHER_OK) {
                return tether__fail(rc, "cannot read a session's outbox: %s",
                                    s->store->ops->errmsg(s->store));
            }
        }
        in->idle_ms = in->online || now < since ? 0 : now - since;
    }
    return TETHER_OK;
}

int tether_server_sessions(tether_server *s, tether_server_session_cb cb, void *user)
{
    infolist l = {0};
    if (!s || !cb) {
        return tether__fail(TETHER_EINVAL, "server or callback is NULL");
    }
    lock(s);
    int rc = snapshot_locked(s, &l);
    unlock(s);
    for (size_t i = 0; rc == TETHER_OK && i < l.n; i++) {
        if (cb(s, &l.v[i], user)) {
            break;
        }
    }
    tether__free(l.v);
    return rc;
}

int tether_server_stats(tether_server *s, tether_server_statistics *st)
{
    if (!s || !st) {
        return tether__fail(TETHER_EINVAL, "server or stats is NULL");
    }
    const tether__stats *c = &s->admin.stats;
    memset(st, 0, sizeof *st);
    st->messages_sent = tether__stat_get(c, TETHER__ST_SENT);
    st->messages_acked = tether__stat_get(c, TETHER__ST_ACKED);
    st->messages_delivered = tether__stat_get(c, TETHER__ST_DELIVERED);
    st->messages_redelivered = tether__stat_get(c, TETHER__ST_REDELIVERED);
    st->bytes_in = tether__stat_get(c, TETHER__ST_BYTES_IN);
    st->bytes_out = tether__stat_get(c, TETHER__ST_BYTES_OUT);
    st->sessions_opened = tether__stat_get(c, TETHER__ST_CONNECTS);
    st->handshakes_refused = tether__stat_get(c, TETHER__ST_REFUSED);
    st->sessions_expired = tether__stat_get(c, TETHER__ST_EXPIRED);
    st->sessions_deleted = tether__stat_get(c, TETHER__ST_DELETED);
    st->messages_dropped = tether__stat_get(c, TETHER__ST_DROPPED);
    lock(s);
    st->pending_messages = s->admin.unloaded_pending;
    st->pending_bytes = s->admin.unloaded_bytes;
    for (unsigned b = 0; b < BUCKETS; b++) {
        for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
            uint64_t n = 0, by = 0;
            tether__engine_pending(ss->engine, &n, &by);
            st->pending_messages += n;
            st->pending_bytes += by;
        }
    }
    st->sessions = s->admin.loaded + s->admin.unloaded;
    st->sessions_online = s->connected;
    st->sessions_offline =
        st->sessions >= st->sessions_online ? st->sessions - st->sessions_online : 0;
    unlock(s);
    return TETHER_OK;
}

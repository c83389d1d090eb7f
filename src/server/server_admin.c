/*
 * Server operations: sessions that were offline too long expire (a coarse
 * sweep on its own thread, never per message), sessions can be deleted and
 * listed, and the counters behind tether_server_stats().
 *
 * Sessions are evicted from memory when offline (server.c), so a session's
 * idle time cannot live in its srv_session: a small map id -> offline since
 * (ms, the admin clock) holds it, filled when a session's last connection
 * ends and emptied when it connects again or is removed; it survives
 * eviction. A session not in the map and not connected (left in the store by
 * an earlier run, or only loaded for send/ack/queries) counts from the
 * server's creation. So a restart gives every stored session a fresh expiry
 * period, never a shorter one (docs/operations.md).
 *
 * Removal (delete and expiry) loads the session, takes its lock, refuses it
 * while it has a connection (TETHER_EONLINE), deletes it from the store and
 * marks it gone, then takes it out of the table (server.c). A HELLO sets the
 * session's connection under the same lock, so a resume either wins (the
 * session is online and stays) or finds it gone and is answered as for an
 * unknown session. Totals come from the store's inspect().
 */
#include <errno.h>

#include "server_int.h"
#include "common/alloc.h"

#define SWEEP_MIN_MS 1000u
#define SWEEP_MAX_MS 60000u
#define MAP_MIN 64u

struct srv_idle {
    srv_idle *next;   /* hash chain */
    uint8_t id[16];   /* the session */
    uint64_t since;   /* offline since, admin clock ms */
};

/* ---- clock and counters ---- */

uint64_t tether__srv_admin_now(tether_server *s)
{
    return s->admin.clock ? s->admin.clock(s->admin.clock_arg) : tether__now_ms();
}

void tether__srv_stat(tether_server *s, tether__stat which, uint64_t n)
{
    tether__stat_add(&s->admin.stats, which, n);
}

/* ---- the offline map (a->mu held) ---- */

static size_t slot(const srv_admin *a, const uint8_t id[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 1099511628211ull;
    }
    return (size_t)h & (a->nmap - 1);
}

static srv_idle **find_locked(srv_admin *a, const uint8_t id[16])
{
    srv_idle **pp = &a->map[slot(a, id)];
    while (*pp && memcmp((*pp)->id, id, 16) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Doubles the map past two entries per bucket (out of memory: longer chains). */
static void grow_locked(srv_admin *a)
{
    size_t n = a->nmap * 2;
    srv_idle **m = a->nidle < 2 * a->nmap ? NULL : tether__calloc(n, sizeof *m);
    if (!m) {
        return;
    }
    srv_idle **old = a->map;
    size_t nold = a->nmap;
    a->map = m;
    a->nmap = n;
    for (size_t b = 0; b < nold; b++) {
        while (old[b]) {
            srv_idle *e = old[b];
            old[b] = e->next;
            size_t nb = slot(a, e->id);
            e->next = m[nb];
            m[nb] = e;
        }
    }
    tether__free(old);
}

static void forget(tether_server *s, const uint8_t id[16])
{
    srv_admin *a = &s->admin;
    pthread_mutex_lock(&a->mu);
    srv_idle **pp = find_locked(a, id);
    srv_idle *e = *pp;
    if (e) {
        *pp = e->next;
        a->nidle--;
    }
    pthread_mutex_unlock(&a->mu);
    tether__free(e);
}

/* When the session's idle time started. */
static uint64_t idle_since(tether_server *s, const uint8_t id[16])
{
    srv_admin *a = &s->admin;
    pthread_mutex_lock(&a->mu);
    srv_idle *e = *find_locked(a, id);
    uint64_t since = e ? e->since : a->created_ms;
    pthread_mutex_unlock(&a->mu);
    return since;
}

void tether__srv_admin_online(tether_server *s, srv_session *ss)
{
    forget(s, ss->id.bytes);
}

void tether__srv_admin_offline(tether_server *s, srv_session *ss)
{
    srv_admin *a = &s->admin;
    uint64_t now = tether__srv_admin_now(s);
    srv_idle *fresh = tether__malloc(sizeof *fresh); /* out of memory: idle since create */
    pthread_mutex_lock(&a->mu);
    srv_idle **pp = find_locked(a, ss->id.bytes);
    if (*pp) {
        (*pp)->since = now;
    } else if (fresh) {
        memcpy(fresh->id, ss->id.bytes, 16);
        fresh->since = now;
        fresh->next = a->map[slot(a, ss->id.bytes)];
        a->map[slot(a, ss->id.bytes)] = fresh;
        a->nidle++;
        grow_locked(a);
        fresh = NULL;
    }
    pthread_mutex_unlock(&a->mu);
    tether__free(fresh);
}

void tether__server_set_clock(tether_server *s, tether__srv_clock clock, void *arg)
{
    srv_admin *a = &s->admin;
    a->clock = clock;
    a->clock_arg = arg;
    a->created_ms = tether__srv_admin_now(s);
    pthread_mutex_lock(&a->mu);
    for (size_t b = 0; b < a->nmap; b++) {
        for (srv_idle *e = a->map[b]; e; e = e->next) {
            e->since = a->created_ms;
        }
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- removing sessions ---- */

/*
 * Removes a session (loading it if it was evicted): refuses it while it has a
 * connection, and with expire_at, leaves it unless it has been idle for the
 * whole expiry period at that time (returns 1). Store first, so on error
 * nothing changes. *dropped gets its unacknowledged messages. No lock held.
 */
static int remove_session(tether_server *s, const uint8_t id[16], const uint64_t *expire_at,
                          uint64_t *dropped)
{
    srv_session *ss;
    uint64_t n = 0, b = 0;
    int rc = tether__srv_get(s, id, &ss);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__srv_lock(ss);
    int removed = 0;
    if (atomic_load(&ss->gone)) {
        rc = tether__fail(TETHER_ENOTFOUND, "no such session");
    } else if (ss->conn || ss->wconn) {
        rc = tether__fail(TETHER_EONLINE, "the session is connected; it can be deleted once "
                                          "its connection has ended");
    } else if (expire_at && (*expire_at < idle_since(s, id) ||
                             *expire_at - idle_since(s, id) < s->cfg.session_idle_expiry_ms)) {
        rc = 1; /* it was online again since the sweep looked */
    } else {
        tether__engine_pending(ss->engine, &n, &b);
        rc = s->store->ops->session_delete(s->store, id);
        if (rc == TETHER_OK || rc == TETHER_ENOTFOUND) {
            rc = TETHER_OK;
            atomic_store(&ss->gone, 1);
            removed = 1;
        } else {
            tether__fail(rc, "cannot delete the session: %s", s->store->ops->errmsg(s->store));
        }
    }
    tether__srv_unlock(s, ss);
    if (removed) {
        forget(s, id);
        tether__srv_forget(s, ss);
    }
    tether__srv_unref(s, ss); /* a gone session is freed with its last reference */
    *dropped = n;
    return rc;
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

/* session_list() callback (the store's lock held: collects only). */
static int collect_id(void *arg, const tether__session_rec *rec)
{
    return idlist_add(arg, rec->id) != TETHER_OK;
}

/* Expires each listed session that is still due; callbacks with no lock held. */
static void expire_all(tether_server *s, const idlist *due, uint64_t now)
{
    for (size_t i = 0; i < due->n && !atomic_load(&s->stopping); i++) {
        uint64_t dropped = 0;
        int rc = remove_session(s, due->ids[i], &now, &dropped);
        if (rc == TETHER_ENOTFOUND) {
            forget(s, due->ids[i]); /* removed by other means: no longer tracked */
        }
        if (rc != TETHER_OK) {
            continue; /* online, or online again since; a store error: the next sweep */
        }
        tether__srv_stat(s, TETHER__ST_EXPIRED, 1);
        tether__srv_stat(s, TETHER__ST_DROPPED, dropped);
        if (s->cfg.cb.on_session_expired) {
            tether_session_id sid;
            memcpy(sid.bytes, due->ids[i], 16);
            s->cfg.cb.on_session_expired(s, &sid, dropped, s->cfg.user);
        }
    }
}

static void sweep_once(tether_server *s)
{
    srv_admin *a = &s->admin;
    uint64_t limit = s->cfg.session_idle_expiry_ms, now = tether__srv_admin_now(s);
    idlist due = {0};
    if (!limit || atomic_load(&s->stopping)) {
        return;
    }
    /* sessions that went offline in this process, evicted or not */
    pthread_mutex_lock(&a->mu);
    for (size_t b = 0; b < a->nmap; b++) {
        for (srv_idle *e = a->map[b]; e; e = e->next) {
            if (now >= e->since && now - e->since >= limit) {
                idlist_add(&due, e->id); /* out of memory: the next sweep */
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    expire_all(s, &due, now);
    due.n = 0;
    due.oom = 0;
    if (!a->store_swept && now >= a->created_ms && now - a->created_ms >= limit) {
        /* every other session counts from create: once that is over, one pass
         * over the store finds them (later ones go offline here, into the map) */
        if (s->store->ops->session_list(s->store, collect_id, &due) == TETHER_OK && !due.oom) {
            a->store_swept = 1;
            expire_all(s, &due, now);
        }
    }
    tether__free(due.ids);
}

/* One sweep at a time; the state lock is not held while it runs. */
static void sweep(tether_server *s)
{
    srv_admin *a = &s->admin;
    pthread_mutex_lock(&a->smu);
    while (a->sweeping) {
        pthread_cond_wait(&a->scond, &a->smu);
    }
    a->sweeping = 1;
    pthread_mutex_unlock(&a->smu);
    sweep_once(s);
    pthread_mutex_lock(&a->smu);
    a->sweeping = 0;
    pthread_cond_broadcast(&a->scond);
    pthread_mutex_unlock(&a->smu);
}

void tether__server_sweep(tether_server *s)
{
    sweep(s);
}

static void *sweeper(void *arg)
{
    tether_server *s = arg;
    srv_admin *a = &s->admin;
    pthread_mutex_lock(&a->smu);
    while (!a->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(a->sweep_ms / 1000);
        ts.tv_nsec += (long)(a->sweep_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!a->stop && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&a->scond, &a->smu, &ts);
        }
        if (a->stop) {
            break;
        }
        pthread_mutex_unlock(&a->smu);
        sweep(s);
        pthread_mutex_lock(&a->smu);
    }
    pthread_mutex_unlock(&a->smu);
    return NULL;
}

/* ---- hooks from the server core ---- */

int tether__srv_admin_init(tether_server *s)
{
    srv_admin *a = &s->admin;
    a->created_ms = tether__srv_admin_now(s);
    if (s->cfg.session_idle_expiry_ms) {
        uint64_t p = s->cfg.session_idle_expiry_ms / 8;
        a->sweep_ms = p < SWEEP_MIN_MS ? SWEEP_MIN_MS : (p > SWEEP_MAX_MS ? SWEEP_MAX_MS : p);
    }
    a->nmap = MAP_MIN;
    a->map = tether__calloc(a->nmap, sizeof *a->map);
    if (!a->map) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->smu, NULL);
    pthread_cond_init(&a->scond, NULL);
    a->inited = 1;
    return TETHER_OK;
}

int tether__srv_admin_start(tether_server *s)
{
    srv_admin *a = &s->admin;
    if (!a->sweep_ms || a->thread_started) {
        return TETHER_OK;
    }
    int rc = pthread_create(&a->thread, NULL, sweeper, s);
    if (rc) {
        return tether__fail(TETHER_ESYS, "cannot start the expiry thread: %s", strerror(rc));
    }
    a->thread_started = 1;
    return TETHER_OK;
}

void tether__srv_admin_stop(tether_server *s)
{
    srv_admin *a = &s->admin;
    if (!a->thread_started) {
        return;
    }
    pthread_mutex_lock(&a->smu);
    a->stop = 1;
    pthread_cond_broadcast(&a->scond);
    pthread_mutex_unlock(&a->smu);
    pthread_join(a->thread, NULL);
    a->thread_started = 0;
}

void tether__srv_admin_free(tether_server *s)
{
    srv_admin *a = &s->admin;
    for (size_t b = 0; a->map && b < a->nmap; b++) {
        while (a->map[b]) {
            srv_idle *e = a->map[b];
            a->map[b] = e->next;
            tether__free(e);
        }
    }
    tether__free(a->map);
    a->map = NULL;
    if (a->inited) {
        pthread_mutex_destroy(&a->mu);
        pthread_mutex_destroy(&a->smu);
        pthread_cond_destroy(&a->scond);
        a->inited = 0;
    }
}

/* ---- public API ---- */

int tether_server_session_delete(tether_server *s, const tether_session_id *id, uint64_t *dropped)
{
    uint64_t n = 0;
    int rc;
    if (dropped) {
        *dropped = 0;
    }
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    if (atomic_load(&s->stopping)) {
        return tether__fail(TETHER_ECLOSED, "the server is shutting down");
    }
    if (tether__tp_on_service_thread(s->tp) || tether__srv_on_pool(s)) {
        /* a callback: the server core may still be working on the session */
        return tether__fail(TETHER_EINVAL, "tether_server_session_delete() must not be called "
                                           "from a server callback");
    }
    rc = remove_session(s, id->bytes, NULL, &n);
    if (rc == TETHER_OK) {
        tether__srv_stat(s, TETHER__ST_DELETED, 1);
        tether__srv_stat(s, TETHER__ST_DROPPED, n);
        if (dropped) {
            *dropped = n;
        }
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

/* session_list() callback (the store's lock held: copies only). */
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

/* Fills in the live state of one listed session: from its engine when it is
 * in memory, else from the store. Returns 0 when it was removed meanwhile. */
static int fill_info(tether_server *s, tether_server_session_info *in, uint64_t now, int *rc)
{
    srv_session *ss = tether__srv_find_ref(s, in->id.bytes);
    int alive = 1;
    if (ss) {
        tether__srv_lock(ss);
        alive = !atomic_load(&ss->gone);
        if (alive) {
            const tether__session_rec *r = tether__engine_rec(ss->engine);
            in->established = r->established != 0;
            in->out_last = r->out_last;
            in->peer_acked = r->peer_acked;
            in->recv_cursor = r->recv_cursor;
            in->online = ss->conn != NULL;
            tether__engine_pending(ss->engine, &in->pending_messages, &in->pending_bytes);
        }
        tether__srv_unlock(s, ss);
        tether__srv_unref(s, ss);
    } else {
        int r = s->store->ops->pending(s->store, in->id.bytes, &in->pending_messages,
                                       &in->pending_bytes);
        if (r == TETHER_ENOTFOUND) {
            alive = 0;
        } else if (r != TETHER_OK) {
            *rc = tether__fail(r, "cannot read a session's outbox: %s",
                               s->store->ops->errmsg(s->store));
        }
    }
    uint64_t since = in->online ? now : idle_since(s, in->id.bytes);
    in->idle_ms = now < since ? 0 : now - since;
    return alive;
}

int tether_server_sessions(tether_server *s, tether_server_session_cb cb, void *user)
{
    infolist l = {0};
    if (!s || !cb) {
        return tether__fail(TETHER_EINVAL, "server or callback is NULL");
    }
    uint64_t now = tether__srv_admin_now(s);
    int rc = s->store->ops->session_list(s->store, collect_info, &l);
    if (rc != TETHER_OK) {
        rc = tether__fail(rc, "cannot list the sessions: %s", s->store->ops->errmsg(s->store));
    } else if (l.oom) {
        rc = tether__fail(TETHER_ENOMEM, "out of memory listing the sessions");
    }
    size_t kept = 0;
    for (size_t i = 0; rc == TETHER_OK && i < l.n; i++) {
        if (fill_info(s, &l.v[i], now, &rc)) {
            l.v[kept++] = l.v[i];
        }
    }
    for (size_t i = 0; rc == TETHER_OK && i < kept; i++) {
        if (cb(s, &l.v[i], user)) {
            break;
        }
    }
    tether__free(l.v);
    return rc;
}

int tether_server_stats(tether_server *s, tether_server_statistics *st)
{
    tether__store_info info;
    if (!s || !st) {
        return tether__fail(TETHER_EINVAL, "server or stats is NULL");
    }
    int rc = s->store->ops->inspect(s->store, 0, &info);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot read the store's totals: %s",
                            s->store->ops->errmsg(s->store));
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
    st->pending_messages = info.pending;
    st->pending_bytes = info.pending_bytes;
    st->sessions = info.sessions;
    st->sessions_online = atomic_load(&s->connected);
    st->sessions_offline =
        st->sessions >= st->sessions_online ? st->sessions - st->sessions_online : 0;
    return TETHER_OK;
}

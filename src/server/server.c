/*
 * The tether server object: sessions by id, each with its own engine, lock
 * and outbox, and the public server API. Connections, HELLO and timers are in
 * server_conn.c (the service thread), the delivery threads in server_pool.c.
 * server_int.h describes the threads, the lock order and eviction.
 */
#include <errno.h>

#include "server_int.h"
#include "common/alloc.h"

/* ---- engine events: a delivery thread, ss->mu held; dropped around the callback ---- */

static void ev_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    srv_session *ss = arg;
    tether_server *s = ss->srv;
    ss->delivered = seq;
    tether__srv_stat(s, TETHER__ST_DELIVERED, 1);
    tether__srv_stat(s, TETHER__ST_REDELIVERED, redelivered != 0);
    if (s->cfg.cb.on_message) {
        tether__srv_unlock(s, ss);
        s->cfg.cb.on_message(s, &ss->id, seq, data, len, redelivered, s->cfg.user);
        tether__srv_lock(ss);
    }
}

static void ev_acked(void *arg, uint64_t first, uint64_t last)
{
    srv_session *ss = arg;
    tether_server *s = ss->srv;
    tether__srv_stat(s, TETHER__ST_ACKED, last - first + 1);
    if (s->cfg.cb.on_acked) {
        tether__srv_unlock(s, ss);
        s->cfg.cb.on_acked(s, &ss->id, first, last, s->cfg.user);
        tether__srv_lock(ss);
    }
}

static void ev_mismatch(void *arg, const tether_mismatch_info *info)
{
    srv_session *ss = arg;
    tether_server *s = ss->srv;
    if (s->cfg.cb.on_mismatch) {
        tether_mismatch_info copy = *info;
        tether__srv_unlock(s, ss);
        s->cfg.cb.on_mismatch(s, &copy, s->cfg.user);
        tether__srv_lock(ss);
    }
}

void tether__srv_bp_report_locked(tether_server *s, srv_session *ss)
{
    tether_backpressure_info bi[2];
    int n = tether__bp_update(&ss->bp, ss->engine, s->ecfg.window, s->cfg.outbox_max_messages,
                              s->cfg.outbox_max_bytes, bi);
    if (n > 0 && s->cfg.cb.on_backpressure) {
        tether__srv_unlock(s, ss);
        for (int i = 0; i < n; i++) {
            s->cfg.cb.on_backpressure(s, &ss->id, &bi[i], s->cfg.user);
        }
        tether__srv_lock(ss);
    }
}

/* ---- session locks and wake-ups ---- */

void tether__srv_lock(srv_session *ss)
{
    pthread_mutex_lock(&ss->mu);
}

void tether__srv_unlock(tether_server *s, srv_session *ss)
{
    pthread_mutex_unlock(&ss->mu);
    if (atomic_exchange(&ss->kick, 0)) {
        tether__srv_wake(s, ss);
    }
}

void tether__srv_wake(tether_server *s, srv_session *ss)
{
    pthread_mutex_lock(&s->plock);
    if (!ss->dirty) {
        ss->dirty = 1;
        tether__srv_ref(ss); /* the wake list's */
        ss->next_dirty = s->dirty;
        s->dirty = ss;
        /* under plock: destroy() sets tp_gone under it before freeing the
           transport, so a delivery thread never wakes a freed one */
        if (!s->tp_gone) {
            tether__tp_wake(s->tp);
        }
    }
    pthread_mutex_unlock(&s->plock);
}

/* ---- the session table ---- */

static size_t hash_id(const uint8_t id[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 1099511628211ull;
    }
    return (size_t)h;
}

/* tlock held. */
static srv_session *find_locked(tether_server *s, const uint8_t id[16])
{
    for (srv_session *ss = s->table[hash_id(id) & (s->nbuckets - 1)]; ss; ss = ss->next) {
        if (memcmp(ss->id.bytes, id, 16) == 0) {
            return ss;
        }
    }
    return NULL;
}

/* tlock held: doubles the table past two sessions per bucket (a failed
 * allocation keeps the old table, only the chains get longer). */
static void grow_locked(tether_server *s)
{
    if (s->nsessions < 2 * s->nbuckets) {
        return;
    }
    size_t n = s->nbuckets * 2;
    srv_session **t = tether__calloc(n, sizeof *t);
    if (!t) {
        return;
    }
    for (size_t b = 0; b < s->nbuckets; b++) {
        srv_session *ss = s->table[b];
        while (ss) {
            srv_session *next = ss->next;
            size_t nb = hash_id(ss->id.bytes) & (n - 1);
            ss->next = t[nb];
            t[nb] = ss;
            ss = next;
        }
    }
    tether__free(s->table);
    s->table = t;
    s->nbuckets = n;
}

/* tlock held. */
static void remove_locked(tether_server *s, srv_session *ss)
{
    srv_session **pp = &s->table[hash_id(ss->id.bytes) & (s->nbuckets - 1)];
    while (*pp && *pp != ss) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = ss->next;
        s->nsessions--;
    }
}

static void session_free(srv_session *ss)
{
    tether__engine_destroy(ss->engine);
    pthread_mutex_destroy(&ss->mu);
    tether__free(ss);
}

/* A session object around a new engine for rec; not in the table yet. */
static int session_new(tether_server *s, const tether__session_rec *rec, srv_session **out)
{
    srv_session *ss = tether__calloc(1, sizeof *ss);
    if (!ss) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    ss->srv = s;
    memcpy(ss->id.bytes, rec->id, 16);
    ss->delivered = rec->recv_cursor;
    tether__engine_cb cb = {ev_message, ev_acked, ev_mismatch, ss};
    int rc = tether__engine_create(&s->ecfg, s->store, rec, &cb, &ss->engine);
    if (rc != TETHER_OK) {
        tether__free(ss);
        return tether__fail(rc, "cannot load the session: %s", tether_strerror(rc));
    }
    pthread_mutex_init(&ss->mu, NULL);
    atomic_init(&ss->refs, 1);
    *out = ss;
    return TETHER_OK;
}

/* The count of sessions taken out of the table (deleted or evicted) in id's stripe. */
static atomic_uint *out_gen(tether_server *s, const uint8_t id[16])
{
    return &s->out_gen[hash_id(id) % SRV_GEN_STRIPES];
}

/* Inserts a new session object, or takes a reference to the one another
 * thread loaded meanwhile (and frees the new one). gen: out_gen() as it was
 * before the store was read (NULL: a new session); when a session of the
 * stripe was taken out of the table since (deleted, or evicted after writes
 * the read may have missed), or the one in the table is being deleted,
 * nothing is inserted and *again says whether to read the store again. */
static srv_session *insert(tether_server *s, srv_session *ss, const unsigned *gen, int *again)
{
    pthread_mutex_lock(&s->tlock);
    srv_session *old = find_locked(s, ss->id.bytes);
    *again = !old && gen && *gen != atomic_load(out_gen(s, ss->id.bytes));
    if (*again || (old && atomic_load(&old->gone))) {
        pthread_mutex_unlock(&s->tlock);
        session_free(ss);
        return NULL;
    }
    if (old) {
        atomic_fetch_add(&old->refs, 1);
    } else {
        size_t b = hash_id(ss->id.bytes) & (s->nbuckets - 1);
        ss->next = s->table[b];
        s->table[b] = ss;
        s->nsessions++;
        grow_locked(s);
    }
    pthread_mutex_unlock(&s->tlock);
    if (old) {
        session_free(ss);
        return old;
    }
    return ss;
}

/* Adds a session object for rec (see insert() for gen). */
static int add(tether_server *s, const tether__session_rec *rec, const unsigned *gen, int *again,
               srv_session **out)
{
    srv_session *ss = NULL;
    int rc = session_new(s, rec, &ss);
    if (rc == TETHER_OK) {
        *out = insert(s, ss, gen, again);
        if (!*out && !*again) {
            rc = tether__fail(TETHER_ENOTFOUND, "no such session");
        }
    }
    return rc;
}

int tether__srv_add(tether_server *s, const tether__session_rec *rec, srv_session **out)
{
    int again = 0;
    return add(s, rec, NULL, &again, out);
}

srv_session *tether__srv_find_ref(tether_server *s, const uint8_t id[16])
{
    pthread_mutex_lock(&s->tlock);
    srv_session *ss = find_locked(s, id);
    if (ss && atomic_load(&ss->gone)) {
        ss = NULL;
    }
    if (ss) {
        atomic_fetch_add(&ss->refs, 1);
    }
    pthread_mutex_unlock(&s->tlock);
    return ss;
}

int tether__srv_get(tether_server *s, const uint8_t id[16], srv_session **out)
{
    tether__session_rec rec;
    int again = 1, rc = TETHER_OK;
    while (again) {
        unsigned gen = atomic_load(out_gen(s, id));
        *out = tether__srv_find_ref(s, id);
        if (*out) {
            return TETHER_OK;
        }
        rc = s->store->ops->session_get(s->store, id, &rec);
        if (rc == TETHER_ENOTFOUND) {
            return tether__fail(rc, "no such session");
        }
        if (rc != TETHER_OK) {
            return tether__fail(rc, "cannot read the session: %s",
                                s->store->ops->errmsg(s->store));
        }
        if (s->test_loaded) {
            s->test_loaded(s, s->test_loaded_arg);
        }
        rc = add(s, &rec, &gen, &again, out);
    }
    return rc;
}

void tether__srv_test_on_load(tether_server *s, void (*fn)(tether_server *, void *), void *arg)
{
    s->test_loaded_arg = arg;
    s->test_loaded = fn;
}

int tether__srv_get_live(tether_server *s, const uint8_t id[16], srv_session **out)
{
    int rc = tether__srv_get(s, id, out);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__srv_lock(*out);
    if (atomic_load(&(*out)->gone)) {
        tether__srv_unlock(s, *out);
        tether__srv_unref(s, *out);
        *out = NULL;
        return tether__fail(TETHER_ENOTFOUND, "no such session");
    }
    return TETHER_OK;
}

int tether__srv_reload_locked(tether_server *s, srv_session *ss)
{
    tether__session_rec rec;
    int rc = s->store->ops->session_get(s->store, ss->id.bytes, &rec);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__engine *e = NULL;
    tether__engine_cb cb = {ev_message, ev_acked, ev_mismatch, ss};
    rc = tether__engine_create(&s->ecfg, s->store, &rec, &cb, &e);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__engine_destroy(ss->engine);
    ss->engine = e;
    ss->delivered = rec.recv_cursor;
    return TETHER_OK;
}

void tether__srv_forget(tether_server *s, srv_session *ss)
{
    pthread_mutex_lock(&s->tlock);
    remove_locked(s, ss);
    atomic_fetch_add(out_gen(s, ss->id.bytes), 1);
    pthread_mutex_unlock(&s->tlock);
}

void tether__srv_ref(srv_session *ss)
{
    atomic_fetch_add(&ss->refs, 1);
}

/* With no reference left, nothing can reach the session but the table. It
 * stays only while it holds what the store does not: messages delivered but
 * not yet acknowledged by the application (manual-ack), or a back-pressure
 * state the application was told about and must hear the end of. */
static int evictable(tether_server *s, srv_session *ss)
{
    const tether__session_rec *r = tether__engine_rec(ss->engine);
    if (s->cfg.manual_ack && ss->delivered > r->recv_cursor) {
        return 0;
    }
    return !ss->bp.window && !ss->bp.outbox && !ss->bp.outbox_hit;
}

void tether__srv_unref(tether_server *s, srv_session *ss)
{
    /* Not the last reference: drop it without the table lock. */
    int old = atomic_load(&ss->refs);
    while (old > 1) {
        if (atomic_compare_exchange_weak(&ss->refs, &old, old - 1)) {
            return;
        }
    }
    /* Maybe the last: drop it under the table lock, where lookups take
     * references, so no other thread can find the session between the drop
     * and its removal, nor drop a reference it took meanwhile and free it
     * first (two threads reaching zero both freed it before). */
    int evict = 0;
    pthread_mutex_lock(&s->tlock);
    if (atomic_fetch_sub(&ss->refs, 1) == 1 &&
        (atomic_load(&ss->gone) || evictable(s, ss))) {
        remove_locked(s, ss);
        /* a load of this session that read the store before this session's
         * last write must not put its stale copy in the table: it reads again */
        atomic_fetch_add(out_gen(s, ss->id.bytes), 1);
        evict = 1;
    }
    pthread_mutex_unlock(&s->tlock);
    if (evict) {
        session_free(ss);
    }
}

/* ---- public API ---- */

int tether_server_create(const tether_server_config *cfg, tether_server **out)
{
    tether_server *s;
    tether__tp_cfg tc;
    tether__store *inner = NULL;
    int rc;

    if (!out) {
        return tether__fail(TETHER_EINVAL, "out is NULL");
    }
    *out = NULL;
    if (!cfg) {
        return tether__fail(TETHER_EINVAL, "cfg is NULL");
    }
    s = tether__calloc(1, sizeof *s);
    if (!s) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    s->cfg = *cfg;
    rc = tether__srv_check_config(&s->cfg);
    if (rc == TETHER_OK) {
        rc = tether__engine_cfg_fill(&s->ecfg, TETHER__ROLE_SERVER, cfg->max_message_bytes,
                                     cfg->window_messages, cfg->ack_every, cfg->ack_delay_ms,
                                     cfg->outbox_max_messages, cfg->outbox_max_bytes,
                                     cfg->manual_ack, SESSION_QUEUE_BYTES);
        /* FULL: DATA frames handled in one service-loop turn share one cursor fsync;
         * otherwise the cursor is committed only when an ACK needs it (recv_lazy,
         * docs/decisions.md), on the delivery thread */
        s->ecfg.recv_lazy = cfg->durability != TETHER_DURABILITY_FULL && !cfg->manual_ack;
        s->ecfg.recv_group = cfg->durability == TETHER_DURABILITY_FULL || s->ecfg.recv_lazy;
    }
    if (rc == TETHER_OK) {
        rc = tether__srv_copy_strings(s);
    }
    if (rc != TETHER_OK) {
        tether__free(s->strs);
        tether__free(s->origins);
        tether__free(s);
        return rc;
    }
    s->host = tether__strdup(s->cfg.listen_host);
    s->db_path = cfg->db_path ? tether__strdup(cfg->db_path) : NULL;
    if (!s->host || (cfg->db_path && !s->db_path)) {
        rc = tether__fail(TETHER_ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg->www_dir && (rc = tether__tp_www_resolve(cfg->www_dir, &s->www)) != TETHER_OK) {
        goto fail;
    }
    if (cfg->http_cors_headers && (rc = tether__srv_cors_headers(s, cfg->http_cors_headers)) != TETHER_OK) {
        goto fail;
    }
    s->cfg.http_cors_headers = NULL; /* the caller's array; s->cors_headers holds the names */
    s->cfg.www_dir = s->www;
    s->cfg.listen_host = s->host;
    s->cfg.db_path = s->db_path;
    if (s->db_path && tether__store_pg_is_uri(s->db_path)) {
        /* a PostgreSQL URI (docs/config.md); messages never show its password */
        char err[512] = "";
        rc = tether__store_pg_open(s->db_path, TETHER__ROLE_SERVER, s->cfg.durability, &inner, err,
                                   sizeof err);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot open the PostgreSQL store: %s", err); /* err names the server */
            goto fail;
        }
    } else if (s->db_path) {
        char err[512] = "";
        rc = tether__store_sqlite_open(s->db_path, TETHER__ROLE_SERVER, s->cfg.durability,
                                       &inner, err, sizeof err);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot open the store %s: %s", s->db_path, err);
            goto fail;
        }
    } else if ((rc = tether__store_memory_open(TETHER__ROLE_SERVER, &inner)) != TETHER_OK) {
        tether__fail(rc, "cannot create the memory store");
        goto fail;
    }
    if ((rc = tether__srv_store_wrap(inner, &s->store)) != TETHER_OK) {
        inner->ops->close(inner);
        tether__fail(rc, "out of memory");
        goto fail;
    }
    if ((rc = tether__srv_admin_init(s)) != TETHER_OK) {
        goto fail;
    }
    s->nbuckets = TABLE_MIN_BUCKETS;
    s->table = tether__calloc(s->nbuckets, sizeof *s->table);
    if (!s->table || tether__tw_init(&s->wheel, TICK_MS, WHEEL_SLOTS, tether__now_ms()) != 0) {
        rc = tether__fail(TETHER_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = tether__decoder_init(&s->dec, s->ecfg.max_message)) != TETHER_OK) {
        tether__fail(rc, "out of memory");
        goto fail;
    }
    tether__buf_init(&s->out, tether__tp_headroom());
    pthread_mutex_init(&s->tlock, NULL);
    pthread_mutex_init(&s->plock, NULL);
    pthread_cond_init(&s->pcond, NULL);

    memset(&tc, 0, sizeof tc);
    tc.listen_host = s->host;
    tc.listen_port = s->cfg.port;
    tc.max_rx = s->ecfg.max_message + 1024;
    tc.rx_buffer = s->cfg.rx_buffer_bytes;
    tc.ping_interval_ms = s->cfg.ping_interval_ms;
    tc.pong_timeout_ms = s->cfg.pong_timeout_ms;
    tc.connect_timeout_ms = s->cfg.handshake_timeout_ms;
    tc.tls_server_cert = s->cfg.tls_cert_file;
    tc.tls_server_key = s->cfg.tls_key_file;
    tc.tls_client_ca = s->cfg.tls_client_ca_file;
    tc.stats = &s->admin.stats;
    tc.http_get = s->cfg.metrics_http ? tether__srv_metrics_http : NULL;
    tc.allowed_origins = s->cfg.allowed_origins;
    tc.carriage_hold_ms = s->cfg.http_poll_hold_ms;
    tc.carriage_idle_ms = s->cfg.http_idle_ms;
    tc.www_root = s->www;
    tc.cors_headers = s->cors_headers;
    rc = tether__tp_create(&tc, &tether__server_tp_cb, s, &s->tp);
    if (rc == TETHER_OK && (rc = tether__srv_pool_start(s)) != TETHER_OK) {
        tether__tp_destroy(s->tp);
    }
    if (rc != TETHER_OK) {
        pthread_mutex_destroy(&s->tlock);
        pthread_mutex_destroy(&s->plock);
        pthread_cond_destroy(&s->pcond);
        tether__decoder_free(&s->dec);
        tether__buf_free(&s->out);
        goto fail;
    }
    *out = s;
    return TETHER_OK;

fail:
    tether__srv_admin_free(s);
    if (s->store) {
        s->store->ops->close(s->store);
    }
    tether__free(s->table);
    tether__tw_free(&s->wheel);
    tether__free(s->host);
    tether__free(s->www);
    tether__free(s->cors_headers);
    tether__free(s->db_path);
    tether__free(s->strs);
    tether__free(s->origins);
    tether__free(s);
    return rc;
}


uint16_t tether_server_port(tether_server *s)
{
    return s ? (uint16_t)tether__tp_port(s->tp) : 0;
}

int tether_server_start(tether_server *s)
{
    if (!s) {
        return tether__fail(TETHER_EINVAL, "server is NULL");
    }
    if (s->started) {
        return tether__fail(TETHER_EINVAL, "the server is already started");
    }
    int rc = tether__tp_start(s->tp);
    if (rc == TETHER_OK) {
        s->started = 1;
        rc = tether__srv_admin_start(s); /* the expiry sweep's thread */
    }
    if (rc == TETHER_OK) {
        rc = tether__srv_lease_start(s); /* PostgreSQL: the leases' renewal */
    }
    return rc;
}

int tether_server_send_batch(tether_server *s, const tether_session_id *id,
                             const tether_msg *msgs, size_t n, uint64_t *first_seq)
{
    srv_session *ss;
    int rc;
    if (!s || !id || (!msgs && n) || n == 0) {
        return tether__fail(TETHER_EINVAL, "server, id or messages missing");
    }
    /* a delivery thread's callback may still send while the server drains
       (destroy runs what is queued before it closes the store): a reply
       sent from on_message is stored, as the message it answers is */
    if (atomic_load(&s->stopping) && !tether__srv_on_pool(s)) {
        return tether__fail(TETHER_ECLOSED, "the server is shutting down");
    }
    rc = tether__srv_get_live(s, id->bytes, &ss);
    if (rc != TETHER_OK) {
        return rc;
    }
    rc = tether__engine_send(ss->engine, msgs, n, first_seq);
    if (rc != TETHER_OK) {
        tether__fail(rc, "send failed: %s", tether_strerror(rc));
    } else {
        tether__srv_stat(s, TETHER__ST_SENT, n);
    }
    /* back-pressure is reported on the session's delivery thread */
    int bp = tether__bp_after_send(&ss->bp, ss->engine, s->ecfg.window, rc);
    int live = rc == TETHER_OK && ss->wconn != NULL;
    tether__srv_unlock(s, ss);
    if (bp) {
        srv_work *w = tether__srv_work_new(W_BP, NULL, NULL, 0);
        if (w) {
            tether__srv_post(s, ss, w);
        }
    }
    if (live) {
        tether__srv_wake(s, ss);
    } else if (rc == TETHER_OK) {
        /* another instance may serve it: a wake-up (PostgreSQL; a hint only) */
        (void)s->store->ops->wake(s->store, id->bytes);
    }
    tether__srv_unref(s, ss);
    return rc;
}

int tether_server_send(tether_server *s, const tether_session_id *id, const void *data,
                       size_t len, uint64_t *seq)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    return tether_server_send_batch(s, id, &m, 1, seq);
}

int tether_server_ack(tether_server *s, const tether_session_id *id, uint64_t seq)
{
    srv_session *ss;
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    int rc = tether__srv_get_live(s, id->bytes, &ss);
    if (rc != TETHER_OK) {
        return rc;
    }
    rc = tether__engine_ack(ss->engine, seq, tether__now_ms());
    int live = rc == TETHER_OK && ss->wconn != NULL;
    tether__srv_unlock(s, ss);
    if (live) {
        tether__srv_wake(s, ss);
    }
    tether__srv_unref(s, ss);
    return rc;
}

int tether_server_acked(tether_server *s, const tether_session_id *id, uint64_t *seq)
{
    srv_session *ss;
    if (!s || !id || !seq) {
        return tether__fail(TETHER_EINVAL, "server, id or seq is NULL");
    }
    int rc = tether__srv_get_live(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        *seq = tether__engine_rec(ss->engine)->peer_acked;
        tether__srv_unlock(s, ss);
        tether__srv_unref(s, ss);
    }
    return rc;
}

int tether_server_pending(tether_server *s, const tether_session_id *id, uint64_t *count,
                          uint64_t *bytes)
{
    srv_session *ss;
    uint64_t n = 0, b = 0;
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    int rc = tether__srv_get_live(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        tether__engine_pending(ss->engine, &n, &b);
        tether__srv_unlock(s, ss);
        tether__srv_unref(s, ss);
    }
    if (count) {
        *count = n;
    }
    if (bytes) {
        *bytes = b;
    }
    return rc;
}

int tether_server_connected(tether_server *s, uint32_t *count)
{
    if (!s || !count) {
        return tether__fail(TETHER_EINVAL, "server or count is NULL");
    }
    *count = atomic_load(&s->connected);
    return TETHER_OK;
}

/* Asks every connected session to say BYE(SHUTDOWN); returns how many. */
static int say_bye(tether_server *s)
{
    int live = 0;
    size_t n = 0;
    pthread_mutex_lock(&s->tlock);
    srv_session **all = tether__malloc((s->nsessions + 1) * sizeof *all);
    for (size_t b = 0; all && b < s->nbuckets; b++) {
        for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
            atomic_fetch_add(&ss->refs, 1);
            all[n++] = ss;
        }
    }
    pthread_mutex_unlock(&s->tlock);
    for (size_t i = 0; i < n; i++) {
        srv_session *ss = all[i];
        tether__srv_lock(ss);
        int bye = ss->wconn && !tether__engine_close_event(ss->engine, NULL);
        if (bye) {
            tether__engine_close(ss->engine, TETHER_ECLOSED, TETHER_REJECT_SHUTDOWN,
                                 "server shutting down");
            live++;
        }
        tether__srv_unlock(s, ss);
        if (bye) {
            tether__srv_wake(s, ss);
        }
        tether__srv_unref(s, ss);
    }
    tether__free(all);
    return live;
}

void tether_server_destroy(tether_server *s)
{
    if (!s) {
        return;
    }
    if (tether__tp_on_service_thread(s->tp) || tether__srv_on_pool(s)) {
        tether__fail(TETHER_EINVAL, "tether_server_destroy() called from a callback of the same "
                                    "server: ignored, destroy it from another thread");
        return;
    }
    atomic_store(&s->stopping, 1);
    if (s->store) {
        /* a database that does not answer no longer holds the shutdown up */
        tether__srv_store_closing(s->store);
    }
    tether__srv_admin_stop(s); /* no expiry from here on */
    tether__srv_lease_stop(s);
    if (s->started && say_bye(s) > 0) {
        /* let the BYEs go out: bounded, the clients will resume anyway */
        for (int i = 0; i < SHUTDOWN_WAIT_MS / 5 && atomic_load(&s->connected) > 0; i++) {
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* joins the service thread; connections still open are closed from here
     * and their sessions' last work goes to the delivery threads */
    pthread_mutex_lock(&s->plock);
    s->tp_gone = 1; /* from here the delivery threads' last work wakes nothing */
    pthread_mutex_unlock(&s->plock);
    tether__tp_destroy(s->tp);
    tether__srv_pool_stop(s); /* runs what is queued, then joins */
    /* sessions on the wake list were left by the service thread */
    for (srv_session *ss = s->dirty; ss;) {
        srv_session *next = ss->next_dirty;
        ss->dirty = 0;
        tether__srv_unref(s, ss);
        ss = next;
    }
    s->dirty = NULL;
    for (size_t b = 0; b < s->nbuckets; b++) {
        srv_session *ss = s->table[b];
        while (ss) {
            srv_session *next = ss->next;
            session_free(ss);
            ss = next;
        }
    }
    tether__free(s->table);
    tether__tw_free(&s->wheel);
    tether__decoder_free(&s->dec);
    tether__buf_free(&s->out);
    s->store->ops->close(s->store);
    tether__srv_admin_free(s);
    pthread_mutex_destroy(&s->tlock);
    pthread_mutex_destroy(&s->plock);
    pthread_cond_destroy(&s->pcond);
    tether__free(s->host);
    tether__free(s->www);
    tether__free(s->cors_headers);
    tether__free(s->db_path);
    tether__free(s->strs);
    tether__free(s->origins);
    tether__free(s);
}

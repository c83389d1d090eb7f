/*
 * The tether server object: sessions by id, each with its own engine and
 * outbox, and the public server API. Connections, HELLO and admission are in
 * server_conn.c.
 *
 * Locking: s->lock (recursive) guards the session table and every engine; the
 * service thread takes it in each transport callback, application threads in
 * each API call. Engines of offline sessions stay loaded, so a send to an
 * offline session only touches the store and memory.
 */
#include <errno.h>

#include "server_int.h"
#include "common/alloc.h"

/* ---- engine events ---- */

static tether_server *srv_of(srv_session *ss);

static void ev_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    tether__srv_stat(s, TETHER__ST_DELIVERED, 1);
    tether__srv_stat(s, TETHER__ST_REDELIVERED, redelivered != 0);
    if (s->cfg.cb.on_message) {
        s->cfg.cb.on_message(s, &ss->id, seq, data, len, redelivered, s->cfg.user);
    }
}

static void ev_acked(void *arg, uint64_t first, uint64_t last)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    tether__srv_stat(s, TETHER__ST_ACKED, last - first + 1);
    if (s->cfg.cb.on_acked) {
        s->cfg.cb.on_acked(s, &ss->id, first, last, s->cfg.user);
    }
    tether__srv_bp_update(s, ss);
}

void tether__srv_bp_update(tether_server *s, srv_session *ss)
{
    tether_backpressure_info bi[2];
    int n = tether__bp_update(&ss->bp, ss->engine, s->ecfg.window, s->cfg.outbox_max_messages,
                              s->cfg.outbox_max_bytes, bi);
    for (int i = 0; i < n && s->cfg.cb.on_backpressure; i++) {
        s->cfg.cb.on_backpressure(s, &ss->id, &bi[i], s->cfg.user);
    }
}

static void ev_mismatch(void *arg, const tether_mismatch_info *info)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    if (s->cfg.cb.on_mismatch) {
        s->cfg.cb.on_mismatch(s, info, s->cfg.user);
    }
}


static tether_server *srv_of(srv_session *ss)
{
    return ((srv_session_alloc *)ss)->srv;
}

/* ---- the session table (lock held) ---- */

srv_session *tether__srv_find(tether_server *s, const uint8_t id[16])
{
    for (srv_session *ss = s->table[bucket(id)]; ss; ss = ss->next) {
        if (memcmp(ss->id.bytes, id, 16) == 0) {
            return ss;
        }
    }
    return NULL;
}

int tether__srv_add_session(tether_server *s, const tether__session_rec *rec, srv_session **out)
{
    srv_session_alloc *a = tether__calloc(1, sizeof *a);
    if (!a) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    a->srv = s;
    memcpy(a->sess.id.bytes, rec->id, 16);
    tether__engine_cb cb = {ev_message, ev_acked, ev_mismatch, &a->sess};
    int rc = tether__engine_create(&s->ecfg, s->store, rec, &cb, &a->sess.engine);
    if (rc != TETHER_OK) {
        tether__free(a);
        return rc;
    }
    unsigned b = bucket(rec->id);
    a->sess.next = s->table[b];
    s->table[b] = &a->sess;
    *out = &a->sess;
    tether__srv_admin_added(s, &a->sess);
    return TETHER_OK;
}

/* Finds a session in memory or loads it from the store: TETHER_OK, TETHER_ENOTFOUND, error. */
int tether__srv_lookup(tether_server *s, const uint8_t id[16], srv_session **out)
{
    tether__session_rec rec;
    *out = tether__srv_find(s, id);
    if (*out) {
        return TETHER_OK;
    }
    int rc = s->store->ops->session_get(s->store, id, &rec);
    if (rc == TETHER_ENOTFOUND) {
        return tether__fail(rc, "no such session");
    }
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot read the session: %s", s->store->ops->errmsg(s->store));
    }
    rc = tether__srv_add_session(s, &rec, out);
    if (rc == TETHER_OK) {
        tether__srv_admin_loaded(s, *out);
    }
    return rc;
}

void tether__srv_mark_dirty(tether_server *s, srv_session *ss)
{
    if (!ss->dirty) {
        ss->dirty = 1;
        ss->next_dirty = s->dirty;
        s->dirty = ss;
    }
}

/* ---- public API ---- */

void tether_server_config_init(tether_server_config *cfg)
{
    if (cfg) {
        memset(cfg, 0, sizeof *cfg);
    }
}

static int check_config(tether_server_config *k)
{
    if (k->durability < TETHER_DURABILITY_DEFAULT || k->durability > TETHER_DURABILITY_FULL) {
        return tether__fail(TETHER_ECONFIG, "durability %d is not one of the tether_durability values",
                            (int)k->durability);
    }
    k->listen_host = k->listen_host && *k->listen_host ? k->listen_host : TETHER__DEFAULT_HOST;
    k->max_sessions = k->max_sessions ? k->max_sessions : TETHER__DEFAULT_MAX_SESSIONS;
    k->hello_timeout_ms = k->hello_timeout_ms ? k->hello_timeout_ms : TETHER__DEFAULT_HELLO_TIMEOUT_MS;
    k->ping_interval_ms = k->ping_interval_ms ? k->ping_interval_ms : TETHER__DEFAULT_PING_INTERVAL_MS;
    k->pong_timeout_ms = k->pong_timeout_ms ? k->pong_timeout_ms : TETHER__DEFAULT_PONG_TIMEOUT_MS;
    if (k->ping_interval_ms < 1000 || k->pong_timeout_ms < 1000) {
        return tether__fail(TETHER_ECONFIG,
                            "ping_interval_ms and pong_timeout_ms must be at least 1000");
    }
    if (k->session_idle_expiry_ms && k->session_idle_expiry_ms < 1000) {
        return tether__fail(TETHER_ECONFIG, "session_idle_expiry_ms must be 0 (never) or at "
                                            "least 1000 (the sweep runs at most once a second)");
    }
    k->metrics_http = k->metrics_http != 0;
    k->max_pending_handshakes = k->max_pending_handshakes ? k->max_pending_handshakes
                                                          : TETHER__DEFAULT_MAX_PENDING_HANDSHAKES;
    k->handshake_timeout_ms =
        k->handshake_timeout_ms ? k->handshake_timeout_ms : TETHER__DEFAULT_HANDSHAKE_TIMEOUT_MS;
    k->busy_retry_after_s =
        k->busy_retry_after_s ? k->busy_retry_after_s : TETHER__DEFAULT_BUSY_RETRY_AFTER_S;
    const char *const files[][2] = {{"tls_cert_file", k->tls_cert_file},
                                    {"tls_key_file", k->tls_key_file},
                                    {"tls_client_ca_file", k->tls_client_ca_file}};
    int rc = tether__check_readable(files, 3);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (!k->tls_cert_file != !k->tls_key_file ||
        (k->tls_client_ca_file && !k->tls_cert_file)) {
        return tether__fail(TETHER_ECONFIG, "tls_cert_file and tls_key_file go together, and "
                                            "tls_client_ca_file needs them");
    }
    for (const char *const *o = k->allowed_origins; o && *o; o++) {
        if (!**o || strpbrk(*o, "\r\n")) {
            return tether__fail(TETHER_ECONFIG, "allowed_origins holds an empty or multi-line entry");
        }
    }
    return TETHER_OK;
}

/* Copies the TLS file names and the Origin allow-list into s->strs. */
static int copy_strings(tether_server *s)
{
    const char **fields[] = {&s->cfg.tls_cert_file, &s->cfg.tls_key_file,
                             &s->cfg.tls_client_ca_file};
    return tether__copy_strings(fields, 3, &s->cfg.allowed_origins, &s->strs, &s->origins);
}

int tether_server_create(const tether_server_config *cfg, tether_server **out)
{
    tether_server *s;
    pthread_mutexattr_t ma;
    tether__tp_cfg tc;
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
    rc = check_config(&s->cfg);
    if (rc == TETHER_OK) {
        rc = tether__engine_cfg_fill(&s->ecfg, TETHER__ROLE_SERVER, cfg->max_message_bytes,
                                     cfg->window_messages, cfg->ack_every, cfg->ack_delay_ms,
                                     cfg->outbox_max_messages, cfg->outbox_max_bytes,
                                     cfg->manual_ack, SESSION_QUEUE_BYTES);
        /* FULL: DATA frames handled in one service-loop turn share one cursor fsync */
        s->ecfg.recv_group = cfg->durability == TETHER_DURABILITY_FULL;
    }
    if (rc == TETHER_OK) {
        rc = copy_strings(s);
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
    s->cfg.listen_host = s->host;
    s->cfg.db_path = s->db_path;
    if (s->db_path) {
        char err[256] = "";
        rc = tether__store_sqlite_open(s->db_path, TETHER__ROLE_SERVER, s->cfg.durability,
                                       &s->store, err, sizeof err);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot open the store %s: %s", s->db_path, err);
            goto fail;
        }
    } else if ((rc = tether__store_memory_open(TETHER__ROLE_SERVER, &s->store)) != TETHER_OK) {
        tether__fail(rc, "cannot create the memory store");
        goto fail;
    }
    if ((rc = tether__srv_admin_init(s)) != TETHER_OK) {
        goto fail;
    }
    if ((rc = tether__decoder_init(&s->dec, s->ecfg.max_message)) != TETHER_OK) {
        tether__fail(rc, "out of memory");
        goto fail;
    }
    tether__buf_init(&s->out, tether__tp_headroom());
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &ma);
    pthread_mutexattr_destroy(&ma);

    memset(&tc, 0, sizeof tc);
    tc.listen_host = s->host;
    tc.listen_port = s->cfg.port;
    tc.max_rx = s->ecfg.max_message + 1024;
    tc.ping_interval_ms = s->cfg.ping_interval_ms;
    tc.pong_timeout_ms = s->cfg.pong_timeout_ms;
    tc.connect_timeout_ms = s->cfg.handshake_timeout_ms;
    tc.tls_server_cert = s->cfg.tls_cert_file;
    tc.tls_server_key = s->cfg.tls_key_file;
    tc.tls_client_ca = s->cfg.tls_client_ca_file;
    tc.stats = &s->admin.stats;
    tc.http_get = s->cfg.metrics_http ? tether__srv_metrics_http : NULL;
    rc = tether__tp_create(&tc, &tether__server_tp_cb, s, &s->tp);
    if (rc != TETHER_OK) {
        pthread_mutex_destroy(&s->lock);
        tether__decoder_free(&s->dec);
        tether__buf_free(&s->out);
        goto fail;
    }
    *out = s;
    return TETHER_OK;

fail:
    if (s->store) {
        s->store->ops->close(s->store);
    }
    tether__free(s->host);
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
    lock(s);
    if (!s->started) {
        tether__srv_admin_start(s); /* before the service thread runs */
    }
    int rc = s->started ? tether__fail(TETHER_EINVAL, "the server is already started")
                        : tether__tp_start(s->tp);
    if (rc == TETHER_OK) {
        s->started = 1;
    }
    unlock(s);
    return rc;
}

int tether_server_send_batch(tether_server *s, const tether_session_id *id,
                             const tether_msg *msgs, size_t n, uint64_t *first_seq)
{
    srv_session *ss;
    int rc, live;
    if (!s || !id || (!msgs && n) || n == 0) {
        return tether__fail(TETHER_EINVAL, "server, id or messages missing");
    }
    lock(s);
    if (s->stopping) {
        unlock(s);
        return tether__fail(TETHER_ECLOSED, "the server is shutting down");
    }
    rc = tether__srv_lookup(s, id->bytes, &ss);
    int bp = 0;
    if (rc == TETHER_OK) {
        rc = tether__engine_send(ss->engine, msgs, n, first_seq);
        if (rc != TETHER_OK) {
            tether__fail(rc, "send failed: %s", tether_strerror(rc));
        } else {
            tether__srv_stat(s, TETHER__ST_SENT, n);
        }
        /* back-pressure is reported on the service thread */
        bp = tether__bp_after_send(&ss->bp, ss->engine, s->ecfg.window, rc);
    }
    live = (rc == TETHER_OK && ss->conn != NULL) || bp;
    if (live) {
        tether__srv_mark_dirty(s, ss);
    }
    unlock(s);
    if (live) {
        tether__tp_wake(s->tp);
    }
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
    lock(s);
    int rc = tether__srv_lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        rc = tether__engine_ack(ss->engine, seq, tether__now_ms());
        if (rc == TETHER_OK && ss->conn) {
            tether__srv_mark_dirty(s, ss);
        }
    }
    unlock(s);
    if (rc == TETHER_OK) {
        tether__tp_wake(s->tp);
    }
    return rc;
}

int tether_server_acked(tether_server *s, const tether_session_id *id, uint64_t *seq)
{
    srv_session *ss;
    if (!s || !id || !seq) {
        return tether__fail(TETHER_EINVAL, "server, id or seq is NULL");
    }
    lock(s);
    int rc = tether__srv_lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        *seq = tether__engine_rec(ss->engine)->peer_acked;
    }
    unlock(s);
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
    lock(s);
    int rc = tether__srv_lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        tether__engine_pending(ss->engine, &n, &b);
    }
    unlock(s);
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
    lock(s);
    *count = s->connected;
    unlock(s);
    return TETHER_OK;
}

void tether_server_destroy(tether_server *s)
{
    if (!s) {
        return;
    }
    if (tether__tp_on_service_thread(s->tp)) {
        tether__fail(TETHER_EINVAL, "tether_server_destroy() called from a callback of the same "
                                    "server: ignored, destroy it from another thread");
        return;
    }
    lock(s);
    s->stopping = 1;
    int live = 0;
    if (s->started) {
        for (unsigned b = 0; b < BUCKETS; b++) {
            for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
                if (ss->conn && !tether__engine_close_event(ss->engine, NULL)) {
                    tether__engine_close(ss->engine, TETHER_ECLOSED, TETHER_REJECT_SHUTDOWN,
                                         "server shutting down");
                    tether__srv_mark_dirty(s, ss);
                    live++;
                }
            }
        }
    }
    unlock(s);
    if (live) {
        /* let the BYEs go out: bounded, the clients will resume anyway */
        tether__tp_wake(s->tp);
        for (int i = 0; i < SHUTDOWN_WAIT_MS / 5; i++) {
            uint32_t n;
            tether_server_connected(s, &n);
            if (n == 0) {
                break;
            }
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* joins the service thread; connections still open report closed from here */
    tether__tp_destroy(s->tp);
    for (unsigned b = 0; b < BUCKETS; b++) {
        srv_session *ss = s->table[b];
        while (ss) {
            srv_session *next = ss->next;
            tether__engine_destroy(ss->engine);
            tether__free(ss); /* the allocation starts with the session */
            ss = next;
        }
    }
    tether__decoder_free(&s->dec);
    tether__buf_free(&s->out);
    s->store->ops->close(s->store);
    pthread_mutex_destroy(&s->lock);
    tether__free(s->host);
    tether__free(s->db_path);
    tether__free(s->strs);
    tether__free(s->origins);
    tether__free(s);
}

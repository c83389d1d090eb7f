/*
 * The tether client object: configuration, the store, the session engine and
 * the public client API. The connection life is in client_conn.c.
 */
#include "client_int.h"
#include "common/alloc.h"

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
    if (k->urls) {
        size_t n = 0;
        if (k->url) {
            return tether__fail(TETHER_ECONFIG, "set url or urls, not both");
        }
        for (; k->urls[n]; n++) {
            if (n == TETHER__MAX_URLS) {
                return tether__fail(TETHER_ECONFIG, "urls holds more than %d urls",
                                    TETHER__MAX_URLS);
            }
            int rc = tether__tp_check_url(k->urls[n]);
            if (rc != TETHER_OK) {
                return rc;
            }
        }
        if (n == 0) {
            return tether__fail(TETHER_ECONFIG, "urls is empty");
        }
        k->url = k->urls[0]; /* the first url decides the proxy from the environment */
    }
    int rc = tether__tp_check_url(k->url);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (k->db_path && tether__store_pg_is_uri(k->db_path)) {
        /* not opened as a SQLite file of that name; the URI is not echoed (a password) */
        return tether__fail(TETHER_ECONFIG,
                            "db_path is a PostgreSQL URI: a client keeps its store in a SQLite "
                            "file (or in memory); the PostgreSQL store is a server's");
    }
    /* Checked with the memory store too, where it is unused (as durability
     * is): one config may serve a test in memory and a run on a file. */
    if (k->store_page_size && !tether__store_page_size_ok(k->store_page_size)) {
        return tether__fail(TETHER_ECONFIG,
                            "store_page_size %u is not a SQLite page size: 0 (SQLite's default) "
                            "or a power of two from %u to %u",
                            k->store_page_size, TETHER__PAGE_SIZE_MIN, TETHER__PAGE_SIZE_MAX);
    }
    if (k->durability < TETHER_DURABILITY_DEFAULT || k->durability > TETHER_DURABILITY_FULL) {
        return tether__fail(TETHER_ECONFIG, "durability %d is not one of the tether_durability values",
                            (int)k->durability);
    }
    if (k->transport < TETHER_TRANSPORT_AUTO || k->transport > TETHER_TRANSPORT_HTTP) {
        return tether__fail(TETHER_ECONFIG,
                            "transport %d is not one of the tether_transport_mode values (AUTO 0, "
                            "WEBSOCKET 1, HTTP 2)",
                            (int)k->transport);
    }
    k->fallback_memory_ms =
        k->fallback_memory_ms ? k->fallback_memory_ms : TETHER__DEFAULT_FALLBACK_MEMORY_MS;
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
    if ((rc = tether__client_send_check(k)) != TETHER_OK) {
        return rc;
    }
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
    return tether__copy_strings(fields, sizeof fields / sizeof fields[0], &c->cfg.headers,
                                &c->strs, &c->headers);
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
    const char *const files[][2] = {{"tls_ca_file", k->tls_ca_file},
                                    {"tls_cert_file", k->tls_cert_file},
                                    {"tls_key_file", k->tls_key_file}};
    int rc = tether__check_readable(files, 3);
    if (rc != TETHER_OK) {
        return rc;
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

/* Owned copies of the url list (or of url alone) into c->url_list; the first, or NULL. */
static char *copy_urls(tether_client *c)
{
    const char *one[2] = {c->cfg.url, NULL};
    const char *const *v = c->cfg.urls ? c->cfg.urls : one;
    size_t n = 0;
    while (v[n]) {
        n++;
    }
    c->url_list = tether__calloc(n, sizeof *c->url_list);
    if (!c->url_list) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(c->url_list[i] = tether__strdup(v[i]))) {
            return NULL;
        }
        c->nurls = i + 1;
    }
    return c->url_list[0];
}

static void free_urls(tether_client *c)
{
    for (size_t i = 0; i < c->nurls; i++) {
        tether__free(c->url_list[i]);
    }
    tether__free(c->url_list);
    c->url_list = NULL;
    c->nurls = 0;
    c->url = NULL;
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
    c = tether__calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->cfg = *cfg;
    if ((rc = check_config(&c->cfg)) != TETHER_OK || (rc = copy_strings(c)) != TETHER_OK ||
        (rc = choose_proxy(c)) != TETHER_OK) {
        tether__free(c->strs);
        tether__free(c->headers);
        tether__free(c);
        return rc;
    }
    if (c->cfg.tls_insecure_skip_verify) {
        fprintf(stderr, "tether: WARNING: tls_insecure_skip_verify is set for %s: the server's "
                        "certificate is NOT checked, so anyone on the path can read and change "
                        "this connection. Never use it in production.\n",
                c->cfg.url);
    }
    rc = tether__engine_cfg_fill(&c->ecfg, TETHER__ROLE_CLIENT, cfg->max_message_bytes,
                                 cfg->window_messages, cfg->ack_every, cfg->ack_delay_ms,
                                 cfg->outbox_max_messages, cfg->outbox_max_bytes, cfg->manual_ack,
                                 CLIENT_QUEUE_BYTES);
    /* on_message runs after the engine call, outside the lock (client_events.c): the
     * cursor is committed with the next write, after the callbacks ran; DATA frames
     * handled in one service-loop turn share that commit (one fsync under FULL) */
    c->ecfg.recv_group = 1;
    c->ecfg.defer_delivery = 1;
    if (rc != TETHER_OK) {
        tether__free(c->strs);
        tether__free(c->headers);
        tether__free(c);
        return rc;
    }
    c->url = copy_urls(c);
    c->db_path = cfg->db_path ? tether__strdup(cfg->db_path) : NULL;
    if (!c->url || (cfg->db_path && !c->db_path)) {
        free_urls(c);
        tether__free(c->db_path);
        tether__free(c->strs);
        tether__free(c->headers);
        tether__free(c);
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->cfg.url = c->url;
    c->cfg.urls = NULL; /* the list is c->url_list */
    c->cfg.db_path = c->db_path;

    if (c->db_path) {
        char err[512] = "";
        tether__sqlite_opts so = {
            .flags = c->cfg.store_shared ? 0 : TETHER__SQLITE_EXCLUSIVE,
            .page_size = c->cfg.store_page_size,
        };
        rc = tether__store_sqlite_open_opts(c->db_path, TETHER__ROLE_CLIENT, c->cfg.durability, &so,
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
        rc = tether__client_make_engine(c, &rec);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot start the session engine: %s",
                         c->store->ops->errmsg(c->store));
        }
    }
    if (rc != TETHER_OK) {
        if (c->store) {
            c->store->ops->close(c->store);
        }
        free_urls(c);
        tether__free(c->db_path);
        tether__free(c->strs);
        tether__free(c->headers);
        tether__free(c);
        return rc;
    }

    uint64_t seed = c->cfg.random_seed;
    if (!seed && tether__random(&seed, sizeof seed) != TETHER_OK) {
        seed = tether__now_ms() ^ (uint64_t)(uintptr_t)c;
    }
    tether__backoff_init(&c->backoff, c->cfg.backoff_base_ms, c->cfg.backoff_cap_ms,
                         c->cfg.backoff_max_attempts, seed);
    tether__buf_init(&c->out, tether__tp_headroom());
    tether__buf_init(&c->probe_out, tether__tp_headroom());
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
    tether__fb_init(&c->fb, c->cfg.transport, c->cfg.fallback_memory_ms);
    tether__client_verdict_load(c);
    atomic_store(&c->transport_now, c->fb.http ? TETHER_TRANSPORT_HTTP : TETHER_TRANSPORT_WEBSOCKET);
    c->last.transport = atomic_load(&c->transport_now);
    if ((rc = tether__client_sendq_init(c)) != TETHER_OK) {
        tether__engine_destroy(c->engine);
        c->store->ops->close(c->store);
        tether__buf_free(&c->out);
    tether__buf_free(&c->probe_out);
        tether__buf_free(&c->probe_out);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free_urls(c);
        tether__free(c->db_path);
        tether__free(c->strs);
        tether__free(c->headers);
        tether__free(c);
        return rc;
    }
    *out = c;
    return TETHER_OK;
}

/* The service thread's wake, wrapped: clears wake_pending first, so a send
 * after this point wakes the thread again. */
static void on_wake(void *owner)
{
    tether_client *c = owner;
    atomic_store(&c->wake_pending, 0);
    tether__client_tp_cb.wake(owner);
}

int tether_client_start(tether_client *c)
{
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
    tc.stats = &c->stats;
    c->tp_cb = tether__client_tp_cb;
    c->tp_cb.wake = on_wake;
    rc = tether__tp_create(&tc, &c->tp_cb, c, &c->tp);
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

int tether_client_transport(tether_client *c)
{
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    return atomic_load(&c->transport_now);
}

static void wake(tether_client *c)
{
    tether__client_wake(c);
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
    *seq = tether__client_next_seq_locked(c);
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
    if (tether__tp_on_service_thread(c->tp)) {
        return tether__fail(TETHER_EINVAL, "tether_client_wait_acked() called from a callback of "
                                           "the same client: the acks come from this thread");
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
    rc = tether__client_reset_session_locked(c);
    if (rc == TETHER_OK) {
        /* nothing waits for a commit: new seqs follow the new session at once */
        pthread_mutex_lock(&c->sq.mu);
        if (c->sq.inflight_n == 0) {
            c->sq.next_seq = tether__engine_rec(c->engine)->out_last + 1;
        }
        pthread_mutex_unlock(&c->sq.mu);
    }
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
    if (tether__tp_on_service_thread(c->tp)) {
        tether__fail(TETHER_EINVAL, "tether_client_destroy() called from a callback of the same "
                                    "client: ignored, destroy it from another thread");
        return;
    }
    tether__client_sendq_close(c);
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
    tether__buf_free(&c->probe_out);
    tether__client_sendq_free(c);
    tether__client_evq_free(c);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free_urls(c);
    tether__free(c->db_path);
    tether__free(c->strs);
    tether__free(c->headers);
    tether__free(c);
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

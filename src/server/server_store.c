/*
 * The server's store, shared by every session's thread: the real store
 * (SQLite or memory, which are used by one thread at a time) behind one
 * mutex held for the duration of each operation only. Sessions no longer
 * wait for each other's callbacks, only for each other's store operations;
 * SQLite has one writer anyway (docs/decisions.md).
 */
#include "server_int.h"
#include "common/alloc.h"

typedef struct locked_store {
    tether__store base;   /* must come first: what callers hold */
    tether__store *inner; /* the real store, owned */
    pthread_mutex_t mu;   /* held during each inner operation */
} locked_store;

/* The failing operation's message, copied before the lock is released. */
static _Thread_local char last_err[256];

#define INNER(st) (((locked_store *)(st))->inner)
#define MU(st) (&((locked_store *)(st))->mu)

static int done(tether__store *st, int rc)
{
    if (rc != TETHER_OK && rc != TETHER_ENOTFOUND) {
        snprintf(last_err, sizeof last_err, "%s", INNER(st)->ops->errmsg(INNER(st)));
    }
    pthread_mutex_unlock(MU(st));
    return rc;
}

static int l_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->session_get(INNER(st), id, out));
}

static int l_put(tether__store *st, const tether__session_rec *rec)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->session_put(INNER(st), rec));
}

static int l_delete(tether__store *st, const uint8_t id[16])
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->session_delete(INNER(st), id));
}

static int l_list(tether__store *st, tether__list_cb cb, void *arg)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->session_list(INNER(st), cb, arg));
}

static int l_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->append(INNER(st), id, msgs, n, max_count, max_bytes, first_seq));
}

static int l_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->load(INNER(st), id, from_seq, max_count, cb, arg));
}

static int l_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->ack(INNER(st), id, seq));
}

static int l_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->set_cursor(INNER(st), id, cursor));
}

static int l_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->pending(INNER(st), id, count, bytes));
}

static int l_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *rec,
                    uint64_t skip)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->rebase(INNER(st), old_id, rec, skip));
}

static const char *l_errmsg(tether__store *st)
{
    (void)st;
    return last_err;
}

static void l_close(tether__store *st)
{
    INNER(st)->ops->close(INNER(st));
    pthread_mutex_destroy(MU(st));
    tether__free(st);
}

static int l_inspect(tether__store *st, unsigned flags, tether__store_info *out)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->inspect(INNER(st), flags, out));
}

static int l_verdict_get(tether__store *st, const char *key, tether__verdict *out)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->verdict_get(INNER(st), key, out));
}

static int l_verdict_put(tether__store *st, const char *key, const tether__verdict *v)
{
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->verdict_put(INNER(st), key, v));
}

/* Leases: an inner store without them (a test's) serves one instance. */
static int l_lease_take(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale)
{
    if (!INNER(st)->ops->lease_take) {
        return tether__lease_single_take(st, id, ttl_ms, stale);
    }
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->lease_take(INNER(st), id, ttl_ms, stale));
}

static int l_lease_release(tether__store *st, const uint8_t id[16])
{
    if (!INNER(st)->ops->lease_release) {
        return tether__lease_single_release(st, id);
    }
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->lease_release(INNER(st), id));
}

static int l_lease_renew(tether__store *st, uint32_t ttl_ms,
                         void (*lost)(void *arg, const uint8_t id[16]),
                         void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                         void *arg)
{
    if (!INNER(st)->ops->lease_renew) {
        return tether__lease_single_renew(st, ttl_ms, lost, kept, arg);
    }
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->lease_renew(INNER(st), ttl_ms, lost, kept, arg));
}

static int l_wake(tether__store *st, const uint8_t id[16])
{
    if (!INNER(st)->ops->wake) {
        return tether__wake_single(st, id);
    }
    pthread_mutex_lock(MU(st));
    return done(st, INNER(st)->ops->wake(INNER(st), id));
}

/* Not under the lock: it waits on a connection of its own, for a long time. */
static int l_wait_wakes(tether__store *st, uint32_t timeout_ms,
                        void (*cb)(void *arg, const uint8_t id[16]), void *arg)
{
    if (!INNER(st)->ops->wait_wakes) {
        return tether__wait_wakes_single(st, timeout_ms, cb, arg);
    }
    return INNER(st)->ops->wait_wakes(INNER(st), timeout_ms, cb, arg);
}

static const tether__store_ops locked_ops = {
    .session_get = l_get,
    .session_put = l_put,
    .session_delete = l_delete,
    .session_list = l_list,
    .append = l_append,
    .load = l_load,
    .ack = l_ack,
    .set_cursor = l_cursor,
    .pending = l_pending,
    .rebase = l_rebase,
    .errmsg = l_errmsg,
    .close = l_close,
    .inspect = l_inspect,
    .lease_take = l_lease_take,
    .lease_release = l_lease_release,
    .lease_renew = l_lease_renew,
    .wake = l_wake,
    .wait_wakes = l_wait_wakes,
    .verdict_get = l_verdict_get,
    .verdict_put = l_verdict_put,
};

void tether__srv_store_closing(tether__store *st)
{
    tether__store_pg_closing(INNER(st)); /* an atomic flag: the lock may be held meanwhile */
}

int tether__srv_store_wrap(tether__store *inner, tether__store **out)
{
    locked_store *ls = tether__calloc(1, sizeof *ls);
    if (!ls) {
        return TETHER_ENOMEM;
    }
    ls->base.ops = &locked_ops;
    ls->inner = inner;
    pthread_mutex_init(&ls->mu, NULL);
    *out = &ls->base;
    return TETHER_OK;
}

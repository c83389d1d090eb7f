/*
 * Session ownership among server instances that share a PostgreSQL store
 * (docs/guarantees.md, "A fleet of servers"; the store's side is
 * store_pg_lease.c).
 *
 * A session's delivery thread takes its lease when a connection's HELLO is
 * accepted, before the engine answers: a session a live instance serves is
 * refused (the connection closes, the client retries with its backoff). When
 * another instance may have served the session since this one last did, the
 * engine is made again from the store's record, so nothing stale (cursors,
 * out_last) is used. The last connection's end releases the lease, so the
 * client's next connection may land on any instance at once.
 *
 * A thread renews every lease this instance holds each lease_ms/3. A lease
 * another instance took meanwhile (this one was paused or cut off from the
 * database for longer than lease_ms) is lost: its session's connection is
 * closed through the session's delivery thread. Writes need no renewal to be
 * safe: each carries the lease's epoch and the store refuses it once another
 * instance took the session (TETHER_EFENCED, which closes the connection).
 *
 * SQLite and memory stores serve one instance: their leases are always
 * granted, and no renewal thread runs.
 */
#include "server_int.h"
#include "common/alloc.h"

int tether__srv_lease_take_locked(tether_server *s, srv_session *ss)
{
    int stale = 0;
    int rc = s->store->ops->lease_take(s->store, ss->id.bytes, s->cfg.lease_ms, &stale);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot take the session's lease: %s",
                            s->store->ops->errmsg(s->store));
    }
    if (stale && (rc = tether__srv_reload_locked(s, ss)) != TETHER_OK) {
        return tether__fail(rc, "cannot read the session again after another instance served "
                                "it: %s",
                            s->store->ops->errmsg(s->store));
    }
    return TETHER_OK;
}

void tether__srv_lease_release_locked(tether_server *s, srv_session *ss)
{
    /* a failure leaves the lease to lapse: another instance waits lease_ms at most */
    (void)s->store->ops->lease_release(s->store, ss->id.bytes);
}

/* Ids of the leases one renewal found lost. */
typedef struct lostlist {
    uint8_t (*id)[16]; /* the ids */
    size_t n, cap;     /* used, allocated */
} lostlist;

/* Called under the store's lock: only collects. */
static void on_lost(void *arg, const uint8_t id[16])
{
    lostlist *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *m = tether__realloc(l->id, cap * sizeof *l->id);
        if (!m) {
            return; /* this one's writes are still fenced; its connection closes at the next */
        }
        l->id = m;
        l->cap = cap;
    }
    memcpy(l->id[l->n++], id, 16);
}

/* Closes the connection of a session whose lease another instance took. */
static void drop(tether_server *s, const uint8_t id[16])
{
    srv_session *ss = tether__srv_find_ref(s, id);
    if (!ss) {
        return;
    }
    srv_conn *c = atomic_load(&ss->conn);
    srv_work *w = c ? tether__srv_work_new(W_FRAME, c, NULL, 0) : NULL;
    if (w) {
        /* the delivery thread closes it with BYE(STORE) as for a refused write */
        w->err = TETHER_EFENCED;
        tether__srv_post(s, ss, w);
    }
    tether__srv_unref(s, ss);
}

static void *renewer(void *arg)
{
    tether_server *s = arg;
    uint32_t period = s->cfg.lease_ms / 3;
    pthread_mutex_lock(&s->lmu);
    while (!s->lstop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(period / 1000);
        ts.tv_nsec += (long)(period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!s->lstop && pthread_cond_timedwait(&s->lcond, &s->lmu, &ts) == 0) {
        }
        if (s->lstop) {
            break;
        }
        pthread_mutex_unlock(&s->lmu);
        lostlist l = {NULL, 0, 0};
        /* a failure (the database away): the next period tries again; the
         * writes stay fenced meanwhile */
        (void)s->store->ops->lease_renew(s->store, s->cfg.lease_ms, on_lost, &l);
        for (size_t i = 0; i < l.n; i++) {
            drop(s, l.id[i]);
        }
        tether__free(l.id);
        pthread_mutex_lock(&s->lmu);
    }
    pthread_mutex_unlock(&s->lmu);
    return NULL;
}

int tether__srv_lease_start(tether_server *s)
{
    if (!tether__store_pg_is_uri(s->db_path) || s->lthread_on) {
        return TETHER_OK;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->lcond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->lmu, NULL);
    s->lstop = 0;
    if (pthread_create(&s->lthread, NULL, renewer, s) != 0) {
        pthread_cond_destroy(&s->lcond);
        pthread_mutex_destroy(&s->lmu);
        return tether__fail(TETHER_ESYS, "cannot start the lease renewal thread");
    }
    s->lthread_on = 1;
    return TETHER_OK;
}

void tether__srv_lease_stop(tether_server *s)
{
    if (!s->lthread_on) {
        return;
    }
    pthread_mutex_lock(&s->lmu);
    s->lstop = 1;
    pthread_cond_signal(&s->lcond);
    pthread_mutex_unlock(&s->lmu);
    pthread_join(s->lthread, NULL);
    pthread_cond_destroy(&s->lcond);
    pthread_mutex_destroy(&s->lmu);
    s->lthread_on = 0;
}

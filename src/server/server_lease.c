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
 * Wake-ups: an instance that appended to the outbox of a session it does
 * not serve tells the others (store wake(); PostgreSQL NOTIFY); the thread
 * below waits for them between renewals and has the session's delivery
 * thread raise its engine's out_last, so the new messages stream at once.
 * Each renewal also reports every held session's out_last: a wake-up lost
 * is made up for within lease_ms/3.
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
#include "common/alloc.h"
#include "server_int.h"

int tether__srv_lease_take_locked(tether_server *s, srv_session *ss)
{
    int stale = 0;
    int rc = s->store->ops->lease_take(s->store, ss->id.bytes, s->cfg.lease_ms, &stale);
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot take the session's lease: %s",
                            s->store->ops->errmsg(s->store));
    }
    if (stale && (rc = tether__srv_reload_locked(s, ss)) != TETHER_OK) {
        return tether__fail(rc,
                            "cannot read the session again after another instance served "
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

/* Sessions one renewal or wait reported (lost, or with their out_last). */
typedef struct idlist {
    uint8_t (*id)[16];  /* the ids */
    uint64_t *out_last; /* with kept(): their out_last; 0: read the store */
    size_t n, cap;      /* used, allocated */
} idlist;

/* Called under the store's lock (renew) or on this thread (wait): only collects. */
static void add(idlist *l, const uint8_t id[16], uint64_t out_last)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *m = tether__realloc(l->id, cap * sizeof *l->id);
        if (!m) {
            return; /* a lost one's writes stay fenced; a grown one is seen at the next check */
        }
        l->id = m;
        m = tether__realloc(l->out_last, cap * sizeof *l->out_last);
        if (!m) {
            return;
        }
        l->out_last = m;
        l->cap = cap;
    }
    memcpy(l->id[l->n], id, 16);
    l->out_last[l->n++] = out_last;
}

static void on_lost(void *arg, const uint8_t id[16])
{
    add(&((idlist *)arg)[0], id, 0);
}

static void on_kept(void *arg, const uint8_t id[16], uint64_t out_last)
{
    add(&((idlist *)arg)[1], id, out_last);
}

static void on_wake(void *arg, const uint8_t id[16])
{
    add(&((idlist *)arg)[1], id, 0);
}

/* Posts work to a session in memory with a connection; nothing otherwise
 * (an offline session reads the store when it resumes). */
static void post(tether_server *s, const uint8_t id[16], int kind, int err, uint64_t out_last)
{
    srv_session *ss = tether__srv_find_ref(s, id);
    if (!ss) {
        return;
    }
    srv_conn *c = atomic_load(&ss->conn);
    srv_work *w = c ? tether__srv_work_new(kind, c, &out_last, sizeof out_last) : NULL;
    if (w) {
        w->err = err;
        tether__srv_post(s, ss, w);
    }
    tether__srv_unref(s, ss);
}

void tether__srv_outbox_grew_locked(tether_server *s, srv_session *ss, uint64_t out_last)
{
    if (!ss->wconn || tether__engine_close_event(ss->engine, NULL)) {
        return;
    }
    if (out_last == 0) {
        tether__session_rec rec;
        if (s->store->ops->session_get(s->store, ss->id.bytes, &rec) != TETHER_OK) {
            return; /* the next renewal looks again */
        }
        out_last = rec.out_last;
    }
    if (tether__engine_outbox_grew(ss->engine, out_last)) {
        tether__srv_wake(s, ss); /* the service thread writes them */
    }
}

/* Handles what one renewal or wait collected, and empties the lists. */
static void handle(tether_server *s, idlist l[2])
{
    for (size_t i = 0; i < l[0].n; i++) {
        /* lost: the delivery thread closes it with BYE(STORE), as for a refused write */
        post(s, l[0].id[i], W_FRAME, TETHER_EFENCED, 0);
    }
    for (size_t i = 0; i < l[1].n; i++) {
        post(s, l[1].id[i], W_GREW, 0, l[1].out_last[i]);
    }
    l[0].n = l[1].n = 0;
}

#define WAKE_WAIT_MS 100u /* longest wait for wake-ups before the stop flag is looked at */

static void *renewer(void *arg)
{
    tether_server *s = arg;
    uint32_t period = s->cfg.lease_ms / 3;
    idlist l[2];
    memset(l, 0, sizeof l);
    uint64_t next = tether__now_ms() + period;
    pthread_mutex_lock(&s->lmu);
    while (!s->lstop) {
        pthread_mutex_unlock(&s->lmu);
        uint64_t now = tether__now_ms();
        if (now >= next) {
            /* a failure (the database away): the next period tries again;
             * the writes stay fenced meanwhile */
            (void)s->store->ops->lease_renew(s->store, s->cfg.lease_ms, on_lost, on_kept, l);
            next = now + period;
        } else {
            uint64_t left = next - now;
            (void)s->store->ops->wait_wakes(
                s->store, left < WAKE_WAIT_MS ? (uint32_t)left : WAKE_WAIT_MS, on_wake, l);
        }
        handle(s, l);
        pthread_mutex_lock(&s->lmu);
    }
    pthread_mutex_unlock(&s->lmu);
    for (int i = 0; i < 2; i++) {
        tether__free(l[i].id);
        tether__free(l[i].out_last);
    }
    return NULL;
}

int tether__srv_lease_start(tether_server *s)
{
    if (!tether__store_pg_is_uri(s->db_path) || s->lthread_on) {
        return TETHER_OK;
    }
    pthread_mutex_init(&s->lmu, NULL);
    s->lstop = 0;
    if (pthread_create(&s->lthread, NULL, renewer, s) != 0) {
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
    s->lstop = 1; /* seen within WAKE_WAIT_MS, or after a renewal under way */
    pthread_mutex_unlock(&s->lmu);
    pthread_join(s->lthread, NULL);
    pthread_mutex_destroy(&s->lmu);
    s->lthread_on = 0;
}

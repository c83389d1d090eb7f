/*
 * The server's delivery threads: each session's input (frames, accepting its
 * HELLO, its disconnect, back-pressure reports) runs here, in arrival order,
 * on one thread at a time, with the application's callbacks called without
 * any tether lock held. A slow on_message holds up its own session only; the
 * service thread keeps reading, writing and timing every other session.
 */
#include "server_int.h"
#include "common/alloc.h"

/* The server whose delivery thread this is, or NULL. */
static _Thread_local tether_server *pool_of;

int tether__srv_on_pool(tether_server *s)
{
    return pool_of == s;
}

srv_work *tether__srv_work_new(int kind, const srv_conn *conn, const void *data, size_t len)
{
    srv_work *w = tether__malloc(sizeof *w + len);
    if (!w) {
        return NULL;
    }
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->conn = conn;
    w->len = len;
    w->at = tether__now_ms();
    if (len) {
        memcpy(w->data, data, len);
    }
    return w;
}

void tether__srv_post(tether_server *s, srv_session *ss, srv_work *w)
{
    pthread_mutex_lock(&s->plock);
    w->next = NULL;
    if (ss->in_tail) {
        ss->in_tail->next = w;
    } else {
        ss->in_head = w;
    }
    ss->in_tail = w;
    if (!ss->queued) {
        ss->queued = 1;
        tether__srv_ref(ss); /* the run queue's, dropped when the inbox is empty */
        ss->next_run = NULL;
        if (s->run_tail) {
            s->run_tail->next_run = ss;
        } else {
            s->run_head = ss;
        }
        s->run_tail = ss;
        pthread_cond_signal(&s->pcond);
    }
    pthread_mutex_unlock(&s->plock);
}

/* ss->mu held. The session's connection ended (or was displaced). */
static void detach_locked(tether_server *s, srv_session *ss, const srv_work *w)
{
    if (ss->wconn != w->conn) {
        return;
    }
    tether__engine_event ev;
    int error = w->err;
    /* when we chose to close, our reason stands (TETHER_OK for a BYE(0) from the client) */
    if (w->err != TETHER_EDISPLACED && tether__engine_close_event(ss->engine, &ev)) {
        error = tether__close_server_error(&ev);
    }
    tether__engine_disconnect(ss->engine);
    ss->wconn = NULL;
    if (!ss->conn) {
        tether__srv_admin_offline(s, ss); /* no newer connection: its idle time starts */
        tether__srv_lease_release_locked(s, ss); /* another instance may take it at once */
    }
    int opened = ss->opened;
    ss->opened = 0;
    if (opened && s->cfg.cb.on_session_close) {
        tether__srv_unlock(s, ss);
        s->cfg.cb.on_session_close(s, &ss->id, error, s->cfg.user);
        tether__srv_lock(ss);
    }
}

/* ss->mu held. The session's HELLO, accepted by the service thread. */
static void accept_locked(tether_server *s, srv_session *ss, const srv_work *w)
{
    tether__engine_event ev;
    if (atomic_load(&ss->gone)) {
        return; /* deleted after its connection was displaced or closed: nothing to serve */
    }
    if (ss->wconn) {
        /* not reached: a displaced connection's W_DETACH comes first */
        tether__engine_disconnect(ss->engine);
    }
    /* the lease first: a session another live instance serves is refused */
    int rc = tether__srv_lease_take_locked(s, ss);
    if (rc != TETHER_OK) {
        ss->wconn = w->conn;
        ss->opened = 0;
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__engine_close(ss->engine, rc, tether__close_code(rc), tether_errmsg());
        return;
    }
    int resumed = tether__engine_rec(ss->engine)->established;
    rc = tether__engine_accept(ss->engine, &w->hello, w->at, &ev);
    ss->wconn = w->conn;
    ss->opened = 0;
    if (rc != TETHER_OK) {
        /* a mismatch or a store failure closed it already; anything else closes here */
        tether__srv_stat(s, TETHER__ST_REFUSED, 1);
        tether__engine_close(ss->engine, rc, TETHER__NO_BYE, "cannot accept the session");
        return;
    }
    ss->opened = 1;
    tether__srv_stat(s, TETHER__ST_CONNECTS, 1);
    if (s->cfg.cb.on_session_open) {
        tether__srv_unlock(s, ss);
        s->cfg.cb.on_session_open(s, &ss->id, resumed, s->cfg.user);
        tether__srv_lock(ss);
    }
}

/* ss->mu held. */
static void run_locked(tether_server *s, srv_session *ss, srv_work *w)
{
    tether__engine *e = ss->engine;
    tether__engine_event ev;
    switch (w->kind) {
    case W_FRAME:
        if (ss->wconn != w->conn || tether__engine_close_event(e, NULL)) {
            break; /* a frame of a connection already gone or closing */
        }
        if (w->err) {
            tether__engine_close(e, w->err, tether__close_code(w->err), tether_strerror(w->err));
        } else {
            tether__engine_on_frame(e, w->data, w->len, tether__now_ms(), &ev);
        }
        break;
    case W_ACCEPT:
        accept_locked(s, ss, w);
        break;
    case W_DETACH:
        /* recv_lazy: what was delivered is committed before the close is
         * reported, so a refused commit (TETHER_EFENCED) is its reason */
        if (ss->wconn == w->conn) {
            tether__engine_recv_commit_all(e, tether__now_ms());
        }
        detach_locked(s, ss, w);
        break;
    case W_GREW: {
        uint64_t out_last = 0;
        memcpy(&out_last, w->data, sizeof out_last);
        tether__srv_outbox_grew_locked(s, ss, out_last);
        break;
    }
    case W_COMMIT:
        ss->commit_posted = 0; /* the commit is the batch's own, after it */
        break;
    default: /* W_BP: the report below */
        break;
    }
    tether__srv_bp_report_locked(s, ss);
}

static void *worker(void *arg)
{
    tether_server *s = arg;
    pool_of = s;
    /* one decoder per delivery thread, lent to each session it runs, so that
     * a session holds no decoding memory (8 KiB and more) between frames;
     * without it (out of memory) the engines fall back to their own */
    tether__decoder dec;
    int have_dec = tether__decoder_init(&dec, s->ecfg.max_message) == TETHER_OK;
    pthread_mutex_lock(&s->plock);
    for (;;) {
        while (!s->run_head && !s->pool_stop) {
            pthread_cond_wait(&s->pcond, &s->plock);
        }
        srv_session *ss = s->run_head;
        if (!ss) {
            break; /* stopping, and nothing is left */
        }
        s->run_head = ss->next_run;
        if (!s->run_head) {
            s->run_tail = NULL;
        }
        srv_work *batch = ss->in_head;
        ss->in_head = ss->in_tail = NULL;
        pthread_mutex_unlock(&s->plock);

        tether__srv_lock(ss);
        tether__engine_lend_decoder(ss->engine, have_dec ? &dec : NULL);
        while (batch) {
            srv_work *next = batch->next;
            run_locked(s, ss, batch);
            tether__free(batch);
            batch = next;
        }
        /* recv_group (FULL): one cursor commit for the frames of this batch, here;
         * recv_lazy: here too, but only once an ACK needs it */
        tether__engine_recv_commit(ss->engine, tether__now_ms());
        tether__engine_lend_decoder(ss->engine, NULL);
        int connected = ss->wconn != NULL;
        tether__srv_unlock(s, ss);
        if (connected) {
            tether__srv_wake(s, ss); /* frames to write, a deadline to arm */
        }

        pthread_mutex_lock(&s->plock);
        if (ss->in_head) {
            /* more came meanwhile: back of the queue, so others get their turn */
            ss->next_run = NULL;
            if (s->run_tail) {
                s->run_tail->next_run = ss;
            } else {
                s->run_head = ss;
            }
            s->run_tail = ss;
            continue;
        }
        ss->queued = 0;
        pthread_mutex_unlock(&s->plock);
        tether__srv_unref(s, ss);
        pthread_mutex_lock(&s->plock);
    }
    pthread_mutex_unlock(&s->plock);
    if (have_dec) {
        tether__decoder_free(&dec);
    }
    return NULL;
}

int tether__srv_pool_start(tether_server *s)
{
    s->workers = tether__calloc(s->cfg.delivery_threads, sizeof *s->workers);
    if (!s->workers) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < s->cfg.delivery_threads; i++) {
        int rc = pthread_create(&s->workers[i], NULL, worker, s);
        if (rc) {
            tether__srv_pool_stop(s);
            return tether__fail(TETHER_ESYS, "cannot start a delivery thread: %s", strerror(rc));
        }
        s->nworkers++;
    }
    return TETHER_OK;
}

void tether__srv_pool_stop(tether_server *s)
{
    pthread_mutex_lock(&s->plock);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->pcond);
    pthread_mutex_unlock(&s->plock);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        pthread_join(s->workers[i], NULL);
    }
    s->nworkers = 0;
    tether__free(s->workers);
    s->workers = NULL;
}

/*
 * The client's application events (on_message, on_acked, on_state,
 * on_mismatch, on_backpressure) run outside c->lock.
 *
 * While the lock is held, the engine and the connection code only queue
 * them here (tether__client_ev_*_locked). Each transport callback ends with
 * tether__client_leave() instead of unlock(): it releases the lock and then
 * runs what was queued, in order, on the same thread, taking the lock only
 * to take the next batch. So an application callback never holds the lock,
 * and other threads' sends, acks and queries go on while one runs.
 *
 * Payloads of on_message are not copied: they point into the frame the
 * engine has just decoded, which stays valid until the next frame is
 * decoded. Frames are decoded only inside the transport's message callback,
 * and that callback delivers its events before it returns, so the next
 * decode cannot come first. Only the thread that runs the transport's
 * callbacks queues events (API calls queue none), so one delivery runs at
 * a time.
 *
 * The ACK guarantee: the engine runs with recv_group and defer_delivery, so
 * the receive cursor is committed only when the next frame is written (or
 * when the connection ends), which is a later transport callback, after the
 * callbacks of every message it covers have returned.
 *
 * If the queue cannot grow (out of memory, or the test limit evq_max), the
 * queued events and the new one are delivered at once, under the lock, as
 * before this queue existed: slower for other threads, but nothing is lost
 * or reordered.
 */
#include "client_int.h"
#include "common/alloc.h"

#define EVQ_FIRST 64 /* events allocated at first use */

void tether__client_evq_free(tether_client *c)
{
    for (int i = 0; i < 2; i++) {
        tether__cevbuf *b = i ? &c->evq.spare : &c->evq.cur;
        tether__free(b->v);
        tether__free(b->s);
        memset(b, 0, sizeof *b);
    }
}

void tether__client_test_evq_max(tether_client *c, size_t max)
{
    lock(c);
    c->evq.max = max;
    unlock(c);
}

/* Runs one event's callback (no lock held, or the fallback's lock). */
static void run_one(tether_client *c, const tether__cev *e, const char *strs)
{
    const tether_client_callbacks *cb = &c->cfg.cb;
    switch (e->kind) {
    case CEV_MESSAGE:
        if (cb->on_message) {
            cb->on_message(c, e->u.msg.seq, e->u.msg.data, e->u.msg.len, e->u.msg.redelivered,
                           c->cfg.user);
        }
        break;
    case CEV_ACKED:
        if (cb->on_acked) {
            cb->on_acked(c, e->u.acked.first, e->u.acked.last, c->cfg.user);
        }
        break;
    case CEV_STATE:
        if (cb->on_state) {
            tether_state_info in = e->u.state.info;
            in.detail = strs + e->u.state.detail_off;
            cb->on_state(c, &in, c->cfg.user);
        }
        break;
    case CEV_MISMATCH:
        if (cb->on_mismatch) {
            cb->on_mismatch(c, &e->u.mismatch, c->cfg.user);
        }
        break;
    case CEV_BP:
        if (cb->on_backpressure) {
            cb->on_backpressure(c, &e->u.bp, c->cfg.user);
        }
        break;
    }
}

/* Runs everything in b and empties it. */
static void run_all(tether_client *c, tether__cevbuf *b)
{
    for (size_t i = 0; i < b->n; i++) {
        run_one(c, &b->v[i], b->s);
    }
    b->n = 0;
    b->slen = 0;
}

/* Room for one more event and slen more detail bytes in the current buffer. */
static int grow(tether_client *c, size_t slen)
{
    tether__cevbuf *b = &c->evq.cur;
    if (c->evq.max && b->n >= c->evq.max) {
        return TETHER_ENOMEM;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : EVQ_FIRST;
        tether__cev *v = tether__realloc(b->v, cap * sizeof *v);
        if (!v) {
            return TETHER_ENOMEM;
        }
        b->v = v;
        b->cap = cap;
    }
    if (b->slen + slen > b->scap) {
        size_t cap = b->scap ? b->scap : 1024;
        while (cap < b->slen + slen) {
            cap *= 2;
        }
        char *s = tether__realloc(b->s, cap);
        if (!s) {
            return TETHER_ENOMEM;
        }
        b->s = s;
        b->scap = cap;
    }
    return TETHER_OK;
}

/* Queues e (lock held); detail (may be NULL) is copied for a state event. */
static void push_locked(tether_client *c, tether__cev *e, const char *detail)
{
    tether__cevbuf *b = &c->evq.cur;
    size_t dl = detail ? strlen(detail) + 1 : 0;
    if (grow(c, dl) != TETHER_OK) {
        /* deliver in place, in order: what waits first, then e */
        c->evq.inline_runs++;
        c->evq.busy++;
        run_all(c, b);
        if (detail) {
            e->u.state.detail_off = 0;
        }
        run_one(c, e, detail);
        c->evq.busy--;
        return;
    }
    if (detail) {
        memcpy(b->s + b->slen, detail, dl);
        e->u.state.detail_off = b->slen;
        b->slen += dl;
    }
    b->v[b->n++] = *e;
}

void tether__client_ev_message_locked(tether_client *c, uint64_t seq, const uint8_t *data,
                                      size_t len, int redelivered)
{
    tether__cev e;
    e.kind = CEV_MESSAGE;
    e.u.msg.seq = seq;
    e.u.msg.data = data;
    e.u.msg.len = len;
    e.u.msg.redelivered = redelivered;
    push_locked(c, &e, NULL);
}

void tether__client_ev_acked_locked(tether_client *c, uint64_t first, uint64_t last)
{
    tether__cev e;
    e.kind = CEV_ACKED;
    e.u.acked.first = first;
    e.u.acked.last = last;
    push_locked(c, &e, NULL);
}

void tether__client_ev_state_locked(tether_client *c, const tether_state_info *info)
{
    tether__cev e;
    e.kind = CEV_STATE;
    e.u.state.info = *info;
    e.u.state.info.detail = NULL;
    e.u.state.detail_off = 0;
    push_locked(c, &e, info->detail ? info->detail : "");
}

void tether__client_ev_mismatch_locked(tether_client *c, const tether_mismatch_info *info)
{
    tether__cev e;
    e.kind = CEV_MISMATCH;
    e.u.mismatch = *info;
    push_locked(c, &e, NULL);
}

void tether__client_ev_bp_locked(tether_client *c, const tether_backpressure_info *info)
{
    tether__cev e;
    e.kind = CEV_BP;
    e.u.bp = *info;
    push_locked(c, &e, NULL);
}

void tether__client_leave(tether_client *c)
{
    tether__cevq *q = &c->evq;
    if (q->cur.n == 0 || q->busy) {
        /* busy: a delivery of this thread is running below us and takes these too */
        unlock(c);
        return;
    }
    q->busy++;
    while (q->cur.n > 0) {
        tether__cevbuf taken = q->cur;
        q->cur = q->spare;
        q->cur.n = 0;
        q->cur.slen = 0;
        unlock(c);
        run_all(c, &taken);
        lock(c);
        q->spare = taken;
    }
    q->busy--;
    unlock(c);
}

/*
 * The session engine, outgoing side: send() into the outbox and the memory
 * queue, DATA runs built from the queue or read back from the store, and the
 * peer's ACKs pruning both.
 *
 * The queue holds copies of a contiguous range of unacked messages starting at
 * peer_acked+1, at most cfg.queue_max_bytes of them. A message sent while the
 * queue is full, or after one that did not fit, is only in the store
 * ("spilled") and is read back in runs when it is due, so memory is bounded by
 * the queue and one run, never by the outbox.
 */
#include "session_int.h"
#include "common/alloc.h"

#include "common/killpoint.h"

#include <stdlib.h>
#include <string.h>

/* Bookkeeping bytes charged per queued message, so that even empty messages
 * count against the queue's bound. */
#define QENT_COST 16

static tether__qent *q_at(const tether__engine *e, uint64_t seq)
{
    size_t i = (size_t)(seq - e->rec.peer_acked - 1);
    return &e->q[(e->q_head + i) & (e->q_cap - 1)];
}

/* Makes room for one more entry in the ring. */
static int q_grow(tether__engine *e)
{
    if (e->q_n < e->q_cap) {
        return TETHER_OK;
    }
    size_t cap = e->q_cap ? e->q_cap * 2 : 64;
    tether__qent *q = tether__malloc(cap * sizeof *q);
    if (!q) {
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < e->q_n; i++) {
        q[i] = e->q[(e->q_head + i) & (e->q_cap - 1)];
    }
    tether__free(e->q);
    e->q = q;
    e->q_cap = cap;
    e->q_head = 0;
    return TETHER_OK;
}

/* Copies the message with seq peer_acked+q_n+1 into the queue if it fits. */
static int q_push(tether__engine *e, const tether_msg *m)
{
    size_t cost = m->len + QENT_COST;
    if (m->len > e->cfg.queue_max_bytes || e->q_cost + cost > e->cfg.queue_max_bytes) {
        return 0;
    }
    if (q_grow(e) != TETHER_OK) {
        return 0;
    }
    uint8_t *copy = NULL;
    if (m->len > 0) {
        copy = tether__malloc(m->len);
        if (!copy) {
            return 0;
        }
        memcpy(copy, m->data, m->len);
    }
    tether__qent *q = &e->q[(e->q_head + e->q_n) & (e->q_cap - 1)];
    q->data = copy;
    q->len = m->len;
    e->q_n++;
    e->q_cost += cost;
    if (e->q_cost > e->q_peak) {
        e->q_peak = e->q_cost;
    }
    return 1;
}

/* Drops the oldest k entries; returns their payload bytes. */
static uint64_t q_drop(tether__engine *e, size_t k)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < k; i++) {
        tether__qent *q = &e->q[e->q_head];
        bytes += q->len;
        e->q_cost -= q->len + QENT_COST;
        tether__free(q->data);
        q->data = NULL;
        e->q_head = (e->q_head + 1) & (e->q_cap - 1);
    }
    e->q_n -= k;
    return bytes;
}

void tether__engine_send_free(tether__engine *e)
{
    if (e->q_n > 0) {
        q_drop(e, e->q_n);
    }
    tether__free(e->q);
    tether__free(e->sc);
    tether__free(e->sc_lens);
    e->q = NULL;
    e->sc = NULL;
    e->sc_lens = NULL;
    e->q_cap = e->sc_cap = e->sc_lcap = 0;
}

int tether__engine_send(tether__engine *e, const tether_msg *msgs, size_t n, uint64_t *first_seq)
{
    if (!e || !msgs || n == 0) {
        return TETHER_EINVAL;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len > 0) {
            return TETHER_EINVAL;
        }
        if (msgs[i].len > e->cfg.max_message) {
            return TETHER_ETOOBIG;
        }
        bytes += msgs[i].len;
    }
    uint64_t first = 0;
    int r = e->st->ops->append(e->st, e->rec.id, msgs, n, e->cfg.outbox_max_messages,
                               e->cfg.outbox_max_bytes, &first);
    if (r != TETHER_OK) {
        return r;
    }
    TETHER__KILLPOINT_ROLE(e->cfg.role, "after_outbox_commit");
    /* The queue takes the batch while it holds everything before it. */
    int fits = first == e->rec.out_last + 1 && e->rec.peer_acked + e->q_n == e->rec.out_last;
    e->rec.out_last = first + n - 1;
    e->pend_bytes += bytes;
    for (size_t i = 0; i < n && fits; i++) {
        fits = q_push(e, &msgs[i]);
    }
    if (first_seq) {
        *first_seq = first;
    }
    return TETHER_OK;
}

int tether__engine_outbox_grew(tether__engine *e, uint64_t out_last)
{
    if (!e || out_last <= e->rec.out_last) {
        return 0;
    }
    /* the queue keeps what it holds (a prefix); the rest is read back when due */
    e->rec.out_last = out_last;
    uint64_t count = 0, bytes = 0;
    if (e->st->ops->pending(e->st, e->rec.id, &count, &bytes) == TETHER_OK) {
        e->pend_bytes = bytes;
    }
    return 1;
}

int tether__engine_peer_acked(tether__engine *e, uint64_t n, tether__engine_event *ev)
{
    uint64_t first = e->rec.peer_acked + 1;
    TETHER__KILLPOINT_ROLE(e->cfg.role, "ack_before_prune");
    int r = e->st->ops->ack(e->st, e->rec.id, n);
    if (r != TETHER_OK) {
        tether__engine_shut(e, ev, r, TETHER_REJECT_STORE, "store: cannot record ACK %llu: %s",
                            (unsigned long long)n, e->st->ops->errmsg(e->st));
        return r;
    }
    TETHER__KILLPOINT_ROLE(e->cfg.role, "ack_after_prune");
    int requery = 0;
    if (n - e->rec.peer_acked <= e->q_n) {
        e->pend_bytes -= q_drop(e, (size_t)(n - e->rec.peer_acked));
    } else {
        /* Spilled messages were acked: only the store knows their sizes. */
        q_drop(e, e->q_n);
        requery = 1;
    }
    e->rec.peer_acked = n;
    if (e->next_send <= n) {
        e->next_send = n + 1;
    }
    r = TETHER_OK;
    if (requery) {
        uint64_t count = 0;
        r = e->st->ops->pending(e->st, e->rec.id, &count, &e->pend_bytes);
    }
    if (e->cb.on_acked) {
        e->cb.on_acked(e->cb.arg, first, n);
    }
    if (r != TETHER_OK) {
        tether__engine_shut(e, ev, r, TETHER_REJECT_STORE, "store: cannot count pending: %s",
                            e->st->ops->errmsg(e->st));
    }
    return r;
}

/* ---- DATA runs ---- */

/* How far the run starting at next_send may go. */
typedef struct run {
    uint64_t first;     /* seq of the first message */
    size_t max;         /* messages allowed (window, flag boundary, RUN_MAX, out_last) */
    size_t limit;       /* payload bytes allowed, unless the run has one message */
    size_t n;           /* messages taken so far */
    size_t bytes;       /* payload bytes taken so far */
    uint64_t big_seq;   /* a first message too large for the peer: its seq */
    size_t big_len;     /* ... and its length */
    int stop;           /* the run is complete */
    int err;            /* a failure while reading back */
    tether__engine *e;  /* the engine, for the load callback */
} run;

/* Whether a message of len bytes joins the run; sets stop or big_* if not. */
static int take(run *r, uint64_t seq, size_t len, uint32_t peer_max)
{
    if (len > peer_max) {
        if (r->n == 0) {
            r->big_seq = seq;
            r->big_len = len;
        }
        r->stop = 1;
        return 0;
    }
    if (r->n > 0 && r->bytes + len > r->limit) {
        r->stop = 1;
        return 0;
    }
    r->n++;
    r->bytes += len;
    if (r->n == r->max) {
        r->stop = 1;
    }
    return 1;
}

static int sc_add(tether__engine *e, const void *data, size_t len)
{
    if (e->sc_n == e->sc_lcap) {
        size_t cap = e->sc_lcap ? e->sc_lcap * 2 : 64;
        size_t *l = tether__realloc(e->sc_lens, cap * sizeof *l);
        if (!l) {
            return TETHER_ENOMEM;
        }
        e->sc_lens = l;
        e->sc_lcap = cap;
    }
    if (e->sc_len + len > e->sc_cap) {
        size_t cap = e->sc_cap ? e->sc_cap : 4096;
        while (cap < e->sc_len + len) {
            cap *= 2;
        }
        uint8_t *p = tether__realloc(e->sc, cap);
        if (!p) {
            return TETHER_ENOMEM;
        }
        e->sc = p;
        e->sc_cap = cap;
    }
    if (len > 0) {
        memcpy(e->sc + e->sc_len, data, len);
    }
    e->sc_len += len;
    e->sc_lens[e->sc_n++] = len;
    return TETHER_OK;
}

static int load_cb(void *arg, uint64_t seq, const void *data, size_t len)
{
    run *r = arg;
    if (seq != r->first + r->n) {
        r->err = TETHER_ESTORE;
        return 1;
    }
    if (!take(r, seq, len, r->e->peer_max)) {
        return 1;
    }
    int rc = sc_add(r->e, data, len);
    if (rc != TETHER_OK) {
        r->err = rc;
        return 1;
    }
    return r->stop;
}

int tether__engine_data_ready(const tether__engine *e)
{
    return e->next_send <= e->rec.out_last &&
           e->next_send - 1 - e->rec.peer_acked < e->cfg.window;
}

/* Gathers the run's messages: first from the queue, then from the store. */
static int gather(tether__engine *e, run *r)
{
    uint64_t q_last = e->rec.peer_acked + e->q_n;
    for (uint64_t s = r->first; s <= q_last && !r->stop; s++) {
        take(r, s, q_at(e, s)->len, e->peer_max);
    }
    e->sc_len = 0;
    e->sc_n = 0;
    if (r->stop || r->n == r->max) {
        return TETHER_OK;
    }
    size_t nq = r->n;
    int rc = e->st->ops->load(e->st, e->rec.id, r->first + nq, r->max - nq, load_cb, r);
    if (rc == TETHER_OK) {
        rc = r->err;
    }
    if (rc == TETHER_OK && r->n == 0 && r->big_seq == 0) {
        rc = TETHER_ESTORE; /* the outbox lacks a message it should hold */
    }
    return rc;
}

int tether__engine_write_data(tether__engine *e, tether__buf *out)
{
    if (!tether__engine_data_ready(e)) {
        return 0;
    }
    run r;
    memset(&r, 0, sizeof r);
    r.e = e;
    r.first = e->next_send;
    uint64_t max = e->cfg.window - (e->next_send - 1 - e->rec.peer_acked);
    if (max > e->rec.out_last - r.first + 1) {
        max = e->rec.out_last - r.first + 1;
    }
    uint32_t flags = 0;
    if (r.first <= e->resend_hwm) {
        flags = TETHER__DATA_FLAG_REDELIVERED;
        if (max > e->resend_hwm - r.first + 1) {
            max = e->resend_hwm - r.first + 1;
        }
    }
    r.max = max > TETHER__RUN_MAX ? TETHER__RUN_MAX : (size_t)max;
    r.limit = e->cfg.run_max_bytes < e->peer_max ? e->cfg.run_max_bytes : e->peer_max;

    int rc = gather(e, &r);
    if (rc == TETHER_ENOMEM) {
        return rc;
    }
    if (rc != TETHER_OK) {
        tether__engine_shut(e, NULL, rc, TETHER_REJECT_STORE,
                            "store: cannot read message %llu back: %s",
                            (unsigned long long)(r.first + r.n), e->st->ops->errmsg(e->st));
        e->self_err = rc;
        return 2;
    }
    if (r.n == 0) {
        tether__engine_shut(e, NULL, TETHER_ETOOBIG, TETHER_REJECT_TOO_BIG,
                            "message %llu is %zu bytes; the peer accepts at most %u",
                            (unsigned long long)r.big_seq, r.big_len, (unsigned)e->peer_max);
        e->self_err = TETHER_ETOOBIG;
        return 2;
    }

    size_t nq = r.n - e->sc_n;
    rc = tether__encode_data_begin(out, r.first, flags, r.n);
    for (size_t i = 0; i < nq && rc == TETHER_OK; i++) {
        const tether__qent *q = q_at(e, r.first + i);
        rc = tether__encode_data_payload(out, q->data, q->len);
    }
    size_t off = 0;
    for (size_t i = 0; i < e->sc_n && rc == TETHER_OK; i++) {
        rc = tether__encode_data_payload(out, e->sc ? e->sc + off : NULL, e->sc_lens[i]);
        off += e->sc_lens[i];
    }
    if (rc == TETHER_OK) {
        rc = tether__encode_data_end(out);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    e->next_send += r.n;
    return 1;
}

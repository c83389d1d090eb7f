/*
 * The session engine, incoming side: DATA delivered in order exactly once,
 * duplicates dropped and re-acked, gaps refused, the receive cursor committed
 * (in auto-ack mode per frame, or with cfg.recv_group once for all the frames
 * handled before the next write, or with cfg.recv_lazy only when an ACK needs
 * it; by engine_ack() in manual mode), and delayed cumulative ACKs that never
 * claim more than was committed.
 */
#include "session_int.h"

#include "common/killpoint.h"

#include <string.h>

/* recv_lazy: a batch's deliveries are committed at once when the last commit
 * is older than the ACK delay / this */
#define LAZY_GAP_DIV 4u

void tether__engine_sched_ack(tether__engine *e, uint64_t now_ms)
{
    if (e->rec.recv_cursor <= e->last_ack) {
        return;
    }
    uint64_t unacked = e->rec.recv_cursor - e->last_ack;
    if (!e->ack_timer) {
        e->ack_timer = 1;
        e->ack_at = now_ms + e->cfg.ack_delay_ms;
    }
    if (unacked >= e->cfg.ack_every || (e->peer_window > 0 && unacked >= e->peer_window)) {
        e->ack_now = 1;
    }
}

int tether__engine_ack_due(const tether__engine *e, uint64_t now_ms)
{
    /* recv_lazy: a timer that runs from a delivery whose commit is still to
     * come makes no ACK by itself (the commit comes first, lazy_due) */
    int timer = e->ack_timer && now_ms >= e->ack_at &&
                (!e->cfg.recv_lazy || e->rec.recv_cursor > e->last_ack);
    return e->rec.recv_cursor > 0 && (e->ack_now || timer);
}

/* recv_lazy: whether the ACK needs what was delivered committed now. */
static int lazy_due(const tether__engine *e, uint64_t now_ms)
{
    if (!e->cfg.recv_lazy || e->cfg.manual_ack || e->delivered <= e->rec.recv_cursor) {
        return 0;
    }
    uint64_t unacked = e->delivered - e->last_ack;
    return unacked >= e->cfg.ack_every || (e->peer_window > 0 && unacked >= e->peer_window) ||
           e->ack_now || (e->ack_timer && now_ms >= e->ack_at);
}

int tether__engine_recv_lazy_due(const tether__engine *e, uint64_t now_ms)
{
    return e && lazy_due(e, now_ms);
}

void tether__engine_ack_sent(tether__engine *e)
{
    e->last_ack = e->rec.recv_cursor;
    e->ack_now = 0;
    if (!e->cfg.recv_lazy || e->delivered <= e->rec.recv_cursor) {
        e->ack_timer = 0; /* recv_lazy: deliveries still to commit keep their deadline */
    }
}

/* Makes the cursor durable up to seq. */
static int commit(tether__engine *e, uint64_t seq, uint64_t now_ms)
{
    int r = e->st->ops->set_cursor(e->st, e->rec.id, seq);
    if (r != TETHER_OK) {
        return r;
    }
    e->rec.recv_cursor = seq;
    e->commit_at = now_ms;
    TETHER__KILLPOINT_ROLE(e->cfg.role, "after_cursor_commit");
    tether__engine_sched_ack(e, now_ms);
    return TETHER_OK;
}

void tether__engine_on_data(tether__engine *e, const tether__data *d, uint64_t now_ms,
                            tether__engine_event *ev)
{
    if (d->count == 0 || d->first_seq > UINT64_MAX - d->count) {
        tether__engine_shut(e, ev, TETHER_EPROTO, TETHER_REJECT_PROTOCOL,
                            "protocol: DATA run of %zu from seq %llu overflows", d->count,
                            (unsigned long long)d->first_seq);
        return;
    }
    int redelivered = (d->flags & TETHER__DATA_FLAG_REDELIVERED) ? 1 : 0;
    int dup = 0;
    uint64_t gap = 0;
    for (size_t i = 0; i < d->count && !e->closing; i++) {
        uint64_t s = d->first_seq + i;
        if (s <= e->delivered) {
            dup = 1;
            continue;
        }
        if (s != e->delivered + 1) {
            gap = s;
            break;
        }
        e->delivered = s;
        if (e->cb.on_message) {
            e->cb.on_message(e->cb.arg, s, d->payloads[i].data, d->payloads[i].len, redelivered);
        }
    }
    int r = TETHER_OK;
    if (!e->cfg.manual_ack && e->delivered > e->rec.recv_cursor) {
        TETHER__KILLPOINT_ROLE(e->cfg.role, "after_deliver");
        /* recv_group: the commit waits for the next write, unless the
         * connection closes now (a gap) and the callbacks already ran */
        if (!e->cfg.recv_group || (gap && !e->cfg.defer_delivery)) {
            r = commit(e, e->delivered, now_ms);
        }
    }
    if (gap) {
        tether__engine_shut(e, ev, TETHER_EGAP, TETHER_REJECT_PROTOCOL,
                            "gap: expected seq %llu, got %llu",
                            (unsigned long long)(e->delivered + 1), (unsigned long long)gap);
    } else if (r != TETHER_OK) {
        tether__engine_shut(e, ev, r, TETHER_REJECT_STORE,
                            "store: cannot commit receive cursor %llu: %s",
                            (unsigned long long)e->delivered, e->st->ops->errmsg(e->st));
    } else if (dup && e->rec.recv_cursor > 0) {
        e->ack_now = 1; /* the peer resent what we have: tell it at once */
    }
    if (e->cfg.recv_lazy && !e->ack_timer && e->delivered > e->rec.recv_cursor) {
        /* the ACK delay runs from the first delivery it will cover */
        e->ack_timer = 1;
        e->ack_at = now_ms + e->cfg.ack_delay_ms;
    }
}

int tether__engine_recv_due(const tether__engine *e)
{
    return e->cfg.recv_group && !e->cfg.recv_lazy && !e->cfg.manual_ack &&
           e->delivered > e->rec.recv_cursor;
}

int tether__engine_recv_flush(tether__engine *e, uint64_t now_ms, int force)
{
    int due = e->cfg.recv_group && !e->cfg.manual_ack && e->delivered > e->rec.recv_cursor;
    if (!due || (e->closing && !force)) {
        return TETHER_OK;
    }
    int r = commit(e, e->delivered, now_ms);
    if (r != TETHER_OK && !force) {
        tether__engine_shut(e, NULL, r, TETHER_REJECT_STORE,
                            "store: cannot commit receive cursor %llu: %s",
                            (unsigned long long)e->delivered, e->st->ops->errmsg(e->st));
    }
    return r;
}

int tether__engine_ack(tether__engine *e, uint64_t seq, uint64_t now_ms)
{
    if (!e || !e->cfg.manual_ack || seq == 0 || seq > e->delivered) {
        return TETHER_EINVAL;
    }
    if (seq <= e->rec.recv_cursor) {
        return TETHER_OK;
    }
    return commit(e, seq, now_ms);
}

int tether__engine_recv_commit_all(tether__engine *e, uint64_t now_ms)
{
    return tether__engine_recv_flush(e, now_ms, 0);
}

int tether__engine_recv_commit(tether__engine *e, uint64_t now_ms)
{
    /* recv_lazy: also when the last commit is LAZY_GAP of the ACK delay old, so
     * a session that receives seldom commits at once (as without recv_lazy)
     * instead of asking for a second turn of the delivery thread at the ACK's
     * deadline, and one that receives fast commits about once per ack_every */
    uint64_t gap = e->cfg.ack_delay_ms / LAZY_GAP_DIV;
    if (e->cfg.recv_lazy && !lazy_due(e, now_ms) && now_ms - e->commit_at < gap) {
        return TETHER_OK;
    }
    return tether__engine_recv_flush(e, now_ms, 0);
}

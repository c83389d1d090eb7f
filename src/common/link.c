#include "link.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "defaults.h"
#include "util.h"

#define RUN_MAX_BYTES (64u << 10)
#define LIMIT_MAX_MESSAGE (256u << 20)
#define LIMIT_WINDOW 1000000u

int tether__link_pump(tether__engine *e, tether__conn *c, tether__buf *b, uint64_t now_ms,
                      int close_after, tether__engine_event *why)
{
    memset(why, 0, sizeof *why);
    int rc = tether__engine_next_frame(e, now_ms, b);
    if (rc < 0) {
        tether__engine_close_event(e, why);
        if (!why->error) {
            why->error = rc;
        }
        tether__conn_close(c);
        return rc;
    }
    if (rc == 1) {
        rc = tether__conn_write(c, b);
        if (rc != TETHER_OK) {
            why->error = rc;
            snprintf(why->detail, sizeof why->detail, "writing to the connection failed");
            tether__conn_close(c);
            return rc;
        }
        if (tether__engine_want_write(e, now_ms) || close_after) {
            tether__conn_want_write(c);
        }
        return TETHER_OK;
    }
    if (close_after) {
        tether__conn_close(c);
    }
    return TETHER_OK;
}

void tether__link_arm(tether__engine *e, tether__conn *c, uint64_t now_ms, uint64_t extra)
{
    uint64_t when = tether__engine_deadline(e);
    if (extra < when) {
        when = extra;
    }
    if (when == UINT64_MAX) {
        tether__conn_timer_cancel(c);
        return;
    }
    tether__conn_timer(c, when > now_ms ? when - now_ms : 0);
}

int tether__link_engine_cfg(tether__engine_cfg *ec, tether__store_role role, uint32_t max_message,
                            uint32_t window, uint32_t ack_every, uint32_t ack_delay_ms,
                            uint64_t outbox_max_messages, uint64_t outbox_max_bytes,
                            int manual_ack, size_t queue_max_bytes)
{
    ec->role = role;
    ec->max_message = max_message ? max_message : TETHER__DEFAULT_MAX_MESSAGE;
    ec->window = window ? window : TETHER__DEFAULT_WINDOW;
    /* by default ACK every 64, but at least twice per window */
    ec->ack_every = ack_every ? ack_every : TETHER__DEFAULT_ACK_EVERY;
    if (!ack_every && ec->ack_every > ec->window / 2) {
        ec->ack_every = ec->window / 2 ? ec->window / 2 : 1;
    }
    ec->ack_delay_ms = ack_delay_ms ? ack_delay_ms : TETHER__DEFAULT_ACK_DELAY_MS;
    ec->outbox_max_messages = outbox_max_messages;
    ec->outbox_max_bytes = outbox_max_bytes;
    ec->manual_ack = manual_ack ? 1 : 0;
    ec->run_max_bytes = RUN_MAX_BYTES;
    ec->queue_max_bytes = queue_max_bytes;
    if (ec->max_message > LIMIT_MAX_MESSAGE) {
        return tether__fail(TETHER_ECONFIG, "max_message_bytes %u is above the limit of %u",
                            ec->max_message, LIMIT_MAX_MESSAGE);
    }
    if (ec->window > LIMIT_WINDOW) {
        return tether__fail(TETHER_ECONFIG, "window_messages %u is above the limit of %u",
                            ec->window, LIMIT_WINDOW);
    }
    if (ec->ack_every > ec->window) {
        return tether__fail(TETHER_ECONFIG,
                            "ack_every (%u) must not exceed window_messages (%u), or the sender "
                            "stalls until the ACK timer",
                            ec->ack_every, ec->window);
    }
    if (ec->ack_delay_ms > 60000) {
        return tether__fail(TETHER_ECONFIG, "ack_delay_ms %u is above 60000", ec->ack_delay_ms);
    }
    return TETHER_OK;
}

uint32_t tether__link_close_code(int err)
{
    switch (err) {
    case TETHER_EFRAME_OVERSIZE:
    case TETHER_ETOOBIG:
        return TETHER_REJECT_TOO_BIG;
    case TETHER_EMISMATCH:
        return TETHER_REJECT_MISMATCH;
    case TETHER_ESTORE:
    case TETHER_ESTORE_FULL:
    case TETHER_ESTORE_CORRUPT:
    case TETHER_ESTORE_READONLY:
        return TETHER_REJECT_STORE;
    default:
        return TETHER_REJECT_PROTOCOL;
    }
}

int tether__bp_after_send(tether__bp *bp, tether__engine *e, uint32_t window, int rc)
{
    uint64_t n = 0;
    tether__engine_pending(e, &n, NULL);
    int due = (n >= window) != bp->window;
    if (rc == TETHER_EOUTBOX_FULL && !bp->outbox) {
        bp->outbox_hit = 1;
        due = 1;
    }
    return due;
}

int tether__bp_update(tether__bp *bp, tether__engine *e, uint32_t window, uint64_t max_messages,
                      uint64_t max_bytes, tether_backpressure_info out[2])
{
    uint64_t n = 0, b = 0;
    int nout = 0;

    tether__engine_pending(e, &n, &b);
    int win = n >= window;
    /* full until acknowledgements removed something and the caps have room */
    int outbox = bp->outbox_hit ||
                 (bp->outbox && (n >= bp->full_n || (max_messages && n >= max_messages) ||
                                 (max_bytes && b >= max_bytes)));
    bp->outbox_hit = 0;
    if (outbox && !bp->outbox) {
        bp->full_n = n;
    }
    if (win != bp->window) {
        bp->window = win;
        memset(&out[nout], 0, sizeof out[nout]);
        out[nout].kind = win ? TETHER_BP_WINDOW_FULL : TETHER_BP_WINDOW_OPEN;
        out[nout].pending_messages = n;
        out[nout].pending_bytes = b;
        nout++;
    }
    if (outbox != bp->outbox) {
        bp->outbox = outbox;
        memset(&out[nout], 0, sizeof out[nout]);
        out[nout].kind = outbox ? TETHER_BP_OUTBOX_FULL : TETHER_BP_OUTBOX_OPEN;
        out[nout].pending_messages = n;
        out[nout].pending_bytes = b;
        nout++;
    }
    return nout;
}

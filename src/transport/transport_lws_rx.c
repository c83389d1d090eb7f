/*
 * Incoming WebSocket messages of a connection, handed to its owner whole:
 * one piece at once, without a copy; a message that arrives in pieces (larger
 * than libwebsockets' receive buffer, or sent in several WebSocket frames)
 * assembled first. Text messages and messages over the limit are refused.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"

/* Assembles a message that arrives in pieces (more than lws's receive buffer
 * at a time, or sent in several WebSocket frames); more: the bytes lws says
 * are left of the current WebSocket frame. The assembly buffer is allocated
 * for the message (its size known from the frame header when the message is
 * one frame) and, on a server, freed once the message is handed over, so a
 * connection holds none between messages. */
void tether__tp_rx_append(tether__conn *c, const uint8_t *in, size_t len, int first, int final,
                          int binary, size_t more)
{
    tether__tp *tp = c->tp;
    if (first) {
        c->rx_len = 0;
        c->rx_bad = 0;
        if (!binary) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_EMALFORMED);
        }
    }
    if (c->rx_bad) {
        return;
    }
    if (len > tp->cfg.max_rx - c->rx_len) {
        c->rx_bad = 1;
        tp->cb.message(tp->owner, c, NULL, 0, TETHER_EFRAME_OVERSIZE);
        return;
    }
    if (first && final) {
        /* the common case: the whole message in one piece, no copy */
        tp->cb.message(tp->owner, c, in, len, 0);
        return;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        if (!c->rx_cap && more <= tp->cfg.max_rx - c->rx_len - len && len + more > cap) {
            cap = len + more; /* the whole of this frame at once */
        }
        while (cap < c->rx_len + len) {
            cap *= 2;
        }
        uint8_t *p = tether__realloc(c->rx, cap);
        if (!p) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_ENOMEM);
            return;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (final) {
        tp->cb.message(tp->owner, c, c->rx, c->rx_len, 0);
        c->rx_len = 0;
        if (tp->cfg.listen_host) {
            /* a server's connections keep no assembly memory between messages
             * (a client has one connection and keeps it for the next) */
            tether__free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
}

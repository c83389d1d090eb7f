/*
 * Counters behind tether_client_stats() and tether_server_stats(): relaxed
 * atomic increments at the few places where the counted thing happens, so
 * any thread may bump or read them without the handle's lock. Gauges
 * (pending, sessions online) are not kept here: the stats calls read them
 * from the engines when asked.
 */
#ifndef TETHER_STATS_H
#define TETHER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef enum tether__stat {
    TETHER__ST_SENT = 0,    /* messages committed by send/send_batch */
    TETHER__ST_ACKED,       /* messages the peer acknowledged */
    TETHER__ST_DELIVERED,   /* messages handed to on_message */
    TETHER__ST_REDELIVERED, /* of those, flagged redelivered */
    TETHER__ST_BYTES_IN,    /* WebSocket message bytes received (tether frames) */
    TETHER__ST_BYTES_OUT,   /* WebSocket message bytes written (tether frames) */
    TETHER__ST_CONNECTS,    /* client: connections welcomed; server: sessions opened */
    TETHER__ST_ATTEMPTS,    /* client: connection attempts started */
    TETHER__ST_REFUSED,     /* server: upgrades refused (HTTP) and HELLOs refused */
    TETHER__ST_EXPIRED,     /* server: sessions removed by the idle expiry */
    TETHER__ST_DELETED,     /* server: sessions removed by tether_server_session_delete() */
    TETHER__ST_DROPPED,     /* server: unacked messages removed with expired or deleted sessions */
    TETHER__ST_COUNT
} tether__stat;

typedef struct tether__stats {
    _Atomic uint64_t v[TETHER__ST_COUNT]; /* one counter per tether__stat */
} tether__stats;

static inline void tether__stat_add(tether__stats *st, tether__stat which, uint64_t n)
{
    if (st) {
        atomic_fetch_add_explicit(&st->v[which], n, memory_order_relaxed);
    }
}

static inline uint64_t tether__stat_get(const tether__stats *st, tether__stat which)
{
    return atomic_load_explicit(&((tether__stats *)st)->v[which], memory_order_relaxed);
}

#endif

/*
 * Liveness checks for many connections: every connection is pinged when no
 * pong confirmed it for ping_ms, and declared dead when ping_ms + pong_ms
 * pass without one. Each connection sits in one of two FIFO queues (waiting
 * for its next ping, waiting for a pong); since every entry of a queue was
 * queued with the same interval and times only grow, appending at the tail
 * keeps each queue sorted, so adding, confirming and removing a connection
 * cost O(1) and a check looks only at the queues' heads.
 *
 * This replaces libwebsockets' per-connection validity timer on the server:
 * lws keeps it in one sorted list and re-inserts it at every pong and ping by
 * walking the list from its head, which at 20,000 connections took ~80% of
 * the server's CPU (docs/performance.md, "20,000 sessions").
 *
 * Not thread-safe: one thread adds, confirms, removes and advances. Times
 * are milliseconds on a monotonic clock; a time earlier than one seen before
 * counts as that one. Deadlines fire at the first tether__ka_advance() at or
 * after them, never before.
 */
#ifndef TETHER_KEEPALIVE_H
#define TETHER_KEEPALIVE_H

#include <stddef.h>
#include <stdint.h>

/* One connection's entry, embedded in its record; zero-initialised means in no queue. */
typedef struct tether__ka_node {
    struct tether__ka_node *prev; /* queue neighbour, NULL when in no queue */
    struct tether__ka_node *next; /* queue neighbour, NULL when in no queue */
    uint64_t due;                 /* next ping (waiting) or the hang-up (pinged), ms */
    uint8_t q;                    /* TETHER__KA_NONE, _WAITING or _PINGED */
} tether__ka_node;

enum { TETHER__KA_NONE = 0, TETHER__KA_WAITING = 1, TETHER__KA_PINGED = 2 };

typedef struct tether__ka {
    tether__ka_node waiting; /* sentinel: confirmed connections, next ping due first */
    tether__ka_node pinged;  /* sentinel: pinged connections, hang-up due first */
    uint32_t ping_ms;        /* a ping when no pong for this long, ms */
    uint32_t pong_ms;        /* dead when no pong this long after the ping, ms */
    uint64_t last;           /* latest time seen, ms */
    size_t count;            /* nodes in either queue */
} tether__ka;

/* ping_ms and pong_ms must be > 0. */
void tether__ka_init(tether__ka *k, uint32_t ping_ms, uint32_t pong_ms);
/* n was confirmed alive at now (a new connection, or a pong): its next ping
 * is due at now + ping_ms. Moves n to the waiting queue from wherever it was. */
void tether__ka_confirm(tether__ka *k, tether__ka_node *n, uint64_t now);
/* Takes n out of its queue; a node in no queue is left alone. */
void tether__ka_remove(tether__ka *k, tether__ka_node *n);
/* At now: each node whose pong is overdue leaves its queue and dead(n, arg)
 * runs; then each node whose ping is due moves to the pinged queue (hang-up
 * at now + pong_ms) and ping(n, arg) runs. The callbacks may confirm or
 * remove any node. Returns the number of callbacks run. */
size_t tether__ka_advance(tether__ka *k, uint64_t now, void (*ping)(tether__ka_node *n, void *arg),
                          void (*dead)(tether__ka_node *n, void *arg), void *arg);
/* The earliest due time in either queue, or UINT64_MAX when both are empty. */
uint64_t tether__ka_next_due(const tether__ka *k);
/* Nodes in either queue. */
static inline size_t tether__ka_count(const tether__ka *k)
{
    return k->count;
}

#endif

/*
 * A hashed timer wheel: many deadlines (one per connection), each armed,
 * re-armed and disarmed in O(1), fired by one coarse periodic tick. The
 * server drives it from a single loop timer instead of one sorted timer per
 * connection re-armed per message (docs/decisions.md).
 *
 * Not thread-safe: one thread arms, disarms and advances. Times are
 * milliseconds on any monotonic clock; a deadline fires at the first
 * tether__tw_advance() that reaches the tick at or after it (so never early,
 * and up to one tick late).
 */
#ifndef TETHER_TIMERWHEEL_H
#define TETHER_TIMERWHEEL_H

#include <stddef.h>
#include <stdint.h>

/* One deadline, embedded in its owner's struct; zero-initialised means disarmed. */
typedef struct tether__tw_node {
    struct tether__tw_node *prev; /* slot list neighbour, NULL when disarmed */
    struct tether__tw_node *next; /* slot list neighbour, NULL when disarmed */
    uint64_t due;                 /* when it fires, ms */
    int armed;                    /* 1 while on the wheel */
} tether__tw_node;

typedef struct tether__tw {
    tether__tw_node *slots; /* nslots list heads (sentinels) */
    size_t nslots;          /* a power of two */
    uint32_t tick_ms;       /* slot width, ms (>0) */
    uint64_t cur;           /* tick number processed last (now / tick_ms) */
    size_t armed;           /* nodes on the wheel */
} tether__tw;

/* nslots is rounded up to a power of two. now_ms is the starting time.
 * Returns 0, or -1 when out of memory or tick_ms/nslots is 0. */
int tether__tw_init(tether__tw *w, uint32_t tick_ms, size_t nslots, uint64_t now_ms);
void tether__tw_free(tether__tw *w);

/* Arms n to fire at due_ms (replacing any earlier arming). A due time at or
 * before the last tick advanced to fires at the next tick. */
void tether__tw_arm(tether__tw *w, tether__tw_node *n, uint64_t due_ms);
/* Disarms n; a disarmed node is left alone. */
void tether__tw_disarm(tether__tw *w, tether__tw_node *n);
/* Fires, in no particular order, every node due at or before now_ms: each is
 * disarmed before fire(n, arg) runs, and fire may arm or disarm any node
 * (a node armed again for a time <= now_ms fires at the next tick).
 * Returns the number fired. */
size_t tether__tw_advance(tether__tw *w, uint64_t now_ms, void (*fire)(tether__tw_node *n, void *arg),
                          void *arg);
/* Nodes armed. */
static inline size_t tether__tw_count(const tether__tw *w)
{
    return w->armed;
}

#endif

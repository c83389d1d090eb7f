/*
 * Reconnect delays: exponential backoff with full jitter. Pure: no clock, no
 * I/O; randomness comes from a seeded generator so tests can check sequences.
 *
 * The delay before attempt n (n = 0 for the first retry) is uniform in
 * [0, min(cap, base * 2^n)] milliseconds.
 */
#ifndef TETHER_BACKOFF_H
#define TETHER_BACKOFF_H

#include <stdint.h>

#include "common/rng.h" /* tether__rng_next: the jitter's generator */

typedef struct tether__backoff {
    uint32_t base_ms;      /* bound of the first delay, ms (>0) */
    uint32_t cap_ms;       /* largest bound, ms (>= base_ms) */
    uint32_t max_attempts; /* delays handed out before giving up; 0 = never give up */
    uint32_t attempt;      /* delays handed out since the last reset */
    uint64_t rng;          /* generator state */
} tether__backoff;


void tether__backoff_init(tether__backoff *b, uint32_t base_ms, uint32_t cap_ms,
                          uint32_t max_attempts, uint64_t seed);

/* The upper bound of the delay before retry number attempt: min(cap, base*2^attempt). */
uint32_t tether__backoff_bound(const tether__backoff *b, uint32_t attempt);

/* Draws the next delay into *delay_ms and counts the attempt. Returns TETHER_OK,
 * or TETHER_EGIVEUP (and leaves *delay_ms untouched) once max_attempts delays
 * have been handed out. */
int tether__backoff_next(tether__backoff *b, uint32_t *delay_ms);

/* Forgets past failures: the next delay is drawn from the first bound again. */
void tether__backoff_reset(tether__backoff *b);

#endif

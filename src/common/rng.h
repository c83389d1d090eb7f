/*
 * The seeded generator shared by the backoff jitter, the fault relay's random
 * schedule and the tools' random moments: splitmix64. Deterministic, not for
 * secrets (tether__random in util.h is).
 */
#ifndef TETHER_RNG_H
#define TETHER_RNG_H

#include <stdint.h>

/* The next splitmix64 output; advances *state. */
uint64_t tether__rng_next(uint64_t *state);

/* Uniform in [lo, hi], both ends included; lo when hi <= lo. Advances *state
 * once (except when hi <= lo). The bias of the modulo is below 2^-40 for spans
 * under 2^24. */
uint64_t tether__rng_range(uint64_t *state, uint64_t lo, uint64_t hi);

#endif

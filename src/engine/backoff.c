/*
 * Reconnect delays: exponential backoff with full jitter (see backoff.h).
 *
 * The bound before retry n is min(cap, base * 2^n); the delay is drawn
 * uniformly from [0, bound], both ends included. The generator is splitmix64
 * (common/rng.c), so a given seed always yields the same delays.
 */
#include "backoff.h"

#include <tether/tether.h>

void tether__backoff_init(tether__backoff *b, uint32_t base_ms, uint32_t cap_ms,
                          uint32_t max_attempts, uint64_t seed)
{
    b->base_ms = base_ms;
    b->cap_ms = cap_ms;
    b->max_attempts = max_attempts;
    b->attempt = 0;
    b->rng = seed;
}

uint32_t tether__backoff_bound(const tether__backoff *b, uint32_t attempt)
{
    /* base < 2^32, so base << attempt fits in 64 bits while attempt < 32; from
     * there on it exceeds every possible 32-bit cap. */
    if (b->base_ms == 0) {
        return 0;
    }
    if (attempt >= 32) {
        return b->cap_ms;
    }
    uint64_t bound = (uint64_t)b->base_ms << attempt;
    return bound < b->cap_ms ? (uint32_t)bound : b->cap_ms;
}

/* A uniform draw from [0, bound], without modulo bias. */
static uint32_t draw(uint64_t *rng, uint32_t bound)
{
    uint64_t n = (uint64_t)bound + 1;
    /* Reject the top values that would make some results more likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t r;
    do {
        r = tether__rng_next(rng);
    } while (r >= limit);
    return (uint32_t)(r % n);
}

int tether__backoff_next(tether__backoff *b, uint32_t *delay_ms)
{
    if (b->max_attempts != 0 && b->attempt >= b->max_attempts) {
        return TETHER_EGIVEUP;
    }
    *delay_ms = draw(&b->rng, tether__backoff_bound(b, b->attempt));
    if (b->attempt < UINT32_MAX) {
        b->attempt++;
    }
    return TETHER_OK;
}

void tether__backoff_reset(tether__backoff *b)
{
    b->attempt = 0;
}

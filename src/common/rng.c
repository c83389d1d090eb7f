/* splitmix64 (see rng.h). */
#include "rng.h"

uint64_t tether__rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tether__rng_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    uint64_t span = hi - lo;
    if (span == UINT64_MAX) {
        return tether__rng_next(state);
    }
    return lo + tether__rng_next(state) % (span + 1);
}

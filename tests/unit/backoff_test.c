/* Reconnect backoff: the documented bounds, full jitter, seeding, give-up, reset. */
#include <stdlib.h>

#include "harness.h"

#include <tether/tether.h>

#include "engine/backoff.h"
#include "common/defaults.h"

/* The documented defaults (docs/config.md): base 250 ms, cap 30 s. */
#define BASE 250
#define CAP 30000

TEST(default_bounds_double_from_250ms_up_to_30s_cap)
{
    static const uint32_t expected[] = {250,  500,   1000,  2000,  4000,
                                        8000, 16000, 30000, 30000, 30000};
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 1);
    for (uint32_t n = 0; n < sizeof expected / sizeof expected[0]; n++) {
        CHECK_EQ_U64(tether__backoff_bound(&b, n), expected[n]);
    }
}

TEST(bound_stays_at_cap_for_huge_attempt_counts)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 1);
    CHECK_EQ_U64(tether__backoff_bound(&b, 31), CAP);
    CHECK_EQ_U64(tether__backoff_bound(&b, 32), CAP);
    CHECK_EQ_U64(tether__backoff_bound(&b, 40), CAP);
    CHECK_EQ_U64(tether__backoff_bound(&b, 64), CAP);
    CHECK_EQ_U64(tether__backoff_bound(&b, 1000), CAP);
    CHECK_EQ_U64(tether__backoff_bound(&b, UINT32_MAX), CAP);

    /* The largest base and cap: no overflow on the way up either. */
    tether__backoff big;
    tether__backoff_init(&big, UINT32_MAX, UINT32_MAX, 0, 1);
    for (uint32_t n = 0; n < 100; n++) {
        CHECK_EQ_U64(tether__backoff_bound(&big, n), UINT32_MAX);
    }
    tether__backoff one;
    tether__backoff_init(&one, 1, UINT32_MAX, 0, 1);
    CHECK_EQ_U64(tether__backoff_bound(&one, 31), 1u << 31);
    CHECK_EQ_U64(tether__backoff_bound(&one, 32), UINT32_MAX);
}

TEST(every_delay_within_its_bound)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 12345);
    for (int round = 0; round < 200; round++) {
        tether__backoff_reset(&b);
        for (uint32_t n = 0; n < 50; n++) {
            uint32_t bound = tether__backoff_bound(&b, n);
            uint32_t d = UINT32_MAX;
            CHECK_OK(tether__backoff_next(&b, &d));
            if (d > bound) {
                tt_fail(__FILE__, __LINE__, "delay %u > bound %u at attempt %u", d, bound, n);
            }
        }
        CHECK_EQ_U64(b.attempt, 50);
    }
}

TEST(delays_stay_capped_after_1000_attempts)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 99);
    uint32_t max_seen = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t d = 0;
        CHECK_OK(tether__backoff_next(&b, &d));
        CHECK(d <= CAP);
        if (d > max_seen) {
            max_seen = d;
        }
    }
    /* Almost a thousand draws from [0, 30000]: the top of the range is reached. */
    CHECK(max_seen > CAP * 9 / 10);
}

TEST(same_seed_same_delays)
{
    tether__backoff a, b;
    tether__backoff_init(&a, BASE, CAP, 0, 42);
    tether__backoff_init(&b, BASE, CAP, 0, 42);
    for (int i = 0; i < 100; i++) {
        uint32_t da = 0, db = 1;
        CHECK_OK(tether__backoff_next(&a, &da));
        CHECK_OK(tether__backoff_next(&b, &db));
        CHECK_EQ_U64(da, db);
    }
}

TEST(different_seeds_differ)
{
    tether__backoff a, b;
    tether__backoff_init(&a, BASE, CAP, 0, 1);
    tether__backoff_init(&b, BASE, CAP, 0, 2);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t da = 0, db = 0;
        CHECK_OK(tether__backoff_next(&a, &da));
        CHECK_OK(tether__backoff_next(&b, &db));
        differ += da != db;
    }
    CHECK(differ > 90);
}

TEST(generator_is_splitmix64)
{
    /* Reference outputs of splitmix64 seeded with 0 and with 1234567. */
    uint64_t s = 0;
    CHECK_EQ_U64(tether__rng_next(&s), 0xe220a8397b1dcdafull);
    CHECK_EQ_U64(tether__rng_next(&s), 0x6e789e6aa1b965f4ull);
    CHECK_EQ_U64(tether__rng_next(&s), 0x06c45d188009454full);
    s = 1234567;
    CHECK_EQ_U64(tether__rng_next(&s), 6457827717110365317ull);
    CHECK_EQ_U64(tether__rng_next(&s), 3203168211198807973ull);
}

TEST(gives_up_after_max_attempts_and_reset_restores)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 3, 7);
    uint32_t d = 0;
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK(d <= 250);
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK(d <= 500);
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK(d <= 1000);

    d = 777777;
    CHECK_ERR(tether__backoff_next(&b, &d), TETHER_EGIVEUP);
    CHECK_EQ_U64(d, 777777); /* untouched on give-up */
    CHECK_ERR(tether__backoff_next(&b, &d), TETHER_EGIVEUP);
    CHECK_EQ_U64(b.attempt, 3);

    tether__backoff_reset(&b);
    CHECK_EQ_U64(b.attempt, 0);
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK(d <= 250); /* drawn from the first bound again */
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK_ERR(tether__backoff_next(&b, &d), TETHER_EGIVEUP);
}

TEST(zero_max_attempts_never_gives_up)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 7);
    uint32_t d = 0;
    for (int i = 0; i < 100000; i++) {
        if (tether__backoff_next(&b, &d) != TETHER_OK) {
            tt_fail(__FILE__, __LINE__, "gave up at attempt %d", i);
            break;
        }
    }
}

TEST(reset_restarts_the_bound_sequence)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, 3);
    uint32_t d = 0;
    for (int i = 0; i < 20; i++) {
        CHECK_OK(tether__backoff_next(&b, &d));
    }
    tether__backoff_reset(&b);
    /* After a reset the first delays come from the 250 and 500 bounds again. */
    for (int round = 0; round < 1000; round++) {
        tether__backoff_reset(&b);
        CHECK_OK(tether__backoff_next(&b, &d));
        CHECK(d <= 250);
        CHECK_OK(tether__backoff_next(&b, &d));
        CHECK(d <= 500);
    }
}

/* Full jitter: the draws cover [0, bound], with a mean near bound/2. */
static void check_distribution(uint32_t attempt, uint64_t seed)
{
    tether__backoff b;
    tether__backoff_init(&b, BASE, CAP, 0, seed);
    uint32_t bound = tether__backoff_bound(&b, attempt);
    const int draws = 10000;
    double sum = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    int buckets[10] = {0};
    for (int i = 0; i < draws; i++) {
        b.attempt = attempt;
        uint32_t d = 0;
        CHECK_OK(tether__backoff_next(&b, &d));
        sum += d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        buckets[(uint64_t)d * 10 / ((uint64_t)bound + 1)]++;
    }
    double mean = sum / draws;
    /* The standard error of the mean is bound/sqrt(12*10000) ~ 0.3% of bound;
     * 3% is a generous tolerance, and the outcome is fixed by the seed. */
    if (mean < bound * 0.47 || mean > bound * 0.53) {
        tt_fail(__FILE__, __LINE__, "attempt %u: mean %.1f not near %u/2", attempt, mean, bound);
    }
    CHECK(lo <= bound / 100);
    CHECK(hi >= bound - bound / 100);
    for (int k = 0; k < 10; k++) {
        /* 1000 expected per tenth of the range. */
        if (buckets[k] < 800 || buckets[k] > 1200) {
            tt_fail(__FILE__, __LINE__, "attempt %u: bucket %d has %d draws", attempt, k,
                    buckets[k]);
        }
    }
}

TEST(jitter_covers_the_range_uniformly)
{
    check_distribution(0, 11);    /* bound 250 */
    check_distribution(3, 12);    /* bound 2000 */
    check_distribution(7, 13);    /* bound 30000 (capped) */
    check_distribution(1000, 14); /* bound 30000 */
}

TEST(zero_bound_gives_zero)
{
    tether__backoff b;
    tether__backoff_init(&b, 0, 0, 0, 5);
    uint32_t d = 1;
    CHECK_OK(tether__backoff_next(&b, &d));
    CHECK_EQ_U64(d, 0);
}

/* docs/config.md's table of default bounds must be what the code does. */
TEST(documented_default_bounds_match_the_code)
{
    const char *src = getenv("TETHER_SOURCE_DIR");
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/docs/config.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "| Bound (ms) |", 14) != 0) {
            continue;
        }
        found = 1;
        tether__backoff b;
        tether__backoff_init(&b, TETHER__DEFAULT_BACKOFF_BASE_MS, TETHER__DEFAULT_BACKOFF_CAP_MS, 0,
                             1);
        char *p = line + 14;
        uint32_t n = 0;
        for (char *tok = strtok(p, "|"); tok; tok = strtok(NULL, "|")) {
            char *end;
            unsigned long v = strtoul(tok, &end, 10);
            if (end == tok) {
                continue; /* the trailing newline */
            }
            CHECK_EQ_U64(v, tether__backoff_bound(&b, n));
            n++;
        }
        CHECK(n >= 9);
    }
    fclose(f);
    CHECK(found);
}

int main(void)
{
    RUN(documented_default_bounds_match_the_code);
    RUN(default_bounds_double_from_250ms_up_to_30s_cap);
    RUN(bound_stays_at_cap_for_huge_attempt_counts);
    RUN(every_delay_within_its_bound);
    RUN(delays_stay_capped_after_1000_attempts);
    RUN(same_seed_same_delays);
    RUN(different_seeds_differ);
    RUN(generator_is_splitmix64);
    RUN(gives_up_after_max_attempts_and_reset_restores);
    RUN(zero_max_attempts_never_gives_up);
    RUN(reset_restarts_the_bound_sequence);
    RUN(jitter_covers_the_range_uniformly);
    RUN(zero_bound_gives_zero);
    return tt_finish();
}

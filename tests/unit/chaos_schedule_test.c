/*
 * The chaos relay's command language and schedules (src/tools/chaos): parsing
 * and formatting, units, the seeded random timeline (same seed, same faults),
 * and a relay that applies exactly the planned schedule.
 */
#include "chaos_fixture.h"

/* ---------------------------------------------------------------- language */

TEST(parse_and_format_round_trip)
{
    static const char *const lines[] = {
        "cut rst",
        "cut fin",
        "cut fin after 100 bytes up",
        "cut rst after 3 frames down",
        "cut rst after 7 frames both",
        "stall up for 500ms",
        "stall both",
        "stall off down",
        "stall-upgrade for 2000ms",
        "stall-upgrade after 200 bytes",
        "stall-upgrade after 512 bytes for 1500ms",
        "blackhole",
        "blackhole off",
        "delay 50ms jitter 20ms both for 1000ms",
        "rate 102400 up",
        "split 3 gap 2ms down",
        "buffer 65536 up for 3000ms",
        "buffer 1024 cap 2097152 both",
        "refuse for 1500ms",
        "refuse off",
        "clear",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        tether__chaos_cmd a, b;
        char err[200] = "", text[200];
        CHECK_EQ_INT(tether__chaos_parse(lines[i], &a, err, sizeof err), 0);
        CHECK_EQ_INT(a.op, TETHER__CHAOS_OP_FAULT);
        tether__chaos_format(&a.fault, text, sizeof text);
        CHECK_EQ_STR(text, lines[i]);
        CHECK_EQ_INT(tether__chaos_parse(text, &b, err, sizeof err), 0);
        CHECK_MEM(&a.fault, &b.fault, sizeof a.fault);
    }
}

TEST(parse_units_prefixes_and_errors)
{
    tether__chaos_cmd c;
    char err[200];
    CHECK_EQ_INT(tether__chaos_parse("at 1.5s cut fin  # a comment", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.when, 1);
    CHECK_EQ_U64(c.when_ms, 1500);
    CHECK_EQ_INT(c.fault.kind, TETHER__CHAOS_CUT);
    CHECK_EQ_INT(c.fault.rst, 0);
    CHECK_EQ_INT(tether__chaos_parse("in 250 rate 64k/s down", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.when, 2);
    CHECK_EQ_U64(c.when_ms, 250);
    CHECK_EQ_U64(c.fault.rate, 65536);
    CHECK_EQ_INT(c.fault.dir, TETHER__CHAOS_DOWN);
    CHECK_EQ_INT(tether__chaos_parse("resume up", &c, err, sizeof err), 0);
    CHECK(c.fault.kind == TETHER__CHAOS_STALL && c.fault.off && c.fault.dir == TETHER__CHAOS_UP);
    CHECK_EQ_INT(tether__chaos_parse("accept", &c, err, sizeof err), 0);
    CHECK(c.fault.kind == TETHER__CHAOS_REFUSE && c.fault.off);
    CHECK_EQ_INT(tether__chaos_parse("random 100:300 cut,stall plain", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.op, TETHER__CHAOS_OP_RANDOM);
    CHECK_EQ_INT(c.random.min_ms, 100);
    CHECK_EQ_INT(c.random.max_ms, 300);
    CHECK_EQ_INT(c.random.kinds, (1u << TETHER__CHAOS_CUT) | (1u << TETHER__CHAOS_STALL));
    CHECK_EQ_INT(c.random.plain_cuts, 1);
    CHECK_EQ_INT(tether__chaos_parse("upstream [::1]:9000", &c, err, sizeof err), 0);
    CHECK_EQ_STR(c.host, "::1");
    CHECK_EQ_INT(c.port, 9000);
    CHECK_EQ_INT(tether__chaos_parse("   ", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.op, TETHER__CHAOS_OP_NOP);

    static const char *const bad[] = {
        "explode",
        "cut after 0 bytes",
        "cut after 5 bananas",
        "cut after 5 bytes after 2 frames",
        "stall sideways",
        "delay",
        "delay soon",
        "rate",
        "split 100000",
        "random 5",
        "random 0:10",
        "random 10:5",
        "random 1:2 nuke",
        "upstream nowhere",
        "at cut",
        "in 5s",
        "clear now",
        "buffer cap 10",
        "stall for ever",
        "stall-upgrade after 0 bytes",
        "stall-upgrade after 10 frames",
        "stall-upgrade after 100m bytes",
        "stall-upgrade after 200 bytes down",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (tether__chaos_parse(bad[i], &c, err, sizeof err) != -1 || err[0] == '\0') {
            tt_fail(__FILE__, __LINE__, "'%s' should not parse", bad[i]);
        }
    }
}

TEST(timeline_sorted_with_seed_and_random)
{
    const char *text = "# a timeline\n"
                       "seed 77\n"
                       "at 2s stall up for 300ms\n"
                       "random 50:60 cut\n"
                       "at 500ms cut fin\n"
                       "\n"
                       "at 2s resume up\n"
                       "delay 10ms\n";
    tether__chaos_event *ev = NULL;
    size_t n = 0;
    uint64_t seed = 0;
    tether__chaos_random r;
    int ron = 0;
    char err[200];
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(tether__chaos_parse_timeline(text, &ev, &n, &seed, &r, &ron, err, sizeof err), 0);
    CHECK_EQ_U64(seed, 77);
    CHECK_EQ_INT(ron, 1);
    CHECK_EQ_INT(r.min_ms, 50);
    CHECK_EQ_U64(n, 4);
    if (n == 4) {
        CHECK_EQ_U64(ev[0].at_ms, 0);
        CHECK_EQ_INT(ev[0].fault.kind, TETHER__CHAOS_DELAY);
        CHECK_EQ_U64(ev[1].at_ms, 500);
        CHECK_EQ_INT(ev[1].fault.kind, TETHER__CHAOS_CUT);
        CHECK_EQ_U64(ev[2].at_ms, 2000);
        CHECK(ev[2].fault.kind == TETHER__CHAOS_STALL && !ev[2].fault.off);
        CHECK(ev[3].fault.kind == TETHER__CHAOS_STALL && ev[3].fault.off); /* file order kept */
    }
    free(ev);
    CHECK_EQ_INT(tether__chaos_parse_timeline("at 1s cut\nat 2s wobble\n", &ev, &n, NULL, NULL,
                                              NULL, err, sizeof err),
                 -1);
    CHECK(strstr(err, "line 2") != NULL);
    CHECK_EQ_INT(
        tether__chaos_parse_timeline("in 1s cut\n", &ev, &n, NULL, NULL, NULL, err, sizeof err),
        -1);
}

TEST(same_seed_same_schedule)
{
    tether__chaos_random r = {.min_ms = 100, .max_ms = 900};
    tether__chaos_event a[200], b[200], d[200];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK_EQ_INT(tether__chaos_plan(12345, &r, a, 200), 0);
    CHECK_EQ_INT(tether__chaos_plan(12345, &r, b, 200), 0);
    CHECK_MEM(a, b, sizeof a);
    CHECK_EQ_INT(tether__chaos_plan(12346, &r, d, 200), 0);
    CHECK(memcmp(a, d, sizeof a) != 0);
    int seen[TETHER__CHAOS_KINDS] = {0};
    uint64_t prev = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t gap = a[i].at_ms - prev;
        CHECK(gap >= 100 && gap <= 900);
        prev = a[i].at_ms;
        CHECK(TETHER__CHAOS_RANDOM_DEFAULT & (1u << a[i].fault.kind));
        seen[a[i].fault.kind]++;
        /* every drawn fault reads back from its own text */
        char text[200], err[200];
        tether__chaos_cmd c;
        tether__chaos_format(&a[i].fault, text, sizeof text);
        CHECK_EQ_INT(tether__chaos_parse(text, &c, err, sizeof err), 0);
        CHECK_MEM(&c.fault, &a[i].fault, sizeof c.fault);
    }
    for (int k = 1; k < TETHER__CHAOS_KINDS; k++) {
        if (TETHER__CHAOS_RANDOM_DEFAULT & (1u << k)) {
            CHECK(seen[k] > 0);
        }
    }
    /* plain cuts: immediate, FIN then RST alternately */
    tether__chaos_random p = {
        .min_ms = 10, .max_ms = 20, .kinds = 1u << TETHER__CHAOS_CUT, .plain_cuts = 1};
    CHECK_EQ_INT(tether__chaos_plan(1, &p, a, 6), 0);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(a[i].fault.rst, i % 2);
        CHECK(a[i].fault.after_bytes == 0 && a[i].fault.after_frames == 0);
    }
    tether__chaos_random bad = {.min_ms = 0, .max_ms = 10};
    CHECK_EQ_INT(tether__chaos_plan(1, &bad, a, 1), -1);
}

/* The relay applies exactly the planned schedule: its log names the same faults. */
TEST(relay_applies_the_planned_schedule)
{
    peer p;
    peer_start(&p, 1);
    logbuf *lb = calloc(1, sizeof *lb);
    pthread_mutex_init(&lb->mu, NULL);
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = p.port;
    cfg.seed = 99;
    cfg.random_on = 1;
    cfg.random = (tether__chaos_random){.min_ms = 20, .max_ms = 40};
    cfg.log = log_cb;
    cfg.log_arg = lb;
    tether__chaos *c = NULL;
    char err[200];
    CHECK_EQ_INT(tether__chaos_start(&cfg, &c, err, sizeof err), 0);
    sleep_ms(700);
    tether__chaos_stop(c);
    tether__chaos_event plan[64];
    CHECK_EQ_INT(tether__chaos_plan(99, &cfg.random, plan, 64), 0);
    int matched = 0;
    for (int i = 0; i < lb->n; i++) {
        const char *hash = strstr(lb->lines[i], "random #");
        if (!hash) {
            continue;
        }
        int k = atoi(hash + 8);
        const char *colon = strstr(hash, ": ");
        char want[200];
        tether__chaos_format(&plan[k].fault, want, sizeof want);
        CHECK(colon && strncmp(colon + 2, want, strlen(want)) == 0);
        CHECK_EQ_INT(k, matched);
        matched++;
    }
    CHECK(matched >= 10); /* 700 ms at 20..40 ms each */
    peer_stop(&p);
    pthread_mutex_destroy(&lb->mu);
    free(lb);
}

int main(void)
{
    RUN(parse_and_format_round_trip);
    RUN(parse_units_prefixes_and_errors);
    RUN(timeline_sorted_with_seed_and_random);
    RUN(same_seed_same_schedule);
    RUN(relay_applies_the_planned_schedule);
    return tt_finish();
}

/* The timer wheel with a fake clock: O(1) arm/re-arm/disarm, firing at or
 * after the deadline and never before, later turns, re-arming from fire(). */
#include "harness.h"

#include <string.h>

#include "common/timerwheel.h"

typedef struct fired_log {
    tether__tw_node *nodes[64]; /* fired, in order */
    uint64_t at[64];            /* the clock when each fired */
    int n;                      /* fired so far */
    uint64_t now;               /* the fake clock */
    tether__tw *w;              /* for re-arming from fire */
    tether__tw_node *rearm;     /* fire re-arms this node ... */
    uint64_t rearm_at;          /* ... for this time, once */
    tether__tw_node *kill;      /* fire disarms this node, once */
} fired_log;

static void on_fire(tether__tw_node *n, void *arg)
{
    fired_log *l = arg;
    CHECK(!n->armed);
    if (l->n < 64) {
        l->nodes[l->n] = n;
        l->at[l->n] = l->now;
    }
    l->n++;
    if (l->rearm) {
        tether__tw_node *r = l->rearm;
        l->rearm = NULL;
        tether__tw_arm(l->w, r, l->rearm_at);
    }
    if (l->kill) {
        tether__tw_disarm(l->w, l->kill);
        l->kill = NULL;
    }
}

static void step_to(tether__tw *w, fired_log *l, uint64_t t)
{
    while (l->now < t) {
        l->now++;
        tether__tw_advance(w, l->now, on_fire, l);
    }
}

TEST(fires_at_or_after_due_never_before)
{
    tether__tw w;
    fired_log l;
    tether__tw_node a, b, c;
    memset(&l, 0, sizeof l);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    l.now = 1000;
    CHECK_EQ_INT(tether__tw_init(&w, 8, 16, l.now), 0);
    l.w = &w;
    tether__tw_arm(&w, &a, 1020);
    tether__tw_arm(&w, &b, 1005);
    tether__tw_arm(&w, &c, 1400); /* several turns of a 128 ms wheel away */
    CHECK_EQ_INT((int)tether__tw_count(&w), 3);
    step_to(&w, &l, 1004);
    CHECK_EQ_INT(l.n, 0);
    step_to(&w, &l, 1100);
    CHECK_EQ_INT(l.n, 2);
    CHECK(l.nodes[0] == &b && l.at[0] >= 1005 && l.at[0] < 1005 + 8);
    CHECK(l.nodes[1] == &a && l.at[1] >= 1020 && l.at[1] < 1020 + 8);
    step_to(&w, &l, 1399);
    CHECK_EQ_INT(l.n, 2);
    step_to(&w, &l, 1500);
    CHECK_EQ_INT(l.n, 3);
    CHECK(l.nodes[2] == &c && l.at[2] >= 1400 && l.at[2] < 1408);
    CHECK_EQ_INT((int)tether__tw_count(&w), 0);
    tether__tw_free(&w);
}

TEST(rearm_and_disarm_replace_the_deadline)
{
    tether__tw w;
    fired_log l;
    tether__tw_node a, b;
    memset(&l, 0, sizeof l);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(tether__tw_init(&w, 4, 8, 0), 0);
    l.w = &w;
    for (int i = 0; i < 1000; i++) {
        tether__tw_arm(&w, &a, 50 + (uint64_t)i % 7); /* re-armed per "message" */
    }
    CHECK_EQ_INT((int)tether__tw_count(&w), 1);
    tether__tw_arm(&w, &a, 200);
    tether__tw_arm(&w, &b, 10);
    tether__tw_disarm(&w, &b);
    tether__tw_disarm(&w, &b); /* twice: no effect */
    step_to(&w, &l, 199);
    CHECK_EQ_INT(l.n, 0);
    step_to(&w, &l, 210);
    CHECK_EQ_INT(l.n, 1);
    CHECK(l.nodes[0] == &a);
    tether__tw_free(&w);
}

TEST(past_due_fires_at_next_advance_and_big_jumps)
{
    tether__tw w;
    fired_log l;
    tether__tw_node a, b;
    memset(&l, 0, sizeof l);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    l.now = 100;
    CHECK_EQ_INT(tether__tw_init(&w, 10, 4, l.now), 0);
    l.w = &w;
    tether__tw_arm(&w, &a, 50); /* in the past */
    tether__tw_arm(&w, &b, 5000);
    l.now = 110;
    CHECK_EQ_INT((int)tether__tw_advance(&w, l.now, on_fire, &l), 1);
    CHECK(l.nodes[0] == &a);
    /* the clock jumps many turns at once: b fires, once */
    l.now = 100000;
    CHECK_EQ_INT((int)tether__tw_advance(&w, l.now, on_fire, &l), 1);
    CHECK(l.nodes[1] == &b);
    CHECK_EQ_INT((int)tether__tw_advance(&w, l.now, on_fire, &l), 0);
    tether__tw_free(&w);
}

TEST(fire_may_rearm_and_disarm_others)
{
    tether__tw w;
    fired_log l;
    tether__tw_node a, b, c;
    memset(&l, 0, sizeof l);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(tether__tw_init(&w, 10, 8, 0), 0);
    l.w = &w;
    /* a, b and c share a slot and a tick */
    tether__tw_arm(&w, &a, 21);
    tether__tw_arm(&w, &b, 22);
    tether__tw_arm(&w, &c, 23);
    l.rearm = &a; /* the first to fire re-arms a for later (a itself if first) */
    l.rearm_at = 25;
    l.kill = &c;  /* and disarms c, which has not fired */
    l.now = 30;
    size_t n = tether__tw_advance(&w, l.now, on_fire, &l);
    CHECK_EQ_INT((int)n, 2); /* a (or b) and b (or a); never c */
    for (int i = 0; i < l.n; i++) {
        CHECK(l.nodes[i] != &c);
    }
    CHECK(!c.armed);
    /* a was re-armed for 25 <= now: it fires at the next tick, not in a loop */
    CHECK(a.armed);
    l.now = 35;
    CHECK_EQ_INT((int)tether__tw_advance(&w, l.now, on_fire, &l), 0);
    l.now = 40;
    CHECK_EQ_INT((int)tether__tw_advance(&w, l.now, on_fire, &l), 1);
    CHECK(l.nodes[2] == &a);
    CHECK_EQ_INT((int)tether__tw_count(&w), 0);
    tether__tw_free(&w);
}

TEST(bad_parameters_refused)
{
    tether__tw w;
    CHECK_EQ_INT(tether__tw_init(&w, 0, 8, 0), -1);
    CHECK_EQ_INT(tether__tw_init(&w, 8, 0, 0), -1);
    CHECK_EQ_INT(tether__tw_init(&w, 8, 5, 0), 0);
    CHECK_EQ_INT((int)w.nslots, 8);
    tether__tw_free(&w);
}

int main(void)
{
    RUN(fires_at_or_after_due_never_before);
    RUN(rearm_and_disarm_replace_the_deadline);
    RUN(past_due_fires_at_next_advance_and_big_jumps);
    RUN(fire_may_rearm_and_disarm_others);
    RUN(bad_parameters_refused);
    return tt_finish();
}

/* The keepalive queues with a fake clock: a ping when no pong came for
 * ping_ms, dead when none came pong_ms after it, never early; a pong puts a
 * connection back to waiting; removal; many connections fire in order and an
 * advance looks at due ones only; a clock that steps back is clamped. */
#include "harness.h"

#include <string.h>

#include "common/keepalive.h"

#define NN 2000

typedef struct ev_log {
    tether__ka_node *node[NN]; /* callbacks' nodes, in order */
    char kind[NN];             /* 'p' ping, 'd' dead */
    uint64_t at[NN];           /* the clock at each */
    int n;                     /* callbacks so far */
    uint64_t now;              /* the fake clock */
    tether__ka *k;             /* for callbacks that act on the queues */
    tether__ka_node *remove;   /* the next callback removes this node, once */
    int confirm_self;          /* ping callbacks confirm their own node (a pong at once) */
} ev_log;

static void note(ev_log *l, tether__ka_node *n, char kind)
{
    if (l->n < NN) {
        l->node[l->n] = n;
        l->kind[l->n] = kind;
        l->at[l->n] = l->now;
    }
    l->n++;
    if (l->remove) {
        tether__ka_remove(l->k, l->remove);
        l->remove = NULL;
    }
}

static void on_ping(tether__ka_node *n, void *arg)
{
    ev_log *l = arg;
    CHECK_EQ_INT(n->q, TETHER__KA_PINGED);
    note(l, n, 'p');
    if (l->confirm_self) {
        tether__ka_confirm(l->k, n, l->now);
    }
}

static void on_dead(tether__ka_node *n, void *arg)
{
    ev_log *l = arg;
    CHECK_EQ_INT(n->q, TETHER__KA_NONE); /* out of the queues before dead() runs */
    note(l, n, 'd');
}

static size_t step(tether__ka *k, ev_log *l, uint64_t t)
{
    l->now = t;
    return tether__ka_advance(k, t, on_ping, on_dead, l);
}

TEST(ping_then_hang_up_never_early)
{
    tether__ka k;
    tether__ka_node a;
    ev_log l;
    memset(&a, 0, sizeof a);
    memset(&l, 0, sizeof l);
    l.k = &k;
    tether__ka_init(&k, 1000, 500);
    CHECK_EQ_U64(tether__ka_next_due(&k), UINT64_MAX);
    tether__ka_confirm(&k, &a, 100);
    CHECK_EQ_INT(tether__ka_count(&k), 1);
    CHECK_EQ_U64(tether__ka_next_due(&k), 1100);
    CHECK_EQ_INT(step(&k, &l, 1099), 0);
    CHECK_EQ_INT(step(&k, &l, 1100), 1);
    CHECK_EQ_INT(l.kind[0], 'p');
    CHECK(l.node[0] == &a);
    CHECK_EQ_U64(tether__ka_next_due(&k), 1600);
    CHECK_EQ_INT(step(&k, &l, 1599), 0);
    CHECK_EQ_INT(step(&k, &l, 1600), 1);
    CHECK_EQ_INT(l.kind[1], 'd');
    CHECK(l.node[1] == &a);
    CHECK_EQ_INT(a.q, TETHER__KA_NONE);
    CHECK_EQ_INT(tether__ka_count(&k), 0);
    CHECK_EQ_INT(step(&k, &l, 100000), 0); /* dead once, then nothing */
}

TEST(a_pong_puts_the_connection_back_to_waiting)
{
    tether__ka k;
    tether__ka_node a;
    ev_log l;
    memset(&a, 0, sizeof a);
    memset(&l, 0, sizeof l);
    l.k = &k;
    tether__ka_init(&k, 1000, 500);
    tether__ka_confirm(&k, &a, 0);
    CHECK_EQ_INT(step(&k, &l, 1000), 1); /* ping */
    tether__ka_confirm(&k, &a, 1200);    /* its pong */
    CHECK_EQ_INT(a.q, TETHER__KA_WAITING);
    CHECK_EQ_INT(tether__ka_count(&k), 1);
    CHECK_EQ_INT(step(&k, &l, 1500), 0); /* the old hang-up time passes: nothing */
    CHECK_EQ_INT(step(&k, &l, 2199), 0);
    CHECK_EQ_INT(step(&k, &l, 2200), 1); /* the next ping, ping_ms after the pong */
    CHECK_EQ_INT(l.kind[1], 'p');
    /* a pong while waiting (unsolicited) moves the next ping too */
    tether__ka_confirm(&k, &a, 2300);
    CHECK_EQ_INT(step(&k, &l, 3299), 0);
    CHECK_EQ_INT(step(&k, &l, 3300), 1);
    /* a late advance: hang-up only once pong_ms passed after the ping was sent */
    CHECK_EQ_INT(step(&k, &l, 3799), 0);
    CHECK_EQ_INT(step(&k, &l, 5000), 1);
    CHECK_EQ_INT(l.kind[3], 'd');
}

TEST(removed_connections_never_fire)
{
    tether__ka k;
    tether__ka_node a, b, c;
    ev_log l;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(&l, 0, sizeof l);
    l.k = &k;
    tether__ka_init(&k, 1000, 1000);
    tether__ka_remove(&k, &a); /* in no queue: left alone */
    CHECK_EQ_INT(tether__ka_count(&k), 0);
    tether__ka_confirm(&k, &a, 0);
    tether__ka_confirm(&k, &b, 10);
    tether__ka_confirm(&k, &c, 20);
    tether__ka_remove(&k, &a);
    tether__ka_remove(&k, &a);
    CHECK_EQ_INT(tether__ka_count(&k), 2);
    CHECK_EQ_U64(tether__ka_next_due(&k), 1010);
    /* b's ping callback removes c, which was also due: c never fires */
    l.remove = &c;
    CHECK_EQ_INT(step(&k, &l, 5000), 1);
    CHECK(l.node[0] == &b);
    CHECK_EQ_INT(c.q, TETHER__KA_NONE);
    /* b was pinged at 5000; removed while pinged: no hang-up */
    tether__ka_remove(&k, &b);
    CHECK_EQ_INT(step(&k, &l, 100000), 0);
    CHECK_EQ_INT(tether__ka_count(&k), 0);
    CHECK_EQ_U64(tether__ka_next_due(&k), UINT64_MAX);
}

/* NN connections opened 1 ms apart: pings come in order, each at its time,
 * and an advance runs callbacks only for the due ones. */
TEST(many_connections_in_order)
{
    static tether__ka_node nodes[NN];
    static ev_log l;
    tether__ka k;
    memset(nodes, 0, sizeof nodes);
    memset(&l, 0, sizeof l);
    l.k = &k;
    l.confirm_self = 1; /* every ping answered at once */
    tether__ka_init(&k, 20000, 10000);
    for (int i = 0; i < NN; i++) {
        tether__ka_confirm(&k, &nodes[i], (uint64_t)i);
    }
    CHECK_EQ_INT(tether__ka_count(&k), NN);
    CHECK_EQ_INT(step(&k, &l, 19999), 0);
    /* each ms from 20000 on, exactly one more ping is due */
    for (uint64_t t = 20000; t < 20000 + NN; t += 100) {
        size_t ran = step(&k, &l, t);
        CHECK_EQ_INT(ran, t == 20000 ? 1 : 100);
    }
    CHECK_EQ_INT(l.n, NN - 99);
    for (int i = 0; i < l.n && i < NN; i++) {
        CHECK(l.node[i] == &nodes[i]);
        CHECK_EQ_INT(l.kind[i], 'p');
        CHECK(l.at[i] >= (uint64_t)i + 20000);
    }
    CHECK_EQ_INT(tether__ka_count(&k), NN);                 /* all confirmed again, none dead */
    CHECK_EQ_U64(tether__ka_next_due(&k), 20000 + NN - 99); /* the first not yet pinged */
}

TEST(a_clock_that_steps_back_is_clamped)
{
    tether__ka k;
    tether__ka_node a, b;
    ev_log l;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&l, 0, sizeof l);
    l.k = &k;
    tether__ka_init(&k, 1000, 1000);
    tether__ka_confirm(&k, &a, 5000);
    tether__ka_confirm(&k, &b, 4000); /* earlier than seen: counts as 5000, behind a */
    CHECK(k.waiting.next == &a);
    CHECK_EQ_U64(b.due, 6000);
    CHECK_EQ_INT(step(&k, &l, 5999), 0);
    CHECK_EQ_INT(step(&k, &l, 3000), 0); /* back in time: nothing fires */
    CHECK_EQ_INT(step(&k, &l, 6000), 2);
    CHECK(l.node[0] == &a && l.node[1] == &b);
}

int main(void)
{
    RUN(ping_then_hang_up_never_early);
    RUN(a_pong_puts_the_connection_back_to_waiting);
    RUN(removed_connections_never_fire);
    RUN(many_connections_in_order);
    RUN(a_clock_that_steps_back_is_clamped);
    return tt_finish();
}

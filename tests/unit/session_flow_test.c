/*
 * The session engine, delivery and acknowledgement: the first exchange,
 * exactly once under random disconnects, coalescing into runs, the window,
 * and when ACKs are written (every k, by timer, when the peer's window is
 * full). The world is in session_fixture.h.
 */
#include "session_fixture.h"

TEST(hello_welcome_first_data)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    world_init(&w, &cc, &sc);
    CHECK(!tether__engine_live(w.c.e));
    CHECK(!tether__engine_want_write(w.c.e, now));
    conn(&w);
    CHECK(tether__engine_want_write(w.c.e, now));
    CHECK_EQ_U64(write_some(&w, &w.c, &w.s, SIZE_MAX), 1);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_HELLO], 1);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK(tether__engine_live(w.s.e));
    CHECK_EQ_INT(w.s.closes, 0);
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_WELCOME], 1);
    deliver_some(&w, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.c.welcomed, 1);
    CHECK_EQ_INT(w.c.resumed, 0);
    CHECK(tether__engine_live(w.c.e));
    CHECK_EQ_INT(tether__engine_rec(w.c.e)->established, 1);
    CHECK_EQ_INT(tether__engine_rec(w.s.e)->established, 1);
    tether__session_rec rec;
    CHECK_OK(w.c.fs->base.ops->session_get(&w.c.fs->base, ID, &rec));
    CHECK_EQ_INT(rec.established, 1);

    CHECK_OK(send_k(&w.c, 1));
    CHECK_OK(send_k(&w.s, 1));
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_U64(w.c.got, 1);
    CHECK_EQ_U64(w.s.pay_err + w.c.pay_err, 0);
    CHECK_EQ_U64(w.s.redelivered + w.c.redelivered, 0);
    CHECK_EQ_U64(committed(&w.s), 1);
    CHECK_EQ_U64(stored_cursor(&w.s), 1);
    /* The ACKs wait for their timer. */
    CHECK_EQ_U64(w.c.acked, 0);
    uint64_t count = 9, bytes = 9;
    tether__engine_pending(w.c.e, &count, &bytes);
    CHECK_EQ_U64(count, 1);
    CHECK(bytes > 0);
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 1);
    CHECK_EQ_U64(w.s.acked, 1);
    tether__engine_pending(w.c.e, &count, &bytes);
    CHECK_EQ_U64(count, 0);
    CHECK_EQ_U64(bytes, 0);
    CHECK_EQ_INT(w.c.closes + w.s.closes, 0);
    world_free(&w);
}

static void pending_agrees(side *x)
{
    uint64_t c1, b1, c2, b2;
    tether__engine_pending(x->e, &c1, &b1);
    CHECK_OK(x->fs->base.ops->pending(&x->fs->base, ID, &c2, &b2));
    CHECK_EQ_U64(c1, c2);
    CHECK_EQ_U64(b1, b2);
}

/* One run of the random exchange. manual: both sides in manual-ack mode;
 * restarts: engines are sometimes recreated from their store; qmax: the
 * client's queue bound (small: most of its messages spill to the store). */
static void random_exchange(uint32_t seed, int manual, int restarts, size_t qmax)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 32;
    sc.window = 100;
    sc.ack_every = 40;
    cc.run_max_bytes = 300;
    cc.queue_max_bytes = qmax;
    cc.manual_ack = sc.manual_ack = manual;
    world_init(&w, &cc, &sc);
    w.c.manual_auto_ack = w.s.manual_auto_ack = manual;
    const uint64_t N = 10000;
    uint64_t x = seed ? seed : 1;
    uint64_t drops = 0, rounds = 0;
    conn(&w);
    for (;;) {
        uint64_t out_c = tether__engine_rec(w.c.e)->out_last;
        uint64_t out_s = tether__engine_rec(w.s.e)->out_last;
        if (out_c == N && out_s == N && w.c.acked == N && w.s.acked == N) {
            break;
        }
        if (++rounds > 2000000) {
            CHECK(!"the exchange did not finish");
            break;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t r = (uint32_t)(x >> 11);
        if (out_c < N && r % 3 == 0) {
            size_t k = 1 + (r >> 3) % 40;
            CHECK_OK(send_k(&w.c, k > N - out_c ? (size_t)(N - out_c) : k));
        }
        if (out_s < N && (r >> 2) % 3 == 0) {
            size_t k = 1 + (r >> 5) % 40;
            CHECK_OK(send_k(&w.s, k > N - out_s ? (size_t)(N - out_s) : k));
        }
        write_some(&w, &w.c, &w.s, 1 + (r >> 9) % 4);
        write_some(&w, &w.s, &w.c, 1 + (r >> 11) % 4);
        deliver_some(&w, &w.s, (r >> 13) % 4);
        deliver_some(&w, &w.c, (r >> 15) % 4);
        advance(&w, (r >> 17) % 4);
        /* Never acknowledged past what the receiver committed. */
        CHECK(tether__engine_rec(w.c.e)->peer_acked <= committed(&w.s));
        CHECK(tether__engine_rec(w.s.e)->peer_acked <= committed(&w.c));
        /* The engine's pending bytes stay equal to what the store holds. */
        if (rounds % 16 == 0) {
            pending_agrees(&w.c);
            pending_agrees(&w.s);
        }
        if ((r >> 19) % 100 < 2) {
            drop(&w);
            drops++;
            if (restarts && (r >> 26) % 4 == 0) {
                side_restart((r >> 28) & 1 ? &w.c : &w.s);
            }
            conn(&w);
        }
    }
    CHECK(drops > 10);
    side *sides[2] = {&w.c, &w.s};
    for (int i = 0; i < 2; i++) {
        side *a = sides[i];
        side *b = sides[1 - i];
        CHECK_EQ_U64(a->got, N);
        CHECK_EQ_U64(a->order_err, 0);
        CHECK_EQ_U64(a->pay_err, 0);
        CHECK_EQ_U64(a->next_expect, N + 1);
        CHECK_EQ_U64(a->acked, N);
        CHECK_EQ_U64(a->acked_err, 0);
        CHECK_EQ_U64(a->window_err, 0);
        CHECK_EQ_U64(committed(b), a->acked);
        CHECK_EQ_U64(stored_cursor(b), N);
        CHECK_EQ_INT(a->mismatch_n, 0);
        CHECK_EQ_INT(a->closes, 0);
        uint64_t count, bytes;
        tether__engine_pending(a->e, &count, &bytes);
        CHECK_EQ_U64(count, 0);
        CHECK_EQ_U64(bytes, 0);
        CHECK_OK(a->fs->base.ops->pending(&a->fs->base, ID, &count, &bytes));
        CHECK_EQ_U64(count, 0);
    }
    /* Some messages were resent after a drop, and were flagged. */
    CHECK(w.c.redelivered + w.s.redelivered > 0 || !restarts);
    world_free(&w);
}

TEST(exactly_once_random_disconnects)
{
    random_exchange(12345, 0, 0, 1 << 20);
    random_exchange(777, 0, 1, 1 << 20);
    random_exchange(31337, 0, 1, 2000);
}

TEST(exactly_once_manual_ack_random)
{
    random_exchange(4242, 1, 1, 2000);
}

TEST(coalescing)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 2000;
    cc.run_max_bytes = 64 * 1024;
    sc.max_message = 64 * 1024; /* the run is bounded by the peer's max_message too */
    sc.ack_every = 2000;
    world_init(&w, &cc, &sc);
    static uint8_t small[1000][10];
    tether_msg m[1000];
    for (int i = 0; i < 1000; i++) {
        memset(small[i], 'a' + i % 26, 10);
        m[i].data = small[i];
        m[i].len = 10;
    }
    CHECK_OK(tether__engine_send(w.c.e, m, 1000, NULL));
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1000);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 1);
    CHECK_EQ_U64(w.c.data[0].count, 1000);

    /* With runs of at most 100 bytes: ten messages per frame. */
    world_free(&w);
    cc.run_max_bytes = 100;
    world_init(&w, &cc, &sc);
    CHECK_OK(tether__engine_send(w.c.e, m, 1000, NULL));
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1000);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 100);
    for (size_t i = 0; i < w.c.data_n; i++) {
        CHECK_EQ_U64(w.c.data[i].count, 10);
        CHECK_EQ_U64(w.c.data[i].first, 1 + 10 * i);
    }
    /* A message larger than run_max_bytes still goes, alone. */
    static uint8_t big[500];
    tether_msg b[3] = {{small[0], 10}, {big, sizeof big}, {small[1], 10}};
    CHECK_OK(tether__engine_send(w.c.e, b, 3, NULL));
    size_t before = w.c.data_n;
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1003);
    CHECK_EQ_U64(w.c.data_n - before, 3);
    world_free(&w);
}

TEST(window_limit)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 8;
    cc.run_max_bytes = 100; /* about two messages a frame */
    sc.manual_ack = 1;      /* the server acknowledges only when told */
    live_world(&w, &cc, &sc);
    send_n(&w.c, 100);
    pump(&w);
    advance(&w, 1000);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 8);
    CHECK(!tether__engine_want_write(w.c.e, now));
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 3); /* 21+34, 47+20+33, 46+19+32 bytes */
    CHECK_OK(tether__engine_ack(w.s.e, 5, now));
    pump(&w);
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 5);
    CHECK_EQ_U64(w.s.got, 13);
    CHECK_EQ_U64(w.c.window_err, 0);
    for (int i = 0; i < 40; i++) {
        CHECK_OK(tether__engine_ack(w.s.e, w.s.got, now));
        advance(&w, 10);
        pump(&w);
    }
    CHECK_EQ_U64(w.s.got, 100);
    CHECK_EQ_U64(w.c.acked, 100);
    CHECK_EQ_U64(w.c.window_err, 0);
    CHECK_EQ_U64(w.s.order_err, 0);
    world_free(&w);
}

TEST(ack_every_k)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_every = 10;
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    for (int i = 0; i < 25; i++) {
        CHECK_OK(send_k(&w.c, 1));
        pump(&w);
    }
    CHECK_EQ_U64(w.s.got, 25);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 2);
    CHECK_EQ_U64(w.c.acked, 20);
    advance(&w, 999);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 20);
    advance(&w, 1);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 25);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 3);
    world_free(&w);
}

TEST(ack_by_timer)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_every = 100;
    sc.ack_delay_ms = 50;
    live_world(&w, &cc, &sc);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), UINT64_MAX);
    uint64_t t0 = now;
    send_n(&w.c, 3);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), t0 + 50);
    CHECK(!tether__engine_want_write(w.s.e, now));
    advance(&w, 49);
    CHECK(!tether__engine_want_write(w.s.e, now));
    pump(&w);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    /* The timer runs from the first unacked message, not the latest. */
    send_n(&w.c, 2);
    pump(&w);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), t0 + 50);
    advance(&w, 1);
    CHECK(tether__engine_want_write(w.s.e, now));
    pump(&w);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 1);
    CHECK_EQ_U64(w.s.last_ack_out, 5);
    CHECK_EQ_U64(w.c.acked, 5);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), UINT64_MAX);
    world_free(&w);
}

TEST(ack_when_peer_window_full)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 4;
    sc.ack_every = 100;
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    send_n(&w.c, 10);
    pump(&w); /* no time passes */
    CHECK_EQ_U64(w.s.got, 10);
    CHECK_EQ_U64(w.c.acked, 8);
    CHECK(w.s.out_frames[TETHER__F_ACK] >= 2);
    CHECK_EQ_U64(w.c.window_err, 0);
    world_free(&w);
}

int main(void)
{
    RUN(hello_welcome_first_data);
    RUN(exactly_once_random_disconnects);
    RUN(exactly_once_manual_ack_random);
    RUN(coalescing);
    RUN(window_limit);
    RUN(ack_every_k);
    RUN(ack_by_timer);
    RUN(ack_when_peer_window_full);
    return tt_finish();
}

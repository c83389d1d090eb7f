/*
 * The session engine across restarts: resume from the store, backlogs that
 * spill from memory, and every kind of state mismatch between the two sides.
 * The world is in session_fixture.h.
 */
#include "session_fixture.h"

TEST(resume_after_restart)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.run_max_bytes = 1; /* one message per DATA frame */
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    track_flags(&w.s, 20);
    send_n(&w.c, 10);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, 4); /* 1..4 arrive and are committed, unacked */
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_U64(committed(&w.s), 4);
    drop(&w);
    side_restart(&w.c);
    uint64_t count;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 10);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.c.resumed, 1);
    CHECK_EQ_U64(w.c.acked, 4); /* from the WELCOME's cursor */
    CHECK_EQ_U64(w.s.got, 10);
    CHECK_EQ_U64(w.s.order_err, 0);
    for (int s = 1; s <= 4; s++) {
        CHECK_EQ_INT(w.s.flags[s], 1);
    }
    for (int s = 5; s <= 10; s++) {
        CHECK_EQ_INT(w.s.flags[s], 2);
    }
    CHECK_EQ_U64(w.c.data[w.c.data_n - 6].first, 5);

    /* The server restarts: what it committed is not delivered again. */
    send_n(&w.c, 2);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_U64(w.s.got, 12);
    drop(&w);
    side_restart(&w.s);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 12);
    CHECK_EQ_U64(w.c.acked, 12);
    CHECK_EQ_INT(w.c.mismatch_n + w.s.mismatch_n, 0);
    CHECK_EQ_INT(w.c.closes + w.s.closes, 0);
    world_free(&w);
}

TEST(spilled_backlog_streams_from_store)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.queue_max_bytes = 256;
    cc.run_max_bytes = 512;
    cc.window = 100;
    world_init(&w, &cc, &sc);
    size_t qb, peak, scratch;
    for (int i = 0; i < 5000; i++) {
        CHECK_OK(send_k(&w.c, 1));
        tether__engine_debug_mem(w.c.e, &qb, NULL, NULL);
        CHECK(qb <= 256);
    }
    tether__engine_debug_mem(w.c.e, &qb, &peak, NULL);
    CHECK(qb > 0);
    conn(&w);
    size_t max_scratch = 0;
    for (int i = 0; i < 100000 && w.c.acked < 5000; i++) {
        write_some(&w, &w.c, &w.s, 1);
        deliver_some(&w, &w.s, SIZE_MAX);
        write_some(&w, &w.s, &w.c, SIZE_MAX);
        deliver_some(&w, &w.c, SIZE_MAX);
        if (i % 7 == 0) {
            advance(&w, 10);
        }
        tether__engine_debug_mem(w.c.e, &qb, &peak, &scratch);
        if (scratch > max_scratch) {
            max_scratch = scratch;
        }
    }
    CHECK_EQ_U64(w.s.got, 5000);
    CHECK_EQ_U64(w.s.order_err + w.s.pay_err, 0);
    CHECK_EQ_U64(w.c.acked, 5000);
    CHECK(peak <= 256);
    CHECK(w.c.fs->loads > 10);
    /* One run's payloads (512 bytes) and their lengths, rounded up. */
    CHECK(max_scratch <= 8192);
    /* Once the backlog is gone, new messages are kept in memory again. */
    size_t loads = w.c.fs->loads;
    send_n(&w.c, 3);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 5003);
    CHECK_EQ_U64(w.c.fs->loads, loads);
    world_free(&w);
}

TEST(large_backlog_bounded_memory)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.queue_max_bytes = 4096;
    cc.run_max_bytes = 16384;
    cc.window = 1024;
    sc.ack_every = 512;
    world_init(&w, &cc, &sc);
    const size_t N = 200000;
    send_n(&w.c, N);
    size_t qb, peak, scratch;
    conn(&w);
    pump(&w);
    settle(&w);
    tether__engine_debug_mem(w.c.e, &qb, &peak, &scratch);
    CHECK_EQ_U64(w.s.got, N);
    CHECK_EQ_U64(w.s.order_err + w.s.pay_err, 0);
    CHECK_EQ_U64(w.c.acked, N);
    CHECK(peak <= 4096);
    CHECK(scratch <= 16384 * 2 + 8 * 1024 * 2);
    world_free(&w);
}

/* Sets up a client that has 7 acked and 3 unacked messages on a live session. */
static void history(world *w)
{
    live_default(w);
    send_n(&w->c, 7);
    settle(w);
    CHECK_EQ_U64(w->c.acked, 7);
    send_n(&w->c, 3);
    drop(w);
}

TEST(mismatch_server_lost_session)
{
    world w;
    history(&w);
    /* The server lost its store: a new record under the same id. */
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, ID, 16);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    uint64_t got = w.s.got;
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.s.mismatch_n, 0);
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK(w.c.mismatch_before_close);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 0);
    CHECK_EQ_U64(w.c.mi.lost_acked, 7);
    CHECK_EQ_U64(w.c.mi.local_peer_acked, 7);
    CHECK_EQ_U64(w.c.mi.local_out_last, 10);
    CHECK_MEM(w.c.mi.session.bytes, ID, 16);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_INT(w.c.welcomed, 1); /* only the first connection */
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_MISMATCH);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.s.got, got);
    CHECK(!tether__engine_live(w.c.e));
    world_free(&w);
}

TEST(mismatch_server_cursor_behind)
{
    world w;
    history(&w);
    /* The server's store went back in time (a restored backup). */
    tether__session_rec rec;
    CHECK_OK(w.s.fs->base.ops->session_get(&w.s.fs->base, ID, &rec));
    rec.recv_cursor = 5;
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 1);
    CHECK_EQ_U64(w.c.mi.peer_recv_cursor, 5);
    CHECK_EQ_U64(w.c.mi.lost_acked, 2);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.c.acked, 7);
    world_free(&w);
}

TEST(mismatch_client_cursor_beyond_server)
{
    world w;
    live_default(&w);
    send_n(&w.s, 9);
    settle(&w);
    CHECK_EQ_U64(committed(&w.c), 9);
    drop(&w);
    /* The server forgot its last messages: out_last 4 < the client's cursor 9. */
    tether__session_rec rec;
    CHECK_OK(w.s.fs->base.ops->session_get(&w.s.fs->base, ID, &rec));
    rec.out_last = 4;
    rec.peer_acked = 4;
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    conn(&w);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.s.mismatch_n, 1);
    CHECK(w.s.mismatch_before_close);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.s.mi.peer_recv_cursor, 9);
    CHECK_EQ_U64(w.s.mi.local_out_last, 4);
    CHECK(!tether__engine_live(w.s.e));
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_WELCOME], 2);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_MISMATCH);
    deliver_some(&w, &w.c, SIZE_MAX);
    /* The client sees it in the WELCOME itself: one report, not two. */
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_U64(w.c.mi.unknown_received, 5);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    world_free(&w);
}

TEST(mismatch_only_server_sees)
{
    world w;
    live_default(&w);
    send_n(&w.s, 8);
    settle(&w);
    CHECK_EQ_U64(w.s.acked, 8);
    drop(&w);
    /* The client's store went back: its cursor 4 is behind the server's acked 8. */
    tether__session_rec rec;
    CHECK_OK(w.c.fs->base.ops->session_get(&w.c.fs->base, ID, &rec));
    rec.recv_cursor = 4;
    tether__engine_destroy(w.c.e);
    w.c.fs->base.ops->close(&w.c.fs->base);
    w.c.fs = fstore_open(TETHER__ROLE_CLIENT);
    CHECK_OK(w.c.fs->base.ops->session_put(&w.c.fs->base, &rec));
    engine_open(&w.c, &rec);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.s.mismatch_n, 1);
    CHECK_EQ_U64(w.s.mi.lost_acked, 4);
    /* The WELCOME was consistent for the client; the BYE 6 after it is reported
     * with the WELCOME's numbers. */
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 1);
    CHECK_EQ_U64(w.c.mi.peer_out_last, 8);
    CHECK_EQ_U64(w.c.mi.local_recv_cursor, 4);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_MISMATCH);
    world_free(&w);
}

TEST(mismatch_check_pure)
{
    tether__session_rec r;
    tether_mismatch_info mi;
    memset(&r, 0, sizeof r);
    memcpy(r.id, ID, 16);
    /* Fresh on both sides, even with a backlog. */
    r.out_last = 50;
    CHECK_EQ_INT(tether__mismatch_check(&r, 0, 0, 0, 0, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 0, 0, 0, &mi), 0);
    /* We expect history; the peer has none. */
    CHECK_EQ_INT(tether__mismatch_check(&r, 0, 1, 0, 0, &mi), 1);
    CHECK_EQ_INT(mi.peer_knows_session, 0);
    r.peer_acked = 20;
    r.recv_cursor = 30;
    /* Consistent: the peer's cursor between our acked and out_last, its
     * out_last at or beyond our cursor. */
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 20, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 99, 50, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 19, &mi), 1);
    CHECK_EQ_U64(mi.lost_acked, 1);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 51, &mi), 1);
    CHECK_EQ_U64(mi.lost_acked, 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 25, 20, &mi), 1);
    CHECK_EQ_U64(mi.unknown_received, 5);
    CHECK_MEM(mi.session.bytes, ID, 16);
    CHECK_EQ_U64(mi.local_out_last, 50);
    CHECK_EQ_U64(mi.local_peer_acked, 20);
    CHECK_EQ_U64(mi.local_recv_cursor, 30);
    CHECK_EQ_U64(mi.peer_out_last, 25);
    CHECK_EQ_U64(mi.peer_recv_cursor, 20);
    CHECK_EQ_INT(mi.peer_knows_session, 1);
}

int main(void)
{
    RUN(resume_after_restart);
    RUN(spilled_backlog_streams_from_store);
    RUN(large_backlog_bounded_memory);
    RUN(mismatch_server_lost_session);
    RUN(mismatch_server_cursor_behind);
    RUN(mismatch_client_cursor_beyond_server);
    RUN(mismatch_only_server_sees);
    RUN(mismatch_check_pure);
    return tt_finish();
}

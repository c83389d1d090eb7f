/*
 * The session engine, receiving: duplicates are re-acked and not redelivered,
 * gaps and malformed bytes are protocol errors, the redelivered flag, and
 * manual acknowledgement. The world is in session_fixture.h.
 */
#include "session_fixture.h"

TEST(duplicate_reacked_not_redelivered)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK(!tether__engine_want_write(w.s.e, now));
    inject_data(&w, &w.s, 2, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_INT(w.s.closes, 0);
    CHECK(tether__engine_want_write(w.s.e, now));
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_U64(w.s.last_ack_out, 3);
    /* A run that overlaps: the new part is delivered, once. */
    inject_data(&w, &w.s, 3, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_U64(w.s.order_err, 0);
    CHECK_EQ_U64(committed(&w.s), 4);
    CHECK(tether__engine_want_write(w.s.e, now));
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_U64(w.s.last_ack_out, 4);
    world_free(&w);
}

TEST(gap_is_protocol_error)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    pump(&w);
    inject_data(&w, &w.s, 4, 1, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    inject_data(&w, &w.s, 6, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_INT(w.s.closes, 1);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EGAP);
    CHECK_EQ_STR(w.s.ev.detail, "gap: expected seq 5, got 6");
    CHECK(!tether__engine_live(w.s.e));
    CHECK_EQ_U64(committed(&w.s), 4);
    tether__engine_event ce;
    CHECK(tether__engine_close_event(w.s.e, &ce));
    CHECK_EQ_INT(ce.error, TETHER_EGAP);
    /* Only the BYE goes out: no ACK, and nothing past what was committed. */
    advance(&w, 1000);
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_PROTOCOL);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK(!tether__engine_want_write(w.s.e, now));
    /* Later frames are ignored until the connection is gone. */
    inject_data(&w, &w.s, 5, 1, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_INT(w.s.closes, 1);
    deliver_some(&w, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_PROTOCOL);
    CHECK(w.c.acked <= 4);
    world_free(&w);
}

TEST(ack_beyond_out_last)
{
    world w;
    live_default(&w);
    send_n(&w.c, 5);
    inject_ack(&w, &w.c, 6);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_U64(w.c.acked, 0);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_PROTOCOL);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 0);
    world_free(&w);

    /* A stale ACK is ignored. */
    live_default(&w);
    send_n(&w.c, 5);
    inject_ack(&w, &w.c, 3);
    CHECK_EQ_U64(w.c.acked, 3);
    inject_ack(&w, &w.c, 2);
    inject_ack(&w, &w.c, 3);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_EQ_U64(w.c.acked_err, 0);
    CHECK_EQ_INT(w.c.closes, 0);
    world_free(&w);
}

TEST(malformed_bytes)
{
    static const uint8_t junk[][4] = {{0xc1}, {0x93, 0x04}, {0x91, 0x63}, {0x92, 0x05, 0x00}};
    static const size_t lens[] = {1, 2, 2, 3};
    for (int i = 0; i < 4; i++) {
        world w;
        live_default(&w);
        tether__frame f;
        int want = tether__decode(&w.spy, junk[i], lens[i], &f);
        CHECK(want < 0);
        feed(&w, &w.s, junk[i], lens[i]);
        CHECK_EQ_INT(w.s.closes, 1);
        CHECK_EQ_INT(w.s.ev.error, want);
        write_some(&w, &w.s, &w.c, SIZE_MAX);
        CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_PROTOCOL);
        world_free(&w);
    }
    /* A payload beyond our max_message: BYE 7. */
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.max_message = 16;
    live_world(&w, &cc, &sc);
    inject_data(&w, &w.s, 1, 1, 0, 0); /* 8 + 13 bytes */
    CHECK_EQ_INT(w.s.ev.error, TETHER_EFRAME_OVERSIZE);
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_TOO_BIG);
    CHECK_EQ_U64(w.s.got, 0);
    world_free(&w);
}

TEST(redelivered_flag)
{
    world w;
    live_default(&w);
    track_flags(&w.s, 20);
    send_n(&w.c, 5);
    write_some(&w, &w.c, &w.s, SIZE_MAX); /* written, then lost */
    drop(&w);
    send_n(&w.c, 2);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 7);
    for (int s = 1; s <= 5; s++) {
        CHECK_EQ_INT(w.s.flags[s], 2);
    }
    CHECK_EQ_INT(w.s.flags[6], 1);
    CHECK_EQ_INT(w.s.flags[7], 1);
    /* Runs never mix flagged and unflagged messages. */
    size_t n = w.c.data_n;
    CHECK(n >= 3);
    CHECK_EQ_U64(w.c.data[n - 2].first, 1);
    CHECK_EQ_U64(w.c.data[n - 2].count, 5);
    CHECK_EQ_INT(w.c.data[n - 2].flags, TETHER__DATA_FLAG_REDELIVERED);
    CHECK_EQ_U64(w.c.data[n - 1].first, 6);
    CHECK_EQ_INT(w.c.data[n - 1].flags, 0);
    /* Fresh messages on a fresh connection are not flagged. */
    send_n(&w.c, 1);
    pump(&w);
    CHECK_EQ_INT(w.s.flags[8], 1);
    world_free(&w);
}

TEST(manual_ack)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.manual_ack = 1;
    live_world(&w, &cc, &sc);
    CHECK_ERR(tether__engine_ack(w.c.e, 1, now), TETHER_EINVAL); /* not manual */
    send_n(&w.c, 5);
    pump(&w);
    advance(&w, 5000);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 5);
    CHECK_EQ_U64(committed(&w.s), 0);
    CHECK_EQ_U64(stored_cursor(&w.s), 0);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_ERR(tether__engine_ack(w.s.e, 6, now), TETHER_EINVAL);
    CHECK_ERR(tether__engine_ack(w.s.e, 0, now), TETHER_EINVAL);
    CHECK_OK(tether__engine_ack(w.s.e, 3, now));
    CHECK_EQ_U64(stored_cursor(&w.s), 3);
    CHECK_OK(tether__engine_ack(w.s.e, 2, now)); /* behind the cursor: nothing to do */
    CHECK_EQ_U64(committed(&w.s), 3);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 0); /* the ACK waits for its timer */
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    /* After a reconnect the uncommitted ones come again but are not
     * delivered twice in this process. */
    drop(&w);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 5);
    CHECK_OK(tether__engine_ack(w.s.e, 5, now));
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 5);
    /* After a restart they are delivered again, flagged. */
    send_n(&w.c, 2);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 7);
    drop(&w);
    side_restart(&w.s);
    w.s.next_expect = 6;
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 9);
    CHECK_EQ_U64(w.s.redelivered, 2);
    CHECK_EQ_U64(w.s.order_err, 0);
    world_free(&w);
}

int main(void)
{
    RUN(duplicate_reacked_not_redelivered);
    RUN(gap_is_protocol_error);
    RUN(ack_beyond_out_last);
    RUN(malformed_bytes);
    RUN(redelivered_flag);
    RUN(manual_ack);
    return tt_finish();
}

/*
 * The session engine's limits and failures: outbox caps, bad arguments,
 * messages the peer cannot take, REJECT and BYE, protocol errors and store
 * failures. The world is in session_fixture.h.
 */
#include "session_fixture.h"

#include "common/alloc.h"
#include "engine/session_int.h"

TEST(outbox_caps)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.outbox_max_messages = 3;
    sc.outbox_max_bytes = 100;
    world_init(&w, &cc, &sc);
    CHECK_OK(send_k(&w.c, 3));
    CHECK_ERR(send_k(&w.c, 1), TETHER_EOUTBOX_FULL);
    uint64_t count, bytes;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 3);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->out_last, 3);
    CHECK_OK(w.c.fs->base.ops->pending(&w.c.fs->base, ID, &count, &bytes));
    CHECK_EQ_U64(count, 3);
    static uint8_t b60[60], b50[50];
    tether_msg m = {b60, sizeof b60};
    CHECK_OK(tether__engine_send(w.s.e, &m, 1, NULL));
    m.data = b50;
    m.len = sizeof b50;
    CHECK_ERR(tether__engine_send(w.s.e, &m, 1, NULL), TETHER_EOUTBOX_FULL);
    tether__engine_pending(w.s.e, &count, &bytes);
    CHECK_EQ_U64(count, 1);
    CHECK_EQ_U64(bytes, 60);
    /* Acknowledged messages make room. */
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_OK(send_k(&w.c, 3));
    CHECK_OK(tether__engine_send(w.s.e, &m, 1, NULL));
    world_free(&w);
}

TEST(send_arguments)
{
    world w;
    live_default(&w);
    static uint8_t big[4097];
    tether_msg m = {big, sizeof big};
    CHECK_ERR(tether__engine_send(w.c.e, &m, 1, NULL), TETHER_ETOOBIG);
    tether_msg two[2] = {{big, 10}, {big, sizeof big}};
    CHECK_ERR(tether__engine_send(w.c.e, two, 2, NULL), TETHER_ETOOBIG);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->out_last, 0);
    uint64_t count, bytes;
    CHECK_OK(w.c.fs->base.ops->pending(&w.c.fs->base, ID, &count, &bytes));
    CHECK_EQ_U64(count, 0);
    CHECK_ERR(tether__engine_send(w.c.e, &m, 0, NULL), TETHER_EINVAL);
    tether_msg null = {NULL, 3};
    CHECK_ERR(tether__engine_send(w.c.e, &null, 1, NULL), TETHER_EINVAL);
    /* Empty messages are messages. */
    tether_msg empty = {NULL, 0};
    uint64_t seq = 0;
    CHECK_OK(tether__engine_send(w.c.e, &empty, 1, &seq));
    CHECK_EQ_U64(seq, 1);
    m.len = 4096;
    CHECK_OK(tether__engine_send(w.c.e, &m, 1, &seq));
    CHECK_EQ_U64(seq, 2);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 2);
    world_free(&w);
}

TEST(message_larger_than_peer_accepts)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.max_message = 100;
    live_world(&w, &cc, &sc);
    static uint8_t pay[3][PAY_MAX + 500];
    tether_msg m[3];
    for (int i = 0; i < 3; i++) {
        m[i].len = mkpay((uint64_t)i + 1, 0, pay[i]);
        m[i].data = pay[i];
    }
    m[1].len = 500; /* seq 2 is too big for the server */
    CHECK_OK(tether__engine_send(w.c.e, m, 3, NULL));
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_INT(w.c.self_err, TETHER_ETOOBIG);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_TOO_BIG);
    tether__engine_event ce;
    CHECK(tether__engine_close_event(w.c.e, &ce));
    CHECK_EQ_INT(ce.error, TETHER_ETOOBIG);
    CHECK(strstr(ce.detail, "message 2 ") != NULL);
    CHECK(tether__engine_want_write(w.c.e, now));
    CHECK_EQ_INT(tether__engine_next_frame(w.c.e, now, &w.buf), TETHER_ETOOBIG);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.s.ev.peer_code, TETHER_REJECT_TOO_BIG);
    /* Not skipped: the next connection stops at the same message. */
    drop(&w);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_INT(w.c.self_err, TETHER_ETOOBIG);
    CHECK_EQ_U64(w.c.acked, 1);
    world_free(&w);
}

TEST(reject_and_bye_received)
{
    static const struct {
        int reject;
        uint32_t code;
        int err;
    } cases[] = {
        {1, TETHER_REJECT_TOKEN, TETHER_ETOKEN},
        {1, TETHER_REJECT_VERSION, TETHER_EVERSION},
        {1, TETHER_REJECT_LIMIT, TETHER_ELIMIT},
        {1, TETHER_REJECT_MISMATCH, TETHER_EMISMATCH},
        {1, TETHER_REJECT_SHUTDOWN, TETHER_EREJECTED},
        {1, 42, TETHER_EREJECTED},
        {0, TETHER_REJECT_NONE, TETHER_EPEER_CLOSED},
        {0, TETHER_REJECT_SHUTDOWN, TETHER_EPEER_CLOSED},
        {0, TETHER_REJECT_MISMATCH, TETHER_EMISMATCH},
        {0, TETHER_REJECT_STORE, TETHER_EPEER_CLOSED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        world w;
        tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
        tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
        world_init(&w, &cc, &sc);
        conn(&w);
        if (cases[i].reject) {
            write_some(&w, &w.c, &w.s, SIZE_MAX); /* HELLO out, no answer yet */
        } else {
            send_n(&w.s, 1); /* so that the BYE does not follow the WELCOME */
            pump(&w);
        }
        inject_close(&w, &w.c, cases[i].reject, cases[i].code, "go away");
        CHECK_EQ_INT(w.c.closes, 1);
        CHECK_EQ_INT(w.c.ev.error, cases[i].err);
        CHECK_EQ_INT(w.c.ev.peer_code, cases[i].code);
        CHECK(strstr(w.c.ev.detail, "go away") != NULL);
        char num[16];
        snprintf(num, sizeof num, "%u", (unsigned)cases[i].code);
        CHECK(strstr(w.c.ev.detail, num) != NULL);
        CHECK(!tether__engine_live(w.c.e));
        CHECK_EQ_INT(w.c.mismatch_n, 0); /* not right after a WELCOME */
        /* Nothing is sent back. */
        CHECK_EQ_U64(write_some(&w, &w.c, &w.s, SIZE_MAX), 0);
        world_free(&w);
    }
}

TEST(graceful_bye)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    send_n(&w.c, 3);
    send_n(&w.s, 2);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_OK(tether__engine_bye(w.s.e, TETHER_REJECT_SHUTDOWN, "bye now"));
    CHECK(!tether__engine_live(w.s.e));
    send_n(&w.s, 1); /* stored, but not written on a closing connection */
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 3); /* the commit was flushed before the BYE */
    CHECK_EQ_U64(w.c.got, 2);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_SHUTDOWN);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_SHUTDOWN);
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.got, 3);
    CHECK_EQ_U64(w.s.acked, 3);
    world_free(&w);
}

TEST(protocol_errors)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);

    /* DATA before the WELCOME. */
    world_init(&w, &cc, &sc);
    conn(&w);
    inject_data(&w, &w.c, 1, 1, 0, 1);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_U64(w.c.got, 0);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_PROTOCOL);
    world_free(&w);

    /* ACK before the WELCOME. */
    world_init(&w, &cc, &sc);
    conn(&w);
    inject_ack(&w, &w.c, 1);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    world_free(&w);

    /* A second WELCOME, a HELLO to the client, a WELCOME to the server. */
    live_world(&w, &cc, &sc);
    tether__buf b;
    tether__buf_init(&b, 0);
    tether__welcome wel;
    memset(&wel, 0, sizeof wel);
    memcpy(wel.session_id, ID, 16);
    wel.max_message = wel.window = 100;
    CHECK_OK(tether__encode_welcome(&b, &wel));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    feed(&w, &w.s, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPROTO);
    world_free(&w);

    live_world(&w, &cc, &sc);
    tether__hello h;
    memset(&h, 0, sizeof h);
    h.version = 1;
    memcpy(h.session_id, ID, 16);
    h.max_message = h.window = 100;
    CHECK_OK(tether__encode_hello(&b, &h));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    feed(&w, &w.s, tether__buf_frame(&b), b.len); /* a second HELLO */
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPROTO);
    world_free(&w);

    /* A WELCOME for another session. */
    world_init(&w, &cc, &sc);
    conn(&w);
    wel.session_id[0] ^= 1;
    CHECK_OK(tether__encode_welcome(&b, &wel));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_INT(w.c.welcomed, 0);
    world_free(&w);
    tether__buf_free(&b);
}

TEST(store_failure_on_commit)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    w.s.fs->fail_set_cursor = TETHER_ESTORE_FULL;
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_U64(w.s.got, 3); /* handed over, but not committed */
    CHECK_EQ_INT(w.s.ev.error, TETHER_ESTORE_FULL);
    CHECK_EQ_U64(committed(&w.s), 0);
    advance(&w, 1000);
    pump(&w);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_STORE);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_STORE);
    /* The store recovers: the resent messages are committed, not redelivered. */
    w.s.fs->fail_set_cursor = 0;
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_U64(committed(&w.s), 3);
    CHECK_EQ_U64(w.c.acked, 3);
    world_free(&w);
}

TEST(store_failure_on_ack)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    w.c.fs->fail_ack = TETHER_ESTORE;
    settle(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_INT(w.c.ev.error, TETHER_ESTORE);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_STORE);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->peer_acked, 0);
    uint64_t count;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 3);
    w.c.fs->fail_ack = 0;
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_EQ_U64(w.s.got, 3);
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 0);
    world_free(&w);
}

/* The server cannot record that the session is established: it must not
 * send WELCOME, or the client records the session as established and takes
 * the next WELCOME ("not resumed") for a server that lost it (a false
 * EMISMATCH that stops the client for good; found by alloc_fail_test). */
TEST(store_failure_recording_the_session_at_accept)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    world_init(&w, &cc, &sc);
    send_n(&w.c, 2);
    w.s.fs->fail_put = TETHER_ENOMEM;
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_WELCOME], 0);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_STORE);
    CHECK_EQ_INT(w.s.ev.error, TETHER_ENOMEM);
    CHECK_EQ_INT(w.c.welcomed, 0);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_STORE);
    CHECK_EQ_INT(tether__engine_rec(w.c.e)->established, 0);
    CHECK_EQ_INT(tether__engine_rec(w.s.e)->established, 0);
    CHECK_EQ_U64(w.s.got, 0);
    /* The store recovers: the next connection is a plain first welcome. */
    w.s.fs->fail_put = 0;
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_INT(w.c.mismatch_n, 0);
    CHECK_EQ_INT(w.s.mismatch_n, 0);
    CHECK_EQ_INT(w.c.welcomed, 1);
    CHECK_EQ_INT(tether__engine_rec(w.c.e)->established, 1);
    CHECK_EQ_INT(tether__engine_rec(w.s.e)->established, 1);
    CHECK_EQ_U64(w.s.got, 2);
    CHECK_EQ_U64(w.c.acked, 2);
    world_free(&w);
}

TEST(create_arguments)
{
    fstore *fs = fstore_open(TETHER__ROLE_CLIENT);
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, ID, 16);
    CHECK_OK(fs->base.ops->session_put(&fs->base, &rec));
    tether__engine_cfg cfg = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine *e = (tether__engine *)&rec;
    cfg.window = 0;
    CHECK_ERR(tether__engine_create(&cfg, &fs->base, &rec, NULL, &e), TETHER_EINVAL);
    CHECK(e == NULL);
    cfg = base_cfg(TETHER__ROLE_CLIENT);
    CHECK_ERR(tether__engine_create(&cfg, NULL, &rec, NULL, &e), TETHER_EINVAL);
    CHECK_OK(tether__engine_create(&cfg, &fs->base, &rec, NULL, &e));
    /* A client engine does not accept, a server engine does not connect. */
    tether__hello h;
    memset(&h, 0, sizeof h);
    memcpy(h.session_id, ID, 16);
    tether__engine_event ev;
    CHECK_ERR(tether__engine_accept(e, &h, 0, &ev), TETHER_EINVAL);
    CHECK_EQ_U64(tether__engine_deadline(e), UINT64_MAX);
    tether__engine_destroy(e);
    tether__engine_destroy(NULL);
    fs->base.ops->close(&fs->base);
}

/* A server lends its engines one decoder per delivery thread: an engine
 * decoding with a lent decoder allocates none of its own, and its own is
 * allocated only at its first frame (out of memory there closes the
 * connection with TETHER_ENOMEM). */
TEST(decoder_lent_and_allocated_at_first_frame)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    tether__decoder lent;
    CHECK_OK(tether__decoder_init(&lent, sc.max_message));
    world_init(&w, &cc, &sc);
    CHECK_EQ_U64(w.c.e->dec.max_payload, 0); /* nothing decoded yet */
    tether__engine_lend_decoder(w.s.e, &lent);
    conn(&w);
    send_n(&w.c, 5);
    send_n(&w.s, 3);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 5);
    CHECK_EQ_U64(w.c.got, 3);
    CHECK_EQ_U64(w.c.acked, 5);
    CHECK_EQ_U64(w.s.e->dec.max_payload, 0); /* the server engine used the loan only */
    CHECK(tether__decoder_chunk(&lent) > 0);
    CHECK(w.c.e->dec.max_payload > 0); /* the client's own, made at its first frame */
    tether__engine_lend_decoder(w.s.e, NULL); /* the loan ends: its own serves again */
    send_n(&w.c, 2);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 7);
    CHECK(w.s.e->dec.max_payload > 0);
    world_free(&w);
    tether__decoder_free(&lent);

    /* out of memory for the engine's own decoder at its first frame */
    world_init(&w, &cc, &sc);
    conn(&w);
    write_some(&w, &w.c, &w.s, SIZE_MAX); /* HELLO */
    deliver_some(&w, &w.s, SIZE_MAX);
    write_some(&w, &w.s, &w.c, SIZE_MAX); /* WELCOME */
    CHECK_EQ_U64(w.c.e->dec.max_payload, 0);
    tether__alloc_fail_at(1);
    deliver_some(&w, &w.c, 1); /* the client's first frame */
    CHECK_EQ_U64(tether__alloc_failures(), 1);
    tether__alloc_fail_at(0);
    CHECK_EQ_INT(w.c.closes, 1);
    CHECK_EQ_INT(w.c.ev.error, TETHER_ENOMEM);
    CHECK(!tether__engine_live(w.c.e));
    world_free(&w);
}

/* A BYE's reason is allocated while the BYE waits; without memory for it the
 * BYE still goes, with its code and no reason. */
TEST(bye_reason_out_of_memory)
{
    for (int fail = 0; fail < 2; fail++) {
        world w;
        live_default(&w);
        send_n(&w.s, 1);
        pump(&w);
        tether__alloc_fail_at(fail);
        CHECK_OK(tether__engine_bye(w.s.e, TETHER_REJECT_SHUTDOWN, "bye now"));
        CHECK_EQ_U64(tether__alloc_failures(), (uint64_t)fail);
        tether__alloc_fail_at(0);
        pump(&w);
        CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_SHUTDOWN);
        CHECK_EQ_INT(w.c.closes, 1);
        CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_SHUTDOWN);
        CHECK_EQ_INT(strstr(w.c.ev.detail, "bye now") != NULL, !fail);
        world_free(&w);
    }
}

/* The closing reason's text is allocated at the close: out of memory there,
 * the close goes ahead with its error and an empty text; the next
 * connection starts with no reason and records its own. */
TEST(close_reason_out_of_memory)
{
    for (int fail = 0; fail < 2; fail++) {
        world w;
        tether__engine_event ev;
        live_default(&w);
        send_n(&w.s, 1);
        pump(&w);
        tether__alloc_fail_at(fail); /* the text is the close's only allocation */
        CHECK_OK(tether__engine_close(w.s.e, TETHER_EPROTO, TETHER__NO_BYE, "first close"));
        CHECK_EQ_U64(tether__alloc_failures(), (uint64_t)fail);
        tether__alloc_fail_at(0);
        CHECK(!tether__engine_live(w.s.e));
        CHECK_EQ_INT(tether__engine_close_event(w.s.e, &ev), 1);
        CHECK_EQ_INT(ev.close, 1);
        CHECK_EQ_INT(ev.error, TETHER_EPROTO);
        CHECK_EQ_STR(ev.detail, fail ? "" : "first close");
        drop(&w);
        conn(&w);
        settle(&w);
        CHECK(tether__engine_live(w.s.e));
        CHECK_EQ_INT(tether__engine_close_event(w.s.e, NULL), 0);
        CHECK_OK(tether__engine_close(w.s.e, TETHER_EPROTO, TETHER__NO_BYE, "second close"));
        CHECK_EQ_INT(tether__engine_close_event(w.s.e, &ev), 1);
        CHECK_EQ_STR(ev.detail, "second close");
        world_free(&w);
    }
}

int main(void)
{
    RUN(outbox_caps);
    RUN(send_arguments);
    RUN(message_larger_than_peer_accepts);
    RUN(reject_and_bye_received);
    RUN(graceful_bye);
    RUN(protocol_errors);
    RUN(store_failure_on_commit);
    RUN(store_failure_on_ack);
    RUN(store_failure_recording_the_session_at_accept);
    RUN(create_arguments);
    RUN(decoder_lent_and_allocated_at_first_frame);
    RUN(bye_reason_out_of_memory);
    RUN(close_reason_out_of_memory);
    return tt_finish();
}

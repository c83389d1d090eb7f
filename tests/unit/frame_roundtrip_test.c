/*
 * The tether.v1 codec (src/engine/frame.c): round trips through every
 * encoder, reasons cut and cleaned, the DATA overhead bound, and slices that
 * borrow the input.
 */
#include "frame_fixture.h"

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

TEST(roundtrip_hello)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    tether__hello h = {0};
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    h.version = TETHER__PROTO_VERSION;
    for (int i = 0; i < TETHER__ID_LEN; i++) {
        h.session_id[i] = (uint8_t)(0xf0 - i);
    }
    for (int i = 0; i < TETHER__TOKEN_LEN; i++) {
        h.token[i] = (uint8_t)(i * 7);
    }
    h.resume = 1;
    h.recv_cursor = 123456789012345ull;
    h.out_last = UINT64_MAX;
    h.max_message = 1048576;
    h.window = 1024;
    CHECK_OK(tether__encode_hello(&b, &h));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.type, TETHER__F_HELLO);
    CHECK_EQ_U64(f.u.hello.version, h.version);
    CHECK_MEM(f.u.hello.session_id, h.session_id, TETHER__ID_LEN);
    CHECK_MEM(f.u.hello.token, h.token, TETHER__TOKEN_LEN);
    CHECK_EQ_INT(f.u.hello.resume, 1);
    CHECK_EQ_U64(f.u.hello.recv_cursor, h.recv_cursor);
    CHECK_EQ_U64(f.u.hello.out_last, h.out_last);
    CHECK_EQ_U64(f.u.hello.max_message, h.max_message);
    CHECK_EQ_U64(f.u.hello.window, h.window);

    h.resume = 0;
    CHECK_OK(tether__encode_hello(&b, &h));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.u.hello.resume, 0);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

TEST(roundtrip_welcome)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    tether__welcome w = {0};
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    memset(w.session_id, 0x5a, TETHER__ID_LEN);
    w.resumed = 1;
    w.recv_cursor = 65536;
    w.out_last = 4294967296ull;
    w.max_message = UINT32_MAX;
    w.window = 1;
    CHECK_OK(tether__encode_welcome(&b, &w));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.type, TETHER__F_WELCOME);
    CHECK_MEM(f.u.welcome.session_id, w.session_id, TETHER__ID_LEN);
    CHECK_EQ_INT(f.u.welcome.resumed, 1);
    CHECK_EQ_U64(f.u.welcome.recv_cursor, w.recv_cursor);
    CHECK_EQ_U64(f.u.welcome.out_last, w.out_last);
    CHECK_EQ_U64(f.u.welcome.max_message, w.max_message);
    CHECK_EQ_U64(f.u.welcome.window, w.window);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

TEST(roundtrip_reject_bye)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_reject(&b, TETHER_REJECT_TOKEN, "token does not match"));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.type, TETHER__F_REJECT);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_TOKEN);
    CHECK_EQ_U64(f.u.close.reason.len, strlen("token does not match"));
    CHECK_MEM(f.u.close.reason.data, "token does not match", f.u.close.reason.len);

    CHECK_OK(tether__encode_bye(&b, TETHER_REJECT_SHUTDOWN, NULL));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_SHUTDOWN);
    CHECK_EQ_U64(f.u.close.reason.len, 0);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

/* The encoder keeps reasons decodable: cut at a character boundary within
 * TETHER__REASON_MAX bytes, ill-formed bytes replaced by '?'. */
TEST(reason_is_cut_and_cleaned)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    char text[400];
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);

    memset(text, 'a', 300);
    text[300] = '\0';
    CHECK_OK(tether__encode_bye(&b, 0, text));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.close.reason.len, TETHER__REASON_MAX);

    memset(text, 'a', 255);
    strcpy(text + 255, "\xc3\xa9"); /* U+00E9 would end at byte 257 */
    CHECK_OK(tether__encode_reject(&b, 0, text));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.close.reason.len, 255);

    CHECK_OK(tether__encode_bye(&b, 0, "a\377b\342\234")); /* a, 0xff, b, a cut-off U+2713 */
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.close.reason.len, 5);
    CHECK_MEM(f.u.close.reason.data, "a?b??", 5);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

TEST(roundtrip_ack)
{
    static const uint64_t seqs[] = {1,     127,   128,           255,           256,
                                    65535, 65536, 4294967295ull, 4294967296ull, UINT64_MAX};
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        CHECK_OK(tether__encode_ack(&b, seqs[i]));
        CHECK_OK(decode_buf(&d, &b, &f));
        CHECK_EQ_INT(f.type, TETHER__F_ACK);
        CHECK_EQ_U64(f.u.ack, seqs[i]);
    }
    CHECK_OK(tether__encode_ack(&b, 0)); /* the encoder writes what it is given */
    CHECK_ERR(decode_buf(&d, &b, &f), TETHER_EFRAME_SEQ0);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

TEST(roundtrip_data)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    static uint8_t big[70000];
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    for (size_t i = 0; i < sizeof big; i++) {
        big[i] = (uint8_t)(i * 31);
    }
    CHECK_OK(tether__encode_data_begin(&b, 41, TETHER__DATA_FLAG_REDELIVERED, 4));
    CHECK_OK(tether__encode_data_payload(&b, "one", 3));
    CHECK_OK(tether__encode_data_payload(&b, NULL, 0));
    CHECK_OK(tether__encode_data_payload(&b, big, sizeof big));
    CHECK_OK(tether__encode_data_payload(&b, "", 0));
    CHECK_OK(tether__encode_data_end(&b));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_INT(f.type, TETHER__F_DATA);
    CHECK_EQ_U64(f.u.data.first_seq, 41);
    CHECK_EQ_U64(f.u.data.flags, TETHER__DATA_FLAG_REDELIVERED);
    CHECK_EQ_U64(f.u.data.count, 4);
    CHECK_EQ_U64(f.u.data.payloads[0].len, 3);
    CHECK_MEM(f.u.data.payloads[0].data, "one", 3);
    CHECK_EQ_U64(f.u.data.payloads[1].len, 0);
    CHECK_EQ_U64(f.u.data.payloads[2].len, sizeof big);
    CHECK_MEM(f.u.data.payloads[2].data, big, sizeof big);
    CHECK_EQ_U64(f.u.data.payloads[3].len, 0);
    /* The frame stays within the advertised overhead. */
    CHECK(b.len <= TETHER__DATA_OVERHEAD + 4 * TETHER__PAYLOAD_OVERHEAD + 3 + sizeof big);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

TEST(data_overhead_bound)
{
    tether__buf b;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_data_begin(&b, UINT64_MAX - TETHER__RUN_MAX + 1, UINT32_MAX,
                                       TETHER__RUN_MAX));
    CHECK(b.len <= TETHER__DATA_OVERHEAD);
    size_t before = b.len;
    static uint8_t p[70000];
    CHECK_OK(tether__encode_data_payload(&b, p, sizeof p));
    CHECK(b.len - before <= TETHER__PAYLOAD_OVERHEAD + sizeof p);
    tether__buf_free(&b);
}

/* Decoded strings and payloads point into the input, not into copies. */
TEST(slices_borrow_input)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 3));
    CHECK_OK(tether__encode_data_payload(&b, "xy", 2));
    CHECK_OK(tether__encode_data_payload(&b, "", 0));
    CHECK_OK(tether__encode_data_payload(&b, "z", 1));
    CHECK_OK(tether__encode_data_end(&b));
    const uint8_t *lo = tether__buf_frame(&b), *hi = lo + b.len;
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.data.count, 3);
    for (size_t i = 0; i < f.u.data.count; i++) {
        /* Empty payloads too: never NULL, so memcpy(dst, p.data, 0) is defined. */
        CHECK(f.u.data.payloads[i].data >= lo && f.u.data.payloads[i].data < hi);
    }
    CHECK(f.u.data.payloads[1].data == lo); /* an empty slice points at the input's start */
    CHECK_OK(tether__encode_reject(&b, 1, ""));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK(f.u.close.reason.data == tether__buf_frame(&b));
    CHECK_OK(tether__encode_bye(&b, 0, "done"));
    lo = tether__buf_frame(&b);
    hi = lo + b.len;
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK(f.u.close.reason.data >= lo && f.u.close.reason.data + 4 == hi);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

int main(void)
{
    RUN(roundtrip_hello);
    RUN(roundtrip_welcome);
    RUN(roundtrip_reject_bye);
    RUN(reason_is_cut_and_cleaned);
    RUN(roundtrip_ack);
    RUN(roundtrip_data);
    RUN(data_overhead_bound);
    RUN(slices_borrow_input);
    return tt_finish();
}

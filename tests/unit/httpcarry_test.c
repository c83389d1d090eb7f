/*
 * The HTTP carriage's codec (src/engine/httpcarry.c) against proto/HTTP.md:
 * the limits, every error path of the writer and the incremental reader,
 * connection ids, headers and URLs. The body vectors are in
 * httpcarry_vectors_test.c.
 */
#include "frame_fixture.h"

#include "engine/httpcarry.h"

#include <errno.h>

/* ------------------------------------------------------------------------ */
/* Limits and names                                                          */
/* ------------------------------------------------------------------------ */

TEST(limits_follow_the_spec)
{
    tether__hc_limits l;
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_OPEN, 12345));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_EQ_U64(l.body_max, 1028);
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 1);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_SEND, 1048576));
    CHECK_EQ_U64(l.record_max, 1048640);
    CHECK_EQ_U64(l.body_max, 2 * (1048640 + 4));
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 4096);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_ANSWER, 1048576));
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 2);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_STREAM, 1048576));
    CHECK_EQ_U64(l.body_max, 2 * (1048640 + 4) + 4);
    CHECK_EQ_U64(l.min_frames, 0);

    /* Small limits: a record may always be 1024 bytes, a body 65536. */
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 1));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_EQ_U64(l.body_max, 65536);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 0)); /* taken as 1 */
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 960));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 961));
    CHECK_EQ_U64(l.record_max, 1025);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 32700));
    CHECK_EQ_U64(l.body_max, 65536);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 32701));
    CHECK_EQ_U64(l.body_max, 65538);

    /* The largest max_message does not overflow. */
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_SEND, UINT32_MAX));
    CHECK_EQ_U64(l.record_max, (uint64_t)UINT32_MAX + 64);
    CHECK_EQ_U64(l.body_max, 2 * ((uint64_t)UINT32_MAX + 68));

    CHECK_ERR(tether__hc_limits_for(&l, 0, 100), TETHER_EINVAL);
    CHECK_ERR(tether__hc_limits_for(&l, 6, 100), TETHER_EINVAL);
    CHECK_EQ_INT(l.kind, 0);
    CHECK_ERR(tether__hc_limits_for(NULL, TETHER__HC_SEND, 100), TETHER_EINVAL);
}

TEST(error_names_and_statuses_match_section_3_3)
{
    static const struct {
        int why;
        const char *name;
        int status;
    } table[] = {
        {TETHER__HC_VALID, "VALID", 0},
        {TETHER__HC_PREFIX_TRUNCATED, "BODY_PREFIX_TRUNCATED", 400},
        {TETHER__HC_RECORD_TRUNCATED, "BODY_RECORD_TRUNCATED", 400},
        {TETHER__HC_RECORD_EMPTY, "BODY_RECORD_EMPTY", 400},
        {TETHER__HC_NO_PROBE, "BODY_NO_PROBE", 400},
        {TETHER__HC_RECORD_TOO_LARGE, "BODY_RECORD_TOO_LARGE", 413},
        {TETHER__HC_BODY_TOO_LARGE, "BODY_TOO_LARGE", 413},
        {TETHER__HC_TOO_MANY, "BODY_TOO_MANY", 413},
        {TETHER__HC_COUNT, "BODY_COUNT", 400},
        {TETHER__HC_FRAME, "FRAME", 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK_EQ_STR(tether__hc_why_name(table[i].why), table[i].name);
        CHECK_EQ_INT(tether__hc_why_status(table[i].why), table[i].status);
    }
    CHECK_EQ_STR(tether__hc_why_name(-1), "(not a body result)");
    CHECK_EQ_STR(tether__hc_why_name(TETHER__HC_FRAME + 1), "(not a body result)");
    CHECK_EQ_INT(tether__hc_why_status(99), 0);
}

/* ------------------------------------------------------------------------ */
/* Whole bodies: arguments and edges the vectors do not reach                 */
/* ------------------------------------------------------------------------ */

TEST(check_arguments)
{
    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_SEND, 100));
    static const uint8_t ack[] = {0, 0, 0, 3, 0x92, 0x05, 0x01};
    int why = -1;
    size_t frames = 99;
    CHECK_ERR(tether__hc_check(NULL, ack, sizeof ack, &why, &frames), TETHER_EINVAL);
    CHECK_EQ_U64(frames, 0);
    CHECK_ERR(tether__hc_check(&lim, NULL, 1, &why, &frames), TETHER_EINVAL);
    /* NULL with length 0 is the empty body. */
    CHECK_ERR(tether__hc_check(&lim, NULL, 0, &why, &frames), TETHER_EMALFORMED);
    CHECK_EQ_INT(why, TETHER__HC_COUNT);
    CHECK_OK(tether__hc_check(&lim, ack, sizeof ack, NULL, NULL));

    /* A failed check leaves *frames at 0 even after counting some. */
    static const uint8_t two_then_cut[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 3, 0x92, 0x05,
                                           0x02, 0, 0};
    frames = 99;
    CHECK_ERR(tether__hc_check(&lim, two_then_cut, sizeof two_then_cut, &why, &frames),
              TETHER_EMALFORMED);
    CHECK_EQ_INT(why, TETHER__HC_PREFIX_TRUNCATED);
    CHECK_EQ_U64(frames, 0);

    tether__decoder d;
    CHECK_OK(tether__decoder_init(&d, 100));
    size_t bad = 7;
    CHECK_ERR(tether__hc_verify(&lim, NULL, ack, sizeof ack, &why, &bad, &frames), TETHER_EINVAL);
    CHECK_ERR(tether__hc_verify(NULL, &d, ack, sizeof ack, &why, &bad, &frames), TETHER_EINVAL);
    CHECK_OK(tether__hc_verify(&lim, &d, ack, sizeof ack, NULL, NULL, NULL));
    tether__decoder_free(&d);
}

TEST(next_walks_frames_and_stops_at_damage)
{
    static const uint8_t stream[] = {0, 0, 0, 0, 0, 0, 0, 3, 0x92, 0x05, 0x01,
                                     0, 0, 0, 1, 0xc0, 0, 0, 0, 9, 0x94};
    size_t pos = 0;
    tether__slice s;
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 1);
    CHECK_EQ_U64(s.len, 3);
    CHECK(s.data == stream + 8);
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 1);
    CHECK_EQ_U64(s.len, 1);
    CHECK_EQ_INT(s.data[0], 0xc0);
    /* the last record claims 9 bytes and has 1 */
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 0);
    /* a partial prefix */
    pos = 0;
    CHECK_EQ_INT(tether__hc_next(stream, 3, &pos, &s), 0);
}

TEST(room_says_what_fits)
{
    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_POLL, 1000)); /* record 1064, body 65536 */
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 1064), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 1065), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 0), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 65536 - 1068, 10, 1064), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 65536 - 1067, 10, 1064), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 100, 4095, 3), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 100, 4096, 3), 0);
    CHECK_EQ_INT(tether__hc_room(NULL, 0, 0, 3), 0);
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_ANSWER, 1000));
    CHECK_EQ_INT(tether__hc_room(&lim, 40, 1, 20), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 60, 2, 4), 0);
}

TEST(append_errors_leave_the_body_unchanged)
{
    tether__buf b;
    tether__buf_init(&b, 8);
    static const uint8_t ack[] = {0x92, 0x05, 0x01};
    CHECK_ERR(tether__hc_append(NULL, ack, 3), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append(&b, NULL, 3), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append(&b, ack, 0), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append_probe(NULL), TETHER_EINVAL);
#if SIZE_MAX > UINT32_MAX
    CHECK_ERR(tether__hc_append(&b, ack, (size_t)UINT32_MAX + 1), TETHER_EINVAL);
#endif
    CHECK_EQ_U64(b.len, 0);
    CHECK_OK(tether__hc_append(&b, ack, 3));
    CHECK_OK(tether__hc_append_probe(&b));
    static const uint8_t want[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 0};
    CHECK_EQ_U64(b.len, sizeof want);
    CHECK_MEM(tether__buf_frame(&b), want, sizeof want);

    /* A body that cannot grow any more: ENOMEM, nothing written. */
    tether__buf full = b;
    full.pre = SIZE_MAX - 2;
    full.len = 0;
    CHECK_ERR(tether__hc_append(&full, ack, 3), TETHER_ENOMEM);
    CHECK_ERR(tether__hc_append_probe(&full), TETHER_ENOMEM);
    CHECK_EQ_U64(full.len, 0);
    full.pre = 0;
    full.len = SIZE_MAX - 5;
    CHECK_ERR(tether__hc_append(&full, ack, 3), TETHER_ENOMEM);
    CHECK_EQ_U64(full.len, SIZE_MAX - 5);

    /* Records accumulate across many growths, each after the headroom. */
    tether__buf_reset(&b);
    for (int i = 0; i < 1000; i++) {
        CHECK_OK(tether__hc_append(&b, ack, 3));
    }
    CHECK_EQ_U64(b.len, 7000);
    tether__hc_limits lim;
    size_t frames;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_check(&lim, tether__buf_frame(&b), b.len, NULL, &frames));
    CHECK_EQ_U64(frames, 1000);
    tether__buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* The incremental reader                                                    */
/* ------------------------------------------------------------------------ */

TEST(reader_arguments)
{
    tether__hc_reader r;
    CHECK_ERR(tether__hc_reader_init(NULL, TETHER__HC_SEND, 100), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_init(&r, 0, 100), TETHER_EINVAL);
    size_t used = 9;
    tether__slice f;
    static const uint8_t b[] = {0, 0, 0, 1, 0xc0};
    /* a reader whose init failed refuses everything */
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, &used, &f), TETHER_EINVAL);
    CHECK_EQ_U64(used, 0);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EINVAL);
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_ERR(tether__hc_reader_feed(NULL, b, sizeof b, &used, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, NULL, 1, &used, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, NULL, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, &used, NULL), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_end(NULL), TETHER_EINVAL);
    /* nothing fed: an empty send body */
    CHECK_OK(tether__hc_reader_feed(&r, NULL, 0, &used, &f));
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_COUNT);
    tether__hc_reader_free(&r);
    tether__hc_reader_free(NULL);
}

TEST(reader_stops_after_each_frame)
{
    static const uint8_t b[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 3, 0x92, 0x05, 0x02};
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_POLL, 100));
    size_t used;
    tether__slice f;
    CHECK_OK(tether__hc_reader_feed(&r, b, sizeof b, &used, &f));
    CHECK_EQ_U64(used, 7);
    CHECK(f.data != NULL && f.len == 3 && f.data[2] == 0x01);
    CHECK_OK(tether__hc_reader_feed(&r, b + 7, sizeof b - 7, &used, &f));
    CHECK_EQ_U64(used, 7);
    CHECK(f.data != NULL && f.len == 3 && f.data[2] == 0x02);
    CHECK_OK(tether__hc_reader_end(&r));
    CHECK_EQ_U64(r.frames, 2);
    tether__hc_reader_free(&r);
}

TEST(reader_errors_stick)
{
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x92};
    size_t used;
    tether__slice f;
    CHECK_ERR(tether__hc_reader_feed(&r, huge, sizeof huge, &used, &f), TETHER_EFRAME_OVERSIZE);
    CHECK_EQ_U64(used, 4); /* judged from the prefix, the rest untouched */
    CHECK_EQ_INT(r.why, TETHER__HC_RECORD_TOO_LARGE);
    CHECK(r.rec == NULL); /* nothing was allocated for the claim */
    static const uint8_t ack[] = {0, 0, 0, 3, 0x92, 0x05, 0x01};
    CHECK_ERR(tether__hc_reader_feed(&r, ack, sizeof ack, &used, &f), TETHER_EFRAME_OVERSIZE);
    CHECK_EQ_U64(used, 0);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EFRAME_OVERSIZE);
    tether__hc_reader_free(&r);

    /* end inside a record, then inside a prefix */
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_reader_feed(&r, ack, 6, &used, &f));
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_RECORD_TRUNCATED);
    tether__hc_reader_free(&r);
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_reader_feed(&r, ack, 2, &used, &f));
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_PREFIX_TRUNCATED);
    tether__hc_reader_free(&r);
}

static size_t fail_after; /* allocations the test allocator grants before failing */

static void *test_realloc(void *p, size_t n)
{
    if (fail_after == 0) {
        return NULL;
    }
    fail_after--;
    return realloc(p, n);
}

TEST(reader_out_of_memory)
{
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_POLL, 100));
    r.realloc_fn = test_realloc;
    fail_after = 1;
    static const uint8_t b[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 4, 0x92, 0x05, 0xcc, 0x80};
    size_t used;
    tether__slice f;
    CHECK_OK(tether__hc_reader_feed(&r, b, sizeof b, &used, &f)); /* one allocation: granted */
    CHECK(f.data != NULL && f.len == 3);
    /* the second record is longer: a larger buffer is needed and refused */
    CHECK_ERR(tether__hc_reader_feed(&r, b + used, sizeof b - used, &used, &f), TETHER_ENOMEM);
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, 1, &used, &f), TETHER_ENOMEM);
    tether__hc_reader_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Connection ids                                                            */
/* ------------------------------------------------------------------------ */

TEST(ids_are_base64url_of_24_bytes)
{
    uint8_t raw[TETHER__HC_ID_BYTES];
    char id[TETHER__HC_ID_CHARS + 1];
    for (size_t i = 0; i < sizeof raw; i++) {
        raw[i] = (uint8_t)i;
    }
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"); /* HTTP.md section 17 */
    for (size_t i = 0; i < sizeof raw; i++) {
        raw[i] = (uint8_t)(0xa0 + i);
    }
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3");
    memset(raw, 0xff, sizeof raw);
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "________________________________");
    memset(raw, 0xfb, sizeof raw); /* 111110 111111 101111 111011: '+' and '/' in base64 */
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7");
    CHECK_EQ_INT(tether__hc_id_valid(id, strlen(id)), 1);
}

TEST(id_validation)
{
    const char *good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    CHECK_EQ_INT(tether__hc_id_valid(good, 32), 1);
    CHECK_EQ_INT(tether__hc_id_valid(good, 31), 0);
    CHECK_EQ_INT(tether__hc_id_valid("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXA", 33), 0);
    CHECK_EQ_INT(tether__hc_id_valid(NULL, 32), 0);
    CHECK_EQ_INT(tether__hc_id_valid("", 0), 0);
    static const char bad_chars[] = "+/=. \t\"%";
    for (size_t i = 0; i < sizeof bad_chars - 1; i++) {
        char id[33];
        memcpy(id, good, 33);
        id[i * 3] = bad_chars[i];
        CHECK_EQ_INT(tether__hc_id_valid(id, 32), 0);
    }
    char with_nul[33];
    memcpy(with_nul, good, 33);
    with_nul[5] = '\0';
    CHECK_EQ_INT(tether__hc_id_valid(with_nul, 32), 0);
}

TEST(new_ids_are_random_and_valid)
{
    char a[TETHER__HC_ID_CHARS + 1], b[TETHER__HC_ID_CHARS + 1];
    CHECK_OK(tether__hc_id_new(a));
    CHECK_OK(tether__hc_id_new(b));
    CHECK_EQ_U64(strlen(a), 32);
    CHECK_EQ_INT(tether__hc_id_valid(a, strlen(a)), 1);
    CHECK_EQ_INT(tether__hc_id_valid(b, strlen(b)), 1);
    CHECK(strcmp(a, b) != 0);
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */
/* ------------------------------------------------------------------------ */

TEST(content_type)
{
    static const char *const yes[] = {
        "application/vnd.tether.v1+frames",
        "Application/VND.Tether.V1+Frames",
        "  application/vnd.tether.v1+frames\t",
        "application/vnd.tether.v1+frames; charset=binary",
        "application/vnd.tether.v1+frames ;x=y",
    };
    static const char *const no[] = {
        "",
        ";",
        "application/octet-stream",
        "application/vnd.tether.v1+frame",
        "application/vnd.tether.v1+framesx",
        "application/vnd.tether.v2+frames",
        "application/vnd.tether.v1+frames, text/plain",
        "xapplication/vnd.tether.v1+frames",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!tether__hc_content_type_ok(yes[i])) {
            tt_fail(__FILE__, __LINE__, "refused '%s'", yes[i]);
        }
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (tether__hc_content_type_ok(no[i])) {
            tt_fail(__FILE__, __LINE__, "accepted '%s'", no[i]);
        }
    }
    CHECK_EQ_INT(tether__hc_content_type_ok(NULL), 0);
}

TEST(counts)
{
    uint64_t v = 77;
    CHECK_OK(tether__hc_parse_count("0", &v));
    CHECK_EQ_U64(v, 0);
    CHECK_OK(tether__hc_parse_count("1", &v));
    CHECK_EQ_U64(v, 1);
    CHECK_OK(tether__hc_parse_count(" 4096\t", &v));
    CHECK_EQ_U64(v, 4096);
    CHECK_OK(tether__hc_parse_count("18446744073709551615", &v));
    CHECK_EQ_U64(v, UINT64_MAX);
    static const char *const bad[] = {"",   " ",  "01", "00", "-1",  "+1",  "1 2",  "1a",
                                      "0x1", "1.0", "18446744073709551616",
                                      "99999999999999999999", "184467440737095516150"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 77;
        if (tether__hc_parse_count(bad[i], &v) != TETHER_EINVAL || v != 77) {
            tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
        }
    }
    CHECK_ERR(tether__hc_parse_count(NULL, &v), TETHER_EINVAL);
    CHECK_ERR(tether__hc_parse_count("1", NULL), TETHER_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* URLs                                                                      */
/* ------------------------------------------------------------------------ */

TEST(urls_of_section_2_1)
{
    static const struct {
        const char *ws;
        int op;
        const char *http;
    } table[] = {
        {"ws://h:8080", TETHER__HC_OP_OPEN, "http://h:8080/.tether/v1/open"},
        {"ws://h:8080/", TETHER__HC_OP_OPEN, "http://h:8080/.tether/v1/open"},
        {"wss://example.com/chat", TETHER__HC_OP_OPEN, "https://example.com/chat/.tether/v1/open"},
        {"wss://example.com/chat/?room=7", TETHER__HC_OP_OPEN,
         "https://example.com/chat/.tether/v1/open?room=7"},
        {"ws://h:8080/a/b", TETHER__HC_OP_SEND, "http://h:8080/a/b/.tether/v1/send"},
        {"ws://h?x=/y", TETHER__HC_OP_POLL, "http://h/.tether/v1/poll?x=/y"},
        {"WSS://[::1]:9/", TETHER__HC_OP_STREAM, "https://[::1]:9/.tether/v1/stream"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK_OK(tether__hc_url(table[i].ws, table[i].op, out, sizeof out));
        CHECK_EQ_STR(out, table[i].http);
    }
    CHECK_ERR(tether__hc_url("http://h/x", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_EQ_STR(out, "");
    CHECK_ERR(tether__hc_url("ws://h/x#frag", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws:///x", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", 0, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", 5, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url(NULL, TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, NULL, 10), TETHER_EINVAL);
    /* exactly long enough, then one byte short */
    const char *want = "http://h/.tether/v1/open";
    CHECK_OK(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, out, strlen(want) + 1));
    CHECK_EQ_STR(out, want);
    CHECK_ERR(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, out, strlen(want)), TETHER_ENOMEM);
    CHECK_EQ_STR(out, "");
}

TEST(routes_of_section_2_3)
{
    static const struct {
        const char *target;
        int op;
        const char *app;
    } table[] = {
        {"/.tether/v1/open", TETHER__HC_OP_OPEN, "/"},
        {"/chat/.tether/v1/poll?room=7", TETHER__HC_OP_POLL, "/chat?room=7"},
        {"/a/b/.tether/v1/send", TETHER__HC_OP_SEND, "/a/b"},
        {"/.tether/v1/stream?x=/.tether/v1/open", TETHER__HC_OP_STREAM, "/?x=/.tether/v1/open"},
        {"/.tether/v1/foo", -1, ""},
        {"/.tether/v1/", -1, ""},
        {"/.tether/v1/openx", -1, ""},
        {"/.tether/v1/OPEN", -1, ""},
        {"/x.tether/v1/open", 0, ""},
        {"/.tether/v2/open", 0, ""},
        {"/.tether/v1/open/", 0, ""},
        {"/ws?x=/.tether/v1/open", 0, ""},
        {"/", 0, ""},
        {"", 0, ""},
        {"http://h/.tether/v1/open", 0, ""},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char app[64] = "junk";
        int op = tether__hc_route(table[i].target, app, sizeof app);
        if (op != table[i].op || strcmp(app, table[i].app) != 0) {
            tt_fail(__FILE__, __LINE__, "'%s' routed to %d '%s', expected %d '%s'",
                    table[i].target, op, app, table[i].op, table[i].app);
        }
    }
    CHECK_EQ_INT(tether__hc_route(NULL, NULL, 0), 0);
    CHECK_EQ_INT(tether__hc_route("/chat/.tether/v1/send", NULL, 0), TETHER__HC_OP_SEND);
    char small[4];
    CHECK_EQ_INT(tether__hc_route("/chat/.tether/v1/send?q", small, sizeof small),
                 TETHER__HC_OP_SEND);
    CHECK_EQ_STR(small, "/ch");

    /* Every derived URL routes back to its operation and the application path. */
    for (int op = TETHER__HC_OP_OPEN; op <= TETHER__HC_OP_STREAM; op++) {
        char url[128], app[64];
        CHECK_OK(tether__hc_url("wss://example.com:8443/chat?room=7", op, url, sizeof url));
        const char *target = strchr(url + strlen("https://"), '/');
        CHECK_EQ_INT(tether__hc_route(target, app, sizeof app), op);
        CHECK_EQ_STR(app, "/chat?room=7");
        CHECK_EQ_STR(tether__hc_op_method(op),
                     op == TETHER__HC_OP_OPEN || op == TETHER__HC_OP_SEND ? "POST" : "GET");
    }
    CHECK(tether__hc_op_name(0) == NULL);
    CHECK(tether__hc_op_name(5) == NULL);
    CHECK(tether__hc_op_method(-1) == NULL);
}

int main(void)
{
    RUN(limits_follow_the_spec);
    RUN(error_names_and_statuses_match_section_3_3);
    RUN(check_arguments);
    RUN(next_walks_frames_and_stops_at_damage);
    RUN(room_says_what_fits);
    RUN(append_errors_leave_the_body_unchanged);
    RUN(reader_arguments);
    RUN(reader_stops_after_each_frame);
    RUN(reader_errors_stick);
    RUN(reader_out_of_memory);
    RUN(ids_are_base64url_of_24_bytes);
    RUN(id_validation);
    RUN(new_ids_are_random_and_valid);
    RUN(content_type);
    RUN(counts);
    RUN(urls_of_section_2_1);
    RUN(routes_of_section_2_3);
    return tt_finish();
}

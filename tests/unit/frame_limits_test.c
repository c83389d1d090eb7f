/*
 * The tether.v1 codec (src/engine/frame.c) at its edges: the run and payload
 * limits, hostile inputs, allocation behaviour (counted and failed through
 * replaced allocators) and the encoder's buffer handling.
 */
#include "frame_fixture.h"

/* ------------------------------------------------------------------------ */
/* Allocation counting                                                       */
/* ------------------------------------------------------------------------ */

/* On glibc without a sanitizer the test replaces malloc, calloc and realloc
 * (for the whole process, msgpack-c included) to count calls and to make them
 * fail on demand. free stays glibc's: the memory comes from the same heap. */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HOOKED 1
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) ||                         \
    __has_feature(thread_sanitizer)
#undef HOOKED
#define HOOKED 0
#endif
#endif
#else
#define HOOKED 0
#endif

static size_t allocs; /* allocation calls seen while counting */
static int counting;  /* 1: count allocation calls */
static int failing;   /* 1: every allocation call fails */

#if HOOKED
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    allocs += (size_t)counting;
    return failing ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    allocs += (size_t)counting;
    return failing ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    allocs += (size_t)counting;
    return failing ? NULL : __libc_realloc(p, n);
}
#endif

/* Whether the replacements are the ones in use (not so under valgrind, for one). */
static int hooks_live(void)
{
    void *(*volatile alloc)(size_t) = malloc; /* keeps the call from being optimised out */
    allocs = 0;
    counting = 1;
    void *p = alloc(1);
    counting = 0;
    free(p);
    return HOOKED && allocs == 1;
}

static void count_start(void)
{
    allocs = 0;
    counting = 1;
}

static size_t count_stop(void)
{
    counting = 0;
    return allocs;
}

/* ------------------------------------------------------------------------ */
/* Limits                                                                    */
/* ------------------------------------------------------------------------ */

/* A DATA frame of count empty payloads, built by hand so that counts beyond
 * what the encoder accepts can be written. */
static uint8_t *empty_run(size_t count, size_t *len)
{
    static const uint8_t head[] = {0x94, 0x04, 0x01, 0x00, 0xdd};
    size_t n = sizeof head + 4 + 2 * count;
    uint8_t *p = malloc(n);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, head, sizeof head);
    p[5] = (uint8_t)(count >> 24);
    p[6] = (uint8_t)(count >> 16);
    p[7] = (uint8_t)(count >> 8);
    p[8] = (uint8_t)count;
    for (size_t i = 0; i < count; i++) {
        p[9 + 2 * i] = 0xc4;
        p[10 + 2 * i] = 0x00;
    }
    *len = n;
    return p;
}

TEST(run_max)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_data_begin(&b, 1000, 0, TETHER__RUN_MAX));
    for (size_t i = 0; i < TETHER__RUN_MAX; i++) {
        uint8_t v = (uint8_t)i;
        CHECK_OK(tether__encode_data_payload(&b, &v, i % 3 == 1 ? 0 : 1));
    }
    CHECK_OK(tether__encode_data_end(&b));
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.data.count, TETHER__RUN_MAX);
    CHECK_EQ_U64(f.u.data.payloads[TETHER__RUN_MAX - 1].len, 1);
    CHECK_EQ_U64(f.u.data.payloads[TETHER__RUN_MAX - 1].data[0], (uint8_t)(TETHER__RUN_MAX - 1));

    /* The encoder refuses a run it may not write; the decoder refuses one it reads. */
    CHECK_ERR(tether__encode_data_begin(&b, 1, 0, TETHER__RUN_MAX + 1), TETHER_EINVAL);
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL);
    size_t len;
    uint8_t *p = empty_run(TETHER__RUN_MAX + 1, &len);
    CHECK(p != NULL);
    if (p != NULL) {
        CHECK_ERR(tether__decode(&d, p, len, &f), TETHER_EFRAME_OVERSIZE);
        free(p);
    }
    p = empty_run(TETHER__RUN_MAX, &len);
    CHECK(p != NULL);
    if (p != NULL) {
        CHECK_OK(tether__decode(&d, p, len, &f));
        CHECK_EQ_U64(f.u.data.count, TETHER__RUN_MAX);
        free(p);
    }
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

static int decode_one_payload(uint32_t max_payload, size_t n)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    uint8_t *p = calloc(1, n + 1);
    int rc = tether__decoder_init(&d, max_payload);
    tether__buf_init(&b, 0);
    if (p == NULL || rc != TETHER_OK) {
        free(p);
        return TETHER_ENOMEM;
    }
    rc = tether__encode_data_begin(&b, 1, 0, 1);
    if (rc == TETHER_OK) {
        rc = tether__encode_data_payload(&b, p, n);
    }
    if (rc == TETHER_OK) {
        rc = tether__encode_data_end(&b);
    }
    if (rc == TETHER_OK) {
        rc = decode_buf(&d, &b, &f);
    }
    if (rc == TETHER_OK && (f.u.data.count != 1 || f.u.data.payloads[0].len != n)) {
        rc = TETHER_EINVAL;
    }
    free(p);
    tether__buf_free(&b);
    tether__decoder_free(&d);
    return rc;
}

TEST(payload_limit)
{
    CHECK_OK(decode_one_payload(MAX_PAYLOAD, MAX_PAYLOAD));
    CHECK_ERR(decode_one_payload(MAX_PAYLOAD, MAX_PAYLOAD + 1), TETHER_EFRAME_OVERSIZE);
    CHECK_OK(decode_one_payload(10, 10));
    CHECK_ERR(decode_one_payload(10, 11), TETHER_EFRAME_OVERSIZE);
    CHECK_OK(decode_one_payload(1, 0));
    CHECK_OK(decode_one_payload(300, 256)); /* bin16 */
    CHECK_ERR(decode_one_payload(255, 256), TETHER_EFRAME_OVERSIZE);
}

TEST(decoder_init_rejects_zero_limit)
{
    tether__decoder d;
    CHECK_ERR(tether__decoder_init(&d, 0), TETHER_EINVAL);
    tether__decoder_free(&d); /* safe after a failed init */
    tether__decoder_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* Hostile input                                                             */
/* ------------------------------------------------------------------------ */

TEST(hostile_lengths_allocate_nothing)
{
    static const struct {
        const char *hex;
        int rc;
    } cases[] = {
        {"dd ff ff ff ff", TETHER_EMALFORMED},
        {"df ff ff ff ff", TETHER_EMALFORMED},
        {"c6 ff ff ff ff", TETHER_EMALFORMED},
        {"94 04 01 00 dd ff ff ff ff", TETHER_EMALFORMED},
        {"94 04 01 00 91 c6 ff ff ff ff", TETHER_EMALFORMED},
        {"92 05 de ff ff", TETHER_EMALFORMED},
        {"dc ff ff 05 01", TETHER_EMALFORMED},
    };
    tether__decoder d;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD)); /* cold: nothing decoded yet */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *p = parse_hex(cases[i].hex, &len);
        CHECK(p != NULL);
        if (p == NULL) {
            continue;
        }
        count_start();
        int rc = tether__decode(&d, p, len, &f);
        size_t n = count_stop();
        CHECK_ERR(rc, cases[i].rc);
        if (hooks_live()) {
            CHECK_EQ_U64(n, 0);
        }
        free(p);
    }
    tether__decoder_free(&d);
}

/* A claim backed by bytes is honoured, but costs memory in proportion to the
 * bytes, never to a bare claim: a megabyte of one-byte elements in one array. */
TEST(large_real_array_is_rejected_by_shape)
{
    tether__decoder d;
    tether__frame f;
    size_t count = 1u << 20, len = 9 + count;
    uint8_t *p = malloc(len);
    CHECK(p != NULL);
    if (p == NULL) {
        return;
    }
    static const uint8_t head[] = {0x94, 0x04, 0x01, 0x00, 0xdd, 0x00, 0x10, 0x00, 0x00};
    memcpy(p, head, sizeof head);
    memset(p + sizeof head, 0x00, count); /* a million fixint zeros, not bins */
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    CHECK_ERR(tether__decode(&d, p, len, &f), TETHER_EFRAME_OVERSIZE);
    /* The zone is not kept large after a rejected frame. */
    CHECK(tether__decoder_chunk(&d) <= 8192);
    free(p);
    tether__decoder_free(&d);
}

TEST(deep_nesting)
{
    tether__decoder d;
    tether__frame f;
    size_t depth = 1000000;
    uint8_t *p = malloc(depth + 1);
    CHECK(p != NULL);
    if (p == NULL) {
        return;
    }
    memset(p, 0x91, depth);
    p[depth] = 0x05;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    CHECK_ERR(tether__decode(&d, p, depth + 1, &f), TETHER_EMALFORMED);
    memset(p, 0xdc, depth); /* array16 headers, each claiming 0x dcdc elements */
    CHECK_ERR(tether__decode(&d, p, depth + 1, &f), TETHER_EMALFORMED);
    free(p);
    tether__decoder_free(&d);
}

/* Every prefix of every frame is rejected as malformed (never read past the end). */
TEST(every_truncation_is_malformed)
{
    tether__decoder d;
    tether__buf b;
    tether__frame f;
    tether__hello h = {0};
    h.version = 1;
    h.recv_cursor = UINT64_MAX;
    h.max_message = 1;
    h.window = 1;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    for (int which = 0; which < 3; which++) {
        if (which == 0) {
            CHECK_OK(tether__encode_hello(&b, &h));
        } else if (which == 1) {
            CHECK_OK(tether__encode_bye(&b, 4, "protocol error"));
        } else {
            CHECK_OK(tether__encode_data_begin(&b, 77, 1, 2));
            CHECK_OK(tether__encode_data_payload(&b, "abc", 3));
            CHECK_OK(tether__encode_data_payload(&b, "", 0));
            CHECK_OK(tether__encode_data_end(&b));
        }
        for (size_t n = 0; n < b.len; n++) {
            /* A private copy of exactly n bytes, so a read past the end would be caught by tools.
             */
            uint8_t *p = malloc(n ? n : 1);
            CHECK(p != NULL);
            if (p == NULL) {
                break;
            }
            memcpy(p, tether__buf_frame(&b), n);
            int rc = tether__decode(&d, p, n, &f);
            if (rc != TETHER_EMALFORMED) {
                tt_fail(__FILE__, __LINE__, "frame %d cut to %zu bytes gave %s", which, n,
                        code_name(rc));
            }
            free(p);
        }
        CHECK_OK(decode_buf(&d, &b, &f));
    }
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

/* ------------------------------------------------------------------------ */
/* Reuse and allocation                                                      */
/* ------------------------------------------------------------------------ */

TEST(decoder_reuse_allocates_nothing_when_warm)
{
    enum { KINDS = 5 };
    tether__buf bufs[KINDS];
    tether__decoder d;
    tether__frame f;
    tether__hello h = {0};
    tether__welcome w = {0};
    h.version = 1;
    h.max_message = 4096;
    h.window = 64;
    w.max_message = 4096;
    w.window = 64;
    for (int i = 0; i < KINDS; i++) {
        tether__buf_init(&bufs[i], 16);
    }
    CHECK_OK(tether__encode_hello(&bufs[0], &h));
    CHECK_OK(tether__encode_welcome(&bufs[1], &w));
    CHECK_OK(tether__encode_ack(&bufs[2], 99));
    CHECK_OK(tether__encode_bye(&bufs[3], 0, "bye"));
    size_t run = 5000; /* its msgpack objects outgrow the zone's first chunk */
    CHECK_OK(tether__encode_data_begin(&bufs[4], 1, 0, run));
    for (size_t i = 0; i < run; i++) {
        CHECK_OK(tether__encode_data_payload(&bufs[4], &i, sizeof i));
    }
    CHECK_OK(tether__encode_data_end(&bufs[4]));

    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    count_start();
    CHECK_OK(decode_buf(&d, &bufs[4], &f)); /* cold: grows the slices and the zone */
    size_t cold = count_stop();
    int live = hooks_live();
    if (live) {
        CHECK(cold > 0); /* the counter works */
    } else {
        printf("     (allocation hooks not in use; only the decoder's own state is checked)\n");
    }
    tether__slice *items = d.items;
    size_t items_cap = d.items_cap, chunk = tether__decoder_chunk(&d);

    count_start();
    for (int round = 0; round < 2000; round++) {
        int k = round % KINDS;
        int rc = decode_buf(&d, &bufs[k], &f);
        if (rc != TETHER_OK) {
            tt_fail(__FILE__, __LINE__, "round %d gave %s", round, code_name(rc));
            break;
        }
        if (k == 4 && (f.u.data.count != run || f.u.data.payloads[run - 1].len != sizeof(size_t))) {
            tt_fail(__FILE__, __LINE__, "round %d decoded the run wrong", round);
            break;
        }
        if (k == 2 && f.u.ack != 99) {
            tt_fail(__FILE__, __LINE__, "round %d decoded the ACK wrong", round);
            break;
        }
    }
    size_t warm = count_stop();
    if (live) {
        CHECK_EQ_U64(warm, 0);
    }
    CHECK(d.items == items);
    CHECK_EQ_U64(d.items_cap, items_cap);
    CHECK_EQ_U64(tether__decoder_chunk(&d), chunk);
    for (int i = 0; i < KINDS; i++) {
        tether__buf_free(&bufs[i]);
    }
    tether__decoder_free(&d);
}

TEST(out_of_memory)
{
    if (!hooks_live()) {
        printf("     (allocation hooks not in use; checks skipped)\n");
        return;
    }
    tether__buf b;
    tether__decoder d;
    tether__frame f;
    tether__buf_init(&b, 16);
    failing = 1;
    int rc = tether__encode_ack(&b, 5);
    failing = 0;
    CHECK_ERR(rc, TETHER_ENOMEM);
    CHECK_EQ_INT(b.oom, 1);
    CHECK_OK(tether__encode_ack(&b, 5)); /* reset clears oom */
    CHECK_EQ_INT(b.oom, 0);

    /* A run that outgrows the buffer part way. */
    static uint8_t big[100000];
    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 2));
    CHECK_OK(tether__encode_data_payload(&b, "a", 1));
    failing = 1;
    rc = tether__encode_data_payload(&b, big, sizeof big);
    failing = 0;
    CHECK_ERR(rc, TETHER_ENOMEM);
    CHECK_ERR(tether__encode_data_end(&b), TETHER_ENOMEM);

    failing = 1;
    rc = tether__decoder_init(&d, MAX_PAYLOAD);
    failing = 0;
    CHECK_ERR(rc, TETHER_ENOMEM);
    tether__decoder_free(&d);

    /* The slice array cannot grow (the zone's first chunk holds the objects). */
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 100));
    for (int i = 0; i < 100; i++) {
        CHECK_OK(tether__encode_data_payload(&b, "p", 1));
    }
    CHECK_OK(tether__encode_data_end(&b));
    failing = 1;
    rc = decode_buf(&d, &b, &f);
    failing = 0;
    CHECK_ERR(rc, TETHER_ENOMEM);
    CHECK_OK(decode_buf(&d, &b, &f));
    tether__decoder_free(&d);

    /* msgpack-c cannot grow its zone. */
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 1000));
    for (int i = 0; i < 1000; i++) {
        CHECK_OK(tether__encode_data_payload(&b, "p", 1));
    }
    CHECK_OK(tether__encode_data_end(&b));
    failing = 1;
    rc = decode_buf(&d, &b, &f);
    failing = 0;
    CHECK_ERR(rc, TETHER_ENOMEM);
    CHECK_OK(decode_buf(&d, &b, &f));
    CHECK_EQ_U64(f.u.data.count, 1000);
    tether__decoder_free(&d);
    tether__buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Output buffer                                                             */
/* ------------------------------------------------------------------------ */

TEST(headroom_is_kept)
{
    static const uint8_t ack[] = {0x92, 0x05, 0xcd, 0x12, 0x34};
    tether__buf b;
    tether__buf_init(&b, 16);
    CHECK_EQ_U64(b.pre, 16);
    CHECK_OK(tether__encode_ack(&b, 0x1234));
    CHECK(b.data != NULL);
    CHECK(tether__buf_frame(&b) == b.data + 16);
    CHECK_EQ_U64(b.len, sizeof ack);
    CHECK_MEM(tether__buf_frame(&b), ack, sizeof ack);
    CHECK(b.cap >= b.pre + b.len);

    /* Growing keeps the frame after the headroom. */
    static uint8_t big[50000];
    memset(big, 0xab, sizeof big);
    CHECK_OK(tether__encode_data_begin(&b, 3, 0, 1));
    CHECK_OK(tether__encode_data_payload(&b, big, sizeof big));
    CHECK_OK(tether__encode_data_end(&b));
    CHECK_EQ_U64(b.pre, 16);
    CHECK(b.cap >= b.pre + b.len);
    CHECK_EQ_U64(tether__buf_frame(&b)[0], 0x94);
    CHECK_EQ_U64(b.len, 4 + 1 + 3 + sizeof big); /* header, array header, bin16 header, body */
    CHECK_MEM(tether__buf_frame(&b) + b.len - sizeof big, big, sizeof big);

    /* Reset keeps the allocation; the next frame starts after the headroom. */
    uint8_t *data = b.data;
    size_t cap = b.cap;
    CHECK_OK(tether__encode_ack(&b, 0x1234));
    CHECK(b.data == data);
    CHECK_EQ_U64(b.cap, cap);
    CHECK_EQ_U64(b.len, sizeof ack);
    CHECK_MEM(tether__buf_frame(&b), ack, sizeof ack);
    tether__buf_free(&b);
    CHECK(b.data == NULL);
    tether__buf_free(NULL);
}

TEST(data_run_misuse)
{
    tether__buf b;
    tether__buf_init(&b, 0);

    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 3));
    CHECK_OK(tether__encode_data_payload(&b, "a", 1));
    CHECK_OK(tether__encode_data_payload(&b, "b", 1));
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL); /* one too few */

    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 1));
    CHECK_OK(tether__encode_data_payload(&b, "a", 1));
    CHECK_ERR(tether__encode_data_payload(&b, "b", 1), TETHER_EINVAL); /* one too many */
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL);

    CHECK_OK(tether__encode_ack(&b, 1));
    CHECK_ERR(tether__encode_data_payload(&b, "a", 1), TETHER_EINVAL); /* no run open */
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL);

    tether__buf fresh;
    tether__buf_init(&fresh, 0);
    CHECK_ERR(tether__encode_data_end(&fresh), TETHER_EINVAL);
    tether__buf_free(&fresh);

    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 1));
    CHECK_OK(tether__encode_data_payload(&b, "a", 1));
    CHECK_OK(tether__encode_data_end(&b));
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL); /* ended twice */

    CHECK_ERR(tether__encode_data_begin(&b, 1, 0, 0), TETHER_EINVAL);          /* empty run */
    CHECK_ERR(tether__encode_data_begin(&b, 0, 0, 1), TETHER_EINVAL);          /* seq 0 */
    CHECK_ERR(tether__encode_data_begin(&b, UINT64_MAX, 0, 2), TETHER_EINVAL); /* wraps */
    CHECK_ERR(tether__encode_data_payload(&b, "a", 1), TETHER_EINVAL);
    CHECK_ERR(tether__encode_data_end(&b), TETHER_EINVAL);
    CHECK_OK(tether__encode_data_begin(&b, UINT64_MAX, 0, 1));
    CHECK_OK(tether__encode_data_payload(&b, "a", 1));
    CHECK_OK(tether__encode_data_end(&b));
    tether__buf_free(&b);
}

int main(void)
{
    RUN(run_max);
    RUN(payload_limit);
    RUN(decoder_init_rejects_zero_limit);
    RUN(hostile_lengths_allocate_nothing);
    RUN(large_real_array_is_rejected_by_shape);
    RUN(deep_nesting);
    RUN(every_truncation_is_malformed);
    RUN(decoder_reuse_allocates_nothing_when_warm);
    RUN(out_of_memory);
    RUN(headroom_is_kept);
    RUN(data_run_misuse);
    return tt_finish();
}

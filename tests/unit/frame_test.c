/*
 * Tests for the tether.v1 codec (src/frame.c): the shared vectors in
 * proto/vectors/, round trips through every encoder, the limits, hostile
 * inputs, allocation behaviour and the encoder's buffer handling.
 */
#include "harness.h"

#include "engine/frame.h"

#include <tether/tether.h>

#include <ctype.h>
#include <stdarg.h>

#define MAX_PAYLOAD 1048576u /* the decoder limit the vector files assume */

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
/* A growable string for canonical descriptions                              */
/* ------------------------------------------------------------------------ */

typedef struct str {
    char *p;    /* NUL-terminated text */
    size_t len; /* bytes before the NUL */
    size_t cap; /* bytes allocated */
} str;

static void sput(str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sput(str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (s->len + (size_t)n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + (size_t)n + 1) {
            cap *= 2;
        }
        char *p = realloc(s->p, cap);
        if (p == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        s->p = p;
        s->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

/* Bytes as lowercase hex, or "-" when there are none. */
static void shex(str *s, const uint8_t *p, size_t n)
{
    if (n == 0) {
        sput(s, "-");
    }
    for (size_t i = 0; i < n; i++) {
        sput(s, "%02x", p[i]);
    }
}

/* The canonical description of a decoded frame (proto/README.md). */
static const char *describe(str *s, const tether__frame *f)
{
    s->len = 0;
    sput(s, "%s", "");
    switch (f->type) {
    case TETHER__F_HELLO: {
        const tether__hello *h = &f->u.hello;
        sput(s, "HELLO v=%u id=", h->version);
        shex(s, h->session_id, TETHER__ID_LEN);
        sput(s, " token=");
        shex(s, h->token, TETHER__TOKEN_LEN);
        sput(s, " resume=%d recv=%llu out=%llu max=%u window=%u", h->resume,
             (unsigned long long)h->recv_cursor, (unsigned long long)h->out_last, h->max_message,
             h->window);
        break;
    }
    case TETHER__F_WELCOME: {
        const tether__welcome *w = &f->u.welcome;
        sput(s, "WELCOME id=");
        shex(s, w->session_id, TETHER__ID_LEN);
        sput(s, " resumed=%d recv=%llu out=%llu max=%u window=%u", w->resumed,
             (unsigned long long)w->recv_cursor, (unsigned long long)w->out_last, w->max_message,
             w->window);
        break;
    }
    case TETHER__F_REJECT:
    case TETHER__F_BYE:
        sput(s, "%s code=%u reason=", f->type == TETHER__F_REJECT ? "REJECT" : "BYE",
             f->u.close.code);
        shex(s, f->u.close.reason.data, f->u.close.reason.len);
        break;
    case TETHER__F_DATA:
        sput(s, "DATA first=%llu flags=%u payloads=", (unsigned long long)f->u.data.first_seq,
             f->u.data.flags);
        for (size_t i = 0; i < f->u.data.count; i++) {
            if (i > 0) {
                sput(s, ",");
            }
            shex(s, f->u.data.payloads[i].data, f->u.data.payloads[i].len);
        }
        break;
    case TETHER__F_ACK:
        sput(s, "ACK seq=%llu", (unsigned long long)f->u.ack);
        break;
    default:
        sput(s, "?type=%d", f->type);
        break;
    }
    return s->p;
}

/* Encodes a decoded frame again with the encoders. */
static int encode_frame(tether__buf *b, const tether__frame *f)
{
    switch (f->type) {
    case TETHER__F_HELLO:
        return tether__encode_hello(b, &f->u.hello);
    case TETHER__F_WELCOME:
        return tether__encode_welcome(b, &f->u.welcome);
    case TETHER__F_REJECT:
    case TETHER__F_BYE: {
        char reason[TETHER__REASON_MAX + 1];
        memcpy(reason, f->u.close.reason.data, f->u.close.reason.len);
        reason[f->u.close.reason.len] = '\0';
        return f->type == TETHER__F_REJECT ? tether__encode_reject(b, f->u.close.code, reason)
                                           : tether__encode_bye(b, f->u.close.code, reason);
    }
    case TETHER__F_DATA: {
        int rc =
            tether__encode_data_begin(b, f->u.data.first_seq, f->u.data.flags, f->u.data.count);
        for (size_t i = 0; rc == TETHER_OK && i < f->u.data.count; i++) {
            rc = tether__encode_data_payload(b, f->u.data.payloads[i].data,
                                             f->u.data.payloads[i].len);
        }
        return rc == TETHER_OK ? tether__encode_data_end(b) : rc;
    }
    case TETHER__F_ACK:
        return tether__encode_ack(b, f->u.ack);
    default:
        return TETHER_EINVAL;
    }
}

/* The names of what tether__decode returns; kept here so the vectors are
 * checked against the header's codes, not against another table. */
static const char *code_name(int rc)
{
    static const struct {
        int code;
        const char *name;
    } names[] = {
        {TETHER_OK, "TETHER_OK"},
        {TETHER_EINVAL, "TETHER_EINVAL"},
        {TETHER_ENOMEM, "TETHER_ENOMEM"},
        {TETHER_EMALFORMED, "TETHER_EMALFORMED"},
        {TETHER_EFRAME_TYPE, "TETHER_EFRAME_TYPE"},
        {TETHER_EFRAME_ARITY, "TETHER_EFRAME_ARITY"},
        {TETHER_EFRAME_FIELD, "TETHER_EFRAME_FIELD"},
        {TETHER_EFRAME_SEQ0, "TETHER_EFRAME_SEQ0"},
        {TETHER_EFRAME_TRAILING, "TETHER_EFRAME_TRAILING"},
        {TETHER_EFRAME_OVERSIZE, "TETHER_EFRAME_OVERSIZE"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].code == rc) {
            return names[i].name;
        }
    }
    return "(not a decode result)";
}

/* ------------------------------------------------------------------------ */
/* Vector files                                                              */
/* ------------------------------------------------------------------------ */

/* Parses the hex field: whitespace-separated tokens of hex digit pairs, each
 * optionally followed by "*N" (the token's bytes repeated N times). Returns a
 * malloc'd buffer (never NULL on success) or NULL on a syntax error. */
static uint8_t *parse_hex(const char *text, size_t *len)
{
    size_t cap = 64, n = 0;
    uint8_t *out = malloc(cap);
    const char *p = text;
    if (out == NULL) {
        return NULL;
    }
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        uint8_t tok[64];
        size_t t = 0;
        while (isxdigit((unsigned char)p[0])) {
            if (!isxdigit((unsigned char)p[1]) || t == sizeof tok) {
                free(out);
                return NULL;
            }
            char pair[3] = {p[0], p[1], '\0'};
            tok[t++] = (uint8_t)strtoul(pair, NULL, 16);
            p += 2;
        }
        unsigned long times = 1;
        if (*p == '*') {
            char *end;
            times = strtoul(p + 1, &end, 10);
            if (end == p + 1) {
                free(out);
                return NULL;
            }
            p = end;
        }
        if (t == 0 || (*p != '\0' && *p != ' ' && *p != '\t')) {
            free(out);
            return NULL;
        }
        while (n + t * times > cap) {
            cap *= 2;
        }
        uint8_t *grown = realloc(out, cap);
        if (grown == NULL) {
            free(out);
            return NULL;
        }
        out = grown;
        for (unsigned long i = 0; i < times; i++) {
            memcpy(out + n, tok, t);
            n += t;
        }
    }
    *len = n;
    return out;
}

typedef void (*vector_fn)(const char *file, const char *name, const char *expect,
                          const uint8_t *bytes, size_t len);

/* Runs fn on every vector of proto/vectors/<file>; returns how many there were.
 * Any unreadable file or malformed line fails the running test. */
static int for_each_vector(const char *file, vector_fn fn)
{
    const char *root = getenv("TETHER_SOURCE_DIR");
    char path[1024];
    if (root == NULL || root[0] == '\0') {
        tt_fail(__FILE__, __LINE__, "TETHER_SOURCE_DIR is not set; run through ctest");
        return 0;
    }
    snprintf(path, sizeof path, "%s/proto/vectors/%s", root, file);
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        tt_fail(__FILE__, __LINE__, "cannot open %s", path);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int count = 0, lineno = 0;
    while ((got = getline(&line, &cap, fp)) != -1) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
            line[--got] = '\0';
        }
        const char *q = line;
        while (*q == ' ') {
            q++;
        }
        if (*q == '\0' || *q == '#') {
            continue;
        }
        char *name = line;
        char *expect = strchr(name, '\t');
        char *hex = expect ? strchr(expect + 1, '\t') : NULL;
        if (hex == NULL || strchr(hex + 1, '\t') != NULL) {
            tt_fail(__FILE__, __LINE__, "%s:%d: not name<TAB>expect<TAB>hex", path, lineno);
            continue;
        }
        *expect++ = '\0';
        *hex++ = '\0';
        size_t len;
        uint8_t *bytes = parse_hex(hex, &len);
        if (bytes == NULL) {
            tt_fail(__FILE__, __LINE__, "%s:%d: bad hex", path, lineno);
            continue;
        }
        fn(file, name, expect, bytes, len);
        free(bytes);
        count++;
    }
    free(line);
    fclose(fp);
    return count;
}

static void check_valid(const char *file, const char *name, const char *expect,
                        const uint8_t *bytes, size_t len)
{
    tether__decoder d;
    tether__frame f;
    tether__buf b;
    str s = {0};
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    tether__buf_init(&b, 0);
    int rc = tether__decode(&d, bytes, len, &f);
    if (rc != TETHER_OK) {
        tt_fail(__FILE__, __LINE__, "%s %s: decode gave %s", file, name, code_name(rc));
    } else {
        describe(&s, &f);
        if (strcmp(s.p, expect) != 0) {
            tt_fail(__FILE__, __LINE__, "%s %s: decoded as\n  %s\nexpected\n  %s", file, name, s.p,
                    expect);
        }
        CHECK_OK(encode_frame(&b, &f));
        int same = b.len == len && memcmp(tether__buf_frame(&b), bytes, len) == 0;
        int canonical = strcmp(file, "noncanonical.txt") != 0;
        if (same != canonical) {
            tt_fail(__FILE__, __LINE__, "%s %s: re-encoding %s the input", file, name,
                    same ? "matches" : "differs from");
        }
    }
    free(s.p);
    tether__buf_free(&b);
    tether__decoder_free(&d);
}

static void check_invalid(const char *file, const char *name, const char *expect,
                          const uint8_t *bytes, size_t len)
{
    tether__decoder d;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, MAX_PAYLOAD));
    int rc = tether__decode(&d, bytes, len, &f);
    if (strcmp(code_name(rc), expect) != 0) {
        tt_fail(__FILE__, __LINE__, "%s %s: decode gave %s, expected %s", file, name, code_name(rc),
                expect);
    }
    tether__decoder_free(&d);
}

TEST(vectors_valid)
{
    int n = for_each_vector("valid.txt", check_valid);
    CHECK(n >= 20);
}

TEST(vectors_noncanonical)
{
    int n = for_each_vector("noncanonical.txt", check_valid);
    CHECK(n >= 5);
}

TEST(vectors_invalid)
{
    int n = for_each_vector("invalid.txt", check_invalid);
    CHECK(n >= 30);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

static int decode_buf(tether__decoder *d, tether__buf *b, tether__frame *f)
{
    return tether__decode(d, tether__buf_frame(b), b->len, f);
}

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
    RUN(vectors_valid);
    RUN(vectors_noncanonical);
    RUN(vectors_invalid);
    RUN(roundtrip_hello);
    RUN(roundtrip_welcome);
    RUN(roundtrip_reject_bye);
    RUN(reason_is_cut_and_cleaned);
    RUN(roundtrip_ack);
    RUN(roundtrip_data);
    RUN(data_overhead_bound);
    RUN(slices_borrow_input);
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

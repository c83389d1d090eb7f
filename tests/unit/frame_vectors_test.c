/*
 * The tether.v1 codec (src/engine/frame.c) against the shared vectors in
 * proto/vectors/: each valid frame decodes to its canonical description and
 * encodes back to the same bytes; each invalid one fails with its code.
 */
#include "frame_fixture.h"

#include <stdarg.h>

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

/* ------------------------------------------------------------------------ */
/* Vector files                                                              */
/* ------------------------------------------------------------------------ */

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

int main(void)
{
    RUN(vectors_valid);
    RUN(vectors_noncanonical);
    RUN(vectors_invalid);
    return tt_finish();
}

/*
 * Fuzz target: the HTTP carriage's parsers (engine/httpcarry.h), which read
 * what arrives from the network on the fallback: bodies of frames, checked
 * whole and read in pieces, connection ids, counts, Content-Type values,
 * request targets, and the URLs a client derives from its WebSocket URL.
 *
 * Input: 1 byte kind selector, 4 bytes max_message (big-endian), 1 byte that
 * seeds how the incremental reader's input is cut, then the body. The body is
 * also offered, NUL-split (its first four strings), to the string parsers.
 *
 * Properties:
 * - the whole-body check, the verifying decode and the incremental reader
 *   agree on the verdict (the rule broken, or the frame count);
 * - on a well-formed body, the reader yields the same frames as the walk, and
 *   writing those frames back as records gives the input byte for byte;
 * - a reader whose allocation is refused fails with TETHER_ENOMEM, not a crash;
 * - routes, ids and counts obey their stated shapes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

#include "engine/httpcarry.h"
#include "fuzz_util.h"

#define READER_ALLOC_MAX (1u << 20) /* the harness refuses larger records */

static void *bounded_realloc(void *p, size_t n)
{
    return n > READER_ALLOC_MAX ? NULL : realloc(p, n);
}

/* Feeds body to a reader in pieces whose sizes come from cut; returns the
 * result and checks each frame against the walk of a well-formed body. */
static int read_in_pieces(const tether__hc_limits *lim, uint32_t max_message, const uint8_t *body,
                          size_t len, uint8_t cut, int valid, size_t *frames, int *why)
{
    tether__hc_reader r;
    FUZZ_CHECK(tether__hc_reader_init(&r, lim->kind, max_message) == TETHER_OK);
    r.realloc_fn = bounded_realloc;
    size_t off = 0, walk = 0, n = 0;
    uint32_t state = cut * 2654435761u + 1;
    int rc = TETHER_OK;
    while (off < len) {
        state = state * 1103515245u + 12345u;
        size_t piece = 1 + (state >> 16) % 64;
        if (piece > len - off) {
            piece = len - off;
        }
        size_t used = 0;
        tether__slice f = {0};
        rc = tether__hc_reader_feed(&r, body + off, piece, &used, &f);
        if (rc != TETHER_OK) {
            break;
        }
        FUZZ_CHECK(used <= piece);
        off += used;
        if (f.data) {
            n++;
            if (valid) {
                tether__slice w;
                FUZZ_CHECK(tether__hc_next(body, len, &walk, &w) == 1);
                FUZZ_CHECK(w.len == f.len && memcmp(w.data, f.data, f.len) == 0);
            }
        } else {
            FUZZ_CHECK(used == piece); /* no frame completed: all of it was taken */
        }
    }
    if (rc == TETHER_OK) {
        rc = tether__hc_reader_end(&r);
    }
    *frames = n;
    *why = r.why;
    tether__hc_reader_free(&r);
    return rc;
}

static void check_body(int kind, uint32_t max_message, uint8_t cut, const uint8_t *body,
                       size_t len)
{
    tether__hc_limits lim;
    FUZZ_CHECK(tether__hc_limits_for(&lim, kind, max_message) == TETHER_OK);
    FUZZ_CHECK(lim.record_max >= TETHER__HC_RECORD_FLOOR || kind == TETHER__HC_OPEN);
    FUZZ_CHECK(lim.body_max >= lim.record_max + TETHER__HC_PREFIX);

    int why = -1;
    size_t frames = 0;
    int rc = tether__hc_check(&lim, body, len, &why, &frames);
    FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_EMALFORMED || rc == TETHER_EFRAME_OVERSIZE);
    FUZZ_CHECK((rc == TETHER_OK) == (why == TETHER__HC_VALID));
    FUZZ_CHECK(why != TETHER__HC_FRAME);
    FUZZ_CHECK(tether__hc_why_name(why) != NULL);
    if (rc != TETHER_OK) {
        int st = tether__hc_why_status(why);
        FUZZ_CHECK(st == 400 || st == 413);
        FUZZ_CHECK((st == 413) == (rc == TETHER_EFRAME_OVERSIZE));
    } else {
        FUZZ_CHECK(frames >= lim.min_frames && frames <= lim.max_frames);
        FUZZ_CHECK(len <= lim.body_max);
    }

    /* the verifying decode agrees on the structure */
    tether__decoder d;
    FUZZ_CHECK(tether__decoder_init(&d, max_message ? max_message : 1) == TETHER_OK);
    int vwhy = -1;
    size_t bad = 0, vframes = 0;
    int vrc = tether__hc_verify(&lim, &d, body, len, &vwhy, &bad, &vframes);
    if (rc != TETHER_OK) {
        FUZZ_CHECK(vrc == rc && vwhy == why);
    } else if (vrc == TETHER_OK) {
        FUZZ_CHECK(vwhy == TETHER__HC_VALID && vframes == frames);
    } else {
        FUZZ_CHECK(vwhy == TETHER__HC_FRAME && bad >= 1 && bad <= frames);
    }
    tether__decoder_free(&d);

    /* the reader agrees too, and sees the same frames */
    int rwhy = -1;
    size_t rframes = 0;
    int rrc = read_in_pieces(&lim, max_message, body, len, cut, rc == TETHER_OK, &rframes, &rwhy);
    if (rrc == TETHER_ENOMEM) {
        FUZZ_CHECK(rwhy == TETHER__HC_VALID); /* refused memory is not a body error */
    } else {
        FUZZ_CHECK(rrc == rc);
        FUZZ_CHECK(rwhy == why);
        if (rc == TETHER_OK) {
            FUZZ_CHECK(rframes == frames);
        }
    }

    /* a well-formed body is exactly its frames written back as records */
    if (rc == TETHER_OK) {
        tether__buf b;
        tether__buf_init(&b, 0);
        if (kind == TETHER__HC_STREAM) {
            FUZZ_CHECK(tether__hc_append_probe(&b) == TETHER_OK);
        }
        size_t pos = 0, n = 0;
        tether__slice f;
        while (tether__hc_next(body, len, &pos, &f)) {
            FUZZ_CHECK(tether__hc_room(&lim, b.len, n, f.len) == 1);
            FUZZ_CHECK(tether__hc_append(&b, f.data, f.len) == TETHER_OK);
            n++;
        }
        FUZZ_CHECK(n == frames);
        FUZZ_CHECK(b.len == len && memcmp(tether__buf_frame(&b), body, len) == 0);
        tether__buf_free(&b);
    }
}

static int id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* s is NUL-terminated, n = strlen(s) */
static void check_strings(const char *s, size_t n)
{
    int valid = tether__hc_id_valid(s, n);
    int expect = n == TETHER__HC_ID_CHARS;
    for (size_t i = 0; expect && i < n; i++) {
        expect = id_char(s[i]);
    }
    FUZZ_CHECK(valid == expect);

    uint64_t v = 0;
    int rc = tether__hc_parse_count(s, &v);
    FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_EINVAL);
    if (rc == TETHER_OK) {
        char back[24];
        snprintf(back, sizeof back, "%llu", (unsigned long long)v);
        FUZZ_CHECK(strstr(s, back) != NULL); /* the digits as written, minus blanks */
    }
    (void)tether__hc_content_type_ok(s);

    char app[256];
    memset(app, 'X', sizeof app);
    int op = tether__hc_route(s, app, sizeof app);
    FUZZ_CHECK(op >= -1 && op <= TETHER__HC_OP_STREAM);
    FUZZ_CHECK(strnlen(app, sizeof app) < sizeof app);
    if (op != 0) {
        FUZZ_CHECK(strstr(s, TETHER__HC_MARKER) != NULL);
    }
    if (op > 0) {
        FUZZ_CHECK(tether__hc_op_method(op) != NULL);
    } else {
        FUZZ_CHECK(app[0] == '\0'); /* only an op has an application path */
    }

    static const size_t outlens[] = {1, 64, 2048};
    for (int o = TETHER__HC_OP_OPEN; o <= TETHER__HC_OP_STREAM; o++) {
        for (size_t i = 0; i < sizeof outlens / sizeof outlens[0]; i++) {
            char url[2048];
            rc = tether__hc_url(s, o, url, outlens[i]);
            FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_EINVAL || rc == TETHER_ENOMEM);
            FUZZ_CHECK(strnlen(url, outlens[i]) < outlens[i]);
            if (rc == TETHER_OK) {
                FUZZ_CHECK(!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8));
                FUZZ_CHECK(strstr(url, TETHER__HC_MARKER) != NULL);
                /* the server routes the derived URL's path back to the same op */
                const char *path = strchr(strstr(url, "//") + 2, '/');
                FUZZ_CHECK(path != NULL);
                FUZZ_CHECK(tether__hc_route(path, NULL, 0) == o);
            } else if (rc == TETHER_ENOMEM) {
                FUZZ_CHECK(url[0] == '\0');
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tfuzz_in in = {data, size};
    int kind = 1 + tfuzz_u8(&in) % 5;
    uint32_t max_message = (uint32_t)tfuzz_u16(&in) << 16;
    max_message |= tfuzz_u16(&in);
    uint8_t cut = tfuzz_u8(&in);
    size_t len = in.left;
    /* an exact-size copy, so a read past the end is caught by ASan */
    uint8_t *body = malloc(len ? len : 1);
    FUZZ_CHECK(body != NULL);
    if (len) {
        memcpy(body, in.p, len);
    }
    check_body(kind, max_message, cut, body, len);

    char *text = malloc(len + 1);
    FUZZ_CHECK(text != NULL);
    if (len) {
        memcpy(text, body, len);
    }
    text[len] = '\0';
    /* the first few strings: a binary body splits into hundreds of short ones */
    for (size_t off = 0, k = 0; off <= len && k < 4; k++) {
        size_t n = strlen(text + off);
        if (n <= 4096) {
            check_strings(text + off, n);
        }
        off += n + 1;
    }
    free(text);
    free(body);
    return 0;
}

/*
 * What the frame_* suites share (frame_fixture.h): the names of decode
 * results, the vector files' hex notation, decoding a buffer.
 */
#include "frame_fixture.h"

#include <ctype.h>

/* The names of what tether__decode returns; kept here so the vectors are
 * checked against the header's codes, not against another table. */
const char *code_name(int rc)
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

/* Parses the hex field: whitespace-separated tokens of hex digit pairs, each
 * optionally followed by "*N" (the token's bytes repeated N times). Returns a
 * malloc'd buffer (never NULL on success) or NULL on a syntax error. */
uint8_t *parse_hex(const char *text, size_t *len)
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
int decode_buf(tether__decoder *d, tether__buf *b, tether__frame *f)
{
    return tether__decode(d, tether__buf_frame(b), b->len, f);
}

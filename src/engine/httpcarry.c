/*
 * The HTTP carriage of tether.v1, sans I/O (httpcarry.h, proto/HTTP.md).
 *
 * One set of rules decides a body's structure, applied record by record in
 * reading order (rec_rule); the whole-body check and the incremental reader
 * both call it, so they cannot disagree about which error comes first.
 */
#include "httpcarry.h"
#include "common/alloc.h"

#include <tether/tether.h>

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ------------------------------------------------------------------------ */
/* Limits and error names                                                    */
/* ------------------------------------------------------------------------ */

int tether__hc_limits_for(tether__hc_limits *lim, int kind, uint32_t max_message)
{
    if (lim == NULL) {
        return TETHER_EINVAL;
    }
    uint64_t mm = max_message ? max_message : 1;
    uint64_t rec = mm + 64 > TETHER__HC_RECORD_FLOOR ? mm + 64 : TETHER__HC_RECORD_FLOOR;
    uint64_t body = 2 * (rec + TETHER__HC_PREFIX);
    if (body < TETHER__HC_BODY_FLOOR) {
        body = TETHER__HC_BODY_FLOOR;
    }
    memset(lim, 0, sizeof *lim);
    lim->kind = kind;
    lim->record_max = rec;
    lim->body_max = body;
    switch (kind) {
    case TETHER__HC_OPEN:
        lim->record_max = TETHER__HC_OPEN_RECORD_MAX;
        lim->body_max = TETHER__HC_OPEN_RECORD_MAX + TETHER__HC_PREFIX;
        lim->min_frames = 1;
        lim->max_frames = 1;
        return TETHER_OK;
    case TETHER__HC_ANSWER:
        lim->min_frames = 1;
        lim->max_frames = 2;
        return TETHER_OK;
    case TETHER__HC_SEND:
    case TETHER__HC_POLL:
        lim->min_frames = 1;
        lim->max_frames = TETHER__HC_MAX_FRAMES;
        return TETHER_OK;
    case TETHER__HC_STREAM:
        lim->body_max = body + TETHER__HC_PREFIX; /* room for the probe */
        lim->min_frames = 0;
        lim->max_frames = TETHER__HC_MAX_FRAMES;
        return TETHER_OK;
    default:
        memset(lim, 0, sizeof *lim);
        return TETHER_EINVAL;
    }
}

static const struct {
    const char *name; /* as in HTTP.md and the vectors */
    int status;       /* what a server answers a request body with */
} why_table[] = {
    [TETHER__HC_VALID] = {"VALID", 0},
    [TETHER__HC_PREFIX_TRUNCATED] = {"BODY_PREFIX_TRUNCATED", 400},
    [TETHER__HC_RECORD_TRUNCATED] = {"BODY_RECORD_TRUNCATED", 400},
    [TETHER__HC_RECORD_EMPTY] = {"BODY_RECORD_EMPTY", 400},
    [TETHER__HC_NO_PROBE] = {"BODY_NO_PROBE", 400},
    [TETHER__HC_RECORD_TOO_LARGE] = {"BODY_RECORD_TOO_LARGE", 413},
    [TETHER__HC_BODY_TOO_LARGE] = {"BODY_TOO_LARGE", 413},
    [TETHER__HC_TOO_MANY] = {"BODY_TOO_MANY", 413},
    [TETHER__HC_COUNT] = {"BODY_COUNT", 400},
    [TETHER__HC_FRAME] = {"FRAME", 0},
};
#define WHY_COUNT (sizeof why_table / sizeof why_table[0])

const char *tether__hc_why_name(int why)
{
    if (why < 0 || (size_t)why >= WHY_COUNT) {
        return "(not a body result)";
    }
    return why_table[why].name;
}

int tether__hc_why_status(int why)
{
    if (why < 0 || (size_t)why >= WHY_COUNT) {
        return 0;
    }
    return why_table[why].status;
}

static int why_code(int why)
{
    return tether__hc_why_status(why) == 413 ? TETHER_EFRAME_OVERSIZE : TETHER_EMALFORMED;
}

/* ------------------------------------------------------------------------ */
/* The rules of one record, in reading order                                 */
/* ------------------------------------------------------------------------ */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Judges a record once its length n is known: it starts at body offset at, it
 * is record number index (1 = the first, the probe included), and frames
 * frames came before it. Returns the why (VALID when the record may be read). */
static int rec_rule(const tether__hc_limits *lim, uint64_t at, uint64_t index, size_t frames,
                    uint64_t n)
{
    int probe_slot = lim->kind == TETHER__HC_STREAM && index == 1;
    if (probe_slot && n != 0) {
        return TETHER__HC_NO_PROBE;
    }
    if (probe_slot) {
        return TETHER__HC_VALID;
    }
    if (n == 0) {
        return TETHER__HC_RECORD_EMPTY;
    }
    if (frames >= lim->max_frames) {
        return lim->max_frames == TETHER__HC_MAX_FRAMES ? TETHER__HC_TOO_MANY : TETHER__HC_COUNT;
    }
    if (n > lim->record_max) {
        return TETHER__HC_RECORD_TOO_LARGE;
    }
    if (at + TETHER__HC_PREFIX + n > lim->body_max) {
        return TETHER__HC_BODY_TOO_LARGE;
    }
    return TETHER__HC_VALID;
}

/* The checks made when the body has ended after records records and frames frames. */
static int end_rule(const tether__hc_limits *lim, uint64_t records, size_t frames)
{
    if (lim->kind == TETHER__HC_STREAM && records == 0) {
        return TETHER__HC_NO_PROBE;
    }
    if (frames < lim->min_frames) {
        return TETHER__HC_COUNT;
    }
    return TETHER__HC_VALID;
}

/* ------------------------------------------------------------------------ */
/* Whole bodies                                                              */
/* ------------------------------------------------------------------------ */

static int fail(int why, int *why_out)
{
    if (why_out) {
        *why_out = why;
    }
    return why_code(why);
}

int tether__hc_check(const tether__hc_limits *lim, const uint8_t *body, size_t len, int *why,
                     size_t *frames)
{
    if (why) {
        *why = TETHER__HC_VALID;
    }
    if (frames) {
        *frames = 0;
    }
    if (lim == NULL || (body == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    size_t pos = 0, count = 0;
    uint64_t records = 0;
    while (pos < len) {
        if (len - pos < TETHER__HC_PREFIX) {
            return fail(TETHER__HC_PREFIX_TRUNCATED, why);
        }
        uint64_t n = be32(body + pos);
        int w = rec_rule(lim, pos, ++records, count, n);
        if (w != TETHER__HC_VALID) {
            return fail(w, why);
        }
        pos += TETHER__HC_PREFIX;
        if (n > len - pos) {
            return fail(TETHER__HC_RECORD_TRUNCATED, why);
        }
        pos += (size_t)n;
        if (n > 0) {
            count++;
        }
    }
    int w = end_rule(lim, records, count);
    if (w != TETHER__HC_VALID) {
        return fail(w, why);
    }
    if (frames) {
        *frames = count;
    }
    return TETHER_OK;
}

int tether__hc_next(const uint8_t *body, size_t len, size_t *pos, tether__slice *frame)
{
    while (*pos + TETHER__HC_PREFIX <= len) {
        size_t n = be32(body + *pos);
        size_t at = *pos + TETHER__HC_PREFIX;
        if (n > len - at) {
            return 0;
        }
        *pos = at + n;
        if (n > 0) {
            frame->data = body + at;
            frame->len = n;
            return 1;
        }
    }
    return 0;
}

int tether__hc_verify(const tether__hc_limits *lim, tether__decoder *d, const uint8_t *body,
                      size_t len, int *why, size_t *bad, size_t *frames)
{
    size_t count = 0;
    if (bad) {
        *bad = 0;
    }
    if (frames) {
        *frames = 0;
    }
    int rc = tether__hc_check(lim, body, len, why, &count);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (d == NULL) {
        return TETHER_EINVAL;
    }
    size_t pos = 0, index = 0;
    tether__slice s;
    tether__frame f;
    while (tether__hc_next(body, len, &pos, &s)) {
        index++;
        rc = tether__decode(d, s.data, s.len, &f);
        if (rc != TETHER_OK) {
            if (why) {
                *why = TETHER__HC_FRAME;
            }
            if (bad) {
                *bad = index;
            }
            return rc;
        }
    }
    if (frames) {
        *frames = count;
    }
    return TETHER_OK;
}

/* ------------------------------------------------------------------------ */
/* Writing bodies                                                            */
/* ------------------------------------------------------------------------ */

/* Appends a prefix for n and then n bytes at p (p may be NULL when n is 0).
 * All or nothing. */
static int put_record(tether__buf *b, const uint8_t *p, size_t n)
{
    size_t used = b->pre + b->len;
    if (b->pre > SIZE_MAX - b->len || used > SIZE_MAX - TETHER__HC_PREFIX ||
        n > SIZE_MAX - TETHER__HC_PREFIX - used) {
        return TETHER_ENOMEM;
    }
    size_t need = used + TETHER__HC_PREFIX + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        }
        uint8_t *grown = tether__realloc(b->data, cap);
        if (grown == NULL) {
            return TETHER_ENOMEM;
        }
        b->data = grown;
        b->cap = cap;
    }
    uint8_t *w = b->data + used;
    w[0] = (uint8_t)(n >> 24);
    w[1] = (uint8_t)(n >> 16);
    w[2] = (uint8_t)(n >> 8);
    w[3] = (uint8_t)n;
    if (n > 0) {
        memcpy(w + TETHER__HC_PREFIX, p, n);
    }
    b->len += TETHER__HC_PREFIX + n;
    return TETHER_OK;
}

int tether__hc_append(tether__buf *b, const uint8_t *frame, size_t len)
{
    if (b == NULL || frame == NULL || len == 0 || len > UINT32_MAX) {
        return TETHER_EINVAL;
    }
    return put_record(b, frame, len);
}

int tether__hc_append_probe(tether__buf *b)
{
    if (b == NULL) {
        return TETHER_EINVAL;
    }
    return put_record(b, NULL, 0);
}

int tether__hc_room(const tether__hc_limits *lim, size_t body_len, size_t frames,
                    size_t frame_len)
{
    if (lim == NULL || frame_len == 0 || frames >= lim->max_frames ||
        frame_len > lim->record_max) {
        return 0;
    }
    return (uint64_t)body_len + TETHER__HC_PREFIX + frame_len <= lim->body_max;
}

/* ------------------------------------------------------------------------ */
/* The incremental reader                                                    */
/* ------------------------------------------------------------------------ */

int tether__hc_reader_init(tether__hc_reader *r, int kind, uint32_t max_message)
{
    if (r == NULL) {
        return TETHER_EINVAL;
    }
    memset(r, 0, sizeof *r);
    r->realloc_fn = realloc;
    return tether__hc_limits_for(&r->lim, kind, max_message);
}

void tether__hc_reader_free(tether__hc_reader *r)
{
    if (r == NULL) {
        return;
    }
    tether__free(r->rec);
    r->rec = NULL;
    r->rec_cap = 0;
}

/* Sticks an error to the reader. */
static int reader_fail(tether__hc_reader *r, int why)
{
    r->why = why;
    return why_code(why);
}

int tether__hc_reader_feed(tether__hc_reader *r, const uint8_t *in, size_t len, size_t *used,
                           tether__slice *frame)
{
    if (used) {
        *used = 0;
    }
    if (frame) {
        frame->data = NULL;
        frame->len = 0;
    }
    if (r == NULL || frame == NULL || used == NULL || (in == NULL && len > 0) || r->lim.kind == 0) {
        return TETHER_EINVAL;
    }
    if (r->why != TETHER__HC_VALID) {
        return why_code(r->why);
    }
    if (r->realloc_fn == NULL) {
        return TETHER_ENOMEM; /* failed by an earlier allocation */
    }
    size_t i = 0;
    while (i < len) {
        if (!r->in_record) {
            size_t take = TETHER__HC_PREFIX - r->prefix_have;
            if (take > len - i) {
                take = len - i;
            }
            memcpy(r->prefix + r->prefix_have, in + i, take);
            r->prefix_have += take;
            i += take;
            if (r->prefix_have < TETHER__HC_PREFIX) {
                break;
            }
            uint64_t n = be32(r->prefix);
            int w = rec_rule(&r->lim, r->consumed, r->records + 1, r->frames, n);
            *used = i;
            if (w != TETHER__HC_VALID) {
                return reader_fail(r, w);
            }
            r->records++;
            r->consumed += TETHER__HC_PREFIX;
            r->prefix_have = 0;
            if (n == 0) {
                continue; /* the probe */
            }
            if (n > r->rec_cap) {
                uint8_t *p = r->realloc_fn(r->rec, (size_t)n);
                if (p == NULL) {
                    r->realloc_fn = NULL;
                    return TETHER_ENOMEM;
                }
                r->rec = p;
                r->rec_cap = (size_t)n;
            }
            r->in_record = 1;
            r->rec_len = (size_t)n;
            r->rec_have = 0;
        }
        size_t take = r->rec_len - r->rec_have;
        if (take > len - i) {
            take = len - i;
        }
        memcpy(r->rec + r->rec_have, in + i, take);
        r->rec_have += take;
        r->consumed += take;
        i += take;
        if (r->rec_have == r->rec_len) {
            r->in_record = 0;
            r->frames++;
            frame->data = r->rec;
            frame->len = r->rec_len;
            *used = i;
            return TETHER_OK;
        }
    }
    *used = i;
    return TETHER_OK;
}

int tether__hc_reader_end(tether__hc_reader *r)
{
    if (r == NULL || r->lim.kind == 0) {
        return TETHER_EINVAL;
    }
    if (r->why != TETHER__HC_VALID) {
        return why_code(r->why);
    }
    if (r->prefix_have > 0) {
        return reader_fail(r, TETHER__HC_PREFIX_TRUNCATED);
    }
    if (r->in_record) {
        return reader_fail(r, TETHER__HC_RECORD_TRUNCATED);
    }
    int w = end_rule(&r->lim, r->records, r->frames);
    return w == TETHER__HC_VALID ? TETHER_OK : reader_fail(r, w);
}

/* ------------------------------------------------------------------------ */
/* Connection ids                                                            */
/* ------------------------------------------------------------------------ */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void tether__hc_id_from_bytes(const uint8_t raw[TETHER__HC_ID_BYTES],
                              char out[TETHER__HC_ID_CHARS + 1])
{
    /* 24 bytes are 8 groups of 3, each 4 characters: no padding, no stray bits. */
    for (size_t g = 0; g < TETHER__HC_ID_BYTES / 3; g++) {
        uint32_t v = (uint32_t)raw[3 * g] << 16 | (uint32_t)raw[3 * g + 1] << 8 | raw[3 * g + 2];
        out[4 * g] = b64url[v >> 18 & 63];
        out[4 * g + 1] = b64url[v >> 12 & 63];
        out[4 * g + 2] = b64url[v >> 6 & 63];
        out[4 * g + 3] = b64url[v & 63];
    }
    out[TETHER__HC_ID_CHARS] = '\0';
}

int tether__hc_id_new(char out[TETHER__HC_ID_CHARS + 1])
{
    uint8_t raw[TETHER__HC_ID_BYTES];
    int rc = tether__random(raw, sizeof raw);
    if (rc != TETHER_OK) {
        out[0] = '\0';
        return rc;
    }
    tether__hc_id_from_bytes(raw, out);
    return TETHER_OK;
}

int tether__hc_id_valid(const char *s, size_t len)
{
    if (s == NULL || len != TETHER__HC_ID_CHARS) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */
/* ------------------------------------------------------------------------ */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int tether__hc_content_type_ok(const char *value)
{
    if (value == NULL) {
        return 0;
    }
    const char *p = value;
    while (is_ows(*p)) {
        p++;
    }
    const char *end = p;
    while (*end != '\0' && *end != ';') {
        end++;
    }
    while (end > p && is_ows(end[-1])) {
        end--;
    }
    size_t n = strlen(TETHER__HC_CONTENT_TYPE);
    if ((size_t)(end - p) != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(p[i]) != TETHER__HC_CONTENT_TYPE[i]) {
            return 0;
        }
    }
    return 1;
}

int tether__hc_parse_count(const char *value, uint64_t *out)
{
    if (value == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    const char *p = value;
    while (is_ows(*p)) {
        p++;
    }
    const char *digits = p;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return TETHER_EINVAL;
        }
        v = v * 10 + d;
        p++;
    }
    size_t n = (size_t)(p - digits);
    if (n == 0 || (n > 1 && digits[0] == '0')) {
        return TETHER_EINVAL;
    }
    while (is_ows(*p)) {
        p++;
    }
    if (*p != '\0') {
        return TETHER_EINVAL;
    }
    *out = v;
    return TETHER_OK;
}

/* ------------------------------------------------------------------------ */
/* URLs                                                                      */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    const char *method;
} ops[] = {
    [TETHER__HC_OP_OPEN] = {"open", "POST"},
    [TETHER__HC_OP_SEND] = {"send", "POST"},
    [TETHER__HC_OP_POLL] = {"poll", "GET"},
    [TETHER__HC_OP_STREAM] = {"stream", "GET"},
};
#define OP_COUNT (sizeof ops / sizeof ops[0])

const char *tether__hc_op_name(int op)
{
    return op > 0 && (size_t)op < OP_COUNT ? ops[op].name : NULL;
}

const char *tether__hc_op_method(int op)
{
    return op > 0 && (size_t)op < OP_COUNT ? ops[op].method : NULL;
}

/* Case-insensitive prefix test. */
static int has_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        if (lower(*s) != *prefix) {
            return 0;
        }
    }
    return 1;
}

int tether__hc_url(const char *ws_url, int op, char *out, size_t len)
{
    if (out != NULL && len > 0) {
        out[0] = '\0';
    }
    const char *name = tether__hc_op_name(op);
    if (ws_url == NULL || out == NULL || len == 0 || name == NULL) {
        return TETHER_EINVAL;
    }
    const char *scheme, *rest;
    if (has_prefix(ws_url, "wss://")) {
        scheme = "https://";
        rest = ws_url + 6;
    } else if (has_prefix(ws_url, "ws://")) {
        scheme = "http://";
        rest = ws_url + 5;
    } else {
        return TETHER_EINVAL;
    }
    if (strchr(ws_url, '#') != NULL) {
        return TETHER_EINVAL; /* RFC 6455: a WebSocket URL has no fragment */
    }
    /* authority, then the path up to '?', then the query */
    size_t auth = strcspn(rest, "/?");
    if (auth == 0) {
        return TETHER_EINVAL;
    }
    const char *path = rest + auth;
    size_t path_len = strcspn(path, "?");
    const char *query = path + path_len;
    if (path_len > 0 && path[path_len - 1] == '/') {
        path_len--; /* "/" and "/chat/" lose their last slash */
    }
    size_t need = strlen(scheme) + auth + path_len + strlen(TETHER__HC_MARKER) + strlen(name) +
                  strlen(query) + 1;
    if (need > len) {
        return TETHER_ENOMEM;
    }
    char *w = out;
    memcpy(w, scheme, strlen(scheme));
    w += strlen(scheme);
    memcpy(w, rest, auth);
    w += auth;
    memcpy(w, path, path_len);
    w += path_len;
    memcpy(w, TETHER__HC_MARKER, strlen(TETHER__HC_MARKER));
    w += strlen(TETHER__HC_MARKER);
    memcpy(w, name, strlen(name));
    w += strlen(name);
    memcpy(w, query, strlen(query) + 1);
    return TETHER_OK;
}

int tether__hc_route(const char *target, char *app, size_t app_len)
{
    if (app != NULL && app_len > 0) {
        app[0] = '\0';
    }
    if (target == NULL || target[0] != '/') {
        return 0;
    }
    size_t path_len = strcspn(target, "?");
    const char *query = target + path_len;
    size_t last = path_len;
    while (target[last - 1] != '/') {
        last--; /* stops at the leading '/' at the latest */
    }
    size_t mlen = strlen(TETHER__HC_MARKER);
    if (last < mlen || memcmp(target + last - mlen, TETHER__HC_MARKER, mlen) != 0) {
        return 0;
    }
    const char *name = target + last;
    size_t nlen = path_len - last;
    int op = -1; /* the marker, then no operation we know */
    for (int i = 1; (size_t)i < OP_COUNT; i++) {
        if (strlen(ops[i].name) == nlen && memcmp(name, ops[i].name, nlen) == 0) {
            op = i;
        }
    }
    if (op > 0 && app != NULL && app_len > 0) {
        size_t base = last - mlen;
        const char *b = base > 0 ? target : "/";
        size_t blen = base > 0 ? base : 1;
        size_t w = 0;
        for (size_t i = 0; i < blen && w + 1 < app_len; i++) {
            app[w++] = b[i];
        }
        for (size_t i = 0; query[i] != '\0' && w + 1 < app_len; i++) {
            app[w++] = query[i];
        }
        app[w] = '\0';
    }
    return op;
}

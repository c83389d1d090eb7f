/*
 * The tether.v1 codec (proto/PROTOCOL.md).
 *
 * Encoding goes through msgpack-c's packer, which writes the smallest form of
 * every integer and length, into a tether__buf after its headroom.
 *
 * Decoding happens in three steps, and the first failing step decides the error:
 *   1. scan(): one pass over the bytes that checks they hold one well-formed
 *      msgpack array, that every declared length and element count fits in
 *      the bytes that remain, and that nesting stays within DEPTH_MAX. This is
 *      what makes step 2 safe: msgpack_unpack() allocates each array from its
 *      declared count, so it must never see a count the input cannot back.
 *   2. msgpack_unpack() into the decoder's zone. After step 1 it can only fail
 *      for lack of memory. It points str/bin objects into the input (no copy).
 *   3. The frame's own rules: type, arity, then each field in order.
 * The zone is cleared before returning; nothing in the decoded frame points
 * into it.
 */
#include "frame.h"
#include "common/alloc.h"

#include <tether/tether.h>

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#define BUF_MIN 256   /* first allocation of a tether__buf, bytes */
#define DEPTH_MAX 8   /* deepest array or map accepted (the frame's array is 1); frames use 2 */
#define ZONE_MIN 8192 /* initial zone chunk, bytes: fits any frame but long runs */
#define ZONE_SLACK 64 /* bytes added to a zone estimate for alignment */

/* The decoder's working memory (frame.h keeps it opaque): the zone
 * msgpack_unpack() takes decoded objects from. Allocated once by
 * tether__decoder_init(), cleared after each frame, grown by fit_zone(). */
struct tether__mpzone {
    msgpack_zone z; /* msgpack-c's arena */
};

/* Frame elements by type, the type number being the first. */
static const size_t arity[] = {0, 9, 7, 3, 4, 2, 3};

/* ------------------------------------------------------------------------ */
/* Output buffer                                                             */
/* ------------------------------------------------------------------------ */

void tether__buf_init(tether__buf *b, size_t pre)
{
    memset(b, 0, sizeof *b);
    b->pre = pre;
    b->run_err = TETHER_EINVAL;
}

void tether__buf_reset(tether__buf *b)
{
    b->len = 0;
    b->oom = 0;
    b->run_left = 0;
    b->run_err = TETHER_EINVAL;
}

void tether__buf_free(tether__buf *b)
{
    if (b == NULL) {
        return;
    }
    tether__free(b->data);
    b->data = NULL;
    b->cap = 0;
    tether__buf_reset(b);
}

/* Makes room for n more frame bytes. 0, or -1 when memory ran out. */
static int reserve(tether__buf *b, size_t n)
{
    size_t used = b->pre + b->len;
    if (n > SIZE_MAX - used) {
        return -1;
    }
    size_t need = used + n;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : BUF_MIN;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *p = tether__realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

/* msgpack_packer write callback: appends to the tether__buf in data. */
static int put(void *data, const char *p, size_t n)
{
    tether__buf *b = data;
    if (b->oom) {
        return -1;
    }
    if (reserve(b, n) != 0) {
        b->oom = 1;
        return -1;
    }
    if (n > 0) {
        memcpy(b->data + b->pre + b->len, p, n);
        b->len += n;
    }
    return 0;
}

static void begin(tether__buf *b, msgpack_packer *pk, size_t elements, int type)
{
    tether__buf_reset(b);
    msgpack_packer_init(pk, b, put);
    msgpack_pack_array(pk, elements);
    msgpack_pack_uint32(pk, (uint32_t)type);
}

static int done(const tether__buf *b)
{
    return b->oom ? TETHER_ENOMEM : TETHER_OK;
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */
/* ------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 when the bytes
 * there are ill-formed (overlong, surrogate, above U+10FFFF, truncated) or NUL. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t k;
    uint32_t cp, min;
    if (c == 0) {
        return 0;
    }
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        k = 1;
        cp = c & 0x1fu;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 2;
        cp = c & 0x0fu;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 3;
        cp = c & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n - 1 < k) {
        return 0;
    }
    for (size_t i = 1; i <= k; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return k + 1;
}

static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i);
        if (k == 0) {
            return 0;
        }
        i += k;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Encoders                                                                  */
/* ------------------------------------------------------------------------ */

int tether__encode_hello(tether__buf *b, const tether__hello *h)
{
    msgpack_packer pk;
    begin(b, &pk, 9, TETHER__F_HELLO);
    msgpack_pack_uint32(&pk, h->version);
    msgpack_pack_bin_with_body(&pk, h->session_id, TETHER__ID_LEN);
    msgpack_pack_bin_with_body(&pk, h->token, TETHER__TOKEN_LEN);
    if (h->resume) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    msgpack_pack_uint64(&pk, h->recv_cursor);
    msgpack_pack_uint64(&pk, h->out_last);
    msgpack_pack_uint32(&pk, h->max_message);
    msgpack_pack_uint32(&pk, h->window);
    return done(b);
}

int tether__encode_welcome(tether__buf *b, const tether__welcome *w)
{
    msgpack_packer pk;
    begin(b, &pk, 7, TETHER__F_WELCOME);
    msgpack_pack_bin_with_body(&pk, w->session_id, TETHER__ID_LEN);
    if (w->resumed) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    msgpack_pack_uint64(&pk, w->recv_cursor);
    msgpack_pack_uint64(&pk, w->out_last);
    msgpack_pack_uint32(&pk, w->max_message);
    msgpack_pack_uint32(&pk, w->window);
    return done(b);
}

/* REJECT and BYE. The reason is cut at a character boundary to fit
 * TETHER__REASON_MAX, and each byte of an ill-formed UTF-8 sequence becomes
 * '?', so the frame is always one the decoder accepts. */
static int encode_close(tether__buf *b, int type, uint32_t code, const char *reason)
{
    uint8_t text[TETHER__REASON_MAX];
    size_t n = 0;
    if (reason != NULL) {
        const uint8_t *s = (const uint8_t *)reason;
        size_t left = strlen(reason);
        while (left > 0) {
            size_t k = utf8_seq(s, left);
            if (n + (k ? k : 1) > sizeof text) {
                break;
            }
            if (k == 0) {
                text[n++] = '?';
                s++;
                left--;
            } else {
                memcpy(text + n, s, k);
                n += k;
                s += k;
                left -= k;
            }
        }
    }
    msgpack_packer pk;
    begin(b, &pk, 3, type);
    msgpack_pack_uint32(&pk, code);
    msgpack_pack_str_with_body(&pk, text, n);
    return done(b);
}

int tether__encode_reject(tether__buf *b, uint32_t code, const char *reason)
{
    return encode_close(b, TETHER__F_REJECT, code, reason);
}

int tether__encode_bye(tether__buf *b, uint32_t code, const char *reason)
{
    return encode_close(b, TETHER__F_BYE, code, reason);
}

int tether__encode_ack(tether__buf *b, uint64_t seq)
{
    msgpack_packer pk;
    begin(b, &pk, 2, TETHER__F_ACK);
    msgpack_pack_uint64(&pk, seq);
    return done(b);
}

int tether__encode_data_begin(tether__buf *b, uint64_t first_seq, uint32_t flags, size_t count)
{
    msgpack_packer pk;
    begin(b, &pk, 4, TETHER__F_DATA);
    msgpack_pack_uint64(&pk, first_seq);
    msgpack_pack_uint32(&pk, flags);
    msgpack_pack_array(&pk, count);
    b->run_left = count;
    b->run_err = TETHER_OK;
    if (first_seq == 0 || count == 0 || count > TETHER__RUN_MAX ||
        first_seq - 1 > UINT64_MAX - count) {
        b->run_err = TETHER_EINVAL;
        return TETHER_EINVAL;
    }
    return done(b);
}

int tether__encode_data_payload(tether__buf *b, const void *p, size_t len)
{
    if (b->run_err != TETHER_OK || b->run_left == 0 || len > UINT32_MAX) {
        b->run_err = TETHER_EINVAL;
        return TETHER_EINVAL;
    }
    b->run_left--;
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, put);
    msgpack_pack_bin(&pk, len);
    if (len > 0) {
        msgpack_pack_bin_body(&pk, p, len);
    }
    return done(b);
}

int tether__encode_data_end(tether__buf *b)
{
    int rc = b->run_err;
    if (rc == TETHER_OK && b->run_left != 0) {
        rc = TETHER_EINVAL;
    }
    b->run_err = TETHER_EINVAL; /* the run is closed */
    if (rc != TETHER_OK) {
        return rc;
    }
    return done(b);
}

/* ------------------------------------------------------------------------ */
/* Decoder                                                                   */
/* ------------------------------------------------------------------------ */

int tether__decoder_init(tether__decoder *d, uint32_t max_payload)
{
    memset(d, 0, sizeof *d);
    if (max_payload == 0) {
        return TETHER_EINVAL;
    }
    tether__mpzone *zone = tether__malloc(sizeof *zone);
    if (zone == NULL) {
        return TETHER_ENOMEM;
    }
    if (!msgpack_zone_init(&zone->z, ZONE_MIN)) {
        tether__free(zone);
        return TETHER_ENOMEM;
    }
    d->zone = zone;
    d->max_payload = max_payload;
    return TETHER_OK;
}

void tether__decoder_free(tether__decoder *d)
{
    if (d == NULL || d->max_payload == 0) {
        return;
    }
    msgpack_zone_destroy(&d->zone->z);
    tether__free(d->zone);
    tether__free(d->items);
    memset(d, 0, sizeof *d);
}

size_t tether__decoder_chunk(const tether__decoder *d)
{
    return d != NULL && d->zone != NULL ? d->zone->z.chunk_size : 0;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

enum { K_SCALAR, K_RAW, K_EXT, K_ARRAY, K_MAP, K_BAD };

/* What follows a first byte in 0xc0..0xdf (msgpack's variable formats). */
static const struct head {
    uint8_t kind;  /* K_*: how the bytes after the header are read */
    uint8_t width; /* bytes of the length or count field after the first byte */
    uint8_t body;  /* fixed bytes after the first byte, when width is 0 */
} heads[32] = {
    [0x01] = {K_BAD, 0, 0},     /* 0xc1: never used */
    [0x04] = {K_RAW, 1, 0},     /* bin 8 */
    [0x05] = {K_RAW, 2, 0},     /* bin 16 */
    [0x06] = {K_RAW, 4, 0},     /* bin 32 */
    [0x07] = {K_EXT, 1, 0},     /* ext 8 */
    [0x08] = {K_EXT, 2, 0},     /* ext 16 */
    [0x09] = {K_EXT, 4, 0},     /* ext 32 */
    [0x0a] = {K_SCALAR, 0, 4},  /* float 32 */
    [0x0b] = {K_SCALAR, 0, 8},  /* float 64 */
    [0x0c] = {K_SCALAR, 0, 1},  /* uint 8 */
    [0x0d] = {K_SCALAR, 0, 2},  /* uint 16 */
    [0x0e] = {K_SCALAR, 0, 4},  /* uint 32 */
    [0x0f] = {K_SCALAR, 0, 8},  /* uint 64 */
    [0x10] = {K_SCALAR, 0, 1},  /* int 8 */
    [0x11] = {K_SCALAR, 0, 2},  /* int 16 */
    [0x12] = {K_SCALAR, 0, 4},  /* int 32 */
    [0x13] = {K_SCALAR, 0, 8},  /* int 64 */
    [0x14] = {K_SCALAR, 0, 2},  /* fixext 1 (type byte + data) */
    [0x15] = {K_SCALAR, 0, 3},  /* fixext 2 */
    [0x16] = {K_SCALAR, 0, 5},  /* fixext 4 */
    [0x17] = {K_SCALAR, 0, 9},  /* fixext 8 */
    [0x18] = {K_SCALAR, 0, 17}, /* fixext 16 */
    [0x19] = {K_RAW, 1, 0},     /* str 8 */
    [0x1a] = {K_RAW, 2, 0},     /* str 16 */
    [0x1b] = {K_RAW, 4, 0},     /* str 32 */
    [0x1c] = {K_ARRAY, 2, 0},   /* array 16 */
    [0x1d] = {K_ARRAY, 4, 0},   /* array 32 */
    [0x1e] = {K_MAP, 2, 0},     /* map 16 */
    [0x1f] = {K_MAP, 4, 0},     /* map 32 */
};

/*
 * Checks that p[0..len) starts with one well-formed msgpack object whose every
 * declared length fits in the bytes that remain (an array of n needs at least
 * n more bytes, a map 2n) and whose containers nest at most DEPTH_MAX deep.
 * Arrays and maps are the containers (PROTOCOL.md section 3): a map's keys
 * and values sit one level below it, like an array's elements, and an empty
 * container past the limit is refused too, since the check runs at its header.
 * On success stores the object's size in *end and a bound on what
 * msgpack_unpack() will take from the zone in *need, and returns 0; else -1.
 */
static int scan(const uint8_t *p, size_t len, size_t *end, size_t *need)
{
    uint64_t left[DEPTH_MAX + 1]; /* items still to read per open container; [0] is the root */
    size_t depth = 0;
    size_t pos = 0;
    size_t zone = 0;
    left[0] = 1;
    for (;;) {
        while (left[depth] == 0) {
            if (depth == 0) {
                *end = pos;
                *need = zone;
                return 0;
            }
            depth--;
        }
        left[depth]--;
        if (pos >= len) {
            return -1;
        }
        uint8_t c = p[pos++];
        int kind = K_SCALAR; /* positive and negative fixint unless set below */
        uint64_t n = 0;      /* bytes that follow, or a container's element count */
        if (c >= 0x80 && c <= 0x8f) {
            kind = K_MAP;
            n = c & 0x0fu;
        } else if (c >= 0x90 && c <= 0x9f) {
            kind = K_ARRAY;
            n = c & 0x0fu;
        } else if (c >= 0xa0 && c <= 0xbf) {
            kind = K_RAW;
            n = c & 0x1fu;
        } else if (c >= 0xc0 && c <= 0xdf) {
            const struct head *h = &heads[c - 0xc0];
            kind = h->kind;
            n = h->body;
            if (kind == K_BAD || len - pos < h->width) {
                return -1;
            }
            if (h->width > 0) {
                n = load_be(p + pos, h->width);
                pos += h->width;
            }
            if (kind == K_EXT) {
                n += 1; /* the ext type byte */
            }
        }
        if (kind == K_ARRAY || kind == K_MAP) {
            uint64_t items = kind == K_MAP ? 2 * n : n;
            if (items > len - pos || depth + 1 > DEPTH_MAX) {
                return -1;
            }
            size_t each = kind == K_MAP ? sizeof(msgpack_object_kv) : sizeof(msgpack_object);
            zone += (size_t)n * each + ZONE_SLACK;
            left[++depth] = items;
        } else {
            if (n > len - pos) {
                return -1;
            }
            pos += (size_t)n;
        }
    }
}

/* Field readers: TETHER_OK, or the error the field earns. */

static int get_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) {
        return TETHER_EFRAME_FIELD;
    }
    *v = o->via.u64;
    return TETHER_OK;
}

static int get_u32(const msgpack_object *o, uint32_t min, uint32_t *v)
{
    uint64_t x;
    if (get_uint(o, UINT32_MAX, &x) != TETHER_OK || x < min) {
        return TETHER_EFRAME_FIELD;
    }
    *v = (uint32_t)x;
    return TETHER_OK;
}

static int get_seq(const msgpack_object *o, uint64_t *v)
{
    if (get_uint(o, UINT64_MAX, v) != TETHER_OK) {
        return TETHER_EFRAME_FIELD;
    }
    return *v == 0 ? TETHER_EFRAME_SEQ0 : TETHER_OK;
}

static int get_bool(const msgpack_object *o, int *v)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN) {
        return TETHER_EFRAME_FIELD;
    }
    *v = o->via.boolean ? 1 : 0;
    return TETHER_OK;
}

static int get_fixed_bin(const msgpack_object *o, uint8_t *out, size_t n)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n) {
        return TETHER_EFRAME_FIELD;
    }
    memcpy(out, o->via.bin.ptr, n);
    return TETHER_OK;
}

/* Where an n-byte str/bin's slice points. For an empty one msgpack-c leaves
 * NULL or a stale pointer; decoded empty slices point at the input's first
 * byte instead, so they are never NULL (memcpy(dst, s.data, 0) is defined). */
static const uint8_t *at(const char *p, uint32_t n, const uint8_t *input)
{
    return n > 0 ? (const uint8_t *)p : input;
}

static int get_reason(const msgpack_object *o, const uint8_t *input, tether__slice *s)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > TETHER__REASON_MAX ||
        !utf8_ok((const uint8_t *)o->via.str.ptr, o->via.str.size)) {
        return TETHER_EFRAME_FIELD;
    }
    s->data = at(o->via.str.ptr, o->via.str.size, input);
    s->len = o->via.str.size;
    return TETHER_OK;
}

/* Runs one reader and returns its error from the calling function. */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != TETHER_OK) {                                                                    \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int read_hello(const msgpack_object *e, tether__hello *h)
{
    TRY(get_u32(&e[1], 1, &h->version));
    TRY(get_fixed_bin(&e[2], h->session_id, TETHER__ID_LEN));
    TRY(get_fixed_bin(&e[3], h->token, TETHER__TOKEN_LEN));
    TRY(get_bool(&e[4], &h->resume));
    TRY(get_uint(&e[5], UINT64_MAX, &h->recv_cursor));
    TRY(get_uint(&e[6], UINT64_MAX, &h->out_last));
    TRY(get_u32(&e[7], 1, &h->max_message));
    TRY(get_u32(&e[8], 1, &h->window));
    return TETHER_OK;
}

static int read_welcome(const msgpack_object *e, tether__welcome *w)
{
    TRY(get_fixed_bin(&e[1], w->session_id, TETHER__ID_LEN));
    TRY(get_bool(&e[2], &w->resumed));
    TRY(get_uint(&e[3], UINT64_MAX, &w->recv_cursor));
    TRY(get_uint(&e[4], UINT64_MAX, &w->out_last));
    TRY(get_u32(&e[5], 1, &w->max_message));
    TRY(get_u32(&e[6], 1, &w->window));
    return TETHER_OK;
}

static int read_close(const msgpack_object *e, const uint8_t *input, tether__close *c)
{
    TRY(get_u32(&e[1], 0, &c->code));
    TRY(get_reason(&e[2], input, &c->reason));
    return TETHER_OK;
}

/* Makes room for n payload slices. */
static int grow_items(tether__decoder *d, size_t n)
{
    if (n <= d->items_cap) {
        return TETHER_OK;
    }
    size_t cap = d->items_cap ? d->items_cap : 16;
    while (cap < n) {
        cap *= 2;
    }
    tether__slice *p = tether__realloc(d->items, cap * sizeof *p);
    if (p == NULL) {
        return TETHER_ENOMEM;
    }
    d->items = p;
    d->items_cap = cap;
    return TETHER_OK;
}

static int read_data(tether__decoder *d, const msgpack_object *e, const uint8_t *input,
                     tether__data *data)
{
    uint64_t flags;
    TRY(get_seq(&e[1], &data->first_seq));
    TRY(get_uint(&e[2], UINT32_MAX, &flags));
    if (flags & ~(uint64_t)TETHER__DATA_FLAGS_KNOWN) {
        return TETHER_EFRAME_FIELD;
    }
    data->flags = (uint32_t)flags;
    if (e[3].type != MSGPACK_OBJECT_ARRAY || e[3].via.array.size == 0) {
        return TETHER_EFRAME_FIELD;
    }
    size_t count = e[3].via.array.size;
    if (count > TETHER__RUN_MAX) {
        return TETHER_EFRAME_OVERSIZE;
    }
    TRY(grow_items(d, count));
    const msgpack_object *item = e[3].via.array.ptr;
    for (size_t i = 0; i < count; i++) {
        if (item[i].type != MSGPACK_OBJECT_BIN) {
            return TETHER_EFRAME_FIELD;
        }
        if (item[i].via.bin.size > d->max_payload) {
            return TETHER_EFRAME_OVERSIZE;
        }
        d->items[i].data = at(item[i].via.bin.ptr, item[i].via.bin.size, input);
        d->items[i].len = item[i].via.bin.size;
    }
    if (data->first_seq - 1 > UINT64_MAX - count) {
        return TETHER_EFRAME_FIELD; /* the run's last seq would pass 2^64-1 */
    }
    data->count = count;
    data->payloads = d->items;
    return TETHER_OK;
}

static int read_frame(tether__decoder *d, const msgpack_object *top, const uint8_t *input,
                      tether__frame *f)
{
    if (top->via.array.size == 0) {
        return TETHER_EFRAME_TYPE;
    }
    const msgpack_object *e = top->via.array.ptr;
    if (e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e[0].via.u64 < TETHER__F_HELLO ||
        e[0].via.u64 > TETHER__F_BYE) {
        return TETHER_EFRAME_TYPE;
    }
    int type = (int)e[0].via.u64;
    if (top->via.array.size != arity[type]) {
        return TETHER_EFRAME_ARITY;
    }
    memset(f, 0, sizeof *f);
    f->type = type;
    switch (type) {
    case TETHER__F_HELLO:
        return read_hello(e, &f->u.hello);
    case TETHER__F_WELCOME:
        return read_welcome(e, &f->u.welcome);
    case TETHER__F_REJECT:
    case TETHER__F_BYE:
        return read_close(e, input, &f->u.close);
    case TETHER__F_DATA:
        return read_data(d, e, input, &f->u.data);
    default:
        return get_seq(&e[1], &f->u.ack);
    }
}

/* After a good frame that overflowed the zone's chunk, swaps in a zone whose
 * chunk holds such a frame, so the next one allocates nothing. Only accepted
 * frames grow the zone, so the chunk stays below what the largest legal run
 * needs. Failure to grow is harmless: the next frame allocates as before. */
static void fit_zone(tether__decoder *d, size_t need)
{
    msgpack_zone *z = &d->zone->z;
    if (need <= z->chunk_size) {
        return;
    }
    size_t size = z->chunk_size;
    while (size < need) {
        size *= 2;
    }
    msgpack_zone bigger;
    if (msgpack_zone_init(&bigger, size)) {
        msgpack_zone_swap(z, &bigger);
        msgpack_zone_destroy(&bigger);
    }
}

int tether__decode(tether__decoder *d, const uint8_t *buf, size_t len, tether__frame *f)
{
    size_t end, need;
    if (d == NULL || f == NULL || d->max_payload == 0) {
        return TETHER_EINVAL;
    }
    if (len == 0 || !(buf[0] == 0xdc || buf[0] == 0xdd || (buf[0] & 0xf0) == 0x90)) {
        return TETHER_EMALFORMED; /* empty, or the top level is not an array */
    }
    if (scan(buf, len, &end, &need) != 0) {
        return TETHER_EMALFORMED;
    }
    if (end != len) {
        return TETHER_EFRAME_TRAILING;
    }
    msgpack_object top;
    size_t off = 0;
    int rc;
    switch (msgpack_unpack((const char *)buf, len, &off, &d->zone->z, &top)) {
    case MSGPACK_UNPACK_SUCCESS:
        rc = read_frame(d, &top, buf, f);
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        rc = TETHER_ENOMEM;
        break;
    default:
        rc = TETHER_EMALFORMED; /* unreachable after scan(); kept as a guard */
        break;
    }
    msgpack_zone_clear(&d->zone->z);
    if (rc == TETHER_OK) {
        fit_zone(d, need);
    }
    return rc;
}

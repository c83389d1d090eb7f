/*
 * Wire codec for tether.v1 frames (proto/PROTOCOL.md): one msgpack array per
 * WebSocket binary message, first element the frame type.
 *
 * Decoding is strict and never trusts a length. Decoded strings and payloads
 * point into the input buffer (borrowed); the decoder reuses its working
 * memory and its payload array, so decoding allocates nothing per frame once
 * warm. The MessagePack library is frame.c's business alone: nothing here
 * names it, so no other layer depends on it.
 */
#ifndef TETHER_FRAME_H
#define TETHER_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TETHER__PROTO_VERSION 1u
#define TETHER__ID_LEN 16
#define TETHER__TOKEN_LEN 32
#define TETHER__REASON_MAX 256     /* longest REJECT/BYE reason, bytes */
#define TETHER__RUN_MAX 65536      /* most payloads in one DATA frame */
#define TETHER__DATA_FLAG_REDELIVERED 1u
#define TETHER__DATA_FLAGS_KNOWN 1u

enum tether__frame_type {
    TETHER__F_HELLO = 1,
    TETHER__F_WELCOME = 2,
    TETHER__F_REJECT = 3,
    TETHER__F_DATA = 4,
    TETHER__F_ACK = 5,
    TETHER__F_BYE = 6,
};

typedef struct tether__slice {
    const uint8_t *data; /* borrowed from the input buffer */
    size_t len;          /* bytes at data */
} tether__slice;

typedef struct tether__hello {
    uint32_t version;                  /* protocol version, TETHER__PROTO_VERSION */
    uint8_t session_id[TETHER__ID_LEN]; /* the client's session id */
    uint8_t token[TETHER__TOKEN_LEN];  /* the resume token (secret) */
    int resume;                        /* 1: the client was welcomed under this id before */
    uint64_t recv_cursor;              /* highest server seq the client committed */
    uint64_t out_last;                 /* highest seq the client ever assigned */
    uint32_t max_message;              /* largest message the client accepts, bytes (>0) */
    uint32_t window;                   /* unacked messages the client keeps in flight (>0) */
} tether__hello;

typedef struct tether__welcome {
    uint8_t session_id[TETHER__ID_LEN]; /* echoes the HELLO's id */
    int resumed;                       /* 1: the server knew the session */
    uint64_t recv_cursor;              /* highest client seq the server committed */
    uint64_t out_last;                 /* highest seq the server ever assigned in this session */
    uint32_t max_message;              /* largest message the server accepts, bytes (>0) */
    uint32_t window;                   /* unacked messages the server keeps in flight (>0) */
} tether__welcome;

typedef struct tether__close {
    uint32_t code;        /* tether_reject_code */
    tether__slice reason; /* UTF-8 text, at most TETHER__REASON_MAX bytes, borrowed */
} tether__close;           /* REJECT and BYE */

typedef struct tether__data {
    uint64_t first_seq;      /* seq of payloads[0]; the rest follow consecutively (>0) */
    uint32_t flags;          /* TETHER__DATA_FLAG_* */
    size_t count;            /* payloads in the run, 1..TETHER__RUN_MAX */
    const tether__slice *payloads; /* count payloads, owned by the decoder, borrowed */
} tether__data;

typedef struct tether__frame {
    int type; /* enum tether__frame_type */
    union {
        tether__hello hello;
        tether__welcome welcome;
        tether__close close; /* REJECT, BYE */
        tether__data data;
        uint64_t ack; /* ACK: cumulative seq (>0) */
    } u;
} tether__frame;

/* A growable output buffer. Frames are written after `pre` bytes of headroom
 * (LWS_PRE for libwebsockets), so data + pre is where the frame starts. */
typedef struct tether__buf {
    uint8_t *data; /* allocation, cap bytes */
    size_t pre;    /* headroom kept before the frame */
    size_t len;    /* bytes of frame written after the headroom */
    size_t cap;    /* bytes allocated */
    int oom;       /* set when a write could not grow the buffer */
    size_t run_left; /* DATA payloads still owed after tether__encode_data_begin */
    int run_err;     /* 0 while a valid DATA run is open, else TETHER_EINVAL */
} tether__buf;

void tether__buf_init(tether__buf *b, size_t pre);
void tether__buf_reset(tether__buf *b); /* len = 0, oom = 0; keeps the allocation */
void tether__buf_free(tether__buf *b);
static inline uint8_t *tether__buf_frame(tether__buf *b)
{
    return b->data + b->pre;
}

/* Encoders: reset b, then write one whole frame. Return TETHER_OK or TETHER_ENOMEM.
 * A REJECT/BYE reason (NULL for none) is cut at a character boundary to at most
 * TETHER__REASON_MAX bytes, and bytes that are not UTF-8 become '?'. */
int tether__encode_hello(tether__buf *b, const tether__hello *h);
int tether__encode_welcome(tether__buf *b, const tether__welcome *w);
int tether__encode_reject(tether__buf *b, uint32_t code, const char *reason);
int tether__encode_bye(tether__buf *b, uint32_t code, const char *reason);
int tether__encode_ack(tether__buf *b, uint64_t seq);

/* DATA is written in pieces: begin with the run's length, then exactly count
 * payloads, then end (which returns TETHER_ENOMEM if any piece failed and
 * TETHER_EINVAL if the number of payloads differs from count). begin also
 * returns TETHER_EINVAL for first_seq 0, count 0 or > TETHER__RUN_MAX, or a run
 * past 2^64-1; payload for one too many or len > UINT32_MAX; either error
 * makes end return TETHER_EINVAL too. */
int tether__encode_data_begin(tether__buf *b, uint64_t first_seq, uint32_t flags, size_t count);
int tether__encode_data_payload(tether__buf *b, const void *p, size_t len);
int tether__encode_data_end(tether__buf *b);

/* Bytes a DATA frame adds around its payloads, at most (for sizing runs). */
#define TETHER__DATA_OVERHEAD 24
#define TETHER__PAYLOAD_OVERHEAD 5

/* The decoder's MessagePack working memory, defined in frame.c. */
typedef struct tether__mpzone tether__mpzone;

typedef struct tether__decoder {
    tether__mpzone *zone;   /* allocated by init, reused for every frame */
    tether__slice *items;   /* payload slices for DATA, grown on demand */
    size_t items_cap;       /* slots in items */
    uint32_t max_payload;   /* largest payload accepted, bytes */
} tether__decoder;

/* max_payload: the largest single payload accepted (TETHER_EFRAME_OVERSIZE beyond).
 * Allocates the working memory. Returns TETHER_OK, TETHER_EINVAL (max_payload 0)
 * or TETHER_ENOMEM; after a failure d holds nothing and free() is a no-op. */
int tether__decoder_init(tether__decoder *d, uint32_t max_payload);
void tether__decoder_free(tether__decoder *d);

/* Bytes in one chunk of the decoder's working memory (0 before a successful
 * init): what a warm decoder keeps between frames. For tests. */
size_t tether__decoder_chunk(const tether__decoder *d);

/*
 * Decodes exactly one frame from buf[0..len). On success fills *f, whose
 * slices point into buf and into the decoder; valid until the next call.
 * An empty payload or reason points at buf[0], never NULL. The order in which
 * errors are found is proto/PROTOCOL.md section 4.1. TETHER_EINVAL for a NULL
 * f, or a decoder that is NULL or whose init failed.
 * Returns TETHER_OK, TETHER_EMALFORMED, TETHER_EFRAME_TYPE, TETHER_EFRAME_ARITY,
 * TETHER_EFRAME_FIELD, TETHER_EFRAME_SEQ0, TETHER_EFRAME_TRAILING,
 * TETHER_EFRAME_OVERSIZE, TETHER_ENOMEM.
 */
int tether__decode(tether__decoder *d, const uint8_t *buf, size_t len, tether__frame *f);

#endif

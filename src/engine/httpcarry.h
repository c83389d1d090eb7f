/*
 * The HTTP carriage of tether.v1 (proto/HTTP.md), sans I/O: the bodies that
 * carry frames, connection ids, the carriage's request headers and URLs.
 *
 * A body is a sequence of records; a record is a 4-byte big-endian length
 * followed by that many bytes, one tether.v1 frame exactly as it would be one
 * WebSocket binary message. Each kind of body (who sends it, in which request
 * or answer) has its own bounds on the number of frames; all share the byte
 * limits derived from the receiver's max_message. A receiver checks a body's
 * structure (HTTP.md section 3.3, in that order) before it acts on any frame;
 * the frames are then decoded one by one with the frame codec (frame.h).
 *
 * Nothing here touches a socket or a clock: the server and client adapters
 * feed bytes in and take bodies out. Every limit is checked before memory is
 * reserved for what a length claims.
 */
#ifndef TETHER_HTTPCARRY_H
#define TETHER_HTTPCARRY_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define TETHER__HC_CONTENT_TYPE "application/vnd.tether.v1+frames"
#define TETHER__HC_MARKER "/.tether/v1/" /* path segments before the operation */
/* the request headers a preflight allows (HTTP.md section 12), before the configured ones */
#define TETHER__HC_CORS_HEADERS "Content-Type, Tether-Connection, Tether-First, Tether-Received, Tether-Hold"
#define TETHER__HC_CORS_MAX 1536 /* the preflight's extra header lines, bytes: room for 16 names of 64 */
#define TETHER__HC_ID_CHARS 32           /* characters of a connection id */
#define TETHER__HC_ID_BYTES 24           /* random bytes behind one (192 bits) */
#define TETHER__HC_MAX_FRAMES 4096u      /* most frames in a send, poll or stream body */
#define TETHER__HC_OPEN_RECORD_MAX 1024u /* the first-message rule (PROTOCOL.md section 4) */
#define TETHER__HC_RECORD_FLOOR 1024u    /* a record may always be this long */
#define TETHER__HC_BODY_FLOOR 65536u     /* a body may always be this long */
#define TETHER__HC_PREFIX 4u             /* bytes of a record's length prefix */

/* Which body: who sends it and in which message (HTTP.md section 3.2). */
typedef enum tether__hc_kind {
    TETHER__HC_OPEN = 1,   /* open request: exactly one record, the HELLO, <= 1024 bytes */
    TETHER__HC_ANSWER = 2, /* open answer (200): one or two frames */
    TETHER__HC_SEND = 3,   /* send request: 1..4096 frames */
    TETHER__HC_POLL = 4,   /* poll answer (200): 1..4096 frames */
    TETHER__HC_STREAM = 5, /* stream answer: the probe (an empty record), then 0..4096 frames */
} tether__hc_kind;

/* Why a body's structure is wrong (HTTP.md section 3.3); TETHER__HC_FRAME when
 * the structure is right but a frame in it fails the frame codec. */
typedef enum tether__hc_why {
    TETHER__HC_VALID = 0,
    TETHER__HC_PREFIX_TRUNCATED, /* the body ends inside a length prefix */
    TETHER__HC_RECORD_TRUNCATED, /* the body ends before a record's last byte */
    TETHER__HC_RECORD_EMPTY,     /* a zero-length record where a frame must be */
    TETHER__HC_NO_PROBE,         /* a stream answer that does not begin with the probe */
    TETHER__HC_RECORD_TOO_LARGE, /* a record longer than the kind allows */
    TETHER__HC_BODY_TOO_LARGE,   /* the records reach past the body limit */
    TETHER__HC_TOO_MANY,         /* more than TETHER__HC_MAX_FRAMES frames */
    TETHER__HC_COUNT,            /* fewer or more frames than the kind allows, otherwise */
    TETHER__HC_FRAME,            /* a frame inside fails to decode (PROTOCOL.md 4.1) */
} tether__hc_why;

/* The name the vectors and HTTP.md use ("BODY_RECORD_TRUNCATED"), and the HTTP
 * status a server answers a request body with (400 or 413; 0 for VALID and
 * FRAME, which are not carriage errors). Never NULL. */
const char *tether__hc_why_name(int why);
int tether__hc_why_status(int why);

/* The limits of one kind of body whose receiver advertised max_message
 * (0 is taken as 1). record_max and body_max are in bytes. */
typedef struct tether__hc_limits {
    int kind;            /* tether__hc_kind */
    uint64_t record_max; /* longest record (frame) */
    uint64_t body_max;   /* longest body, prefixes included */
    uint32_t min_frames; /* fewest frames (the probe is not a frame) */
    uint32_t max_frames; /* most frames */
} tether__hc_limits;

/* Fills *lim. TETHER_OK, or TETHER_EINVAL for an unknown kind or NULL lim. */
int tether__hc_limits_for(tether__hc_limits *lim, int kind, uint32_t max_message);

/* ------------------------------------------------------------------------ */
/* Whole bodies                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Checks a whole body's structure (no frame is decoded; nothing is allocated).
 * On success *frames is the number of frames (the stream's probe excluded).
 * Returns TETHER_OK, TETHER_EMALFORMED or TETHER_EFRAME_OVERSIZE (with *why
 * set: TOO_LARGE, RECORD_TOO_LARGE and TOO_MANY are OVERSIZE), or TETHER_EINVAL
 * for a NULL limit or a NULL body with len > 0. why and frames may be NULL.
 */
int tether__hc_check(const tether__hc_limits *lim, const uint8_t *body, size_t len, int *why,
                     size_t *frames);

/* Walks the frames of a body that passed tether__hc_check: start with *pos = 0;
 * each call returns 1 and sets *frame (pointing into body) or 0 at the end.
 * The probe of a stream is skipped. */
int tether__hc_next(const uint8_t *body, size_t len, size_t *pos, tether__slice *frame);

/*
 * Checks the structure, then decodes every frame with d in order (d's
 * max_payload should be the receiver's max_message). On a frame error *why is
 * TETHER__HC_FRAME, *bad is that frame's index (1 = the first) and the frame
 * codec's error is returned. On success *frames is the count. why, bad and
 * frames may be NULL. Frames decoded here are not kept: this is for a
 * receiver that wants a body judged whole before it acts on it.
 */
int tether__hc_verify(const tether__hc_limits *lim, tether__decoder *d, const uint8_t *body,
                      size_t len, int *why, size_t *bad, size_t *frames);

/*
 * Writing a body into b (after its headroom; b is not reset, so records
 * accumulate). append adds one frame as one record: TETHER_OK, TETHER_ENOMEM
 * (b unchanged), or TETHER_EINVAL for len 0, len > UINT32_MAX or a NULL frame.
 * append_probe adds the stream's empty record. A writer checks room first:
 * tether__hc_room says whether one more frame of frame_len bytes keeps a body
 * of body_len bytes holding frames frames within lim (1: yes).
 */
int tether__hc_append(tether__buf *b, const uint8_t *frame, size_t len);
int tether__hc_append_probe(tether__buf *b);
int tether__hc_room(const tether__hc_limits *lim, size_t body_len, size_t frames,
                    size_t frame_len);

/* ------------------------------------------------------------------------ */
/* Bodies that arrive in pieces                                              */
/* ------------------------------------------------------------------------ */

/* An incremental reader of one body: a stream answer as its chunks arrive, or
 * any body read from a socket. It reports the same errors, in the same order,
 * as tether__hc_check on the bytes read so far (the count and truncation checks
 * wait for tether__hc_reader_end). */
typedef struct tether__hc_reader {
    tether__hc_limits lim;   /* the body's limits */
    uint8_t prefix[4];       /* length prefix being read */
    size_t prefix_have;      /* bytes of prefix read */
    int in_record;           /* 1 while a record's bytes are being read */
    uint8_t *rec;            /* the record being assembled */
    size_t rec_len;          /* its length, from the prefix */
    size_t rec_have;         /* bytes of it read */
    size_t rec_cap;          /* bytes allocated at rec */
    uint64_t consumed;       /* body bytes read so far */
    uint64_t records;        /* records begun, the probe included */
    size_t frames;           /* frames completed */
    int why;                 /* tether__hc_why of the first error; sticks */
    void *(*realloc_fn)(void *, size_t); /* realloc, or a test's allocator */
} tether__hc_reader;

/* TETHER_OK or TETHER_EINVAL (as tether__hc_limits_for). */
int tether__hc_reader_init(tether__hc_reader *r, int kind, uint32_t max_message);
void tether__hc_reader_free(tether__hc_reader *r); /* NULL does nothing */

/*
 * Reads from in[0..len): stops after the first frame that completes. *used is
 * the bytes taken; *frame is set, pointing into the reader (valid until the
 * next call), and TETHER_OK returned with frame->data != NULL when a frame
 * completed; frame->data is NULL when all of in was taken without completing
 * one. Errors: TETHER_EMALFORMED or TETHER_EFRAME_OVERSIZE (r->why says which
 * rule; every later call returns the same), TETHER_ENOMEM (the record could
 * not be allocated; the reader is then failed with why VALID), TETHER_EINVAL.
 */
int tether__hc_reader_feed(tether__hc_reader *r, const uint8_t *in, size_t len, size_t *used,
                           tether__slice *frame);

/* The body ended: TETHER_OK, or the error (PREFIX/RECORD_TRUNCATED, NO_PROBE,
 * COUNT) with r->why set. */
int tether__hc_reader_end(tether__hc_reader *r);

/* ------------------------------------------------------------------------ */
/* Connection ids, headers, URLs                                             */
/* ------------------------------------------------------------------------ */

/* A connection id from 24 bytes: 32 characters of the base64url alphabet
 * (A-Z a-z 0-9 - _, no padding) and a NUL into out[33]. */
void tether__hc_id_from_bytes(const uint8_t raw[TETHER__HC_ID_BYTES],
                              char out[TETHER__HC_ID_CHARS + 1]);
/* A new id from the system's secure random source. TETHER_OK or TETHER_ESYS. */
int tether__hc_id_new(char out[TETHER__HC_ID_CHARS + 1]);
/* 1 when s[0..len) is a well-formed id (exactly 32 characters of the
 * alphabet; 32 characters hold exactly 24 bytes, so none is special), else 0. */
int tether__hc_id_valid(const char *s, size_t len);

/* 1 when a Content-Type value names the carriage's type: the media type,
 * compared without case after trimming spaces and tabs, equals
 * TETHER__HC_CONTENT_TYPE; parameters after ';' are ignored. NULL gives 0. */
int tether__hc_content_type_ok(const char *value);

/* Parses a Tether-First, Tether-Received or Tether-Hold value: 1 to 20 decimal digits, no
 * sign, no leading zero (except "0"), surrounding spaces and tabs allowed,
 * at most 2^64-1. TETHER_OK or TETHER_EINVAL. */
int tether__hc_parse_count(const char *value, uint64_t *out);

/* The carriage's operations (HTTP.md section 2). */
typedef enum tether__hc_op {
    TETHER__HC_OP_OPEN = 1,   /* POST .../.tether/v1/open */
    TETHER__HC_OP_SEND = 2,   /* POST .../.tether/v1/send */
    TETHER__HC_OP_POLL = 3,   /* GET  .../.tether/v1/poll */
    TETHER__HC_OP_STREAM = 4, /* GET  .../.tether/v1/stream */
} tether__hc_op;

/* "open", "send", "poll", "stream"; NULL for anything else. */
const char *tether__hc_op_name(int op);

/* Client: the URL of op for a ws:// or wss:// url (HTTP.md section 2.1) into
 * out[len]. TETHER_OK, TETHER_EINVAL (not a ws/wss url, a fragment, bad op) or
 * TETHER_ENOMEM (out too small; out is then ""). */
int tether__hc_url(const char *ws_url, int op, char *out, size_t len);

/* Server: classifies a request target (path and query, as on the request line;
 * HTTP.md section 2.3). Returns the op; -1 when the path ends in the marker and
 * a last segment that is no operation (answer 404); 0 when it is not a
 * carriage path. For an op, the application path (the path without the marker
 * and the name, "/" when that leaves nothing, then the query) goes into
 * app[app_len] when app is not NULL (cut short if app is too small; "" for
 * anything but an op). */
int tether__hc_route(const char *target, char *app, size_t app_len);

/* The method an op must use: "POST" or "GET". */
const char *tether__hc_op_method(int op);

#endif

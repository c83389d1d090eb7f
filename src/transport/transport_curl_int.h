/*
 * Internals of the client's HTTP carriage, shared by transport_curl.c (the
 * multi handle on the libuv loop, one request) and transport_curl_conn.c
 * (one carriage connection: open, sends, polls, its end).
 */
#ifndef TETHER_TRANSPORT_CURL_INT_H
#define TETHER_TRANSPORT_CURL_INT_H

#include "transport_lws_int.h"

#include <stdarg.h>

#include <curl/curl.h>

#include "common/alloc.h"
#include "common/defaults.h"
#include "engine/httpcarry.h"

#define CC_HOLD_MAX_S 25u         /* the longest hold a poll may ask for (HTTP.md section 13) */
#define CC_SEND_TIMEOUT_MS 15000u /* a send not answered within this is sent again */
#define CC_SEND_GIVEUP_MS 40000u  /* the server's idle bound: a send failing this long ends it */
#define CC_CLOSE_FLUSH_MS 3000u   /* closing: longest wait for the last frames (BYE) to go */
#define CC_RETRY_MIN_MS 100u      /* first retry delay of a failed send or poll */
#define CC_RETRY_MAX_MS 4000u     /* longest retry delay */
#define CC_QUEUE_MAX (4u << 20)   /* busy() above this many queued bytes */

/*
 * The carriage's liveness follows the client's (docs/decisions.md): each poll
 * asks the server to hold it at most ping_interval (whole seconds, 1..25 s,
 * the Tether-Hold header), and the connection is dead (TETHER_EPING) when no
 * downstream answer came for that hold + pong_timeout: 20 + 10 = 30 s with
 * the defaults, 1 + 1 = 2 s with the smallest settings.
 */
static inline uint32_t cc_hold_s(const tether__tp_cfg *cfg)
{
    uint32_t ping = cfg->ping_interval_ms ? cfg->ping_interval_ms : TETHER__DEFAULT_PING_INTERVAL_MS;
    uint32_t s = ping / 1000u;
    return s < 1u ? 1u : s > CC_HOLD_MAX_S ? CC_HOLD_MAX_S : s;
}

/* No downstream answer for this long: the connection is dead, ms. */
static inline uint32_t cc_dead_ms(const tether__tp_cfg *cfg)
{
    uint32_t pong = cfg->pong_timeout_ms ? cfg->pong_timeout_ms : TETHER__DEFAULT_PONG_TIMEOUT_MS;
    return cc_hold_s(cfg) * 1000u + pong;
}

typedef struct cc_req cc_req;

/* The carriage of one client transport: the multi handle and its timer. */
struct tether__curl {
    tether__tp *tp;   /* owner transport */
    uv_loop_t *loop;  /* its loop */
    CURLM *multi;     /* every request of every carriage connection */
    uv_timer_t timer; /* curl's timeout */
    tether__cc *cur;  /* the connection, or NULL */
    size_t reqs;      /* requests in the multi handle */
    int drop_pool;    /* the last connection died with the path: the next open starts
                         on an empty pool (tether__curl_drop_pool) */
};

/* One HTTP request. */
struct cc_req {
    tether__cc *cc;            /* its connection */
    CURL *easy;                /* the curl handle */
    int added;                 /* easy is in the multi handle */
    int op;                    /* TETHER__HC_OP_* */
    struct curl_slist *hdrs;   /* request headers */
    uint8_t *rx;               /* answer body */
    size_t rx_len, rx_cap;     /* bytes in rx, allocated */
    size_t rx_max;             /* longest body accepted */
    int rx_over;               /* the body was longer: aborted */
    char id[64];               /* Tether-Connection of the answer */
    char ctype[128];           /* Content-Type of the answer */
    char first[32];            /* Tether-First of the answer */
    char retry_after[64];      /* Retry-After of the answer */
    char err[CURL_ERROR_SIZE]; /* curl's words for a failure */
};

/* One carriage connection. */
struct tether__cc {
    tether__conn *c;                  /* the connection the core sees */
    tether__curl *cu;                 /* the carriage */
    char url[3][1100];                /* open, send and poll urls */
    char id[TETHER__HC_ID_CHARS + 1]; /* connection id, "" before the open answer */
    int phase;                        /* CC_* */
    cc_req *open, *send, *poll;       /* requests in flight */
    uint8_t *q;                       /* frames written, not yet in a send: records */
    size_t q_len, q_cap, q_frames;    /* its bytes, allocation, frames */
    uint8_t *fl;                      /* the send body in flight (kept for retries) */
    size_t fl_len, fl_frames;         /* its bytes and frames */
    uint64_t fl_first;                /* number of its first frame */
    uint64_t up_numbered;             /* upstream frames numbered so far */
    uint64_t received;                /* downstream frames received */
    uint32_t send_fails, poll_fails;  /* consecutive failures */
    uint64_t send_failing_since;      /* first failure of the current send, ms, 0: none */
    uint64_t send_at, poll_at;        /* retry no earlier than (ms) */
    uint64_t last_down_ms;            /* last downstream answer (or the open answer) */
    uint64_t close_by;                /* closing: end at this time at the latest */
    uint32_t max_rx;                  /* the client's max_message: limits of answers */
    int opened_cb;                    /* open() was reported */
    int want_write;                   /* the core asked for writable() */
    int closing;                      /* the core asked to close */
    int ended;                        /* closed() was reported */
    int handles;                      /* uv handles still open (freed at 0) */
    uv_timer_t kick;                  /* runs cc_run() */
    uv_timer_t ctimer;                /* the core's connection timer */
};

enum { CC_NEW, CC_OPENING, CC_OPEN, CC_OVER };

/* transport_curl.c: starts a request of op on cc's connection (body, NULL for
 * a GET, must outlive it; first: a send's Tether-First); NULL when out of
 * memory. req_free removes it from the multi handle and frees it (NULL: no-op). */
cc_req *tether__cc_req_start(tether__cc *cc, int op, const uint8_t *body, size_t len,
                             uint64_t first);
void tether__cc_req_free(tether__curl *cu, cc_req *r);
/* Closes every pooled connection (a new, empty multi handle); no request may be in it. */
void tether__curl_drop_pool(tether__curl *cu);
/* transport_curl_conn.c: handles the requests curl finished. */
void tether__cc_done(tether__curl *cu);
/* transport_curl_conn.c: ends a connection with this reason (once). */
void tether__cc_end(tether__cc *cc, int error, int http_status, int proxy_status,
                    uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif

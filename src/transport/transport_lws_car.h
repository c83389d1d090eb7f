/*
 * Internals of the server's HTTP carriage (proto/HTTP.md), shared by
 * transport_lws_hcconn.c (connection records: ids, the downstream queue,
 * timers, what the server core writes) and transport_lws_carriage.c (the HTTP
 * requests: open, send, poll, CORS, statuses). Service thread only.
 *
 * A carriage connection is a tether__conn to the server core like a
 * WebSocket one: the core sees open, the HELLO as its first message, every
 * later upstream frame as a message, and closed; what it writes is kept here
 * and carried in HTTP answers.
 */
#ifndef TETHER_TRANSPORT_LWS_CAR_H
#define TETHER_TRANSPORT_LWS_CAR_H

#include "transport_lws_int.h"
#include "common/timerwheel.h"
#include "engine/httpcarry.h"

#define HC_HOLD_DEFAULT_MS 25000u /* poll hold (HTTP.md section 13) */
#define HC_IDLE_DEFAULT_MS 40000u /* idle bound */
#define HC_TICK_MS 10u            /* granularity of the carriage's timer wheel */
#define HC_WHEEL_SLOTS 4096u      /* 41 s per turn */
#define HC_BUCKETS_MIN 64u        /* the id table starts here and doubles */

/* Where a carriage connection is in its life. */
enum {
    HC_OPENING = 1, /* the HELLO was handed to the core; the open answer is not decided */
    HC_OPEN,        /* its id was issued and is in the table */
    HC_OVER         /* forgotten: no id; freed once the core and every request let go */
};

/* A deadline of a connection on the carriage's wheel. */
typedef struct hc_timer {
    tether__tw_node node; /* on car->wheel */
    hc_conn *hc;          /* its connection */
    int hold;             /* 1: the held poll's bound; 0: the idle bound */
} hc_timer;

struct hc_conn {
    tether__conn conn;        /* what the server core sees (conn.hc points here) */
    tether__car *car;         /* the carriage */
    hc_conn *next_id;         /* hash chain in car->table */
    hc_conn *prev_all;        /* every record, for destroy */
    hc_conn *next_all;        /* every record, for destroy */
    hc_conn *next_kick;       /* deferred-work list */
    int kicked;               /* on the deferred-work list */
    int draining;             /* the core's writable calls are running */
    int phase;                /* HC_* */
    int in_table;             /* findable by id */
    char id[TETHER__HC_ID_CHARS + 1]; /* the connection id, "" until issued */
    hc_req *open;             /* the open request waiting for its answer, or NULL */
    hc_req *up;               /* the send being received, or NULL */
    hc_req *down;             /* the poll being held, or NULL */
    tether__buf ans;          /* the open answer's records */
    unsigned nans;            /* frames in ans */
    int ans_welcome;          /* ans begins with a WELCOME */
    uint8_t *q;               /* downstream records numbered confirmed+1 ..., concatenated */
    size_t qlen;              /* bytes at q */
    size_t qcap;              /* bytes allocated at q */
    uint32_t *qoff;           /* offset of each queued record in q */
    size_t nq;                /* records queued */
    size_t qoffcap;           /* slots at qoff */
    uint64_t confirmed;       /* largest Tether-Received seen */
    uint64_t sent;            /* last frame number written into an answer */
    uint64_t up_done;         /* last upstream frame number handled */
    tether__hc_limits down_lim; /* poll bodies (the client's max_message) */
    tether__hc_limits up_lim;   /* send bodies (the server's max_message) */
    int want;                 /* the core asked for a writable call */
    int close_req;            /* the core asked to close */
    int core_done;            /* closed() was reported to the core */
    int hello_given;          /* the HELLO was handed to the core */
    hc_timer t_idle;          /* the idle bound (section 9.2) */
    hc_timer t_hold;          /* the held poll's bound (section 7.1) */
};

struct hc_req {
    struct lws *wsi;          /* the HTTP connection */
    tp_pss *pss;              /* its per-session data (pss->req is this) */
    int op;                   /* tether__hc_op */
    hc_conn *hc;              /* its connection, or NULL */
    uint8_t *body;            /* the request body being read */
    size_t body_len;          /* bytes at body */
    size_t body_max;          /* Content-Length (bytes allocated at body) */
    uint64_t first;           /* send: Tether-First */
    int has_received;         /* Tether-Received was given */
    uint64_t received;        /* its value */
    uint32_t hold_ms;         /* poll: how long it may be held */
    char cors[600];           /* CORS header lines for the answer ("" for none) */
    uint8_t *resp;            /* the answer (after LWS_PRE), waiting for a writable call */
    size_t resp_len;          /* bytes of it */
    int close_after;          /* close the TCP connection after the answer */
    int stream;               /* a stream (HTTP.md 7.2): answered in chunks as frames come */
    int s_started;            /* its head and probe are written */
    int s_end;                /* end it at its next writable call */
    uint64_t s_next;          /* number of the next frame it writes */
    size_t s_bytes;           /* body bytes it wrote (records, the probe included) */
    size_t s_frames;          /* frames it wrote */
};

struct tether__car {
    tether__tp *tp;           /* the transport */
    hc_conn **table;          /* connections by id; nbuckets chains */
    size_t nbuckets;          /* a power of two */
    size_t count;             /* connections in the table */
    hc_conn *all;             /* every record */
    atomic_size_t live;       /* records in memory (read by tests from any thread) */
    hc_conn *kick_head;       /* records with deferred work */
    uv_timer_t kick;          /* runs the deferred work on the next loop turn */
    uv_timer_t tick;          /* drives the wheel while it holds deadlines */
    int ticking;              /* tick is armed */
    int handles;              /* uv handles not yet closed */
    tether__tw wheel;         /* idle and hold deadlines */
    tether__decoder dec;      /* reads HELLO and WELCOME limits */
    uint32_t hold_ms;         /* poll hold */
    uint32_t idle_ms;         /* idle bound */
};

/* transport_lws_hcconn.c */
hc_conn *tether__hc_new(tether__car *car);
hc_conn *tether__hc_find(tether__car *car, const char *id);
/* Reports closed() to the core once (error, detail). */
void tether__hc_report(hc_conn *hc, int error, const char *detail);
/* Ends the connection: closed() to the core, the id forgotten, a held poll
 * answered 204; the record goes once no request holds it. */
void tether__hc_end(hc_conn *hc, int error, const char *detail);
/* A request let go of hc (hc->open/up/down cleared by the caller): frees it
 * when nothing holds it, else re-arms the idle bound. */
void tether__hc_release(hc_conn *hc);
/* 1 when the downstream queue has room for one more frame of the largest size. */
int tether__hc_has_room(const hc_conn *hc);
/* Arms or disarms the idle bound after a request came or went. */
void tether__hc_idle_update(hc_conn *hc);
/* Confirms frames up to received: TETHER_OK, or TETHER_EINVAL when received > sent. */
int tether__hc_confirm(hc_conn *hc, uint64_t received);
/* Answers the held poll now if frames wait, else leaves it. */
void tether__hc_serve_down(hc_conn *hc);
void tether__hc_arm_hold(hc_conn *hc, uint32_t ms);
/* Schedules the deferred work of hc (the core's writes, its close). */
void tether__hc_kick(hc_conn *hc);

/* transport_lws_carriage.c */
/* How an answer's head is made (tether__car_compose's flags). */
#define HC_CHUNKED 1 /* no Content-Length: a stream's head */
#define HC_CLOSE 2   /* "Connection: close": the TCP connection closes after it */

/* The whole answer (head, then body) after LWS_PRE bytes of headroom, or NULL
 * when out of memory. flags: HC_*. */
uint8_t *tether__car_compose(struct lws *wsi, int status, const char *cors, const char *extra,
                             const uint8_t *body, size_t blen, const char *type, int flags,
                             size_t *out_len);
/* Queues an answer on req (sent from its writable callback). extra: header
 * lines "Name: value\r\n" or NULL; body NULL for none; type: its Content-Type. */
void tether__car_answer(hc_req *req, int status, const char *extra, const uint8_t *body,
                        size_t blen, const char *type, int close_after);
/* The open answer of hc (its frames; the id when it has one). */
void tether__car_answer_open(hc_conn *hc);
/* A poll answer: 200 with the queued frames, or 204 when nq is 0. */
void tether__car_answer_down(hc_conn *hc, hc_req *req);
/* Detaches req from its connection (clearing open/up/down) and frees it. */
void tether__car_req_free(hc_req *req);

/* transport_lws_hcstream.c: streams. start: req is hc's new downstream
 * request, head and probe go out at once. end: detaches a stream from its
 * connection and ends it at its next writable call. writable: the callback's
 * return value. */
void tether__car_stream_start(hc_conn *hc, hc_req *req);
void tether__car_stream_end(hc_req *req);
int tether__car_stream_writable(hc_req *req);

#endif

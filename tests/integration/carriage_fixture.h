/*
 * Shared by the HTTP carriage's wire tests: a client speaking the carriage by
 * hand over rawhttp.h (open, send, poll, frames decoded), and the server under
 * test with short carriage bounds.
 */
#ifndef TETHER_TEST_CARRIAGE_FIXTURE_H
#define TETHER_TEST_CARRIAGE_FIXTURE_H

#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"
#include "itest.h"
#include "rawhttp.h"
#include "rawws.h"
#include "engine/frame.h"
#include "engine/httpcarry.h"
#include "server/server_int.h"

#define HOLD_MS 300u  /* the servers' poll hold here */
#define IDLE_MS 400u  /* their idle bound */
#define WAIT_MS 5000u /* bound of every wait for something that must happen */
#define CT "Content-Type: application/vnd.tether.v1+frames\r\n"

/* One session's client side over the carriage. */
typedef struct hpeer {
    uint16_t port;           /* the server's */
    uint8_t sid[16];         /* session id */
    uint8_t token[32];       /* resume token */
    char id[64];             /* connection id of the open connection, "" when none */
    uint64_t up_next;        /* number of the next upstream frame */
    uint64_t received;       /* downstream frames received */
    uint64_t out_last;       /* highest seq sent */
    uint64_t cursor;         /* highest server seq received */
    const char *origin;      /* Origin header to send, or NULL */
    tether__decoder dec;     /* decodes answers */
    tether__buf fb;          /* one frame being encoded */
    tether__buf body;        /* a body being built */
    tether__frame f[8];      /* frames of the last answer (first 8) */
    uint8_t *fmem[8];        /* copies the frames' slices point into */
    size_t nf;               /* frames in the last answer (all, p->f holds the first 8) */
    uint32_t max_message;    /* the HELLO's limit, and the answers' [1 MiB] */
    unsigned gaps;           /* DATA frames that did not follow the cursor */
    rawhttp_resp r;          /* the last answer */
} hpeer;

/* Sets up p for the server on port; tag fills its session id and token. */
void hp_init(hpeer *p, uint16_t port, uint8_t tag);
void hp_clear_frames(hpeer *p);
void hp_free(hpeer *p);
/* extra, then p's Tether-Connection and Origin, as header lines into buf. */
const char *hp_headers(hpeer *p, char *buf, size_t len, const char *extra);
/* Decodes the frames of the last answer (a body of kind) into p->f: 0 or -1. */
int hp_frames(hpeer *p, int kind);
/* Encodes p's HELLO into p->fb. */
void hp_hello(hpeer *p, int resume);
/* Opens a connection: the answer's status (p->r, p->f, p->id), -1 when none came. */
int hp_open(hpeer *p, int resume);
/* Adds one DATA frame, seqs first..first+count-1 tagged with their seq, to p->body. */
void hp_add_data(hpeer *p, uint64_t first, size_t count);
/* POSTs p->body as frames numbered from first: the status. */
int hp_send_body(hpeer *p, uint64_t first, size_t frames);
/* Sends one DATA frame (or one ACK) as the next upstream frame: the status. */
int hp_send_data(hpeer *p, uint64_t first, size_t count);
int hp_send_ack(hpeer *p, uint64_t seq);
/* Polls reporting received (extra header lines or NULL): the status; frames in
 * p->f and p->received advanced on 200. */
int hp_poll_as(hpeer *p, uint64_t received, const char *extra_hdr);
int hp_poll(hpeer *p);
/* Polls until a frame of type comes (bounded): 1 if it did (its index in *at). */
int hp_poll_for(hpeer *p, int type, size_t *at);

/* A server with the short carriage bounds above, wired to its recorder. */
void car_srv_init(srv *v);
/* on_session_close calls so far; wait_until conditions on a srv. */
int srv_closes(srv *v);
int closed_once(void *arg);
int no_carriage_conn(void *arg);
int online_is_zero(void *arg);
/* A request on a fresh connection: its status (r filled), or -1. */
int req(uint16_t port, const char *method, const char *path, const char *headers,
        const void *body, size_t len, rawhttp_resp *r);

#endif

/*
 * The session engine without sockets, shared by the session_* suites: a client
 * and a server engine, each on its own memory store, joined by a scripted wire
 * that carries the frames one produces to the other. A disconnect drops what
 * is in flight. Time is a counter the tests advance.
 */
#ifndef TETHER_TEST_SESSION_FIXTURE_H
#define TETHER_TEST_SESSION_FIXTURE_H

#include "harness.h"

#include "engine/frame.h"
#include "engine/session.h"
#include "store/store.h"

extern uint64_t now; /* the fake clock, ms */

/* A store that wraps the memory store and can be told to fail. */

typedef struct fstore {
    tether__store base;    /* what the engine sees; first member */
    tether__store *inner;  /* the memory store doing the work */
    int fail_set_cursor;   /* error set_cursor returns, 0: pass through */
    int fail_ack;          /* error ack returns, 0: pass through */
    int fail_put;          /* error session_put returns, 0: pass through */
    size_t loads;          /* load calls */
} fstore;

#define PAY_MAX 48

typedef struct wframe {
    uint8_t *p; /* frame bytes */
    size_t len; /* their length */
} wframe;

typedef struct datalog {
    uint64_t first;  /* first seq of a DATA frame written */
    size_t count;    /* payloads in it */
    uint32_t flags;  /* its flags */
} datalog;

typedef struct side {
    const char *name;         /* "client" or "server" */
    int server;               /* 1 for the server side */
    int dir;                  /* payload direction tag of what this side sends */
    fstore *fs;               /* its store */
    tether__engine_cfg cfg;   /* its engine configuration */
    tether__engine *e;        /* its engine */
    int accepted;             /* server: HELLO handled on this connection */
    wframe *inbox;            /* frames in flight towards this side */
    size_t in_head, in_n, in_cap; /* inbox ring-less vector: first unread, used, allocated */

    uint64_t next_expect;     /* next seq on_message must bring */
    uint64_t got;             /* on_message calls */
    uint64_t order_err;       /* on_message calls out of order or repeated */
    uint64_t pay_err;         /* payloads with the wrong content */
    uint64_t redelivered;     /* on_message calls with the flag */
    uint8_t *flags;           /* redelivered flag per seq (1 + flag), when tracked */
    size_t flags_cap;         /* seqs tracked in flags */
    int manual_auto_ack;      /* manual mode: ack each message at once (random test) */
    uint64_t acked;           /* highest seq on_acked reported */
    uint64_t acked_err;       /* on_acked ranges that were not contiguous */
    int mismatch_n;           /* on_mismatch calls */
    tether_mismatch_info mi;  /* the last one */
    int mismatch_before_close; /* on_mismatch ran before the close event */
    int welcomed;             /* ev->welcomed seen */
    int resumed;              /* ev->resumed with it */
    int closes;               /* events with close */
    tether__engine_event ev;  /* the last of them */
    int self_err;             /* a negative next_frame return */

    size_t out_frames[8];     /* frames written, by type */
    uint64_t last_ack_out;    /* the last ACK written */
    uint32_t last_bye_out;    /* the code of the last BYE written, or UINT32_MAX */
    datalog *data;            /* every DATA frame written */
    size_t data_n, data_cap;  /* DATA frames logged / allocated */
    uint64_t window_err;      /* DATA frames that passed the window */
} side;

typedef struct world {
    side c;               /* the client */
    side s;               /* the server */
    tether__decoder spy;  /* decodes every frame for the counters */
    tether__buf buf;      /* next_frame's output */
} world;

fstore *fstore_open(tether__store_role role);

size_t mkpay(uint64_t seq, int dir, uint8_t *buf);

extern const uint8_t ID[16];

tether__engine_cfg base_cfg(tether__store_role role);

void engine_open(side *x, const tether__session_rec *rec);

/* The process restarts: a new engine from what the store holds. */
void side_restart(side *x);

void track_flags(side *x, size_t n);

void world_init(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc);

void world_free(world *w);

/* Hands one frame to a side, as its transport would. */
void feed(world *w, side *to, const uint8_t *p, size_t len);

/* Lets a side write at most max frames onto the wire. Returns frames written. */
size_t write_some(world *w, side *from, side *to, size_t max);

/* Delivers at most max frames waiting for a side. Returns frames delivered. */
size_t deliver_some(world *w, side *to, size_t max);

/* Runs the wire until neither side has anything to write or deliver. */
void pump(world *w);

/* Time passes: both engines are ticked. */
void advance(world *w, uint64_t ms);

/* Pumps, letting the ACK timers run, until nothing is left to do. */
void settle(world *w);

/* The connection drops: frames in flight are lost. */
void drop(world *w);

void conn(world *w);

/* Sends k messages from a side, each carrying its seq. */
int send_k(side *x, size_t k);

void send_n(side *x, size_t n);

/* Frames injected by a test. */
void inject_data(world *w, side *to, uint64_t first, size_t count, uint32_t flags, int dir);

void inject_ack(world *w, side *to, uint64_t seq);

void inject_close(world *w, side *to, int reject, uint32_t code, const char *reason);

/* A world whose session is live. */
void live_world(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc);

void live_default(world *w);

uint64_t committed(const side *x);

uint64_t stored_cursor(side *x);

#endif

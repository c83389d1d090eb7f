/*
 * Internals of the client object, shared by client.c (configuration and the
 * public API) and client_conn.c (the connection life on the service thread).
 *
 * Locking: c->lock guards every field below it in struct tether_client; the
 * service thread takes it in each transport callback and application threads
 * take it in each API call. The service thread's application callbacks run
 * after it released the lock (client_events.c). The lock stays recursive for
 * on_stored/on_store_failed only: they run with it held on the committing
 * thread and may call tether_client_send_async(), which can take it.
 */
#ifndef TETHER_CLIENT_INT_H
#define TETHER_CLIENT_INT_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tether/tether.h>

#include "engine/backoff.h"
#include "engine/fallback.h"
#include "common/backpressure.h"
#include "common/close_code.h"
#include "common/engine_cfg.h"
#include "common/link.h"
#include "transport/proxy.h"
#include "engine/session.h"
#include "store/store.h"
#include "transport/transport.h"
#include "common/defaults.h"
#include "common/util.h"
#include "common/stats.h"

#define CLIENT_QUEUE_BYTES (16u << 20)
#define TETHER__MAX_URLS 16 /* urls of one client at most (tether_client_config.urls) */
#define DESTROY_FLUSH_MS 1000u

/*
 * The send path (client_send.c). Every send stages its messages here with
 * their seqs assigned, under sq.mu only; whoever commits (a thread inside
 * tether_client_send(), the committer thread, flush or destroy) takes all
 * that waits and stores it in one transaction under c->lock. Lock order:
 * c->lock before sq.mu; nobody takes c->lock while holding sq.mu.
 */
/* A sender inside send()/send_batch() waiting for its batch's commit. */
typedef struct tether__sendw {
    int rc;         /* TETHER__SEND_PENDING until the commit ended, then its result */
    uint64_t first; /* the batch's first seq as stored */
} tether__sendw;

#define TETHER__SEND_PENDING 1

typedef struct tether__stage {
    uint8_t *buf;    /* payloads, back to back */
    size_t len;      /* bytes used in buf */
    size_t cap;      /* bytes allocated for buf */
    size_t *lens;    /* each message's length */
    tether__sendw **res; /* each message's waiting sender, NULL for asynchronous sends */
    uint8_t *head;   /* 1 where a batch (all or none) begins */
    size_t n;        /* messages staged */
    size_t mcap;     /* slots allocated in lens, res and head */
} tether__stage;

typedef struct tether__sendq {
    pthread_mutex_t mu;      /* guards every field below */
    pthread_cond_t done;     /* a commit ended, or room waiters left */
    pthread_cond_t kick;     /* wakes the committer thread */
    tether__stage cur;       /* messages waiting for a commit */
    tether__stage spare;     /* the other buffer, swapped in by the committer */
    uint64_t cur_first;      /* seq of cur's first message */
    uint64_t next_seq;       /* seq the next staged message gets */
    uint64_t cur_t0;         /* when cur's first message was staged, us (monotonic) */
    uint64_t handed;         /* messages ever staged (a ticket count, never lowered) */
    uint64_t finished;       /* messages whose commit ended, stored or failed (ticket count) */
    uint64_t inflight_n;     /* staged or being committed: messages */
    uint64_t inflight_b;     /* ... and their payload bytes */
    uint64_t pend_n;         /* stored unacked messages at the last look (never below the truth) */
    uint64_t pend_b;         /* ... and their bytes */
    int committing;          /* a commit is running (the committer role is taken) */
    int sync_waiting;        /* senders inside send() waiting for their result */
    int room_waiting;        /* senders inside send_wait() waiting for room */
    int closed;              /* destroy began: no new sends */
    int fail_err;            /* error of the last failed asynchronous commit not yet flushed */
    int ck_started;          /* the committer thread runs */
    int ck_stop;             /* the committer thread must end */
    int ck_idle;             /* the committer thread waits on kick */
    pthread_t ck;            /* the committer thread */
    tether_msg *mv;          /* the committer's scratch: one transaction's messages */
    size_t mv_cap;           /* slots allocated in mv */
    unsigned long commits;   /* commit transactions attempted (tests count them) */
} tether__sendq;

/*
 * Application events queued under c->lock and run after it is released
 * (client_events.c).
 */
enum tether__cev_kind {
    CEV_MESSAGE,  /* on_message */
    CEV_ACKED,    /* on_acked */
    CEV_STATE,    /* on_state */
    CEV_MISMATCH, /* on_mismatch */
    CEV_BP,       /* on_backpressure */
};

typedef struct tether__cev {
    int kind; /* enum tether__cev_kind */
    union {
        struct {
            uint64_t seq;        /* the message's seq */
            const uint8_t *data; /* its payload, borrowed from the frame being handled */
            size_t len;          /* payload bytes */
            int redelivered;     /* the server may have sent it before */
        } msg;                   /* CEV_MESSAGE */
        struct {
            uint64_t first, last; /* the acknowledged range */
        } acked;                  /* CEV_ACKED */
        struct {
            tether_state_info info; /* the report; its detail is at detail_off */
            size_t detail_off;      /* offset of the detail text in the buffer's s */
        } state;                    /* CEV_STATE */
        tether_mismatch_info mismatch; /* CEV_MISMATCH */
        tether_backpressure_info bp;   /* CEV_BP */
    } u;
} tether__cev;

/* One batch of queued events. */
typedef struct tether__cevbuf {
    tether__cev *v; /* events in order */
    size_t n;       /* events queued */
    size_t cap;     /* slots allocated in v */
    char *s;        /* the state events' detail texts, NUL-terminated, back to back */
    size_t slen;    /* bytes used in s */
    size_t scap;    /* bytes allocated for s */
} tether__cevbuf;

typedef struct tether__cevq {
    tether__cevbuf cur;   /* events being queued (c->lock) */
    tether__cevbuf spare; /* the other buffer: the batch being run, then reused */
    int busy;             /* a delivery is running on the service thread */
    size_t max;           /* tests: queue at most this many, then run in place [0: no limit] */
    unsigned long inline_runs; /* times the queue could not grow and ran in place */
} tether__cevq;

/*
 * Where the client's life stands between attempts (service thread's view).
 * During PH_ATTEMPT, c->conn is NULL until the upgrade succeeded; after it
 * the engine says the rest: waiting for WELCOME, live (tether__engine_live),
 * or closing and why (tether__engine_close_event, see common/link.h).
 */
enum phase {
    PH_IDLE,    /* not started */
    PH_WAITING, /* between attempts; the transport timer starts the next one */
    PH_ATTEMPT, /* an attempt or a connection is under way */
    PH_STOPPED, /* no further attempts */
};

struct tether_client {
    tether_client_config cfg;  /* copy of the configuration, defaults filled */
    char *url;                 /* the url in use: one of url_list */
    char **url_list;           /* owned copies of cfg.urls (or of cfg.url alone) */
    size_t nurls;              /* urls in url_list */
    size_t url_idx;            /* index of url in url_list */
    tether__fb fb_other[TETHER__MAX_URLS]; /* each url's carriage choice while another is used */
    uint8_t fb_seen[TETHER__MAX_URLS];     /* 1 once a url's choice was set up */
    char *db_path;             /* owned copy of cfg.db_path, or NULL */
    atomic_int svc_waiting;    /* the service thread waits for lock: senders let it go first */
    pthread_mutex_t lock;      /* recursive; guards everything below */
    pthread_cond_t cond;       /* signalled on acks and state changes */
    tether__store *store;      /* the outbox and session record */
    tether__engine_cfg ecfg;   /* engine configuration */
    tether__engine *engine;    /* the session engine */
    tether__backoff backoff;   /* reconnect delays */
    tether__tp *tp;            /* transport, once started */
    tether__conn *conn;        /* the current attempt or connection, or NULL */
    tether__buf out;           /* frame being written */
    enum phase phase;          /* connection life */
    int stopping;              /* destroy() asked the service thread to finish */
    uint64_t live_since;       /* when the current connection was welcomed */
    uint64_t welcome_deadline; /* WELCOME due by then; UINT64_MAX once welcomed */
    tether_state_info last;    /* the most recent state report */
    char last_detail[256];     /* its detail text */
    char *strs;                /* owned copies of the config's connectivity strings */
    const char **headers;      /* owned copy of cfg.headers (pointers into strs) */
    tether__proxy proxy;       /* the proxy in use (host "" for none) */
    int proxy_dirty;           /* proxy credentials changed: give them to the transport */
    int stopped_for_auth;      /* STOPPED by a proxy 407: new credentials restart */
    tether__bp bp;             /* back-pressure as last reported */
    tether__tp_cb tp_cb;       /* the transport callbacks: client_conn.c's, wake wrapped */
    atomic_int wake_pending;   /* a wake is on its way to the service thread */
    tether__sendq sq;          /* the send path; its own lock (see above) */
    tether__stats stats;       /* client_stats.c: counters behind tether_client_stats() */
    tether__cevq evq;          /* application events waiting for the lock's release */
    tether__fb fb;             /* which carriage next: WebSocket or HTTP (engine/fallback.h) */
    int conn_acked;            /* an ACK of our DATA arrived on the current connection */
    atomic_int transport_now;  /* tether_transport_mode in use, for tether_client_transport() */
    uint32_t verdict_seen;     /* fb.changes when the verdict was last loaded or stored */
    char verdict_err[200];     /* the last failure to read or store the verdict, "" if none */
    int verdict_restored;      /* the first attempt starts on HTTP by a remembered verdict */
    int probe_state;           /* the background WebSocket probe (client_probe.c): PROBE_* */
    tether__conn *probe;       /* its connection once upgraded, else NULL */
    tether__conn *probe_closing; /* a probe connection we closed, until its closed() */
    tether__conn *old_closing; /* the HTTP connection a won probe replaced, until its closed() */
    uint64_t probe_cursor;     /* the receive cursor its HELLO carried */
    tether__buf probe_out;     /* its HELLO being written */
};

static inline void lock(tether_client *c)
{
    pthread_mutex_lock(&c->lock);
}

static inline void unlock(tether_client *c)
{
    pthread_mutex_unlock(&c->lock);
}

/*
 * Lock fairness. A thread that sends in a loop takes the lock for a store
 * commit each time (an fsync under FULL) and takes it again at once; glibc
 * mutexes are not fair, so the service thread, which writes the messages out,
 * could wait for many commits in a row (measured: send-to-deliver p99 of
 * 50-100 ms at 20k msg/s with FULL). So the service thread waits for the lock
 * at most SVC_WAIT_US as usual; after that it raises svc_waiting and senders
 * hold back (yield) until it got the lock.
 */
#define SVC_WAIT_US 1000

/* The service thread takes the lock through this (transport callbacks). */
static inline void lock_svc(tether_client *c)
{
    if (pthread_mutex_trylock(&c->lock) == 0) {
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SVC_WAIT_US * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&c->lock, &until) == 0) {
        return;
    }
    atomic_store(&c->svc_waiting, 1);
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->svc_waiting, 0);
}

/* Application threads take the lock through this in the send path. */
static inline void lock_send(tether_client *c)
{
    for (int i = 0; i < 10000 && atomic_load(&c->svc_waiting); i++) {
        sched_yield();
    }
    pthread_mutex_lock(&c->lock);
}

/* client_events.c: queue an application event (c->lock held). */
void tether__client_ev_message_locked(tether_client *c, uint64_t seq, const uint8_t *data,
                                      size_t len, int redelivered);
void tether__client_ev_acked_locked(tether_client *c, uint64_t first, uint64_t last);
void tether__client_ev_state_locked(tether_client *c, const tether_state_info *info);
void tether__client_ev_mismatch_locked(tether_client *c, const tether_mismatch_info *info);
void tether__client_ev_bp_locked(tether_client *c, const tether_backpressure_info *info);

/* client_events.c: releases c->lock (held once), then runs the queued events
 * in order without it. Every transport callback ends with it. */
void tether__client_leave(tether_client *c);

/* client_events.c: frees the queue's buffers (destroy). */
void tether__client_evq_free(tether_client *c);

/* client_events.c, tests: queue at most max events (0: no limit); past it
 * events run in place under the lock, as when the queue cannot grow. */
void tether__client_test_evq_max(tether_client *c, size_t max);

/* client_send.c: sets up and frees c->sq (create/destroy). */
int tether__client_sendq_init(tether_client *c);
void tether__client_sendq_free(tether_client *c);

/* client_send.c, destroy: refuses new sends, wakes room waiters, commits what
 * waits, stops the committer thread. */
void tether__client_sendq_close(tether_client *c);

/* client_send.c: checks the group-commit fields of k and fills their defaults. */
int tether__client_send_check(tether_client_config *k);

/* client_send.c: the highest seq handed out (stored or waiting). */
uint64_t tether__client_next_seq_locked(tether_client *c);

/* client_send.c, tests: commit transactions attempted so far. */
unsigned long tether__client_commits(tether_client *c);

/* client_send.c: wakes the service thread unless a wake is already pending. */
void tether__client_wake(tether_client *c);

/* client_verdict.c: the store's key of the fallback verdict for url (the
 * proxy in use is part of it). */
void tether__client_verdict_key(const tether_client *c, const char *url, char *buf, size_t len);
/* client_verdict.c, create: AUTO starts on HTTP when the store remembers a
 * verdict for the url and proxy that has not expired. */
void tether__client_verdict_load(tether_client *c);
/* client_verdict.c, lock held: stores (or forgets) the verdict when the
 * carriage choice changed it. */
void tether__client_verdict_save_locked(tether_client *c);

/* The background probe's states (client_probe.c). */
enum {
    PROBE_NONE = 0,    /* no probe */
    PROBE_ATTEMPT = 1, /* its WebSocket attempt is under way */
    PROBE_OPEN = 2,    /* upgraded; its HELLO is due */
    PROBE_HELLO = 3,   /* HELLO written; its WELCOME is awaited */
    PROBE_ORPHAN = 4,  /* as PROBE_HELLO, and the HTTP connection it displaced is gone */
    PROBE_DROPPED = 5, /* abandoned while its attempt was under way: closed when it opens */
};

/* client_probe.c, lock held, service thread. arm(): while connected over
 * HTTP in AUTO, sets the transport timer for the next probe. start(): the
 * transport timer fired: starts the probe when one is due. The others take
 * a transport callback's event and return 1 when it was the probe's (then
 * the caller does nothing else), 0 otherwise; message() returns 2 when the
 * probe's WELCOME moved the session onto it: c->conn is the probe and the
 * caller processes the WELCOME as for any connection. abandon(): the HTTP
 * connection ended for a reason of its own, or the client stops; keep():
 * the HTTP connection was displaced (EDISPLACED): 1 when a probe's HELLO did
 * it, and the session waits for that probe instead of stopping. */
void tether__client_probe_arm_locked(tether_client *c, uint64_t now);
void tether__client_probe_start_locked(tether_client *c, uint64_t now);
int tether__client_probe_open_locked(tether_client *c, tether__conn *conn);
int tether__client_probe_writable_locked(tether_client *c, tether__conn *conn);
int tether__client_probe_message_locked(tether_client *c, tether__conn *conn, const uint8_t *buf,
                                        size_t len, int err, uint64_t now);
int tether__client_probe_closed_locked(tether_client *c, tether__conn *conn,
                                       const tether__tp_close *why);
int tether__client_probe_timer_locked(tether_client *c, tether__conn *conn, uint64_t now);
void tether__client_probe_abandon_locked(tether_client *c);
int tether__client_probe_keep_locked(tether_client *c);
/* client_conn.c: starts the next attempt now (the probe failed while the
 * session waited for it). */
void tether__client_attempt_locked(tether_client *c);

/* client_verdict.c, lock held: moves to the next url of the list (its own
 * carriage choice and remembered verdict). */
void tether__client_next_url_locked(tether_client *c);

/* client_conn.c: the transport callbacks, run on the service thread. */
extern const tether__tp_cb tether__client_tp_cb;

/* client_conn.c: creates c->engine for rec, wired to the app callbacks. */
int tether__client_make_engine(tether_client *c, const tether__session_rec *rec);

/* client_conn.c, lock held: abandons the session for a new one that carries
 * the unacked messages renumbered from 1. */
int tether__client_reset_session_locked(tether_client *c);

#endif

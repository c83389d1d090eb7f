/*
 * Internals of the client object, shared by client.c (configuration and the
 * public API) and client_conn.c (the connection life on the service thread).
 *
 * Locking: c->lock (recursive, so callbacks may call send) guards every field
 * below it in struct tether_client; the service thread takes it in each
 * transport callback and application threads take it in each API call.
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
    char *url;                 /* owned copy of cfg.url */
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

/* client_conn.c: the transport callbacks, run on the service thread. */
extern const tether__tp_cb tether__client_tp_cb;

/* client_conn.c: creates c->engine for rec, wired to the app callbacks. */
int tether__client_make_engine(tether_client *c, const tether__session_rec *rec);

/* client_conn.c, lock held: abandons the session for a new one that carries
 * the unacked messages renumbered from 1. */
int tether__client_reset_session_locked(tether_client *c);

#endif

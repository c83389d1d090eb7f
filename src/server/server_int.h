/*
 * Internals of the server object, shared by server.c (sessions, configuration,
 * the public API), server_conn.c (connections, HELLO, admission, timers: the
 * service thread) and server_pool.c (the delivery threads).
 *
 * Threads and locks (docs/threading.md):
 * - The service thread runs the transport (lws on a libuv loop): upgrades,
 *   HELLO, writing frames, the timer wheel. It never runs an engine's input
 *   side and never waits for a session that is busy: it only try-locks.
 * - Delivery threads (s->cfg.delivery_threads) run each session's input in
 *   order: frames, accepting its HELLO, its disconnect, back-pressure reports,
 *   and every per-session callback. One session is on one thread at a time.
 * - Locks, in the order they may be taken: s->tlock (the session table and
 *   references), then a session's ss->mu (its engine and store work), then
 *   s->plock (run queue, inboxes, wake list; a leaf). No tether lock is held
 *   while an application callback runs: the engine's events drop ss->mu
 *   around the call.
 * - A session lives in memory while something references it (ss->refs: its
 *   connection, queued work, the wake list, an API call in progress); at the
 *   last release it is evicted (engine freed) unless it holds state that is
 *   not in the store. It is loaded from the store again when needed.
 */
#ifndef TETHER_SERVER_INT_H
#define TETHER_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "common/killpoint.h"
#include "common/backpressure.h"
#include "common/close_code.h"
#include "common/engine_cfg.h"
#include "common/link.h"
#include "common/timerwheel.h"
#include "engine/handshake.h"
#include "engine/session.h"
#include "store/store.h"
#include "transport/transport.h"
#include "common/defaults.h"
#include "common/util.h"
#include "server_admin.h"
#include "server_refusal.h"

#define SESSION_QUEUE_BYTES (1u << 20)
#define SHUTDOWN_WAIT_MS 500
#define TABLE_MIN_BUCKETS 64u  /* the session table starts here and doubles */
#define TICK_MS 5u             /* timer wheel granularity */
#define WHEEL_SLOTS 4096u      /* 20 s per turn at TICK_MS */
#define WRITE_WAIT_MS 100u     /* a deadline already due while a write is pending: look again
                                  this late (the writable call serves it first) */

typedef struct srv_conn srv_conn;
typedef struct srv_work srv_work;

#define SRV_GEN_STRIPES 64u

typedef struct srv_session {
    tether_session_id id;     /* the session id */
    tether__engine *engine;   /* its engine (guarded by mu) */
    pthread_mutex_t mu;       /* guards the engine, bp, wconn, opened, delivered */
    atomic_int refs;          /* references keeping it in memory (changed under tlock or
                                 while holding another reference) */
    atomic_int kick;          /* the service thread found mu busy: re-wake on unlock */
    _Atomic(srv_conn *) conn; /* the connection it lives on, or NULL (written by the service
                                 thread; set at HELLO under mu; read anywhere) */
    const srv_conn *wconn;    /* delivery side: the connection the engine serves (identity) */
    int opened;               /* delivery side: on_session_open reported for wconn */
    int commit_posted;        /* a W_COMMIT waits in the inbox (recv_lazy) */
    uint64_t delivered;       /* highest seq handed to on_message (manual-ack eviction check) */
    tether__bp bp;            /* back-pressure as last reported */
    /* guarded by s->plock */
    srv_work *in_head;        /* inbox: work for the delivery threads, in order */
    srv_work *in_tail;        /* last item of the inbox */
    int queued;               /* on the run queue or being run by a delivery thread */
    struct srv_session *next_run; /* run queue link */
    int dirty;                /* on the wake list */
    struct srv_session *next_dirty; /* wake list link */
    /* guarded by s->tlock */
    struct srv_session *next; /* hash chain */
    struct tether_server *srv; /* owner */
    atomic_int gone;          /* deleted or expired: removed from the store and the table
                                 (set under mu; an object kept alive only by references) */
} srv_session;

/* One connection. With a session, its engine says whether it is closing and
 * why; without one, hs holds the handshake answer it closes after (link.h).
 * Owned by the service thread. */
struct srv_conn {
    tether__conn *conn;       /* the transport connection */
    srv_session *sess;        /* the session after HELLO (holds a reference), else NULL */
    tether__tw_node tw;       /* its deadline on the wheel: HELLO, or the engine's next tick */
    uint64_t hello_deadline;  /* HELLO must arrive by then */
    int pending;              /* counted in tether_server.pending (upgraded, no HELLO yet) */
    tether__hs_out *hs;       /* no session: the refusal being written, or NULL (allocated
                                 only for a refusal, so a live connection does not carry it) */
};

/* Kinds of work for a session's delivery thread. */
enum { W_FRAME, W_ACCEPT, W_DETACH, W_BP, W_GREW, W_COMMIT };

/* One item of a session's inbox. */
struct srv_work {
    srv_work *next;           /* inbox order */
    int kind;                 /* W_* */
    const srv_conn *conn;     /* the connection it concerns (identity only, never followed) */
    int err;                  /* W_FRAME: the transport's error; W_DETACH: its close error */
    uint64_t at;              /* when it arrived, ms */
    tether__hello hello;      /* W_ACCEPT: the HELLO */
    size_t len;               /* W_FRAME: bytes at data */
    uint8_t data[];           /* W_FRAME: the frame */
};

struct tether_server {
    tether_server_config cfg; /* copy of the configuration, defaults filled */
    char *host;               /* owned listen host */
    char *db_path;            /* owned db path or NULL */
    char *www;                /* owned resolved www_dir or NULL */
    char *cors_headers;       /* owned Access-Control-Allow-Headers value, or NULL */
    tether__store *store;     /* sessions and outboxes, behind one mutex (server_store.c) */
    tether__engine_cfg ecfg;  /* engine configuration shared by all sessions */
    tether__tp *tp;           /* transport */
    /* service thread only */
    tether__decoder dec;      /* decodes HELLO before a session exists */
    tether__buf out;          /* frame being written */
    tether__tw wheel;         /* every connection's deadline */
    int ticking;              /* the wheel's tick timer is armed */
    /* guarded by tlock */
    pthread_mutex_t tlock;    /* the session table and the references */
    srv_session **table;      /* sessions in memory by id; nbuckets chains */
    size_t nbuckets;          /* a power of two; doubles past 2 sessions per bucket */
    size_t nsessions;         /* sessions in memory (engines loaded) */
    /* guarded by plock */
    pthread_mutex_t plock;    /* run queue, inboxes, wake list */
    pthread_cond_t pcond;     /* a session was queued, or the pool stops */
    srv_session *run_head;    /* sessions with work, oldest first */
    srv_session *run_tail;    /* last of them */
    srv_session *dirty;       /* sessions the service thread must look at */
    int pool_stop;            /* the delivery threads finish the queue and exit */
    int busy_workers;         /* delivery threads running a session now */
    pthread_t *workers;       /* the delivery threads */
    uint32_t nworkers;        /* delivery threads started */
    /* atomics */
    atomic_uint connected;    /* sessions live now */
    atomic_uint pending;      /* upgraded connections that have not sent HELLO */
    atomic_uint out_gen[SRV_GEN_STRIPES]; /* sessions taken out of the table so far, deleted
                                 or evicted, by stripe of their id's hash: a load from the
                                 store that raced one of its stripe reads again */
    void (*test_loaded)(tether_server *, void *); /* tests only: after a load, before the insert */
    void *test_loaded_arg;
    atomic_int stopping;      /* destroy() in progress */
    int tp_gone;              /* plock: the transport is being destroyed; no more wakes */
    char *strs;               /* owned copies of the TLS file names and allowed origins */
    const char **origins;     /* owned copy of cfg.allowed_origins (pointers into strs) */
    int started;              /* the service thread runs */
    srv_admin admin;          /* server_admin.c: expiry, counters, offline times */
    /* server_lease.c: the renewal of the sessions' leases (PostgreSQL store) */
    pthread_mutex_t lmu;      /* guards lstop */
    int lstop;                /* the renewal thread is to stop */
    int lthread_on;           /* the renewal thread runs */
    pthread_t lthread;        /* the renewal thread */
    srv_refusals refusals;    /* server_refusal.c: on_refused's rate limit (service thread) */
};

/* server.c: the session table and references. */

/* Finds a session in memory or loads it from the store, with a reference
 * for the caller: TETHER_OK, TETHER_ENOTFOUND, a store error. */
int tether__srv_get(tether_server *s, const uint8_t id[16], srv_session **out);
/* As tether__srv_get(), then locks the session; TETHER_ENOTFOUND when it was
 * deleted meanwhile (then it is neither locked nor referenced). */
int tether__srv_get_live(tether_server *s, const uint8_t id[16], srv_session **out);
/* The session if it is in memory (never loads it), with a reference; else NULL. */
srv_session *tether__srv_find_ref(tether_server *s, const uint8_t id[16]);
/* ss->mu held: replaces the session's engine by one made from the store's
 * record (after another instance served the session). TETHER_OK or the
 * store's or engine's error, the old engine kept. */
int tether__srv_reload_locked(tether_server *s, srv_session *ss);
/* No lock held; ss->gone set: takes the session out of the table, so that the
 * next lookup reads the store (where it is gone too). */
void tether__srv_forget(tether_server *s, srv_session *ss);
/* Stores nothing: adds a session whose record is already stored, with a reference. */
int tether__srv_add(tether_server *s, const tether__session_rec *rec, srv_session **out);
/* Another reference, for a caller that holds one. */
void tether__srv_ref(srv_session *ss);
/* Drops a reference; the last one evicts the session when it may be. */
void tether__srv_unref(tether_server *s, srv_session *ss);
/* Locks / unlocks a session; the unlock wakes the service thread if it found
 * the session busy meanwhile. */
void tether__srv_lock(srv_session *ss);
void tether__srv_unlock(tether_server *s, srv_session *ss);
/* Puts a session on the wake list (any thread) and wakes the service thread. */
void tether__srv_wake(tether_server *s, srv_session *ss);
/* server_config.c: the configuration's checks (tether_errmsg() says what is
 * wrong; TETHER_ECONFIG), the Access-Control-Allow-Headers value joined into
 * s->cors_headers, and the copies of the TLS file names and Origin list. */
int tether__srv_check_config(tether_server_config *k);
int tether__srv_cors_headers(tether_server *s, const char *const *names);
int tether__srv_copy_strings(tether_server *s);
/* Lock held: reports back-pressure changes, dropping the lock around the callbacks. */
void tether__srv_bp_report_locked(tether_server *s, srv_session *ss);

/* server_store.c: wraps a store so that threads may share it (each operation
 * under one mutex). Takes ownership of inner. TETHER_OK or TETHER_ENOMEM. */
int tether__srv_store_wrap(tether__store *inner, tether__store **out);
/* The server shuts down: a PostgreSQL store stops waiting for a database
 * that does not answer (tether__store_pg_closing). Without the store's lock. */
void tether__srv_store_closing(tether__store *st);

/* server_lease.c: session ownership among instances sharing a PostgreSQL
 * store (docs/guarantees.md). ss->mu held: takes the session's lease for its
 * new connection; TETHER_OK, or the error after which the connection closes
 * (TETHER_EFENCED: a live instance serves it). Reloads the engine when
 * another instance may have changed the session. */
int tether__srv_lease_take_locked(tether_server *s, srv_session *ss);
/* ss->mu held: the session's last connection ended: gives its lease up. */
void tether__srv_lease_release_locked(tether_server *s, srv_session *ss);
/* Starts / stops the renewal thread (PostgreSQL stores only; stop is a
 * no-op when it does not run). */
int tether__srv_lease_start(tether_server *s);
/* ss->mu held (W_GREW on the delivery thread): another instance appended to
 * the session's outbox, up to out_last (0: read it from the store). */
void tether__srv_outbox_grew_locked(tether_server *s, srv_session *ss, uint64_t out_last);
void tether__srv_lease_stop(tether_server *s);

/* server_pool.c: the delivery threads. */
int tether__srv_pool_start(tether_server *s);
/* Lets the threads finish every queued item, then joins them. */
void tether__srv_pool_stop(tether_server *s);
/* Appends w to the session's inbox and schedules the session. The caller
 * holds a reference to ss. */
void tether__srv_post(tether_server *s, srv_session *ss, srv_work *w);
/* A new work item (frame bytes copied), or NULL when out of memory. */
srv_work *tether__srv_work_new(int kind, const srv_conn *conn, const void *data, size_t len);

/* server_pool.c: 1 on a delivery thread of s (inside a server callback, or
 * tether's own work for a session). */
int tether__srv_on_pool(tether_server *s);

/* server_conn.c: the transport callbacks, run on the service thread. */
extern const tether__tp_cb tether__server_tp_cb;

/* Tests only: sessions whose engine is in memory now. */
size_t tether__srv_debug_loaded(tether_server *s);
/* Tests only: fn runs after each load of a session from the store, before
 * the session object is put in the table (NULL: none). Set before the race
 * it opens is exercised, with no load running. */
void tether__srv_test_on_load(tether_server *s, void (*fn)(tether_server *, void *), void *arg);
/* Tests only: HTTP carriage connections the transport holds now. */
size_t tether__srv_debug_carriage(tether_server *s);

#endif

/*
 * Internals of the server object, shared by server.c (sessions, configuration,
 * the public API) and server_conn.c (connections, HELLO, admission).
 *
 * Locking: s->lock (recursive) guards the session table and every engine; the
 * service thread takes it in each transport callback, application threads in
 * each API call.
 */
#ifndef TETHER_SERVER_INT_H
#define TETHER_SERVER_INT_H

#include <pthread.h>
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
#include "engine/handshake.h"
#include "engine/session.h"
#include "store/store.h"
#include "transport/transport.h"
#include "common/defaults.h"
#include "common/util.h"
#include "server_admin.h"

#define SESSION_QUEUE_BYTES (1u << 20)
#define BUCKETS 4096u
#define SHUTDOWN_WAIT_MS 500

typedef struct srv_conn srv_conn;

typedef struct srv_session {
    tether_session_id id;     /* the session id */
    tether__engine *engine;   /* its engine */
    srv_conn *conn;           /* the connection it lives on, or NULL when offline */
    int dirty;                /* on the wake list: new messages to write or back-pressure to report */
    tether__bp bp;            /* back-pressure as last reported */
    struct srv_session *next; /* hash chain */
    struct srv_session *next_dirty; /* wake list */
    uint64_t idle_since;      /* server_admin.c: when it went offline (admin clock), ms */
} srv_session;

/* One connection. With a session, its engine says whether it is closing and
 * why; without one, hs holds the handshake answer it closes after (link.h). */
struct srv_conn {
    tether__conn *conn;       /* the transport connection */
    srv_session *sess;        /* the session after HELLO, else NULL */
    uint64_t hello_deadline;  /* HELLO must arrive by then */
    int opened;               /* on_session_open was reported for this connection */
    int pending;              /* counted in tether_server.pending (upgraded, no HELLO yet) */
    tether__hs_out hs;        /* no session: the refusal being written (nframes 0: none) */
};

struct tether_server {
    tether_server_config cfg; /* copy of the configuration, defaults filled */
    char *host;               /* owned listen host */
    char *db_path;            /* owned db path or NULL */
    pthread_mutex_t lock;     /* recursive; guards everything below */
    tether__store *store;     /* sessions and outboxes */
    tether__engine_cfg ecfg;  /* engine configuration shared by all sessions */
    tether__tp *tp;           /* transport */
    tether__decoder dec;      /* decodes HELLO before a session exists */
    tether__buf out;          /* frame being written */
    srv_session *table[BUCKETS]; /* sessions by id */
    srv_session *dirty;       /* sessions with something new to write */
    uint32_t connected;       /* sessions live now */
    uint32_t pending;         /* upgraded connections that have not sent HELLO */
    char *strs;               /* owned copies of the TLS file names and allowed origins */
    const char **origins;     /* owned copy of cfg.allowed_origins (pointers into strs) */
    int started;              /* the service thread runs */
    int stopping;             /* destroy() in progress */
    srv_admin admin;          /* server_admin.c: expiry, counters, totals */
};

static inline void lock(tether_server *s)
{
    pthread_mutex_lock(&s->lock);
}

static inline void unlock(tether_server *s)
{
    pthread_mutex_unlock(&s->lock);
}

static inline unsigned bucket(const uint8_t id[16])
{
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 16777619u;
    }
    return h % BUCKETS;
}

/* Sessions find their server through this allocation layout. */
typedef struct srv_session_alloc {
    srv_session sess;     /* must come first */
    tether_server *srv;   /* owner */
} srv_session_alloc;

/* server.c, lock held: the session table. */
srv_session *tether__srv_find(tether_server *s, const uint8_t id[16]);
int tether__srv_add_session(tether_server *s, const tether__session_rec *rec, srv_session **out);
/* Finds a session in memory or loads it from the store: TETHER_OK, TETHER_ENOTFOUND, error. */
int tether__srv_lookup(tether_server *s, const uint8_t id[16], srv_session **out);
/* Puts a session on the wake list: it has something new to write. */
void tether__srv_mark_dirty(tether_server *s, srv_session *ss);

/* Service thread: reports a change of the session's back-pressure. */
void tether__srv_bp_update(tether_server *s, srv_session *ss);

/* server_conn.c: the transport callbacks, run on the service thread. */
extern const tether__tp_cb tether__server_tp_cb;

#endif

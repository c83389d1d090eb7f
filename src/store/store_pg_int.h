/*
 * Internals of the PostgreSQL store, shared by store_pg.c (the operations),
 * store_pg_append.c (append) and store_pg_open.c (connecting, the schema,
 * prepared statements, reconnecting, closing, the test hooks).
 */
#ifndef TETHER_STORE_PG_INT_H
#define TETHER_STORE_PG_INT_H

#include "store.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/util.h"
#include "store_testhooks.h"

#define PG_SEQ_MAX ((uint64_t)INT64_MAX) /* highest seq or cursor a store accepts (bigint) */
#define PG_LIST_PAGE 512                 /* sessions list() fetches per round trip */
#define PG_LOAD_FIRST 16                 /* load()'s first page of rows; it doubles from there */
#define PG_LOAD_PAGE 1024                /* load()'s largest page of rows */
#define PG_FENCE_MS 5000                 /* longest wait for a lost connection's backend to end */
#define PG_CONNECT_TIMEOUT "10"          /* seconds, unless the connection string says otherwise */
#define PG_CONNECT_MS 10000              /* the same for the connections this store drives itself */
#define PG_CLOSING_CONNECT_MS 1000       /* a reconnect once the server shuts down (one, bounded) */
#define PG_LOCK_TIMEOUT "5s"             /* longest wait for a row lock another connection holds */
#define PG_SCHEMA_VERSION 2              /* the schema this store writes; 1 is upgraded at open */

/* An instance's lease on a session's row is free for another to take when it
 * was released, lapsed, or its owner's connection is gone: each server
 * store's connection holds the session-level advisory lock lease_owner for
 * its whole life (store_pg_lease.c), which PostgreSQL drops with the
 * connection. t is the tether_sessions alias. */
#define PG_LEASE_FREE(t)                                                                          \
    "(" t ".lease_owner IS NULL OR " t ".lease_until IS NULL OR " t                                \
    ".lease_until < clock_timestamp() OR NOT EXISTS (SELECT 1 FROM pg_locks l WHERE "              \
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = ((" t                \
    ".lease_owner >> 32) & 4294967295)::oid AND l.objid = (" t ".lease_owner & 4294967295)::oid))"

typedef struct pg_lease pg_lease; /* store_pg_lease.c: one session's lease as this store holds it */

/* The prepared statements, by name "tether_<index>". */
enum {
    P_GET,
    P_PUT,
    P_LAST_SEQ,
    P_DELETE,
    P_LIST,
    P_APPEND,
    P_LOAD,
    P_ACK,
    P_CURSOR,
    P_GET_LOCK,
    P_INSERT_SESS,
    P_MOVE,
    P_RECOUNT,
    P_TOTALS,
    P_CHECK,
    P_LAST_OP,
    P_LEASE_TAKE,    /* store_pg_lease.c */
    P_LEASE_RELEASE, /* store_pg_lease.c */
    P_LEASE_RENEW,   /* store_pg_lease.c */
    P_LEASE_EPOCH,   /* store_pg_lease.c */
    N_PSTMT
};

typedef struct pgstore {
    tether__store base;      /* the interface; must come first */
    PGconn *conn;            /* the one connection every operation runs on */
    tether__store_role role; /* client or server: the role column of every row this store touches */
    int sync_off;            /* durability OFF: synchronous_commit = off on the connection */
    int readonly;            /* tether__store_pg_open_readonly(): a read-only connection */
    uint64_t next_op;        /* the next append's id (random start), written as last_op */
    int pid;                 /* the server backend of the current connection */
    uint64_t owner;          /* server: this instance's lease owner id, its advisory lock key */
    pg_lease **leases;       /* the leases taken, by session id (nleases_b chains) */
    size_t nleases_b;        /* buckets of leases (a power of two, or 0) */
    size_t nleases;          /* leases recorded */
    char *conninfo;          /* server: the connection string, for lconn */
    int multihost;           /* the connection string names several hosts (libpq's PQreset) */
    _Atomic int closing;     /* tether__store_pg_closing(): reconnect once, bounded, then not */
    int closing_tried;       /* that one reconnect was made */
    PGconn *lconn;           /* server: the LISTEN connection of wait_wakes (its caller's only) */
    char where[256];         /* "host:port/dbname as user", for messages; never the password */
    char msg[512];           /* the last failure's message */
} pgstore;

/* store_pg_open.c: drives a connection started with PQconnectStartParams
 * (reset 0) or PQresetStart (reset 1) until it is made or fails, in steps
 * of at most 50 ms: it gives up after PG_CONNECT_MS (as libpq's own
 * connect_timeout would for one host), or PG_CLOSING_CONNECT_MS after the
 * store was told the server is closing. 0 connected, -1 not (the message
 * in why). */
int tether__pg_connect_wait(pgstore *s, PGconn *c, int reset, char *why, size_t len);

/* store_pg_open.c: the SQL of each prepared statement, indexed by P_*. */
extern const char *const tether__pg_stmt_sql[N_PSTMT];

/* store_pg.c: the operations table. */
extern const tether__store_ops tether__pg_ops;

/* store_pg.c: records a failure message on the store and returns code. */
int tether__pg_fail(pgstore *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* store_pg.c: records the failure of a query (res may be NULL: then the
 * connection's message) of operation op and returns its tether code. */
int tether__pg_qfail(pgstore *s, const PGresult *res, const char *op);
/* Parameters and results travel in binary: the helpers below fill one call's
 * parameters and read big-endian integers back. */
/* Up to 9 parameters of one call: values, lengths, all binary. */
typedef struct params {
    const char *val[9]; /* pointers into the caller's data or num[] */
    int len[9];         /* their lengths */
    int fmt[9];         /* 1: binary */
    char num[9][8];     /* storage of the integers, big-endian */
    int n;              /* parameters added */
} params;

static inline void p_bytes(params *p, const void *data, size_t len)
{
    p->val[p->n] = len ? data : "";
    p->len[p->n] = (int)len;
    p->fmt[p->n] = 1;
    p->n++;
}

static inline void p_int(params *p, uint64_t v, int bytes)
{
    char *b = p->num[p->n];
    for (int i = 0; i < bytes; i++) {
        b[i] = (char)(v >> (8 * (bytes - 1 - i)));
    }
    p_bytes(p, b, (size_t)bytes);
}

static inline void p_i64(params *p, uint64_t v)
{
    p_int(p, v, 8);
}

/* The role and a session id: $1 and $2 of every per-session statement. */
static inline void p_key(params *p, const pgstore *s, const uint8_t id[16])
{
    memset(p, 0, sizeof *p);
    p_int(p, (uint64_t)s->role, 2);
    p_bytes(p, id, 16);
}

static inline uint64_t be_u64(const char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | (unsigned char)b[i];
    }
    return v;
}

static inline uint64_t col_u64(const PGresult *r, int row, int col)
{
    return PQgetlength(r, row, col) == 8 ? be_u64(PQgetvalue(r, row, col)) : 0;
}

/* Runs prepared statement i; returns its result (to PQclear) or NULL after
 * recording the failure in *rc. */

/* store_pg.c: runs prepared statement i (P_*); its result (to PQclear), or
 * NULL after recording the failure in *rc. */
PGresult *tether__pg_exec(pgstore *s, int i, const params *p, const char *op, int *rc);
/* store_pg.c: reads a session's record and pending totals (count, bytes may
 * be NULL) with P_GET or P_GET_LOCK; TETHER_ENOTFOUND with a message naming op. */
int tether__pg_read_sess(pgstore *s, int stmt, const uint8_t id[16], tether__session_rec *rec,
                         uint64_t *count, uint64_t *bytes, const char *op);
/* store_pg_append.c: the append() operation. */
int tether__pg_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                      uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq);

/* store_pg_verdict.c: the verdict_get() and verdict_put() operations. */
int tether__pg_verdict_get(tether__store *st, const char *key, tether__verdict *out);
int tether__pg_verdict_put(tether__store *st, const char *key, const tether__verdict *v);

/* store_pg.c: the tether code for a SQLSTATE (NULL: the connection failed). */
int tether__pg_map_state(const char *sqlstate);

/* store_pg_open.c: makes sure the connection is up before an operation: if
 * it was lost, reconnects once (bounded by the connect timeout) and prepares
 * the statements again. TETHER_OK or TETHER_ESTORE naming the server. */
int tether__pg_ready(pgstore *s, const char *op);
/* store_pg_lease.c: the epoch this store's writes for a session carry: its
 * lease's, or 0 when it never took one (a session never leased has 0). */
uint64_t tether__pg_lease_epoch(const pgstore *s, const uint8_t id[16]);
/* store_pg_lease.c: the $n parameter of a fenced write: that epoch. */
static inline void p_epoch(params *p, const pgstore *s, const uint8_t id[16])
{
    p_i64(p, tether__pg_lease_epoch(s, id));
}
/* store_pg_lease.c: the message and code of a write refused by the fence. */
int tether__pg_fenced(pgstore *s, const char *op, uint64_t ours, uint64_t theirs);
/* store_pg_lease.c: the schema upgrade from version `from` to PG_SCHEMA_VERSION,
 * inside the open's transaction. */
int tether__pg_migrate(pgstore *s, long long from, const char *op);
/* store_pg_lease.c: takes the connection's owner lock (setup of a server store). */
int tether__pg_lease_setup(pgstore *s, const char *op);
/* store_pg_lease.c: the lease operations of store.h. */
int tether__pg_lease_take(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale);
int tether__pg_lease_release(tether__store *st, const uint8_t id[16]);
int tether__pg_lease_renew(tether__store *st, uint32_t ttl_ms,
                           void (*lost)(void *arg, const uint8_t id[16]),
                           void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                           void *arg);
/* store_pg_wake.c: wake-ups of the instance serving a session. */
int tether__pg_wake(tether__store *st, const uint8_t id[16]);
int tether__pg_wait_wakes(tether__store *st, uint32_t timeout_ms,
                          void (*cb)(void *arg, const uint8_t id[16]), void *arg);
/* store_pg_lease.c: frees the lease records. */
void tether__pg_lease_free(pgstore *s);

/* store_pg_open.c: closes the store. */
void tether__pg_close(tether__store *st);

#endif

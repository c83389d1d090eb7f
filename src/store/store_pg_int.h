/*
 * Internals of the PostgreSQL store, shared by store_pg.c (the operations)
 * and store_pg_open.c (connecting, the schema, prepared statements,
 * reconnecting, closing, the test hooks).
 */
#ifndef TETHER_STORE_PG_INT_H
#define TETHER_STORE_PG_INT_H

#include "store.h"

#include <stdarg.h>
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
#define PG_LOCK_TIMEOUT "5s"             /* longest wait for a row lock another connection holds */

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
    char where[256];         /* "host:port/dbname as user", for messages; never the password */
    char msg[512];           /* the last failure's message */
} pgstore;

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
/* store_pg.c: the tether code for a SQLSTATE (NULL: the connection failed). */
int tether__pg_map_state(const char *sqlstate);

/* store_pg_open.c: makes sure the connection is up before an operation: if
 * it was lost, reconnects once (bounded by the connect timeout) and prepares
 * the statements again. TETHER_OK or TETHER_ESTORE naming the server. */
int tether__pg_ready(pgstore *s, const char *op);
/* store_pg_open.c: closes the store. */
void tether__pg_close(tether__store *st);

#endif

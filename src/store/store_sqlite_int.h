/*
 * Internals of the SQLite store, shared by store_sqlite.c (the operations)
 * and store_sqlite_open.c (open, schema, close, the checkpointer, test hooks).
 */
#ifndef TETHER_STORE_SQLITE_INT_H
#define TETHER_STORE_SQLITE_INT_H

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_testhooks.h"
#include "common/util.h"

#define SEQ_MAX ((uint64_t)INT64_MAX) /* highest seq or cursor a store accepts */
#define SAVE_EVERY 1024u /* append rewrites the session row once this many rows are above it */
#define BUSY_TIMEOUT_MS 5000          /* longest wait for a lock held by another connection */
#define CKPT_SOFT_PAGES 500           /* WAL pages that start a PASSIVE checkpoint at once */
#define CKPT_HARD_PAGES 1000          /* WAL pages after which the writer checkpoints itself */
#define CKPT_PERIOD_MS 1000           /* checkpoint this long after a commit below the soft mark */
#define WAL_SIZE_LIMIT (8 << 20)      /* journal_size_limit, bytes */
#define CKPT_FLUSH_DIV 4              /* exclusive, NORMAL: pre-sync the WAL every hard_pages / this */

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_GET,
    S_PUT,
    S_DEL_SESS,
    S_DEL_OUTBOX,
    S_LIST,
    S_LAST_SEQ,
    S_INSERT,
    S_APPENDED,
    S_LOAD,
    S_SUM,
    S_PRUNE,
    S_ACKED,
    S_CURSOR,
    S_MOVE,
    S_RECOUNT,
    S_MARK,
    S_UNMARK,
    S_SETTLE,
    S_GET_ROW,
    S_LIST_ROWS,
    S_IS_MARKED,
    N_STMT
};

typedef struct ckpt {
    sqlite3 *db;         /* the checkpointer's own connection */
    pthread_t thread;    /* runs ck_main() */
    int started;         /* the thread runs and must be joined */
    pthread_mutex_t mu;  /* guards the fields below */
    pthread_cond_t cv;   /* wakes the thread: work to do, or stop */
    pthread_cond_t done; /* signalled when a checkpoint ends */
    int running;         /* the thread or the writer is checkpointing */
    int stop;            /* close() asks the thread to end */
    int now;             /* the WAL reached soft_pages: checkpoint at once */
    int dirty;           /* a commit landed since the last checkpoint began */
    int wal_pages;       /* WAL size after the last commit, in pages */
    int ck_pages;        /* WAL size when the last checkpoint began */
    unsigned soft_pages; /* WAL size that starts a PASSIVE checkpoint at once */
    unsigned hard_pages; /* WAL size after which the writer checkpoints itself */
    unsigned period_ms;  /* below soft_pages, checkpoint this long after a commit */
    unsigned long runs;  /* checkpoints completed */
    /* exclusive mode at NORMAL: the WAL pre-sync (store_sqlite_flush.c) */
    char *wal_path;             /* the -wal file, which the flusher syncs through its own fd */
    unsigned flush_pages;       /* WAL growth since the last pre-sync that wakes the flusher */
    int synced_pages;           /* WAL size, pages, when the last pre-sync began */
    int flush_due;              /* WAL size the flusher is asked to sync (0: nothing to do) */
    unsigned long flushes;      /* pre-syncs completed */
    unsigned long flush_errors; /* pre-syncs that failed (harmless: the checkpoint syncs) */
    char flush_err[192];        /* the last failure's message, "" if none */
} ckpt;

typedef struct sqstore {
    tether__store base;         /* the interface; must come first */
    sqlite3 *db;                /* the writing connection: every operation runs on it */
    sqlite3_stmt *stmt[N_STMT]; /* prepared once at open, indexed by S_* */
    char *path;                 /* the database file */
    tether__store_role role;    /* client or server */
    int sync;                   /* PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL */
    ckpt ck;                    /* the background checkpointer (not started when readonly) */
    int readonly;               /* opened by tether__store_sqlite_open_readonly() */
    int empty;                  /* read-only open of a database without tables: empty_ops */
    char msg[512];              /* the last failure's message */
    int tail_ok;                /* tail_* hold the truth of session tail_id, which this
                                   connection wrote last (see "out_last" in store_sqlite.c) */
    uint8_t tail_id[16];        /* that session */
    uint64_t tail_out_last;     /* its highest seq ever assigned */
    uint64_t tail_acked;        /* its peer_acked */
    uint64_t tail_count;        /* its outbox rows */
    uint64_t tail_bytes;        /* their payload bytes */
    uint64_t tail_unsaved;      /* rows appended since its sessions row was last written */
    int marked;                 /* meta 'unsaved' is set: some session row may lag its outbox */
    int lock_fd;                /* "<path>-lock", flock'ed by a writing open; -1 when none */
    uint32_t page_size;         /* PRAGMA page_size set before a writing open creates the
                                   file, bytes; 0: SQLite's default */
} sqstore;

/* store_sqlite_open.c: the statements prepared at open, indexed by S_*, and the schema. */
extern const char *const tether__sq_stmt_sql[N_STMT];
extern const char tether__sq_schema_sql[];

/* The table of fallback verdicts (schema 2; store_sqlite_verdict.c). */
#define TETHER__SQ_VERDICTS_SQL                                                                    \
    "CREATE TABLE IF NOT EXISTS verdicts(key TEXT PRIMARY KEY NOT NULL, until_ms INTEGER NOT NULL,"              \
    " probes_failed INTEGER NOT NULL) WITHOUT ROWID;"

/* store_sqlite_verdict.c: the verdict_get() and verdict_put() operations. */
int tether__sq_verdict_get(tether__store *st, const char *key, tether__verdict *out);
int tether__sq_verdict_put(tether__store *st, const char *key, const tether__verdict *v);

/* store_sqlite.c: the operations table. */
extern const tether__store_ops tether__sqlite_ops;

/* store_sqlite.c: the tether code for a SQLite result code. */
int tether__sq_map_rc(int rc);
/* store_sqlite.c: records a failure message on the store and returns code. */
int tether__sq_fail(sqstore *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* store_sqlite.c: records a SQLite failure (rc, db's message, op) and returns its tether code. */
int tether__sq_sqfail(sqstore *s, sqlite3 *db, int rc, const char *op);
/* store_sqlite_open.c: runs a query returning one integer into *out; SQLite's result code. */
int tether__sq_int(sqstore *s, const char *sql, sqlite3_int64 *out);

/* store_sqlite_flush.c, exclusive mode at NORMAL: the WAL pre-sync thread.
 * start() runs it on s->ck (fails with TETHER_ESYS or TETHER_ENOMEM);
 * grew() is called from the WAL hook after each commit with the WAL's size
 * (c->mu not held); the thread is stopped by the checkpointer's ck_stop(). */
int tether__sq_flush_start(sqstore *s, const char *op);
void tether__sq_flush_grew(ckpt *c, int pages);

/* store_sqlite.c: 1 when session rows may lag their outbox (meta 'unsaved';
 * a read-only store looks each time, the writer knows). */
int tether__sq_lagging(sqstore *s);
/* store_sqlite.c, the writer's open: reads meta 'unsaved' into s->marked. */
void tether__sq_load_mark(sqstore *s);

/* store_sqlite.c, close: writes every session row that lags its outbox with
 * its true out_last and pending totals and clears meta 'unsaved', so that a
 * cleanly closed file is read from its session rows alone. */
void tether__sq_settle(sqstore *s);

/* store_sqlite.c: the errmsg() operation. */
const char *tether__sq_errmsg(tether__store *st);

/* store_sqlite_open.c: a zeroed store for path with its lock and conditions
 * made, the SQLite operations table set; NULL when memory runs out. */
sqstore *tether__sq_new(const char *path);
/* store_sqlite_open.c: prepares the statements S_* on s->db. */
int tether__sq_prepare_all(sqstore *s, const char *op);
/* store_sqlite_open.c: stops the checkpointer and closes the store. */
void tether__sq_close(tether__store *st);

/* store_sqlite_lock.c: takes the writer lock of s->path ("<path>-lock",
 * flock) into s->lock_fd; TETHER_ESTORE naming the holder when another
 * handle, in any process, has the file open for writing. */
int tether__sq_lock(sqstore *s, const char *op);
/* store_sqlite_lock.c: releases the writer lock, if held. */
void tether__sq_unlock(sqstore *s);

/* store_sqlite_inspect.c: the inspect() operation. */
int tether__sq_inspect(tether__store *st, unsigned flags, tether__store_info *out);
/* store_sqlite_inspect.c: 1, with the detail in msg, when the -wal file of
 * the database at path is gone while its -shm says it held commits not yet
 * in the database (see the top of that file); 0 otherwise. */
int tether__sq_wal_lost(const char *path, char *msg, size_t len);

#endif

/*
 * The SQLite store: sessions and their outboxes in one SQLite file, WAL mode.
 *
 * Schema 1 (PRAGMA user_version holds the number):
 *   meta(key, value)        'role' -> 'client' or 'server'
 *   sessions(id PRIMARY KEY, token, out_last, peer_acked, recv_cursor, established,
 *            pending_count, pending_bytes)                       WITHOUT ROWID
 *   outbox(session, seq, payload, PRIMARY KEY(session, seq))      WITHOUT ROWID
 * pending_count/pending_bytes mirror what a session's outbox rows hold; append,
 * ack and rebase keep them exact in their own transactions, so the cap check
 * of append is a single row read instead of a COUNT(*) over the outbox.
 *
 * Transactions: an operation of several statements runs in BEGIN IMMEDIATE ...
 * COMMIT and rolls back on any failure, so it leaves the store unchanged.
 * set_cursor is one UPDATE in autocommit mode, which is the same guarantee
 * without two extra statements on the receive path. Reads are one statement
 * each (load streams its rows with a LIMIT; nothing is collected in memory).
 * Statements are prepared once at open. Sequence numbers and cursors are
 * limited to INT64_MAX (SQLite integers are signed).
 *
 * Checkpoints: SQLite's automatic checkpoint runs inside the COMMIT that takes
 * the WAL past 1000 pages and stalls it (the project's notes measured 35-60
 * ms on this machine). So the writing connection has no automatic checkpoint
 * (its WAL hook replaces it) and a background thread with a second
 * connection does them: a PASSIVE checkpoint, which never waits for the
 * writer nor blocks it, each time the WAL grew by CKPT_SOFT_PAGES, and
 * otherwise CKPT_PERIOD_MS after a commit, so an idle store keeps a small WAL.
 *
 * That alone does not bound the WAL: it starts over from its beginning only
 * when a write transaction begins after a checkpoint copied all of it, and
 * under a sustained stream of commits some commit always lands while the
 * checkpoint runs (measured: 70 MB of WAL after 5000 1-KB appends). A RESTART
 * checkpoint from the thread does not help either: it waits for the writer
 * lock through SQLite's busy handler, whose polling never finds a busy
 * writer idle. So once a commit leaves CKPT_HARD_PAGES or more in the WAL,
 * the writer itself runs a PASSIVE checkpoint right after that commit, from
 * its WAL hook; the thread's checkpoints have already copied (and synced)
 * all but the last few hundred pages, so this one is short, and the next
 * transaction starts the WAL over. Past that mark the thread starts no
 * checkpoint of its own (two checkpointers collide: the second gets
 * SQLITE_BUSY at once). If one it began earlier still runs, the writer goes
 * on and tries again after its next commit, up to 2 * CKPT_HARD_PAGES,
 * where it waits for that checkpoint to end: the WAL is bounded.
 * journal_size_limit trims the WAL file after a burst.
 *
 * Measured here (100k 64-byte appends, one per transaction, an ack every
 * 10, synchronous=NORMAL, 2 vCPUs): SQLite's automatic checkpoint gave
 * append p50 7.2-7.8 us, p99 11-13 us, p99.9 2.1 ms, max 2.8-14 ms; this
 * scheme p50 7.5-8.3 us, p99 41-57 us, p99.9 1.1 ms, max 2.1-3.2 ms, and
 * 5-20% more appends per second. The higher p99 is the price: commits that
 * coincide with the thread's fsyncs wait a little.
 *
 * Callbacks of load() and list() must not call back into the store.
 */
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

#include "store_sqlite.h"
#include "util.h"

#define SEQ_MAX ((uint64_t)INT64_MAX) /* highest seq or cursor a store accepts */
#define BUSY_TIMEOUT_MS 5000          /* longest wait for a lock held by another connection */
#define CKPT_SOFT_PAGES 500           /* WAL pages that start a PASSIVE checkpoint at once */
#define CKPT_HARD_PAGES 1000          /* WAL pages after which the writer checkpoints itself */
#define CKPT_PERIOD_MS 1000           /* checkpoint this long after a commit below the soft mark */
#define WAL_SIZE_LIMIT (8 << 20)      /* journal_size_limit, bytes */

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
    N_STMT
};

static const char *const stmt_sql[N_STMT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_GET] = "SELECT token, out_last, peer_acked, recv_cursor, established, pending_count, "
              "pending_bytes FROM sessions WHERE id = ?1",
    [S_PUT] = "INSERT INTO sessions(id, token, out_last, peer_acked, recv_cursor, established, "
              "pending_count, pending_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0) "
              "ON CONFLICT(id) DO UPDATE SET token = excluded.token, "
              "out_last = excluded.out_last, peer_acked = excluded.peer_acked, "
              "recv_cursor = excluded.recv_cursor, established = excluded.established",
    [S_DEL_SESS] = "DELETE FROM sessions WHERE id = ?1",
    [S_DEL_OUTBOX] = "DELETE FROM outbox WHERE session = ?1",
    [S_LIST] = "SELECT id, token, out_last, peer_acked, recv_cursor, established "
               "FROM sessions ORDER BY id",
    [S_LAST_SEQ] = "SELECT max(seq) FROM outbox WHERE session = ?1",
    [S_INSERT] = "INSERT INTO outbox(session, seq, payload) VALUES (?1, ?2, ?3)",
    [S_APPENDED] = "UPDATE sessions SET out_last = ?2, pending_count = pending_count + ?3, "
                   "pending_bytes = pending_bytes + ?4 WHERE id = ?1",
    [S_LOAD] = "SELECT seq, payload FROM outbox WHERE session = ?1 AND seq >= ?2 "
               "ORDER BY seq LIMIT ?3",
    [S_SUM] = "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox "
              "WHERE session = ?1 AND seq <= ?2",
    [S_PRUNE] = "DELETE FROM outbox WHERE session = ?1 AND seq <= ?2",
    [S_ACKED] = "UPDATE sessions SET peer_acked = max(peer_acked, ?2), "
                "pending_count = pending_count - ?3, pending_bytes = pending_bytes - ?4 "
                "WHERE id = ?1",
    [S_CURSOR] = "UPDATE sessions SET recv_cursor = max(recv_cursor, ?2) WHERE id = ?1",
    [S_MOVE] = "INSERT INTO outbox(session, seq, payload) "
               "SELECT ?2, seq - ?3, payload FROM outbox WHERE session = ?1 AND seq > ?3",
    [S_RECOUNT] = "UPDATE sessions SET (pending_count, pending_bytes) = "
                  "(SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox "
                  "WHERE session = ?1) WHERE id = ?1",
};

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE sessions(id BLOB PRIMARY KEY NOT NULL, token BLOB NOT NULL,"
    " out_last INTEGER NOT NULL, peer_acked INTEGER NOT NULL, recv_cursor INTEGER NOT NULL,"
    " established INTEGER NOT NULL, pending_count INTEGER NOT NULL,"
    " pending_bytes INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE outbox(session BLOB NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,"
    " PRIMARY KEY(session, seq)) WITHOUT ROWID;";

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
} ckpt;

typedef struct sqstore {
    tether__store base;         /* the interface; must come first */
    sqlite3 *db;                /* the writing connection: every operation runs on it */
    sqlite3_stmt *stmt[N_STMT]; /* prepared once at open, indexed by S_* */
    char *path;                 /* the database file */
    tether__store_role role;    /* client or server */
    int sync;                   /* PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL */
    ckpt ck;                    /* the background checkpointer */
    char msg[512];              /* the last failure's message */
} sqstore;

static const tether__store_ops sqlite_ops;

/* ---- errors ---- */

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return TETHER_ESTORE_FULL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return TETHER_ESTORE_CORRUPT;
    case SQLITE_READONLY:
        return TETHER_ESTORE_READONLY;
    case SQLITE_NOMEM:
        return TETHER_ENOMEM;
    default:
        return TETHER_ESTORE;
    }
}

static int fail(sqstore *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(sqstore *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    return tether__fail(code, "%s", s->msg);
}

/* A SQLite failure rc of operation op: maps the code, keeps SQLite's words. */
static int sqfail(sqstore *s, sqlite3 *db, int rc, const char *op)
{
    const char *text = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = db ? sqlite3_system_errno(db) : 0;
    int prim = rc & 0xff;
    if (sys && (prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN)) {
        return fail(s, map_rc(rc), "%s: %s (%s)", op, text, strerror(sys));
    }
    return fail(s, map_rc(rc), "%s: %s", op, text);
}

/* ---- statements ---- */

static void bind_id(sqlite3_stmt *st, int col, const uint8_t id[16])
{
    sqlite3_bind_blob(st, col, id, 16, SQLITE_STATIC);
}

static void bind_u64(sqlite3_stmt *st, int col, uint64_t v)
{
    sqlite3_bind_int64(st, col, (sqlite3_int64)v);
}

static uint64_t col_u64(sqlite3_stmt *st, int col)
{
    return (uint64_t)sqlite3_column_int64(st, col);
}

/* Runs statement i to its end (rows ignored) and resets it. */
static int run(sqstore *s, int i, const char *op)
{
    int rc = sqlite3_step(s->stmt[i]);
    int ret = TETHER_OK;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ret = sqfail(s, s->db, rc, op);
    }
    sqlite3_reset(s->stmt[i]);
    return ret;
}

static int begin(sqstore *s, const char *op)
{
    return run(s, S_BEGIN, op);
}

/* Commits when rc is TETHER_OK, otherwise (or if COMMIT fails) rolls back. */
static int finish(sqstore *s, int rc, const char *op)
{
    if (rc == TETHER_OK) {
        rc = run(s, S_COMMIT, op);
        if (rc == TETHER_OK) {
            return TETHER_OK;
        }
    }
    /* SQLite may have rolled back by itself (SQLITE_FULL can do that). */
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->stmt[S_ROLLBACK]);
        sqlite3_reset(s->stmt[S_ROLLBACK]);
    }
    return rc;
}

/* Reads a session's record and pending totals (count, bytes may be NULL).
 * Returns TETHER_ENOTFOUND without recording a message, so callers decide. */
static int read_sess(sqstore *s, const uint8_t id[16], tether__session_rec *rec, uint64_t *count,
                     uint64_t *bytes, const char *op)
{
    sqlite3_stmt *st = s->stmt[S_GET];
    bind_id(st, 1, id);
    int rc = sqlite3_step(st);
    int ret = TETHER_OK;
    if (rc == SQLITE_ROW) {
        const void *token = sqlite3_column_blob(st, 0);
        int tlen = sqlite3_column_bytes(st, 0);
        if (tlen != 32) {
            ret = fail(s, TETHER_ESTORE_CORRUPT, "%s: the session's token has %d bytes", op, tlen);
        } else {
            memcpy(rec->id, id, 16);
            memcpy(rec->token, token, 32);
            rec->out_last = col_u64(st, 1);
            rec->peer_acked = col_u64(st, 2);
            rec->recv_cursor = col_u64(st, 3);
            rec->established = sqlite3_column_int(st, 4) != 0;
            if (count) {
                *count = col_u64(st, 5);
            }
            if (bytes) {
                *bytes = col_u64(st, 6);
            }
        }
    } else if (rc == SQLITE_DONE) {
        ret = TETHER_ENOTFOUND;
    } else {
        ret = sqfail(s, s->db, rc, op);
    }
    sqlite3_reset(st);
    return ret;
}

/* read_sess() for a session that must exist. */
static int need_sess(sqstore *s, const uint8_t id[16], tether__session_rec *rec, uint64_t *count,
                     uint64_t *bytes, const char *op)
{
    int rc = read_sess(s, id, rec, count, bytes, op);
    if (rc == TETHER_ENOTFOUND) {
        return fail(s, rc, "%s: no such session", op);
    }
    return rc;
}

static int rec_invalid(const tether__session_rec *rec)
{
    return rec->out_last > SEQ_MAX || rec->peer_acked > SEQ_MAX || rec->recv_cursor > SEQ_MAX ||
           rec->peer_acked > rec->out_last;
}

/* Inserts or updates a record (pending totals of a new session start at 0). */
static int write_rec(sqstore *s, const tether__session_rec *rec, const char *op)
{
    sqlite3_stmt *st = s->stmt[S_PUT];
    bind_id(st, 1, rec->id);
    sqlite3_bind_blob(st, 2, rec->token, 32, SQLITE_STATIC);
    bind_u64(st, 3, rec->out_last);
    bind_u64(st, 4, rec->peer_acked);
    bind_u64(st, 5, rec->recv_cursor);
    sqlite3_bind_int(st, 6, rec->established != 0);
    return run(s, S_PUT, op);
}

/* ---- operations ---- */

static int q_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    sqstore *s = (sqstore *)st;
    if (!id || !out) {
        return fail(s, TETHER_EINVAL, "session_get: invalid argument");
    }
    tether__session_rec rec;
    int rc = need_sess(s, id, &rec, NULL, NULL, "session_get");
    if (rc == TETHER_OK) {
        *out = rec;
    }
    return rc;
}

static int q_put(tether__store *st, const tether__session_rec *rec)
{
    static const char op[] = "session_put";
    sqstore *s = (sqstore *)st;
    if (!rec || rec_invalid(rec)) {
        return fail(s, TETHER_EINVAL, "%s: invalid record", op);
    }
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__session_rec cur;
    rc = read_sess(s, rec->id, &cur, NULL, NULL, op);
    if (rc == TETHER_OK) {
        /* The outbox stays: out_last may not fall below its last row. */
        sqlite3_stmt *q = s->stmt[S_LAST_SEQ];
        bind_id(q, 1, rec->id);
        int r = sqlite3_step(q);
        if (r != SQLITE_ROW) {
            rc = sqfail(s, s->db, r, op);
        } else if (sqlite3_column_type(q, 0) != SQLITE_NULL && col_u64(q, 0) > rec->out_last) {
            rc = fail(s, TETHER_EINVAL, "%s: out_last %llu is below the outbox's last seq %llu", op,
                      (unsigned long long)rec->out_last, (unsigned long long)col_u64(q, 0));
        }
        sqlite3_reset(q);
    } else if (rc == TETHER_ENOTFOUND) {
        rc = TETHER_OK;
    }
    if (rc == TETHER_OK) {
        rc = write_rec(s, rec, op);
    }
    return finish(s, rc, op);
}

static int q_delete(tether__store *st, const uint8_t id[16])
{
    static const char op[] = "session_delete";
    sqstore *s = (sqstore *)st;
    if (!id) {
        return fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    bind_id(s->stmt[S_DEL_SESS], 1, id);
    rc = run(s, S_DEL_SESS, op);
    if (rc == TETHER_OK && sqlite3_changes(s->db) == 0) {
        rc = fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    }
    if (rc == TETHER_OK) {
        bind_id(s->stmt[S_DEL_OUTBOX], 1, id);
        rc = run(s, S_DEL_OUTBOX, op);
    }
    return finish(s, rc, op);
}

static int q_list(tether__store *st, tether__list_cb cb, void *arg)
{
    static const char op[] = "session_list";
    sqstore *s = (sqstore *)st;
    if (!cb) {
        return fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    sqlite3_stmt *q = s->stmt[S_LIST];
    int rc, ret = TETHER_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        tether__session_rec rec;
        if (sqlite3_column_bytes(q, 0) != 16 || sqlite3_column_bytes(q, 1) != 32) {
            ret =
                fail(s, TETHER_ESTORE_CORRUPT, "%s: a session row has a malformed id or token", op);
            break;
        }
        memcpy(rec.id, sqlite3_column_blob(q, 0), 16);
        memcpy(rec.token, sqlite3_column_blob(q, 1), 32);
        rec.out_last = col_u64(q, 2);
        rec.peer_acked = col_u64(q, 3);
        rec.recv_cursor = col_u64(q, 4);
        rec.established = sqlite3_column_int(q, 5) != 0;
        if (cb(arg, &rec) != 0) {
            break;
        }
    }
    if (ret == TETHER_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = sqfail(s, s->db, rc, op);
    }
    sqlite3_reset(q);
    return ret;
}

/* append's work inside its transaction. */
static int append_tx(sqstore *s, const uint8_t id[16], const tether_msg *msgs, size_t n,
                     uint64_t total, uint64_t max_count, uint64_t max_bytes, uint64_t *first)
{
    static const char op[] = "append";
    tether__session_rec rec;
    uint64_t count, bytes;
    int rc = need_sess(s, id, &rec, &count, &bytes, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    *first = rec.out_last + 1;
    if (n == 0) {
        return TETHER_OK;
    }
    if (n > SEQ_MAX - rec.out_last) {
        return fail(s, TETHER_EINVAL, "%s: sequence numbers exhausted", op);
    }
    if (max_count && (n > max_count || count > max_count - n)) {
        return fail(s, TETHER_EOUTBOX_FULL,
                    "%s: the outbox holds %llu messages, %zu more would pass the cap of %llu", op,
                    (unsigned long long)count, n, (unsigned long long)max_count);
    }
    if (max_bytes && (total > max_bytes || bytes > max_bytes - total)) {
        return fail(s, TETHER_EOUTBOX_FULL,
                    "%s: the outbox holds %llu bytes, %llu more would pass the cap of %llu", op,
                    (unsigned long long)bytes, (unsigned long long)total,
                    (unsigned long long)max_bytes);
    }
    sqlite3_stmt *ins = s->stmt[S_INSERT];
    bind_id(ins, 1, id);
    for (size_t i = 0; i < n; i++) {
        bind_u64(ins, 2, rec.out_last + 1 + i);
        /* A NULL pointer would bind SQL NULL; an empty blob needs a real one. */
        int r = sqlite3_bind_blob64(ins, 3, msgs[i].len ? msgs[i].data : (const void *)"",
                                    msgs[i].len, SQLITE_STATIC);
        if (r != SQLITE_OK) {
            return sqfail(s, s->db, r, op);
        }
        rc = run(s, S_INSERT, op);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    sqlite3_stmt *up = s->stmt[S_APPENDED];
    bind_id(up, 1, id);
    bind_u64(up, 2, rec.out_last + n);
    bind_u64(up, 3, n);
    bind_u64(up, 4, total);
    return run(s, S_APPENDED, op);
}

static int q_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    static const char op[] = "append";
    sqstore *s = (sqstore *)st;
    if (!id || !first_seq || (n && !msgs)) {
        return fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len) {
            return fail(s, TETHER_EINVAL, "%s: message %zu has no data", op, i);
        }
        total = msgs[i].len > UINT64_MAX - total ? UINT64_MAX : total + msgs[i].len;
    }
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    uint64_t first = 0;
    rc = finish(s, append_tx(s, id, msgs, n, total, max_count, max_bytes, &first), op);
    if (rc == TETHER_OK) {
        *first_seq = first;
    }
    return rc;
}

static int q_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    static const char op[] = "load";
    sqstore *s = (sqstore *)st;
    if (!id || !cb) {
        return fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    tether__session_rec rec;
    int rc = need_sess(s, id, &rec, NULL, NULL, op);
    if (rc != TETHER_OK || max_count == 0 || from_seq > SEQ_MAX) {
        return rc;
    }
    sqlite3_stmt *q = s->stmt[S_LOAD];
    bind_id(q, 1, id);
    bind_u64(q, 2, from_seq);
    bind_u64(q, 3, max_count > SEQ_MAX ? SEQ_MAX : (uint64_t)max_count);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1);
        if (cb(arg, col_u64(q, 0), data ? data : "", len) != 0) {
            break;
        }
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE) {
        rc = sqfail(s, s->db, r, op);
    }
    sqlite3_reset(q);
    return rc;
}

/* ack's work inside its transaction. */
static int ack_tx(sqstore *s, const uint8_t id[16], uint64_t seq)
{
    static const char op[] = "ack";
    tether__session_rec rec;
    int rc = need_sess(s, id, &rec, NULL, NULL, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (seq > rec.out_last) {
        return fail(s, TETHER_EINVAL, "%s: seq %llu was never sent (out_last %llu)", op,
                    (unsigned long long)seq, (unsigned long long)rec.out_last);
    }
    sqlite3_stmt *q = s->stmt[S_SUM];
    bind_id(q, 1, id);
    bind_u64(q, 2, seq);
    int r = sqlite3_step(q);
    uint64_t n = 0, bytes = 0;
    if (r == SQLITE_ROW) {
        n = col_u64(q, 0);
        bytes = col_u64(q, 1);
    } else {
        rc = sqfail(s, s->db, r, op);
    }
    sqlite3_reset(q);
    if (rc != TETHER_OK || (n == 0 && seq <= rec.peer_acked)) {
        return rc;
    }
    if (n) {
        bind_id(s->stmt[S_PRUNE], 1, id);
        bind_u64(s->stmt[S_PRUNE], 2, seq);
        rc = run(s, S_PRUNE, op);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    sqlite3_stmt *up = s->stmt[S_ACKED];
    bind_id(up, 1, id);
    bind_u64(up, 2, seq);
    bind_u64(up, 3, n);
    bind_u64(up, 4, bytes);
    return run(s, S_ACKED, op);
}

static int q_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    sqstore *s = (sqstore *)st;
    if (!id || seq > SEQ_MAX) {
        return fail(s, TETHER_EINVAL, "ack: invalid argument");
    }
    int rc = begin(s, "ack");
    if (rc != TETHER_OK) {
        return rc;
    }
    return finish(s, ack_tx(s, id, seq), "ack");
}

static int q_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    static const char op[] = "set_cursor";
    sqstore *s = (sqstore *)st;
    if (!id || cursor > SEQ_MAX) {
        return fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    /* One statement in autocommit mode: a transaction of its own. */
    bind_id(s->stmt[S_CURSOR], 1, id);
    bind_u64(s->stmt[S_CURSOR], 2, cursor);
    int rc = run(s, S_CURSOR, op);
    if (rc == TETHER_OK && sqlite3_changes(s->db) == 0) {
        rc = fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    }
    return rc;
}

static int q_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    sqstore *s = (sqstore *)st;
    if (!id || !count || !bytes) {
        return fail(s, TETHER_EINVAL, "pending: invalid argument");
    }
    tether__session_rec rec;
    uint64_t c, b;
    int rc = need_sess(s, id, &rec, &c, &b, "pending");
    if (rc == TETHER_OK) {
        *count = c;
        *bytes = b;
    }
    return rc;
}

/* rebase's work inside its transaction. */
static int rebase_tx(sqstore *s, const uint8_t old_id[16], const tether__session_rec *nrec,
                     uint64_t skip)
{
    static const char op[] = "rebase";
    tether__session_rec old, other;
    int rc = need_sess(s, old_id, &old, NULL, NULL, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (skip > old.out_last || nrec->out_last != old.out_last - skip) {
        return fail(s, TETHER_EINVAL, "%s: new out_last %llu is not %llu - %llu", op,
                    (unsigned long long)nrec->out_last, (unsigned long long)old.out_last,
                    (unsigned long long)skip);
    }
    rc = read_sess(s, nrec->id, &other, NULL, NULL, op);
    if (rc == TETHER_OK) {
        return fail(s, TETHER_EINVAL, "%s: the new session id is already in use", op);
    }
    if (rc != TETHER_ENOTFOUND) {
        return rc;
    }
    rc = write_rec(s, nrec, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    sqlite3_stmt *mv = s->stmt[S_MOVE];
    bind_id(mv, 1, old_id);
    bind_id(mv, 2, nrec->id);
    bind_u64(mv, 3, skip);
    if ((rc = run(s, S_MOVE, op)) != TETHER_OK) {
        return rc;
    }
    bind_id(s->stmt[S_DEL_OUTBOX], 1, old_id);
    if ((rc = run(s, S_DEL_OUTBOX, op)) != TETHER_OK) {
        return rc;
    }
    bind_id(s->stmt[S_DEL_SESS], 1, old_id);
    if ((rc = run(s, S_DEL_SESS, op)) != TETHER_OK) {
        return rc;
    }
    bind_id(s->stmt[S_RECOUNT], 1, nrec->id);
    return run(s, S_RECOUNT, op);
}

static int q_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *new_rec,
                    uint64_t skip)
{
    sqstore *s = (sqstore *)st;
    if (!old_id || !new_rec || rec_invalid(new_rec) || memcmp(old_id, new_rec->id, 16) == 0) {
        return fail(s, TETHER_EINVAL, "rebase: invalid argument");
    }
    int rc = begin(s, "rebase");
    if (rc != TETHER_OK) {
        return rc;
    }
    return finish(s, rebase_tx(s, old_id, new_rec, skip), "rebase");
}

static const char *q_errmsg(tether__store *st)
{
    sqstore *s = (sqstore *)st;
    return s->msg[0] ? s->msg : "no error";
}

/* ---- the checkpointer ---- */

/* Waits until no checkpoint of ours runs, then claims the next one. */
static void claim_locked(ckpt *c)
{
    while (c->running) {
        pthread_cond_wait(&c->done, &c->mu);
    }
    c->running = 1;
}

static void release_locked(ckpt *c)
{
    c->running = 0;
    pthread_cond_broadcast(&c->done);
}

/* Called by SQLite on the writing connection after every commit. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    ckpt *c = arg;
    int mine = 0;
    pthread_mutex_lock(&c->mu);
    if (pages < c->ck_pages) {
        c->ck_pages = 0; /* the WAL started over */
    }
    int hard = pages >= 0 && (unsigned)pages >= c->hard_pages;
    int urgent = !hard && pages >= 0 && (unsigned)(pages - c->ck_pages) >= c->soft_pages;
    int wake = !c->dirty || (urgent && !c->now);
    c->wal_pages = pages;
    c->dirty = 1;
    c->now = c->now || urgent;
    if (wake) {
        pthread_cond_signal(&c->cv);
    }
    if (hard && (!c->running || (unsigned)pages >= 2 * c->hard_pages)) {
        /* Past 2 * hard_pages, wait for the thread's checkpoint to end. */
        claim_locked(c);
        mine = 1;
    }
    pthread_mutex_unlock(&c->mu);
    if (mine) {
        /* The writer catches up itself: see the top of this file. */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        release_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *ck_main(void *arg)
{
    ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (c->now && c->wal_pages >= 0 && (unsigned)c->wal_pages >= c->hard_pages) {
            c->now = 0; /* the writer catches up itself: stay out of its way */
        }
        if (!c->now && !c->dirty) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        if (!c->now) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_sec += c->period_ms / 1000;
            dl.tv_nsec += (long)(c->period_ms % 1000) * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            while (!c->stop && !c->now) {
                if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0) {
                    break;
                }
            }
            if (c->now) {
                continue; /* look again: below or above hard_pages? */
            }
            if (c->stop) {
                break;
            }
        }
        claim_locked(c);
        c->ck_pages = c->wal_pages;
        c->now = 0;
        c->dirty = 0;
        pthread_mutex_unlock(&c->mu);
        /* Errors (a full disk, say) are left for the next round. */
        sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        release_locked(c);
        c->runs++;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void ck_stop(ckpt *c)
{
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        c->started = 0;
    }
    sqlite3_close(c->db);
    c->db = NULL;
}

/* ---- open and close ---- */

static void close_db(sqstore *s)
{
    for (int i = 0; i < N_STMT; i++) {
        sqlite3_finalize(s->stmt[i]);
        s->stmt[i] = NULL;
    }
    sqlite3_close(s->db);
    s->db = NULL;
}

static void q_close(tether__store *st)
{
    sqstore *s = (sqstore *)st;
    if (!s) {
        return;
    }
    ck_stop(&s->ck);
    close_db(s);
    pthread_cond_destroy(&s->ck.cv);
    pthread_cond_destroy(&s->ck.done);
    pthread_mutex_destroy(&s->ck.mu);
    free(s->path);
    free(s);
}

/* Opens a connection to s->path with the given SQLITE_OPEN_* access flag. */
static int connect_db(sqstore *s, sqlite3 **out, int access, const char *op)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(s->path, &db, access | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sqfail(s, db, rc, op);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    *out = db;
    return TETHER_OK;
}

static int exec(sqstore *s, sqlite3 *db, const char *sql, const char *op)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? TETHER_OK : sqfail(s, db, rc, op);
}

/* Runs a query returning one integer. */
static int query_int(sqstore *s, const char *sql, sqlite3_int64 *out, const char *op)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(q, 0);
            rc = SQLITE_OK;
        }
    }
    int ret = rc == SQLITE_OK ? TETHER_OK : sqfail(s, s->db, rc, op);
    sqlite3_finalize(q);
    return ret;
}

static const char *role_name(tether__store_role role)
{
    return role == TETHER__ROLE_SERVER ? "server" : "client";
}

/* Checks the role recorded in a schema-1 database. */
static int check_role(sqstore *s, const char *op)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'role'", -1, &q, NULL);
    if (rc != SQLITE_OK) {
        int ret = (rc & 0xff) == SQLITE_ERROR
                      ? fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (%s)", op,
                             sqlite3_errmsg(s->db))
                      : sqfail(s, s->db, rc, op);
        sqlite3_finalize(q);
        return ret;
    }
    int ret = TETHER_OK;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *have = (const char *)sqlite3_column_text(q, 0);
        if (!have || strcmp(have, role_name(s->role)) != 0) {
            ret = fail(s, TETHER_ESTORE_SCHEMA, "%s: the database belongs to a tether %s, not a %s",
                       op, have ? have : "(none)", role_name(s->role));
        }
    } else if (rc == SQLITE_DONE) {
        ret = fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (no role recorded)", op);
    } else {
        ret = sqfail(s, s->db, rc, op);
    }
    sqlite3_finalize(q);
    return ret;
}

/* Creates the schema in an empty database, or checks the one that is there. */
static int schema(sqstore *s, const char *op)
{
    int rc = exec(s, s->db, "BEGIN IMMEDIATE", op);
    if (rc != TETHER_OK) {
        return rc;
    }
    sqlite3_int64 version = 0, objects = 0;
    rc = query_int(s, "PRAGMA user_version", &version, op);
    if (rc == TETHER_OK && version > TETHER__STORE_SCHEMA_VERSION) {
        rc =
            fail(s, TETHER_ESTORE_SCHEMA, "%s: database schema %lld is newer than this tether (%d)",
                 op, (long long)version, TETHER__STORE_SCHEMA_VERSION);
    } else if (rc == TETHER_OK && version < 0) {
        rc = fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema %lld", op,
                  (long long)version);
    } else if (rc == TETHER_OK && version == 0) {
        rc = query_int(s, "SELECT count(*) FROM sqlite_master", &objects, op);
        if (rc == TETHER_OK && objects != 0) {
            rc = fail(s, TETHER_ESTORE_SCHEMA,
                      "%s: a SQLite database that is not a tether store (schema 0, %lld objects)",
                      op, (long long)objects);
        }
        if (rc == TETHER_OK) {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "INSERT INTO meta(key, value) VALUES ('role', '%s'); PRAGMA user_version = %d",
                     role_name(s->role), TETHER__STORE_SCHEMA_VERSION);
            rc = exec(s, s->db, schema_sql, op);
            if (rc == TETHER_OK) {
                rc = exec(s, s->db, sql, op);
            }
        }
    } else if (rc == TETHER_OK) {
        rc = check_role(s, op);
    }
    if (rc == TETHER_OK) {
        return exec(s, s->db, "COMMIT", op);
    }
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static int prepare_all(sqstore *s, const char *op)
{
    for (int i = 0; i < N_STMT; i++) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                    NULL);
        if (rc != SQLITE_OK) {
            if ((rc & 0xff) == SQLITE_ERROR) {
                /* Tables or columns are not what schema 1 has. */
                return fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema (%s)", op,
                            sqlite3_errmsg(s->db));
            }
            return sqfail(s, s->db, rc, op);
        }
    }
    return TETHER_OK;
}

/* Creates the file with mode 0600 if it does not exist; SQLite gives the
 * -wal and -shm files the mode of the database file. */
static int create_file(sqstore *s, const char *op)
{
    int fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return TETHER_OK;
    }
    if (errno == EROFS || errno == EACCES || errno == EPERM) {
        return fail(s, TETHER_ESTORE_READONLY, "%s: cannot create the file: %s", op,
                    strerror(errno));
    }
    /* Anything else (EEXIST, a missing directory) is left to sqlite3_open_v2(),
     * which then reports it in its own words. */
    return TETHER_OK;
}

static int open_all(sqstore *s, unsigned flags)
{
    char op[320];
    snprintf(op, sizeof op, "open %s", s->path);
    int readonly = (flags & TETHER__SQLITE_READONLY) != 0;
    int rc = readonly ? TETHER_OK : create_file(s, op);
    if (rc == TETHER_OK) {
        rc = connect_db(s, &s->db, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    /* SQLite opens an unwritable file read-only without saying so. */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        return fail(s, TETHER_ESTORE_READONLY, "%s: the database file is read-only", op);
    }
    sqlite3_stmt *q = NULL;
    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
    }
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(q, 0);
        rc = mode && strcmp(mode, "wal") == 0
                 ? TETHER_OK
                 : fail(s, TETHER_ESTORE, "%s: cannot use WAL mode (journal mode is %s)", op,
                        mode ? mode : "unknown");
    } else {
        rc = sqfail(s, s->db, rc, op);
    }
    sqlite3_finalize(q);
    if (rc != TETHER_OK) {
        return rc;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %d; PRAGMA journal_size_limit = %d", s->sync,
             WAL_SIZE_LIMIT);
    if ((rc = exec(s, s->db, sql, op)) != TETHER_OK || (rc = schema(s, op)) != TETHER_OK ||
        (rc = prepare_all(s, op)) != TETHER_OK) {
        return rc;
    }
    /* The checkpointer: see the top of this file. The WAL hook replaces
     * SQLite's automatic checkpoint on the writing connection. */
    sqlite3_wal_autocheckpoint(s->db, 0);
    sqlite3_wal_hook(s->db, on_wal, &s->ck);
    if ((rc = connect_db(s, &s->ck.db, SQLITE_OPEN_READWRITE, op)) != TETHER_OK) {
        return rc;
    }
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %d", s->sync);
    if ((rc = exec(s, s->ck.db, sql, op)) != TETHER_OK) {
        return rc;
    }
    if (pthread_create(&s->ck.thread, NULL, ck_main, &s->ck) != 0) {
        return fail(s, TETHER_ESYS, "%s: cannot start the checkpoint thread", op);
    }
    s->ck.started = 1;
    return TETHER_OK;
}

int tether__store_sqlite_open_flags(const char *path, tether__store_role role,
                                    tether_durability durability, unsigned flags,
                                    tether__store **out, char *errbuf, size_t errlen)
{
    static const int sync_of[] = {
        [TETHER_DURABILITY_DEFAULT] = 1,
        [TETHER_DURABILITY_OFF] = 0,
        [TETHER_DURABILITY_NORMAL] = 1,
        [TETHER_DURABILITY_FULL] = 2,
    };
    if (errbuf && errlen) {
        errbuf[0] = '\0';
    }
    if (out) {
        *out = NULL;
    }
    if (!out || !path || !*path || (role != TETHER__ROLE_CLIENT && role != TETHER__ROLE_SERVER) ||
        (unsigned)durability > TETHER_DURABILITY_FULL) {
        int rc = tether__fail(TETHER_EINVAL, "store_sqlite_open: invalid argument");
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open: invalid argument");
        }
        return rc;
    }
    sqstore *s = calloc(1, sizeof *s);
    char *dup = strdup(path);
    pthread_condattr_t ca;
    if (!s || !dup || pthread_condattr_init(&ca) != 0) {
        free(s);
        free(dup);
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open: out of memory");
        }
        return tether__fail(TETHER_ENOMEM, "store_sqlite_open: out of memory");
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ck.cv, &ca);
    pthread_cond_init(&s->ck.done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->ck.mu, NULL);
    s->base.ops = &sqlite_ops;
    s->path = dup;
    s->role = role;
    s->sync = sync_of[durability];
    s->ck.soft_pages = CKPT_SOFT_PAGES;
    s->ck.hard_pages = CKPT_HARD_PAGES;
    s->ck.period_ms = CKPT_PERIOD_MS;
    int rc = open_all(s, flags);
    if (rc != TETHER_OK) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s", s->msg);
        }
        q_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return TETHER_OK;
}

int tether__store_sqlite_open(const char *path, tether__store_role role,
                              tether_durability durability, tether__store **out, char *errbuf,
                              size_t errlen)
{
    return tether__store_sqlite_open_flags(path, role, durability, 0, out, errbuf, errlen);
}

static const tether__store_ops sqlite_ops = {
    .session_get = q_get,
    .session_put = q_put,
    .session_delete = q_delete,
    .session_list = q_list,
    .append = q_append,
    .load = q_load,
    .ack = q_ack,
    .set_cursor = q_set_cursor,
    .pending = q_pending,
    .rebase = q_rebase,
    .errmsg = q_errmsg,
    .close = q_close,
};

/* ---- test hooks (store_sqlite.h) ---- */

static sqstore *as_sqlite(tether__store *st)
{
    return st && st->ops == &sqlite_ops ? (sqstore *)st : NULL;
}

sqlite3 *tether__store_sqlite_handle(tether__store *st)
{
    sqstore *s = as_sqlite(st);
    return s ? s->db : NULL;
}

int tether__store_sqlite_set_max_pages(tether__store *st, unsigned pages)
{
    sqstore *s = as_sqlite(st);
    if (!s) {
        return TETHER_EINVAL;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %u", pages);
    return exec(s, s->db, sql, "set_max_pages");
}

int tether__store_sqlite_reopen_readonly(tether__store *st)
{
    sqstore *s = as_sqlite(st);
    if (!s) {
        return TETHER_EINVAL;
    }
    close_db(s);
    int rc = connect_db(s, &s->db, SQLITE_OPEN_READONLY, "reopen_readonly");
    if (rc == TETHER_OK) {
        rc = prepare_all(s, "reopen_readonly");
    }
    return rc;
}

void tether__store_sqlite_set_checkpoint(tether__store *st, unsigned soft_pages,
                                         unsigned hard_pages, unsigned period_ms)
{
    sqstore *s = as_sqlite(st);
    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->ck.mu);
    s->ck.soft_pages = soft_pages ? soft_pages : 1;
    s->ck.hard_pages = hard_pages ? hard_pages : 1;
    s->ck.period_ms = period_ms;
    pthread_mutex_unlock(&s->ck.mu);
}

unsigned long tether__store_sqlite_checkpoints(tether__store *st)
{
    sqstore *s = as_sqlite(st);
    if (!s) {
        return 0;
    }
    pthread_mutex_lock(&s->ck.mu);
    unsigned long runs = s->ck.runs;
    pthread_mutex_unlock(&s->ck.mu);
    return runs;
}

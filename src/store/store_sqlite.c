/*
 * The SQLite store: sessions and their outboxes in one SQLite file, WAL mode.
 *
 * Schema 2 (PRAGMA user_version holds the number):
 *   meta(key, value)        'role' -> 'client' or 'server'; 'unsaved' -> 1 while
 *                           session rows may lag their outbox (see "out_last")
 *   sessions(id PRIMARY KEY, token, out_last, peer_acked, recv_cursor, established,
 *            pending_count, pending_bytes)                       WITHOUT ROWID
 *   outbox(session, seq, payload, PRIMARY KEY(session, seq))      WITHOUT ROWID
 *   verdicts(key PRIMARY KEY, until_ms, probes_failed)           WITHOUT ROWID
 *                           (schema 2; a schema-1 file gets it at its first
 *                           read-write open; store_sqlite_verdict.c)
 * pending_count/pending_bytes mirror what a session's outbox rows hold, so the
 * cap check of append is a row read instead of a COUNT(*) over the outbox.
 *
 * out_last: one append should write one page (the outbox leaf), not two, so
 * append does not rewrite the session row each time. The row's out_last,
 * pending_count and pending_bytes are as of the last time the row was written,
 * and the outbox rows with a higher seq are the ones appended since:
 *   true out_last = max(row out_last, max(seq) of the outbox)
 *   true pending  = row pending + the count and bytes of rows above row out_last
 * Every read (S_GET, S_LIST, inspect) computes that. The row is written with the
 * true values whenever rows are deleted (ack, rebase: in the same transaction,
 * so a seq is never handed out twice, even once everything was acked and
 * pruned), by session_put, by an append that found no cached truth (below) or
 * that leaves SAVE_EVERY rows unsaved (so a read scans at most that many rows
 * beyond the row), and at close (all rows that lag: S_SETTLE). The connection
 * caches the truth of the last session it wrote (tail_*), which spares append
 * and ack the reads; any failed operation, put, delete and rebase forget it.
 * meta 'unsaved' is set by the first append of a connection's life that leaves
 * its row behind and cleared by close once every row is settled: while it is
 * absent, the session rows alone are the truth (inspect reads nothing else).
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
#include "store_sqlite_int.h"

/* ---- errors ---- */

int tether__sq_map_rc(int rc)
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

int tether__sq_fail(sqstore *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    return tether__fail(code, "%s", s->msg);
}

/* A SQLite failure rc of operation op: maps the code, keeps SQLite's words. */
int tether__sq_sqfail(sqstore *s, sqlite3 *db, int rc, const char *op)
{
    const char *text = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = db ? sqlite3_system_errno(db) : 0;
    int prim = rc & 0xff;
    if (prim == SQLITE_CANTOPEN && (sys == EROFS || sys == EACCES || sys == EPERM)) {
        /* A file SQLite must create or write to read the database (the -shm
         * of a WAL that needs recovery) on a read-only file system. */
        return tether__sq_fail(s, TETHER_ESTORE_READONLY, "%s: %s (%s)", op, text, strerror(sys));
    }
    if (sys && (prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN)) {
        return tether__sq_fail(s, tether__sq_map_rc(rc), "%s: %s (%s)", op, text, strerror(sys));
    }
    return tether__sq_fail(s, tether__sq_map_rc(rc), "%s: %s", op, text);
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
        ret = tether__sq_sqfail(s, s->db, rc, op);
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

/* Reads a session's record and pending totals (count, bytes may be NULL), the
 * truth (see "out_last" above). Returns TETHER_ENOTFOUND without recording a
 * message, so callers decide. */
/* Whether meta 'unsaved' is set in the file (when in doubt: yes, derive). */
static int read_mark(sqstore *s)
{
    sqlite3_stmt *q = s->stmt[S_IS_MARKED];
    int marked = sqlite3_step(q) != SQLITE_ROW || sqlite3_column_int64(q, 0) != 0;
    sqlite3_reset(q);
    return marked;
}

int tether__sq_lagging(sqstore *s)
{
    return s->readonly ? read_mark(s) : s->marked;
}

void tether__sq_load_mark(sqstore *s)
{
    s->marked = read_mark(s);
}

static int read_sess(sqstore *s, const uint8_t id[16], tether__session_rec *rec, uint64_t *count,
                     uint64_t *bytes, const char *op)
{
    sqlite3_stmt *st = s->stmt[tether__sq_lagging(s) ? S_GET : S_GET_ROW];
    bind_id(st, 1, id);
    int rc = sqlite3_step(st);
    int ret = TETHER_OK;
    if (rc == SQLITE_ROW) {
        const void *token = sqlite3_column_blob(st, 0);
        int tlen = sqlite3_column_bytes(st, 0);
        if (tlen != 32) {
            ret = tether__sq_fail(s, TETHER_ESTORE_CORRUPT, "%s: the session's token has %d bytes", op, tlen);
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
        ret = tether__sq_sqfail(s, s->db, rc, op);
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
        return tether__sq_fail(s, rc, "%s: no such session", op);
    }
    return rc;
}

static int rec_invalid(const tether__session_rec *rec)
{
    return rec->out_last > SEQ_MAX || rec->peer_acked > SEQ_MAX || rec->recv_cursor > SEQ_MAX ||
           rec->peer_acked > rec->out_last;
}

/* Inserts or updates a record with its true pending totals. */
static int write_rec(sqstore *s, const tether__session_rec *rec, uint64_t count, uint64_t bytes,
                     const char *op)
{
    sqlite3_stmt *st = s->stmt[S_PUT];
    bind_id(st, 1, rec->id);
    sqlite3_bind_blob(st, 2, rec->token, 32, SQLITE_STATIC);
    bind_u64(st, 3, rec->out_last);
    bind_u64(st, 4, rec->peer_acked);
    bind_u64(st, 5, rec->recv_cursor);
    sqlite3_bind_int(st, 6, rec->established != 0);
    bind_u64(st, 7, count);
    bind_u64(st, 8, bytes);
    return run(s, S_PUT, op);
}

/* ---- operations ---- */

static int q_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    sqstore *s = (sqstore *)st;
    if (!id || !out) {
        return tether__sq_fail(s, TETHER_EINVAL, "session_get: invalid argument");
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
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid record", op);
    }
    s->tail_ok = 0;
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__session_rec cur;
    uint64_t count = 0, bytes = 0;
    rc = read_sess(s, rec->id, &cur, &count, &bytes, op);
    if (rc == TETHER_OK) {
        /* The outbox stays: out_last may not fall below its last row. */
        sqlite3_stmt *q = s->stmt[S_LAST_SEQ];
        bind_id(q, 1, rec->id);
        int r = sqlite3_step(q);
        if (r != SQLITE_ROW) {
            rc = tether__sq_sqfail(s, s->db, r, op);
        } else if (sqlite3_column_type(q, 0) != SQLITE_NULL && col_u64(q, 0) > rec->out_last) {
            rc = tether__sq_fail(s, TETHER_EINVAL, "%s: out_last %llu is below the outbox's last seq %llu", op,
                      (unsigned long long)rec->out_last, (unsigned long long)col_u64(q, 0));
        }
        sqlite3_reset(q);
    } else if (rc == TETHER_ENOTFOUND) {
        rc = TETHER_OK;
    }
    if (rc == TETHER_OK) {
        rc = write_rec(s, rec, count, bytes, op);
    }
    return finish(s, rc, op);
}

static int q_delete(tether__store *st, const uint8_t id[16])
{
    static const char op[] = "session_delete";
    sqstore *s = (sqstore *)st;
    if (!id) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    s->tail_ok = 0;
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    bind_id(s->stmt[S_DEL_SESS], 1, id);
    rc = run(s, S_DEL_SESS, op);
    if (rc == TETHER_OK && sqlite3_changes(s->db) == 0) {
        rc = tether__sq_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
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
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    sqlite3_stmt *q = s->stmt[tether__sq_lagging(s) ? S_LIST : S_LIST_ROWS];
    int rc, ret = TETHER_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        tether__session_rec rec;
        if (sqlite3_column_bytes(q, 0) != 16 || sqlite3_column_bytes(q, 1) != 32) {
            ret =
                tether__sq_fail(s, TETHER_ESTORE_CORRUPT, "%s: a session row has a malformed id or token", op);
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
        ret = tether__sq_sqfail(s, s->db, rc, op);
    }
    sqlite3_reset(q);
    return ret;
}

/* The cached truth of session id, or 0. */
static int tail_of(const sqstore *s, const uint8_t id[16])
{
    return s->tail_ok && memcmp(s->tail_id, id, 16) == 0;
}

/* Caches the truth of session id (after a commit). */
static void tail_set(sqstore *s, const uint8_t id[16], const tether__session_rec *rec,
                     uint64_t count, uint64_t bytes, uint64_t unsaved)
{
    memcpy(s->tail_id, id, 16);
    s->tail_out_last = rec->out_last;
    s->tail_acked = rec->peer_acked;
    s->tail_count = count;
    s->tail_bytes = bytes;
    s->tail_unsaved = unsaved;
    s->tail_ok = 1;
}

/* The truth of session id, from the cache or read; *unsaved: the rows above
 * the session row's out_last as far as the cache knows. */
static int truth(sqstore *s, const uint8_t id[16], tether__session_rec *rec, uint64_t *count,
                 uint64_t *bytes, uint64_t *unsaved, const char *op)
{
    if (tail_of(s, id)) {
        memset(rec, 0, sizeof *rec);
        rec->out_last = s->tail_out_last;
        rec->peer_acked = s->tail_acked;
        *count = s->tail_count;
        *bytes = s->tail_bytes;
        *unsaved = s->tail_unsaved;
        return TETHER_OK;
    }
    int rc = need_sess(s, id, rec, count, bytes, op);
    /* read, not cached: the next write of the row is due at once, so that no
     * read ever scans more than SAVE_EVERY rows above it */
    *unsaved = SAVE_EVERY;
    return rc;
}

/* What append leaves behind, cached once its transaction committed. */
typedef struct appended {
    tether__session_rec rec; /* out_last and peer_acked after it */
    uint64_t count, bytes;   /* pending after it */
    uint64_t unsaved;        /* rows above the row's out_last after it */
} appended;

/* append's work inside its transaction. */
static int append_tx(sqstore *s, const uint8_t id[16], const tether_msg *msgs, size_t n,
                     uint64_t total, uint64_t max_count, uint64_t max_bytes, uint64_t *first,
                     appended *after)
{
    static const char op[] = "append";
    tether__session_rec rec;
    uint64_t count, bytes, unsaved;
    int rc = truth(s, id, &rec, &count, &bytes, &unsaved, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    *first = rec.out_last + 1;
    after->rec = rec;
    after->count = count;
    after->bytes = bytes;
    after->unsaved = unsaved;
    if (n == 0) {
        return TETHER_OK;
    }
    if (n > SEQ_MAX - rec.out_last) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: sequence numbers exhausted", op);
    }
    if (max_count && (n > max_count || count > max_count - n)) {
        return tether__sq_fail(s, TETHER_EOUTBOX_FULL,
                    "%s: the outbox holds %llu messages, %zu more would pass the cap of %llu", op,
                    (unsigned long long)count, n, (unsigned long long)max_count);
    }
    if (max_bytes && (total > max_bytes || bytes > max_bytes - total)) {
        return tether__sq_fail(s, TETHER_EOUTBOX_FULL,
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
            return tether__sq_sqfail(s, s->db, r, op);
        }
        rc = run(s, S_INSERT, op);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    after->rec.out_last = rec.out_last + n;
    after->count = count + n;
    after->bytes = bytes + total;
    after->unsaved = unsaved + n;
    if (after->unsaved < SAVE_EVERY) {
        /* one page: the row stays as it was (see "out_last"); the first time
         * in this connection's life, the mark says so to readers */
        return s->marked ? TETHER_OK : run(s, S_MARK, op);
    }
    after->unsaved = 0;
    sqlite3_stmt *up = s->stmt[S_APPENDED];
    bind_id(up, 1, id);
    bind_u64(up, 2, after->rec.out_last);
    bind_u64(up, 3, after->count);
    bind_u64(up, 4, after->bytes);
    return run(s, S_APPENDED, op);
}

static int q_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    static const char op[] = "append";
    sqstore *s = (sqstore *)st;
    if (!id || !first_seq || (n && !msgs)) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len) {
            return tether__sq_fail(s, TETHER_EINVAL, "%s: message %zu has no data", op, i);
        }
        total = msgs[i].len > UINT64_MAX - total ? UINT64_MAX : total + msgs[i].len;
    }
    int rc = begin(s, op);
    if (rc != TETHER_OK) {
        s->tail_ok = 0;
        return rc;
    }
    uint64_t first = 0;
    appended after;
    memset(&after, 0, sizeof after);
    rc = finish(s, append_tx(s, id, msgs, n, total, max_count, max_bytes, &first, &after), op);
    if (rc == TETHER_OK) {
        *first_seq = first;
        tail_set(s, id, &after.rec, after.count, after.bytes, after.unsaved);
        s->marked |= after.unsaved > 0;
    } else {
        s->tail_ok = 0;
    }
    return rc;
}

void tether__sq_settle(sqstore *s)
{
    if (!s->marked || s->readonly || !s->stmt[S_SETTLE]) {
        return;
    }
    /* on failure the mark stays: readers go on deriving the truth */
    int rc = begin(s, "close");
    if (rc == TETHER_OK) {
        rc = run(s, S_SETTLE, "close");
        if (rc == TETHER_OK) {
            rc = run(s, S_UNMARK, "close");
        }
        rc = finish(s, rc, "close");
    }
    if (rc == TETHER_OK) {
        s->marked = 0;
        s->tail_unsaved = 0;
    }
}

static int q_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    static const char op[] = "load";
    sqstore *s = (sqstore *)st;
    if (!id || !cb) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
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
        rc = tether__sq_sqfail(s, s->db, r, op);
    }
    sqlite3_reset(q);
    return rc;
}

/* ack's work inside its transaction; *after gets the truth it leaves. */
static int ack_tx(sqstore *s, const uint8_t id[16], uint64_t seq, appended *after)
{
    static const char op[] = "ack";
    tether__session_rec rec;
    uint64_t count, bytes, unsaved;
    int rc = truth(s, id, &rec, &count, &bytes, &unsaved, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    after->rec = rec;
    after->count = count;
    after->bytes = bytes;
    after->unsaved = unsaved; /* SAVE_EVERY when read: cached only once the row is written */
    if (seq > rec.out_last) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: seq %llu was never sent (out_last %llu)", op,
                    (unsigned long long)seq, (unsigned long long)rec.out_last);
    }
    sqlite3_stmt *q = s->stmt[S_SUM];
    bind_id(q, 1, id);
    bind_u64(q, 2, seq);
    int r = sqlite3_step(q);
    uint64_t n = 0, nbytes = 0;
    if (r == SQLITE_ROW) {
        n = col_u64(q, 0);
        nbytes = col_u64(q, 1);
    } else {
        rc = tether__sq_sqfail(s, s->db, r, op);
    }
    sqlite3_reset(q);
    if (rc != TETHER_OK || (n == 0 && seq <= rec.peer_acked)) {
        return rc; /* a stale ack: nothing changes (a cold read stays uncached) */
    }
    if (n) {
        bind_id(s->stmt[S_PRUNE], 1, id);
        bind_u64(s->stmt[S_PRUNE], 2, seq);
        rc = run(s, S_PRUNE, op);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    /* the row gets the whole truth: rows are deleted, so max(seq) may no longer
     * tell the out_last */
    after->rec.peer_acked = seq > rec.peer_acked ? seq : rec.peer_acked;
    after->count = count - n;
    after->bytes = bytes - nbytes;
    after->unsaved = 0;
    sqlite3_stmt *up = s->stmt[S_ACKED];
    bind_id(up, 1, id);
    bind_u64(up, 2, seq);
    bind_u64(up, 3, after->count);
    bind_u64(up, 4, after->bytes);
    bind_u64(up, 5, rec.out_last);
    return run(s, S_ACKED, op);
}

static int q_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    sqstore *s = (sqstore *)st;
    if (!id || seq > SEQ_MAX) {
        return tether__sq_fail(s, TETHER_EINVAL, "ack: invalid argument");
    }
    int rc = begin(s, "ack");
    if (rc != TETHER_OK) {
        s->tail_ok = 0;
        return rc;
    }
    appended after;
    memset(&after, 0, sizeof after);
    int cached = tail_of(s, id);
    rc = finish(s, ack_tx(s, id, seq, &after), "ack");
    if (rc != TETHER_OK) {
        s->tail_ok = 0;
    } else if (cached || after.unsaved == 0) {
        tail_set(s, id, &after.rec, after.count, after.bytes, after.unsaved);
    }
    return rc;
}

static int q_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    static const char op[] = "set_cursor";
    sqstore *s = (sqstore *)st;
    if (!id || cursor > SEQ_MAX) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    /* One statement in autocommit mode: a transaction of its own. */
    bind_id(s->stmt[S_CURSOR], 1, id);
    bind_u64(s->stmt[S_CURSOR], 2, cursor);
    int rc = run(s, S_CURSOR, op);
    if (rc == TETHER_OK && sqlite3_changes(s->db) == 0) {
        rc = tether__sq_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    }
    return rc;
}

static int q_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    sqstore *s = (sqstore *)st;
    if (!id || !count || !bytes) {
        return tether__sq_fail(s, TETHER_EINVAL, "pending: invalid argument");
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
        return tether__sq_fail(s, TETHER_EINVAL, "%s: new out_last %llu is not %llu - %llu", op,
                    (unsigned long long)nrec->out_last, (unsigned long long)old.out_last,
                    (unsigned long long)skip);
    }
    rc = read_sess(s, nrec->id, &other, NULL, NULL, op);
    if (rc == TETHER_OK) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: the new session id is already in use", op);
    }
    if (rc != TETHER_ENOTFOUND) {
        return rc;
    }
    rc = write_rec(s, nrec, 0, 0, op); /* S_RECOUNT below sets the totals */
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
        return tether__sq_fail(s, TETHER_EINVAL, "rebase: invalid argument");
    }
    int rc = begin(s, "rebase");
    if (rc != TETHER_OK) {
        return rc;
    }
    s->tail_ok = 0;
    return finish(s, rebase_tx(s, old_id, new_rec, skip), "rebase");
}

const char *tether__sq_errmsg(tether__store *st)
{
    sqstore *s = (sqstore *)st;
    return s->msg[0] ? s->msg : "no error";
}

const tether__store_ops tether__sqlite_ops = {
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
    .errmsg = tether__sq_errmsg,
    .close = tether__sq_close,
    .inspect = tether__sq_inspect,
    .verdict_get = tether__sq_verdict_get,
    .verdict_put = tether__sq_verdict_put,
    .lease_take = tether__lease_single_take,
    .lease_release = tether__lease_single_release,
    .lease_renew = tether__lease_single_renew,
    .wake = tether__wake_single,
    .wait_wakes = tether__wait_wakes_single,
};

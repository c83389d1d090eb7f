/*
 * The PostgreSQL store: sessions and their outboxes in a PostgreSQL database,
 * through libpq, behind store.h.
 *
 * Schema 1 (tether_meta 'schema_version' holds the number; store_pg_open.c
 * creates it):
 *   tether_meta(key PRIMARY KEY, value)
 *   tether_sessions(role, id, token, out_last, peer_acked, recv_cursor,
 *                   established, pending_count, pending_bytes, PRIMARY KEY(role, id))
 *   tether_outbox(role, session, seq, payload, PRIMARY KEY(role, session, seq))
 * role is 1 (client) or 2 (server): a client's and a server's sessions may
 * share one database and never see each other, where SQLite gives each role a
 * file of its own. pending_count/pending_bytes mirror the outbox rows, as in
 * the SQLite store, so that append checks its caps without counting rows.
 *
 * One round trip per operation. Every operation but rebase is one statement
 * (writes of several tables are data-modifying WITH queries), and one
 * statement is one transaction: it commits whole or not at all, so a failure
 * leaves the store unchanged. append sends its whole batch as one bytea[]
 * parameter, expanded by unnest() into a multi-row INSERT; the caps, the
 * session's existence and the seq range are conditions of the same UPDATE
 * that assigns the seqs, and only when it matches no row does a second query
 * find out why (a refused append is rare). rebase, rare too, is an explicit
 * transaction of several statements, rolled back on any failure. Parameters
 * and results travel in binary. list() pages through the sessions by id
 * inside one REPEATABLE READ transaction, so its callbacks see one snapshot
 * and memory stays bounded by the page; load() pages the same way.
 *
 * append, with the handling of a connection lost under it, is in
 * store_pg_append.c.
 *
 * A lost connection: the operation that meets it fails with TETHER_ESTORE
 * (the message names the server and says the connection was lost); the next
 * operation reconnects once, prepares the statements again and goes on, or
 * fails with TETHER_ESTORE if the server is still away (docs/decisions.md,
 * "PostgreSQL store"). A write whose connection broke after the server
 * received it may nevertheless have committed. For append, the one where
 * that matters, the store reconnects at once and reads the session's
 * last_op, which each append sets to its own id: committed, append returns
 * TETHER_OK after all; not, TETHER_ESTORE with nothing stored. Other writes
 * only move forward (cursor, ack) or are repeated whole (put, delete), and
 * their message says the outcome is unknown.
 *
 * Callbacks of load() and list() must not call back into the store.
 */
#include "common/alloc.h"
#include "store_pg_int.h"

/* ---- errors ---- */

int tether__pg_fail(pgstore *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    return tether__fail(code, "%s", s->msg);
}

int tether__pg_map_state(const char *st)
{
    if (!st || strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0) {
        return TETHER_ESTORE; /* the connection or the server went away */
    }
    if (strcmp(st, "55P03") == 0) {
        return TETHER_ESTORE; /* lock_not_available: another connection held a row too long */
    }
    if (strcmp(st, "53100") == 0) {
        return TETHER_ESTORE_FULL; /* disk_full */
    }
    if (strcmp(st, "25006") == 0) {
        return TETHER_ESTORE_READONLY; /* read_only_sql_transaction: a standby */
    }
    if (strncmp(st, "XX00", 4) == 0 && (st[4] == '1' || st[4] == '2')) {
        return TETHER_ESTORE_CORRUPT; /* data_corrupted, index_corrupted */
    }
    if (strcmp(st, "42P01") == 0 || strcmp(st, "42703") == 0) {
        return TETHER_ESTORE_SCHEMA; /* a table or column of schema 1 is missing */
    }
    return TETHER_ESTORE;
}

/* The connection's message without its trailing newline. */
static void conn_text(pgstore *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s->conn ? PQerrorMessage(s->conn) : "no connection");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
    /* libpq's hints follow on lines of their own: one line for tether's messages */
    for (char *c = buf; *c; c++) {
        if (*c == '\n' || *c == '\t') {
            *c = ' ';
        }
    }
}

int tether__pg_qfail(pgstore *s, const PGresult *res, const char *op)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char text[320];
    if (!state || PQstatus(s->conn) != CONNECTION_OK) {
        conn_text(s, text, sizeof text);
        return tether__pg_fail(s, TETHER_ESTORE,
                               "%s: the connection to PostgreSQL at %s was lost (%s); a write may "
                               "or may not have committed; the next operation reconnects",
                               op, s->where, text);
    }
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return tether__pg_fail(s, tether__pg_map_state(state), "%s: PostgreSQL error %s: %s", op, state,
                           primary ? primary : "(no message)");
}

PGresult *tether__pg_exec(pgstore *s, int i, const params *p, const char *op, int *rc)
{
    char name[16];
    snprintf(name, sizeof name, "tether_%d", i);
    PGresult *r = PQexecPrepared(s->conn, name, p->n, p->val, p->len, p->fmt, 1);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = TETHER_OK;
        return r;
    }
    *rc = tether__pg_qfail(s, r, op);
    PQclear(r);
    return NULL;
}

/* Runs a statement without parameters or results (BEGIN, COMMIT, ROLLBACK). */
static int simple(pgstore *s, const char *sql, const char *op)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = r && PQresultStatus(r) == PGRES_COMMAND_OK ? TETHER_OK : tether__pg_qfail(s, r, op);
    PQclear(r);
    return rc;
}

/* Ends an explicit transaction: COMMIT when rc is TETHER_OK, else ROLLBACK. */
static int finish(pgstore *s, int rc, const char *op)
{
    if (rc == TETHER_OK) {
        return simple(s, "COMMIT", op);
    }
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
    }
    return rc;
}

/* ---- sessions ---- */

static int rec_invalid(const tether__session_rec *rec)
{
    return rec->out_last > PG_SEQ_MAX || rec->peer_acked > PG_SEQ_MAX ||
           rec->recv_cursor > PG_SEQ_MAX || rec->peer_acked > rec->out_last;
}

/* Reads a session's record and pending totals (count, bytes may be NULL), with
 * P_GET or P_GET_LOCK. TETHER_ENOTFOUND is returned with a message naming op. */
int tether__pg_read_sess(pgstore *s, int stmt, const uint8_t id[16], tether__session_rec *rec,
                         uint64_t *count, uint64_t *bytes, const char *op)
{
    params p;
    p_key(&p, s, id);
    int rc;
    PGresult *r = tether__pg_exec(s, stmt, &p, op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    } else if (PQgetlength(r, 0, 0) != 32) {
        rc = tether__pg_fail(s, TETHER_ESTORE_CORRUPT, "%s: the session's token has %d bytes", op,
                             PQgetlength(r, 0, 0));
    } else {
        memcpy(rec->id, id, 16);
        memcpy(rec->token, PQgetvalue(r, 0, 0), 32);
        rec->out_last = col_u64(r, 0, 1);
        rec->peer_acked = col_u64(r, 0, 2);
        rec->recv_cursor = col_u64(r, 0, 3);
        rec->established = PQgetlength(r, 0, 4) == 1 && PQgetvalue(r, 0, 4)[0] != 0;
        if (count) {
            *count = col_u64(r, 0, 5);
        }
        if (bytes) {
            *bytes = col_u64(r, 0, 6);
        }
    }
    PQclear(r);
    return rc;
}

static int g_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    static const char op[] = "session_get";
    pgstore *s = (pgstore *)st;
    if (!id || !out) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    tether__session_rec rec;
    if (rc == TETHER_OK &&
        (rc = tether__pg_read_sess(s, P_GET, id, &rec, NULL, NULL, op)) == TETHER_OK) {
        *out = rec;
    }
    return rc;
}

/* The record's columns after the key: $3 token .. $7 established. */
static void p_rec(params *p, const tether__session_rec *rec)
{
    p_bytes(p, rec->token, 32);
    p_i64(p, rec->out_last);
    p_i64(p, rec->peer_acked);
    p_i64(p, rec->recv_cursor);
    p_int(p, rec->established != 0, 1);
}

static int g_put(tether__store *st, const tether__session_rec *rec)
{
    static const char op[] = "session_put";
    pgstore *s = (pgstore *)st;
    if (!rec || rec_invalid(rec)) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid record", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, rec->id);
    p_rec(&p, rec);
    p_epoch(&p, s, rec->id);
    PGresult *r = tether__pg_exec(s, P_PUT, &p, op, &rc);
    if (!r) {
        return rc;
    }
    int written = PQntuples(r);
    PQclear(r);
    if (written) {
        return TETHER_OK;
    }
    /* refused: the outbox holds a seq above the new out_last */
    p_key(&p, s, rec->id);
    r = tether__pg_exec(s, P_LAST_SEQ, &p, op, &rc);
    if (!r) {
        return rc;
    }
    uint64_t last = PQntuples(r) ? col_u64(r, 0, 0) : 0;
    int exists = PQntuples(r) && !PQgetisnull(r, 0, 1);
    uint64_t theirs = exists ? col_u64(r, 0, 1) : 0, ours = tether__pg_lease_epoch(s, rec->id);
    PQclear(r);
    if (exists && theirs != ours) {
        return tether__pg_fenced(s, op, ours, theirs);
    }
    return tether__pg_fail(s, TETHER_EINVAL,
                           "%s: out_last %llu is below the outbox's last seq %llu", op,
                           (unsigned long long)rec->out_last, (unsigned long long)last);
}

static int g_delete(tether__store *st, const uint8_t id[16])
{
    static const char op[] = "session_delete";
    pgstore *s = (pgstore *)st;
    if (!id) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, id);
    p_epoch(&p, s, id);
    PGresult *r = tether__pg_exec(s, P_DELETE, &p, op, &rc);
    if (!r) {
        return rc;
    }
    if (col_u64(r, 0, 0) == 0 && col_u64(r, 0, 1) != 0) {
        rc = tether__pg_fail(s, TETHER_EFENCED,
                             "%s: another live instance holds the session's lease", op);
    } else if (col_u64(r, 0, 0) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    }
    PQclear(r);
    return rc;
}

/* One page of list(): calls cb for each row; *last gets the last id, *more
 * whether a full page came back, *stop whether cb asked to stop. */
static int list_page(pgstore *s, tether__list_cb cb, void *arg, uint8_t last[16], size_t *lastlen,
                     int *more, int *stop)
{
    static const char op[] = "session_list";
    params p;
    memset(&p, 0, sizeof p);
    p_int(&p, (uint64_t)s->role, 2);
    p_bytes(&p, last, *lastlen);
    p_i64(&p, PG_LIST_PAGE);
    int rc;
    PGresult *r = tether__pg_exec(s, P_LIST, &p, op, &rc);
    if (!r) {
        return rc;
    }
    int n = PQntuples(r);
    *more = n == PG_LIST_PAGE;
    for (int i = 0; i < n && !*stop; i++) {
        if (PQgetlength(r, i, 0) != 16 || PQgetlength(r, i, 1) != 32) {
            rc = tether__pg_fail(s, TETHER_ESTORE_CORRUPT,
                                 "%s: a session row has a malformed id or token", op);
            break;
        }
        tether__session_rec rec;
        memcpy(rec.id, PQgetvalue(r, i, 0), 16);
        memcpy(rec.token, PQgetvalue(r, i, 1), 32);
        rec.out_last = col_u64(r, i, 2);
        rec.peer_acked = col_u64(r, i, 3);
        rec.recv_cursor = col_u64(r, i, 4);
        rec.established = PQgetlength(r, i, 5) == 1 && PQgetvalue(r, i, 5)[0] != 0;
        memcpy(last, rec.id, 16);
        *lastlen = 16;
        *stop = cb(arg, &rec) != 0;
    }
    PQclear(r);
    return rc;
}

static int g_list(tether__store *st, tether__list_cb cb, void *arg)
{
    static const char op[] = "session_list";
    pgstore *s = (pgstore *)st;
    if (!cb) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc == TETHER_OK) {
        rc = simple(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t last[16];
    size_t lastlen = 0; /* the empty bytea sorts before every id */
    int more = 1, stop = 0;
    while (rc == TETHER_OK && more && !stop) {
        rc = list_page(s, cb, arg, last, &lastlen, &more, &stop);
    }
    /* read only: COMMIT and ROLLBACK are the same; finish() keeps rc */
    return finish(s, rc, op);
}

/* ---- outbox (append: store_pg_append.c) ---- */

static int load_page(pgstore *s, const uint8_t id[16], uint64_t from, uint64_t want,
                     tether__load_cb cb, void *arg, uint64_t *got, uint64_t *last, int *stop)
{
    static const char op[] = "load";
    params p;
    p_key(&p, s, id);
    p_i64(&p, from);
    p_i64(&p, want);
    int rc;
    PGresult *r = tether__pg_exec(s, P_LOAD, &p, op, &rc);
    if (!r) {
        return rc;
    }
    int rows = PQntuples(r);
    if (rows == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    }
    *got = 0;
    for (int i = 0; i < rows && !*stop; i++) {
        if (PQgetisnull(r, i, 0)) {
            break; /* the session exists and has nothing from from on */
        }
        *last = col_u64(r, i, 0);
        (*got)++;
        *stop = cb(arg, *last, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1)) != 0;
    }
    PQclear(r);
    return rc;
}

/* Rows come in pages of PG_LOAD_FIRST, doubling up to PG_LOAD_PAGE: a caller
 * that stops early (the engine fills one frame of at most 64 KiB from a
 * window's worth of seqs) has fetched at most twice what it used, and a long
 * backlog still streams in few round trips with bounded memory. */
static int g_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    static const char op[] = "load";
    pgstore *s = (pgstore *)st;
    if (!id || !cb) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (from_seq > PG_SEQ_MAX || max_count == 0) {
        /* nothing to load: only whether the session exists */
        uint64_t got = 0, last = 0;
        int stop = 0;
        return load_page(s, id, PG_SEQ_MAX, 0, cb, arg, &got, &last, &stop);
    }
    uint64_t left = (uint64_t)max_count > PG_SEQ_MAX ? PG_SEQ_MAX : (uint64_t)max_count;
    uint64_t from = from_seq, page = PG_LOAD_FIRST;
    int stop = 0;
    while (rc == TETHER_OK && left > 0 && !stop) {
        uint64_t want = left < page ? left : page, got = 0, last = 0;
        rc = load_page(s, id, from, want, cb, arg, &got, &last, &stop);
        if (rc != TETHER_OK || got < want || last == PG_SEQ_MAX) {
            break; /* the outbox has no more */
        }
        left -= got;
        from = last + 1;
        page = page * 2 < PG_LOAD_PAGE ? page * 2 : PG_LOAD_PAGE;
    }
    return rc;
}

static int g_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    static const char op[] = "ack";
    pgstore *s = (pgstore *)st;
    if (!id || seq > PG_SEQ_MAX) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, id);
    p_i64(&p, seq);
    p_epoch(&p, s, id);
    PGresult *r = tether__pg_exec(s, P_ACK, &p, op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    } else if (col_u64(r, 0, 1) != tether__pg_lease_epoch(s, id)) {
        rc = tether__pg_fenced(s, op, tether__pg_lease_epoch(s, id), col_u64(r, 0, 1));
    } else if (col_u64(r, 0, 0) < seq) {
        rc = tether__pg_fail(s, TETHER_EINVAL, "%s: seq %llu was never sent (out_last %llu)", op,
                             (unsigned long long)seq, (unsigned long long)col_u64(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

static int g_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    static const char op[] = "set_cursor";
    pgstore *s = (pgstore *)st;
    if (!id || cursor > PG_SEQ_MAX) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, id);
    p_i64(&p, cursor);
    p_epoch(&p, s, id);
    PGresult *r = tether__pg_exec(s, P_CURSOR, &p, op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    } else if (col_u64(r, 0, 0) != tether__pg_lease_epoch(s, id)) {
        rc = tether__pg_fenced(s, op, tether__pg_lease_epoch(s, id), col_u64(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

static int g_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    static const char op[] = "pending";
    pgstore *s = (pgstore *)st;
    if (!id || !count || !bytes) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    tether__session_rec rec;
    uint64_t c = 0, b = 0;
    if (rc == TETHER_OK &&
        (rc = tether__pg_read_sess(s, P_GET, id, &rec, &c, &b, op)) == TETHER_OK) {
        *count = c;
        *bytes = b;
    }
    return rc;
}

/* rebase's work inside its transaction. */
static int rebase_tx(pgstore *s, const uint8_t old_id[16], const tether__session_rec *nrec,
                     uint64_t skip)
{
    static const char op[] = "rebase";
    tether__session_rec old, other;
    int rc = tether__pg_read_sess(s, P_GET_LOCK, old_id, &old, NULL, NULL, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (skip > old.out_last || nrec->out_last != old.out_last - skip) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: new out_last %llu is not %llu - %llu", op,
                               (unsigned long long)nrec->out_last, (unsigned long long)old.out_last,
                               (unsigned long long)skip);
    }
    rc = tether__pg_read_sess(s, P_GET, nrec->id, &other, NULL, NULL, op);
    if (rc == TETHER_OK) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: the new session id is already in use", op);
    }
    if (rc != TETHER_ENOTFOUND) {
        return rc;
    }
    params p;
    p_key(&p, s, nrec->id);
    p_rec(&p, nrec);
    PGresult *r = tether__pg_exec(s, P_INSERT_SESS, &p, op, &rc);
    PQclear(r);
    if (rc != TETHER_OK) {
        return rc;
    }
    p_key(&p, s, old_id);
    p_bytes(&p, nrec->id, 16);
    p_i64(&p, skip);
    r = tether__pg_exec(s, P_MOVE, &p, op,
                        &rc); /* moves the rows above skip, deletes the old session */
    PQclear(r);
    if (rc != TETHER_OK) {
        return rc;
    }
    p_key(&p, s, nrec->id);
    r = tether__pg_exec(s, P_RECOUNT, &p, op, &rc);
    PQclear(r);
    return rc;
}

static int g_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *new_rec,
                    uint64_t skip)
{
    static const char op[] = "rebase";
    pgstore *s = (pgstore *)st;
    if (!old_id || !new_rec || rec_invalid(new_rec) || memcmp(old_id, new_rec->id, 16) == 0) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc == TETHER_OK) {
        rc = simple(s, "BEGIN", op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    return finish(s, rebase_tx(s, old_id, new_rec, skip), op);
}

/* ---- inspect ---- */

static int g_inspect(tether__store *st, unsigned flags, tether__store_info *out)
{
    static const char op[] = "inspect";
    pgstore *s = (pgstore *)st;
    if (!out || (flags & ~TETHER__INSPECT_CHECK) != 0) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    memset(out, 0, sizeof *out);
    int rc = tether__pg_ready(s, op);
    if (rc == TETHER_OK) {
        rc = simple(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    memset(&p, 0, sizeof p);
    p_int(&p, (uint64_t)s->role, 2);
    PGresult *r;
    if ((flags & TETHER__INSPECT_CHECK) != 0 &&
        (r = tether__pg_exec(s, P_CHECK, &p, op, &rc)) != NULL) {
        /* sessions whose totals disagree with their rows, rows of no session */
        uint64_t wrong = col_u64(r, 0, 0), orphans = col_u64(r, 0, 1);
        if (wrong || orphans) {
            rc = tether__pg_fail(s, TETHER_ESTORE_CORRUPT,
                                 "%s: %llu sessions' pending totals disagree with their outbox, "
                                 "%llu outbox rows belong to no session",
                                 op, (unsigned long long)wrong, (unsigned long long)orphans);
        }
        PQclear(r);
    }
    if (rc == TETHER_OK && (r = tether__pg_exec(s, P_TOTALS, &p, op, &rc)) != NULL) {
        out->role = s->role;
        out->sessions = col_u64(r, 0, 0);
        out->pending = col_u64(r, 0, 1);
        out->pending_bytes = col_u64(r, 0, 2);
        PQclear(r);
    }
    return finish(s, rc, op);
}

static const char *g_errmsg(tether__store *st)
{
    pgstore *s = (pgstore *)st;
    return s->msg[0] ? s->msg : "no error";
}

const tether__store_ops tether__pg_ops = {
    .session_get = g_get,
    .session_put = g_put,
    .session_delete = g_delete,
    .session_list = g_list,
    .append = tether__pg_append,
    .load = g_load,
    .ack = g_ack,
    .set_cursor = g_set_cursor,
    .pending = g_pending,
    .rebase = g_rebase,
    .errmsg = g_errmsg,
    .close = tether__pg_close,
    .inspect = g_inspect,
    .verdict_get = tether__pg_verdict_get,
    .verdict_put = tether__pg_verdict_put,
    .lease_take = tether__pg_lease_take,
    .lease_release = tether__pg_lease_release,
    .lease_renew = tether__pg_lease_renew,
    .wake = tether__pg_wake,
    .wait_wakes = tether__pg_wait_wakes,
};

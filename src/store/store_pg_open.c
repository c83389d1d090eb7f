/*
 * The PostgreSQL store's life: connecting (with a bounded connect timeout),
 * the schema (created at the first open under an advisory lock, its version
 * checked at every open), the prepared statements, reconnecting after a lost
 * connection, closing, and the test hooks of store_testhooks.h.
 */
#include "common/alloc.h"
#include "store_pg_int.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_LOCK_KEY "7310868447617630209" /* pg_advisory_xact_lock key of schema set-up */

/* The statements, prepared once per connection as "tether_<index>". Every
 * parameter carries its type (a cast), since they travel in binary. */
const char *const tether__pg_stmt_sql[N_PSTMT] = {
    [P_GET] = "SELECT token, out_last, peer_acked, recv_cursor, established, pending_count, "
              "pending_bytes FROM tether_sessions WHERE role = $1::smallint AND id = $2::bytea",
    [P_GET_LOCK] =
        "SELECT token, out_last, peer_acked, recv_cursor, established, pending_count, "
        "pending_bytes FROM tether_sessions WHERE role = $1::smallint AND id = $2::bytea "
        "FOR UPDATE",
    /* the outbox stays: out_last may not fall below its last row (no row: refused) */
    [P_PUT] =
        "INSERT INTO tether_sessions AS s (role, id, token, out_last, peer_acked, recv_cursor, "
        "established, pending_count, pending_bytes) "
        "SELECT $1::smallint, $2::bytea, $3::bytea, $4::bigint, $5::bigint, $6::bigint, "
        "$7::boolean, 0, 0 WHERE $4::bigint >= coalesce((SELECT max(seq) FROM tether_outbox "
        "WHERE role = $1::smallint AND session = $2::bytea), 0) "
        "ON CONFLICT (role, id) DO UPDATE SET token = excluded.token, "
        "out_last = excluded.out_last, peer_acked = excluded.peer_acked, "
        "recv_cursor = excluded.recv_cursor, established = excluded.established "
        "WHERE s.lease_epoch = $8::bigint RETURNING 1",
    [P_LAST_SEQ] = "SELECT coalesce(max(seq), 0), (SELECT lease_epoch FROM tether_sessions "
                   "WHERE role = $1::smallint AND id = $2::bytea) FROM tether_outbox "
                   "WHERE role = $1::smallint AND session = $2::bytea",
    /* a session another live instance holds stays: deleted 0, found 1 */
    [P_DELETE] =
        "WITH d AS (DELETE FROM tether_sessions s WHERE role = $1::smallint AND id = $2::bytea "
        "AND (s.lease_epoch = $3::bigint OR " PG_LEASE_FREE("s") ") RETURNING 1), "
        "o AS (DELETE FROM tether_outbox WHERE role = $1::smallint "
        "AND session = $2::bytea AND EXISTS (SELECT 1 FROM d)) SELECT (SELECT count(*) FROM d), "
        "(SELECT count(*) FROM tether_sessions WHERE role = $1::smallint AND id = $2::bytea)",
    [P_LIST] =
        "SELECT id, token, out_last, peer_acked, recv_cursor, established FROM tether_sessions "
        "WHERE role = $1::smallint AND id > $2::bytea ORDER BY id LIMIT $3::bigint",
    /* $3 messages of $4 bytes in all, caps $5 and $6 (0: none), payloads $7:
     * seqs are assigned and the caps checked by one UPDATE, whose row feeds
     * the multi-row INSERT; no row back: refused, nothing written */
    [P_APPEND] = "WITH s AS (UPDATE tether_sessions SET out_last = out_last + $3::bigint, "
                 "last_op = $8::bigint, "
                 "pending_count = pending_count + $3::bigint, "
                 "pending_bytes = pending_bytes + $4::bigint "
                 "WHERE role = $1::smallint AND id = $2::bytea "
                 "AND out_last <= 9223372036854775807 - $3::bigint "
                 "AND ($5::bigint = 0 OR pending_count <= $5::bigint - $3::bigint) "
                 "AND ($6::bigint = 0 OR pending_bytes <= $6::bigint - $4::bigint) "
                 "RETURNING out_last - $3::bigint AS base), "
                 "i AS (INSERT INTO tether_outbox(role, session, seq, payload) "
                 "SELECT $1::smallint, $2::bytea, s.base + p.n, p.payload FROM s, "
                 "unnest($7::bytea[]) WITH ORDINALITY AS p(payload, n)) "
                 "SELECT base FROM s",
    /* no row: no session; one row of NULLs: nothing to load */
    [P_LOAD] = "SELECT o.seq, o.payload FROM tether_sessions s LEFT JOIN LATERAL "
               "(SELECT seq, payload FROM tether_outbox WHERE role = s.role AND session = s.id "
               "AND seq >= $3::bigint ORDER BY seq LIMIT $4::bigint) o ON true "
               "WHERE s.role = $1::smallint AND s.id = $2::bytea ORDER BY o.seq",
    /* nothing changes when $3 is beyond out_last; the caller reads out_last back */
    /* the row is locked first, so the fence ($4, the lease epoch) holds for both writes */
    [P_ACK] = "WITH s AS (SELECT out_last, lease_epoch FROM tether_sessions "
              "WHERE role = $1::smallint AND id = $2::bytea FOR UPDATE), "
              "d AS (DELETE FROM tether_outbox WHERE role = $1::smallint AND session = $2::bytea "
              "AND seq <= $3::bigint AND $3::bigint <= (SELECT out_last FROM s) "
              "AND (SELECT lease_epoch FROM s) = $4::bigint "
              "RETURNING length(payload) AS len), "
              "u AS (UPDATE tether_sessions SET peer_acked = greatest(peer_acked, $3::bigint), "
              "pending_count = pending_count - (SELECT count(*) FROM d), "
              "pending_bytes = pending_bytes - (SELECT coalesce(sum(len), 0) FROM d) "
              "WHERE role = $1::smallint AND id = $2::bytea AND $3::bigint <= out_last "
              "AND lease_epoch = $4::bigint) "
              "SELECT out_last, lease_epoch FROM s",
    /* no row: no session; the epoch back: fenced unless it is $4 */
    [P_CURSOR] = "WITH s AS (SELECT lease_epoch FROM tether_sessions WHERE role = $1::smallint "
                 "AND id = $2::bytea FOR UPDATE), "
                 "u AS (UPDATE tether_sessions SET recv_cursor = greatest(recv_cursor, $3::bigint) "
                 "WHERE role = $1::smallint AND id = $2::bytea AND lease_epoch = $4::bigint) "
                 "SELECT lease_epoch FROM s",
    [P_INSERT_SESS] = "INSERT INTO tether_sessions(role, id, token, out_last, peer_acked, "
                      "recv_cursor, established, pending_count, pending_bytes) VALUES "
                      "($1::smallint, $2::bytea, $3::bytea, $4::bigint, $5::bigint, $6::bigint, "
                      "$7::boolean, 0, 0)",
    /* rebase: the rows above $4 move to session $3 renumbered, the old session goes */
    [P_MOVE] =
        "WITH m AS (DELETE FROM tether_outbox WHERE role = $1::smallint AND session = $2::bytea "
        "RETURNING seq, payload), "
        "i AS (INSERT INTO tether_outbox(role, session, seq, payload) "
        "SELECT $1::smallint, $3::bytea, seq - $4::bigint, payload FROM m "
        "WHERE seq > $4::bigint), "
        "d AS (DELETE FROM tether_sessions WHERE role = $1::smallint AND id = $2::bytea) "
        "SELECT 1",
    [P_RECOUNT] = "UPDATE tether_sessions s SET (pending_count, pending_bytes) = "
                  "(SELECT count(*), coalesce(sum(length(payload)), 0) FROM tether_outbox o "
                  "WHERE o.role = s.role AND o.session = s.id) "
                  "WHERE role = $1::smallint AND id = $2::bytea",
    [P_TOTALS] = "SELECT count(*), coalesce(sum(pending_count), 0)::bigint, "
                 "coalesce(sum(pending_bytes), 0)::bigint FROM tether_sessions "
                 "WHERE role = $1::smallint",
    /* after a lost connection: did the append with id last_op commit? */
    [P_LAST_OP] = "SELECT last_op, out_last FROM tether_sessions WHERE role = $1::smallint "
                  "AND id = $2::bytea",
    [P_CHECK] = "SELECT (SELECT count(*) FROM tether_sessions s CROSS JOIN LATERAL "
                "(SELECT count(*) AS c, coalesce(sum(length(payload)), 0) AS b, "
                "coalesce(max(seq), 0) AS m FROM tether_outbox o "
                "WHERE o.role = s.role AND o.session = s.id) t WHERE s.role = $1::smallint "
                "AND (s.pending_count <> t.c OR s.pending_bytes <> t.b OR s.out_last < t.m)), "
                "(SELECT count(*) FROM tether_outbox o WHERE o.role = $1::smallint AND NOT EXISTS "
                "(SELECT 1 FROM tether_sessions s WHERE s.role = o.role AND s.id = o.session))",
    /* $3 ttl ms, $4 owner: a new epoch when the lease is ours or free; no row: held elsewhere */
    [P_LEASE_TAKE] = "UPDATE tether_sessions s SET lease_epoch = s.lease_epoch + 1, "
                     "lease_owner = $4::bigint, "
                     "lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond' "
                     "WHERE s.role = $1::smallint AND s.id = $2::bytea AND (s.lease_owner = "
                     "$4::bigint OR " PG_LEASE_FREE("s") ") RETURNING s.lease_epoch",
    [P_LEASE_RELEASE] = "UPDATE tether_sessions SET lease_until = NULL WHERE role = $1::smallint "
                        "AND id = $2::bytea AND lease_epoch = $3::bigint AND lease_owner = "
                        "$4::bigint",
    /* $2 owner, $3 ttl ms: every lease of the owner not released */
    [P_LEASE_RENEW] = "UPDATE tether_sessions SET lease_until = clock_timestamp() + $3::bigint * "
                      "interval '1 millisecond' WHERE role = $1::smallint AND lease_owner = "
                      "$2::bigint AND lease_until IS NOT NULL RETURNING id, lease_epoch, out_last",
    [P_LEASE_EPOCH] = "SELECT lease_epoch FROM tether_sessions WHERE role = $1::smallint "
                      "AND id = $2::bytea",
};

static const char schema_sql[] =
    "CREATE TABLE tether_meta(key text PRIMARY KEY, value text NOT NULL);"
    "CREATE TABLE tether_sessions(role smallint NOT NULL, id bytea NOT NULL, token bytea NOT NULL,"
    " out_last bigint NOT NULL, peer_acked bigint NOT NULL, recv_cursor bigint NOT NULL,"
    " established boolean NOT NULL, pending_count bigint NOT NULL, pending_bytes bigint NOT NULL,"
    " last_op bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (role, id));"
    "CREATE TABLE tether_outbox(role smallint NOT NULL, session bytea NOT NULL, seq bigint NOT "
    "NULL,"
    " payload bytea NOT NULL, PRIMARY KEY (role, session, seq));";

/* Notices (NOTICE, WARNING) are not errors: libpq would print them on stderr. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int tether__store_pg_is_uri(const char *path)
{
    return path &&
           (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

void tether__store_pg_describe(const char *conninfo, char *buf, size_t len)
{
    char *err = NULL;
    PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, &err) : NULL;
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !*o->val) {
            continue;
        }
        if (strcmp(o->keyword, "host") == 0 || (!host && strcmp(o->keyword, "hostaddr") == 0)) {
            host = o->val;
        } else if (strcmp(o->keyword, "port") == 0) {
            port = o->val;
        } else if (strcmp(o->keyword, "dbname") == 0) {
            db = o->val;
        } else if (strcmp(o->keyword, "user") == 0) {
            user = o->val;
        }
    }
    if (!opts) {
        snprintf(buf, len, "(an invalid connection string)");
    } else {
        /* never the password: only where the server is and who logs in */
        snprintf(buf, len, "%s:%s/%s%s%s", host ? host : "localhost", port ? port : "5432",
                 db ? db : (user ? user : "(default database)"), user ? " as user " : "",
                 user ? user : "");
    }
    PQconninfoFree(opts);
    PQfreemem(err);
}

/* Runs sql and returns its result, or NULL after recording the failure. */
static PGresult *query(pgstore *s, const char *sql, const char *op, int *rc)
{
    PGresult *r = PQexec(s->conn, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = TETHER_OK;
        return r;
    }
    *rc = tether__pg_qfail(s, r, op);
    PQclear(r);
    return NULL;
}

static int run(pgstore *s, const char *sql, const char *op)
{
    int rc;
    PQclear(query(s, sql, op, &rc));
    return rc;
}

/* Checks the version recorded in tether_meta and that the other tables exist. */
static int check_version(pgstore *s, int have_sessions, int have_outbox, const char *op,
                         long long *found)
{
    int rc;
    PGresult *r = query(s, "SELECT value FROM tether_meta WHERE key = 'schema_version'", op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA,
                             "%s: tether_meta at %s records no schema version: not a tether store",
                             op, s->where);
    } else {
        const char *v = PQgetvalue(r, 0, 0);
        char *end = NULL;
        long long version = strtoll(v, &end, 10);
        if (!*v || *end) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA,
                                 "%s: unknown database schema '%.40s' at %s", op, v, s->where);
        } else if (version > PG_SCHEMA_VERSION) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA,
                                 "%s: the database schema at %s is version %lld, newer than this "
                                 "tether's (%d): use a tether that knows it",
                                 op, s->where, version, PG_SCHEMA_VERSION);
        } else if (version < 1) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema %lld at %s",
                                 op, version, s->where);
        } else if (!have_sessions || !have_outbox) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA, "%s: schema %lld at %s lacks the table %s",
                                 op, version, s->where,
                                 have_sessions ? "tether_outbox" : "tether_sessions");
        } else if (version < PG_SCHEMA_VERSION && s->readonly) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA,
                                 "%s: the database schema at %s is version %lld: a tether serve of "
                                 "this version upgrades it to %d at its start",
                                 op, s->where, version, PG_SCHEMA_VERSION);
        }
        *found = version;
    }
    PQclear(r);
    return rc;
}

/* Creates the schema in a database without it, or checks the one there. One
 * transaction under an advisory lock, so instances opening at once agree. */
static int schema(pgstore *s, const char *op)
{
    int rc = run(s, "BEGIN", op);
    if (rc != TETHER_OK) {
        return rc;
    }
    rc = run(s, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", op);
    PGresult *r = NULL;
    if (rc == TETHER_OK) {
        r = query(s,
                  "SELECT to_regclass('tether_meta') IS NOT NULL, to_regclass('tether_sessions') "
                  "IS NOT NULL, to_regclass('tether_outbox') IS NOT NULL",
                  op, &rc);
    }
    if (r) {
        int meta = PQgetvalue(r, 0, 0)[0] == 't', sess = PQgetvalue(r, 0, 1)[0] == 't',
            outbox = PQgetvalue(r, 0, 2)[0] == 't';
        PQclear(r);
        long long version = 0;
        if (meta) {
            rc = check_version(s, sess, outbox, op, &version);
            if (rc == TETHER_OK && version < PG_SCHEMA_VERSION) {
                rc = tether__pg_migrate(s, version, op);
            }
        } else if (sess || outbox) {
            rc = tether__pg_fail(s, TETHER_ESTORE_SCHEMA,
                                 "%s: %s has tables named like tether's but no tether_meta: not a "
                                 "tether store",
                                 op, s->where);
        } else if (s->readonly) {
            rc = tether__pg_fail(s, TETHER_ENOTFOUND,
                                 "%s: %s holds no tether store (tether serve creates one)", op,
                                 s->where);
        } else {
            /* schema 1, then each upgrade step, as for a store made by an older tether */
            rc = run(s, schema_sql, op);
            if (rc == TETHER_OK) {
                rc = run(s, "INSERT INTO tether_meta(key, value) VALUES ('schema_version', '1')",
                         op);
            }
            if (rc == TETHER_OK) {
                rc = tether__pg_migrate(s, 1, op);
            }
        }
    }
    if (rc == TETHER_OK) {
        return run(s, "COMMIT", op);
    }
    if (PQstatus(s->conn) == CONNECTION_OK) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
    }
    return rc;
}

/* What every connection needs: its settings and the prepared statements. */
static int setup(pgstore *s, const char *op)
{
    PQsetNoticeProcessor(s->conn, quiet, NULL);
    /* as the SQLite store's busy timeout: a lock held elsewhere is an error
     * after a while, not a stall of every session */
    int rc = run(s, "SET lock_timeout = '" PG_LOCK_TIMEOUT "'", op);
    if (rc == TETHER_OK && s->readonly) {
        rc = run(s, "SET default_transaction_read_only = on", op);
    }
    if (rc == TETHER_OK && s->sync_off) {
        rc = run(s, "SET synchronous_commit = off", op);
    }
    s->pid = PQbackendPID(s->conn);
    if (rc == TETHER_OK && !s->readonly && s->role == TETHER__ROLE_SERVER) {
        rc = tether__pg_lease_setup(s, op);
    }
    for (int i = 0; i < N_PSTMT && rc == TETHER_OK; i++) {
        char name[16];
        snprintf(name, sizeof name, "tether_%d", i);
        PGresult *r = PQprepare(s->conn, name, tether__pg_stmt_sql[i], 0, NULL);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = tether__pg_qfail(s, r, op);
        }
        PQclear(r);
    }
    return rc;
}

/* The connection's message without its trailing newline. */
static const char *conn_msg(pgstore *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", PQerrorMessage(s->conn));
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
    return buf;
}

int tether__pg_connect_wait(pgstore *s, PGconn *c, int reset, char *why, size_t len)
{
    uint64_t start = tether__now_ms();
    uint64_t end = start + (atomic_load(&s->closing) ? PG_CLOSING_CONNECT_MS : PG_CONNECT_MS);
    int closing = 0;
    /* before the first poll call, as if it had asked for writing (libpq's rule) */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK) {
            return 0;
        }
        if (st == PGRES_POLLING_FAILED) {
            snprintf(why, len, "%s", PQerrorMessage(c));
            return -1;
        }
        uint64_t now = tether__now_ms();
        if (!closing && atomic_load(&s->closing)) {
            closing = 1; /* the server shuts down meanwhile: a short wait from here */
            if (end > now + PG_CLOSING_CONNECT_MS) {
                end = now + PG_CLOSING_CONNECT_MS;
            }
        }
        if (now >= end) {
            snprintf(why, len, "no answer within %llu ms%s", (unsigned long long)(now - start),
                     closing ? " (the server is shutting down)" : "");
            return -1;
        }
        int fd = PQsocket(c);
        if (fd < 0) {
            st = reset ? PQresetPoll(c) : PQconnectPoll(c);
            continue;
        }
        struct pollfd p = {fd, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        uint64_t left = end - now;
        int n = poll(&p, 1, left < 50 ? (int)left : 50);
        if (n < 0 && errno != EINTR) {
            snprintf(why, len, "poll: %s", strerror(errno));
            return -1;
        }
        if (n > 0) {
            st = reset ? PQresetPoll(c) : PQconnectPoll(c);
        }
    }
}

void tether__store_pg_closing(tether__store *st)
{
    if (st && st->ops == &tether__pg_ops) {
        atomic_store(&((pgstore *)st)->closing, 1);
    }
}

int tether__pg_ready(pgstore *s, const char *op)
{
    if (PQstatus(s->conn) == CONNECTION_OK) {
        return TETHER_OK;
    }
    char text[320] = "";
    if (atomic_load(&s->closing) && s->closing_tried) {
        return tether__pg_fail(s, TETHER_ESTORE,
                               "%s: the connection to PostgreSQL at %s is lost and the server is "
                               "shutting down: not reconnecting again",
                               op, s->where);
    }
    s->closing_tried = atomic_load(&s->closing);
    if (s->multihost && !s->closing_tried) {
        /* libpq moves on to the next host after each one's connect_timeout */
        PQreset(s->conn);
        conn_msg(s, text, sizeof text);
    } else if (!PQresetStart(s->conn) ||
               tether__pg_connect_wait(s, s->conn, 1, text, sizeof text) != 0) {
        if (!text[0] || PQstatus(s->conn) == CONNECTION_BAD) {
            conn_msg(s, text, sizeof text);
        }
    }
    /* an attempt that ended while the server shuts down is its one attempt */
    s->closing_tried = atomic_load(&s->closing);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        for (char *c = text; *c; c++) {
            *c = *c == '\n' ? ' ' : *c;
        }
        return tether__pg_fail(s, TETHER_ESTORE,
                               "%s: the connection to PostgreSQL at %s is lost and reconnecting "
                               "failed: %s",
                               op, s->where, text);
    }
    return setup(s, op);
}

void tether__pg_close(tether__store *st)
{
    pgstore *s = (pgstore *)st;
    if (!s) {
        return;
    }
    PQfinish(s->conn);
    PQfinish(s->lconn);
    tether__free(s->conninfo);
    tether__pg_lease_free(s);
    tether__free(s);
}

static int open_all(pgstore *s, const char *conninfo, const char *op)
{
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {PG_CONNECT_TIMEOUT, "tether", conninfo, NULL};
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        /* libpq's words name the faulty part, never a password's value */
        int rc = tether__pg_fail(s, TETHER_ECONFIG, "%s: invalid PostgreSQL connection string: %s",
                                 op, err ? err : "out of memory");
        size_t n = strlen(s->msg);
        while (n && s->msg[n - 1] == '\n') {
            s->msg[--n] = '\0';
        }
        PQfreemem(err);
        return rc;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if ((strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0) && o->val &&
            strchr(o->val, ',')) {
            s->multihost = 1;
        }
    }
    PQconninfoFree(opts);
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (!s->conn) {
        return tether__pg_fail(s, TETHER_ENOMEM, "%s: out of memory", op);
    }
    char text[320];
    if (PQstatus(s->conn) != CONNECTION_OK) {
        return tether__pg_fail(s, TETHER_ESTORE, "%s: cannot connect to PostgreSQL at %s: %s", op,
                               s->where, conn_msg(s, text, sizeof text));
    }
    PQsetNoticeProcessor(s->conn, quiet, NULL);
    /* a reader's every transaction is read-only, the schema check's included */
    int rc = s->readonly ? run(s, "SET default_transaction_read_only = on", op) : TETHER_OK;
    if (rc == TETHER_OK) {
        rc = schema(s, op);
    }
    return rc == TETHER_OK ? setup(s, op) : rc;
}

static int open_store(const char *conninfo, tether__store_role role, tether_durability durability,
                      int readonly, tether__store **out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen) {
        errbuf[0] = '\0';
    }
    if (out) {
        *out = NULL;
    }
    if (!out || !conninfo || !*conninfo ||
        (role != TETHER__ROLE_CLIENT && role != TETHER__ROLE_SERVER) ||
        (unsigned)durability > TETHER_DURABILITY_FULL) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_pg_open: invalid argument");
        }
        return tether__fail(TETHER_EINVAL, "store_pg_open: invalid argument");
    }
    pgstore *s = tether__calloc(1, sizeof *s);
    if (!s) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_pg_open: out of memory");
        }
        return tether__fail(TETHER_ENOMEM, "store_pg_open: out of memory");
    }
    s->base.ops = &tether__pg_ops;
    s->role = role;
    s->sync_off = durability == TETHER_DURABILITY_OFF;
    s->readonly = readonly;
    if (tether__random(&s->next_op, sizeof s->next_op) != TETHER_OK) {
        s->next_op = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
    }
    /* the owner id is an advisory lock key (bigint): positive, never 0 */
    s->owner = ((s->next_op * 0x9E3779B97F4A7C15ull) >> 2) | 1u;
    tether__store_pg_describe(conninfo, s->where, sizeof s->where);
    int rc = open_all(s, conninfo, "open");
    if (rc == TETHER_OK && role == TETHER__ROLE_SERVER && !readonly) {
        /* kept for the wake-ups' own connection (store_pg_lease.c) */
        size_t n = strlen(conninfo) + 1;
        s->conninfo = tether__malloc(n);
        if (!s->conninfo) {
            rc = tether__pg_fail(s, TETHER_ENOMEM, "open: out of memory");
        } else {
            memcpy(s->conninfo, conninfo, n);
        }
    }
    if (rc != TETHER_OK) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s", s->msg);
        }
        tether__pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return TETHER_OK;
}

int tether__store_pg_open(const char *conninfo, tether__store_role role,
                          tether_durability durability, tether__store **out, char *errbuf,
                          size_t errlen)
{
    return open_store(conninfo, role, durability, 0, out, errbuf, errlen);
}

int tether__store_pg_open_readonly(const char *conninfo, tether__store **out, char *errbuf,
                                   size_t errlen)
{
    return open_store(conninfo, TETHER__ROLE_SERVER, TETHER_DURABILITY_NORMAL, 1, out, errbuf,
                      errlen);
}

/* ---- test hooks (store_testhooks.h) ---- */

int tether__store_pg_backend_pid(tether__store *st)
{
    return st && st->ops == &tether__pg_ops ? PQbackendPID(((pgstore *)st)->conn) : 0;
}

int tether__store_pg_show(tether__store *st, const char *name, char *buf, size_t len)
{
    if (!st || st->ops != &tether__pg_ops || !name || !buf || !len) {
        return TETHER_EINVAL;
    }
    pgstore *s = (pgstore *)st;
    const char *vals[1] = {name};
    PGresult *r = PQexecParams(s->conn, "SELECT current_setting($1)", 1, NULL, vals, NULL, NULL, 0);
    int rc = TETHER_OK;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
    } else {
        rc = tether__pg_qfail(s, r, "show");
    }
    PQclear(r);
    return rc;
}

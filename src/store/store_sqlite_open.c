/*
 * The SQLite store's life: opening (file mode, WAL, schema version and role
 * checks, prepared statements), the background checkpointer (see the comment
 * at the top of store_sqlite.c), closing, and the test hooks of
 * store_testhooks.h.
 */
#include "store_sqlite_int.h"
#include "common/alloc.h"

#include <limits.h>

const char *const tether__sq_stmt_sql[N_STMT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    /* the truth: the row plus the outbox rows appended since it was written
     * (seq > its out_last; store_sqlite.c, "out_last") */
    [S_GET] = "SELECT token, max(out_last, coalesce((SELECT max(seq) FROM outbox "
              "WHERE session = ?1), 0)), peer_acked, recv_cursor, established, "
              "pending_count + (SELECT count(*) FROM outbox WHERE session = ?1 "
              "AND seq > s.out_last), pending_bytes + (SELECT coalesce(sum(length(payload)), 0) "
              "FROM outbox WHERE session = ?1 AND seq > s.out_last) "
              "FROM sessions s WHERE id = ?1",
    [S_PUT] = "INSERT INTO sessions(id, token, out_last, peer_acked, recv_cursor, established, "
              "pending_count, pending_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
              "ON CONFLICT(id) DO UPDATE SET token = excluded.token, "
              "out_last = excluded.out_last, peer_acked = excluded.peer_acked, "
              "recv_cursor = excluded.recv_cursor, established = excluded.established, "
              "pending_count = excluded.pending_count, pending_bytes = excluded.pending_bytes",
    [S_DEL_SESS] = "DELETE FROM sessions WHERE id = ?1",
    [S_DEL_OUTBOX] = "DELETE FROM outbox WHERE session = ?1",
    /* the rows alone: what S_GET and S_LIST read while no row lags (no meta 'unsaved') */
    [S_GET_ROW] = "SELECT token, out_last, peer_acked, recv_cursor, established, pending_count, "
                  "pending_bytes FROM sessions WHERE id = ?1",
    [S_LIST_ROWS] = "SELECT id, token, out_last, peer_acked, recv_cursor, established "
                    "FROM sessions ORDER BY id",
    [S_IS_MARKED] = "SELECT count(*) FROM meta WHERE key = 'unsaved'",
    [S_LIST] = "SELECT id, token, max(out_last, coalesce((SELECT max(seq) FROM outbox o "
               "WHERE o.session = s.id), 0)), peer_acked, recv_cursor, established "
               "FROM sessions s ORDER BY id",
    [S_LAST_SEQ] = "SELECT max(seq) FROM outbox WHERE session = ?1",
    [S_INSERT] = "INSERT INTO outbox(session, seq, payload) VALUES (?1, ?2, ?3)",
    [S_APPENDED] = "UPDATE sessions SET out_last = ?2, pending_count = ?3, "
                   "pending_bytes = ?4 WHERE id = ?1",
    [S_LOAD] = "SELECT seq, payload FROM outbox WHERE session = ?1 AND seq >= ?2 "
               "ORDER BY seq LIMIT ?3",
    [S_SUM] = "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox "
              "WHERE session = ?1 AND seq <= ?2",
    [S_PRUNE] = "DELETE FROM outbox WHERE session = ?1 AND seq <= ?2",
    [S_ACKED] = "UPDATE sessions SET out_last = ?5, peer_acked = max(peer_acked, ?2), "
                "pending_count = ?3, pending_bytes = ?4 WHERE id = ?1",
    [S_CURSOR] = "UPDATE sessions SET recv_cursor = max(recv_cursor, ?2) WHERE id = ?1",
    [S_MOVE] = "INSERT INTO outbox(session, seq, payload) "
               "SELECT ?2, seq - ?3, payload FROM outbox WHERE session = ?1 AND seq > ?3",
    [S_RECOUNT] = "UPDATE sessions SET (pending_count, pending_bytes) = "
                  "(SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox "
                  "WHERE session = ?1) WHERE id = ?1",
    /* meta 'unsaved': session rows may lag their outbox (store_sqlite.c, "out_last") */
    [S_MARK] = "INSERT OR REPLACE INTO meta(key, value) VALUES ('unsaved', 1)",
    [S_UNMARK] = "DELETE FROM meta WHERE key = 'unsaved'",
    /* the right-hand sides read the row as it was before the update */
    [S_SETTLE] = "UPDATE sessions SET out_last = (SELECT max(seq) FROM outbox o "
                 "WHERE o.session = sessions.id), pending_count = pending_count + (SELECT count(*) "
                 "FROM outbox o WHERE o.session = sessions.id AND o.seq > sessions.out_last), "
                 "pending_bytes = pending_bytes + (SELECT coalesce(sum(length(payload)), 0) "
                 "FROM outbox o WHERE o.session = sessions.id AND o.seq > sessions.out_last) "
                 "WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.session = sessions.id "
                 "AND o.seq > sessions.out_last)",
};

const char tether__sq_schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE sessions(id BLOB PRIMARY KEY NOT NULL, token BLOB NOT NULL,"
    " out_last INTEGER NOT NULL, peer_acked INTEGER NOT NULL, recv_cursor INTEGER NOT NULL,"
    " established INTEGER NOT NULL, pending_count INTEGER NOT NULL,"
    " pending_bytes INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE outbox(session BLOB NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,"
    " PRIMARY KEY(session, seq)) WITHOUT ROWID;"
    TETHER__SQ_VERDICTS_SQL;

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

/* Exclusive mode's WAL hook: the only connection checkpoints by itself.
 * Nobody else reads the file, so a PASSIVE checkpoint copies the whole WAL
 * and the next transaction starts it over. */
static int on_wal_excl(void *arg, sqlite3 *db, const char *name, int pages)
{
    ckpt *c = arg;
    if (pages >= 0 && (unsigned)pages < c->hard_pages) {
        tether__sq_flush_grew(c, pages); /* at NORMAL: the WAL is pre-synced meanwhile */
        return SQLITE_OK;
    }
    if (pages < 0) {
        return SQLITE_OK;
    }
    /* Errors (a full disk, say) are left for the next commit. */
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->runs++;
    pthread_mutex_unlock(&c->mu);
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

void tether__sq_close(tether__store *st)
{
    sqstore *s = (sqstore *)st;
    if (!s) {
        return;
    }
    ck_stop(&s->ck);
    tether__sq_settle(s);
    close_db(s);
    tether__sq_unlock(s);
    pthread_cond_destroy(&s->ck.cv);
    pthread_cond_destroy(&s->ck.done);
    pthread_mutex_destroy(&s->ck.mu);
    tether__free(s->ck.wal_path);
    tether__free(s->path);
    tether__free(s);
}

/* Opens a connection to s->path with the given SQLITE_OPEN_* access flag. */
static int connect_db(sqstore *s, sqlite3 **out, int access, const char *op)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(s->path, &db, access | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = tether__sq_sqfail(s, db, rc, op);
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
    return rc == SQLITE_OK ? TETHER_OK : tether__sq_sqfail(s, db, rc, op);
}

/* Runs a query returning one integer; SQLite's result code (SQLITE_OK). */
int tether__sq_int(sqstore *s, const char *sql, sqlite3_int64 *out)
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
    sqlite3_finalize(q);
    return rc;
}

static int query_int(sqstore *s, const char *sql, sqlite3_int64 *out, const char *op)
{
    int rc = tether__sq_int(s, sql, out);
    return rc == SQLITE_OK ? TETHER_OK : tether__sq_sqfail(s, s->db, rc, op);
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
                      ? tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (%s)", op,
                             sqlite3_errmsg(s->db))
                      : tether__sq_sqfail(s, s->db, rc, op);
        sqlite3_finalize(q);
        return ret;
    }
    int ret = TETHER_OK;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *have = (const char *)sqlite3_column_text(q, 0);
        if (!have || strcmp(have, role_name(s->role)) != 0) {
            ret = tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: the database belongs to a tether %s, not a %s",
                       op, have ? have : "(none)", role_name(s->role));
        }
    } else if (rc == SQLITE_DONE) {
        ret = tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (no role recorded)", op);
    } else {
        ret = tether__sq_sqfail(s, s->db, rc, op);
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
    if (rc == TETHER_OK && version > TETHER__STORE_SQLITE_SCHEMA_VERSION) {
        rc =
            tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: database schema %lld is newer than this tether (%d)",
                 op, (long long)version, TETHER__STORE_SQLITE_SCHEMA_VERSION);
    } else if (rc == TETHER_OK && version < 0) {
        rc = tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema %lld", op,
                  (long long)version);
    } else if (rc == TETHER_OK && version == 0) {
        rc = query_int(s, "SELECT count(*) FROM sqlite_master", &objects, op);
        if (rc == TETHER_OK && objects != 0) {
            rc = tether__sq_fail(s, TETHER_ESTORE_SCHEMA,
                      "%s: a SQLite database that is not a tether store (schema 0, %lld objects)",
                      op, (long long)objects);
        }
        if (rc == TETHER_OK) {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "INSERT INTO meta(key, value) VALUES ('role', '%s'); PRAGMA user_version = %d",
                     role_name(s->role), TETHER__STORE_SQLITE_SCHEMA_VERSION);
            rc = exec(s, s->db, tether__sq_schema_sql, op);
            if (rc == TETHER_OK) {
                rc = exec(s, s->db, sql, op);
            }
        }
    } else if (rc == TETHER_OK) {
        rc = check_role(s, op);
        if (rc == TETHER_OK && version == 1) {
            /* schema 1 -> 2: the table of fallback verdicts, in the same
             * transaction, once the schema-1 tables are seen to be whole (a
             * file that is not one is refused unchanged) */
            sqlite3_stmt *q = NULL;
            int prc = sqlite3_prepare_v2(
                s->db,
                "SELECT s.id, s.token, s.out_last, s.peer_acked, s.recv_cursor, s.established, "
                "s.pending_count, s.pending_bytes, o.session, o.seq, o.payload "
                "FROM sessions s, outbox o LIMIT 0",
                -1, &q, NULL);
            sqlite3_finalize(q);
            if (prc != SQLITE_OK) {
                rc = (prc & 0xff) == SQLITE_ERROR
                         ? tether__sq_fail(s, TETHER_ESTORE_SCHEMA,
                                           "%s: unknown database schema (%s)", op,
                                           sqlite3_errmsg(s->db))
                         : tether__sq_sqfail(s, s->db, prc, op);
            }
        }
        if (rc == TETHER_OK && version == 1) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d",
                     TETHER__STORE_SQLITE_SCHEMA_VERSION);
            rc = exec(s, s->db, TETHER__SQ_VERDICTS_SQL, op);
            if (rc == TETHER_OK) {
                rc = exec(s, s->db, sql, op);
            }
        }
    }
    if (rc == TETHER_OK) {
        return exec(s, s->db, "COMMIT", op);
    }
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

int tether__sq_prepare_all(sqstore *s, const char *op)
{
    for (int i = 0; i < N_STMT; i++) {
        int rc = sqlite3_prepare_v3(s->db, tether__sq_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                    NULL);
        if (rc != SQLITE_OK) {
            if ((rc & 0xff) == SQLITE_ERROR) {
                /* Tables or columns are not what schema 1 has. */
                return tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema (%s)", op,
                            sqlite3_errmsg(s->db));
            }
            return tether__sq_sqfail(s, s->db, rc, op);
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
        return tether__sq_fail(s, TETHER_ESTORE_READONLY, "%s: cannot create the file: %s", op,
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
    if (tether__sq_wal_lost(s->path, s->msg, sizeof s->msg)) {
        return tether__fail(TETHER_ESTORE_CORRUPT, "%s", s->msg);
    }
    int rc = readonly ? TETHER_OK : create_file(s, op);
    if (rc == TETHER_OK) {
        rc = connect_db(s, &s->db, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    /* SQLite opens an unwritable file read-only without saying so. */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        return tether__sq_fail(s, TETHER_ESTORE_READONLY, "%s: the database file is read-only", op);
    }
    /* One writing handle per file, before anything is written: store_sqlite_lock.c. */
    if (!readonly && (rc = tether__sq_lock(s, op)) != TETHER_OK) {
        return rc;
    }
    /* Before WAL mode is set: that writes the first page of a new file, and
     * the page size of a WAL database never changes after it. A database
     * that already has pages keeps its own: SQLite reads the size from the
     * file and keeps this value only for a VACUUM, which tether never runs. */
    if (!readonly && s->page_size) {
        char ps[48];
        snprintf(ps, sizeof ps, "PRAGMA page_size = %u", (unsigned)s->page_size);
        if ((rc = exec(s, s->db, ps, op)) != TETHER_OK) {
            return rc;
        }
    }
    int excl = (flags & TETHER__SQLITE_EXCLUSIVE) != 0 && !readonly;
    /* Before WAL is first used, so that its index lives in heap memory. */
    if (excl && (rc = exec(s, s->db, "PRAGMA locking_mode = EXCLUSIVE", op)) != TETHER_OK) {
        return rc;
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
                 : tether__sq_fail(s, TETHER_ESTORE, "%s: cannot use WAL mode (journal mode is %s)", op,
                        mode ? mode : "unknown");
    } else {
        rc = tether__sq_sqfail(s, s->db, rc, op);
    }
    sqlite3_finalize(q);
    if (rc != TETHER_OK) {
        return rc;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %d; PRAGMA journal_size_limit = %d", s->sync,
             WAL_SIZE_LIMIT);
    if ((rc = exec(s, s->db, sql, op)) != TETHER_OK || (rc = schema(s, op)) != TETHER_OK ||
        (rc = tether__sq_prepare_all(s, op)) != TETHER_OK) {
        return rc;
    }
    tether__sq_load_mark(s);
    /* The checkpointer: see the top of this file. The WAL hook replaces
     * SQLite's automatic checkpoint on the writing connection. */
    sqlite3_wal_autocheckpoint(s->db, 0);
    if (excl) {
        sqlite3_wal_hook(s->db, on_wal_excl, &s->ck);
        /* Takes the lock now: a second process fails at open, not at its first send. */
        if ((rc = exec(s, s->db, "BEGIN IMMEDIATE; COMMIT", op)) != TETHER_OK) {
            return rc;
        }
        /* NORMAL: the WAL is synced ahead of the checkpoints (store_sqlite_flush.c) */
        if (s->sync == 1 && (rc = tether__sq_flush_start(s, op)) != TETHER_OK) {
            return rc;
        }
        /* With the file ours alone, the WAL index lives in our heap and any -shm
         * file left by an earlier shared open goes stale at our first commit;
         * were it kept, the lost -wal check above would later read its old
         * frame counts beside a -wal this connection removed cleanly. */
        char shm[PATH_MAX + 8];
        if ((size_t)snprintf(shm, sizeof shm, "%s-shm", s->path) < sizeof shm &&
            unlink(shm) != 0 && errno != ENOENT) {
            return tether__sq_fail(s, TETHER_ESTORE, "%s: cannot remove the stale %s: %s", op, shm,
                                   strerror(errno));
        }
        return TETHER_OK;
    }
    sqlite3_wal_hook(s->db, on_wal, &s->ck);
    if ((rc = connect_db(s, &s->ck.db, SQLITE_OPEN_READWRITE, op)) != TETHER_OK) {
        return rc;
    }
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %d", s->sync);
    if ((rc = exec(s, s->ck.db, sql, op)) != TETHER_OK) {
        return rc;
    }
    if (pthread_create(&s->ck.thread, NULL, ck_main, &s->ck) != 0) {
        return tether__sq_fail(s, TETHER_ESYS, "%s: cannot start the checkpoint thread", op);
    }
    s->ck.started = 1;
    return TETHER_OK;
}

sqstore *tether__sq_new(const char *path)
{
    sqstore *s = tether__calloc(1, sizeof *s);
    char *dup = tether__strdup(path);
    pthread_condattr_t ca;
    if (!s || !dup || pthread_condattr_init(&ca) != 0) {
        tether__free(s);
        tether__free(dup);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ck.cv, &ca);
    pthread_cond_init(&s->ck.done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->ck.mu, NULL);
    s->base.ops = &tether__sqlite_ops;
    s->path = dup;
    s->lock_fd = -1;
    return s;
}

int tether__store_page_size_ok(uint32_t n)
{
    return n >= TETHER__PAGE_SIZE_MIN && n <= TETHER__PAGE_SIZE_MAX && (n & (n - 1)) == 0;
}

int tether__store_sqlite_open_opts(const char *path, tether__store_role role,
                                   tether_durability durability, const tether__sqlite_opts *opts,
                                   tether__store **out, char *errbuf, size_t errlen)
{
    static const tether__sqlite_opts none;
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
    opts = opts ? opts : &none;
    if (!out || !path || !*path || (role != TETHER__ROLE_CLIENT && role != TETHER__ROLE_SERVER) ||
        (unsigned)durability > TETHER_DURABILITY_FULL) {
        int rc = tether__fail(TETHER_EINVAL, "store_sqlite_open: invalid argument");
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open: invalid argument");
        }
        return rc;
    }
    /* SQLite would keep its default without a word: refused before a file exists */
    if (opts->page_size && !tether__store_page_size_ok(opts->page_size)) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "store_sqlite_open: page size %u is not a power of two from %u to %u",
                 (unsigned)opts->page_size, TETHER__PAGE_SIZE_MIN, TETHER__PAGE_SIZE_MAX);
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s", msg);
        }
        return tether__fail(TETHER_EINVAL, "%s", msg);
    }
    sqstore *s = tether__sq_new(path);
    if (!s) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open: out of memory");
        }
        return tether__fail(TETHER_ENOMEM, "store_sqlite_open: out of memory");
    }
    s->role = role;
    s->sync = sync_of[durability];
    s->ck.soft_pages = CKPT_SOFT_PAGES;
    s->ck.hard_pages = CKPT_HARD_PAGES;
    s->ck.period_ms = CKPT_PERIOD_MS;
    s->page_size = opts->page_size;
    int rc = open_all(s, opts->flags);
    if (rc != TETHER_OK) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s", s->msg);
        }
        tether__sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return TETHER_OK;
}

int tether__store_sqlite_open_flags(const char *path, tether__store_role role,
                                    tether_durability durability, unsigned flags,
                                    tether__store **out, char *errbuf, size_t errlen)
{
    tether__sqlite_opts o = {.flags = flags};
    return tether__store_sqlite_open_opts(path, role, durability, &o, out, errbuf, errlen);
}

int tether__store_sqlite_open(const char *path, tether__store_role role,
                              tether_durability durability, tether__store **out, char *errbuf,
                              size_t errlen)
{
    return tether__store_sqlite_open_flags(path, role, durability, 0, out, errbuf, errlen);
}

/* ---- test hooks (store_testhooks.h) ---- */

static sqstore *as_sqlite(tether__store *st)
{
    return st && st->ops == &tether__sqlite_ops ? (sqstore *)st : NULL;
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
        rc = tether__sq_prepare_all(s, "reopen_readonly");
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

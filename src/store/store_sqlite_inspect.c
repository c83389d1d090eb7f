/*
 * The SQLite store seen from outside: the read-only open used by `tether
 * status`, inspect() (role, totals, the integrity check), and the check for
 * a -wal file removed after a crash, which both opens run first.
 *
 * A removed -wal. After a crash the -wal file holds the latest commits until a
 * checkpoint copies them into the database. Delete it, and SQLite opens the
 * database as it was at the last checkpoint without a word. The -shm file (the
 * WAL index, https://sqlite.org/walformat.html) survives a crash too and
 * records how many WAL frames were committed (mxFrame) and how many were
 * already copied into the database (nBackfill). A -shm whose header says
 * mxFrame > nBackfill next to a missing or header-less -wal means commits were
 * lost: the open refuses with TETHER_ESTORE_CORRUPT instead of rolling back.
 * SQLite itself deletes the -wal only on the last close, after a complete
 * checkpoint (mxFrame == nBackfill), so this never fires on a healthy store.
 * Removing -wal and -shm together cannot be told from a clean shutdown; see
 * docs/guarantees.md.
 */
#include "store_sqlite_int.h"

#include <sys/stat.h>

#define WAL_HDR_BYTES 32      /* a -wal file shorter than this holds no frame */
#define SHM_HDR_BYTES 136     /* two WalIndexHdr copies (48 each) and WalCkptInfo (40) */
#define SHM_VERSION 3007000u  /* WalIndexHdr.iVersion */
#define SHM_OFF_INIT 12       /* WalIndexHdr.isInit, one byte */
#define SHM_OFF_MXFRAME 16    /* WalIndexHdr.mxFrame, native u32 */
#define SHM_HDR_COPY 48       /* size of one WalIndexHdr copy */
#define SHM_OFF_BACKFILL 96   /* WalCkptInfo.nBackfill, native u32 */

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

int tether__sq_wal_lost(const char *path, char *msg, size_t len)
{
    char wal[4096], shm[4096];
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", path) >= sizeof wal ||
        (size_t)snprintf(shm, sizeof shm, "%s-shm", path) >= sizeof shm) {
        return 0;
    }
    struct stat sb;
    if (stat(wal, &sb) == 0 && sb.st_size >= WAL_HDR_BYTES) {
        return 0; /* the WAL is there: SQLite recovers it */
    }
    int fd = open(shm, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0; /* no index: a clean shutdown, or both files removed */
    }
    unsigned char h[SHM_HDR_BYTES];
    ssize_t n = pread(fd, h, sizeof h, 0);
    close(fd);
    if (n != (ssize_t)sizeof h || memcmp(h, h + SHM_HDR_COPY, SHM_HDR_COPY) != 0 ||
        get_u32(h) != SHM_VERSION || h[SHM_OFF_INIT] != 1) {
        return 0; /* not an index header we can read with confidence */
    }
    uint32_t frames = get_u32(h + SHM_OFF_MXFRAME), copied = get_u32(h + SHM_OFF_BACKFILL);
    if (frames <= copied) {
        return 0; /* everything committed is in the database */
    }
    snprintf(msg, len,
             "%s: the -wal file is missing, but %s says it held %u committed WAL frames, %u of "
             "them not yet in the database: the latest commits were lost with it (removed "
             "after a crash?). Put the -wal file back; to accept the loss, remove the -shm "
             "file too (docs/guarantees.md)",
             path, shm, (unsigned)frames, (unsigned)(frames - copied));
    return 1;
}

/* ---- inspect ---- */

/* Runs PRAGMA integrity_check: TETHER_OK when it says "ok". */
static int integrity(sqstore *s)
{
    static const char op[] = "inspect (integrity check)";
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check(10)", -1, &q, NULL);
    if (rc != SQLITE_OK) {
        rc = tether__sq_sqfail(s, s->db, rc, op);
        sqlite3_finalize(q);
        return rc;
    }
    int ret = TETHER_OK;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *first = (const char *)sqlite3_column_text(q, 0);
        if (!first || strcmp(first, "ok") != 0) {
            ret = tether__sq_fail(s, TETHER_ESTORE_CORRUPT, "%s: %s: %s", op, s->path,
                                  first ? first : "(no text)");
        }
    } else {
        ret = tether__sq_sqfail(s, s->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, op);
    }
    sqlite3_finalize(q);
    return ret;
}

/* Compares each session's pending totals (with the rows appended above its
 * out_last while it lagged: store_sqlite.c, "out_last") with its outbox rows,
 * and looks for rows of no session, in one read; the PostgreSQL store's
 * check does the same (store_pg.c). */
static int totals(sqstore *s)
{
    static const char op[] = "inspect (pending totals check)";
    static const char sql[] =
        "WITH o AS (SELECT session, count(*) AS n, sum(length(payload)) AS b, "
        "  max(seq) AS hi FROM outbox GROUP BY session), "
        "a AS (SELECT session, count(*) AS n, sum(length(payload)) AS b FROM outbox x "
        "  WHERE seq > (SELECT out_last FROM sessions WHERE id = x.session) GROUP BY session), "
        "bad AS (SELECT s.id, s.pending_count + coalesce(a.n, 0) AS pc, "
        "  s.pending_bytes + coalesce(a.b, 0) AS pb, coalesce(o.n, 0) AS rn, "
        "  coalesce(o.b, 0) AS rb FROM sessions s LEFT JOIN o ON o.session = s.id "
        "  LEFT JOIN a ON a.session = s.id "
        "  WHERE pc != rn OR pb != rb) "
        "SELECT (SELECT count(*) FROM bad), "
        "(SELECT count(*) FROM outbox x WHERE NOT EXISTS "
        "  (SELECT 1 FROM sessions WHERE id = x.session)), "
        "(SELECT hex(id) FROM bad ORDER BY id LIMIT 1), "
        "(SELECT pc FROM bad ORDER BY id LIMIT 1), (SELECT rn FROM bad ORDER BY id LIMIT 1), "
        "(SELECT pb FROM bad ORDER BY id LIMIT 1), (SELECT rb FROM bad ORDER BY id LIMIT 1)";
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
    }
    int ret = TETHER_OK;
    if (rc != SQLITE_ROW) {
        ret = tether__sq_sqfail(s, s->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, op);
    } else {
        long long wrong = sqlite3_column_int64(q, 0), orphans = sqlite3_column_int64(q, 1);
        if (wrong > 0) {
            const char *hex = (const char *)sqlite3_column_text(q, 2);
            ret = tether__sq_fail(
                s, TETHER_ESTORE_CORRUPT,
                "%s: %s: %lld sessions' pending totals disagree with their outbox (the first, "
                "%s, records %lld messages and %lld bytes; its outbox holds %lld and %lld), "
                "%lld outbox rows belong to no session",
                op, s->path, wrong, hex ? hex : "?", (long long)sqlite3_column_int64(q, 3),
                (long long)sqlite3_column_int64(q, 5), (long long)sqlite3_column_int64(q, 4),
                (long long)sqlite3_column_int64(q, 6), orphans);
        } else if (orphans > 0) {
            ret = tether__sq_fail(s, TETHER_ESTORE_CORRUPT,
                                  "%s: %s: %lld outbox rows belong to no session", op, s->path,
                                  orphans);
        }
    }
    sqlite3_finalize(q);
    return ret;
}

int tether__sq_inspect(tether__store *st, unsigned flags, tether__store_info *out)
{
    static const char op[] = "inspect";
    sqstore *s = (sqstore *)st;
    if (!out || (flags & ~TETHER__INSPECT_CHECK) != 0) {
        return tether__sq_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    memset(out, 0, sizeof *out);
    if ((flags & TETHER__INSPECT_CHECK) != 0) {
        int rc = integrity(s);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    out->role = s->role;
    if (s->empty) {
        return TETHER_OK;
    }
    if ((flags & TETHER__INSPECT_CHECK) != 0) {
        int rc = totals(s);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    /* session rows may lag their outbox only while meta 'unsaved' is set
     * (store_sqlite.c, "out_last"); otherwise they alone are read */
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, !tether__sq_lagging(s) ? "SELECT count(*), coalesce(sum(pending_count), 0), "
                                              "coalesce(sum(pending_bytes), 0) FROM sessions" :
                                "SELECT count(*), coalesce(sum(pending_count + (SELECT "
                                "count(*) FROM outbox o WHERE o.session = s.id AND o.seq > "
                                "s.out_last)), 0), coalesce(sum(pending_bytes + (SELECT "
                                "coalesce(sum(length(payload)), 0) FROM outbox o WHERE "
                                "o.session = s.id AND o.seq > s.out_last)), 0) FROM sessions s",
                                -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
    }
    int ret = TETHER_OK;
    if (rc == SQLITE_ROW) {
        out->sessions = (uint64_t)sqlite3_column_int64(q, 0);
        out->pending = (uint64_t)sqlite3_column_int64(q, 1);
        out->pending_bytes = (uint64_t)sqlite3_column_int64(q, 2);
    } else {
        ret = tether__sq_sqfail(s, s->db, rc, op);
    }
    sqlite3_finalize(q);
    return ret;
}

/* ---- an empty database opened read-only ---- */

/* A table-less database (a zero-byte file included) is a store nobody has
 * initialised yet: no session, nothing to write. */

static int e_none(tether__store *st, const char *op)
{
    return tether__sq_fail((sqstore *)st, TETHER_ENOTFOUND, "%s: no such session (empty store)", op);
}

static int e_readonly(tether__store *st, const char *op)
{
    return tether__sq_fail((sqstore *)st, TETHER_ESTORE_READONLY, "%s: the store is open read-only",
                           op);
}

static int e_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    (void)id;
    (void)out;
    return e_none(st, "session_get");
}

static int e_put(tether__store *st, const tether__session_rec *rec)
{
    (void)rec;
    return e_readonly(st, "session_put");
}

static int e_delete(tether__store *st, const uint8_t id[16])
{
    (void)id;
    return e_readonly(st, "session_delete");
}

static int e_list(tether__store *st, tether__list_cb cb, void *arg)
{
    (void)arg;
    return cb ? TETHER_OK
              : tether__sq_fail((sqstore *)st, TETHER_EINVAL, "session_list: invalid argument");
}

static int e_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    (void)id;
    (void)msgs;
    (void)n;
    (void)max_count;
    (void)max_bytes;
    (void)first_seq;
    return e_readonly(st, "append");
}

static int e_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    (void)id;
    (void)from_seq;
    (void)max_count;
    (void)cb;
    (void)arg;
    return e_none(st, "load");
}

static int e_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    (void)id;
    (void)seq;
    return e_readonly(st, "ack");
}

static int e_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    (void)id;
    (void)cursor;
    return e_readonly(st, "set_cursor");
}

static int e_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    (void)id;
    (void)count;
    (void)bytes;
    return e_none(st, "pending");
}

static int e_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *new_rec,
                    uint64_t skip)
{
    (void)old_id;
    (void)new_rec;
    (void)skip;
    return e_readonly(st, "rebase");
}

static int e_verdict_get(tether__store *st, const char *key, tether__verdict *out)
{
    (void)out;
    if (tether__verdict_check(key, NULL) != TETHER_OK) {
        return tether__sq_fail((sqstore *)st, TETHER_EINVAL, "verdict_get: %s", tether_errmsg());
    }
    return tether__sq_fail((sqstore *)st, TETHER_ENOTFOUND,
                           "verdict_get: the store is empty (no verdict kept)");
}

static int e_verdict_put(tether__store *st, const char *key, const tether__verdict *v)
{
    (void)key;
    (void)v;
    return e_readonly(st, "verdict_put");
}

static const tether__store_ops empty_ops = {
    .session_get = e_get,
    .session_put = e_put,
    .session_delete = e_delete,
    .session_list = e_list,
    .append = e_append,
    .load = e_load,
    .ack = e_ack,
    .set_cursor = e_set_cursor,
    .pending = e_pending,
    .rebase = e_rebase,
    .errmsg = tether__sq_errmsg,
    .close = tether__sq_close,
    .inspect = tether__sq_inspect,
    .verdict_get = e_verdict_get,
    .verdict_put = e_verdict_put,
    .lease_take = tether__lease_single_take,
    .lease_release = tether__lease_single_release,
    .lease_renew = tether__lease_single_renew,
    .wake = tether__wake_single,
    .wait_wakes = tether__wait_wakes_single,
};

/* ---- the read-only open ---- */

/*
 * SQLite cannot open a WAL database it may only read when reading needs a
 * file it cannot make: the -wal is there, and its index (-shm) is missing
 * and cannot be created beside it. That is a read-only directory or file
 * system (access() reports EROFS even to root), not damage: the same files
 * read fine where they can be written.
 */
static int cantopen(sqstore *s, int rc, const char *op)
{
    char wal[4096], shm[4096], dir[4096];
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", s->path) < sizeof wal &&
        (size_t)snprintf(shm, sizeof shm, "%s-shm", s->path) < sizeof shm &&
        (size_t)snprintf(dir, sizeof dir, "%s", s->path) < sizeof dir) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            snprintf(dir, sizeof dir, ".");
        } else {
            slash[slash == dir ? 1 : 0] = '\0';
        }
        if (access(wal, F_OK) == 0 && access(shm, F_OK) != 0 && access(dir, W_OK) != 0) {
            int e = errno;
            return tether__sq_fail(s, TETHER_ESTORE_READONLY,
                                   "%s: its -wal file can only be read through a -shm index, "
                                   "which cannot be created in %s (%s); read it where it can be "
                                   "written, or copy the database, -wal and -shm together",
                                   op, dir, strerror(e));
        }
    }
    return tether__sq_sqfail(s, s->db, rc, op);
}

/* A failure of SQLite while reading the file at open, in tether's words. */
static int read_fail(sqstore *s, int rc, const char *op)
{
    int prim = rc & 0xff;
    if (prim == SQLITE_CANTOPEN) {
        return cantopen(s, rc, op);
    }
    if (prim == SQLITE_NOTADB) {
        return tether__sq_fail(s, TETHER_ESTORE_CORRUPT, "%s: not a SQLite database (%s)", op,
                               sqlite3_errmsg(s->db));
    }
    return tether__sq_sqfail(s, s->db, rc, op);
}

/* One integer from a query on s->db, or the failure. */
static int ro_int(sqstore *s, const char *sql, sqlite3_int64 *out, const char *op)
{
    int rc = tether__sq_int(s, sql, out);
    return rc == SQLITE_OK ? TETHER_OK : read_fail(s, rc, op);
}

/* The role recorded in a schema-1 database. */
static int ro_role(sqstore *s, const char *op)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'role'", -1, &q, NULL);
    if (rc != SQLITE_OK) {
        int ret = (rc & 0xff) == SQLITE_ERROR
                      ? tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (%s)", op,
                                        sqlite3_errmsg(s->db))
                      : read_fail(s, rc, op);
        sqlite3_finalize(q);
        return ret;
    }
    int ret = TETHER_OK;
    rc = sqlite3_step(q);
    const char *have = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
    if (have && strcmp(have, "client") == 0) {
        s->role = TETHER__ROLE_CLIENT;
    } else if (have && strcmp(have, "server") == 0) {
        s->role = TETHER__ROLE_SERVER;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        ret = tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (role '%s')", op,
                              have ? have : "none recorded");
    } else {
        ret = read_fail(s, rc, op);
    }
    sqlite3_finalize(q);
    return ret;
}

/*
 * A cleanly closed WAL database (no -wal file) in a directory this process
 * cannot write: SQLite still wants to create the -shm index to read it, and
 * fails with "attempt to write a readonly database" (on a read-only file
 * system: "unable to open database file"). With no -wal there is
 * nothing an index would point into, so the file alone is the whole store;
 * it is opened again as immutable (no locks, no -shm). TETHER_OK with s->db
 * replaced, or TETHER_ESTORE_READONLY when a -wal exists (its commits need
 * the index) or the path cannot be written as a URI.
 */
static int reopen_immutable(sqstore *s, const char *op)
{
    char wal[4096], uri[3 * 4096 + 32];
    struct stat sb;
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", s->path) >= sizeof wal ||
        stat(wal, &sb) == 0 || errno != ENOENT) {
        return TETHER_ESTORE_READONLY;
    }
    size_t n = (size_t)snprintf(uri, sizeof uri, "file:");
    for (const unsigned char *c = (const unsigned char *)s->path; *c; c++) {
        /* the URI's own characters, escaped (https://sqlite.org/uri.html) */
        if (*c == '%' || *c == '?' || *c == '#' || *c <= ' ' || *c >= 0x7f) {
            n += (size_t)snprintf(uri + n, sizeof uri - n, "%%%02X", *c);
        } else {
            uri[n++] = (char)*c;
        }
    }
    snprintf(uri + n, sizeof uri - n, "?immutable=1");
    sqlite3_close(s->db);
    s->db = NULL;
    int rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                             NULL);
    if (rc != SQLITE_OK) {
        return read_fail(s, rc, op);
    }
    sqlite3_extended_result_codes(s->db, 1);
    return TETHER_OK;
}

static int ro_open(sqstore *s)
{
    char op[320];
    snprintf(op, sizeof op, "open %s (read-only)", s->path);
    struct stat sb;
    if (stat(s->path, &sb) != 0) {
        int e = errno;
        return tether__sq_fail(s, e == ENOENT || e == ENOTDIR ? TETHER_ENOTFOUND : TETHER_ESTORE,
                               "%s: %s", op, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        return tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: not a tether store (not a regular file)",
                               op);
    }
    if (tether__sq_wal_lost(s->path, s->msg, sizeof s->msg)) {
        return tether__fail(TETHER_ESTORE_CORRUPT, "%s", s->msg);
    }
    int rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        return read_fail(s, rc, op);
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    sqlite3_int64 version = 0, objects = 0;
    rc = ro_int(s, "PRAGMA user_version", &version, op);
    /* READONLY in a directory it cannot write; CANTOPEN (ESTORE) on a
     * read-only file system, where even opening a -shm for reading fails */
    if ((rc == TETHER_ESTORE_READONLY || rc == TETHER_ESTORE) &&
        reopen_immutable(s, op) == TETHER_OK) {
        rc = ro_int(s, "PRAGMA user_version", &version, op);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    if (version == 0) {
        if ((rc = ro_int(s, "SELECT count(*) FROM sqlite_master", &objects, op)) != TETHER_OK) {
            return rc;
        }
        if (objects != 0) {
            return tether__sq_fail(
                s, TETHER_ESTORE_SCHEMA,
                "%s: not a tether store (a SQLite database with %lld objects and no tether schema)",
                op, (long long)objects);
        }
        s->empty = 1;
        s->role = TETHER__ROLE_NONE;
        s->base.ops = &empty_ops;
        return TETHER_OK;
    }
    if (version > TETHER__STORE_SQLITE_SCHEMA_VERSION) {
        return tether__sq_fail(s, TETHER_ESTORE_SCHEMA,
                               "%s: database schema %lld is newer than this tether (%d)", op,
                               (long long)version, TETHER__STORE_SQLITE_SCHEMA_VERSION);
    }
    if (version < 0) {
        return tether__sq_fail(s, TETHER_ESTORE_SCHEMA, "%s: unknown database schema %lld", op,
                               (long long)version);
    }
    if ((rc = ro_role(s, op)) != TETHER_OK) {
        return rc;
    }
    return tether__sq_prepare_all(s, op);
}

int tether__store_sqlite_open_readonly(const char *path, tether__store **out, char *errbuf,
                                       size_t errlen)
{
    if (errbuf && errlen) {
        errbuf[0] = '\0';
    }
    if (out) {
        *out = NULL;
    }
    if (!out || !path || !*path) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open_readonly: invalid argument");
        }
        return tether__fail(TETHER_EINVAL, "store_sqlite_open_readonly: invalid argument");
    }
    sqstore *s = tether__sq_new(path);
    if (!s) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "store_sqlite_open_readonly: out of memory");
        }
        return tether__fail(TETHER_ENOMEM, "store_sqlite_open_readonly: out of memory");
    }
    s->readonly = 1;
    int rc = ro_open(s);
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

/*
 * The SQLite store's fallback verdicts (store.h, verdict_get/verdict_put):
 * one row per key in the table verdicts (schema 2). The statements are
 * prepared per call: a client reads its verdict once at start and writes it
 * when the carriage changes, and a read-only open of a schema-1 file (no
 * table) must still open; there verdict_get finds nothing.
 */
#include "store_sqlite_int.h"

static int run(sqstore *s, const char *sql, const char *key, const tether__verdict *v,
               tether__verdict *out, const char *op)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc != SQLITE_OK) {
        int ret = (out && (rc & 0xff) == SQLITE_ERROR && strstr(sqlite3_errmsg(s->db), "no such"))
                      ? tether__sq_fail(s, TETHER_ENOTFOUND, "%s: no verdict kept (schema 1)", op)
                      : tether__sq_sqfail(s, s->db, rc, op);
        sqlite3_finalize(q);
        return ret;
    }
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (v) {
        sqlite3_bind_int64(q, 2, (sqlite3_int64)v->until_ms);
        sqlite3_bind_int64(q, 3, (sqlite3_int64)v->probes_failed);
    }
    int ret = TETHER_OK;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW && out) {
        sqlite3_int64 until = sqlite3_column_int64(q, 0), failed = sqlite3_column_int64(q, 1);
        if (until <= 0 || failed < 0 || failed > (sqlite3_int64)UINT32_MAX) {
            ret = tether__sq_fail(s, TETHER_ESTORE_CORRUPT,
                                  "%s: the verdict row holds values out of range (%lld, %lld)", op,
                                  (long long)until, (long long)failed);
        } else {
            out->until_ms = (uint64_t)until;
            out->probes_failed = (uint32_t)failed;
        }
    } else if (rc == SQLITE_DONE && out) {
        ret = tether__sq_fail(s, TETHER_ENOTFOUND, "%s: no verdict kept for this key", op);
    } else if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ret = tether__sq_sqfail(s, s->db, rc, op);
    }
    sqlite3_finalize(q);
    return ret;
}

int tether__sq_verdict_get(tether__store *st, const char *key, tether__verdict *out)
{
    sqstore *s = (sqstore *)st;
    if (tether__verdict_check(key, NULL) != TETHER_OK || !out) {
        return tether__sq_fail(s, TETHER_EINVAL, "verdict_get: %s",
                               out ? tether_errmsg() : "invalid argument");
    }
    return run(s, "SELECT until_ms, probes_failed FROM verdicts WHERE key = ?1", key, NULL, out,
               "verdict_get");
}

int tether__sq_verdict_put(tether__store *st, const char *key, const tether__verdict *v)
{
    sqstore *s = (sqstore *)st;
    if (tether__verdict_check(key, v) != TETHER_OK) {
        return tether__sq_fail(s, TETHER_EINVAL, "verdict_put: %s", tether_errmsg());
    }
    if (s->readonly) {
        return tether__sq_fail(s, TETHER_ESTORE_READONLY,
                               "verdict_put: the store is open read-only");
    }
    if (!v) {
        return run(s, "DELETE FROM verdicts WHERE key = ?1", key, NULL, NULL, "verdict_put");
    }
    return run(s,
               "INSERT INTO verdicts(key, until_ms, probes_failed) VALUES (?1, ?2, ?3) "
               "ON CONFLICT(key) DO UPDATE SET until_ms = excluded.until_ms, "
               "probes_failed = excluded.probes_failed",
               key, v, NULL, "verdict_put");
}

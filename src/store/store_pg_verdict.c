/*
 * The PostgreSQL store's fallback verdicts (store.h, verdict_get and
 * verdict_put): one row per role and key in tether_verdicts. The table is
 * created by the first verdict_put (CREATE TABLE IF NOT EXISTS), not by the
 * schema of store_pg_open.c: it is an addition no other operation reads, so
 * stores made before it keep their schema version and stay readable by
 * older tethers; verdict_get on a store without it finds nothing.
 */
#include "store_pg_int.h"

#define VERDICTS_SQL                                                                               \
    "CREATE TABLE IF NOT EXISTS tether_verdicts(role smallint NOT NULL, key text NOT NULL,"        \
    " until_ms bigint NOT NULL, probes_failed bigint NOT NULL, PRIMARY KEY(role, key))"

/* Runs sql with the role, the key and (v) the verdict as parameters. */
static PGresult *run(pgstore *s, const char *sql, const char *key, const tether__verdict *v,
                     const char *op, int *rc)
{
    params p;
    memset(&p, 0, sizeof p);
    p_int(&p, (uint64_t)s->role, 2);
    p.val[p.n] = key;
    p.len[p.n] = (int)strlen(key);
    p.fmt[p.n] = 0; /* text */
    p.n++;
    if (v) {
        p_i64(&p, v->until_ms);
        p_i64(&p, v->probes_failed);
    }
    PGresult *r = PQexecParams(s->conn, sql, p.n, NULL, p.val, p.len, p.fmt, 1);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = TETHER_OK;
        return r;
    }
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "42P01") == 0 && !v && strncmp(sql, "SELECT", 6) == 0) {
        *rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no verdict kept (no verdict table)", op);
    } else {
        *rc = tether__pg_qfail(s, r, op);
    }
    PQclear(r);
    return NULL;
}

int tether__pg_verdict_get(tether__store *st, const char *key, tether__verdict *out)
{
    static const char op[] = "verdict_get";
    pgstore *s = (pgstore *)st;
    if (tether__verdict_check(key, NULL) != TETHER_OK || !out) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: %s", op,
                               out ? tether_errmsg() : "invalid argument");
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    PGresult *r = run(s,
                      "SELECT until_ms, probes_failed FROM tether_verdicts "
                      "WHERE role = $1 AND key = $2",
                      key, NULL, op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no verdict kept for this key", op);
    } else {
        uint64_t until = col_u64(r, 0, 0), failed = col_u64(r, 0, 1);
        if (until == 0 || until > (uint64_t)INT64_MAX || failed > UINT32_MAX) {
            rc = tether__pg_fail(s, TETHER_ESTORE_CORRUPT,
                                 "%s: the verdict row holds values out of range", op);
        } else {
            out->until_ms = until;
            out->probes_failed = (uint32_t)failed;
        }
    }
    PQclear(r);
    return rc;
}

int tether__pg_verdict_put(tether__store *st, const char *key, const tether__verdict *v)
{
    static const char op[] = "verdict_put";
    pgstore *s = (pgstore *)st;
    if (tether__verdict_check(key, v) != TETHER_OK) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: %s", op, tether_errmsg());
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    PGresult *r = PQexec(s->conn, VERDICTS_SQL);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = tether__pg_qfail(s, r, op);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    r = v ? run(s,
                "INSERT INTO tether_verdicts(role, key, until_ms, probes_failed) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (role, key) DO UPDATE SET "
                "until_ms = excluded.until_ms, probes_failed = excluded.probes_failed",
                key, v, op, &rc)
          : run(s, "DELETE FROM tether_verdicts WHERE role = $1 AND key = $2", key, NULL, op, &rc);
    PQclear(r);
    return rc;
}

/*
 * Session ownership in the PostgreSQL store: leases with fencing epochs
 * (store.h, "session ownership"; docs/guarantees.md, "A fleet of servers").
 *
 * Schema 2 adds to tether_sessions:
 *   lease_epoch bigint  the session's fencing number: raised by every take;
 *                       every fenced write of a store carries the epoch it
 *                       took and commits only when it is still the row's;
 *   lease_owner bigint  the instance that took it last (a random id, which is
 *                       also the key of the session-level advisory lock that
 *                       instance's connection holds as long as it lives);
 *   lease_until timestamptz  when the lease lapses unless renewed; NULL once
 *                       released.
 * A lease is free to take when it was released, lapsed, or its owner's
 * advisory lock is gone (the owner's connection ended: a process killed with
 * -9 loses its connection, and PostgreSQL drops its locks with it).
 *
 * The store remembers, per session, the epoch of its last take; a session it
 * never took is written with epoch 0, which only a session never leased has.
 * The records stay for the store's life (about 48 bytes per session this
 * instance ever served), so that a write after release still carries the
 * epoch it had.
 */
#include "common/alloc.h"
#include "store_pg_int.h"

struct pg_lease {
    uint8_t id[16]; /* the session */
    uint64_t epoch; /* the epoch of this store's last take */
    int held;       /* 1 while not released (renewed, and reported when lost) */
    pg_lease *next; /* hash chain */
};

static size_t bucket(const pgstore *s, const uint8_t id[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 1099511628211ull;
    }
    return (size_t)(h & (s->nleases_b - 1));
}

static pg_lease *find(const pgstore *s, const uint8_t id[16])
{
    if (!s->nleases_b) {
        return NULL;
    }
    for (pg_lease *l = s->leases[bucket(s, id)]; l; l = l->next) {
        if (memcmp(l->id, id, 16) == 0) {
            return l;
        }
    }
    return NULL;
}

/* Makes room for one more record: the table doubles past two per bucket. */
static int grow(pgstore *s)
{
    if (s->nleases_b && s->nleases < 2 * s->nleases_b) {
        return TETHER_OK;
    }
    size_t nb = s->nleases_b ? s->nleases_b * 2 : 64;
    pg_lease **t = tether__calloc(nb, sizeof *t);
    if (!t) {
        return TETHER_ENOMEM;
    }
    pg_lease **old = s->leases;
    size_t ob = s->nleases_b;
    s->leases = t;
    s->nleases_b = nb;
    for (size_t i = 0; i < ob; i++) {
        for (pg_lease *l = old[i], *next; l; l = next) {
            next = l->next;
            size_t b = bucket(s, l->id);
            l->next = t[b];
            t[b] = l;
        }
    }
    tether__free(old);
    return TETHER_OK;
}

uint64_t tether__pg_lease_epoch(const pgstore *s, const uint8_t id[16])
{
    const pg_lease *l = find(s, id);
    return l ? l->epoch : 0;
}

void tether__pg_lease_free(pgstore *s)
{
    for (size_t i = 0; i < s->nleases_b; i++) {
        for (pg_lease *l = s->leases[i], *next; l; l = next) {
            next = l->next;
            tether__free(l);
        }
    }
    tether__free(s->leases);
    s->leases = NULL;
    s->nleases_b = s->nleases = 0;
}

int tether__pg_fenced(pgstore *s, const char *op, uint64_t ours, uint64_t theirs)
{
    return tether__pg_fail(s, TETHER_EFENCED,
                           "%s: the session's lease is now epoch %llu, taken by another instance; "
                           "this one (epoch %llu) may no longer write for it",
                           op, (unsigned long long)theirs, (unsigned long long)ours);
}

int tether__pg_migrate(pgstore *s, long long from, const char *op)
{
    /* step 2: the lease columns; the partial index finds an owner's leases */
    static const char step2[] =
        "ALTER TABLE tether_sessions ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0, "
        "ADD COLUMN lease_owner bigint, ADD COLUMN lease_until timestamptz;"
        "CREATE INDEX tether_sessions_lease ON tether_sessions(role, lease_owner) "
        "WHERE lease_until IS NOT NULL;"
        "UPDATE tether_meta SET value = '2' WHERE key = 'schema_version';";
    if (from < 2) {
        PGresult *r = PQexec(s->conn, step2);
        int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        int rc = ok ? TETHER_OK : tether__pg_qfail(s, r, op);
        PQclear(r);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    return TETHER_OK;
}

int tether__pg_lease_setup(pgstore *s, const char *op)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", (long long)s->owner);
    PGresult *r = PQexec(s->conn, sql);
    int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? TETHER_OK : tether__pg_qfail(s, r, op);
    PQclear(r);
    return rc;
}

/* Why a take found no row: TETHER_ENOTFOUND, or TETHER_EFENCED (held elsewhere). */
static int why_not(pgstore *s, const uint8_t id[16], const char *op)
{
    params p;
    p_key(&p, s, id);
    int rc;
    PGresult *r = tether__pg_exec(s, P_LEASE_EPOCH, &p, op, &rc);
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        rc = tether__pg_fail(s, TETHER_ENOTFOUND, "%s: no such session", op);
    } else {
        rc = tether__pg_fail(s, TETHER_EFENCED,
                             "%s: another live instance holds the session's lease (epoch %llu)", op,
                             (unsigned long long)col_u64(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

int tether__pg_lease_take(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale)
{
    static const char op[] = "lease_take";
    pgstore *s = (pgstore *)st;
    if (!id || !stale || ttl_ms == 0 || ttl_ms > INT32_MAX) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    if (s->readonly || s->role != TETHER__ROLE_SERVER) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: only a server's writable store takes leases",
                               op);
    }
    int rc = tether__pg_ready(s, op);
    if (rc == TETHER_OK) {
        rc = grow(s);
        if (rc != TETHER_OK) {
            return tether__pg_fail(s, rc, "%s: out of memory", op);
        }
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, id);
    p_i64(&p, ttl_ms);
    p_i64(&p, s->owner);
    PGresult *r = tether__pg_exec(s, P_LEASE_TAKE, &p, op, &rc);
    if (!r) {
        return rc;
    }
    int got = PQntuples(r);
    uint64_t epoch = got ? col_u64(r, 0, 0) : 0;
    PQclear(r);
    if (!got) {
        return why_not(s, id, op);
    }
    pg_lease *l = find(s, id);
    if (!l) {
        l = tether__calloc(1, sizeof *l);
        if (!l) {
            /* taken but not recorded: give it back so nobody waits for it */
            p_key(&p, s, id);
            p_i64(&p, epoch);
            p_i64(&p, s->owner);
            PQclear(tether__pg_exec(s, P_LEASE_RELEASE, &p, op, &rc));
            return tether__pg_fail(s, TETHER_ENOMEM, "%s: out of memory", op);
        }
        memcpy(l->id, id, 16);
        size_t b = bucket(s, id);
        l->next = s->leases[b];
        s->leases[b] = l;
        s->nleases++;
    }
    /* our own previous epoch + 1: nobody else wrote in between */
    *stale = l->epoch == 0 || epoch != l->epoch + 1;
    l->epoch = epoch;
    l->held = 1;
    return TETHER_OK;
}

int tether__pg_lease_release(tether__store *st, const uint8_t id[16])
{
    static const char op[] = "lease_release";
    pgstore *s = (pgstore *)st;
    if (!id) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    pg_lease *l = find(s, id);
    if (!l || !l->held) {
        return TETHER_OK;
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    p_key(&p, s, id);
    p_i64(&p, l->epoch);
    p_i64(&p, s->owner);
    PGresult *r = tether__pg_exec(s, P_LEASE_RELEASE, &p, op, &rc);
    PQclear(r);
    if (rc == TETHER_OK) {
        l->held = 0;
    }
    return rc;
}

int tether__pg_lease_renew(tether__store *st, uint32_t ttl_ms,
                           void (*lost)(void *arg, const uint8_t id[16]),
                           void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                           void *arg)
{
    static const char op[] = "lease_renew";
    pgstore *s = (pgstore *)st;
    if (ttl_ms == 0 || ttl_ms > INT32_MAX) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    if (s->role != TETHER__ROLE_SERVER || s->readonly) {
        return TETHER_OK; /* no leases */
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    params p;
    memset(&p, 0, sizeof p);
    p_int(&p, (uint64_t)s->role, 2);
    p_i64(&p, s->owner);
    p_i64(&p, ttl_ms);
    PGresult *r = tether__pg_exec(s, P_LEASE_RENEW, &p, op, &rc);
    if (!r) {
        return rc;
    }
    /* mark what came back; a held lease that did not is lost */
    for (size_t i = 0; i < s->nleases_b; i++) {
        for (pg_lease *l = s->leases[i]; l; l = l->next) {
            l->held = l->held ? 2 : 0;
        }
    }
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetlength(r, i, 0) != 16) {
            continue;
        }
        pg_lease *l = find(s, (const uint8_t *)PQgetvalue(r, i, 0));
        if (l && l->held == 2 && l->epoch == col_u64(r, i, 1)) {
            l->held = 1;
            if (kept) {
                kept(arg, l->id, col_u64(r, i, 2));
            }
        }
    }
    PQclear(r);
    for (size_t i = 0; i < s->nleases_b; i++) {
        for (pg_lease *l = s->leases[i]; l; l = l->next) {
            if (l->held == 2) {
                l->held = 0;
                if (lost) {
                    lost(arg, l->id);
                }
            }
        }
    }
    return TETHER_OK;
}

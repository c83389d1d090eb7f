/*
 * The PostgreSQL store's append (store_pg.c has the other operations): a
 * batch as one bytea[] parameter of one statement, the reason of a refusal,
 * and an append whose connection broke resolved at once (committed or not)
 * by reconnecting, ending the old backend and reading the session's last_op.
 */
#include "common/alloc.h"
#include "store_pg_int.h"

#include <time.h>

/* The batch as one binary bytea[] parameter (PostgreSQL's array wire
 * format: dimensions, flags, element type, then length-prefixed elements). */
static char *pack_array(const tether_msg *msgs, size_t n, size_t *outlen)
{
    size_t len = 20;
    *outlen = 1; /* not 0: too large, not out of memory */
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].len > (size_t)INT32_MAX - 4 || len > (size_t)INT32_MAX - 4 - msgs[i].len) {
            return NULL; /* a parameter is at most 2 GB: the caller splits the batch */
        }
        len += 4 + msgs[i].len;
    }
    unsigned char *b = tether__malloc(len), *w = b;
    if (!b) {
        *outlen = 0;
        return NULL;
    }
    uint32_t head[5] = {1, 0, 17 /* bytea */, (uint32_t)n, 1};
    for (int k = 0; k < 5; k++, w += 4) {
        w[0] = (unsigned char)(head[k] >> 24);
        w[1] = (unsigned char)(head[k] >> 16);
        w[2] = (unsigned char)(head[k] >> 8);
        w[3] = (unsigned char)head[k];
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t l = (uint32_t)msgs[i].len;
        w[0] = (unsigned char)(l >> 24);
        w[1] = (unsigned char)(l >> 16);
        w[2] = (unsigned char)(l >> 8);
        w[3] = (unsigned char)l;
        w += 4;
        if (l) {
            memcpy(w, msgs[i].data, l);
            w += l;
        }
    }
    *outlen = len;
    return (char *)b;
}

/* Why an append matched no session row: reads it and names the reason. */
static int append_refused(pgstore *s, const uint8_t id[16], size_t n, uint64_t total,
                          uint64_t max_count, uint64_t max_bytes)
{
    static const char op[] = "append";
    tether__session_rec rec;
    uint64_t count = 0, bytes = 0;
    int rc = tether__pg_read_sess(s, P_GET, id, &rec, &count, &bytes, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (n > PG_SEQ_MAX - rec.out_last) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: sequence numbers exhausted", op);
    }
    if (max_count && (n > max_count || count > max_count - n)) {
        return tether__pg_fail(
            s, TETHER_EOUTBOX_FULL,
            "%s: the outbox holds %llu messages, %zu more would pass the cap of %llu", op,
            (unsigned long long)count, n, (unsigned long long)max_count);
    }
    return tether__pg_fail(s, TETHER_EOUTBOX_FULL,
                           "%s: the outbox holds %llu bytes, %llu more would pass the cap of %llu",
                           op, (unsigned long long)bytes, (unsigned long long)total,
                           (unsigned long long)max_bytes);
}

/* Ends the backend that served a lost connection and waits (bounded) until
 * it is gone: the connection may have broken between us and a proxy while
 * the backend lives on, and a request still on its way to it, or still
 * running there, must not commit after we looked. */
static int fence_backend(pgstore *s, int pid, const char *op)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %d", pid);
    for (int waited = 0; pid > 0 && pid != s->pid; waited += 20) {
        PGresult *r = PQexec(s->conn, sql);
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
            int rc = tether__pg_qfail(s, r, op);
            PQclear(r);
            return rc;
        }
        int gone = PQntuples(r) == 0;
        PQclear(r);
        if (gone) {
            break;
        }
        if (waited >= PG_FENCE_MS) {
            return tether__pg_fail(s, TETHER_ESTORE,
                                   "%s: the lost connection's backend %d did "
                                   "not end within %d ms",
                                   op, pid, PG_FENCE_MS);
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return TETHER_OK;
}

/* The connection broke while an append was on its way: it committed, or
 * not. Reconnects once, ends the old backend (fence_backend), then reads the
 * session's last_op, which the append sets to its id in the same UPDATE:
 * equal, it committed (its seqs end at out_last: this store is the
 * session's only writer); otherwise nothing was stored, and nothing can be
 * any more. If the server cannot be asked, the outcome stays unknown. */
static int append_in_doubt(pgstore *s, const uint8_t id[16], size_t n, uint64_t opid,
                           uint64_t *first_seq)
{
    static const char op[] = "append";
    char lost[sizeof s->msg];
    snprintf(lost, sizeof lost, "%s", s->msg);
    int old_pid = s->pid;
    int rc = tether__pg_ready(s, op);
    if (rc == TETHER_OK) {
        rc = fence_backend(s, old_pid, op);
    }
    PGresult *r = NULL;
    if (rc == TETHER_OK) {
        params p;
        p_key(&p, s, id);
        r = tether__pg_exec(s, P_LAST_OP, &p, op, &rc);
    }
    if (!r) {
        return tether__pg_fail(s, TETHER_ESTORE, "%s (and asking again failed: %.200s)", lost,
                               s->msg);
    }
    int committed = PQntuples(r) == 1 && col_u64(r, 0, 0) == opid;
    uint64_t out_last = PQntuples(r) == 1 ? col_u64(r, 0, 1) : 0;
    PQclear(r);
    if (committed) {
        *first_seq = out_last - n + 1;
        s->msg[0] = '\0';
        return TETHER_OK;
    }
    return tether__pg_fail(s, TETHER_ESTORE,
                           "%s: the connection to PostgreSQL at %s was lost; asked again after "
                           "reconnecting: nothing was stored",
                           op, s->where);
}

int tether__pg_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                      uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    static const char op[] = "append";
    pgstore *s = (pgstore *)st;
    if (!id || !first_seq || (n && !msgs)) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len) {
            return tether__pg_fail(s, TETHER_EINVAL, "%s: message %zu has no data", op, i);
        }
        total = msgs[i].len > UINT64_MAX - total ? UINT64_MAX : total + msgs[i].len;
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__session_rec rec;
    if (n == 0) {
        rc = tether__pg_read_sess(s, P_GET, id, &rec, NULL, NULL, op);
        if (rc == TETHER_OK) {
            *first_seq = rec.out_last + 1;
        }
        return rc;
    }
    if ((uint64_t)n > PG_SEQ_MAX || total > PG_SEQ_MAX) {
        return append_refused(s, id, n, total, max_count, max_bytes);
    }
    size_t alen = 0;
    char *arr = pack_array(msgs, n, &alen);
    if (!arr) {
        return tether__pg_fail(s, alen ? TETHER_EINVAL : TETHER_ENOMEM,
                               "%s: cannot pack %zu messages (out of memory, or over 2 GB)", op, n);
    }
    params p;
    p_key(&p, s, id);
    p_i64(&p, n);
    p_i64(&p, total);
    p_i64(&p, max_count > PG_SEQ_MAX ? 0 : max_count);
    p_i64(&p, max_bytes > PG_SEQ_MAX ? 0 : max_bytes);
    p_bytes(&p, arr, alen);
    uint64_t opid = ++s->next_op ? s->next_op : ++s->next_op; /* never 0, the column's default */
    p_i64(&p, opid);
    PGresult *r = tether__pg_exec(s, P_APPEND, &p, op, &rc);
    tether__free(arr);
    if (!r && PQstatus(s->conn) != CONNECTION_OK) {
        return append_in_doubt(s, id, n, opid, first_seq);
    }
    if (!r) {
        return rc;
    }
    if (PQntuples(r) == 1) {
        *first_seq = col_u64(r, 0, 0) + 1;
    } else {
        rc = append_refused(s, id, n, total, max_count, max_bytes);
    }
    PQclear(r);
    return rc;
}

/* One page of load(): rows of seq >= from, at most want; *got rows handed
 * to cb, *last the last seq, *stop whether cb asked to stop. */

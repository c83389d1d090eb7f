/*
 * Wake-ups between server instances sharing a PostgreSQL store: an instance
 * that appended to the outbox of a session it does not serve sends
 * NOTIFY tether_wake with the session's id (hex); every server instance
 * LISTENs on a connection of its own (opened at the first wait, reopened
 * after a failure) and tells its server, which streams the new rows if it
 * serves that session. A wake-up is only a hint: the rows are the truth, and
 * a notification lost (the listener reconnecting, the database restarted)
 * is covered by the lease renewal, which reports each held session's
 * out_last every lease_ms/3 (store_pg_lease.c).
 */
#include "common/alloc.h"
#include "store_pg_int.h"

#include <poll.h>
#include <time.h>

#define WAKE_CHANNEL "tether_wake"

static void hex16(const uint8_t id[16], char out[33])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = d[id[i] >> 4];
        out[2 * i + 1] = d[id[i] & 15];
    }
    out[32] = '\0';
}

static int unhex16(const char *in, uint8_t id[16])
{
    for (int i = 0; i < 32; i++) {
        char c = in[i];
        int v = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1);
        if (v < 0) {
            return -1;
        }
        id[i / 2] = (uint8_t)(i % 2 ? (id[i / 2] | v) : v << 4);
    }
    return in[32] == '\0' ? 0 : -1;
}

int tether__pg_wake(tether__store *st, const uint8_t id[16])
{
    static const char op[] = "wake";
    pgstore *s = (pgstore *)st;
    if (!id) {
        return tether__pg_fail(s, TETHER_EINVAL, "%s: invalid argument", op);
    }
    if (s->role != TETHER__ROLE_SERVER || s->readonly) {
        return TETHER_OK;
    }
    int rc = tether__pg_ready(s, op);
    if (rc != TETHER_OK) {
        return rc;
    }
    char hex[33];
    hex16(id, hex);
    const char *vals[1] = {hex};
    PGresult *r = PQexecParams(s->conn, "SELECT pg_notify('" WAKE_CHANNEL "', $1)", 1, NULL, vals,
                               NULL, NULL, 0);
    rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? TETHER_OK : tether__pg_qfail(s, r, op);
    PQclear(r);
    return rc;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Notices are not errors, and the connection's end (a restart, a terminated
 * backend) arrives as one outside any query: libpq would print it on stderr. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Opens the listening connection; 0, or -1 (lconn NULL). */
static int listen_open(pgstore *s)
{
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {PG_CONNECT_TIMEOUT, "tether-wake", s->conninfo, NULL};
    /* not blocking: the renewal thread waits here, and it must see the
     * server's shutdown within PG_CLOSING_CONNECT_MS (a database that does
     * not answer would otherwise hold it for connect_timeout) */
    char why[256];
    s->lconn = PQconnectStartParams(keys, vals, 1);
    if (s->lconn && PQstatus(s->lconn) != CONNECTION_BAD) {
        (void)tether__pg_connect_wait(s, s->lconn, 0, why, sizeof why);
    }
    PGresult *r = NULL;
    if (s->lconn && PQstatus(s->lconn) == CONNECTION_OK) {
        PQsetNoticeProcessor(s->lconn, quiet, NULL);
        r = PQexec(s->lconn, "LISTEN " WAKE_CHANNEL);
    }
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(s->lconn);
        s->lconn = NULL;
        return -1;
    }
    return 0;
}

int tether__pg_wait_wakes(tether__store *st, uint32_t timeout_ms,
                          void (*cb)(void *arg, const uint8_t id[16]), void *arg)
{
    pgstore *s = (pgstore *)st;
    if (!cb) {
        return TETHER_EINVAL;
    }
    if (!s->conninfo) {
        return TETHER_OK; /* a client's or a reader's store: no wake-ups */
    }
    if (!s->lconn && listen_open(s) != 0) {
        sleep_ms(timeout_ms); /* the database is away: the next call tries again */
        return TETHER_ESTORE;
    }
    struct pollfd p = {PQsocket(s->lconn), POLLIN, 0};
    int n = poll(&p, 1, (int)timeout_ms);
    if (n > 0 && !PQconsumeInput(s->lconn)) {
        PQfinish(s->lconn); /* lost: reopened at the next call; renewal covers the gap */
        s->lconn = NULL;
        return TETHER_ESTORE;
    }
    PGnotify *nt;
    while ((nt = PQnotifies(s->lconn)) != NULL) {
        uint8_t id[16];
        if (nt->extra && strlen(nt->extra) == 32 && unhex16(nt->extra, id) == 0) {
            cb(arg, id);
        }
        PQfreemem(nt);
    }
    return TETHER_OK;
}

/*
 * What a measurement asks the database behind a PostgreSQL store (`tether
 * bench`, docs/scaling.md): its WAL position, and the process ids of its
 * server processes when it runs on this machine, so that a benchmark can
 * count the WAL bytes and the database's CPU per message. Nothing here
 * touches the store's tables.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

static int fail(char *errbuf, size_t errlen, int rc, const char *what, PGconn *c)
{
    if (errbuf && errlen) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        size_t n = strlen(m);
        while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ')) {
            n--;
        }
        snprintf(errbuf, errlen, "%s: %.*s", what, (int)n, m);
    }
    return rc;
}

int tether__store_pg_probe(const char *conninfo, tether__pg_probe *out, char *errbuf,
                           size_t errlen)
{
    if (!conninfo || !out) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "pg probe: invalid argument");
        }
        return TETHER_EINVAL;
    }
    memset(out, 0, sizeof *out);
    PGconn *c = PQconnectdb(conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        int rc = fail(errbuf, errlen, TETHER_ESTORE, "pg probe: connect", c);
        PQfinish(c);
        return rc;
    }
    /* the WAL position as a byte count; whether the server is on this
     * machine (a Unix socket, or a loopback address); its processes */
    PGresult *r = PQexec(c, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text, "
                            "coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true)");
    int rc = TETHER_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = fail(errbuf, errlen, TETHER_ESTORE, "pg probe: WAL position", c);
    } else {
        out->wal_lsn = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        out->local = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    }
    PQclear(r);
    if (rc == TETHER_OK && out->local) {
        r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() ORDER BY pid");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = fail(errbuf, errlen, TETHER_ESTORE, "pg probe: server processes", c);
        } else {
            int n = PQntuples(r);
            for (int i = 0; i < n && out->npids < TETHER__PG_PROBE_PIDS; i++) {
                out->pids[out->npids++] = (int)strtol(PQgetvalue(r, i, 0), NULL, 10);
            }
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

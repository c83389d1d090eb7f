/*
 * The event record (record.h): one line per event, one write(2) per line.
 */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int rec_fd = -1; /* the record, -1 when none is open */

int scen_record_open(const char *path)
{
    rec_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    return rec_fd < 0 ? -1 : 0;
}

void scen_record_close(void)
{
    if (rec_fd >= 0) {
        close(rec_fd);
        rec_fd = -1;
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void scen_record(const char *fmt, ...)
{
    if (rec_fd < 0) {
        return;
    }
    char line[512];
    int n = snprintf(line, sizeof line, "%c %llu", fmt[0], (unsigned long long)mono_ms());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt + 1, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) {
        n = (int)sizeof line - 2;
    }
    line[n++] = '\n';
    /* one write per line: O_APPEND keeps lines whole, a SIGKILL cannot lose it */
    if (write(rec_fd, line, (size_t)n) != n) {
        fprintf(stderr, "tether: cannot write the record: %s\n", strerror(errno));
    }
}

int scen_record_start(const char *db, cli_session_info *out)
{
    cli_session_info si[2];
    size_t count = 0;
    struct stat sb;
    int pg = db != NULL &&
             (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
    if (db != NULL && (pg || stat(db, &sb) == 0)) {
        const char *role = NULL;
        char err[512];
        int rc = cli_store_read(db, &role, si, 2, &count, err, sizeof err);
        if (rc == TETHER_ENOTFOUND && pg) {
            count = 0; /* a database tether has not used yet: a new store */
        } else if (rc != TETHER_OK) {
            fprintf(stderr, "tether: cannot read %s: %s\n", db, err);
            scen_record("F cannot read the store");
            return -1;
        }
    }
    char hex[33] = "-";
    int have = count == 1;
    if (have) {
        tether_session_id_hex(&si[0].id, hex);
    }
    scen_record("S %ld %s %llu %llu %llu", (long)getpid(), hex,
                (unsigned long long)(have ? si[0].out_last : 0),
                (unsigned long long)(have ? si[0].peer_acked : 0),
                (unsigned long long)(have ? si[0].recv_cursor : 0));
    if (have) {
        *out = si[0];
    }
    return have;
}

void scen_record_mismatch(const tether_mismatch_info *mi)
{
    scen_record("M %d %llu %llu %llu %llu", mi->peer_knows_session,
                (unsigned long long)mi->lost_acked, (unsigned long long)mi->unknown_received,
                (unsigned long long)mi->peer_recv_cursor, (unsigned long long)mi->peer_out_last);
}

/*
 * tether_storebench: the cost of the store operations a sender makes, on the
 * SQLite and the PostgreSQL store in one run (docs/performance.md,
 * "PostgreSQL store"). A measuring tool, not a test.
 *
 *   tether_storebench [MESSAGES]
 *
 * Starts a private PostgreSQL with fsync on (tests/support/pgtest.h), then for
 * each store: MESSAGES appends of one 64-byte message each (a synchronous
 * send), with an ack of the last ten after every tenth; then MESSAGES
 * messages appended in batches of 64 (a group commit), acked per batch.
 * Prints per-operation latency (p50, p99) and messages per second, and the
 * ratio of each store to SQLite at NORMAL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "pgtest.h"
#include "store/store.h"

#define SIZE 64  /* payload bytes */
#define BATCH 64 /* messages per batch append */

typedef struct result {
    const char *name;  /* the store and its durability */
    double single_mps; /* messages per second, one per append */
    double p50_us;     /* append latency, one message */
    double p99_us;
    double batch_mps; /* messages per second, BATCH per append */
    int ok;           /* every operation succeeded */
} result;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure(tether__store *st, int n, result *r)
{
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.id[0] = 1;
    r->ok = st->ops->session_put(st, &rec) == TETHER_OK;
    static char payload[BATCH][SIZE];
    memset(payload, 'p', sizeof payload);
    tether_msg m[BATCH];
    for (int i = 0; i < BATCH; i++) {
        m[i].data = payload[i];
        m[i].len = SIZE;
    }
    double *lat = malloc(sizeof *lat * (size_t)n);
    uint64_t seq = 0;
    double t0 = now_us();
    for (int i = 0; i < n && r->ok; i++) {
        double a = now_us();
        r->ok = st->ops->append(st, rec.id, m, 1, 0, 0, &seq) == TETHER_OK;
        lat[i] = now_us() - a;
        if (r->ok && seq % 10 == 0) {
            r->ok = st->ops->ack(st, rec.id, seq) == TETHER_OK;
        }
    }
    double t1 = now_us();
    r->single_mps = n / ((t1 - t0) / 1e6);
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    r->p50_us = lat[n / 2];
    r->p99_us = lat[n * 99 / 100];
    free(lat);
    int batches = n / BATCH > 0 ? n / BATCH : 1;
    t0 = now_us();
    for (int i = 0; i < batches && r->ok; i++) {
        r->ok = st->ops->append(st, rec.id, m, BATCH, 0, 0, &seq) == TETHER_OK &&
                st->ops->ack(st, rec.id, seq + BATCH - 1) == TETHER_OK;
    }
    t1 = now_us();
    r->batch_mps = (double)batches * BATCH / ((t1 - t0) / 1e6);
    if (!r->ok) {
        fprintf(stderr, "%s: %s\n", r->name, st->ops->errmsg(st));
    }
    st->ops->close(st);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    if (n < 100) {
        fprintf(stderr, "usage: tether_storebench [MESSAGES >= 100]\n");
        return 2;
    }
    pgt_set_fsync(1);
    pgt_start();
    static const struct {
        const char *name;
        int pg;
        tether_durability d;
    } runs[] = {
        {"sqlite NORMAL", 0, TETHER_DURABILITY_NORMAL},
        {"sqlite FULL", 0, TETHER_DURABILITY_FULL},
        {"postgresql (synchronous_commit on)", 1, TETHER_DURABILITY_NORMAL},
        {"postgresql OFF (synchronous_commit off)", 1, TETHER_DURABILITY_OFF},
    };
    enum { NRUNS = sizeof runs / sizeof runs[0] };
    result res[NRUNS];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NRUNS; i++) {
        char path[512], db[64], err[512];
        tether__store *st = NULL;
        int rc;
        res[i].name = runs[i].name;
        if (runs[i].pg) {
            if (pgt_createdb("bench", db, sizeof db) != 0) {
                return 1;
            }
            rc = tether__store_pg_open(pgt_conninfo(db, path, sizeof path), TETHER__ROLE_SERVER,
                                       runs[i].d, &st, err, sizeof err);
        } else {
            snprintf(db, sizeof db, "bench-%d.db", i);
            rc = tether__store_sqlite_open(tt_path(path, sizeof path, db), TETHER__ROLE_SERVER,
                                           runs[i].d, &st, err, sizeof err);
        }
        if (rc != TETHER_OK) {
            fprintf(stderr, "%s: %s\n", runs[i].name, err);
            return 1;
        }
        measure(st, n, &res[i]);
    }
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
            load[0] = -1;
        }
        fclose(f);
    }
    printf("%d messages of %d B per store; load average %.2f %.2f %.2f\n", n, SIZE, load[0],
           load[1], load[2]);
    printf("%-40s %12s %9s %9s %14s %8s\n", "store", "1/append m/s", "p50 us", "p99 us",
           "64/append m/s", "vs NORMAL");
    for (int i = 0; i < NRUNS; i++) {
        printf("%-40s %12.0f %9.1f %9.1f %14.0f %8.2f%s\n", res[i].name, res[i].single_mps,
               res[i].p50_us, res[i].p99_us, res[i].batch_mps,
               res[0].single_mps > 0 ? res[i].single_mps / res[0].single_mps : 0,
               res[i].ok ? "" : "  FAILED");
    }
    int ok = 1;
    for (int i = 0; i < NRUNS; i++) {
        ok = ok && res[i].ok;
    }
    tt_finish(); /* removes the temporary directory */
    return ok ? 0 : 1;
}

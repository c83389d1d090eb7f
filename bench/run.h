/* The orchestrator: which configurations run, and running them as child processes. */
#ifndef TETHER_BENCH_RUN_H
#define TETHER_BENCH_RUN_H

#include <sys/types.h>

#include "bench.h"

#define BENCH_CFG_MAX 64
#define BENCH_ONLY_MAX 8

typedef struct bench_run_opts {
    int quick;                        /* the under-a-minute subset */
    const char *out;                  /* output directory */
    int repeat;                       /* runs per configuration (median) */
    const char *only[BENCH_ONLY_MAX]; /* name filters, any of which selects */
    int n_only;                       /* filters given */
    double scale;                     /* message count multiplier */
    int verbose;                      /* print every run */
    const char *pg;                   /* --pg URI: add rows whose server store is there */
    uint32_t fleet_sessions;          /* --fleet-sessions: sessions of the fleet rows (--pg) */
    uint32_t page_size;               /* --page-size: SQLite page size of the client stores the
                                         client and sqlite roles create, bytes (0: SQLite's) */
} bench_run_opts;

/* matrix.c: the name of a store in configuration names and peer options. */
const char *bench_store_name(bench_store s);

/* matrix.c: fills the configuration matrix; returns how many. */
size_t bench_matrix(const bench_run_opts *ro, bench_cfg *c, size_t max);

/* Runs every configuration ro->repeat times and fills in the medians and the
 * ratios to the raw baselines. Returns 1 if any run failed, else 0. */
int bench_run_all(const bench_run_opts *ro, bench_cfg *c, size_t n);

/* ---- child.c: the orchestrator's child processes ---- */

typedef struct bench_child {
    pid_t pid;       /* the process, 0 when none */
    int rd;          /* its stdout */
    int wr;          /* its stdin */
    char buf[16384]; /* bytes read, not yet consumed as lines */
    size_t len;      /* bytes in buf */
} bench_child;

/* Starts this binary with argv; its stdin is a pipe (ch->wr), or in_fd when >= 0. 0 or -1. */
int bench_spawn_in(bench_child *ch, char *const argv[], int in_fd);
int bench_spawn(bench_child *ch, char *const argv[]);
/* Waits up to wait_ms for the child to exit (killing it after that); its
 * exit status, or -1 when it was killed. */
int bench_child_exit(bench_child *ch, int wait_ms);
/* Reads one line (without its newline) within timeout_ms. 0, or -1 on EOF/timeout. */
int bench_child_line(bench_child *ch, char *line, size_t len, int timeout_ms);
/* Closes its stdin (a server peer's cue to exit), then reaps it, killing it after wait_ms. */
void bench_child_end(bench_child *ch, int wait_ms);

/* What one run of a configuration measured. */
typedef struct run_res {
    int ok;
    char error[200];
    double msgs_s, cli_cpu_m, srv_cpu_m, cli_rss_mb, srv_rss_mb, wire_data, wire_ack, acks_per_msg;
    lat4 ack, dlv;
    double fill_s;
    double wal_b, pg_cpu_m; /* PostgreSQL rows: WAL bytes and database CPU s/M, else -1 */
} run_res;

/* Reads prefix_p50 ... prefix_max (us) of a peer's line; all -1 when not measured. */
void bench_lat_of(const char *line, const char *prefix, lat4 *l);
/* Removes a SQLite file and its -wal and -shm. */
void bench_rm_db(const char *path);
/* Appends a peer's line (or null) to DIR/runs.jsonl with the load average. */
void bench_log_line(const bench_run_opts *ro, const bench_cfg *c, int rate_phase, int rep,
                    const char *line);

/* fleet.c: one run of a configuration with several sessions (c->sessions > 1)
 * over c->instances server processes. 0, or -1 with r->error. */
int bench_run_fleet(const bench_run_opts *ro, const bench_cfg *c, int rep, run_res *r);

/* fleet.c: the database's state around a PostgreSQL row (--pg). */
typedef struct bench_pg_mark {
    int ok;           /* the probe answered */
    uint64_t wal;     /* WAL position, bytes */
    int local;        /* the database runs here: CPU is counted */
    int n;            /* processes */
    int pid[256];     /* its processes */
    double cpu[256];  /* their CPU seconds then */
} bench_pg_mark;
/* Probes uri; on failure m->ok is 0 and why says it (once, on stderr, by the caller). */
void bench_pg_mark_take(const char *uri, bench_pg_mark *m, char *why, size_t len);
/* WAL bytes and CPU seconds of the database between a and b, per message, into r
 * (-1 where not known). */
void bench_pg_mark_diff(const bench_pg_mark *a, const bench_pg_mark *b, uint64_t msgs, run_res *r);

#endif

/*
 * tether bench --sessions N: many sessions against one `tether serve`.
 *
 * sessions.c is the orchestrator: it starts `tether serve` (this binary) as a
 * separate process and one or more driver processes (`tether bench --role
 * sessions-driver`), measures the server's resident memory before and after
 * N idle sessions, then lets every session send at --rate msgs/s and reports
 * the delivered rate, send-to-ack latency and lost messages, as rows of the
 * bench table and of results.csv/results.json.
 *
 * sessions_driver.c is one driver: one thread, one libwebsockets context, its
 * share of the N client connections, each speaking tether.v1 through its own
 * session engine (src/engine/session.h) and memory store. It talks to the
 * orchestrator in JSON lines on stdout and one-word commands on stdin.
 */
#ifndef TETHER_BENCH_SESSIONS_H
#define TETHER_BENCH_SESSIONS_H

#include <stdint.h>

/* What `tether bench --sessions` was asked for. */
typedef struct bench_sessions_opts {
    uint32_t sessions;   /* sessions in all (1 ... 1000000) */
    double rate;         /* messages per second per session in the rate phase (0: idle only) */
    uint32_t drivers;    /* driver processes the sessions are split over (1 ... 64) */
    uint32_t duration_s; /* length of the rate phase, s */
    uint32_t size;       /* payload bytes (16 ... 65536) */
    int quick;           /* shorter phases */
    const char *out;     /* results directory */
} bench_sessions_opts;

/* One driver's part, as `--role sessions-driver` receives it. */
typedef struct bench_driver_opts {
    const char *url;     /* ws://127.0.0.1:PORT/ */
    uint32_t sessions;   /* this driver's sessions */
    double rate;         /* per session, msgs/s */
    uint32_t duration_s; /* rate phase, s */
    uint32_t size;       /* payload bytes */
    uint32_t timeout_s;  /* give up connecting or draining after this */
} bench_driver_opts;

/* Parses one --sessions/--rate/--drivers/--duration value (opt 'N', 'R', 'K', 'T')
 * into o, checking its range; prints why and returns -1 when it is out of range. */
int bench_sessions_opt(bench_sessions_opts *o, int opt, const char *arg);

/* The orchestrator; returns the exit status (0: every phase completed and nothing was lost). */
int bench_sessions_run(const bench_sessions_opts *o);

/* `tether bench --role sessions-driver ...` (the orchestrator's child); the exit status. */
int bench_sessions_role(int argc, char **argv);

/* The driver role; returns the exit status. */
int bench_sessions_driver(const bench_driver_opts *o);

#endif

/*
 * tether bench: what reliability costs over raw libwebsockets.
 *
 * One binary plays every part. `tether bench [--quick] [--out DIR]` is the
 * orchestrator: for each configuration it fork+execs the same binary twice, as
 * `tether bench --role server ...` and `tether bench --role client ...`, reads
 * one JSON line of results from each peer's stdout, and writes the tables,
 * CSV, JSON and plots. The roles are internal; their options may change.
 *
 * Files: main.c (entry, options, role dispatch), peer_tether.c (tether
 * client/server peers), peer_raw.c (the raw libwebsockets baseline peers),
 * peer_sqlite.c (the bare SQLite floor), probe.c (latency histograms, CPU,
 * RSS, TCP byte counters, JSON lines), matrix.c (the configuration matrix),
 * run.c (one run of a configuration, medians, ratios), child.c (the child
 * processes), fleet.c (several sessions over several server processes, and
 * the database's WAL and CPU for the --pg rows), report.c (table, CSV,
 * JSON, gnuplot).
 */
#ifndef TETHER_BENCH_H
#define TETHER_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Entry point of `tether bench`; argv[0] is "tether bench". Returns the exit status. */
int tether_bench_main(int argc, char **argv);

/* ---- what a peer is asked to do (run.c fills it, main.c parses it back) ---- */

typedef enum bench_store {
    BS_RAW = 0,    /* raw libwebsockets: no tether at all */
    BS_MEMORY = 1, /* tether, memory store on both sides */
    BS_OFF = 2,    /* tether, SQLite synchronous=OFF on both sides */
    BS_NORMAL = 3, /* tether, SQLite synchronous=NORMAL */
    BS_FULL = 4,   /* tether, SQLite synchronous=FULL */
} bench_store;

typedef struct bench_peer_opts {
    int server;          /* 1: the receiving side (server), 0: the sending side (client) */
    bench_store store;   /* what is measured */
    const char *url;     /* client: ws://127.0.0.1:PORT/ */
    const char *db;      /* SQLite file for this peer, or NULL */
    uint32_t size;       /* payload bytes per message (>= 16) */
    uint64_t count;      /* messages in the run */
    double rate;         /* client: offered messages per second, 0 = as fast as possible */
    uint32_t batch;      /* client: messages per tether_client_send_batch() at most */
    uint32_t window;     /* window_messages on both sides (0: default) */
    uint32_t ack_every;  /* ack_every on both sides (0: default) */
    uint32_t ack_delay;  /* ack_delay_ms on both sides (0: default) */
    uint32_t max_pending; /* client: unacked messages at most before the producer waits */
    int backlog;         /* client: queue all `count` messages before start(), then drain */
    uint32_t timeout_s;  /* give up after this long */
    int async;           /* client: one tether_client_send_async() per message */
    int opaque;          /* server: payloads are not the bench layout (tether send's lines):
                            count them, check neither order nor latency */
    int http;            /* client: the HTTP carriage instead of WebSocket (--http) */
    int wait_go;         /* client: once live, print {"role":"live"} and wait for a byte on
                            stdin before sending (--wait-go: the fleet rows start together) */
    uint32_t sessions;   /* server: sessions (connections) it serves, 1 to BENCH_SESSIONS_MAX;
                            `count` is their sum, and the order is checked per session */
    uint32_t page_size;  /* client, sqlite: SQLite page size of the store file it creates
                            (store_page_size), bytes; 0: SQLite's default */
} bench_peer_opts;

#define BENCH_SESSIONS_MAX 64 /* sessions of one fleet row at most (--fleet-sessions) */

int bench_peer_tether(const bench_peer_opts *o);
int bench_peer_raw(const bench_peer_opts *o);
/* The bare SQLite floor: `count` INSERTs of `size`-byte rows, one transaction
 * each, into a WAL file at `db` (synchronous NORMAL). */
int bench_peer_sqlite(const bench_peer_opts *o);

/* ---- probe.c: measurements inside a peer ---- */

/* A log-linear histogram of nanosecond values, about 1.6% resolution, fixed size. */
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB * 42)
typedef struct bench_hist {
    uint64_t n;                     /* values recorded */
    uint64_t max;                   /* largest value */
    uint32_t b[HIST_BUCKETS];       /* counts */
} bench_hist;

void hist_add(bench_hist *h, uint64_t v);
/* The value below which a fraction q (0..1) of the recorded values lie; 0 when empty. */
uint64_t hist_quantile(const bench_hist *h, double q);

uint64_t bench_now_ns(void); /* CLOCK_MONOTONIC, shared by every process on the machine */
void bench_sleep_until_ns(uint64_t t);

/* User + system CPU seconds of this process (all threads) and its peak RSS in KiB. */
void bench_rusage(double *cpu_s, long *maxrss_kb);

/* User + system CPU seconds of another process, all its threads, from
 * /proc/PID/stat (clock ticks); -1 when it is gone. */
double bench_proc_cpu_s(int pid);

/* Sums the TCP payload bytes acknowledged by the peer (sent) and received over
 * this process's established TCP sockets (tcp_info tcpi_bytes_acked and
 * tcpi_bytes_received). 0 when none. */
void bench_tcp_bytes(uint64_t *sent, uint64_t *received);

/* Payload layout: [0..8) send time in ns (little endian), [8..16) index, then filler. */
void bench_fill(uint8_t *p, uint32_t size, uint64_t ts, uint64_t index);
uint64_t bench_get64(const uint8_t *p);

/* One flat JSON object on one line. */
typedef struct bench_json {
    char buf[4096]; /* the line being built */
    size_t len;     /* bytes used */
} bench_json;
void bj_begin(bench_json *j);
void bj_num(bench_json *j, const char *key, double v);
void bj_int(bench_json *j, const char *key, uint64_t v);
void bj_str(bench_json *j, const char *key, const char *v);
void bj_hist(bench_json *j, const char *prefix, const bench_hist *h); /* prefix_p50 ... _max, in us */
/* Closes the object and writes it with a newline to stdout, flushed. */
void bj_emit(bench_json *j);

/* The "some avg60" figure of /proc/pressure/<what> (cpu, io), in %, or -1. */
double bench_psi(const char *what);

/* Finds "key": in a flat JSON line; returns the number or def. */
double bj_get(const char *line, const char *key, double def);
/* Copies the string value of "key" into out; returns 0 or -1. */
int bj_get_str(const char *line, const char *key, char *out, size_t len);

/* ---- run.c / report.c: the orchestrator ---- */

/* Latency summary in microseconds. */
typedef struct lat4 {
    double p50, p99, p999, max;
} lat4;

/* One configuration of the matrix and what it measured (medians over repeats). */
typedef struct bench_cfg {
    char name[48];        /* unique, e.g. "normal/64" */
    char group[16];       /* store, ack, window, batch, backlog */
    char label[48];       /* what changes in this row, for the table */
    bench_store store;
    uint32_t size;
    uint64_t count;       /* messages in the full-load run */
    uint64_t rate_count;  /* messages in the fixed-rate run, 0 = no fixed-rate run */
    double rate;          /* offered rate of the fixed-rate run, msg/s */
    uint32_t batch, window, ack_every, ack_delay; /* 0: the library default */
    int backlog;          /* queued offline, then drained */
    int kind;             /* BK_PEERS, BK_SQLITE (one process, no network) or BK_CLI */
    int async;            /* one tether_client_send_async() per message */
    int pg;               /* 1: the server's store is the PostgreSQL database of --pg */
    int http;             /* 1: the client uses the HTTP carriage (proto/HTTP.md) */
    uint32_t sessions;    /* fleet rows: client processes, one session each (0: the usual one) */
    uint32_t instances;   /* fleet rows: server processes the sessions are spread over (0: one) */

    /* results (full load) */
    int ok;               /* every repeat succeeded */
    int runs;             /* repeats that succeeded */
    char error[200];      /* why a run failed */
    double msgs_s, mb_s;  /* delivered throughput */
    double ratio;         /* msgs_s / the raw baseline's of the same size, same run */
    double cli_cpu_m, srv_cpu_m; /* CPU seconds per million messages */
    double cli_rss_mb, srv_rss_mb; /* peak RSS, MiB */
    double wire_data, wire_ack; /* TCP payload bytes per message client->server, server->client */
    double acks_per_msg;  /* ACK frames seen by the sender per message */
    lat4 ack_full, dlv_full;   /* send-to-ack, send-to-deliver at full load */
    /* results (fixed rate) */
    double rate_got;      /* achieved delivered rate */
    double rate_wire_ack; /* TCP payload bytes per message server->client (the ACKs) */
    lat4 ack_rate, dlv_rate;
    /* backlog only */
    double fill_s;        /* seconds to queue the backlog */
    /* PostgreSQL rows (-1: not measured) */
    double wal_b;         /* WAL bytes per message (pg_current_wal_lsn before and after) */
    double pg_cpu_m;      /* the database's processes' CPU s per million messages (local only) */
    /* fleet rows (-1: no such row in this run) */
    double x_sqlite;      /* msgs_s / the SQLite NORMAL row with the same size and sessions */
    double x_one;         /* msgs_s / the one-instance PostgreSQL row with the same sessions */
} bench_cfg;

typedef struct bench_machine {
    int nproc;
    char cpu[128];
    char kernel[256];
    char lws[64];
    char sqlite[32];
    double load_start[3], load_end[3];
    double psi_cpu_start, psi_cpu_end; /* /proc/pressure/cpu "some" avg60, %, -1 if absent */
    double psi_io_start, psi_io_end;   /* /proc/pressure/io "some" avg60, % */
    char date[64];
    char cmdline[256];
} bench_machine;

/* Result of a target check. */
typedef struct bench_target {
    char what[96];     /* the target */
    char got[96];      /* the measured value */
    int met;           /* 1 met, 0 missed, -1 not measured in this run */
    int info;          /* 1: not a target, the same threshold shown for comparison */
} bench_target;

/* What a configuration runs. */
enum bench_kind {
    BK_PEERS = 0,  /* a server peer and a client peer */
    BK_SQLITE = 1, /* the bare SQLite INSERT loop (bench_peer_sqlite), alone */
    BK_CLI = 2,    /* a server peer and `tether send` fed `count` lines on stdin */
};

size_t bench_targets(const bench_cfg *c, size_t n, bench_target *t, size_t max);
/* The targets of issue 9 (the send path's floor and fast path). */
size_t bench_targets9(const bench_cfg *c, size_t n, bench_target *t, size_t max);

void report_table(FILE *out, const bench_machine *m, const bench_cfg *c, size_t n, int quick,
                  int repeats);
int report_files(const char *dir, const bench_machine *m, const bench_cfg *c, size_t n, int quick,
                 int repeats);
/* Writes the gnuplot data and scripts and runs gnuplot; returns 0, or 1 when
 * gnuplot is missing (a message says so), -1 on failure. */
int report_plots(const char *dir, const bench_cfg *c, size_t n);

#endif

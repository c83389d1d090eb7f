/*
 * tether demo: the state shared by demo.c (the run) and demo_report.c (the
 * verification and the report).
 */
#ifndef TETHER_CLI_DEMO_H
#define TETHER_CLI_DEMO_H

#include <limits.h>
#include <pthread.h>
#include <sys/types.h>

#include "cli/cli.h"
#include "relay.h"

/* The command line. */
typedef struct demo_opts {
    uint64_t messages;            /* --messages */
    uint64_t size;                /* --size */
    uint64_t kills;               /* --kills */
    uint32_t cut_min;             /* --cuts-ms MIN */
    uint32_t cut_max;             /* --cuts-ms MAX */
    uint64_t s2c;                 /* --server-messages */
    uint64_t seed;                /* --seed */
    uint64_t timeout_s;           /* --timeout */
    tether_durability durability; /* --durability */
    int json;                     /* --json */
    int keep;                     /* --keep */
    int verbose;                  /* --verbose */
    const char *dir;              /* --dir */
} demo_opts;

/* What the server's callbacks record (guarded by demo.mu). */
typedef struct demo_rx {
    uint64_t n;                  /* messages expected */
    uint64_t size;               /* their size */
    uint8_t *seen;               /* deliveries of each seq 1..n (saturating) */
    uint64_t delivered;          /* on_message calls */
    uint64_t flagged;            /* ... with redelivered = 1 */
    uint64_t distinct;           /* seqs delivered at least once */
    uint64_t duplicates;         /* deliveries of a seq already delivered, redelivered = 0 */
    uint64_t duplicates_flagged; /* ... with redelivered = 1 */
    uint64_t out_of_order;       /* seq != previous + 1 */
    uint64_t mismatches;         /* payload does not carry its seq, wrong size, or seq > n */
    uint64_t prev;               /* previous delivered seq */
    int have_session;            /* session is set */
    tether_session_id session;   /* the client's session */
    uint64_t foreign;            /* messages from any other session */
    uint64_t opens;              /* on_session_open calls */
    uint64_t mismatch_events;    /* on_mismatch calls */
    uint64_t s2c_acked;          /* highest server message the client acknowledged */
    pid_t kill_pid;              /* armed kill: the client to SIGKILL, 0 when not armed */
    uint64_t kill_at;            /* ... once distinct reaches this */
    int killed;                  /* the armed kill happened (the run loop reaps it) */
} demo_rx;

/* The server -> client stream as the client printed it. */
typedef struct s2c_check {
    uint64_t received;     /* lines */
    uint64_t distinct;     /* seqs seen at least once */
    uint64_t lost;         /* seqs 1..M never seen */
    uint64_t duplicates;   /* repeats without the redelivered flag */
    uint64_t flagged;      /* repeats flagged redelivered (the documented window) */
    uint64_t out_of_order; /* a first delivery that is not highest + 1 */
    uint64_t mismatches;   /* text not "s2c <seq>", or seq > M */
} s2c_check;

/* One run: its files, its processes and threads, its counters. */
typedef struct demo {
    demo_opts o;                   /* the options */
    char dir[PATH_MAX];            /* working directory */
    int made_dir;                  /* 1 when we created it */
    char client_db[PATH_MAX + 16]; /* DIR/client.db */
    char server_db[PATH_MAX + 16]; /* DIR/server.db */
    char out_path[PATH_MAX + 16];  /* DIR/client.out */
    char log_path[PATH_MAX + 16];  /* DIR/client.log */
    pthread_mutex_t mu;            /* guards rx */
    demo_rx rx;                    /* server-side record */
    tether_server *srv;            /* the server */
    relay *rl;                     /* the relay */
    pid_t child;                   /* the client process, 0 when none */
    uint64_t kills;                /* SIGKILLs sent */
    uint64_t restarts;             /* client starts after the first */
    uint64_t s2c_sent;             /* server messages committed */
    uint64_t t0;                   /* start, ms */
    double elapsed;                /* seconds, when finished */
    char error[512];               /* why the run failed ("" when it did not) */
} demo;

/* The outcome of a run. */
typedef struct demo_result {
    uint64_t sent, acked, recv_cursor; /* from the client's store */
    int store_ok;                      /* the client's store was read */
    demo_rx rx;                        /* copy of the server-side record */
    relay_stats rs;                    /* relay counters */
    s2c_check s2c;                     /* server -> client check */
    uint64_t lost;                     /* seqs 1..N never delivered */
    int ok;                            /* everything verified */
} demo_result;

/* Reads DIR/client.out (the messages the client printed) into *c. 0 or -1. */
int demo_check_s2c(const demo *d, s2c_check *c);

/* Decides r->ok; sets d->error when the run failed without saying why. */
void demo_verify(demo *d, demo_result *r);

/* The report, as text or as one JSON object, on stdout. */
void demo_print_text(const demo *d, const demo_result *r);
void demo_print_json(const demo *d, const demo_result *r);

#endif

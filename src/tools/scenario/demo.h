/*
 * tether demo: one scenario of the runner (scenario.h) with its own report.
 * demo.c runs it (the in-process server, the `tether send` client process,
 * the relay, the kills); demo_report.c verifies it with the runner's checker
 * and prints the result.
 */
#ifndef TETHER_CLI_DEMO_H
#define TETHER_CLI_DEMO_H

#include <limits.h>
#include <pthread.h>
#include <sys/types.h>

#include "scenario.h"

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

/* What the in-process server's callbacks share with the run (guarded by demo.mu);
 * every delivery and ack also goes to the server's record. */
typedef struct demo_rx {
    uint64_t highest;          /* highest client seq delivered */
    int have_session;          /* session is set */
    tether_session_id session; /* the client's session */
    uint64_t foreign;          /* messages from any other session (not recorded) */
    uint64_t s2c_acked;        /* highest server message the client acknowledged */
    pid_t kill_pid;            /* armed kill: the client to SIGKILL, 0 when not armed */
    uint64_t kill_at;          /* ... once highest reaches this */
    int killed;                /* the armed kill happened (the run loop reaps it) */
} demo_rx;

/* One run: the scenario (its files and processes), the server, the counters. */
typedef struct demo {
    demo_opts o;                  /* the options */
    runner R;                     /* the runner settings the scenario reads */
    scen sc;                      /* the scenario: paths, client and relay processes, error */
    char dir[PATH_MAX];           /* working directory */
    int made_dir;                 /* 1 when we created it */
    char out_path[PATH_MAX + 16]; /* DIR/client.out: what the client printed */
    pthread_mutex_t mu;           /* guards rx */
    demo_rx rx;                   /* server-side state */
    tether_server *srv;           /* the server, in this process */
    int ran;                      /* the stream started (a report is due) */
    uint64_t kills;               /* SIGKILLs sent */
    uint64_t restarts;            /* client starts after the first */
    uint64_t s2c_sent;            /* server messages committed */
    uint64_t t0;                  /* start, ms */
    double elapsed;               /* seconds, when finished */
} demo;

/* The outcome of a run. */
typedef struct demo_result {
    cli_session_info cs;     /* the client's store */
    cli_session_info ss;     /* the server's store */
    int store_ok;            /* both stores were read, one session each, the same */
    scen_dir c2s;            /* client -> server, from the records and the stores */
    scen_dir s2c;            /* server -> client (zero without server messages) */
    demo_rx rx;              /* copy of the server-side state */
    uint64_t reconnects;     /* sessions opened at the server after the first */
    uint64_t mismatches;     /* mismatches the server reported */
    uint64_t cuts, cuts_rst; /* relay cuts that closed a connection, of which with RST */
    uint64_t cut_conns;      /* connections they closed */
    int ok;                  /* everything verified */
} demo_result;

/* Stops nothing: reads both stores and the records, judges them with the
 * runner's checker, decides r->ok; sets d->sc.error when the run failed
 * without saying why. */
void demo_verify(demo *d, demo_result *r);

/* The report, as text or as one JSON object, on stdout. */
void demo_print_text(const demo *d, const demo_result *r);
void demo_print_json(const demo *d, const demo_result *r);

#endif

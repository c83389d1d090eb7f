/*
 * tether scenario: what the runner (scenario.c), the peers (scenario_peer.c)
 * and the verification (scenario_check.c) share.
 *
 * A scenario runs three processes on loopback, all this same binary:
 *   tether scenario peer server ...   a tether server on a SQLite store
 *   tether chaos ...                  the fault relay, commands on its stdin
 *   tether scenario peer client ...   a tether client on a SQLite store
 * The client streams N messages to the server and the server M to the client.
 * Each peer appends what happened to a record file, one line per event, with
 * write(2) so that a SIGKILL loses nothing already recorded:
 *
 *   S <ms> <pid> <session|-> <out_last> <peer_acked> <recv_cursor>  a process started
 *                                        (the numbers read from its store before opening it)
 *   D <ms> <seq> <redelivered 0|1> <payload ok 0|1>  on_message
 *   A <ms> <first> <last>                on_acked
 *   C <ms> <resumed 0|1>                 connected (client) / session opened (server)
 *   X <ms> <state> <error name>          client: DISCONNECTED or STOPPED with an error
 *   M <ms> <peer_knows> <lost_acked> <unknown_received> <peer_recv_cursor> <peer_out_last>
 *   G <ms> <out_last>                    every message of this side is stored
 *   E <ms> done                          the client saw everything acked and delivered
 *   F <ms> <reason...>                   the peer failed
 *   Z <ms> <error name|->                server: the session closed on this instance
 *
 * <ms> is CLOCK_MONOTONIC in milliseconds, the same clock in every process,
 * so the check can order events across processes.
 */
#ifndef TETHER_CLI_SCENARIO_H
#define TETHER_CLI_SCENARIO_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chaos/chaos.h"
#include "cli/cli.h"

/* Peer exit statuses besides CLI_OK / CLI_FAIL. */
#define PEER_STOPPED 3  /* the client stopped for good (mismatch, permanent error) */
#define PEER_SIGNALED 4 /* SIGTERM/SIGINT: shut down gracefully, not done */

/* Payload bytes: 8 bytes seq (big-endian), a direction tag, then a pattern. */
#define PAYLOAD_MIN 16
#define TAG_C2S 'C'
#define TAG_S2C 'S'

/* The size of message seq: base itself, or with base 0 a size drawn from the
 * seq: mostly 16..2063 bytes, one in 400 above 64 KiB (larger than a DATA run). */
size_t scen_size(size_t base, uint64_t seq, int tag);
#define SCEN_SIZE_MAX 80000

void scen_payload(uint8_t *p, size_t size, uint64_t seq, int tag);
int scen_payload_ok(const uint8_t *p, size_t len, size_t size, uint64_t seq, int tag);

/* `tether scenario peer client|server ...`: the peer processes. */
int scen_peer_main(int argc, char **argv);

/* ---- verification ---- */

/* One direction's verdict. */
typedef struct scen_dir {
    uint64_t expected;    /* messages sent in this direction */
    uint64_t delivered;   /* on_message calls at the receiver */
    uint64_t flagged;     /* ... with the redelivered flag set */
    uint64_t lost;        /* seqs 1..expected never delivered */
    uint64_t duplicates;  /* deliveries the contract does not allow (incl. unflagged repeats) */
    uint64_t redelivered; /* repeats in the documented window (after a receiver restart, flagged) */
    uint64_t reordered;   /* deliveries that skipped ahead */
    uint64_t corrupt;     /* payloads that do not match their seq */
    uint64_t ack_beyond;  /* acks the sender saw beyond what the receiver had committed */
    uint64_t ack_gaps;    /* on_acked ranges that do not follow each other */
    uint64_t sender_last; /* sender's store: out_last */
    uint64_t sender_acked;   /* sender's store: peer_acked */
    uint64_t sender_pending; /* sender's store: unacked messages */
    uint64_t sender_seen;    /* highest ack the sender's application was told (incl. at start) */
    uint64_t recv_cursor;    /* receiver's store: recv_cursor */
    int ok;                  /* everything above as it must be */
    char why[256];           /* the first thing wrong */
} scen_dir;

/* Counts from the records, for the summary. */
typedef struct scen_counts {
    uint64_t client_lives;      /* S lines in the client's record */
    uint64_t server_lives;      /* ... in the server's */
    uint64_t connects;          /* C lines in the client's record */
    uint64_t stalled;           /* X ... TETHER_ESTALLED */
    uint64_t pinged;            /* X ... TETHER_EPING */
    uint64_t mismatches;        /* M lines (client) */
    uint64_t server_mismatches; /* M lines (server) */
    uint64_t client_done;       /* E lines */
} scen_counts;

/* Verifies one direction from the receiver's and sender's records and the
 * numbers read from both stores. */
void scen_check_dir(const char *recv_rec, const char *send_rec, uint64_t expected, size_t size,
                    int tag, uint64_t sender_last, uint64_t sender_acked, uint64_t sender_pending,
                    uint64_t recv_cursor, scen_dir *out);

/* Counts events of both records. */
void scen_count(const char *client_rec, const char *server_rec, scen_counts *out);

/* Highest seq delivered and highest ack seen so far in a record (cheap to call
 * repeatedly: reads only what was appended since the last call). */
typedef struct scen_tail {
    char path[PATH_MAX]; /* the record */
    long off;            /* bytes read so far */
    uint64_t delivered;  /* highest D seq */
    uint64_t acked;      /* highest A last */
    uint64_t generated;  /* G out_last, 0 before */
    uint64_t done;       /* E lines */
    uint64_t connects;   /* C lines */
    uint64_t errors[4];  /* X lines: [0] any, [1] ESTALLED, [2] EPING, [3] EMISMATCH */
    uint64_t mismatches; /* M lines */
    uint64_t last_open;  /* ms of the last C line, 0 before */
    uint64_t closes;     /* Z lines */
    uint64_t fenced;     /* Z lines with TETHER_EFENCED */
    uint64_t last_close; /* ms of the last Z line, 0 before */
} scen_tail;

void scen_tail_init(scen_tail *t, const char *path);
void scen_tail_poll(scen_tail *t);

/* ---- the runner (scenario.c, scenario_proc.c, scenario_list.c) ---- */

typedef struct proc {
    pid_t pid;        /* 0 when not running */
    const char *name; /* "client", "server", "relay" */
    const char *kp;   /* kill point armed in this life, or NULL */
    int status;       /* wait status of the last life */
    int starts;       /* lives so far */
} proc;

/* Totals of one scenario name (or of everything). */
typedef struct tally {
    uint64_t runs, failed;                /* runs, failed runs */
    uint64_t messages;                    /* N + M per run */
    uint64_t faults[TETHER__CHAOS_KINDS]; /* relay faults by kind */
    uint64_t nfaults;                     /* their sum */
    uint64_t kills, killpoints;           /* SIGKILLs from us, deaths at kill points */
    uint64_t reconnects;                  /* client connections after the first */
    uint64_t lost, dups, reordered;       /* both directions */
    uint64_t redelivered;                 /* flagged repeats in the window */
    double seconds;                       /* time spent */
} tally;

struct scen;
typedef int (*scen_fn)(struct scen *sc);

typedef struct scen_def {
    const char *name; /* on the command line */
    scen_fn run;      /* the steps */
    const char *what; /* what it does and verifies (--list) */
} scen_def;

typedef struct runner {
    int soak;                     /* --soak */
    uint64_t duration_s;          /* --duration */
    uint64_t seed;                /* --seed */
    const char *only;             /* --only */
    const char *timeline;         /* --timeline */
    tether_durability durability; /* --durability */
    int keep, verbose;            /* --keep, --verbose */
    const char *pg_uri;           /* --pg: the fleet scenarios' database, NULL: none */
    const char *pg_data;          /* --pg-data: its data directory (fleet-pg-restart) */
    struct tether_pgs *pgs;       /* --pg auto: the private server, restarted through
                                     src/tools/pgserver; NULL: a user's own server */
    char base[PATH_MAX];          /* working directory */
    int made_base;                /* we created it */
} runner;

#define SCEN_FLEET_MAX 4 /* instances of a fleet scenario */

typedef struct scen {
    runner *R;                                                          /* the run */
    const scen_def *def;                                                /* which scenario */
    uint64_t seed;                                                      /* its seed */
    uint64_t rng;                                                       /* its generator */
    char dir[PATH_MAX + 64];                                            /* its directory */
    char cdb[PATH_MAX + 96], sdb[PATH_MAX + 96];                        /* stores */
    char crec[PATH_MAX + 96], srec[PATH_MAX + 96];                      /* records */
    char clog[PATH_MAX + 96], slog[PATH_MAX + 96], rlog[PATH_MAX + 96]; /* logs */
    char sport[PATH_MAX + 96], rport[PATH_MAX + 96];                    /* port files */
    proc client, server, relay;                                         /* the processes */
    int relay_in;                               /* the relay's stdin (commands), -1 when none */
    uint16_t relay_port;                        /* where the client connects */
    uint64_t n, m;                              /* messages client -> server, server -> client */
    uint64_t size;                              /* bytes per message */
    uint64_t rate;                              /* client messages per second (0: no limit) */
    uint64_t max_pending;                       /* client pause threshold (0: none) */
    uint64_t ping_ms, pong_ms, welcome_ms;      /* liveness settings of both peers */
    int http;                                   /* the client uses the HTTP carriage only */
    uint64_t c_send, c_expect;                  /* the client's targets for its next start */
    uint64_t s_pace, s_limit;                   /* the server's pacing for its next start */
    scen_tail ct, st;                           /* progress from the records */
    uint64_t kills, killpoints;                 /* SIGKILLs from us, kill point deaths */
    uint64_t deadline;                          /* the scenario must end by then (ms) */
    int client_done;                            /* the client exited 0 since its last start */
    int lost_store;                             /* the lost-store scenario: verified differently */
    int expect_stop;                            /* a client exit with PEER_STOPPED is expected */
    char error[600];                            /* why it failed */
    char relay_summary[1024];                   /* the relay's summary line, once it stopped */
    void *user;                                 /* a scenario's own state (the demo's) */
    int fleet;                                  /* a fleet scenario: instances on PostgreSQL */
    int ninst;                                  /* its instances; inst[0] streams, never serves */
    proc inst[SCEN_FLEET_MAX];                  /* the instances */
    char irec[SCEN_FLEET_MAX][PATH_MAX + 96];   /* their records */
    char ilog[SCEN_FLEET_MAX][PATH_MAX + 96];   /* their logs */
    char iportf[SCEN_FLEET_MAX][PATH_MAX + 96]; /* their port files */
    uint16_t iport[SCEN_FLEET_MAX];             /* their ports */
    scen_tail it[SCEN_FLEET_MAX];               /* their progress */
    uint64_t lease_ms;                          /* the instances' --lease-ms */
    uint64_t pg_restarts, fenced;               /* PostgreSQL restarts, instances fenced */
    int fleet_owns_db;                          /* the database was empty: its sessions are ours */
    tally t;                                    /* this run's numbers */
} scen;

/* scenario.c: the tally of a scenario from its two checked directions. */
void scen_tally_dirs(scen *sc, const scen_dir *c2s, const scen_dir *s2c);

/* A scenario's steps, in scenario_list.c; the table of them. */
extern const scen_def scen_defs[];
extern const size_t scen_ndefs;
/* Stream sizes, rates and liveness settings of sc (by name, quick or soak). */
void scen_scale(scen *sc);

/* scenario_fleet.c: the fleet scenarios (instances of one PostgreSQL database;
 * no relay). scen_fleet_paths sets the instances' file names; scen_fleet_poll
 * reads their records (sc->st.delivered becomes the highest delivery of any
 * instance, sc->st.acked the highest ack); scen_fleet_check fails when an
 * instance ended that was not stopped by the runner; scen_fleet_stop kills
 * them; scen_fleet_verify is the verdict (both directions, from the client's
 * record and store, every instance's record and the database); and
 * scen_fleet_cleanup deletes the scenario's session from the database. */
int scen_is_fleet(const char *name); /* "fleet-..." */
int scen_fleet_kill(scen *sc);
int scen_fleet_pg_restart(scen *sc);
int scen_fleet_fence(scen *sc);
void scen_fleet_paths(scen *sc);
void scen_fleet_poll(scen *sc);
int scen_fleet_check(scen *sc);
void scen_fleet_stop(scen *sc);
int scen_fleet_verify(scen *sc, int again);
void scen_fleet_cleanup(scen *sc);

/* scenario.c: a scenario's setup in dir (paths, generator, processes none),
 * its teardown (every process stopped), and removing the files a scenario
 * makes in dir (not dir itself). */
void scen_init(scen *sc, runner *R, const scen_def *def, uint64_t seed, const char *dir);
void scen_stop_all(scen *sc);
void scen_remove_files(const char *dir);

/* scenario_proc.c: the processes of one scenario and the waits between steps.
 * Functions returning int return 0, or -1 with sc->error set (the first
 * failure wins). */
void scen_say(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int scen_fail(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t scen_rnd(scen *sc, uint64_t lo, uint64_t hi); /* uniform, from the scenario's seed */
/* A growable argv for scen_spawn; scen_arg formats one more entry. */
typedef struct scen_args {
    char *v[64]; /* the vector, NULL-terminated */
    int n;       /* entries */
} scen_args;
void scen_arg(scen_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void scen_args_free(scen_args *a);
const char *scen_dur_name(tether_durability d); /* "off", "normal", "full" */
/* Starts this binary as p with argv and kill point kp (or none): stdin from in_fd (or
 * /dev/null), stdout to log, stderr to err_log (NULL: to log too). 0 or -1. */
int scen_spawn(scen *sc, proc *p, char *const argv[], const char *kp, int in_fd, const char *log,
               const char *err_log);
int scen_reaped(proc *p);                 /* 1 when p has exited (status kept), 0 when it runs */
void scen_kill_proc(proc *p);             /* SIGKILL and reap */
int scen_term_proc(proc *p, uint32_t ms); /* SIGTERM, SIGKILL after ms; the wait status */
const char *scen_describe(const proc *p, char *buf, size_t len); /* "exited with status 1" */
/* The relay: started with "upstream none" (and up to two more flags), its commands, its end
 * (which reads the fault counts of its summary line into sc->t). */
int scen_relay_start(scen *sc, const char *extra1, const char *extra2);
void scen_relay_cmd(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void scen_relay_stop(scen *sc);
/* A "name=value" of the stopped relay's summary line (0 when absent). */
uint64_t scen_relay_value(const scen *sc, const char *name);
/* The peers, with a kill point armed (or NULL); the relay follows the server's port. */
int scen_server_start(scen *sc, const char *kp);
int scen_client_start(scen *sc, const char *kp);
void scen_server_kill(scen *sc);
void scen_client_kill(scen *sc);
/* Reaps peers that ended: kill point deaths are counted (flags set), a client exit 0
 * marks it done; any other end is a failure. */
int scen_check_peers(scen *sc, int *client_died, int *server_died);
/* Waits up to ms for cond, watching the peers: 0 met, 1 time out, -1 failure. */
int scen_wait_for(scen *sc, uint32_t ms, int (*cond)(scen *), const char *what);
int scen_pause(scen *sc, uint32_t ms);
/* Until the server delivered `at` client messages or the client finished. */
int scen_wait_progress(scen *sc, uint64_t at);
int scen_wait_progress_ms(scen *sc, uint64_t at, uint32_t ms); /* at most ms */
int scen_client_gone(scen *sc);
/* One peer life (which: 0 client, 1 server) with kill point kp, until it dies there;
 * after max_ms it is killed from outside. */
int scen_life_killpoint(scen *sc, int which, const char *kp, uint32_t max_ms);
/* Every scenario's end: faults off, both up until all is acked and delivered, stop. */
int scen_finish(scen *sc);

#endif

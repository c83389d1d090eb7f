/*
 * The chaos relay: a fault-injecting TCP relay for resume-after-disconnect
 * tests. It listens on one address, forwards every accepted connection to an
 * upstream host:port, and on command breaks the path the way networks and
 * middleboxes do: cuts (RST or FIN; now, after N bytes or after N WebSocket
 * frames), stalls (one or both directions; or "let the upgrade through, then
 * nothing"), blackholes, delay and jitter, bandwidth limits, tiny writes, a
 * buffering proxy, and refused connections.
 *
 * Faults come from commands (text lines, see tether__chaos_parse()), from a
 * timeline given at start, or at random from a seed. The random schedule is a
 * pure function of the seed and the random settings (tether__chaos_plan()):
 * the same seed gives the same faults at the same offsets from the start,
 * whatever the traffic does. Traffic shaping (jitter, piece sizes) draws from
 * a second generator, so it never shifts the schedule.
 *
 * One thread runs a poll() loop over every socket. Every function here may be
 * called from any thread; the log callback runs on the relay's thread.
 * Not part of the public API: tools and tests use it through the static library.
 */
#ifndef TETHER_CHAOS_H
#define TETHER_CHAOS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tether__chaos tether__chaos;

/* Directions, as a bit set: UP is client -> upstream, DOWN upstream -> client. */
#define TETHER__CHAOS_UP 1
#define TETHER__CHAOS_DOWN 2
#define TETHER__CHAOS_BOTH 3

typedef enum tether__chaos_kind {
    TETHER__CHAOS_NONE = 0,
    TETHER__CHAOS_CUT = 1,           /* close live connections (RST or FIN) */
    TETHER__CHAOS_STALL = 2,         /* stop forwarding, keep every connection open */
    TETHER__CHAOS_STALL_UPGRADE = 3, /* new connections: the HTTP upgrade passes, then nothing */
    TETHER__CHAOS_BLACKHOLE = 4,     /* swallow every byte, never close, never recover */
    TETHER__CHAOS_DELAY = 5,         /* hold each chunk for delay + random(0..jitter) ms */
    TETHER__CHAOS_RATE = 6,          /* at most this many bytes per second */
    TETHER__CHAOS_SPLIT = 7,         /* write in pieces of 1..N bytes */
    TETHER__CHAOS_BUFFER = 8,        /* read everything at once, trickle it on */
    TETHER__CHAOS_REFUSE = 9,        /* reset new connections at once */
    TETHER__CHAOS_CLEAR = 10,        /* every fault off (poisoned connections stay poisoned) */
    TETHER__CHAOS_KINDS = 11,        /* number of kinds, for arrays */
} tether__chaos_kind;

/* The name of a kind ("cut", "stall-upgrade", ...). */
const char *tether__chaos_kind_name(int kind);

/* One fault. Zero fields mean the defaults given in brackets. */
typedef struct tether__chaos_fault {
    int kind;              /* tether__chaos_kind */
    int dir;               /* TETHER__CHAOS_UP/DOWN/BOTH [BOTH]; for a cut trigger, what counts */
    int off;               /* 1: turn this kind off (stall: resume; refuse: accept; ...) */
    int rst;               /* cut: 1 RST, 0 FIN */
    uint64_t after_bytes;  /* cut: once this many more bytes were forwarded in dir [0: now];
                              stall-upgrade: bytes let down after the 101 [0: none] */
    uint64_t after_frames; /* cut: once this many more WebSocket data frames were forwarded */
    uint32_t for_ms;       /* timed kinds: how long, then off by itself [0: until changed] */
    uint32_t delay_ms;     /* delay: fixed part, ms */
    uint32_t jitter_ms;    /* delay: random extra, 0..jitter_ms */
    uint64_t rate;         /* rate, buffer: bytes per second [buffer: 65536] */
    uint32_t split;        /* split: largest piece, bytes (>= 1) */
    uint32_t gap_ms;       /* split: pause after each piece, ms [0] */
    uint64_t cap;          /* buffer: bytes held per direction at most [64 MiB] */
} tether__chaos_fault;

/* Random faults: one every min_ms..max_ms, of a kind drawn from `kinds`. */
typedef struct tether__chaos_random {
    uint32_t min_ms; /* shortest gap between faults, ms (>= 1) */
    uint32_t max_ms; /* longest gap, ms (>= min_ms) */
    unsigned kinds;  /* bit (1 << kind) per kind allowed [0: TETHER__CHAOS_RANDOM_DEFAULT] */
    int plain_cuts;  /* 1: cuts are immediate and alternate FIN, RST, FIN, ... */
} tether__chaos_random;

#define TETHER__CHAOS_RANDOM_DEFAULT                                                               \
    ((1u << TETHER__CHAOS_CUT) | (1u << TETHER__CHAOS_STALL) | (1u << TETHER__CHAOS_DELAY) |       \
     (1u << TETHER__CHAOS_RATE) | (1u << TETHER__CHAOS_SPLIT) | (1u << TETHER__CHAOS_BUFFER) |     \
     (1u << TETHER__CHAOS_REFUSE))

/* A fault at a time: at_ms after the relay started. */
typedef struct tether__chaos_event {
    uint64_t at_ms;            /* offset from the start, ms */
    tether__chaos_fault fault; /* what happens then */
} tether__chaos_event;

/* A parsed command line. */
typedef enum tether__chaos_op {
    TETHER__CHAOS_OP_NOP = 0,      /* blank line or comment */
    TETHER__CHAOS_OP_FAULT = 1,    /* apply `fault` */
    TETHER__CHAOS_OP_RANDOM = 2,   /* random faults on with `random` */
    TETHER__CHAOS_OP_NORANDOM = 3, /* random faults off */
    TETHER__CHAOS_OP_UPSTREAM = 4, /* new connections go to host:port */
    TETHER__CHAOS_OP_STATUS = 5,   /* log the counters */
} tether__chaos_op;

typedef struct tether__chaos_cmd {
    int op;                      /* tether__chaos_op */
    int when;                    /* 0 now, 1 `at` (from the start), 2 `in` (from now) */
    uint64_t when_ms;            /* with when: the offset, ms */
    tether__chaos_fault fault;   /* OP_FAULT */
    tether__chaos_random random; /* OP_RANDOM */
    char host[256];              /* OP_UPSTREAM ("none": no upstream) */
    uint16_t port;               /* OP_UPSTREAM (0 with "none") */
} tether__chaos_cmd;

/*
 * Parses one command. The grammar (docs/chaos.md has it with examples):
 *
 *   [at TIME | in TIME] COMMAND        TIME: 250ms, 1.5s, or plain ms
 *   cut [rst|fin] [after N bytes|after N frames] [up|down|both]
 *   stall [up|down|both] [for TIME]        resume [up|down|both]
 *   stall-upgrade [up|down|both] [after N bytes] [for TIME]    stall-upgrade off
 *       (after N bytes: the 101 and N more bytes down pass, then nothing either way)
 *   blackhole [for TIME]                   blackhole off
 *   delay MS [jitter MS] [up|down|both] [for TIME]       delay off
 *   rate BYTES/s [up|down|both] [for TIME]               rate off
 *   split N [gap MS] [up|down|both] [for TIME]           split off
 *   buffer [BYTES/s] [cap BYTES] [up|down|both] [for TIME]  buffer off
 *   refuse [for TIME]                      refuse off
 *   clear
 *   random MIN:MAX [KIND,KIND,...]         random off
 *   upstream HOST:PORT | none           none: close new connections at once
 *   status
 *
 * Sizes take k/m suffixes (KiB, MiB). '#' starts a comment.
 * Returns 0, or -1 with a message in err.
 */
int tether__chaos_parse(const char *line, tether__chaos_cmd *out, char *err, size_t errlen);

/* Parses a timeline: one command per line, each with `at TIME` (or none,
 * meaning at 0). Also accepts `seed N` (stored in *seed when not NULL) and
 * `random ...` (stored in *random, *random_on set). Events come out sorted by
 * time (stable). *events is malloc'd. Returns 0, or -1 with "line N: ..." in err. */
int tether__chaos_parse_timeline(const char *text, tether__chaos_event **events, size_t *n,
                                 uint64_t *seed, tether__chaos_random *random, int *random_on,
                                 char *err, size_t errlen);

/* Writes a fault as a command line that tether__chaos_parse() reads back. */
void tether__chaos_format(const tether__chaos_fault *f, char *out, size_t len);

/*
 * The first n random faults for seed under r, with their offsets from the
 * start; exactly what a relay started with that seed and r applies. 0 or -1
 * (invalid r).
 */
int tether__chaos_plan(uint64_t seed, const tether__chaos_random *r, tether__chaos_event *out,
                       size_t n);

typedef struct tether__chaos_cfg {
    const char *listen_host;             /* address to listen on ["127.0.0.1"] */
    uint16_t listen_port;                /* [0: the system picks; see tether__chaos_port()] */
    const char *upstream_host;           /* where connections go (required; "none": close them) */
    uint16_t upstream_port;              /* (required) */
    uint64_t seed;                       /* seeds the random schedule and the traffic shaping */
    const tether__chaos_event *timeline; /* faults at fixed offsets (copied), may be NULL */
    size_t timeline_n;                   /* events in timeline */
    int random_on;                       /* 1: random faults from the start */
    tether__chaos_random random;         /* with random_on */
    int log_conns;                       /* 1: also log each connection's open and close */
    void (*log)(void *arg, const char *line); /* one line, no newline; relay thread; may be NULL */
    void *log_arg;                            /* passed to log */
} tether__chaos_cfg;

/* Counters, read with tether__chaos_stats(). */
typedef struct tether__chaos_stats {
    uint64_t accepted;        /* connections accepted and forwarded */
    uint64_t refused;         /* connections reset at once (refuse) */
    uint64_t upstream_failed; /* connections closed because the upstream did not answer */
    uint64_t open;            /* connections open now */
    uint64_t faults[TETHER__CHAOS_KINDS]; /* faults applied (turned on), by kind */
    uint64_t cut_events;                  /* cuts that closed at least one connection */
    uint64_t cut_conns;                   /* connections closed by cuts */
    uint64_t cut_rst;                     /* ... of which with RST */
    uint64_t cut_events_rst;              /* cuts with RST that closed at least one connection */
    uint64_t read_up;                     /* bytes read from clients */
    uint64_t read_down;                   /* bytes read from upstreams */
    uint64_t bytes_up;                    /* bytes forwarded to upstreams */
    uint64_t bytes_down;                  /* bytes forwarded to clients */
    uint64_t swallowed;                   /* bytes a blackhole ate */
    uint64_t frames_up;                   /* WebSocket data frames forwarded up */
    uint64_t frames_down;                 /* ... and down */
} tether__chaos_stats;

/* Binds, resolves the upstream and starts the thread. Returns 0, or -1 with
 * the reason in err. */
int tether__chaos_start(const tether__chaos_cfg *cfg, tether__chaos **out, char *err,
                        size_t errlen);

/* The port the relay listens on. */
uint16_t tether__chaos_port(const tether__chaos *c);

/* Milliseconds since the relay started (the log's and the timeline's clock). */
uint64_t tether__chaos_elapsed_ms(const tether__chaos *c);

/* Applies a parsed command (resolving an upstream here, in the caller's
 * thread). Returns 0, or -1 with the reason in err. */
int tether__chaos_apply(tether__chaos *c, const tether__chaos_cmd *cmd, char *err, size_t errlen);

/* Parses and applies one command line. 0 or -1 with err. */
int tether__chaos_command(tether__chaos *c, const char *line, char *err, size_t errlen);

void tether__chaos_get_stats(tether__chaos *c, tether__chaos_stats *out);

/* Stops the thread, closes every socket and frees the relay. NULL does nothing. */
void tether__chaos_stop(tether__chaos *c);

/* "host:port" or "[v6]:port" into host (NUL-terminated) and port (0 to 65535).
 * 0 or -1. Also what the tether command parses its addresses with. */
int tether__chaos_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif

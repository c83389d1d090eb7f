/* What chaos.c (the relay) and chaos_cmd.c (its language and schedule) share. */
#ifndef TETHER_CHAOS_INT_H
#define TETHER_CHAOS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "chaos.h"
#include "common/rng.h"

/* The random fault schedule's state: advancing it is all the schedule is. */
typedef struct tether__chaos_gen {
    uint64_t rng;   /* splitmix64 state */
    uint64_t n;     /* faults drawn so far */
    uint64_t cuts;  /* cuts drawn so far (plain cuts alternate FIN and RST on it) */
    uint64_t at_ms; /* offset of the last fault drawn */
} tether__chaos_gen;

void tether__chaos_gen_init(tether__chaos_gen *g, uint64_t seed);
/* Draws the next fault and its offset from the start of the schedule. */
void tether__chaos_gen_next(tether__chaos_gen *g, const tether__chaos_random *r,
                            tether__chaos_event *ev);
/* 1 when r can drive a schedule. */
int tether__chaos_random_valid(const tether__chaos_random *r);



#include <pthread.h>
#include <sys/socket.h>

/* ---- the relay's state, shared by chaos.c, chaos_flow.c and chaos_fault.c ---- */

#define MAX_CONNS 256
#define NORMAL_CAP (256u << 10) /* bytes buffered per direction outside buffer mode */
#define FIRST_ALLOC (16u << 10) /* first buffer allocation */
#define READ_CHUNK (64u << 10)  /* most bytes read per call */
#define MARKS 1024              /* release marks per direction */
#define CMDQ 64                 /* commands waiting for the thread */

/* ---- WebSocket frame boundaries ---- */

/* Parser state over one direction's forwarded bytes. */
typedef struct wsp {
    int phase;       /* 0: HTTP header, 1: frame header, 2: payload */
    uint32_t tail;   /* the last four header bytes, looking for CRLFCRLF */
    uint8_t hdr[14]; /* frame header bytes so far */
    size_t hlen;     /* ... how many */
    size_t hneed;    /* header size once known (0: not yet) */
    uint64_t left;   /* payload bytes left in the current frame */
    int data;        /* the current frame is a data frame (opcode 0, 1 or 2) */
    uint8_t um;      /* characters of "\nupgrade:" matched in the HTTP header so far */
    int upgrade;     /* the HTTP header holds an Upgrade header (a WebSocket upgrade) */
    uint64_t hdr_bytes; /* bytes of the HTTP header (its length once phase left 0) */
} wsp;

/* Bytes up to stream offset `end` may leave at `at` (ms). */
typedef struct mark {
    uint64_t end; /* stream offset (bytes read in this direction) */
    uint64_t at;  /* release time, ms */
} mark;

/* One direction of one connection: read from fd[i], written to fd[1 - i]. */
typedef struct half {
    uint8_t *buf;        /* waiting bytes live at buf[off .. off + len) */
    size_t alloc;        /* bytes allocated */
    size_t off;          /* start of the waiting bytes */
    size_t len;          /* waiting bytes */
    uint64_t rd;         /* bytes read so far */
    uint64_t wr;         /* bytes written so far */
    mark *m;             /* release marks, a ring of MARKS */
    size_t mh;           /* oldest mark */
    size_t mn;           /* marks held */
    int eof;             /* the reading side sent FIN */
    int shut;            /* that FIN was passed on */
    int gone;            /* the reading socket is dead: failed, or hung up after EOF */
    int hup;             /* poll() reported POLLHUP on the reading socket */
    wsp ws;              /* frame parser over the written bytes */
    double tokens;       /* rate: bytes that may be written now */
    uint64_t refill_at;  /* rate: when tokens were last refilled, ms */
    uint64_t not_before; /* split gap: no write before this, ms */
} half;

typedef struct conn {
    unsigned id;    /* 1, 2, ... in accept order, for the log */
    int fd[2];      /* fd[0] accepted from the client, fd[1] to the upstream */
    int connecting; /* the upstream connect is in progress */
    int poisoned;   /* blackholed: swallows everything for the rest of its life */
    int ustall;     /* stall-upgrade: the HTTP upgrade passes, then nothing in the directions
                       of this mask (TETHER__CHAOS_UP/DOWN/BOTH); 0: none */
    uint64_t ustall_after; /* with ustall: the upgrade and this many more bytes downstream
                              pass (a WELCOME), then nothing either way; 0: stop at once */
    half h[2];      /* h[0]: up (client -> upstream), h[1]: down */
} conn;

/* Shaping of one direction, for every connection. gen: the fault that set it. */
typedef struct shape {
    int stalled; /* stop forwarding */
    uint64_t stall_gen;
    uint32_t delay;  /* ms */
    uint32_t jitter; /* ms */
    uint64_t delay_gen;
    uint64_t rate; /* bytes/s, 0 = unlimited */
    uint64_t rate_gen;
    uint32_t split; /* largest piece, 0 = off */
    uint32_t gap;   /* ms after each piece */
    uint64_t split_gen;
    int buffered;      /* buffer mode */
    uint64_t buf_rate; /* its trickle, bytes/s */
    uint64_t buf_cap;  /* bytes held at most */
    uint64_t buffer_gen;
} shape;

/* A pending cut trigger. */
typedef struct trigger {
    int armed;       /* waiting */
    int rst;         /* RST (1) or FIN (0) */
    int dir;         /* directions that count */
    uint64_t bytes;  /* bytes still to forward, or 0 */
    uint64_t frames; /* data frames still to forward, or 0 */
    char desc[200];  /* the command, for the log */
} trigger;

/* Something due at a time: a fault, or the end (undo) of a timed one. */
typedef struct timer {
    uint64_t at;               /* ms, monotonic */
    int undo;                  /* 1: turn fault.kind off in fault.dir if gen still matches */
    uint64_t gen;              /* with undo */
    tether__chaos_fault fault; /* what */
} timer;

/* A command handed to the thread. */
typedef struct qcmd {
    tether__chaos_cmd cmd;        /* the command */
    struct sockaddr_storage addr; /* OP_UPSTREAM: resolved */
    socklen_t addrlen;            /* ... its length */
} qcmd;

struct tether__chaos {
    tether__chaos_cfg cfg; /* copy; strings below are owned */
    char *upstream_name;   /* "host:port" for the log */
    int lfd;               /* listening socket */
    uint16_t port;         /* its port */
    int wake[2];           /* pipe that wakes the thread */
    pthread_t thread;      /* the loop */
    uint64_t t0;           /* start, ms */

    /* thread only */
    struct sockaddr_storage up; /* upstream address */
    socklen_t uplen;            /* ... length */
    conn *conns[MAX_CONNS];     /* live connections */
    unsigned next_id;           /* id of the next connection */
    shape sh[2];                /* shaping up [0] and down [1] */
    int refusing;               /* reset new connections */
    uint64_t refuse_gen;
    int ustall_mode; /* new connections get stall-upgrade in these directions (0: none) */
    uint64_t ustall_after; /* ... letting this many bytes down after the 101 first (0: none) */
    uint64_t ustall_gen;
    int blackhole_mode; /* new connections are poisoned */
    uint64_t blackhole_gen;
    uint64_t gen;                    /* last generation handed out */
    trigger trig;                    /* the pending cut trigger */
    timer *timers;                   /* pending timers (unsorted) */
    size_t ntimers, timers_cap;      /* ... count and capacity */
    int random_on;                   /* random faults running */
    tether__chaos_random random;     /* their settings */
    tether__chaos_gen gen_state;     /* the schedule */
    uint64_t random_base;            /* when random started, ms */
    tether__chaos_event random_next; /* the next random fault, drawn ahead */
    uint64_t shape_rng;              /* jitter and piece sizes */
    tether__chaos_stats st;          /* counters */
    uint8_t scratch[READ_CHUNK];     /* where swallowed bytes go */

    pthread_mutex_t mu;         /* guards the fields below */
    qcmd q[CMDQ];               /* commands waiting */
    size_t qn;                  /* ... how many */
    int stop;                   /* the thread must finish */
    tether__chaos_stats shared; /* counters as last published */
};

/* chaos.c */
uint64_t tether__chaos_now(void); /* ms, monotonic */
/* One log line, prefixed with the seconds since the start. */
void tether__chaos_log(tether__chaos *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Closes every live connection with RST or FIN, counts and logs it as `what`. */
void tether__chaos_cut_all(tether__chaos *c, int rst, const char *what);

/* chaos_flow.c: how bytes move through one connection; i is the direction
 * (0 up: read from k->fd[0], written to k->fd[1]; 1 down). */
int tether__chaos_can_read(const tether__chaos *c, const conn *k, int i);
/* Bytes of direction i that may be written now; *wake lowered to when time
 * (delay, rate, split gap) lets more go. */
size_t tether__chaos_allowance(tether__chaos *c, conn *k, int i, uint64_t now, uint64_t *wake);
/* Reads what the socket has (sets eof/gone). Returns -1 on a failed socket. */
int tether__chaos_read(tether__chaos *c, conn *k, int i, uint64_t now);
/* Writes what may go: -1 a failed socket, 1 a cut trigger was reached, else 0. */
int tether__chaos_write(tether__chaos *c, conn *k, int i, uint64_t now);
/* Passes a FIN on once direction i has nothing left to forward. */
void tether__chaos_pass_fin(tether__chaos *c, conn *k, int i);

/* chaos_fault.c: faults on and off, timed ends, the timeline, the random schedule. */
void tether__chaos_add_timer(tether__chaos *c, uint64_t at, int undo, uint64_t gen,
                             const tether__chaos_fault *f);
void tether__chaos_start_random(tether__chaos *c, const tether__chaos_random *r, uint64_t now);
void tether__chaos_run_timers(tether__chaos *c, uint64_t now);
void tether__chaos_run_random(tether__chaos *c, uint64_t now);
void tether__chaos_run_cmd(tether__chaos *c, const qcmd *q, uint64_t now);

#endif

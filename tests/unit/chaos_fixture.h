/*
 * Helpers for the tests of the chaos relay (src/tools/chaos): a plain TCP
 * peer in this process that records what it receives and can echo it back, a
 * relay started in front of it with its log captured, and client sockets.
 * Used by chaos_schedule and chaos_faults.
 */
#ifndef TETHER_TEST_CHAOS_FIXTURE_H
#define TETHER_TEST_CHAOS_FIXTURE_H

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "chaos/chaos.h"

#define PEER_MAX_CONNS 16
#define PEER_BUF (8u << 20)

/* What the peer saw on one accepted connection. */
typedef struct peer_conn {
    int fd;          /* -1 once closed */
    uint8_t *data;   /* bytes received (first PEER_BUF) */
    size_t len;      /* bytes received */
    size_t max_read; /* largest single recv() */
    int eof;         /* read 0 */
    int reset;       /* recv failed (ECONNRESET) */
} peer_conn;

/* A TCP peer on 127.0.0.1: records every byte, echoes them when echo is set. */
typedef struct peer {
    int lfd;                         /* listening socket */
    uint16_t port;                   /* its port */
    int echo;                        /* send back what arrives */
    volatile int paused;             /* stop reading */
    volatile int stop;               /* the thread must finish */
    pthread_t thread;                /* the loop */
    pthread_mutex_t mu;              /* guards conns and n */
    peer_conn conns[PEER_MAX_CONNS]; /* in accept order */
    int n;                           /* accepted so far */
} peer;

/* Log lines captured from the relay. */
typedef struct logbuf {
    pthread_mutex_t mu;
    char lines[256][200];
    int n;
} logbuf;

uint64_t now_ms(void);

void sleep_ms(unsigned ms);

void peer_start(peer *p, int echo);

void peer_stop(peer *p);

/* A copy of what connection i received so far. */
peer_conn peer_get(peer *p, int i);

int peer_count(peer *p);

/* Waits until connection i received at least want bytes (or ms pass); returns what it has. */
size_t peer_wait(peer *p, int i, size_t want, unsigned ms);

void log_cb(void *arg, const char *line);

tether__chaos *relay_to(uint16_t port, uint64_t seed, logbuf *lb);

void cmd(tether__chaos *c, const char *line);

/* The counters, once the relay thread has published what just happened. */
void settled_stats(tether__chaos *c, tether__chaos_stats *st);

/* A blocking client socket to the relay with a receive timeout. */
int dial(uint16_t port);

/* Reads until want bytes, EOF, an error or ms pass. Returns bytes read;
 * *end is 0 (still open), 1 (EOF) or -1 (error/reset). */
size_t recv_all(int fd, uint8_t *buf, size_t want, unsigned ms, int *end);

void fill(uint8_t *b, size_t n, unsigned salt);

/* A WebSocket frame, client to server (masked), into out; returns its size. */
size_t ws_frame(uint8_t *out, int opcode, size_t len);

extern const char http_get[];

#endif

/*
 * Server operations (server_admin.c): the idle expiry of sessions and its
 * sweep, session deletion and listing, the counters behind
 * tether_server_stats(), and the Prometheus page (server_metrics.c).
 *
 * The server core calls the few hooks below where a session goes online or
 * offline and where the server is created, started and destroyed. Everything
 * else of this concept lives in server_admin.c and server_metrics.c.
 */
#ifndef TETHER_SERVER_ADMIN_H
#define TETHER_SERVER_ADMIN_H

#include <pthread.h>
#include <stdint.h>

#include <tether/tether.h>

#include "common/stats.h"

typedef struct tether_server tether_server;
typedef struct srv_session srv_session;

/* A clock in milliseconds; tests give the server a fake one. */
typedef uint64_t (*tether__srv_clock)(void *arg);

/* One session's offline time (server_admin.c's map). */
typedef struct srv_idle srv_idle;

/* The operations state inside tether_server. */
typedef struct srv_admin {
    tether__stats stats;       /* the counters (atomic) */
    tether__srv_clock clock;   /* the clock of idle times [NULL: tether__now_ms] */
    void *clock_arg;           /* passed to clock */
    uint64_t created_ms;       /* clock time of create: idle start of sessions not seen offline */
    uint64_t sweep_ms;         /* sweep period, ms (0: no expiry) */
    int inited;                /* the locks below are initialised */
    /* guarded by mu, a leaf lock (taken after a session's) */
    pthread_mutex_t mu;        /* the offline map */
    srv_idle **map;            /* offline sessions by id (nmap chains); kept across eviction */
    size_t nmap;               /* buckets, a power of two */
    size_t nidle;              /* entries in the map */
    /* guarded by smu, never held while a callback runs */
    pthread_mutex_t smu;       /* the sweep's state */
    pthread_cond_t scond;      /* a sweep ended, or the thread is to stop */
    int sweeping;              /* a sweep is running (one at a time) */
    int stop;                  /* the sweep thread is to exit */
    int store_swept;           /* sessions never seen offline here were swept once */
    pthread_t thread;          /* the sweep thread */
    int thread_started;        /* thread runs */
} srv_admin;

/* create(): the clock and the sweep period. TETHER_OK or TETHER_ENOMEM. */
int tether__srv_admin_init(tether_server *s);
/* start(): starts the sweep thread when sessions expire. TETHER_OK or TETHER_ESYS. */
int tether__srv_admin_start(tether_server *s);
/* destroy(), first: stops the sweep thread (no expiry from then on). */
void tether__srv_admin_stop(tether_server *s);
/* destroy() or a failed create(): frees the map (also when init did not run). */
void tether__srv_admin_free(tether_server *s);
/* ss->mu held: the session has a connection now (a HELLO was accepted). */
void tether__srv_admin_online(tether_server *s, srv_session *ss);
/* ss->mu held: the session's last connection ended; its idle time starts. */
void tether__srv_admin_offline(tether_server *s, srv_session *ss);
/* The server's clock, ms. */
uint64_t tether__srv_admin_now(tether_server *s);

/* Counters (any thread). */
void tether__srv_stat(tether_server *s, tether__stat which, uint64_t n);

/* ---- tests only ---- */

/* Replaces the clock of idle times (before start); created_ms is re-read from it. */
void tether__server_set_clock(tether_server *s, tether__srv_clock clock, void *arg);
/* Runs one expiry sweep now, as the sweep thread would (after any sweep running). */
void tether__server_sweep(tether_server *s);

/* server_metrics.c: writes the stats as a Prometheus text page into buf;
 * returns the length, or the length needed when it is len or more. */
size_t tether__srv_metrics_render(const tether_server_statistics *st, char *buf, size_t len);
/* server_metrics.c: the transport's http_get (tether__tp_cfg): serves GET /metrics. */
int tether__srv_metrics_http(void *owner, const char *path, char **body, size_t *len,
                             const char **type);

#endif

/*
 * Server operations (server_admin.c): the idle expiry of sessions and its
 * sweep, session deletion and listing, the counters behind
 * tether_server_stats(), and the Prometheus page (server_metrics.c).
 *
 * The server core calls the few hooks below at the places where a session is
 * added, loaded, goes offline or is opened, and where the service thread's
 * timer and wake-up run. Everything else of this concept lives in
 * server_admin.c and server_metrics.c.
 */
#ifndef TETHER_SERVER_ADMIN_H
#define TETHER_SERVER_ADMIN_H

#include <stdint.h>

#include <tether/tether.h>

#include "common/stats.h"

typedef struct tether_server tether_server;
typedef struct srv_session srv_session;

/* A clock in milliseconds; tests give the server a fake one. */
typedef uint64_t (*tether__srv_clock)(void *arg);

/* The operations state inside tether_server. */
typedef struct srv_admin {
    tether__stats stats;       /* the counters (atomic) */
    tether__srv_clock clock;   /* the clock of idle times [NULL: tether__now_ms] */
    void *clock_arg;           /* passed to clock */
    uint64_t created_ms;       /* clock time of create: idle start of sessions loaded later */
    uint64_t sweep_ms;         /* sweep period, ms (0: no expiry) */
    int timer_armed;           /* the sweep timer is set on the transport */
    int store_swept;           /* sessions never loaded by this process were swept once */
    uint64_t loaded;           /* sessions in the session table */
    uint64_t unloaded;         /* sessions in the store but not in the table */
    uint64_t unloaded_pending; /* unacked messages of those */
    uint64_t unloaded_bytes;   /* their payload bytes */
} srv_admin;

/* create(), before the service thread exists: reads the store's totals.
 * TETHER_OK or the store's error. */
int tether__srv_admin_init(tether_server *s);
/* start(), before the transport's thread starts: arms the sweep timer. */
void tether__srv_admin_start(tether_server *s);
/* Lock held: a session entered the table (created or loaded). */
void tether__srv_admin_added(tether_server *s, srv_session *ss);
/* Lock held: the session just added came from the store (not created now). */
void tether__srv_admin_loaded(tether_server *s, srv_session *ss);
/* Lock held: the session's connection ended; its idle time starts. */
void tether__srv_admin_offline(tether_server *s, srv_session *ss);
/* Service thread, lock held: the transport-wide timer fired. */
void tether__srv_admin_timer(tether_server *s);
/* The server's clock, ms. */
uint64_t tether__srv_admin_now(tether_server *s);

/* Counters (any thread). */
void tether__srv_stat(tether_server *s, tether__stat which, uint64_t n);

/* ---- tests only ---- */

/* Replaces the clock of idle times (before start); created_ms is re-read from it. */
void tether__server_set_clock(tether_server *s, tether__srv_clock clock, void *arg);
/* Runs one expiry sweep now, as the timer would. */
void tether__server_sweep(tether_server *s);

/* server_metrics.c: writes the stats as a Prometheus text page into buf;
 * returns the length, or the length needed when it is len or more. */
size_t tether__srv_metrics_render(const tether_server_statistics *st, char *buf, size_t len);
/* server_metrics.c: the transport's http_get (tether__tp_cfg): serves GET /metrics. */
int tether__srv_metrics_http(void *owner, const char *path, char **body, size_t *len,
                             const char **type);

#endif

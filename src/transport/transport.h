/*
 * The libwebsockets glue: one lws context served by one thread, binary
 * WebSocket messages assembled whole, timers, and a thread-safe wake-up.
 * Only transport_lws*.c include libwebsockets; client.c and server.c see this.
 *
 * Every callback runs on the transport's service thread. Functions marked
 * "service thread" must only be called from there (from inside a callback).
 */
#ifndef TETHER_TRANSPORT_H
#define TETHER_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/stats.h"
#include "engine/frame.h"
#include "proxy.h"

typedef struct tether__tp tether__tp;
typedef struct tether__conn tether__conn;

/* Why a connection ended or failed to open. */
typedef struct tether__tp_close {
    int error;          /* tether_err: TETHER_EPEER_CLOSED, TETHER_ECONNREFUSED, TETHER_EHTTP, ... */
    int http_status;    /* HTTP status of a refused upgrade, else 0 */
    int established;    /* 1 if the WebSocket had opened */
    int idle_timeout;   /* 1 if the transport closed it for lack of traffic (ping unanswered) */
    char detail[240];   /* what the lower layer said */
    int proxy_status;   /* client: the proxy's status for CONNECT when not 200, else 0 */
    uint32_t retry_after_ms; /* client: Retry-After of the refusal (server or proxy), ms, or 0 */
} tether__tp_close;

/* A server-side upgrade request, or a carriage open request, being admitted
 * (see tether__tp_cb.admit). */
typedef struct tether__tp_hs tether__tp_hs;

typedef struct tether__tp_cb {
    /* A connection opened (client: upgrade accepted; server: a new peer, over
     * WebSocket or an HTTP carriage open request, which then brings its HELLO
     * as the first message). */
    void (*open)(void *owner, tether__conn *c);
    /* One whole binary message; err != 0 instead when the peer sent something
     * unacceptable (TETHER_EFRAME_OVERSIZE, TETHER_EMALFORMED for text). */
    void (*message)(void *owner, tether__conn *c, const uint8_t *buf, size_t len, int err);
    /* The connection may be written to (after tether__conn_want_write). */
    void (*writable)(void *owner, tether__conn *c);
    /* The connection closed, or a client attempt failed (c is then the attempt). */
    void (*closed)(void *owner, tether__conn *c, const tether__tp_close *why);
    /* tether__tp_wake() was called. */
    void (*wake)(void *owner);
    /* A timer set with tether__tp_timer() or tether__conn_timer() is due. */
    void (*timer)(void *owner, tether__conn *c); /* c is NULL for the transport-wide timer */
    /* Server, may be NULL: an upgrade request arrived. Returns 0 to accept it,
     * or an HTTP status (400..599) to refuse it; extra headers for the refusal
     * go into reply as "Name: value\r\n" lines. */
    int (*admit)(void *owner, tether__tp_hs *hs, char *reply, size_t reply_len);
} tether__tp_cb;

typedef struct tether__tp_cfg {
    const char *listen_host;     /* server: address to bind; NULL for a client */
    int listen_port;             /* server: port (0: any) */
    uint32_t max_rx;             /* largest incoming WebSocket message, bytes */
    uint32_t rx_buffer;          /* server: lws's receive buffer per connection, bytes (0: 1024) */
    uint32_t ping_interval_ms;   /* idle time before a ping */
    uint32_t pong_timeout_ms;    /* further idle time before the link counts as dead */
    uint32_t connect_timeout_ms; /* client: connection attempt bound; server: the HTTP upgrade
                                    request must be complete within this (whole seconds) */
    /* client */
    const char *tls_ca_file;     /* CAs to trust instead of the system's, or NULL */
    const char *tls_cert_file;   /* client certificate, or NULL */
    const char *tls_key_file;    /* its key, or NULL */
    int tls_insecure;            /* accept any server certificate */
    const tether__proxy *proxy;  /* CONNECT through this proxy; NULL or host "" for none */
    const char *origin;          /* Origin header, or NULL */
    const char *const *headers;  /* extra "Name: value" headers, NULL-terminated, or NULL */
    /* server */
    const char *tls_server_cert; /* serve TLS with this certificate chain, or NULL */
    const char *tls_server_key;  /* its key */
    const char *tls_client_ca;   /* require client certificates from these CAs, or NULL */
    /* either side */
    tether__stats *stats;        /* counts message bytes in and out here, or NULL */
    /* server, may be NULL: a plain HTTP GET of path (not an upgrade). Returns 200
     * with *body (malloc'd; the transport frees it), *len and *type (a static
     * Content-Type) filled, or 0 when path is not served (the request gets 400). */
    int (*http_get)(void *owner, const char *path, char **body, size_t *len, const char **type);
    /* server: the HTTP carriage (proto/HTTP.md, transport_lws_carriage.c) */
    const char *const *allowed_origins; /* Origin values allowed on carriage requests
                                           (NULL-terminated), or NULL: any origin */
    uint32_t carriage_hold_ms;   /* longest a poll is held before 204, ms (0: 25000) */
    uint32_t carriage_idle_ms;   /* a carriage connection with no request this long ends,
                                    ms (0: 40000) */
    const char *cors_headers;    /* server: the preflight's Access-Control-Allow-Headers
                                    value, or NULL: TETHER__HC_CORS_HEADERS */
    const char *www_root;        /* server: plain GETs are answered with the files below this
                                    resolved directory (transport_lws_www.c), or NULL */
} tether__tp_cfg;

/* Creates the context (binding the port for a server). Returns TETHER_OK,
 * TETHER_ENOMEM or TETHER_ESYS (with tether_errmsg()). */
int tether__tp_create(const tether__tp_cfg *cfg, const tether__tp_cb *cb, void *owner,
                      tether__tp **out);
/* Starts the service thread. */
int tether__tp_start(tether__tp *tp);
/* Asks the service thread to run the wake callback; any thread. */
void tether__tp_wake(tether__tp *tp);
/* 1 when the calling thread is tp's service thread (inside one of its
 * callbacks), else 0; tp may be NULL. Any thread (transport_lws_thread.c). */
int tether__tp_on_service_thread(const tether__tp *tp);
/* Stops and joins the service thread (not from it), closes every connection
 * (closed callbacks run) and frees the context. NULL does nothing. */
void tether__tp_destroy(tether__tp *tp);
/* Server: HTTP carriage connections held in memory now (tests; any thread). */
size_t tether__tp_carriage_conns(tether__tp *tp);
/* Server: resolves dir (config www_dir) into *out (malloc'd, the caller frees)
 * after checking it is a readable directory. Returns TETHER_OK, TETHER_ECONFIG
 * (with tether_errmsg()) or TETHER_ENOMEM. */
int tether__tp_www_resolve(const char *dir, char **out);
/* Server: the bound port. */
int tether__tp_port(tether__tp *tp);

/* Client, service thread: starts a connection attempt to url (ws:// or wss://).
 * Failures are reported through closed(). Returns TETHER_OK, TETHER_ECONFIG
 * (bad url), TETHER_ECONNECT. */
int tether__tp_connect(tether__tp *tp, const char *url);
/* Client, service thread: starts a connection over the HTTP carriage
 * (proto/HTTP.md) of url (ws:// or wss://, whose http:// or https:// urls are
 * derived), with libcurl on the transport's loop. open() follows from the
 * loop, then the first frame written is sent as the open request (the HELLO);
 * everything else as for tether__tp_connect. Returns TETHER_OK, TETHER_ECONFIG
 * (bad url), TETHER_ENOMEM. */
int tether__tp_connect_http(tether__tp *tp, const char *url);
/* Validates a url without connecting. TETHER_OK or TETHER_ECONFIG. */
int tether__tp_check_url(const char *url);
/* Splits a valid url: *tls 1 for wss, host without brackets into host[len]. */
int tether__tp_url_host(const char *url, int *tls, char *host, size_t len);
/* Client, service thread: replaces the proxy for the next attempts (NULL: none). */
void tether__tp_set_proxy(tether__tp *tp, const tether__proxy *proxy);

/* Server, inside admit(): a request header by name (case-insensitive) copied
 * into buf, or NULL when absent; the path; the peer's address. */
const char *tether__tp_hs_header(tether__tp_hs *hs, const char *name, char *buf, size_t len);
const char *tether__tp_hs_path(tether__tp_hs *hs, char *buf, size_t len);
const char *tether__tp_hs_peer(tether__tp_hs *hs, char *buf, size_t len);
/* Service thread: the peer's IP address of a server connection into buf
 * ("" for an HTTP carriage connection or when not known); returns buf. */
const char *tether__conn_peer(tether__conn *c, char *buf, size_t len);

/* Service thread: the transport-wide timer fires at now_ms + delay_ms
 * (replaces any earlier setting); tether__tp_timer_cancel() cancels it. */
void tether__tp_timer(tether__tp *tp, uint64_t delay_ms);
void tether__tp_timer_cancel(tether__tp *tp);

/* Service thread, per connection. */
void tether__conn_want_write(tether__conn *c);
/* Writes one binary message held in b (after its LWS_PRE headroom). Returns
 * TETHER_OK or TETHER_ECONNECT if the connection failed. */
int tether__conn_write(tether__conn *c, tether__buf *b);
/* 1 while earlier writes are still buffered inside lws. */
int tether__conn_busy(tether__conn *c);
/* Closes the connection soon; closed() follows. */
void tether__conn_close(tether__conn *c);
void tether__conn_timer(tether__conn *c, uint64_t delay_ms);
void tether__conn_timer_cancel(tether__conn *c);
/* 1 when c is a client's HTTP carriage connection (tether__tp_connect_http),
 * 0 for a WebSocket one. */
int tether__conn_is_http(const tether__conn *c);
void tether__conn_set_user(tether__conn *c, void *user);
void *tether__conn_user(tether__conn *c);

/* Headroom a tether__buf needs for tether__conn_write(). */
size_t tether__tp_headroom(void);

#endif

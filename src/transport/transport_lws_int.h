/*
 * Internals of the libwebsockets glue, shared by transport_lws.c (context,
 * callback, connections), transport_lws_diag.c (the facts of a failed client
 * attempt, the proxy probe) and transport_lws_admit.c (server admission).
 * Only these files include libwebsockets.
 */
#ifndef TETHER_TRANSPORT_LWS_INT_H
#define TETHER_TRANSPORT_LWS_INT_H

#include "transport.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <tether/tether.h>

#include "common/keepalive.h"
#include "common/util.h"
#include "classify.h"

typedef struct hc_conn hc_conn;     /* an HTTP carriage connection (transport_lws_carriage.c) */
typedef struct hc_req hc_req;       /* one HTTP request of the carriage */
typedef struct tether__car tether__car; /* the carriage's state in a server transport */

struct tether__conn {
    struct lws *wsi;              /* the lws connection, NULL once closed */
    hc_conn *hc;                  /* a carriage connection: its record (wsi stays NULL), else NULL */
    struct tether__cc *cc;        /* client: an HTTP carriage connection (transport_curl.c), else NULL */
    tether__tp *tp;               /* owner transport */
    void *user;                   /* client.c / server.c state for this connection */
    uint8_t *rx;                  /* message being assembled */
    size_t rx_len;                /* bytes in rx */
    size_t rx_cap;                /* bytes allocated at rx */
    uint64_t last_rx_ms;          /* when the peer last sent anything */
    tether__ka_node ka;           /* server: its place in the keepalive queues (tp->ka) */
    lws_sorted_usec_list_t sul;   /* per-connection timer */
    /* client attempts only */
    lws_sorted_usec_list_t sul_attempt; /* connect_timeout_ms bound of the attempt */
    int tls_err;                  /* first X509 verification error seen, 0 if none */
    int tls_alert;                /* fatal TLS alert the server sent (SSL_CB_READ_ALERT), or 0 */
    uint8_t stage;                /* TETHER__STEP_*: how far the attempt got */
    uint8_t timed_out;            /* our connect_timeout_ms ran out */
    uint8_t tls_started;          /* our TLS handshake began */
    uint8_t tls_done;             /* our TLS handshake completed */
    uint8_t cert_requested;       /* the server asked for a client certificate */
    uint8_t upgrade_checked;      /* lws passed the 101 to our filter (CLIENT_FILTER_PRE_ESTABLISH) */
    uint8_t probing;              /* a proxy probe runs; closed() is reported when it ends */
    /* both (one byte each: a server holds thousands of these records) */
    uint8_t rx_bad;               /* the current message is being discarded (error reported) */
    uint8_t established;          /* the WebSocket is open */
    uint8_t closing;              /* close requested: the next writable closes */
    uint8_t ended;                /* closed() was reported */
    uint8_t ping_due;             /* server: a ping is to be written at the next writable */
    uint8_t ka_hup;               /* server: our keepalive hung up (no pong in time) */
};

/* What lws keeps per connection for us (its per-session data). */
typedef struct tp_pss {
    tether__conn *c;              /* a WebSocket connection, or NULL */
    hc_req *req;                  /* the carriage request being served on this HTTP connection */
} tp_pss;

/* A request being admitted: the wsi, and for a carriage open the application
 * path (HTTP.md section 2.3) the hook sees instead of the request's. */
struct tether__tp_hs {
    struct lws *wsi;              /* the request */
    const char *app_path;         /* carriage: path and query without the marker, else NULL */
};

/* How far a client attempt got (classify.h). */
enum {
    ST_CONNECTING = TETHER__STEP_CONNECTING,
    ST_TCP = TETHER__STEP_TCP,
    ST_SENT = TETHER__STEP_SENT,
    ST_ANSWERED = TETHER__STEP_ANSWERED
};

/* A proxy probe: our own CONNECT, after lws's failed, to learn the proxy's status. */
typedef struct probe {
    tether__conn *c;              /* the failed attempt, reported when the probe ends */
    int fd;                       /* socket to the proxy, -1 when closed */
    int phase;                    /* 0 connecting, 1 writing, 2 reading */
    uint64_t deadline;            /* give up at this time, ms */
    char req[1024];               /* the CONNECT request */
    size_t req_len, req_off;      /* its length, bytes written */
    char resp[4096];              /* the response head */
    tether__facts facts;          /* what the failed attempt showed (kept here, not in every
                                     connection record: a server holds thousands) */
    char lws_why[96];             /* lws's words for the failure (detail only) */
    size_t resp_len;              /* bytes in resp */
    lws_sorted_usec_list_t sul;   /* polls the socket */
    struct lws_context *ctx;      /* the transport's context */
} probe;

struct tether__tp {
    tether__tp_cfg cfg;           /* copy of the configuration */
    tether__tp_cb cb;             /* owner callbacks */
    void *owner;                  /* passed to every callback */
    struct lws_context *ctx;      /* the lws context */
    struct lws_vhost *vhost;      /* the server's listening vhost, or NULL */
    lws_retry_bo_t retry;         /* ping/idle policy given to lws */
    struct lws_protocols protocols[2]; /* tether.v1 and the terminator */
    struct lws_vhost *cvhost;     /* client: the default vhost (holds the proxy setting) */
    tether__proxy proxy;          /* client: the proxy in use (host "" for none) */
    probe *probe;                 /* client: the proxy probe running, or NULL */
    int tls;                      /* client: the url is wss:// */
    char target_host[256];        /* client: the url's host, without brackets */
    int target_port;              /* client: the url's port */
    pthread_t thread;             /* service thread */
    int started;                  /* thread is running */
    atomic_int stop;              /* asks the service thread to finish */
    lws_sorted_usec_list_t sul;   /* transport-wide timer (default loop) */
    int uv;                       /* server: lws runs on our libuv loop below */
    uv_loop_t loop;               /* the foreign libuv loop the service thread runs */
    uv_timer_t tick;              /* the transport-wide timer on that loop */
    tether__ka ka;                /* server: pings and hang-ups of its WebSockets (keepalive.h) */
    uv_timer_t ka_timer;          /* server: checks tp->ka while any connection is in it */
    int ka_on;                    /* server: ka_timer is initialised (closed at teardown) */
    atomic_int tick_due;          /* client: the tick fired; run it from lws's service */
    struct tether__curl *curl;    /* client: the HTTP carriage (transport_curl.c), or NULL */
    tether__conn *client;         /* the client's current attempt/connection, or NULL */
    char url[1024];               /* scratch copy for lws_parse_uri */
    char host_hdr[300];           /* Host header "host:port" */
    tether__car *car;             /* server: the HTTP carriage, or NULL */
};

/* transport_lws_admit.c: answers an upgrade request with status and returns -1
 * (close). why: the body's sentence, or NULL for a generic one; extra:
 * "Name: value\r\n" lines from the admission hook, or NULL. */
int tether__tp_refuse_upgrade(struct lws *wsi, int status, const char *why, const char *extra);
/* transport_lws_http.c: answers a plain HTTP request for path through
 * cfg.http_get; returns -1 (close) after answering, or 0 when http_get does
 * not serve path (nothing written). */
int tether__tp_http_answer(tether__tp *tp, struct lws *wsi, const char *path);
/* A plain request for a static file below cfg.www_root (transport_lws_www.c):
 * 0 when it is not one (a WebSocket handshake whose Upgrade was lost, or not a
 * GET): the caller answers 426; 1 when the file is being sent; -1 when the
 * request was answered (404) or failed and the connection closes. */
int tether__tp_www_answer(tether__tp *tp, struct lws *wsi, const char *path);
/* transport_lws_carriage.c / transport_lws_hcconn.c: the HTTP carriage of a
 * server. create: after the context (needs tp->loop); destroy: after
 * lws_context_destroy, before the loop is torn down (closed() runs for every
 * connection the server core still holds). */
int tether__car_create(tether__tp *tp);
void tether__car_destroy(tether__tp *tp);
/* The callback's HTTP reasons. Returns 1 when the carriage handled the reason
 * (*ret is the callback's return value), 0 when the request is not the
 * carriage's (HTTP: not a carriage path). */
int tether__car_http(tether__tp *tp, struct lws *wsi, int reason, tp_pss *pss, void *in,
                     size_t len, int *ret);
/* tether__conn_* on a carriage connection. */
void tether__car_want_write(tether__conn *c);
int tether__car_write(tether__conn *c, tether__buf *b);
void tether__car_close(tether__conn *c);

/* transport_curl.c: the client's HTTP carriage on tp->loop. create: after the
 * loop; destroy: before the loop is torn down (closed() runs for a connection
 * still open). connect: c (allocated by the caller, owned by the carriage from
 * then on) becomes an HTTP connection to the carriage of ws_url; open() follows
 * from the loop. max_rx: the client's max_message. */
typedef struct tether__curl tether__curl;
typedef struct tether__cc tether__cc;
int tether__curl_create(tether__tp *tp, uv_loop_t *loop, tether__curl **out);
void tether__curl_destroy(tether__curl *cu);
int tether__curl_connect(tether__curl *cu, tether__conn *c, const char *ws_url, uint32_t max_rx);
/* tether__conn_* on a carriage connection. */
void tether__cc_want_write(tether__cc *cc);
int tether__cc_write(tether__cc *cc, tether__buf *b);
int tether__cc_busy(tether__cc *cc);
void tether__cc_close(tether__cc *cc);
void tether__cc_timer(tether__cc *cc, uint64_t delay_ms);
void tether__cc_timer_cancel(tether__cc *cc);

/* transport_lws_rx.c: one piece of an incoming message (first/final: lws's
 * fragment flags; binary: its opcode; more: bytes left of the current
 * WebSocket frame); hands the message to the owner's message callback when
 * it is whole, or the error once (TETHER_EMALFORMED for text,
 * TETHER_EFRAME_OVERSIZE past cfg.max_rx, TETHER_ENOMEM). */
void tether__tp_rx_append(tether__conn *c, const uint8_t *in, size_t len, int first, int final,
                          int binary, size_t more);

/* transport_lws_keepalive.c: the server's own pings and hang-ups, instead of
 * lws's per-connection validity timer (kept in one sorted list, re-inserted
 * at every ping and pong by a walk over all connections). setup: after the
 * context (server only); start: at ESTABLISHED; pong: at a pong; stop: when
 * the connection ends; write: at a writable callback, writes the ping that
 * is due, if any: 1 when it did (the owner's turn is asked for again), 0
 * when none was due, -1 when the write failed. */
int tether__tp_ka_setup(tether__tp *tp);
void tether__tp_ka_start(tether__conn *c);
void tether__tp_ka_pong(tether__conn *c);
void tether__tp_ka_stop(tether__conn *c);
int tether__tp_ka_write(tether__conn *c);

/* transport_lws.c: reports the end of a connection or attempt (once). */
void tether__tp_conn_end(tether__conn *c, tether__tp_close *why);
/* transport_lws.c: frees a connection record. */
void tether__tp_conn_free(tether__conn *c);

/* transport_lws_diag.c: a client attempt failed; works out why and reports it
 * (possibly after a proxy probe). wsi may be NULL; in/len: lws's text, if any
 * (kept for the detail, never used to decide the error). */
void tether__tp_client_failed(tether__tp *tp, tether__conn *c, struct lws *wsi, const char *in,
                              size_t len);
/* transport_lws_diag.c: the facts every failed attempt has (stage, TLS, proxy, names);
 * lws_text is left NULL. */
void tether__tp_facts_base(tether__tp *tp, tether__conn *c, tether__facts *f);
/* transport_lws_diag.c: OpenSSL verification callback for client attempts. */
int tether__tp_verify_cert(tether__tp *tp, X509_STORE_CTX *x, int preverify_ok);
/* transport_lws_diag.c: OpenSSL info callback, records alerts from the server. */
void tether__tp_tls_info_cb(const SSL *ssl, int where, int ret);
/* transport_lws_diag.c: ends the proxy probe and reports its attempt's failure. */
void tether__tp_probe_finish(tether__tp *tp, const char *failure);
/* transport_lws_diag.c: stops and frees a running proxy probe. */
void tether__tp_probe_free(tether__tp *tp);
/* transport_lws_diag.c: the attempt's connect_timeout_ms ran out. */
void tether__tp_attempt_timeout_cb(lws_sorted_usec_list_t *sul);

/* transport_lws_status.c: lws_add_http_header_status() with the reason
 * phrase lws 4.1.6 leaves empty for statuses it does not know (204, 426,
 * 429, ...). 0, or -1 when the header does not fit. */
int tether__tp_add_status(struct lws *wsi, unsigned code, unsigned char **p, unsigned char *end);
/* transport_lws_status.c: the reason phrase of an HTTP status; never NULL. */
const char *tether__http_reason(unsigned code);

#endif

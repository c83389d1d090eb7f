/*
 * Why a client connection attempt failed, decided from structured facts: how
 * far the attempt got, the errno of the TCP connect, the resolver's code, the
 * X509 verification error, TLS alerts, the HTTP status and headers of the
 * upgrade answer, and the proxy's CONNECT status. No libwebsockets here: the
 * glue (transport_lws_diag.c) gathers the facts, this file maps them to a
 * tether error code and a sentence, and tests/unit/classify_test.c checks
 * every class. lws's own words travel in `lws_text` for the detail only.
 */
#ifndef TETHER_CLASSIFY_H
#define TETHER_CLASSIFY_H

#include <stdint.h>

#include "transport.h"

/* How far an attempt got. */
enum {
    TETHER__STEP_CONNECTING = 0, /* TCP connect to the server or proxy not yet done */
    TETHER__STEP_TCP = 1,        /* TCP up: the proxy's CONNECT or TLS under way */
    TETHER__STEP_SENT = 2,       /* the upgrade request was written */
    TETHER__STEP_ANSWERED = 3    /* an answer to the upgrade arrived */
};

/* What a header of a 101 answer said. */
enum {
    TETHER__HDR_ABSENT = 0, /* no such header */
    TETHER__HDR_OK = 1,     /* the value tether.v1 needs */
    TETHER__HDR_OTHER = 2   /* some other value */
};

typedef struct tether__facts {
    int step;                  /* TETHER__STEP_*: how far the attempt got */
    int tls;                   /* the url is wss:// */
    int via_proxy;             /* the attempt goes through an HTTP proxy */
    int timed_out;             /* our connect_timeout_ms ran out */
    uint32_t connect_timeout_ms; /* that bound, for the detail */
    int gai_error;             /* getaddrinfo() code for the name dialled, 0 if it resolved */
    int sys_errno;             /* errno of the failed TCP connect, 0 when not handed over */
    int x509_error;            /* first X509_V_ERR_* of the server's chain, 0 if none or not checked */
    const char *x509_text;     /* OpenSSL's words for it, or NULL */
    int tls_alert;             /* fatal alert the server sent (level << 8 | description), 0 none */
    int tls_started;           /* our TLS handshake began (through a proxy: the tunnel was open) */
    int tls_done;              /* our TLS handshake completed */
    int cert_requested;        /* the server asked for a client certificate */
    int have_client_cert;      /* tls_cert_file is set */
    int http_status;           /* status of the answer to the upgrade request, 0 if none */
    uint32_t retry_after_ms;   /* that answer's Retry-After, ms, 0 if none */
    int hdr_accept;            /* 101: Sec-WebSocket-Accept present (1) or not (0) */
    int hdr_upgrade;           /* 101: Upgrade header, TETHER__HDR_* (OK: websocket) */
    int hdr_connection;        /* 101: Connection header, TETHER__HDR_* (OK: lists upgrade) */
    int hdr_protocol;          /* 101: Sec-WebSocket-Protocol, TETHER__HDR_* (OK: tether.v1) */
    int hdr_extensions;        /* 101: Sec-WebSocket-Extensions present (we offer none) */
    int upgrade_checked;       /* lws accepted the 101's key and headers and asked our filter */
    int proxy_probed;          /* our own CONNECT to the proxy ran */
    int proxy_status;          /* its answer's status, 0 when none came */
    uint32_t proxy_retry_after_ms; /* that answer's Retry-After, ms, 0 if none */
    const char *proxy_authenticate; /* its Proxy-Authenticate value, or NULL */
    int proxy_has_creds;       /* we sent proxy credentials */
    const char *probe_failure; /* why the probe learnt nothing, or NULL */
    const char *server_host;   /* the url's host, for the detail */
    int server_port;           /* the url's port */
    const char *proxy_host;    /* the proxy's host, when via_proxy */
    int proxy_port;            /* the proxy's port */
    const char *lws_text;      /* lws's words, for the detail only; may be NULL */
} tether__facts;

/*
 * Decides the error for a failed attempt. Fills out->error, http_status,
 * proxy_status, retry_after_ms and detail (other fields are left alone).
 * Returns 1 when the proxy refused the tunnel and its status is not known yet:
 * the caller should ask the proxy itself (set proxy_probed and the proxy_*
 * facts, then call again); 0 otherwise. Pure: no I/O, no global state.
 */
int tether__classify(const tether__facts *f, tether__tp_close *out);

/* The tether code for an X509_V_ERR_* value (TETHER_ETLS for one it does not know). */
int tether__classify_x509(int x509_error);

#endif

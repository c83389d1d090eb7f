/*
 * libwebsockets glue for tether: the only file that includes libwebsockets.
 *
 * One context and one service thread per tether__tp. Connections carry a
 * pointer to their tether__conn in lws's per-session data, so server and
 * client connections are handled by the same callback.
 */
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
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <tether/tether.h>

#include "util.h"

struct tether__conn {
    struct lws *wsi;              /* the lws connection, NULL once closed */
    tether__tp *tp;               /* owner transport */
    void *user;                   /* client.c / server.c state for this connection */
    uint8_t *rx;                  /* message being assembled */
    size_t rx_len;                /* bytes in rx */
    size_t rx_cap;                /* bytes allocated at rx */
    int rx_bad;                   /* the current message is being discarded (error reported) */
    int established;              /* the WebSocket is open */
    int closing;                  /* close requested: the next writable closes */
    int ended;                    /* closed() was reported */
    uint64_t last_rx_ms;          /* when the peer last sent anything */
    lws_sorted_usec_list_t sul;   /* per-connection timer */
    /* client attempts only */
    lws_sorted_usec_list_t sul_attempt; /* connect_timeout_ms bound of the attempt */
    int stage;                    /* ST_*: how far the attempt got */
    int fail_error;               /* error we decided ourselves (timeout), 0 if none */
    char fail_detail[160];        /* its detail */
    int tls_err;                  /* first X509 verification error seen, 0 if none */
    int tls_alert;                /* fatal TLS alert the server sent (SSL_CB_READ_ALERT), or 0 */
    int cert_requested;           /* the server asked for a client certificate */
    int probing;                  /* a proxy probe runs; closed() is reported when it ends */
    tether__tp_close probe_why;   /* the failure to report after the probe */
};

/* How far a client attempt got. */
enum { ST_CONNECTING, ST_TCP, ST_SENT, ST_ANSWERED };

/* A proxy probe: our own CONNECT, after lws's failed, to learn the proxy's status. */
typedef struct probe {
    tether__conn *c;              /* the failed attempt, reported when the probe ends */
    int fd;                       /* socket to the proxy, -1 when closed */
    int phase;                    /* 0 connecting, 1 writing, 2 reading */
    uint64_t deadline;            /* give up at this time, ms */
    char req[1024];               /* the CONNECT request */
    size_t req_len, req_off;      /* its length, bytes written */
    char resp[4096];              /* the response head */
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
    lws_sorted_usec_list_t sul;   /* transport-wide timer */
    tether__conn *client;         /* the client's current attempt/connection, or NULL */
    char url[1024];               /* scratch copy for lws_parse_uri */
    char host_hdr[300];           /* Host header "host:port" */
};

static tether__tp *tp_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

size_t tether__tp_headroom(void)
{
    return LWS_PRE;
}

/* ---- connection bookkeeping ---- */

static void conn_free(tether__conn *c)
{
    lws_sul_cancel(&c->sul);
    lws_sul_cancel(&c->sul_attempt);
    free(c->rx);
    free(c);
}

static void conn_end(tether__conn *c, tether__tp_close *why)
{
    if (c->ended) {
        return;
    }
    c->ended = 1;
    lws_sul_cancel(&c->sul);
    why->established = c->established;
    if (c->tp->cb.closed) {
        c->tp->cb.closed(c->tp->owner, c, why);
    }
    c->wsi = NULL;
}

static void conn_timer_cb(lws_sorted_usec_list_t *sul)
{
    tether__conn *c = lws_container_of(sul, tether__conn, sul);
    if (!c->ended && c->tp->cb.timer) {
        c->tp->cb.timer(c->tp->owner, c);
    }
}

static void tp_timer_cb(lws_sorted_usec_list_t *sul)
{
    tether__tp *tp = lws_container_of(sul, tether__tp, sul);
    if (tp->cb.timer) {
        tp->cb.timer(tp->owner, NULL);
    }
}

/* Classifies lws's text reason for a failed client connection. */
static int classify_failure(const char *why, int http_status)
{
    if (http_status && http_status != 101) {
        return TETHER_EHTTP;
    }
    if (strstr(why, "getaddrinfo") || strstr(why, "resolve") || strstr(why, "DNS")) {
        return TETHER_EDNS;
    }
    if (strstr(why, "ssl") || strstr(why, "SSL") || strstr(why, "tls") || strstr(why, "TLS") ||
        strstr(why, "certificate")) {
        return TETHER_ETLS;
    }
    if (strstr(why, "not 101")) {
        return TETHER_EHTTP;
    }
    if (strstr(why, "Accept hash") || strstr(why, "PROTOCOL") || strstr(why, "protocol") ||
        strstr(why, "UPGRADE") || strstr(why, "CONNECTION missing") ||
        strstr(why, "ACCEPT missing") || strstr(why, "Upgrade to") ||
        strstr(why, "Rejected by filter")) {
        return TETHER_EHANDSHAKE;
    }
    if (strstr(why, "refused") || strstr(why, "ECONNREFUSED")) {
        return TETHER_ECONNREFUSED;
    }
    return TETHER_ECONNECT;
}

/* The status line of a refused upgrade, while lws still holds the headers. */
static int response_status(struct lws *wsi)
{
    int st = (int)lws_http_client_http_response(wsi);
    if (st > 0) {
        return st;
    }
    char line[64];
    if (lws_hdr_copy(wsi, line, sizeof line, WSI_TOKEN_HTTP) > 0) {
        int v = atoi(line);
        if (v >= 100 && v <= 999) {
            return v;
        }
    }
    return 0;
}

/* ---- client diagnostics: why an attempt failed ---- */

/* The tether code for an X509 verification error. */
static int tls_verify_code(int x509)
{
    switch (x509) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TETHER_ETLS_EXPIRED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return TETHER_ETLS_HOSTNAME;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return TETHER_ETLS_UNTRUSTED;
    default:
        return TETHER_ETLS;
    }
}

/* What the attempt was doing, for a timeout's detail. */
static const char *stage_text(const tether__tp *tp, const tether__conn *c)
{
    int proxy = tp->proxy.host[0] != 0;
    switch (c->stage) {
    case ST_CONNECTING:
        return proxy ? "connecting (TCP) to the proxy" : "connecting (TCP) to the server";
    case ST_TCP:
        return proxy ? "waiting for the proxy's answer to CONNECT, or in the TLS handshake"
                     : (tp->tls ? "in the TLS handshake" : "sending the upgrade request");
    case ST_SENT:
        return "waiting for the answer to the upgrade request";
    default:
        return "completing the upgrade";
    }
}

/* A sentence for lws's handshake reasons; NULL when there is none. */
static const char *handshake_text(const char *lws_why)
{
    static const struct {
        const char *lws;
        const char *text;
    } map[] = {
        {"UPGRADE malformed", "the 101 answer's Connection header does not say 'Upgrade': something "
                              "on the path rewrote it"},
        {"UPGRADE missing", "the 101 answer has no Upgrade header"},
        {"Upgrade to", "the 101 answer upgrades to something other than websocket"},
        {"Accept hash", "the 101 answer's Sec-WebSocket-Accept does not match the key we sent"},
        {"ACCEPT missing", "the 101 answer has no Sec-WebSocket-Accept header"},
        {"PROTOCOL malformed", "the server chose a subprotocol other than " TETHER_SUBPROTOCOL},
        {"Rejected by filter", "the 101 answer did not choose the " TETHER_SUBPROTOCOL
                               " subprotocol"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strstr(lws_why, map[i].lws)) {
            return map[i].text;
        }
    }
    return NULL;
}

static void probe_start(tether__tp *tp, tether__conn *c);
static const char *alert_name(int alert);

/* A client attempt failed: decide the error and report it (or probe the proxy first). */
static void client_failed(tether__tp *tp, tether__conn *c, struct lws *wsi, const char *in,
                          size_t len)
{
    int sys_err = errno;
    int proxy = tp->proxy.host[0] != 0;
    char lws_why[160];
    tether__tp_close why;

    memset(&why, 0, sizeof why);
    lws_sul_cancel(&c->sul_attempt);
    snprintf(lws_why, sizeof lws_why, "%.*s", in ? (int)len : 0, in ? in : "");
    lws_why[strcspn(lws_why, "\r\n")] = '\0';
    if (!lws_why[0]) {
        snprintf(lws_why, sizeof lws_why, "connection failed");
    }
    if (!c->fail_error) {
        why.http_status = response_status(wsi);
        if (why.http_status == 101) {
            why.http_status = 0;
        }
        if (!why.http_status && strstr(lws_why, "unauthorized")) {
            why.http_status = 401; /* lws words a 401 this way */
        }
        if (why.http_status) {
            char ra[80];
            if (lws_hdr_copy(wsi, ra, sizeof ra, WSI_TOKEN_HTTP_RETRY_AFTER) > 0) {
                why.retry_after_ms = tether__retry_after_ms(ra, time(NULL));
            }
        }
    }
    /* a timeout we decided stands; a plain "the connection ended" yields to what TLS said */
    int tls_knows = (c->tls_err && !tp->cfg.tls_insecure) || c->tls_alert ||
                    (c->cert_requested && tp->tls && c->stage < ST_ANSWERED);
    if (c->fail_error && (c->fail_error != TETHER_ECONNECT || !tls_knows)) {
        why.error = c->fail_error;
        snprintf(why.detail, sizeof why.detail, "%s", c->fail_detail);
    } else if (c->tls_err && !tp->cfg.tls_insecure) {
        why.error = tls_verify_code(c->tls_err);
        snprintf(why.detail, sizeof why.detail, "the server's certificate was refused: %s",
                 X509_verify_cert_error_string(c->tls_err));
    } else if (c->tls_alert) {
        const char *desc = alert_name(c->tls_alert);
        why.error = TETHER_ETLS;
        snprintf(why.detail, sizeof why.detail, "the server ended TLS with the alert '%s'%s", desc,
                 strstr(desc, "certificate") || strstr(desc, "CA")
                     ? ": it wants a client certificate it trusts (tls_cert_file, tls_key_file)"
                     : "");
    } else if (c->cert_requested && tp->tls && c->stage >= ST_TCP && c->stage < ST_ANSWERED &&
               !strstr(lws_why, "HS:")) {
        /* TLS 1.3: the server checks our certificate after the client's handshake is done,
         * and its alert may be lost when it closes at once */
        why.error = TETHER_ETLS;
        snprintf(why.detail, sizeof why.detail,
                 "the server asked for a client certificate and closed the connection: %s",
                 tp->cfg.tls_cert_file ? "it refused ours (tls_cert_file)"
                                       : "configure one (tls_cert_file, tls_key_file)");
    } else if (why.http_status) {
        why.error = TETHER_EHTTP;
        snprintf(why.detail, sizeof why.detail, "the server answered the upgrade with HTTP %d",
                 why.http_status);
        if (why.retry_after_ms) {
            size_t n = strlen(why.detail);
            snprintf(why.detail + n, sizeof why.detail - n, " (Retry-After %u ms)",
                     why.retry_after_ms);
        }
    } else if (proxy && c->stage == ST_TCP &&
               (strstr(lws_why, "proxy") || strstr(lws_why, "before") ||
                strstr(lws_why, "hung up"))) {
        /* lws reads only "HTTP/1.x 200" from the proxy and drops any other answer:
         * ask the proxy again ourselves to learn its status */
        why.error = TETHER_EPROXY;
        snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d did not open the tunnel (%.60s)",
                 tp->proxy.host, tp->proxy.port, lws_why);
        c->probe_why = why;
        probe_start(tp, c);
        return;
    } else if (strstr(lws_why, "getaddrinfo")) {
        why.error = proxy ? TETHER_EPROXY : TETHER_EDNS;
        snprintf(why.detail, sizeof why.detail, "the %s name '%.80s' did not resolve",
                 proxy ? "proxy's" : "server's", proxy ? tp->proxy.host : tp->target_host);
    } else if (strstr(lws_why, "Unable to connect")) {
        const char *what = sys_err == EHOSTUNREACH || sys_err == ENETUNREACH
                               ? "is unreachable"
                               : "refused the TCP connection";
        if (proxy) {
            why.error = TETHER_EPROXY;
            snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d %s", tp->proxy.host,
                     tp->proxy.port, what);
        } else {
            why.error = sys_err == EHOSTUNREACH || sys_err == ENETUNREACH ? TETHER_ECONNECT
                                                                         : TETHER_ECONNREFUSED;
            snprintf(why.detail, sizeof why.detail, "the server %.80s:%d %s", tp->target_host,
                     tp->target_port, what);
        }
    } else {
        const char *hs = handshake_text(lws_why);
        why.error = classify_failure(lws_why, 0);
        if (hs) {
            snprintf(why.detail, sizeof why.detail, "%s (%.60s)", hs, lws_why);
        } else if (why.error == TETHER_ECONNECT) {
            snprintf(why.detail, sizeof why.detail, "the connection ended while %s (%.80s)",
                     stage_text(tp, c), lws_why);
        } else {
            snprintf(why.detail, sizeof why.detail, "%s", lws_why);
        }
    }
    conn_end(c, &why);
    conn_free(c);
}

/* connect_timeout_ms passed: fail the attempt with TETHER_ECONNECT_TIMEOUT. */
static void attempt_timeout_cb(lws_sorted_usec_list_t *sul)
{
    tether__conn *c = lws_container_of(sul, tether__conn, sul_attempt);
    tether__tp *tp = c->tp;
    if (c->ended || c->established || c->fail_error || !c->wsi) {
        return;
    }
    c->fail_error = TETHER_ECONNECT_TIMEOUT;
    snprintf(c->fail_detail, sizeof c->fail_detail, "no progress within %u ms while %s",
             tp->cfg.connect_timeout_ms, stage_text(tp, c));
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- the proxy probe ---- */

static void probe_free(tether__tp *tp)
{
    probe *p = tp->probe;
    if (!p) {
        return;
    }
    lws_sul_cancel(&p->sul);
    if (p->fd >= 0) {
        close(p->fd);
    }
    tp->probe = NULL;
    free(p);
}

/* Reports the failed attempt, refined by what the probe learnt. */
static void probe_finish(tether__tp *tp, const char *failure)
{
    probe *p = tp->probe;
    tether__conn *c = p->c;
    tether__tp_close why = c->probe_why;
    int st = tether__http_status(p->resp, p->resp_len);
    char hv[120];

    if (st && st != 200) {
        why.proxy_status = st;
        if (tether__http_header(p->resp, p->resp_len, "Retry-After", hv, sizeof hv)) {
            why.retry_after_ms = tether__retry_after_ms(hv, time(NULL));
        }
        if (st == 407) {
            why.error = TETHER_EPROXY_AUTH;
            if (!tether__http_header(p->resp, p->resp_len, "Proxy-Authenticate", hv, sizeof hv)) {
                snprintf(hv, sizeof hv, "no Proxy-Authenticate header");
            }
            snprintf(why.detail, sizeof why.detail, "the proxy %.80s:%d %s (407; %.60s)",
                     tp->proxy.host, tp->proxy.port,
                     tp->proxy.user[0] ? "refused the credentials given"
                                       : "requires authentication",
                     hv);
        } else {
            why.error = TETHER_EPROXY;
            snprintf(why.detail, sizeof why.detail,
                     "the proxy %.80s:%d answered CONNECT %.60s:%d with HTTP %d", tp->proxy.host,
                     tp->proxy.port, tp->target_host, tp->target_port, st);
        }
    } else if (st == 200) {
        snprintf(why.detail, sizeof why.detail,
                 "the proxy %.80s:%d gave an answer to CONNECT that libwebsockets could not use "
                 "(a second CONNECT got 200)",
                 tp->proxy.host, tp->proxy.port);
    } else if (failure) {
        size_t n = strlen(why.detail);
        snprintf(why.detail + n, sizeof why.detail - n, "; asking it again: %s", failure);
    }
    probe_free(tp);
    c->probing = 0;
    conn_end(c, &why);
    conn_free(c);
}

static void probe_step(lws_sorted_usec_list_t *sul)
{
    probe *p = lws_container_of(sul, probe, sul);
    tether__tp *tp = lws_context_user(p->ctx);
    struct pollfd pfd = {p->fd, 0, 0};

    if (tether__now_ms() >= p->deadline) {
        probe_finish(tp, "no answer in time");
        return;
    }
    pfd.events = p->phase == 0 || p->phase == 1 ? POLLOUT : POLLIN;
    if (poll(&pfd, 1, 0) > 0) {
        if (p->phase == 0) {
            int e = 0;
            socklen_t sl = sizeof e;
            if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0 || e) {
                probe_finish(tp, strerror(e ? e : errno));
                return;
            }
            p->phase = 1;
        }
        if (p->phase == 1) {
            ssize_t n = send(p->fd, p->req + p->req_off, p->req_len - p->req_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                probe_finish(tp, strerror(errno));
                return;
            }
            p->req_off += n > 0 ? (size_t)n : 0;
            if (p->req_off == p->req_len) {
                p->phase = 2;
            }
        } else if (p->phase == 2) {
            ssize_t n = recv(p->fd, p->resp + p->resp_len, sizeof p->resp - 1 - p->resp_len,
                             MSG_DONTWAIT);
            if (n > 0) {
                p->resp_len += (size_t)n;
                p->resp[p->resp_len] = '\0';
            }
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                strstr(p->resp, "\r\n\r\n") || p->resp_len + 1 >= sizeof p->resp) {
                probe_finish(tp, n == 0 ? "the proxy closed the connection" : NULL);
                return;
            }
        }
    }
    lws_sul_schedule(p->ctx, 0, &p->sul, probe_step, 5 * LWS_US_PER_MS);
}

/* Opens our own connection to the proxy and sends the same CONNECT lws sent. */
static void probe_start(tether__tp *tp, tether__conn *c)
{
    struct addrinfo hints, *ai = NULL;
    char port[16], auth[200], b64[300];
    probe *p = calloc(1, sizeof *p);

    c->probing = 1;
    c->wsi = NULL;
    tp->client = NULL;
    if (!p) {
        conn_end(c, &c->probe_why);
        conn_free(c);
        return;
    }
    p->c = c;
    p->fd = -1;
    p->ctx = tp->ctx;
    tp->probe = p;
    p->deadline = tether__now_ms() +
                  (tp->cfg.connect_timeout_ms < 5000 ? tp->cfg.connect_timeout_ms : 5000);
    const char *ob = strchr(tp->target_host, ':') ? "[" : "";
    const char *cb = *ob ? "]" : "";
    int n = snprintf(p->req, sizeof p->req,
                     "CONNECT %s%s%s:%d HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: tether\r\n",
                     ob, tp->target_host, cb, tp->target_port, ob, tp->target_host, cb,
                     tp->target_port);
    tether__proxy_auth(&tp->proxy, auth, sizeof auth);
    if (auth[0] && tether__base64(auth, strlen(auth), b64, sizeof b64) == 0) {
        n += snprintf(p->req + n, sizeof p->req - (size_t)n, "Proxy-Authorization: Basic %s\r\n",
                      b64);
    }
    n += snprintf(p->req + n, sizeof p->req - (size_t)n, "\r\n");
    p->req_len = (size_t)n < sizeof p->req ? (size_t)n : sizeof p->req - 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", tp->proxy.port);
    if (getaddrinfo(tp->proxy.host, port, &hints, &ai) != 0 || !ai) {
        probe_finish(tp, "the proxy's name did not resolve");
        return;
    }
    p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0 || (connect(p->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        freeaddrinfo(ai);
        probe_finish(tp, strerror(errno));
        return;
    }
    freeaddrinfo(ai);
    lws_sul_schedule(p->ctx, 0, &p->sul, probe_step, 1 * LWS_US_PER_MS);
}

/* Records the first verification error of the server's chain (client side). */
static int verify_cert(tether__tp *tp, X509_STORE_CTX *x, int preverify_ok)
{
    if (preverify_ok) {
        return 0;
    }
    int err = X509_STORE_CTX_get_error(x);
    if (tp->cfg.tls_insecure) {
        X509_STORE_CTX_set_error(x, X509_V_OK); /* the user asked for no verification */
        return 0;
    }
    if (tp->client && !tp->client->tls_err) {
        tp->client->tls_err = err;
    }
    return 0;
}

/* Notes a fatal alert from the server, and whether it asked for a client certificate. */
static void tls_info_cb(const SSL *ssl, int where, int ret)
{
    tether__tp *tp = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!tp || !tp->client) {
        return;
    }
    if ((where & SSL_CB_LOOP) && SSL_get_state(ssl) == TLS_ST_CR_CERT_REQ) {
        tp->client->cert_requested = 1;
    }
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL && !tp->client->tls_alert) {
        tp->client->tls_alert = ret;
    }
}

/* The name of a TLS alert (OpenSSL 3.0 calls the TLS 1.3 ones "unknown"). */
static const char *alert_name(int alert)
{
    switch (alert & 0xff) {
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "certificate revoked";
    case 45: return "certificate expired";
    case 46: return "certificate unknown";
    case 48: return "unknown CA";
    case 70: return "protocol version";
    case 112: return "unrecognized name";
    case 116: return "certificate required";
    default: return SSL_alert_desc_string_long(alert);
    }
}

/* ---- server admission ---- */

static int refuse_upgrade(struct lws *wsi, int status, const char *extra)
{
    unsigned char buf[LWS_PRE + 2048];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    char body[96], len[16];
    int blen = snprintf(body, sizeof body, "tether: the upgrade was refused (HTTP %d)\n", status);

    snprintf(len, sizeof len, "%d", blen);
    if (lws_add_http_header_status(wsi, (unsigned int)status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"text/plain", 10, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (const unsigned char *)len, (int)strlen(len), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     (const unsigned char *)"close", 5, &p, end)) {
        return -1;
    }
    /* extra: "Name: value\r\n" lines from the admission hook */
    while (extra && *extra) {
        const char *colon = strchr(extra, ':'), *eol = strstr(extra, "\r\n");
        if (!colon || !eol || colon > eol) {
            break;
        }
        char name[80];
        const char *v = colon + 1;
        snprintf(name, sizeof name, "%.*s:", (int)(colon - extra), extra);
        while (*v == ' ') {
            v++;
        }
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                        (const unsigned char *)v, (int)(eol - v), &p, end)) {
            return -1;
        }
        extra = eol + 2;
    }
    if (lws_finalize_http_header(wsi, &p, end) || end - p < blen) {
        return -1;
    }
    memcpy(p, body, (size_t)blen);
    p += blen;
    lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
    return -1; /* close: the answer said Connection: close */
}

const char *tether__tp_hs_header(tether__tp_hs *hs, const char *name, char *buf, size_t len)
{
    struct lws *wsi = (struct lws *)hs;
    size_t nlen = strlen(name);
    char lname[128];

    if (!len || nlen + 2 > sizeof lname) {
        return NULL;
    }
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *ts = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (ts && strncasecmp(ts, name, nlen) == 0 && ts[nlen] == ':' && !ts[nlen + 1]) {
            if (lws_hdr_total_length(wsi, (enum lws_token_indexes)t) <= 0 ||
                lws_hdr_copy(wsi, buf, (int)len, (enum lws_token_indexes)t) < 0) {
                return NULL;
            }
            return buf;
        }
    }
    for (size_t i = 0; i < nlen; i++) {
        lname[i] = (char)tolower((unsigned char)name[i]);
    }
    lname[nlen] = ':';
    lname[nlen + 1] = '\0';
    if (lws_hdr_custom_length(wsi, lname, (int)nlen + 1) < 0 ||
        lws_hdr_custom_copy(wsi, buf, (int)len, lname, (int)nlen + 1) < 0) {
        return NULL;
    }
    return buf;
}

const char *tether__tp_hs_path(tether__tp_hs *hs, char *buf, size_t len)
{
    struct lws *wsi = (struct lws *)hs;
    if (lws_hdr_copy(wsi, buf, (int)len, WSI_TOKEN_GET_URI) <= 0) {
        snprintf(buf, len, "/");
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0) {
        size_t n = strlen(buf);
        if (n + 2 < len) {
            buf[n++] = '?';
            lws_hdr_copy(wsi, buf + n, (int)(len - n), WSI_TOKEN_HTTP_URI_ARGS);
        }
    }
    return buf;
}

const char *tether__tp_hs_peer(tether__tp_hs *hs, char *buf, size_t len)
{
    if (!lws_get_peer_simple((struct lws *)hs, buf, len)) {
        snprintf(buf, len, "?");
    }
    return buf;
}

static void rx_append(tether__conn *c, const uint8_t *in, size_t len, int first, int final,
                      int binary)
{
    tether__tp *tp = c->tp;
    if (first) {
        c->rx_len = 0;
        c->rx_bad = 0;
        if (!binary) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_EMALFORMED);
        }
    }
    if (c->rx_bad) {
        return;
    }
    if (len > tp->cfg.max_rx - c->rx_len) {
        c->rx_bad = 1;
        tp->cb.message(tp->owner, c, NULL, 0, TETHER_EFRAME_OVERSIZE);
        return;
    }
    if (first && final) {
        /* the common case: the whole message in one piece, no copy */
        tp->cb.message(tp->owner, c, in, len, 0);
        return;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len) {
            cap *= 2;
        }
        uint8_t *p = realloc(c->rx, cap);
        if (!p) {
            c->rx_bad = 1;
            tp->cb.message(tp->owner, c, NULL, 0, TETHER_ENOMEM);
            return;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (final) {
        tp->cb.message(tp->owner, c, c->rx, c->rx_len, 0);
        c->rx_len = 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    tether__tp *tp = tp_of(wsi);
    tether__conn **slot = user;
    tether__conn *c = NULL;
    tether__tp_close why;

    if (!tp) {
        return 0;
    }
    switch (reason) { /* user is our slot only for the connection's own reasons */
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    case LWS_CALLBACK_WSI_CREATE:
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        break;
    default:
        c = slot ? *slot : NULL;
        break;
    }
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* client side: user is the X509_STORE_CTX, len says whether OpenSSL accepted it */
        return verify_cert(tp, user, (int)len);

    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* server side: lws accepts any client certificate unless we say no (0 means OK),
         * so pass on OpenSSL's verdict against tls_client_ca_file */
        return len ? 0 : 1;

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
        /* user is the client SSL_CTX: watch for fatal alerts from servers */
        SSL_CTX_set_app_data((SSL_CTX *)user, tp);
        SSL_CTX_set_info_callback((SSL_CTX *)user, tls_info_cb);
        return 0;

    case LWS_CALLBACK_WSI_CREATE:
        /* client: the TCP connection (to the server or the proxy) is up */
        if (tp->client && tp->client->stage < ST_TCP) {
            tp->client->stage = ST_TCP;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (tp->client) {
            tp->client->stage = ST_SENT;
        }
        if (tp->cfg.headers && in) {
            char **pp = in, *end = *pp + len;
            for (const char *const *h = tp->cfg.headers; *h; h++) {
                size_t n = strlen(*h);
                if ((size_t)(end - *pp) < n + 3) {
                    return -1;
                }
                memcpy(*pp, *h, n);
                *pp += n;
                *(*pp)++ = '\r';
                *(*pp)++ = '\n';
            }
        }
        return 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* server: admit or refuse before the 101 */
        if (tp->cb.admit && in && strcasecmp(in, "websocket") == 0) {
            char extra[640] = "";
            int st = tp->cb.admit(tp->owner, (tether__tp_hs *)wsi, extra, sizeof extra);
            if (st) {
                return refuse_upgrade(wsi, st, extra);
            }
        }
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (tp->cb.wake && !atomic_load(&tp->stop)) {
            tp->cb.wake(tp->owner);
        }
        return 0;

    case LWS_CALLBACK_ESTABLISHED: /* server side */
        c = calloc(1, sizeof *c);
        if (!c) {
            return -1;
        }
        c->wsi = wsi;
        c->tp = tp;
        c->established = 1;
        c->last_rx_ms = tether__now_ms();
        *slot = c;
        if (tp->cb.open) {
            tp->cb.open(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        /* lws falls back to its first protocol when the 101 names none: tether.v1 must be chosen */
        char proto[64];
        if (tp->client) {
            tp->client->stage = ST_ANSWERED;
        }
        if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) <= 0 ||
            strcmp(proto, TETHER_SUBPROTOCOL) != 0) {
            return 1; /* reported as "HS: Rejected by filter cb" */
        }
        return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c = tp->client;
        if (!c) {
            return -1;
        }
        c->established = 1;
        c->last_rx_ms = tether__now_ms();
        lws_sul_cancel(&c->sul);
        lws_sul_cancel(&c->sul_attempt);
        if (tp->cb.open) {
            tp->cb.open(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c || c->ended || c->closing) {
            return 0;
        }
        c->last_rx_ms = tether__now_ms();
        rx_append(c, in, len, lws_is_first_fragment(wsi), lws_is_final_fragment(wsi),
                  lws_frame_is_binary(wsi));
        return 0;

    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) {
            c->last_rx_ms = tether__now_ms();
        }
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c || c->ended) {
            return 0;
        }
        if (c->closing) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        if (tp->cb.writable) {
            tp->cb.writable(tp->owner, c);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        c = tp->client;
        if (!c) {
            return 0;
        }
        tp->client = NULL;
        client_failed(tp, c, wsi, in, in ? len : 0);
        return 0;

    case LWS_CALLBACK_WSI_DESTROY:
        /* lws frees a client attempt without CONNECTION_ERROR when writing the
         * upgrade request fails (closed as "cws": the peer reset the connection
         * at once). Report it here, or the client waits forever for a callback. */
        c = tp->client;
        if (c && c->wsi == wsi && !c->ended && !c->established) {
            tp->client = NULL;
            if (!c->fail_error) {
                c->fail_error = TETHER_ECONNECT;
                snprintf(c->fail_detail, sizeof c->fail_detail,
                         "the connection ended while sending the upgrade request");
            }
            client_failed(tp, c, wsi, NULL, 0);
        }
        return 0;

    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (reason == LWS_CALLBACK_CLIENT_CLOSED) {
            c = tp->client;
            tp->client = NULL;
        } else if (slot) {
            *slot = NULL;
        }
        if (!c) {
            return 0;
        }
        memset(&why, 0, sizeof why);
        why.error = TETHER_EPEER_CLOSED;
        {
            uint64_t idle = tether__now_ms() - c->last_rx_ms;
            uint64_t limit = (uint64_t)tp->cfg.ping_interval_ms + tp->cfg.pong_timeout_ms;
            if (!c->closing && limit && idle + 1000 >= limit) {
                why.idle_timeout = 1;
                why.error = TETHER_EPING;
                snprintf(why.detail, sizeof why.detail,
                         "no traffic for %llu ms after a ping: the link is dead",
                         (unsigned long long)idle);
            } else {
                snprintf(why.detail, sizeof why.detail, "%s",
                         c->closing ? "closed by us" : "the connection closed");
            }
        }
        conn_end(c, &why);
        conn_free(c);
        return 0;

    case LWS_CALLBACK_HTTP:
        /* tether speaks WebSocket only */
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "tether speaks WebSocket only");
        return -1;

    default:
        return 0;
    }
}

/* ---- the transport ---- */

static void *service(void *arg)
{
    tether__tp *tp = arg;
    while (!atomic_load(&tp->stop)) {
        if (lws_service(tp->ctx, 0) < 0) {
            break;
        }
    }
    return NULL;
}

static uint16_t secs_up(uint32_t ms)
{
    uint32_t s = (ms + 999) / 1000;
    return (uint16_t)(s > 65535 ? 65535 : (s ? s : 1));
}

int tether__tp_create(const tether__tp_cfg *cfg, const tether__tp_cb *cb, void *owner,
                      tether__tp **out)
{
    struct lws_context_creation_info info;
    tether__tp *tp = calloc(1, sizeof *tp);

    *out = NULL;
    if (!tp) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    tp->cfg = *cfg;
    tp->cb = *cb;
    tp->owner = owner;
    tp->retry.secs_since_valid_ping = secs_up(cfg->ping_interval_ms);
    tp->retry.secs_since_valid_hangup = secs_up(cfg->ping_interval_ms + cfg->pong_timeout_ms);
    tp->protocols[0].name = TETHER_SUBPROTOCOL;
    tp->protocols[0].callback = callback;
    tp->protocols[0].per_session_data_size = sizeof(tether__conn *);
    tp->protocols[0].rx_buffer_size = 65536;

    {
        const char *lv = getenv("TETHER_LWS_LOG");
        lws_set_log_level(lv ? atoi(lv) : 0, NULL);
    }
    memset(&info, 0, sizeof info);
    info.protocols = tp->protocols;
    info.user = tp;
    info.gid = -1;
    info.uid = -1;
    info.pt_serv_buf_size = 65536;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.retry_and_idle_policy = &tp->retry;
    info.timeout_secs = secs_up(cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000);
    info.connect_timeout_secs = info.timeout_secs;
    /* never let lws read http_proxy itself (it ignores no_proxy): "" sets no proxy */
    info.http_proxy_address = "";
    if (cfg->listen_host) {
        info.port = cfg->listen_port;
        info.iface = cfg->listen_host;
        info.vhost_name = "tether";
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(cfg->listen_host, ':') == NULL);
        if (cfg->tls_server_cert) {
            info.ssl_cert_filepath = cfg->tls_server_cert;
            info.ssl_private_key_filepath = cfg->tls_server_key;
            if (cfg->tls_client_ca) {
                info.ssl_ca_filepath = cfg->tls_client_ca;
                info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
            }
        }
    } else {
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.options |= LWS_SERVER_OPTION_JUST_USE_RAW_ORIGIN; /* else lws adds "http://" */
        /* our own attempt timer (connect_timeout_ms) must fire before lws's */
        info.timeout_secs = (unsigned int)secs_up(cfg->connect_timeout_ms) + 5;
        info.connect_timeout_secs = info.timeout_secs;
        info.client_ssl_ca_filepath = cfg->tls_ca_file;
        info.client_ssl_cert_filepath = cfg->tls_cert_file;
        info.client_ssl_private_key_filepath = cfg->tls_key_file;
        if (cfg->tls_ca_file) {
            info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
        }
    }
    tp->ctx = lws_create_context(&info);
    if (!tp->ctx) {
        free(tp);
        if (cfg->listen_host) {
            return tether__fail(TETHER_ESYS, "cannot listen on %s:%d (address in use or invalid?%s)",
                                cfg->listen_host, cfg->listen_port,
                                cfg->tls_server_cert ? " or the TLS certificate and key do not "
                                                       "load or match"
                                                     : "");
        }
        return tether__fail(TETHER_ESYS, "cannot create the libwebsockets context");
    }
    if (cfg->listen_host) {
        tp->vhost = lws_get_vhost_by_name(tp->ctx, "tether");
    } else {
        tp->cvhost = lws_get_vhost_by_name(tp->ctx, "default");
        tether__tp_set_proxy(tp, cfg->proxy);
    }
    tp->cfg.proxy = NULL; /* tp->proxy holds it; the caller's copy may go away */
    *out = tp;
    return TETHER_OK;
}

int tether__tp_port(tether__tp *tp)
{
    return tp->vhost ? lws_get_vhost_listen_port(tp->vhost) : 0;
}

int tether__tp_start(tether__tp *tp)
{
    if (tp->started) {
        return tether__fail(TETHER_EINVAL, "already started");
    }
    int rc = pthread_create(&tp->thread, NULL, service, tp);
    if (rc) {
        return tether__fail(TETHER_ESYS, "cannot start the service thread: %s", strerror(rc));
    }
    tp->started = 1;
    return TETHER_OK;
}

void tether__tp_wake(tether__tp *tp)
{
    lws_cancel_service(tp->ctx);
}

void tether__tp_destroy(tether__tp *tp)
{
    if (!tp) {
        return;
    }
    if (tp->started) {
        atomic_store(&tp->stop, 1);
        lws_cancel_service(tp->ctx);
        pthread_join(tp->thread, NULL);
        tp->started = 0;
    }
    lws_sul_cancel(&tp->sul);
    if (tp->probe) {
        tether__conn *pc = tp->probe->c;
        probe_free(tp);
        conn_free(pc); /* as for an attempt in progress below: no closed() during destroy */
    }
    /* closed callbacks run from inside lws_context_destroy for open connections */
    lws_context_destroy(tp->ctx);
    if (tp->client) {
        conn_free(tp->client);
        tp->client = NULL;
    }
    free(tp);
}

int tether__tp_check_url(const char *url)
{
    char buf[1024];
    const char *proto, *addr, *path;
    int port;
    if (!url || strlen(url) >= sizeof buf) {
        return tether__fail(TETHER_ECONFIG, "the url is missing or too long");
    }
    snprintf(buf, sizeof buf, "%s", url);
    if (lws_parse_uri(buf, &proto, &addr, &port, &path) || !addr[0]) {
        return tether__fail(TETHER_ECONFIG, "cannot parse the url '%s'", url);
    }
    if (strcmp(proto, "ws") && strcmp(proto, "wss")) {
        return tether__fail(TETHER_ECONFIG, "the url must start with ws:// or wss:// (got '%s')",
                            url);
    }
    return TETHER_OK;
}

int tether__tp_url_host(const char *url, int *tls, char *host, size_t len)
{
    char buf[1024];
    const char *proto, *addr, *path;
    int port;
    if (tether__tp_check_url(url) != TETHER_OK) {
        return TETHER_ECONFIG;
    }
    snprintf(buf, sizeof buf, "%s", url);
    if (lws_parse_uri(buf, &proto, &addr, &port, &path)) {
        return TETHER_ECONFIG;
    }
    *tls = strcmp(proto, "wss") == 0;
    snprintf(host, len, "%s", addr);
    return TETHER_OK;
}

void tether__tp_set_proxy(tether__tp *tp, const tether__proxy *proxy)
{
    char spec[512], auth[200];
    if (proxy && proxy->host[0]) {
        tp->proxy = *proxy;
    } else {
        memset(&tp->proxy, 0, sizeof tp->proxy);
    }
    if (!tp->cvhost) {
        return;
    }
    if (!tp->proxy.host[0]) {
        lws_set_proxy(tp->cvhost, ""); /* fails harmlessly, leaving no proxy */
        return;
    }
    tether__proxy_auth(&tp->proxy, auth, sizeof auth);
    snprintf(spec, sizeof spec, "%s%s%s%s%s:%d", auth, auth[0] ? "@" : "",
             strchr(tp->proxy.host, ':') ? "[" : "", tp->proxy.host,
             strchr(tp->proxy.host, ':') ? "]" : "", tp->proxy.port);
    lws_set_proxy(tp->cvhost, spec);
}

int tether__tp_connect(tether__tp *tp, const char *url)
{
    struct lws_client_connect_info ci;
    const char *proto, *addr, *path;
    int port, rc;
    tether__conn *c;

    if ((rc = tether__tp_check_url(url)) != TETHER_OK) {
        return rc;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    c->tp = tp;
    snprintf(tp->url, sizeof tp->url, "%s", url);
    if (lws_parse_uri(tp->url, &proto, &addr, &port, &path)) {
        free(c);
        return tether__fail(TETHER_ECONFIG, "cannot parse the url '%s'", url);
    }
    int tls = strcmp(proto, "wss") == 0;
    snprintf(tp->host_hdr, sizeof tp->host_hdr, "%s%s%s:%d", strchr(addr, ':') ? "[" : "", addr,
             strchr(addr, ':') ? "]" : "", port);
    tp->tls = tls;
    snprintf(tp->target_host, sizeof tp->target_host, "%s", addr);
    tp->target_port = port;
    /* lws_parse_uri strips the leading '/'; lws wants it back */
    static _Thread_local char pathbuf[1024];
    snprintf(pathbuf, sizeof pathbuf, "/%s", path);

    memset(&ci, 0, sizeof ci);
    ci.context = tp->ctx;
    ci.address = addr;
    ci.port = port;
    ci.path = pathbuf;
    ci.host = tp->host_hdr;
    ci.origin = tp->cfg.origin; /* NULL: no Origin header */
    ci.protocol = TETHER_SUBPROTOCOL;
    ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    if (tls && tp->cfg.tls_insecure) {
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                             LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    ci.userdata = &tp->client;
    ci.retry_and_idle_policy = &tp->retry;
    tp->client = c;
    lws_sul_schedule(tp->ctx, 0, &c->sul_attempt, attempt_timeout_cb,
                     (lws_usec_t)tp->cfg.connect_timeout_ms * LWS_US_PER_MS);
    /* lws may report CONNECTION_ERROR (and we free c) before this returns */
    struct lws *w = lws_client_connect_via_info(&ci);
    if (tp->client == c) {
        c->wsi = w;
    }
    if (!w) {
        /* lws may already have reported CONNECTION_ERROR and freed the attempt */
        if (tp->client == c) {
            tp->client = NULL;
            tether__tp_close why;
            memset(&why, 0, sizeof why);
            why.error = TETHER_ECONNECT;
            snprintf(why.detail, sizeof why.detail, "could not start a connection to %.200s", url);
            /* lws 4.1 fails a name that does not resolve here, without a report: say so */
            const char *name = tp->proxy.host[0] ? tp->proxy.host : tp->target_host;
            struct addrinfo hints, *ai = NULL;
            memset(&hints, 0, sizeof hints);
            hints.ai_socktype = SOCK_STREAM;
            int gai = getaddrinfo(name, NULL, &hints, &ai);
            if (gai != 0) {
                why.error = tp->proxy.host[0] ? TETHER_EPROXY : TETHER_EDNS;
                snprintf(why.detail, sizeof why.detail, "the %s name '%.80s' did not resolve: %s",
                         tp->proxy.host[0] ? "proxy's" : "server's", name, gai_strerror(gai));
            } else {
                freeaddrinfo(ai);
            }
            lws_sul_cancel(&c->sul_attempt);
            conn_end(c, &why);
            conn_free(c);
        }
        return TETHER_OK;
    }
    return TETHER_OK;
}

void tether__tp_timer(tether__tp *tp, uint64_t delay_ms)
{
    lws_sul_schedule(tp->ctx, 0, &tp->sul, tp_timer_cb, (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

void tether__tp_timer_cancel(tether__tp *tp)
{
    lws_sul_cancel(&tp->sul);
}

void tether__conn_want_write(tether__conn *c)
{
    if (c->wsi && !c->ended) {
        lws_callback_on_writable(c->wsi);
    }
}

int tether__conn_write(tether__conn *c, tether__buf *b)
{
    if (!c->wsi || c->ended) {
        return TETHER_ECONNECT;
    }
    int n = lws_write(c->wsi, tether__buf_frame(b), b->len, LWS_WRITE_BINARY);
    if (n < (int)b->len) {
        return tether__fail(TETHER_ECONNECT, "write failed");
    }
    return TETHER_OK;
}

int tether__conn_busy(tether__conn *c)
{
    return c->wsi && lws_partial_buffered(c->wsi);
}

void tether__conn_close(tether__conn *c)
{
    if (c->probing && c->tp->probe && c->tp->probe->c == c) {
        probe_finish(c->tp, "abandoned: the client is closing");
        return;
    }
    if (c->wsi && !c->ended && !c->closing) {
        c->closing = 1;
        if (c->established) {
            lws_callback_on_writable(c->wsi);
        } else {
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
}

void tether__conn_timer(tether__conn *c, uint64_t delay_ms)
{
    if (c->wsi && !c->ended) {
        lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul, conn_timer_cb,
                         (lws_usec_t)delay_ms * LWS_US_PER_MS);
    }
}

void tether__conn_timer_cancel(tether__conn *c)
{
    lws_sul_cancel(&c->sul);
}

void tether__conn_set_user(tether__conn *c, void *user)
{
    c->user = user;
}

void *tether__conn_user(tether__conn *c)
{
    return c->user;
}

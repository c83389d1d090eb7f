/* Failure classification from structured facts: see classify.h. */
#include "classify.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509_vfy.h>

#include <tether/tether.h>

int tether__classify_x509(int x509_error)
{
    switch (x509_error) {
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

/* The name of a TLS alert description (RFC 8446 section 6). */
static const char *alert_name(int alert)
{
    switch (alert & 0xff) {
    case 10: return "unexpected message";
    case 20: return "bad record MAC";
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "certificate revoked";
    case 45: return "certificate expired";
    case 46: return "certificate unknown";
    case 47: return "illegal parameter";
    case 48: return "unknown CA";
    case 50: return "decode error";
    case 51: return "decrypt error";
    case 70: return "protocol version";
    case 71: return "insufficient security";
    case 80: return "internal error";
    case 112: return "unrecognized name";
    case 116: return "certificate required";
    default: return NULL;
    }
}

/* What the attempt was doing, for a detail. */
static const char *step_text(const tether__facts *f)
{
    switch (f->step) {
    case TETHER__STEP_CONNECTING:
        return f->via_proxy ? "connecting (TCP) to the proxy" : "connecting (TCP) to the server";
    case TETHER__STEP_TCP:
        return f->via_proxy ? "waiting for the proxy's answer to CONNECT, or in the TLS handshake"
                            : (f->tls ? "in the TLS handshake" : "sending the upgrade request");
    case TETHER__STEP_SENT:
        return "waiting for the answer to the upgrade request";
    default:
        return "completing the upgrade";
    }
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Appends " (lws: ...)" when lws said something. */
static void add_lws_text(const tether__facts *f, tether__tp_close *out)
{
    if (f->lws_text && f->lws_text[0]) {
        size_t n = strlen(out->detail);
        snprintf(out->detail + n, sizeof out->detail - n, " (%.60s)", f->lws_text);
    }
}

/* A 101 that is not a valid tether.v1 upgrade: which rule it broke. lws checks
 * in this order (Accept present, Upgrade, Connection, subprotocol, the Accept
 * hash, then our filter), and so does this. */
/* 1 when a 101 lacks or has rewritten what only the path could take away:
 * Sec-WebSocket-Accept, Upgrade, Connection, or an Accept that does not match. */
static int mangled_101(const tether__facts *f)
{
    if (!f->hdr_accept || f->hdr_upgrade != TETHER__HDR_OK || f->hdr_connection != TETHER__HDR_OK) {
        return 1;
    }
    return f->hdr_protocol != TETHER__HDR_OTHER && !f->hdr_extensions && !f->upgrade_checked;
}

static const char *bad_101_text(const tether__facts *f)
{
    if (!f->hdr_accept) {
        return "the 101 answer has no Sec-WebSocket-Accept header";
    }
    if (f->hdr_upgrade == TETHER__HDR_ABSENT) {
        return "the 101 answer has no Upgrade header";
    }
    if (f->hdr_upgrade == TETHER__HDR_OTHER) {
        return "the 101 answer upgrades to something other than websocket";
    }
    if (f->hdr_connection != TETHER__HDR_OK) {
        return "the 101 answer's Connection header does not say 'Upgrade': something on the path "
               "rewrote it";
    }
    if (f->hdr_protocol == TETHER__HDR_OTHER) {
        return "the server chose a subprotocol other than " TETHER_SUBPROTOCOL;
    }
    if (f->hdr_extensions) {
        return "the 101 answer enables an extension we did not offer";
    }
    if (!f->upgrade_checked) {
        /* every header we can read is right and lws never reached our filter:
         * the one check left between them is the Accept hash */
        return "the 101 answer's Sec-WebSocket-Accept does not match the key we sent";
    }
    if (f->hdr_protocol == TETHER__HDR_ABSENT) {
        return "the 101 answer did not choose the " TETHER_SUBPROTOCOL " subprotocol";
    }
    return "the 101 answer was refused after every check passed";
}

static void proxy_verdict(const tether__facts *f, tether__tp_close *out)
{
    out->error = TETHER_EPROXY;
    if (f->proxy_status && f->proxy_status != 200) {
        out->proxy_status = f->proxy_status;
        out->retry_after_ms = f->proxy_retry_after_ms;
        if (f->proxy_status == 407) {
            out->error = TETHER_EPROXY_AUTH;
            snprintf(out->detail, sizeof out->detail, "the proxy %.80s:%d %s (407; %.60s)",
                     str(f->proxy_host), f->proxy_port,
                     f->proxy_has_creds ? "refused the credentials given"
                                        : "requires authentication",
                     f->proxy_authenticate ? f->proxy_authenticate
                                           : "no Proxy-Authenticate header");
        } else {
            snprintf(out->detail, sizeof out->detail,
                     "the proxy %.80s:%d answered CONNECT %.60s:%d with HTTP %d",
                     str(f->proxy_host), f->proxy_port, str(f->server_host), f->server_port,
                     f->proxy_status);
        }
        return;
    }
    snprintf(out->detail, sizeof out->detail, "the proxy %.80s:%d did not open the tunnel",
             str(f->proxy_host), f->proxy_port);
    if (f->proxy_status == 200) {
        size_t n = strlen(out->detail);
        snprintf(out->detail + n, sizeof out->detail - n,
                 ": its answer to CONNECT was unusable (a second CONNECT got 200)");
    } else if (f->probe_failure) {
        size_t n = strlen(out->detail);
        snprintf(out->detail + n, sizeof out->detail - n, "; asking it again: %.80s",
                 f->probe_failure);
    }
}

/* The TCP connection to the server or the proxy was never made. */
static void tcp_verdict(const tether__facts *f, tether__tp_close *out)
{
    const char *who = f->via_proxy ? "proxy" : "server";
    const char *host = f->via_proxy ? f->proxy_host : f->server_host;
    int port = f->via_proxy ? f->proxy_port : f->server_port;

    if (f->gai_error) {
        out->error = f->via_proxy ? TETHER_EPROXY : TETHER_EDNS;
        snprintf(out->detail, sizeof out->detail, "the %s's name '%.80s' did not resolve: %s", who,
                 str(host), gai_strerror(f->gai_error));
        return;
    }
    switch (f->sys_errno) {
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
        out->error = f->via_proxy ? TETHER_EPROXY : TETHER_ECONNECT;
        snprintf(out->detail, sizeof out->detail, "the %s %.80s:%d is unreachable: %s", who,
                 str(host), port, strerror(f->sys_errno));
        return;
    case ETIMEDOUT:
        out->error = f->via_proxy ? TETHER_EPROXY : TETHER_ECONNECT_TIMEOUT;
        snprintf(out->detail, sizeof out->detail,
                 "the TCP connection to the %s %.80s:%d timed out in the kernel", who, str(host),
                 port);
        return;
    case ECONNREFUSED:
    case EACCES:
    case EPERM:
        out->error = f->via_proxy ? TETHER_EPROXY : TETHER_ECONNREFUSED;
        snprintf(out->detail, sizeof out->detail, "the %s %.80s:%d refused the TCP connection (%s)",
                 who, str(host), port, strerror(f->sys_errno));
        return;
    default:
        /* lws 4.1 reads SO_ERROR of an asynchronous connect itself and does not
         * pass it on; a prompt failure that is neither a timeout nor a resolver
         * error is a refusal (an unreachable host fails synchronously here) */
        out->error = f->via_proxy ? TETHER_EPROXY : TETHER_ECONNREFUSED;
        snprintf(out->detail, sizeof out->detail, "the %s %.80s:%d refused the TCP connection",
                 who, str(host), port);
        return;
    }
}

int tether__classify(const tether__facts *f, tether__tp_close *out)
{
    out->error = TETHER_ECONNECT;
    out->http_status = 0;
    out->proxy_status = 0;
    out->retry_after_ms = 0;
    out->detail[0] = '\0';

    if (f->timed_out) {
        out->error = TETHER_ECONNECT_TIMEOUT;
        snprintf(out->detail, sizeof out->detail, "no progress within %u ms while %s",
                 f->connect_timeout_ms, step_text(f));
        return 0;
    }
    if (f->x509_error) {
        out->error = tether__classify_x509(f->x509_error);
        snprintf(out->detail, sizeof out->detail, "the server's certificate was refused: %s",
                 f->x509_text ? f->x509_text : "verification failed");
        return 0;
    }
    if (f->tls_alert) {
        const char *name = alert_name(f->tls_alert);
        char num[32];
        if (!name) {
            snprintf(num, sizeof num, "number %d", f->tls_alert & 0xff);
            name = num;
        }
        out->error = TETHER_ETLS;
        snprintf(out->detail, sizeof out->detail, "the server ended TLS with the alert '%s'%s",
                 name,
                 strstr(name, "certificate") || strstr(name, "CA")
                     ? ": it wants a client certificate it trusts (tls_cert_file, tls_key_file)"
                     : "");
        return 0;
    }
    if (f->tls && f->cert_requested && !f->http_status && f->step >= TETHER__STEP_TCP) {
        /* TLS 1.3: the server checks our certificate after our side of the
         * handshake is done, and its alert may be lost when it closes at once */
        out->error = TETHER_ETLS;
        snprintf(out->detail, sizeof out->detail,
                 "the server asked for a client certificate and closed the connection: %s",
                 f->have_client_cert ? "it refused ours (tls_cert_file)"
                                     : "configure one (tls_cert_file, tls_key_file)");
        return 0;
    }
    if (f->http_status && f->http_status != 101) {
        out->error = TETHER_EHTTP;
        out->http_status = f->http_status;
        out->retry_after_ms = f->retry_after_ms;
        snprintf(out->detail, sizeof out->detail, "the server answered the upgrade with HTTP %d",
                 f->http_status);
        if (f->retry_after_ms) {
            size_t n = strlen(out->detail);
            snprintf(out->detail + n, sizeof out->detail - n, " (Retry-After %u ms)",
                     f->retry_after_ms);
        }
        return 0;
    }
    if (f->http_status == 101) {
        out->error = TETHER_EHANDSHAKE;
        /* a 101 mangled on the path (Accept, Upgrade or Connection missing or
         * rewritten) keeps its status, which is what the fallback's rule looks
         * for (engine/fallback.c); a far end choosing a wrong subprotocol or
         * an extension is not the path, and HTTP would not help: 0 */
        out->http_status = mangled_101(f) ? 101 : 0;
        snprintf(out->detail, sizeof out->detail, "%s", bad_101_text(f));
        add_lws_text(f, out);
        return 0;
    }
    if (f->via_proxy && f->step == TETHER__STEP_TCP && !f->tls_started) {
        /* TCP to the proxy was up, yet neither TLS nor the upgrade began: the
         * tunnel never opened. lws drops the proxy's answer; the probe learns it. */
        proxy_verdict(f, out);
        return f->proxy_probed ? 0 : 1;
    }
    if (f->step == TETHER__STEP_CONNECTING) {
        tcp_verdict(f, out);
        return 0;
    }
    if (f->tls && f->tls_started && !f->tls_done) {
        out->error = TETHER_ETLS;
        snprintf(out->detail, sizeof out->detail,
                 "the TLS handshake failed: the far end does not speak TLS here, or no protocol "
                 "version or cipher is common");
        add_lws_text(f, out);
        return 0;
    }
    out->error = TETHER_ECONNECT;
    snprintf(out->detail, sizeof out->detail, "the connection ended while %s", step_text(f));
    add_lws_text(f, out);
    return 0;
}

/*
 * The server's configuration: defaults, the checks tether_server_create()
 * runs before it allocates anything (docs/config.md lists every message),
 * and the copies it keeps of the caller's strings.
 */
#include <errno.h>

#include "server_int.h"
#include "common/alloc.h"
#include "engine/httpcarry.h"

void tether_server_config_init(tether_server_config *cfg)
{
    if (cfg) {
        memset(cfg, 0, sizeof *cfg);
    }
}

int tether__srv_check_config(tether_server_config *k)
{
    if (k->durability < TETHER_DURABILITY_DEFAULT || k->durability > TETHER_DURABILITY_FULL) {
        return tether__fail(TETHER_ECONFIG, "durability %d is not one of the tether_durability values",
                            (int)k->durability);
    }
    k->listen_host = k->listen_host && *k->listen_host ? k->listen_host : TETHER__DEFAULT_HOST;
    k->max_sessions = k->max_sessions ? k->max_sessions : TETHER__DEFAULT_MAX_SESSIONS;
    k->hello_timeout_ms = k->hello_timeout_ms ? k->hello_timeout_ms : TETHER__DEFAULT_HELLO_TIMEOUT_MS;
    k->delivery_threads =
        k->delivery_threads ? k->delivery_threads : TETHER__DEFAULT_DELIVERY_THREADS;
    if (k->max_sessions > TETHER__MAX_SESSIONS_LIMIT) {
        return tether__fail(TETHER_ECONFIG, "max_sessions %u is above %u", k->max_sessions,
                            TETHER__MAX_SESSIONS_LIMIT);
    }
    if (k->hello_timeout_ms > TETHER__MAX_HELLO_TIMEOUT_MS) {
        return tether__fail(TETHER_ECONFIG, "hello_timeout_ms %u is above %u", k->hello_timeout_ms,
                            TETHER__MAX_HELLO_TIMEOUT_MS);
    }
    k->rx_buffer_bytes = k->rx_buffer_bytes ? k->rx_buffer_bytes : TETHER__DEFAULT_RX_BUFFER_BYTES;
    if (k->rx_buffer_bytes < TETHER__MIN_RX_BUFFER_BYTES ||
        k->rx_buffer_bytes > TETHER__MAX_RX_BUFFER_BYTES) {
        return tether__fail(TETHER_ECONFIG, "rx_buffer_bytes %u is not within %u to %u",
                            k->rx_buffer_bytes, TETHER__MIN_RX_BUFFER_BYTES,
                            TETHER__MAX_RX_BUFFER_BYTES);
    }
    if (k->delivery_threads > TETHER__MAX_DELIVERY_THREADS) {
        return tether__fail(TETHER_ECONFIG, "delivery_threads %u is above %u", k->delivery_threads,
                            TETHER__MAX_DELIVERY_THREADS);
    }
    k->ping_interval_ms = k->ping_interval_ms ? k->ping_interval_ms : TETHER__DEFAULT_PING_INTERVAL_MS;
    k->pong_timeout_ms = k->pong_timeout_ms ? k->pong_timeout_ms : TETHER__DEFAULT_PONG_TIMEOUT_MS;
    if (k->ping_interval_ms < 1000 || k->pong_timeout_ms < 1000) {
        return tether__fail(TETHER_ECONFIG,
                            "ping_interval_ms and pong_timeout_ms must be at least 1000");
    }
    k->max_pending_handshakes = k->max_pending_handshakes ? k->max_pending_handshakes
                                                          : TETHER__DEFAULT_MAX_PENDING_HANDSHAKES;
    if (k->session_idle_expiry_ms && k->session_idle_expiry_ms < 1000) {
        return tether__fail(TETHER_ECONFIG, "session_idle_expiry_ms must be 0 (never) or at "
                                            "least 1000 (the sweep runs at most once a second)");
    }
    k->metrics_http = k->metrics_http != 0;
    k->lease_ms = k->lease_ms ? k->lease_ms : TETHER__DEFAULT_LEASE_MS;
    if (k->lease_ms < 1000 || k->lease_ms > 600000) {
        return tether__fail(TETHER_ECONFIG, "lease_ms %u is not within 1000 to 600000",
                            k->lease_ms);
    }
    if (k->http_poll_hold_ms > 25000 || k->http_idle_ms > 3600000) {
        return tether__fail(TETHER_ECONFIG, "http_poll_hold_ms is above 25000 or http_idle_ms "
                                            "above 3600000");
    }
    if (k->max_pending_handshakes > TETHER__MAX_SESSIONS_LIMIT) {
        return tether__fail(TETHER_ECONFIG, "max_pending_handshakes %u is above %u",
                            k->max_pending_handshakes, TETHER__MAX_SESSIONS_LIMIT);
    }
    k->handshake_timeout_ms =
        k->handshake_timeout_ms ? k->handshake_timeout_ms : TETHER__DEFAULT_HANDSHAKE_TIMEOUT_MS;
    k->busy_retry_after_s =
        k->busy_retry_after_s ? k->busy_retry_after_s : TETHER__DEFAULT_BUSY_RETRY_AFTER_S;
    const char *const files[][2] = {{"tls_cert_file", k->tls_cert_file},
                                    {"tls_key_file", k->tls_key_file},
                                    {"tls_client_ca_file", k->tls_client_ca_file}};
    int rc = tether__check_readable(files, 3);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (!k->tls_cert_file != !k->tls_key_file ||
        (k->tls_client_ca_file && !k->tls_cert_file)) {
        return tether__fail(TETHER_ECONFIG, "tls_cert_file and tls_key_file go together, and "
                                            "tls_client_ca_file needs them");
    }
    size_t nh = 0;
    for (const char *const *h = k->http_cors_headers; h && *h; h++, nh++) {
        size_t len = strlen(*h);
        if (nh == TETHER__MAX_CORS_HEADERS || len == 0 || len > 64 ||
            strspn(*h, TETHER__HEADER_NAME_CHARS) != len) {
            return tether__fail(TETHER_ECONFIG, "http_cors_headers: entry %zu is %s", nh + 1,
                                nh == TETHER__MAX_CORS_HEADERS ? "one too many (at most 16)"
                                                               : "not a header name of 1 to 64 "
                                                                 "letters, digits or !#$%&'*+-.^_`|~");
        }
    }
    for (const char *const *o = k->allowed_origins; o && *o; o++) {
        if (!**o || strpbrk(*o, "\r\n")) {
            return tether__fail(TETHER_ECONFIG, "allowed_origins holds an empty or multi-line entry");
        }
    }
    return TETHER_OK;
}

/* Joins the configured CORS header names after the carriage's own. */
int tether__srv_cors_headers(tether_server *s, const char *const *names)
{
    size_t need = strlen(TETHER__HC_CORS_HEADERS) + 1;
    for (const char *const *h = names; *h; h++) {
        need += strlen(*h) + 2;
    }
    s->cors_headers = tether__malloc(need);
    if (!s->cors_headers) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    strcpy(s->cors_headers, TETHER__HC_CORS_HEADERS);
    for (const char *const *h = names; *h; h++) {
        strcat(strcat(s->cors_headers, ", "), *h);
    }
    return TETHER_OK;
}

/* Copies the TLS file names and the Origin allow-list into s->strs. */
int tether__srv_copy_strings(tether_server *s)
{
    const char **fields[] = {&s->cfg.tls_cert_file, &s->cfg.tls_key_file,
                             &s->cfg.tls_client_ca_file};
    return tether__copy_strings(fields, 3, &s->cfg.allowed_origins, &s->strs, &s->origins);
}

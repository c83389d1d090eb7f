/* Every configuration default in one place; docs/config.md documents them and
 * tests check the documented values against these. */
#ifndef TETHER_DEFAULTS_H
#define TETHER_DEFAULTS_H

#define TETHER__DEFAULT_MAX_MESSAGE (1u << 20)  /* bytes */
#define TETHER__DEFAULT_WINDOW 1024u            /* messages */
#define TETHER__DEFAULT_ACK_EVERY 64u           /* messages (at most half the window) */
#define TETHER__DEFAULT_ACK_DELAY_MS 20u
#define TETHER__DEFAULT_BACKOFF_BASE_MS 250u
#define TETHER__DEFAULT_BACKOFF_CAP_MS 30000u
#define TETHER__DEFAULT_BACKOFF_RESET_MS 10000u
#define TETHER__DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define TETHER__DEFAULT_WELCOME_TIMEOUT_MS 10000u
#define TETHER__DEFAULT_PING_INTERVAL_MS 20000u
#define TETHER__DEFAULT_PONG_TIMEOUT_MS 10000u
#define TETHER__DEFAULT_HOST "127.0.0.1"
#define TETHER__DEFAULT_MAX_SESSIONS 10000u
#define TETHER__DEFAULT_HELLO_TIMEOUT_MS 10000u
#define TETHER__DEFAULT_RETRY_AFTER_MAX_MS 600000u /* largest Retry-After honoured */
#define TETHER__DEFAULT_FALLBACK_MEMORY_MS 300000u /* AUTO: stay on HTTP this long before probing WebSocket */
#define TETHER__DEFAULT_MAX_PENDING_HANDSHAKES 256u /* upgraded, no HELLO yet */
#define TETHER__DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u /* HTTP upgrade request */
#define TETHER__DEFAULT_BUSY_RETRY_AFTER_S 1u      /* Retry-After of a full server's 503 */
#define TETHER__DEFAULT_LEASE_MS 10000u           /* a session's lease without renewal (PostgreSQL) */
#define TETHER__DEFAULT_DELIVERY_THREADS 4u        /* server threads running sessions' input */
#define TETHER__DEFAULT_RX_BUFFER_BYTES 1024u      /* server: lws receive buffer per connection */
#define TETHER__MIN_RX_BUFFER_BYTES 128u
#define TETHER__MAX_RX_BUFFER_BYTES 65536u
/* Upper bounds of server limits (docs/config.md); larger values are refused. */
#define TETHER__MAX_DELIVERY_THREADS 64u
#define TETHER__MAX_SESSIONS_LIMIT 1000000u        /* max_sessions, max_pending_handshakes */
#define TETHER__MAX_CORS_HEADERS 16u               /* http_cors_headers entries */
/* the characters of an HTTP header name (RFC 9110 token) */
#define TETHER__HEADER_NAME_CHARS                                                                  \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
#define TETHER__MAX_HELLO_TIMEOUT_MS 3600000u      /* hello_timeout_ms: one hour */

#define TETHER__DEFAULT_COMMIT_DELAY_US 200u           /* async group commit delay */
#define TETHER__DEFAULT_COMMIT_MAX_MESSAGES 1024u      /* per commit transaction */
#define TETHER__DEFAULT_COMMIT_MAX_BYTES (1u << 20)    /* per commit transaction */
#define TETHER__DEFAULT_ASYNC_MAX_BYTES (16ull << 20)  /* handed over, not yet stored */

#endif

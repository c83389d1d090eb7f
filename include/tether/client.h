/*
 * tether client: one session with one server, kept alive across reconnects.
 * Include <tether/tether.h> rather than this file.
 */
#ifndef TETHER_CLIENT_H
#define TETHER_CLIENT_H

#include <tether/tether.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tether_client tether_client;

/** Connection states reported by on_state. */
typedef enum tether_state {
    TETHER_STATE_CONNECTING = 1,   /* a connection attempt has started */
    TETHER_STATE_CONNECTED = 2,    /* WELCOME received: the session is live */
    TETHER_STATE_DISCONNECTED = 3, /* the connection ended or an attempt failed */
    TETHER_STATE_RECONNECTING = 4, /* waiting retry_in_ms before the next attempt */
    TETHER_STATE_STOPPED = 5,      /* no more attempts (gave up, permanent error, mismatch) */
} tether_state;

/** How the client carries its frames (docs/connectivity.md, "HTTP fallback"). */
typedef enum tether_transport_mode {
    TETHER_TRANSPORT_AUTO = 0,      /* WebSocket, falling back to the HTTP carriage when the path
                                       blocks WebSocket, and probing WebSocket again later */
    TETHER_TRANSPORT_WEBSOCKET = 1, /* WebSocket only */
    TETHER_TRANSPORT_HTTP = 2,      /* the HTTP carriage only (proto/HTTP.md) */
} tether_transport_mode;

/** What on_state reports. Strings are borrowed for the duration of the callback. */
typedef struct tether_state_info {
    tether_state state;
    int error;           /* TETHER_OK or the tether_err that caused DISCONNECTED/STOPPED */
    int http_status;     /* HTTP status of a failed handshake, 0 when there was none */
    int reject_code;     /* tether_reject_code from a REJECT or BYE, 0 when none */
    uint32_t attempt;    /* consecutive failed attempts so far */
    uint32_t retry_in_ms; /* RECONNECTING: delay before the next attempt */
    int resumed;         /* CONNECTED: 1 when the server knew the session */
    const char *detail;  /* human-readable detail from the lower layer; never NULL */
    int proxy_status;    /* HTTP status of the proxy's answer to CONNECT when it was not 200, else 0 */
    uint32_t retry_after_ms; /* Retry-After of the failed handshake (server or proxy), ms; 0: none */
    tether_transport_mode transport; /* the carriage of this report's attempt or connection:
                                        TETHER_TRANSPORT_WEBSOCKET or TETHER_TRANSPORT_HTTP
                                        (never AUTO); a change of carriage is reported as
                                        RECONNECTING whose detail says why */
} tether_state_info;

/** Back-pressure: what on_backpressure reports. */
typedef enum tether_backpressure_kind {
    TETHER_BP_WINDOW_FULL = 1, /* window_messages messages are unacked: new sends wait in the outbox */
    TETHER_BP_WINDOW_OPEN = 2, /* fewer than window_messages are unacked again */
    TETHER_BP_OUTBOX_FULL = 3, /* a send failed with TETHER_EOUTBOX_FULL (reported once until OPEN) */
    TETHER_BP_OUTBOX_OPEN = 4, /* acknowledgements made room below the outbox caps: send again */
} tether_backpressure_kind;

/** What on_backpressure reports. */
typedef struct tether_backpressure_info {
    tether_backpressure_kind kind;
    uint64_t pending_messages; /* unacked messages stored now */
    uint64_t pending_bytes;    /* their payload bytes */
} tether_backpressure_info;

/** What to do when the server's records contradict the client's. */
typedef enum tether_mismatch_policy {
    TETHER_MISMATCH_STOP = 0,  /* report, stop reconnecting; the app calls tether_client_reset_session() */
    TETHER_MISMATCH_RESET = 1, /* report, then start a new session carrying the unacked messages */
} tether_mismatch_policy;

/** Client callbacks; each may be NULL. They run on the client's service thread,
 *  in order, without the client's lock held (except on_stored and
 *  on_store_failed): other threads' sends and acks do not wait for them. */
typedef struct tether_client_callbacks {
    /** A message from the server, delivered once, in order. data is borrowed.
     *  redelivered is 1 when the server sent it before, so the app may have seen it. */
    void (*on_message)(tether_client *c, uint64_t seq, const void *data, size_t len,
                       int redelivered, void *user);
    /** The server durably recorded every message from first_seq to last_seq. */
    void (*on_acked)(tether_client *c, uint64_t first_seq, uint64_t last_seq, void *user);
    /** The connection changed state. */
    void (*on_state)(tether_client *c, const tether_state_info *info, void *user);
    /** The session's state on the two sides disagrees; called before anything else happens. */
    void (*on_mismatch)(tether_client *c, const tether_mismatch_info *info, void *user);
    /** The in-flight window or the outbox filled up, or has room again. Each FULL is
     *  followed by exactly one OPEN of the same kind (unless the client is destroyed). */
    void (*on_backpressure)(tether_client *c, const tether_backpressure_info *info, void *user);
    /** Messages first_seq..last_seq are committed to the outbox (by any send call).
     *  Ranges come in ascending order, consecutive, never two at once. Runs on
     *  the thread that committed them (docs/threading.md), not the service thread;
     *  it may call tether_client_send_async() but no other send, flush or destroy. */
    void (*on_stored)(tether_client *c, uint64_t first_seq, uint64_t last_seq, void *user);
    /** Asynchronous messages first_seq..last_seq could not be stored (error is the
     *  store error): they are dropped and their numbers will be given out again.
     *  Same thread and rules as on_stored. */
    void (*on_store_failed)(tether_client *c, uint64_t first_seq, uint64_t last_seq, int error,
                            void *user);
} tether_client_callbacks;

/**
 * Client configuration. Fill with tether_client_config_init(), then set fields.
 * Zero means "the default", given in brackets; docs/config.md lists them all.
 */
typedef struct tether_client_config {
    const char *url;              /* ws://host:port/path (required, unless urls is set) */
    const char *db_path;          /* SQLite file for the outbox and session [NULL: memory store] */
    tether_durability durability; /* [NORMAL] */
    uint32_t max_message_bytes;   /* largest message sent or accepted, bytes [1 MiB] */
    uint32_t window_messages;     /* unacked messages in flight at most [1024] */
    uint32_t ack_every;           /* acknowledge after this many messages
                                     [64, or window_messages/2 when smaller] */
    uint32_t ack_delay_ms;        /* ... or after this many milliseconds [20] */
    uint64_t outbox_max_messages; /* unacked messages stored at most [0: no cap] */
    uint64_t outbox_max_bytes;    /* unacked payload bytes stored at most [0: no cap] */
    uint32_t backoff_base_ms;     /* first reconnect delay bound, ms [250] */
    uint32_t backoff_cap_ms;      /* largest reconnect delay bound, ms [30000] */
    uint32_t backoff_max_attempts; /* retries before giving up (TETHER_EGIVEUP) [0: never give up] */
    uint32_t backoff_reset_ms;    /* a connection up this long resets the attempt count, ms [10000] */
    uint32_t connect_timeout_ms;  /* TCP + TLS + upgrade must finish within this, ms [10000] */
    uint32_t welcome_timeout_ms;  /* after the upgrade, WELCOME must arrive within this, ms [10000] */
    uint32_t ping_interval_ms;    /* a WebSocket ping goes out when no pong came for this long, ms,
                                     whole seconds, >= 1000 [20000] */
    uint32_t pong_timeout_ms;     /* no pong for ping_interval + this: the link is dead, ms,
                                     whole seconds, >= 1000 [10000] */
    int manual_ack;               /* 1: the app acknowledges with tether_client_ack() [0] */
    int retry_permanent;          /* 1: keep retrying after 401/403, a rejected token or version,
                                     or a message the server refuses as too big [0]; a session
                                     mismatch is never retried automatically */
    tether_mismatch_policy mismatch_policy; /* [TETHER_MISMATCH_STOP] */
    uint64_t random_seed;         /* seeds backoff jitter; for tests [0: from the OS] */
    tether_client_callbacks cb;   /* callbacks [all NULL] */
    void *user;                   /* passed to every callback */

    /* Connectivity: TLS, proxies, handshake headers (docs/connectivity.md). */
    const char *tls_ca_file;      /* PEM file of the CAs trusted for wss://; replaces the system's
                                     CAs [NULL: the system's CAs] */
    const char *tls_cert_file;    /* PEM client certificate (chain) for wss:// [NULL: none] */
    const char *tls_key_file;     /* PEM private key of tls_cert_file [NULL: none] */
    int tls_insecure_skip_verify; /* DANGER, development only: 1 accepts ANY server certificate
                                     and host name, so anyone on the path can read and change
                                     the traffic [0: verify] */
    const char *proxy;            /* "http://[user:pass@]host:port" to CONNECT through; "" for a
                                     direct connection [NULL: from https_proxy (wss) or http_proxy
                                     (ws), unless no_proxy matches] */
    const char *proxy_user;       /* proxy Basic user name, overrides one in proxy [NULL] */
    const char *proxy_password;   /* proxy Basic password [NULL] */
    const char *origin;           /* Origin header of the upgrade request [NULL: none sent] */
    const char *const *headers;   /* extra upgrade request headers, "Name: value" each, NULL-
                                     terminated (e.g. "Authorization: Bearer x") [NULL: none] */
    uint32_t retry_after_max_ms;  /* largest Retry-After honoured in the backoff, ms [600000] */
    tether_transport_mode transport; /* WebSocket, the HTTP carriage, or both [AUTO] */
    uint32_t fallback_memory_ms;  /* AUTO: after falling back, stay on HTTP this long before
                                     probing WebSocket again (doubling after each failed probe, up
                                     to 12 times this), ms; kept in memory only [300000] */

    /* Group commit (docs/config.md#group-commit). */
    uint32_t commit_delay_us;     /* asynchronous sends: a commit waits this long after the first
                                     waiting message for more, microseconds, <= 1000000 [200] */
    uint32_t commit_max_messages; /* messages per commit transaction at most (a batch is never
                                     split), <= 65536 [1024] */
    uint32_t commit_max_bytes;    /* payload bytes per commit transaction at most, <= 64 MiB
                                     [1 MiB]; reaching this or commit_max_messages commits at once */
    uint64_t async_max_bytes;     /* payload bytes handed over but not yet stored; above this
                                     tether_client_send_async() waits for the commit [16 MiB] */
    uint64_t wait_max_pending;    /* tether_client_send_wait() blocks while this many messages are
                                     unacked (stored or waiting) [4 * window_messages] */
    int store_shared;             /* 1: other processes may read db_path while the client runs
                                     (tether status), at the cost of file locks per commit
                                     [0: the client locks the file for itself]; never a second
                                     writer: one is refused at create either way (TETHER_ESTORE) */
    const char *const *urls;      /* several servers of one service, tried in turn (docs/config.md
                                     "Several server URLs"): a NULL-terminated list of 1 to 16
                                     ws:// or wss:// urls, set instead of url [NULL: url alone] */
    uint32_t store_page_size;     /* SQLite page size of a store this client creates, bytes: a
                                     power of two from 512 to 65536 [0: SQLite's default, 4096];
                                     applies only when db_path's file is created (an existing
                                     store keeps the page size it was made with); smaller pages
                                     make small messages' commits cheaper, while messages larger
                                     than about a quarter of a page go to overflow pages
                                     (docs/config.md); checked but unused with the memory store */
} tether_client_config;

/** The carriage the client uses now (or will use for its next attempt):
 *  TETHER_TRANSPORT_WEBSOCKET or TETHER_TRANSPORT_HTTP; TETHER_EINVAL (as a
 *  negative value) for a NULL client. Any thread. */
TETHER_API int tether_client_transport(tether_client *c);

/** Sets every field to zero (the defaults). */
TETHER_API void tether_client_config_init(tether_client_config *cfg);

/**
 * Opens (or creates) the store and prepares a client; nothing connects until
 * tether_client_start(). The session id and resume token are made on first use
 * and kept in the store.
 * Returns TETHER_OK, TETHER_EINVAL, TETHER_ECONFIG, TETHER_ENOMEM, or a store
 * error (TETHER_ESTORE, _CORRUPT, _SCHEMA, _READONLY, _FULL); tether_errmsg()
 * has the detail.
 */
TETHER_API int tether_client_create(const tether_client_config *cfg, tether_client **out);

/** Starts the service thread, which connects and keeps reconnecting.
 *  Returns TETHER_OK, TETHER_EINVAL (already started), TETHER_ESYS, TETHER_ENOMEM. */
TETHER_API int tether_client_start(tether_client *c);

/**
 * Commits one message to the outbox and returns its sequence number in *seq
 * (may be NULL). When this returns TETHER_OK the message is stored at the
 * configured durability and will be delivered, across reconnects and restarts.
 * Works before start() and while offline. Thread-safe; concurrent calls from
 * several threads share store transactions (group commit), and each returns
 * once its own message is committed.
 * Returns TETHER_OK, TETHER_EINVAL, TETHER_ETOOBIG, TETHER_EOUTBOX_FULL,
 * TETHER_ECLOSED, TETHER_ENOMEM or a store error; on error nothing is stored.
 */
TETHER_API int tether_client_send(tether_client *c, const void *data, size_t len, uint64_t *seq);

/** Like tether_client_send() for n messages in one store transaction: all or none.
 *  *first_seq receives the first one's number; the rest follow consecutively.
 *  Returns the codes of tether_client_send(); TETHER_EINVAL also for n 0 or
 *  msgs NULL. */
TETHER_API int tether_client_send_batch(tether_client *c, const tether_msg *msgs, size_t n,
                                        uint64_t *first_seq);

/**
 * Hands one message over and returns at once with its sequence number in *seq
 * (may be NULL): the payload is copied, and the library commits it with what
 * else is waiting, in one store transaction per group (commit_* fields). The
 * message is stored when on_stored reports its seq; it is never written to the
 * network before. A crash before that may lose it (docs/guarantees.md).
 * Waits only while more than async_max_bytes are waiting for their commit.
 * Returns TETHER_OK, TETHER_EINVAL, TETHER_ETOOBIG, TETHER_EOUTBOX_FULL (the
 * caps count stored and waiting messages), TETHER_ECLOSED, TETHER_ENOMEM, TETHER_ESYS.
 */
TETHER_API int tether_client_send_async(tether_client *c, const void *data, size_t len,
                                        uint64_t *seq);

/**
 * tether_client_send_async() that waits for room instead of failing: it blocks
 * while the message would pass an outbox cap, or while wait_max_pending
 * messages are unacked, until acknowledgements make room or timeout_ms passes.
 * Must not be called from a callback.
 * Returns what send_async() returns, except TETHER_EOUTBOX_FULL, and also
 * TETHER_ETIMEDOUT (no room within timeout_ms; nothing was handed over) and
 * TETHER_ECLOSED (tether_client_destroy() began while it waited).
 */
TETHER_API int tether_client_send_wait(tether_client *c, const void *data, size_t len,
                                       uint64_t *seq, uint32_t timeout_ms);

/**
 * Blocks until every message handed over before this call is committed (or
 * failed), or timeout_ms passes. Must not be called from a callback.
 * Returns TETHER_OK, TETHER_ETIMEDOUT, TETHER_EINVAL, or the store error of an
 * asynchronous commit that failed since the previous flush (on_store_failed
 * said which messages).
 */
TETHER_API int tether_client_flush(tether_client *c, uint32_t timeout_ms);

/** Manual-ack mode: every message up to seq has been processed by the app.
 *  Returns TETHER_OK, TETHER_EINVAL (not manual mode, or seq not yet delivered), a store error. */
TETHER_API int tether_client_ack(tether_client *c, uint64_t seq);

/** Highest sequence number the server has acknowledged.
 *  Returns TETHER_OK, TETHER_EINVAL (c or seq NULL). */
TETHER_API int tether_client_acked(tether_client *c, uint64_t *seq);

/** Highest sequence number assigned so far (0 when nothing was ever sent).
 *  Returns TETHER_OK, TETHER_EINVAL (c or seq NULL). */
TETHER_API int tether_client_last_seq(tether_client *c, uint64_t *seq);

/** Messages and payload bytes stored but not yet acknowledged. Either pointer may be NULL.
 *  Returns TETHER_OK, TETHER_EINVAL (c NULL). */
TETHER_API int tether_client_pending(tether_client *c, uint64_t *count, uint64_t *bytes);

/**
 * Blocks until every message sent so far is acknowledged, or timeout_ms passes.
 * Must not be called from a callback: from a callback of this client it
 * returns TETHER_EINVAL at once (the acks would have to come from the thread
 * it blocks).
 * Returns TETHER_OK, TETHER_ETIMEDOUT, TETHER_ECLOSED (the client was never
 * started, or stopped for good; the state callback said why), TETHER_EINVAL
 * (c NULL, or called from a callback of c).
 */
TETHER_API int tether_client_wait_acked(tether_client *c, uint32_t timeout_ms);

/** The session id. Returns TETHER_OK, TETHER_EINVAL (c or id NULL). */
TETHER_API int tether_client_session(tether_client *c, tether_session_id *id);

/** The most recent state report (its detail copied into detail[detail_len]).
 *  Returns TETHER_OK, TETHER_EINVAL (c or info NULL). */
TETHER_API int tether_client_last_state(tether_client *c, tether_state_info *info, char *detail,
                                        size_t detail_len);

/**
 * After a mismatch stopped the client: abandons the old session and starts a
 * new one. Unacked messages are kept and renumbered from 1 in the new session,
 * in the same order. Reconnects if the client was started.
 * Returns TETHER_OK, TETHER_EINVAL, a store error.
 */
TETHER_API int tether_client_reset_session(tether_client *c);

/**
 * Sets (or, with user NULL, clears) the Basic credentials for the HTTP proxy,
 * e.g. after a TETHER_EPROXY_AUTH (407) report. They apply from the next
 * attempt; a client STOPPED by a 407 starts again. Strings are copied.
 * Returns TETHER_OK, TETHER_EINVAL, TETHER_ECONFIG (user + password longer
 * than 94 bytes, or a ':' in the user name), TETHER_ENOMEM.
 */
TETHER_API int tether_client_set_proxy_credentials(tether_client *c, const char *user,
                                                   const char *password);

/** Commits the messages still waiting (asynchronous sends), wakes any
 *  tether_client_send_wait() with TETHER_ECLOSED, closes the connection, stops
 *  the threads and closes the store. Everything committed stays in the store
 *  for the next run. destroy(NULL) does nothing.
 *  Must not be called from a callback: from a callback of this client it does
 *  nothing (tether_errmsg() says so), and c stays valid. */
TETHER_API void tether_client_destroy(tether_client *c);

/** The detail of the last failure of a tether call in the calling thread. Never NULL. */
TETHER_API const char *tether_errmsg(void);

/** Counters and totals of a client; see docs/operations.md. Counters count
 *  from tether_client_create(); totals are the state now. */
typedef struct tether_client_statistics {
    uint64_t messages_sent;        /* messages committed by tether_client_send/_batch, count */
    uint64_t messages_acked;       /* messages the server acknowledged, count (including
                                      messages sent by an earlier run of the same store) */
    uint64_t pending_messages;     /* total: messages stored, not yet acknowledged */
    uint64_t pending_bytes;        /* total: their payload bytes */
    uint64_t messages_delivered;   /* messages from the server handed to on_message, count
                                      (redeliveries included) */
    uint64_t messages_redelivered; /* of those, with redelivered = 1, count */
    uint64_t bytes_in;             /* WebSocket message payload bytes received (tether frames;
                                      no WebSocket, TCP or HTTP headers, no pings), bytes */
    uint64_t bytes_out;            /* the same, written, bytes */
    uint64_t connects;             /* connections welcomed by the server, count */
    uint64_t reconnects;           /* connection attempts after the first one, count */
} tether_client_statistics;

/** Fills *st. Safe from any thread and from callbacks. Returns TETHER_OK or
 *  TETHER_EINVAL. */
TETHER_API int tether_client_stats(tether_client *c, tether_client_statistics *st);

#ifdef __cplusplus
}
#endif

#endif

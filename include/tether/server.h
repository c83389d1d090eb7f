/*
 * tether server: accepts many client sessions; each has its own outbox, so the
 * server can send to a session that is offline.
 * Include <tether/tether.h> rather than this file.
 */
#ifndef TETHER_SERVER_H
#define TETHER_SERVER_H

#include <tether/tether.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tether_server tether_server;

/**
 * An upgrade request being admitted, as on_handshake sees it. Valid only
 * during that callback; strings returned by the accessors are borrowed until
 * it returns.
 */
typedef struct tether_handshake tether_handshake;

/** The value of a request header ("Authorization", "Origin", "X-Whatever";
 *  case-insensitive), or NULL when absent. */
TETHER_API const char *tether_handshake_header(const tether_handshake *hs, const char *name);

/** The request path ("/" or "/room/7?x=1"). Never NULL. */
TETHER_API const char *tether_handshake_path(const tether_handshake *hs);

/** The peer's IP address as text. Never NULL. */
TETHER_API const char *tether_handshake_peer(const tether_handshake *hs);

/** Adds a header to the refusal the hook is about to ask for (e.g.
 *  "WWW-Authenticate", "Bearer realm=\"x\""; or "Retry-After", "30").
 *  Up to 4 headers, 512 bytes in all. Returns TETHER_OK, TETHER_EINVAL
 *  (CR or LF in name or value, or no room). */
TETHER_API int tether_handshake_reply_header(tether_handshake *hs, const char *name,
                                             const char *value);

/** A refused handshake, as on_refused sees it. Valid only during the callback. */
typedef struct tether_refusal_info {
    int error;            /* why: TETHER_EHTTP for an upgrade answered with http_status;
                             for a first message, the code its REJECT or BYE stands for:
                             TETHER_ETOKEN, TETHER_ELIMIT, TETHER_EVERSION, TETHER_EMISMATCH,
                             TETHER_EMALFORMED and the other frame codes (garbage),
                             TETHER_EPROTO (not a HELLO), TETHER_EFRAME_OVERSIZE, or a store
                             error (TETHER_ESTORE, TETHER_ENOMEM, ...) */
    int http_status;      /* the HTTP status of a refused upgrade (403, 503, on_handshake's),
                             else 0 */
    uint32_t reject_code; /* the tether_reject_code sent in REJECT or BYE, else 0 */
    const char *peer;     /* the peer's IP address as text; "" when not known (the HTTP
                             carriage) */
    const char *reason;   /* what the server told the peer, or why; never NULL */
    uint64_t suppressed;  /* refusals left unreported (rate limit) since the last report */
} tether_refusal_info;

/** Refusals reported through on_refused per 60 s window, at most; the rest
 *  are counted and the count comes with the next report. */
#define TETHER_REFUSAL_REPORTS_PER_MINUTE 10

/** Server callbacks; each may be NULL. A session's callbacks (open, message,
 *  acked, back-pressure, close, and a mismatch of a known session) run on one
 *  of the server's delivery threads, one at a time and in order for that
 *  session, while other sessions' callbacks may run at the same time on the
 *  other threads. on_handshake, and on_mismatch for a session the server does
 *  not know, run on the service thread; on_session_expired on the server's
 *  expiry thread. No tether lock is held during any of them
 *  (docs/threading.md). */
typedef struct tether_server_callbacks {
    /** A client completed HELLO/WELCOME. resumed is 1 when the session was known. */
    void (*on_session_open)(tether_server *s, const tether_session_id *id, int resumed, void *user);
    /** A session's connection ended; error says why (TETHER_OK when the client said BYE).
     *  Only sessions that were opened are reported. Sessions still connected
     *  when tether_server_destroy() gives up waiting are reported on the
     *  destroying thread. */
    void (*on_session_close)(tether_server *s, const tether_session_id *id, int error, void *user);
    /** A message from a client, delivered once per session, in order. data is borrowed. */
    void (*on_message)(tether_server *s, const tether_session_id *id, uint64_t seq,
                       const void *data, size_t len, int redelivered, void *user);
    /** The client durably recorded the server's messages first_seq..last_seq. */
    void (*on_acked)(tether_server *s, const tether_session_id *id, uint64_t first_seq,
                     uint64_t last_seq, void *user);
    /** A client's HELLO contradicts the server's records; the connection is refused. */
    void (*on_mismatch)(tether_server *s, const tether_mismatch_info *info, void *user);
    /** Admission: an upgrade request passed the Origin allow-list and the
     *  handshake cap. Return 0 to accept it, or an HTTP status from 400 to 599
     *  (401, 403, 429, 503, ...) to refuse it with that status; the client sees
     *  TETHER_EHTTP with http_status set. Runs before any session exists. */
    int (*on_handshake)(tether_server *s, tether_handshake *hs, void *user);
    /** A session's back-pressure changed: its window filled or opened, or a send
     *  hit its outbox cap (TETHER_EOUTBOX_FULL) or acknowledgements made room. */
    void (*on_backpressure)(tether_server *s, const tether_session_id *id,
                            const tether_backpressure_info *info, void *user);
    /** A session was offline for session_idle_expiry_ms and has been removed:
     *  its record and its outbox are deleted. pending_messages is the number
     *  of messages to the client that were still unacknowledged and are now
     *  dropped (0 when none). A later HELLO with this id is an unknown session. */
    void (*on_session_expired)(tether_server *s, const tether_session_id *id,
                               uint64_t pending_messages, void *user);
    /** A connection was refused before it had a session: an upgrade answered
     *  with an HTTP status (Origin, the handshake cap, on_handshake, a server
     *  shutting down), or a first message answered with REJECT or BYE (a wrong
     *  resume token, max_sessions reached, another protocol version, a
     *  mismatch, garbage instead of HELLO). Runs on the service thread: keep
     *  it short. A flood cannot swamp it: at most
     *  TETHER_REFUSAL_REPORTS_PER_MINUTE reports per 60 s, the others counted
     *  in the next report's suppressed; tether_server_stats()'s
     *  handshakes_refused counts every one. */
    void (*on_refused)(tether_server *s, const tether_refusal_info *info, void *user);
} tether_server_callbacks;

/** Server configuration; zero means the default in brackets (docs/config.md). */
typedef struct tether_server_config {
    const char *listen_host;      /* address to bind ["127.0.0.1"] */
    uint16_t port;                /* TCP port [0: the OS picks; see tether_server_port()] */
    const char *db_path;          /* SQLite file for sessions and outboxes, or a postgresql://
                                     (postgres://) URI for a PostgreSQL database [NULL: memory store] */
    tether_durability durability; /* [NORMAL] */
    uint32_t max_sessions;        /* sessions connected at once, at most 1000000 [10000] */
    uint32_t max_message_bytes;   /* largest message sent or accepted, bytes [1 MiB] */
    uint32_t window_messages;     /* unacked messages in flight per session [1024] */
    uint32_t ack_every;           /* acknowledge after this many messages
                                     [64, or window_messages/2 when smaller] */
    uint32_t ack_delay_ms;        /* ... or after this many milliseconds [20] */
    uint64_t outbox_max_messages; /* per-session unacked messages stored at most [0: no cap] */
    uint64_t outbox_max_bytes;    /* per-session unacked bytes stored at most [0: no cap] */
    uint32_t hello_timeout_ms;    /* a connection must send HELLO within this, ms, at most
                                     3600000 [10000] */
    uint32_t ping_interval_ms;    /* a ping goes out when no pong came for this long, ms [20000] */
    uint32_t pong_timeout_ms;     /* no pong for ping_interval + this: dead, ms [10000] */
    int manual_ack;               /* 1: the app acknowledges with tether_server_ack() [0] */
    tether_server_callbacks cb;   /* callbacks [all NULL] */
    void *user;                   /* passed to every callback */

    /* Admission and TLS (docs/connectivity.md). */
    const char *tls_cert_file;    /* PEM certificate (chain): serve wss:// [NULL: plain ws://] */
    const char *tls_key_file;     /* PEM private key of tls_cert_file [NULL] */
    const char *tls_client_ca_file; /* PEM CAs: require a client certificate signed by one of
                                       them [NULL: none asked for] */
    const char *const *allowed_origins; /* Origin values accepted (exact, case-insensitive),
                                       NULL-terminated; a request without Origin or with
                                       another gets 403 [NULL: no Origin check] */
    uint32_t max_pending_handshakes; /* upgraded connections that have not sent HELLO, at
                                       most (up to 1000000); beyond, upgrades get 503 with
                                       Retry-After [256] */
    uint32_t handshake_timeout_ms; /* a connection must complete its HTTP upgrade request
                                       within this, ms, whole seconds [10000] */
    uint32_t busy_retry_after_s;  /* Retry-After sent with the 503 of a full server, s [1] */

    /* Operations (docs/operations.md). */
    uint64_t session_idle_expiry_ms; /* a session offline this long is removed with its outbox
                                       and reported by on_session_expired, ms; at least 1000
                                       [0: sessions never expire] */
    int metrics_http;             /* 1: answer GET /metrics on the server's port with
                                     tether_server_stats() in Prometheus text format [0: off] */
    uint32_t delivery_threads;    /* threads that run the sessions' messages and callbacks,
                                     1 to 64 [4]; one session is on one thread at a time */
    uint32_t rx_buffer_bytes;     /* receive buffer of each WebSocket connection, bytes, 128
                                     to 65536 [1024]: memory every connection holds, and the
                                     most read from one connection per wake-up (a larger
                                     message arrives in pieces and is assembled) */

    /* The HTTP carriage (proto/HTTP.md; docs/connectivity.md). */
    uint32_t http_poll_hold_ms;   /* longest a poll is held before 204, ms, at most 25000 [25000] */
    uint32_t http_idle_ms;        /* a carriage connection with no request in progress this long
                                     ends, ms, at most 3600000 [40000] */
    const char *const *http_cors_headers; /* request header names a cross-origin page may
                                     send on carriage requests besides the carriage's own
                                     (e.g. "Authorization", read by the handshake hook),
                                     NULL-terminated, at most 16, each a header name of at
                                     most 64 bytes; listed in the preflight's
                                     Access-Control-Allow-Headers [NULL: none] */

    /* Static files (docs/operations.md). */
    const char *www_dir;          /* answer plain GET requests with the files below this
                                     directory ("/" and "dir/" give index.html), so a page
                                     and its script come from the server's own origin; it must
                                     exist and be a directory [NULL: none, such GETs get 426] */

    /* A fleet of servers on one PostgreSQL database (docs/scaling.md). */
    uint32_t lease_ms;            /* PostgreSQL store: a session's lease (its ownership by this
                                     instance) lasts this long unless renewed, which happens
                                     every lease_ms/3 while connected; another instance takes the
                                     session over after it lapses, or at once when this
                                     instance's database connection is gone; 1000 to 600000
                                     [10000] */
} tether_server_config;

/** Sets every field to zero (the defaults). */
TETHER_API void tether_server_config_init(tether_server_config *cfg);

/** Opens the store and binds the listening socket.
 *  Returns TETHER_OK, TETHER_EINVAL, TETHER_ECONFIG, TETHER_ENOMEM, TETHER_ESYS
 *  (cannot bind), or a store error; tether_errmsg() has the detail. */
TETHER_API int tether_server_create(const tether_server_config *cfg, tether_server **out);

/** The TCP port the server listens on (useful with port 0). */
TETHER_API uint16_t tether_server_port(tether_server *s);

/** Starts the service thread. Returns TETHER_OK, TETHER_EINVAL, TETHER_ESYS. */
TETHER_API int tether_server_start(tether_server *s);

/** Commits a message to a session's outbox; it is delivered now or when the
 *  client resumes. With a PostgreSQL store shared by several instances, any
 *  instance may send to any session: when another instance serves it, that
 *  one is woken and streams it (docs/scaling.md). Once tether_server_destroy()
 *  began, only a server callback still running may send (a reply from
 *  on_message is stored like the message it answers); other threads get
 *  TETHER_ECLOSED. Returns TETHER_OK, TETHER_EINVAL, TETHER_ENOTFOUND (session
 *  never seen), TETHER_ETOOBIG, TETHER_EOUTBOX_FULL, TETHER_ECLOSED,
 *  TETHER_ENOMEM, a store error; on error nothing is stored. */
TETHER_API int tether_server_send(tether_server *s, const tether_session_id *id, const void *data,
                                  size_t len, uint64_t *seq);

/** Like tether_server_send() for n messages, all or none. Returns the codes of
 *  tether_server_send(); TETHER_EINVAL for n 0 or msgs NULL. */
TETHER_API int tether_server_send_batch(tether_server *s, const tether_session_id *id,
                                        const tether_msg *msgs, size_t n, uint64_t *first_seq);

/** Manual-ack mode: every message from this session up to seq is processed.
 *  Returns TETHER_OK, TETHER_EINVAL (not manual mode, or seq not yet
 *  delivered), TETHER_ENOTFOUND, TETHER_ENOMEM or a store error. */
TETHER_API int tether_server_ack(tether_server *s, const tether_session_id *id, uint64_t seq);

/** Per-session queries. Return TETHER_OK, TETHER_EINVAL (a NULL argument),
 *  TETHER_ENOTFOUND for an unknown session, or TETHER_ENOMEM or a store error
 *  when the session had to be loaded from the store. */
TETHER_API int tether_server_acked(tether_server *s, const tether_session_id *id, uint64_t *seq);
TETHER_API int tether_server_pending(tether_server *s, const tether_session_id *id,
                                     uint64_t *count, uint64_t *bytes);

/** Number of sessions connected now. Returns TETHER_OK, TETHER_EINVAL (a NULL argument). */
TETHER_API int tether_server_connected(tether_server *s, uint32_t *count);

/** Sends BYE(SHUTDOWN) to every connected session and waits up to 500 ms for
 *  them to close (HELLOs meanwhile get REJECT(SHUTDOWN)), then closes what is
 *  left, stops the thread and closes the store. Everything committed stays in
 *  the store. NULL does nothing. Must not be called from a callback: from a
 *  callback of this server it does nothing (tether_errmsg() says so), and s
 *  stays valid. */
TETHER_API void tether_server_destroy(tether_server *s);

/* ---- Operations: the sessions a server holds, and its counters ---- */

/** One session as tether_server_sessions() reports it. */
typedef struct tether_server_session_info {
    tether_session_id id;     /* the session id */
    int online;               /* 1 while a client connection of the session is open */
    int established;          /* 1 once a HELLO of the session was welcomed (ever) */
    uint64_t out_last;        /* highest seq the server assigned to a message to this client */
    uint64_t peer_acked;      /* highest of those the client acknowledged */
    uint64_t recv_cursor;     /* highest seq from the client the server committed */
    uint64_t pending_messages; /* messages to the client stored, not yet acknowledged */
    uint64_t pending_bytes;   /* their payload bytes */
    uint64_t idle_ms;         /* offline: ms since its last connection ended (for a session
                                 this process has not seen connected: since the server was
                                 created); online: 0 */
} tether_server_session_info;

/** Called by tether_server_sessions() for each session; info is borrowed for
 *  the call. Return 0 to go on, non-zero to stop the listing. */
typedef int (*tether_server_session_cb)(tether_server *s, const tether_server_session_info *info,
                                        void *user);

/**
 * Lists every session the server holds (in its store, whether loaded or not),
 * in session id order. The list is a snapshot (the store's list, with each
 * session in memory read under its own lock); cb then runs on the calling
 * thread with no tether lock held, so it may call any
 * server function (tether_server_session_delete() included). Not from a
 * server callback. Returns TETHER_OK (also when cb stopped early),
 * TETHER_EINVAL, TETHER_ENOMEM, or a store error.
 */
TETHER_API int tether_server_sessions(tether_server *s, tether_server_session_cb cb, void *user);

/**
 * Removes an offline session: its record and its outbox are deleted at once,
 * and a later HELLO with this id is an unknown session. *dropped (may be
 * NULL) receives the number of unacknowledged messages to the client that
 * were deleted with it. on_session_expired is not called. A connected
 * session is not removed: close it first (the client ends it, or it times
 * out). Not from a server callback (TETHER_EINVAL). Returns TETHER_OK,
 * TETHER_EINVAL, TETHER_ENOTFOUND (no such session),
 * TETHER_EONLINE (the session is connected; nothing changed), TETHER_ECLOSED
 * (the server is shutting down), or a store error (nothing changed).
 */
TETHER_API int tether_server_session_delete(tether_server *s, const tether_session_id *id,
                                            uint64_t *dropped);

/** Counters and totals of a server; see docs/operations.md. Counters count
 *  from tether_server_create(); totals are the state now. */
typedef struct tether_server_statistics {
    uint64_t messages_sent;        /* messages committed by tether_server_send/_batch, count */
    uint64_t messages_acked;       /* messages to clients acknowledged by them, count */
    uint64_t messages_delivered;   /* messages from clients handed to on_message, count
                                      (redeliveries included) */
    uint64_t messages_redelivered; /* of those, with redelivered = 1, count */
    uint64_t pending_messages;     /* total: unacknowledged messages in all outboxes */
    uint64_t pending_bytes;        /* total: their payload bytes */
    uint64_t bytes_in;             /* WebSocket message payload bytes received (tether frames;
                                      no WebSocket, TCP or HTTP headers, no pings), bytes */
    uint64_t bytes_out;            /* the same, written, bytes */
    uint64_t sessions;             /* total: sessions in the store */
    uint64_t sessions_online;      /* total: sessions connected now */
    uint64_t sessions_offline;     /* total: sessions - sessions_online */
    uint64_t sessions_opened;      /* HELLOs welcomed (new and resumed sessions), count */
    uint64_t handshakes_refused;   /* upgrades refused with an HTTP status, and HELLOs refused
                                      with REJECT or answered with a mismatch, count */
    uint64_t sessions_expired;     /* sessions removed by session_idle_expiry_ms, count */
    uint64_t sessions_deleted;     /* sessions removed by tether_server_session_delete(), count */
    uint64_t messages_dropped;     /* unacknowledged messages removed with those sessions, count */
} tether_server_statistics;

/** Fills *st. Safe from any thread and from callbacks. Returns TETHER_OK or
 *  TETHER_EINVAL. */
TETHER_API int tether_server_stats(tether_server *s, tether_server_statistics *st);

#ifdef __cplusplus
}
#endif

#endif

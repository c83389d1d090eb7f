/*
 * tether — reliable messaging over WebSocket.
 *
 * This is the one public header. Everything not declared under include/tether/
 * is private to the library and may change at any time.
 *
 * Threading: every function declared here may be called from any thread unless
 * its comment says otherwise. Callbacks run on the handle's own service thread;
 * they must return quickly and must not call the blocking functions
 * tether_client_wait_acked(), tether_client_destroy() or tether_server_destroy().
 * They may call tether_client_send() and the query functions.
 *
 * Ownership: send functions copy the payload, so the caller's buffer is free as
 * soon as they return. Data handed to a callback is borrowed: it is valid only
 * until the callback returns.
 */
#ifndef TETHER_TETHER_H
#define TETHER_TETHER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TETHER_STATIC)
#define TETHER_API
#elif defined(TETHER_BUILDING)
#define TETHER_API __attribute__((visibility("default")))
#else
#define TETHER_API
#endif

#define TETHER_VERSION_MAJOR 0
#define TETHER_VERSION_MINOR 1
#define TETHER_VERSION_PATCH 0
#define TETHER_VERSION_STRING "0.1.0"

/** The WebSocket subprotocol tether negotiates. */
#define TETHER_SUBPROTOCOL "tether.v1"

/** Returns the library version as "MAJOR.MINOR.PATCH". */
TETHER_API const char *tether_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * Every call that can fail returns TETHER_OK (0) or one of these negative
 * codes. docs/errors.md explains each one and what to do about it.
 */
typedef enum tether_err {
    TETHER_OK = 0,
    TETHER_EINVAL = -1,          /* an argument is invalid (NULL handle or pointer, bad seq, ...) */
    TETHER_ENOMEM = -2,          /* memory allocation failed */
    TETHER_ECONFIG = -3,         /* a config field is out of range or malformed */
    TETHER_ESTORE = -4,          /* the store failed (I/O error, SQLite error) */
    TETHER_ESTORE_FULL = -5,     /* the disk or database is full */
    TETHER_ESTORE_CORRUPT = -6,  /* the database file is corrupt or not a database */
    TETHER_ESTORE_SCHEMA = -7,   /* the database has an unknown or newer schema, or other role */
    TETHER_ESTORE_READONLY = -8, /* the database cannot be written */
    TETHER_EOUTBOX_FULL = -9,    /* the outbox cap was reached; nothing was stored */
    TETHER_ETOOBIG = -10,        /* a message is larger than the negotiated limit */
    TETHER_ECLOSED = -11,        /* the handle is shutting down */
    TETHER_ETIMEDOUT = -12,      /* a wait ran out of time */
    TETHER_EMALFORMED = -13,     /* a frame is not valid msgpack, or is truncated */
    TETHER_EFRAME_TYPE = -14,    /* a frame has an unknown type */
    TETHER_EFRAME_ARITY = -15,   /* a frame has the wrong number of fields */
    TETHER_EFRAME_FIELD = -16,   /* a frame field has the wrong type or an invalid value */
    TETHER_EFRAME_SEQ0 = -17,    /* a frame carries sequence number 0 */
    TETHER_EFRAME_TRAILING = -18, /* bytes follow the frame's msgpack array */
    TETHER_EFRAME_OVERSIZE = -19, /* a payload or run exceeds the receiver's limits */
    TETHER_EPROTO = -20,         /* a valid frame arrived where it is not allowed */
    TETHER_EGAP = -21,           /* a DATA frame skipped sequence numbers */
    TETHER_ECONNREFUSED = -22,   /* the server refused the TCP connection */
    TETHER_EDNS = -23,           /* the host name did not resolve */
    TETHER_ECONNECT = -24,       /* the connection failed before upgrading */
    TETHER_ETLS = -25,           /* the TLS handshake or certificate check failed */
    TETHER_EHTTP = -26,          /* the server answered the upgrade with an HTTP status, not 101 */
    TETHER_EHANDSHAKE = -27,     /* a 101 came back without the right accept key or subprotocol */
    TETHER_ESTALLED = -28,       /* upgraded, but no WELCOME arrived in time: frames are blocked */
    TETHER_EPING = -29,          /* no pong within the timeout: the link is dead */
    TETHER_EREJECTED = -30,      /* the server rejected the session (see the reject code) */
    TETHER_ETOKEN = -31,         /* the server rejected the resume token */
    TETHER_EMISMATCH = -32,      /* the peer's session state contradicts ours */
    TETHER_EPEER_CLOSED = -33,   /* the peer closed the connection */
    TETHER_ELIMIT = -34,         /* the server has too many sessions connected */
    TETHER_ENOTFOUND = -35,      /* no such session */
    TETHER_EVERSION = -36,       /* the peer speaks an unsupported protocol version */
    TETHER_ESYS = -37,           /* an operating system call failed (threads, sockets) */
    TETHER_EGIVEUP = -38,        /* reconnection stopped: backoff_max_attempts retries failed */
    TETHER_ECONNECT_TIMEOUT = -39, /* the attempt (TCP, proxy, TLS, upgrade) outran connect_timeout_ms */
    TETHER_ETLS_UNTRUSTED = -40, /* the server's certificate is not signed by a trusted CA */
    TETHER_ETLS_HOSTNAME = -41,  /* the server's certificate does not name the url's host */
    TETHER_ETLS_EXPIRED = -42,   /* the server's certificate has expired or is not yet valid */
    TETHER_EPROXY = -43,         /* the HTTP proxy is unreachable or refused the CONNECT (proxy_status) */
    TETHER_EPROXY_AUTH = -44,    /* the HTTP proxy wants credentials (407) or refused the ones given */
    TETHER_EDISPLACED = -45,     /* a newer connection of the same session replaced this one */
    TETHER_EONLINE = -46,        /* the session is connected, so it cannot be deleted now */
    TETHER_EDROPPED = -47,       /* server: the server itself closed the connection (the client
                                    answered no ping in time, or the server closed it) */
    TETHER_EFENCED = -48,        /* server, PostgreSQL store: another instance holds the
                                    session's lease; this instance may not write for it */
} tether_err;

/** The lowest error code; every code from TETHER_ERR_LAST to -1 has a name. */
#define TETHER_ERR_LAST TETHER_EFENCED

/** A one-sentence description of an error code. Never NULL. */
TETHER_API const char *tether_strerror(int code);

/** The symbolic name of an error code ("TETHER_ETOKEN"). Never NULL. */
TETHER_API const char *tether_err_name(int code);

/* ------------------------------------------------------------------------ */
/* Common types                                                              */
/* ------------------------------------------------------------------------ */

/** A session id: 128 random bits, made by the client on first start. */
typedef struct tether_session_id {
    uint8_t bytes[16];
} tether_session_id;

/** Writes the id as 32 lowercase hex digits and a NUL into out[33]. */
TETHER_API void tether_session_id_hex(const tether_session_id *id, char out[33]);

/** Parses 32 hex digits. Returns TETHER_OK or TETHER_EINVAL. */
TETHER_API int tether_session_id_parse(const char *hex, tether_session_id *id);

/** A message to send: data is copied, so it may be freed once send returns. */
typedef struct tether_msg {
    const void *data;
    size_t len;
} tether_msg;

/** How durably a message is stored before send returns. */
typedef enum tether_durability {
    TETHER_DURABILITY_DEFAULT = 0, /* TETHER_DURABILITY_NORMAL */
    TETHER_DURABILITY_OFF = 1,     /* SQLite synchronous=OFF: survives a process crash only */
    TETHER_DURABILITY_NORMAL = 2,  /* synchronous=NORMAL (WAL): survives a process crash */
    TETHER_DURABILITY_FULL = 3,    /* synchronous=FULL: survives a power loss */
} tether_durability;

/** Reject and close codes, carried in REJECT and BYE frames (proto/PROTOCOL.md). */
typedef enum tether_reject_code {
    TETHER_REJECT_NONE = 0,
    TETHER_REJECT_VERSION = 1,    /* unsupported protocol version */
    TETHER_REJECT_TOKEN = 2,      /* resume token does not match the session */
    TETHER_REJECT_LIMIT = 3,      /* the server has too many sessions */
    TETHER_REJECT_PROTOCOL = 4,   /* protocol violation */
    TETHER_REJECT_SHUTDOWN = 5,   /* the server is shutting down */
    TETHER_REJECT_MISMATCH = 6,   /* session state mismatch; see the mismatch event */
    TETHER_REJECT_TOO_BIG = 7,    /* a message exceeded the receiver's limit */
    TETHER_REJECT_STORE = 8,      /* the receiver's store failed; nothing past it was acked */
    TETHER_REJECT_DISPLACED = 9,  /* a newer connection of this session took over; do not reconnect */
} tether_reject_code;

/**
 * A session-state mismatch: the two sides' records contradict each other, so
 * delivery can no longer be guaranteed without the application deciding. The
 * counts say how many messages are affected.
 */
typedef struct tether_mismatch_info {
    tether_session_id session;
    int peer_knows_session;    /* 0 when the peer had no record of the session */
    uint64_t local_out_last;   /* highest seq we ever assigned */
    uint64_t local_peer_acked; /* highest seq of ours the peer had acknowledged */
    uint64_t local_recv_cursor; /* highest seq of the peer's we committed */
    uint64_t peer_out_last;    /* highest seq the peer says it ever assigned */
    uint64_t peer_recv_cursor; /* highest seq of ours the peer says it committed */
    uint64_t lost_acked;       /* acked messages the peer no longer has: local_peer_acked - peer_recv_cursor */
    uint64_t unknown_received; /* messages we received that the peer does not know it sent */
} tether_mismatch_info;

#ifdef __cplusplus
}
#endif

#include <tether/client.h>
#include <tether/server.h>

#endif

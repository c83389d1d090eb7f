/*
 * The server's side of the handshake, sans I/O: what a connection that has no
 * session yet is answered. It takes the first message, then the decoded HELLO
 * with what the server knows (its situation, the session's record through a
 * lookup callback, the token's digest), and decides, in the order of
 * proto/PROTOCOL.md section 6: refuse (REJECT, or BYE before any HELLO), a
 * mismatch for a session it does not know (WELCOME + BYE(6), nothing created),
 * create the session, or accept a known one. Refusals carry the frames to
 * write; accepting is then the session engine's (tether__engine_accept), which
 * also finds the mismatches of a known session. The client's WELCOME and
 * REJECT handling is in the engine (session.c).
 *
 * The server adapter (server_conn.c) looks sessions up, stores a created one,
 * writes the frames of a refusal and closes once they are written.
 */
#ifndef TETHER_HANDSHAKE_H
#define TETHER_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include <tether/tether.h>

#include "frame.h"
#include "store/store.h"

/* Largest first message a server reads before HELLO, bytes (PROTOCOL.md section 4). */
#define TETHER__HS_FIRST_MAX 1024u

typedef enum tether__hs_verdict {
    TETHER__HS_REFUSE = 0, /* write the frames (REJECT, or a BYE), then close */
    TETHER__HS_MISMATCH,   /* unknown session claiming history: WELCOME + BYE(6), close */
    TETHER__HS_CREATE,     /* unknown session: store out->rec, then its engine accepts */
    TETHER__HS_ACCEPT,     /* known session, right token: its engine accepts the HELLO */
} tether__hs_verdict;

/* What the server knows when a HELLO arrives. */
typedef struct tether__hs_server {
    int stopping;              /* the server is shutting down */
    int at_cap;                /* as many sessions connected as it allows */
    int connected;             /* the HELLO's session has a connection now */
    int hash_rc;               /* result of hashing the HELLO's token (TETHER_OK or an error) */
    const uint8_t *token_hash; /* with hash_rc OK: SHA-256 of the HELLO's token, 32 bytes */
    uint32_t max_message;      /* the server's max_message, for a WELCOME without a session */
    uint32_t window;           /* the server's window, likewise */
    /* Finds a session: TETHER_OK and *rec filled, TETHER_ENOTFOUND, or a store error. */
    int (*lookup)(void *arg, const uint8_t id[16], tether__session_rec *rec);
    /* Reports a mismatch found without a session (may be NULL). */
    void (*on_mismatch)(void *arg, const tether_mismatch_info *info);
    void *arg; /* passed to lookup and on_mismatch */
} tether__hs_server;

/* One frame of a handshake answer, kept as fields and encoded on write. */
typedef struct tether__hs_frame {
    int type;                            /* TETHER__F_WELCOME, _REJECT or _BYE */
    tether__welcome welcome;             /* with WELCOME */
    uint32_t code;                       /* with REJECT and BYE: tether_reject_code */
    char reason[TETHER__REASON_MAX + 1]; /* with REJECT and BYE: NUL-terminated UTF-8 */
} tether__hs_frame;

/* The decision, and the frames to write when the connection will not get a session. */
typedef struct tether__hs_out {
    tether__hs_verdict verdict;  /* what the adapter does next */
    int error;                   /* REFUSE, MISMATCH: the tether_err that explains the close */
    int displace;                /* CREATE, ACCEPT: the session's older connection goes first */
    tether__session_rec rec;     /* CREATE: the record to store; ACCEPT: the record found */
    tether_mismatch_info mismatch; /* MISMATCH: what was reported */
    tether__hs_frame frames[2];  /* REFUSE, MISMATCH: frames to write, in order */
    size_t nframes;              /* frames in frames[] */
    size_t next;                 /* frames already written */
} tether__hs_out;

/*
 * The first message of a connection (err: the transport refused it, e.g.
 * TETHER_EFRAME_OVERSIZE or TETHER_EMALFORMED for text). Returns 1 with the
 * HELLO in *h; or 0 with out set to REFUSE with BYE(7) for a message over
 * TETHER__HS_FIRST_MAX bytes or an oversize error, BYE(4) for anything else
 * that is not a valid HELLO.
 */
int tether__hs_first(tether__decoder *d, const uint8_t *buf, size_t len, int err, tether__hello *h,
                     tether__hs_out *out);

/* Decides the answer to HELLO h (PROTOCOL.md section 6, step 2). Calls
 * srv->lookup only when the checks before it pass, and srv->on_mismatch for
 * a MISMATCH verdict. */
void tether__hs_decide(const tether__hello *h, const tether__hs_server *srv, tether__hs_out *out);

/* Turns out into a refusal: REJECT(code) with reason (after HELLO; a store
 * failure while creating the session), or BYE(code) when bye is set (an older
 * connection displaced, a shutdown). err is what the application is told. */
void tether__hs_refuse(tether__hs_out *out, int bye, uint32_t code, int err, const char *reason);

/* Writes the next frame of a refusal into b: 1 written, 0 none left, or a
 * negative tether_err from the encoder. */
int tether__hs_next_frame(tether__hs_out *out, tether__buf *b);

/* 1 while a refusal has frames left to write. */
int tether__hs_want_write(const tether__hs_out *out);

#endif

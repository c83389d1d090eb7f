/*
 * Internals of the session engine, shared by session.c (lifecycle, handshake,
 * control frames), session_send.c (outgoing messages) and session_recv.c
 * (incoming messages and ACK scheduling). Nothing outside those files uses it.
 */
#ifndef TETHER_SESSION_INT_H
#define TETHER_SESSION_INT_H

#include "session.h"

#define TETHER__CTL_MAX 4         /* control frames queued at most */

/* One control frame waiting to be written, kept as fields and encoded on write. */
typedef struct tether__ctl {
    int type; /* TETHER__F_HELLO, _WELCOME, _BYE or _ACK */
    union {
        tether__hello hello;     /* HELLO to write */
        tether__welcome welcome; /* WELCOME to write */
        uint64_t ack;            /* ACK to write (flushed before a graceful BYE) */
        struct {
            uint32_t code; /* tether_reject_code */
            char *reason;  /* NUL-terminated UTF-8, allocated (an engine holds no room
                              for a reason while no BYE waits), or NULL for "" */
        } bye;             /* BYE to write */
    } u;
} tether__ctl;

/* One outgoing message copied in memory. */
typedef struct tether__qent {
    uint8_t *data; /* payload copy, NULL when len is 0 */
    size_t len;    /* payload bytes */
} tether__qent;

struct tether__engine {
    tether__engine_cfg cfg;  /* configuration, copied at create */
    tether__store *st;       /* the store, borrowed */
    tether__session_rec rec; /* the session record, kept equal to the stored one */
    tether__engine_cb cb;    /* application callbacks (fields may be NULL) */
    tether__decoder dec;     /* own frame decoder, max payload cfg.max_message; its working
                                memory is allocated at the first frame decoded with it */
    tether__decoder *lent;   /* a decoder lent by the caller (the server's delivery
                                thread), used instead of dec while set, or NULL */

    tether__ctl ctl[TETHER__CTL_MAX]; /* control frames waiting, a ring */
    size_t ctl_head;                  /* slot of the oldest waiting control frame */
    size_t ctl_n;                     /* control frames waiting */
    int hello_out;                    /* client: HELLO queued or sent, WELCOME awaited */
    int live;                         /* welcomed on the current connection */
    int closing;                      /* closing: input ignored, no DATA or ACK written */
    int self_err;                     /* next_frame closed the connection: its error */
    int close_err;                    /* closing: the tether_err that explains it */
    uint32_t close_peer_code;         /* closing: the peer's REJECT/BYE code, 0 if none */
    char *close_detail;               /* closing: why, in words (CLOSE_DETAIL bytes, allocated at
                                         the close, not kept in every idle engine of a server;
                                         NULL: none yet, or out of memory) */
    int after_welcome;                /* client: the last frame handled was a WELCOME */
    tether__welcome welcome;          /* client: the WELCOME of this connection */
    uint32_t peer_max;    /* the peer's max_message, bytes (0 before the handshake) */
    uint32_t peer_window; /* the peer's window, messages (0 before the handshake) */

    uint64_t next_send;  /* first seq not yet written on the current connection */
    uint64_t resend_hwm; /* highest seq possibly written before the current connection */
    uint64_t pend_bytes; /* payload bytes of the unacked messages */
    tether__qent *q;     /* ring of copies of seqs rec.peer_acked+1 .. +q_n */
    size_t q_cap;        /* slots in q: 0 or a power of two */
    size_t q_head;       /* slot holding seq rec.peer_acked+1 */
    size_t q_n;          /* messages in q */
    size_t q_cost;       /* bytes of q charged against cfg.queue_max_bytes */
    size_t q_peak;       /* highest q_cost so far */
    uint8_t *sc;         /* scratch: payloads read back from the store for one run */
    size_t sc_len;       /* bytes used in sc */
    size_t sc_cap;       /* bytes allocated for sc */
    size_t *sc_lens;     /* length of each payload in sc, in order */
    size_t sc_n;         /* payloads in sc */
    size_t sc_lcap;      /* slots allocated for sc_lens */

    uint64_t delivered; /* highest incoming seq handed to on_message in this process */
    uint64_t last_ack;  /* cursor the peer was last told (ACK, HELLO or WELCOME) */
    int ack_timer;      /* a delayed ACK is scheduled at ack_at */
    uint64_t ack_at;    /* when the delayed ACK is due, ms */
    uint64_t commit_at; /* recv_lazy: when the cursor was last committed, ms */
    int ack_now;        /* an ACK is due at once */
};

/* session.c */

/* Closes the connection: marks closing, records err and the detail (close_*)
 * and in ev (may be NULL), and queues BYE(code) unless code is TETHER__NO_BYE. */
void tether__engine_shut(tether__engine *e, tether__engine_event *ev, int err, uint32_t code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* session_send.c */

/* The peer committed our messages up to n (peer_acked < n <= out_last):
 * prunes the store and the queue, keeps pend_bytes exact, calls on_acked.
 * On a store failure closes with BYE(STORE) and returns the store's code. */
int tether__engine_peer_acked(tether__engine *e, uint64_t n, tether__engine_event *ev);

/* Writes one DATA frame into out: 1 written, 0 nothing due, 2 the engine closed
 * itself (a BYE is queued), or TETHER_ENOMEM. */
int tether__engine_write_data(tether__engine *e, tether__buf *out);

/* 1 if a DATA frame could be written now (window and messages permitting). */
int tether__engine_data_ready(const tether__engine *e);

/* Frees the queue and the scratch. */
void tether__engine_send_free(tether__engine *e);

/* session_recv.c */

/* Handles a DATA frame (the engine is live). */
void tether__engine_on_data(tether__engine *e, const tether__data *d, uint64_t now_ms,
                            tether__engine_event *ev);

/* The receive cursor advanced: schedules the ACK. */
void tether__engine_sched_ack(tether__engine *e, uint64_t now_ms);

/* 1 if an ACK is due at now_ms. */
int tether__engine_ack_due(const tether__engine *e, uint64_t now_ms);

/* recv_group: 1 while delivered messages wait for their cursor commit. */
int tether__engine_recv_due(const tether__engine *e);

/* recv_group: commits the cursor up to what was delivered (a no-op when
 * nothing waits). On a store failure closes with BYE(STORE) unless the
 * connection is already gone (force: called from disconnect). */
int tether__engine_recv_flush(tether__engine *e, uint64_t now_ms, int force);

/* Forgets any scheduled ACK: the peer was told the cursor (HELLO, WELCOME, ACK). */
void tether__engine_ack_sent(tether__engine *e);

#endif

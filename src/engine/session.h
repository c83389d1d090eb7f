/*
 * The reliability engine of one session, sans I/O.
 *
 * It owns sequence numbers, the in-flight window, delayed cumulative ACKs,
 * duplicate suppression, resend after reconnect and mismatch detection. It
 * reads and writes the store through the store interface, takes decoded input
 * bytes and the current time (milliseconds, any monotonic origin) as
 * arguments, and hands frames to write back through tether__engine_next_frame().
 * It never touches a socket, a clock or a thread; the caller serialises calls.
 *
 * Connection life, client:  connect() -> HELLO queued -> on_frame(WELCOME) -> live
 * Connection life, server:  accept(hello) -> WELCOME queued -> live
 * Either side:              disconnect() when the transport closes.
 */
#ifndef TETHER_SESSION_H
#define TETHER_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <tether/tether.h>

#include "frame.h"
#include "store/store.h"

typedef struct tether__engine tether__engine;

typedef struct tether__engine_cfg {
    tether__store_role role;      /* client or server side of the session */
    uint32_t max_message;         /* largest payload sent or accepted, bytes (>0) */
    uint32_t window;              /* our unacked messages in flight at most (>0) */
    uint32_t ack_every;           /* ACK after this many committed messages (>0) */
    uint32_t ack_delay_ms;        /* ... or this long after the first unacked one (>0) */
    uint64_t outbox_max_messages; /* cap on stored unacked messages, 0 = none */
    uint64_t outbox_max_bytes;    /* cap on stored unacked payload bytes, 0 = none */
    int manual_ack;               /* 1: the cursor advances only through engine_ack() */
    size_t run_max_bytes;         /* coalesce payloads into one DATA frame up to this (>0) */
    size_t queue_max_bytes;       /* payload bytes kept in memory before reading back from the store (>0) */
    int recv_group;               /* 1: auto-ack cursor commits wait for the next write (one per
                                     service-loop turn) instead of one per DATA frame */
    int defer_delivery;           /* 1: on_message only queues the message and the adapter runs
                                     the application's callback after on_frame() returns; with
                                     recv_group no cursor commit happens inside on_frame(), not
                                     even before a gap closes the connection (disconnect() then
                                     commits what was delivered) */
    int recv_lazy;                /* with recv_group: the cursor is committed only when an ACK
                                     needs it (ack_every delivered, or the ACK delay ran out),
                                     by engine_recv_commit() on the adapter's delivery thread;
                                     the next write does not commit, and an ACK covers only
                                     what is committed */
} tether__engine_cfg;

/* Application events; they are called from inside engine calls. */
typedef struct tether__engine_cb {
    void (*on_message)(void *arg, uint64_t seq, const uint8_t *data, size_t len,
                       int redelivered);
    void (*on_acked)(void *arg, uint64_t first_seq, uint64_t last_seq);
    void (*on_mismatch)(void *arg, const tether_mismatch_info *info);
    void *arg;
} tether__engine_cb;

/* What one call into the connection side produced. */
typedef struct tether__engine_event {
    int welcomed;       /* client: WELCOME accepted, the session is live */
    int resumed;        /* with welcomed: the server knew the session */
    int close;          /* the connection must close once queued frames are written */
    int error;          /* with close: the tether_err that explains it (TETHER_OK: graceful) */
    uint32_t peer_code; /* tether_reject_code received in REJECT/BYE, 0 if none */
    char detail[160];   /* human-readable explanation, "" if none */
} tether__engine_event;

/* Creates the engine for the session rec (already in the store). Messages
 * between rec->peer_acked and rec->out_last are read back from the store when
 * they are due. Returns TETHER_OK, TETHER_EINVAL, TETHER_ENOMEM, a store error. */
int tether__engine_create(const tether__engine_cfg *cfg, tether__store *st,
                          const tether__session_rec *rec, const tether__engine_cb *cb,
                          tether__engine **out);
void tether__engine_destroy(tether__engine *e);

/* ---- application side ---- */

/* Commits n messages to the outbox (one transaction) and queues them.
 * Returns TETHER_OK, TETHER_EINVAL, TETHER_ETOOBIG, TETHER_EOUTBOX_FULL, TETHER_ENOMEM,
 * a store error; on error nothing is stored or queued. */
int tether__engine_send(tether__engine *e, const tether_msg *msgs, size_t n, uint64_t *first_seq);

/* Another writer (a server instance that does not serve the session) added
 * to the outbox up to out_last: the engine sends those messages too, read
 * back from the store when due. Returns 1 when out_last grew, 0 when it was
 * not above ours. */
int tether__engine_outbox_grew(tether__engine *e, uint64_t out_last);

/* Manual-ack mode: commits the receive cursor up to seq (<= highest delivered)
 * and schedules an ACK. TETHER_EINVAL if not manual or seq beyond delivered. */
int tether__engine_ack(tether__engine *e, uint64_t seq, uint64_t now_ms);

/* Current record (ids, cursors, out_last, peer_acked). */
const tether__session_rec *tether__engine_rec(const tether__engine *e);

/* Unacked messages and their payload bytes. */
void tether__engine_pending(const tether__engine *e, uint64_t *count, uint64_t *bytes);

/* 1 while connected and welcomed. */
int tether__engine_live(const tether__engine *e);

/* ---- connection side ---- */

/* Client: a transport connection is open; queues HELLO. */
int tether__engine_connect(tether__engine *e, uint64_t now_ms);

/*
 * Client, a second connection probing another carriage while this one lives
 * (client_probe.c): hello_frame() encodes the HELLO the session would send
 * now into out (reset first), without changing anything, and gives its
 * receive cursor; is_welcome() is 1 when buf is a WELCOME for this session;
 * adopt() moves the session onto the probe: it ends the current connection as
 * disconnect() does and waits for the WELCOME that answers that HELLO (fed
 * through on_frame()), with hello_cursor as what the peer was last told.
 * TETHER_EINVAL for a server engine or a cursor beyond the committed one.
 */
int tether__engine_hello_frame(tether__engine *e, tether__buf *out, uint64_t *cursor);
int tether__engine_is_welcome(tether__engine *e, const uint8_t *buf, size_t len);
int tether__engine_adopt(tether__engine *e, uint64_t hello_cursor);

/* Server: a HELLO for this engine's session arrived (token already checked by
 * the caller). Queues WELCOME and goes live, or on a mismatch reports it
 * through on_mismatch, queues WELCOME then BYE(MISMATCH) and sets ev->close.
 * Returns TETHER_OK, TETHER_EINVAL (not a server engine, or another session's
 * id), or ev->error when ev->close was set. */
int tether__engine_accept(tether__engine *e, const tether__hello *h, uint64_t now_ms,
                          tether__engine_event *ev);

/* One complete WebSocket message arrived. Decodes and processes it; on a
 * protocol error queues BYE with the code and sets ev->close/ev->error.
 * Returns TETHER_OK, or ev->error when ev->close was set. Once the connection
 * is closing, further frames are ignored (TETHER_OK) until disconnect(). */
int tether__engine_on_frame(tether__engine *e, const uint8_t *buf, size_t len, uint64_t now_ms,
                            tether__engine_event *ev);

/* Lends the engine a decoder for the frames given to on_frame() until it is
 * lent another or NULL (then the engine's own decoder serves again). Lets a
 * server decode every session's frames with one decoder per delivery thread,
 * so that an engine holds no decoding memory of its own. d must have been
 * initialised with a max_payload of at least the engine's max_message and
 * outlive the loan. */
void tether__engine_lend_decoder(tether__engine *e, tether__decoder *d);

/* Time has passed (for the delayed ACK). */
void tether__engine_tick(tether__engine *e, uint64_t now_ms);

/* Queues BYE(code) for a graceful close. */
int tether__engine_bye(tether__engine *e, uint32_t code, const char *reason);

/* No BYE: tether__engine_close() ends the connection without telling the peer. */
#define TETHER__NO_BYE UINT32_MAX

/*
 * Closes the current connection for err (TETHER_OK: graceful), the reason the
 * adapters report: when the handshake has started and code is not
 * TETHER__NO_BYE, queues the committed cursor's ACK (if live) and BYE(code)
 * with detail as its reason. The first reason of a connection stands; later
 * calls change nothing. Afterwards tether__engine_close_event() reports
 * close, err and detail until disconnect(). Returns TETHER_OK or TETHER_EINVAL.
 */
int tether__engine_close(tether__engine *e, int err, uint32_t code, const char *detail);

/* 1 if tether__engine_next_frame() would produce a frame at now_ms. */
int tether__engine_want_write(tether__engine *e, uint64_t now_ms);

/* Writes the next frame to send into out (reset first). Returns 1 when a frame
 * was written, 0 when there is nothing to send now, or a negative tether_err.
 * When the engine must close the connection on its own while writing (a
 * message larger than the peer's max_message: TETHER_ETOOBIG; a store failure
 * reading the outbox back), it first returns its BYE as a frame, then returns
 * that error on every call until disconnect(); want_write() stays 1 meanwhile.
 * tether__engine_close_event() then says why. */
int tether__engine_next_frame(tether__engine *e, uint64_t now_ms, tether__buf *out);

/* 1 and *ev filled (close, error, detail) if the current connection is closing
 * for any reason (a frame, a call of bye(), or next_frame()); 0 otherwise. */
int tether__engine_close_event(const tether__engine *e, tether__engine_event *ev);

/* The earliest time a tick is needed, or UINT64_MAX. */
uint64_t tether__engine_deadline(const tether__engine *e);

/* recv_group: commits the receive cursor for what was delivered now instead
 * of at the next write (the server's delivery thread, after a batch of
 * frames, so the commit stays off the service thread). TETHER_OK, or the
 * store's error after which the engine closes as at the next write. */
int tether__engine_recv_commit(tether__engine *e, uint64_t now_ms);

/* Commits the receive cursor for everything delivered, lazy or not (before the
 * adapter reports a disconnect, so a refused commit is the close's reason
 * rather than swallowed by engine_disconnect()). As engine_recv_commit(). */
int tether__engine_recv_commit_all(tether__engine *e, uint64_t now_ms);

/* recv_lazy: 1 when delivered messages wait for a cursor commit that an ACK
 * needs now (the adapter then runs engine_recv_commit() where it commits). */
int tether__engine_recv_lazy_due(const tether__engine *e, uint64_t now_ms);

/* The transport connection ended: unacked messages will be resent (flagged
 * redelivered) on the next connection; queued frames are dropped. */
void tether__engine_disconnect(tether__engine *e);

/* ---- shared checks ---- */

/*
 * Compares our record with the peer's claims. peer_knows: the peer had a
 * record of the session; we_expect_history: we were welcomed before (client)
 * or the peer says it was (server, HELLO resume flag). Returns 1 and fills
 * *info on a mismatch, 0 when the records are consistent.
 */
int tether__mismatch_check(const tether__session_rec *local, int peer_knows, int expect_history,
                           uint64_t peer_out_last, uint64_t peer_recv_cursor,
                           tether_mismatch_info *info);

/* ---- tests only: not used by the library ---- */

/* Memory held for outgoing payloads: the queue's bytes now (payloads plus a
 * fixed charge per message, bounded by cfg.queue_max_bytes), the most it
 * held so far, and the bytes of the read-back scratch. */
void tether__engine_debug_mem(const tether__engine *e, size_t *queue_bytes, size_t *queue_peak,
                              size_t *scratch_bytes);

#endif

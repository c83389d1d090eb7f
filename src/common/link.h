/*
 * The pump between a connection's frames and its transport connection, shared
 * by the client and the server.
 *
 * Closing, in one model:
 * - A connection that has an engine is closing exactly when the engine says so
 *   (tether__engine_close_event()): a frame it received, a call of
 *   tether__engine_close() or tether__engine_bye() by the client or server
 *   adapter, or the engine closing itself while writing. Its close event holds
 *   the one reason (error, peer's code, detail) that the adapters report.
 * - A server connection without a session (before or instead of HELLO, or
 *   displaced by a newer connection) closes when its handshake answer
 *   (tether__hs_out) has frames: it always closes after writing them.
 * - Either way "closing" means "close once the queued frames are written", and
 *   only the pump acts on it: when the source has nothing left to write and is
 *   closing, the pump closes the transport connection.
 * - The transport's own flag (tether__conn, transport_lws_int.h) only records
 *   that the socket close is under way, because libwebsockets closes from a
 *   writable callback; tether__conn_close() asks for that at once (the welcome
 *   and hello timeouts use it, as a stalled link may never drain).
 */
#ifndef TETHER_LINK_H
#define TETHER_LINK_H

#include "engine/handshake.h"
#include "engine/session.h"
#include "transport/transport.h"

/* Where a connection's frames come from. */
typedef struct tether__link_src {
    /* Writes the next frame into out (reset first): 1 written, 0 nothing now,
     * or a negative tether_err after which the connection must close. */
    int (*next)(void *arg, uint64_t now_ms, tether__buf *out);
    /* 1 when next() would write a frame at now_ms. */
    int (*want)(void *arg, uint64_t now_ms);
    /* 1 when the connection closes once nothing is left to write. */
    int (*closing)(void *arg);
    void *arg; /* passed to each */
} tether__link_src;

/* Where frames go: the transport connection, or a test's fake. */
typedef struct tether__link_sink {
    int (*write)(void *arg, tether__buf *b); /* one whole message: TETHER_OK or an error */
    void (*want_write)(void *arg);           /* ask for another writable call */
    void (*close)(void *arg);                /* close the connection (soon) */
    void *arg;                               /* passed to each */
} tether__link_sink;

/*
 * From a writable callback: writes the source's next frame to the sink and
 * asks for another writable call while the source has more or is closing;
 * closes the sink when the source is closing and has nothing left. Returns
 * TETHER_OK, or the error (the source's, or the write's) after which the sink
 * was closed.
 */
int tether__link_pump(const tether__link_src *src, const tether__link_sink *sink, tether__buf *b,
                      uint64_t now_ms);

/* The engine as a source, and a transport connection as a sink. */
void tether__link_engine_src(tether__engine *e, tether__link_src *src);
void tether__link_hs_src(tether__hs_out *hs, tether__link_src *src);
void tether__link_conn_sink(tether__conn *c, tether__link_sink *sink);

/* tether__link_pump() from engine e to connection c. A failed write closes
 * the engine's connection with that error, so its close event says why. */
int tether__link_pump_engine(tether__engine *e, tether__conn *c, tether__buf *b, uint64_t now_ms);

/* tether__link_pump() of a handshake answer (no engine) to connection c. */
int tether__link_pump_hs(tether__hs_out *hs, tether__conn *c, tether__buf *b);

/* Re-arms the connection timer for the earliest of the engine's deadline and
 * extra_deadline (UINT64_MAX for none). */
void tether__link_arm(tether__engine *e, tether__conn *c, uint64_t now_ms,
                      uint64_t extra_deadline);

#endif

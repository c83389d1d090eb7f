/* What client.c and server.c share: moving frames between an engine and a connection. */
#ifndef TETHER_LINK_H
#define TETHER_LINK_H

#include "engine/session.h"
#include "transport/transport.h"

/*
 * Service thread, from a writable callback: writes the engine's next frame to
 * the connection and asks for another writable callback while the engine has
 * more. When close_after is set and nothing is left to write, closes the
 * connection. Returns TETHER_OK, or an error after which the connection is
 * closed; *why then says what happened (the engine's close event).
 */
int tether__link_pump(tether__engine *e, tether__conn *c, tether__buf *b, uint64_t now_ms,
                      int close_after, tether__engine_event *why);

/* Re-arms the connection timer for the earliest of the engine's deadline and
 * extra_deadline (UINT64_MAX for none). */
void tether__link_arm(tether__engine *e, tether__conn *c, uint64_t now_ms,
                      uint64_t extra_deadline);

/* Fills defaults and checks the common limits of a config; role-specific
 * parts are the caller's. Returns TETHER_OK or TETHER_ECONFIG. */
int tether__link_engine_cfg(tether__engine_cfg *ec, tether__store_role role, uint32_t max_message,
                            uint32_t window, uint32_t ack_every, uint32_t ack_delay_ms,
                            uint64_t outbox_max_messages, uint64_t outbox_max_bytes,
                            int manual_ack, size_t queue_max_bytes);

/* Back-pressure of one sending side, as last reported to the application. */
typedef struct tether__bp {
    int window;      /* last report was WINDOW_FULL (1) or OPEN (0) */
    int outbox;      /* last report was OUTBOX_FULL (1) or OPEN (0) */
    int outbox_hit;  /* a send hit the outbox cap and it was not reported yet */
    uint64_t full_n; /* pending messages when OUTBOX_FULL was reported */
} tether__bp;

/* After a send (rc is its result): notes an outbox-cap hit. Returns 1 when a
 * back-pressure report is now due (the caller wakes its service thread). */
int tether__bp_after_send(tether__bp *bp, tether__engine *e, uint32_t window, int rc);

/* Service thread: compares the engine's state with what was last reported and
 * fills up to two reports in out[] (window first). Returns how many. */
int tether__bp_update(tether__bp *bp, tether__engine *e, uint32_t window, uint64_t max_messages,
                      uint64_t max_bytes, tether_backpressure_info out[2]);

/* The reject code to send for a decode/transport error. */
uint32_t tether__link_close_code(int err);

#endif

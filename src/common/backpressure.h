/* Back-pressure reports of one sending side (client or server session):
 * the window and the outbox crossing their limits, each FULL followed by one
 * OPEN. Shared by client.c and server.c. */
#ifndef TETHER_BACKPRESSURE_H
#define TETHER_BACKPRESSURE_H

#include <stdint.h>

#include <tether/tether.h>

#include "engine/session.h"

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

#endif

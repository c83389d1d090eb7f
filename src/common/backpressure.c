/* Back-pressure reports (backpressure.h). */
#include "backpressure.h"

#include <string.h>

int tether__bp_after_send(tether__bp *bp, tether__engine *e, uint32_t window, int rc)
{
    uint64_t n = 0;
    tether__engine_pending(e, &n, NULL);
    int due = (n >= window) != bp->window;
    if (rc == TETHER_EOUTBOX_FULL && !bp->outbox) {
        bp->outbox_hit = 1;
        due = 1;
    }
    return due;
}

int tether__bp_update(tether__bp *bp, tether__engine *e, uint32_t window, uint64_t max_messages,
                      uint64_t max_bytes, tether_backpressure_info out[2])
{
    uint64_t n = 0, b = 0;
    int nout = 0;

    tether__engine_pending(e, &n, &b);
    int win = n >= window;
    /* full until acknowledgements removed something and the caps have room */
    int outbox = bp->outbox_hit ||
                 (bp->outbox && (n >= bp->full_n || (max_messages && n >= max_messages) ||
                                 (max_bytes && b >= max_bytes)));
    bp->outbox_hit = 0;
    if (outbox && !bp->outbox) {
        bp->full_n = n;
    }
    if (win != bp->window) {
        bp->window = win;
        memset(&out[nout], 0, sizeof out[nout]);
        out[nout].kind = win ? TETHER_BP_WINDOW_FULL : TETHER_BP_WINDOW_OPEN;
        out[nout].pending_messages = n;
        out[nout].pending_bytes = b;
        nout++;
    }
    if (outbox != bp->outbox) {
        bp->outbox = outbox;
        memset(&out[nout], 0, sizeof out[nout]);
        out[nout].kind = outbox ? TETHER_BP_OUTBOX_FULL : TETHER_BP_OUTBOX_OPEN;
        out[nout].pending_messages = n;
        out[nout].pending_bytes = b;
        nout++;
    }
    return nout;
}

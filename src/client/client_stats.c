/* tether_client_stats(): the client's counters (common/stats.h) and its pending totals. */
#include "client_int.h"

int tether_client_stats(tether_client *c, tether_client_statistics *st)
{
    if (!c || !st) {
        return tether__fail(TETHER_EINVAL, "client or stats is NULL");
    }
    const tether__stats *k = &c->stats;
    memset(st, 0, sizeof *st);
    st->messages_sent = tether__stat_get(k, TETHER__ST_SENT);
    st->messages_acked = tether__stat_get(k, TETHER__ST_ACKED);
    st->messages_delivered = tether__stat_get(k, TETHER__ST_DELIVERED);
    st->messages_redelivered = tether__stat_get(k, TETHER__ST_REDELIVERED);
    st->bytes_in = tether__stat_get(k, TETHER__ST_BYTES_IN);
    st->bytes_out = tether__stat_get(k, TETHER__ST_BYTES_OUT);
    st->connects = tether__stat_get(k, TETHER__ST_CONNECTS);
    uint64_t attempts = tether__stat_get(k, TETHER__ST_ATTEMPTS);
    st->reconnects = attempts ? attempts - 1 : 0;
    lock(c);
    tether__engine_pending(c->engine, &st->pending_messages, &st->pending_bytes);
    unlock(c);
    return TETHER_OK;
}

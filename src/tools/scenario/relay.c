/*
 * The demo's fault relay: a thin wrapper over the chaos relay (src/chaos.c)
 * with one fault, random immediate cuts alternating FIN and RST (see relay.h).
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/chaos.h"

struct relay {
    tether__chaos *c;            /* the relay */
    tether__chaos_random random; /* the cut schedule */
};

int relay_start(uint16_t target_port, uint32_t cut_min_ms, uint32_t cut_max_ms, uint64_t seed,
                relay **out, char *err, size_t errlen)
{
    relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->random.min_ms = cut_min_ms ? cut_min_ms : 1;
    r->random.max_ms = cut_max_ms > r->random.min_ms ? cut_max_ms : r->random.min_ms;
    r->random.kinds = 1u << TETHER__CHAOS_CUT;
    r->random.plain_cuts = 1;
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = target_port;
    cfg.seed = seed;
    cfg.random_on = cut_max_ms > 0;
    cfg.random = r->random;
    if (tether__chaos_start(&cfg, &r->c, err, errlen) != 0) {
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

uint16_t relay_port(const relay *r)
{
    return tether__chaos_port(r->c);
}

void relay_set_cutting(relay *r, int on)
{
    tether__chaos_cmd cmd;
    char err[128];
    memset(&cmd, 0, sizeof cmd);
    cmd.op = on ? TETHER__CHAOS_OP_RANDOM : TETHER__CHAOS_OP_NORANDOM;
    cmd.random = r->random;
    tether__chaos_apply(r->c, &cmd, err, sizeof err);
}

void relay_get_stats(relay *r, relay_stats *out)
{
    tether__chaos_stats st;
    tether__chaos_get_stats(r->c, &st);
    memset(out, 0, sizeof *out);
    out->accepted = st.accepted;
    out->cuts = st.cut_events;
    out->cuts_rst = st.cut_events_rst;
    out->cut_conns = st.cut_conns;
    out->bytes_up = st.bytes_up;
    out->bytes_down = st.bytes_down;
}

void relay_stop(relay *r)
{
    if (r == NULL) {
        return;
    }
    tether__chaos_stop(r->c);
    free(r);
}

/*
 * The chaos relay's faults (see chaos.c): turning each kind on and off,
 * timed faults ending by themselves (a generation number keeps an old end
 * from undoing a newer fault), the timeline, the random schedule drawn ahead
 * one fault at a time, and the commands handed to the relay's thread.
 */
#include "chaos.h"
#include "chaos_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tether__chaos_add_timer(tether__chaos *c, uint64_t at, int undo, uint64_t gen,
                             const tether__chaos_fault *f)
{
    if (c->ntimers == c->timers_cap) {
        size_t nc = c->timers_cap ? c->timers_cap * 2 : 32;
        timer *nt = realloc(c->timers, nc * sizeof *nt);
        if (!nt) {
            tether__chaos_log(c, "out of memory: a timed fault is lost");
            return;
        }
        c->timers = nt;
        c->timers_cap = nc;
    }
    timer *t = &c->timers[c->ntimers++];
    t->at = at;
    t->undo = undo;
    t->gen = gen;
    t->fault = *f;
}

/* Turns kind off in dirs (an explicit "off", or a timed fault's end when gen matches). */
static int turn_off(tether__chaos *c, int kind, int dirs, uint64_t gen)
{
    int did = 0;
    for (int d = 0; d < 2; d++) {
        shape *s = &c->sh[d];
        if (!(dirs & (1 << d))) {
            continue;
        }
        switch (kind) {
        case TETHER__CHAOS_STALL:
            if (s->stalled && (!gen || s->stall_gen == gen)) {
                s->stalled = 0;
                did = 1;
            }
            break;
        case TETHER__CHAOS_DELAY:
            if ((s->delay || s->jitter) && (!gen || s->delay_gen == gen)) {
                s->delay = s->jitter = 0;
                did = 1;
            }
            break;
        case TETHER__CHAOS_RATE:
            if (s->rate && (!gen || s->rate_gen == gen)) {
                s->rate = 0;
                did = 1;
            }
            break;
        case TETHER__CHAOS_SPLIT:
            if (s->split && (!gen || s->split_gen == gen)) {
                s->split = s->gap = 0;
                did = 1;
            }
            break;
        case TETHER__CHAOS_BUFFER:
            if (s->buffered && (!gen || s->buffer_gen == gen)) {
                s->buffered = 0;
                did = 1;
            }
            break;
        }
    }
    switch (kind) {
    case TETHER__CHAOS_STALL_UPGRADE:
        if (c->ustall_mode && (!gen || c->ustall_gen == gen)) {
            c->ustall_mode = 0;
            c->ustall_after = 0;
            did = 1;
        }
        break;
    case TETHER__CHAOS_BLACKHOLE:
        if (c->blackhole_mode && (!gen || c->blackhole_gen == gen)) {
            c->blackhole_mode = 0;
            did = 1;
        }
        break;
    case TETHER__CHAOS_REFUSE:
        if (c->refusing && (!gen || c->refuse_gen == gen)) {
            c->refusing = 0;
            did = 1;
        }
        break;
    }
    return did;
}

static void clear_all(tether__chaos *c)
{
    for (int k = TETHER__CHAOS_STALL; k < TETHER__CHAOS_CLEAR; k++) {
        turn_off(c, k, TETHER__CHAOS_BOTH, 0);
    }
    c->trig.armed = 0;
}

static void apply_fault(tether__chaos *c, const tether__chaos_fault *f, const char *origin)
{
    char text[200];
    tether__chaos_format(f, text, sizeof text);
    int dirs = f->dir ? f->dir : TETHER__CHAOS_BOTH;
    if (f->kind == TETHER__CHAOS_CLEAR) {
        clear_all(c);
        tether__chaos_log(c, "%sclear: every fault off", origin);
        return;
    }
    if (f->kind == TETHER__CHAOS_CUT) {
        if (f->after_bytes || f->after_frames) {
            c->trig.armed = 1;
            c->trig.rst = f->rst;
            c->trig.dir = dirs;
            c->trig.bytes = f->after_bytes;
            c->trig.frames = f->after_frames;
            snprintf(c->trig.desc, sizeof c->trig.desc, "%s", text);
            tether__chaos_log(c, "%s%s: armed", origin, text);
        } else {
            char what[240];
            snprintf(what, sizeof what, "%s%s", origin, text);
            tether__chaos_cut_all(c, f->rst, what);
        }
        return;
    }
    if (f->off) {
        int did = turn_off(c, f->kind, dirs, 0);
        tether__chaos_log(c, "%s%s%s", origin, text, did ? "" : " (was not on)");
        return;
    }
    uint64_t gen = ++c->gen;
    for (int d = 0; d < 2; d++) {
        shape *s = &c->sh[d];
        if (!(dirs & (1 << d))) {
            continue;
        }
        switch (f->kind) {
        case TETHER__CHAOS_STALL:
            s->stalled = 1;
            s->stall_gen = gen;
            break;
        case TETHER__CHAOS_DELAY:
            s->delay = f->delay_ms;
            s->jitter = f->jitter_ms;
            s->delay_gen = gen;
            break;
        case TETHER__CHAOS_RATE:
            s->rate = f->rate;
            s->rate_gen = gen;
            break;
        case TETHER__CHAOS_SPLIT:
            s->split = f->split;
            s->gap = f->gap_ms;
            s->split_gen = gen;
            break;
        case TETHER__CHAOS_BUFFER:
            s->buffered = 1;
            s->buf_rate = f->rate;
            s->buf_cap = f->cap ? f->cap : (64u << 20);
            s->buffer_gen = gen;
            break;
        }
    }
    uint64_t poisoned = 0;
    switch (f->kind) {
    case TETHER__CHAOS_STALL_UPGRADE:
        c->ustall_mode = f->dir ? f->dir : TETHER__CHAOS_BOTH; /* the directions it stops */
        c->ustall_after = f->after_bytes; /* 0: nothing passes after the 101 */
        c->ustall_gen = gen;
        break;
    case TETHER__CHAOS_BLACKHOLE:
        c->blackhole_mode = 1;
        c->blackhole_gen = gen;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (c->conns[i] && !c->conns[i]->poisoned) {
                c->conns[i]->poisoned = 1;
                poisoned++;
            }
        }
        break;
    case TETHER__CHAOS_REFUSE:
        c->refusing = 1;
        c->refuse_gen = gen;
        break;
    }
    c->st.faults[f->kind]++;
    if (f->kind == TETHER__CHAOS_BLACKHOLE) {
        tether__chaos_log(c, "%s%s: %llu live connection%s swallowed for good", origin, text,
                          (unsigned long long)poisoned, poisoned == 1 ? "" : "s");
    } else {
        tether__chaos_log(c, "%s%s", origin, text);
    }
    if (f->for_ms) {
        tether__chaos_add_timer(c, tether__chaos_now() + f->for_ms, 1, gen, f);
    }
}

void tether__chaos_run_timers(tether__chaos *c, uint64_t now)
{
    for (size_t i = 0; i < c->ntimers;) {
        if (c->timers[i].at > now) {
            i++;
            continue;
        }
        timer t = c->timers[i];
        c->timers[i] = c->timers[--c->ntimers];
        if (t.undo) {
            if (turn_off(c, t.fault.kind, t.fault.dir ? t.fault.dir : TETHER__CHAOS_BOTH, t.gen)) {
                tether__chaos_log(c, "%s ended", tether__chaos_kind_name(t.fault.kind));
            }
        } else {
            apply_fault(c, &t.fault, "");
        }
        i = 0; /* the array changed: start over (it is small) */
    }
}

void tether__chaos_start_random(tether__chaos *c, const tether__chaos_random *r, uint64_t now)
{
    c->random = *r;
    c->random_on = 1;
    c->random_base = now;
    tether__chaos_gen_init(&c->gen_state, c->cfg.seed);
    tether__chaos_gen_next(&c->gen_state, &c->random, &c->random_next);
}

void tether__chaos_run_random(tether__chaos *c, uint64_t now)
{
    while (c->random_on && c->random_base + c->random_next.at_ms <= now) {
        char origin[48];
        snprintf(origin, sizeof origin, "random #%llu: ", (unsigned long long)(c->gen_state.n - 1));
        apply_fault(c, &c->random_next.fault, origin);
        tether__chaos_gen_next(&c->gen_state, &c->random, &c->random_next);
    }
}

static void log_status(tether__chaos *c)
{
    const tether__chaos_stats *s = &c->st;
    tether__chaos_log(
        c,
        "status: open %llu, accepted %llu, refused %llu, upstream failed %llu, cuts %llu "
        "(%llu connections), up %llu bytes, down %llu bytes, swallowed %llu",
        (unsigned long long)s->open, (unsigned long long)s->accepted,
        (unsigned long long)s->refused, (unsigned long long)s->upstream_failed,
        (unsigned long long)s->faults[TETHER__CHAOS_CUT], (unsigned long long)s->cut_conns,
        (unsigned long long)s->bytes_up, (unsigned long long)s->bytes_down,
        (unsigned long long)s->swallowed);
}

void tether__chaos_run_cmd(tether__chaos *c, const qcmd *q, uint64_t now)
{
    const tether__chaos_cmd *cmd = &q->cmd;
    if (cmd->when && cmd->op == TETHER__CHAOS_OP_FAULT) {
        uint64_t at = cmd->when == 1 ? c->t0 + cmd->when_ms : now + cmd->when_ms;
        tether__chaos_add_timer(c, at, 0, 0, &cmd->fault);
        return;
    }
    switch (cmd->op) {
    case TETHER__CHAOS_OP_FAULT:
        apply_fault(c, &cmd->fault, "");
        break;
    case TETHER__CHAOS_OP_RANDOM:
        tether__chaos_start_random(c, &cmd->random, now);
        tether__chaos_log(c, "random faults every %u..%u ms, seed %llu",
                          (unsigned)cmd->random.min_ms, (unsigned)cmd->random.max_ms,
                          (unsigned long long)c->cfg.seed);
        break;
    case TETHER__CHAOS_OP_NORANDOM:
        c->random_on = 0;
        tether__chaos_log(c, "random faults off");
        break;
    case TETHER__CHAOS_OP_UPSTREAM:
        c->up = q->addr;
        c->uplen = q->addrlen;
        free(c->upstream_name);
        c->upstream_name = malloc(strlen(cmd->host) + 16);
        if (c->upstream_name) {
            sprintf(c->upstream_name, "%s:%u", cmd->host, (unsigned)cmd->port);
        }
        if (cmd->port == 0) {
            tether__chaos_log(c, "upstream is now none: new connections are closed at once");
        } else {
            tether__chaos_log(c, "upstream is now %s:%u (for new connections)", cmd->host,
                              (unsigned)cmd->port);
        }
        break;
    case TETHER__CHAOS_OP_STATUS:
        log_status(c);
        break;
    }
}

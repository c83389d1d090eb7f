/* The configuration matrix of `tether bench`: which configurations run, with
 * which message counts, and what --quick and --only keep. */
#include <string.h>

#include "run.h"

#define DEFAULT_BATCH 64 /* messages per tether_client_send_batch() at full load */

/* offered msg/s in the fixed-rate runs, by message size */
static double rate_for(uint32_t size)
{
    return size <= 512 ? 20000.0 : size <= 4096 ? 5000.0 : 500.0;
}

const char *bench_store_name(bench_store s)
{
    static const char *names[] = {"raw", "memory", "off", "normal", "full"};
    return names[s];
}

/* ---- the matrix ---- */

typedef struct mctx {
    const bench_run_opts *ro;
    bench_cfg *c;
    size_t n, max;
} mctx;

static uint64_t scaled(const mctx *m, uint64_t count)
{
    uint64_t v = (uint64_t)((double)count * m->ro->scale);
    return v < 100 ? 100 : v;
}

static bench_cfg *add(mctx *m, const char *group, bench_store store, uint32_t size, uint64_t count,
                      uint64_t rate_count, const char *suffix, const char *label)
{
    if (m->n >= m->max) {
        return NULL;
    }
    bench_cfg *c = &m->c[m->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->group, sizeof c->group, "%s", group);
    snprintf(c->name, sizeof c->name, "%s/%u%s%s", bench_store_name(store), size, suffix[0] ? "/" : "",
             suffix);
    snprintf(c->label, sizeof c->label, "%s", label);
    c->store = store;
    c->size = size;
    c->count = scaled(m, count);
    c->rate_count = rate_count ? scaled(m, rate_count) : 0;
    c->rate = rate_for(size);
    c->batch = store == BS_RAW ? 0 : DEFAULT_BATCH;
    return c;
}

/* The send path's rows (issue 9): the bare SQLite floor, one send_async() per
 * message (NORMAL 64 B and 512 B, FULL 64 B), and `tether send` fed 200,000
 * lines. The one-send()-per-message row is the "batch" group's normal/64/b1. */
static void add_issue9(mctx *m, uint64_t floor_count, uint64_t async_count)
{
    bench_cfg *c = add(m, "send", BS_NORMAL, 64, floor_count, 0, "sqlite",
                       "bare SQLite INSERT per transaction");
    if (c) {
        snprintf(c->name, sizeof c->name, "sqlite/64");
        c->kind = BK_SQLITE;
    }
    static const struct {
        bench_store st;
        uint32_t size;
    } as[] = {{BS_NORMAL, 64}, {BS_NORMAL, 512}, {BS_FULL, 64}};
    for (int i = 0; i < 3; i++) {
        c = add(m, "send", as[i].st, as[i].size, async_count, 0, "async",
                "send_async() per message");
        if (c) {
            c->async = 1;
        }
    }
    c = add(m, "send", BS_NORMAL, 64, 200000, 0, "cli", "tether send, 200k stdin lines");
    if (c) {
        c->count = 200000; /* the row is defined by its count: not scaled */
        c->kind = BK_CLI;
    }
}

/* The fleet rows (--pg): ro->fleet_sessions sessions, each its own client
 * process, against raw lws, one SQLite NORMAL server, one PostgreSQL
 * instance, and three instances on the one database (fleet.c). */
static void add_fleet(mctx *m, const bench_run_opts *ro)
{
    static const uint32_t sizes[] = {64, 512};
    static const uint64_t counts[] = {600000, 300000}; /* full; quick: a quarter */
    uint32_t ns = ro->fleet_sessions;
    for (int s = 0; s < 2; s++) {
        static const struct {
            bench_store st;
            int pg;
            uint32_t instances;
            const char *label;
        } rows[] = {
            {BS_RAW, 0, 1, "raw lws, one server"},
            {BS_NORMAL, 0, 1, "one server, SQLite NORMAL"},
            {BS_NORMAL, 1, 1, "one instance, PostgreSQL"},
            {BS_NORMAL, 1, 3, "three instances, one PostgreSQL"},
        };
        for (int k = 0; k < 4; k++) {
            char suf[24];
            snprintf(suf, sizeof suf, "s%u", ns);
            uint64_t count = ro->quick ? counts[s] / 4 : counts[s];
            bench_cfg *c = add(m, "fleet", rows[k].st, sizes[s], count, 0, suf, rows[k].label);
            if (!c) {
                return;
            }
            c->count = c->count / ns * ns; /* the same number per session */
            c->count = c->count ? c->count : ns;
            c->sessions = ns;
            c->instances = rows[k].instances;
            c->pg = rows[k].pg;
            if (c->pg) {
                snprintf(c->name, sizeof c->name, "pg/%u/s%u%s", sizes[s], ns,
                         rows[k].instances > 1 ? "/i3" : "");
            }
        }
    }
}

/* 1 when b is a baseline that x is compared with (report.c): raw lws with
 * the same size and sessions; for a PostgreSQL row, the SQLite NORMAL row
 * with the same size and sessions, and for three instances the one. */
static int baseline_of(const bench_cfg *b, const bench_cfg *x)
{
    if (b->size != x->size || b->sessions != x->sessions || b == x) {
        return 0;
    }
    if (b->store == BS_RAW) {
        return x->store != BS_RAW;
    }
    if (!x->pg) {
        return 0;
    }
    if (!b->pg && b->store == BS_NORMAL) {
        return strcmp(b->group, "store") == 0 || strcmp(b->group, "fleet") == 0;
    }
    return b->pg && b->instances <= 1 && x->instances > 1;
}

static int selected(const bench_run_opts *ro, const bench_cfg *c)
{
    if (ro->n_only == 0) {
        return 1;
    }
    for (int i = 0; i < ro->n_only; i++) {
        if (strstr(c->name, ro->only[i])) {
            return 1;
        }
    }
    return 0;
}

size_t bench_matrix(const bench_run_opts *ro, bench_cfg *out, size_t max)
{
    static bench_cfg all[BENCH_CFG_MAX];
    mctx m = {ro, all, 0, BENCH_CFG_MAX};
    static const uint32_t sizes[] = {64, 512, 4096, 65536};
    /* messages per full-load run, and per fixed-rate run (about 2 s) */
    static const uint64_t counts[] = {1000000, 500000, 100000, 10000};
    static const uint64_t rate_counts[] = {40000, 40000, 10000, 1000};
    bench_cfg *c;

    if (ro->quick) {
        static const bench_store st[] = {BS_RAW, BS_MEMORY, BS_NORMAL, BS_FULL};
        for (int s = 0; s < 2; s++) {
            for (int k = 0; k < 4; k++) {
                add(&m, "store", st[k], sizes[s], 200000, 20000, "", "");
            }
        }
        c = add(&m, "batch", BS_NORMAL, 64, 50000, 20000, "b1", "send() per message");
        c->batch = 1;
        c = add(&m, "backlog", BS_NORMAL, 64, 200000, 0, "backlog", "backlog, drain");
        c->backlog = 1;
        add_issue9(&m, 100000, 200000);
    } else {
        for (int s = 0; s < 4; s++) {
            for (int k = BS_RAW; k <= BS_FULL; k++) {
                add(&m, "store", (bench_store)k, sizes[s], counts[s], rate_counts[s], "", "");
            }
        }
        /* one tether_client_send() per message: one store transaction each */
        c = add(&m, "batch", BS_MEMORY, 64, 1000000, 40000, "b1", "send() per message");
        c->batch = 1;
        c = add(&m, "batch", BS_NORMAL, 64, 200000, 40000, "b1", "send() per message");
        c->batch = 1;
        c = add(&m, "batch", BS_FULL, 64, 20000, 0, "b1", "send() per message");
        c->batch = 1;
        /* ACK policies: count triggers, and the time trigger alone */
        static const bench_store ack_st[] = {BS_MEMORY, BS_NORMAL};
        for (int k = 0; k < 2; k++) {
            static const uint32_t every[] = {1, 16, 256};
            for (int i = 0; i < 3; i++) {
                char suf[16], lab[48];
                snprintf(suf, sizeof suf, "ack%u", every[i]);
                snprintf(lab, sizeof lab, "ACK every %u", every[i]);
                c = add(&m, "ack", ack_st[k], 64, 1000000, 40000, suf, lab);
                c->ack_every = every[i];
            }
            c = add(&m, "ack", ack_st[k], 64, 1000000, 40000, "ackT", "ACK by 20 ms timer only");
            c->ack_every = 1024; /* = the window: only the timer (or a full window) acks */
            c->ack_delay = 20;
        }
        /* window sizes (ACK every min(64, window/2), the default rule) */
        for (int k = 0; k < 2; k++) {
            static const uint32_t win[] = {64, 256, 4096};
            for (int i = 0; i < 3; i++) {
                char suf[16], lab[48];
                snprintf(suf, sizeof suf, "w%u", win[i]);
                snprintf(lab, sizeof lab, "window %u", win[i]);
                c = add(&m, "window", ack_st[k], 64, 1000000, 40000, suf, lab);
                c->window = win[i];
            }
        }
        c = add(&m, "backlog", BS_NORMAL, 64, 1000000, 0, "backlog", "backlog, drain");
        c->backlog = 1;
        add_issue9(&m, 200000, 500000);
    }

    /* --pg: the server's store in PostgreSQL (the client's stays SQLite NORMAL),
     * beside the normal/64 and normal/512 rows of the same run */
    for (int s = 0; ro->pg && s < 2; s++) {
        c = add(&m, "pg", BS_NORMAL, sizes[s], ro->quick ? 200000 : counts[s],
                ro->quick ? 20000 : rate_counts[s], "", "server store in PostgreSQL");
        if (c) {
            snprintf(c->name, sizeof c->name, "pg/%u", sizes[s]);
            c->pg = 1;
        }
    }

    if (ro->pg) {
        add_fleet(&m, ro);
    }

    /* the HTTP carriage (issue 10): SQLite NORMAL, the client on HTTP long polls
     * and POSTs, beside normal/64 and normal/512 (WebSocket) and raw lws of the
     * same run; quick runs are short so bench_quick's time barely moves */
    static const uint64_t http_counts[] = {200000, 100000};
    for (int s = 0; s < 2; s++) {
        c = add(&m, "http", BS_NORMAL, sizes[s], ro->quick ? 20000 : http_counts[s],
                ro->quick ? 4000 : 20000, "", "HTTP carriage");
        if (c) {
            snprintf(c->name, sizeof c->name, "http/%u", sizes[s]);
            c->http = 1;
        }
    }

    /* --only keeps the matching configurations and their baselines (raw lws of
     * their sizes; for PostgreSQL rows the SQLite row and the one instance) */
    size_t n = 0;
    for (size_t i = 0; i < m.n && n < max; i++) {
        int keep = selected(ro, &all[i]);
        for (size_t k = 0; !keep && k < m.n; k++) {
            keep = selected(ro, &all[k]) && baseline_of(&all[i], &all[k]);
        }
        if (keep) {
            out[n++] = all[i];
        }
    }
    return n;
}


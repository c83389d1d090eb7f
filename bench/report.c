/*
 * The results: the terminal tables, results.csv, results.json, the target
 * checks of issue 4, and the plots (gnuplot, SVG).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tether/tether.h>

#include "bench.h"

static const char *store_title(bench_store s)
{
    static const char *t[] = {"raw lws", "memory", "SQLite OFF", "SQLite NORMAL", "SQLite FULL"};
    return t[s];
}

static const bench_cfg *find(const bench_cfg *c, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].name, name) == 0) {
            return &c[i];
        }
    }
    return NULL;
}

/* "-" for values that were not measured. */
static const char *f(char *buf, size_t len, const char *fmt, double v)
{
    if (v < 0) {
        snprintf(buf, len, "-");
    } else {
        snprintf(buf, len, fmt, v);
    }
    return buf;
}

/* A latency in microseconds shown in milliseconds with 3 significant digits. */
static const char *ms(char *buf, size_t len, double us)
{
    if (us < 0) {
        snprintf(buf, len, "-");
    } else if (us < 10000) {
        snprintf(buf, len, "%.3f", us / 1e3);
    } else if (us < 100000) {
        snprintf(buf, len, "%.2f", us / 1e3);
    } else {
        snprintf(buf, len, "%.0f", us / 1e3);
    }
    return buf;
}

/* ---- targets ---- */

static void target(bench_target *t, size_t *k, size_t max, const char *what, int met,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void target(bench_target *t, size_t *k, size_t max, const char *what, int met,
                   const char *fmt, ...)
{
    if (*k >= max) {
        return;
    }
    bench_target *x = &t[(*k)++];
    snprintf(x->what, sizeof x->what, "%s", what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->got, sizeof x->got, fmt, ap);
    va_end(ap);
    x->met = met;
    x->info = strncmp(what, "  ", 2) == 0;
}

/* a / b when both were measured, else -1. */
static double ratio_of(const bench_cfg *a, const bench_cfg *b)
{
    return a && b && a->msgs_s > 0 && b->msgs_s > 0 ? a->msgs_s / b->msgs_s : -1;
}

/* One ratio target: met when measured and >= want; "-" when not measured. */
static void ratio_target(bench_target *t, size_t *k, size_t max, const char *what,
                         const bench_cfg *a, const bench_cfg *b, double want)
{
    double r = ratio_of(a, b);
    if (r < 0) {
        target(t, k, max, what, -1, "not measured");
        return;
    }
    target(t, k, max, what, r >= want, "%.2fx (%.0f / %.0f msg/s)", r, a->msgs_s, b->msgs_s);
}

size_t bench_targets9(const bench_cfg *c, size_t n, bench_target *t, size_t max)
{
    size_t k = 0;
    const bench_cfg *floor = find(c, n, "sqlite/64");
    const bench_cfg *sync1 = find(c, n, "normal/64/b1");
    const bench_cfg *raw64 = find(c, n, "raw/64");
    const bench_cfg *raw512 = find(c, n, "raw/512");
    const bench_cfg *as64 = find(c, n, "normal/64/async");
    const bench_cfg *as512 = find(c, n, "normal/512/async");
    const bench_cfg *fas64 = find(c, n, "full/64/async");
    const bench_cfg *cli = find(c, n, "normal/64/cli");
    if (!floor && !as64 && !cli) {
        return 0;
    }
    ratio_target(t, &k, max, "send() per message, NORMAL >= 0.85x bare SQLite", sync1, floor,
                 0.85);
    ratio_target(t, &k, max, "send_async() per message, NORMAL 64 B >= 1.5x raw", as64, raw64,
                 1.5);
    ratio_target(t, &k, max, "send_async() per message, NORMAL 512 B >= 1.5x raw", as512, raw512,
                 1.5);
    ratio_target(t, &k, max, "send_async() per message, FULL >= 0.5x NORMAL", fas64, as64, 0.5);
    ratio_target(t, &k, max, "tether send, 200k stdin lines >= 0.8x raw", cli, raw64, 0.8);
    if (sync1 && sync1->ack_rate.p99 >= 0) {
        target(t, &k, max, "send->ack p99 < 10 ms at 20k/s, one send() each",
               sync1->ack_rate.p99 < 10000, "%.2f ms (%.0f msg/s achieved)",
               sync1->ack_rate.p99 / 1e3, sync1->rate_got);
    } else {
        target(t, &k, max, "send->ack p99 < 10 ms at 20k/s, one send() each", -1, "not measured");
    }
    return k;
}

size_t bench_targets(const bench_cfg *c, size_t n, bench_target *t, size_t max)
{
    size_t k = 0;
    const bench_cfg *mem = find(c, n, "memory/64");
    const bench_cfg *nor = find(c, n, "normal/64");
    const bench_cfg *ful = find(c, n, "full/64");
    const bench_cfg *nor512 = find(c, n, "normal/512");
    const bench_cfg *nor1 = find(c, n, "normal/64/b1");
    const bench_cfg *ful1 = find(c, n, "full/64/b1");
    const bench_cfg *bl = find(c, n, "normal/64/backlog");

    if (mem && mem->msgs_s > 0 && mem->ratio > 0) {
        target(t, &k, max, "64 B memory store >= 1.0x raw", mem->ratio >= 1.0, "%.2fx (%.0f msg/s)",
               mem->ratio, mem->msgs_s);
    }
    if (nor && nor->msgs_s > 0 && nor->ratio > 0) {
        target(t, &k, max, "64 B SQLite NORMAL >= 0.8x raw and >= 150k msg/s",
               nor->ratio >= 0.8 && nor->msgs_s >= 150000, "%.2fx, %.0f msg/s", nor->ratio,
               nor->msgs_s);
    }
    if (nor1 && nor1->msgs_s > 0) {
        target(t, &k, max, "  (same with one send() per message)",
               nor1->ratio >= 0.8 && nor1->msgs_s >= 150000, "%.2fx, %.0f msg/s", nor1->ratio,
               nor1->msgs_s);
    }
    if (ful && ful->msgs_s > 0) {
        target(t, &k, max, "64 B SQLite FULL >= 50k msg/s", ful->msgs_s >= 50000, "%.0f msg/s",
               ful->msgs_s);
    }
    if (ful1 && ful1->msgs_s > 0) {
        target(t, &k, max, "  (same with one send() per message)", ful1->msgs_s >= 50000,
               "%.0f msg/s", ful1->msgs_s);
    }
    if (nor512 && nor512->msgs_s > 0) {
        target(t, &k, max, "512 B SQLite NORMAL >= 90k msg/s", nor512->msgs_s >= 90000,
               "%.0f msg/s", nor512->msgs_s);
    }
    if (nor && nor->ack_rate.p99 >= 0) {
        target(t, &k, max, "send-to-ack p99 < 5 ms at 20k msg/s, NORMAL", nor->ack_rate.p99 < 5000,
               "p99 %.3f ms (p99.9 %.3f ms)", nor->ack_rate.p99 / 1e3, nor->ack_rate.p999 / 1e3);
    }
    if (nor1 && nor1->ack_rate.p99 >= 0) {
        target(t, &k, max, "  (same with one send() per message)", nor1->ack_rate.p99 < 5000,
               "p99 %.3f ms (p99.9 %.3f ms)", nor1->ack_rate.p99 / 1e3, nor1->ack_rate.p999 / 1e3);
    }
    if (bl && bl->msgs_s > 0) {
        target(t, &k, max, "backlog drains >= 150k msg/s, client RSS < 64 MiB",
               bl->msgs_s >= 150000 && bl->cli_rss_mb < 64, "%.0f msg/s, RSS %.1f MiB (%llu msgs)",
               bl->msgs_s, bl->cli_rss_mb, (unsigned long long)bl->count);
    }
    const bench_cfg *ackc = nor ? nor : mem;
    if (ackc && ackc->wire_ack >= 0 && ackc->msgs_s > 0) {
        target(t, &k, max, "ACK bytes < 0.2 per message, default policy", ackc->wire_ack < 0.2,
               "%.3f B/msg (%s)", ackc->wire_ack, ackc->name);
    }
    return k;
}

/* ---- the terminal ---- */

/* The HTTP carriage's rows as ratios against WebSocket (the normal/ row of
 * the same size) and raw lws, all of this run. */
static void report_http(FILE *out, const bench_cfg *c, size_t n)
{
    int head = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *h = &c[i];
        char name[32], raw[32];
        if (!h->http || !h->ok) {
            continue;
        }
        snprintf(name, sizeof name, "normal/%u", h->size);
        snprintf(raw, sizeof raw, "raw/%u", h->size);
        const bench_cfg *ws = find(c, n, name);
        const bench_cfg *rw = find(c, n, raw);
        if (!ws || !ws->ok) {
            continue;
        }
        if (!head) {
            fprintf(out, "\nHTTP carriage against WebSocket, same run, SQLite NORMAL "
                         "(x = http / ws; CPU per message):\n"
                         "%-6s %9s %9s %6s %6s | %8s %8s | %s\n",
                    "size", "http/s", "ws/s", "x ws", "x raw", "x CPU cl", "x CPU sv",
                    "fixed-rate send->ack p50 ms, http / ws");
            head = 1;
        }
        fprintf(out, "%-6u %9.0f %9.0f %6.2f %6.2f | %8.2f %8.2f | %.2f / %.2f\n", h->size,
                h->msgs_s, ws->msgs_s, ratio_of(h, ws), rw && rw->ok ? ratio_of(h, rw) : -1.0,
                ws->cli_cpu_m > 0 ? h->cli_cpu_m / ws->cli_cpu_m : -1.0,
                ws->srv_cpu_m > 0 ? h->srv_cpu_m / ws->srv_cpu_m : -1.0,
                h->ack_rate.p50 / 1000.0, ws->ack_rate.p50 / 1000.0);
    }
}

/* The PostgreSQL rows as ratios, all of this run: against raw lws and the
 * SQLite server with the same sessions, three instances against one; the
 * database's WAL and CPU per message. */
static void report_pg(FILE *out, const bench_cfg *c, size_t n)
{
    int head = 0;
    char a[16], b[16], d[16], e[16], g[16], h[16], i1[16], j1[16], k1[16], l1[16];
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        if (!x->pg && !(x->sessions > 1)) {
            continue;
        }
        if (!head) {
            fprintf(out, "\nPostgreSQL store and several sessions, same run. x raw / x SQLite: msg/s\n"
                         "over raw lws / the SQLite NORMAL server with as many sessions and the same\n"
                         "size; x 1 inst: three instances over one. CPU s per million messages (pg:\n"
                         "the database's processes, when it runs on this machine); ack p50: mean of\n"
                         "the sessions', p99: the largest; WAL: bytes per message.\n"
                         "%-16s %4s %4s %9s %6s %8s %8s | %7s %7s %7s | %7s %7s | %6s\n",
                    "config", "sess", "inst", "msg/s", "x raw", "x SQLite", "x 1 inst", "CPU cli",
                    "CPU srv", "CPU pg", "ack p50", "p99 ms", "WAL B");
            head = 1;
        }
        char name[64];
        snprintf(name, sizeof name, "%s%s", x->name, x->ok ? "" : " !");
        fprintf(out, "%-16s %4u %4u %9s %6s %8s %8s | %7s %7s %7s | %7s %7s | %6s\n", name,
                x->sessions ? x->sessions : 1, x->instances ? x->instances : 1,
                f(a, sizeof a, "%.0f", x->msgs_s), f(b, sizeof b, "%.2f", x->ratio),
                f(d, sizeof d, "%.2f", x->x_sqlite), f(e, sizeof e, "%.2f", x->x_one),
                f(g, sizeof g, "%.2f", x->cli_cpu_m), f(h, sizeof h, "%.2f", x->srv_cpu_m),
                f(i1, sizeof i1, "%.2f", x->pg_cpu_m), ms(j1, sizeof j1, x->ack_full.p50),
                ms(k1, sizeof k1, x->ack_full.p99), f(l1, sizeof l1, "%.1f", x->wal_b));
    }
}

void report_table(FILE *out, const bench_machine *m, const bench_cfg *c, size_t n, int quick,
                  int repeats)
{
    char a[16], b[16], d[16], e[16], g[16], h[16], i1[16], j1[16], k1[16], l1[16], m1[16], n1[16],
        o1[16];
    fprintf(out, "\ntether bench, %s, %s mode, %d run%s per configuration\n", m->date,
            quick ? "quick" : "full", repeats, repeats > 1 ? "s (medians)" : "");
    fprintf(out, "machine: %d x %s; %s; libwebsockets %s; SQLite %s\n", m->nproc, m->cpu,
            m->kernel, m->lws, m->sqlite);
    fprintf(out, "load average: %.2f before, %.2f after", m->load_start[0], m->load_end[0]);
    if (m->psi_cpu_start >= 0) {
        fprintf(out, "; pressure (some, avg60): cpu %.1f%% -> %.1f%%, io %.1f%% -> %.1f%%",
                m->psi_cpu_start, m->psi_cpu_end, m->psi_io_start, m->psi_io_end);
    }
    fprintf(out, "\n");
    fprintf(out,
            "\nThroughput and cost at full load. Client -> server on loopback; tether rows: the\n"
            "producer hands messages in batches of up to 64 (tether_client_send_batch, one store\n"
            "transaction each) unless the row says otherwise, window 1024, ACK every 64 or 20 ms.\n"
            "CPU: seconds per million messages; wire: TCP payload bytes per message.\n\n");
    fprintf(out, "%-24s %9s %8s %6s | %7s %7s | %6s %7s %6s | %6s %6s\n", "config", "msg/s", "MB/s",
            "x raw", "CPU cli", "CPU srv", "data", "framing", "ack", "RSS cl", "RSS sv");
    const char *grp = "";
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        if (x->backlog) {
            continue;
        }
        if (strcmp(grp, x->group) != 0 || (i > 0 && c[i - 1].size != x->size &&
                                          strcmp(x->group, "store") == 0)) {
            if (i > 0) {
                fprintf(out, "\n");
            }
            grp = x->group;
        }
        char name[64];
        snprintf(name, sizeof name, "%s%s", x->name, x->ok ? "" : " !");
        fprintf(out, "%-24s %9s %8s %6s | %7s %7s | %6s %7s %6s | %6s %6s\n", name,
                f(a, sizeof a, "%.0f", x->msgs_s), f(b, sizeof b, "%.1f", x->mb_s),
                f(d, sizeof d, "%.2f", x->ratio), f(e, sizeof e, "%.2f", x->cli_cpu_m),
                f(g, sizeof g, "%.2f", x->srv_cpu_m), f(h, sizeof h, "%.1f", x->wire_data),
                f(i1, sizeof i1, "%.2f", x->wire_data >= 0 ? x->wire_data - x->size : -1),
                f(j1, sizeof j1, "%.3f", x->wire_ack), f(k1, sizeof k1, "%.1f", x->cli_rss_mb),
                f(l1, sizeof l1, "%.1f", x->srv_rss_mb));
    }

    fprintf(out,
            "\nLatency in ms. Full load: the producer keeps up to 4 x window unacked, so these are\n"
            "mostly queueing. Fixed rate: messages due at a steady rate (20k/s up to 512 B, 5k/s at\n"
            "4 KiB, 500/s at 64 KiB), timed from when each was due.\n\n");
    fprintf(out, "%-24s %-23s %-23s | %7s %-23s %-23s %5s\n", "", "full load: send->ack",
            "send->deliver", "rate", "fixed rate: send->ack", "send->deliver", "ack");
    fprintf(out, "%-24s %7s %7s %7s %7s %7s %7s | %7s %7s %7s %7s %7s %7s %7s %5s\n", "config",
            "p50", "p99", "p99.9", "p50", "p99", "p99.9", "msg/s", "p50", "p99", "p99.9", "p50",
            "p99", "p99.9", "B/msg");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        if (x->backlog) {
            continue;
        }
        char q1[16];
        fprintf(out, "%-24s %7s %7s %7s %7s %7s %7s | %7s %7s %7s %7s %7s %7s %7s %5s\n", x->name,
                ms(a, sizeof a, x->ack_full.p50), ms(b, sizeof b, x->ack_full.p99),
                ms(d, sizeof d, x->ack_full.p999), ms(e, sizeof e, x->dlv_full.p50),
                ms(g, sizeof g, x->dlv_full.p99), ms(h, sizeof h, x->dlv_full.p999),
                f(i1, sizeof i1, "%.0f", x->rate_got), ms(j1, sizeof j1, x->ack_rate.p50),
                ms(k1, sizeof k1, x->ack_rate.p99), ms(l1, sizeof l1, x->ack_rate.p999),
                ms(m1, sizeof m1, x->dlv_rate.p50), ms(n1, sizeof n1, x->dlv_rate.p99),
                ms(o1, sizeof o1, x->dlv_rate.p999),
                f(q1, sizeof q1, x->rate_wire_ack >= 1 ? "%.1f" : "%.2f", x->rate_wire_ack));
    }

    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        if (!x->backlog) {
            continue;
        }
        fprintf(out, "\nBacklog (%s, %u B): %llu messages queued before connecting in %s s",
                store_title(x->store), x->size, (unsigned long long)x->count,
                f(a, sizeof a, "%.2f", x->fill_s));
        if (x->fill_s > 0) {
            fprintf(out, " (%.0f msg/s)", (double)x->count / x->fill_s);
        }
        fprintf(out, ",\nthen drained at %s msg/s (%s MB/s); peak RSS client %s MiB, server %s MiB;\n"
                     "CPU s per million: client %s, server %s%s\n",
                f(b, sizeof b, "%.0f", x->msgs_s), f(d, sizeof d, "%.1f", x->mb_s),
                f(e, sizeof e, "%.1f", x->cli_rss_mb), f(g, sizeof g, "%.1f", x->srv_rss_mb),
                f(h, sizeof h, "%.2f", x->cli_cpu_m), f(i1, sizeof i1, "%.2f", x->srv_cpu_m),
                x->ok ? "" : " (FAILED)");
    }

    report_http(out, c, n);
    report_pg(out, c, n);

    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok) {
            if (!bad) {
                fprintf(out, "\nFailed configurations (marked !):\n");
            }
            bad = 1;
            fprintf(out, "  %s: %d of the runs succeeded: %s\n", c[i].name, c[i].runs, c[i].error);
        }
    }

    bench_target t[16];
    size_t nt = bench_targets(c, n, t, 16);
    if (nt) {
        fprintf(out, "\nTargets of issue 4 (64 B unless stated; indented lines are not targets: the\n"
                     "same threshold applied to the one-send()-per-message rows, for comparison):\n");
        for (size_t i = 0; i < nt; i++) {
            fprintf(out, "  %-52s %-7s %s\n", t[i].what,
                    t[i].info ? (t[i].met > 0 ? "(yes)" : "(no)")
                              : (t[i].met > 0 ? "met" : t[i].met == 0 ? "MISSED" : "-"),
                    t[i].got);
        }
    }
    nt = bench_targets9(c, n, t, 16);
    if (nt) {
        fprintf(out, "\nTargets of issue 9 (the send path; ratios measured in this run, never\n"
                     "asserted; 'bare SQLite' is one INSERT per transaction, WAL, NORMAL):\n");
        for (size_t i = 0; i < nt; i++) {
            fprintf(out, "  %-52s %-7s %s\n", t[i].what,
                    t[i].met > 0 ? "met" : t[i].met == 0 ? "MISSED" : "-", t[i].got);
        }
    }
    fprintf(out, "\n");
    fflush(out);
}

/* ---- files ---- */

static const char *store_key(bench_store s)
{
    static const char *names[] = {"raw", "memory", "off", "normal", "full"};
    return names[s];
}

static void csv_num(FILE *fp, double v)
{
    if (v < 0) {
        fprintf(fp, ",");
    } else {
        fprintf(fp, ",%.6g", v);
    }
}

static void json_num(FILE *fp, const char *key, double v, int comma)
{
    if (v < 0) {
        fprintf(fp, "\"%s\":null%s", key, comma ? "," : "");
    } else {
        fprintf(fp, "\"%s\":%.6g%s", key, v, comma ? "," : "");
    }
}

static void json_str(FILE *fp, const char *key, const char *v, int comma)
{
    fprintf(fp, "\"%s\":\"", key);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', fp);
        }
        fputc((unsigned char)*p < 0x20 ? ' ' : *p, fp);
    }
    fprintf(fp, "\"%s", comma ? "," : "");
}

static void json_lat(FILE *fp, const char *key, const lat4 *l)
{
    fprintf(fp, "\"%s\":{", key);
    json_num(fp, "p50", l->p50, 1);
    json_num(fp, "p99", l->p99, 1);
    json_num(fp, "p999", l->p999, 1);
    json_num(fp, "max", l->max, 0);
    fprintf(fp, "},");
}

int report_files(const char *dir, const bench_machine *m, const bench_cfg *c, size_t n, int quick,
                 int repeats)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.csv", dir);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        return -1;
    }
    fprintf(fp, "name,group,label,store,size,count,batch,window,ack_every,ack_delay_ms,backlog,ok,"
                "runs,msgs_per_s,mb_per_s,ratio_to_raw,client_cpu_s_per_M,server_cpu_s_per_M,"
                "client_rss_mib,server_rss_mib,wire_data_b_per_msg,wire_framing_b_per_msg,"
                "wire_ack_b_per_msg,acks_per_msg,full_ack_p50_us,full_ack_p99_us,"
                "full_ack_p999_us,full_ack_max_us,full_deliver_p50_us,full_deliver_p99_us,"
                "full_deliver_p999_us,full_deliver_max_us,rate_offered,rate_count,rate_achieved,"
                "rate_ack_p50_us,rate_ack_p99_us,rate_ack_p999_us,rate_ack_max_us,"
                "rate_deliver_p50_us,rate_deliver_p99_us,rate_deliver_p999_us,"
                "rate_deliver_max_us,rate_wire_ack_b_per_msg,backlog_fill_s,sessions,instances,"
                "ratio_to_sqlite,ratio_to_one_instance,pg_wal_b_per_msg,pg_cpu_s_per_M,error\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        fprintf(fp, "%s,%s,\"%s\",%s,%u,%llu,%u,%u,%u,%u,%d,%d,%d", x->name, x->group, x->label,
                store_key(x->store), x->size, (unsigned long long)x->count, x->batch, x->window,
                x->ack_every, x->ack_delay, x->backlog, x->ok, x->runs);
        double v[] = {x->msgs_s, x->mb_s, x->ratio, x->cli_cpu_m, x->srv_cpu_m, x->cli_rss_mb,
                      x->srv_rss_mb, x->wire_data,
                      x->wire_data >= 0 ? x->wire_data - x->size : -1, x->wire_ack,
                      x->acks_per_msg, x->ack_full.p50, x->ack_full.p99, x->ack_full.p999,
                      x->ack_full.max, x->dlv_full.p50, x->dlv_full.p99, x->dlv_full.p999,
                      x->dlv_full.max, x->rate_count ? x->rate : -1,
                      x->rate_count ? (double)x->rate_count : -1, x->rate_got, x->ack_rate.p50,
                      x->ack_rate.p99, x->ack_rate.p999, x->ack_rate.max, x->dlv_rate.p50,
                      x->dlv_rate.p99, x->dlv_rate.p999, x->dlv_rate.max, x->rate_wire_ack,
                      x->backlog ? x->fill_s : -1, x->sessions ? x->sessions : 1,
                      x->instances ? x->instances : 1, x->x_sqlite, x->x_one, x->wal_b,
                      x->pg_cpu_m};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            csv_num(fp, v[k]);
        }
        fprintf(fp, ",\"");
        for (const char *p = x->error; *p; p++) {
            fputc(*p == '"' ? '\'' : *p, fp);
        }
        fprintf(fp, "\"\n");
    }
    if (fclose(fp) != 0) {
        return -1;
    }

    snprintf(path, sizeof path, "%s/results.json", dir);
    fp = fopen(path, "w");
    if (!fp) {
        return -1;
    }
    fprintf(fp, "{\n  \"tool\":\"tether bench\",");
    json_str(fp, "tether", tether_version(), 1);
    json_str(fp, "mode", quick ? "quick" : "full", 1);
    fprintf(fp, "\"repeats\":%d,", repeats);
    json_str(fp, "date", m->date, 1);
    json_str(fp, "command", m->cmdline, 1);
    fprintf(fp, "\n  \"machine\":{\"nproc\":%d,", m->nproc);
    json_str(fp, "cpu", m->cpu, 1);
    json_str(fp, "kernel", m->kernel, 1);
    json_str(fp, "libwebsockets", m->lws, 1);
    json_str(fp, "sqlite", m->sqlite, 1);
    fprintf(fp, "\"load_start\":[%.2f,%.2f,%.2f],\"load_end\":[%.2f,%.2f,%.2f],",
            m->load_start[0], m->load_start[1], m->load_start[2], m->load_end[0], m->load_end[1],
            m->load_end[2]);
    json_num(fp, "psi_cpu_some_avg60_start", m->psi_cpu_start, 1);
    json_num(fp, "psi_cpu_some_avg60_end", m->psi_cpu_end, 1);
    json_num(fp, "psi_io_some_avg60_start", m->psi_io_start, 1);
    json_num(fp, "psi_io_some_avg60_end", m->psi_io_end, 0);
    fprintf(fp, "},\n");
    fprintf(fp, "  \"units\":{\"latency\":\"us\",\"cpu\":\"s per million messages\","
                "\"rss\":\"MiB\",\"wire\":\"TCP payload bytes per message\","
                "\"mb_per_s\":\"10^6 payload bytes per second\"},\n");
    fprintf(fp, "  \"configs\":[\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        fprintf(fp, "    {");
        json_str(fp, "name", x->name, 1);
        json_str(fp, "group", x->group, 1);
        json_str(fp, "label", x->label, 1);
        json_str(fp, "store", store_key(x->store), 1);
        fprintf(fp, "\"size\":%u,\"count\":%llu,\"batch\":%u,\"window\":%u,\"ack_every\":%u,"
                    "\"ack_delay_ms\":%u,\"backlog\":%s,\"ok\":%s,\"runs\":%d,",
                x->size, (unsigned long long)x->count, x->batch, x->window, x->ack_every,
                x->ack_delay, x->backlog ? "true" : "false", x->ok ? "true" : "false", x->runs);
        json_num(fp, "msgs_per_s", x->msgs_s, 1);
        json_num(fp, "mb_per_s", x->mb_s, 1);
        json_num(fp, "ratio_to_raw", x->ratio, 1);
        json_num(fp, "client_cpu_s_per_M", x->cli_cpu_m, 1);
        json_num(fp, "server_cpu_s_per_M", x->srv_cpu_m, 1);
        json_num(fp, "client_rss_mib", x->cli_rss_mb, 1);
        json_num(fp, "server_rss_mib", x->srv_rss_mb, 1);
        json_num(fp, "wire_data_b_per_msg", x->wire_data, 1);
        json_num(fp, "wire_framing_b_per_msg", x->wire_data >= 0 ? x->wire_data - x->size : -1, 1);
        json_num(fp, "wire_ack_b_per_msg", x->wire_ack, 1);
        json_num(fp, "acks_per_msg", x->acks_per_msg, 1);
        json_lat(fp, "full_send_to_ack_us", &x->ack_full);
        json_lat(fp, "full_send_to_deliver_us", &x->dlv_full);
        json_num(fp, "rate_offered", x->rate_count ? x->rate : -1, 1);
        json_num(fp, "rate_achieved", x->rate_got, 1);
        json_lat(fp, "rate_send_to_ack_us", &x->ack_rate);
        json_lat(fp, "rate_send_to_deliver_us", &x->dlv_rate);
        json_num(fp, "rate_wire_ack_b_per_msg", x->rate_wire_ack, 1);
        json_num(fp, "backlog_fill_s", x->backlog ? x->fill_s : -1, 1);
        fprintf(fp, "\"sessions\":%u,\"instances\":%u,", x->sessions ? x->sessions : 1,
                x->instances ? x->instances : 1);
        json_num(fp, "ratio_to_sqlite", x->x_sqlite, 1);
        json_num(fp, "ratio_to_one_instance", x->x_one, 1);
        json_num(fp, "pg_wal_b_per_msg", x->wal_b, 1);
        json_num(fp, "pg_cpu_s_per_M", x->pg_cpu_m, 1);
        json_str(fp, "error", x->error, 0);
        fprintf(fp, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(fp, "  ],\n  \"targets\":[\n");
    bench_target t[16];
    size_t nt = bench_targets(c, n, t, 16);
    for (size_t i = 0; i < nt; i++) {
        fprintf(fp, "    {");
        json_str(fp, "target", t[i].what, 1);
        json_str(fp, "measured", t[i].got, 1);
        fprintf(fp, "\"met\":%s,\"info_only\":%s}%s\n",
                t[i].met > 0 ? "true" : t[i].met == 0 ? "false" : "null",
                t[i].info ? "true" : "false", i + 1 < nt ? "," : "");
    }
    fprintf(fp, "  ],\n  \"targets_issue9\":[\n");
    nt = bench_targets9(c, n, t, 16);
    for (size_t i = 0; i < nt; i++) {
        fprintf(fp, "    {");
        json_str(fp, "target", t[i].what, 1);
        json_str(fp, "measured", t[i].got, 1);
        fprintf(fp, "\"met\":%s}%s\n", t[i].met > 0 ? "true" : t[i].met == 0 ? "false" : "null",
                i + 1 < nt ? "," : "");
    }
    fprintf(fp, "  ]\n}\n");
    return fclose(fp) != 0 ? -1 : 0;
}

/* ---- plots ---- */

static int have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

static void dat_val(FILE *fp, double v)
{
    if (v < 0) {
        fprintf(fp, " ?");
    } else {
        fprintf(fp, " %.6g", v);
    }
}

static const char plot_script[] =
    "# run as: gnuplot -e \"ext='svg'\" plots.gp   (or ext='png')\n"
    "if (!exists('ext')) ext = 'svg'\n"
    "if (!exists('w')) w = 1200\n"
    "if (ext eq 'png') {\n"
    "  set terminal pngcairo size w,640 font 'sans,10' background rgb 'white'\n"
    "} else {\n"
    "  set terminal svg size w,640 dynamic font 'sans,11' background rgb 'white'\n"
    "}\n"
    "set datafile missing '?'\n"
    "set style fill solid 0.85 border -1\n"
    "set grid ytics lc rgb '#dddddd'\n"
    "set xtics rotate by -50 scale 0 font ',9'\n"
    "set rmargin 8\n"
    "set style data histograms\n"
    "set boxwidth 0.8\n"
    "\n"
    "set output 'throughput.'.ext\n"
    "set title 'Throughput at full load (client -> server, loopback; log scale)'\n"
    "set ylabel 'messages per second'\n"
    "set logscale y\n"
    "set style histogram clustered gap 1\n"
    "unset key\n"
    "plot 'throughput.dat' using 2:xtic(1) lc rgb '#3b75af'\n"
    "\n"
    "set output 'overhead.'.ext\n"
    "set title 'Throughput relative to the raw libwebsockets baseline of the same size, same run (log scale)'\n"
    "set ylabel 'x raw (1 = raw lws, one frame per message)'\n"
    "set key inside top left\n"
    "plot 'throughput.dat' using 3:xtic(1) title 'tether / raw' lc rgb '#519e3e', \\\n"
    "     1 with lines lc rgb '#c03d3e' lw 2 title '1.0 (raw)'\n"
    "\n"
    "set output 'latency.'.ext\n"
    "set title 'Latency at a fixed offered rate (20k msg/s up to 512 B, 5k/s at 4 KiB, 500/s at 64 KiB; log scale)'\n"
    "set ylabel 'milliseconds'\n"
    "set style histogram clustered gap 2\n"
    "set key below horizontal maxrows 1\n"
    "plot 'latency.dat' using 2:xtic(1) title 'send->ack p50' lc rgb '#a6cee3', \\\n"
    "     '' using 3 title 'send->ack p99' lc rgb '#1f78b4', \\\n"
    "     '' using 4 title 'send->ack p99.9' lc rgb '#08306b', \\\n"
    "     '' using 5 title 'send->deliver p50' lc rgb '#fdbf6f', \\\n"
    "     '' using 6 title 'send->deliver p99' lc rgb '#ff7f00', \\\n"
    "     '' using 7 title 'send->deliver p99.9' lc rgb '#b15928'\n";

int report_plots(const char *dir, const bench_cfg *c, size_t n)
{
    if (!have_gnuplot()) {
        fprintf(stderr, "tether bench: gnuplot not found, so no plots were drawn "
                        "(apt-get install gnuplot-nox); the CSV and JSON are complete\n");
        return 1;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/throughput.dat", dir);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        return -1;
    }
    fprintf(fp, "# config msgs_per_s ratio_to_raw\n");
    for (size_t i = 0; i < n; i++) {
        if (c[i].backlog) {
            continue;
        }
        fprintf(fp, "\"%s\"", c[i].name);
        dat_val(fp, c[i].msgs_s);
        dat_val(fp, c[i].ratio);
        fprintf(fp, "\n");
    }
    fclose(fp);
    snprintf(path, sizeof path, "%s/latency.dat", dir);
    fp = fopen(path, "w");
    if (!fp) {
        return -1;
    }
    fprintf(fp, "# config, fixed rate, ms: ack p50 p99 p99.9 deliver p50 p99 p99.9\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *x = &c[i];
        if (!x->rate_count) {
            continue;
        }
        fprintf(fp, "\"%s\"", x->name);
        double v[] = {x->ack_rate.p50, x->ack_rate.p99, x->ack_rate.p999,
                      x->dlv_rate.p50, x->dlv_rate.p99, x->dlv_rate.p999};
        for (int k = 0; k < 6; k++) {
            dat_val(fp, v[k] < 0 ? -1 : v[k] / 1e3);
        }
        fprintf(fp, "\n");
    }
    fclose(fp);
    snprintf(path, sizeof path, "%s/plots.gp", dir);
    fp = fopen(path, "w");
    if (!fp) {
        return -1;
    }
    /* wide enough for the number of configurations */
    size_t bars = 0;
    for (size_t i = 0; i < n; i++) {
        bars += !c[i].backlog;
    }
    fprintf(fp, "w = %zu\n", bars * 36 + 300 > 1200 ? bars * 36 + 300 : 1200);
    fputs(plot_script, fp);
    fclose(fp);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && gnuplot -e \"ext='svg'\" plots.gp 2>gnuplot.log && "
             "gnuplot -e \"ext='png'\" plots.gp 2>>gnuplot.log",
             dir);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "tether bench: gnuplot failed (see %s/gnuplot.log)\n", dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/gnuplot.log", dir);
    unlink(path);
    fprintf(stderr, "tether bench: plots in %s: throughput, latency, overhead (.svg and .png)\n",
            dir);
    return 0;
}

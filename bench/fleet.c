/*
 * The fleet rows (bench/README.md, "Several sessions and instances"): one
 * run with c->sessions client processes (one tether session, or one raw
 * connection, each) spread round-robin over c->instances server processes,
 * which for the PostgreSQL rows share one database, as `tether serve`
 * instances of a fleet do. Every client connects first and says so; then all
 * start sending at once, so that the aggregate rate is measured over the
 * time they all run. Around PostgreSQL rows the database's WAL position and
 * the CPU of its processes are read before and after.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run.h"
#include "store/store.h"

#define FLEET_INSTANCES_MAX 8 /* server processes of one row at most */

/* ---- the database's WAL and CPU ---- */

void bench_pg_mark_take(const char *uri, bench_pg_mark *m, char *why, size_t len)
{
    memset(m, 0, sizeof *m);
    tether__pg_probe p;
    char err[256] = "";
    if (tether__store_pg_probe(uri, &p, err, sizeof err) != TETHER_OK) {
        snprintf(why, len, "%s", err);
        return;
    }
    m->ok = 1;
    m->wal = p.wal_lsn;
    m->local = p.local;
    for (int i = 0; p.local && i < p.npids && m->n < (int)(sizeof m->pid / sizeof m->pid[0]); i++) {
        double cpu = bench_proc_cpu_s(p.pids[i]);
        if (cpu >= 0) {
            m->pid[m->n] = p.pids[i];
            m->cpu[m->n++] = cpu;
        }
    }
}

void bench_pg_mark_diff(const bench_pg_mark *a, const bench_pg_mark *b, uint64_t msgs, run_res *r)
{
    r->wal_b = r->pg_cpu_m = -1;
    if (!a->ok || !b->ok || msgs == 0) {
        return;
    }
    r->wal_b = b->wal >= a->wal ? (double)(b->wal - a->wal) / (double)msgs : -1;
    if (!a->local || !b->local) {
        return;
    }
    /* processes at the end: their CPU since the start, or all of it when they
     * started during the run (a connection opened late) */
    double cpu = 0;
    for (int i = 0; i < b->n; i++) {
        double before = 0;
        for (int k = 0; k < a->n; k++) {
            if (a->pid[k] == b->pid[i]) {
                before = a->cpu[k];
            }
        }
        cpu += b->cpu[i] > before ? b->cpu[i] - before : 0;
    }
    r->pg_cpu_m = cpu / (double)msgs * 1e6;
}

/* ---- one fleet run ---- */

typedef struct peer_args {
    char *argv[40]; /* for bench_spawn */
    int n;          /* used */
} peer_args;

static void arg(peer_args *a, const char *v)
{
    if (a->n < 39) {
        a->argv[a->n++] = (char *)v;
        a->argv[a->n] = NULL;
    }
}

/* Ends every process started, servers last (they send the last ACKs). */
static void end_all(bench_child *srv, uint32_t ni, bench_child *cli, uint32_t ns)
{
    for (uint32_t i = 0; i < ns; i++) {
        bench_child_end(&cli[i], 10000);
    }
    for (uint32_t i = 0; i < ni; i++) {
        bench_child_end(&srv[i], 10000);
    }
}

/* bench_child_line() that leaves line empty when no whole line came (why_of
 * then reads no error from it rather than what was there before). */
static int child_line(bench_child *ch, char *line, size_t len, int timeout_ms)
{
    int rc = bench_child_line(ch, line, len, timeout_ms);
    if (rc != 0) {
        line[0] = '\0';
    }
    return rc;
}

static void why_of(const char *line, const char *what, char *out, size_t len)
{
    char e[200] = "";
    bj_get_str(line, "error", e, sizeof e);
    snprintf(out, len, "%s%s%s", what, e[0] ? ": " : "", e);
}

int bench_run_fleet(const bench_run_opts *ro, const bench_cfg *c, int rep, run_res *r)
{
    memset(r, 0, sizeof *r);
    r->wal_b = r->pg_cpu_m = -1;
    uint32_t ns = c->sessions, ni = c->instances ? c->instances : 1;
    if (ns < 1 || ns > BENCH_SESSIONS_MAX || ni > FLEET_INSTANCES_MAX || ni > ns ||
        (ni > 1 && !c->pg && c->store != BS_RAW)) {
        snprintf(r->error, sizeof r->error, "fleet: %u sessions over %u instances is not a run", ns,
                 ni);
        return -1;
    }
    uint64_t per = c->count / ns; /* messages per session */
    uint64_t total = per * ns;
    char dir[PATH_MAX], sdb[PATH_MAX + 16];
    static char cdb[BENCH_SESSIONS_MAX][PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/scratch", ro->out);
    mkdir(dir, 0755);
    snprintf(sdb, sizeof sdb, "%s/server.db", dir);
    bench_rm_db(sdb);
    unsigned timeout = ro->quick ? 60 : 240;
    char a_store[16], a_size[16], a_per[24], a_batch[16], a_to[16], a_page[16];
    char a_scount[FLEET_INSTANCES_MAX][24], a_sess[FLEET_INSTANCES_MAX][16], url[FLEET_INSTANCES_MAX][64];
    snprintf(a_store, sizeof a_store, "%s", bench_store_name(c->store));
    snprintf(a_size, sizeof a_size, "%u", c->size);
    snprintf(a_per, sizeof a_per, "%llu", (unsigned long long)per);
    snprintf(a_batch, sizeof a_batch, "%u", c->batch ? c->batch : 1);
    snprintf(a_to, sizeof a_to, "%u", timeout);
    snprintf(a_page, sizeof a_page, "%u", ro->page_size);

    bench_child srv[FLEET_INSTANCES_MAX], *cli = calloc(ns, sizeof *cli);
    memset(srv, 0, sizeof srv);
    if (!cli) {
        snprintf(r->error, sizeof r->error, "fleet: out of memory");
        return -1;
    }
    char line[4096] = "";
    int ok = 1;
    /* the servers: instance i serves sessions i, i + ni, ... */
    for (uint32_t i = 0; ok && i < ni; i++) {
        uint32_t mine = ns / ni + (i < ns % ni ? 1 : 0);
        snprintf(a_scount[i], sizeof a_scount[i], "%llu", (unsigned long long)(per * mine));
        snprintf(a_sess[i], sizeof a_sess[i], "%u", mine);
        peer_args a = {.n = 0};
        arg(&a, "tether");
        arg(&a, "bench");
        arg(&a, "--role");
        arg(&a, "server");
        arg(&a, "--store");
        arg(&a, a_store);
        arg(&a, "--db");
        arg(&a, c->pg ? ro->pg : sdb);
        arg(&a, "--size");
        arg(&a, a_size);
        arg(&a, "--count");
        arg(&a, a_scount[i]);
        arg(&a, "--sessions");
        arg(&a, a_sess[i]);
        arg(&a, "--timeout");
        arg(&a, a_to);
        if (bench_spawn(&srv[i], a.argv) != 0) {
            snprintf(r->error, sizeof r->error, "cannot start server process %u", i + 1);
            ok = 0;
        } else if (child_line(&srv[i], line, sizeof line, 10000) != 0 ||
                   bj_get(line, "port", 0) <= 0) {
            why_of(line, "server did not start", r->error, sizeof r->error);
            ok = 0;
        } else {
            snprintf(url[i], sizeof url[i], "ws://127.0.0.1:%d/", (int)bj_get(line, "port", 0));
        }
    }
    bench_pg_mark m0, m1;
    char pgwhy[256] = "";
    m0.ok = m1.ok = 0;
    /* the clients: each connects, says it is live and waits for the start */
    for (uint32_t i = 0; ok && i < ns; i++) {
        snprintf(cdb[i], sizeof cdb[i], "%s/client%u.db", dir, i);
        bench_rm_db(cdb[i]);
        peer_args a = {.n = 0};
        arg(&a, "tether");
        arg(&a, "bench");
        arg(&a, "--role");
        arg(&a, "client");
        arg(&a, "--store");
        arg(&a, a_store);
        arg(&a, "--url");
        arg(&a, url[i % ni]);
        arg(&a, "--db");
        arg(&a, cdb[i]);
        arg(&a, "--size");
        arg(&a, a_size);
        arg(&a, "--count");
        arg(&a, a_per);
        arg(&a, "--batch");
        arg(&a, a_batch);
        arg(&a, "--timeout");
        arg(&a, a_to);
        arg(&a, "--page-size");
        arg(&a, a_page);
        if (c->store != BS_RAW) {
            arg(&a, "--wait-go");
        }
        if (bench_spawn(&cli[i], a.argv) != 0) {
            snprintf(r->error, sizeof r->error, "cannot start client process %u", i + 1);
            ok = 0;
        }
    }
    /* tether clients: all live first (raw clients send at once: their
     * connection takes no store work, so they connect within a few ms) */
    for (uint32_t i = 0; ok && c->store != BS_RAW && i < ns; i++) {
        char role[16] = "";
        if (child_line(&cli[i], line, sizeof line, 20000) != 0 ||
            bj_get_str(line, "role", role, sizeof role) != 0 || strcmp(role, "live") != 0) {
            why_of(line, "client did not go live", r->error, sizeof r->error);
            ok = 0;
        }
    }
    if (ok && c->pg) {
        bench_pg_mark_take(ro->pg, &m0, pgwhy, sizeof pgwhy);
    }
    for (uint32_t i = 0; ok && c->store != BS_RAW && i < ns; i++) {
        if (write(cli[i].wr, "g", 1) != 1) {
            snprintf(r->error, sizeof r->error, "cannot start client %u", i + 1);
            ok = 0;
        }
    }
    /* results: every client, then every server */
    double t_start = 0, t_last = 0, ack_p50 = 0, dlv_p50 = 0;
    lat4 ack = {-1, -1, -1, -1}, dlv = {-1, -1, -1, -1};
    double cli_cpu = 0, srv_cpu = 0, cli_rss = 0, srv_rss = 0, tx = 0, rx = 0, acks = 0;
    int have_ack = 0;
    uint64_t order_err = 0, dlv_n = 0;
    for (uint32_t i = 0; ok && i < ns; i++) {
        if (child_line(&cli[i], line, sizeof line, (int)(timeout + 20) * 1000) != 0) {
            snprintf(r->error, sizeof r->error, "no result from client %u", i + 1);
            ok = 0;
            break;
        }
        bench_log_line(ro, c, 0, rep, line);
        if (bj_get(line, "ok", 0) != 1) {
            why_of(line, "client failed", r->error, sizeof r->error);
            ok = 0;
            break;
        }
        double ts = bj_get(line, "t_start", 0);
        t_start = i == 0 || ts < t_start ? ts : t_start;
        cli_cpu += bj_get(line, "cpu_s", 0);
        double rss = bj_get(line, "rss_kb", 0) / 1024.0;
        cli_rss = rss > cli_rss ? rss : cli_rss;
        tx += bj_get(line, "tcp_tx", 0);
        rx += bj_get(line, "tcp_rx", 0);
        acks += bj_get(line, "acks", 0);
        lat4 l;
        bench_lat_of(line, "ack", &l);
        if (l.p50 >= 0) {
            have_ack = 1;
            ack_p50 += l.p50 / ns;
            ack.p99 = l.p99 > ack.p99 ? l.p99 : ack.p99;
            ack.p999 = l.p999 > ack.p999 ? l.p999 : ack.p999;
            ack.max = l.max > ack.max ? l.max : ack.max;
        }
    }
    for (uint32_t i = 0; ok && i < ni; i++) {
        if (child_line(&srv[i], line, sizeof line, 15000) != 0) {
            snprintf(r->error, sizeof r->error, "no result from server %u", i + 1);
            ok = 0;
            break;
        }
        bench_log_line(ro, c, 0, rep, line);
        if (bj_get(line, "ok", 0) != 1) {
            why_of(line, "server failed", r->error, sizeof r->error);
            ok = 0;
            break;
        }
        double tl = bj_get(line, "t_last", 0);
        t_last = tl > t_last ? tl : t_last;
        srv_cpu += bj_get(line, "cpu_s", 0);
        double rss = bj_get(line, "rss_kb", 0) / 1024.0;
        srv_rss = rss > srv_rss ? rss : srv_rss;
        order_err += (uint64_t)bj_get(line, "order_err", 0);
        double n = bj_get(line, "n", 0);
        lat4 l;
        bench_lat_of(line, "dlv", &l);
        if (l.p50 >= 0) {
            dlv_p50 += l.p50 * n;
            dlv_n += (uint64_t)n;
            dlv.p99 = l.p99 > dlv.p99 ? l.p99 : dlv.p99;
            dlv.p999 = l.p999 > dlv.p999 ? l.p999 : dlv.p999;
            dlv.max = l.max > dlv.max ? l.max : dlv.max;
        }
    }
    if (ok && c->pg) {
        bench_pg_mark_take(ro->pg, &m1, pgwhy, sizeof pgwhy);
        if (!m0.ok || !m1.ok) {
            fprintf(stderr, "  %s: no WAL or CPU figures from the database: %s\n", c->name, pgwhy);
        }
    }
    end_all(srv, ni, cli, ns);
    bench_rm_db(sdb);
    for (uint32_t i = 0; i < ns; i++) {
        if (cdb[i][0]) {
            bench_rm_db(cdb[i]);
        }
    }
    free(cli);
    if (ok && order_err > 0) {
        snprintf(r->error, sizeof r->error, "servers saw %llu messages out of order",
                 (unsigned long long)order_err);
        ok = 0;
    }
    if (!ok) {
        return -1;
    }
    double secs = (t_last - t_start) / 1e9;
    double n = (double)total;
    r->msgs_s = secs > 0 ? n / secs : 0;
    r->cli_cpu_m = cli_cpu / n * 1e6;
    r->srv_cpu_m = srv_cpu / n * 1e6;
    r->cli_rss_mb = cli_rss;
    r->srv_rss_mb = srv_rss;
    r->wire_data = tx / n;
    r->wire_ack = rx / n;
    r->acks_per_msg = acks / n;
    ack.p50 = have_ack ? ack_p50 : -1;
    dlv.p50 = dlv_n ? dlv_p50 / (double)dlv_n : -1;
    r->ack = ack;
    r->dlv = dlv;
    if (c->pg) {
        bench_pg_mark_diff(&m0, &m1, total, r);
    }
    r->ok = 1;
    return 0;
}

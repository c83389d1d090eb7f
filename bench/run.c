/*
 * The orchestrator: for each configuration of the matrix (matrix.c) a
 * server process and a client process (fork+exec of this same binary with
 * --role), one JSON line read back from each, medians over the repeats.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run.h"

#define REPEAT_MAX 16 /* runs per configuration at most */

/* The bare SQLite floor: one process, no network. */
static int run_sqlite(const bench_run_opts *ro, const bench_cfg *c, int rep, const char *db,
                      char *a_size, char *a_count, run_res *r)
{
    char a_page[16];
    snprintf(a_page, sizeof a_page, "%u", ro->page_size);
    char *argv[] = {"tether", "bench", "--role", "sqlite", "--db", (char *)db, "--size", a_size,
                    "--count", a_count, "--page-size", a_page, NULL};
    bench_child ch;
    char line[4096] = "";
    if (bench_spawn(&ch, argv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the sqlite process");
        return -1;
    }
    int got = bench_child_line(&ch, line, sizeof line, 120000) == 0;
    bench_child_end(&ch, 10000);
    bench_log_line(ro, c, 0, rep, got ? line : "null");
    bench_rm_db(db);
    if (!got || bj_get(line, "ok", 0) != 1) {
        char why[200] = "";
        bj_get_str(line, "error", why, sizeof why);
        snprintf(r->error, sizeof r->error, "%s", why[0] ? why : "no result from sqlite");
        return -1;
    }
    r->msgs_s = bj_get(line, "rows_s", 0);
    r->cli_cpu_m = bj_get(line, "cpu_s", 0) / (double)c->count * 1e6;
    r->srv_cpu_m = -1;
    r->cli_rss_mb = r->srv_rss_mb = r->wire_data = r->wire_ack = r->acks_per_msg = -1;
    r->ack.p50 = r->ack.p99 = r->ack.p999 = r->ack.max = -1;
    r->dlv = r->ack;
    r->ok = 1;
    return 0;
}

/* `tether send URL --db DB --quiet` fed count lines of c->size bytes on stdin,
 * against the server peer srv (started with --opaque). Throughput: from the
 * bench_spawn to the server's last delivery, so it includes the CLI's start and
 * connect (a few ms). */
static int run_cli(const bench_run_opts *ro, const bench_cfg *c, int rep, bench_child *srv,
                   const char *url, const char *cdb, const char *sdb, uint64_t count,
                   unsigned timeout, run_res *r)
{
    char input[PATH_MAX + 16], sline[4096] = "";
    snprintf(input, sizeof input, "%s/scratch/input.txt", ro->out);
    FILE *f = fopen(input, "w");
    char *line = malloc(c->size + 1);
    int ok = f && line;
    if (line) {
        memset(line, 'x', c->size);
        line[c->size] = '\n';
    }
    for (uint64_t i = 0; ok && i < count; i++) {
        ok = fwrite(line, c->size + 1, 1, f) == 1;
    }
    free(line);
    if (f && fclose(f) != 0) {
        ok = 0;
    }
    int fd = ok ? open(input, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        snprintf(r->error, sizeof r->error, "cannot write the input of tether send");
        bench_child_end(srv, 2000);
        unlink(input);
        return -1;
    }
    char *argv[] = {"tether", "send", (char *)url, "--db", (char *)cdb, "--quiet", NULL};
    bench_child cli;
    uint64_t t_start = bench_now_ns();
    int sp = bench_spawn_in(&cli, argv, fd);
    close(fd);
    int st = sp == 0 ? bench_child_exit(&cli, (int)(timeout + 20) * 1000) : -1;
    int got_s = bench_child_line(srv, sline, sizeof sline, st == 0 ? 15000 : 1000) == 0;
    bench_child_end(srv, 10000);
    bench_log_line(ro, c, 0, rep, got_s ? sline : "null");
    unlink(input);
    bench_rm_db(sdb);
    bench_rm_db(cdb);
    if (st != 0 || !got_s || bj_get(sline, "ok", 0) != 1) {
        snprintf(r->error, sizeof r->error, "%s",
                 sp != 0 ? "cannot start tether send"
                 : st != 0 ? "tether send failed or timed out"
                           : "no result from the server");
        return -1;
    }
    double secs = (bj_get(sline, "t_last", 0) - (double)t_start) / 1e9;
    r->msgs_s = secs > 0 ? (double)count / secs : 0;
    r->cli_cpu_m = -1;
    r->srv_cpu_m = bj_get(sline, "cpu_s", 0) / (double)count * 1e6;
    r->srv_rss_mb = bj_get(sline, "rss_kb", 0) / 1024.0;
    r->cli_rss_mb = r->wire_data = r->wire_ack = r->acks_per_msg = -1;
    r->ack.p50 = r->ack.p99 = r->ack.p999 = r->ack.max = -1;
    r->dlv = r->ack;
    r->ok = 1;
    return 0;
}

static int run_once(const bench_run_opts *ro, const bench_cfg *c, int rate_phase, int rep,
                    run_res *r)
{
    if (c->sessions > 1) {
        return bench_run_fleet(ro, c, rep, r);
    }
    memset(r, 0, sizeof *r);
    r->wal_b = r->pg_cpu_m = -1;
    char dir[PATH_MAX], sdb[PATH_MAX + 16], cdb[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/scratch", ro->out);
    mkdir(dir, 0755);
    snprintf(sdb, sizeof sdb, "%s/server.db", dir);
    snprintf(cdb, sizeof cdb, "%s/client.db", dir);
    bench_rm_db(sdb);
    bench_rm_db(cdb);

    uint64_t count = rate_phase ? c->rate_count : c->count;
    unsigned timeout = ro->quick ? 60 : 240;
    char a_store[16], a_size[16], a_count[24], a_rate[24], a_batch[16], a_win[16], a_every[16],
        a_delay[16], a_to[16], a_page[16], url[64];
    snprintf(a_store, sizeof a_store, "%s", bench_store_name(c->store));
    snprintf(a_size, sizeof a_size, "%u", c->size);
    snprintf(a_count, sizeof a_count, "%llu", (unsigned long long)count);
    snprintf(a_rate, sizeof a_rate, "%.0f", rate_phase ? c->rate : 0.0);
    snprintf(a_batch, sizeof a_batch, "%u", c->batch ? c->batch : 1);
    snprintf(a_win, sizeof a_win, "%u", c->window);
    snprintf(a_every, sizeof a_every, "%u", c->ack_every);
    snprintf(a_delay, sizeof a_delay, "%u", c->ack_delay);
    snprintf(a_to, sizeof a_to, "%u", timeout);
    snprintf(a_page, sizeof a_page, "%u", ro->page_size);

    if (c->kind == BK_SQLITE) {
        return run_sqlite(ro, c, rep, cdb, a_size, a_count, r);
    }
    char *sargv[32];
    int k = 0;
    sargv[k++] = "tether";
    sargv[k++] = "bench";
    sargv[k++] = "--role";
    sargv[k++] = "server";
    sargv[k++] = "--store";
    sargv[k++] = a_store;
    sargv[k++] = "--db";
    sargv[k++] = c->pg ? (char *)ro->pg : sdb; /* --pg: a postgresql:// URI */
    sargv[k++] = "--size";
    sargv[k++] = a_size;
    sargv[k++] = "--count";
    sargv[k++] = a_count;
    sargv[k++] = "--window";
    sargv[k++] = a_win;
    sargv[k++] = "--ack-every";
    sargv[k++] = a_every;
    sargv[k++] = "--ack-delay";
    sargv[k++] = a_delay;
    sargv[k++] = "--timeout";
    sargv[k++] = a_to;
    if (c->backlog) {
        sargv[k++] = "--backlog";
    }
    if (c->kind == BK_CLI) {
        sargv[k++] = "--opaque";
    }
    sargv[k] = NULL;

    bench_child srv, cli;
    memset(&cli, 0, sizeof cli);
    char sline[4096] = "", cline[4096] = "", ready[512] = "";
    if (bench_spawn(&srv, sargv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the server process");
        return -1;
    }
    if (bench_child_line(&srv, ready, sizeof ready, 10000) != 0 || bj_get(ready, "port", 0) <= 0) {
        char why[200] = "";
        bj_get_str(ready, "error", why, sizeof why);
        snprintf(r->error, sizeof r->error, "server did not start%s%s", why[0] ? ": " : "", why);
        bench_child_end(&srv, 2000);
        return -1;
    }
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", (int)bj_get(ready, "port", 0));

    char *cargv[40];
    k = 0;
    cargv[k++] = "tether";
    cargv[k++] = "bench";
    cargv[k++] = "--role";
    cargv[k++] = "client";
    cargv[k++] = "--store";
    cargv[k++] = a_store;
    cargv[k++] = "--url";
    cargv[k++] = url;
    cargv[k++] = "--db";
    cargv[k++] = cdb;
    cargv[k++] = "--size";
    cargv[k++] = a_size;
    cargv[k++] = "--count";
    cargv[k++] = a_count;
    cargv[k++] = "--rate";
    cargv[k++] = a_rate;
    cargv[k++] = "--batch";
    cargv[k++] = a_batch;
    cargv[k++] = "--window";
    cargv[k++] = a_win;
    cargv[k++] = "--ack-every";
    cargv[k++] = a_every;
    cargv[k++] = "--ack-delay";
    cargv[k++] = a_delay;
    cargv[k++] = "--timeout";
    cargv[k++] = a_to;
    cargv[k++] = "--page-size";
    cargv[k++] = a_page;
    if (c->backlog) {
        cargv[k++] = "--backlog";
    }
    if (c->async) {
        cargv[k++] = "--async";
    }
    if (c->http) {
        cargv[k++] = "--http";
    }
    cargv[k] = NULL;
    if (c->kind == BK_CLI) {
        return run_cli(ro, c, rep, &srv, url, cdb, sdb, count, timeout, r);
    }
    bench_pg_mark m0, m1;
    char pgwhy[256] = "";
    m0.ok = m1.ok = 0;
    if (c->pg) {
        bench_pg_mark_take(ro->pg, &m0, pgwhy, sizeof pgwhy);
    }
    if (bench_spawn(&cli, cargv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the client process");
        bench_child_end(&srv, 2000);
        return -1;
    }
    int got_c = bench_child_line(&cli, cline, sizeof cline, (int)(timeout + 20) * 1000) == 0;
    int got_s = bench_child_line(&srv, sline, sizeof sline, got_c ? 15000 : 1000) == 0;
    if (c->pg && got_s) {
        bench_pg_mark_take(ro->pg, &m1, pgwhy, sizeof pgwhy);
        if (!m0.ok || !m1.ok) {
            fprintf(stderr, "  %s: no WAL or CPU figures from the database: %s\n", c->name, pgwhy);
        }
    }
    bench_child_end(&srv, 10000);
    bench_child_end(&cli, 10000);
    bench_log_line(ro, c, rate_phase, rep, got_c ? cline : "null");
    bench_log_line(ro, c, rate_phase, rep, got_s ? sline : "null");
    bench_rm_db(sdb);
    bench_rm_db(cdb);

    if (!got_c || !got_s || bj_get(cline, "ok", 0) != 1 || bj_get(sline, "ok", 0) != 1) {
        char why[200] = "";
        if (got_c && bj_get(cline, "ok", 0) != 1) {
            bj_get_str(cline, "error", why, sizeof why);
        } else if (got_s && bj_get(sline, "ok", 0) != 1) {
            bj_get_str(sline, "error", why, sizeof why);
        }
        snprintf(r->error, sizeof r->error, "%s",
                 why[0] ? why : !got_c ? "no result from the client" : "no result from the server");
        return -1;
    }
    if (bj_get(sline, "order_err", 0) > 0) {
        snprintf(r->error, sizeof r->error, "server saw %.0f messages out of order",
                 bj_get(sline, "order_err", 0));
        return -1;
    }
    double n = (double)count;
    double t_start = bj_get(cline, "t_start", 0);
    double t_last = bj_get(sline, "t_last", 0);
    double secs = (t_last - t_start) / 1e9;
    r->msgs_s = secs > 0 ? n / secs : 0;
    r->cli_cpu_m = bj_get(cline, "cpu_s", 0) / n * 1e6;
    r->srv_cpu_m = bj_get(sline, "cpu_s", 0) / n * 1e6;
    r->cli_rss_mb = bj_get(cline, "rss_kb", 0) / 1024.0;
    r->srv_rss_mb = bj_get(sline, "rss_kb", 0) / 1024.0;
    r->wire_data = bj_get(cline, "tcp_tx", 0) / n;
    r->wire_ack = bj_get(cline, "tcp_rx", 0) / n;
    r->acks_per_msg = bj_get(cline, "acks", 0) / n;
    r->fill_s = bj_get(cline, "fill_s", 0);
    if (c->pg) {
        bench_pg_mark_diff(&m0, &m1, count, r);
    }
    bench_lat_of(cline, "ack", &r->ack);
    bench_lat_of(sline, "dlv", &r->dlv);
    r->ok = 1;
    return 0;
}

/* ---- medians ---- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n <= 0) {
        return -1;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MED(field)                                                                                 \
    do {                                                                                           \
        double v_[REPEAT_MAX];                                                                             \
        for (int i_ = 0; i_ < n; i_++) {                                                           \
            v_[i_] = rs[i_].field;                                                                 \
        }                                                                                          \
        out.field = median(v_, n);                                                                 \
    } while (0)

static run_res median_of(run_res *rs, int n)
{
    run_res out;
    memset(&out, 0, sizeof out);
    MED(msgs_s);
    MED(cli_cpu_m);
    MED(srv_cpu_m);
    MED(cli_rss_mb);
    MED(srv_rss_mb);
    MED(wire_data);
    MED(wire_ack);
    MED(acks_per_msg);
    MED(ack.p50);
    MED(ack.p99);
    MED(ack.p999);
    MED(ack.max);
    MED(dlv.p50);
    MED(dlv.p99);
    MED(dlv.p999);
    MED(dlv.max);
    MED(fill_s);
    MED(wal_b);
    MED(pg_cpu_m);
    out.ok = n > 0;
    return out;
}

static void fmt_progress(const bench_cfg *c, int rate_phase, int rep, const run_res *r)
{
    if (!r->ok) {
        fprintf(stderr, "  %-22s %s #%d  FAILED: %s\n", c->name, rate_phase ? "rate" : "full",
                rep + 1, r->error);
        return;
    }
    fprintf(stderr, "  %-22s %s #%d  %9.0f msg/s  ack p99 %8.3f ms  deliver p99 %8.3f ms\n",
            c->name, rate_phase ? "rate" : "full", rep + 1, r->msgs_s, r->ack.p99 / 1e3,
            r->dlv.p99 / 1e3);
}

int bench_run_all(const bench_run_opts *ro, bench_cfg *cfgs, size_t n)
{
    int failed = 0;
    signal(SIGPIPE, SIG_IGN);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/runs.jsonl", ro->out);
    unlink(path);
    int reps = ro->repeat > REPEAT_MAX ? REPEAT_MAX : ro->repeat;
    int tty = isatty(2); /* progress on one rewritten line only on a terminal */
    /* results by configuration; the repeats go round the whole matrix, so a
     * burst of outside load lands in one sample of many configurations rather
     * than in every sample of one */
    typedef struct samples {
        run_res full[REPEAT_MAX], rate[REPEAT_MAX];
        int nf, nr;
    } samples;
    samples *sm = calloc(n, sizeof *sm);
    if (!sm) {
        fprintf(stderr, "tether bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        cfgs[i].error[0] = '\0';
    }
    for (int rep = 0; rep < reps; rep++) {
        for (size_t i = 0; i < n; i++) {
            bench_cfg *c = &cfgs[i];
            samples *x = &sm[i];
            if (!ro->verbose && tty) {
                fprintf(stderr, "  [run %d/%d, %zu/%zu] %-22s\r", rep + 1, reps, i + 1, n,
                        c->name);
            }
            run_res r;
            run_once(ro, c, 0, rep, &r);
            if (ro->verbose || !r.ok) {
                fmt_progress(c, 0, rep, &r);
            }
            if (r.ok) {
                x->full[x->nf++] = r;
            } else if (!c->error[0]) {
                snprintf(c->error, sizeof c->error, "%s", r.error);
            }
            if (c->rate_count) {
                run_once(ro, c, 1, rep, &r);
                if (ro->verbose || !r.ok) {
                    fmt_progress(c, 1, rep, &r);
                }
                if (r.ok) {
                    x->rate[x->nr++] = r;
                } else if (!c->error[0]) {
                    snprintf(c->error, sizeof c->error, "%s", r.error);
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        bench_cfg *c = &cfgs[i];
        run_res *full = sm[i].full, *rate = sm[i].rate;
        int nf = sm[i].nf, nr = sm[i].nr;
        c->runs = nf;
        c->ok = nf == reps && (!c->rate_count || nr == reps);
        failed |= !c->ok;
        run_res m = median_of(full, nf);
        c->msgs_s = nf ? m.msgs_s : -1;
        c->mb_s = nf ? m.msgs_s * c->size / 1e6 : -1;
        c->cli_cpu_m = m.cli_cpu_m;
        c->srv_cpu_m = m.srv_cpu_m;
        c->cli_rss_mb = m.cli_rss_mb;
        c->srv_rss_mb = m.srv_rss_mb;
        c->wire_data = m.wire_data;
        c->wire_ack = m.wire_ack;
        c->acks_per_msg = m.acks_per_msg;
        c->ack_full = m.ack;
        c->dlv_full = m.dlv;
        c->fill_s = m.fill_s;
        c->wal_b = nf ? m.wal_b : -1;
        c->pg_cpu_m = nf ? m.pg_cpu_m : -1;
        if (c->rate_count) {
            run_res q = median_of(rate, nr);
            c->rate_got = nr ? q.msgs_s : -1;
            c->rate_wire_ack = nr ? q.wire_ack : -1;
            c->ack_rate = q.ack;
            c->dlv_rate = q.dlv;
        } else {
            c->rate_got = -1;
            c->rate_wire_ack = -1;
            c->ack_rate.p50 = c->ack_rate.p99 = c->ack_rate.p999 = c->ack_rate.max = -1;
            c->dlv_rate = c->ack_rate;
        }
    }
    free(sm);
    if (!ro->verbose && tty) {
        fprintf(stderr, "%70s\r", "");
    }
    /* ratios to the raw baseline of the same size and the same number of
     * sessions, measured in this run; the fleet rows also to the SQLite row
     * with as many sessions, and three instances to one */
    for (size_t i = 0; i < n; i++) {
        bench_cfg *x = &cfgs[i];
        x->ratio = x->x_sqlite = x->x_one = -1;
        for (size_t k = 0; k < n; k++) {
            const bench_cfg *y = &cfgs[k];
            if (y->size != x->size || y->sessions != x->sessions || y->msgs_s <= 0 ||
                x->msgs_s <= 0 || x->kind == BK_SQLITE) {
                continue;
            }
            if (y->store == BS_RAW) {
                x->ratio = x->msgs_s / y->msgs_s;
            }
            if (x->pg && !y->pg && y->store == BS_NORMAL &&
                (strcmp(y->group, "store") == 0 || strcmp(y->group, "fleet") == 0)) {
                x->x_sqlite = x->msgs_s / y->msgs_s;
            }
            if (x->sessions > 1 && x->pg && x->instances > 1 && y->pg && y->instances <= 1) {
                x->x_one = x->msgs_s / y->msgs_s;
            }
        }
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/scratch", ro->out);
    rmdir(dir);
    return failed;
}

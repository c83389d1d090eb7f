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

/* ---- child processes ---- */

typedef struct child {
    pid_t pid;      /* the process, 0 when none */
    int rd;         /* its stdout */
    int wr;         /* its stdin */
    char buf[16384]; /* bytes read, not yet consumed as lines */
    size_t len;     /* bytes in buf */
} child;

/* Starts this binary with argv; its stdin is a pipe (ch->wr), or in_fd when >= 0. */
static int spawn_in(child *ch, char *const argv[], int in_fd)
{
    static char exe[PATH_MAX];
    if (!exe[0]) {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0) {
            return -1;
        }
        exe[k] = '\0';
    }
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        return -1;
    }
    if (pipe2(in, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(out[0]);
        close(out[1]);
        close(in[0]);
        close(in[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(in_fd >= 0 ? in_fd : in[0], 0);
        dup2(out[1], 1);
        execv(exe, argv);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    memset(ch, 0, sizeof *ch);
    ch->pid = pid;
    ch->rd = out[0];
    ch->wr = in[1];
    return 0;
}

static int spawn(child *ch, char *const argv[])
{
    return spawn_in(ch, argv, -1);
}

/* Waits up to wait_ms for the child to exit (killing it after that); its
 * exit status, or -1 when it was killed. */
static int child_exit(child *ch, int wait_ms)
{
    uint64_t until = bench_now_ns() + (uint64_t)wait_ms * 1000000u;
    int st = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(ch->pid, &st, WNOHANG);
        if (w == ch->pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        if (bench_now_ns() > until) {
            kill(ch->pid, SIGKILL);
            waitpid(ch->pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    close(ch->wr);
    close(ch->rd);
    ch->pid = 0;
    return rc;
}

/* Reads one line (without its newline) within timeout_ms. 0, or -1 on EOF/timeout. */
static int child_line(child *ch, char *line, size_t len, int timeout_ms)
{
    uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char *nl = memchr(ch->buf, '\n', ch->len);
        if (nl) {
            size_t k = (size_t)(nl - ch->buf);
            snprintf(line, len, "%.*s", (int)k, ch->buf);
            memmove(ch->buf, nl + 1, ch->len - k - 1);
            ch->len -= k + 1;
            return 0;
        }
        uint64_t now = bench_now_ns();
        if (now >= until || ch->len == sizeof ch->buf) {
            return -1;
        }
        struct pollfd p = {.fd = ch->rd, .events = POLLIN};
        int r = poll(&p, 1, (int)((until - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        ssize_t k = read(ch->rd, ch->buf + ch->len, sizeof ch->buf - ch->len);
        if (k <= 0) {
            return -1;
        }
        ch->len += (size_t)k;
    }
}

/* Closes its stdin (the server's cue to exit), then reaps it, killing it after wait_ms. */
static void child_end(child *ch, int wait_ms)
{
    if (!ch->pid) {
        return;
    }
    close(ch->wr);
    uint64_t until = bench_now_ns() + (uint64_t)wait_ms * 1000000u;
    int st;
    while (waitpid(ch->pid, &st, WNOHANG) == 0) {
        if (bench_now_ns() > until) {
            kill(ch->pid, SIGKILL);
            waitpid(ch->pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    close(ch->rd);
    ch->pid = 0;
}

/* ---- one run ---- */

typedef struct run_res {
    int ok;
    char error[200];
    double msgs_s, cli_cpu_m, srv_cpu_m, cli_rss_mb, srv_rss_mb, wire_data, wire_ack, acks_per_msg;
    lat4 ack, dlv;
    double fill_s;
} run_res;

static void lat_of(const char *line, const char *prefix, lat4 *l)
{
    char k[32];
    snprintf(k, sizeof k, "%s_p50", prefix);
    l->p50 = bj_get(line, k, -1);
    snprintf(k, sizeof k, "%s_p99", prefix);
    l->p99 = bj_get(line, k, -1);
    snprintf(k, sizeof k, "%s_p999", prefix);
    l->p999 = bj_get(line, k, -1);
    snprintf(k, sizeof k, "%s_max", prefix);
    l->max = bj_get(line, k, -1);
    snprintf(k, sizeof k, "%s_n", prefix);
    if (bj_get(line, k, 0) <= 0) {
        l->p50 = l->p99 = l->p999 = l->max = -1; /* not measured */
    }
}

static void rm_db(const char *path)
{
    char p[PATH_MAX + 64];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/* The "some avg10" figure of /proc/pressure/<what>, or -1. */
static double psi10(const char *what)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/pressure/%s", what);
    FILE *f = fopen(path, "r");
    double v = -1;
    if (f) {
        if (fgets(line, sizeof line, f) && strncmp(line, "some", 4) == 0 && strstr(line, "avg10=")) {
            v = strtod(strstr(line, "avg10=") + 6, NULL);
        }
        fclose(f);
    }
    return v;
}

static void log_line(const bench_run_opts *ro, const bench_cfg *c, int rate_phase, int rep,
                     const char *line)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/runs.jsonl", ro->out);
    FILE *f = fopen(path, "a");
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    if (f) {
        fprintf(f,
                "{\"config\":\"%s\",\"phase\":\"%s\",\"rep\":%d,\"load1\":%.2f,"
                "\"psi_cpu10\":%.2f,\"psi_io10\":%.2f,\"peer\":%s}\n",
                c->name, rate_phase ? "rate" : "full", rep, load[0], psi10("cpu"), psi10("io"),
                line[0] == '{' ? line : "null");
        fclose(f);
    }
}

/* The bare SQLite floor: one process, no network. */
static int run_sqlite(const bench_run_opts *ro, const bench_cfg *c, int rep, const char *db,
                      char *a_size, char *a_count, run_res *r)
{
    char *argv[] = {"tether", "bench", "--role", "sqlite", "--db", (char *)db, "--size", a_size,
                    "--count", a_count, NULL};
    child ch;
    char line[4096] = "";
    if (spawn(&ch, argv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the sqlite process");
        return -1;
    }
    int got = child_line(&ch, line, sizeof line, 120000) == 0;
    child_end(&ch, 10000);
    log_line(ro, c, 0, rep, got ? line : "null");
    rm_db(db);
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
 * spawn to the server's last delivery, so it includes the CLI's start and
 * connect (a few ms). */
static int run_cli(const bench_run_opts *ro, const bench_cfg *c, int rep, child *srv,
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
        child_end(srv, 2000);
        unlink(input);
        return -1;
    }
    char *argv[] = {"tether", "send", (char *)url, "--db", (char *)cdb, "--quiet", NULL};
    child cli;
    uint64_t t_start = bench_now_ns();
    int sp = spawn_in(&cli, argv, fd);
    close(fd);
    int st = sp == 0 ? child_exit(&cli, (int)(timeout + 20) * 1000) : -1;
    int got_s = child_line(srv, sline, sizeof sline, st == 0 ? 15000 : 1000) == 0;
    child_end(srv, 10000);
    log_line(ro, c, 0, rep, got_s ? sline : "null");
    unlink(input);
    rm_db(sdb);
    rm_db(cdb);
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
    memset(r, 0, sizeof *r);
    char dir[PATH_MAX], sdb[PATH_MAX + 16], cdb[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/scratch", ro->out);
    mkdir(dir, 0755);
    snprintf(sdb, sizeof sdb, "%s/server.db", dir);
    snprintf(cdb, sizeof cdb, "%s/client.db", dir);
    rm_db(sdb);
    rm_db(cdb);

    uint64_t count = rate_phase ? c->rate_count : c->count;
    unsigned timeout = ro->quick ? 60 : 240;
    char a_store[16], a_size[16], a_count[24], a_rate[24], a_batch[16], a_win[16], a_every[16],
        a_delay[16], a_to[16], url[64];
    snprintf(a_store, sizeof a_store, "%s", bench_store_name(c->store));
    snprintf(a_size, sizeof a_size, "%u", c->size);
    snprintf(a_count, sizeof a_count, "%llu", (unsigned long long)count);
    snprintf(a_rate, sizeof a_rate, "%.0f", rate_phase ? c->rate : 0.0);
    snprintf(a_batch, sizeof a_batch, "%u", c->batch ? c->batch : 1);
    snprintf(a_win, sizeof a_win, "%u", c->window);
    snprintf(a_every, sizeof a_every, "%u", c->ack_every);
    snprintf(a_delay, sizeof a_delay, "%u", c->ack_delay);
    snprintf(a_to, sizeof a_to, "%u", timeout);

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

    child srv, cli;
    memset(&cli, 0, sizeof cli);
    char sline[4096] = "", cline[4096] = "", ready[512] = "";
    if (spawn(&srv, sargv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the server process");
        return -1;
    }
    if (child_line(&srv, ready, sizeof ready, 10000) != 0 || bj_get(ready, "port", 0) <= 0) {
        char why[200] = "";
        bj_get_str(ready, "error", why, sizeof why);
        snprintf(r->error, sizeof r->error, "server did not start%s%s", why[0] ? ": " : "", why);
        child_end(&srv, 2000);
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
    if (spawn(&cli, cargv) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start the client process");
        child_end(&srv, 2000);
        return -1;
    }
    int got_c = child_line(&cli, cline, sizeof cline, (int)(timeout + 20) * 1000) == 0;
    int got_s = child_line(&srv, sline, sizeof sline, got_c ? 15000 : 1000) == 0;
    child_end(&srv, 10000);
    child_end(&cli, 10000);
    log_line(ro, c, rate_phase, rep, got_c ? cline : "null");
    log_line(ro, c, rate_phase, rep, got_s ? sline : "null");
    rm_db(sdb);
    rm_db(cdb);

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
    lat_of(cline, "ack", &r->ack);
    lat_of(sline, "dlv", &r->dlv);
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
    /* ratios to the raw baseline of the same size, measured in this run */
    for (size_t i = 0; i < n; i++) {
        cfgs[i].ratio = -1;
        for (size_t k = 0; k < n; k++) {
            if (cfgs[k].store == BS_RAW && cfgs[k].size == cfgs[i].size && cfgs[k].msgs_s > 0 &&
                cfgs[i].msgs_s > 0 && cfgs[i].kind != BK_SQLITE) {
                cfgs[i].ratio = cfgs[i].msgs_s / cfgs[k].msgs_s;
            }
        }
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/scratch", ro->out);
    rmdir(dir);
    return failed;
}

/*
 * The orchestrator of `tether bench --sessions N` (sessions.h): starts
 * `tether serve` and the drivers as separate processes, measures, and writes
 * the session rows to the table, results.csv and results.json.
 *
 * Figures:
 * - server memory per idle session: (VmRSS of the server with N sessions live
 *   and idle) - (its VmRSS before the first connection), divided by N, KiB;
 * - connect time: first attempt to the last session welcomed, s;
 * - with --rate R: delivered rate = the server's own delivered counter
 *   (GET /metrics, tether_messages_delivered_total) over the rate phase,
 *   send-to-ack p50 (weighted mean of the drivers') and p99 (the largest of
 *   the drivers'), timed from when each message was due; lost = messages the
 *   drivers sent minus the ones the server delivered (must be 0); server CPU
 *   during the rate phase, % of one core.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "sessions.h"

#define MAX_DRIVERS 64

/* A child process with pipes to its stdin and from its stdout. */
typedef struct proc {
    pid_t pid;      /* 0 when none */
    int rd;         /* its stdout, or -1 */
    int wr;         /* its stdin, or -1 */
    char buf[8192]; /* bytes read, not yet a line */
    size_t len;     /* bytes in buf */
} proc;

static const char *self_exe(void)
{
    static char exe[PATH_MAX];
    if (!exe[0]) {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0) {
            return NULL;
        }
        exe[k] = '\0';
    }
    return exe;
}

/* Starts this binary with argv; stdout_null: its stdout goes to /dev/null. */
static int start(proc *p, char *const argv[], int stdout_null)
{
    int out[2] = {-1, -1}, in[2];
    const char *exe = self_exe();
    if (!exe || pipe2(in, O_CLOEXEC) != 0) {
        return -1;
    }
    if (!stdout_null && pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        if (stdout_null) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1);
        } else {
            dup2(out[1], 1);
        }
        execv(exe, argv);
        _exit(127);
    }
    close(in[0]);
    if (!stdout_null) {
        close(out[1]);
    }
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->rd = out[0];
    p->wr = in[1];
    return 0;
}

static int read_line(proc *p, char *line, size_t len, int timeout_ms)
{
    uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t k = (size_t)(nl - p->buf);
            snprintf(line, len, "%.*s", (int)k, p->buf);
            memmove(p->buf, nl + 1, p->len - k - 1);
            p->len -= k + 1;
            return 0;
        }
        uint64_t now = bench_now_ns();
        if (now >= until || p->len == sizeof p->buf) {
            return -1;
        }
        struct pollfd pf = {.fd = p->rd, .events = POLLIN};
        int r = poll(&pf, 1, (int)((until - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        ssize_t k = r > 0 ? read(p->rd, p->buf + p->len, sizeof p->buf - p->len) : -1;
        if (k <= 0) {
            return -1;
        }
        p->len += (size_t)k;
    }
}

static void say(proc *p, const char *word)
{
    if (p->wr >= 0 && write(p->wr, word, strlen(word)) < 0) {
        close(p->wr);
        p->wr = -1;
    }
}

/* Ends a process: closes its pipes, sends sig (0: none), waits up to wait_ms, then kills it. */
static void finish(proc *p, int sig, int wait_ms)
{
    if (!p->pid) {
        return;
    }
    if (p->wr >= 0) {
        close(p->wr);
    }
    if (sig) {
        kill(p->pid, sig);
    }
    uint64_t until = bench_now_ns() + (uint64_t)wait_ms * 1000000u;
    int st;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (bench_now_ns() > until) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        bench_sleep_until_ns(bench_now_ns() + 10000000u);
    }
    if (p->rd >= 0) {
        close(p->rd);
    }
    p->pid = 0;
}

/* VmRSS of a process, KiB, or -1. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = atol(line + 6);
        }
    }
    if (f) {
        fclose(f);
    }
    return v;
}

/* One metric from the server's GET /metrics, or -1. */
static double scrape(uint16_t port, const char *name)
{
    static char page[16384];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    size_t used = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
        ssize_t r;
        while (used < sizeof page - 1 && (r = read(fd, page + used, sizeof page - 1 - used)) > 0) {
            used += (size_t)r;
        }
    }
    close(fd);
    page[used] = '\0';
    size_t n = strlen(name);
    for (const char *p = page; (p = strstr(p, name)) != NULL; p += n) {
        if (p > page && p[-1] == '\n' && p[n] == ' ') {
            return atof(p + n + 1);
        }
    }
    return -1;
}

static void loadavg3(double l[3])
{
    l[0] = l[1] = l[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3) {
            l[0] = -1;
        }
        fclose(f);
    }
}

/* What one run measured. */
typedef struct srow {
    uint32_t sessions, drivers, live, failed;
    double rate;            /* offered per session, msgs/s (0: idle row only) */
    double connect_s;       /* slowest driver's connect time */
    long rss0_kb, rss1_kb;  /* server VmRSS before and with the sessions idle */
    double kib_per_session; /* (rss1 - rss0) / sessions */
    long driver_rss_kb;     /* the drivers' peak RSS, summed */
    uint64_t sent, acked, delivered, lost, pending, closed;
    double seconds;                   /* rate phase, s (slowest driver) */
    double delivered_rate;            /* server deliveries per second during the rate phase */
    double ack_p50, ack_p99, ack_max; /* us */
    double srv_cpu_pct;               /* server CPU during the rate phase, % of one core */
    double load_before[3], load_after[3];
    int ok;          /* every phase completed, lost == 0 */
    char error[160]; /* why not */
} srow;

static int measure(const bench_sessions_opts *o, srow *r)
{
    char portfile[PATH_MAX], line[4096], url[64], maxs[24];
    proc srv, drv[MAX_DRIVERS];
    memset(drv, 0, sizeof drv);
    memset(r, 0, sizeof *r);
    r->sessions = o->sessions;
    r->drivers = o->drivers;
    r->rate = o->rate;
    loadavg3(r->load_before);
    snprintf(portfile, sizeof portfile, "%s/serve.port", o->out);
    unlink(portfile);
    snprintf(maxs, sizeof maxs, "%u", o->sessions);
    char *sargv[] = {"tether",         "serve",  "--listen", "127.0.0.1:0",
                     "--port-file",    portfile, "--quiet",  "--metrics",
                     "--max-sessions", maxs,     NULL};
    if (start(&srv, sargv, 1) != 0) {
        snprintf(r->error, sizeof r->error, "cannot start tether serve");
        return -1;
    }
    uint16_t port = 0;
    for (int i = 0; i < 2000 && !port; i++) {
        FILE *f = fopen(portfile, "r");
        unsigned v = 0;
        if (f && fscanf(f, "%u", &v) == 1) {
            port = (uint16_t)v;
        }
        if (f) {
            fclose(f);
        }
        if (!port) {
            bench_sleep_until_ns(bench_now_ns() + 10000000u);
        }
    }
    if (!port) {
        snprintf(r->error, sizeof r->error, "tether serve did not write its port");
        finish(&srv, SIGKILL, 1000);
        return -1;
    }
    bench_sleep_until_ns(bench_now_ns() + 200000000u); /* let it settle */
    r->rss0_kb = rss_kb(srv.pid);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    int rc = 0;
    uint32_t per = o->sessions / o->drivers;
    uint32_t timeout_s = 60 + o->sessions / 200;
    for (uint32_t i = 0; i < o->drivers && rc == 0; i++) {
        char n[16], rate[32], dur[16], size[16], to[16];
        snprintf(n, sizeof n, "%u", i + 1 < o->drivers ? per : o->sessions - per * i);
        snprintf(rate, sizeof rate, "%g", o->rate);
        snprintf(dur, sizeof dur, "%u", o->duration_s);
        snprintf(size, sizeof size, "%u", o->size);
        snprintf(to, sizeof to, "%u", timeout_s);
        char *dargv[] = {
            "tether",    "bench",  "--role", "sessions-driver", "--url", url,      "--sessions",
            n,           "--rate", rate,     "--duration",      dur,     "--size", size,
            "--timeout", to,       NULL};
        rc = start(&drv[i], dargv, 0);
    }
    for (uint32_t i = 0; i < o->drivers && rc == 0; i++) {
        rc = read_line(&drv[i], line, sizeof line, (int)(timeout_s + 30) * 1000);
        if (rc == 0) {
            r->live += (uint32_t)bj_get(line, "live", 0);
            r->failed += (uint32_t)bj_get(line, "failed", 0);
            double c = bj_get(line, "connect_s", 0);
            r->connect_s = c > r->connect_s ? c : r->connect_s;
            r->driver_rss_kb += (long)bj_get(line, "rss_kb", 0);
        }
    }
    if (rc == 0) {
        bench_sleep_until_ns(bench_now_ns() + (o->quick ? 500000000ull : 2000000000ull));
        r->rss1_kb = rss_kb(srv.pid);
        r->kib_per_session = r->live ? (double)(r->rss1_kb - r->rss0_kb) / r->live : 0;
        double d0 = scrape(port, "tether_messages_delivered_total");
        double c0 = bench_proc_cpu_s(srv.pid);
        uint64_t t0 = bench_now_ns();
        for (uint32_t i = 0; i < o->drivers; i++) {
            say(&drv[i], "go\n");
        }
        double p50w = 0;
        for (uint32_t i = 0; i < o->drivers && rc == 0; i++) {
            rc =
                read_line(&drv[i], line, sizeof line, (int)(o->duration_s + timeout_s + 30) * 1000);
            if (rc == 0) {
                uint64_t acked = (uint64_t)bj_get(line, "acked", 0);
                r->sent += (uint64_t)bj_get(line, "sent", 0);
                r->acked += acked;
                r->pending += (uint64_t)bj_get(line, "pending", 0);
                r->closed += (uint64_t)bj_get(line, "closed", 0);
                double s = bj_get(line, "seconds", 0);
                r->seconds = s > r->seconds ? s : r->seconds;
                p50w += bj_get(line, "ack_p50", 0) * (double)acked;
                double p99 = bj_get(line, "ack_p99", 0), mx = bj_get(line, "ack_max", 0);
                r->ack_p99 = p99 > r->ack_p99 ? p99 : r->ack_p99;
                r->ack_max = mx > r->ack_max ? mx : r->ack_max;
            }
        }
        double c1 = bench_proc_cpu_s(srv.pid);
        double wall = (double)(bench_now_ns() - t0) / 1e9;
        double d1 = scrape(port, "tether_messages_delivered_total");
        r->ack_p50 = r->acked ? p50w / (double)r->acked : 0;
        r->delivered = d1 >= d0 && d0 >= 0 ? (uint64_t)(d1 - d0) : 0;
        r->delivered_rate = r->seconds > 0 ? (double)r->delivered / r->seconds : 0;
        r->srv_cpu_pct = wall > 0 && c0 >= 0 ? 100.0 * (c1 - c0) / wall : 0;
        r->lost = r->sent > r->delivered ? r->sent - r->delivered : 0;
    }
    for (uint32_t i = 0; i < o->drivers; i++) {
        say(&drv[i], "end\n");
    }
    for (uint32_t i = 0; i < o->drivers; i++) {
        finish(&drv[i], 0, 30000);
    }
    finish(&srv, SIGTERM, 30000);
    loadavg3(r->load_after);
    if (rc != 0) {
        snprintf(r->error, sizeof r->error, "a driver did not report in time");
        return -1;
    }
    r->ok = r->live == o->sessions && r->lost == 0 && r->pending == 0 && r->acked == r->sent;
    if (!r->ok) {
        snprintf(r->error, sizeof r->error,
                 "live %u of %u, lost %llu, pending %llu, acked %llu of %llu", r->live, o->sessions,
                 (unsigned long long)r->lost, (unsigned long long)r->pending,
                 (unsigned long long)r->acked, (unsigned long long)r->sent);
    }
    return r->ok ? 0 : -1;
}

static void table(const srow *r, uint32_t size)
{
    printf("\nMany sessions: one `tether serve` (memory store), %u sessions from %u driver "
           "process%s, %u B messages\n",
           r->sessions, r->drivers, r->drivers > 1 ? "es" : "", size);
    printf("%-28s %10s %10s %12s %10s %10s %10s %8s %9s\n", "row", "live", "connect s",
           "KiB/session", "msg/s", "ack p50", "ack p99", "lost", "srv CPU%");
    printf("%-28s %10u %10.2f %12.2f %10s %10s %10s %8s %9s\n", "idle", r->live, r->connect_s,
           r->kib_per_session, "-", "-", "-", "-", "-");
    if (r->rate > 0) {
        char name[40];
        snprintf(name, sizeof name, "rate %g msg/s/session", r->rate);
        printf("%-28s %10u %10s %12s %10.0f %8.0fus %8.0fus %8llu %9.1f\n", name, r->live, "-", "-",
               r->delivered_rate, r->ack_p50, r->ack_p99, (unsigned long long)r->lost,
               r->srv_cpu_pct);
    }
    printf("load average %.2f before, %.2f after; %s\n", r->load_before[0], r->load_after[0],
           r->ok ? "every session live, nothing lost" : r->error);
}

static int files(const bench_sessions_opts *o, const srow *r)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.csv", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    fprintf(f, "name,group,sessions,drivers,rate_per_session,size,ok,live,connect_s,"
               "server_rss_before_kb,server_rss_idle_kb,server_kib_per_session,driver_rss_kb,"
               "sent,acked,delivered,lost,delivered_rate,ack_p50_us,ack_p99_us,ack_max_us,"
               "server_cpu_pct,load_before,load_after\n");
    fprintf(f,
            "sessions/idle/%u,sessions,%u,%u,0,%u,%d,%u,%.3f,%ld,%ld,%.3f,%ld,0,0,0,0,0,0,0,0,"
            "0,%.2f,%.2f\n",
            r->sessions, r->sessions, r->drivers, o->size, r->ok, r->live, r->connect_s, r->rss0_kb,
            r->rss1_kb, r->kib_per_session, r->driver_rss_kb, r->load_before[0], r->load_after[0]);
    if (r->rate > 0) {
        fprintf(f,
                "sessions/rate/%u@%g,sessions,%u,%u,%g,%u,%d,%u,%.3f,%ld,%ld,%.3f,%ld,%llu,%llu,"
                "%llu,%llu,%.1f,%.1f,%.1f,%.1f,%.1f,%.2f,%.2f\n",
                r->sessions, r->rate, r->sessions, r->drivers, r->rate, o->size, r->ok, r->live,
                r->connect_s, r->rss0_kb, r->rss1_kb, r->kib_per_session, r->driver_rss_kb,
                (unsigned long long)r->sent, (unsigned long long)r->acked,
                (unsigned long long)r->delivered, (unsigned long long)r->lost, r->delivered_rate,
                r->ack_p50, r->ack_p99, r->ack_max, r->srv_cpu_pct, r->load_before[0],
                r->load_after[0]);
    }
    if (fclose(f) != 0) {
        return -1;
    }
    snprintf(path, sizeof path, "%s/results.json", o->out);
    f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    fprintf(f,
            "{\"mode\":\"sessions\",\"load_before\":[%.2f,%.2f,%.2f],\"load_after\":[%.2f,%.2f,"
            "%.2f],\"rows\":[\n",
            r->load_before[0], r->load_before[1], r->load_before[2], r->load_after[0],
            r->load_after[1], r->load_after[2]);
    fprintf(f,
            "{\"name\":\"sessions/idle/%u\",\"sessions\":%u,\"drivers\":%u,\"ok\":%s,\"live\":%u,"
            "\"connect_s\":%.3f,\"server_rss_before_kb\":%ld,\"server_rss_idle_kb\":%ld,"
            "\"server_kib_per_session\":%.3f,\"driver_rss_kb\":%ld}",
            r->sessions, r->sessions, r->drivers, r->ok ? "true" : "false", r->live, r->connect_s,
            r->rss0_kb, r->rss1_kb, r->kib_per_session, r->driver_rss_kb);
    if (r->rate > 0) {
        fprintf(f,
                ",\n{\"name\":\"sessions/rate/%u@%g\",\"sessions\":%u,\"rate_per_session\":%g,"
                "\"size\":%u,\"ok\":%s,\"sent\":%llu,\"acked\":%llu,\"delivered\":%llu,"
                "\"lost\":%llu,\"delivered_rate\":%.1f,\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f,"
                "\"ack_max_us\":%.1f,\"server_cpu_pct\":%.1f}",
                r->sessions, r->rate, r->sessions, r->rate, o->size, r->ok ? "true" : "false",
                (unsigned long long)r->sent, (unsigned long long)r->acked,
                (unsigned long long)r->delivered, (unsigned long long)r->lost, r->delivered_rate,
                r->ack_p50, r->ack_p99, r->ack_max, r->srv_cpu_pct);
    }
    fprintf(f, "\n]}\n");
    return fclose(f) != 0 ? -1 : 0;
}

int bench_sessions_run(const bench_sessions_opts *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* tether serve and the drivers inherit it */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t per = (o->sessions + o->drivers - 1) / o->drivers;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && per + 32 > rl.rlim_cur) {
        fprintf(stderr,
                "tether bench: %llu sessions per driver need more open files than this "
                "process may have (%llu): use --drivers %llu or more\n",
                (unsigned long long)per, (unsigned long long)rl.rlim_cur,
                (unsigned long long)((o->sessions + rl.rlim_cur - 33) / (rl.rlim_cur - 32)));
        return 2;
    }
    if (o->sessions + 32 > rl.rlim_cur) {
        fprintf(stderr,
                "tether bench: the server, one process, would need %u open files; "
                "processes here may have %llu\n",
                o->sessions + 32, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    fprintf(stderr,
            "tether bench: %u sessions, %u driver%s, rate %g msg/s per session; results in %s\n",
            o->sessions, o->drivers, o->drivers > 1 ? "s" : "", o->rate, o->out);
    srow r;
    int rc = measure(o, &r);
    table(&r, o->size);
    if (files(o, &r) != 0) {
        fprintf(stderr, "tether bench: cannot write the result files in %s\n", o->out);
        rc = -1;
    }
    return rc == 0 ? 0 : 1;
}

/* `tether bench --role sessions-driver ...`: the driver's options. */
int bench_sessions_role(int argc, char **argv)
{
    bench_driver_opts d = {.size = 64, .timeout_s = 120};
    for (int i = 1; i + 1 < argc; i++) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--url") == 0) {
            d.url = v;
        } else if (strcmp(k, "--sessions") == 0) {
            d.sessions = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--rate") == 0) {
            d.rate = strtod(v, NULL);
        } else if (strcmp(k, "--duration") == 0) {
            d.duration_s = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--size") == 0) {
            d.size = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--timeout") == 0) {
            d.timeout_s = (uint32_t)strtoul(v, NULL, 10);
        } else {
            continue;
        }
        i++;
    }
    if (!d.url || !d.sessions || d.size < 16) {
        fprintf(stderr,
                "tether bench: sessions-driver: --url, --sessions and --size >= 16 needed\n");
        return 2;
    }
    return bench_sessions_driver(&d);
}

/* A number that is all of s, within [lo, hi]. 0 or -1. */
static int number(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

int bench_sessions_opt(bench_sessions_opts *o, int opt, const char *arg)
{
    double v;
    switch (opt) {
    case 'N':
        if (number(arg, 1, 1000000, &v) != 0 || v != (uint32_t)v) {
            break;
        }
        o->sessions = (uint32_t)v;
        return 0;
    case 'R':
        if (number(arg, 0, 1000, &v) != 0) {
            break;
        }
        o->rate = v;
        return 0;
    case 'K':
        if (number(arg, 1, MAX_DRIVERS, &v) != 0 || v != (uint32_t)v) {
            break;
        }
        o->drivers = (uint32_t)v;
        return 0;
    case 'T':
        if (number(arg, 1, 3600, &v) != 0 || v != (uint32_t)v) {
            break;
        }
        o->duration_s = (uint32_t)v;
        return 0;
    default:
        break;
    }
    /* name the flag and what it takes, as the other flags' messages do */
    static const struct {
        int opt;
        const char *flag, *range;
    } ranges[] = {
        {'N', "--sessions", "a whole number from 1 to 1000000"},
        {'R', "--rate", "messages per second per session, from 0 to 1000"},
        {'K', "--drivers", "a whole number from 1 to 64"},
        {'T', "--duration", "whole seconds from 1 to 3600"},
    };
    const char *flag = "this option", *range = "see 'tether bench --help'";
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        if (ranges[i].opt == opt) {
            flag = ranges[i].flag;
            range = ranges[i].range;
        }
    }
    fprintf(stderr, "tether bench: %s wants %s, not '%s'\nTry 'tether bench --help'.\n", flag,
            range, arg);
    return -1;
}

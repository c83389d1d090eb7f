/*
 * The orchestrator's child processes (this same binary, started with
 * --role or as `tether send`): starting them, reading their JSON lines,
 * stopping them by PID; and the bits every kind of run shares (latency
 * fields, scratch stores, runs.jsonl).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run.h"

/* Starts this binary with argv; its stdin is a pipe (ch->wr), or in_fd when >= 0. */
int bench_spawn_in(bench_child *ch, char *const argv[], int in_fd)
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

int bench_spawn(bench_child *ch, char *const argv[])
{
    return bench_spawn_in(ch, argv, -1);
}

/* Waits up to wait_ms for the bench_child to exit (killing it after that); its
 * exit status, or -1 when it was killed. */
int bench_child_exit(bench_child *ch, int wait_ms)
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
int bench_child_line(bench_child *ch, char *line, size_t len, int timeout_ms)
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
void bench_child_end(bench_child *ch, int wait_ms)
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



void bench_lat_of(const char *line, const char *prefix, lat4 *l)
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

void bench_rm_db(const char *path)
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

void bench_log_line(const bench_run_opts *ro, const bench_cfg *c, int rate_phase, int rep,
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

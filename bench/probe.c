/*
 * Measurements inside one peer process: latency histograms, CPU and peak RSS
 * from getrusage(), TCP payload byte counters from tcp_info, and the one JSON
 * line a peer prints. Nothing here allocates per message.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked / tcpi_bytes_received */
#include <netinet/in.h>

#include "bench.h"

/* ---- histogram ---- */

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned sub = (unsigned)(v >> (e - 6)) & (HIST_SUB - 1);
    unsigned i = HIST_SUB + (e - 6) * HIST_SUB + sub;
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The middle of bucket i. */
static uint64_t bucket_value(unsigned i)
{
    if (i < HIST_SUB) {
        return i;
    }
    unsigned e = (i - HIST_SUB) / HIST_SUB + 6;
    uint64_t sub = (i - HIST_SUB) % HIST_SUB;
    uint64_t lo = (HIST_SUB + sub) << (e - 6);
    uint64_t w = (uint64_t)1 << (e - 6);
    return lo + w / 2;
}

void hist_add(bench_hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->n++;
    if (v > h->max) {
        h->max = v;
    }
}

uint64_t hist_quantile(const bench_hist *h, double q)
{
    if (h->n == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)h->n);
    if (want >= h->n) {
        return h->max;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t v = bucket_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- clocks, CPU, memory ---- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_until_ns(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void bench_rusage(double *cpu_s, long *maxrss_kb)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (cpu_s) {
        *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    if (maxrss_kb) {
        *maxrss_kb = ru.ru_maxrss;
    }
}

double bench_proc_cpu_s(int pid)
{
    /* not /proc/PID/schedstat: that is the main thread's alone */
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command (which may hold spaces) in parentheses */
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &stime) != 2) {
        return -1;
    }
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + stime) / (double)(hz > 0 ? hz : 100);
}

void bench_tcp_bytes(uint64_t *sent, uint64_t *received)
{
    uint64_t s = 0, r = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char *end;
            long fd = strtol(de->d_name, &end, 10);
            if (*end != '\0' || fd < 0 || fd == dirfd(d)) {
                continue;
            }
            struct stat st;
            if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
                continue;
            }
            struct tcp_info ti;
            socklen_t len = sizeof ti;
            memset(&ti, 0, sizeof ti);
            if (getsockopt((int)fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
                ti.tcpi_state != 1 /* TCP_ESTABLISHED */) {
                continue;
            }
            s += ti.tcpi_bytes_acked;
            r += ti.tcpi_bytes_received;
        }
        closedir(d);
    }
    *sent = s;
    *received = r;
}

double bench_psi(const char *what)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/pressure/%s", what);
    FILE *f = fopen(path, "r");
    double v = -1;
    if (!f) {
        return v;
    }
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "avg60=");
        if (strncmp(line, "some", 4) == 0 && p) {
            v = strtod(p + 6, NULL);
        }
    }
    fclose(f);
    return v;
}

/* ---- payloads ---- */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

uint64_t bench_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

void bench_fill(uint8_t *p, uint32_t size, uint64_t ts, uint64_t index)
{
    put64(p, ts);
    put64(p + 8, index);
    /* The filler stays whatever the buffer held: callers fill it once. */
    (void)size;
}

/* ---- JSON lines ---- */

static void bj_raw(bench_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bj_raw(bench_json *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        j->len += (size_t)n;
        if (j->len >= sizeof j->buf) {
            j->len = sizeof j->buf - 1;
        }
    }
}

void bj_begin(bench_json *j)
{
    j->len = 0;
    j->buf[0] = '\0';
    bj_raw(j, "{");
}

static void comma(bench_json *j)
{
    if (j->len > 1) {
        bj_raw(j, ",");
    }
}

void bj_num(bench_json *j, const char *key, double v)
{
    comma(j);
    bj_raw(j, "\"%s\":%.6g", key, v);
}

void bj_int(bench_json *j, const char *key, uint64_t v)
{
    comma(j);
    bj_raw(j, "\"%s\":%llu", key, (unsigned long long)v);
}

void bj_str(bench_json *j, const char *key, const char *v)
{
    comma(j);
    bj_raw(j, "\"%s\":\"", key);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            bj_raw(j, "\\%c", *p);
        } else if ((unsigned char)*p < 0x20) {
            bj_raw(j, " ");
        } else {
            bj_raw(j, "%c", *p);
        }
    }
    bj_raw(j, "\"");
}

void bj_hist(bench_json *j, const char *prefix, const bench_hist *h)
{
    char k[64];
    snprintf(k, sizeof k, "%s_n", prefix);
    bj_int(j, k, h->n);
    snprintf(k, sizeof k, "%s_p50", prefix);
    bj_num(j, k, (double)hist_quantile(h, 0.50) / 1e3);
    snprintf(k, sizeof k, "%s_p99", prefix);
    bj_num(j, k, (double)hist_quantile(h, 0.99) / 1e3);
    snprintf(k, sizeof k, "%s_p999", prefix);
    bj_num(j, k, (double)hist_quantile(h, 0.999) / 1e3);
    snprintf(k, sizeof k, "%s_max", prefix);
    bj_num(j, k, (double)h->max / 1e3);
}

void bj_emit(bench_json *j)
{
    bj_raw(j, "}");
    fprintf(stdout, "%s\n", j->buf);
    fflush(stdout);
}

static const char *find_key(const char *line, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? p + strlen(pat) : NULL;
}

double bj_get(const char *line, const char *key, double def)
{
    const char *p = find_key(line, key);
    if (!p) {
        return def;
    }
    char *end;
    double v = strtod(p, &end);
    return end == p ? def : v;
}

int bj_get_str(const char *line, const char *key, char *out, size_t len)
{
    const char *p = find_key(line, key);
    if (!p || *p != '"' || len == 0) {
        return -1;
    }
    p++;
    size_t i = 0;
    while (*p && *p != '"' && i + 1 < len) {
        if (*p == '\\' && p[1]) {
            p++;
        }
        out[i++] = *p++;
    }
    out[i] = '\0';
    return 0;
}

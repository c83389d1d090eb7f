/*
 * tether: the command-line tool. main() dispatches to a subcommand; the helpers
 * below (argument parsing, signals, JSON output) are shared by all of them.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The only mutable global state: what the signal handler records. */
static volatile sig_atomic_t stop_signal;

static const char main_help[] =
    "Usage: tether <command> [options]\n"
    "\n"
    "Reliable messaging over WebSocket: every message is numbered, stored until the\n"
    "peer acknowledges it, and resent after a dropped connection or a crash.\n"
    "\n"
    "Commands:\n"
    "  serve    run a server that stores and prints every message it receives\n"
    "  send     send stdin lines or generated messages; exit 0 once all are acked\n"
    "  status   show what a tether store holds (sessions, cursors, pending)\n"
    "  demo     cut connections and SIGKILL the client mid-stream, then verify\n"
    "           that nothing was lost, duplicated or reordered\n"
    "  chaos    a fault-injecting TCP relay (cuts, stalls, blackholes, delay, ...)\n"
    "  scenario run the resume-after-disconnect scenario suite (quick or soak)\n"
#ifdef TETHER_HAVE_BENCH
    "  bench    measure ACK overhead against raw libwebsockets\n"
#endif
    "\n"
    "Run 'tether <command> --help' for a command's options.\n"
    "  tether --version   prints the version\n"
    "\n" CLI_EXIT_HELP;

#ifdef TETHER_HAVE_BENCH
int cli_bench(int argc, char **argv);
#endif

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", cli_serve},
    {"send", cli_send},
    {"status", cli_status},
    {"demo", cli_demo},
    {"chaos", cli_chaos},
    {"scenario", cli_scenario},
#ifdef TETHER_HAVE_BENCH
    {"bench", cli_bench}, /* src/cli/bench.c; built with TETHER_BENCH=ON */
#endif
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_help, stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(main_help, stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tether %s\n", tether_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            /* getopt reports errors under argv[0]: make it "tether <cmd>". */
            char name[64];
            snprintf(name, sizeof name, "tether %s", commands[i].name);
            argv[1] = name;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "tether: unknown command '%s'; try 'tether --help'\n", argv[1]);
    return CLI_USAGE;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tether %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'tether %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tether %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_durability(const char *s, tether_durability *out)
{
    if (strcmp(s, "off") == 0) {
        *out = TETHER_DURABILITY_OFF;
    } else if (strcmp(s, "normal") == 0) {
        *out = TETHER_DURABILITY_NORMAL;
    } else if (strcmp(s, "full") == 0) {
        *out = TETHER_DURABILITY_FULL;
    } else {
        return -1;
    }
    return 0;
}

int cli_parse_range(const char *s, uint32_t *min, uint32_t *max)
{
    char a[32];
    const char *colon = strchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof a) {
        return -1;
    }
    memcpy(a, s, (size_t)(colon - s));
    a[colon - s] = '\0';
    uint64_t lo, hi;
    if (cli_parse_u64(a, 0, UINT32_MAX, &lo) != 0 ||
        cli_parse_u64(colon + 1, 0, UINT32_MAX, &hi) != 0 || lo > hi) {
        return -1;
    }
    *min = (uint32_t)lo;
    *max = (uint32_t)hi;
    return 0;
}

static void on_signal(int sig)
{
    stop_signal = sig;
}

void cli_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* A store that reaches the file size limit (ulimit -f) is a store error the
     * command reports (write() fails with EFBIG), not a silent kill. */
    sigaction(SIGXFSZ, &sa, NULL);
}

int cli_stop_requested(void)
{
    return stop_signal != 0;
}

int cli_stop_signal(void)
{
    return (int)stop_signal;
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cli_sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int reserve(cli_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int cli_buf_add(cli_buf *b, const void *data, size_t len)
{
    if (reserve(b, len) != 0) {
        return -1;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int cli_buf_printf(cli_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) {
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int cli_buf_json_str(cli_buf *b, const char *s, size_t len)
{
    if (reserve(b, len * 6 + 2) != 0) {
        return -1;
    }
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = '\0';
    b->len = (size_t)(o - b->data);
    return 0;
}

void cli_buf_free(cli_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int cli_utf8_valid(const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

int cli_buf_base64(cli_buf *b, const void *data, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    if (reserve(b, (len + 2) / 3 * 4) != 0) {
        return -1;
    }
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    b->len = (size_t)(o - b->data);
    return 0;
}

void cli_print_message(FILE *out, const tether_session_id *id, uint64_t seq, const void *data,
                       size_t len, int redelivered)
{
    char hex[33];
    cli_buf b = {0};
    tether_session_id_hex(id, hex);
    int rc = cli_buf_printf(&b, "{\"session\":\"%s\",\"seq\":%llu,\"redelivered\":%s,", hex,
                            (unsigned long long)seq, redelivered ? "true" : "false");
    if (rc == 0 && cli_utf8_valid(data, len)) {
        rc = cli_buf_add(&b, "\"text\":", 7);
        rc = rc ? rc : cli_buf_json_str(&b, data, len);
    } else if (rc == 0) {
        rc = cli_buf_add(&b, "\"base64\":\"", 10);
        rc = rc ? rc : cli_buf_base64(&b, data, len);
        rc = rc ? rc : cli_buf_add(&b, "\"", 1);
    }
    rc = rc ? rc : cli_buf_add(&b, "}\n", 2);
    if (rc == 0) {
        /* One write per line, so lines from different threads never interleave. */
        fwrite(b.data, 1, b.len, out);
        fflush(out);
    } else {
        fprintf(stderr, "tether: out of memory printing message %llu\n", (unsigned long long)seq);
    }
    cli_buf_free(&b);
}

void cli_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t cli_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

const char *cli_state_name(int state)
{
    switch (state) {
    case TETHER_STATE_CONNECTING:
        return "CONNECTING";
    case TETHER_STATE_CONNECTED:
        return "CONNECTED";
    case TETHER_STATE_DISCONNECTED:
        return "DISCONNECTED";
    case TETHER_STATE_RECONNECTING:
        return "RECONNECTING";
    case TETHER_STATE_STOPPED:
        return "STOPPED";
    default:
        return "NONE";
    }
}

int cli_write_port_file(const char *path, uint16_t port)
{
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (tmp == NULL) {
        return -1;
    }
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f != NULL) {
        int ok = fprintf(f, "%u\n", (unsigned)port) > 0;
        ok = (fclose(f) == 0) && ok;
        rc = ok && rename(tmp, path) == 0 ? 0 : -1;
        if (rc != 0) {
            int e = errno;
            unlink(tmp);
            errno = e;
        }
    }
    int e = errno; /* the caller names the reason */
    free(tmp);
    errno = e;
    return rc;
}

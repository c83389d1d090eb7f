/*
 * The chaos relay's language: command lines and timelines parsed into faults,
 * faults written back as commands, and the random fault schedule drawn from a
 * seed. Pure functions, no sockets; chaos.c runs what this file describes.
 */
#include "chaos.h"
#include "chaos_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BUFFER_RATE 65536u
#define DEFAULT_BUFFER_CAP (64u << 20)
#define MAX_TOKENS 24

static const char *const kind_names[TETHER__CHAOS_KINDS] = {
    "none", "cut",   "stall",  "stall-upgrade", "blackhole", "delay",
    "rate", "split", "buffer", "refuse",        "clear",
};

const char *tether__chaos_kind_name(int kind)
{
    return kind >= 0 && kind < TETHER__CHAOS_KINDS ? kind_names[kind] : "?";
}

/* ---- parsing helpers ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* "250", "250ms", "1.5s", "2s" -> ms. */
static int parse_time(const char *s, uint64_t *ms)
{
    char *end = NULL;
    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || v > 1e12) {
        return -1;
    }
    if (*end == '\0' || strcmp(end, "ms") == 0) {
        *ms = (uint64_t)(v + 0.5);
    } else if (strcmp(end, "s") == 0) {
        *ms = (uint64_t)(v * 1000.0 + 0.5);
    } else {
        return -1;
    }
    return 0;
}

/* "1000", "64k", "1m", "100kb/s", "2MiB" -> bytes. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) {
        return -1;
    }
    char unit[16];
    size_t n = strlen(end);
    if (n >= sizeof unit) {
        return -1;
    }
    for (size_t i = 0; i <= n; i++) {
        unit[i] = (char)tolower((unsigned char)end[i]);
    }
    if (n >= 2 && strcmp(unit + n - 2, "/s") == 0) {
        unit[n - 2] = '\0';
    }
    uint64_t mul = 1;
    if (unit[0] == '\0' || strcmp(unit, "b") == 0) {
        mul = 1;
    } else if (strcmp(unit, "k") == 0 || strcmp(unit, "kb") == 0 || strcmp(unit, "kib") == 0) {
        mul = 1024;
    } else if (strcmp(unit, "m") == 0 || strcmp(unit, "mb") == 0 || strcmp(unit, "mib") == 0) {
        mul = 1024 * 1024;
    } else {
        return -1;
    }
    if (v > UINT64_MAX / mul) {
        return -1;
    }
    *out = v * mul;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    char *end = NULL;
    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > UINT32_MAX) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_dir(const char *s)
{
    if (strcmp(s, "up") == 0) {
        return TETHER__CHAOS_UP;
    }
    if (strcmp(s, "down") == 0) {
        return TETHER__CHAOS_DOWN;
    }
    if (strcmp(s, "both") == 0 || strcmp(s, "either") == 0) {
        return TETHER__CHAOS_BOTH;
    }
    return 0;
}

static int kind_of(const char *s)
{
    for (int k = 1; k < TETHER__CHAOS_KINDS; k++) {
        if (strcmp(s, kind_names[k]) == 0) {
            return k;
        }
    }
    return 0;
}

/* "a,b,c" or "all" into a kind bit set; 0 on an unknown name. */
static unsigned parse_kinds(const char *s)
{
    if (strcmp(s, "all") == 0) {
        return TETHER__CHAOS_RANDOM_DEFAULT | (1u << TETHER__CHAOS_BLACKHOLE) |
               (1u << TETHER__CHAOS_STALL_UPGRADE);
    }
    unsigned set = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        return 0;
    }
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = kind_of(t);
        if (k == 0 || k == TETHER__CHAOS_CLEAR) {
            return 0;
        }
        set |= 1u << k;
    }
    return set;
}

int tether__chaos_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        return -1;
    }
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']') {
            return -1;
        }
        h++;
        hlen -= 2;
    }
    uint32_t p;
    if (hlen + 1 > hostlen || parse_u32(colon + 1, &p) != 0 || p > 65535) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* ---- one command ---- */

typedef struct toks {
    char *t[MAX_TOKENS]; /* the words */
    int n;               /* how many */
    int i;               /* next to read */
} toks;

static const char *peek(const toks *k)
{
    return k->i < k->n ? k->t[k->i] : NULL;
}

static int is(const toks *k, const char *w)
{
    const char *p = peek(k);
    return p && strcmp(p, w) == 0;
}

/* Options shared by the timed kinds: a direction and "for TIME", any order. */
/* [up|down|both] (allow & 1), [after N bytes] (allow & 2, stall-upgrade), [for TIME] */
static int tail_opts(toks *k, tether__chaos_fault *f, int allow, char *err, size_t errlen)
{
    while (peek(k)) {
        int d = parse_dir(peek(k));
        uint64_t n;
        if (d && (allow & 1)) {
            f->dir = d;
            k->i++;
        } else if ((allow & 2) && is(k, "after")) {
            k->i++;
            if (!peek(k) || parse_size(peek(k), &n) != 0 || n == 0 || n > (64u << 20)) {
                return fail(err, errlen,
                            "stall-upgrade: 'after' wants 1 to 64m bytes, e.g. 'after 200 bytes'");
            }
            k->i++;
            if (!is(k, "bytes") && !is(k, "byte")) {
                return fail(err, errlen, "stall-upgrade: 'after %llu' wants 'bytes'",
                            (unsigned long long)n);
            }
            f->after_bytes = n;
            k->i++;
        } else if (is(k, "for")) {
            uint64_t ms;
            k->i++;
            if (!peek(k) || parse_time(peek(k), &ms) != 0 || ms > UINT32_MAX) {
                return fail(err, errlen, "'for' wants a time such as 500ms or 2s");
            }
            f->for_ms = (uint32_t)ms;
            k->i++;
        } else {
            return fail(err, errlen, "unexpected '%s'", peek(k));
        }
    }
    return 0;
}

static int parse_cut(toks *k, tether__chaos_fault *f, char *err, size_t errlen)
{
    f->rst = 1;
    while (peek(k)) {
        int d = parse_dir(peek(k));
        if (is(k, "rst")) {
            f->rst = 1;
            k->i++;
        } else if (is(k, "fin")) {
            f->rst = 0;
            k->i++;
        } else if (d) {
            f->dir = d;
            k->i++;
        } else if (is(k, "after")) {
            uint64_t n;
            k->i++;
            if (!peek(k) || parse_size(peek(k), &n) != 0 || n == 0) {
                return fail(err, errlen, "'after' wants a count >= 1, then 'bytes' or 'frames'");
            }
            k->i++;
            if (is(k, "bytes") || is(k, "byte")) {
                f->after_bytes = n;
            } else if (is(k, "frames") || is(k, "frame")) {
                f->after_frames = n;
            } else {
                return fail(err, errlen, "'after %llu' wants 'bytes' or 'frames'",
                            (unsigned long long)n);
            }
            k->i++;
        } else {
            return fail(err, errlen, "cut: unexpected '%s'", peek(k));
        }
    }
    if (f->after_bytes && f->after_frames) {
        return fail(err, errlen, "cut: 'after N bytes' or 'after N frames', not both");
    }
    return 0;
}

/* stall-upgrade [up|down|both] [after N bytes] [for TIME] */
static int parse_ustall(toks *k, tether__chaos_fault *f, char *err, size_t errlen)
{
    if (tail_opts(k, f, 3, err, errlen) != 0) {
        return -1;
    }
    if (f->after_bytes && f->dir != TETHER__CHAOS_BOTH) {
        return fail(err, errlen,
                    "stall-upgrade after N bytes stops both directions: no 'up' or 'down' with it");
    }
    return 0;
}

static int parse_fault(toks *k, int kind, tether__chaos_fault *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->dir = TETHER__CHAOS_BOTH;
    k->i++;
    if (kind != TETHER__CHAOS_CUT && is(k, "off")) {
        f->off = 1;
        k->i++;
        return tail_opts(k, f, 1, err, errlen);
    }
    uint64_t v;
    switch (kind) {
    case TETHER__CHAOS_CUT:
        return parse_cut(k, f, err, errlen);
    case TETHER__CHAOS_STALL:
        return tail_opts(k, f, 1, err, errlen);
    case TETHER__CHAOS_STALL_UPGRADE: /* a direction: which stops after the upgrade */
        return parse_ustall(k, f, err, errlen);
    case TETHER__CHAOS_BLACKHOLE:
    case TETHER__CHAOS_REFUSE:
        return tail_opts(k, f, 0, err, errlen);
    case TETHER__CHAOS_DELAY: {
        uint64_t ms;
        if (!peek(k) || parse_time(peek(k), &ms) != 0 || ms > 600000) {
            return fail(err, errlen, "delay wants a time (up to 600s), e.g. 'delay 50ms'");
        }
        f->delay_ms = (uint32_t)ms;
        k->i++;
        if (is(k, "jitter")) {
            k->i++;
            if (!peek(k) || parse_time(peek(k), &ms) != 0 || ms > 600000) {
                return fail(err, errlen, "jitter wants a time, e.g. 'jitter 20ms'");
            }
            f->jitter_ms = (uint32_t)ms;
            k->i++;
        }
        if (f->delay_ms == 0 && f->jitter_ms == 0) {
            f->off = 1;
        }
        return tail_opts(k, f, 1, err, errlen);
    }
    case TETHER__CHAOS_RATE:
        if (!peek(k) || parse_size(peek(k), &v) != 0) {
            return fail(err, errlen, "rate wants bytes per second, e.g. 'rate 100k'");
        }
        f->rate = v;
        f->off = v == 0;
        k->i++;
        return tail_opts(k, f, 1, err, errlen);
    case TETHER__CHAOS_SPLIT:
        if (!peek(k) || parse_size(peek(k), &v) != 0 || v > 65536) {
            return fail(err, errlen, "split wants the largest piece in bytes, e.g. 'split 3'");
        }
        f->split = (uint32_t)v;
        f->off = v == 0;
        k->i++;
        if (is(k, "gap")) {
            uint64_t ms;
            k->i++;
            if (!peek(k) || parse_time(peek(k), &ms) != 0 || ms > 10000) {
                return fail(err, errlen, "gap wants a time up to 10s, e.g. 'gap 2ms'");
            }
            f->gap_ms = (uint32_t)ms;
            k->i++;
        }
        return tail_opts(k, f, 1, err, errlen);
    case TETHER__CHAOS_BUFFER:
        f->rate = DEFAULT_BUFFER_RATE;
        f->cap = DEFAULT_BUFFER_CAP;
        if (peek(k) && parse_size(peek(k), &v) == 0) {
            f->rate = v;
            k->i++;
        }
        if (is(k, "cap")) {
            k->i++;
            if (!peek(k) || parse_size(peek(k), &v) != 0 || v < 1024) {
                return fail(err, errlen, "cap wants a size of at least 1k, e.g. 'cap 16m'");
            }
            f->cap = v;
            k->i++;
        }
        return tail_opts(k, f, 1, err, errlen);
    case TETHER__CHAOS_CLEAR:
        return peek(k) ? fail(err, errlen, "clear takes no arguments") : 0;
    }
    return fail(err, errlen, "unknown fault");
}

int tether__chaos_parse(const char *line, tether__chaos_cmd *out, char *err, size_t errlen)
{
    char buf[1024];
    toks k = {.n = 0, .i = 0};
    memset(out, 0, sizeof *out);
    if (strlen(line) >= sizeof buf) {
        return fail(err, errlen, "line too long");
    }
    snprintf(buf, sizeof buf, "%s", line);
    char *hash = strchr(buf, '#');
    if (hash) {
        *hash = '\0';
    }
    for (char *save = NULL, *t = strtok_r(buf, " \t\r\n", &save); t;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        if (k.n == MAX_TOKENS) {
            return fail(err, errlen, "too many words");
        }
        k.t[k.n++] = t;
    }
    if (k.n == 0) {
        out->op = TETHER__CHAOS_OP_NOP;
        return 0;
    }
    if (is(&k, "at") || is(&k, "in")) {
        out->when = is(&k, "at") ? 1 : 2;
        k.i++;
        if (!peek(&k) || parse_time(peek(&k), &out->when_ms) != 0) {
            return fail(err, errlen, "'%s' wants a time such as 1.5s or 200ms",
                        out->when == 1 ? "at" : "in");
        }
        k.i++;
        if (!peek(&k)) {
            return fail(err, errlen, "a command must follow the time");
        }
    }
    const char *w = peek(&k);
    if (strcmp(w, "resume") == 0 || strcmp(w, "accept") == 0) {
        int kind = w[0] == 'r' ? TETHER__CHAOS_STALL : TETHER__CHAOS_REFUSE;
        memset(&out->fault, 0, sizeof out->fault);
        out->op = TETHER__CHAOS_OP_FAULT;
        out->fault.kind = kind;
        out->fault.off = 1;
        out->fault.dir = TETHER__CHAOS_BOTH;
        k.i++;
        return tail_opts(&k, &out->fault, kind == TETHER__CHAOS_STALL, err, errlen);
    }
    int kind = kind_of(w);
    if (kind) {
        out->op = TETHER__CHAOS_OP_FAULT;
        return parse_fault(&k, kind, &out->fault, err, errlen);
    }
    if (strcmp(w, "random") == 0) {
        k.i++;
        if (is(&k, "off")) {
            out->op = TETHER__CHAOS_OP_NORANDOM;
            return k.n == k.i + 1 ? 0 : fail(err, errlen, "random off takes nothing more");
        }
        out->op = TETHER__CHAOS_OP_RANDOM;
        tether__chaos_random *r = &out->random;
        uint64_t lo, hi;
        const char *range = peek(&k);
        const char *colon = range ? strchr(range, ':') : NULL;
        char a[32];
        if (!colon || (size_t)(colon - range) >= sizeof a) {
            return fail(err, errlen, "random wants MIN:MAX in ms, e.g. 'random 200:800'");
        }
        memcpy(a, range, (size_t)(colon - range));
        a[colon - range] = '\0';
        if (parse_time(a, &lo) != 0 || parse_time(colon + 1, &hi) != 0 || lo == 0 || lo > hi ||
            hi > UINT32_MAX) {
            return fail(err, errlen, "random wants MIN:MAX with 1 <= MIN <= MAX");
        }
        r->min_ms = (uint32_t)lo;
        r->max_ms = (uint32_t)hi;
        k.i++;
        while (peek(&k)) {
            if (is(&k, "plain")) {
                r->plain_cuts = 1;
            } else if ((r->kinds = parse_kinds(peek(&k))) == 0) {
                return fail(err, errlen, "unknown fault kinds '%s'", peek(&k));
            }
            k.i++;
        }
        if (r->kinds == 0) {
            r->kinds = TETHER__CHAOS_RANDOM_DEFAULT;
        }
        return 0;
    }
    if (strcmp(w, "upstream") == 0) {
        out->op = TETHER__CHAOS_OP_UPSTREAM;
        k.i++;
        if (is(&k, "none") && k.n == k.i + 1) {
            snprintf(out->host, sizeof out->host, "none");
            return 0;
        }
        if (!peek(&k) || k.n != k.i + 1 ||
            tether__chaos_parse_hostport(peek(&k), out->host, sizeof out->host, &out->port) != 0 ||
            out->port == 0) {
            return fail(err, errlen, "upstream wants HOST:PORT");
        }
        return 0;
    }
    if (strcmp(w, "status") == 0) {
        out->op = TETHER__CHAOS_OP_STATUS;
        return k.n == k.i + 1 ? 0 : fail(err, errlen, "status takes no arguments");
    }
    return fail(err, errlen, "unknown command '%s'", w);
}

/* ---- timelines ---- */

int tether__chaos_parse_timeline(const char *text, tether__chaos_event **events, size_t *n,
                                 uint64_t *seed, tether__chaos_random *random, int *random_on,
                                 char *err, size_t errlen)
{
    size_t cap = 0, cnt = 0;
    tether__chaos_event *ev = NULL;
    int lineno = 0;
    const char *p = text;
    char line[1024], why[200];
    *events = NULL;
    *n = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (len >= sizeof line) {
            free(ev);
            return fail(err, errlen, "line %d: too long", lineno);
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (nl ? 1 : 0);

        char *s = line;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (strncmp(s, "seed", 4) == 0 && (s[4] == ' ' || s[4] == '\t')) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(s + 5, &end, 10);
            while (end && (*end == ' ' || *end == '\t' || *end == '\r')) {
                end++;
            }
            if (errno || !end || (*end && *end != '#')) {
                free(ev);
                return fail(err, errlen, "line %d: seed wants a number", lineno);
            }
            if (seed) {
                *seed = v;
            }
            continue;
        }
        tether__chaos_cmd cmd;
        if (tether__chaos_parse(s, &cmd, why, sizeof why) != 0) {
            free(ev);
            return fail(err, errlen, "line %d: %s", lineno, why);
        }
        if (cmd.op == TETHER__CHAOS_OP_NOP) {
            continue;
        }
        if (cmd.op == TETHER__CHAOS_OP_RANDOM && cmd.when == 0) {
            if (random) {
                *random = cmd.random;
            }
            if (random_on) {
                *random_on = 1;
            }
            continue;
        }
        if (cmd.op != TETHER__CHAOS_OP_FAULT || cmd.when == 2) {
            free(ev);
            return fail(err, errlen,
                        "line %d: a timeline holds faults ('at TIME FAULT'), seed and random",
                        lineno);
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            tether__chaos_event *ne = realloc(ev, nc * sizeof *ne);
            if (!ne) {
                free(ev);
                return fail(err, errlen, "out of memory");
            }
            ev = ne;
            cap = nc;
        }
        ev[cnt].at_ms = cmd.when_ms;
        ev[cnt].fault = cmd.fault;
        cnt++;
    }
    /* insertion sort keeps equal times in file order */
    for (size_t i = 1; i < cnt; i++) {
        for (size_t j = i; j > 0 && ev[j - 1].at_ms > ev[j].at_ms; j--) {
            tether__chaos_event t = ev[j];
            ev[j] = ev[j - 1];
            ev[j - 1] = t;
        }
    }
    *events = ev;
    *n = cnt;
    return 0;
}

/* ---- formatting ---- */

static const char *dir_name(int dir)
{
    return dir == TETHER__CHAOS_UP ? "up" : dir == TETHER__CHAOS_DOWN ? "down" : "both";
}

static void add(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char *out, size_t len, const char *fmt, ...)
{
    size_t used = strlen(out);
    if (used + 1 >= len) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + used, len - used, fmt, ap);
    va_end(ap);
}

void tether__chaos_format(const tether__chaos_fault *f, char *out, size_t len)
{
    out[0] = '\0';
    add(out, len, "%s", tether__chaos_kind_name(f->kind));
    int dir_matters = f->kind == TETHER__CHAOS_STALL || f->kind == TETHER__CHAOS_DELAY ||
                      f->kind == TETHER__CHAOS_RATE || f->kind == TETHER__CHAOS_SPLIT ||
                      f->kind == TETHER__CHAOS_BUFFER;
    if (f->kind == TETHER__CHAOS_CUT) {
        add(out, len, " %s", f->rst ? "rst" : "fin");
        if (f->after_bytes) {
            add(out, len, " after %llu bytes %s", (unsigned long long)f->after_bytes,
                dir_name(f->dir));
        } else if (f->after_frames) {
            add(out, len, " after %llu frames %s", (unsigned long long)f->after_frames,
                dir_name(f->dir));
        }
        return;
    }
    if (f->kind == TETHER__CHAOS_CLEAR) {
        return;
    }
    if (f->off) {
        add(out, len, " off");
        if (dir_matters && f->dir != TETHER__CHAOS_BOTH) {
            add(out, len, " %s", dir_name(f->dir));
        }
        return;
    }
    if (f->kind == TETHER__CHAOS_STALL_UPGRADE && f->dir && f->dir != TETHER__CHAOS_BOTH) {
        add(out, len, " %s", dir_name(f->dir));
    }
    if (f->kind == TETHER__CHAOS_STALL_UPGRADE && f->after_bytes) {
        add(out, len, " after %llu bytes", (unsigned long long)f->after_bytes);
    }
    switch (f->kind) {
    case TETHER__CHAOS_DELAY:
        add(out, len, " %ums", (unsigned)f->delay_ms);
        if (f->jitter_ms) {
            add(out, len, " jitter %ums", (unsigned)f->jitter_ms);
        }
        break;
    case TETHER__CHAOS_RATE:
        add(out, len, " %llu", (unsigned long long)f->rate);
        break;
    case TETHER__CHAOS_SPLIT:
        add(out, len, " %u", (unsigned)f->split);
        if (f->gap_ms) {
            add(out, len, " gap %ums", (unsigned)f->gap_ms);
        }
        break;
    case TETHER__CHAOS_BUFFER:
        add(out, len, " %llu", (unsigned long long)f->rate);
        if (f->cap && f->cap != DEFAULT_BUFFER_CAP) {
            add(out, len, " cap %llu", (unsigned long long)f->cap);
        }
        break;
    }
    if (dir_matters) {
        add(out, len, " %s", dir_name(f->dir));
    }
    if (f->for_ms) {
        add(out, len, " for %ums", (unsigned)f->for_ms);
    }
}

/* ---- the random schedule ---- */

void tether__chaos_gen_init(tether__chaos_gen *g, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->rng = seed ^ 0x6368616f73ull; /* "chaos" */
}

int tether__chaos_random_valid(const tether__chaos_random *r)
{
    unsigned allowed = TETHER__CHAOS_RANDOM_DEFAULT | (1u << TETHER__CHAOS_BLACKHOLE) |
                       (1u << TETHER__CHAOS_STALL_UPGRADE);
    unsigned kinds = r->kinds ? r->kinds : TETHER__CHAOS_RANDOM_DEFAULT;
    return r->min_ms >= 1 && r->min_ms <= r->max_ms && (kinds & ~allowed) == 0;
}

static int pick_dir(uint64_t *rng)
{
    return (int)tether__rng_range(rng, 1, 3);
}

void tether__chaos_gen_next(tether__chaos_gen *g, const tether__chaos_random *r,
                            tether__chaos_event *ev)
{
    uint64_t *rng = &g->rng;
    unsigned kinds = r->kinds ? r->kinds : TETHER__CHAOS_RANDOM_DEFAULT;
    int list[TETHER__CHAOS_KINDS];
    int nk = 0;
    for (int k = 1; k < TETHER__CHAOS_KINDS; k++) {
        if (kinds & (1u << k)) {
            list[nk++] = k;
        }
    }
    g->at_ms += tether__rng_range(rng, r->min_ms, r->max_ms);
    ev->at_ms = g->at_ms;
    tether__chaos_fault *f = &ev->fault;
    memset(f, 0, sizeof *f);
    f->kind = nk ? list[tether__rng_range(rng, 0, (uint64_t)nk - 1)] : TETHER__CHAOS_CUT;
    f->dir = TETHER__CHAOS_BOTH;
    switch (f->kind) {
    case TETHER__CHAOS_CUT:
        if (r->plain_cuts) {
            f->rst = (int)(g->cuts % 2);
        } else {
            f->rst = (int)tether__rng_range(rng, 0, 1);
            uint64_t how = tether__rng_range(rng, 0, 9);
            if (how >= 6 && how < 8) {
                f->after_bytes = tether__rng_range(rng, 1, 8192);
                f->dir = pick_dir(rng);
            } else if (how >= 8) {
                f->after_frames = tether__rng_range(rng, 1, 20);
                f->dir = pick_dir(rng);
            }
        }
        g->cuts++;
        break;
    case TETHER__CHAOS_STALL:
        f->dir = pick_dir(rng);
        f->for_ms = (uint32_t)tether__rng_range(rng, 100, 1500);
        break;
    case TETHER__CHAOS_STALL_UPGRADE:
    case TETHER__CHAOS_BLACKHOLE:
        f->for_ms = (uint32_t)tether__rng_range(rng, 500, 3000);
        break;
    case TETHER__CHAOS_DELAY:
        f->delay_ms = (uint32_t)tether__rng_range(rng, 5, 80);
        f->jitter_ms = (uint32_t)tether__rng_range(rng, 0, 40);
        f->for_ms = (uint32_t)tether__rng_range(rng, 500, 3000);
        break;
    case TETHER__CHAOS_RATE:
        f->dir = pick_dir(rng);
        f->rate = tether__rng_range(rng, 16, 512) * 1024;
        f->for_ms = (uint32_t)tether__rng_range(rng, 500, 3000);
        break;
    case TETHER__CHAOS_SPLIT:
        f->dir = pick_dir(rng);
        f->split = (uint32_t)tether__rng_range(rng, 1, 16);
        f->for_ms = (uint32_t)tether__rng_range(rng, 300, 2000);
        break;
    case TETHER__CHAOS_BUFFER:
        f->dir = pick_dir(rng);
        f->rate = tether__rng_range(rng, 32, 512) * 1024;
        f->cap = DEFAULT_BUFFER_CAP;
        f->for_ms = (uint32_t)tether__rng_range(rng, 500, 3000);
        break;
    case TETHER__CHAOS_REFUSE:
        f->for_ms = (uint32_t)tether__rng_range(rng, 100, 1500);
        break;
    }
    g->n++;
}

int tether__chaos_plan(uint64_t seed, const tether__chaos_random *r, tether__chaos_event *out,
                       size_t n)
{
    if (!r || !tether__chaos_random_valid(r)) {
        return -1;
    }
    tether__chaos_gen g;
    tether__chaos_gen_init(&g, seed);
    for (size_t i = 0; i < n; i++) {
        tether__chaos_gen_next(&g, r, &out[i]);
    }
    return 0;
}

/*
 * tether send: sends stdin lines or generated messages through a client whose
 * outbox lives in --db, and exits 0 only once the server acknowledged every
 * message the store holds, including a backlog left by an earlier run.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/defaults.h" /* TETHER__DEFAULT_MAX_MESSAGE: the largest message */
#include "netopts.h"
#include "scenario/record.h"

enum pattern { PATTERN_TEXT, PATTERN_SEQ };

typedef struct send_opts {
    const char *url;      /* positional URL (the first) */
    const char *urls[17]; /* every positional URL, NULL-terminated */
    char label[600];      /* the URLs for messages: "URL" or "URL or URL ..." */
    int have_count;       /* --count given */
    uint64_t count;       /* --count */
    uint64_t until_seq;   /* --until-seq (0: not given) */
    uint64_t size;        /* --size */
    enum pattern pattern; /* --pattern */
    uint64_t batch;       /* --batch */
    uint64_t max_pending; /* --max-pending */
    uint64_t timeout_ms;  /* --timeout-ms */
    int linger;           /* --linger */
    int quiet;            /* --quiet */
    int verbose;          /* --verbose */
    const char *record;   /* --record */
    cli_client_net net;   /* --header lines (connectivity options) */
} send_opts;

/* A kind of connection problem: two failures with the same key are the same
 * problem, reported once (docs/decisions.md, "CLI connectivity options"). */
typedef struct send_problem {
    int error;        /* the tether_err of the failed attempt */
    int http_status;  /* the server's answer to the upgrade, 0 when none */
    int proxy_status; /* the proxy's answer to CONNECT when not 200, else 0 */
    int reject_code;  /* the server's REJECT or BYE code, 0 when none */
} send_problem;

#define SEND_PROBLEMS 16 /* kinds remembered per outage (a ring beyond) */

/* What the callbacks need; they run on the client's service thread, one at a time. */
typedef struct send_ctx {
    tether_session_id id;             /* our session, for printing */
    int quiet;                        /* --quiet */
    int verbose;                      /* --verbose */
    const char *url;                  /* the server(s), for problem reports */
    char cur[1024];                   /* the URL of the latest attempt (several URLs) */
    int was_connected;                /* a connection came up before this outage */
    uint32_t failures;                /* failed attempts since the last connection came up */
    send_problem seen[SEND_PROBLEMS]; /* kinds reported during this outage */
    size_t nseen;                     /* kinds reported so far (seen[] is a ring) */
} send_ctx;

/* 1 when data is the text "<word> <seq>" (how the demo's server numbers its messages). */
static int numbered_text(const uint8_t *data, size_t len, uint64_t seq)
{
    char want[24];
    int n = snprintf(want, sizeof want, " %llu", (unsigned long long)seq);
    if (len <= (size_t)n || memcmp(data + len - (size_t)n, want, (size_t)n) != 0) {
        return 0;
    }
    return memchr(data, ' ', len - (size_t)n) == NULL && cli_utf8_valid(data, len);
}

static void on_message(tether_client *c, uint64_t seq, const void *data, size_t len,
                       int redelivered, void *user)
{
    send_ctx *ctx = user;
    scen_record("D %llu %d %d", (unsigned long long)seq, redelivered ? 1 : 0,
                numbered_text(data, len, seq));
    if (!ctx->quiet) {
        cli_print_message(stdout, &ctx->id, seq, data, len, redelivered);
    }
}

/* Without --verbose: reports each distinct problem of an outage once (on the
 * RECONNECTING that follows the failure, so "retrying" is true), and once that
 * the connection came up after problems. */
static void report_problem(send_ctx *ctx, const tether_state_info *si)
{
    const char *url = ctx->cur[0] ? ctx->cur : ctx->url;
    if (si->state == TETHER_STATE_CONNECTED) {
        if (ctx->failures > 0) {
            fprintf(stderr, "tether send: connected to %s after %u failed attempt%s\n", url,
                    (unsigned)ctx->failures, ctx->failures == 1 ? "" : "s");
        }
        ctx->failures = 0;
        ctx->nseen = 0;
        ctx->was_connected = 1;
        return;
    }
    if (si->state == TETHER_STATE_RECONNECTING && si->error == TETHER_OK &&
        strncmp(si->detail, "back to WebSocket", 17) == 0) {
        fprintf(stderr, "tether send: %s\n", si->detail); /* the carriage changed */
        return;
    }
    if (si->state == TETHER_STATE_CONNECTING && strstr(si->detail, ": starting on the HTTP")) {
        fprintf(stderr, "tether send: %s\n", strstr(si->detail, ": starting on the HTTP") + 2);
        return;
    }
    if (si->state != TETHER_STATE_RECONNECTING || si->error == TETHER_OK) {
        return;
    }
    int lost = ctx->failures == 0 && ctx->was_connected;
    ctx->failures++;
    send_problem p = {si->error, si->http_status, si->proxy_status, si->reject_code};
    size_t known = ctx->nseen < SEND_PROBLEMS ? ctx->nseen : SEND_PROBLEMS;
    for (size_t i = 0; i < known; i++) {
        if (memcmp(&ctx->seen[i], &p, sizeof p) == 0) {
            return;
        }
    }
    ctx->seen[ctx->nseen++ % SEND_PROBLEMS] = p;
    char extra[96] = "";
    int n = 0;
    if (p.http_status != 0) {
        n += snprintf(extra + n, sizeof extra - (size_t)n, " (HTTP status %d)", p.http_status);
    }
    if (p.proxy_status != 0) {
        n += snprintf(extra + n, sizeof extra - (size_t)n, " (proxy status %d)", p.proxy_status);
    }
    if (p.reject_code != 0) {
        snprintf(extra + n, sizeof extra - (size_t)n, " (reject code %d)", p.reject_code);
    }
    const char *why = si->detail[0] ? si->detail : tether_strerror(p.error);
    if (lost) {
        fprintf(stderr, "tether send: connection to %s lost: %s: %s%s; reconnecting\n", url,
                tether_err_name(p.error), why, extra);
    } else {
        fprintf(stderr, "tether send: cannot connect to %s: %s: %s%s; retrying\n", url,
                tether_err_name(p.error), why, extra);
    }
}

static void on_state(tether_client *c, const tether_state_info *si, void *user)
{
    send_ctx *ctx = user;
    if (si->state == TETHER_STATE_CONNECTING && strstr(ctx->url, " or ")) {
        /* several URLs: the detail starts with the one this attempt uses */
        size_t n = strcspn(si->detail, " ");
        if (n > 0 && n < sizeof ctx->cur && strncmp(si->detail, "ws", 2) == 0) {
            memcpy(ctx->cur, si->detail, n);
            ctx->cur[n] = '\0';
        }
    }
    if (!ctx->verbose && !ctx->quiet) {
        report_problem(ctx, si);
    }
    if (si->state == TETHER_STATE_CONNECTED) {
        scen_record("C %d", si->resumed ? 1 : 0);
    } else if ((si->state == TETHER_STATE_DISCONNECTED || si->state == TETHER_STATE_STOPPED) &&
               si->error) {
        scen_record("X %s %s", cli_state_name(si->state), tether_err_name(si->error));
    }
    if (!ctx->verbose && si->state != TETHER_STATE_STOPPED) {
        return;
    }
    if (si->state == TETHER_STATE_RECONNECTING) {
        fprintf(stderr, "tether send: RECONNECTING in %u ms (attempt %u)\n",
                (unsigned)si->retry_in_ms, (unsigned)si->attempt);
    } else if (si->state == TETHER_STATE_CONNECTED) {
        fprintf(stderr, "tether send: CONNECTED (%s)\n", si->resumed ? "resumed" : "new session");
    } else {
        char extra[64] = "";
        int n = 0;
        if (si->http_status != 0) {
            n = snprintf(extra, sizeof extra, " (HTTP status %d)", si->http_status);
        }
        if (si->reject_code != 0) {
            snprintf(extra + n, sizeof extra - (size_t)n, " (reject code %d)", si->reject_code);
        }
        fprintf(stderr, "tether send: %s%s%s%s%s%s\n", cli_state_name(si->state),
                si->error ? ": " : "", si->error ? tether_err_name(si->error) : "",
                si->detail[0] ? ": " : "", si->detail, extra);
    }
}

static void on_acked(tether_client *c, uint64_t first, uint64_t last, void *user)
{
    scen_record("A %llu %llu", (unsigned long long)first, (unsigned long long)last);
}

static void on_mismatch(tether_client *c, const tether_mismatch_info *mi, void *user)
{
    scen_record_mismatch(mi);
    fprintf(stderr,
            "tether send: session state mismatch: the server %s the session; ours: out_last "
            "%llu peer_acked %llu recv_cursor %llu; the server's: out_last %llu recv_cursor "
            "%llu; %llu acked messages lost by the server\n",
            mi->peer_knows_session ? "knows" : "does not know",
            (unsigned long long)mi->local_out_last, (unsigned long long)mi->local_peer_acked,
            (unsigned long long)mi->local_recv_cursor, (unsigned long long)mi->peer_out_last,
            (unsigned long long)mi->peer_recv_cursor, (unsigned long long)mi->lost_acked);
    fprintf(stderr, "tether send: this session cannot go on; to start a new one, give another "
                    "--db file (this one keeps its unacknowledged messages for 'tether status')\n");
}

/* Fills one generated payload for sequence number seq. */
static void fill(uint8_t *p, size_t size, enum pattern pat, uint64_t seq)
{
    size_t off = 0;
    if (pat == PATTERN_SEQ) {
        cli_put_be64(p, seq);
        off = 8;
    } else {
        char head[32];
        int n = snprintf(head, sizeof head, "msg %llu ", (unsigned long long)seq);
        off = (size_t)n < size ? (size_t)n : size;
        memcpy(p, head, off);
    }
    memset(p + off, 'x', size - off);
}

/* "<state>: <error>: <detail>" of the client's last state report. */
static void describe_state(tether_client *c, char *out, size_t len)
{
    tether_state_info si;
    char detail[256] = "";
    if (tether_client_last_state(c, &si, detail, sizeof detail) != TETHER_OK) {
        snprintf(out, len, "state unknown");
        return;
    }
    char extra[64] = "";
    int n = 0;
    if (si.http_status != 0) {
        n = snprintf(extra, sizeof extra, ", HTTP status %d", si.http_status);
    }
    if (si.reject_code != 0) {
        snprintf(extra + n, sizeof extra - (size_t)n, ", reject code %d", si.reject_code);
    }
    snprintf(out, len, "last state %s%s%s%s%s%s", cli_state_name(si.state), si.error ? ": " : "",
             si.error ? tether_err_name(si.error) : "", detail[0] ? ": " : "", detail, extra);
}

static int fail_rc(tether_client *c, const char *what, int rc)
{
    char why[512], st[512];
    snprintf(why, sizeof why, "%s", tether_errmsg());
    describe_state(c, st, sizeof st);
    return cli_fail("send", "%s: %s: %s (%s)", what, tether_err_name(rc), why, st);
}

/* Waits while --max-pending messages are unacked; fails after timeout_ms without
 * any ack progress. Returns 0 with *room the number of messages that may be
 * added now (at least 1; UINT64_MAX without a limit), or an exit status. */
static int throttle(tether_client *c, const send_opts *o, uint64_t *room)
{
    *room = UINT64_MAX;
    if (o->max_pending == 0) {
        return 0;
    }
    uint64_t pending = 0, last_pending = UINT64_MAX;
    uint64_t since = cli_now_ms();
    for (;;) {
        int rc = tether_client_pending(c, &pending, NULL);
        if (rc != TETHER_OK) {
            return fail_rc(c, "cannot read the pending count", rc);
        }
        if (pending < o->max_pending) {
            *room = o->max_pending - pending;
            return 0;
        }
        if (pending < last_pending) {
            last_pending = pending;
            since = cli_now_ms();
        } else if (cli_now_ms() - since > o->timeout_ms) {
            char st[512];
            describe_state(c, st, sizeof st);
            return cli_fail("send",
                            "TETHER_ETIMEDOUT: no acknowledgement for %llu ms with %llu "
                            "messages pending (%s)",
                            (unsigned long long)o->timeout_ms, (unsigned long long)pending, st);
        }
        if (cli_stop_requested()) {
            return cli_fail("send", "interrupted by signal %d; unacked messages stay in the store",
                            cli_stop_signal());
        }
        cli_sleep_ms(1);
    }
}

/* Sends n generated messages (n = UINT64_MAX with until_seq: up to that seq). */
static int send_generated(tether_client *c, const send_opts *o)
{
    uint64_t batch = o->batch;
    /* big messages: keep one transaction's payloads near 1 MiB */
    if (o->size > 0 && batch > (1u << 20) / o->size) {
        batch = (1u << 20) / o->size ? (1u << 20) / o->size : 1;
    }
    uint8_t *buf = malloc(batch * o->size + 1);
    tether_msg *msgs = malloc(batch * sizeof *msgs);
    if (buf == NULL || msgs == NULL) {
        free(buf);
        free(msgs);
        return cli_fail("send", "out of memory");
    }
    int status = 0;
    uint64_t sent = 0;
    for (;;) {
        uint64_t last = 0;
        int rc = tether_client_last_seq(c, &last);
        if (rc != TETHER_OK) {
            status = fail_rc(c, "cannot read the last sequence number", rc);
            break;
        }
        uint64_t want =
            o->until_seq ? (o->until_seq > last ? o->until_seq - last : 0) : o->count - sent;
        if (want == 0) {
            break;
        }
        if (cli_stop_requested()) {
            status = cli_fail("send",
                              "interrupted by signal %d; unacked messages stay in the "
                              "store",
                              cli_stop_signal());
            break;
        }
        uint64_t room = 0;
        if ((status = throttle(c, o, &room)) != 0) {
            break;
        }
        want = want < room ? want : room;
        size_t n = (size_t)(want < batch ? want : batch);
        for (size_t i = 0; i < n; i++) {
            fill(buf + i * o->size, (size_t)o->size, o->pattern, last + 1 + i);
            msgs[i].data = buf + i * o->size;
            msgs[i].len = (size_t)o->size;
        }
        uint64_t first = 0;
        rc = n == 1 ? tether_client_send(c, msgs[0].data, msgs[0].len, &first)
                    : tether_client_send_batch(c, msgs, n, &first);
        if (rc != TETHER_OK) {
            status = fail_rc(c, "send failed", rc);
            break;
        }
        if (first != last + 1) {
            /* Only this thread sends, so the numbering must follow last_seq. */
            status = cli_fail("send",
                              "sequence mismatch: the library numbered the message %llu, "
                              "expected %llu",
                              (unsigned long long)first, (unsigned long long)(last + 1));
            break;
        }
        sent += n;
    }
    free(buf);
    free(msgs);
    return status;
}

/* A stdin line above the largest message: fails, naming it (1-based). */
static int line_too_long(uint64_t lineno, size_t len, int partial)
{
    return cli_fail("send",
                    "line %llu is %s%zu bytes, above the largest message (max_message_bytes, "
                    "%u); nothing from it on was sent",
                    (unsigned long long)lineno, partial ? "at least " : "", len,
                    (unsigned)TETHER__DEFAULT_MAX_MESSAGE);
}

/* Sends the complete lines in buf[0, *len) in batches of at most o->batch, one
 * transaction each; moves a trailing partial line to the front. *lineno counts
 * the lines sent. Returns 0 or an exit status. */
static int send_lines(tether_client *c, const send_opts *o, char *buf, size_t *len,
                      tether_msg *msgs, uint64_t *lineno)
{
    size_t start = 0;
    for (;;) {
        size_t n = 0, at = start;
        if (!memchr(buf + start, '\n', *len - start)) {
            break; /* no complete line yet */
        }
        uint64_t room = 0;
        int status = throttle(c, o, &room);
        if (status != 0) {
            return status;
        }
        size_t limit = room < o->batch ? (size_t)room : (size_t)o->batch;
        while (n < limit) {
            char *nl = memchr(buf + at, '\n', *len - at);
            if (!nl) {
                break;
            }
            size_t ll = (size_t)(nl - (buf + at));
            if (ll > TETHER__DEFAULT_MAX_MESSAGE) {
                if (n == 0) {
                    return line_too_long(*lineno + 1, ll, 0);
                }
                break; /* the lines before it go first */
            }
            msgs[n].data = buf + at;
            msgs[n].len = ll;
            n++;
            at = (size_t)(nl - buf) + 1;
        }
        int rc = n == 1 ? tether_client_send(c, msgs[0].data, msgs[0].len, NULL)
                        : tether_client_send_batch(c, msgs, n, NULL);
        if (rc != TETHER_OK) {
            return fail_rc(c, "send failed", rc);
        }
        *lineno += n;
        start = at;
    }
    memmove(buf, buf + start, *len - start);
    *len -= start;
    return 0;
}

/* Reads stdin as it comes: every read() returns what the pipe holds, and all
 * the complete lines in it go out in one transaction (up to --batch lines). */
static int send_stdin(tether_client *c, const send_opts *o)
{
    size_t cap = 1u << 16, len = 0;
    uint64_t lineno = 0;
    char *buf = malloc(cap);
    tether_msg *msgs = malloc(o->batch * sizeof *msgs);
    int status = 0, eof = 0;
    if (!buf || !msgs) {
        free(buf);
        free(msgs);
        return cli_fail("send", "out of memory");
    }
    while (!eof && status == 0) {
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                status = cli_fail("send", "out of memory for a %zu-byte line", len);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = read(STDIN_FILENO, buf + len, cap - len);
        if (got < 0 && errno == EINTR && !cli_stop_requested()) {
            continue;
        }
        if (got < 0) {
            status = cli_stop_requested() ? 0 : cli_fail("send", "cannot read stdin: %s",
                                                         strerror(errno));
        } else if (got == 0) {
            eof = 1;
            if (len > 0 && buf[len - 1] != '\n') {
                buf[len++] = '\n'; /* the last line lacks its newline; len < cap here */
            }
        } else {
            len += (size_t)got;
        }
        if (status == 0 && cli_stop_requested()) {
            status = cli_fail("send", "interrupted by signal %d; unacked messages stay in the store",
                              cli_stop_signal());
        }
        if (status == 0) {
            status = send_lines(c, o, buf, &len, msgs, &lineno);
        }
        if (status == 0 && len > TETHER__DEFAULT_MAX_MESSAGE) {
            /* no newline yet and already too long: no need to read the rest */
            status = line_too_long(lineno + 1, len, 1);
        }
    }
    free(buf);
    free(msgs);
    return status;
}

/* Waits until everything is acked. In linger mode a signal does not interrupt
 * this wait (it only ends the lingering). Returns 0 or an exit status. */
static int wait_all_acked(tether_client *c, const send_opts *o, int signal_ends)
{
    uint64_t deadline = cli_now_ms() + o->timeout_ms;
    for (;;) {
        /* Short slices, so a signal is noticed; never 0, which could mean "forever". */
        uint64_t now = cli_now_ms();
        uint32_t slice = now + 100 <= deadline ? 100 : 1;
        int rc = tether_client_wait_acked(c, slice);
        if (rc == TETHER_OK) {
            return 0;
        }
        if (rc != TETHER_ETIMEDOUT) {
            char why[512];
            snprintf(why, sizeof why, "%s", tether_errmsg());
            uint64_t pending = 0;
            tether_client_pending(c, &pending, NULL);
            char st[512];
            describe_state(c, st, sizeof st);
            return cli_fail("send", "%s: %llu messages not acknowledged: %s (%s)",
                            tether_err_name(rc), (unsigned long long)pending, why, st);
        }
        if (signal_ends && cli_stop_requested()) {
            return cli_fail("send", "interrupted by signal %d; unacked messages stay in the store",
                            cli_stop_signal());
        }
        if (cli_now_ms() >= deadline) {
            uint64_t pending = 0, acked = 0, last = 0;
            tether_client_pending(c, &pending, NULL);
            tether_client_acked(c, &acked);
            tether_client_last_seq(c, &last);
            char st[512];
            describe_state(c, st, sizeof st);
            return cli_fail("send",
                            "TETHER_ETIMEDOUT: %llu messages not acknowledged after %llu "
                            "ms (acked up to %llu of %llu; %s)",
                            (unsigned long long)pending, (unsigned long long)o->timeout_ms,
                            (unsigned long long)acked, (unsigned long long)last, st);
        }
    }
}

static int parse_opts(int argc, char **argv, send_opts *o, tether_client_config *cfg)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"durability", required_argument, NULL, 'D'},
        {"count", required_argument, NULL, 'n'},
        {"until-seq", required_argument, NULL, 'u'},
        {"size", required_argument, NULL, 's'},
        {"pattern", required_argument, NULL, 'P'},
        {"batch", required_argument, NULL, 'b'},
        {"max-pending", required_argument, NULL, 'm'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"linger", no_argument, NULL, 'L'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"record", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 'S'},
        {"backoff-base-ms", required_argument, NULL, 'B'},
        {"backoff-cap-ms", required_argument, NULL, 'C'},
        {"backoff-reset-ms", required_argument, NULL, 'R'},
        CLI_CLIENT_NET_OPTIONS,
        {"transport", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (optarg[0] == '\0') {
                return cli_usage_error("send", "--db wants a file name, not ''");
            }
            if (strncmp(optarg, "postgresql://", 13) == 0 || strncmp(optarg, "postgres://", 11) == 0) {
                /* not echoed: the URI may hold a password */
                return cli_usage_error("send", "--db wants a SQLite file: the PostgreSQL store "
                                               "holds a server's sessions (tether serve --db)");
            }
            cfg->db_path = optarg;
            break;
        case 'D':
            if (cli_parse_durability(optarg, &cfg->durability) != 0) {
                return cli_usage_error("send", "--durability must be off, normal or full");
            }
            break;
        case 'n':
            if (cli_parse_u64(optarg, 0, INT64_MAX, &o->count) != 0) {
                /* a session's seqs end at 2^63 - 1 (docs/config.md) */
                return cli_usage_error("send", "--count wants 0 to 2^63 - 1, not '%s'", optarg);
            }
            o->have_count = 1;
            break;
        case 'u':
            if (cli_parse_u64(optarg, 1, INT64_MAX, &o->until_seq) != 0) {
                return cli_usage_error("send", "--until-seq wants 1 to 2^63 - 1, not '%s'", optarg);
            }
            break;
        case 's':
            if (cli_parse_u64(optarg, 0, TETHER__DEFAULT_MAX_MESSAGE, &o->size) != 0) {
                return cli_usage_error("send",
                                       "--size wants 0 to %u bytes (the largest message, "
                                       "max_message_bytes), not '%s'",
                                       (unsigned)TETHER__DEFAULT_MAX_MESSAGE, optarg);
            }
            break;
        case 'P':
            if (strcmp(optarg, "text") == 0) {
                o->pattern = PATTERN_TEXT;
            } else if (strcmp(optarg, "seq") == 0) {
                o->pattern = PATTERN_SEQ;
            } else {
                return cli_usage_error("send", "--pattern must be text or seq");
            }
            break;
        case 'b':
            if (cli_parse_u64(optarg, 1, 65536, &o->batch) != 0) {
                return cli_usage_error("send", "--batch wants 1 to 65536, not '%s'", optarg);
            }
            break;
        case 'm':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &o->max_pending) != 0) {
                return cli_usage_error("send", "--max-pending wants a number, not '%s'", optarg);
            }
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, UINT32_MAX, &o->timeout_ms) != 0) {
                return cli_usage_error("send", "--timeout-ms wants 1 to 4294967295, not '%s'",
                                       optarg);
            }
            break;
        case 'L':
            o->linger = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case 'r':
            o->record = optarg;
            break;
        case 'S':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &cfg->random_seed) != 0) {
                return cli_usage_error("send", "--seed wants a number, not '%s'", optarg);
            }
            break;
        case 'B':
        case 'C':
        case 'R':
            if (cli_parse_u64(optarg, 1, UINT32_MAX, &v) != 0) {
                return cli_usage_error("send", "backoff times want 1 to 4294967295 ms, not '%s'",
                                       optarg);
            }
            if (c == 'B') {
                cfg->backoff_base_ms = (uint32_t)v;
            } else if (c == 'C') {
                cfg->backoff_cap_ms = (uint32_t)v;
            } else {
                cfg->backoff_reset_ms = (uint32_t)v;
            }
            break;
        CLI_CLIENT_NET_CASES: {
            int rc = cli_client_net_option(c, optarg, &o->net, cfg);
            if (rc != 0) {
                return rc;
            }
            break;
        }
        case 'T':
            if (strcmp(optarg, "auto") == 0) {
                cfg->transport = TETHER_TRANSPORT_AUTO;
            } else if (strcmp(optarg, "websocket") == 0) {
                cfg->transport = TETHER_TRANSPORT_WEBSOCKET;
            } else if (strcmp(optarg, "http") == 0) {
                cfg->transport = TETHER_TRANSPORT_HTTP;
            } else {
                return cli_usage_error("send", "--transport must be auto, websocket or http");
            }
            break;
        case 'h':
            fputs(cli_send_help, stdout);
            return -1;
        default:
            fprintf(stderr, "Try 'tether send --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        return cli_usage_error("send", "missing the server URL (ws://HOST:PORT/)");
    }
    if (argc - optind > 16) {
        return cli_usage_error("send", "at most 16 URLs, not %d", argc - optind);
    }
    o->url = argv[optind];
    size_t ll = 0;
    for (int i = optind; i < argc; i++) {
        const char *u = argv[i];
        if (strncmp(u, "ws://", 5) != 0 && strncmp(u, "wss://", 6) != 0) {
            return cli_usage_error("send", "the URL must start with ws:// or wss://, not '%s'", u);
        }
        o->urls[i - optind] = u;
        int w = snprintf(o->label + ll, sizeof o->label - ll, "%s%s", i > optind ? " or " : "", u);
        ll = w < 0 || (size_t)w >= sizeof o->label - ll ? sizeof o->label - 1 : ll + (size_t)w;
    }
    if (o->have_count && o->until_seq) {
        return cli_usage_error("send", "--count and --until-seq exclude each other");
    }
    if (o->pattern == PATTERN_SEQ && o->size < 8) {
        return cli_usage_error("send", "--pattern seq needs --size of at least 8");
    }
    uint32_t base = cfg->backoff_base_ms ? cfg->backoff_base_ms : TETHER__DEFAULT_BACKOFF_BASE_MS;
    uint32_t cap = cfg->backoff_cap_ms ? cfg->backoff_cap_ms : TETHER__DEFAULT_BACKOFF_CAP_MS;
    if (base > cap) {
        return cli_usage_error("send",
                               "--backoff-cap-ms (%u) must be at least --backoff-base-ms (%u%s)",
                               (unsigned)cap, (unsigned)base,
                               cfg->backoff_base_ms ? "" : ", the default");
    }
    if (o->urls[1]) {
        cfg->urls = o->urls;
    } else {
        cfg->url = o->url;
    }
    return cli_client_net_finish(&o->net, cfg);
}

int cli_send(int argc, char **argv)
{
    send_opts o = {.size = 64, .batch = 4096, .timeout_ms = 30000, .pattern = PATTERN_TEXT};
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    int rc = parse_opts(argc, argv, &o, &cfg);
    if (rc != 0) {
        return rc < 0 ? CLI_OK : rc;
    }

    send_ctx ctx = {.quiet = o.quiet, .verbose = o.verbose, .url = o.label};
    cfg.cb.on_message = on_message;
    cfg.cb.on_state = on_state;
    cfg.cb.on_mismatch = on_mismatch;
    cfg.cb.on_acked = on_acked;
    cfg.user = &ctx;
    cfg.store_shared = 1; /* `tether status` may look at --db meanwhile */

    cli_signals_install();
    if (o.record) {
        cli_session_info si;
        if (scen_record_open(o.record) != 0) {
            return cli_fail("send", "cannot open %s: %s", o.record, strerror(errno));
        }
        if (scen_record_start(cfg.db_path, &si) < 0) {
            scen_record_close();
            return cli_fail("send", "cannot read the store %s", cfg.db_path);
        }
    }
    tether_client *c = NULL;
    rc = tether_client_create(&cfg, &c);
    if (rc != TETHER_OK) {
        scen_record_close();
        return cli_fail("send", "cannot open the client%s%s: %s: %s", cfg.db_path ? " on " : "",
                        cfg.db_path ? cfg.db_path : "", tether_err_name(rc), tether_errmsg());
    }
    uint64_t backlog = 0;
    tether_client_session(c, &ctx.id);
    tether_client_pending(c, &backlog, NULL);
    if (o.verbose && backlog > 0) {
        fprintf(stderr, "tether send: %llu unacknowledged messages from an earlier run\n",
                (unsigned long long)backlog);
    }
    rc = tether_client_start(c);
    if (rc != TETHER_OK) {
        int status = fail_rc(c, "cannot start the client", rc);
        tether_client_destroy(c);
        return status;
    }

    int status = (o.have_count || o.until_seq) ? send_generated(c, &o) : send_stdin(c, &o);
    if (status == 0) {
        status = wait_all_acked(c, &o, !o.linger);
    }
    if (status == 0 && o.linger) {
        while (!cli_stop_requested()) {
            cli_sleep_ms(50);
        }
        status = wait_all_acked(c, &o, 0);
    }
    uint64_t pending = 0, acked = 0, last = 0;
    if (status == 0) {
        tether_client_pending(c, &pending, NULL);
        tether_client_acked(c, &acked);
        tether_client_last_seq(c, &last);
        if (pending != 0 || acked != last) {
            status = cli_fail("send",
                              "the client reported all acked, but %llu messages are "
                              "pending (acked %llu of %llu)",
                              (unsigned long long)pending, (unsigned long long)acked,
                              (unsigned long long)last);
        }
    }
    tether_client_destroy(c);
    scen_record_close();
    if (status == 0 && !o.quiet) {
        char hex[33];
        tether_session_id_hex(&ctx.id, hex);
        fprintf(stderr, "tether send: all %llu messages of session %s acknowledged\n",
                (unsigned long long)last, hex);
    }
    return status;
}

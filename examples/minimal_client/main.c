/*
 * minimal_client: sends each command-line argument (or, with none, each line
 * of stdin) as one tether message, prints acknowledgements and connection
 * state changes, and exits 0 once the server has acknowledged everything.
 *
 *   example_minimal_client [--db FILE] [--timeout-ms MS] URL [MESSAGE...]
 *
 * The outbox is a SQLite file (default minimal_client.db), so messages that
 * were not acknowledged when the program stopped are sent by the next run.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

static const char *state_name(tether_state s)
{
    switch (s) {
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
    }
    return "?";
}

/* Callbacks run on the client's service thread: print and return at once. */

static void on_state(tether_client *c, const tether_state_info *info, void *user)
{
    (void)c;
    (void)user;
    fprintf(stderr, "state %s", state_name(info->state));
    if (info->error != TETHER_OK) {
        fprintf(stderr, " %s", tether_err_name(info->error));
    }
    if (info->http_status) {
        fprintf(stderr, " http=%d", info->http_status);
    }
    if (info->reject_code) {
        fprintf(stderr, " reject=%d", info->reject_code);
    }
    if (info->state == TETHER_STATE_RECONNECTING) {
        fprintf(stderr, " retry_in=%ums attempt=%u", (unsigned)info->retry_in_ms,
                (unsigned)info->attempt);
    }
    if (info->state == TETHER_STATE_CONNECTED) {
        fprintf(stderr, " %s", info->resumed ? "resumed" : "new session");
    }
    fprintf(stderr, ": %s\n", info->detail);
}

static void on_acked(tether_client *c, uint64_t first_seq, uint64_t last_seq, void *user)
{
    (void)c;
    (void)user;
    printf("acked %llu..%llu\n", (unsigned long long)first_seq, (unsigned long long)last_seq);
}

static void on_message(tether_client *c, uint64_t seq, const void *data, size_t len,
                       int redelivered, void *user)
{
    (void)c;
    (void)user;
    /* data is borrowed: print (or copy) it before returning */
    printf("received %llu%s: %.*s\n", (unsigned long long)seq, redelivered ? " (redelivered)" : "",
           (int)len, (const char *)data);
}

static void on_mismatch(tether_client *c, const tether_mismatch_info *mi, void *user)
{
    (void)c;
    (void)user;
    fprintf(stderr,
            "session mismatch: server %s the session; %llu acked messages lost by the server, "
            "%llu received messages the server does not know it sent\n",
            mi->peer_knows_session ? "knows" : "does not know",
            (unsigned long long)mi->lost_acked, (unsigned long long)mi->unknown_received);
}

static int send_one(tether_client *c, const char *text, size_t len)
{
    uint64_t seq = 0;
    int rc = tether_client_send(c, text, len, &seq);
    if (rc != TETHER_OK) {
        fprintf(stderr, "send failed: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return -1;
    }
    printf("stored %llu\n", (unsigned long long)seq);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: example_minimal_client [--db FILE] [--timeout-ms MS] URL [MESSAGE...]\n"
                    "  with no MESSAGE, each line of stdin is one message\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *db = "minimal_client.db";
    unsigned long timeout_ms = 30000;
    int i = 1;

    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            timeout_ms = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            return usage();
        }
    }
    if (i >= argc) {
        return usage();
    }
    const char *url = argv[i++];

    /* callbacks print from another thread: flush each line */
    setvbuf(stdout, NULL, _IOLBF, 0);

    tether_client_config cfg;
    tether_client_config_init(&cfg); /* zero everywhere means "the default" */
    cfg.url = url;
    cfg.db_path = db;
    cfg.durability = TETHER_DURABILITY_NORMAL;
    cfg.backoff_max_attempts = 10; /* give up rather than retry forever */
    cfg.cb.on_state = on_state;
    cfg.cb.on_acked = on_acked;
    cfg.cb.on_message = on_message;
    cfg.cb.on_mismatch = on_mismatch;

    tether_client *c = NULL;
    int rc = tether_client_create(&cfg, &c);
    if (rc != TETHER_OK) {
        fprintf(stderr, "cannot create the client: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return 1;
    }
    tether_session_id id;
    char hex[33];
    tether_client_session(c, &id);
    tether_session_id_hex(&id, hex);
    fprintf(stderr, "session %s, outbox %s\n", hex, db);

    rc = tether_client_start(c);
    if (rc != TETHER_OK) {
        fprintf(stderr, "cannot start the client: %s: %s\n", tether_err_name(rc), tether_errmsg());
        tether_client_destroy(c);
        return 1;
    }

    int failed = 0;
    if (i < argc) {
        for (; i < argc && !failed; i++) {
            failed = send_one(c, argv[i], strlen(argv[i])) != 0;
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (!failed && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n') {
                n--;
            }
            failed = send_one(c, line, (size_t)n) != 0;
        }
        free(line);
    }

    /* Everything stored so far, including a backlog from an earlier run. */
    rc = tether_client_wait_acked(c, (uint32_t)timeout_ms);
    if (rc != TETHER_OK) {
        uint64_t count = 0;
        tether_client_pending(c, &count, NULL);
        fprintf(stderr, "not all messages acknowledged: %s: %s (%llu pending; they stay in %s)\n",
                tether_err_name(rc), tether_errmsg(), (unsigned long long)count, db);
        failed = 1;
    } else {
        uint64_t acked = 0;
        tether_client_acked(c, &acked);
        fprintf(stderr, "all acknowledged up to seq %llu\n", (unsigned long long)acked);
    }
    tether_client_destroy(c);
    return failed ? 1 : 0;
}

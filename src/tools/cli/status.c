/*
 * tether status: what a store holds: its role and, per session, the sequence
 * numbers and the unacknowledged backlog. Reads the store through the internal
 * store interface (store/store.h: a read-only open, inspect(), session_list()
 * and pending()), the one place the tool goes past the public API; it never
 * talks to SQLite itself.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* Exit statuses of status beyond CLI_OK, CLI_FAIL and CLI_USAGE. */
#define STATUS_NOFILE 3    /* TETHER_ENOTFOUND: no file at PATH */
#define STATUS_NOT_STORE 4 /* TETHER_ESTORE_SCHEMA: not a tether store this version reads */
#define STATUS_CORRUPT 5   /* TETHER_ESTORE_CORRUPT: damaged, not a database, or its -wal lost */
#define STATUS_READONLY 6  /* TETHER_ESTORE_READONLY: cannot be read without writing here */

static const char status_help[] =
    "Usage: tether status --db PATH [--check] [--json]\n"
    "\n"
    "Shows what a tether store (client or server) holds: the role, and for each\n"
    "session its id, out_last (highest sequence number assigned to an outgoing\n"
    "message), peer_acked (highest one the peer acknowledged), recv_cursor (highest\n"
    "incoming one committed), pending (unacknowledged messages and their bytes) and\n"
    "whether the session was established; above them, the store's totals (sessions,\n"
    "how many are established, all unacknowledged messages and bytes). An empty file\n"
    "(zero bytes, or a database\n"
    "without tables) is an empty store, role 'none': 'tether send' or 'tether serve'\n"
    "would start a new one in it.\n"
    "\n"
    "Options:\n"
    "  --db PATH   the SQLite file written by 'tether send' or 'tether serve', or the\n"
    "              postgresql:// URI given to 'tether serve --db' (its server\n"
    "              sessions; the password is never printed)\n"
    "  --check     also verify every page of the file (SQLite's integrity check)\n"
    "              and, on SQLite and PostgreSQL, that each session's pending\n"
    "              totals match its outbox rows; reads the whole store, so it\n"
    "              takes longer on a large one\n"
    "  --json      print one JSON object instead of text\n"
    "  --help      show this help\n"
    "\n"
    "The store is opened read-only and not changed. It may be read while a client\n"
    "or server uses it.\n"
    "\n"
    "Exit status: 0 the store was read (and --check found it intact), 1 another\n"
    "failure (I/O error, out of memory), 2 usage error, 3 no file at PATH\n"
    "(TETHER_ENOTFOUND; PostgreSQL: no tether tables), 4 not a tether store, or a schema or role this version\n"
    "cannot read (TETHER_ESTORE_SCHEMA), 5 corrupt: not a database, a page or a\n"
    "session's totals fail the check, or its -wal file was removed after a crash\n"
    "(TETHER_ESTORE_CORRUPT),\n"
    "6 read-only: the store cannot be read without writing, e.g. its WAL needs\n"
    "recovery on a read-only file system (TETHER_ESTORE_READONLY). Only 5 means\n"
    "the file itself is damaged.\n";

/* Collects sessions from session_list(). */
typedef struct collect {
    cli_session_info *out; /* destination array */
    size_t max;            /* its capacity */
    size_t n;              /* sessions seen (may exceed max) */
    uint64_t established;  /* sessions seen that were established */
} collect;

/* The whole store's totals, shown above the sessions. */
typedef struct totals {
    uint64_t sessions;      /* sessions recorded */
    uint64_t established;   /* of those, established: a client can resume them */
    uint64_t pending;       /* unacked messages in all outboxes */
    uint64_t pending_bytes; /* their payload bytes */
} totals;

static int on_session(void *arg, const tether__session_rec *rec)
{
    collect *col = arg;
    col->established += rec->established != 0;
    if (col->n < col->max) {
        cli_session_info *si = &col->out[col->n];
        memset(si, 0, sizeof *si);
        memcpy(si->id.bytes, rec->id, 16);
        si->out_last = rec->out_last;
        si->peer_acked = rec->peer_acked;
        si->recv_cursor = rec->recv_cursor;
        si->established = rec->established;
    }
    col->n++;
    return 0;
}

static const char *role_name(tether__store_role role)
{
    switch (role) {
    case TETHER__ROLE_CLIENT:
        return "client";
    case TETHER__ROLE_SERVER:
        return "server";
    default:
        return "none";
    }
}

/* cli_store_inspect(), and the store's totals into *tot (may be NULL). */
static int inspect_store(const char *path, int check, const char **role, cli_session_info *out,
                         size_t max, size_t *count, totals *tot, char *err, size_t errlen)
{
    tether__store *st = NULL;
    *count = 0;
    int rc = tether__store_pg_is_uri(path)
                 ? tether__store_pg_open_readonly(path, &st, err, errlen)
                 : tether__store_sqlite_open_readonly(path, &st, err, errlen);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__store_info info;
    rc = st->ops->inspect(st, check ? TETHER__INSPECT_CHECK : 0, &info);
    collect col = {.out = out, .max = max};
    if (rc == TETHER_OK) {
        *role = role_name(info.role);
        rc = st->ops->session_list(st, on_session, &col);
    }
    for (size_t i = 0; rc == TETHER_OK && i < col.n && i < max; i++) {
        rc = st->ops->pending(st, out[i].id.bytes, &out[i].pending, &out[i].pending_bytes);
    }
    if (rc != TETHER_OK) {
        snprintf(err, errlen, "%s", st->ops->errmsg(st));
    }
    st->ops->close(st);
    *count = col.n;
    if (tot && rc == TETHER_OK) {
        tot->sessions = info.sessions;
        tot->established = col.established;
        tot->pending = info.pending;
        tot->pending_bytes = info.pending_bytes;
    }
    return rc;
}

int cli_store_inspect(const char *path, int check, const char **role, cli_session_info *out,
                      size_t max, size_t *count, char *err, size_t errlen)
{
    return inspect_store(path, check, role, out, max, count, NULL, err, errlen);
}

int cli_store_read(const char *path, const char **role, cli_session_info *out, size_t max,
                   size_t *count, char *err, size_t errlen)
{
    return cli_store_inspect(path, 0, role, out, max, count, err, errlen);
}

/* The exit status for a failure code (documented in status_help). */
static int exit_for(int rc)
{
    switch (rc) {
    case TETHER_ENOTFOUND:
        return STATUS_NOFILE;
    case TETHER_ESTORE_SCHEMA:
        return STATUS_NOT_STORE;
    case TETHER_ESTORE_CORRUPT:
        return STATUS_CORRUPT;
    case TETHER_ESTORE_READONLY:
        return STATUS_READONLY;
    default:
        return CLI_FAIL;
    }
}

/* The store as printed: a PostgreSQL URI as host:port/db and user, without
 * its password. */
static const char *shown_path(const char *path)
{
    static char where[300];
    if (!tether__store_pg_is_uri(path)) {
        return path;
    }
    char d[256];
    tether__store_pg_describe(path, d, sizeof d);
    snprintf(where, sizeof where, "postgresql %s", d);
    return where;
}

static void print_text(const char *path, const char *role, int check, const cli_session_info *s,
                       size_t n, size_t total, const totals *t)
{
    printf("store:    %s\n", shown_path(path));
    if (strcmp(role, "none") == 0) {
        printf("role:     none (empty: no side has initialised it yet)\n");
    } else {
        printf("role:     %s\n", role);
    }
    if (check) {
        printf("check:    ok\n");
    }
    printf("sessions: %zu\n", total);
    printf("established: %llu (sessions a client can resume)\n",
           (unsigned long long)t->established);
    printf("outboxes: %llu messages, %llu bytes unacknowledged in all\n",
           (unsigned long long)t->pending, (unsigned long long)t->pending_bytes);
    for (size_t i = 0; i < n; i++) {
        char hex[33];
        tether_session_id_hex(&s[i].id, hex);
        printf("\nsession %s\n", hex);
        printf("  established:  %s\n", s[i].established ? "yes" : "no");
        printf("  out_last:     %llu\n", (unsigned long long)s[i].out_last);
        printf("  peer_acked:   %llu\n", (unsigned long long)s[i].peer_acked);
        printf("  recv_cursor:  %llu\n", (unsigned long long)s[i].recv_cursor);
        printf("  pending:      %llu messages, %llu bytes\n", (unsigned long long)s[i].pending,
               (unsigned long long)s[i].pending_bytes);
    }
    if (total > n) {
        printf("\n(%zu more sessions not shown)\n", total - n);
    }
}

static void print_json(const char *path, const char *role, int check, const cli_session_info *s,
                       size_t n, size_t total, const totals *t)
{
    cli_buf b = {0};
    cli_buf_add(&b, "{\"db\":", 6);
    const char *where = shown_path(path);
    cli_buf_json_str(&b, where, strlen(where));
    cli_buf_printf(&b,
                   ",\"role\":\"%s\",%s\"session_count\":%zu,\"established_count\":%llu,"
                   "\"pending_total\":%llu,\"pending_bytes_total\":%llu,\"sessions\":[",
                   role, check ? "\"check\":\"ok\"," : "", total,
                   (unsigned long long)t->established, (unsigned long long)t->pending,
                   (unsigned long long)t->pending_bytes);
    for (size_t i = 0; i < n; i++) {
        char hex[33];
        tether_session_id_hex(&s[i].id, hex);
        cli_buf_printf(&b,
                       "%s{\"id\":\"%s\",\"established\":%s,\"out_last\":%llu,\"peer_acked\":%llu,"
                       "\"recv_cursor\":%llu,\"pending\":%llu,\"pending_bytes\":%llu}",
                       i ? "," : "", hex, s[i].established ? "true" : "false",
                       (unsigned long long)s[i].out_last, (unsigned long long)s[i].peer_acked,
                       (unsigned long long)s[i].recv_cursor, (unsigned long long)s[i].pending,
                       (unsigned long long)s[i].pending_bytes);
    }
    cli_buf_add(&b, "]}\n", 3);
    if (b.data != NULL) {
        fputs(b.data, stdout);
    }
    cli_buf_free(&b);
}

int cli_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int json = 0;
    int check = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            path = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'c':
            check = 1;
            break;
        case 'h':
            fputs(status_help, stdout);
            return CLI_OK;
        default:
            fprintf(stderr, "Try 'tether status --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
    }
    if (path == NULL) {
        return cli_usage_error("status", "--db PATH is required");
    }
    enum { MAX_SHOWN = 1000 };
    cli_session_info *s = calloc(MAX_SHOWN, sizeof *s);
    if (s == NULL) {
        return cli_fail("status", "out of memory");
    }
    const char *role = NULL;
    size_t total = 0;
    char err[512] = "";
    totals tot = {0};
    int rc = inspect_store(path, check, &role, s, MAX_SHOWN, &total, &tot, err, sizeof err);
    if (rc != TETHER_OK) {
        free(s);
        cli_fail("status", "%s: %s", tether_err_name(rc), err);
        return exit_for(rc);
    }
    size_t shown = total < MAX_SHOWN ? total : MAX_SHOWN;
    if (json) {
        print_json(path, role, check, s, shown, total, &tot);
    } else {
        print_text(path, role, check, s, shown, total, &tot);
    }
    free(s);
    return CLI_OK;
}

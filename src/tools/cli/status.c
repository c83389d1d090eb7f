/*
 * tether status: what a store holds: its role and, per session, the sequence
 * numbers and the unacknowledged backlog. Reads the store through the internal
 * store interface (src/store.h), the one place the tool goes past the public API.
 */
#include "cli.h"

#include <getopt.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

static const char status_help[] =
    "Usage: tether status --db PATH [--json]\n"
    "\n"
    "Shows what a tether store (client or server) holds: the role, and for each\n"
    "session its id, out_last (highest sequence number assigned to an outgoing\n"
    "message), peer_acked (highest one the peer acknowledged), recv_cursor (highest\n"
    "incoming one committed), pending (unacknowledged messages and their bytes) and\n"
    "whether the session was established.\n"
    "\n"
    "Options:\n"
    "  --db PATH   the SQLite file written by 'tether send' or 'tether serve'\n"
    "  --json      print one JSON object instead of text\n"
    "  --help      show this help\n"
    "\n"
    "The store is not changed. It may be read while a client or server uses it.\n"
    "\n" CLI_EXIT_HELP;

/* Collects sessions from session_list(). */
typedef struct collect {
    cli_session_info *out; /* destination array */
    size_t max;            /* its capacity */
    size_t n;              /* sessions seen (may exceed max) */
} collect;

static int on_session(void *arg, const tether__session_rec *rec)
{
    collect *col = arg;
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

/* Refuses files that are not tether stores (not SQLite, or SQLite without a
 * tether schema version) before the store is opened read-write, so that status
 * never turns an empty or foreign file into a store, nor switches its journal. */
static int check_tether_file(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    long long version = -1;
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
            version = sqlite3_column_int64(st, 0);
        } else {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
    } else {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
    sqlite3_close(db);
    if (version == 0) {
        snprintf(err, errlen, "%s: not a tether store (no tether schema in this database)", path);
        return TETHER_ESTORE_SCHEMA;
    }
    return version > 0 ? TETHER_OK : TETHER_ESTORE_CORRUPT;
}

int cli_store_read(const char *path, const char **role, cli_session_info *out, size_t max,
                   size_t *count, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: no such file", path);
        return TETHER_ENOTFOUND;
    }
    int rc = check_tether_file(path, err, errlen);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__store *st = NULL;
    *role = "client";
    rc = tether__store_sqlite_open(path, TETHER__ROLE_CLIENT, TETHER_DURABILITY_DEFAULT, &st, err,
                                   errlen);
    if (rc == TETHER_ESTORE_SCHEMA) {
        char err2[512] = "";
        *role = "server";
        rc = tether__store_sqlite_open(path, TETHER__ROLE_SERVER, TETHER_DURABILITY_DEFAULT, &st,
                                       err2, sizeof err2);
        if (rc == TETHER_ESTORE_SCHEMA) {
            /* Neither role: keep the first message, which says what is wrong. */
            return rc;
        }
        snprintf(err, errlen, "%s", err2);
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    collect col = {.out = out, .max = max};
    rc = st->ops->session_list(st, on_session, &col);
    for (size_t i = 0; rc == TETHER_OK && i < col.n && i < max; i++) {
        rc = st->ops->pending(st, out[i].id.bytes, &out[i].pending, &out[i].pending_bytes);
    }
    if (rc != TETHER_OK) {
        snprintf(err, errlen, "%s", st->ops->errmsg(st));
    }
    st->ops->close(st);
    *count = col.n;
    return rc;
}

static void print_text(const char *path, const char *role, const cli_session_info *s, size_t n,
                       size_t total)
{
    printf("store:    %s\nrole:     %s\nsessions: %zu\n", path, role, total);
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

static void print_json(const char *path, const char *role, const cli_session_info *s, size_t n,
                       size_t total)
{
    cli_buf b = {0};
    cli_buf_add(&b, "{\"db\":", 6);
    cli_buf_json_str(&b, path, strlen(path));
    cli_buf_printf(&b, ",\"role\":\"%s\",\"session_count\":%zu,\"sessions\":[", role, total);
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int json = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            path = optarg;
            break;
        case 'j':
            json = 1;
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
    int rc = cli_store_read(path, &role, s, MAX_SHOWN, &total, err, sizeof err);
    if (rc != TETHER_OK) {
        free(s);
        return cli_fail("status", "%s: %s", tether_err_name(rc), err);
    }
    size_t shown = total < MAX_SHOWN ? total : MAX_SHOWN;
    if (json) {
        print_json(path, role, s, shown, total);
    } else {
        print_text(path, role, s, shown, total);
    }
    free(s);
    return CLI_OK;
}

/*
 * echo_server: a tether server that sends every message it receives back to
 * the session it came from, and prints session opens and closes. Runs until
 * SIGINT or SIGTERM.
 *
 *   example_echo_server [--host HOST] [--port PORT] [--db FILE]
 *
 * With port 0 (the default) the system picks a free port; the server prints
 * the URL to connect to.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

/* Callbacks run on the server's service thread: they must not block. */

static void on_session_open(tether_server *s, const tether_session_id *id, int resumed,
                            void *user)
{
    (void)s;
    (void)user;
    char hex[33];
    tether_session_id_hex(id, hex);
    printf("session %s %s\n", hex, resumed ? "resumed" : "opened");
}

static void on_session_close(tether_server *s, const tether_session_id *id, int error,
                             void *user)
{
    (void)s;
    (void)user;
    char hex[33];
    tether_session_id_hex(id, hex);
    printf("session %s closed (%s)\n", hex, tether_err_name(error));
}

static void on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                       const void *data, size_t len, int redelivered, void *user)
{
    (void)user;
    char hex[33];
    tether_session_id_hex(id, hex);
    printf("session %s message %llu%s: %.*s\n", hex, (unsigned long long)seq,
           redelivered ? " (redelivered)" : "", (int)len, (const char *)data);
    /* send copies data, so echoing the borrowed buffer is fine; it is stored in
     * the session's outbox and delivered now or when the client comes back */
    int rc = tether_server_send(s, id, data, len, NULL);
    if (rc != TETHER_OK) {
        fprintf(stderr, "echo of %llu failed: %s: %s\n", (unsigned long long)seq,
                tether_err_name(rc), tether_errmsg());
    }
}

static void on_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    (void)s;
    (void)user;
    char hex[33];
    tether_session_id_hex(&mi->session, hex);
    fprintf(stderr, "session %s: state mismatch (client says out_last %llu, recv_cursor %llu)\n",
            hex, (unsigned long long)mi->peer_out_last, (unsigned long long)mi->peer_recv_cursor);
}

static int usage(void)
{
    fprintf(stderr, "usage: example_echo_server [--host HOST] [--port PORT] [--db FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *db = NULL;
    unsigned long port = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtoul(argv[++i], NULL, 10);
            if (port > 65535) {
                return usage();
            }
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else {
            return usage();
        }
    }

    /* Block the stop signals before the service thread exists, so it inherits
     * the mask and main() alone receives them through sigwait(). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);

    setvbuf(stdout, NULL, _IOLBF, 0);

    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = host;
    cfg.port = (uint16_t)port;
    cfg.db_path = db; /* NULL: sessions live in memory and end with the process */
    cfg.cb.on_session_open = on_session_open;
    cfg.cb.on_session_close = on_session_close;
    cfg.cb.on_message = on_message;
    cfg.cb.on_mismatch = on_mismatch;

    tether_server *s = NULL;
    int rc = tether_server_create(&cfg, &s);
    if (rc != TETHER_OK) {
        fprintf(stderr, "cannot create the server: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return 1;
    }
    rc = tether_server_start(s);
    if (rc != TETHER_OK) {
        fprintf(stderr, "cannot start the server: %s: %s\n", tether_err_name(rc), tether_errmsg());
        tether_server_destroy(s);
        return 1;
    }
    printf("listening on ws://%s:%u/\n", host, (unsigned)tether_server_port(s));

    int sig = 0;
    sigwait(&stop, &sig);
    printf("signal %d: shutting down\n", sig);
    tether_server_destroy(s);
    return 0;
}

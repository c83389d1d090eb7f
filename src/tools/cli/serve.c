/*
 * tether serve: a server that stores every message it receives and prints it
 * as one JSON line; optionally echoes each message back to its session.
 */
#include "cli.h"
#include "netopts.h"

#include "chaos/chaos.h" /* tether__chaos_parse_hostport */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char serve_help[] =
    "Usage: tether serve [--listen ADDR:PORT] [--db PATH] [options]\n"
    "\n"
    "Runs a tether server until SIGINT or SIGTERM, then shuts down cleanly.\n"
    "Every message received is printed on stdout as one JSON line, flushed at once:\n"
    "  {\"session\":\"<hex>\",\"seq\":N,\"redelivered\":false,\"text\":\"...\"}\n"
    "with \"base64\":\"...\" in place of \"text\" when the payload is not valid UTF-8.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR:PORT   numeric IPv4 or IPv6 address to listen on (0.0.0.0 or [::]\n"
    "                       for all; a host name, even localhost, is refused)\n"
    "                       [127.0.0.1:9000]; port 0 lets the system pick one (see\n"
    "                       --port-file)\n"
    "  --db PATH            SQLite store for sessions and outboxes, used by one\n"
    "                       process at a time [none: memory, so sessions are\n"
    "                       forgotten when the server stops]; a\n"
    "                       postgresql:// or postgres:// URI (any libpq connection\n"
    "                       URI) keeps them in that PostgreSQL database instead\n"
    "  --durability MODE    off, normal or full [normal]\n"
    "  --echo               send every message back to the session it came from\n"
    "  --quiet              do not print messages or session events\n"
    "  --port-file FILE     write the bound port (decimal and a newline) to FILE\n"
    "  --metrics            answer GET /metrics on the same port with the server's\n"
    "                       counters in Prometheus text format (docs/operations.md)\n"
    "  --session-expiry-ms MS  remove a session offline this long, with its outbox,\n"
    "                       and report it on stderr (1000 ... 2^53) [0: never]\n"
    "  --max-sessions N     sessions connected at once, 1 to 1000000 [10000]\n"
    "  --max-pending-handshakes N\n"
    "                       upgraded connections without a HELLO yet, 1 to 1000000 [256]\n"
    "  --hello-timeout-ms MS\n"
    "                       a connection must send HELLO within this, 1 to 3600000 [10000]\n"
    "  --delivery-threads N threads that run the sessions' messages, 1 to 64 [4]\n"
    "  --www DIR            answer plain GET requests on the same port with the files\n"
    "                       below DIR (\"/\" gives DIR/index.html), e.g. a browser page\n"
    "                       using the JavaScript client [none]\n"
    "  --rx-buffer BYTES    receive buffer of each connection, 128 to 65536 [1024]:\n"
    "                       memory per connection vs reads per large message\n"
    "  --lease-ms MS        PostgreSQL: a session's lease when this instance is silent, ms,\n"
    "                       1000 to 600000 [10000] (docs/scaling.md)\n"
    "  --help               show this help\n"
    "\n" CLI_SERVER_NET_HELP
    "\n"
    "Session events (open, close, mismatch) are reported on stderr, and so are\n"
    "refused connections (a wrong token, --max-sessions reached, garbage instead of\n"
    "a HELLO), at most 10 a minute with a count of the others.\n"
    "\n" CLI_EXIT_HELP;

/* State shared with the server's callbacks. */
typedef struct serve_ctx {
    int echo;  /* --echo */
    int quiet; /* --quiet */
} serve_ctx;

static void on_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    serve_ctx *ctx = user;
    if (!ctx->quiet) {
        char hex[33];
        tether_session_id_hex(id, hex);
        fprintf(stderr, "tether serve: session %s %s\n", hex, resumed ? "resumed" : "opened");
    }
}

static void on_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    serve_ctx *ctx = user;
    if (!ctx->quiet) {
        char hex[33];
        tether_session_id_hex(id, hex);
        fprintf(stderr, "tether serve: session %s closed (%s)\n", hex, tether_err_name(error));
    }
}

static void on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                       const void *data, size_t len, int redelivered, void *user)
{
    serve_ctx *ctx = user;
    if (!ctx->quiet) {
        cli_print_message(stdout, id, seq, data, len, redelivered);
    }
    if (ctx->echo) {
        int rc = tether_server_send(s, id, data, len, NULL);
        if (rc != TETHER_OK) {
            fprintf(stderr, "tether serve: echo of seq %llu failed: %s: %s\n",
                    (unsigned long long)seq, tether_err_name(rc), tether_errmsg());
        }
    }
}

static void on_expired(tether_server *s, const tether_session_id *id, uint64_t pending,
                       void *user)
{
    char hex[33];
    tether_session_id_hex(id, hex);
    fprintf(stderr, "tether serve: session %s expired; %llu unacknowledged messages to it dropped\n",
            hex, (unsigned long long)pending);
}

static void on_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    char hex[33];
    tether_session_id_hex(&mi->session, hex);
    fprintf(stderr,
            "tether serve: session %s state mismatch: client knows %s, our out_last %llu "
            "peer_acked %llu recv_cursor %llu, client out_last %llu recv_cursor %llu\n",
            hex, mi->peer_knows_session ? "it" : "nothing", (unsigned long long)mi->local_out_last,
            (unsigned long long)mi->local_peer_acked, (unsigned long long)mi->local_recv_cursor,
            (unsigned long long)mi->peer_out_last, (unsigned long long)mi->peer_recv_cursor);
}

/* The library reports at most TETHER_REFUSAL_REPORTS_PER_MINUTE refusals a
 * minute and counts the rest, so this prints a bounded number of lines. */
static void on_refused(tether_server *s, const tether_refusal_info *ri, void *user)
{
    (void)s;
    (void)user;
    char what[48] = "";
    if (ri->http_status) {
        snprintf(what, sizeof what, ", HTTP %d", ri->http_status);
    } else if (ri->reject_code) {
        snprintf(what, sizeof what, ", reject code %u", (unsigned)ri->reject_code);
    }
    fprintf(stderr, "tether serve: refused a connection from %s: %s%s: %s\n",
            ri->peer[0] ? ri->peer : "(HTTP carriage)", tether_err_name(ri->error), what,
            ri->reason[0] ? ri->reason : tether_strerror(ri->error));
    if (ri->suppressed) {
        fprintf(stderr,
                "tether serve: ... and %llu more refused before it, not shown (at most %d a "
                "minute are)\n",
                (unsigned long long)ri->suppressed, TETHER_REFUSAL_REPORTS_PER_MINUTE);
    }
}

int cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"db", required_argument, NULL, 'd'},
        {"durability", required_argument, NULL, 'D'},
        {"echo", no_argument, NULL, 'e'},
        {"quiet", no_argument, NULL, 'q'},
        {"port-file", required_argument, NULL, 'p'},
        {"metrics", no_argument, NULL, 'm'},
        {"session-expiry-ms", required_argument, NULL, 'x'},
        {"max-sessions", required_argument, NULL, 'S'},
        {"max-pending-handshakes", required_argument, NULL, 'P'},
        {"hello-timeout-ms", required_argument, NULL, 'H'},
        {"delivery-threads", required_argument, NULL, 'T'},
        {"www", required_argument, NULL, 'w'},
        {"rx-buffer", required_argument, NULL, 'B'},
        {"lease-ms", required_argument, NULL, 'L'},
        CLI_SERVER_NET_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = "127.0.0.1:9000";
    const char *port_file = NULL;
    serve_ctx ctx = {0};
    cli_server_net net = {0};
    tether_server_config cfg;
    tether_server_config_init(&cfg);

    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'd':
            if (optarg[0] == '\0') {
                return cli_usage_error("serve", "--db wants a file name or a postgresql:// URI, "
                                                "not ''");
            }
            cfg.db_path = optarg;
            break;
        case 'D':
            if (cli_parse_durability(optarg, &cfg.durability) != 0) {
                return cli_usage_error("serve", "--durability must be off, normal or full");
            }
            break;
        case 'e':
            ctx.echo = 1;
            break;
        case 'q':
            ctx.quiet = 1;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'm':
            cfg.metrics_http = 1;
            break;
        case 'w':
            cfg.www_dir = optarg;
            break;
        case 'x':
            if (cli_parse_u64(optarg, 1000, UINT64_C(1) << 53, &cfg.session_idle_expiry_ms) != 0) {
                return cli_usage_error("serve", "--session-expiry-ms must be 1000 to 2^53, not '%s'",
                                       optarg);
            }
            break;
        case 'L': {
            uint64_t v = 0;
            if (cli_parse_u64(optarg, 1000, 600000, &v) != 0) {
                return cli_usage_error("serve", "--lease-ms must be 1000 to 600000, not '%s'",
                                       optarg);
            }
            cfg.lease_ms = (uint32_t)v;
            break;
        }
        case 'S':
        case 'P':
        case 'H':
        case 'T':
        case 'B': {
            /* the library's own bounds (docs/config.md), checked here with the flag's name */
            static const struct {
                int opt;
                const char *name;
                uint64_t max;
            } lim[] = {{'S', "--max-sessions", 1000000},
                       {'P', "--max-pending-handshakes", 1000000},
                       {'H', "--hello-timeout-ms", 3600000},
                       {'T', "--delivery-threads", 64},
                       {'B', "--rx-buffer", 65536}};
            uint64_t v = 0;
            size_t i = 0;
            while (lim[i].opt != c) {
                i++;
            }
            uint64_t min = c == 'B' ? 128 : 1;
            if (cli_parse_u64(optarg, min, lim[i].max, &v) != 0) {
                return cli_usage_error("serve", "%s must be %llu to %llu, not '%s'", lim[i].name,
                                       (unsigned long long)min, (unsigned long long)lim[i].max,
                                       optarg);
            }
            uint32_t *field[] = {&cfg.max_sessions, &cfg.max_pending_handshakes,
                                 &cfg.hello_timeout_ms, &cfg.delivery_threads,
                                 &cfg.rx_buffer_bytes};
            *field[i] = (uint32_t)v;
            break;
        }
        CLI_SERVER_NET_CASES: {
            int rc = cli_server_net_option(c, optarg, &net, &cfg);
            if (rc != 0) {
                return rc;
            }
            break;
        }
        case 'h':
            fputs(serve_help, stdout);
            return CLI_OK;
        default:
            fprintf(stderr, "Try 'tether serve --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    }
    if (cli_server_net_finish(&net, &cfg) != 0) {
        return CLI_USAGE;
    }
    char host[256];
    unsigned char addr[16];
    if (tether__chaos_parse_hostport(listen, host, sizeof host, &cfg.port) != 0) {
        return cli_usage_error("serve", "--listen wants ADDR:PORT, not '%s'", listen);
    }
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
        /* the library would refuse it too (docs/config.md, listen_host), as a system error */
        return cli_usage_error("serve",
                               "--listen wants a numeric IPv4 or IPv6 address (such as "
                               "127.0.0.1, 0.0.0.0 or [::1]) and a port, not '%s': host names "
                               "are not resolved",
                               listen);
    }
    cfg.listen_host = host;
    cfg.cb.on_session_open = on_open;
    cfg.cb.on_session_close = on_close;
    cfg.cb.on_message = on_message;
    cfg.cb.on_mismatch = on_mismatch;
    cfg.cb.on_refused = on_refused;
    cfg.cb.on_session_expired = on_expired;
    cfg.user = &ctx;

    cli_signals_install();
    tether_server *srv = NULL;
    int rc = tether_server_create(&cfg, &srv);
    if (rc != TETHER_OK) {
        return cli_fail("serve", "cannot start on %s: %s: %s", listen, tether_err_name(rc),
                        tether_errmsg());
    }
    rc = tether_server_start(srv);
    if (rc != TETHER_OK) {
        tether_server_destroy(srv);
        return cli_fail("serve", "cannot start: %s: %s", tether_err_name(rc), tether_errmsg());
    }
    /* Written once the server runs, so whoever reads it can connect at once. */
    uint16_t port = tether_server_port(srv);
    if (port_file != NULL && cli_write_port_file(port_file, port) != 0) {
        int e = errno;
        tether_server_destroy(srv);
        return cli_fail("serve", "cannot write the port to %s: %s", port_file, strerror(e));
    }
    if (!ctx.quiet) {
        int v6 = strchr(host, ':') != NULL; /* [::1]:9000, as --listen takes it */
        fprintf(stderr, "tether serve: listening on %s%s%s:%u%s%s\n", v6 ? "[" : "", host,
                v6 ? "]" : "", (unsigned)port,
                cfg.tls_cert_file ? " (wss://)" : "", cfg.db_path ? "" : " (memory store)");
    }
    while (!cli_stop_requested()) {
        cli_sleep_ms(100);
    }
    if (!ctx.quiet) {
        fprintf(stderr, "tether serve: signal %d, shutting down\n", cli_stop_signal());
    }
    tether_server_destroy(srv);
    return CLI_OK;
}

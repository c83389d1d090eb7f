/*
 * tether demo: the project's main job in one command, run as a scenario of the
 * runner (scenario.h). A server runs in this process and appends every event
 * to its record; the runner's relay (`tether chaos`, a process) cuts all
 * connections at random moments; the client is `tether send --pattern seq
 * --until-seq N --record ...`, spawned by the runner, SIGKILLed mid-stream from
 * the server's delivery callback and restarted on the same store. At the end
 * the runner's checker judges both records and both stores (demo_report.c).
 */
#include "demo.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "record.h"

static const char demo_help[] =
    "Usage: tether demo [options]\n"
    "\n"
    "Streams --messages numbered messages from a client process to a server while a\n"
    "relay between them cuts every connection at random moments (alternately with FIN\n"
    "and RST) and the client is killed with SIGKILL mid-stream --kills times and\n"
    "restarted on the same store. The server also streams --server-messages to the\n"
    "client. At the end it verifies both streams and prints: sent (the client's last\n"
    "seq, from its store), acked (its peer_acked, from its store), delivered\n"
    "(on_message calls at the server), lost, duplicates, out-of-order, payload\n"
    "mismatches, cuts, kills, client restarts, reconnects, elapsed time, rate.\n"
    "\n"
    "Options:\n"
    "  --messages N         messages from the client [100000]\n"
    "  --size B             bytes per message, at least 8 [64]\n"
    "  --kills K            SIGKILLs of the client, at least 1 [2]\n"
    "  --cuts-ms MIN:MAX    time between connection cuts, ms [20:100]; 0:0 = no cuts\n"
    "  --server-messages M  messages from the server to the client [2000]; 0 = none\n"
    "  --seed S             seed for every random choice [from the clock; printed]\n"
    "  --durability MODE    off, normal or full, both sides [normal]\n"
    "  --timeout S          give up after S seconds [300]\n"
    "  --json               print the result as one JSON object on stdout\n"
    "  --dir D              work in D (created if needed; must not hold a store)\n"
    "                       instead of a temporary directory\n"
    "  --keep               keep the directory (stores, client output and log)\n"
    "  --verbose            progress and events on stderr\n"
    "  --help               show this help\n"
    "\n"
    "The client runs as: tether send ws://127.0.0.1:<relay port>/ --db DIR/client.db\n"
    "  --pattern seq --until-seq N --batch 50 --max-pending 5000 --linger, reconnecting\n"
    "  with backoff base 10 ms, cap 250 ms, reset after 100 ms up. Its stdout (messages\n"
    "  from the server) goes to DIR/client.out, its stderr to DIR/client.log.\n"
    "Each kill comes once the server has delivered a random share (5% to 90%, from\n"
    "  --seed) of the stream; the client restarts 1 to 200 ms later.\n"
    "Messages from the server carry the text \"s2c <seq>\"; a repeat flagged\n"
    "redelivered after a client kill is the documented redelivery window, not an error.\n"
    "\n"
    "Exit status: 0 everything verified: lost = duplicates = out-of-order =\n"
    "mismatches = 0 and sent = acked = delivered = N (and the same for the server's\n"
    "messages); 1 verification failed, timeout, interrupted or a setup error;\n"
    "2 usage error.\n";

/* ---------------------------------------------------------------- server side */

static void on_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    demo *d = user;
    scen_record("C %d", resumed ? 1 : 0);
    pthread_mutex_lock(&d->mu);
    if (!d->rx.have_session) {
        d->rx.session = *id;
        d->rx.have_session = 1;
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                       const void *data, size_t len, int redelivered, void *user)
{
    demo *d = user;
    demo_rx *rx = &d->rx;
    pthread_mutex_lock(&d->mu);
    if (rx->have_session && memcmp(id->bytes, rx->session.bytes, 16) != 0) {
        rx->foreign++;
        pthread_mutex_unlock(&d->mu);
        return;
    }
    int ok = len == d->o.size && len >= 8 && cli_get_be64(data) == seq;
    scen_record("D %llu %d %d", (unsigned long long)seq, redelivered ? 1 : 0, ok);
    if (seq > rx->highest && seq <= d->o.messages) {
        rx->highest = seq;
        /* kill exactly at the planned point, however fast the stream runs */
        if (rx->kill_pid > 0 && rx->highest >= rx->kill_at) {
            kill(rx->kill_pid, SIGKILL);
            rx->kill_pid = 0;
            rx->killed = 1;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_acked(tether_server *s, const tether_session_id *id, uint64_t first_seq,
                     uint64_t last_seq, void *user)
{
    demo *d = user;
    scen_record("A %llu %llu", (unsigned long long)first_seq, (unsigned long long)last_seq);
    pthread_mutex_lock(&d->mu);
    if (last_seq > d->rx.s2c_acked) {
        d->rx.s2c_acked = last_seq;
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    scen_record_mismatch(mi);
}

static int start_server(demo *d)
{
    scen *sc = &d->sc;
    cli_session_info si;
    if (scen_record_open(sc->srec) != 0) {
        return scen_fail(sc, "cannot open %.300s: %s", sc->srec, strerror(errno));
    }
    if (scen_record_start(sc->sdb, &si) < 0) {
        return scen_fail(sc, "cannot read the server's store");
    }
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = sc->sdb;
    cfg.durability = d->o.durability;
    cfg.cb.on_session_open = on_open;
    cfg.cb.on_message = on_message;
    cfg.cb.on_acked = on_acked;
    cfg.cb.on_mismatch = on_mismatch;
    cfg.user = d;
    int rc = tether_server_create(&cfg, &d->srv);
    if (rc == TETHER_OK) {
        rc = tether_server_start(d->srv);
    }
    if (rc != TETHER_OK) {
        return scen_fail(sc, "cannot start the server: %s: %s", tether_err_name(rc),
                         tether_errmsg());
    }
    return 0;
}

/* ------------------------------------------------------------- client process */

/* Starts `tether send` (start number start_no) through the runner. */
static int start_client(demo *d, uint64_t start_no)
{
    scen *sc = &d->sc;
    scen_args a = {.n = 0};
    scen_arg(&a, "tether");
    scen_arg(&a, "send");
    scen_arg(&a, "ws://127.0.0.1:%u/", (unsigned)sc->relay_port);
    scen_arg(&a, "--db");
    scen_arg(&a, "%s", sc->cdb);
    scen_arg(&a, "--record");
    scen_arg(&a, "%s", sc->crec);
    scen_arg(&a, "--pattern");
    scen_arg(&a, "seq");
    scen_arg(&a, "--until-seq");
    scen_arg(&a, "%llu", (unsigned long long)d->o.messages);
    scen_arg(&a, "--size");
    scen_arg(&a, "%llu", (unsigned long long)d->o.size);
    scen_arg(&a, "--batch");
    scen_arg(&a, "50");
    scen_arg(&a, "--max-pending");
    scen_arg(&a, "5000");
    scen_arg(&a, "--timeout-ms");
    scen_arg(&a, "%llu", (unsigned long long)d->o.timeout_s * 1000);
    scen_arg(&a, "--durability");
    scen_arg(&a, "%s", scen_dur_name(d->o.durability));
    scen_arg(&a, "--seed");
    scen_arg(&a, "%llu", (unsigned long long)(d->o.seed + 1000 + start_no));
    scen_arg(&a, "--backoff-base-ms");
    scen_arg(&a, "10");
    scen_arg(&a, "--backoff-cap-ms");
    scen_arg(&a, "250");
    scen_arg(&a, "--backoff-reset-ms");
    scen_arg(&a, "100");
    scen_arg(&a, "--verbose");
    if (d->o.s2c > 0) {
        scen_arg(&a, "--linger");
    }
    int rc = scen_spawn(sc, &sc->client, a.v, NULL, -1, d->out_path, sc->clog);
    scen_args_free(&a);
    return rc;
}

/* Prints the last lines of the client's log on stderr. */
static void show_client_log(const demo *d)
{
    FILE *f = fopen(d->sc.clog, "r");
    if (f == NULL) {
        return;
    }
    char *lines[12] = {0};
    size_t caps[12] = {0};
    size_t n = 0;
    while (getline(&lines[n % 12], &caps[n % 12], f) >= 0) {
        n++;
    }
    fclose(f);
    fprintf(stderr, "tether demo: last lines of the client's log (%s):\n", d->sc.clog);
    for (size_t i = n > 12 ? n - 12 : 0; i < n; i++) {
        fprintf(stderr, "  | %s", lines[i % 12]);
    }
    for (size_t i = 0; i < 12; i++) {
        free(lines[i]);
    }
}

/* ------------------------------------------------------------- the run */

/* Commits the next server -> client messages, keeping pace with the client's
 * stream so that they interleave with the cuts and kills. */
static int send_s2c(demo *d, uint64_t delivered, const tether_session_id *id)
{
    uint64_t target = d->o.s2c * delivered / d->o.messages;
    if (delivered >= d->o.messages) {
        target = d->o.s2c;
    }
    while (d->s2c_sent < target) {
        enum { BATCH = 50 };
        char text[BATCH][32];
        tether_msg msgs[BATCH];
        size_t n = 0;
        for (; n < BATCH && d->s2c_sent + n < target; n++) {
            int len = snprintf(text[n], sizeof text[n], "s2c %llu",
                               (unsigned long long)(d->s2c_sent + n + 1));
            msgs[n].data = text[n];
            msgs[n].len = (size_t)len;
        }
        uint64_t first = 0;
        int rc = tether_server_send_batch(d->srv, id, msgs, n, &first);
        if (rc != TETHER_OK) {
            return scen_fail(&d->sc, "server send failed: %s: %s", tether_err_name(rc),
                             tether_errmsg());
        }
        if (first != d->s2c_sent + 1) {
            return scen_fail(&d->sc, "the server numbered its message %llu, expected %llu",
                             (unsigned long long)first, (unsigned long long)(d->s2c_sent + 1));
        }
        d->s2c_sent += n;
    }
    return 0;
}

static void progress(demo *d, uint64_t delivered)
{
    double t = (double)(cli_now_ms() - d->t0) / 1000.0;
    fprintf(stderr,
            "tether demo: [%6.1fs] delivered %llu/%llu, kills %llu/%llu, "
            "server messages %llu/%llu\n",
            t, (unsigned long long)delivered, (unsigned long long)d->o.messages,
            (unsigned long long)d->kills, (unsigned long long)d->o.kills,
            (unsigned long long)d->s2c_sent, (unsigned long long)d->o.s2c);
}

/* The kill points: o.kills shares of the stream (5% to 90%), drawn from the seed, sorted. */
static void plan_kills(demo *d, uint64_t *rng, uint64_t *kill_at)
{
    uint64_t n = d->o.messages;
    uint64_t lo = n / 20 + 1, hi = n * 9 / 10 > lo ? n * 9 / 10 : lo;
    for (uint64_t i = 0; i < d->o.kills; i++) {
        kill_at[i] = tether__rng_range(rng, lo, hi);
    }
    for (uint64_t i = 1; i < d->o.kills; i++) { /* insertion sort: K is small */
        for (uint64_t j = i; j > 0 && kill_at[j - 1] > kill_at[j]; j--) {
            uint64_t t = kill_at[j];
            kill_at[j] = kill_at[j - 1];
            kill_at[j - 1] = t;
        }
    }
}

/*
 * The demo's steps: the relay in front of the in-process server with random
 * plain cuts, the client started, killed at the planned shares and restarted,
 * the server's stream paced on the client's, and at the end the lingering
 * client told to finish. 0 when the client finished with exit 0; -1 with
 * sc->error set otherwise.
 */
static int run_demo(scen *sc)
{
    demo *d = sc->user;
    if (scen_relay_start(sc, NULL, NULL) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "upstream 127.0.0.1:%u", (unsigned)tether_server_port(d->srv));
    if (d->o.cut_max > 0) {
        scen_relay_cmd(sc, "random %u:%u cut plain", (unsigned)d->o.cut_min,
                       (unsigned)d->o.cut_max);
    }
    if (sc->error[0] != '\0') {
        return -1;
    }
    if (d->o.verbose) {
        fprintf(stderr, "tether demo: dir %s, server port %u, relay port %u, seed %llu\n", d->dir,
                (unsigned)tether_server_port(d->srv), (unsigned)sc->relay_port,
                (unsigned long long)d->o.seed);
    }
    d->ran = 1;
    uint64_t n = d->o.messages;
    uint64_t kill_at[64];
    uint64_t rng = d->o.seed;
    plan_kills(d, &rng, kill_at);
    if (start_client(d, 0) != 0) {
        return -1;
    }
    uint64_t restart_at = 0;    /* when the killed client starts again (0: running) */
    uint64_t highest_start = 0; /* progress when the current client started */
    uint64_t next_report = cli_now_ms() + 1000;
    int termed = 0;
    for (;;) {
        if (cli_stop_requested()) {
            return scen_fail(sc, "interrupted by signal %d", cli_stop_signal());
        }
        uint64_t now = cli_now_ms();
        if (now >= sc->deadline) {
            return scen_fail(sc, "timeout after %llu s", (unsigned long long)d->o.timeout_s);
        }
        pthread_mutex_lock(&d->mu);
        uint64_t highest = d->rx.highest, s2c_acked = d->rx.s2c_acked;
        int have = d->rx.have_session;
        tether_session_id id = d->rx.session;
        int killed = d->rx.killed;
        d->rx.killed = 0;
        if (restart_at == 0 && !killed && sc->client.pid > 0 && d->kills < d->o.kills &&
            d->rx.kill_pid == 0) {
            /* arm the next kill; it fires from the server's delivery callback */
            uint64_t at = kill_at[d->kills];
            d->rx.kill_at = at > highest_start ? at : highest_start + 1;
            d->rx.kill_pid = sc->client.pid;
        }
        pthread_mutex_unlock(&d->mu);

        if (have && d->o.s2c > 0 && send_s2c(d, highest, &id) != 0) {
            return -1;
        }
        if (d->o.verbose && now >= next_report) {
            progress(d, highest);
            next_report = now + 1000;
        }
        if (restart_at != 0) {
            if (now >= restart_at) {
                d->restarts++;
                if (start_client(d, d->restarts) != 0) {
                    return -1;
                }
                restart_at = 0;
                highest_start = highest;
            }
            cli_sleep_ms(2);
            continue;
        }
        if (killed) {
            scen_kill_proc(&sc->client); /* already SIGKILLed: reap it */
            d->kills++;
            restart_at = now + tether__rng_range(&rng, 1, 200);
            if (d->o.verbose) {
                fprintf(stderr, "tether demo: SIGKILL the client at %llu delivered\n",
                        (unsigned long long)highest);
            }
            continue;
        }
        if (scen_reaped(&sc->client)) {
            pthread_mutex_lock(&d->mu);
            int planned = d->rx.killed; /* the armed kill fired after the check above */
            d->rx.killed = 0;
            pthread_mutex_unlock(&d->mu);
            if (planned) {
                d->kills++;
                restart_at = now + tether__rng_range(&rng, 1, 200);
                continue;
            }
            if (WIFEXITED(sc->client.status) && WEXITSTATUS(sc->client.status) == 0) {
                return 0;
            }
            char how[64];
            scen_fail(sc, "the client %s", scen_describe(&sc->client, how, sizeof how));
            show_client_log(d);
            return -1;
        }
        /* Everything delivered both ways: tell the lingering client to finish. */
        if (!termed && d->o.s2c > 0 && highest >= n && d->s2c_sent >= d->o.s2c &&
            s2c_acked >= d->o.s2c) {
            kill(sc->client.pid, SIGTERM);
            termed = 1;
        }
        cli_sleep_ms(2);
    }
}

static const scen_def demo_def = {
    "demo",
    run_demo,
    "tether send streams to a server in this process through a relay that cuts every "
    "connection; the client is SIGKILLed at seeded shares of the stream and restarted",
};

/* ------------------------------------------------------------- setup, teardown */

static int parse_opts(int argc, char **argv, demo_opts *o)
{
    static const struct option opts[] = {
        {"messages", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"kills", required_argument, NULL, 'k'},
        {"cuts-ms", required_argument, NULL, 'c'},
        {"server-messages", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 'S'},
        {"durability", required_argument, NULL, 'D'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"dir", required_argument, NULL, 'd'},
        {"keep", no_argument, NULL, 'K'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int seeded = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (cli_parse_u64(optarg, 1, 100000000, &o->messages) != 0) {
                return cli_usage_error("demo", "--messages wants 1 to 100000000, not '%s'", optarg);
            }
            break;
        case 's':
            if (cli_parse_u64(optarg, 8, 1 << 20, &o->size) != 0) {
                return cli_usage_error("demo", "--size wants 8 to 1048576 bytes, not '%s'", optarg);
            }
            break;
        case 'k':
            if (cli_parse_u64(optarg, 1, 64, &o->kills) != 0) {
                return cli_usage_error("demo", "--kills wants 1 to 64, not '%s'", optarg);
            }
            break;
        case 'c':
            if (cli_parse_range(optarg, &o->cut_min, &o->cut_max) != 0 ||
                (o->cut_max > 0 && o->cut_min == 0)) {
                return cli_usage_error("demo",
                                       "--cuts-ms wants MIN:MAX with 1 <= MIN <= MAX "
                                       "(or 0:0 for no cuts), not '%s'",
                                       optarg);
            }
            break;
        case 'm':
            if (cli_parse_u64(optarg, 0, 10000000, &o->s2c) != 0) {
                return cli_usage_error("demo", "--server-messages wants 0 to 10000000, not '%s'",
                                       optarg);
            }
            break;
        case 'S':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0) {
                return cli_usage_error("demo", "--seed wants a number, not '%s'", optarg);
            }
            seeded = 1;
            break;
        case 'D':
            if (cli_parse_durability(optarg, &o->durability) != 0) {
                return cli_usage_error("demo", "--durability must be off, normal or full");
            }
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, 86400, &o->timeout_s) != 0) {
                return cli_usage_error("demo", "--timeout wants 1 to 86400 seconds, not '%s'",
                                       optarg);
            }
            break;
        case 'j':
            o->json = 1;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 'K':
            o->keep = 1;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case 'h':
            fputs(demo_help, stdout);
            return -1;
        default:
            fprintf(stderr, "Try 'tether demo --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    }
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
    }
    return 0;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The working directory, and the scenario's paths in it. */
static int make_dir(demo *d)
{
    scen *sc = &d->sc;
    if (d->o.dir == NULL) {
        const char *tmp = getenv("TMPDIR");
        snprintf(d->dir, sizeof d->dir, "%s/tether-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(d->dir) == NULL) {
            d->dir[0] = '\0';
            return scen_fail(sc, "cannot create a directory in %s: %s", tmp && *tmp ? tmp : "/tmp",
                             strerror(errno));
        }
        d->made_dir = 1;
    } else {
        if (strlen(d->o.dir) >= sizeof d->dir) {
            return scen_fail(sc, "--dir is too long");
        }
        snprintf(d->dir, sizeof d->dir, "%s", d->o.dir);
        if (mkdir(d->dir, 0700) == 0) {
            d->made_dir = 1;
        } else if (errno != EEXIST) {
            scen_fail(sc, "cannot create %.300s: %s", d->dir, strerror(errno));
            d->dir[0] = '\0';
            return -1;
        }
    }
    scen_init(sc, &d->R, &demo_def, d->o.seed ^ 0x5eed, d->dir);
    snprintf(d->out_path, sizeof d->out_path, "%s/client.out", d->dir);
    if (file_exists(sc->cdb) || file_exists(sc->sdb) || file_exists(d->out_path)) {
        scen_fail(sc, "%.300s already holds a demo's files; use an empty directory", d->dir);
        d->made_dir = 0;
        d->dir[0] = '\0'; /* not ours: remove nothing */
        return -1;
    }
    return 0;
}

/* Removes the files the demo made (and the directory if it made it). */
static void remove_dir(const demo *d)
{
    if (d->dir[0] == '\0' || d->o.keep) {
        return;
    }
    scen_remove_files(d->dir);
    if (d->made_dir && rmdir(d->dir) != 0) {
        fprintf(stderr, "tether demo: could not remove %s: %s\n", d->dir, strerror(errno));
    }
}

int cli_demo(int argc, char **argv)
{
    demo *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return cli_fail("demo", "out of memory");
    }
    d->o = (demo_opts){.messages = 100000,
                       .size = 64,
                       .kills = 2,
                       .cut_min = 20,
                       .cut_max = 100,
                       .s2c = 2000,
                       .timeout_s = 300};
    int rc = parse_opts(argc, argv, &d->o);
    if (rc != 0) {
        free(d);
        return rc < 0 ? CLI_OK : rc;
    }
    cli_signals_install();
    pthread_mutex_init(&d->mu, NULL);
    d->R.durability = d->o.durability;
    d->R.verbose = d->o.verbose;
    d->R.keep = d->o.keep;
    d->sc.relay_in = -1;
    demo_result *r = calloc(1, sizeof *r);
    int status = CLI_FAIL;
    d->t0 = cli_now_ms();
    if (r == NULL) {
        scen_fail(&d->sc, "out of memory");
    } else if (make_dir(d) == 0) {
        d->sc.user = d;
        d->sc.deadline = d->t0 + d->o.timeout_s * 1000;
        if (start_server(d) == 0) {
            demo_def.run(&d->sc);
        }
    }
    d->elapsed = (double)(cli_now_ms() - d->t0) / 1000.0;
    /* Everything stopped (the relay's summary read) before the stores are read. */
    scen_stop_all(&d->sc);
    tether_server_destroy(d->srv);
    scen_record_close();
    if (d->ran) {
        pthread_mutex_lock(&d->mu);
        r->rx = d->rx;
        pthread_mutex_unlock(&d->mu);
        demo_verify(d, r);
        status = r->ok ? CLI_OK : CLI_FAIL;
        if (d->o.json) {
            demo_print_json(d, r);
        } else {
            demo_print_text(d, r);
        }
    }
    if (d->sc.error[0] != '\0') {
        fprintf(stderr, "tether demo: %s\n", d->sc.error);
        if (d->o.keep && d->dir[0] != '\0') {
            fprintf(stderr, "tether demo: files kept in %s\n", d->dir);
        }
    }
    remove_dir(d);
    pthread_mutex_destroy(&d->mu);
    free(r);
    free(d);
    return status;
}

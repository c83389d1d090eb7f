/*
 * tether demo: the project's main job in one command. A server runs in this
 * process and records every delivery; a relay between it and the client cuts
 * all connections at random moments; the client is a separate process
 * (`tether send --pattern seq --until-seq N`) that is SIGKILLed mid-stream and
 * restarted on the same store. At the end the deliveries are checked: nothing
 * lost, nothing duplicated, nothing out of order, every payload the one sent.
 */
#include "demo.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    demo_rx *rx = &d->rx;
    pthread_mutex_lock(&d->mu);
    rx->opens++;
    if (!rx->have_session) {
        rx->session = *id;
        rx->have_session = 1;
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
    rx->delivered++;
    rx->flagged += redelivered != 0;
    if (seq != rx->prev + 1) {
        rx->out_of_order++;
    }
    rx->prev = seq;
    if (seq == 0 || seq > rx->n || len != rx->size || len < 8 || cli_get_be64(data) != seq) {
        rx->mismatches++;
    }
    if (seq >= 1 && seq <= rx->n) {
        if (rx->seen[seq] == 0) {
            rx->distinct++;
            /* kill exactly at the planned point, however fast the stream runs */
            if (rx->kill_pid > 0 && rx->distinct >= rx->kill_at) {
                kill(rx->kill_pid, SIGKILL);
                rx->kill_pid = 0;
                rx->killed = 1;
            }
        } else if (redelivered) {
            rx->duplicates_flagged++;
        } else {
            rx->duplicates++;
        }
        if (rx->seen[seq] < UINT8_MAX) {
            rx->seen[seq]++;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_acked(tether_server *s, const tether_session_id *id, uint64_t first_seq,
                     uint64_t last_seq, void *user)
{
    demo *d = user;
    demo_rx *rx = &d->rx;
    pthread_mutex_lock(&d->mu);
    if (last_seq > rx->s2c_acked) {
        rx->s2c_acked = last_seq;
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    demo *d = user;
    demo_rx *rx = &d->rx;
    pthread_mutex_lock(&d->mu);
    rx->mismatch_events++;
    pthread_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------------- client process */

/* Closes every descriptor from 3 up, in the child before exec. */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) {
        return;
    }
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++) {
        close((int)fd);
    }
}

/* Starts `tether send` as a child. Only async-signal-safe calls after fork. */
static int spawn_client(demo *d, char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(d->error, sizeof d->error, "cannot fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Its own process group, so a Ctrl-C reaches only the demo, which then
         * stops the client; and it dies with the demo if the demo is killed. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        int in = open("/dev/null", O_RDONLY);
        int out = open(d->out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int log = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (in < 0 || out < 0 || log < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(log, 2) < 0) {
            _exit(127);
        }
        close_from_3();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    d->child = pid;
    return 0;
}

/* Kills the client (if any) with SIGKILL and reaps it. */
static void kill_client(demo *d)
{
    if (d->child > 0) {
        kill(d->child, SIGKILL);
        while (waitpid(d->child, NULL, 0) < 0 && errno == EINTR) {
        }
        d->child = 0;
    }
}

/* The client's command line; seed_arg is rewritten for every start. */
typedef struct client_args {
    char url[64];     /* ws://127.0.0.1:<relay>/ */
    char until[24];   /* N */
    char size[24];    /* B */
    char timeout[24]; /* ms */
    char seed[24];    /* per start */
    char *argv[40];   /* the vector */
} client_args;

static void build_args(demo *d, client_args *a, uint16_t relay_port)
{
    static const char *const dur[] = {"normal", "off", "normal", "full"};
    snprintf(a->url, sizeof a->url, "ws://127.0.0.1:%u/", (unsigned)relay_port);
    snprintf(a->until, sizeof a->until, "%llu", (unsigned long long)d->o.messages);
    snprintf(a->size, sizeof a->size, "%llu", (unsigned long long)d->o.size);
    snprintf(a->timeout, sizeof a->timeout, "%llu", (unsigned long long)d->o.timeout_s * 1000);
    const char *v[] = {
        "tether",
        "send",
        a->url,
        "--db",
        d->client_db,
        "--pattern",
        "seq",
        "--until-seq",
        a->until,
        "--size",
        a->size,
        "--batch",
        "50",
        "--max-pending",
        "5000",
        "--timeout-ms",
        a->timeout,
        "--durability",
        dur[d->o.durability],
        "--seed",
        a->seed,
        "--backoff-base-ms",
        "10",
        "--backoff-cap-ms",
        "250",
        "--backoff-reset-ms",
        "100",
        "--verbose",
        d->o.s2c > 0 ? "--linger" : NULL,
        NULL,
    };
    size_t i = 0;
    for (; v[i] != NULL; i++) {
        a->argv[i] = (char *)v[i];
    }
    a->argv[i] = NULL;
}

static int start_client(demo *d, client_args *a, uint64_t start_no)
{
    snprintf(a->seed, sizeof a->seed, "%llu", (unsigned long long)(d->o.seed + 1000 + start_no));
    return spawn_client(d, a->argv);
}

/* Prints the last lines of the client's log on stderr. */
static void show_client_log(const demo *d)
{
    FILE *f = fopen(d->log_path, "r");
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
    fprintf(stderr, "tether demo: last lines of the client's log (%s):\n", d->log_path);
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
static int send_s2c(demo *d, uint64_t distinct, const tether_session_id *id)
{
    uint64_t target = d->o.s2c * distinct / d->o.messages;
    if (distinct >= d->o.messages) {
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
            snprintf(d->error, sizeof d->error, "server send failed: %s: %s", tether_err_name(rc),
                     tether_errmsg());
            return -1;
        }
        if (first != d->s2c_sent + 1) {
            snprintf(d->error, sizeof d->error,
                     "the server numbered its message %llu, expected %llu",
                     (unsigned long long)first, (unsigned long long)(d->s2c_sent + 1));
            return -1;
        }
        d->s2c_sent += n;
    }
    return 0;
}

static void progress(demo *d, uint64_t distinct)
{
    relay_stats rs;
    relay_get_stats(d->rl, &rs);
    double t = (double)(cli_now_ms() - d->t0) / 1000.0;
    fprintf(stderr,
            "tether demo: [%6.1fs] delivered %llu/%llu, cuts %llu, kills %llu/%llu, "
            "server messages %llu/%llu\n",
            t, (unsigned long long)distinct, (unsigned long long)d->o.messages,
            (unsigned long long)rs.cuts, (unsigned long long)d->kills,
            (unsigned long long)d->o.kills, (unsigned long long)d->s2c_sent,
            (unsigned long long)d->o.s2c);
}

/* Runs the stream to its end. Returns 0 when the client finished with exit 0;
 * -1 with d->error set otherwise. */
static int run_stream(demo *d, client_args *args)
{
    uint64_t n = d->o.messages;
    uint64_t kill_at[64];
    uint64_t lo = n / 20 + 1, hi = n * 9 / 10 > lo ? n * 9 / 10 : lo;
    uint64_t rng = d->o.seed;
    for (uint64_t i = 0; i < d->o.kills; i++) {
        kill_at[i] = tether__rng_range(&rng, lo, hi);
    }
    for (uint64_t i = 1; i < d->o.kills; i++) { /* insertion sort: K is small */
        for (uint64_t j = i; j > 0 && kill_at[j - 1] > kill_at[j]; j--) {
            uint64_t t = kill_at[j];
            kill_at[j] = kill_at[j - 1];
            kill_at[j - 1] = t;
        }
    }

    if (start_client(d, args, 0) != 0) {
        return -1;
    }
    uint64_t deadline = d->t0 + d->o.timeout_s * 1000;
    uint64_t restart_at = 0;        /* when the killed client starts again (0: running) */
    uint64_t distinct_at_start = 0; /* progress when the current client started */
    uint64_t next_report = cli_now_ms() + 1000;
    int termed = 0;
    for (;;) {
        if (cli_stop_requested()) {
            snprintf(d->error, sizeof d->error, "interrupted by signal %d", cli_stop_signal());
            return -1;
        }
        uint64_t now = cli_now_ms();
        if (now >= deadline) {
            snprintf(d->error, sizeof d->error, "timeout after %llu s",
                     (unsigned long long)d->o.timeout_s);
            return -1;
        }
        pthread_mutex_lock(&d->mu);
        uint64_t distinct = d->rx.distinct, s2c_acked = d->rx.s2c_acked;
        int have = d->rx.have_session;
        tether_session_id id = d->rx.session;
        int killed = d->rx.killed;
        d->rx.killed = 0;
        if (restart_at == 0 && !killed && d->child > 0 && d->kills < d->o.kills &&
            d->rx.kill_pid == 0) {
            /* arm the next kill; it fires from the server's delivery callback */
            uint64_t at = kill_at[d->kills];
            d->rx.kill_at = at > distinct_at_start ? at : distinct_at_start + 1;
            d->rx.kill_pid = d->child;
        }
        pthread_mutex_unlock(&d->mu);

        if (have && d->o.s2c > 0 && send_s2c(d, distinct, &id) != 0) {
            return -1;
        }
        if (d->o.verbose && now >= next_report) {
            progress(d, distinct);
            next_report = now + 1000;
        }
        if (restart_at != 0) {
            if (now >= restart_at) {
                d->restarts++;
                if (start_client(d, args, d->restarts) != 0) {
                    return -1;
                }
                restart_at = 0;
                distinct_at_start = distinct;
            }
            cli_sleep_ms(2);
            continue;
        }

        if (killed) {
            kill_client(d); /* already SIGKILLed: reap it */
            d->kills++;
            restart_at = now + tether__rng_range(&rng, 1, 200);
            if (d->o.verbose) {
                fprintf(stderr, "tether demo: SIGKILL the client at %llu delivered\n",
                        (unsigned long long)distinct);
            }
            continue;
        }
        int status = 0;
        pid_t w = waitpid(d->child, &status, WNOHANG);
        if (w == d->child) {
            d->child = 0;
            pthread_mutex_lock(&d->mu);
            int planned = d->rx.killed; /* the armed kill fired after the check above */
            d->rx.killed = 0;
            pthread_mutex_unlock(&d->mu);
            if (planned) {
                d->kills++;
                restart_at = now + tether__rng_range(&rng, 1, 200);
                continue;
            }
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                return 0;
            }
            if (WIFEXITED(status)) {
                snprintf(d->error, sizeof d->error, "the client exited with status %d",
                         WEXITSTATUS(status));
            } else {
                snprintf(d->error, sizeof d->error, "the client died of signal %d",
                         WTERMSIG(status));
            }
            show_client_log(d);
            return -1;
        }
        /* Everything delivered both ways: tell the lingering client to finish. */
        if (!termed && d->o.s2c > 0 && distinct >= n && d->s2c_sent >= d->o.s2c &&
            s2c_acked >= d->o.s2c) {
            kill(d->child, SIGTERM);
            termed = 1;
        }
        cli_sleep_ms(2);
    }
}

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

static int make_dir(demo *d)
{
    if (d->o.dir == NULL) {
        const char *tmp = getenv("TMPDIR");
        snprintf(d->dir, sizeof d->dir, "%s/tether-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(d->dir) == NULL) {
            snprintf(d->error, sizeof d->error, "cannot create a directory in %s: %s",
                     tmp && *tmp ? tmp : "/tmp", strerror(errno));
            return -1;
        }
        d->made_dir = 1;
    } else {
        if (strlen(d->o.dir) >= sizeof d->dir) {
            snprintf(d->error, sizeof d->error, "--dir is too long");
            return -1;
        }
        snprintf(d->dir, sizeof d->dir, "%s", d->o.dir);
        if (mkdir(d->dir, 0700) == 0) {
            d->made_dir = 1;
        } else if (errno != EEXIST) {
            snprintf(d->error, sizeof d->error, "cannot create %.300s: %s", d->dir,
                     strerror(errno));
            return -1;
        }
    }
    snprintf(d->client_db, sizeof d->client_db, "%s/client.db", d->dir);
    snprintf(d->server_db, sizeof d->server_db, "%s/server.db", d->dir);
    snprintf(d->out_path, sizeof d->out_path, "%s/client.out", d->dir);
    snprintf(d->log_path, sizeof d->log_path, "%s/client.log", d->dir);
    if (file_exists(d->client_db) || file_exists(d->server_db) || file_exists(d->out_path)) {
        snprintf(d->error, sizeof d->error,
                 "%.300s already holds a demo's files; use an empty "
                 "directory",
                 d->dir);
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
    static const char *const names[] = {
        "client.db",     "client.db-wal", "client.db-shm",     "client.db-journal", "server.db",
        "server.db-wal", "server.db-shm", "server.db-journal", "client.out",        "client.log",
    };
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", d->dir, names[i]);
        unlink(path);
    }
    if (d->made_dir && rmdir(d->dir) != 0) {
        fprintf(stderr, "tether demo: could not remove %s: %s\n", d->dir, strerror(errno));
    }
}

static int start_server(demo *d)
{
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = d->server_db;
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
        snprintf(d->error, sizeof d->error, "cannot start the server: %s: %s", tether_err_name(rc),
                 tether_errmsg());
        return -1;
    }
    return 0;
}

/* Reads the client's sequence numbers from its store (it has exited). */
static void read_client_store(demo *d, demo_result *r)
{
    cli_session_info si[4];
    const char *role = NULL;
    size_t count = 0;
    char err[512] = "";
    int rc = cli_store_read(d->client_db, &role, si, 4, &count, err, sizeof err);
    if (rc != TETHER_OK || count != 1) {
        if (d->error[0] == '\0') {
            snprintf(d->error, sizeof d->error, "cannot read the client's store: %s",
                     rc != TETHER_OK ? err : "not exactly one session");
        }
        return;
    }
    r->sent = si[0].out_last;
    r->acked = si[0].peer_acked;
    r->recv_cursor = si[0].recv_cursor;
    r->store_ok = 1;
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
    d->rx.n = d->o.messages;
    d->rx.size = d->o.size;
    d->rx.seen = calloc(d->o.messages + 1, 1);
    demo_result *r = calloc(1, sizeof *r);
    client_args *args = calloc(1, sizeof *args);
    int status = CLI_FAIL;
    int ran = 0;
    if (d->rx.seen == NULL || r == NULL || args == NULL) {
        snprintf(d->error, sizeof d->error, "out of memory");
        goto out;
    }
    d->t0 = cli_now_ms();
    if (make_dir(d) != 0 || start_server(d) != 0) {
        goto out;
    }
    char err[256];
    if (relay_start(tether_server_port(d->srv), d->o.cut_min, d->o.cut_max, d->o.seed ^ 0x5eed,
                    &d->rl, err, sizeof err) != 0) {
        snprintf(d->error, sizeof d->error, "cannot start the relay: %s", err);
        goto out;
    }
    if (d->o.verbose) {
        fprintf(stderr, "tether demo: dir %s, server port %u, relay port %u, seed %llu\n", d->dir,
                (unsigned)tether_server_port(d->srv), (unsigned)relay_port(d->rl),
                (unsigned long long)d->o.seed);
    }
    build_args(d, args, relay_port(d->rl));
    ran = 1;
    rc = run_stream(d, args);
    d->elapsed = (double)(cli_now_ms() - d->t0) / 1000.0;
    kill_client(d); /* no-op when it exited */

    /* Snapshot what the server recorded, then stop everything before reading. */
    pthread_mutex_lock(&d->mu);
    r->rx = d->rx;
    pthread_mutex_unlock(&d->mu);
    relay_get_stats(d->rl, &r->rs);
    read_client_store(d, r);
    if (d->o.s2c > 0 && demo_check_s2c(d, &r->s2c) != 0 && d->error[0] == '\0') {
        snprintf(d->error, sizeof d->error, "cannot read %.300s", d->out_path);
    }
    demo_verify(d, r);
    status = r->ok ? CLI_OK : CLI_FAIL;

out:
    kill_client(d);
    tether_server_destroy(d->srv);
    relay_stop(d->rl);
    if (ran) {
        if (d->o.json) {
            demo_print_json(d, r);
        } else {
            demo_print_text(d, r);
        }
    }
    if (d->error[0] != '\0') {
        fprintf(stderr, "tether demo: %s\n", d->error);
        if (d->o.keep && d->dir[0] != '\0') {
            fprintf(stderr, "tether demo: files kept in %s\n", d->dir);
        }
    }
    remove_dir(d);
    free(d->rx.seen);
    pthread_mutex_destroy(&d->mu);
    free(r);
    free(args);
    free(d);
    return status;
}

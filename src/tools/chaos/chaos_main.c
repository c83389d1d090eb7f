/*
 * tether chaos: the fault-injecting relay (src/chaos.c) as a command. Faults
 * come from flags, a timeline file, a seeded random schedule and command lines
 * on stdin; every action is logged with a timestamp, and the seed is printed
 * first so that a run can be repeated.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"

static const char chaos_help[] =
    "Usage: tether chaos --upstream HOST:PORT [options]\n"
    "\n"
    "A TCP relay that breaks the path between a client and a server on command.\n"
    "It listens on --listen, forwards every connection to --upstream, and injects\n"
    "faults: cuts (RST or FIN; now, after N bytes or after N WebSocket frames),\n"
    "stalls (one or both directions, or: the upgrade passes, then nothing),\n"
    "blackholes (nothing passes, nothing closes: only pings can tell), delay and\n"
    "jitter, bandwidth limits, tiny writes, a buffering reverse proxy, refused\n"
    "connections. Point your client at the relay instead of the server.\n"
    "\n"
    "Faults come from the flags below (applied at start), from a timeline file,\n"
    "from a random schedule drawn from --seed (the same seed gives the same\n"
    "schedule), and from commands typed on stdin, one per line, applied at once.\n"
    "Every action is logged on stdout with seconds since the start; the first line\n"
    "gives the seed. On exit a 'summary' line counts what was done.\n"
    "\n"
    "Options:\n"
    "  --upstream HOST:PORT  where connections go (any host; 'none' closes them)\n"
    "  --listen HOST:PORT    where to listen [127.0.0.1:0: a port the system picks]\n"
    "  --port-file FILE      write the port listened on (decimal and a newline)\n"
    "  --seed S              seed of the random schedule and of jitter [from the\n"
    "                        clock; printed]\n"
    "  --scenario FILE       a timeline: one 'at TIME COMMAND' per line\n"
    "  --random MIN:MAX      a random fault every MIN to MAX ms\n"
    "  --kinds LIST          kinds for --random, comma-separated [cut,stall,delay,\n"
    "                        rate,split,buffer,refuse]; 'all' adds blackhole and\n"
    "                        stall-upgrade (they need pings / a welcome timeout)\n"
    "  --plan N              print the schedule and exit, relaying nothing: the\n"
    "                        --scenario timeline merged with the first N random\n"
    "                        faults of --seed, as a timeline file\n"
    "  --do COMMAND          apply COMMAND at start; may be repeated\n"
    "  --delay MS            same as --do 'delay MS'; --jitter MS adds jitter\n"
    "  --rate BYTES          same as --do 'rate BYTES' (bytes per second; k, m)\n"
    "  --split N             same as --do 'split N'\n"
    "  --buffer BYTES        same as --do 'buffer BYTES' (the trickle rate)\n"
    "  --stall-upgrade       same as --do 'stall-upgrade'\n"
    "  --cut-after-bytes N   same as --do 'cut rst after N bytes'\n"
    "  --cut-after-frames N  same as --do 'cut rst after N frames'\n"
    "  --duration S          stop after S seconds [run until SIGINT or SIGTERM]\n"
    "  --no-stdin            do not read commands from stdin\n"
    "  --verbose             also log every connection opened and closed\n"
    "  --help                show this help\n"
    "\n"
    "Commands (stdin, --do, timeline files), TIME as 250ms, 1.5s or plain ms:\n"
    "  cut [rst|fin] [after N bytes|after N frames] [up|down|both]\n"
    "  stall [up|down|both] [for TIME]      resume [up|down|both]\n"
    "  stall-upgrade [up|down|both] [after N bytes] [for TIME]  stall-upgrade off\n"
    "      (after N bytes: the 101 and N more bytes down pass, then nothing)\n"
    "  blackhole [for TIME]                 blackhole off\n"
    "  delay MS [jitter MS] [up|down|both] [for TIME]      delay off\n"
    "  rate BYTES [up|down|both] [for TIME]                rate off\n"
    "  split N [gap MS] [up|down|both] [for TIME]          split off\n"
    "  buffer [BYTES] [cap BYTES] [up|down|both] [for TIME] buffer off\n"
    "  refuse [for TIME]                    refuse off\n"
    "  clear                                every fault off\n"
    "  random MIN:MAX [KINDS]               random off\n"
    "  upstream HOST:PORT | none            status            quit\n"
    "  Prefix 'in TIME' runs a command later; 'at TIME' at that offset from the start.\n"
    "  docs/chaos.md describes each one.\n"
    "\n" CLI_EXIT_HELP;

/* Where the log goes; the relay thread and the main thread both write. */
typedef struct chaos_out {
    pthread_mutex_t mu; /* one line at a time */
    FILE *f;            /* stdout */
} chaos_out;

static void out_line(void *arg, const char *line)
{
    chaos_out *o = arg;
    pthread_mutex_lock(&o->mu);
    fprintf(o->f, "%s\n", line);
    fflush(o->f);
    pthread_mutex_unlock(&o->mu);
}

static void out_printf(chaos_out *o, tether__chaos *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void out_printf(chaos_out *o, tether__chaos *c, const char *fmt, ...)
{
    char line[600];
    int n = 0;
    if (c) {
        uint64_t t = tether__chaos_elapsed_ms(c);
        n = snprintf(line, sizeof line, "[%5llu.%03llu] ", (unsigned long long)(t / 1000),
                     (unsigned long long)(t % 1000));
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    out_line(o, line);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                snprintf(err, errlen, "%s is too large", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
    }
    return buf;
}

static void print_summary(chaos_out *o, tether__chaos *c, uint64_t seed)
{
    tether__chaos_stats st;
    tether__chaos_get_stats(c, &st);
    cli_buf b = {0};
    cli_buf_printf(&b,
                   "summary seed=%llu elapsed_ms=%llu accepted=%llu refused=%llu "
                   "upstream_failed=%llu",
                   (unsigned long long)seed, (unsigned long long)tether__chaos_elapsed_ms(c),
                   (unsigned long long)st.accepted, (unsigned long long)st.refused,
                   (unsigned long long)st.upstream_failed);
    for (int k = TETHER__CHAOS_CUT; k < TETHER__CHAOS_CLEAR; k++) {
        cli_buf_printf(&b, " %s=%llu", tether__chaos_kind_name(k),
                       (unsigned long long)st.faults[k]);
    }
    cli_buf_printf(&b,
                   " cut_events=%llu cut_events_rst=%llu cut_conns=%llu cut_rst=%llu bytes_up=%llu "
                   "bytes_down=%llu frames_up=%llu frames_down=%llu swallowed=%llu",
                   (unsigned long long)st.cut_events, (unsigned long long)st.cut_events_rst,
                   (unsigned long long)st.cut_conns, (unsigned long long)st.cut_rst,
                   (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down,
                   (unsigned long long)st.frames_up, (unsigned long long)st.frames_down,
                   (unsigned long long)st.swallowed);
    if (b.data) {
        out_line(o, b.data);
    }
    cli_buf_free(&b);
}

/* Adds "--do" text to the list. */
static int add_do(char ***list, size_t *n, const char *fmt, const char *arg)
{
    char **nl = realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl) {
        return -1;
    }
    *list = nl;
    size_t len = strlen(fmt) + strlen(arg) + 1;
    nl[*n] = malloc(len);
    if (!nl[*n]) {
        return -1;
    }
    snprintf(nl[*n], len, fmt, arg);
    (*n)++;
    return 0;
}

int cli_chaos(int argc, char **argv)
{
    static const struct option opts[] = {
        {"upstream", required_argument, NULL, 'u'},
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'p'},
        {"seed", required_argument, NULL, 'S'},
        {"scenario", required_argument, NULL, 'f'},
        {"random", required_argument, NULL, 'r'},
        {"kinds", required_argument, NULL, 'k'},
        {"plan", required_argument, NULL, 'P'},
        {"do", required_argument, NULL, 'd'},
        {"delay", required_argument, NULL, 'D'},
        {"jitter", required_argument, NULL, 'J'},
        {"rate", required_argument, NULL, 'R'},
        {"split", required_argument, NULL, 's'},
        {"buffer", required_argument, NULL, 'B'},
        {"stall-upgrade", no_argument, NULL, 'U'},
        {"cut-after-bytes", required_argument, NULL, 'b'},
        {"cut-after-frames", required_argument, NULL, 'F'},
        {"duration", required_argument, NULL, 't'},
        {"no-stdin", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *upstream = NULL, *listen = "127.0.0.1:0", *port_file = NULL, *scenario = NULL;
    const char *random_arg = NULL, *kinds = NULL, *delay = NULL, *jitter = NULL;
    uint64_t seed = 0, plan = 0, duration_s = 0;
    int seeded = 0, use_stdin = 1, verbose = 0, status = CLI_FAIL;
    char **dos = NULL;
    size_t ndos = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'u':
            upstream = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'S':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &seed) != 0) {
                return cli_usage_error("chaos", "--seed wants a number, not '%s'", optarg);
            }
            seeded = 1;
            break;
        case 'f':
            scenario = optarg;
            break;
        case 'r':
            random_arg = optarg;
            break;
        case 'k':
            kinds = optarg;
            break;
        case 'P':
            if (cli_parse_u64(optarg, 1, 100000, &plan) != 0) {
                return cli_usage_error("chaos", "--plan wants 1 to 100000, not '%s'", optarg);
            }
            break;
        case 'd':
            bad = add_do(&dos, &ndos, "%s", optarg);
            break;
        case 'D':
            delay = optarg;
            break;
        case 'J':
            jitter = optarg;
            break;
        case 'R':
            bad = add_do(&dos, &ndos, "rate %s", optarg);
            break;
        case 's':
            bad = add_do(&dos, &ndos, "split %s", optarg);
            break;
        case 'B':
            bad = add_do(&dos, &ndos, "buffer %s", optarg);
            break;
        case 'U':
            bad = add_do(&dos, &ndos, "%s", "stall-upgrade");
            break;
        case 'b':
            bad = add_do(&dos, &ndos, "cut rst after %s bytes", optarg);
            break;
        case 'F':
            bad = add_do(&dos, &ndos, "cut rst after %s frames", optarg);
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, 10000000, &duration_s) != 0) {
                return cli_usage_error("chaos", "--duration wants seconds >= 1, not '%s'", optarg);
            }
            break;
        case 'n':
            use_stdin = 0;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            fputs(chaos_help, stdout);
            return CLI_OK;
        default:
            fprintf(stderr, "Try 'tether chaos --help'.\n");
            return CLI_USAGE;
        }
        if (bad) {
            return cli_fail("chaos", "out of memory");
        }
    }
    if (optind < argc) {
        return cli_usage_error("chaos", "unexpected argument '%s'", argv[optind]);
    }
    if (delay || jitter) {
        char d[96];
        snprintf(d, sizeof d, "delay %s jitter %s", delay ? delay : "0", jitter ? jitter : "0");
        if (add_do(&dos, &ndos, "%s", d) != 0) {
            return cli_fail("chaos", "out of memory");
        }
    }
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32) %
               1000000000000ull;
    }

    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[300];
    tether__chaos_event *timeline = NULL;
    size_t ntimeline = 0;
    char lhost[256], uhost[256];
    tether__chaos *relay = NULL;
    chaos_out out = {.f = stdout};
    pthread_mutex_init(&out.mu, NULL);

    if (scenario) {
        char *text = read_file(scenario, err, sizeof err);
        uint64_t fseed = seed;
        if (!text) {
            cli_fail("chaos", "%s", err);
            goto done;
        }
        int rc = tether__chaos_parse_timeline(text, &timeline, &ntimeline, &fseed, &cfg.random,
                                              &cfg.random_on, err, sizeof err);
        free(text);
        if (rc != 0) {
            status = cli_usage_error("chaos", "%s: %s", scenario, err);
            goto done;
        }
        if (!seeded) {
            seed = fseed; /* the file's seed, unless --seed overrides it */
        }
    }
    if (random_arg || kinds) {
        char line[400];
        tether__chaos_cmd cmd;
        snprintf(line, sizeof line, "random %s %s", random_arg ? random_arg : "200:800",
                 kinds ? kinds : "");
        if (tether__chaos_parse(line, &cmd, err, sizeof err) != 0) {
            status = cli_usage_error("chaos", "--random/--kinds: %s", err);
            goto done;
        }
        cfg.random = cmd.random;
        cfg.random_on = 1;
    }
    if (plan) {
        /* the timeline and the first N random faults, merged: itself a timeline file */
        size_t nr = cfg.random_on ? (size_t)plan : 0, n = ntimeline + nr;
        if (n == 0) {
            status = cli_usage_error("chaos", "--plan needs --random or --scenario");
            goto done;
        }
        tether__chaos_event *ev = calloc(n, sizeof *ev);
        if (!ev || (nr && tether__chaos_plan(seed, &cfg.random, ev + ntimeline, nr) != 0)) {
            free(ev);
            cli_fail("chaos", "cannot draw the schedule");
            goto done;
        }
        if (ntimeline) {
            memcpy(ev, timeline, ntimeline * sizeof *ev);
        }
        for (size_t i = 1; i < n; i++) { /* stable: timeline first at equal times */
            for (size_t j = i; j > 0 && ev[j - 1].at_ms > ev[j].at_ms; j--) {
                tether__chaos_event t = ev[j];
                ev[j] = ev[j - 1];
                ev[j - 1] = t;
            }
        }
        printf("seed %llu\n", (unsigned long long)seed);
        for (size_t i = 0; i < n; i++) {
            char text[200];
            tether__chaos_format(&ev[i].fault, text, sizeof text);
            printf("at %llu.%03llus %s\n", (unsigned long long)(ev[i].at_ms / 1000),
                   (unsigned long long)(ev[i].at_ms % 1000), text);
        }
        free(ev);
        status = CLI_OK;
        goto done;
    }
    for (size_t i = 0; i < ndos; i++) { /* check them all before starting */
        tether__chaos_cmd cmd;
        if (tether__chaos_parse(dos[i], &cmd, err, sizeof err) != 0) {
            status = cli_usage_error("chaos", "'%s': %s", dos[i], err);
            goto done;
        }
    }
    if (!upstream) {
        status = cli_usage_error("chaos", "--upstream HOST:PORT is required");
        goto done;
    }
    if (strcmp(upstream, "none") == 0) {
        snprintf(uhost, sizeof uhost, "none");
        cfg.upstream_port = 0;
    } else if (tether__chaos_parse_hostport(upstream, uhost, sizeof uhost, &cfg.upstream_port) != 0 ||
               cfg.upstream_port == 0) {
        status = cli_usage_error("chaos", "--upstream wants HOST:PORT, not '%s'", upstream);
        goto done;
    }
    if (tether__chaos_parse_hostport(listen, lhost, sizeof lhost, &cfg.listen_port) != 0) {
        status = cli_usage_error("chaos", "--listen wants HOST:PORT, not '%s'", listen);
        goto done;
    }
    cfg.listen_host = lhost;
    cfg.upstream_host = uhost;
    cfg.seed = seed;
    cfg.timeline = timeline;
    cfg.timeline_n = ntimeline;
    cfg.log_conns = verbose;
    cfg.log = out_line;
    cfg.log_arg = &out;

    cli_signals_install();
    if (tether__chaos_start(&cfg, &relay, err, sizeof err) != 0) {
        cli_fail("chaos", "%s", err);
        goto done;
    }
    for (size_t i = 0; i < ndos; i++) {
        if (tether__chaos_command(relay, dos[i], err, sizeof err) != 0) {
            out_printf(&out, relay, "error: '%s': %s", dos[i], err);
        }
    }
    if (port_file && cli_write_port_file(port_file, tether__chaos_port(relay)) != 0) {
        cli_fail("chaos", "cannot write the port to %s", port_file);
        goto done;
    }
    if (use_stdin && isatty(0) && tcgetpgrp(0) != getpgrp()) {
        use_stdin = 0; /* in the background of a shell: reading would stop us (SIGTTIN) */
    }
    uint64_t end = duration_s ? cli_now_ms() + duration_s * 1000 : UINT64_MAX;
    char line[1024];
    size_t llen = 0;
    while (!cli_stop_requested() && cli_now_ms() < end) {
        if (!use_stdin) {
            cli_sleep_ms(50);
            continue;
        }
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r <= 0 || !(p.revents & (POLLIN | POLLHUP))) {
            continue;
        }
        ssize_t n = read(0, line + llen, sizeof line - 1 - llen);
        if (n <= 0) {
            use_stdin = 0; /* EOF: keep relaying */
            continue;
        }
        llen += (size_t)n;
        line[llen] = '\0';
        char *nl;
        int quit = 0;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            char *s = line;
            while (*s == ' ' || *s == '\t') {
                s++;
            }
            if (strcmp(s, "quit") == 0 || strcmp(s, "exit") == 0) {
                quit = 1;
            } else if (tether__chaos_command(relay, s, err, sizeof err) != 0) {
                out_printf(&out, relay, "error: '%s': %s", s, err);
            }
            size_t used = (size_t)(nl + 1 - line);
            memmove(line, nl + 1, llen - used + 1);
            llen -= used;
        }
        if (llen == sizeof line - 1) {
            out_printf(&out, relay, "error: command line too long");
            llen = 0;
        }
        if (quit) {
            break;
        }
    }
    print_summary(&out, relay, seed);
    status = CLI_OK;

done:
    tether__chaos_stop(relay);
    free(timeline);
    for (size_t i = 0; i < ndos; i++) {
        free(dos[i]);
    }
    free(dos);
    pthread_mutex_destroy(&out.mu);
    return status;
}

/*
 * `tether bench`: options, the orchestrator's outline, and the hidden peer
 * roles (`tether bench --role client|server ...`) that run.c starts.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <sqlite3.h>

#include "bench.h"
#include "pgserver/pgserver.h"
#include "sessions.h"
#include "store/store.h"
#include "run.h"

static const char help[] =
    "Usage: tether bench [--quick] [--out DIR] [options]\n"
    "\n"
    "Measures what tether's reliability costs over raw libwebsockets: server and\n"
    "client run as separate processes on loopback, and every configuration is\n"
    "compared with a raw libwebsockets baseline (one WebSocket message per message,\n"
    "no sequence numbers, no ACKs, no store) measured in the same run.\n"
    "\n"
    "For each configuration: messages/s and MB/s, send-to-ack and send-to-deliver\n"
    "latency (p50, p99, p99.9) at full load and at a fixed offered rate, CPU seconds\n"
    "per million messages for each process, TCP payload bytes per message in each\n"
    "direction, peak RSS of each process, the ratio to the raw baseline; and a\n"
    "backlog queued offline, then drained on connect.\n"
    "\n"
    "Options:\n"
    "  --quick          a subset that finishes in under a minute: 64 B and 512 B;\n"
    "                   raw, memory, NORMAL, FULL; default ACK policy; 200k messages\n"
    "                   each; a 200k backlog; one run per configuration\n"
    "  --out DIR        write results.csv, results.json, the plots (SVG) and\n"
    "                   scratch stores under DIR [bench-results]\n"
    "  --repeat N       runs per configuration; the median is reported [1 quick, 3 full]\n"
    "  --only TEXT      run only configurations whose name contains TEXT (the raw\n"
    "                   baselines of the same sizes are kept); may be repeated\n"
    "  --scale F        multiply every message count by F (0.01 to 10) [1]\n"
    "  --no-plots       do not run gnuplot\n"
    "  --verbose        print each run as it finishes\n"
    "  --pg URI|auto    also run pg/64 and pg/512: the server's store in the\n"
    "                   PostgreSQL database at URI (postgresql://...; auto: a private\n"
    "                   server this run starts in /tmp with Debian's postgresql\n"
    "                   package, fsync on, and removes at the end), the client's\n"
    "                   SQLite NORMAL; compare with normal/64 and normal/512; and\n"
    "                   the fleet rows: sessions spread over three server instances\n"
    "                   on that database, against one instance, one SQLite server\n"
    "                   and raw lws with as many sessions (pg/64/s3/i3 ...)\n"
    "  --fleet-sessions N  sessions (client processes) of the fleet rows, a\n"
    "                   multiple of 3 from 3 to 63 [3]; with --pg\n"
    "  --page-size N    SQLite page size, bytes, of every client store the run\n"
    "                   creates (store_page_size): a power of two from 512 to\n"
    "                   65536, or 0 for SQLite's default [0: 4096]; applies to the\n"
    "                   client peers and the sqlite/ floor rows, not to the\n"
    "                   servers' stores nor to the cli/ rows (`tether send`)\n"
    "  --help           show this help\n"
    "\n"
    "Many sessions (instead of the matrix; bench/README.md):\n"
    "  --sessions N     N sessions (1 to 1000000) against one `tether serve`: its\n"
    "                   memory per idle session, then the rate phase with --rate\n"
    "  --rate R         messages per second per session in the rate phase (0 to\n"
    "                   1000) [0: idle only]\n"
    "  --drivers K      client processes the sessions are split over (1 to 64) [1]\n"
    "  --duration S     length of the rate phase, s (1 to 3600) [20; 3 with --quick]\n"
    "\n"
    "Timings depend on the machine and on what else runs on it: the report records\n"
    "the load average before and after. Nothing here is a pass/fail test.\n"
    "\n"
    "Exit status: 0 every configuration ran, 1 some failed, 2 usage error.\n";

static int parse_store(const char *s, bench_store *out)
{
    static const char *names[] = {"raw", "memory", "off", "normal", "full"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (bench_store)i;
            return 0;
        }
    }
    return -1;
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* 1 when v is a value of --page-size: 0, or a page size SQLite takes. */
static int page_size_arg(double v)
{
    return v == 0 || (v <= TETHER__PAGE_SIZE_MAX && tether__store_page_size_ok((uint32_t)v) &&
                      (double)(uint32_t)v == v);
}

/* The hidden peer role: everything after --role. */
static int role_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},   {"store", required_argument, NULL, 's'},
        {"url", required_argument, NULL, 'u'},    {"db", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 'z'},   {"count", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'R'},   {"batch", required_argument, NULL, 'b'},
        {"window", required_argument, NULL, 'w'}, {"ack-every", required_argument, NULL, 'a'},
        {"ack-delay", required_argument, NULL, 'D'},
        {"max-pending", required_argument, NULL, 'm'},
        {"backlog", no_argument, NULL, 'B'},      {"timeout", required_argument, NULL, 't'},
        {"async", no_argument, NULL, 'A'},        {"opaque", no_argument, NULL, 'Q'},
        {"http", no_argument, NULL, 'H'},         {"sessions", required_argument, NULL, 'S'},
        {"wait-go", no_argument, NULL, 'W'},      {"page-size", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    bench_peer_opts o;
    memset(&o, 0, sizeof o);
    o.size = 64;
    o.count = 1000;
    o.timeout_s = 60;
    o.batch = 1;
    int sqlite = 0;
    int c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'r':
            if (strcmp(optarg, "server") == 0) {
                o.server = 1;
            } else if (strcmp(optarg, "sqlite") == 0) {
                sqlite = 1;
            } else if (strcmp(optarg, "client") != 0) {
                bad = 1;
            }
            break;
        case 's':
            bad = parse_store(optarg, &o.store);
            break;
        case 'u':
            o.url = optarg;
            break;
        case 'd':
            o.db = optarg;
            break;
        case 'B':
            o.backlog = 1;
            break;
        case 'A':
            o.async = 1;
            break;
        case 'Q':
            o.opaque = 1;
            break;
        case 'H':
            o.http = 1;
            break;
        case 'W':
            o.wait_go = 1;
            break;
        default:
            if (c == '?' || num(optarg, 0, 1e12, &v) != 0) {
                bad = 1;
                break;
            }
            switch (c) {
            case 'z':
                o.size = (uint32_t)v;
                break;
            case 'n':
                o.count = (uint64_t)v;
                break;
            case 'R':
                o.rate = v;
                break;
            case 'b':
                o.batch = (uint32_t)v;
                break;
            case 'w':
                o.window = (uint32_t)v;
                break;
            case 'a':
                o.ack_every = (uint32_t)v;
                break;
            case 'D':
                o.ack_delay = (uint32_t)v;
                break;
            case 'm':
                o.max_pending = (uint32_t)v;
                break;
            case 't':
                o.timeout_s = (uint32_t)v;
                break;
            case 'S':
                bad = v < 1 || v > BENCH_SESSIONS_MAX;
                o.sessions = (uint32_t)v;
                break;
            case 'p':
                bad = !page_size_arg(v);
                o.page_size = (uint32_t)v;
                break;
            }
        }
        if (bad) {
            fprintf(stderr, "tether bench: bad peer option\n");
            return 2;
        }
    }
    if (sqlite) {
        return o.count ? bench_peer_sqlite(&o) : 2;
    }
    if (o.size < 16 || o.count == 0 || (!o.server && !o.url)) {
        fprintf(stderr, "tether bench: peer needs --size >= 16, --count > 0 and (client) --url\n");
        return 2;
    }
    return o.store == BS_RAW ? bench_peer_raw(&o) : bench_peer_tether(&o);
}

static void read_line_file(const char *path, const char *key, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    char line[512];
    out[0] = '\0';
    if (!f) {
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t') {
                    p++;
                }
                p[strcspn(p, "\n")] = '\0';
                snprintf(out, len, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(double l[3])
{
    if (getloadavg(l, 3) != 3) {
        l[0] = l[1] = l[2] = -1;
    }
}

static void machine(bench_machine *m, int argc, char **argv)
{
    memset(m, 0, sizeof *m);
    m->nproc = (int)sysconf(_SC_NPROCESSORS_ONLN);
    read_line_file("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu);
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    }
    snprintf(m->lws, sizeof m->lws, "%s", lws_get_library_version());
    size_t ll = strlen(m->lws);
    while (ll > 0 && (m->lws[ll - 1] == '-' || m->lws[ll - 1] == ' ')) {
        m->lws[--ll] = '\0'; /* Debian's build leaves an empty git hash after a '-' */
    }
    snprintf(m->sqlite, sizeof m->sqlite, "%s", sqlite3_libversion());
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->date, sizeof m->date, "%Y-%m-%d %H:%M UTC", &tm);
    size_t o = 0;
    o += (size_t)snprintf(m->cmdline, sizeof m->cmdline, "tether bench");
    for (int i = 1; i < argc && o < sizeof m->cmdline; i++) {
        const char *a = argv[i];
        char where[160];
        if (i > 1 && strcmp(argv[i - 1], "--pg") == 0 && strcmp(a, "auto") != 0) {
            /* the results are shared: never a password, only where the database is */
            tether__store_pg_describe(a, where, sizeof where);
            a = where;
        }
        o += (size_t)snprintf(m->cmdline + o, sizeof m->cmdline - o, " %s", a);
    }
    loadavg(m->load_start);
    m->psi_cpu_start = bench_psi("cpu");
    m->psi_io_start = bench_psi("io");
}

static int bench_matrix_run(const bench_run_opts *ro_in, int argc, char **argv, int plots);

static int mkdirs(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int tether_bench_main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0) {
            if (i + 1 < argc && strcmp(argv[i + 1], "sessions-driver") == 0) {
                return bench_sessions_role(argc, argv); /* sessions.c */
            }
            return role_main(argc, argv);
        }
    }
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'},       {"out", required_argument, NULL, 'o'},
        {"repeat", required_argument, NULL, 'r'}, {"only", required_argument, NULL, 'O'},
        {"scale", required_argument, NULL, 's'}, {"no-plots", no_argument, NULL, 'P'},
        {"verbose", no_argument, NULL, 'v'},     {"help", no_argument, NULL, 'h'},
        {"pg", required_argument, NULL, 'G'},
        {"fleet-sessions", required_argument, NULL, 'F'},
        {"page-size", required_argument, NULL, 'Z'},
        /* the many-session mode, sessions.c */
        {"sessions", required_argument, NULL, 'N'}, {"rate", required_argument, NULL, 'R'},
        {"drivers", required_argument, NULL, 'K'},  {"duration", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    bench_sessions_opts so = {.drivers = 1, .size = 64};
    bench_run_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.out = "bench-results";
    ro.scale = 1;
    int plots = 1;
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            ro.quick = 1;
            break;
        case 'o':
            ro.out = optarg;
            break;
        case 'r':
            if (num(optarg, 1, 99, &v) != 0) {
                fprintf(stderr, "tether bench: --repeat wants 1 to 99\nTry 'tether bench --help'.\n");
                return 2;
            }
            ro.repeat = (int)v;
            break;
        case 'O':
            if (ro.n_only < BENCH_ONLY_MAX) {
                ro.only[ro.n_only++] = optarg;
            }
            break;
        case 's':
            if (num(optarg, 0.01, 10, &v) != 0) {
                fprintf(stderr, "tether bench: --scale wants 0.01 to 10\nTry 'tether bench --help'.\n");
                return 2;
            }
            ro.scale = v;
            break;
        case 'P':
            plots = 0;
            break;
        case 'v':
            ro.verbose = 1;
            break;
        case 'G':
            if (strncmp(optarg, "postgresql://", 13) != 0 && strncmp(optarg, "postgres://", 11) != 0 &&
                strcmp(optarg, "auto") != 0) {
                fprintf(stderr, "tether bench: --pg wants a postgresql:// URI or auto, not '%s'\n"
                                "Try 'tether bench --help'.\n",
                        optarg);
                return 2;
            }
            ro.pg = optarg;
            break;
        case 'F':
            if (num(optarg, 3, 63, &v) != 0 || (int)v != v || (int)v % 3 != 0) {
                fprintf(stderr, "tether bench: --fleet-sessions wants a multiple of 3 from 3 to 63 "
                                "(every one of the three instances serves as many)\nTry 'tether "
                                "bench --help'.\n");
                return 2;
            }
            ro.fleet_sessions = (uint32_t)v;
            break;
        case 'Z':
            if (num(optarg, 0, TETHER__PAGE_SIZE_MAX, &v) != 0 || !page_size_arg(v)) {
                fprintf(stderr,
                        "tether bench: --page-size wants a SQLite page size: a power of two "
                        "from 512 to 65536, or 0 for SQLite's default (not '%s')\nTry "
                        "'tether bench --help'.\n",
                        optarg);
                return 2;
            }
            ro.page_size = (uint32_t)v;
            break;
        case 'N':
        case 'R':
        case 'K':
        case 'T':
            if (bench_sessions_opt(&so, c, optarg) != 0) {
                return 2;
            }
            break;
        case 'h':
            fputs(help, stdout);
            return 0;
        default:
            fprintf(stderr, "Try 'tether bench --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tether bench: unexpected argument '%s'\nTry 'tether bench --help'.\n",
                argv[optind]);
        return 2;
    }
    if (so.sessions || so.rate || so.duration_s || so.drivers != 1) {
        if (!so.sessions) {
            fprintf(stderr, "tether bench: --rate, --drivers and --duration go with --sessions N\n"
                            "Try 'tether bench --help'.\n");
            return 2;
        }
        so.quick = ro.quick;
        so.out = ro.out;
        so.duration_s = so.duration_s ? so.duration_s : (ro.quick ? 3 : 20);
        if (mkdirs(ro.out) != 0) {
            fprintf(stderr, "tether bench: cannot create %s: %s\n", ro.out, strerror(errno));
            return 1;
        }
        return bench_sessions_run(&so);
    }
    if (ro.fleet_sessions && !ro.pg) {
        fprintf(stderr, "tether bench: --fleet-sessions goes with --pg URI\nTry 'tether bench "
                        "--help'.\n");
        return 2;
    }
    ro.fleet_sessions = ro.fleet_sessions ? ro.fleet_sessions : 3;
    if (!ro.repeat) {
        ro.repeat = ro.quick ? 1 : 3;
    }
    if (mkdirs(ro.out) != 0) {
        fprintf(stderr, "tether bench: cannot create %s: %s\n", ro.out, strerror(errno));
        return 1;
    }

    static tether_pgs pgs; /* --pg auto: the private server */
    static char pg_uri[128];
    int want_pg = 0; /* a selected configuration uses the database */
    static bench_cfg probe[BENCH_CFG_MAX];
    size_t np = ro.pg ? bench_matrix(&ro, probe, BENCH_CFG_MAX) : 0;
    for (size_t i = 0; i < np; i++) {
        want_pg |= probe[i].pg;
    }
    if (ro.pg && !want_pg) {
        fprintf(stderr, "tether bench: --pg: no PostgreSQL row is selected (see --only)\n");
    }
    if (ro.pg && want_pg && strcmp(ro.pg, "auto") == 0) {
        char err[600];
        if (tether_pgs_start(&pgs, 1, err, sizeof err) != 0) {
            fprintf(stderr, "tether bench: --pg auto: %s\n", err);
            tether_pgs_show_why(&pgs, "tether bench");
            tether_pgs_remove(&pgs);
            return 1;
        }
        ro.pg = tether_pgs_uri(&pgs, "postgres", pg_uri, sizeof pg_uri);
        fprintf(stderr, "tether bench: --pg auto: PostgreSQL (%s) in %s, fsync on, at %s\n",
                pgs.bindir, pgs.dir, ro.pg);
    }
    int rc = bench_matrix_run(&ro, argc, argv, plots);
    tether_pgs_remove(&pgs);
    return rc;
}

/* Runs the matrix and writes the report; the exit status. */
static int bench_matrix_run(const bench_run_opts *ro_in, int argc, char **argv, int plots)
{
    bench_run_opts ro = *ro_in;
    bench_machine m;
    machine(&m, argc, argv);
    static bench_cfg cfgs[BENCH_CFG_MAX];
    size_t n = bench_matrix(&ro, cfgs, BENCH_CFG_MAX);
    if (n == 0) {
        fprintf(stderr, "tether bench: no configuration matches --only\n");
        return 2;
    }
    fprintf(stderr, "tether bench: %zu configurations, %d run%s each%s; load average %.2f; results in %s\n",
            n, ro.repeat, ro.repeat > 1 ? "s (median)" : "", ro.quick ? " (quick)" : "",
            m.load_start[0], ro.out);
    if (m.load_start[0] > 0.5) {
        fprintf(stderr, "tether bench: the machine is busy (load %.2f): figures will be noisy\n",
                m.load_start[0]);
    }
    int failed = bench_run_all(&ro, cfgs, n);
    loadavg(m.load_end);
    m.psi_cpu_end = bench_psi("cpu");
    m.psi_io_end = bench_psi("io");

    report_table(stdout, &m, cfgs, n, ro.quick, ro.repeat);
    if (report_files(ro.out, &m, cfgs, n, ro.quick, ro.repeat) != 0) {
        fprintf(stderr, "tether bench: cannot write the result files in %s\n", ro.out);
        failed = 1;
    }
    if (plots) {
        report_plots(ro.out, cfgs, n);
    }
    return failed ? 1 : 0;
}

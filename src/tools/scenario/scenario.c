/*
 * tether scenario: the crash and fault scenario suite. Each scenario runs a
 * real server, a real client and the chaos relay as separate processes on
 * loopback (scenario.h), streams a known sequence both ways while it cuts,
 * stalls, blackholes, slows the link, kills processes (from outside at random
 * moments, and from inside at named kill points) and restarts them on their
 * stores, then verifies from the records and both stores that every message
 * was delivered exactly once, in order, and that what each sender saw acked is
 * what its receiver committed (scenario_check.c).
 */
#include "scenario.h"

#include "pgserver/pgserver.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char scenario_help[] =
    "Usage: tether scenario [--quick | --soak --duration S] [options]\n"
    "\n"
    "Runs the crash and fault scenarios. In each one a server, a client and the\n"
    "'tether chaos' relay run as separate processes on loopback; the client streams\n"
    "N numbered messages to the server and the server M to the client while the\n"
    "relay injects faults and processes are killed with SIGKILL (from outside at\n"
    "random moments, and from inside the library at named kill points) and\n"
    "restarted on their stores. Then every message must have been delivered\n"
    "exactly once and in order, each payload the one sent, and the acks each\n"
    "sender saw must equal what its receiver committed (from the peers' records\n"
    "and both stores). A repeat after a receiver restart is allowed only with the\n"
    "redelivered flag (the documented window).\n"
    "\n"
    "Scenarios (--list prints them with what each verifies):\n"
    "  cuts, client-kill, server-kill, both-kill, stall-upgrade, blackhole, freeze,\n"
    "  slow-link, buffered, lost-store, offline-backlog, random, and timeline\n"
    "  (with --timeline FILE); with --pg, the fleet scenarios fleet-kill,\n"
    "  fleet-fence and (with --pg auto or --pg-data) fleet-pg-restart: server instances on\n"
    "  one PostgreSQL database, the client given their URLs (docs/chaos.md)\n"
    "\n"
    "Options:\n"
    "  --quick            each scenario once, small streams (the default; a few\n"
    "                     minutes)\n"
    "  --soak             run scenarios round after round, larger streams, until\n"
    "                     --duration is over [600 s]\n"
    "  --duration S       soak for S seconds (implies --soak)\n"
    "  --seed S           master seed [from the clock]; each scenario prints its\n"
    "                     own seed and the command that repeats it\n"
    "  --only LIST        run only these scenarios (comma-separated)\n"
    "  --timeline FILE    also run the 'timeline' scenario: the relay follows FILE\n"
    "                     (a 'tether chaos --scenario' file)\n"
    "  --durability MODE  off, normal or full, both sides [normal]\n"
    "  --pg URI|auto      also run the fleet scenarios on this PostgreSQL database\n"
    "                     (postgresql://...; it must hold no tether session: each\n"
    "                     scenario deletes its own at the end); auto: on a private\n"
    "                     PostgreSQL the run starts in a temporary directory and\n"
    "                     removes at the end (needs Debian's postgresql package)\n"
    "  --pg-data DIR      the data directory of that PostgreSQL server: adds\n"
    "                     fleet-pg-restart, which stops it by the PID in\n"
    "                     DIR/postmaster.pid and starts it again from\n"
    "                     DIR/postmaster.opts (same port and directory)\n"
    "  --dir D            work in D [a temporary directory]\n"
    "  --keep             keep every scenario's files (failed ones are always kept)\n"
    "  --list             list the scenarios and exit\n"
    "  --verify DIR       judge a kept scenario directory again (after --keep or a\n"
    "                     failure) and exit\n"
    "  --verbose          print each step\n"
    "  --help             show this help\n"
    "\n"
    "At the end a table gives per scenario: runs, messages, faults injected,\n"
    "kills, reconnects, lost, duplicates, reordered; and the faults by kind.\n"
    "\n"
    "Exit status: 0 every scenario verified; 1 a scenario failed (its files are\n"
    "kept and named); 2 usage error.\n";

/* ---------------------------------------------------------------- verification */

static int verify_lost_store(scen *sc)
{
    cli_session_info cs[2], ss[2];
    const char *role;
    size_t cn = 0, sn = 0;
    char err[512];
    if (cli_store_read(sc->cdb, &role, cs, 2, &cn, err, sizeof err) != TETHER_OK || cn != 1) {
        return scen_fail(sc, "cannot read the client's store: %s",
                         cn != 1 ? "not one session" : err);
    }
    if (cli_store_read(sc->sdb, &role, ss, 2, &sn, err, sizeof err) != TETHER_OK) {
        return scen_fail(sc, "cannot read the server's store: %s", err);
    }
    if (sn != 0) {
        return scen_fail(sc, "the server created %zu session(s) for a client it did not know", sn);
    }
    /* the mismatch: what the client reported */
    FILE *f = fopen(sc->crec, "r");
    char *line = NULL, first_session[64] = "";
    size_t cap = 0;
    int mism = 0, stopped = 0;
    uint64_t lost_acked = 0;
    while (f && getline(&line, &cap, f) >= 0) {
        char t;
        unsigned long long ms, a, b, c2, d, e;
        char s1[64];
        if (sscanf(line, "%c %llu", &t, &ms) != 2) {
            continue;
        }
        if (t == 'S' && !first_session[0] && sscanf(line, "S %llu %llu %63s", &ms, &a, s1) == 3) {
            snprintf(first_session, sizeof first_session, "%s", s1);
        }
        if (t == 'M' &&
            sscanf(line, "M %llu %llu %llu %llu %llu %llu", &ms, &a, &b, &c2, &d, &e) == 6) {
            mism++;
            lost_acked = b;
            if (a != 0) {
                mism = -1000;
            }
        }
        if (t == 'X' && strstr(line, "STOPPED TETHER_EMISMATCH")) {
            stopped++;
        }
        if (t == 'D' || t == 'A') {
            /* deliveries and acks after the server lost its store are checked below */
        }
    }
    free(line);
    line = NULL;
    cap = 0;
    if (f) {
        fclose(f);
    }
    if (mism <= 0) {
        return scen_fail(sc, "the client reported no mismatch with peer_knows_session = 0");
    }
    if (!stopped) {
        return scen_fail(sc, "the client did not stop with TETHER_EMISMATCH");
    }
    if (lost_acked != cs[0].peer_acked || lost_acked == 0) {
        return scen_fail(sc,
                         "the mismatch counted %llu lost acked messages; the client's store has "
                         "%llu acked",
                         (unsigned long long)lost_acked, (unsigned long long)cs[0].peer_acked);
    }
    if (cs[0].pending != cs[0].out_last - cs[0].peer_acked) {
        return scen_fail(sc, "the client's outbox lost messages: %llu pending of %llu unacked",
                         (unsigned long long)cs[0].pending,
                         (unsigned long long)(cs[0].out_last - cs[0].peer_acked));
    }
    char hex[33];
    tether_session_id_hex(&cs[0].id, hex);
    if (first_session[0] != '-' && strcmp(first_session, hex) != 0) {
        return scen_fail(sc, "the client's session changed from %s to %s", first_session, hex);
    }
    /* the server that lost its store delivered nothing and noticed the mismatch */
    f = fopen(sc->srec, "r");
    int lives = 0, after = 0, smism = 0;
    while (f && getline(&line, &cap, f) >= 0) {
        lives += line[0] == 'S';
        after += lives >= 2 && line[0] == 'D';
        smism += lives >= 2 && line[0] == 'M';
    }
    free(line);
    if (f) {
        fclose(f);
    }
    if (after || !smism) {
        return scen_fail(sc,
                         "the server without its store delivered %d message(s) and reported "
                         "%d mismatch(es); want 0 and 1",
                         after, smism);
    }
    /* what the server received before it lost the store is still in order */
    scen_dir d;
    scen_check_dir(sc->srec, sc->crec, cs[0].out_last, (size_t)sc->size, TAG_C2S, cs[0].out_last,
                   cs[0].out_last, 0, cs[0].out_last, &d);
    sc->t.dups += d.duplicates;
    sc->t.reordered += d.reordered;
    if (d.duplicates || d.reordered || d.corrupt) {
        return scen_fail(sc, "before the loss: %s", d.why);
    }
    sc->t.messages = cs[0].out_last;
    scen_say(sc, "mismatch reported: %llu acked messages lost by the server, %llu kept pending",
             (unsigned long long)lost_acked, (unsigned long long)cs[0].pending);
    return 0;
}

void scen_tally_dirs(scen *sc, const scen_dir *c2s, const scen_dir *s2c)
{
    sc->t.messages = sc->n + sc->m;
    sc->t.lost = c2s->lost + s2c->lost;
    sc->t.dups = c2s->duplicates + s2c->duplicates;
    sc->t.reordered = c2s->reordered + s2c->reordered;
    sc->t.redelivered = c2s->redelivered + s2c->redelivered;
}

static int verify(scen *sc)
{
    if (sc->fleet) {
        return scen_fleet_verify(sc, 0);
    }
    scen_counts cnt;
    scen_count(sc->crec, sc->srec, &cnt);
    sc->t.reconnects = cnt.connects > 0 ? cnt.connects - 1 : 0;
    if (sc->lost_store) {
        return verify_lost_store(sc);
    }
    cli_session_info cs[2], ss[2];
    const char *role;
    size_t cn = 0, sn = 0;
    char err[512];
    if (cli_store_read(sc->cdb, &role, cs, 2, &cn, err, sizeof err) != TETHER_OK || cn != 1) {
        return scen_fail(sc, "cannot read the client's store: %s",
                         cn != 1 ? "not one session" : err);
    }
    if (cli_store_read(sc->sdb, &role, ss, 2, &sn, err, sizeof err) != TETHER_OK || sn != 1) {
        return scen_fail(sc, "cannot read the server's store: %s",
                         sn != 1 ? "not exactly one session" : err);
    }
    if (memcmp(cs[0].id.bytes, ss[0].id.bytes, 16) != 0) {
        return scen_fail(sc, "the server's session is not the client's");
    }
    scen_dir c2s, s2c;
    scen_check_dir(sc->srec, sc->crec, sc->n, (size_t)sc->size, TAG_C2S, cs[0].out_last,
                   cs[0].peer_acked, cs[0].pending, ss[0].recv_cursor, &c2s);
    scen_check_dir(sc->crec, sc->srec, sc->m, (size_t)sc->size, TAG_S2C, ss[0].out_last,
                   ss[0].peer_acked, ss[0].pending, cs[0].recv_cursor, &s2c);
    scen_tally_dirs(sc, &c2s, &s2c);
    if (!c2s.ok) {
        return scen_fail(sc, "client -> server: %s", c2s.why);
    }
    if (!s2c.ok) {
        return scen_fail(sc, "server -> client: %s", s2c.why);
    }
    if (cnt.mismatches || cnt.server_mismatches) {
        return scen_fail(sc, "a mismatch was reported (client %llu, server %llu)",
                         (unsigned long long)cnt.mismatches,
                         (unsigned long long)cnt.server_mismatches);
    }
    return 0;
}

/* ---------------------------------------------------------------- running */

void scen_stop_all(scen *sc)
{
    scen_kill_proc(&sc->client);
    scen_kill_proc(&sc->server);
    scen_fleet_stop(sc);
    if (sc->relay.pid > 0) {
        scen_relay_stop(sc);
    }
    if (sc->relay_in >= 0) {
        close(sc->relay_in);
        sc->relay_in = -1;
    }
}

void scen_remove_files(const char *dir)
{
    static const char *const names[] = {
        "client.db",      "client.db-wal",  "client.db-shm",  "client.db-journal",
        "server.db",      "server.db-wal",  "server.db-shm",  "server.db-journal",
        "client.rec",     "server.rec",     "client.log",     "server.log",
        "relay.log",      "server.port",    "relay.port",     "server.port.tmp",
        "relay.port.tmp", "params",         "client.out",     "pg.state",
        "acks.rec",       "pg.log",         "inst0.rec",      "inst1.rec",
        "inst2.rec",      "inst3.rec",      "inst0.log",      "inst1.log",
        "inst2.log",      "inst3.log",      "inst0.port",     "inst1.port",
        "inst2.port",     "inst3.port",     "inst0.port.tmp", "inst1.port.tmp",
        "inst2.port.tmp", "inst3.port.tmp",
    };
    char p[PATH_MAX + 160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

static void set_paths(scen *sc)
{
    snprintf(sc->cdb, sizeof sc->cdb, "%s/client.db", sc->dir);
    snprintf(sc->sdb, sizeof sc->sdb, "%s/server.db", sc->dir);
    snprintf(sc->crec, sizeof sc->crec, "%s/client.rec", sc->dir);
    snprintf(sc->srec, sizeof sc->srec, "%s/server.rec", sc->dir);
    snprintf(sc->clog, sizeof sc->clog, "%s/client.log", sc->dir);
    snprintf(sc->slog, sizeof sc->slog, "%s/server.log", sc->dir);
    snprintf(sc->rlog, sizeof sc->rlog, "%s/relay.log", sc->dir);
    snprintf(sc->sport, sizeof sc->sport, "%s/server.port", sc->dir);
    snprintf(sc->rport, sizeof sc->rport, "%s/relay.port", sc->dir);
    scen_tail_init(&sc->ct, sc->crec);
    scen_tail_init(&sc->st, sc->srec);
    scen_fleet_paths(sc);
}

/* DIR/params: what --verify needs to judge the directory again later. */
static void write_params(scen *sc)
{
    char p[PATH_MAX + 96];
    snprintf(p, sizeof p, "%s/params", sc->dir);
    FILE *f = fopen(p, "w");
    if (f) {
        fprintf(f, "scenario %s\nseed %llu\nn %llu\nm %llu\nsize %llu\n", sc->def->name,
                (unsigned long long)sc->seed, (unsigned long long)sc->n, (unsigned long long)sc->m,
                (unsigned long long)sc->size);
        fclose(f);
    }
}

void scen_init(scen *sc, runner *R, const scen_def *def, uint64_t seed, const char *dir)
{
    sc->R = R;
    sc->def = def;
    sc->seed = seed;
    sc->rng = seed ^ (uint64_t)(uintptr_t)def->name[0] * 0x9e3779b97f4a7c15ull;
    for (const char *p = def->name; *p; p++) {
        sc->rng = sc->rng * 31 + (uint64_t)*p;
    }
    sc->relay_in = -1;
    sc->client.name = "client";
    sc->server.name = "server";
    sc->relay.name = "relay";
    snprintf(sc->dir, sizeof sc->dir, "%s", dir);
    set_paths(sc);
}

static int run_one(runner *R, const scen_def *def, uint64_t seed, int index, tally *out)
{
    scen *sc = calloc(1, sizeof *sc);
    if (!sc) {
        return -1;
    }
    char dir[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/%03d-%s", R->base, index, def->name);
    scen_init(sc, R, def, seed, dir);
    scen_scale(sc);
    uint64_t t0 = cli_now_ms();
    sc->deadline = t0 + (R->soak ? 300000 : 90000);
    int rc;
    if (mkdir(sc->dir, 0700) != 0) {
        rc = scen_fail(sc, "cannot create %s: %s", sc->dir, strerror(errno));
    } else {
        write_params(sc);
        rc = def->run(sc);
    }
    scen_stop_all(sc);
    if (rc == 0) {
        rc = verify(sc);
    }
    if (sc->fleet) {
        scen_fleet_cleanup(sc); /* the next fleet scenario needs the database empty */
        if (rc == 0) {
            scen_say(sc, "%llu instance(s) SIGKILLed, %llu PostgreSQL restart(s), %llu fenced",
                     (unsigned long long)sc->kills, (unsigned long long)sc->pg_restarts,
                     (unsigned long long)sc->fenced);
        }
    }
    sc->t.runs = 1;
    sc->t.failed = rc != 0;
    sc->t.kills = sc->kills;
    sc->t.killpoints = sc->killpoints;
    sc->t.seconds = (double)(cli_now_ms() - t0) / 1000.0;
    *out = sc->t;
    printf("%-16s seed %-20llu %s  %6.1f s  msgs %6llu  faults %4llu  kills %3llu+%-2llu  "
           "reconnects %4llu  lost %llu dup %llu reord %llu\n",
           def->name, (unsigned long long)seed, rc == 0 ? "PASS" : "FAIL", sc->t.seconds,
           (unsigned long long)sc->t.messages, (unsigned long long)sc->t.nfaults,
           (unsigned long long)sc->t.kills, (unsigned long long)sc->t.killpoints,
           (unsigned long long)sc->t.reconnects, (unsigned long long)sc->t.lost,
           (unsigned long long)sc->t.dups, (unsigned long long)sc->t.reordered);
    if (rc != 0) {
        printf("  FAILED: %s\n  files kept in %s\n  repeat: tether scenario --only %s --seed "
               "%llu%s%s\n",
               sc->error, sc->dir, def->name, (unsigned long long)seed,
               R->soak ? " --soak --duration 1" : "", R->timeline ? " --timeline FILE" : "");
    } else if (!R->keep) {
        scen_remove_files(sc->dir);
        rmdir(sc->dir);
    }
    fflush(stdout);
    free(sc);
    return rc;
}

static void add_tally(tally *to, const tally *t)
{
    to->runs += t->runs;
    to->failed += t->failed;
    to->messages += t->messages;
    for (int k = 0; k < TETHER__CHAOS_KINDS; k++) {
        to->faults[k] += t->faults[k];
    }
    to->nfaults += t->nfaults;
    to->kills += t->kills;
    to->killpoints += t->killpoints;
    to->reconnects += t->reconnects;
    to->lost += t->lost;
    to->dups += t->dups;
    to->reordered += t->reordered;
    to->redelivered += t->redelivered;
    to->seconds += t->seconds;
}

static void print_table(const tally *per, const tally *total, uint64_t master_seed)
{
    printf("\nsummary (seed %llu)\n", (unsigned long long)master_seed);
    printf("%-16s %5s %5s %9s %7s %6s %6s %10s %5s %5s %5s %8s\n", "scenario", "runs", "fail",
           "messages", "faults", "kills", "kpts", "reconnects", "lost", "dups", "reord", "redeliv");
    for (size_t i = 0; i <= scen_ndefs; i++) {
        const tally *t = i < scen_ndefs ? &per[i] : total;
        if (i < scen_ndefs && t->runs == 0) {
            continue;
        }
        printf("%-16s %5llu %5llu %9llu %7llu %6llu %6llu %10llu %5llu %5llu %5llu %8llu\n",
               i < scen_ndefs ? scen_defs[i].name : "total", (unsigned long long)t->runs,
               (unsigned long long)t->failed, (unsigned long long)t->messages,
               (unsigned long long)t->nfaults, (unsigned long long)t->kills,
               (unsigned long long)t->killpoints, (unsigned long long)t->reconnects,
               (unsigned long long)t->lost, (unsigned long long)t->dups,
               (unsigned long long)t->reordered, (unsigned long long)t->redelivered);
    }
    printf("\nfaults injected by kind:");
    for (int k = TETHER__CHAOS_CUT; k < TETHER__CHAOS_CLEAR; k++) {
        printf(" %s %llu%s", tether__chaos_kind_name(k), (unsigned long long)total->faults[k],
               k + 1 < TETHER__CHAOS_CLEAR ? "," : "\n");
    }
    printf("kills: %llu SIGKILLs from outside, %llu at kill points inside the library\n",
           (unsigned long long)total->kills, (unsigned long long)total->killpoints);
    printf("lost %llu, duplicated %llu, reordered %llu (redelivered with the flag, in the "
           "documented window: %llu)\n",
           (unsigned long long)total->lost, (unsigned long long)total->dups,
           (unsigned long long)total->reordered, (unsigned long long)total->redelivered);
}

/* --verify DIR: the verdict on a kept scenario directory, again. */
static int verify_again(runner *R, const char *dir)
{
    char p[PATH_MAX + 16], name[64] = "";
    unsigned long long n = 0, m = 0, size = 0, seed = 0;
    snprintf(p, sizeof p, "%s/params", dir);
    FILE *f = fopen(p, "r");
    if (!f || fscanf(f, "scenario %63s seed %llu n %llu m %llu size %llu", name, &seed, &n, &m,
                     &size) != 5) {
        if (f) {
            fclose(f);
        }
        return cli_fail("scenario", "%s is not a scenario directory (no readable params)", dir);
    }
    fclose(f);
    size_t i = 0;
    while (i < scen_ndefs && strcmp(scen_defs[i].name, name) != 0) {
        i++;
    }
    scen *sc = calloc(1, sizeof *sc);
    if (i == scen_ndefs || !sc) {
        free(sc);
        return cli_fail("scenario", "%s: unknown scenario '%s'", dir, name);
    }
    sc->R = R;
    sc->def = &scen_defs[i];
    sc->seed = seed;
    sc->n = n;
    sc->m = m;
    sc->size = size;
    sc->lost_store = strcmp(name, "lost-store") == 0;
    sc->relay_in = -1;
    snprintf(sc->dir, sizeof sc->dir, "%s", dir);
    set_paths(sc);
    sc->fleet = scen_is_fleet(name);
    int rc = sc->fleet ? scen_fleet_verify(sc, 1) : verify(sc);
    printf("%s %s: %s%s\n", name, dir, rc == 0 ? "PASS" : "FAIL: ", rc == 0 ? "" : sc->error);
    printf("  lost %llu, duplicates %llu, reordered %llu, redelivered with the flag %llu\n",
           (unsigned long long)sc->t.lost, (unsigned long long)sc->t.dups,
           (unsigned long long)sc->t.reordered, (unsigned long long)sc->t.redelivered);
    free(sc);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}

static int selected(const runner *R, const char *name)
{
    if (strcmp(name, "timeline") == 0 && !R->timeline) {
        return 0;
    }
    if (scen_is_fleet(name) &&
        (!R->pg_uri || (strcmp(name, "fleet-pg-restart") == 0 && !R->pg_data))) {
        return 0;
    }
    if (!R->only) {
        return 1;
    }
    size_t n = strlen(name);
    for (const char *p = R->only; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == R->only || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) {
            return 1;
        }
    }
    return 0;
}

/* --pg auto: the run starts its own PostgreSQL. */
static int pg_auto(const runner *R)
{
    return R->pg_uri && strcmp(R->pg_uri, "auto") == 0;
}

int cli_scenario(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "peer") == 0) {
        return scen_peer_main(argc - 1, argv + 1);
    }
    static const struct option opts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"soak", no_argument, NULL, 'k'},
        {"duration", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 'S'},
        {"only", required_argument, NULL, 'o'},
        {"timeline", required_argument, NULL, 'T'},
        {"durability", required_argument, NULL, 'D'},
        {"dir", required_argument, NULL, 'd'},
        {"keep", no_argument, NULL, 'K'},
        {"list", no_argument, NULL, 'l'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"verify", required_argument, NULL, 'V'},
        {"pg", required_argument, NULL, 'G'},
        {"pg-data", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    runner R;
    memset(&R, 0, sizeof R);
    int seeded = 0, list = 0;
    const char *dir = NULL, *verify_dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            R.soak = 0;
            break;
        case 'k':
            R.soak = 1;
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, 10000000, &R.duration_s) != 0) {
                return cli_usage_error("scenario", "--duration wants seconds, not '%s'", optarg);
            }
            R.soak = 1;
            break;
        case 'S':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, &R.seed) != 0) {
                return cli_usage_error("scenario", "--seed wants a number, not '%s'", optarg);
            }
            seeded = 1;
            break;
        case 'o':
            R.only = optarg;
            break;
        case 'T':
            R.timeline = optarg;
            break;
        case 'D':
            if (cli_parse_durability(optarg, &R.durability) != 0) {
                return cli_usage_error("scenario", "--durability must be off, normal or full");
            }
            break;
        case 'd':
            dir = optarg;
            break;
        case 'K':
            R.keep = 1;
            break;
        case 'l':
            list = 1;
            break;
        case 'v':
            R.verbose = 1;
            break;
        case 'V':
            verify_dir = optarg;
            break;
        case 'G':
            if (strcmp(optarg, "auto") != 0 && strncmp(optarg, "postgresql://", 13) != 0 &&
                strncmp(optarg, "postgres://", 11) != 0) {
                return cli_usage_error("scenario",
                                       "--pg wants a postgresql:// URI or auto, not '%s'",
                                       optarg);
            }
            R.pg_uri = optarg;
            break;
        case 'g':
            R.pg_data = optarg;
            break;
        case 'h':
            fputs(scenario_help, stdout);
            return CLI_OK;
        default:
            fprintf(stderr, "Try 'tether scenario --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        return cli_usage_error("scenario", "unexpected argument '%s'", argv[optind]);
    }
    if (verify_dir) {
        return verify_again(&R, verify_dir);
    }
    if (list) {
        for (size_t i = 0; i < scen_ndefs; i++) {
            printf("%-16s %s\n", scen_defs[i].name, scen_defs[i].what);
        }
        return CLI_OK;
    }
    if (R.only) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", R.only);
        for (char *s = NULL, *t = strtok_r(buf, ",", &s); t; t = strtok_r(NULL, ",", &s)) {
            size_t i = 0;
            while (i < scen_ndefs && strcmp(scen_defs[i].name, t) != 0) {
                i++;
            }
            if (i == scen_ndefs) {
                return cli_usage_error("scenario", "no scenario '%s' (see --list)", t);
            }
            if (scen_is_fleet(t) && !R.pg_uri) {
                return cli_usage_error("scenario", "%s needs --pg URI (a PostgreSQL database)", t);
            }
            if (strcmp(t, "fleet-pg-restart") == 0 && !R.pg_data && !pg_auto(&R)) {
                return cli_usage_error("scenario",
                                       "fleet-pg-restart needs --pg-data DIR (the data directory "
                                       "of the --pg server, to stop and start it)");
            }
        }
    }
    if (R.pg_data && !R.pg_uri) {
        return cli_usage_error("scenario", "--pg-data needs --pg URI");
    }
    if (R.pg_data && pg_auto(&R)) {
        return cli_usage_error("scenario", "--pg-data goes with --pg URI: --pg auto brings "
                                           "its own server");
    }
    if (R.pg_data) {
        char pm[PATH_MAX + 32];
        snprintf(pm, sizeof pm, "%s/postmaster.opts", R.pg_data);
        if (access(pm, R_OK) != 0) {
            return cli_usage_error("scenario",
                                   "--pg-data %s: no readable postmaster.opts: not the data "
                                   "directory of a PostgreSQL server that was started",
                                   R.pg_data);
        }
    }
    if (R.timeline && access(R.timeline, R_OK) != 0) {
        return cli_usage_error("scenario", "cannot read --timeline %s", R.timeline);
    }
    if (R.timeline && R.timeline[0] != '/') {
        /* the relay runs in the same directory, but keep it absolute anyway */
        static char abs_tl[PATH_MAX];
        if (realpath(R.timeline, abs_tl)) {
            R.timeline = abs_tl;
        }
    }
    if (R.soak && !R.duration_s) {
        R.duration_s = 600;
    }
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        R.seed = ((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec) % 1000000000ull;
    }
    if (dir) {
        snprintf(R.base, sizeof R.base, "%s", dir);
        if (mkdir(R.base, 0700) == 0) {
            R.made_base = 1;
        } else if (errno != EEXIST) {
            return cli_fail("scenario", "cannot create %s: %s", R.base, strerror(errno));
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(R.base, sizeof R.base, "%s/tether-scenario-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(R.base)) {
            return cli_fail("scenario", "cannot create a directory: %s", strerror(errno));
        }
        R.made_base = 1;
    }
    static tether_pgs pgs; /* --pg auto: the private server */
    if (pg_auto(&R)) {
        char err[600];
        static char uri[160];
        if (tether_pgs_start(&pgs, 1, err, sizeof err) != 0) {
            tether_pgs_show_why(&pgs, "tether scenario");
            tether_pgs_remove(&pgs);
            return cli_fail("scenario", "--pg auto: %s", err);
        }
        R.pg_uri = tether_pgs_uri(&pgs, "postgres", uri, sizeof uri);
        R.pg_data = pgs.data;
        R.pgs = &pgs;
        printf("tether scenario: --pg auto: PostgreSQL in %s at %s\n", pgs.dir, R.pg_uri);
    }
    cli_signals_install();
    printf("tether scenario: %s mode, seed %llu, files in %s\n", R.soak ? "soak" : "quick",
           (unsigned long long)R.seed, R.base);
    fflush(stdout);

    tally per[scen_ndefs], total;
    memset(per, 0, sizeof per);
    memset(&total, 0, sizeof total);
    uint64_t start = cli_now_ms(), round = 0;
    int index = 0, failed = 0;
    for (;;) {
        for (size_t i = 0; i < scen_ndefs && !cli_stop_requested(); i++) {
            if (!selected(&R, scen_defs[i].name)) {
                continue;
            }
            if (R.soak && round > 0 && cli_now_ms() - start >= R.duration_s * 1000) {
                break;
            }
            uint64_t seed = R.seed;
            if (round > 0) {
                uint64_t s = R.seed + round;
                seed = tether__rng_next(&s) % 1000000000ull;
            }
            tally t;
            memset(&t, 0, sizeof t);
            if (run_one(&R, &scen_defs[i], seed, index++, &t) != 0) {
                failed++;
            }
            add_tally(&per[i], &t);
            add_tally(&total, &t);
        }
        round++;
        if (!R.soak || cli_stop_requested() || cli_now_ms() - start >= R.duration_s * 1000) {
            break;
        }
    }
    print_table(per, &total, R.seed);
    printf("\n%s: %llu of %llu scenario runs passed in %.1f s\n", failed ? "FAILED" : "PASSED",
           (unsigned long long)(total.runs - total.failed), (unsigned long long)total.runs,
           (double)(cli_now_ms() - start) / 1000.0);
    if (!failed && !R.keep && R.made_base) {
        rmdir(R.base);
    }
    if (pgs.made) {
        tether_pgs_remove(&pgs); /* fleet-pg-restart restarts it as our child */
    }
    return failed || cli_stop_requested() ? CLI_FAIL : CLI_OK;
}

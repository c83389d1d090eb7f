/*
 * The fleet scenarios of `tether scenario` (src/tools/scenario/scenario_fleet.c)
 * against a private PostgreSQL (tests/support/pgtest.h): fleet-kill,
 * fleet-fence and fleet-pg-restart run once each, in quick mode, and must
 * pass; the runner restarts the PostgreSQL server itself (by the PID in its
 * data directory), so the server running at the end is adopted and stopped
 * by its PID. Then the verdict of a kept run is checked to fail once an
 * instance's record shows a second delivery of a message without the
 * redelivered flag, or loses one. Last, `--pg auto` (the runner's own
 * server): killed with -9 during fleet-pg-restart, the runner leaves no
 * PostgreSQL behind.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pgserver/pgserver.h"
#include "pgtest.h"
#include "procs.h"

#define RUN_MS 120000 /* the three scenarios take about 20 s; generous on a loaded machine */
#define ALL_MS 200000 /* every run together: the suite ends (failing) within its ctest
                         TIMEOUT of 240 s, having stopped what it started */

static const char *tether;
static char keep[560]; /* the kept run's directory */
static uint64_t all_end; /* when every run must have ended (ALL_MS from the start) */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs tether with args (NULL-terminated after the fixed ones), output into
 * out; its exit status, -1 when it did not end within ms or what is left of
 * ALL_MS (it is then killed by its PID). */
static int run(const char *out, unsigned ms, char *const argv[])
{
    uint64_t now = now_ms();
    uint64_t left = all_end > now ? all_end - now : 0;
    ms = left < ms ? (unsigned)left : ms;
    CHECK(ms > 0);
    if (ms == 0) {
        return -1;
    }
    pid_t pid = procs_spawn(argv, out);
    CHECK(pid > 0);
    return pid > 0 ? procs_reap(pid, ms) : -1;
}

static void show(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        printf("  | %s", line);
    }
    if (f) {
        fclose(f);
    }
}

TEST(fleet_scenarios_pass)
{
    char db[64], uri[256], out[512], base[512];
    CHECK(pgt_createdb("scenfleet", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    tt_path(out, sizeof out, "fleet.out");
    tt_path(base, sizeof base, "runs");
    char *argv[] = {
        (char *)tether, "scenario", "--only",    "fleet-kill,fleet-fence,fleet-pg-restart",
        "--pg",         uri,        "--pg-data", (char *)pgt_data_dir(),
        "--seed",       "20240601", "--keep",    "--dir",
        base,           NULL};
    int st = run(out, RUN_MS, argv);
    /* the server that runs now is the one the runner started again */
    CHECK(pgt_adopt() == 0);
    CHECK_EQ_INT(st, 0);
    CHECK_EQ_INT(procs_count_lines(out, " PASS "), 3);
    CHECK_EQ_INT(procs_count_lines(out, "PASSED: 3 of 3 scenario runs passed"), 1);
    if (st != 0) {
        show(out);
    }
    if (st == 0) { /* the verdict checks want a run that passed */
        snprintf(keep, sizeof keep, "%s/000-fleet-kill", base);
    }
    /* each scenario deleted its session: the database is empty again */
    long long n = -1;
    CHECK(pgt_query_int(db, "SELECT count(*) FROM tether_sessions", &n) == 0);
    CHECK_EQ_INT(n, 0);

    /* a database holding someone else's session is refused, and left alone */
    CHECK(pgt_exec(db,
                   "INSERT INTO tether_sessions(role, id, token, out_last, peer_acked, "
                   "recv_cursor, established, pending_count, pending_bytes) VALUES (2, "
                   "decode(repeat('5a', 16), 'hex'), decode(repeat('a5', 32), 'hex'), 0, 0, 0, "
                   "true, 0, 0)",
                   0) == 0);
    char refused[512];
    tt_path(refused, sizeof refused, "refused"); /* a failed run keeps its files: here */
    char *again[] = {(char *)tether, "scenario", "--only", "fleet-kill", "--pg", uri,
                     "--seed",       "1",        "--dir",  refused,      NULL};
    CHECK_EQ_INT(run(out, 30000, again), 1);
    CHECK_EQ_INT(procs_count_lines(out, "the --pg database already holds 1 session(s)"), 1);
    CHECK(pgt_query_int(db, "SELECT count(*) FROM tether_sessions", &n) == 0);
    CHECK_EQ_INT(n, 1);
}

/* Appends text to path. */
static void append(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* The verdict on keep, again: 0 PASS, 1 FAIL; the output in out. */
static int verify(const char *out)
{
    char *argv[] = {(char *)tether, "scenario", "--verify", keep, NULL};
    return run(out, 30000, argv);
}

TEST(fleet_verdict_catches_a_repeat_and_a_loss)
{
    char out[512], rec[800], save[800], cmd[2048];
    tt_path(out, sizeof out, "verify.out");
    CHECK_EQ_INT(verify(out), 0);
    CHECK_EQ_INT(procs_count_lines(out, "fleet-kill"), 1);
    CHECK_EQ_INT(procs_count_lines(out, ": PASS"), 1);
    /* the last serving instance opens the session once more and delivers
     * seq 1 again, without the flag: a duplicate */
    snprintf(rec, sizeof rec, "%s/inst3.rec", keep);
    snprintf(save, sizeof save, "%s/inst3.rec.orig", keep);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", rec, save);
    CHECK(system(cmd) == 0);
    append(rec, "C 999999999999 1\nD 999999999999 1 0 1\n");
    CHECK_EQ_INT(verify(out), 1);
    CHECK_EQ_INT(procs_count_lines(out, "seq 1 delivered twice without the redelivered flag"), 1);
    /* with the flag it is the documented redelivery */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", save, rec);
    CHECK(system(cmd) == 0);
    append(rec, "C 999999999999 1\nD 999999999999 1 1 1\n");
    CHECK_EQ_INT(verify(out), 0);
    /* an instance's delivery removed: lost, or a gap */
    snprintf(cmd, sizeof cmd, "awk '/^D /{n++; if (n == 50) next} {print}' '%s' > '%s'", save, rec);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(verify(out), 1);
    CHECK_EQ_INT(procs_count_lines(out, ": FAIL: client -> fleet"), 1);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", save, rec);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(verify(out), 0);
    /* an ack told twice (here by the sender instance, which never served) */
    snprintf(rec, sizeof rec, "%s/inst0.rec", keep);
    snprintf(save, sizeof save, "%s/inst0.rec.orig", keep);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", rec, save);
    CHECK(system(cmd) == 0);
    append(rec, "A 999999999999 5 6\n");
    CHECK_EQ_INT(verify(out), 1);
    CHECK_EQ_INT(procs_count_lines(out, ": FAIL: fleet -> client: on_acked(5, 6) after acks"), 1);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", save, rec);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(verify(out), 0);
}

/* With --pg auto, fleet-pg-restart starts the private server again as the
 * runner's own child (parent death signal): killing the runner outright
 * leaves no PostgreSQL behind. */
TEST(pg_auto_restart_dies_with_the_runner)
{
    char out[512], base[512], line[512];
    tt_path(out, sizeof out, "auto.out");
    tt_path(base, sizeof base, "auto");
    char *argv[] = {(char *)tether, "scenario", "--only", "fleet-pg-restart", "--pg", "auto",
                    "--verbose",    "--seed",   "7",      "--dir",            base, NULL};
    pid_t runner = procs_spawn(argv, out);
    CHECK(runner > 0);
    if (runner <= 0) {
        return;
    }
    int pg = 0;
    uint64_t until = now_ms() + 60000;
    while (!pg && now_ms() < until && now_ms() < all_end) {
        FILE *f = fopen(out, "r");
        while (f && fgets(line, sizeof line, f)) {
            const char *at = strstr(line, "PostgreSQL started again (pid ");
            pg = at ? atoi(at + strlen("PostgreSQL started again (pid ")) : pg;
        }
        if (f) {
            fclose(f);
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    CHECK(pg > 0);
    if (pg > 0) {
        CHECK_EQ_INT(tether_pgs_parent(pg), runner);
    }
    kill(runner, SIGKILL);
    CHECK_EQ_INT(procs_reap(runner, 10000), 128 + SIGKILL);
    for (int i = 0; pg > 0 && i < 500 && tether_pgs_parent(pg) != 0; i++) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (pg > 0) {
        CHECK_EQ_INT(tether_pgs_parent(pg), 0); /* gone (SIGQUIT from the kernel) */
        if (tether_pgs_parent(pg) != 0) {
            kill(pg, SIGKILL); /* not left running past the test, at least */
        }
    }
    if (!pg) {
        show(out);
    }
    /* its directory stays after -9: removed here */
    FILE *f = fopen(out, "r");
    while (f && fgets(line, sizeof line, f)) {
        char dir[256], cmd[400];
        if (sscanf(line, "tether scenario: --pg auto: PostgreSQL in %255s at", dir) == 1 &&
            strncmp(dir, "/tmp/tether-pg-", 15) == 0 && !strchr(dir, '\'')) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
            CHECK(system(cmd) == 0);
        }
    }
    if (f) {
        fclose(f);
    }
}

int main(void)
{
    tether = getenv("TETHER_CLI");
    if (!tether) {
        fprintf(stderr, "TETHER_CLI is not set (the tether binary to test)\n");
        return 1;
    }
    all_end = now_ms() + ALL_MS;
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(fleet_scenarios_pass);
    if (keep[0]) {
        RUN(fleet_verdict_catches_a_repeat_and_a_loss);
    }
    RUN(pg_auto_restart_dies_with_the_runner);
    return tt_finish();
}

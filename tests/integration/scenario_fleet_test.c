/*
 * The fleet scenarios of `tether scenario` (src/tools/scenario/scenario_fleet.c)
 * against a private PostgreSQL (tests/support/pgtest.h): fleet-kill,
 * fleet-fence and fleet-pg-restart run once each, in quick mode, and must
 * pass; the runner restarts the PostgreSQL server itself (by the PID in its
 * data directory), so the server running at the end is adopted and stopped
 * by its PID. Then the verdict of a kept run is checked to fail once an
 * instance's record shows a second delivery of a message without the
 * redelivered flag, or loses one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pgtest.h"
#include "procs.h"

#define RUN_MS 150000 /* the three scenarios take about 20 s; generous on a loaded machine */

static const char *tether;
static char keep[560]; /* the kept run's directory */

/* Runs tether with args (NULL-terminated after the fixed ones), output into
 * out; its exit status, -1 when it did not end within ms. */
static int run(const char *out, unsigned ms, char *const argv[])
{
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
    snprintf(keep, sizeof keep, "%s/000-fleet-kill", base);
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

int main(void)
{
    tether = getenv("TETHER_CLI");
    if (!tether) {
        fprintf(stderr, "TETHER_CLI is not set (the tether binary to test)\n");
        return 1;
    }
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(fleet_scenarios_pass);
    if (keep[0]) {
        RUN(fleet_verdict_catches_a_repeat_and_a_loss);
    }
    return tt_finish();
}

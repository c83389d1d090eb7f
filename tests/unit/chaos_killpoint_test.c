/*
 * Kill points (src/common/killpoint.h): TETHER_KILLPOINT=name[:n] kills the
 * process at the nth hit of a named point. In its own executable because the
 * variable is read once per process, before anything reaches a kill point.
 */
#include "harness.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/killpoint.h"

/* ---------------------------------------------------------------- kill points */

/* Runs `hits` kill point hits in a child with TETHER_KILLPOINT=env (NULL: unset);
 * returns how many hits the child survived, or -1 if it survived them all. */
static int killpoint_child(const char *env, const char *name, int hits)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        return -2;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        if (env) {
            setenv("TETHER_KILLPOINT", env, 1);
        } else {
            unsetenv("TETHER_KILLPOINT");
        }
        for (int i = 0; i < hits; i++) {
            TETHER__KILLPOINT("test.other");
            TETHER__KILLPOINT(name);
            (void)!write(pfd[1], "x", 1);
        }
        _exit(0);
    }
    close(pfd[1]);
    int survived = 0, st = 0;
    char ch;
    while (read(pfd[0], &ch, 1) == 1) {
        survived++;
    }
    close(pfd[0]);
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
        return survived;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? -1 : -3;
}

/* Must run before anything in this process reaches a kill point: the
 * variable is read once per process, and the children are forks. */
TEST(killpoint_kills_at_the_named_hit)
{
    CHECK_EQ_INT(atomic_load(&tether__killpoint_state), 0);
    CHECK_EQ_INT(killpoint_child("test.point", "test.point", 5), 0);    /* the first hit */
    CHECK_EQ_INT(killpoint_child("test.point:3", "test.point", 5), 2);  /* the third */
    CHECK_EQ_INT(killpoint_child("test.point:9", "test.point", 5), -1); /* never reached */
    CHECK_EQ_INT(killpoint_child(NULL, "test.point", 5), -1);           /* unset */
    CHECK_EQ_INT(killpoint_child("test.point:0", "test.point", 5), -1); /* malformed: ignored */
    CHECK_EQ_INT(killpoint_child("test.poin", "test.point", 5), -1);    /* names match whole */
    /* every name the library uses is listed, client and server alike */
    int n = 0;
    for (const char *const *k = tether__killpoint_names(); *k; k++) {
        CHECK(strncmp(*k, "client.", 7) == 0 || strncmp(*k, "server.", 7) == 0);
        n++;
    }
    CHECK_EQ_INT(n, 13);
}

int main(void)
{
    RUN(killpoint_kills_at_the_named_hit);
    return tt_finish();
}

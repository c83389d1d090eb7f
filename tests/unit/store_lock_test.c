/*
 * The SQLite store's writer lock (src/store/store_sqlite_lock.c): one writing
 * handle per database file, in this process or another; readers still open it.
 */
#include "store_fixture.h"

#include <signal.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_w(const char *path, tether__store_role role, unsigned flags, tether__store **st,
                  char *err, size_t len)
{
    return tether__store_sqlite_open_flags(path, role, TETHER_DURABILITY_NORMAL, flags, st, err,
                                           len);
}

/* Opens path for writing in a child process: 0 when the open was refused
 * with TETHER_ESTORE naming pid, 1 when it succeeded, 2 otherwise. */
static int child_open(const char *path, tether__store_role role, unsigned flags, long pid)
{
    pid_t c = fork();
    if (c == 0) {
        tether__store *st = NULL;
        char err[512], want[64];
        int rc = open_w(path, role, flags, &st, err, sizeof err);
        snprintf(want, sizeof want, "another process (pid %ld)", pid);
        if (rc == TETHER_OK) {
            st->ops->close(st);
            _exit(1);
        }
        _exit(rc == TETHER_ESTORE && strstr(err, want) && strstr(err, path) ? 0 : 2);
    }
    CHECK(c > 0);
    int status = 0;
    CHECK_EQ_INT((int)waitpid(c, &status, 0), (int)c);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

/* A second writing open of one file fails at once, in this process or another,
 * whichever mode either uses; a reader opens it meanwhile; the lock goes with
 * the handle. */
static void one_writer(const char *name, tether__store_role role, unsigned first_flags,
                       unsigned second_flags)
{
    char path[512], err[512];
    tt_path(path, sizeof path, name);
    tether__store *a = NULL, *b = (tether__store *)1;
    CHECK_OK(open_w(path, role, first_flags, &a, err, sizeof err));
    tether__session_rec r = mkrec(3);
    CHECK_OK(a->ops->session_put(a, &r));
    CHECK_EQ_U64(app(a, r.id, "one"), 1);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_ERR(open_w(path, role, second_flags, &b, err, sizeof err), TETHER_ESTORE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(b == NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK(strstr(err, "another handle in this process has this store open for writing") != NULL);
    /* at once: not after SQLite's busy timeout */
    CHECK(t1.tv_sec - t0.tv_sec < 2);
    CHECK_EQ_INT(child_open(path, role, second_flags, (long)getpid()), 0);

    /* a reader still opens it and sees what the writer stored (not beside
     * locking_mode=EXCLUSIVE, store_shared = 0, which keeps readers out too) */
    if (!(first_flags & TETHER__SQLITE_EXCLUSIVE)) {
        tether__store *ro = NULL;
        CHECK_OK(tether__store_sqlite_open_readonly(path, &ro, err, sizeof err));
        CHECK_EQ_U64(get(ro, r.id).out_last, 1);
        ro->ops->close(ro);
    }
    /* the first writer was not disturbed */
    CHECK_EQ_U64(app(a, r.id, "two"), 2);
    a->ops->close(a);

    /* closed: the next writer opens it, here and in a child */
    CHECK_EQ_INT(child_open(path, role, second_flags, 0), 1);
    CHECK_OK(open_w(path, role, second_flags, &b, err, sizeof err));
    CHECK_EQ_U64(app(b, r.id, "three"), 3);
    b->ops->close(b);
}

TEST(lock_server)
{
    one_writer("lock-s.db", TETHER__ROLE_SERVER, 0, 0);
}

TEST(lock_client_shared)
{
    one_writer("lock-c1.db", TETHER__ROLE_CLIENT, 0, 0);
}

TEST(lock_client_exclusive)
{
    one_writer("lock-c2.db", TETHER__ROLE_CLIENT, TETHER__SQLITE_EXCLUSIVE, 0);
}

TEST(lock_client_exclusive_both)
{
    one_writer("lock-c3.db", TETHER__ROLE_CLIENT, 0, TETHER__SQLITE_EXCLUSIVE);
}

/* A read-only open takes no lock, and a failed writing open leaves none. */
TEST(lock_readers_and_failures)
{
    char path[512], err[512];
    tt_path(path, sizeof path, "lock-r.db");
    tether__store *a = NULL, *ro = NULL;
    CHECK_OK(open_w(path, TETHER__ROLE_SERVER, 0, &a, err, sizeof err));
    a->ops->close(a);
    CHECK_OK(tether__store_sqlite_open_readonly(path, &ro, err, sizeof err));
    CHECK_OK(open_w(path, TETHER__ROLE_SERVER, 0, &a, err, sizeof err));
    a->ops->close(a);
    ro->ops->close(ro);
    /* the wrong role fails after the lock was taken; it must not stay held */
    CHECK_ERR(open_w(path, TETHER__ROLE_CLIENT, 0, &a, err, sizeof err), TETHER_ESTORE_SCHEMA);
    CHECK_EQ_INT(child_open(path, TETHER__ROLE_SERVER, 0, 0), 1);
    CHECK_OK(open_w(path, TETHER__ROLE_SERVER, 0, &a, err, sizeof err));
    a->ops->close(a);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(lock_server);
    RUN(lock_client_shared);
    RUN(lock_client_exclusive);
    RUN(lock_client_exclusive_both);
    RUN(lock_readers_and_failures);
    return tt_finish();
}

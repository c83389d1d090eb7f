/*
 * The SQLite store's writer lock: one writing handle per database file.
 *
 * Two writers on one file each keep their own idea of a session's out_last
 * and pending totals in memory (store_sqlite.c, "out_last"), so they number
 * messages twice and drive the stored totals below zero. A writing open
 * therefore takes an exclusive flock(2) on "<db>-lock" beside the database
 * and keeps it until close; a second writing open, in another process or in
 * this one, fails at once. Read-only opens (tether status) take no lock.
 *
 * Why a file of its own: SQLite locks the database with fcntl(2) locks, which
 * belong to the process and are all dropped when the process closes any
 * descriptor of that file. A descriptor of ours on the database itself would
 * have to stay open until every SQLite connection of the process to the file
 * is gone. flock(2) locks belong to the open file description, so a second
 * open in the same process is refused too (fcntl locks would not see it).
 * The holder's pid is written into the file for the message of the refused
 * open; it is a hint only, the lock is what decides.
 */
#include "store_sqlite_int.h"

#include <limits.h>
#include <sys/file.h>

/* The pid recorded in the lock file, or 0. */
static long holder_pid(int fd)
{
    char buf[24];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    char *end = NULL;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

int tether__sq_lock(sqstore *s, const char *op)
{
    if (strcmp(s->path, ":memory:") == 0) {
        return TETHER_OK; /* nothing another handle could share */
    }
    char path[PATH_MAX + 8];
    if ((size_t)snprintf(path, sizeof path, "%s-lock", s->path) >= sizeof path) {
        return tether__sq_fail(s, TETHER_ESTORE, "%s: the path is too long for its lock file", op);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return tether__sq_fail(s,
                               e == EROFS || e == EACCES || e == EPERM ? TETHER_ESTORE_READONLY
                                                                       : TETHER_ESTORE,
                               "%s: cannot open the lock file %s: %s", op, path, strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK) {
            return tether__sq_fail(s, TETHER_ESTORE, "%s: cannot lock %s: %s", op, path,
                                   strerror(e));
        }
        char who[64] = "another process";
        if (pid == (long)getpid()) {
            snprintf(who, sizeof who, "another handle in this process");
        } else if (pid > 0) {
            snprintf(who, sizeof who, "another process (pid %ld)", pid);
        }
        return tether__sq_fail(s, TETHER_ESTORE,
                               "%s: in use: %s has this store open for writing (one writer per "
                               "file; readers such as tether status may still open it)",
                               op, who);
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* The pid is a hint for the message above; failing to write it changes nothing. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) {
        (void)ftruncate(fd, 0);
    }
    s->lock_fd = fd;
    return TETHER_OK;
}

void tether__sq_unlock(sqstore *s)
{
    if (s->lock_fd >= 0) {
        close(s->lock_fd); /* ends the flock; the file stays, empty or not */
        s->lock_fd = -1;
    }
}

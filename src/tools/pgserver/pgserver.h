/*
 * A private PostgreSQL server in a temporary directory, for the tests of the
 * PostgreSQL store (tests/support/pgtest.c) and for `tether bench --pg auto`.
 *
 * tether_pgs_start() runs Debian's initdb in a fresh directory under /tmp and
 * starts `postgres` on a loopback port the system picked, as the user
 * postgres when the caller is root (PostgreSQL refuses to run as root), and
 * waits (bounded) until the server says it is ready. The server gets SIGQUIT
 * from the kernel if the process that started it dies (parent death signal),
 * so it never outlives its user; tether_pgs_stop() stops it by its PID, and
 * tether_pgs_remove() deletes the directory.
 *
 * The binaries are looked for in $TETHER_PG_BINDIR, then
 * /usr/lib/postgresql/15/bin (Debian's postgresql-15), then the highest
 * version under /usr/lib/postgresql. No libpq here: readiness is read from
 * the server's postmaster.pid.
 *
 * Access: the Unix socket (in the 0700 temporary directory) needs no
 * password; TCP on 127.0.0.1 needs the user postgres's password
 * (scram-sha-256), a random one made by tether_pgs_start() (s->password),
 * which also exports it as PGPASSWORD in the caller's environment: libpq in
 * this process and in the children it starts finds it there, and it appears
 * in no URI, command line or printed line (another local user can read a
 * process's command line, not its environment).
 */
#ifndef TETHER_TOOLS_PGSERVER_H
#define TETHER_TOOLS_PGSERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tether_pgs {
    char bindir[512]; /* where initdb and postgres are */
    char dir[256];    /* the temporary directory (socket directory too) */
    char data[300];   /* the data directory, dir/data */
    char log[300];    /* the server's log, dir/server.log */
    uid_t uid;        /* the user that runs the server (the caller's unless root) */
    gid_t gid;        /* its group */
    int drop;         /* 1: the children switch to uid/gid (the caller is root) */
    pid_t pid;        /* the postmaster, 0 when stopped */
    int port;         /* its loopback TCP port */
    int made;         /* 1: dir exists (tether_pgs_remove deletes it) */
    int fsync;        /* 1: fsync and full_page_writes on (a measurement's setting) */
    int adopted;      /* 1: pid was started by another program (tether_pgs_adopt) */
    char password[64]; /* the user postgres's password over TCP (hex) */
    char why_log[300]; /* after a failure: the log that explains it (initdb's or the
                          server's), "" when none */
} tether_pgs;

/* Fills s for a server with fsync on (fsync = 1) or off (tests: it only
 * costs durability across a crash of the machine), then starts it. 0, or -1
 * with the reason in err; after a failure nothing runs, s->why_log names the
 * log that explains it, and the directory stays until tether_pgs_remove(). A
 * missing binary says "PostgreSQL binaries (initdb, postgres) not found in
 * DIR: ...". */
int tether_pgs_start(tether_pgs *s, int fsync, char *err, size_t errlen);

/* Starts the stopped server again on the same directory and port. 0 or -1
 * with the reason in err (the server's log is in s->log). */
int tether_pgs_restart(tether_pgs *s, char *err, size_t errlen);

/* Stops the server by its PID (fast shutdown, SIGKILL after 20 s) and waits
 * for it. Does nothing when it does not run. The directory stays. */
void tether_pgs_stop(tether_pgs *s);

/* After another program stopped and started the server on s's data directory
 * (as `tether scenario --pg-data` does): takes the PID of the one running now
 * from its postmaster.pid, so that tether_pgs_stop() stops that one by its
 * PID. 0, or -1 when no server runs on the directory (a PID in the file
 * that is not a postgres on this directory is never taken). */
int tether_pgs_adopt(tether_pgs *s);

/* Reads DATA/postmaster.pid: the postmaster's PID (first line) into *pid
 * and whether its status line (the 8th, since PostgreSQL 10) says "ready"
 * into *ready. 0, or -1 when there is no such file or it names no PID. */
int tether_pgs_pidfile(const char *data, pid_t *pid, int *ready);

/* 1 when pid runs (exists, and is not a zombie nobody reaped yet). */
int tether_pgs_alive(pid_t pid);

/* pid's parent, or 0 when pid is gone or a zombie. */
pid_t tether_pgs_parent(pid_t pid);

/* 1 when pid runs and is a postmaster of data directory data: its working
 * directory (/proc/PID/cwd) is data and its executable's name is postgres.
 * A stale postmaster.pid's PID reused by an unrelated process is not; nor
 * is a process whose /proc entries the caller may not read. */
int tether_pgs_is_postmaster(pid_t pid, const char *data);

/* Prints the end of s->why_log (after a failure: the log that explains it)
 * on stderr, each marker line starting with who. Nothing when there is none. */
void tether_pgs_show_why(const tether_pgs *s, const char *who);

/* Stops the server and deletes its directory. */
void tether_pgs_remove(tether_pgs *s);

/* A postgresql:// URI of database db as the user postgres on the server,
 * without the password (libpq takes it from PGPASSWORD, set by
 * tether_pgs_start()). */
const char *tether_pgs_uri(const tether_pgs *s, const char *db, char *buf, size_t len);

#endif

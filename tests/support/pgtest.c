/*
 * A private PostgreSQL server for tests (pgtest.h): initdb in a temporary
 * directory, postgres on a loopback port, stopped by PID at exit.
 */
#include "pgtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define INITDB_SECONDS 120 /* longest initdb may take */
#define READY_SECONDS 60   /* longest the server may take to accept connections */
#define STOP_SECONDS 20    /* fast shutdown, then SIGKILL */
#define PORT_TRIES 5       /* another process may take the port between our probe and postgres */

static struct {
    char bindir[512]; /* where initdb and postgres are */
    char dir[256];    /* our temporary directory (socket directory too) */
    char data[300];   /* the data directory, dir/data */
    char log[300];    /* the server's log, dir/server.log */
    uid_t uid;        /* the user that runs the server (ours unless root) */
    gid_t gid;        /* its group */
    int drop;         /* 1: switch to uid/gid in the children (running as root) */
    pid_t pid;        /* the postmaster, 0 when stopped */
    int port;         /* its port */
    int started;      /* pgt_start() succeeded once: the directory exists */
    int dbs;          /* databases created, for names */
    int fsync;        /* 1: fsync=on (pgt_set_fsync) */
    int adopted;      /* 1: pid was started by another program (pgt_adopt), not our child */
} pg;

void pgt_set_fsync(int on)
{
    pg.fsync = on;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "pgtest: FAIL: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Prints the last lines of a log file on stderr. */
static void show_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "pgtest: --- %s (end) ---\n%s\npgtest: ---\n", path, buf);
}

/* In a child: becomes the server's user and sends its output to log. */
static void child_setup(const char *log)
{
    if (pg.drop && (setgroups(0, NULL) != 0 || setgid(pg.gid) != 0 || setuid(pg.uid) != 0)) {
        _exit(126);
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
}

/* Waits for pid at most seconds; 1 and *status when it ended, 0 otherwise. */
static int wait_for(pid_t pid, double seconds, int *status)
{
    double end = now_s() + seconds;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) {
            return 1;
        }
        if (now_s() > end) {
            return 0;
        }
        nap_ms(20);
    }
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Debian's server binaries: /usr/lib/postgresql/15/bin, else the highest
 * version found under /usr/lib/postgresql. */
static void find_bindir(char *out, size_t len)
{
    snprintf(out, len, "/usr/lib/postgresql/15/bin");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/postgres", out);
    if (access(probe, X_OK) == 0) {
        return;
    }
    DIR *d = opendir("/usr/lib/postgresql");
    long best = -1;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char *end = NULL;
        long v = strtol(e->d_name, &end, 10);
        snprintf(probe, sizeof probe, "/usr/lib/postgresql/%s/bin/postgres", e->d_name);
        if (end != e->d_name && *end == '\0' && v > best && access(probe, X_OK) == 0) {
            best = v;
            snprintf(out, len, "/usr/lib/postgresql/%s/bin", e->d_name);
        }
    }
    if (d) {
        closedir(d);
    }
}

const char *pgt_conninfo(const char *db, char *buf, size_t len)
{
    snprintf(buf, len, "host=127.0.0.1 port=%d user=postgres dbname=%s connect_timeout=10", pg.port,
             db);
    return buf;
}

const char *pgt_uri(const char *db, char *buf, size_t len)
{
    snprintf(buf, len, "postgresql://postgres@127.0.0.1:%d/%s", pg.port, db);
    return buf;
}

int pgt_port(void)
{
    return pg.pid ? pg.port : 0;
}

/* Starts postgres on pg.port; 0 once it accepts connections, 1 when the port
 * was taken (try another), -1 on any other failure. */
static int launch(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", pg.port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        child_setup(pg.log);
        /* after the user switch, which clears it: the server dies with us */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != parent) {
            _exit(1);
        }
        char prog[600];
        snprintf(prog, sizeof prog, "%s/postgres", pg.bindir);
        execl(prog, "postgres", "-D", pg.data, "-k", pg.dir, "-p", port, "-c",
              "listen_addresses=127.0.0.1", "-c", pg.fsync ? "fsync=on" : "fsync=off", "-c",
              pg.fsync ? "full_page_writes=on" : "full_page_writes=off", "-c",
              "shared_buffers=16MB", "-c", "max_connections=40", "-c", "max_wal_size=256MB",
              (char *)NULL);
        _exit(127);
    }
    pg.pid = pid;
    char ci[256];
    snprintf(ci, sizeof ci,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=2", pg.port);
    double end = now_s() + READY_SECONDS;
    while (now_s() < end) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pg.pid = 0;
            FILE *f = fopen(pg.log, "r");
            char line[512];
            int taken = 0;
            while (f && fgets(line, sizeof line, f)) {
                taken = taken || strstr(line, "could not bind") || strstr(line, "already in use");
            }
            if (f) {
                fclose(f);
            }
            return taken ? 1 : -1;
        }
        if (PQping(ci) == PQPING_OK) {
            return 0;
        }
        nap_ms(50);
    }
    fprintf(stderr, "pgtest: the server did not accept connections within %d s\n", READY_SECONDS);
    pgt_stop();
    return -1;
}

static void cleanup(void)
{
    pgt_stop();
    if (pg.started) {
        nftw(pg.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        pg.started = 0;
    }
}

void pgt_start(void)
{
    if (pg.pid) {
        return;
    }
    const char *env = getenv("TETHER_PG_BINDIR");
    if (env && *env) {
        snprintf(pg.bindir, sizeof pg.bindir, "%s", env);
    } else {
        find_bindir(pg.bindir, sizeof pg.bindir);
    }
    char initdb[600], postgres[600];
    snprintf(initdb, sizeof initdb, "%s/initdb", pg.bindir);
    snprintf(postgres, sizeof postgres, "%s/postgres", pg.bindir);
    if (access(initdb, X_OK) != 0 || access(postgres, X_OK) != 0) {
        die("PostgreSQL binaries (initdb, postgres) not found in %s: install postgresql-15 "
            "(Debian) or set TETHER_PG_BINDIR; the PostgreSQL store's tests need a real server",
            pg.bindir);
    }
    pg.uid = geteuid();
    pg.gid = getegid();
    if (pg.uid == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            die("running as root, and there is no user %s to run PostgreSQL as", "postgres");
        }
        pg.uid = pw->pw_uid;
        pg.gid = pw->pw_gid;
        pg.drop = 1;
    }
    snprintf(pg.dir, sizeof pg.dir, "%s/tether-pg-XXXXXX", "/tmp");
    if (!mkdtemp(pg.dir) || (pg.drop && chown(pg.dir, pg.uid, pg.gid) != 0)) {
        die("cannot make a temporary directory: %s", strerror(errno));
    }
    pg.started = 1;
    atexit(cleanup);
    snprintf(pg.data, sizeof pg.data, "%s/data", pg.dir);
    snprintf(pg.log, sizeof pg.log, "%s/server.log", pg.dir);
    char ilog[300];
    snprintf(ilog, sizeof ilog, "%s/initdb.log", pg.dir);
    pid_t pid = fork();
    if (pid == 0) {
        child_setup(ilog);
        execl(initdb, "initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D",
              pg.data, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || !wait_for(pid, INITDB_SECONDS, &status)) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        die("initdb did not finish (in %s)", pg.dir);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        show_log(ilog);
        die("initdb failed (in %s); its log is above", pg.dir);
    }
    for (int i = 0; i < PORT_TRIES; i++) {
        pg.port = free_port();
        int rc = pg.port ? launch() : -1;
        if (rc == 0) {
            return;
        }
        if (rc < 0) {
            break;
        }
    }
    show_log(pg.log);
    die("postgres did not start (in %s); its log is above", pg.dir);
}

int pgt_restart(void)
{
    if (pg.pid || !pg.started) {
        return -1;
    }
    int rc = launch();
    if (rc != 0) {
        show_log(pg.log);
    }
    return rc == 0 ? 0 : -1;
}

/* pid runs (not gone, and not a zombie that nobody reaped yet). */
static int alive(pid_t pid)
{
    if (kill(pid, 0) != 0) {
        return 0;
    }
    char p[64], buf[256];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return f && !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

const char *pgt_data_dir(void)
{
    return pg.data;
}

int pgt_adopt(void)
{
    char p[320];
    snprintf(p, sizeof p, "%s/postmaster.pid", pg.data);
    FILE *f = fopen(p, "r");
    long v = 0;
    if (!f || fscanf(f, "%ld", &v) != 1 || v <= 0 || !alive((pid_t)v)) {
        if (f) {
            fclose(f);
        }
        return -1;
    }
    fclose(f);
    if ((pid_t)v != pg.pid) {
        if (pg.pid && !pg.adopted) {
            waitpid(pg.pid, NULL, WNOHANG); /* ours, stopped by the other program */
        }
        pg.pid = (pid_t)v;
        pg.adopted = 1;
    }
    return 0;
}

void pgt_stop(void)
{
    if (!pg.pid) {
        return;
    }
    if (pg.adopted) {
        /* not our child: stopped by its PID, watched until it is gone */
        kill(pg.pid, SIGINT);
        double end = now_s() + STOP_SECONDS;
        while (alive(pg.pid) && now_s() < end) {
            nap_ms(20);
        }
        if (alive(pg.pid)) {
            kill(pg.pid, SIGKILL);
            while (alive(pg.pid) && now_s() < end + 5) {
                nap_ms(20);
            }
        }
        pg.pid = 0;
        pg.adopted = 0;
        return;
    }
    kill(pg.pid, SIGINT); /* fast shutdown: ends sessions, writes a checkpoint */
    int status;
    if (!wait_for(pg.pid, STOP_SECONDS, &status)) {
        kill(pg.pid, SIGKILL);
        waitpid(pg.pid, NULL, 0);
    }
    pg.pid = 0;
}

int pgt_exec(const char *db, const char *sql, int quiet)
{
    char ci[256];
    PGconn *c = PQconnectdb(pgt_conninfo(db, ci, sizeof ci));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
        PQclear(r);
    }
    if (rc != 0 && !quiet) {
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

int pgt_createdb(const char *prefix, char *name, size_t len)
{
    snprintf(name, len, "%s_%d_%d", prefix, (int)getpid(), ++pg.dbs);
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    return pgt_exec("postgres", sql, 0);
}

int pgt_query_int(const char *db, const char *sql, long long *out)
{
    char ci[256];
    PGconn *c = PQconnectdb(pgt_conninfo(db, ci, sizeof ci));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
            *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            rc = 0;
        }
        PQclear(r);
    }
    if (rc != 0) {
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

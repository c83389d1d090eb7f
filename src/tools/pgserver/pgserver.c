/*
 * A private PostgreSQL server in a temporary directory (pgserver.h).
 */
#include "pgserver.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
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

#define INITDB_SECONDS 120 /* longest initdb may take */
#define READY_SECONDS 60   /* longest the server may take to say it is ready */
#define STOP_SECONDS 20    /* fast shutdown, then SIGKILL */
#define PORT_TRIES 5       /* another process may take the port between our probe and postgres */

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

/* In a child: becomes the server's user and sends its output to log. */
static void child_setup(const tether_pgs *s, const char *log)
{
    if (s->drop && (setgroups(0, NULL) != 0 || setgid(s->gid) != 0 || setuid(s->uid) != 0)) {
        _exit(126);
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    /* the caller's other descriptors (sockets, databases) are not the server's */
    if (close_range(3, ~0U, 0) != 0) {
        for (int i = 3; i < 65536; i++) {
            close(i);
        }
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

/* A loopback port the system has free now (0 when it cannot say). */
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
    glob_t g;
    long best = -1;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) != 0) {
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *ver = g.gl_pathv[i] + strlen("/usr/lib/postgresql/");
        char *end = NULL;
        long v = strtol(ver, &end, 10);
        if (end != ver && strncmp(end, "/bin/postgres", 14) == 0 && v > best &&
            access(g.gl_pathv[i], X_OK) == 0) {
            best = v;
            snprintf(out, len, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/postgres")),
                     g.gl_pathv[i]);
        }
    }
    globfree(&g);
}

int tether_pgs_pidfile(const char *data, pid_t *pid, int *ready)
{
    char path[4200], line[256];
    snprintf(path, sizeof path, "%s/postmaster.pid", data);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    long v = 0;
    *ready = 0;
    for (int i = 1; fgets(line, sizeof line, f); i++) {
        if (i == 1) {
            v = strtol(line, NULL, 10);
        } else if (i == 8) {
            *ready = strncmp(line, "ready", 5) == 0;
            break;
        }
    }
    fclose(f);
    *pid = (pid_t)v;
    return v > 0 && v <= INT_MAX ? 0 : -1;
}

/* pid's state letter and parent from /proc/PID/stat; -1 when pid is gone. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces and parentheses: the fields follow the last ')' */
    const char *rp = strrchr(buf, ')');
    int pp = 0;
    if (!rp || sscanf(rp + 1, " %c %d", state, &pp) != 2) {
        return -1;
    }
    *ppid = (pid_t)pp;
    return 0;
}

int tether_pgs_alive(pid_t pid)
{
    char state = 0;
    pid_t ppid = 0;
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) {
        return 0;
    }
    return proc_stat(pid, &state, &ppid) == 0 && state != 'Z';
}

pid_t tether_pgs_parent(pid_t pid)
{
    char state = 0;
    pid_t ppid = 0;
    if (pid <= 0 || proc_stat(pid, &state, &ppid) != 0 || state == 'Z') {
        return 0;
    }
    return ppid;
}

int tether_pgs_is_postmaster(pid_t pid, const char *data)
{
    if (!tether_pgs_alive(pid)) {
        return 0;
    }
    char p[64], cwd[PATH_MAX], exe[PATH_MAX], real[PATH_MAX];
    snprintf(p, sizeof p, "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(p, cwd, sizeof cwd - 1);
    if (n <= 0 || !realpath(data, real)) {
        return 0;
    }
    cwd[n] = '\0';
    snprintf(p, sizeof p, "/proc/%d/exe", (int)pid);
    ssize_t m = readlink(p, exe, sizeof exe - 1);
    if (m <= 0) {
        return 0;
    }
    exe[m] = '\0';
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    return strcmp(cwd, real) == 0 && strcmp(base, "postgres") == 0;
}

/* 1 when the data directory's postmaster.pid is our server's (its first
 * line) and says "ready". A file left by a killed server names another PID. */
static int says_ready(const tether_pgs *s)
{
    pid_t pid = 0;
    int ready = 0;
    return tether_pgs_pidfile(s->data, &pid, &ready) == 0 && pid == s->pid && ready;
}

/* The size of a file now (0 when it does not exist). */
static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* 1 when the server's log, from offset from (its size before this launch:
 * the log is appended across launches), says it could not bind its port. */
static int port_taken(const tether_pgs *s, long from)
{
    FILE *f = fopen(s->log, "r");
    char line[512];
    int taken = 0;
    if (f && fseek(f, from, SEEK_SET) != 0) {
        fclose(f);
        f = NULL;
    }
    while (f && fgets(line, sizeof line, f)) {
        taken = taken || strstr(line, "could not bind") || strstr(line, "already in use");
    }
    if (f) {
        fclose(f);
    }
    return taken;
}

/* Starts postgres on s->port; 0 once it is ready, 1 when the port was taken
 * (try another), -1 on any other failure (err says it). */
static int launch(tether_pgs *s, char *err, size_t errlen)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    pid_t parent = getpid();
    long log_from = file_size(s->log);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot start postgres: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_setup(s, s->log);
        /* after the user switch, which clears it: the server dies with us */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != parent) {
            _exit(1);
        }
        char prog[600];
        snprintf(prog, sizeof prog, "%s/postgres", s->bindir);
        execl(prog, "postgres", "-D", s->data, "-k", s->dir, "-p", port, "-c",
              "listen_addresses=127.0.0.1", "-c", s->fsync ? "fsync=on" : "fsync=off", "-c",
              s->fsync ? "full_page_writes=on" : "full_page_writes=off", "-c",
              "shared_buffers=16MB", "-c", "max_connections=40", "-c", "max_wal_size=256MB",
              (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    double end = now_s() + READY_SECONDS;
    while (now_s() < end) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            if (port_taken(s, log_from)) {
                return 1;
            }
            snprintf(err, errlen, "postgres did not start (in %s)", s->dir);
            snprintf(s->why_log, sizeof s->why_log, "%s", s->log);
            return -1;
        }
        if (says_ready(s)) {
            return 0;
        }
        nap_ms(50);
    }
    tether_pgs_stop(s);
    snprintf(err, errlen, "postgres was not ready within %d s (in %s)", READY_SECONDS, s->dir);
    snprintf(s->why_log, sizeof s->why_log, "%s", s->log);
    return -1;
}

/* A random password for the user postgres (hex of 24 bytes of
 * /dev/urandom) into s->password, written to pwfile (0600, readable by the
 * server's user) for initdb, and exported as PGPASSWORD so that libpq in this
 * process and its children finds it. 0, or -1 with err. */
static int make_password(tether_pgs *s, const char *pwfile, char *err, size_t errlen)
{
    unsigned char raw[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n != (ssize_t)sizeof raw) {
        snprintf(err, errlen, "cannot read a password from /dev/urandom: %s",
                 n < 0 ? strerror(errno) : "short read");
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        snprintf(s->password + 2 * i, 3, "%02x", raw[i]);
    }
    fd = open(pwfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = strlen(s->password);
    int ok = fd >= 0 && (!s->drop || fchown(fd, s->uid, s->gid) == 0) &&
             write(fd, s->password, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    int e = errno;
    if (fd >= 0 && close(fd) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(pwfile);
        snprintf(err, errlen, "cannot write the password file %s: %s", pwfile, strerror(e));
        return -1;
    }
    if (setenv("PGPASSWORD", s->password, 1) != 0) {
        unlink(pwfile);
        snprintf(err, errlen, "cannot set PGPASSWORD: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int tether_pgs_start(tether_pgs *s, int fsync, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->fsync = fsync;
    const char *env = getenv("TETHER_PG_BINDIR");
    if (env && *env) {
        snprintf(s->bindir, sizeof s->bindir, "%s", env);
    } else {
        find_bindir(s->bindir, sizeof s->bindir);
    }
    char initdb[600], postgres[600];
    snprintf(initdb, sizeof initdb, "%s/initdb", s->bindir);
    snprintf(postgres, sizeof postgres, "%s/postgres", s->bindir);
    if (access(initdb, X_OK) != 0 || access(postgres, X_OK) != 0) {
        snprintf(err, errlen,
                 "PostgreSQL binaries (initdb, postgres) not found in %s: install postgresql-15 "
                 "(Debian) or set TETHER_PG_BINDIR",
                 s->bindir);
        return -1;
    }
    s->uid = geteuid();
    s->gid = getegid();
    if (s->uid == 0) {
        struct passwd pwbuf, *pw = NULL;
        char buf[4096];
        if (getpwnam_r("postgres", &pwbuf, buf, sizeof buf, &pw) != 0 || !pw) {
            snprintf(err, errlen, "running as root, and there is no user postgres to run "
                                  "PostgreSQL as");
            return -1;
        }
        s->uid = pw->pw_uid;
        s->gid = pw->pw_gid;
        s->drop = 1;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/tether-pg-XXXXXX");
    if (!mkdtemp(s->dir)) {
        snprintf(err, errlen, "cannot make a temporary directory: %s", strerror(errno));
        return -1;
    }
    s->made = 1;
    if (s->drop && chown(s->dir, s->uid, s->gid) != 0) {
        snprintf(err, errlen, "cannot give %s to the user postgres: %s", s->dir, strerror(errno));
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    char ilog[300], pwfile[300];
    snprintf(ilog, sizeof ilog, "%s/initdb.log", s->dir);
    snprintf(pwfile, sizeof pwfile, "%s/pwfile", s->dir);
    if (make_password(s, pwfile, err, errlen) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        child_setup(s, ilog);
        /* the socket in the 0700 directory needs no password; TCP does */
        execl(initdb, "initdb", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile",
              pwfile, "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", s->data, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid > 0 && wait_for(pid, INITDB_SECONDS, &status)) {
        unlink(pwfile);
        pid = -2; /* ended */
    }
    if (pid != -2) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        unlink(pwfile);
        snprintf(err, errlen, "initdb did not finish (in %s)", s->dir);
        snprintf(s->why_log, sizeof s->why_log, "%s", ilog);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "initdb failed (in %s)", s->dir);
        snprintf(s->why_log, sizeof s->why_log, "%s", ilog);
        return -1;
    }
    for (int i = 0; i < PORT_TRIES; i++) {
        s->port = free_port();
        int rc = s->port ? launch(s, err, errlen) : -1;
        if (rc == 0) {
            return 0;
        }
        if (rc < 0) {
            if (!s->port) {
                snprintf(err, errlen, "no free loopback port");
            }
            return -1;
        }
    }
    snprintf(err, errlen, "postgres could not bind a free port in %d tries (in %s)", PORT_TRIES,
             s->dir);
    snprintf(s->why_log, sizeof s->why_log, "%s", s->log);
    return -1;
}

int tether_pgs_restart(tether_pgs *s, char *err, size_t errlen)
{
    if (s->pid || !s->made) {
        snprintf(err, errlen, "%s", s->pid ? "the server runs" : "the server was never made");
        return -1;
    }
    int rc = launch(s, err, errlen);
    if (rc > 0) {
        snprintf(err, errlen, "port %d is taken now (in %s)", s->port, s->dir);
        snprintf(s->why_log, sizeof s->why_log, "%s", s->log);
    }
    return rc == 0 ? 0 : -1;
}

int tether_pgs_adopt(tether_pgs *s)
{
    pid_t v = 0;
    int ready = 0;
    /* a stale file's PID may belong to an unrelated process by now */
    if (tether_pgs_pidfile(s->data, &v, &ready) != 0 || !tether_pgs_is_postmaster(v, s->data)) {
        return -1;
    }
    if (v != s->pid) {
        if (s->pid && !s->adopted) {
            waitpid(s->pid, NULL, WNOHANG); /* ours, stopped by the other program */
        }
        s->pid = v;
        s->adopted = 1;
    }
    return 0;
}

void tether_pgs_stop(tether_pgs *s)
{
    if (!s->pid) {
        return;
    }
    if (s->adopted) {
        /* not our child: stopped by its PID, watched until it is gone; only
         * while that PID is still a postgres on our data directory */
        if (tether_pgs_is_postmaster(s->pid, s->data)) {
            kill(s->pid, SIGINT);
            double end = now_s() + STOP_SECONDS;
            while (tether_pgs_alive(s->pid) && now_s() < end) {
                nap_ms(20);
            }
            if (tether_pgs_is_postmaster(s->pid, s->data)) {
                kill(s->pid, SIGKILL);
                while (tether_pgs_alive(s->pid) && now_s() < end + 5) {
                    nap_ms(20);
                }
            }
        }
        s->pid = 0;
        s->adopted = 0;
        return;
    }
    kill(s->pid, SIGINT); /* fast shutdown: ends sessions, writes a checkpoint */
    int status;
    if (!wait_for(s->pid, STOP_SECONDS, &status)) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

void tether_pgs_show_why(const tether_pgs *s, const char *who)
{
    FILE *f = s->why_log[0] ? fopen(s->why_log, "r") : NULL;
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
    fprintf(stderr, "%s: --- the end of %s ---\n%s\n%s: ---\n", who, s->why_log, buf, who);
}

void tether_pgs_remove(tether_pgs *s)
{
    tether_pgs_stop(s);
    if (s->made) {
        nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        s->made = 0;
    }
}

const char *tether_pgs_uri(const tether_pgs *s, const char *db, char *buf, size_t len)
{
    snprintf(buf, len, "postgresql://postgres@127.0.0.1:%d/%s", s->port, db);
    return buf;
}

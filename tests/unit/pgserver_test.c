/*
 * The private PostgreSQL server (src/tools/pgserver) itself: the server does
 * not inherit the caller's descriptors; a failed restart after an earlier
 * "could not bind" in the (appended) log is reported as what it is, not as a
 * taken port; and a stale postmaster.pid whose PID now belongs to an
 * unrelated process is neither adopted nor signalled.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pgserver/pgserver.h"

static tether_pgs srv;

/* 1 when process pid holds a descriptor open on path. */
static int holds(pid_t pid, const char *path)
{
    char dir[64], p[PATH_MAX], link[PATH_MAX];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(p, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            found = found || strcmp(link, path) == 0;
        }
    }
    if (d) {
        closedir(d);
    }
    return found;
}

/* Writes text to path (replacing it). */
static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(server_gets_none_of_our_descriptors)
{
    char path[512];
    tt_path(path, sizeof path, "inherited");
    int fd = open(path, O_WRONLY | O_CREAT, 0600); /* no O_CLOEXEC on purpose */
    CHECK(fd >= 0);
    char real[PATH_MAX];
    CHECK(realpath(path, real) != NULL);
    char err[600];
    int rc = tether_pgs_start(&srv, 0, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "  start: %s\n", err);
    }
    CHECK_OK(rc);
    CHECK(srv.pid > 0);
    CHECK(holds(getpid(), real)); /* the check sees it where it is open */
    CHECK(!holds(srv.pid, real));
    close(fd);
}

TEST(earlier_bind_failure_is_not_read_again)
{
    char err[600], conf[400];
    CHECK(srv.pid > 0);
    tether_pgs_stop(&srv);
    /* an earlier launch's line in the appended log */
    FILE *f = fopen(srv.log, "a");
    CHECK(f != NULL);
    if (f) {
        fputs("LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n", f);
        fclose(f);
    }
    /* this launch fails for another reason: a setting postgres refuses */
    snprintf(conf, sizeof conf, "%s/postgresql.auto.conf", srv.data);
    put(conf, "tether_no_such_setting_at_all = 1\nshared_buffers = 'not a size'\n");
    CHECK(tether_pgs_restart(&srv, err, sizeof err) != 0);
    CHECK(strstr(err, "did not start") != NULL);
    CHECK(strstr(err, "taken") == NULL);
    CHECK_EQ_STR(srv.why_log, srv.log);
    put(conf, "");
    CHECK_OK(tether_pgs_restart(&srv, err, sizeof err));
    CHECK(srv.pid > 0);
}

TEST(stale_pid_file_of_another_process_is_left_alone)
{
    CHECK(srv.pid > 0);
    /* the running postmaster is one, on its own directory only */
    CHECK(tether_pgs_is_postmaster(srv.pid, srv.data));
    CHECK(!tether_pgs_is_postmaster(srv.pid, srv.dir));
    CHECK_OK(tether_pgs_adopt(&srv));
    CHECK_EQ_INT(srv.adopted, 0); /* the same PID: still our child */
    tether_pgs_stop(&srv);
    CHECK_EQ_INT(srv.pid, 0);

    pid_t other = fork();
    if (other == 0) {
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    CHECK(other > 0);
    char pidfile[400], text[640];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", srv.data);
    snprintf(text, sizeof text, "%d\n%s\n0\n5432\n/tmp\n127.0.0.1\n0 0\nready   \n", (int)other,
             srv.data);
    put(pidfile, text);
    pid_t pid = 0;
    int ready = 0;
    CHECK_OK(tether_pgs_pidfile(srv.data, &pid, &ready));
    CHECK_EQ_INT(pid, other);
    CHECK_EQ_INT(ready, 1);
    CHECK(tether_pgs_alive(other));
    CHECK(!tether_pgs_is_postmaster(other, srv.data));
    CHECK_EQ_INT(tether_pgs_adopt(&srv), -1);
    CHECK_EQ_INT(srv.pid, 0);
    /* an adopted PID that became someone else's is not signalled either */
    srv.pid = other;
    srv.adopted = 1;
    tether_pgs_stop(&srv);
    CHECK_EQ_INT(srv.pid, 0);
    CHECK_EQ_INT(waitpid(other, NULL, WNOHANG), 0); /* still running */
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    CHECK(!tether_pgs_alive(other));
    unlink(pidfile);
}

int main(void)
{
    RUN(server_gets_none_of_our_descriptors);
    RUN(earlier_bind_failure_is_not_read_again);
    RUN(stale_pid_file_of_another_process_is_left_alone);
    tether_pgs_remove(&srv);
    return tt_finish();
}

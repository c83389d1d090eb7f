/*
 * Child processes of the CLI tests (procs.h).
 */
#include "procs.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t procs_spawn(char *const argv[], const char *out)
{
    fflush(NULL); /* or the child would write our buffered output again */
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(out, "w", stdout);
        (void)f;
        dup2(1, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int procs_reap(pid_t pid, unsigned ms)
{
    int status;
    struct timespec step = {0, 20 * 1000000L};
    for (unsigned t = 0; t < ms; t += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        nanosleep(&step, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int procs_stop(pid_t pid, unsigned ms)
{
    if (kill(pid, SIGSTOP) != 0) {
        return -1;
    }
    /* kill() returns once the signal is queued: one thread takes it and only
     * then stops the others, which meanwhile go on running (reading sockets,
     * writing to the store). waitpid reports the stop once every thread has
     * stopped. */
    int status;
    struct timespec step = {0, 1000000L};
    for (unsigned t = 0; t < ms; t++) {
        pid_t r = waitpid(pid, &status, WUNTRACED | WNOHANG);
        if (r == pid && WIFSTOPPED(status)) {
            return 0;
        }
        if (r == pid || r < 0) {
            return -1; /* it ended */
        }
        nanosleep(&step, NULL);
    }
    return -1;
}

int procs_file_port(const char *path)
{
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f) {
        if (fscanf(f, "%d", &port) != 1) {
            port = 0;
        }
        fclose(f);
    }
    return port;
}

int procs_count_lines(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        n += strstr(line, text) != NULL;
    }
    if (f) {
        fclose(f);
    }
    return n;
}

/*
 * Child processes of the tests that run the tether CLI (serve, send, status):
 * started with their output in a file, reaped within a bound (killed after),
 * and what they write read back: the port a `serve --port-file` bound, how
 * many lines of an output name something.
 */
#ifndef TETHER_TEST_PROCS_H
#define TETHER_TEST_PROCS_H

#include <sys/types.h>

/* Runs argv with stdout and stderr to the file out: its pid (-1 when fork failed). */
pid_t procs_spawn(char *const argv[], const char *out);
/* Waits at most ms for pid: its exit status (128 + signal when killed by one),
 * or -1 when it did not end in time (it is then killed with SIGKILL and reaped). */
int procs_reap(pid_t pid, unsigned ms);
/* Stops pid with SIGSTOP and waits at most ms until all its threads have
 * stopped (kill() alone returns before they have): 0, or -1 when it did not
 * stop in time or ended. */
int procs_stop(pid_t pid, unsigned ms);
/* The decimal port in path (a --port-file), or 0 when none is there yet. */
int procs_file_port(const char *path);
/* Lines of path that contain text (0 when path cannot be read). */
int procs_count_lines(const char *path, const char *text);

#endif

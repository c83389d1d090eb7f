/*
 * The event record a process under test appends to (format in scenario.h):
 * the scenario peers, `tether send --record` and the demo's in-process server
 * write it; scenario_check.c judges it. One record per process; each line is
 * one write(2) on an O_APPEND file, so a SIGKILL never loses a whole line.
 */
#ifndef TETHER_CLI_RECORD_H
#define TETHER_CLI_RECORD_H

#include <stdint.h>

#include "cli/cli.h"

/* Opens (creates, appends to) the process's record. 0, or -1 with errno set. */
int scen_record_open(const char *path);
void scen_record_close(void);

/* Appends "<T> <ms>..." where T is fmt[0] and the rest of fmt follows the
 * CLOCK_MONOTONIC milliseconds. Does nothing when no record is open. */
void scen_record(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads the store at db (absent or NULL: a new store) and appends the S line of a new
 * life. 1 when the store holds exactly one session (copied to *si), 0 when it
 * holds none, -1 when it cannot be read (an F line is appended and the reason
 * printed on stderr). */
int scen_record_start(const char *db, cli_session_info *si);

/* The M line of a mismatch report. */
void scen_record_mismatch(const tether_mismatch_info *mi);

#endif

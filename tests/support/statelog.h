/*
 * A log of a client's state reports with the time of each, for the suites that
 * check sequences and timings of states (wire_client, field_*). One client at
 * a time: the log is global. slog_attach() puts slog in front of the
 * configuration's own on_state, which is still called after it (the recorder's
 * ring keeps working). Every function is thread-safe.
 */
#ifndef TETHER_TEST_STATELOG_H
#define TETHER_TEST_STATELOG_H

#include <limits.h>
#include <stdint.h>

#include <tether/tether.h>

#define ANY INT_MIN /* matches any error in the queries */

/* One state report. */
typedef struct slog_ent {
    int state, error, http, proxy, reject; /* tether_state, its error, HTTP/proxy status, reject code */
    uint32_t retry_in, retry_after;        /* retry_in_ms, retry_after_ms */
    uint64_t at_ms;                        /* when it was reported (CLOCK_MONOTONIC, ms) */
    char detail[256];                      /* its detail text */
} slog_ent;

/* Empties the log and makes cfg report states to it first; the on_state cfg
 * had is called after (one client at a time). */
void slog_attach(tether_client_config *cfg);
void slog_reset(void);

/* The index of the nth (from 0) report of state with this error (ANY: any error), or -1. */
int slog_find(int state, int error, unsigned nth);
/* The nth (from 0) report of state, copied into *out; 0 when there is none. */
int slog_get(int state, unsigned nth, slog_ent *out);
/* Reports of state with this error (ANY: any). */
unsigned slog_count(int state, int error);
/* Waits (bounded) until count reports of state with this error were made; 1 if they were. */
int slog_wait(int state, int error, unsigned count, unsigned timeout_ms);

/* One field of report i (from slog_find; -1 gives INT_MIN, or 0 for the time). */
int slog_error(int i);
int slog_http(int i);
int slog_reject(int i);
uint64_t slog_at(int i);
/* The state reported right after report i, or 0. */
int slog_next_state(int i);

/* Prints the log to stderr with times relative to the first report. */
void slog_dump(const char *why);

#endif

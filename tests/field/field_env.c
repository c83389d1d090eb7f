/*
 * What the field suites share (field_env.h): the client of the field tests,
 * a one-shot failing connection, the test certificates.
 */
#include "field_env.h"

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* Clients and servers (itest.h); states go to the state log (statelog.h)    */
/* ------------------------------------------------------------------------ */

/* A client of the field tests: direct unless a test says otherwise, short backoff. */
void field_cli_init(cli *k, const char *scheme, const char *host, unsigned port)
{
    cli_init(k, scheme, host, port);
    k->cfg.proxy = ""; /* direct unless a test says otherwise, whatever the environment */
    k->cfg.backoff_base_ms = 20;
    k->cfg.backoff_cap_ms = 100;
    k->cfg.connect_timeout_ms = 5000;
    k->cfg.random_seed = 11;
}

/* A client to a fake peer that must fail: returns the first DISCONNECTED report. */
int fail_once(cli *k, slog_ent *d)
{
    k->cfg.backoff_max_attempts = 1;
    if (cli_start(k) != TETHER_OK) {
        return 0;
    }
    int ok = slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS);
    return ok && slog_get(TETHER_STATE_DISCONNECTED, 0, d);
}

int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  '%s' does not contain '%s'\n", hay, needle);
        return 0;
    }
    return 1;
}

certs C;

int need_certs(void)
{
    if (C.ca[0]) {
        return 1;
    }
    if (certs_make(&C) != 0) {
        tt_fail(__FILE__, __LINE__, "cannot make test certificates with the openssl command");
        return 0;
    }
    return 1;
}

/*
 * The real things the field tests run against: certificates made with the
 * openssl command line, squid and nginx started with configs written into the
 * test's temporary directory, on loopback ports, stopped by PID with bounded
 * waits. Nothing is installed here: quickstart.sh installs squid, nginx-light
 * and openssl, and a missing program fails the test with a clear message.
 */
#ifndef TETHER_TEST_FIELD_EXT_H
#define TETHER_TEST_FIELD_EXT_H

#include <stdint.h>
#include <sys/types.h>

/* Paths of the certificates made by certs_make(), under dir. */
typedef struct certs {
    char dir[512];
    char ca[600], ca_key[600];             /* the test CA */
    char srv[600], srv_key[600];           /* good: IP 127.0.0.1 and DNS localhost */
    char wrong[600], wrong_key[600];       /* names only wrong.example */
    char expired[600], expired_key[600];   /* expired yesterday */
    char other_ca[600], other_ca_key[600]; /* a CA the client does not know */
    char unknown[600], unknown_key[600];   /* signed by other_ca */
    char cli[600], cli_key[600];           /* a client certificate from the test CA */
    char rogue[600], rogue_key[600];       /* a client certificate from other_ca */
} certs;

/* Makes every certificate once per process. Returns 0, or -1 with a message printed. */
int certs_make(certs *c);

/* 1 when the program is on PATH or at the absolute path. */
int have_program(const char *name);

typedef struct squid {
    pid_t pid;
    uint16_t port;
    char dir[512];
} squid;

/* Starts squid with Debian's stock access rules (CONNECT only to port 443,
 * allow localhost). With auth_user set, every request also needs Basic
 * credentials auth_user:auth_pass. Returns 0 or -1 (message printed). */
int squid_start(squid *s, const char *auth_user, const char *auth_pass);
/* Starts squid as a reverse proxy (accel mode) in front of 127.0.0.1:upstream,
 * configured to strip Upgrade from what it forwards: a WebSocket handshake
 * reaches the server as a plain GET, plain requests pass. Returns 0 or -1. */
int squid_start_reverse(squid *s, uint16_t upstream);
/* Lines of squid's access log that contain needle. */
int squid_log_count(squid *s, const char *needle);
void squid_stop(squid *s);

typedef struct nginx {
    pid_t pid;
    uint16_t port;
    uint16_t upstream;
    char dir[512];
    unsigned read_timeout_s; /* proxy_read_timeout, seconds [0: 300] */
    const char *extra;       /* more directives for the location, or NULL */
    int http_affinity;       /* /.tether/ (the HTTP carriage) to its own upstream with
                                ip_hash, as docs/scaling.md configures a fleet */
} nginx;

/* Starts nginx as a WebSocket reverse proxy from port (0: pick one) to
 * 127.0.0.1:upstream. Returns 0 or -1 (message printed). */
int nginx_start(nginx *n, uint16_t port, uint16_t upstream);
/* The same in front of n upstreams, round robin, no stickiness. */
int nginx_start_many(nginx *n, uint16_t port, const uint16_t *upstreams, size_t count);
void nginx_stop(nginx *n);

/* Stops a child: SIGTERM, then SIGKILL after wait_ms. Returns its status. */
int stop_pid(pid_t pid, unsigned wait_ms);

#endif

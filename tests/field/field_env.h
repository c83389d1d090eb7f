/*
 * Field connectivity, against the real things where they can run here: TLS
 * with certificates made by the openssl command, a real squid with Debian's
 * stock rules, a real nginx reverse proxy, and scripted loopback peers for the
 * failures real servers and proxies produce (tests/field/). Every outcome is
 * observed through the public API: state reports, http_status, proxy_status,
 * retry_after_ms, tether_client_last_state().
 *
 * Shared by the field_* suites: field_tls, field_handshake, field_server,
 * field_proxy and field_nginx.
 */
#ifndef TETHER_TEST_FIELD_ENV_H
#define TETHER_TEST_FIELD_ENV_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ext.h"
#include "fake.h"
#include "harness.h"
#include "itest.h"
#include "statelog.h"
#include "transport/proxy.h"

#define WAIT_MS 20000

uint64_t now_ms(void);

/* A client of the field tests: direct unless a test says otherwise, short backoff. */
void field_cli_init(cli *k, const char *scheme, const char *host, unsigned port);

/* A client to a fake peer that must fail: returns the first DISCONNECTED report. */
int fail_once(cli *k, slog_ent *d);

int contains(const char *hay, const char *needle);

extern certs C;

int need_certs(void);

#endif

/*
 * Loopback peers for the field tests: a scripted HTTP "server" that answers an
 * upgrade request the way broken servers and proxies do, and a TCP relay that
 * can stall or blackhole a path. Each runs on its own thread, binds
 * 127.0.0.1 on a port the OS picks, and stops with bounded waits.
 */
#ifndef TETHER_TEST_FIELD_FAKE_H
#define TETHER_TEST_FIELD_FAKE_H

#include <stddef.h>
#include <stdint.h>

typedef enum fake_mode {
    FAKE_STATUS,        /* answer with `status` and extra headers, then close */
    FAKE_BAD_ACCEPT,    /* 101 with a wrong Sec-WebSocket-Accept */
    FAKE_CONN_REWRITE,  /* 101 whose Connection header says "keep-alive" (a proxy rewrote it) */
    FAKE_NO_PROTOCOL,   /* 101 without Sec-WebSocket-Protocol */
    FAKE_OTHER_PROTOCOL,/* 101 choosing "chat" */
    FAKE_UPGRADE_SILENT,/* a valid tether.v1 101, then nothing: no WELCOME ever */
    FAKE_SILENT,        /* read the request, never answer */
    FAKE_NOT_TLS,       /* answer a TLS ClientHello with plain HTTP garbage */
} fake_mode;

typedef struct fake_server fake_server;

/* Starts a fake server. extra: more response header lines ("Retry-After: 2\r\n"), or NULL. */
fake_server *fake_start(fake_mode mode, int status, const char *extra);
uint16_t fake_port(fake_server *f);

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
int fake_dial(uint16_t port);

/* Connections accepted so far. */
int fake_accepted(fake_server *f);
/* Copies the last request head received into buf. */
void fake_last_request(fake_server *f, char *buf, size_t len);
void fake_stop(fake_server *f);

/* A listener whose backlog is full: a client's SYN gets no answer. NULL if
 * the kernel would not fill it. *fds_out receives the socket to close. */
int backlog_full_listener(uint16_t *port, int fds[4]);
void backlog_close(int fds[4]);

typedef struct relay relay;

/* A TCP relay from a fresh port to 127.0.0.1:upstream. */
relay *relay_start(uint16_t upstream);
uint16_t relay_port(relay *r);
/* 1: bytes in both directions are swallowed (connections stay open) */
void relay_blackhole(relay *r, int on);
/* 1: new connections pass the upgrade request and the server's HTTP response
 *  head, then swallow everything after it */
void relay_stall_after_upgrade(relay *r, int on);
/* Closes every relayed connection now (both sides). */
void relay_cut_all(relay *r);
int relay_connections(relay *r);
void relay_stop(relay *r);

/* A port that was free a moment ago (bound to 127.0.0.1:0 then closed). */
uint16_t free_port(void);
/* 1 once something accepts TCP connections on 127.0.0.1:port, within timeout_ms. */
int wait_port(uint16_t port, unsigned timeout_ms);

#endif

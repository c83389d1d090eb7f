/*
 * A tiny HTTP/1.1 client on plain loopback sockets, for the HTTP carriage's
 * wire tests: any method, path, headers and body, answers read with a
 * deadline, connections kept alive or not as a test wants, and a request
 * that can be written now and its answer read later (a held poll).
 *
 * Nothing here can hang: every read polls against a deadline.
 */
#ifndef TETHER_TEST_RAWHTTP_H
#define TETHER_TEST_RAWHTTP_H

#include <stddef.h>
#include <stdint.h>

#define RAWHTTP_HEAD_MAX 8192 /* longest answer head kept, bytes */

/* One answer. */
typedef struct rawhttp_resp {
    int status;                  /* the status code, 0 when none was read */
    char head[RAWHTTP_HEAD_MAX]; /* the head, status line included, NUL-terminated */
    uint8_t *body;               /* the body, malloc'd (NULL when empty) */
    size_t len;                  /* bytes at body */
} rawhttp_resp;

/* A TCP connection to 127.0.0.1:port: the socket, or -1. */
int rawhttp_connect(uint16_t port);
/* Writes one request. headers: "Name: value\r\n" lines or NULL. A body (or
 * any POST) gets a Content-Length unless headers carry one. 0 or -1. */
int rawhttp_send(int fd, const char *method, const char *path, const char *headers,
                 const void *body, size_t len);
/* Writes bytes as they are (a body sent after a 100 Continue). 0 or -1. */
int rawhttp_send_raw(int fd, const void *data, size_t len);
/* Reads one answer within timeout_ms into r (freed first with rawhttp_free).
 * 0, or -1 on a timeout, EOF or a malformed answer (r->status may be set). */
int rawhttp_read(int fd, rawhttp_resp *r, unsigned timeout_ms);
/* After the head of a chunked answer: reads one chunk into buf[cap] within
 * timeout_ms. Returns its length (0 for the last chunk), or -1 on a timeout,
 * EOF, a malformed chunk or one longer than cap. */
long rawhttp_read_chunk(int fd, uint8_t *buf, size_t cap, unsigned timeout_ms);
/* 1 when nothing has arrived on fd within wait_ms (no answer, no EOF). */
int rawhttp_quiet(int fd, unsigned wait_ms);
/* 1 when the peer closed fd within wait_ms. */
int rawhttp_closed(int fd, unsigned wait_ms);
/* One request on a fresh connection, then closes it: 0 or -1. */
int rawhttp_do(uint16_t port, const char *method, const char *path, const char *headers,
               const void *body, size_t len, rawhttp_resp *r, unsigned timeout_ms);
/* A header's value (case-insensitive name) into buf, or NULL. */
const char *rawhttp_header(const rawhttp_resp *r, const char *name, char *buf, size_t len);
void rawhttp_free(rawhttp_resp *r);

#endif

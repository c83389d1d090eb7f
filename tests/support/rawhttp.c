/* A tiny HTTP/1.1 client for wire tests (rawhttp.h). */
#include "rawhttp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int rawhttp_connect(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1; /* a head and a body in two writes must not wait for a delayed ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int rawhttp_send_raw(int fd, const void *data, size_t len)
{
    return write_all(fd, data, len);
}

int rawhttp_send(int fd, const char *method, const char *path, const char *headers,
                 const void *body, size_t len)
{
    char head[4096];
    int with_len = (body || strcmp(method, "POST") == 0) &&
                   !(headers && strcasestr(headers, "Content-Length:"));
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, path,
                     headers ? headers : "");
    if (with_len) {
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", len);
    }
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (n >= (int)sizeof head || write_all(fd, head, (size_t)n) != 0) {
        return -1;
    }
    return len ? write_all(fd, body, len) : 0;
}

/* Reads at least one byte into buf[cap] before deadline: bytes read, 0 at EOF, -1. */
static ssize_t read_some(int fd, void *buf, size_t cap, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            return -1;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        ssize_t n = recv(fd, buf, cap, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n < 0 ? -1 : n;
    }
}

const char *rawhttp_header(const rawhttp_resp *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line && line[2] && !(line[2] == '\r')) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol) {
            return NULL;
        }
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            snprintf(buf, len, "%.*s", (int)(eol - v), v);
            return buf;
        }
        line = eol;
    }
    return NULL;
}

void rawhttp_free(rawhttp_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->status = 0;
    r->head[0] = '\0';
}

int rawhttp_read(int fd, rawhttp_resp *r, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    size_t have = 0;
    char *end = NULL;
    rawhttp_free(r);
    /* byte by byte up to the blank line: what follows stays for the body */
    while (!end) {
        if (have + 1 >= sizeof r->head) {
            return -1;
        }
        ssize_t n = read_some(fd, r->head + have, 1, deadline);
        if (n <= 0) {
            r->head[have] = '\0';
            return -1;
        }
        have += (size_t)n;
        r->head[have] = '\0';
        end = have >= 4 ? strstr(r->head + have - 4, "\r\n\r\n") : NULL;
    }
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) {
        return -1;
    }
    char v[32];
    size_t want = 0;
    if (r->status != 204 && r->status != 304 && rawhttp_header(r, "Content-Length", v, sizeof v)) {
        want = (size_t)strtoull(v, NULL, 10);
    }
    if (want) {
        r->body = malloc(want + 1);
        if (!r->body) {
            return -1;
        }
        while (r->len < want) {
            ssize_t n = read_some(fd, r->body + r->len, want - r->len, deadline);
            if (n <= 0) {
                return -1;
            }
            r->len += (size_t)n;
        }
        r->body[r->len] = 0;
    }
    return 0;
}

/* Reads exactly n bytes before deadline: 0 or -1. */
static int read_n(int fd, uint8_t *buf, size_t n, uint64_t deadline)
{
    size_t have = 0;
    while (have < n) {
        ssize_t r = read_some(fd, buf + have, n - have, deadline);
        if (r <= 0) {
            return -1;
        }
        have += (size_t)r;
    }
    return 0;
}

long rawhttp_read_chunk(int fd, uint8_t *buf, size_t cap, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    char line[32];
    size_t n = 0;
    uint8_t crlf[2];
    /* the size line, byte by byte */
    while (n < 2 || line[n - 2] != '\r' || line[n - 1] != '\n') {
        if (n + 1 >= sizeof line || read_n(fd, (uint8_t *)line + n, 1, deadline) != 0) {
            return -1;
        }
        n++;
    }
    line[n] = '\0';
    char *end;
    unsigned long len = strtoul(line, &end, 16);
    if (end == line || len > cap) {
        return -1;
    }
    if (read_n(fd, buf, len, deadline) != 0 || read_n(fd, crlf, 2, deadline) != 0 ||
        crlf[0] != '\r' || crlf[1] != '\n') {
        return -1;
    }
    return (long)len;
}

int rawhttp_quiet(int fd, unsigned wait_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, (int)wait_ms) == 0;
}

int rawhttp_closed(int fd, unsigned wait_ms)
{
    uint64_t deadline = now_ms() + wait_ms;
    char b[512];
    for (;;) {
        ssize_t n = read_some(fd, b, sizeof b, deadline);
        if (n == 0) {
            return 1;
        }
        if (n < 0) {
            return errno == ECONNRESET;
        }
    }
}

int rawhttp_do(uint16_t port, const char *method, const char *path, const char *headers,
               const void *body, size_t len, rawhttp_resp *r, unsigned timeout_ms)
{
    int fd = rawhttp_connect(port);
    if (fd < 0) {
        return -1;
    }
    int rc = rawhttp_send(fd, method, path, headers, body, len);
    if (rc == 0) {
        rc = rawhttp_read(fd, r, timeout_ms);
    }
    close(fd);
    return rc;
}

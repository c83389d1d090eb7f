#include "rawws.h"

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

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define STEP_MS 20u           /* receive timeout: how often a bounded loop looks at its clock */
#define SEND_TIMEOUT_MS 2000u /* one send() blocks at most this long */
#define SEND_TOTAL_MS 5000u   /* one whole write gives up after this */
#define MSG_MAX (64u << 20)   /* largest frame or message accepted, bytes */
#define HEAD_TIMEOUT_MS 2000u /* the server reads an upgrade request within this */
#define HTTP_LINGER_MS 300u   /* after an HTTP answer, wait this long for the peer's FIN */

uint64_t rawws_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_timeouts(int fd)
{
    struct timeval rcv = {0, (long)STEP_MS * 1000};
    struct timeval snd = {SEND_TIMEOUT_MS / 1000, (long)(SEND_TIMEOUT_MS % 1000) * 1000};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void rawws_conn_init(rawws_conn *c, int fd, int mask)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->mask = mask;
    c->answer_pings = 1;
    c->answer_close = 1;
    c->close_status = -1;
    if (fd >= 0) {
        set_timeouts(fd);
    }
}

void rawws_conn_close(rawws_conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->in);
    free(c->frag);
    c->in = NULL;
    c->frag = NULL;
    c->in_len = c->in_cap = c->frag_len = 0;
}

void rawws_msg_free(rawws_msg *m)
{
    free(m->data);
    m->data = NULL;
    m->len = 0;
}

static void mark_closed(rawws_conn *c)
{
    if (!c->closed_at) {
        c->closed_at = rawws_now_ms();
    }
}

/* ---- bytes in and out ---- */

int rawws_send_raw(rawws_conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t deadline = rawws_now_ms() + SEND_TOTAL_MS;
    if (c->fd < 0) {
        return -1;
    }
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) &&
            rawws_now_ms() < deadline) {
            continue;
        }
        return -1;
    }
    return 0;
}

/* Reads more bytes into c->in. 1: got some; 0: the deadline (or stop, or the
 * connection's own limit) came first; -1: EOF or a socket error. Data already
 * waiting is always read before stop is looked at. */
static int fill(rawws_conn *c, uint64_t deadline)
{
    uint8_t tmp[65536];
    if (c->fd < 0 || c->eof) {
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n > 0) {
            if (c->in_len + (size_t)n > c->in_cap) {
                size_t cap = c->in_cap ? c->in_cap : 65536;
                while (cap < c->in_len + (size_t)n) {
                    cap *= 2;
                }
                uint8_t *q = realloc(c->in, cap);
                if (!q) {
                    return -1;
                }
                c->in = q;
                c->in_cap = cap;
            }
            memcpy(c->in + c->in_len, tmp, (size_t)n);
            c->in_len += (size_t)n;
            return 1;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c->eof = 1;
            mark_closed(c);
            return -1;
        }
        uint64_t now = rawws_now_ms();
        if (now >= deadline || (c->give_up_at && now >= c->give_up_at) ||
            (c->stop && atomic_load(c->stop))) {
            return 0;
        }
    }
}

static void consume(rawws_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* ---- frames ---- */

static uint32_t next_mask(void)
{
    static _Thread_local uint32_t x = 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

static int send_frame(rawws_conn *c, int fin, int opcode, const void *data, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mbit = c->mask ? 0x80 : 0;
    if (len < 126) {
        hdr[h++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        hdr[h++] = (uint8_t)(mbit | 126);
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = (uint8_t)(mbit | 127);
        for (int i = 7; i >= 0; i--) {
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    uint8_t key[4] = {0, 0, 0, 0};
    if (c->mask) {
        uint32_t k = next_mask();
        memcpy(key, &k, 4);
        memcpy(hdr + h, key, 4);
        h += 4;
    }
    uint8_t *frame = malloc(h + len + 1);
    if (!frame) {
        return -1;
    }
    memcpy(frame, hdr, h);
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        frame[h + i] = (uint8_t)(p[i] ^ key[i % 4]);
    }
    int rc = rawws_send_raw(c, frame, h + len);
    free(frame);
    if (rc == 0 && opcode == RAWWS_CLOSE) {
        c->sent_close = 1;
    }
    return rc;
}

int rawws_send(rawws_conn *c, int opcode, const void *data, size_t len)
{
    return send_frame(c, 1, opcode, data, len);
}

int rawws_send_fragmented(rawws_conn *c, int opcode, const void *data, size_t len, size_t piece,
                          int ping_between)
{
    const uint8_t *p = data;
    size_t off = 0;
    int first = 1;
    if (piece == 0) {
        return -1;
    }
    do {
        size_t n = len - off < piece ? len - off : piece;
        int fin = off + n == len;
        if (send_frame(c, fin, first ? opcode : RAWWS_CONT, p + off, n) != 0) {
            return -1;
        }
        if (first && ping_between && !fin && send_frame(c, 1, RAWWS_PING, "rawws", 5) != 0) {
            return -1;
        }
        first = 0;
        off += n;
    } while (off < len);
    return 0;
}

int rawws_send_close(rawws_conn *c, int status)
{
    uint8_t b[2] = {0, 0};
    if (status < 0) {
        return send_frame(c, 1, RAWWS_CLOSE, b, 0);
    }
    b[0] = (uint8_t)(status >> 8);
    b[1] = (uint8_t)status;
    return send_frame(c, 1, RAWWS_CLOSE, b, 2);
}

typedef struct frame {
    int fin;       /* FIN bit */
    int opcode;    /* frame opcode */
    uint8_t *data; /* unmasked payload, malloc'd with a NUL after it */
    size_t len;    /* payload bytes */
} frame;

/* Takes one whole frame off c->in. 1: done; 0: more bytes needed; -1: broken. */
static int parse_frame(rawws_conn *c, frame *f)
{
    const uint8_t *b = c->in;
    size_t need = 2;
    if (c->in_len < need) {
        return 0;
    }
    int masked = (b[1] & 0x80) != 0;
    uint64_t len = b[1] & 0x7f;
    if (len == 126) {
        need += 2;
        if (c->in_len < need) {
            return 0;
        }
        len = (uint64_t)b[2] << 8 | b[3];
    } else if (len == 127) {
        need += 8;
        if (c->in_len < need) {
            return 0;
        }
        len = 0;
        for (int i = 0; i < 8; i++) {
            len = len << 8 | b[2 + i];
        }
    }
    if (len > MSG_MAX) {
        return -1;
    }
    size_t key_at = need;
    need += masked ? 4 : 0;
    if (c->in_len < need + len) {
        return 0;
    }
    f->fin = (b[0] & 0x80) != 0;
    f->opcode = b[0] & 0x0f;
    f->len = (size_t)len;
    f->data = malloc(f->len + 1);
    if (!f->data) {
        return -1;
    }
    for (size_t i = 0; i < f->len; i++) {
        uint8_t k = masked ? b[key_at + i % 4] : 0;
        f->data[i] = (uint8_t)(b[need + i] ^ k);
    }
    f->data[f->len] = 0;
    consume(c, need + f->len);
    return 1;
}

/* Appends a fragment to the message in progress. 0 or -1. */
static int frag_append(rawws_conn *c, const frame *f)
{
    if (c->frag_len + f->len > MSG_MAX) {
        return -1;
    }
    uint8_t *q = realloc(c->frag, c->frag_len + f->len + 1);
    if (!q) {
        return -1;
    }
    c->frag = q;
    memcpy(c->frag + c->frag_len, f->data, f->len);
    c->frag_len += f->len;
    c->frag[c->frag_len] = 0;
    return 0;
}

/* Handles one frame. 1: a message is complete in *m; 0: keep reading; -1: broken. */
static int on_frame(rawws_conn *c, frame *f, rawws_msg *m)
{
    switch (f->opcode) {
    case RAWWS_PING:
        c->pings++;
        if (c->answer_pings && !c->sent_close) {
            send_frame(c, 1, RAWWS_PONG, f->data, f->len);
        }
        free(f->data);
        return 0;
    case RAWWS_PONG:
        c->pongs++;
        free(f->data);
        return 0;
    case RAWWS_CLOSE:
        c->got_close = 1;
        mark_closed(c);
        c->close_status = f->len >= 2 ? (f->data[0] << 8 | f->data[1]) : -1;
        if (c->answer_close && !c->sent_close) {
            rawws_send_close(c, c->close_status >= 0 ? c->close_status : -1);
        }
        m->opcode = RAWWS_CLOSE;
        m->data = f->data;
        m->len = f->len;
        return 1;
    case RAWWS_TEXT:
    case RAWWS_BINARY:
        if (c->frag_op) {
            free(f->data);
            return -1; /* a new message inside a fragmented one */
        }
        if (f->fin) {
            m->opcode = f->opcode;
            m->data = f->data;
            m->len = f->len;
            return 1;
        }
        c->frag_op = f->opcode;
        c->frag_len = 0;
        break;
    case RAWWS_CONT:
        if (!c->frag_op) {
            free(f->data);
            return -1;
        }
        break;
    default:
        free(f->data);
        return -1;
    }
    int rc = frag_append(c, f);
    free(f->data);
    if (rc != 0) {
        return -1;
    }
    if (!f->fin) {
        return 0;
    }
    m->opcode = c->frag_op;
    m->data = c->frag;
    m->len = c->frag_len;
    c->frag = NULL;
    c->frag_len = 0;
    c->frag_op = 0;
    if (!m->data) {
        m->data = calloc(1, 1); /* an empty fragmented message */
    }
    return m->data ? 1 : -1;
}

int rawws_read_msg(rawws_conn *c, rawws_msg *m, unsigned timeout_ms)
{
    uint64_t deadline = rawws_now_ms() + timeout_ms;
    memset(m, 0, sizeof *m);
    if (c->got_close) {
        return -1;
    }
    for (;;) {
        frame f;
        int r = parse_frame(c, &f);
        if (r < 0) {
            return -1;
        }
        if (r > 0) {
            r = on_frame(c, &f, m);
            if (r != 0) {
                return r;
            }
            continue;
        }
        r = fill(c, deadline);
        if (r <= 0) {
            return r;
        }
    }
}

int rawws_wait_eof(rawws_conn *c, unsigned timeout_ms)
{
    uint64_t deadline = rawws_now_ms() + timeout_ms;
    while (!c->eof) {
        frame f;
        rawws_msg m;
        int r = parse_frame(c, &f);
        if (r > 0) {
            memset(&m, 0, sizeof m);
            if (on_frame(c, &f, &m) > 0) {
                rawws_msg_free(&m);
            }
            continue;
        }
        if (r < 0) {
            c->in_len = 0; /* broken framing: only the EOF matters now */
        }
        if (fill(c, deadline) == 0) {
            return 0;
        }
    }
    return 1;
}

/* ---- HTTP heads ---- */

int rawws_header(const char *head, const char *name, char *out, size_t out_len)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        if (line[0] == '\r' || line[0] == 0) {
            break;
        }
        const char *end = strstr(line, "\r\n");
        if (!end) {
            end = line + strlen(line);
        }
        if ((size_t)(end - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < end && (*v == ' ' || *v == '\t')) {
                v++;
            }
            size_t vlen = (size_t)(end - v);
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
                vlen--;
            }
            if (out_len > 0) {
                if (vlen >= out_len) {
                    vlen = out_len - 1;
                }
                memcpy(out, v, vlen);
                out[vlen] = 0;
            }
            return 1;
        }
        line = *end ? end : NULL;
    }
    return 0;
}

/* Reads an HTTP head (up to the blank line) into c->head; bytes after it stay
 * in c->in. 0, or -1 on EOF, timeout or a head too long. */
static int read_head(rawws_conn *c, uint64_t deadline)
{
    for (;;) {
        for (size_t i = 3; i < c->in_len; i++) {
            if (memcmp(c->in + i - 3, "\r\n\r\n", 4) == 0) {
                if (i + 1 >= sizeof c->head) {
                    return -1;
                }
                memcpy(c->head, c->in, i + 1);
                c->head[i + 1] = 0;
                consume(c, i + 1);
                return 0;
            }
        }
        if (c->in_len >= sizeof c->head) {
            return -1;
        }
        if (fill(c, deadline) <= 0) {
            return -1;
        }
    }
}

/* base64(SHA-1(key + GUID)) into out[29]. */
static void accept_for(const char *key, char out[29])
{
    char buf[256];
    unsigned char digest[SHA_DIGEST_LENGTH];
    snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, strlen(buf), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

/* ---- client ---- */

int rawws_connect(rawws_conn *c, uint16_t port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    rawws_conn_init(c, fd, 1);
    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rawws_conn_close(c);
        return -1;
    }
    return 0;
}

int rawws_upgrade(rawws_conn *c, uint16_t port, const char *protocol, unsigned timeout_ms)
{
    unsigned char nonce[16];
    char key[32], expect[29], got[128], proto_line[160] = "", req[1024];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce);
    if (protocol) {
        snprintf(proto_line, sizeof proto_line, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    }
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%u\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "\r\n",
                     (unsigned)port, key, proto_line);
    if (rawws_send_raw(c, req, (size_t)n) != 0 || read_head(c, rawws_now_ms() + timeout_ms) != 0) {
        return -1;
    }
    c->upgraded_at = rawws_now_ms();
    c->status = 0;
    if (strncmp(c->head, "HTTP/1.1 ", 9) == 0) {
        c->status = atoi(c->head + 9);
    }
    if (c->status != 101) {
        return -1;
    }
    accept_for(key, expect);
    if (!rawws_header(c->head, "Sec-WebSocket-Accept", got, sizeof got) ||
        strcmp(got, expect) != 0) {
        return -1;
    }
    if (protocol && (!rawws_header(c->head, "Sec-WebSocket-Protocol", got, sizeof got) ||
                     strcmp(got, protocol) != 0)) {
        return -1;
    }
    return 0;
}

int rawws_open(rawws_conn *c, uint16_t port)
{
    if (rawws_connect(c, port) != 0) {
        return -1;
    }
    return rawws_upgrade(c, port, "tether.v1", 3000);
}

int rawws_http(uint16_t port, const char *request, char *resp, size_t resp_len, unsigned timeout_ms)
{
    rawws_conn c;
    int status = -1;
    if (rawws_connect(&c, port) != 0) {
        return -1;
    }
    if (rawws_send_raw(&c, request, strlen(request)) == 0 &&
        read_head(&c, rawws_now_ms() + timeout_ms) == 0) {
        if (strncmp(c.head, "HTTP/1.", 7) == 0 && strlen(c.head) > 9) {
            status = atoi(c.head + 9);
        }
        if (resp && resp_len) {
            snprintf(resp, resp_len, "%s", c.head);
        }
    }
    rawws_conn_close(&c);
    return status;
}

/* ---- the scripted server ---- */

struct rawws_server {
    rawws_server_cfg cfg; /* copy, defaults filled */
    int lfd;              /* the listening socket */
    uint16_t port;        /* its port */
    pthread_t thread;     /* runs serve() */
    atomic_int stop;      /* asks the thread (and scripts' reads) to finish */
    atomic_uint accepted; /* TCP connections accepted */
    atomic_uint done;     /* answered connections finished */
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 407:
        return "Proxy Authentication Required";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Refused";
    }
}

/* Answers the upgrade request in c->head. 1: a 101 went out; 0: anything else. */
static int answer(rawws_server *s, rawws_conn *c)
{
    const rawws_server_cfg *k = &s->cfg;
    char key[128] = "", acc[29], resp[1024], body[256];
    int n;

    if (k->answer == RAWWS_HTTP) {
        const char *extra = "";
        if (k->status == 401) {
            extra = "WWW-Authenticate: Bearer realm=\"tether\"\r\n";
        } else if (k->status == 429 || k->status == 503) {
            extra = "Retry-After: 1\r\n";
        }
        snprintf(body, sizeof body, "%s",
                 k->body ? k->body : "the raw test server refuses this upgrade\n");
        n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s",
                     k->status, reason_phrase(k->status), strlen(body), extra, body);
        rawws_send_raw(c, resp, (size_t)n);
        shutdown(c->fd, SHUT_WR);
        rawws_wait_eof(c, HTTP_LINGER_MS);
        return 0;
    }
    rawws_header(c->head, "Sec-WebSocket-Key", key, sizeof key);
    if (k->answer == RAWWS_BAD_ACCEPT) {
        size_t kl = strlen(key);
        if (kl > 0) {
            key[0] = key[0] == 'A' ? 'B' : 'A'; /* the accept of a different key */
        }
    }
    accept_for(key, acc);
    const char *proto = "Sec-WebSocket-Protocol: tether.v1\r\n";
    if (k->answer == RAWWS_NO_PROTOCOL) {
        proto = "";
    } else if (k->answer == RAWWS_OTHER_PROTOCOL) {
        proto = "Sec-WebSocket-Protocol: chat.v9\r\n";
    }
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "%s"
                 "\r\n",
                 acc, proto);
    if (rawws_send_raw(c, resp, (size_t)n) != 0) {
        return 0;
    }
    c->upgraded_at = rawws_now_ms();
    return 1;
}

static void *serve(void *arg)
{
    rawws_server *s = arg;
    uint64_t end = rawws_now_ms() + s->cfg.lifetime_ms;
    while (!atomic_load(&s->stop) && rawws_now_ms() < end) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, (int)STEP_MS) <= 0) {
            continue;
        }
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        unsigned index = atomic_fetch_add(&s->accepted, 1);
        if (index >= s->cfg.max_conns) {
            close(fd); /* only counted: the test checks whether the client came back */
            continue;
        }
        rawws_conn c;
        rawws_conn_init(&c, fd, 0);
        c.stop = &s->stop;
        c.give_up_at = end;
        if (read_head(&c, rawws_now_ms() + HEAD_TIMEOUT_MS) == 0 && answer(s, &c)) {
            if (s->cfg.script) {
                s->cfg.script(&c, index, s->cfg.arg);
            } else {
                rawws_wait_eof(&c, (unsigned)(end - rawws_now_ms()));
            }
        }
        rawws_conn_close(&c);
        atomic_fetch_add(&s->done, 1);
    }
    return NULL;
}

int rawws_server_start(const rawws_server_cfg *cfg, rawws_server **out)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int one = 1;
    rawws_server *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) {
        return -1;
    }
    s->cfg = *cfg;
    s->cfg.max_conns = s->cfg.max_conns ? s->cfg.max_conns : 1;
    s->cfg.lifetime_ms = s->cfg.lifetime_ms ? s->cfg.lifetime_ms : 10000;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->lfd < 0) {
        free(s);
        return -1;
    }
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s->lfd, 16) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&sa, &sl) != 0) {
        close(s->lfd);
        free(s);
        return -1;
    }
    s->port = ntohs(sa.sin_port);
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        close(s->lfd);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

uint16_t rawws_server_port(const rawws_server *s)
{
    return s->port;
}

unsigned rawws_server_accepted(rawws_server *s)
{
    return atomic_load(&s->accepted);
}

unsigned rawws_server_done(rawws_server *s)
{
    return atomic_load(&s->done);
}

void rawws_server_stop(rawws_server *s)
{
    if (!s) {
        return;
    }
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    free(s);
}

/*
 * The client's HTTP carriage against a scripted loopback server (one thread
 * per TCP connection, blocking sockets): a failed send is retried with the
 * same frames under the same numbers and the next send continues the
 * numbering (HTTP.md section 8.1); a 404 to a poll ends the connection and
 * the client opens a new one; an open answered by a 200 that is not the
 * carriage's (a captive portal) is reported with its status.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/frame.h"
#include "engine/httpcarry.h"
#include "harness.h"
#include "itest.h"

#define WAIT_MS 20000
#define MAX_SENDS 64

/* The script and what the fake saw. Every field is guarded by mu. */
typedef struct fake {
    pthread_mutex_t mu;
    int lfd;                   /* listening socket */
    uint16_t port;             /* its port */
    int stop;                  /* 1: threads end */
    int fail_sends;            /* answer this many sends 503 first */
    int poll_404_once;         /* answer the first poll of each open 404 once */
    int portal;                /* answer opens 200 text/html */
    int opens;                 /* open requests seen */
    int polls_404;             /* polls answered 404 */
    int nsends;                /* send requests seen */
    uint64_t first[MAX_SENDS]; /* their Tether-First */
    uint8_t *body[MAX_SENDS];  /* their bodies */
    size_t blen[MAX_SENDS];    /* their lengths */
    int status[MAX_SENDS];     /* what each was answered */
} fake;

static fake F;

/* Reads one request: method, target, Tether-First, body. 0 or -1 (closed). */
static int read_req(int fd, char *method, char *target, uint64_t *first, uint8_t **body,
                    size_t *blen)
{
    char head[8192];
    size_t n = 0;
    while (n < sizeof head - 1) {
        ssize_t r = recv(fd, head + n, 1, 0);
        if (r <= 0) {
            return -1;
        }
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    head[n] = '\0';
    if (sscanf(head, "%15s %1023s", method, target) != 2) {
        return -1;
    }
    size_t cl = 0;
    *first = 0;
    for (char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
            cl = strtoul(l + 17, NULL, 10);
        } else if (strncasecmp(l + 2, "Tether-First:", 13) == 0) {
            *first = strtoull(l + 15, NULL, 10);
        }
    }
    *body = cl ? malloc(cl) : NULL;
    for (size_t got = 0; got < cl;) {
        ssize_t r = recv(fd, *body + got, cl - got, 0);
        if (r <= 0) {
            free(*body);
            return -1;
        }
        got += (size_t)r;
    }
    *blen = cl;
    return 0;
}

static void answer(int fd, int status, const char *headers, const void *body, size_t len)
{
    char h[1024];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len,
                     headers);
    (void)!write(fd, h, (size_t)n);
    if (len) {
        (void)!write(fd, body, len);
    }
}

/* The WELCOME for a HELLO body, as a body of kind answer, into out. */
static size_t welcome_for(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    tether__decoder d;
    tether__frame f;
    tether__buf b;
    size_t n = 0;
    tether__decoder_init(&d, 1 << 20);
    tether__buf_init(&b, 0);
    if (len > 4 && tether__decode(&d, body + 4, len - 4, &f) == TETHER_OK &&
        f.type == TETHER__F_HELLO) {
        tether__welcome w;
        memset(&w, 0, sizeof w);
        memcpy(w.session_id, f.u.hello.session_id, sizeof w.session_id);
        w.resumed = f.u.hello.resume; /* nothing was ever sent either way */
        w.max_message = 1 << 20;
        w.window = 1024;
        tether__buf b2;
        tether__buf_init(&b2, 0);
        if (tether__encode_welcome(&b2, &w) == TETHER_OK &&
            tether__hc_append(&b, tether__buf_frame(&b2), b2.len) == TETHER_OK && b.len <= cap) {
            memcpy(out, tether__buf_frame(&b), b.len);
            n = b.len;
        }
        tether__buf_free(&b2);
    }
    tether__buf_free(&b);
    tether__decoder_free(&d);
    return n;
}

static void *conn_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char method[16], target[1024];
    uint64_t first;
    uint8_t *body;
    size_t blen;
    while (read_req(fd, method, target, &first, &body, &blen) == 0) {
        pthread_mutex_lock(&F.mu);
        if (strstr(target, "/.tether/v1/open")) {
            F.opens++;
            int portal = F.portal;
            pthread_mutex_unlock(&F.mu);
            if (portal) {
                answer(fd, 200, "Content-Type: text/html\r\n", "<html>login</html>", 18);
            } else {
                uint8_t out[256];
                size_t n = welcome_for(body, blen, out, sizeof out);
                answer(fd, 200,
                       "Content-Type: " TETHER__HC_CONTENT_TYPE
                       "\r\nTether-Connection: AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\r\n",
                       out, n);
            }
        } else if (strstr(target, "/.tether/v1/send")) {
            int i = F.nsends < MAX_SENDS ? F.nsends++ : MAX_SENDS - 1;
            F.first[i] = first;
            F.body[i] = body;
            F.blen[i] = blen;
            body = NULL;
            F.status[i] = F.fail_sends > 0 ? 503 : 204;
            F.fail_sends -= F.fail_sends > 0;
            int st = F.status[i];
            pthread_mutex_unlock(&F.mu);
            answer(fd, st, "", NULL, 0);
        } else {
            int nf = F.poll_404_once;
            F.poll_404_once = 0;
            F.polls_404 += nf;
            pthread_mutex_unlock(&F.mu);
            if (nf) {
                answer(fd, 404, "", NULL, 0);
            } else {
                sleep_ms(50); /* a short hold: nothing to send */
                answer(fd, 204, "", NULL, 0);
            }
        }
        free(body);
        pthread_mutex_lock(&F.mu);
        int stop = F.stop;
        pthread_mutex_unlock(&F.mu);
        if (stop) {
            break;
        }
    }
    close(fd);
    return NULL;
}

static void *accept_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(F.lfd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        pthread_t t;
        pthread_create(&t, NULL, conn_thread, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static pthread_t fake_start(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    pthread_t t;
    for (int i = 0; i < MAX_SENDS; i++) {
        free(F.body[i]);
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    memset(&F, 0, sizeof F);
    F.mu = mu;
    F.lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(F.lfd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(listen(F.lfd, 16), 0);
    getsockname(F.lfd, (struct sockaddr *)&a, &al);
    F.port = ntohs(a.sin_port);
    pthread_create(&t, NULL, accept_thread, NULL);
    return t;
}

static void fake_stop(pthread_t t)
{
    pthread_mutex_lock(&F.mu);
    F.stop = 1;
    pthread_mutex_unlock(&F.mu);
    shutdown(F.lfd, SHUT_RDWR);
    close(F.lfd);
    pthread_join(t, NULL);
}

static int field(int *p)
{
    pthread_mutex_lock(&F.mu);
    int v = *p;
    pthread_mutex_unlock(&F.mu);
    return v;
}

static int two_sends_ok(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&F.mu);
    int ok = 0;
    for (int i = 0; i < F.nsends; i++) {
        ok += F.status[i] == 204;
    }
    pthread_mutex_unlock(&F.mu);
    return ok >= 2;
}

static int one_send_ok(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&F.mu);
    int ok = F.nsends >= 2 && F.status[F.nsends - 1] == 204;
    pthread_mutex_unlock(&F.mu);
    return ok;
}

static size_t frames_in(const uint8_t *b, size_t len)
{
    size_t pos = 0, n = 0;
    tether__slice s;
    while (tether__hc_next(b, len, &pos, &s)) {
        n++;
    }
    return n;
}

TEST(a_failed_send_is_retried_with_the_same_frames_and_numbers)
{
    pthread_t t = fake_start();
    F.fail_sends = 2;
    cli k;
    cli_init(&k, "ws", "127.0.0.1", F.port);
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 32));
    CHECK(wait_until(one_send_ok, NULL, WAIT_MS));
    pthread_mutex_lock(&F.mu);
    int n = F.nsends;
    CHECK_EQ_INT(n, 3); /* 503, 503, then 204 */
    for (int i = 1; i < n && i < 3; i++) {
        CHECK_EQ_U64(F.first[i], F.first[0]);
        CHECK(F.blen[i] == F.blen[0] && memcmp(F.body[i], F.body[0], F.blen[0]) == 0);
    }
    CHECK_EQ_U64(F.first[0], 1);
    size_t k1 = frames_in(F.body[0], F.blen[0]);
    pthread_mutex_unlock(&F.mu);
    CHECK(k1 >= 1);
    /* the next send numbers on from there */
    CHECK_OK(send_tagged(k.c, 1, 32));
    CHECK(wait_until(two_sends_ok, NULL, WAIT_MS));
    pthread_mutex_lock(&F.mu);
    CHECK_EQ_U64(F.first[F.nsends - 1], 1 + k1);
    pthread_mutex_unlock(&F.mu);
    CHECK_EQ_INT(field(&F.opens), 1);
    cli_free(&k);
    fake_stop(t);
}

static int opened_twice(void *arg)
{
    (void)arg;
    return field(&F.opens) >= 2;
}

TEST(a_404_to_a_poll_opens_a_new_connection)
{
    pthread_t t = fake_start();
    F.poll_404_once = 1;
    cli k;
    int err = 0;
    cli_init(&k, "ws", "127.0.0.1", F.port);
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    k.cfg.backoff_base_ms = 10;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(opened_twice, NULL, WAIT_MS));
    CHECK_EQ_INT(field(&F.polls_404), 1);
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, NULL, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EPEER_CLOSED");
    cli_free(&k);
    fake_stop(t);
}

TEST(a_captive_portal_answer_is_EHTTP_200)
{
    pthread_t t = fake_start();
    F.portal = 1;
    cli k;
    int err = 0, http = 0;
    cli_init(&k, "ws", "127.0.0.1", F.port);
    k.cfg.transport = TETHER_TRANSPORT_HTTP;
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(opened_twice, NULL, WAIT_MS));
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, &http, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EHTTP");
    CHECK_EQ_INT(http, 200);
    cli_free(&k);
    fake_stop(t);
}

int main(void)
{
    RUN(a_failed_send_is_retried_with_the_same_frames_and_numbers);
    RUN(a_404_to_a_poll_opens_a_new_connection);
    RUN(a_captive_portal_answer_is_EHTTP_200);
    return tt_finish();
}

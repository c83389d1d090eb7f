/*
 * Where a server listens and what a client dials: listen addresses that are
 * not addresses, url ports out of range, the request line a url produces,
 * and the answer to an upgrade that offers only an unknown subprotocol.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"
#include "itest.h"
#include "transport/transport.h"

static int msg_has(const char *s)
{
    if (strstr(tether_errmsg(), s)) {
        return 1;
    }
    fprintf(stderr, "  errmsg \"%s\" lacks \"%s\"\n", tether_errmsg(), s);
    return 0;
}

static void bad_listen_host(const char *host)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    tether_server_config_init(&cfg);
    cfg.listen_host = host;
    cfg.port = 0;
    CHECK_ERR(tether_server_create(&cfg, &s), TETHER_ESYS);
    CHECK(s == NULL);
    CHECK(msg_has(host));
    tether_server_destroy(s);
}

TEST(a_listen_host_that_is_not_an_address_fails_create)
{
    bad_listen_host("not-an-ip!");
    bad_listen_host("256.1.1.1");
    bad_listen_host("localhost"); /* a name, not an address */
    bad_listen_host("::g");
}

TEST(an_address_not_on_this_machine_fails_create)
{
    /* 192.0.2.1 is TEST-NET-1: never configured here, so bind() fails */
    bad_listen_host("192.0.2.1");
}

TEST(a_good_listen_address_listens)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    CHECK_OK(tether_server_create(&cfg, &s));
    CHECK(tether_server_port(s) > 0);
    tether_server_destroy(s);
}

static void nop_closed(void *owner, tether__conn *c, const tether__tp_close *why)
{
    (void)owner;
    (void)c;
    (void)why;
}

TEST(the_transport_refuses_a_listen_port_out_of_range)
{
    tether__tp_cfg cfg;
    tether__tp_cb cb;
    tether__tp *tp = NULL;
    memset(&cfg, 0, sizeof cfg);
    memset(&cb, 0, sizeof cb);
    cb.closed = nop_closed;
    cfg.listen_host = "127.0.0.1";
    cfg.max_rx = 1024;
    cfg.listen_port = 70000;
    CHECK_ERR(tether__tp_create(&cfg, &cb, NULL, &tp), TETHER_ESYS);
    CHECK(tp == NULL);
    CHECK(msg_has("port 70000"));
    cfg.listen_port = -1;
    CHECK_ERR(tether__tp_create(&cfg, &cb, NULL, &tp), TETHER_ESYS);
    CHECK(tp == NULL);
}

TEST(url_ports_out_of_range_are_refused)
{
    static const char *bad[] = {"ws://127.0.0.1:99999/", "ws://127.0.0.1:65536/",
                                "ws://127.0.0.1:0/",     "ws://127.0.0.1:-1/",
                                "ws://127.0.0.1:/",      "wss://[::1]:70000/x",
                                "ws://h:12ab/",          "ws://h:4294967297/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tether_client_config cfg;
        tether_client *c = NULL;
        tether_client_config_init(&cfg);
        cfg.url = bad[i];
        CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
        CHECK(msg_has("port must be 1 to 65535"));
        CHECK_ERR(tether__tp_check_url(bad[i]), TETHER_ECONFIG);
        tether_client_destroy(c);
    }
    CHECK_OK(tether__tp_check_url("ws://127.0.0.1:65535/"));
    CHECK_OK(tether__tp_check_url("ws://127.0.0.1:1"));
    CHECK_OK(tether__tp_check_url("wss://[::1]:443/a:b")); /* a ':' in the path is no port */
    CHECK_OK(tether__tp_check_url("ws://example.com/"));  /* default port */
}

/* A plain TCP listener on 127.0.0.1; returns the fd and the port. */
static int listener(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Reads up to the end of an HTTP head (or n - 1 bytes, or 5 s). */
static size_t read_head(int fd, char *buf, size_t n)
{
    size_t got = 0;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    buf[0] = '\0';
    while (got + 1 < n && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = recv(fd, buf + got, n - 1 - got, 0);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
        buf[got] = '\0';
    }
    return got;
}

/* The request line a client sends for the url "ws://127.0.0.1:<port><rest>". */
static void request_line(const char *rest, char *line, size_t n)
{
    uint16_t port = 0;
    int lfd = listener(&port);
    char url[128], head[4096];
    tether_client_config cfg;
    tether_client *c = NULL;

    line[0] = '\0';
    CHECK(lfd >= 0);
    if (lfd < 0) {
        return;
    }
    snprintf(url, sizeof url, "ws://127.0.0.1:%u%s", port, rest);
    tether_client_config_init(&cfg);
    cfg.url = url;
    cfg.connect_timeout_ms = 3000;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_start(c));
    struct pollfd p = {lfd, POLLIN, 0};
    CHECK_EQ_INT(poll(&p, 1, 5000), 1);
    int fd = accept(lfd, NULL, NULL);
    CHECK(fd >= 0);
    if (fd >= 0) {
        read_head(fd, head, sizeof head);
        snprintf(line, n, "%.*s", (int)strcspn(head, "\r\n"), head);
        close(fd);
    }
    tether_client_destroy(c);
    close(lfd);
}

TEST(the_request_line_carries_the_path_as_written)
{
    char line[256];
    request_line("/", line, sizeof line);
    CHECK_EQ_STR(line, "GET / HTTP/1.1");
    request_line("", line, sizeof line);
    CHECK_EQ_STR(line, "GET / HTTP/1.1");
    request_line("/a/b?x=1", line, sizeof line);
    CHECK_EQ_STR(line, "GET /a/b?x=1 HTTP/1.1");
}

/* Sends an upgrade request offering protocols to a tether server; the answer. */
static void upgrade_answer(uint16_t port, const char *protocols, char *out, size_t n)
{
    struct sockaddr_in a;
    char req[512];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    out[0] = '\0';
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    int len = snprintf(req, sizeof req,
                       "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                       port, protocols);
    CHECK_EQ_INT(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    /* read the head and whatever body follows until the server closes */
    size_t got = read_head(fd, out, n);
    while (got + 1 < n && tether__http_status(out, got) != 101) {
        ssize_t r = recv(fd, out + got, n - 1 - got, 0);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
        out[got] = '\0';
    }
    close(fd);
}

TEST(an_unknown_subprotocol_gets_a_400_that_says_why)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    char ans[2048];
    tether_server_config_init(&cfg);
    CHECK_OK(tether_server_create(&cfg, &s));
    CHECK_OK(tether_server_start(s));
    uint16_t port = tether_server_port(s);

    upgrade_answer(port, "other", ans, sizeof ans);
    CHECK_EQ_INT(tether__http_status(ans, strlen(ans)), 400);
    CHECK(strstr(ans, "speaks the subprotocol tether.v1 only") != NULL);
    if (tt_failed_checks) {
        fprintf(stderr, "  answer: %s\n", ans);
    }
    upgrade_answer(port, "chat, superchat", ans, sizeof ans);
    CHECK_EQ_INT(tether__http_status(ans, strlen(ans)), 400);
    /* tether.v1 among others is accepted */
    upgrade_answer(port, "other, tether.v1", ans, sizeof ans);
    CHECK_EQ_INT(tether__http_status(ans, strlen(ans)), 101);
    CHECK(strstr(ans, "tether.v1") != NULL);
    tether_server_destroy(s);
}

int main(void)
{
    RUN(a_listen_host_that_is_not_an_address_fails_create);
    RUN(an_address_not_on_this_machine_fails_create);
    RUN(a_good_listen_address_listens);
    RUN(the_transport_refuses_a_listen_port_out_of_range);
    RUN(url_ports_out_of_range_are_refused);
    RUN(the_request_line_carries_the_path_as_written);
    RUN(an_unknown_subprotocol_gets_a_400_that_says_why);
    return tt_finish();
}

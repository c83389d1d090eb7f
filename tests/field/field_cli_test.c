/*
 * Field: the connectivity options of the `tether` command, run as separate
 * processes (the binary in $TETHER_CLI) against scripted loopback peers
 * (fake.c), `tether serve` with certificates made by the openssl command, and
 * a real squid that wants Basic credentials (ext.c). The suite runs in a
 * network namespace of its own when it can, so that its squid test may bind
 * 127.0.0.1:443 (squid's stock rules CONNECT only there) while other suites
 * use the machine's. Every process is started here and stopped by its PID.
 */
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "field_env.h"

#define CLI_WAIT_MS 30000

/* ------------------------------------------------------------------------ */
/* Running the command                                                       */
/* ------------------------------------------------------------------------ */

/* Starts $TETHER_CLI with args (NULL-terminated, without argv[0]); stdout and
 * stderr go to tmpdir/<name>.out and .err. password: the value of
 * TETHER_PROXY_PASSWORD in its environment, NULL for none. */
static pid_t cli_spawn(const char *name, const char *password, const char *const *args)
{
    const char *bin = getenv("TETHER_CLI");
    if (bin == NULL) {
        tt_fail(__FILE__, __LINE__, "TETHER_CLI is not set (ctest sets it)");
        return -1;
    }
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/%s.out", tt_tmpdir(), name);
    snprintf(err, sizeof err, "%s/%s.err", tt_tmpdir(), name);
    const char *argv[40];
    size_t n = 0;
    argv[n++] = bin;
    while (*args && n < 39) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || nul < 0) {
            _exit(126);
        }
        dup2(o, 1);
        dup2(e, 2);
        dup2(nul, 0);
        if (password) {
            setenv("TETHER_PROXY_PASSWORD", password, 1);
        } else {
            unsetenv("TETHER_PROXY_PASSWORD");
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to timeout_ms for pid to exit; returns its exit status, or -1
 * (after SIGKILL) when it did not exit in time or died of a signal. */
static int cli_wait(pid_t pid, unsigned timeout_ms)
{
    if (pid <= 0) {
        return -1;
    }
    uint64_t end = now_ms() + timeout_ms;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        if (r < 0 || now_ms() > end) {
            fprintf(stderr, "  process %d did not exit within %u ms\n", (int)pid, timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(10000);
    }
}

/* Runs the command to its end (bounded). */
static int cli_run(const char *name, const char *password, const char *const *args)
{
    return cli_wait(cli_spawn(name, password, args), CLI_WAIT_MS);
}

/* The contents of tmpdir/<file> into buf ("" when absent). */
static const char *slurp(const char *file, char *buf, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tt_tmpdir(), file);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, len - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* How often needle occurs in hay. */
static int occurrences(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* 1 when no line of text that tether send printed ("tether send: ...")
 * appears twice; other lines (a sanitizer's report) are not its own. */
static int no_line_twice(const char *text)
{
    for (const char *a = text; *a;) {
        size_t n = strcspn(a, "\n");
        for (const char *b = a + n + (a[n] == '\n'); *b && !strncmp(a, "tether send: ", 13);) {
            size_t m = strcspn(b, "\n");
            if (m == n && memcmp(a, b, n) == 0) {
                fprintf(stderr, "  printed twice: %.*s\n", (int)n, a);
                return 0;
            }
            b += m + (b[m] == '\n');
        }
        a += n + (a[n] == '\n');
    }
    return 1;
}

/* `tether serve` on a port the OS picks, with extra args; returns its PID
 * and its port in *port, or -1. */
static pid_t serve_start(const char *name, const char *listen, const char *const *extra,
                         uint16_t *port)
{
    char pf[600];
    snprintf(pf, sizeof pf, "%s/%s.port", tt_tmpdir(), name);
    unlink(pf);
    const char *args[32] = {"serve", "--listen", listen, "--port-file", pf, "--quiet"};
    size_t n = 6;
    while (extra && *extra && n < 31) {
        args[n++] = *extra++;
    }
    args[n] = NULL;
    pid_t pid = cli_spawn(name, NULL, args);
    uint64_t end = now_ms() + 20000;
    while (pid > 0 && now_ms() < end) {
        FILE *f = fopen(pf, "r");
        unsigned p = 0;
        if (f && fscanf(f, "%u", &p) == 1 && p > 0) {
            fclose(f);
            *port = (uint16_t)p;
            return pid;
        }
        if (f) {
            fclose(f);
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            char file[128], err[2048];
            snprintf(file, sizeof file, "%s.err", name);
            fprintf(stderr, "  tether serve exited: %s\n", slurp(file, err, sizeof err));
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "  tether serve did not write its port\n");
    if (pid > 0) {
        stop_pid(pid, 2000);
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Handshake headers and the proxy password                                  */
/* ------------------------------------------------------------------------ */

/* --header and --origin reach the server in the upgrade request. */
TEST(headers_and_origin_reach_the_server)
{
    fake_server *f = fake_start(FAKE_STATUS, 401, NULL); /* permanent: send stops */
    CHECK(f != NULL);
    char url[64], req[4096], err[4096];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)fake_port(f));
    const char *args[] = {"send", url, "--count", "1", "--proxy", "",
                          "--header", "Authorization: Bearer t0k3n",
                          "--header", "X-Trace-Id: 42 43",
                          "--origin", "https://app.example", NULL};
    CHECK_EQ_INT(cli_run("hdr", NULL, args), 1);
    fake_last_request(f, req, sizeof req);
    CHECK(contains(req, "\r\nAuthorization: Bearer t0k3n\r\n"));
    CHECK(contains(req, "\r\nX-Trace-Id: 42 43\r\n"));
    CHECK(contains(req, "\r\nOrigin: https://app.example\r\n"));
    slurp("hdr.err", err, sizeof err);
    CHECK(contains(err, "STOPPED: TETHER_EHTTP"));
    CHECK(contains(err, "HTTP status 401"));
    fake_stop(f);
}

/* The proxy password comes from TETHER_PROXY_PASSWORD: a loopback "proxy"
 * answers 407 and keeps the CONNECT request it read. */
TEST(proxy_password_comes_from_the_environment)
{
    fake_server *f = fake_start(FAKE_STATUS, 407, "Proxy-Authenticate: Basic realm=\"t\"\r\n");
    CHECK(f != NULL);
    char proxy[64], req[4096], err[4096];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", (unsigned)fake_port(f));
    const char *args[] = {"send", "ws://127.0.0.1:9/", "--count", "1", "--proxy", proxy,
                          "--proxy-user", "alice", NULL};
    CHECK_EQ_INT(cli_run("pw", "s3cret", args), 1);
    fake_last_request(f, req, sizeof req);
    CHECK(contains(req, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n"));
    /* base64("alice:s3cret") */
    CHECK(contains(req, "\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"));
    slurp("pw.err", err, sizeof err);
    CHECK(contains(err, "TETHER_EPROXY_AUTH"));
    CHECK(strstr(err, "s3cret") == NULL);

    /* without the variable, the password is not invented */
    CHECK_EQ_INT(cli_run("pw2", NULL, args), 1);
    fake_last_request(f, req, sizeof req);
    CHECK(contains(req, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n"));
    CHECK(strstr(req, "YWxpY2U6czNjcmV0") == NULL);
    fake_stop(f);
}

/* ------------------------------------------------------------------------ */
/* Each distinct problem once                                                */
/* ------------------------------------------------------------------------ */

/* A 503 on every attempt is one problem, printed once; when the peer goes
 * away, refused connections are another, printed once more. (Stopping the
 * fake may cut an attempt it had accepted: a third problem, also once.) */
TEST(each_distinct_problem_is_printed_once)
{
    fake_server *f = fake_start(FAKE_STATUS, 503, NULL);
    CHECK(f != NULL);
    char url[64], err[8192], want[160];
    uint16_t port = fake_port(f);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    const char *args[] = {"send", url, "--count", "1", "--proxy", "", "--backoff-base-ms",
                          "20", "--backoff-cap-ms", "40", "--timeout-ms", "60000", NULL};
    pid_t pid = cli_spawn("once", NULL, args);
    uint64_t end = now_ms() + WAIT_MS;
    while (fake_accepted(f) < 4 && now_ms() < end) {
        usleep(10000);
    }
    CHECK(fake_accepted(f) >= 4);
    fake_stop(f); /* from now on: refused */
    snprintf(want, sizeof want, "tether send: cannot connect to %s: TETHER_ECONNREFUSED: ", url);
    while (occurrences(slurp("once.err", err, sizeof err), want) == 0 && now_ms() < end) {
        usleep(10000);
    }
    usleep(300000); /* several more refused attempts (each at most 40 ms apart) */
    kill(pid, SIGTERM);
    CHECK_EQ_INT(cli_wait(pid, CLI_WAIT_MS), 1);
    slurp("once.err", err, sizeof err);
    if (occurrences(err, "TETHER_EHTTP") != 1 || occurrences(err, want) != 1 || !no_line_twice(err)) {
        fprintf(stderr, "  stderr of send:\n%s", err);
    }
    CHECK_EQ_INT(occurrences(err, "TETHER_EHTTP"), 1);
    CHECK_EQ_INT(occurrences(err, "(HTTP status 503); retrying\n"), 1);
    CHECK_EQ_INT(occurrences(err, want), 1);
    CHECK(occurrences(err, "cannot connect to") >= 2);
    CHECK(no_line_twice(err));
}

/* ------------------------------------------------------------------------ */
/* TLS: serve --tls-cert/--tls-key/--client-ca, send --ca/--cert/--key       */
/* ------------------------------------------------------------------------ */

TEST(ca_option_trusts_the_private_ca_of_serve)
{
    if (!need_certs()) {
        return;
    }
    uint16_t port = 0;
    const char *extra[] = {"--tls-cert", C.srv, "--tls-key", C.srv_key, NULL};
    pid_t spid = serve_start("tls", "127.0.0.1:0", extra, &port);
    CHECK(spid > 0);
    if (spid <= 0) {
        return;
    }
    char url[64], err[8192];
    snprintf(url, sizeof url, "wss://127.0.0.1:%u/", (unsigned)port);
    const char *ok[] = {"send", url, "--count", "3", "--proxy", "", "--ca", C.ca, NULL};
    CHECK_EQ_INT(cli_run("ca", NULL, ok), 0);
    CHECK(contains(slurp("ca.err", err, sizeof err), "all 3 messages"));

    /* a CA that did not sign it: untrusted, retried, printed once */
    const char *other[] = {"send", url, "--count", "1", "--proxy", "", "--ca", C.other_ca,
                           "--backoff-base-ms", "20", "--backoff-cap-ms", "40",
                           "--timeout-ms", "1500", NULL};
    CHECK_EQ_INT(cli_run("ca2", NULL, other), 1);
    slurp("ca2.err", err, sizeof err);
    CHECK_EQ_INT(occurrences(err, "cannot connect to"), 1);
    CHECK(contains(err, "TETHER_ETLS_UNTRUSTED"));

    /* --insecure accepts it, with the library's warning */
    const char *insecure[] = {"send", url, "--count", "1", "--proxy", "", "--insecure", NULL};
    CHECK_EQ_INT(cli_run("insecure", NULL, insecure), 0);
    CHECK(contains(slurp("insecure.err", err, sizeof err), "WARNING"));
    CHECK_EQ_INT(stop_pid(spid, 5000), 0);
}

TEST(client_certificate_options_against_client_ca)
{
    if (!need_certs()) {
        return;
    }
    uint16_t port = 0;
    const char *extra[] = {"--tls-cert", C.srv, "--tls-key", C.srv_key, "--client-ca", C.ca,
                           NULL};
    pid_t spid = serve_start("mtls", "127.0.0.1:0", extra, &port);
    CHECK(spid > 0);
    if (spid <= 0) {
        return;
    }
    char url[64], err[8192];
    snprintf(url, sizeof url, "wss://127.0.0.1:%u/", (unsigned)port);
    const char *ok[] = {"send", url, "--count", "2", "--proxy", "", "--ca", C.ca,
                        "--cert", C.cli, "--key", C.cli_key, NULL};
    CHECK_EQ_INT(cli_run("mtls", NULL, ok), 0);
    const char *none[] = {"send", url, "--count", "1", "--proxy", "", "--ca", C.ca,
                          "--backoff-base-ms", "20", "--backoff-cap-ms", "40",
                          "--timeout-ms", "1500", NULL};
    CHECK_EQ_INT(cli_run("nocert", NULL, none), 1);
    slurp("nocert.err", err, sizeof err);
    CHECK_EQ_INT(occurrences(err, "cannot connect to"), 1);
    CHECK(contains(err, "TETHER_ETLS"));
    const char *rogue[] = {"send", url, "--count", "1", "--proxy", "", "--ca", C.ca,
                           "--cert", C.rogue, "--key", C.rogue_key,
                           "--backoff-base-ms", "20", "--backoff-cap-ms", "40",
                           "--timeout-ms", "1500", NULL};
    CHECK_EQ_INT(cli_run("rogue", NULL, rogue), 1);
    CHECK(contains(slurp("rogue.err", err, sizeof err), "TETHER_ETLS"));
    CHECK_EQ_INT(stop_pid(spid, 5000), 0);
}

/* ------------------------------------------------------------------------ */
/* A real squid with Basic credentials                                       */
/* ------------------------------------------------------------------------ */

/* wss through squid (stock rules, Basic auth) to `tether serve` on
 * 127.0.0.1:443: the password from the environment gets through; a wrong one
 * stops the sender with the proxy's 407. */
TEST(squid_with_credentials_from_the_environment)
{
    if (!need_certs()) {
        return;
    }
    uint16_t port = 0;
    const char *extra[] = {"--tls-cert", C.srv, "--tls-key", C.srv_key, NULL};
    pid_t spid = serve_start("sq443", "127.0.0.1:443", extra, &port);
    if (spid <= 0) {
        tt_fail(__FILE__, __LINE__,
                "cannot serve on 127.0.0.1:443: squid's stock rules CONNECT only to port 443; "
                "run as root, or free port 443");
        return;
    }
    squid sq;
    if (squid_start(&sq, "alice", "s3cret") != 0) {
        tt_fail(__FILE__, __LINE__, "squid did not start");
        stop_pid(spid, 5000);
        return;
    }
    char proxy[64], err[8192];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", (unsigned)sq.port);
    const char *args[] = {"send", "wss://127.0.0.1:443/", "--count", "3", "--ca", C.ca,
                          "--proxy", proxy, "--proxy-user", "alice", NULL};
    CHECK_EQ_INT(cli_run("squid", "s3cret", args), 0);
    CHECK(squid_log_count(&sq, "CONNECT 127.0.0.1:443") >= 1);
    CHECK(squid_log_count(&sq, " alice ") >= 1);

    CHECK_EQ_INT(cli_run("squid2", "wrong", args), 1);
    slurp("squid2.err", err, sizeof err);
    CHECK(contains(err, "STOPPED: TETHER_EPROXY_AUTH"));
    squid_stop(&sq);
    CHECK_EQ_INT(stop_pid(spid, 5000), 0);
}

/* ------------------------------------------------------------------------ */

/* A network namespace of the suite's own with loopback up, so port 443 is
 * ours; 0, or -1 where namespaces cannot be made (then the machine's is used). */
static int own_network(void)
{
    if (unshare(CLONE_NEWNET) != 0) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 ? 0 : -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
        rc = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (own_network() != 0) {
        fprintf(stderr, "field_cli: no network namespace of its own (%s); using the machine's\n",
                strerror(errno));
    }
    RUN(headers_and_origin_reach_the_server);
    RUN(proxy_password_comes_from_the_environment);
    RUN(each_distinct_problem_is_printed_once);
    RUN(ca_option_trusts_the_private_ca_of_serve);
    RUN(client_certificate_options_against_client_ca);
    RUN(squid_with_credentials_from_the_environment);
    return tt_finish();
}

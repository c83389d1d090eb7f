#include "ext.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake.h"
#include "harness.h"
#include "procs.h"

static void msleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int have_program(const char *name)
{
    char cmd[600];
    if (name[0] == '/') {
        return access(name, X_OK) == 0;
    }
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "field: command failed (%d): %s\n", rc, cmd);
        return -1;
    }
    return 0;
}

/* ---- certificates ---- */

/* key + CSR + certificate signed by ca (or self-signed when ca is NULL); ext holds
 * the certificate's extension lines. */
static int make_cert(const char *dir, const char *name, const char *cn, const char *ca,
                     const char *days, const char *ext)
{
    char cmd[4096], signer[300], path[700];
    snprintf(path, sizeof path, "%s/%s.ext", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    fputs(ext, f);
    fclose(f);
    if (ca) {
        snprintf(signer, sizeof signer, "-CA %s.pem -CAkey %s.key -CAcreateserial", ca, ca);
    } else {
        snprintf(signer, sizeof signer, "-signkey %s.key", name);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s.key -out %s.csr -subj '/CN=%s' 2>/dev/null && "
             "openssl x509 -req -in %s.csr %s -days %s -extfile %s.ext -out %s.pem 2>/dev/null",
             dir, name, name, cn, name, signer, days, name, name);
    return run(cmd);
}

int certs_make(certs *c)
{
    static int made;
    static certs cache;
    if (made) {
        *c = cache;
        return 0;
    }
    memset(c, 0, sizeof *c);
    if (!have_program("openssl")) {
        fprintf(stderr, "field: the openssl command is missing (quickstart.sh installs it)\n");
        return -1;
    }
    snprintf(c->dir, sizeof c->dir, "%s/certs", tt_tmpdir());
    mkdir(c->dir, 0700);
    /* CAs: self-signed, marked as CAs */
    static const char ca_ext[] =
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n";
    static const char srv_ext[] =
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
    if (make_cert(c->dir, "ca", "tether test CA", NULL, "30", ca_ext) ||
        make_cert(c->dir, "otherca", "some other CA", NULL, "30", ca_ext) ||
        make_cert(c->dir, "server", "127.0.0.1", "ca", "30", srv_ext) ||
        make_cert(c->dir, "wrong", "wrong.example", "ca", "30",
                  "subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth\n") ||
        make_cert(c->dir, "expired", "127.0.0.1", "ca", "-1", srv_ext) ||
        make_cert(c->dir, "unknown", "127.0.0.1", "otherca", "30", srv_ext) ||
        make_cert(c->dir, "client", "tether client", "ca", "30", "extendedKeyUsage=clientAuth\n") ||
        make_cert(c->dir, "rogue", "rogue client", "otherca", "30",
                  "extendedKeyUsage=clientAuth\n")) {
        return -1;
    }
#define P(field, name)                                                                             \
    snprintf(c->field, sizeof c->field, "%s/%s.pem", c->dir, name);                                \
    snprintf(c->field##_key, sizeof c->field##_key, "%s/%s.key", c->dir, name)
    P(ca, "ca");
    P(other_ca, "otherca");
    P(srv, "server");
    P(wrong, "wrong");
    P(expired, "expired");
    P(unknown, "unknown");
    P(cli, "client");
    P(rogue, "rogue");
#undef P
    cache = *c;
    made = 1;
    return 0;
}

/* ---- processes ---- */

int stop_pid(pid_t pid, unsigned wait_ms)
{
    int status = 0;
    if (pid <= 0) {
        return -1;
    }
    kill(pid, SIGTERM);
    for (unsigned t = 0; t < wait_ms; t += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        msleep(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

static pid_t spawn(char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void show_log(const char *path)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "tail -n 15 '%s' >&2", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "(no log at %s)\n", path);
    }
}

static int squid_run(squid *s, const char *auth_user, const char *auth_pass, uint16_t upstream);

int squid_start(squid *s, const char *auth_user, const char *auth_pass)
{
    return squid_run(s, auth_user, auth_pass, 0);
}

int squid_start_reverse(squid *s, uint16_t upstream)
{
    return squid_run(s, NULL, NULL, upstream);
}

static int squid_run(squid *s, const char *auth_user, const char *auth_pass, uint16_t upstream)
{
    static int n;
    char conf[700], log[700], cmd[2000], clog[700];
    FILE *f;

    memset(s, 0, sizeof *s);
    if (!have_program("/usr/sbin/squid")) {
        fprintf(stderr, "field: squid is not installed (quickstart.sh installs it): "
                        "apt-get install squid\n");
        return -1;
    }
    /* squid drops root for the "proxy" user: its directory must be writable by it */
    chmod(tt_tmpdir(), 0711);
    snprintf(s->dir, sizeof s->dir, "%s/squid%d", tt_tmpdir(), n++);
    mkdir(s->dir, 0777);
    chmod(s->dir, 0777);
    if (auth_user) {
        snprintf(cmd, sizeof cmd,
                 "printf '%%s:%%s\\n' '%s' \"$(openssl passwd -1 '%s')\" > '%s/passwd'"
                 " && chmod 644 '%s/passwd'",
                 auth_user, auth_pass, s->dir, s->dir);
        if (run(cmd)) {
            return -1;
        }
    }
    for (int tries = 0; tries < 3; tries++) {
        s->port = free_port();
        snprintf(conf, sizeof conf, "%s/squid.conf", s->dir);
        snprintf(log, sizeof log, "%s/squid.out", s->dir);
        f = fopen(conf, "w");
        if (!f) {
            return -1;
        }
        /* Debian 12's stock access rules, verbatim, then this test's own settings */
        fprintf(f, "acl localnet src 10.0.0.0/8\n"
                   "acl localnet src 172.16.0.0/12\n"
                   "acl localnet src 192.168.0.0/16\n"
                   "acl localnet src fc00::/7\n"
                   "acl localnet src fe80::/10\n"
                   "acl SSL_ports port 443\n"
                   "acl Safe_ports port 80\n"
                   "acl Safe_ports port 21\n"
                   "acl Safe_ports port 443\n"
                   "acl Safe_ports port 70\n"
                   "acl Safe_ports port 210\n"
                   "acl Safe_ports port 1025-65535\n"
                   "acl Safe_ports port 280\n"
                   "acl Safe_ports port 488\n"
                   "acl Safe_ports port 591\n"
                   "acl Safe_ports port 777\n"
                   "http_access deny !Safe_ports\n"
                   "http_access deny CONNECT !SSL_ports\n"
                   "http_access allow localhost manager\n"
                   "http_access deny manager\n");
        if (auth_user) {
            fprintf(f,
                    "auth_param basic program /usr/lib/squid/basic_ncsa_auth %s/passwd\n"
                    "auth_param basic children 2\n"
                    "auth_param basic realm tether-test\n"
                    "acl authed proxy_auth REQUIRED\n"
                    "http_access deny !authed\n",
                    s->dir);
        }
        if (upstream) {
            /* a reverse proxy: everything goes to the one origin server, never
             * cached, and Upgrade is taken off every request it forwards */
            fprintf(f,
                    "http_port 127.0.0.1:%u accel defaultsite=127.0.0.1 no-vhost\n"
                    "cache_peer 127.0.0.1 parent %u 0 no-query originserver name=origin\n"
                    "cache_peer_access origin allow all\n"
                    "cache deny all\n"
                    "request_header_access Upgrade deny all\n",
                    s->port, upstream);
        } else {
            fprintf(f, "http_port 127.0.0.1:%u\n", s->port);
        }
        fprintf(f,
                "http_access allow localhost\n"
                "http_access deny all\n"
                "pid_filename %s/squid.pid\n"
                "access_log stdio:%s/access.log\n"
                "cache_log %s/cache.log\n"
                "cache_store_log none\n"
                "coredump_dir %s\n"
                "visible_hostname tether-test\n"
                "dns_nameservers 127.0.0.1\n"
                "shutdown_lifetime 0 seconds\n"
                "netdb_filename none\n"
                "logfile_rotate 0\n",
                s->dir, s->dir, s->dir, s->dir);
        fclose(f);
        char *argv[] = {"/usr/sbin/squid", "-N", "-f", conf, NULL};
        s->pid = spawn(argv, log);
        if (s->pid > 0 && wait_port(s->port, 20000)) {
            return 0;
        }
        fprintf(stderr, "field: squid did not start on port %u; its log:\n", s->port);
        snprintf(clog, sizeof clog, "%s/cache.log", s->dir);
        show_log(clog);
        show_log(log);
        stop_pid(s->pid, 2000);
        s->pid = 0;
    }
    return -1;
}

int squid_log_count(squid *s, const char *needle)
{
    char path[700];
    snprintf(path, sizeof path, "%s/access.log", s->dir);
    return procs_count_lines(path, needle);
}

void squid_stop(squid *s)
{
    if (s->pid > 0) {
        stop_pid(s->pid, 5000);
        s->pid = 0;
    }
}

int nginx_start(nginx *x, uint16_t port, uint16_t upstream)
{
    return nginx_start_many(x, port, &upstream, 1);
}

int nginx_start_many(nginx *x, uint16_t port, const uint16_t *upstreams, size_t count)
{
    static int n;
    char conf[700], log[700];
    uint16_t upstream = upstreams[0];
    if (!have_program("/usr/sbin/nginx")) {
        fprintf(stderr, "field: nginx is not installed (quickstart.sh installs it): "
                        "apt-get install nginx-light\n");
        return -1;
    }
    if (!x->dir[0]) {
        snprintf(x->dir, sizeof x->dir, "%s/nginx%d", tt_tmpdir(), n++);
        mkdir(x->dir, 0700);
    }
    x->upstream = upstream;
    for (int tries = 0; tries < 3; tries++) {
        x->port = port ? port : free_port();
        snprintf(conf, sizeof conf, "%s/nginx.conf", x->dir);
        snprintf(log, sizeof log, "%s/nginx.out", x->dir);
        FILE *f = fopen(conf, "w");
        if (!f) {
            return -1;
        }
        fprintf(f,
                "daemon off;\n"
                "master_process off;\n"
                "worker_processes 1;\n"
                "pid %s/nginx.pid;\n"
                "error_log %s/error.log info;\n"
                "events { worker_connections 256; }\n"
                "http {\n"
                "  access_log %s/access.log;\n"
                "  client_body_temp_path %s/body;\n"
                "  proxy_temp_path %s/proxy;\n"
                "  fastcgi_temp_path %s/fastcgi;\n"
                "  uwsgi_temp_path %s/uwsgi;\n"
                "  scgi_temp_path %s/scgi;\n"
                "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
                "  upstream tether_up {\n",
                x->dir, x->dir, x->dir, x->dir, x->dir, x->dir, x->dir, x->dir);
        for (size_t i = 0; i < count; i++) {
            fprintf(f, "    server 127.0.0.1:%u;\n", upstreams[i]);
        }
        fprintf(f, "  }\n");
        if (x->http_affinity) {
            /* docs/scaling.md: every request of one HTTP carriage must reach
             * the instance that opened it */
            fprintf(f, "  upstream tether_http {\n    ip_hash;\n");
            for (size_t i = 0; i < count; i++) {
                fprintf(f, "    server 127.0.0.1:%u;\n", upstreams[i]);
            }
            fprintf(f, "  }\n");
        }
        fprintf(f,
                "  server {\n"
                "    listen 127.0.0.1:%u;\n"
                "%s"
                "    location / {\n"
                "      proxy_pass http://tether_up;\n"
                "      proxy_http_version 1.1;\n"
                "      proxy_set_header Upgrade $http_upgrade;\n"
                "      proxy_set_header Connection $connection_upgrade;\n"
                "      proxy_read_timeout %us;\n"
                "      proxy_send_timeout 300s;\n"
                "      %s\n"
                "    }\n"
                "  }\n"
                "}\n",
                x->port,
                x->http_affinity ? "    location /.tether/ {\n"
                                   "      proxy_pass http://tether_http;\n"
                                   "      proxy_http_version 1.1;\n"
                                   "      proxy_read_timeout 120s;\n"
                                   "      proxy_buffering off;\n"
                                   "    }\n"
                                 : "",
                x->read_timeout_s ? x->read_timeout_s : 300u, x->extra ? x->extra : "");
        fclose(f);
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s/", x->dir);
        char *argv[] = {"/usr/sbin/nginx", "-p", prefix, "-c", conf, "-e", log, NULL};
        x->pid = spawn(argv, log);
        if (x->pid > 0 && wait_port(x->port, 10000)) {
            return 0;
        }
        fprintf(stderr, "field: nginx did not start on port %u; its log:\n", x->port);
        show_log(log);
        stop_pid(x->pid, 2000);
        x->pid = 0;
        if (port) {
            msleep(200); /* the caller wants this port: wait for it to be free */
        }
    }
    return -1;
}

void nginx_stop(nginx *x)
{
    if (x->pid > 0) {
        stop_pid(x->pid, 5000);
        x->pid = 0;
    }
}

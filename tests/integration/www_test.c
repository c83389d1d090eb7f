/*
 * Static files on the server's port (config www_dir, `tether serve --www`):
 * what is below the directory is served, with its MIME type, on a connection
 * kept for the next request; nothing outside it is (.., a symlink out, a
 * missing file, a directory without index.html); a WebSocket handshake whose
 * Upgrade was lost still gets 426 so its client falls back; a WebSocket
 * client and the HTTP carriage work beside the files; a bad www_dir is a
 * configuration error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"
#include "itest.h"
#include "rawhttp.h"

#define WAIT_MS 5000u

static char dir[128];    /* the served directory */
static char outside[160]; /* a file next to it, outside */

static void put(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* dir: index.html, app.js, sub/index.html, empty/ (no index), out -> a file outside */
static void make_tree(void)
{
    char path[256], base[] = "/tmp/tether-www-XXXXXX";
    CHECK(mkdtemp(base) != NULL);
    snprintf(dir, sizeof dir, "%s/www", base);
    snprintf(outside, sizeof outside, "%s/secret.txt", base);
    CHECK(mkdir(dir, 0755) == 0);
    FILE *f = fopen(outside, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("secret\n", f);
        fclose(f);
    }
    put("index.html", "<p>tether</p>\n");
    put("app.js", "console.log(1);\n");
    snprintf(path, sizeof path, "%s/sub", dir);
    CHECK(mkdir(path, 0755) == 0);
    put("sub/index.html", "<p>sub</p>\n");
    snprintf(path, sizeof path, "%s/empty", dir);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/out", dir);
    CHECK(symlink(outside, path) == 0);
}

static void remove_tree(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strrchr(dir, '/') - dir), dir);
    CHECK(system(cmd) == 0);
}

static int get(uint16_t port, const char *path, const char *headers, rawhttp_resp *r)
{
    rawhttp_free(r);
    if (rawhttp_do(port, "GET", path, headers, NULL, 0, r, WAIT_MS) != 0) {
        return -1;
    }
    return r->status;
}

static int body_is(const rawhttp_resp *r, const char *text)
{
    return r->len == strlen(text) && memcmp(r->body, text, r->len) == 0;
}

static int start(srv *v)
{
    srv_init(v);
    v->cfg.www_dir = dir;
    return srv_start(v);
}

TEST(files_below_the_directory_are_served_with_their_type_on_a_kept_connection)
{
    srv v;
    rawhttp_resp r;
    char val[128];
    memset(&r, 0, sizeof r);
    make_tree();
    CHECK_OK(start(&v));

    CHECK_EQ_INT(get(v.port, "/", NULL, &r), 200);
    CHECK(body_is(&r, "<p>tether</p>\n"));
    CHECK(strncmp(rawhttp_header(&r, "Content-Type", val, sizeof val), "text/html", 9) == 0);
    CHECK_EQ_STR(rawhttp_header(&r, "X-Content-Type-Options", val, sizeof val), "nosniff");
    CHECK_EQ_INT(get(v.port, "/sub/", NULL, &r), 200);
    CHECK(body_is(&r, "<p>sub</p>\n"));
    CHECK_EQ_INT(get(v.port, "/sub", NULL, &r), 200); /* a directory: its index */
    CHECK(body_is(&r, "<p>sub</p>\n"));

    /* two requests on one connection: the first file's end keeps it open */
    int fd = rawhttp_connect(v.port);
    CHECK(fd >= 0);
    CHECK_OK(rawhttp_send(fd, "GET", "/app.js", NULL, NULL, 0));
    CHECK_OK(rawhttp_read(fd, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "console.log(1);\n"));
    CHECK(strstr(rawhttp_header(&r, "Content-Type", val, sizeof val), "javascript") != NULL);
    CHECK_OK(rawhttp_send(fd, "GET", "/index.html", NULL, NULL, 0));
    CHECK_OK(rawhttp_read(fd, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, "<p>tether</p>\n"));
    close(fd);

    rawhttp_free(&r);
    srv_free(&v);
    remove_tree();
}

TEST(nothing_outside_the_directory_and_no_missing_file_is_served)
{
    srv v;
    rawhttp_resp r;
    memset(&r, 0, sizeof r);
    make_tree();
    CHECK_OK(start(&v));

    CHECK_EQ_INT(get(v.port, "/out", NULL, &r), 404); /* a symlink that leads outside */
    CHECK(r.len == 0 || memmem(r.body, r.len, "secret", 6) == NULL);
    CHECK_EQ_INT(get(v.port, "/../secret.txt", NULL, &r), 404);
    CHECK_EQ_INT(get(v.port, "/%2e%2e/secret.txt", NULL, &r), 404);
    CHECK_EQ_INT(get(v.port, "/sub/../../secret.txt", NULL, &r), 404);
    CHECK_EQ_INT(get(v.port, "/missing.html", NULL, &r), 404);
    CHECK_EQ_INT(get(v.port, "/empty/", NULL, &r), 404); /* no index.html */
    /* the server lives on after all of that */
    CHECK_EQ_INT(get(v.port, "/", NULL, &r), 200);

    rawhttp_free(&r);
    srv_free(&v);
    remove_tree();
}

TEST(a_handshake_that_lost_its_upgrade_still_gets_426_and_websocket_and_carriage_work)
{
    srv v;
    rawhttp_resp r;
    char val[64];
    memset(&r, 0, sizeof r);
    make_tree();
    CHECK_OK(start(&v));

    /* a proxy stripped Upgrade and Connection but left the WebSocket headers */
    CHECK_EQ_INT(get(v.port, "/", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n", &r), 426);
    CHECK_EQ_STR(rawhttp_header(&r, "Upgrade", val, sizeof val), "websocket");
    /* with its reason phrase: lws 4.1.6 alone writes "HTTP/1.1 426 " */
    CHECK(strncmp(r.head, "HTTP/1.1 426 Upgrade Required\r\n", 31) == 0);
    CHECK_EQ_INT(get(v.port, "/", "Sec-WebSocket-Protocol: tether.v1\r\n", &r), 426);
    rawhttp_free(&r);
    CHECK_OK(rawhttp_do(v.port, "POST", "/", NULL, "x", 1, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 426); /* not a GET: not a file */

    /* a client over WebSocket, then one over the carriage, both deliver */
    for (int http = 0; http <= 1; http++) {
        cli k;
        cli_init(&k, "ws", "127.0.0.1", v.port);
        k.cfg.transport = http ? TETHER_TRANSPORT_HTTP : TETHER_TRANSPORT_WEBSOCKET;
        CHECK_OK(cli_start(&k));
        CHECK_OK(send_tagged(k.c, 20, 64));
        CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
        cli_free(&k);
    }
    CHECK(rec_wait_count(&v.rec, 40, WAIT_MS));

    rawhttp_free(&r);
    srv_free(&v);
    remove_tree();
}

TEST(a_www_dir_that_is_missing_or_not_a_directory_is_a_config_error)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    make_tree();
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";

    char missing[200];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    cfg.www_dir = missing;
    CHECK_EQ_INT(tether_server_create(&cfg, &s), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "www_dir") != NULL);
    CHECK(strstr(tether_errmsg(), strerror(ENOENT)) != NULL);
    cfg.www_dir = outside;
    CHECK_EQ_INT(tether_server_create(&cfg, &s), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "not a directory") != NULL);
    CHECK(s == NULL);
    remove_tree();
}

int main(void)
{
    RUN(files_below_the_directory_are_served_with_their_type_on_a_kept_connection);
    RUN(nothing_outside_the_directory_and_no_missing_file_is_served);
    RUN(a_handshake_that_lost_its_upgrade_still_gets_426_and_websocket_and_carriage_work);
    RUN(a_www_dir_that_is_missing_or_not_a_directory_is_a_config_error);
    return tt_finish();
}

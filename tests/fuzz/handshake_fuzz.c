/*
 * Fuzz target: what the client's upgrade handshake is built from, checked
 * without a socket: the url (tether__tp_check_url, tether__tp_url_host) and
 * the handshake-related config tether_client_create() validates and copies
 * (origin, extra headers, proxy and its credentials). The request itself is
 * then written by libwebsockets, and the server's side of the handshake
 * (header lookup, Origin allow-list) reads an lws connection, so it needs a
 * socket and is covered by the integration tests instead.
 *
 * Input: fields separated by NUL bytes: url, origin, proxy, proxy_user,
 * proxy_password, then up to 8 extra headers. A field past the end of the
 * input is NULL; an empty one is "".
 *
 * Properties: a url accepted by check_url splits into a non-empty host
 * without a path, query, fragment, user info or bracket, and the right scheme; a config accepted by create can never put
 * a CR or LF (header injection) into the request through the origin or the
 * extra headers, every extra header is one "Name: value" line, and the proxy
 * user name holds no ':' (it could not be split back out of Basic auth). The
 * proxy credentials themselves only ever travel base64-encoded.
 */
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

#include "transport/transport.h"
#include "fuzz_util.h"

#define NFIELDS 13

static void check_url(const char *url)
{
    int rc = tether__tp_check_url(url);
    FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_ECONFIG);
    static const size_t lens[] = {1, 8, 256};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char host[256];
        int tls = -1;
        memset(host, 'X', sizeof host);
        int r2 = tether__tp_url_host(url, &tls, host, lens[i]);
        FUZZ_CHECK((r2 == TETHER_OK) == (rc == TETHER_OK));
        if (r2 != TETHER_OK) {
            continue;
        }
        FUZZ_CHECK(strnlen(host, lens[i]) < lens[i]);
        FUZZ_CHECK(tls == (strncmp(url, "wss:", 4) == 0));
        if (lens[i] == 256) {
            FUZZ_CHECK(host[0] != '\0');
            FUZZ_CHECK(!strpbrk(host, "/?#@[] \t"));
        }
    }
}

static int one_line(const char *s)
{
    return !s || !strpbrk(s, "\r\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[NFIELDS] = {0};
    size_t pos = 0;

    for (int i = 0; i < NFIELDS && pos <= size; i++) {
        const uint8_t *z = pos < size ? memchr(data + pos, 0, size - pos) : NULL;
        size_t n = pos < size ? (z ? (size_t)(z - (data + pos)) : size - pos) : 0;
        f[i] = malloc(n + 1);
        FUZZ_CHECK(f[i] != NULL);
        if (n) {
            memcpy(f[i], data + pos, n);
        }
        f[i][n] = '\0';
        pos += n + 1;
    }
    if (!f[0]) {
        return 0;
    }
    check_url(f[0]);

    const char *headers[NFIELDS - 5 + 1] = {0};
    size_t nh = 0;
    for (int i = 5; i < NFIELDS && f[i]; i++) {
        headers[nh++] = f[i];
    }
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = f[0];
    cfg.origin = f[1];
    cfg.proxy = f[2] ? f[2] : ""; /* never the environment: the run must not depend on it */
    cfg.proxy_user = f[3];
    cfg.proxy_password = f[4];
    cfg.headers = nh ? headers : NULL;
    cfg.random_seed = 1;

    tether_client *c = NULL;
    int rc = tether_client_create(&cfg, &c);
    FUZZ_CHECK((rc == TETHER_OK) == (c != NULL));
    if (rc == TETHER_OK) {
        FUZZ_CHECK(tether__tp_check_url(cfg.url) == TETHER_OK);
        FUZZ_CHECK(one_line(cfg.origin));
        FUZZ_CHECK(!cfg.proxy_user || !strchr(cfg.proxy_user, ':'));
        for (size_t i = 0; i < nh; i++) {
            const char *colon = strchr(headers[i], ':');
            FUZZ_CHECK(one_line(headers[i]) && colon && colon != headers[i]);
        }
        tether_client_destroy(c);
    } else {
        FUZZ_CHECK(rc == TETHER_ECONFIG);
    }
    for (int i = 0; i < NFIELDS; i++) {
        free(f[i]);
    }
    return 0;
}

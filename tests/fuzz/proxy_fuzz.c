/*
 * Fuzz target: the proxy and HTTP-response helpers (transport/proxy.h) that
 * read untrusted text: proxy URLs from the config or the environment,
 * no_proxy lists, the proxy's or server's response head, Retry-After.
 *
 * Input: fields separated by NUL bytes, in this order: proxy spec, target
 * host, no_proxy, response head, header name, Retry-After value. Missing
 * fields are empty.
 * Every field is copied into an allocation of its exact size, so a read past
 * the end is caught by ASan.
 */
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

#include "transport/proxy.h"
#include "fuzz_util.h"

#define NFIELDS 6

static const char *env_spec, *env_no_proxy;

static const char *fake_getenv(const char *name)
{
    if (!strcmp(name, "https_proxy") || !strcmp(name, "http_proxy")) {
        return env_spec;
    }
    if (!strcmp(name, "NO_PROXY")) {
        return env_no_proxy;
    }
    return NULL;
}

static int b64val(char c)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(tab, c) : NULL;
    return p ? (int)(p - tab) : -1;
}

/* base64 must be the standard alphabet with padding, and decode to the input */
static void check_base64(const char *s, size_t n)
{
    char out[200];
    uint8_t back[150];
    size_t need = (n + 2) / 3 * 4 + 1, o = 0;
    FUZZ_CHECK(tether__base64(s, n, out, need - 1) == -1);
    FUZZ_CHECK(tether__base64(s, n, out, need) == 0);
    FUZZ_CHECK(strlen(out) == need - 1);
    for (size_t i = 0; i + 4 <= need - 1; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = out[i + k] == '=' ? 0 : b64val(out[i + k]);
            FUZZ_CHECK(v[k] >= 0);
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        back[o++] = (uint8_t)(w >> 16);
        back[o++] = (uint8_t)(w >> 8);
        back[o++] = (uint8_t)w;
    }
    FUZZ_CHECK(o >= n && o - n < 3 && memcmp(back, s, n) == 0);
}

static void check_proxy(const tether__proxy *p)
{
    size_t hl = strnlen(p->host, sizeof p->host);
    FUZZ_CHECK(hl > 0 && hl < sizeof p->host);
    FUZZ_CHECK(p->port >= 1 && p->port <= 65535);
    FUZZ_CHECK(strnlen(p->user, sizeof p->user) < sizeof p->user);
    FUZZ_CHECK(strnlen(p->pass, sizeof p->pass) < sizeof p->pass);
    FUZZ_CHECK(strlen(p->user) + strlen(p->pass) + 1 <= 95);
    /* "user:password" must split back into the same two parts (RFC 7617) */
    FUZZ_CHECK(!strchr(p->user, ':'));

    char auth[200];
    tether__proxy_auth(p, auth, sizeof auth);
    if (p->user[0]) {
        FUZZ_CHECK(strlen(auth) == strlen(p->user) + 1 + strlen(p->pass));
    } else {
        FUZZ_CHECK(auth[0] == '\0');
    }
    check_base64(auth, strlen(auth));
}

/* A plain host name always matches itself in no_proxy. */
static void check_self_match(const char *host)
{
    size_t n = strlen(host);
    if (n == 0 || n >= 256 || host[0] == '.' || host[0] == '[') {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-')) {
            return;
        }
    }
    FUZZ_CHECK(tether__no_proxy_match(host, host) == 1);
}

static void check_response(const char *resp, size_t len, const char *name)
{
    char *exact = malloc(len ? len : 1); /* no terminator: the parsers take a length */
    FUZZ_CHECK(exact != NULL);
    memcpy(exact, resp, len);

    int st = tether__http_status(exact, len);
    FUZZ_CHECK(st == 0 || (st >= 100 && st <= 999));
    FUZZ_CHECK(st == 0 || (len >= 12 && !memcmp(exact, "HTTP/1.", 7)));

    static const size_t outlens[] = {0, 1, 2, 7, 64, 512};
    for (size_t i = 0; i < sizeof outlens / sizeof outlens[0]; i++) {
        char out[512];
        memset(out, 'X', sizeof out);
        int found = tether__http_header(exact, len, name, out, outlens[i]);
        FUZZ_CHECK(found == 0 || found == 1);
        if (found && outlens[i]) {
            size_t vl = strnlen(out, outlens[i]);
            FUZZ_CHECK(vl < outlens[i]);
            FUZZ_CHECK(!strchr(out, '\n'));
            FUZZ_CHECK(vl == 0 || (out[0] != ' ' && out[0] != '\t'));
            if (vl + 1 < outlens[i]) { /* not cut: trimmed at the end too */
                FUZZ_CHECK(vl == 0 || (out[vl - 1] != ' ' && out[vl - 1] != '\t'));
            }
        }
    }
    free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[NFIELDS];
    size_t flen[NFIELDS];
    size_t pos = 0;

    for (int i = 0; i < NFIELDS; i++) {
        const uint8_t *z = pos < size ? memchr(data + pos, 0, size - pos) : NULL;
        size_t n = pos < size ? (z ? (size_t)(z - (data + pos)) : size - pos) : 0;
        f[i] = malloc(n + 1);
        FUZZ_CHECK(f[i] != NULL);
        if (n) {
            memcpy(f[i], data + pos, n);
        }
        f[i][n] = '\0';
        flen[i] = n;
        pos += n + 1;
    }
    const char *spec = f[0], *host = f[1], *no_proxy = f[2], *name = f[4], *retry = f[5];

    tether__proxy p;
    int rc = tether__proxy_parse(spec, &p);
    FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_ECONFIG);
    if (rc == TETHER_OK) {
        check_proxy(&p);
    }

    env_spec = spec;
    env_no_proxy = no_proxy;
    for (int tls = 0; tls < 2; tls++) {
        rc = tether__proxy_from_env(tls, host, fake_getenv, &p);
        FUZZ_CHECK(rc == 0 || rc == 1 || rc == TETHER_ECONFIG);
        if (rc == 1) {
            FUZZ_CHECK(p.from_env == 1);
            FUZZ_CHECK(!strcmp(p.env_name, tls ? "https_proxy" : "http_proxy"));
            FUZZ_CHECK(!tether__no_proxy_match(no_proxy, host));
            check_proxy(&p);
        }
    }
    int m = tether__no_proxy_match(no_proxy, host);
    FUZZ_CHECK(m == 0 || m == 1);
    check_self_match(host);

    check_response(f[3], flen[3], name[0] ? name : "Retry-After");
    (void)tether__retry_after_ms(retry, 1700000000);
    (void)tether__retry_after_ms(f[3], 0);

    for (int i = 0; i < NFIELDS; i++) {
        free(f[i]);
    }
    return 0;
}

/* Proxy settings, no_proxy, Retry-After and HTTP response scraps: see proxy.h. */
#include "proxy.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <tether/tether.h>

#include "common/util.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

/* Copies n bytes of src %-decoded into out[len]; -1 when malformed or too long. */
static int pct_decode(const char *src, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)src[i];
        if (ch == '%') {
            if (i + 2 >= n) {
                return -1;
            }
            int h = hexval((unsigned char)src[i + 1]), l = hexval((unsigned char)src[i + 2]);
            if (h < 0 || l < 0) {
                return -1;
            }
            ch = h * 16 + l;
            i += 2;
        }
        if (ch == 0 || o + 1 >= len) {
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

int tether__proxy_parse(const char *spec, tether__proxy *out)
{
    const char *p = spec, *at, *end, *host, *hend;
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) {
        return tether__fail(TETHER_ECONFIG, "the proxy is empty");
    }
    if (strstr(p, "://")) {
        if (strncasecmp(p, "http://", 7) != 0) {
            return tether__fail(TETHER_ECONFIG,
                                "proxy '%s': only http:// proxies (CONNECT) are supported", spec);
        }
        p += 7;
    }
    end = p + strcspn(p, "/?#");
    if (end[0] && strcmp(end, "/") != 0) {
        return tether__fail(TETHER_ECONFIG, "proxy '%s': a proxy has no path", spec);
    }
    /* credentials end at the last '@' before the host */
    at = NULL;
    for (const char *q = p; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (pct_decode(p, ulen, out->user, sizeof out->user) != 0 ||
            (colon && pct_decode(colon + 1, (size_t)(at - colon - 1), out->pass,
                                 sizeof out->pass) != 0)) {
            return tether__fail(TETHER_ECONFIG,
                                "proxy '%s': the credentials are malformed or too long", spec);
        }
        if (strchr(out->user, ':')) { /* Basic auth could not split it back (found by fuzzing) */
            return tether__fail(TETHER_ECONFIG, "proxy '%s': the user name holds ':'", spec);
        }
        p = at + 1;
    }
    host = p;
    if (*host == '[') {
        hend = memchr(host, ']', (size_t)(end - host));
        if (!hend) {
            return tether__fail(TETHER_ECONFIG, "proxy '%s': unclosed '['", spec);
        }
        host++;
        p = hend + 1;
    } else {
        hend = host;
        while (hend < end && *hend != ':') {
            hend++;
        }
        p = hend;
    }
    if (hend == host || (size_t)(hend - host) >= sizeof out->host) {
        return tether__fail(TETHER_ECONFIG, "proxy '%s': the host is missing or too long", spec);
    }
    memcpy(out->host, host, (size_t)(hend - host));
    out->host[hend - host] = '\0';
    out->port = 80;
    if (p < end && *p == ':') {
        char *e = NULL;
        long port = strtol(p + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) {
            return tether__fail(TETHER_ECONFIG, "proxy '%s': the port is invalid", spec);
        }
        out->port = (int)port;
    } else if (p != end) {
        return tether__fail(TETHER_ECONFIG, "proxy '%s' does not parse", spec);
    }
    if (strlen(out->user) + strlen(out->pass) + 1 > 95) {
        return tether__fail(TETHER_ECONFIG, "proxy '%s': user and password exceed 94 bytes", spec);
    }
    return TETHER_OK;
}

int tether__no_proxy_match(const char *no_proxy, const char *host)
{
    char item[256];
    size_t hlen;
    if (!no_proxy || !host) {
        return 0;
    }
    if (host[0] == '[') { /* tolerate a bracketed IPv6 literal */
        host++;
    }
    hlen = strcspn(host, "]");
    while (*no_proxy) {
        size_t n = strcspn(no_proxy, ", \t");
        if (n > 0 && n < sizeof item) {
            memcpy(item, no_proxy, n);
            item[n] = '\0';
            char *it = item;
            size_t ilen;
            if (strcmp(it, "*") == 0) {
                return 1;
            }
            if (it[0] == '[') {
                it++;
                it[strcspn(it, "]")] = '\0';
            } else if (strchr(it, ':') == strrchr(it, ':') && strchr(it, ':')) {
                *strchr(it, ':') = '\0'; /* host:port, port ignored */
            }
            while (*it == '.') {
                it++;
            }
            ilen = strlen(it);
            if (ilen && ilen <= hlen && strncasecmp(host + hlen - ilen, it, ilen) == 0 &&
                (ilen == hlen || host[hlen - ilen - 1] == '.')) {
                return 1;
            }
        }
        no_proxy += n;
        while (*no_proxy == ',' || *no_proxy == ' ' || *no_proxy == '\t') {
            no_proxy++;
        }
    }
    return 0;
}

int tether__proxy_from_env(int tls, const char *host, const char *(*getenv_fn)(const char *),
                           tether__proxy *out)
{
    static const char *const tls_names[] = {"https_proxy", "HTTPS_PROXY", NULL};
    static const char *const plain_names[] = {"http_proxy", NULL};
    const char *const *names = tls ? tls_names : plain_names;
    const char *spec = NULL, *name = NULL;

    memset(out, 0, sizeof *out);
    for (int i = 0; names[i]; i++) {
        const char *v = getenv_fn(names[i]);
        if (v && *v) {
            spec = v;
            name = names[i];
            break;
        }
    }
    if (!spec) {
        return 0;
    }
    const char *np = getenv_fn("no_proxy");
    if (!np || !*np) {
        np = getenv_fn("NO_PROXY");
    }
    if (tether__no_proxy_match(np, host)) {
        return 0;
    }
    int rc = tether__proxy_parse(spec, out);
    if (rc != TETHER_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", tether_errmsg());
        return tether__fail(rc, "the environment variable %s: %s", name, msg);
    }
    out->from_env = 1;
    snprintf(out->env_name, sizeof out->env_name, "%s", name);
    return 1;
}

void tether__proxy_auth(const tether__proxy *p, char *out, size_t len)
{
    if (!p->user[0]) {
        snprintf(out, len, "%s", "");
        return;
    }
    snprintf(out, len, "%s:%s", p->user, p->pass);
}

uint32_t tether__retry_after_ms(const char *value, time_t now)
{
    const char *p = value;
    if (!p) {
        return 0;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (isdigit((unsigned char)*p)) {
        char *e = NULL;
        unsigned long long secs = strtoull(p, &e, 10);
        while (*e == ' ' || *e == '\t') {
            e++;
        }
        if (*e) {
            return 0;
        }
        if (secs > UINT32_MAX / 1000u) {
            return UINT32_MAX;
        }
        return (uint32_t)(secs * 1000u);
    }
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(p, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e) {
        return 0;
    }
    time_t at = timegm(&tm);
    if (at == (time_t)-1 || at <= now) {
        return 0;
    }
    unsigned long long d = (unsigned long long)(at - now);
    return d > UINT32_MAX / 1000u ? UINT32_MAX : (uint32_t)(d * 1000u);
}

int tether__http_status(const char *buf, size_t len)
{
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
        return 0;
    }
    if (!isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11])) {
        return 0;
    }
    int st = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    return st >= 100 ? st : 0;
}

int tether__http_header(const char *buf, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = buf, *end = buf + len;
    /* skip the status line */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
        return 0;
    }
    p = nl + 1;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t llen = (size_t)(le - p);
        if (llen && p[llen - 1] == '\r') {
            llen--;
        }
        if (llen == 0) {
            break; /* the blank line ends the head */
        }
        if (llen > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *ve = p + llen;
            while (v < ve && (*v == ' ' || *v == '\t')) {
                v++;
            }
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }
            if (outlen) {
                size_t n = (size_t)(ve - v) < outlen - 1 ? (size_t)(ve - v) : outlen - 1;
                memcpy(out, v, n);
                out[n] = '\0';
            }
            return 1;
        }
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    return 0;
}

int tether__http_list_has(const char *value, const char *word)
{
    size_t wl = strlen(word);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t')) {
            t--;
        }
        if (t == wl && wl && strncasecmp(p, word, wl) == 0) {
            return 1;
        }
        p += n;
    }
    return 0;
}

int tether__base64(const void *data, size_t n, char *out, size_t outlen)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = data;
    size_t need = (n + 2) / 3 * 4 + 1, o = 0;
    if (outlen < need) {
        return -1;
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return 0;
}

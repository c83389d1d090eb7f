#include "util.h"
#include "common/alloc.h"
#include "common/redact.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <tether/tether.h>

/* OpenSSL comes with libwebsockets (its TLS backend); tether uses it for the
 * random session ids and tokens and for hashing tokens. */

static _Thread_local char last_errmsg[512];

int tether__random(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        return tether__fail(TETHER_ESYS, "the system random generator failed");
    }
    return TETHER_OK;
}

int tether__sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int outlen = 0;
    if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != 32) {
        return tether__fail(TETHER_ENOMEM, "SHA-256 failed");
    }
    return TETHER_OK;
}

int tether__ct_memcmp(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n);
}

uint64_t tether__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int tether__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_errmsg, sizeof last_errmsg, fmt, ap);
    va_end(ap);
    tether__redact(last_errmsg, sizeof last_errmsg); /* never a password: common/redact.c */
    return code;
}

const char *tether_errmsg(void)
{
    return last_errmsg[0] ? last_errmsg : "no error";
}

const char *tether_version(void)
{
    return TETHER_VERSION_STRING;
}

void tether_session_id_hex(const tether_session_id *id, char out[33])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[id->bytes[i] >> 4];
        out[2 * i + 1] = digits[id->bytes[i] & 15];
    }
    out[32] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int tether_session_id_parse(const char *hex, tether_session_id *id)
{
    if (!hex || !id || strlen(hex) != 32) {
        return tether__fail(TETHER_EINVAL, "a session id is 32 hex digits");
    }
    for (int i = 0; i < 16; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return tether__fail(TETHER_EINVAL, "a session id is 32 hex digits");
        }
        id->bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    return TETHER_OK;
}

int tether__check_readable(const char *const files[][2], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (files[i][1] && access(files[i][1], R_OK) != 0) {
            return tether__fail(TETHER_ECONFIG, "cannot read %s '%s': %s", files[i][0], files[i][1],
                                strerror(errno));
        }
    }
    return TETHER_OK;
}

int tether__copy_strings(const char **fields[], size_t n, const char *const **list, char **strs,
                         const char ***list_copy)
{
    size_t need = 1, nl = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        need += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    }
    for (const char *const *e = *list; e && *e; e++) {
        need += strlen(*e) + 1;
        nl++;
    }
    char *buf = tether__malloc(need);
    const char **copy = *list ? tether__calloc(nl + 1, sizeof *copy) : NULL;
    if (!buf || (*list && !copy)) {
        tether__free(buf);
        tether__free(copy);
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (*fields[i]) {
            size_t len = strlen(*fields[i]) + 1;
            memcpy(buf + off, *fields[i], len);
            *fields[i] = buf + off;
            off += len;
        }
    }
    for (size_t i = 0; i < nl; i++) {
        size_t len = strlen((*list)[i]) + 1;
        memcpy(buf + off, (*list)[i], len);
        copy[i] = buf + off;
        off += len;
    }
    if (copy) {
        *list = copy;
    }
    *strs = buf;
    *list_copy = copy;
    return TETHER_OK;
}

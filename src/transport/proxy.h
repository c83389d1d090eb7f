/*
 * Pure helpers for the field connectivity features: HTTP proxy settings (from
 * the config or from https_proxy / http_proxy / no_proxy), Retry-After, and
 * the few bits of HTTP response parsing the diagnostics need. No I/O here, so
 * every rule is unit-tested (tests/field/field_proxy_test.c).
 */
#ifndef TETHER_PROXY_H
#define TETHER_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* An HTTP proxy reached with CONNECT. host[0] == 0 means "no proxy". */
typedef struct tether__proxy {
    char host[256]; /* proxy host name or address, without brackets */
    int port;       /* proxy TCP port */
    char user[96];  /* Basic user name (decoded), "" for none */
    char pass[96];  /* Basic password (decoded) */
    int from_env;   /* 1 when taken from the environment (for diagnostics) */
    char env_name[16]; /* which variable, when from_env */
} tether__proxy;

/*
 * Parses "http://[user[:password]@]host[:port][/]" (the scheme is optional;
 * user and password may be %-encoded; an IPv6 host is written in brackets;
 * the port defaults to 80). Returns TETHER_OK or TETHER_ECONFIG with
 * tether_errmsg() set; "https://" and "socks" proxies are refused.
 */
int tether__proxy_parse(const char *spec, tether__proxy *out);

/*
 * Chooses the proxy for a ws:// (tls 0) or wss:// (tls 1) url to host, as
 * curl and most tools do: https_proxy / HTTPS_PROXY for wss, http_proxy for
 * ws (the upper-case HTTP_PROXY is ignored, as curl does, because CGI sets it
 * from a request header), unless no_proxy / NO_PROXY matches host. getenv_fn
 * reads a variable (getenv, or a fake in tests). Returns 1 and fills *out when
 * a proxy applies, 0 when none, or TETHER_ECONFIG when the variable is malformed.
 */
int tether__proxy_from_env(int tls, const char *host, const char *(*getenv_fn)(const char *),
                           tether__proxy *out);

/*
 * 1 when no_proxy (a comma- or space-separated list: "*", host names that
 * match the host or any subdomain of it, with or without a leading dot, and
 * literal IP addresses; a ":port" suffix is ignored) says host must be
 * reached directly. Case-insensitive.
 */
int tether__no_proxy_match(const char *no_proxy, const char *host);

/* "user:password" for lws_set_proxy() and the Basic header; "" when no user. */
void tether__proxy_auth(const tether__proxy *p, char *out, size_t len);

/*
 * A Retry-After value (delta-seconds, or an HTTP-date compared with now) in
 * milliseconds; 0 when absent, malformed or in the past. Saturates at
 * UINT32_MAX.
 */
uint32_t tether__retry_after_ms(const char *value, time_t now);

/*
 * Parses the status line of an HTTP response held in buf ("HTTP/1.1 407 ...").
 * Returns the status (100..999), 0 when buf does not (yet) hold a status line.
 */
int tether__http_status(const char *buf, size_t len);

/*
 * Copies the value of header name (case-insensitive, without the colon) from
 * the response head in buf (status line, headers, up to the blank line) into
 * out, trimmed. Returns 1 when found, 0 when absent.
 */
int tether__http_header(const char *buf, size_t len, const char *name, char *out, size_t outlen);

/* Base64 of n bytes into out (NUL-terminated). Returns 0, or -1 if out is too small. */
int tether__base64(const void *data, size_t n, char *out, size_t outlen);

#endif

/*
 * Passwords out of messages. A config value that is a URI (a proxy, a url, a
 * PostgreSQL db_path) may carry a password, and a message that names the
 * value so the user can find it would print it. Rather than trust every
 * message to leave it out, tether__fail() passes each one through here.
 */
#include "redact.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char mask[] = "***";

/* Replaces s[from, to) by the mask, within a buffer of len bytes. */
static size_t put_mask(char *s, size_t len, size_t from, size_t to)
{
    size_t n = strlen(s), m = sizeof mask - 1;
    if (from + m >= len) {
        s[from] = '\0';
        return from;
    }
    size_t tail = n - to;
    if (from + m + tail >= len) {
        tail = len - 1 - from - m;
    }
    memmove(s + from + m, s + to, tail);
    memcpy(s + from, mask, m);
    s[from + m + tail] = '\0';
    return from + m;
}

/* The end of a URI's authority or a keyword's value: what can follow it in a
 * message (a space, a quote, a bracket) or in a URI. */
static int ends_value(char c)
{
    return c == '\0' || isspace((unsigned char)c) || strchr("'\"`,;)(<>&", c) != NULL;
}

char *tether__redact(char *s, size_t len)
{
    if (!s || len == 0) {
        return s;
    }
    /* scheme://user:PASSWORD@host */
    for (size_t i = 0; s[i]; i++) {
        if (strncmp(s + i, "://", 3) != 0) {
            continue;
        }
        size_t a = i + 3, e = a, at = 0;
        while (!ends_value(s[e]) && s[e] != '/' && s[e] != '?' && s[e] != '#') {
            if (s[e] == '@') {
                at = e; /* the last '@' ends the user info */
            }
            e++;
        }
        if (!at) {
            continue;
        }
        const char *colon = memchr(s + a, ':', at - a);
        if (colon) {
            size_t from = (size_t)(colon - s) + 1;
            i = put_mask(s, len, from, at);
            if (!s[i]) {
                break;
            }
        }
    }
    /* password=VALUE, as in a libpq query or keyword string */
    for (size_t i = 0; s[i]; i++) {
        if (strncasecmp(s + i, "password=", 9) != 0 ||
            (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_'))) {
            continue;
        }
        size_t from = i + 9, to = from;
        if (s[to] == '\'') { /* a quoted keyword value: up to its closing quote */
            to++;
            while (s[to] && s[to] != '\'') {
                to += s[to] == '\\' && s[to + 1] ? 2 : 1;
            }
            to += s[to] == '\'';
        } else {
            while (!ends_value(s[to])) {
                to++;
            }
        }
        if (to > from) {
            i = put_mask(s, len, from, to) - 1;
        }
    }
    return s;
}

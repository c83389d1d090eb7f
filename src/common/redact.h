/* Passwords out of messages: every message tether__fail() records goes through here. */
#ifndef TETHER_REDACT_H
#define TETHER_REDACT_H

#include <stddef.h>

/*
 * Rewrites the NUL-terminated message s in place so that no password it
 * echoes survives: the password of a URI's user info ("scheme://user:PW@")
 * and the value of a "password=" keyword or query parameter (any case) become
 * "***"; everything else is kept. The result never grows past len bytes
 * (the buffer's size), cutting the end if it must. Returns s.
 */
char *tether__redact(char *s, size_t len);

#endif

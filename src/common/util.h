/* Small shared helpers: randomness, hashing, time, the thread's error message. */
#ifndef TETHER_UTIL_H
#define TETHER_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with n cryptographically random bytes. TETHER_OK or TETHER_ESYS. */
int tether__random(void *buf, size_t n);

/* SHA-256 of data into out[32]. TETHER_OK or TETHER_ENOMEM. */
int tether__sha256(const void *data, size_t len, uint8_t out[32]);

/* Compares n bytes in time independent of their contents; 0 when equal. */
int tether__ct_memcmp(const void *a, const void *b, size_t n);

/* Milliseconds from a monotonic clock. */
uint64_t tether__now_ms(void);

/*
 * Config files: each of the n {field name, path} pairs whose path is not NULL
 * must be readable. TETHER_OK, or TETHER_ECONFIG naming the first that is not
 * ("cannot read tls_key_file 'k.pem': No such file or directory").
 */
int tether__check_readable(const char *const files[][2], size_t n);

/*
 * Config strings: copies the n optional strings *fields[i] (NULL stays NULL)
 * and the NULL-terminated array *list (NULL stays NULL; an empty array stays
 * an empty array) into one allocation *strs and, when *list is not NULL, a new
 * pointer array *list_copy; then points each field and *list at the copies.
 * The caller frees *strs and *list_copy. TETHER_OK, or TETHER_ENOMEM with
 * nothing changed and nothing to free.
 */
int tether__copy_strings(const char **fields[], size_t n, const char *const **list, char **strs,
                         const char ***list_copy);

/* Records the calling thread's error detail (printf-style) and returns code. */
int tether__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

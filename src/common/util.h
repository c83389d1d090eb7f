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

/* Records the calling thread's error detail (printf-style) and returns code. */
int tether__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

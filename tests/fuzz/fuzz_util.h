/*
 * Helpers the fuzz targets share: re-encoding a decoded frame, comparing two
 * frames field by field, and a byte reader over the fuzzer's input.
 */
#ifndef TETHER_FUZZ_UTIL_H
#define TETHER_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/frame.h"

/* Reports a broken property and aborts, so libFuzzer records the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tfuzz_fail(__FILE__, __LINE__, #cond);                                                 \
        }                                                                                          \
    } while (0)

_Noreturn void tfuzz_fail(const char *file, int line, const char *what);

/* Writes f with the library's encoders into b. Returns the encoder's result. */
int tfuzz_encode(tether__buf *b, const tether__frame *f);

/* 1 when a and b hold the same frame (type, every field, every byte). */
int tfuzz_frame_equal(const tether__frame *a, const tether__frame *b);

/* Consumes the fuzzer's input front to back; reads past the end give zeros. */
typedef struct tfuzz_in {
    const uint8_t *p; /* next byte */
    size_t left;      /* bytes left */
} tfuzz_in;

uint8_t tfuzz_u8(tfuzz_in *in);
uint16_t tfuzz_u16(tfuzz_in *in);
uint64_t tfuzz_u64(tfuzz_in *in);
/* Up to n bytes: *len gets how many were left (at most n). */
const uint8_t *tfuzz_bytes(tfuzz_in *in, size_t n, size_t *len);

#endif

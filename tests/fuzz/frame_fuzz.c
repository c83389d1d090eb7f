/*
 * Fuzz target: the frame codec (engine/frame.h).
 *
 * Any input the decoder accepts must survive decode -> encode -> decode
 * unchanged, and encoding the result again must give the same bytes (the
 * encoder is canonical). Inputs it refuses must be refused with one of the
 * documented codes. ASan and UBSan catch the rest.
 */
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

#include "engine/frame.h"
#include "fuzz_util.h"

#define MAX_PAYLOAD 1048576u /* the limit proto/README.md gives for the vectors */

static tether__decoder d1, d2, d3;
static tether__buf b1, b2;

static void setup(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    if (tether__decoder_init(&d1, MAX_PAYLOAD) != TETHER_OK ||
        tether__decoder_init(&d2, MAX_PAYLOAD) != TETHER_OK ||
        tether__decoder_init(&d3, MAX_PAYLOAD) != TETHER_OK) {
        abort();
    }
    tether__buf_init(&b1, 16);
    tether__buf_init(&b2, 0);
}

static int documented(int rc)
{
    switch (rc) {
    case TETHER_EMALFORMED:
    case TETHER_EFRAME_TRAILING:
    case TETHER_EFRAME_TYPE:
    case TETHER_EFRAME_ARITY:
    case TETHER_EFRAME_FIELD:
    case TETHER_EFRAME_SEQ0:
    case TETHER_EFRAME_OVERSIZE:
        return 1;
    default:
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tether__frame f1, f2, f3;
    setup();

    int rc = tether__decode(&d1, data, size, &f1);
    if (rc != TETHER_OK) {
        FUZZ_CHECK(documented(rc));
        return 0;
    }
    FUZZ_CHECK(f1.type >= TETHER__F_HELLO && f1.type <= TETHER__F_BYE);
    if (f1.type == TETHER__F_DATA) {
        FUZZ_CHECK(f1.u.data.count >= 1 && f1.u.data.count <= TETHER__RUN_MAX);
        FUZZ_CHECK(f1.u.data.first_seq > 0);
        for (size_t i = 0; i < f1.u.data.count; i++) {
            FUZZ_CHECK(f1.u.data.payloads[i].len <= MAX_PAYLOAD);
            FUZZ_CHECK(f1.u.data.payloads[i].len == 0 ||
                       (f1.u.data.payloads[i].data >= data &&
                        f1.u.data.payloads[i].data + f1.u.data.payloads[i].len <= data + size));
        }
    }

    /* decode -> encode -> decode: the same frame */
    FUZZ_CHECK(tfuzz_encode(&b1, &f1) == TETHER_OK);
    FUZZ_CHECK(b1.len <= size); /* canonical forms are never longer than what was read */
    rc = tether__decode(&d2, tether__buf_frame(&b1), b1.len, &f2);
    FUZZ_CHECK(rc == TETHER_OK);
    FUZZ_CHECK(tfuzz_frame_equal(&f1, &f2));

    /* encoding is canonical: a second round gives identical bytes */
    FUZZ_CHECK(tfuzz_encode(&b2, &f2) == TETHER_OK);
    FUZZ_CHECK(b2.len == b1.len && memcmp(tether__buf_frame(&b2), tether__buf_frame(&b1), b1.len) == 0);
    FUZZ_CHECK(tether__decode(&d3, tether__buf_frame(&b2), b2.len, &f3) == TETHER_OK);
    FUZZ_CHECK(tfuzz_frame_equal(&f1, &f3));
    return 0;
}

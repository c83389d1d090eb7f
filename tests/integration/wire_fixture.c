/*
 * What the wire suites share (wire_fixture.h): verbose notes and tether frames
 * over a raw WebSocket connection.
 */
#include "wire_fixture.h"

/* Prints a measurement when TETHER_TEST_VERBOSE is set. */
void note(const char *fmt, ...)
{
    va_list ap;
    if (!getenv("TETHER_TEST_VERBOSE")) {
        return;
    }
    fputs("  note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
/* Reads the next binary message and decodes it. The frame points into *m,
 * which the caller frees. Returns the decode result, TETHER_ETIMEDOUT, or
 * TETHER_ECLOSED (a close frame or EOF first). A text message is skipped. */
int read_frame(rawws_conn *c, tether__decoder *d, rawws_msg *m, tether__frame *f,
               unsigned timeout_ms)
{
    uint64_t end = rawws_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = rawws_now_ms();
        int r = rawws_read_msg(c, m, now < end ? (unsigned)(end - now) : 0);
        if (r == 0) {
            return TETHER_ETIMEDOUT;
        }
        if (r < 0 || m->opcode == RAWWS_CLOSE) {
            rawws_msg_free(m);
            return TETHER_ECLOSED;
        }
        if (m->opcode == RAWWS_BINARY) {
            return tether__decode(d, m->data, m->len, f);
        }
        rawws_msg_free(m);
    }
}

int send_buf(rawws_conn *c, tether__buf *b)
{
    return rawws_send(c, RAWWS_BINARY, tether__buf_frame(b), b->len);
}

/* Helpers the fuzz targets share (fuzz_util.h). */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

void tfuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: property broken: %s\n", file, line, what);
    abort();
}

static int encode_close(tether__buf *b, const tether__frame *f)
{
    /* the decoder only accepts well-formed UTF-8 without NUL, so the reason
     * fits a C string unchanged */
    char reason[TETHER__REASON_MAX + 1];
    memcpy(reason, f->u.close.reason.data, f->u.close.reason.len);
    reason[f->u.close.reason.len] = '\0';
    if (f->type == TETHER__F_REJECT) {
        return tether__encode_reject(b, f->u.close.code, reason);
    }
    return tether__encode_bye(b, f->u.close.code, reason);
}

int tfuzz_encode(tether__buf *b, const tether__frame *f)
{
    switch (f->type) {
    case TETHER__F_HELLO:
        return tether__encode_hello(b, &f->u.hello);
    case TETHER__F_WELCOME:
        return tether__encode_welcome(b, &f->u.welcome);
    case TETHER__F_REJECT:
    case TETHER__F_BYE:
        if (f->u.close.reason.len > TETHER__REASON_MAX) {
            return TETHER_EINVAL;
        }
        return encode_close(b, f);
    case TETHER__F_ACK:
        return tether__encode_ack(b, f->u.ack);
    case TETHER__F_DATA: {
        const tether__data *d = &f->u.data;
        int rc = tether__encode_data_begin(b, d->first_seq, d->flags, d->count);
        for (size_t i = 0; rc == TETHER_OK && i < d->count; i++) {
            rc = tether__encode_data_payload(b, d->payloads[i].data, d->payloads[i].len);
        }
        int end = tether__encode_data_end(b);
        return rc != TETHER_OK ? rc : end;
    }
    default:
        return TETHER_EINVAL;
    }
}

static int slice_equal(const tether__slice *a, const tether__slice *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int tfuzz_frame_equal(const tether__frame *a, const tether__frame *b)
{
    if (a->type != b->type) {
        return 0;
    }
    switch (a->type) {
    case TETHER__F_HELLO: {
        const tether__hello *x = &a->u.hello, *y = &b->u.hello;
        return x->version == y->version && !memcmp(x->session_id, y->session_id, TETHER__ID_LEN) &&
               !memcmp(x->token, y->token, TETHER__TOKEN_LEN) && x->resume == y->resume &&
               x->recv_cursor == y->recv_cursor && x->out_last == y->out_last &&
               x->max_message == y->max_message && x->window == y->window;
    }
    case TETHER__F_WELCOME: {
        const tether__welcome *x = &a->u.welcome, *y = &b->u.welcome;
        return !memcmp(x->session_id, y->session_id, TETHER__ID_LEN) && x->resumed == y->resumed &&
               x->recv_cursor == y->recv_cursor && x->out_last == y->out_last &&
               x->max_message == y->max_message && x->window == y->window;
    }
    case TETHER__F_REJECT:
    case TETHER__F_BYE:
        return a->u.close.code == b->u.close.code &&
               slice_equal(&a->u.close.reason, &b->u.close.reason);
    case TETHER__F_ACK:
        return a->u.ack == b->u.ack;
    case TETHER__F_DATA: {
        const tether__data *x = &a->u.data, *y = &b->u.data;
        if (x->first_seq != y->first_seq || x->flags != y->flags || x->count != y->count) {
            return 0;
        }
        for (size_t i = 0; i < x->count; i++) {
            if (!slice_equal(&x->payloads[i], &y->payloads[i])) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 0;
    }
}

uint8_t tfuzz_u8(tfuzz_in *in)
{
    if (!in->left) {
        return 0;
    }
    in->left--;
    return *in->p++;
}

uint16_t tfuzz_u16(tfuzz_in *in)
{
    uint16_t hi = tfuzz_u8(in);
    return (uint16_t)(hi << 8 | tfuzz_u8(in));
}

uint64_t tfuzz_u64(tfuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | tfuzz_u8(in);
    }
    return v;
}

const uint8_t *tfuzz_bytes(tfuzz_in *in, size_t n, size_t *len)
{
    const uint8_t *p = in->p;
    *len = n < in->left ? n : in->left;
    in->p += *len;
    in->left -= *len;
    return p;
}

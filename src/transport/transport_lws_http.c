/*
 * Plain HTTP on the server's port, part of the libwebsockets glue: a GET that
 * is not a WebSocket upgrade is offered to the owner's http_get (the server's
 * GET /metrics page); whatever it does not serve keeps the 400 of
 * transport_lws.c.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"

#define HEAD_ROOM 512 /* status line and headers */

int tether__tp_http_answer(tether__tp *tp, struct lws *wsi, const char *path)
{
    char *body = NULL;
    size_t blen = 0;
    const char *type = "text/plain";
    char clen[24];

    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        return 0; /* not a GET */
    }
    int st = tp->cfg.http_get(tp->owner, path, &body, &blen, &type);
    if (st == 0) {
        tether__free(body);
        return 0;
    }
    unsigned char *buf = tether__malloc(LWS_PRE + HEAD_ROOM + blen);
    if (!buf) {
        tether__free(body);
        lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "out of memory");
        return -1;
    }
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + HEAD_ROOM + blen;
    snprintf(clen, sizeof clen, "%zu", blen);
    if (tether__tp_add_status(wsi, (unsigned int)st, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)type,
                                     (int)strlen(type), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (const unsigned char *)clen, (int)strlen(clen), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                     &p, end) ||
        lws_finalize_http_header(wsi, &p, end) || (size_t)(end - p) < blen) {
        tether__free(body);
        tether__free(buf);
        return -1;
    }
    memcpy(p, body, blen);
    p += blen;
    /* one write; lws keeps what the socket does not take and flushes it before closing */
    lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
    tether__free(body);
    tether__free(buf);
    return -1; /* close: the answer said Connection: close */
}

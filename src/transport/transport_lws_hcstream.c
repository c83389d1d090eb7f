/*
 * The server's HTTP carriage, part of the libwebsockets glue: streams
 * (HTTP.md section 7.2). A stream is a downstream request whose answer stays
 * open: a chunked 200 whose first record, the empty probe, goes out at once,
 * then each downstream frame as a record as soon as the core wrote it. It
 * ends (the last chunk) at the stream bound (the poll hold), when a newer
 * downstream request comes, when one more frame would break the limits of
 * kind stream, when the queue is full and waits for a confirmation, or right
 * after the connection's last frame (its BYE). The chunks are framed here and
 * written raw, each from the request's writable callback.
 */
#include "common/alloc.h"
#include "transport_lws_car.h"

void tether__car_stream_start(hc_conn *hc, hc_req *req)
{
    req->s_next = hc->confirmed + 1;
    tether__hc_arm_hold(hc, req->hold_ms);
    tether__hc_idle_update(hc);
    lws_callback_on_writable(req->wsi);
}

void tether__car_stream_end(hc_req *req)
{
    hc_conn *hc = req->hc;
    if (hc && hc->down == req) {
        hc->down = NULL;
        tether__tw_disarm(&hc->car->wheel, &hc->t_hold.node);
    }
    req->hc = NULL;
    req->s_end = 1;
    lws_callback_on_writable(req->wsi);
}

/* Appends len bytes to b after its current end: 0, or -1 when out of memory. */
static int put(tether__buf *b, const void *p, size_t len)
{
    size_t need = b->pre + b->len + len;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        uint8_t *d = tether__realloc(b->data, cap);
        if (!d) {
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->pre + b->len, p, len);
    b->len += len;
    return 0;
}

/* One chunk holding data[0..len). */
static int chunk(tether__buf *b, const uint8_t *data, size_t len)
{
    char line[24];
    int n = snprintf(line, sizeof line, "%zx\r\n", len);
    return put(b, line, (size_t)n) || put(b, data, len) || put(b, "\r\n", 2) ? -1 : 0;
}

/* The frames the stream has not written yet, as far as its limits allow,
 * into one chunk; sets req->s_end when the stream must end after them. */
static int frames(hc_req *req, hc_conn *hc, tether__buf *b)
{
    tether__hc_limits lim;
    tether__hc_limits_for(&lim, TETHER__HC_STREAM, 1);
    lim.record_max = hc->down_lim.record_max;
    lim.body_max = hc->down_lim.body_max + TETHER__HC_PREFIX;
    if (req->s_next <= hc->confirmed) {
        req->s_next = hc->confirmed + 1; /* another request confirmed some meanwhile */
    }
    size_t from = (size_t)(req->s_next - hc->confirmed - 1), to = from;
    size_t bytes = req->s_bytes;
    while (to < hc->nq) {
        size_t end = to + 1 < hc->nq ? hc->qoff[to + 1] : hc->qlen;
        size_t rec = end - hc->qoff[to];
        if (req->s_frames + (to - from) >= lim.max_frames || bytes + rec > lim.body_max) {
            req->s_end = 1; /* the next frame goes to the next request */
            break;
        }
        bytes += rec;
        to++;
    }
    if (to > from) {
        size_t start = hc->qoff[from], end = to < hc->nq ? hc->qoff[to] : hc->qlen;
        if (chunk(b, hc->q + start, end - start) != 0) {
            return -1;
        }
        req->s_frames += to - from;
        req->s_bytes = bytes;
        req->s_next += to - from;
        if (req->s_next - 1 > hc->sent) {
            hc->sent = req->s_next - 1;
        }
    }
    int all = req->s_next > hc->confirmed + hc->nq;
    if (all && (hc->core_done || !tether__hc_has_room(hc))) {
        req->s_end = 1; /* after the last frame, or the queue waits for a confirmation */
    }
    return 0;
}

int tether__car_stream_writable(hc_req *req)
{
    struct lws *wsi = req->wsi;
    tether__buf b;
    static const uint8_t probe[TETHER__HC_PREFIX] = {0, 0, 0, 0};

    if (lws_partial_buffered(wsi)) {
        lws_callback_on_writable(wsi); /* the last write is still going out */
        return 0;
    }
    tether__buf_init(&b, LWS_PRE);
    if (!req->s_started) {
        char extra[96];
        size_t n = 0;
        snprintf(extra, sizeof extra,
                 "Transfer-Encoding: chunked\r\nTether-First: %llu\r\nX-Accel-Buffering: no\r\n",
                 (unsigned long long)req->s_next);
        uint8_t *head = tether__car_compose(wsi, 200, req->cors, extra, NULL, 0,
                                            TETHER__HC_CONTENT_TYPE, HC_CHUNKED, &n);
        if (!head || put(&b, head + LWS_PRE, n) != 0 || chunk(&b, probe, sizeof probe) != 0) {
            tether__free(head);
            tether__buf_free(&b);
            return -1;
        }
        tether__free(head);
        req->s_started = 1;
        req->s_bytes = sizeof probe;
    }
    if (req->hc && !req->s_end && frames(req, req->hc, &b) != 0) {
        tether__buf_free(&b);
        return -1;
    }
    int end = req->s_end;
    if (end && put(&b, "0\r\n\r\n", 5) != 0) {
        tether__buf_free(&b);
        return -1;
    }
    int rc = 0;
    if (b.len && lws_write(wsi, tether__buf_frame(&b), b.len, LWS_WRITE_HTTP_HEADERS) < 0) {
        rc = -1;
    }
    tether__buf_free(&b);
    if (rc == 0 && end) {
        tether__car_req_free(req);
        rc = lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    return rc;
}

/* Shared by the carriage's wire tests: a carriage client by hand and the server under test
 * (carriage_fixture.h). */
#include "carriage_fixture.h"

/* ------------------------------------------------------------------------ */
/* A carriage client by hand                                                  */
/* ------------------------------------------------------------------------ */

void hp_init(hpeer *p, uint16_t port, uint8_t tag)
{
    memset(p, 0, sizeof *p);
    p->port = port;
    memset(p->sid, tag, sizeof p->sid);
    memset(p->token, (uint8_t)(tag + 1), sizeof p->token);
    p->up_next = 1;
    p->max_message = 1u << 20;
    tether__decoder_init(&p->dec, 1u << 20);
    tether__buf_init(&p->fb, 0);
    tether__buf_init(&p->body, 0);
}

void hp_clear_frames(hpeer *p)
{
    for (size_t i = 0; i < 8; i++) {
        free(p->fmem[i]);
        p->fmem[i] = NULL;
    }
    p->nf = 0;
}

void hp_free(hpeer *p)
{
    hp_clear_frames(p);
    rawhttp_free(&p->r);
    tether__decoder_free(&p->dec);
    tether__buf_free(&p->fb);
    tether__buf_free(&p->body);
}

/* Headers of a request of p's connection, with extra lines appended. */
const char *hp_headers(hpeer *p, char *buf, size_t len, const char *extra)
{
    int n = snprintf(buf, len, "%s", extra ? extra : "");
    if (p->id[0]) {
        n += snprintf(buf + n, len - (size_t)n, "Tether-Connection: %s\r\n", p->id);
    }
    if (p->origin) {
        snprintf(buf + n, len - (size_t)n, "Origin: %s\r\n", p->origin);
    }
    return buf;
}

/* Decodes the frames of the last answer (kind answer or poll) into p->f. */
int hp_frames(hpeer *p, int kind)
{
    tether__hc_limits lim;
    size_t pos = 0;
    tether__slice s;
    hp_clear_frames(p);
    tether__hc_limits_for(&lim, kind, p->max_message);
    if (tether__hc_check(&lim, p->r.body, p->r.len, NULL, NULL) != TETHER_OK) {
        return -1;
    }
    while (tether__hc_next(p->r.body, p->r.len, &pos, &s)) {
        tether__frame fr, *f = p->nf < 8 ? &p->f[p->nf] : &fr;
        const uint8_t *data = s.data;
        if (p->nf < 8) {
            p->fmem[p->nf] = malloc(s.len);
            memcpy(p->fmem[p->nf], s.data, s.len);
            data = p->fmem[p->nf];
        }
        if (tether__decode(&p->dec, data, s.len, f) != TETHER_OK) {
            return -1;
        }
        if (f->type == TETHER__F_DATA) {
            tether__data *d = &f->u.data;
            if (d->first_seq > p->cursor + 1) {
                p->gaps++;
            }
            if (d->first_seq + d->count - 1 > p->cursor) {
                p->cursor = d->first_seq + d->count - 1;
            }
            d->payloads = NULL; /* the decoder reuses its slice array */
        }
        p->nf++;
    }
    return 0;
}

void hp_hello(hpeer *p, int resume)
{
    tether__hello h;
    memset(&h, 0, sizeof h);
    h.version = TETHER__PROTO_VERSION;
    memcpy(h.session_id, p->sid, 16);
    memcpy(h.token, p->token, 32);
    h.resume = resume;
    h.recv_cursor = p->cursor;
    h.out_last = p->out_last;
    h.max_message = p->max_message;
    h.window = 1024;
    tether__encode_hello(&p->fb, &h);
}

/* Opens a connection: the answer's status (p->r, p->f), -1 when none came. */
int hp_open(hpeer *p, int resume)
{
    char hdr[512];
    p->id[0] = '\0';
    hp_hello(p, resume);
    tether__buf_reset(&p->body);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    if (rawhttp_do(p->port, "POST", "/.tether/v1/open", hp_headers(p, hdr, sizeof hdr, CT),
                   tether__buf_frame(&p->body), p->body.len, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    if (p->r.status == 200 && hp_frames(p, TETHER__HC_ANSWER) == 0) {
        rawhttp_header(&p->r, "Tether-Connection", p->id, sizeof p->id);
        p->up_next = 1;
        p->received = 0;
    }
    return p->r.status;
}

/* Adds DATA seqs first..first+count-1 (payloads tagged with their seq) to p->body. */
void hp_add_data(hpeer *p, uint64_t first, size_t count)
{
    uint8_t pl[16];
    tether__encode_data_begin(&p->fb, first, 0, count);
    for (size_t i = 0; i < count; i++) {
        make_payload(pl, sizeof pl, first + i);
        tether__encode_data_payload(&p->fb, pl, sizeof pl);
    }
    tether__encode_data_end(&p->fb);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    if (first + count - 1 > p->out_last) {
        p->out_last = first + count - 1;
    }
}

/* POSTs p->body as frames numbered from first: the status. */
int hp_send_body(hpeer *p, uint64_t first, size_t frames)
{
    char hdr[512], extra[128];
    snprintf(extra, sizeof extra, CT "Tether-First: %llu\r\n", (unsigned long long)first);
    if (rawhttp_do(p->port, "POST", "/.tether/v1/send", hp_headers(p, hdr, sizeof hdr, extra),
                   tether__buf_frame(&p->body), p->body.len, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    if (p->r.status == 204 && first + frames > p->up_next) {
        p->up_next = first + frames;
    }
    return p->r.status;
}

/* Sends DATA first..first+count-1 in one frame. */
int hp_send_data(hpeer *p, uint64_t first, size_t count)
{
    tether__buf_reset(&p->body);
    hp_add_data(p, first, count);
    return hp_send_body(p, p->up_next, 1);
}

int hp_send_ack(hpeer *p, uint64_t seq)
{
    tether__buf_reset(&p->body);
    tether__encode_ack(&p->fb, seq);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    return hp_send_body(p, p->up_next, 1);
}

/* Polls reporting received: the status; frames in p->f, p->received advanced. */
int hp_poll_as(hpeer *p, uint64_t received, const char *extra_hdr)
{
    char hdr[512], extra[256];
    snprintf(extra, sizeof extra, "Tether-Received: %llu\r\n%s", (unsigned long long)received,
             extra_hdr ? extra_hdr : "");
    if (rawhttp_do(p->port, "GET", "/.tether/v1/poll", hp_headers(p, hdr, sizeof hdr, extra), NULL,
                   0, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    hp_clear_frames(p);
    if (p->r.status == 200) {
        char v[32];
        if (!rawhttp_header(&p->r, "Tether-First", v, sizeof v) || hp_frames(p, TETHER__HC_POLL)) {
            return -2;
        }
        uint64_t first = strtoull(v, NULL, 10);
        p->received = first + p->nf - 1;
    }
    return p->r.status;
}

int hp_poll(hpeer *p)
{
    return hp_poll_as(p, p->received, NULL);
}

/* Polls until a frame of type comes (bounded): 1 if it did (its index in *at). */
int hp_poll_for(hpeer *p, int type, size_t *at)
{
    uint64_t until = rawws_now_ms() + WAIT_MS;
    while (rawws_now_ms() < until) {
        int st = hp_poll(p);
        if (st != 200 && st != 204) {
            return 0;
        }
        for (size_t i = 0; i < p->nf; i++) {
            if (p->f[i].type == type) {
                if (at) {
                    *at = i;
                }
                return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The server under test                                                      */
/* ------------------------------------------------------------------------ */

void car_srv_init(srv *v)
{
    srv_init(v);
    v->cfg.http_poll_hold_ms = HOLD_MS;
    v->cfg.http_idle_ms = IDLE_MS;
}

int srv_closes(srv *v)
{
    pthread_mutex_lock(&v->rec.mu);
    int n = v->rec.closes;
    pthread_mutex_unlock(&v->rec.mu);
    return n;
}

int closed_once(void *arg)
{
    return srv_closes(arg) >= 1;
}

int no_carriage_conn(void *arg)
{
    return tether__srv_debug_carriage(((srv *)arg)->s) == 0;
}

int online_is_zero(void *arg)
{
    srv *v = arg;
    tether_server_statistics st;
    return tether_server_stats(v->s, &st) == TETHER_OK && st.sessions_online == 0;
}

/* A request on a fresh connection: its status (r filled). */
int req(uint16_t port, const char *method, const char *path, const char *headers, const void *body,
        size_t len, rawhttp_resp *r)
{
    return rawhttp_do(port, method, path, headers, body, len, r, WAIT_MS) == 0 ? r->status : -1;
}

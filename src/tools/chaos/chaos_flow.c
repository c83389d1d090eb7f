/*
 * The chaos relay, how bytes move through one connection (see chaos.c): bytes
 * read wait in their direction's buffer with a release time (delay, jitter);
 * how many may be written now is decided in tether__chaos_allowance() alone:
 * nothing while stalled or blackholed, only the HTTP upgrade on a
 * stall-upgrade connection, what the rate's token bucket holds, one small
 * piece at a time when splitting, never past a cut trigger's byte or frame
 * boundary. A WebSocket frame parser runs over the forwarded bytes of each
 * direction to find those boundaries.
 */
#include "chaos.h"
#include "chaos_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * Advances p over b[0..n). Stops right after the end of the HTTP header when
 * stop_http, or right after the data frame that brings *frames_left to 0 (when
 * frames_left is not NULL and above 0). Adds the data frames completed to
 * *done. Returns the bytes consumed.
 */
static size_t ws_scan(wsp *p, const uint8_t *b, size_t n, int stop_http, uint64_t *frames_left,
                      uint64_t *done)
{
    size_t i = 0;
    while (i < n) {
        if (p->phase == 0) {
            static const char up[] = "\nupgrade:";
            char ch = (char)(b[i] >= 'A' && b[i] <= 'Z' ? b[i] + 32 : b[i]);
            p->um = ch == up[p->um] ? (uint8_t)(p->um + 1) : (uint8_t)(ch == '\n');
            if (p->um == sizeof up - 1) {
                p->upgrade = 1;
                p->um = 0;
            }
            p->tail = p->tail << 8 | b[i++];
            p->hdr_bytes++;
            if (p->tail == 0x0d0a0d0au) {
                p->phase = 1;
                p->hlen = p->hneed = 0;
                if (stop_http) {
                    return i;
                }
            }
            continue;
        }
        if (p->phase == 1) {
            p->hdr[p->hlen++] = b[i++];
            if (p->hlen == 2) {
                uint8_t l7 = p->hdr[1] & 0x7f;
                p->hneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((p->hdr[1] & 0x80) ? 4 : 0);
            }
            if (p->hlen < 2 || p->hlen < p->hneed) {
                continue;
            }
            uint8_t l7 = p->hdr[1] & 0x7f;
            uint64_t len = l7;
            if (l7 == 126) {
                len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
            } else if (l7 == 127) {
                len = 0;
                for (int k = 2; k < 10; k++) {
                    len = len << 8 | p->hdr[k];
                }
            }
            p->data = (p->hdr[0] & 0x0f) <= 2;
            p->left = len;
            p->hlen = p->hneed = 0;
            p->phase = 2;
        } else {
            uint64_t take = n - i < p->left ? n - i : p->left;
            i += (size_t)take;
            p->left -= take;
        }
        if (p->phase == 2 && p->left == 0) {
            p->phase = 1;
            if (p->data) {
                if (done) {
                    (*done)++;
                }
                if (frames_left && *frames_left > 0 && --*frames_left == 0) {
                    return i;
                }
            }
        }
    }
    return n;
}

static uint64_t cap_of(const tether__chaos *c, int d)
{
    return c->sh[d].buffered ? c->sh[d].buf_cap : NORMAL_CAP;
}

static uint64_t rate_of(const tether__chaos *c, int d)
{
    uint64_t r = c->sh[d].rate;
    if (c->sh[d].buffered && c->sh[d].buf_rate && (r == 0 || c->sh[d].buf_rate < r)) {
        r = c->sh[d].buf_rate;
    }
    return r;
}

int tether__chaos_can_read(const tether__chaos *c, const conn *k, int i)
{
    const half *h = &k->h[i];
    if (h->eof || h->gone || (i == 1 && k->connecting)) {
        return 0;
    }
    return k->poisoned || (h->len < cap_of(c, i) && h->mn < MARKS);
}

/* A direction blocked for good or until a command: nothing moves, not even FIN. */
static int blocked(const tether__chaos *c, const conn *k, int i)
{
    /* stall-upgrade holds WebSocket upgrades only: the HTTP carriage's plain
     * requests pass, as through a filtering proxy (the request's header tells) */
    if (k->poisoned || k->connecting || c->sh[i].stalled) {
        return 1;
    }
    if (!k->ustall || k->h[0].ws.phase == 0 || !k->h[0].ws.upgrade) {
        return 0;
    }
    if (k->ustall_after) { /* both ways, once the 101 and ustall_after more bytes went down */
        const half *d = &k->h[1];
        return d->ws.phase != 0 && d->wr - d->ws.hdr_bytes >= k->ustall_after;
    }
    return (k->ustall & (1 << i)) && k->h[i].ws.phase != 0;
}

/*
 * How many bytes of direction i may be written now. When time is what holds
 * them back (delay, rate, split gap), *wake is lowered to when that changes.
 */
size_t tether__chaos_allowance(tether__chaos *c, conn *k, int i, uint64_t now, uint64_t *wake)
{
    half *h = &k->h[i];
    if (h->len == 0 || blocked(c, k, i) || k->h[1 - i].gone) {
        return 0;
    }
    /* released by the delay marks */
    uint64_t released = h->wr;
    for (size_t j = 0; j < h->mn; j++) {
        const mark *m = &h->m[(h->mh + j) % MARKS];
        if (m->at > now) {
            if (m->at < *wake) {
                *wake = m->at;
            }
            break;
        }
        released = m->end;
    }
    uint64_t n = released > h->wr ? released - h->wr : 0;
    if (n > h->len) {
        n = h->len;
    }
    if (n == 0) {
        return 0;
    }
    if (k->ustall && (h->ws.phase == 0 || k->h[0].ws.upgrade)) {
        wsp copy = h->ws;
        size_t hdr = ws_scan(&copy, h->buf + h->off, (size_t)n, 1, NULL, NULL);
        if (k->ustall_after && i == 1 && k->h[0].ws.upgrade && copy.phase != 0) {
            /* the rest of the 101 (if any), then up to ustall_after bytes after it */
            uint64_t head = h->ws.phase == 0 ? hdr : 0;
            uint64_t done = h->ws.phase == 0 ? 0 : h->wr - h->ws.hdr_bytes;
            uint64_t room = k->ustall_after > done ? k->ustall_after - done : 0;
            n = head + room < n ? head + room : n;
        } else if (!k->ustall_after || h->ws.phase == 0) {
            n = hdr;
        }
    }
    if (now < h->not_before) {
        if (h->not_before < *wake) {
            *wake = h->not_before;
        }
        return 0;
    }
    uint64_t rate = rate_of(c, i);
    if (rate) {
        double burst = (double)rate / 100.0 < 64.0 ? 64.0 : (double)rate / 100.0;
        if (now > h->refill_at) {
            h->tokens += (double)rate * (double)(now - h->refill_at) / 1000.0;
            h->refill_at = now;
        }
        if (h->tokens > burst) {
            h->tokens = burst;
        }
        if (h->tokens < 1.0) {
            uint64_t ms = (uint64_t)((1.0 - h->tokens) * 1000.0 / (double)rate) + 1;
            if (now + ms < *wake) {
                *wake = now + ms;
            }
            return 0;
        }
        if ((double)n > h->tokens) {
            n = (uint64_t)h->tokens;
        }
    }
    const trigger *t = &c->trig;
    if (t->armed && (t->dir & (1 << i))) {
        if (t->bytes && n > t->bytes) {
            n = t->bytes;
        }
        if (t->frames) {
            wsp copy = h->ws;
            uint64_t left = t->frames;
            n = ws_scan(&copy, h->buf + h->off, (size_t)n, 0, &left, NULL);
        }
    }
    return (size_t)n;
}

/* Wrote n bytes of direction i: bookkeeping. Returns 1 when the trigger fired. */
static int wrote(tether__chaos *c, conn *k, int i, size_t n, uint64_t now)
{
    half *h = &k->h[i];
    trigger *t = &c->trig;
    int counts = t->armed && (t->dir & (1 << i));
    uint64_t frames = 0;
    ws_scan(&h->ws, h->buf + h->off, n, 0, counts && t->frames ? &t->frames : NULL, &frames);
    h->off += n;
    h->len -= n;
    h->wr += n;
    if (h->len == 0) {
        h->off = 0;
    }
    while (h->mn > 0 && h->m[h->mh].end <= h->wr) {
        h->mh = (h->mh + 1) % MARKS;
        h->mn--;
    }
    if (rate_of(c, i)) {
        h->tokens -= (double)n;
    }
    if (c->sh[i].split && c->sh[i].gap) {
        h->not_before = now + c->sh[i].gap;
    }
    if (i == 0) {
        c->st.bytes_up += n;
        c->st.frames_up += frames;
    } else {
        c->st.bytes_down += n;
        c->st.frames_down += frames;
    }
    if (counts && t->bytes) {
        t->bytes -= n < t->bytes ? n : t->bytes;
        return t->bytes == 0;
    }
    return counts && t->frames == 0;
}

/* Reads what fd[i] has. Returns -1 when the connection must go. */
int tether__chaos_read(tether__chaos *c, conn *k, int i, uint64_t now)
{
    half *h = &k->h[i];
    if (k->poisoned) {
        ssize_t n = recv(k->fd[i], c->scratch, sizeof c->scratch, 0);
        if (n > 0) {
            c->st.swallowed += (uint64_t)n;
            *(i == 0 ? &c->st.read_up : &c->st.read_down) += (uint64_t)n;
        } else if (n == 0) {
            h->eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            h->gone = h->eof = 1;
        }
        return 0;
    }
    uint64_t cap = cap_of(c, i);
    if (h->len >= cap) {
        return 0;
    }
    size_t want = cap - h->len < READ_CHUNK ? (size_t)(cap - h->len) : READ_CHUNK;
    if (h->off + h->len + want > h->alloc) {
        if (h->off > 0) {
            memmove(h->buf, h->buf + h->off, h->len);
            h->off = 0;
        }
        if (h->len + want > h->alloc) {
            size_t na = h->alloc ? h->alloc : FIRST_ALLOC;
            while (na < h->len + want) {
                na *= 2;
            }
            uint8_t *nb = realloc(h->buf, na);
            if (!nb) {
                return 0; /* try again later */
            }
            h->buf = nb;
            h->alloc = na;
        }
    }
    ssize_t n = recv(k->fd[i], h->buf + h->off + h->len, want, 0);
    if (n == 0) {
        h->eof = 1;
        return 0;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return 0;
        }
        h->gone = h->eof = 1;
        return -1;
    }
    h->len += (size_t)n;
    h->rd += (uint64_t)n;
    *(i == 0 ? &c->st.read_up : &c->st.read_down) += (uint64_t)n;
    const shape *s = &c->sh[i];
    uint64_t at = now;
    if (s->delay || s->jitter) {
        at += s->delay + tether__rng_range(&c->shape_rng, 0, s->jitter);
    }
    mark *last = h->mn ? &h->m[(h->mh + h->mn - 1) % MARKS] : NULL;
    if (last && at < last->at) {
        at = last->at; /* never reorder */
    }
    if (last && last->at == at) {
        last->end = h->rd;
    } else {
        mark *m = &h->m[(h->mh + h->mn) % MARKS];
        m->end = h->rd;
        m->at = at;
        h->mn++;
    }
    return 0;
}

/* Writes what direction i may write now. Returns -1 when the connection must
 * go, 1 when a cut trigger fired, 0 otherwise. */
int tether__chaos_write(tether__chaos *c, conn *k, int i, uint64_t now)
{
    half *h = &k->h[i];
    for (int rounds = 0; rounds < 64; rounds++) {
        uint64_t wake = UINT64_MAX;
        size_t n = tether__chaos_allowance(c, k, i, now, &wake);
        if (n == 0) {
            return 0;
        }
        uint32_t split = c->sh[i].split;
        if (split) {
            size_t piece = (size_t)tether__rng_range(&c->shape_rng, 1, split);
            n = piece < n ? piece : n;
        }
        ssize_t w = send(k->fd[1 - i], h->buf + h->off, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return 0;
            }
            k->h[1 - i].gone = 1;
            return -1;
        }
        if (wrote(c, k, i, (size_t)w, now)) {
            return 1;
        }
        if ((size_t)w < n || split) {
            return 0; /* the socket is full, or one piece per wake-up */
        }
    }
    return 0;
}

/* Passes a FIN on once a direction has nothing left. */
void tether__chaos_pass_fin(tether__chaos *c, conn *k, int i)
{
    half *h = &k->h[i];
    if (h->eof && h->len == 0 && !h->shut && !blocked(c, k, i) && !k->h[1 - i].gone) {
        shutdown(k->fd[1 - i], SHUT_WR);
        h->shut = 1;
    }
}

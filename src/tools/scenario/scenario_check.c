/*
 * The scenario suite's verdict, from the peers' records (scenario.h) and the
 * numbers in both stores:
 *
 * - every message delivered exactly once and in order. A receiver's life
 *   starts at its committed cursor X (its S line): its first delivery must be
 *   X + 1 and each next one the one after. A seq delivered by an earlier life
 *   and delivered again after a restart is the documented redelivery window;
 *   it must carry the redelivered flag. Anything below the expected seq is a
 *   duplicate, anything above it a reordering (a gap), anything never
 *   delivered lost;
 * - every payload is the one the sender made for that seq;
 * - the acks the sender's application saw follow each other (each on_acked
 *   range starts right after the last, or after the peer_acked its store had)
 *   and never exceed what the receiver had durably committed: an ack seen
 *   before a receiver restart is at most the cursor that restart found;
 * - at the end: sender's out_last = peer_acked = the number of messages, no
 *   pending, and the receiver's cursor the same: what the sender saw acked is
 *   what the receiver committed.
 */
#include "scenario.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A line of a record, split into its words. */
typedef struct rline {
    char type;   /* S, D, A, ... */
    uint64_t ms; /* timestamp */
    char *w[8];  /* the words after the timestamp */
    int n;       /* how many */
} rline;

static int split(char *line, rline *r)
{
    char *save = NULL;
    char *t = strtok_r(line, " \n", &save);
    if (!t || strlen(t) != 1) {
        return -1;
    }
    r->type = t[0];
    t = strtok_r(NULL, " \n", &save);
    if (!t) {
        return -1;
    }
    r->ms = strtoull(t, NULL, 10);
    r->n = 0;
    while (r->n < 8 && (t = strtok_r(NULL, " \n", &save)) != NULL) {
        r->w[r->n++] = t;
    }
    return 0;
}

static uint64_t num(const rline *r, int i)
{
    return i < r->n ? strtoull(r->w[i], NULL, 10) : 0;
}

static void why(scen_dir *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why(scen_dir *d, const char *fmt, ...)
{
    if (d->why[0]) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
}

/* A receiver restart: when, and the cursor its store had. */
typedef struct rstart {
    uint64_t ms;
    uint64_t cursor;
} rstart;

void scen_check_dir(const char *recv_rec, const char *send_rec, uint64_t expected, size_t size,
                    int tag, uint64_t sender_last, uint64_t sender_acked, uint64_t sender_pending,
                    uint64_t recv_cursor, scen_dir *d)
{
    memset(d, 0, sizeof *d);
    d->expected = expected;
    d->sender_last = sender_last;
    d->sender_acked = sender_acked;
    d->sender_pending = sender_pending;
    d->recv_cursor = recv_cursor;
    uint8_t *seen = calloc(expected + 2, 1);
    rstart *starts = NULL;
    size_t nstarts = 0, capstarts = 0;
    char *line = NULL;
    size_t cap = 0;
    (void)size;
    (void)tag;

    /* the receiver */
    FILE *f = fopen(recv_rec, "r");
    uint64_t next = 1, hi = 0;
    int lives = 0;
    while (f && seen && getline(&line, &cap, f) >= 0) {
        rline r;
        if (split(line, &r) != 0) {
            continue;
        }
        if (r.type == 'S') {
            uint64_t cursor = num(&r, 4);
            if (cursor > hi) {
                why(d,
                    "a receiver started with cursor %llu, above the highest delivery recorded "
                    "(%llu)",
                    (unsigned long long)cursor, (unsigned long long)hi);
                d->reordered++;
            }
            next = cursor + 1;
            lives++;
            if (lives > 1) {
                if (nstarts == capstarts) {
                    capstarts = capstarts ? capstarts * 2 : 16;
                    rstart *ns = realloc(starts, capstarts * sizeof *ns);
                    if (!ns) {
                        break;
                    }
                    starts = ns;
                }
                starts[nstarts++] = (rstart){r.ms, cursor};
            }
            continue;
        }
        if (r.type != 'D') {
            continue;
        }
        uint64_t seq = num(&r, 0);
        int flagged = (int)num(&r, 1), ok = (int)num(&r, 2);
        d->delivered++;
        d->flagged += flagged != 0;
        if (!ok || seq == 0 || seq > expected) {
            d->corrupt++;
            why(d, "seq %llu: the payload is not the one sent", (unsigned long long)seq);
            if (seq == 0 || seq > expected) {
                continue;
            }
        }
        if (seq == next) {
            if (seq <= hi) {
                if (flagged) {
                    d->redelivered++;
                } else {
                    d->duplicates++;
                    why(d,
                        "seq %llu delivered again after a restart without the redelivered "
                        "flag",
                        (unsigned long long)seq);
                }
            }
        } else if (seq < next) {
            d->duplicates++;
            why(d, "seq %llu delivered again (expected %llu)", (unsigned long long)seq,
                (unsigned long long)next);
        } else {
            d->reordered++;
            why(d, "seq %llu delivered when %llu was expected", (unsigned long long)seq,
                (unsigned long long)next);
        }
        seen[seq] = 1;
        next = seq + 1;
        if (seq > hi) {
            hi = seq;
        }
    }
    if (f) {
        fclose(f);
    } else {
        why(d, "cannot read %s", recv_rec);
    }
    for (uint64_t s = 1; seen && s <= expected; s++) {
        if (!seen[s]) {
            if (d->lost == 0) {
                why(d, "seq %llu never delivered", (unsigned long long)s);
            }
            d->lost++;
        }
    }

    /* the sender's acks */
    f = fopen(send_rec, "r");
    uint64_t told = 0;
    while (f && getline(&line, &cap, f) >= 0) {
        rline r;
        if (split(line, &r) != 0) {
            continue;
        }
        if (r.type == 'S') {
            uint64_t stored = num(&r, 3); /* the store's peer_acked: where on_acked goes on */
            if (stored < d->sender_seen) {
                /* on_acked runs after the store recorded the ack: never ahead of it */
                d->ack_gaps++;
                why(d,
                    "the sender's application was told %llu acked, but its store had %llu "
                    "after a restart",
                    (unsigned long long)d->sender_seen, (unsigned long long)stored);
            }
            told = stored;
            if (told > d->sender_seen) {
                d->sender_seen = told;
            }
            continue;
        }
        if (r.type != 'A') {
            continue;
        }
        uint64_t first = num(&r, 0), last = num(&r, 1);
        if (first != told + 1 || last < first) {
            d->ack_gaps++;
            why(d, "on_acked(%llu, %llu) after acks up to %llu", (unsigned long long)first,
                (unsigned long long)last, (unsigned long long)told);
        }
        told = last;
        if (last > d->sender_seen) {
            d->sender_seen = last;
        }
        uint64_t bound = recv_cursor;
        for (size_t i = 0; i < nstarts; i++) {
            if (starts[i].ms > r.ms) {
                bound = starts[i].cursor;
                break;
            }
        }
        if (last > bound) {
            d->ack_beyond++;
            why(d, "the sender saw seq %llu acked, but the receiver had committed only %llu",
                (unsigned long long)last, (unsigned long long)bound);
        }
    }
    if (f) {
        fclose(f);
    } else {
        why(d, "cannot read %s", send_rec);
    }
    free(line);
    free(starts);
    free(seen);

    if (sender_last != expected || sender_acked != expected || sender_pending != 0) {
        why(d,
            "the sender's store: out_last %llu, peer_acked %llu, pending %llu; want %llu, "
            "%llu, 0",
            (unsigned long long)sender_last, (unsigned long long)sender_acked,
            (unsigned long long)sender_pending, (unsigned long long)expected,
            (unsigned long long)expected);
    }
    if (recv_cursor != expected) {
        why(d, "the receiver's store: recv_cursor %llu, want %llu", (unsigned long long)recv_cursor,
            (unsigned long long)expected);
    }
    if (d->sender_seen != sender_acked) {
        why(d, "the sender's application was told acks up to %llu, its store says %llu",
            (unsigned long long)d->sender_seen, (unsigned long long)sender_acked);
    }
    d->ok = d->why[0] == '\0';
}

void scen_count(const char *client_rec, const char *server_rec, scen_counts *out)
{
    memset(out, 0, sizeof *out);
    const char *paths[2] = {client_rec, server_rec};
    char *line = NULL;
    size_t cap = 0;
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(paths[k], "r");
        while (f && getline(&line, &cap, f) >= 0) {
            rline r;
            if (split(line, &r) != 0) {
                continue;
            }
            switch (r.type) {
            case 'S':
                (*(k == 0 ? &out->client_lives : &out->server_lives))++;
                break;
            case 'C':
                out->connects += k == 0;
                break;
            case 'X':
                if (k == 0 && r.n >= 2 && strcmp(r.w[1], "TETHER_ESTALLED") == 0) {
                    out->stalled++;
                } else if (k == 0 && r.n >= 2 && strcmp(r.w[1], "TETHER_EPING") == 0) {
                    out->pinged++;
                }
                break;
            case 'M':
                (*(k == 0 ? &out->mismatches : &out->server_mismatches))++;
                break;
            case 'E':
                out->client_done++;
                break;
            }
        }
        if (f) {
            fclose(f);
        }
    }
    free(line);
}

void scen_tail_init(scen_tail *t, const char *path)
{
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
}

void scen_tail_poll(scen_tail *t)
{
    FILE *f = fopen(t->path, "r");
    if (!f) {
        return;
    }
    if (fseek(f, t->off, SEEK_SET) != 0) {
        fclose(f);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') {
            break; /* a line still being written: read it next time */
        }
        t->off += n;
        rline r;
        if (split(line, &r) != 0) {
            continue;
        }
        switch (r.type) {
        case 'D':
            if (num(&r, 0) > t->delivered) {
                t->delivered = num(&r, 0);
            }
            break;
        case 'A':
            if (num(&r, 1) > t->acked) {
                t->acked = num(&r, 1);
            }
            break;
        case 'G':
            t->generated = num(&r, 0) ? num(&r, 0) : 1;
            break;
        case 'E':
            t->done++;
            break;
        case 'C':
            t->connects++;
            t->last_open = r.ms;
            break;
        case 'Z':
            t->closes++;
            t->last_close = r.ms;
            t->fenced += r.n >= 1 && strcmp(r.w[0], "TETHER_EFENCED") == 0;
            break;
        case 'M':
            t->mismatches++;
            break;
        case 'X':
            t->errors[0]++;
            if (r.n >= 2 && strcmp(r.w[1], "TETHER_ESTALLED") == 0) {
                t->errors[1]++;
            } else if (r.n >= 2 && strcmp(r.w[1], "TETHER_EPING") == 0) {
                t->errors[2]++;
            } else if (r.n >= 2 && strcmp(r.w[1], "TETHER_EMISMATCH") == 0) {
                t->errors[3]++;
            }
            break;
        case 'S':
            /* a new life: its store's acked/cursor count as progress */
            if (num(&r, 3) > t->acked) {
                t->acked = num(&r, 3);
            }
            if (num(&r, 4) > t->delivered) {
                t->delivered = num(&r, 4);
            }
            break;
        }
    }
    free(line);
    fclose(f);
}

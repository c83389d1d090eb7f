/*
 * The fleet scenarios' verdict, from outside: the client's record and store,
 * every instance's record, and the session's row in the database (saved in
 * DIR/pg.state, so that --verify can judge the directory again later).
 *
 * client -> server, received by whichever instance served the session:
 * - within one instance's session (from its C line to the next), deliveries
 *   are consecutive;
 * - across instances, in time order (the records share CLOCK_MONOTONIC), a
 *   session's first delivery never skips past the highest delivered so far;
 * - each seq 1..n delivered, at most once without the redelivered flag:
 *   a repeat is allowed only as the documented redelivery (the client sent
 *   it again, flagged, after the instance that had it died or was fenced
 *   before committing its cursor; a paused instance that wakes up may hand
 *   the unflagged first copy to its application after the new owner
 *   delivered the flagged one, guarantees.md "What fencing does not cover");
 * - every payload the one sent; the database's cursor ends at n, and the
 *   client's store has everything acked and nothing pending.
 * server -> client: the one-server verdict (scenario_check.c), with the acks
 *   the instances' applications were told merged in seq order: no seq told
 *   acked twice, by one instance or two; where the session moved to another
 *   instance the acks may go on past what the previous one reported (it may
 *   have died between committing an ack and telling its application).
 *   Not in time order: an instance frozen between committing an ack and its
 *   on_acked tells its application after it wakes, when the next owner has
 *   reported later acks already. Each instance's own acks come in order.
 */
#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One delivery at an instance, or one ack range it was told. */
typedef struct fev {
    uint64_t ms;    /* when */
    uint64_t a, b;  /* D: seq, -; A: first, last */
    int flagged;    /* D: redelivered */
    int ok;         /* D: payload as sent */
    int inst;       /* which instance */
    int life_first; /* D: the first of its session at that instance */
} fev;

typedef struct fevs {
    fev *v;
    size_t n, cap;
} fevs;

static int push(fevs *e, fev x)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 1024;
        fev *nv = realloc(e->v, cap * sizeof *nv);
        if (!nv) {
            return -1;
        }
        e->v = nv;
        e->cap = cap;
    }
    e->v[e->n++] = x;
    return 0;
}

/* By the ack range's first seq (then time, instance). */
static int by_first(const void *x, const void *y)
{
    const fev *a = x, *b = y;
    if (a->a != b->a) {
        return a->a < b->a ? -1 : 1;
    }
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }
    return a->inst - b->inst;
}

static int by_time(const void *x, const void *y)
{
    const fev *a = x, *b = y;
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }
    return a->inst - b->inst;
}

/* Reads instance i's record: its deliveries into d, its acks into acks;
 * non-consecutive deliveries within one session counted in c2s, acks out of
 * order within one process counted in *ack_bad (the first in ack_why). */
static void read_inst(scen *sc, int i, fevs *d, fevs *acks, scen_dir *c2s, uint64_t *ack_bad,
                      char *ack_why, size_t ack_len)
{
    FILE *f = fopen(sc->irec[i], "r");
    char *line = NULL;
    size_t cap = 0;
    uint64_t prev = 0, prev_ack = 0;
    int first = 1;
    while (f && getline(&line, &cap, f) >= 0) {
        char t = 0;
        unsigned long long ms = 0, x = 0, y = 0, z = 0;
        int n = sscanf(line, "%c %llu %llu %llu %llu", &t, &ms, &x, &y, &z);
        if (n < 2) {
            continue;
        }
        if (t == 'S' || t == 'C') {
            first = 1; /* a new process or a new session here */
            prev_ack = t == 'S' ? 0 : prev_ack;
        } else if (t == 'D' && n == 5) {
            if (!first && x != prev + 1) {
                c2s->reordered++;
                if (!c2s->why[0]) {
                    snprintf(c2s->why, sizeof c2s->why, "%s delivered seq %llu right after %llu",
                             sc->inst[i].name, x, (unsigned long long)prev);
                }
            }
            push(d, (fev){ms, x, 0, (int)y, (int)z, i, first});
            prev = x;
            first = 0;
        } else if (t == 'A' && n >= 4) {
            if (x <= prev_ack || y < x) {
                if (!(*ack_bad)++) {
                    snprintf(ack_why, ack_len, "%s told on_acked(%llu, %llu) after %llu",
                             sc->inst[i].name, x, y, (unsigned long long)prev_ack);
                }
            }
            prev_ack = y > prev_ack ? y : prev_ack;
            push(acks, (fev){ms, x, y, 0, 1, i, 0});
        }
    }
    free(line);
    if (f) {
        fclose(f);
    }
}

/* The client -> server verdict over every instance's deliveries. */
static void check_c2s(scen *sc, uint64_t n, const cli_session_info *cs, uint64_t db_cursor, fevs *d,
                      scen_dir *c2s)
{
    c2s->expected = n;
    c2s->sender_last = cs->out_last;
    c2s->sender_acked = cs->peer_acked;
    c2s->sender_pending = cs->pending;
    c2s->recv_cursor = db_cursor;
    uint8_t *unflagged = calloc(n + 2, 1), *seen = calloc(n + 2, 1);
    if (!unflagged || !seen) { /* no verdict without the check: a failure */
        free(unflagged);
        free(seen);
        snprintf(c2s->why, sizeof c2s->why, "out of memory checking %llu messages",
                 (unsigned long long)n);
        c2s->ok = 0;
        return;
    }
    qsort(d->v, d->n, sizeof d->v[0], by_time);
    uint64_t hi = 0;
    for (size_t k = 0; unflagged && seen && k < d->n; k++) {
        const fev *e = &d->v[k];
        uint64_t seq = e->a;
        c2s->delivered++;
        c2s->flagged += e->flagged != 0;
        if (!e->ok || seq == 0 || seq > n) {
            c2s->corrupt++;
            if (!c2s->why[0]) {
                snprintf(c2s->why, sizeof c2s->why, "seq %llu at %s: not the payload sent",
                         (unsigned long long)seq, sc->inst[e->inst].name);
            }
            continue;
        }
        if (e->life_first && seq > hi + 1) {
            c2s->reordered++;
            if (!c2s->why[0]) {
                snprintf(c2s->why, sizeof c2s->why,
                         "%s began with seq %llu when only %llu had been delivered",
                         sc->inst[e->inst].name, (unsigned long long)seq, (unsigned long long)hi);
            }
        }
        if (seen[seq]) {
            c2s->redelivered += e->flagged != 0 || !unflagged[seq];
        }
        if (!e->flagged) {
            if (unflagged[seq]) {
                c2s->duplicates++;
                if (!c2s->why[0]) {
                    snprintf(c2s->why, sizeof c2s->why,
                             "seq %llu delivered twice without the redelivered flag (again at "
                             "%s)",
                             (unsigned long long)seq, sc->inst[e->inst].name);
                }
            }
            unflagged[seq] = 1;
        }
        seen[seq] = 1;
        hi = seq > hi ? seq : hi;
    }
    for (uint64_t s = 1; seen && s <= n; s++) {
        if (!seen[s]) {
            if (!c2s->lost && !c2s->why[0]) {
                snprintf(c2s->why, sizeof c2s->why, "seq %llu never delivered by any instance",
                         (unsigned long long)s);
            }
            c2s->lost++;
        }
    }
    free(unflagged);
    free(seen);
    if (!c2s->why[0] && (cs->out_last != n || cs->peer_acked != n || cs->pending != 0)) {
        snprintf(c2s->why, sizeof c2s->why,
                 "the client's store: out_last %llu, peer_acked %llu, pending %llu; want %llu, "
                 "%llu, 0",
                 (unsigned long long)cs->out_last, (unsigned long long)cs->peer_acked,
                 (unsigned long long)cs->pending, (unsigned long long)n, (unsigned long long)n);
    }
    if (!c2s->why[0] && db_cursor != n) {
        snprintf(c2s->why, sizeof c2s->why, "the database's recv_cursor is %llu, want %llu",
                 (unsigned long long)db_cursor, (unsigned long long)n);
    }
    c2s->ok = c2s->why[0] == '\0';
}

/* DIR/acks.rec: the acks every instance's application was told, in seq
 * order, as one sender's record; where the next range is another
 * instance's and starts further on, an S line with what that one found in
 * the database (the acks go on from there). */
static int write_acks(scen *sc, fevs *acks, char *path, size_t len)
{
    snprintf(path, len, "%s/acks.rec", sc->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    qsort(acks->v, acks->n, sizeof acks->v[0], by_first);
    int last = -1;
    uint64_t told = 0;
    for (size_t k = 0; k < acks->n; k++) {
        const fev *e = &acks->v[k];
        if (e->inst != last && e->a > told + 1) {
            fprintf(f, "S %llu 0 - 0 %llu 0\n", (unsigned long long)e->ms,
                    (unsigned long long)(e->a - 1));
        }
        fprintf(f, "A %llu %llu %llu\n", (unsigned long long)e->ms, (unsigned long long)e->a,
                (unsigned long long)e->b);
        last = e->inst;
        told = e->b > told ? e->b : told;
    }
    fclose(f);
    return 0;
}

/* The session's row in the database, saved to (or, again, read from) pg.state. */
static int db_state(scen *sc, int again, cli_session_info *ss)
{
    char p[PATH_MAX + 96];
    snprintf(p, sizeof p, "%s/pg.state", sc->dir);
    if (again) {
        unsigned long long v[4];
        FILE *f = fopen(p, "r");
        int ok = f && fscanf(f, "out_last %llu peer_acked %llu pending %llu recv_cursor %llu",
                             &v[0], &v[1], &v[2], &v[3]) == 4;
        if (f) {
            fclose(f);
        }
        if (!ok) {
            return scen_fail(sc, "cannot read %s (the database's numbers of the run)", p);
        }
        ss->out_last = v[0];
        ss->peer_acked = v[1];
        ss->pending = v[2];
        ss->recv_cursor = v[3];
        return 0;
    }
    const char *role = NULL;
    cli_session_info all[2];
    size_t n = 0;
    char err[512];
    if (cli_store_read(sc->R->pg_uri, &role, all, 2, &n, err, sizeof err) != TETHER_OK || n != 1) {
        return scen_fail(sc, "cannot read the session from the database: %s",
                         n != 1 ? "not exactly one session" : err);
    }
    *ss = all[0];
    FILE *f = fopen(p, "w");
    if (f) {
        fprintf(f, "out_last %llu\npeer_acked %llu\npending %llu\nrecv_cursor %llu\n",
                (unsigned long long)ss->out_last, (unsigned long long)ss->peer_acked,
                (unsigned long long)ss->pending, (unsigned long long)ss->recv_cursor);
        fclose(f);
    }
    return 0;
}

int scen_fleet_verify(scen *sc, int again)
{
    if (again) {
        sc->ninst = 0;
        while (sc->ninst < SCEN_FLEET_MAX && access(sc->irec[sc->ninst], R_OK) == 0) {
            sc->ninst++;
        }
    }
    cli_session_info cs[2], ss;
    memset(&ss, 0, sizeof ss);
    const char *role;
    size_t cn = 0;
    char err[512];
    if (cli_store_read(sc->cdb, &role, cs, 2, &cn, err, sizeof err) != TETHER_OK || cn != 1) {
        return scen_fail(sc, "cannot read the client's store: %s",
                         cn != 1 ? "not one session" : err);
    }
    if (db_state(sc, again, &ss) != 0) {
        return -1;
    }
    if (!again && memcmp(cs[0].id.bytes, ss.id.bytes, 16) != 0) {
        return scen_fail(sc, "the database's session is not the client's");
    }
    fevs d = {0}, acks = {0};
    scen_dir c2s, s2c;
    memset(&c2s, 0, sizeof c2s);
    uint64_t mism = 0, ack_bad = 0;
    char ack_why[256] = "";
    for (int i = 0; i < sc->ninst; i++) {
        read_inst(sc, i, &d, &acks, &c2s, &ack_bad, ack_why, sizeof ack_why);
        scen_tail t;
        scen_tail_init(&t, sc->irec[i]);
        scen_tail_poll(&t);
        mism += t.mismatches;
    }
    check_c2s(sc, sc->n, &cs[0], ss.recv_cursor, &d, &c2s);
    char ap[PATH_MAX + 96];
    if (write_acks(sc, &acks, ap, sizeof ap) != 0) {
        free(d.v);
        free(acks.v);
        return scen_fail(sc, "cannot write %s/acks.rec", sc->dir);
    }
    free(d.v);
    free(acks.v);
    scen_check_dir(sc->crec, ap, sc->m, (size_t)sc->size, TAG_S2C, ss.out_last, ss.peer_acked,
                   ss.pending, cs[0].recv_cursor, &s2c);
    scen_tail ct;
    scen_tail_init(&ct, sc->crec);
    scen_tail_poll(&ct);
    sc->t.reconnects = ct.connects > 0 ? ct.connects - 1 : 0;
    scen_tally_dirs(sc, &c2s, &s2c);
    if (!c2s.ok) {
        return scen_fail(sc, "client -> fleet: %s", c2s.why);
    }
    if (!s2c.ok) {
        return scen_fail(sc, "fleet -> client: %s", s2c.why);
    }
    if (ack_bad) {
        return scen_fail(sc, "fleet -> client: %s", ack_why);
    }
    if (ct.mismatches || mism) {
        return scen_fail(sc, "a mismatch was reported (client %llu, instances %llu)",
                         (unsigned long long)ct.mismatches, (unsigned long long)mism);
    }
    return 0;
}

void scen_fleet_cleanup(scen *sc)
{
    if (!sc->fleet_owns_db) {
        return; /* the database held sessions before: not ours to delete */
    }
    const char *role = NULL;
    cli_session_info all[4];
    size_t n = 0;
    char err[512];
    if (cli_store_read(sc->R->pg_uri, &role, all, 4, &n, err, sizeof err) != TETHER_OK || !n) {
        return;
    }
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = sc->R->pg_uri;
    tether_server *srv = NULL;
    int rc = tether_server_create(&cfg, &srv);
    for (size_t i = 0; rc == TETHER_OK && i < n && i < 4; i++) {
        uint64_t dropped = 0;
        rc = tether_server_session_delete(srv, &all[i].id, &dropped);
    }
    if (rc != TETHER_OK) {
        fprintf(stderr,
                "tether scenario: cannot delete the scenario's session from the --pg "
                "database: %s: %s\n",
                tether_err_name(rc), tether_errmsg());
    }
    tether_server_destroy(srv);
}

/*
 * tether demo: the verdict on both streams, by the scenario runner's checker
 * (scenario_check.c) from the two records and the two stores, and the report
 * (text or JSON).
 */
#include "demo.h"

#include <stdlib.h>
#include <string.h>

/* Reads one store: exactly one session. 0 or -1 (with sc->error set). */
static int read_store(demo *d, const char *path, const char *whose, cli_session_info *out)
{
    cli_session_info si[2];
    const char *role = NULL;
    size_t count = 0;
    char err[512] = "";
    int rc = cli_store_read(path, &role, si, 2, &count, err, sizeof err);
    if (rc != TETHER_OK || count != 1) {
        return scen_fail(&d->sc, "cannot read the %s store: %s", whose,
                         rc != TETHER_OK ? err : "not exactly one session");
    }
    *out = si[0];
    return 0;
}

void demo_verify(demo *d, demo_result *r)
{
    scen *sc = &d->sc;
    uint64_t n = d->o.messages, m = d->o.s2c;
    r->store_ok = read_store(d, sc->cdb, "client's", &r->cs) == 0 &&
                  read_store(d, sc->sdb, "server's", &r->ss) == 0;
    if (r->store_ok && memcmp(r->cs.id.bytes, r->ss.id.bytes, 16) != 0) {
        scen_fail(sc, "the server's session is not the client's");
        r->store_ok = 0;
    }
    /* the runner's checker, once per direction */
    scen_check_dir(sc->srec, sc->crec, n, (size_t)d->o.size, TAG_C2S, r->cs.out_last,
                   r->cs.peer_acked, r->cs.pending, r->ss.recv_cursor, &r->c2s);
    if (m > 0) {
        scen_check_dir(sc->crec, sc->srec, m, 0, TAG_S2C, r->ss.out_last, r->ss.peer_acked,
                       r->ss.pending, r->cs.recv_cursor, &r->s2c);
    }
    scen_tail_poll(&sc->st);
    r->reconnects = sc->st.connects > 0 ? sc->st.connects - 1 : 0;
    r->mismatches = sc->st.mismatches;
    r->cuts = scen_relay_value(sc, "cut_events");
    r->cuts_rst = scen_relay_value(sc, "cut_events_rst");
    r->cut_conns = scen_relay_value(sc, "cut_conns");
    /* the server never restarts: a repeat it was given is a duplicate, flag or not */
    int c2s_ok = r->store_ok && r->c2s.ok && r->c2s.redelivered == 0 && r->rx.foreign == 0 &&
                 r->mismatches == 0 && r->c2s.delivered == n;
    int s2c_ok = m == 0 || (r->s2c.ok && r->rx.s2c_acked == m);
    r->ok = sc->error[0] == '\0' && c2s_ok && s2c_ok && d->kills >= d->o.kills;
    if (sc->error[0] == '\0' && !r->ok) {
        if (d->kills < d->o.kills) {
            scen_fail(sc,
                      "only %llu of %llu kills happened before the stream ended; use more "
                      "--messages",
                      (unsigned long long)d->kills, (unsigned long long)d->o.kills);
        } else if (!r->c2s.ok) {
            scen_fail(sc, "verification failed: client -> server: %s", r->c2s.why);
        } else if (m > 0 && !r->s2c.ok) {
            scen_fail(sc, "verification failed: server -> client: %s", r->s2c.why);
        } else {
            scen_fail(sc, "verification failed");
        }
    }
}

void demo_print_text(const demo *d, const demo_result *r)
{
    const scen_dir *c = &r->c2s;
    double rate = d->elapsed > 0 ? (double)(d->o.messages - c->lost) / d->elapsed : 0;
    printf("tether demo: %llu messages of %llu bytes, seed %llu, cuts every %u-%u ms\n",
           (unsigned long long)d->o.messages, (unsigned long long)d->o.size,
           (unsigned long long)d->o.seed, (unsigned)d->o.cut_min, (unsigned)d->o.cut_max);
    printf("  sent             %llu (the client's last seq, from its store)\n",
           (unsigned long long)r->cs.out_last);
    printf("  acked            %llu (the client's peer_acked, from its store)\n",
           (unsigned long long)r->cs.peer_acked);
    printf("  delivered        %llu (on_message calls at the server; %llu flagged redelivered)\n",
           (unsigned long long)c->delivered, (unsigned long long)c->flagged);
    printf("  lost             %llu\n", (unsigned long long)c->lost);
    printf("  duplicates       %llu (%llu unflagged, %llu flagged redelivered)\n",
           (unsigned long long)(c->duplicates + c->redelivered),
           (unsigned long long)c->duplicates, (unsigned long long)c->redelivered);
    printf("  out-of-order     %llu\n", (unsigned long long)c->reordered);
    printf("  mismatches       %llu\n", (unsigned long long)c->corrupt);
    if (r->rx.foreign || r->mismatches) {
        printf("  other sessions   %llu messages; session mismatches %llu\n",
               (unsigned long long)r->rx.foreign, (unsigned long long)r->mismatches);
    }
    printf("  cuts             %llu (%llu FIN, %llu RST; %llu connections)\n",
           (unsigned long long)r->cuts, (unsigned long long)(r->cuts - r->cuts_rst),
           (unsigned long long)r->cuts_rst, (unsigned long long)r->cut_conns);
    printf("  kills            %llu (SIGKILL of the client)\n", (unsigned long long)d->kills);
    printf("  client restarts  %llu\n", (unsigned long long)d->restarts);
    printf("  reconnects       %llu (sessions resumed at the server after the first open)\n",
           (unsigned long long)r->reconnects);
    printf("  elapsed          %.2f s\n", d->elapsed);
    printf("  rate             %.0f messages/s\n", rate);
    if (d->o.s2c > 0) {
        printf("  server->client   sent %llu, acked %llu, received %llu, lost %llu, duplicates "
               "%llu, redelivered after a kill %llu, out-of-order %llu, mismatches %llu\n",
               (unsigned long long)d->s2c_sent, (unsigned long long)r->rx.s2c_acked,
               (unsigned long long)(d->o.s2c - r->s2c.lost), (unsigned long long)r->s2c.lost,
               (unsigned long long)r->s2c.duplicates, (unsigned long long)r->s2c.redelivered,
               (unsigned long long)r->s2c.reordered, (unsigned long long)r->s2c.corrupt);
    }
    if (r->ok) {
        printf("result: OK: nothing lost, duplicated or reordered\n");
    } else {
        printf("result: FAILED: %s\n", d->sc.error);
    }
}

void demo_print_json(const demo *d, const demo_result *r)
{
    const scen_dir *c = &r->c2s;
    double rate = d->elapsed > 0 ? (double)(d->o.messages - c->lost) / d->elapsed : 0;
    uint64_t s2c_received = d->o.s2c > 0 ? d->o.s2c - r->s2c.lost : 0;
    cli_buf b = {0};
    cli_buf_printf(&b, "{\"ok\":%s,\"messages\":%llu,\"size\":%llu,\"seed\":%llu,",
                   r->ok ? "true" : "false", (unsigned long long)d->o.messages,
                   (unsigned long long)d->o.size, (unsigned long long)d->o.seed);
    cli_buf_printf(&b,
                   "\"sent\":%llu,\"acked\":%llu,\"delivered\":%llu,\"delivered_flagged\":%llu,",
                   (unsigned long long)r->cs.out_last, (unsigned long long)r->cs.peer_acked,
                   (unsigned long long)c->delivered, (unsigned long long)c->flagged);
    cli_buf_printf(&b,
                   "\"lost\":%llu,\"duplicates\":%llu,\"duplicates_unflagged\":%llu,"
                   "\"duplicates_flagged\":%llu,\"out_of_order\":%llu,\"mismatches\":%llu,",
                   (unsigned long long)c->lost, (unsigned long long)(c->duplicates + c->redelivered),
                   (unsigned long long)c->duplicates, (unsigned long long)c->redelivered,
                   (unsigned long long)c->reordered, (unsigned long long)c->corrupt);
    cli_buf_printf(&b, "\"other_session_messages\":%llu,\"session_mismatches\":%llu,",
                   (unsigned long long)r->rx.foreign, (unsigned long long)r->mismatches);
    cli_buf_printf(&b,
                   "\"cuts\":%llu,\"cuts_rst\":%llu,\"connections_cut\":%llu,\"kills\":%llu,"
                   "\"client_restarts\":%llu,\"reconnects\":%llu,",
                   (unsigned long long)r->cuts, (unsigned long long)r->cuts_rst,
                   (unsigned long long)r->cut_conns, (unsigned long long)d->kills,
                   (unsigned long long)d->restarts, (unsigned long long)r->reconnects);
    cli_buf_printf(&b, "\"elapsed_s\":%.3f,\"messages_per_s\":%.0f,", d->elapsed, rate);
    cli_buf_printf(&b,
                   "\"server_to_client\":{\"messages\":%llu,\"sent\":%llu,\"acked\":%llu,"
                   "\"received\":%llu,\"client_recv_cursor\":%llu,\"lost\":%llu,"
                   "\"duplicates\":%llu,\"redelivered_after_kill\":%llu,\"out_of_order\":%llu,"
                   "\"mismatches\":%llu},",
                   (unsigned long long)d->o.s2c, (unsigned long long)d->s2c_sent,
                   (unsigned long long)r->rx.s2c_acked, (unsigned long long)s2c_received,
                   (unsigned long long)r->cs.recv_cursor, (unsigned long long)r->s2c.lost,
                   (unsigned long long)r->s2c.duplicates, (unsigned long long)r->s2c.redelivered,
                   (unsigned long long)r->s2c.reordered, (unsigned long long)r->s2c.corrupt);
    cli_buf_add(&b, "\"error\":", 8);
    if (r->ok) {
        cli_buf_add(&b, "null", 4);
    } else {
        cli_buf_json_str(&b, d->sc.error, strlen(d->sc.error));
    }
    cli_buf_add(&b, "}\n", 2);
    if (b.data != NULL) {
        fputs(b.data, stdout);
        fflush(stdout);
    }
    cli_buf_free(&b);
}

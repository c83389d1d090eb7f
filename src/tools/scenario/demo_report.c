/*
 * tether demo: verification of the two streams and the report (text or JSON).
 */
#include "demo.h"

#include <stdlib.h>
#include <string.h>

/* Parses DIR/client.out: one JSON line per message the client received. */
int demo_check_s2c(const demo *d, s2c_check *c)
{
    memset(c, 0, sizeof *c);
    uint64_t m = d->o.s2c;
    uint8_t *seen = calloc(m + 1, 1);
    FILE *f = fopen(d->out_path, "r");
    if (seen == NULL || f == NULL) {
        free(seen);
        if (f != NULL) {
            fclose(f);
        }
        return m == 0 ? 0 : -1;
    }
    char *line = NULL;
    size_t cap = 0;
    uint64_t highest = 0;
    while (getline(&line, &cap, f) >= 0) {
        const char *ps = strstr(line, "\"seq\":");
        const char *pt = strstr(line, "\"text\":\"s2c ");
        int flagged = strstr(line, "\"redelivered\":true") != NULL;
        c->received++;
        uint64_t seq = ps ? strtoull(ps + 6, NULL, 10) : 0;
        uint64_t said = pt ? strtoull(pt + 12, NULL, 10) : 0;
        if (seq == 0 || seq > m || said != seq) {
            c->mismatches++;
            continue;
        }
        if (seen[seq]) {
            if (flagged) {
                c->flagged++;
            } else {
                c->duplicates++;
            }
            continue;
        }
        seen[seq] = 1;
        c->distinct++;
        if (seq != highest + 1) {
            c->out_of_order++;
        }
        highest = seq > highest ? seq : highest;
    }
    free(line);
    fclose(f);
    c->lost = m - c->distinct;
    free(seen);
    return 0;
}

void demo_verify(demo *d, demo_result *r)
{
    uint64_t n = d->o.messages;
    r->lost = n - r->rx.distinct;
    int c2s_ok = r->store_ok && r->lost == 0 && r->rx.duplicates == 0 &&
                 r->rx.duplicates_flagged == 0 && r->rx.out_of_order == 0 &&
                 r->rx.mismatches == 0 && r->rx.foreign == 0 && r->rx.mismatch_events == 0 &&
                 r->sent == n && r->acked == n && r->rx.delivered == n;
    int s2c_ok = d->o.s2c == 0 || (r->s2c.lost == 0 && r->s2c.duplicates == 0 &&
                                   r->s2c.out_of_order == 0 && r->s2c.mismatches == 0 &&
                                   r->rx.s2c_acked == d->o.s2c && r->recv_cursor == d->o.s2c);
    r->ok = d->error[0] == '\0' && c2s_ok && s2c_ok && d->kills >= d->o.kills;
    if (d->error[0] == '\0' && !r->ok) {
        if (d->kills < d->o.kills) {
            snprintf(d->error, sizeof d->error,
                     "only %llu of %llu kills happened before the "
                     "stream ended; use more --messages",
                     (unsigned long long)d->kills, (unsigned long long)d->o.kills);
        } else {
            snprintf(d->error, sizeof d->error, "verification failed");
        }
    }
}

void demo_print_text(const demo *d, const demo_result *r)
{
    const demo_rx *x = &r->rx;
    double rate = d->elapsed > 0 ? (double)x->distinct / d->elapsed : 0;
    printf("tether demo: %llu messages of %llu bytes, seed %llu, cuts every %u-%u ms\n",
           (unsigned long long)d->o.messages, (unsigned long long)d->o.size,
           (unsigned long long)d->o.seed, (unsigned)d->o.cut_min, (unsigned)d->o.cut_max);
    printf("  sent             %llu (the client's last seq, from its store)\n",
           (unsigned long long)r->sent);
    printf("  acked            %llu (the client's peer_acked, from its store)\n",
           (unsigned long long)r->acked);
    printf("  delivered        %llu (on_message calls at the server; %llu flagged redelivered)\n",
           (unsigned long long)x->delivered, (unsigned long long)x->flagged);
    printf("  lost             %llu\n", (unsigned long long)r->lost);
    printf("  duplicates       %llu (%llu unflagged, %llu flagged redelivered)\n",
           (unsigned long long)(x->duplicates + x->duplicates_flagged),
           (unsigned long long)x->duplicates, (unsigned long long)x->duplicates_flagged);
    printf("  out-of-order     %llu\n", (unsigned long long)x->out_of_order);
    printf("  mismatches       %llu\n", (unsigned long long)x->mismatches);
    if (x->foreign || x->mismatch_events) {
        printf("  other sessions   %llu messages; session mismatches %llu\n",
               (unsigned long long)x->foreign, (unsigned long long)x->mismatch_events);
    }
    printf("  cuts             %llu (%llu FIN, %llu RST; %llu connections)\n",
           (unsigned long long)r->rs.cuts, (unsigned long long)(r->rs.cuts - r->rs.cuts_rst),
           (unsigned long long)r->rs.cuts_rst, (unsigned long long)r->rs.cut_conns);
    printf("  kills            %llu (SIGKILL of the client)\n", (unsigned long long)d->kills);
    printf("  client restarts  %llu\n", (unsigned long long)d->restarts);
    printf("  reconnects       %llu (sessions resumed at the server after the first open)\n",
           (unsigned long long)(x->opens > 0 ? x->opens - 1 : 0));
    printf("  elapsed          %.2f s\n", d->elapsed);
    printf("  rate             %.0f messages/s\n", rate);
    if (d->o.s2c > 0) {
        printf("  server->client   sent %llu, acked %llu, received %llu, lost %llu, duplicates "
               "%llu, redelivered after a kill %llu, out-of-order %llu, mismatches %llu\n",
               (unsigned long long)d->s2c_sent, (unsigned long long)x->s2c_acked,
               (unsigned long long)r->s2c.distinct, (unsigned long long)r->s2c.lost,
               (unsigned long long)r->s2c.duplicates, (unsigned long long)r->s2c.flagged,
               (unsigned long long)r->s2c.out_of_order, (unsigned long long)r->s2c.mismatches);
    }
    if (r->ok) {
        printf("result: OK: nothing lost, duplicated or reordered\n");
    } else {
        printf("result: FAILED: %s\n", d->error);
    }
}

void demo_print_json(const demo *d, const demo_result *r)
{
    const demo_rx *x = &r->rx;
    double rate = d->elapsed > 0 ? (double)x->distinct / d->elapsed : 0;
    cli_buf b = {0};
    cli_buf_printf(&b, "{\"ok\":%s,\"messages\":%llu,\"size\":%llu,\"seed\":%llu,",
                   r->ok ? "true" : "false", (unsigned long long)d->o.messages,
                   (unsigned long long)d->o.size, (unsigned long long)d->o.seed);
    cli_buf_printf(&b,
                   "\"sent\":%llu,\"acked\":%llu,\"delivered\":%llu,\"delivered_flagged\":%llu,",
                   (unsigned long long)r->sent, (unsigned long long)r->acked,
                   (unsigned long long)x->delivered, (unsigned long long)x->flagged);
    cli_buf_printf(&b,
                   "\"lost\":%llu,\"duplicates\":%llu,\"duplicates_unflagged\":%llu,"
                   "\"duplicates_flagged\":%llu,\"out_of_order\":%llu,\"mismatches\":%llu,",
                   (unsigned long long)r->lost,
                   (unsigned long long)(x->duplicates + x->duplicates_flagged),
                   (unsigned long long)x->duplicates, (unsigned long long)x->duplicates_flagged,
                   (unsigned long long)x->out_of_order, (unsigned long long)x->mismatches);
    cli_buf_printf(&b, "\"other_session_messages\":%llu,\"session_mismatches\":%llu,",
                   (unsigned long long)x->foreign, (unsigned long long)x->mismatch_events);
    cli_buf_printf(&b,
                   "\"cuts\":%llu,\"cuts_rst\":%llu,\"connections_cut\":%llu,\"kills\":%llu,"
                   "\"client_restarts\":%llu,\"reconnects\":%llu,",
                   (unsigned long long)r->rs.cuts, (unsigned long long)r->rs.cuts_rst,
                   (unsigned long long)r->rs.cut_conns, (unsigned long long)d->kills,
                   (unsigned long long)d->restarts,
                   (unsigned long long)(x->opens > 0 ? x->opens - 1 : 0));
    cli_buf_printf(&b, "\"elapsed_s\":%.3f,\"messages_per_s\":%.0f,", d->elapsed, rate);
    cli_buf_printf(&b,
                   "\"server_to_client\":{\"messages\":%llu,\"sent\":%llu,\"acked\":%llu,"
                   "\"received\":%llu,\"client_recv_cursor\":%llu,\"lost\":%llu,"
                   "\"duplicates\":%llu,\"redelivered_after_kill\":%llu,\"out_of_order\":%llu,"
                   "\"mismatches\":%llu},",
                   (unsigned long long)d->o.s2c, (unsigned long long)d->s2c_sent,
                   (unsigned long long)x->s2c_acked, (unsigned long long)r->s2c.distinct,
                   (unsigned long long)r->recv_cursor, (unsigned long long)r->s2c.lost,
                   (unsigned long long)r->s2c.duplicates, (unsigned long long)r->s2c.flagged,
                   (unsigned long long)r->s2c.out_of_order, (unsigned long long)r->s2c.mismatches);
    cli_buf_add(&b, "\"error\":", 8);
    if (r->ok) {
        cli_buf_add(&b, "null", 4);
    } else {
        cli_buf_json_str(&b, d->error, strlen(d->error));
    }
    cli_buf_add(&b, "}\n", 2);
    if (b.data != NULL) {
        fputs(b.data, stdout);
        fflush(stdout);
    }
    cli_buf_free(&b);
}

/*
 * The server's GET /metrics page: tether_server_stats() in the Prometheus text
 * exposition format (version 0.0.4), one HELP and TYPE line per metric.
 * docs/operations.md lists the metrics; a test reads them back.
 */
#include <stddef.h>

#include "server_int.h"
#include "common/alloc.h"

/* One metric: its name, type, help text and the stats field it shows. */
typedef struct metric {
    const char *name; /* full name, tether_ prefix */
    const char *type; /* "counter" or "gauge" */
    const char *help; /* one line */
    size_t off;       /* offset of the uint64_t in the statistics */
} metric;

#define M(name, type, field, help)                                                                 \
    {                                                                                              \
        "tether_" name, type, help, offsetof(tether_server_statistics, field)                      \
    }

static const metric metrics[] = {
    M("messages_sent_total", "counter", messages_sent,
      "Messages committed to session outboxes by tether_server_send."),
    M("messages_acked_total", "counter", messages_acked,
      "Messages to clients that the clients acknowledged."),
    M("messages_delivered_total", "counter", messages_delivered,
      "Messages from clients handed to on_message, redeliveries included."),
    M("messages_redelivered_total", "counter", messages_redelivered,
      "Messages from clients handed to on_message flagged redelivered."),
    M("messages_dropped_total", "counter", messages_dropped,
      "Unacknowledged messages removed with expired or deleted sessions."),
    M("outbox_pending_messages", "gauge", pending_messages,
      "Unacknowledged messages in all session outboxes."),
    M("outbox_pending_bytes", "gauge", pending_bytes,
      "Payload bytes of the unacknowledged messages in all session outboxes."),
    M("received_bytes_total", "counter", bytes_in,
      "WebSocket message payload bytes received (tether frames, no headers)."),
    M("sent_bytes_total", "counter", bytes_out,
      "WebSocket message payload bytes written (tether frames, no headers)."),
    M("sessions", "gauge", sessions, "Sessions in the server's store."),
    M("sessions_online", "gauge", sessions_online, "Sessions connected now."),
    M("sessions_offline", "gauge", sessions_offline, "Sessions in the store not connected now."),
    M("sessions_opened_total", "counter", sessions_opened,
      "HELLOs welcomed, new and resumed sessions."),
    M("handshakes_refused_total", "counter", handshakes_refused,
      "Upgrades refused with an HTTP status and HELLOs refused or answered with a mismatch."),
    M("sessions_expired_total", "counter", sessions_expired,
      "Sessions removed after session_idle_expiry_ms offline."),
    M("sessions_deleted_total", "counter", sessions_deleted,
      "Sessions removed by tether_server_session_delete."),
};

size_t tether__srv_metrics_render(const tether_server_statistics *st, char *buf, size_t len)
{
    size_t used = 0;
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        const metric *m = &metrics[i];
        uint64_t v;
        memcpy(&v, (const char *)st + m->off, sizeof v);
        int w = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0,
                         "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m->name, m->help, m->name,
                         m->type, m->name, (unsigned long long)v);
        if (w < 0) {
            return used;
        }
        used += (size_t)w;
    }
    return used;
}

int tether__srv_metrics_http(void *owner, const char *path, char **body, size_t *len,
                             const char **type)
{
    tether_server *s = owner;
    tether_server_statistics st;
    if (strcmp(path, "/metrics") != 0 || tether_server_stats(s, &st) != TETHER_OK) {
        return 0;
    }
    size_t need = tether__srv_metrics_render(&st, NULL, 0);
    *body = tether__malloc(need + 1);
    if (!*body) {
        return 0;
    }
    *len = tether__srv_metrics_render(&st, *body, need + 1);
    *type = "text/plain; version=0.0.4; charset=utf-8";
    return 200;
}

/* ---- counts for tests (server_int.h) ---- */

size_t tether__srv_debug_loaded(tether_server *s)
{
    pthread_mutex_lock(&s->tlock);
    size_t n = s->nsessions;
    pthread_mutex_unlock(&s->tlock);
    return n;
}

size_t tether__srv_debug_carriage(tether_server *s)
{
    return tether__tp_carriage_conns(s->tp);
}

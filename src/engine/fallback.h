/*
 * Which carriage a client uses next: WebSocket or the HTTP carriage
 * (proto/HTTP.md section 15). Pure: no clock, no I/O; the client feeds it the
 * end of each attempt or connection and the time, and asks before each
 * attempt. Deterministic, so the rules are unit-tested with made-up events
 * (tests/unit/fallback_test.c).
 *
 * In TETHER_TRANSPORT_AUTO the client starts on WebSocket and moves to HTTP
 * when WebSocket failed in a way that points at the path while HTTP may pass:
 * ESTALLED (a 101, then no WELCOME), an HTTP 426 to the upgrade (a proxy
 * stripped Upgrade), EHANDSHAKE on a 101 (no Upgrade or accept key), a proxy
 * refusing CONNECT with 403 for a ws:// url (the http:// carriage needs no
 * CONNECT), or two WebSocket connections in a row welcomed and then dead by
 * EPING before any ACK came back. A 401 or 403 to the upgrade tries the HTTP
 * open once: welcomed there, the client stays on HTTP; refused there too, it
 * is permanent. The verdict is kept memory_ms; then the next attempt probes
 * WebSocket, which wins back only with a WELCOME; a failed probe returns to
 * HTTP for twice as long (at most 12 times memory_ms).
 */
#ifndef TETHER_FALLBACK_H
#define TETHER_FALLBACK_H

#include <stdint.h>

/* What ended (the client's after-close view of one attempt or connection). */
typedef struct tether__fb_event {
    int error;        /* tether_err that ended it */
    int http_status;  /* HTTP status of a refused upgrade or open, else 0 */
    int proxy_status; /* the proxy's status for CONNECT when not 200, else 0 */
    int welcomed;     /* a WELCOME arrived on it */
    int acked;        /* an ACK of our DATA arrived on it (a full round trip) */
    int tls;          /* the url is wss:// */
} tether__fb_event;

typedef struct tether__fb {
    int mode;               /* tether_transport_mode configured */
    int http;               /* 1: the next or current attempt uses the HTTP carriage */
    int auth_try;           /* 1: this HTTP attempt is the one try after a 401/403 upgrade */
    int probing;            /* 1: this WebSocket attempt is a probe after a fallback */
    uint32_t early_deaths;  /* WebSocket connections in a row welcomed, then EPING before an ACK */
    uint32_t probes_failed; /* WebSocket probes failed since the last fallback */
    uint32_t memory_ms;     /* how long a verdict is kept at first, ms */
    uint64_t http_until;    /* AUTO on HTTP: probe WebSocket from this time on, ms */
    char why[160];          /* why the carriage last changed ("" before any change) */
    uint32_t changes;       /* counts changes of the verdict to remember (a fallback, a failed
                               or successful probe): the client stores it when this moves */
} tether__fb;

/* Actions of tether__fb_after_close. */
enum {
    TETHER__FB_SAME = 0,      /* carry on as usual (backoff) on the same carriage */
    TETHER__FB_SWITCHED = 1,  /* the carriage changed: retry at once; why says why */
    TETHER__FB_PERMANENT = 2, /* a 401/403 refused on both carriages: stop */
};

/* mode: tether_transport_mode; memory_ms > 0. */
void tether__fb_init(tether__fb *f, int mode, uint32_t memory_ms);
/* Before an attempt at now_ms: moves to WebSocket for a probe when the HTTP
 * verdict expired. Returns 1 when the carriage changed (why is set). */
int tether__fb_before_attempt(tether__fb *f, uint64_t now_ms);
/* A WELCOME arrived on the current carriage. */
void tether__fb_welcomed(tether__fb *f);
/* An attempt or connection ended: what next (TETHER__FB_*). */
int tether__fb_after_close(tether__fb *f, const tether__fb_event *ev, uint64_t now_ms);
/* A verdict remembered from an earlier run (the store): AUTO starts on HTTP
 * and probes WebSocket remaining_ms after now_ms (at most 12 times memory_ms),
 * with probes_failed probes already failed. Other modes ignore it. Returns 1
 * when the client now starts on HTTP (why is set). */
int tether__fb_restore(tether__fb *f, uint64_t now_ms, uint64_t remaining_ms,
                       uint32_t probes_failed);
/* 1 when the verdict to remember is "HTTP until http_until" (AUTO, on HTTP
 * after a fallback, not the one HTTP try after a 401/403), 0 when there is
 * none to keep. */
int tether__fb_keep(const tether__fb *f);
/*
 * The background probe (client_probe.c): while a connection over HTTP lives
 * in AUTO, WebSocket is probed on a second connection once the verdict's time
 * is up, and the session moves to it only after its WELCOME.
 * probe_due(): 1 when a probe should start at now_ms. probe_won(): the
 * session moved to WebSocket (why is set; the verdict is to be forgotten).
 * probe_lost(): the probe failed (why names the reason); HTTP stays, the next
 * probe waits memory_ms times 2^failures (at most 12 times), as a probe
 * attempt that failed would.
 */
int tether__fb_probe_due(const tether__fb *f, uint64_t now_ms);
void tether__fb_probe_won(tether__fb *f);
void tether__fb_probe_lost(tether__fb *f, uint64_t now_ms, const char *why);
/* "websocket" or "http". */
const char *tether__fb_name(int http);

#endif

/*
 * A loopback TCP relay for the demo: listens on 127.0.0.1 (a port the system
 * picks), forwards every accepted connection to 127.0.0.1:<target>, and at
 * random moments (seeded) cuts all live connections by closing both of their
 * sockets, alternately with a FIN (plain close) and with a RST (SO_LINGER 0).
 * A thin wrapper over the chaos relay (src/chaos.h), which runs poll() in its
 * own thread; `tether chaos` is the same relay with every other fault.
 */
#ifndef TETHER_CLI_RELAY_H
#define TETHER_CLI_RELAY_H

#include <stddef.h>
#include <stdint.h>

typedef struct relay relay;

/* Counters, read with relay_stats(). */
typedef struct relay_stats {
    uint64_t accepted;   /* connections accepted and forwarded */
    uint64_t cuts;       /* cut events that closed at least one connection */
    uint64_t cuts_rst;   /* ... of which closed with RST */
    uint64_t cut_conns;  /* connections closed by cuts */
    uint64_t bytes_up;   /* bytes forwarded towards the target */
    uint64_t bytes_down; /* bytes forwarded back */
} relay_stats;

/*
 * Starts a relay to 127.0.0.1:target_port. Cuts come every cut_min_ms to
 * cut_max_ms (uniform, drawn from seed); cut_max_ms = 0 means never.
 * Returns 0, or -1 with the reason in err.
 */
int relay_start(uint16_t target_port, uint32_t cut_min_ms, uint32_t cut_max_ms, uint64_t seed,
                relay **out, char *err, size_t errlen);

/* The port the relay listens on. */
uint16_t relay_port(const relay *r);

/* Turns the random cuts on or off (they start on). */
void relay_set_cutting(relay *r, int on);

void relay_get_stats(relay *r, relay_stats *out);

/* Stops the thread, closes every socket and frees the relay. NULL does nothing. */
void relay_stop(relay *r);

#endif

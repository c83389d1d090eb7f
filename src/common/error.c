/* The error table: one name and one description per tether_err. */
#include <tether/tether.h>

#include <stddef.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} table[] = {
    {TETHER_OK, "TETHER_OK", "Success."},
    {TETHER_EINVAL, "TETHER_EINVAL", "An argument is invalid (NULL handle or pointer, bad seq, ...)."},
    {TETHER_ENOMEM, "TETHER_ENOMEM", "Memory allocation failed."},
    {TETHER_ECONFIG, "TETHER_ECONFIG", "A config field is out of range or malformed."},
    {TETHER_ESTORE, "TETHER_ESTORE", "The store failed (I/O error, SQLite error)."},
    {TETHER_ESTORE_FULL, "TETHER_ESTORE_FULL", "The disk or database is full."},
    {TETHER_ESTORE_CORRUPT, "TETHER_ESTORE_CORRUPT", "The database file is corrupt or not a database."},
    {TETHER_ESTORE_SCHEMA, "TETHER_ESTORE_SCHEMA", "The database has an unknown or newer schema, or other role."},
    {TETHER_ESTORE_READONLY, "TETHER_ESTORE_READONLY", "The database cannot be written."},
    {TETHER_EOUTBOX_FULL, "TETHER_EOUTBOX_FULL", "The outbox cap was reached; nothing was stored."},
    {TETHER_ETOOBIG, "TETHER_ETOOBIG", "A message is larger than the negotiated limit."},
    {TETHER_ECLOSED, "TETHER_ECLOSED", "The handle is shutting down."},
    {TETHER_ETIMEDOUT, "TETHER_ETIMEDOUT", "A wait ran out of time."},
    {TETHER_EMALFORMED, "TETHER_EMALFORMED", "A frame is not valid msgpack, or is truncated."},
    {TETHER_EFRAME_TYPE, "TETHER_EFRAME_TYPE", "A frame has an unknown type."},
    {TETHER_EFRAME_ARITY, "TETHER_EFRAME_ARITY", "A frame has the wrong number of fields."},
    {TETHER_EFRAME_FIELD, "TETHER_EFRAME_FIELD", "A frame field has the wrong type or an invalid value."},
    {TETHER_EFRAME_SEQ0, "TETHER_EFRAME_SEQ0", "A frame carries sequence number 0."},
    {TETHER_EFRAME_TRAILING, "TETHER_EFRAME_TRAILING", "Bytes follow the frame's msgpack array."},
    {TETHER_EFRAME_OVERSIZE, "TETHER_EFRAME_OVERSIZE", "A payload or run exceeds the receiver's limits."},
    {TETHER_EPROTO, "TETHER_EPROTO", "A valid frame arrived where it is not allowed."},
    {TETHER_EGAP, "TETHER_EGAP", "A DATA frame skipped sequence numbers."},
    {TETHER_ECONNREFUSED, "TETHER_ECONNREFUSED", "The server refused the TCP connection."},
    {TETHER_EDNS, "TETHER_EDNS", "The host name did not resolve."},
    {TETHER_ECONNECT, "TETHER_ECONNECT", "The connection failed before upgrading."},
    {TETHER_ETLS, "TETHER_ETLS", "The TLS handshake or certificate check failed."},
    {TETHER_EHTTP, "TETHER_EHTTP", "The server answered the upgrade with an HTTP status, not 101."},
    {TETHER_EHANDSHAKE, "TETHER_EHANDSHAKE", "A 101 came back without the right accept key or subprotocol."},
    {TETHER_ESTALLED, "TETHER_ESTALLED", "Upgraded, but no WELCOME arrived in time: frames are blocked."},
    {TETHER_EPING, "TETHER_EPING", "No pong within the timeout: the link is dead."},
    {TETHER_EREJECTED, "TETHER_EREJECTED", "The server rejected the session (see the reject code)."},
    {TETHER_ETOKEN, "TETHER_ETOKEN", "The server rejected the resume token."},
    {TETHER_EMISMATCH, "TETHER_EMISMATCH", "The peer's session state contradicts ours."},
    {TETHER_EPEER_CLOSED, "TETHER_EPEER_CLOSED", "The peer closed the connection."},
    {TETHER_ELIMIT, "TETHER_ELIMIT", "The server has too many sessions connected."},
    {TETHER_ENOTFOUND, "TETHER_ENOTFOUND", "No such session."},
    {TETHER_EVERSION, "TETHER_EVERSION", "The peer speaks an unsupported protocol version."},
    {TETHER_ESYS, "TETHER_ESYS", "An operating system call failed (threads, sockets)."},
    {TETHER_EGIVEUP, "TETHER_EGIVEUP", "Reconnection stopped: backoff_max_attempts retries failed."},
    {TETHER_ECONNECT_TIMEOUT, "TETHER_ECONNECT_TIMEOUT", "The connection attempt did not finish within connect_timeout_ms."},
    {TETHER_ETLS_UNTRUSTED, "TETHER_ETLS_UNTRUSTED", "The server's certificate is not signed by a trusted CA."},
    {TETHER_ETLS_HOSTNAME, "TETHER_ETLS_HOSTNAME", "The server's certificate does not name the host in the url."},
    {TETHER_ETLS_EXPIRED, "TETHER_ETLS_EXPIRED", "The server's certificate has expired or is not yet valid."},
    {TETHER_EPROXY, "TETHER_EPROXY", "The HTTP proxy is unreachable or refused the CONNECT."},
    {TETHER_EPROXY_AUTH, "TETHER_EPROXY_AUTH", "The HTTP proxy requires credentials, or refused the ones given (407)."},
    {TETHER_EDISPLACED, "TETHER_EDISPLACED", "A newer connection of the same session replaced this one."},
    {TETHER_EONLINE, "TETHER_EONLINE", "The session is connected, so it cannot be deleted now."},
    {TETHER_EDROPPED, "TETHER_EDROPPED", "The server closed the connection itself (no pong in time, or its own close)."},
    {TETHER_EFENCED, "TETHER_EFENCED", "Another server instance holds the session's lease; this one may not write for it."},
};

static int find(int code)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].code == code) {
            return (int)i;
        }
    }
    return -1;
}

const char *tether_strerror(int code)
{
    int i = find(code);
    return i < 0 ? "Unknown error code." : table[i].text;
}

const char *tether_err_name(int code)
{
    int i = find(code);
    return i < 0 ? "TETHER_E?" : table[i].name;
}

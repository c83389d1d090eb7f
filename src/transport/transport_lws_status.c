/*
 * The status line of the answers tether writes itself. libwebsockets 4.1.6
 * knows reason phrases for 200, 304, 400 to 417 and 500 to 505 only; for any
 * other status (204 of the carriage's held poll, 426 that sends a client to
 * the carriage, 429 or 451 from an on_handshake hook) it writes
 * "HTTP/1.1 426 " with an empty phrase. Legal, but a person reading curl's
 * output, or a proxy's log, is left to look the number up.
 * tether__tp_add_status() fills the phrase in. Part of the libwebsockets glue.
 */
#include "transport_lws_int.h"

const char *tether__http_reason(unsigned code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default:
        break;
    }
    if (code >= 400 && code <= 499) {
        return "Client Error";
    }
    if (code >= 500 && code <= 599) {
        return "Server Error";
    }
    return "Status";
}

int tether__tp_add_status(struct lws *wsi, unsigned code, unsigned char **p, unsigned char *end)
{
    unsigned char *start = *p;
    if (lws_add_http_header_status(wsi, code, p, end)) {
        return -1;
    }
    /* HTTP/1 only (an HTTP/2 status is a binary :status field, with no phrase) */
    size_t n = (size_t)(*p - start);
    if (n < 8 || memcmp(start, "HTTP/1.", 7) != 0) {
        return 0;
    }
    unsigned char *crlf = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (start[i] == '\r' && start[i + 1] == '\n') {
            crlf = start + i;
            break;
        }
    }
    if (!crlf || crlf[-1] != ' ') {
        return 0; /* lws knew the phrase */
    }
    const char *phrase = tether__http_reason(code);
    size_t plen = strlen(phrase);
    if ((size_t)(end - *p) < plen) {
        return -1;
    }
    memmove(crlf + plen, crlf, (size_t)(*p - crlf));
    memcpy(crlf, phrase, plen);
    *p += plen;
    return 0;
}

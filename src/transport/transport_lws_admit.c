/*
 * Server admission, part of the libwebsockets glue: the HTTP refusal of an
 * upgrade (with a body that says why) and what the admission hook may read
 * of the request (headers, path, peer).
 */
#include "transport_lws_int.h"

int tether__tp_refuse_upgrade(struct lws *wsi, int status, const char *why, const char *extra)
{
    unsigned char buf[LWS_PRE + 2048];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    char body[200], len[16];
    int blen = why ? snprintf(body, sizeof body, "tether: %s\n", why)
                   : snprintf(body, sizeof body, "tether: the upgrade was refused (HTTP %d)\n",
                              status);

    snprintf(len, sizeof len, "%d", blen);
    if (tether__tp_add_status(wsi, (unsigned int)status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"text/plain", 10, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (const unsigned char *)len, (int)strlen(len), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     (const unsigned char *)"close", 5, &p, end)) {
        return -1;
    }
    /* extra: "Name: value\r\n" lines from the admission hook */
    while (extra && *extra) {
        const char *colon = strchr(extra, ':'), *eol = strstr(extra, "\r\n");
        if (!colon || !eol || colon > eol) {
            break;
        }
        char name[80];
        const char *v = colon + 1;
        snprintf(name, sizeof name, "%.*s:", (int)(colon - extra), extra);
        while (*v == ' ') {
            v++;
        }
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                        (const unsigned char *)v, (int)(eol - v), &p, end)) {
            return -1;
        }
        extra = eol + 2;
    }
    if (lws_finalize_http_header(wsi, &p, end) || end - p < blen) {
        return -1;
    }
    memcpy(p, body, (size_t)blen);
    p += blen;
    lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
    return -1; /* close: the answer said Connection: close */
}

const char *tether__tp_hs_header(tether__tp_hs *hs, const char *name, char *buf, size_t len)
{
    struct lws *wsi = hs->wsi;
    size_t nlen = strlen(name);
    char lname[128];

    if (!len || nlen + 2 > sizeof lname) {
        return NULL;
    }
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *ts = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (ts && strncasecmp(ts, name, nlen) == 0 && ts[nlen] == ':' && !ts[nlen + 1]) {
            if (lws_hdr_total_length(wsi, (enum lws_token_indexes)t) <= 0 ||
                lws_hdr_copy(wsi, buf, (int)len, (enum lws_token_indexes)t) < 0) {
                return NULL;
            }
            return buf;
        }
    }
    for (size_t i = 0; i < nlen; i++) {
        lname[i] = (char)tolower((unsigned char)name[i]);
    }
    lname[nlen] = ':';
    lname[nlen + 1] = '\0';
    if (lws_hdr_custom_length(wsi, lname, (int)nlen + 1) < 0 ||
        lws_hdr_custom_copy(wsi, buf, (int)len, lname, (int)nlen + 1) < 0) {
        return NULL;
    }
    return buf;
}

const char *tether__tp_hs_path(tether__tp_hs *hs, char *buf, size_t len)
{
    struct lws *wsi = hs->wsi;
    if (hs->app_path) {
        snprintf(buf, len, "%s", hs->app_path);
        return buf;
    }
    if (lws_hdr_copy(wsi, buf, (int)len, WSI_TOKEN_GET_URI) <= 0) {
        snprintf(buf, len, "/");
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0) {
        size_t n = strlen(buf);
        if (n + 2 < len) {
            buf[n++] = '?';
            lws_hdr_copy(wsi, buf + n, (int)(len - n), WSI_TOKEN_HTTP_URI_ARGS);
        }
    }
    return buf;
}

const char *tether__tp_hs_peer(tether__tp_hs *hs, char *buf, size_t len)
{
    if (!lws_get_peer_simple(hs->wsi, buf, len)) {
        snprintf(buf, len, "?");
    }
    return buf;
}

const char *tether__conn_peer(tether__conn *c, char *buf, size_t len)
{
    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (c && c->wsi && !lws_get_peer_simple(c->wsi, buf, len)) {
        buf[0] = '\0';
    }
    return buf;
}

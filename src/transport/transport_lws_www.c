/*
 * Static files on the server's port (config www_dir): a browser page and its
 * script come from the same origin as the WebSocket and the HTTP carriage, so
 * `tether serve --www DIR` is all a demo page needs. libwebsockets sends the
 * file (lws_serve_http_file: its own buffering, Content-Length, MIME type from
 * its table); this file only decides which file, and refuses anything that
 * resolves outside the directory (.., symlinks) or is not a regular file.
 */
#include "transport_lws_int.h"
#include "common/alloc.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tether__tp_www_resolve(const char *dir, char **out)
{
    struct stat st;
    char *real = realpath(dir, NULL);
    if (!real) {
        return tether__fail(TETHER_ECONFIG, "www_dir %s: %s", dir, strerror(errno));
    }
    const char *why = NULL;
    if (stat(real, &st) != 0) {
        why = strerror(errno);
    } else if (!S_ISDIR(st.st_mode)) {
        why = "not a directory";
    } else if (access(real, R_OK | X_OK) != 0) {
        why = strerror(errno);
    }
    if (why) {
        free(real);
        return tether__fail(TETHER_ECONFIG, "www_dir %s: %s", dir, why);
    }
    *out = tether__strdup(real);
    free(real);
    return *out ? TETHER_OK : tether__fail(TETHER_ENOMEM, "out of memory");
}

/* 1 when path (resolved) is root or below it. */
static int below(const char *root, const char *path)
{
    size_t n = strlen(root);
    return strncmp(root, path, n) == 0 && (path[n] == '/' || path[n] == '\0' || n == 1);
}

/* Resolves the request path to a regular file below root, into file. 0 or -1. */
static int pick(const char *root, const char *uri, char *file, size_t cap)
{
    char want[PATH_MAX];
    struct stat st;
    size_t ul = strlen(uri);
    if (uri[0] != '/' || strstr(uri, "/../") || (ul >= 3 && strcmp(uri + ul - 3, "/..") == 0)) {
        return -1;
    }
    int n = snprintf(want, sizeof want, "%s%s%s", root, uri, uri[ul - 1] == '/' ? "index.html" : "");
    if (n < 0 || (size_t)n >= sizeof want || !realpath(want, file) || !below(root, file) ||
        stat(file, &st) != 0) {
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        /* "dir" without its slash: the index inside, checked the same way */
        if (snprintf(want, sizeof want, "%s/index.html", file) >= (int)sizeof want ||
            !realpath(want, file) || !below(root, file) || stat(file, &st) != 0) {
            return -1;
        }
    }
    return S_ISREG(st.st_mode) && strlen(file) < cap ? 0 : -1;
}

int tether__tp_www_answer(tether__tp *tp, struct lws *wsi, const char *path)
{
    static const char extra[] = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n";
    char file[PATH_MAX];

    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
        lws_hdr_total_length(wsi, WSI_TOKEN_KEY) > 0 ||
        lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > 0) {
        /* not a GET, or a WebSocket handshake that lost its Upgrade on the way:
           that one must still get the 426 that sends a client to the carriage */
        return 0;
    }
    if (pick(tp->cfg.www_root, path, file, sizeof file) != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return -1;
    }
    const char *type = lws_get_mimetype(file, NULL);
    int n = lws_serve_http_file(wsi, file, type ? type : "application/octet-stream", extra,
                                (int)(sizeof extra - 1));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi))) {
        return -1;
    }
    return 1;
}

/*
 * Connectivity options shared by `tether send` (TLS trust and client
 * certificate, proxy, Origin, extra handshake headers) and `tether serve`
 * (TLS, client certificates, Origin allow-list): the getopt entries, their
 * help lines, and the checks that turn garbage into a usage error naming the
 * option. They fill the library's own config fields (docs/connectivity.md).
 */
#ifndef TETHER_CLI_NETOPTS_H
#define TETHER_CLI_NETOPTS_H

#include "cli.h"

/* The environment variable `tether send --proxy-user` takes the password from. */
#define CLI_PROXY_PASSWORD_ENV "TETHER_PROXY_PASSWORD"

#define CLI_MAX_HEADERS 32        /* --header at most this many times */
#define CLI_HEADER_MAX_BYTES 1024 /* one --header line at most (the library's limit) */
#define CLI_MAX_ORIGINS 32        /* --allow-origin at most this many times */
#define CLI_MAX_CORS_HEADERS 16   /* --cors-header at most this many times (the library's bound) */

/* getopt values of the options, above every short option character. */
enum {
    CLI_OPT_CA = 0x200,
    CLI_OPT_CERT,
    CLI_OPT_KEY,
    CLI_OPT_INSECURE,
    CLI_OPT_PROXY,
    CLI_OPT_PROXY_USER,
    CLI_OPT_ORIGIN,
    CLI_OPT_HEADER,
    CLI_OPT_TLS_CERT,
    CLI_OPT_TLS_KEY,
    CLI_OPT_CLIENT_CA,
    CLI_OPT_ALLOW_ORIGIN,
    CLI_OPT_CORS_HEADER,
};

/* Entries of send's struct option table. */
#define CLI_CLIENT_NET_OPTIONS                                                                     \
    {"ca", required_argument, NULL, CLI_OPT_CA},                                                   \
        {"cert", required_argument, NULL, CLI_OPT_CERT},                                           \
        {"key", required_argument, NULL, CLI_OPT_KEY},                                             \
        {"insecure", no_argument, NULL, CLI_OPT_INSECURE},                                         \
        {"proxy", required_argument, NULL, CLI_OPT_PROXY},                                         \
        {"proxy-user", required_argument, NULL, CLI_OPT_PROXY_USER},                               \
        {"origin", required_argument, NULL, CLI_OPT_ORIGIN},                                       \
        {"header", required_argument, NULL, CLI_OPT_HEADER}

/* The case labels of those entries in send's option switch. */
#define CLI_CLIENT_NET_CASES                                                                       \
    case CLI_OPT_CA:                                                                               \
    case CLI_OPT_CERT:                                                                             \
    case CLI_OPT_KEY:                                                                              \
    case CLI_OPT_INSECURE:                                                                         \
    case CLI_OPT_PROXY:                                                                            \
    case CLI_OPT_PROXY_USER:                                                                       \
    case CLI_OPT_ORIGIN:                                                                           \
    case CLI_OPT_HEADER

#define CLI_CLIENT_NET_HELP                                                                        \
    "Connectivity (docs/connectivity.md):\n"                                                       \
    "  --ca FILE            PEM CAs trusted for wss://, instead of the system's\n"                   \
    "  --cert FILE          PEM client certificate (chain) for wss://; needs --key\n"               \
    "  --key FILE           PEM private key of --cert\n"                                            \
    "  --insecure           DANGER, development only: accept ANY server certificate\n"             \
    "                       and host name (anyone on the path can read the traffic)\n"             \
    "  --proxy URL          HTTP proxy to CONNECT through, http://HOST:PORT; '' for a\n"            \
    "                       direct connection [from https_proxy (wss) or http_proxy\n"             \
    "                       (ws), unless no_proxy matches]; no password in the URL\n"              \
    "  --proxy-user USER    proxy Basic user name; the password is read ONLY from the\n"           \
    "                       environment variable " CLI_PROXY_PASSWORD_ENV ", never from the\n"    \
    "                       command line (the process list would show it)\n"                        \
    "  --origin ORIGIN      Origin header of the upgrade request [none]\n"                         \
    "  --header 'N: V'      extra upgrade request header, e.g. 'Authorization: Bearer\n"          \
    "                       x'; repeatable, up to 32, one line each\n"

#define CLI_SERVER_NET_OPTIONS                                                                     \
    {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},                                       \
        {"tls-key", required_argument, NULL, CLI_OPT_TLS_KEY},                                     \
        {"client-ca", required_argument, NULL, CLI_OPT_CLIENT_CA},                                 \
        {"allow-origin", required_argument, NULL, CLI_OPT_ALLOW_ORIGIN},                             \
        {"cors-header", required_argument, NULL, CLI_OPT_CORS_HEADER}

#define CLI_SERVER_NET_CASES                                                                       \
    case CLI_OPT_TLS_CERT:                                                                         \
    case CLI_OPT_TLS_KEY:                                                                          \
    case CLI_OPT_CLIENT_CA:                                                                        \
    case CLI_OPT_ALLOW_ORIGIN:                                                                     \
    case CLI_OPT_CORS_HEADER

#define CLI_SERVER_NET_HELP                                                                        \
    "Connectivity (docs/connectivity.md):\n"                                                       \
    "  --tls-cert FILE      PEM certificate (chain): serve wss:// [plain ws://]\n"                 \
    "  --tls-key FILE       PEM private key of --tls-cert\n"                                       \
    "  --client-ca FILE     require a client certificate signed by one of these PEM\n"            \
    "                       CAs (needs --tls-cert)\n"                                               \
    "  --allow-origin ORIGIN  accept only upgrades whose Origin is one of these\n"               \
    "                       (exact, case-insensitive; others get 403); repeatable,\n"             \
    "                       up to 32 [no Origin check]\n"                                      \
    "  --cors-header NAME   a request header (e.g. Authorization) a page on another\n"          \
    "                       origin may send on HTTP carriage requests; repeatable,\n"           \
    "                       up to 16 [the carriage's own only]\n"

/* What send's options collect besides config fields. */
typedef struct cli_client_net {
    const char *headers[CLI_MAX_HEADERS + 1]; /* --header lines, NULL-terminated */
    size_t nheaders;                          /* how many */
} cli_client_net;

/* What serve's options collect besides config fields. */
typedef struct cli_server_net {
    const char *origins[CLI_MAX_ORIGINS + 1]; /* --allow-origin values, NULL-terminated */
    size_t norigins;                          /* how many */
    const char *cors[CLI_MAX_CORS_HEADERS + 1]; /* --cors-header names, NULL-terminated */
    size_t ncors;                             /* how many */
} cli_server_net;

/* One option of send (opt from CLI_CLIENT_NET_CASES) into cfg or net.
 * Returns 0, or CLI_USAGE after printing the usage error. */
int cli_client_net_option(int opt, const char *arg, cli_client_net *net, tether_client_config *cfg);
/* After the options: the checks that need them all, the proxy password from
 * the environment, the header list. net must outlive the client. 0 or CLI_USAGE. */
int cli_client_net_finish(cli_client_net *net, tether_client_config *cfg);

/* The same for serve. net must outlive the server. */
int cli_server_net_option(int opt, const char *arg, cli_server_net *net, tether_server_config *cfg);
int cli_server_net_finish(cli_server_net *net, tether_server_config *cfg);

#endif

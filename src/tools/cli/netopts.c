/*
 * Connectivity options of `tether send` and `tether serve` (netopts.h): each
 * value is checked here and refused with a usage error naming its option;
 * whether a file exists and loads is left to the library, which says so at
 * create.
 */
#include "netopts.h"

#include <stdlib.h>
#include <string.h>

#include "transport/proxy.h" /* tether__proxy_parse: --proxy is checked as the library reads it */

/* 1 when s holds a control character (CR, LF, tab, DEL, ...). */
static int has_ctl(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* arg as a message may echo it: never raw control characters on a terminal. */
static const char *shown(const char *arg)
{
    return has_ctl(arg) ? "(a value with control characters)" : arg;
}

/* 1 when c may appear in an HTTP header name (RFC 9110 token). */
static int token_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int file_arg(const char *cmd, const char *opt, const char *arg, const char **field)
{
    if (arg[0] == '\0') {
        return cli_usage_error(cmd, "%s wants a file name, not an empty string", opt);
    }
    *field = arg;
    return 0;
}

/* "Name: value": a token, a colon, then a value without control characters. */
static int header_arg(cli_client_net *net, const char *arg)
{
    const char *colon = strchr(arg, ':');
    if (strchr(arg, '\r') || strchr(arg, '\n')) {
        return cli_usage_error("send", "--header must be one line (no CR or LF)");
    }
    if (colon == NULL || colon == arg) {
        return cli_usage_error("send", "--header wants 'Name: value', not '%s'", shown(arg));
    }
    for (const char *p = arg; p < colon; p++) {
        if (!token_char((unsigned char)*p)) {
            return cli_usage_error("send",
                                   "--header '%s': the name has a character not "
                                   "allowed in a header name",
                                   shown(arg));
        }
    }
    if (has_ctl(colon + 1)) {
        return cli_usage_error("send", "--header: the value has a control character");
    }
    if (strlen(arg) > CLI_HEADER_MAX_BYTES) {
        return cli_usage_error("send", "--header is longer than %d bytes", CLI_HEADER_MAX_BYTES);
    }
    if (net->nheaders == CLI_MAX_HEADERS) {
        return cli_usage_error("send", "--header given more than %d times", CLI_MAX_HEADERS);
    }
    net->headers[net->nheaders++] = arg;
    net->headers[net->nheaders] = NULL;
    return 0;
}

static int proxy_arg(const char *arg, tether_client_config *cfg)
{
    if (arg[0] != '\0') {
        tether__proxy p;
        if (tether__proxy_parse(arg, &p) != TETHER_OK) {
            return cli_usage_error("send", "--proxy: %s", tether_errmsg());
        }
        if (p.pass[0] != '\0') {
            return cli_usage_error("send",
                                   "--proxy must not carry a password (the process list shows "
                                   "it): give --proxy-user and set %s",
                                   CLI_PROXY_PASSWORD_ENV);
        }
    }
    cfg->proxy = arg; /* "" is a direct connection, whatever the environment says */
    return 0;
}

int cli_client_net_option(int opt, const char *arg, cli_client_net *net, tether_client_config *cfg)
{
    switch (opt) {
    case CLI_OPT_CA:
        return file_arg("send", "--ca", arg, &cfg->tls_ca_file);
    case CLI_OPT_CERT:
        return file_arg("send", "--cert", arg, &cfg->tls_cert_file);
    case CLI_OPT_KEY:
        return file_arg("send", "--key", arg, &cfg->tls_key_file);
    case CLI_OPT_INSECURE:
        cfg->tls_insecure_skip_verify = 1;
        return 0;
    case CLI_OPT_PROXY:
        return proxy_arg(arg, cfg);
    case CLI_OPT_PROXY_USER:
        if (arg[0] == '\0' || strchr(arg, ':') || has_ctl(arg)) {
            return cli_usage_error("send",
                                   "--proxy-user wants a user name without ':' or "
                                   "control characters, not '%s'",
                                   shown(arg));
        }
        cfg->proxy_user = arg;
        return 0;
    case CLI_OPT_ORIGIN:
        if (arg[0] == '\0' || has_ctl(arg)) {
            return cli_usage_error("send",
                                   "--origin wants one line such as "
                                   "https://app.example, not '%s'",
                                   shown(arg));
        }
        cfg->origin = arg;
        return 0;
    case CLI_OPT_HEADER:
        return header_arg(net, arg);
    default:
        return cli_usage_error("send", "unknown connectivity option %d", opt);
    }
}

int cli_client_net_finish(cli_client_net *net, tether_client_config *cfg)
{
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        return cli_usage_error("send", "--cert and --key go together");
    }
    if (cfg->proxy_user != NULL) {
        /* Never from argv: the password would show in the process list. */
        cfg->proxy_password = getenv(CLI_PROXY_PASSWORD_ENV);
    }
    cfg->headers = net->nheaders ? net->headers : NULL;
    return 0;
}

int cli_server_net_option(int opt, const char *arg, cli_server_net *net, tether_server_config *cfg)
{
    switch (opt) {
    case CLI_OPT_TLS_CERT:
        return file_arg("serve", "--tls-cert", arg, &cfg->tls_cert_file);
    case CLI_OPT_TLS_KEY:
        return file_arg("serve", "--tls-key", arg, &cfg->tls_key_file);
    case CLI_OPT_CLIENT_CA:
        return file_arg("serve", "--client-ca", arg, &cfg->tls_client_ca_file);
    case CLI_OPT_ALLOW_ORIGIN:
        if (arg[0] == '\0' || has_ctl(arg)) {
            return cli_usage_error("serve",
                                   "--allow-origin wants one line such as "
                                   "https://app.example, not '%s'",
                                   shown(arg));
        }
        if (net->norigins == CLI_MAX_ORIGINS) {
            return cli_usage_error("serve", "--allow-origin given more than %d times",
                                   CLI_MAX_ORIGINS);
        }
        net->origins[net->norigins++] = arg;
        net->origins[net->norigins] = NULL;
        return 0;
    case CLI_OPT_CORS_HEADER: {
        static const char token[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~";
        size_t len = strlen(arg);
        if (len == 0 || len > 64 || strspn(arg, token) != len) {
            return cli_usage_error("serve",
                                   "--cors-header wants a header name such as Authorization "
                                   "(1 to 64 letters, digits or !#$%%&'*+-.^_`|~), not '%s'",
                                   shown(arg));
        }
        if (net->ncors == CLI_MAX_CORS_HEADERS) {
            return cli_usage_error("serve", "--cors-header given more than %d times",
                                   CLI_MAX_CORS_HEADERS);
        }
        net->cors[net->ncors++] = arg;
        net->cors[net->ncors] = NULL;
        return 0;
    }
    default:
        return cli_usage_error("serve", "unknown connectivity option %d", opt);
    }
}

int cli_server_net_finish(cli_server_net *net, tether_server_config *cfg)
{
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        return cli_usage_error("serve", "--tls-cert and --tls-key go together");
    }
    if (cfg->tls_client_ca_file != NULL && cfg->tls_cert_file == NULL) {
        return cli_usage_error("serve", "--client-ca needs --tls-cert and --tls-key");
    }
    cfg->allowed_origins = net->norigins ? net->origins : NULL;
    cfg->http_cors_headers = net->ncors ? net->cors : NULL;
    return 0;
}

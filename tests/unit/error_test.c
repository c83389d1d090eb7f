/* Every error code has a name and a description, and unknown codes are handled. */
#include "harness.h"

#include <tether/tether.h>

TEST(every_code_has_name_and_text)
{
    for (int code = 0; code >= TETHER_ERR_LAST; code--) {
        const char *name = tether_err_name(code);
        const char *text = tether_strerror(code);
        CHECK(strncmp(name, "TETHER_", 7) == 0);
        CHECK(strcmp(name, "TETHER_E?") != 0);
        CHECK(strcmp(text, "Unknown error code.") != 0);
        CHECK(strlen(text) > 5);
    }
}

TEST(names_are_unique)
{
    for (int a = 0; a >= TETHER_ERR_LAST; a--) {
        for (int b = a - 1; b >= TETHER_ERR_LAST; b--) {
            CHECK(strcmp(tether_err_name(a), tether_err_name(b)) != 0);
        }
    }
}

TEST(unknown_codes)
{
    CHECK_EQ_STR(tether_err_name(1), "TETHER_E?");
    CHECK_EQ_STR(tether_err_name(TETHER_ERR_LAST - 1), "TETHER_E?");
    CHECK_EQ_STR(tether_strerror(12345), "Unknown error code.");
}

TEST(specific_names)
{
    CHECK_EQ_STR(tether_err_name(TETHER_OK), "TETHER_OK");
    CHECK_EQ_STR(tether_err_name(TETHER_ETOKEN), "TETHER_ETOKEN");
    CHECK_EQ_STR(tether_err_name(TETHER_EGIVEUP), "TETHER_EGIVEUP");
}

/* docs/errors.md must list every code, so the docs and the code cannot drift. */
TEST(docs_list_every_code)
{
    const char *src = getenv("TETHER_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/errors.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    static char doc[1 << 16];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = '\0';
    fclose(f);
    for (int code = -1; code >= TETHER_ERR_LAST; code--) {
        char needle[64];
        snprintf(needle, sizeof needle, "`%s`", tether_err_name(code));
        if (!strstr(doc, needle)) {
            tt_fail(__FILE__, __LINE__, "docs/errors.md does not list %s", needle);
        }
    }
}

/* Reads a file under the source tree into buf; 0 when it cannot. */
static int slurp(const char *rel, char *buf, size_t len)
{
    const char *src = getenv("TETHER_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    FILE *f = fopen(path, "r");
    if (!f) {
        tt_fail(__FILE__, __LINE__, "cannot read %s", path);
        return 0;
    }
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n == len - 1) {
        tt_fail(__FILE__, __LINE__, "%s is larger than the test's buffer", path);
        return 0;
    }
    return 1;
}

/* 1 when name is TETHER_OK or a code tether_err_name() knows. */
static int known_code(const char *name, size_t len)
{
    for (int code = 0; code >= TETHER_ERR_LAST; code--) {
        const char *n = tether_err_name(code);
        if (strlen(n) == len && strncmp(n, name, len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Every public function that returns an int error code says which codes in
 * its doc comment (the comment right above it, or above the group of
 * declarations it stands in), and every code a header names exists. */
static void header_lists_codes(const char *rel)
{
    static char h[1 << 17];
    if (!slurp(rel, h, sizeof h)) {
        return;
    }
    const char *group = NULL, *group_end = NULL; /* the comment of the group */
    const char *prev_end = NULL;                 /* end of the previous declaration */
    for (const char *p = strstr(h, "TETHER_API "); p; p = strstr(p + 1, "TETHER_API ")) {
        if (p > h && p[-1] != '\n') {
            continue; /* the macro's definition, not a declaration */
        }
        const char *semi = strchr(p, ';');
        if (!semi) {
            break;
        }
        const char *q = p;
        while (q > h && (q[-1] == ' ' || q[-1] == '\n')) {
            q--;
        }
        if (q - h >= 2 && q[-2] == '*' && q[-1] == '/') {
            const char *open = q - 2;
            while (open > h && !(open[0] == '/' && open[1] == '*')) {
                open--;
            }
            group = open;
            group_end = q;
        } else if (q != prev_end) {
            group = NULL; /* no comment of its own, and not in a group */
        }
        prev_end = semi + 1;
        if (strncmp(p, "TETHER_API int ", 15) != 0) {
            continue;
        }
        char name[128];
        size_t n = strcspn(p + 15, "(");
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p + 15);
        int lists = 0;
        for (const char *c = group; c && c < group_end; c++) {
            if (strncmp(c, "TETHER_OK", 9) == 0 || strncmp(c, "TETHER_E", 8) == 0) {
                lists = 1;
            }
        }
        if (!lists) {
            tt_fail(__FILE__, __LINE__, "%s: %s() does not list its error codes", rel, name);
        }
    }
    for (const char *c = strstr(h, "TETHER_E"); c; c = strstr(c + 1, "TETHER_E")) {
        size_t len = strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
        if (strncmp(c, "TETHER_ERR_LAST", 15) == 0 || known_code(c, len)) {
            continue;
        }
        /* "_FULL" after "a store error (TETHER_ESTORE, _CORRUPT" is not a code name */
        tt_fail(__FILE__, __LINE__, "%s names %.*s, which is no error code", rel, (int)len, c);
    }
}

TEST(headers_list_the_codes_of_every_call)
{
    header_lists_codes("include/tether/tether.h");
    header_lists_codes("include/tether/client.h");
    header_lists_codes("include/tether/server.h");
}

TEST(session_id_hex_round_trip)
{
    tether_session_id id, back;
    for (int i = 0; i < 16; i++) {
        id.bytes[i] = (uint8_t)(i * 17 + 3);
    }
    char hex[33];
    tether_session_id_hex(&id, hex);
    CHECK_EQ_INT(strlen(hex), 32);
    CHECK_OK(tether_session_id_parse(hex, &back));
    CHECK_MEM(id.bytes, back.bytes, 16);
    CHECK_ERR(tether_session_id_parse("abc", &back), TETHER_EINVAL);
    CHECK_ERR(tether_session_id_parse("zz000000000000000000000000000000", &back), TETHER_EINVAL);
    CHECK_EQ_STR(tether_version(), TETHER_VERSION_STRING);
}

int main(void)
{
    RUN(every_code_has_name_and_text);
    RUN(names_are_unique);
    RUN(unknown_codes);
    RUN(specific_names);
    RUN(docs_list_every_code);
    RUN(headers_list_the_codes_of_every_call);
    RUN(session_id_hex_round_trip);
    return tt_finish();
}

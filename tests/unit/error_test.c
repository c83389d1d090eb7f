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
    RUN(session_id_hex_round_trip);
    return tt_finish();
}

/*
 * The HTTP carriage's body vectors (proto/vectors/http_*.txt) against the
 * codec (src/engine/httpcarry.c): each read whole, byte by byte and in
 * chunks, and re-encoded; and the worked example of proto/HTTP.md.
 */
#include "frame_fixture.h"

#include "engine/httpcarry.h"

#include <errno.h>

#define DEFAULT_MAX 1048576u /* max_message when a vector's kind names none */

/* ------------------------------------------------------------------------ */
/* Vector files                                                              */
/* ------------------------------------------------------------------------ */

/* The frames of proto/vectors/valid.txt, by name. */
typedef struct named {
    char *name;
    uint8_t *bytes;
    size_t len;
} named;

static named *frames_by_name;
static size_t frames_count;

/* Opens proto/vectors/<file>, or fails the running test and returns NULL. */
static FILE *open_vectors(const char *file, char *path, size_t path_len)
{
    const char *root = getenv("TETHER_SOURCE_DIR");
    if (root == NULL || root[0] == '\0') {
        tt_fail(__FILE__, __LINE__, "TETHER_SOURCE_DIR is not set; run through ctest");
        return NULL;
    }
    snprintf(path, path_len, "%s/proto/vectors/%s", root, file);
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        tt_fail(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
    }
    return fp;
}

/* Splits a line into exactly n tab-separated fields; 0 when it has another count. */
static int split_tabs(char *line, char **field, int n)
{
    char *p = line;
    for (int k = 0; k < n; k++) {
        field[k] = p;
        if (k == n - 1) {
            break;
        }
        char *tab = strchr(p, '\t');
        if (tab == NULL) {
            return 0;
        }
        *tab = '\0';
        p = tab + 1;
    }
    return strchr(field[n - 1], '\t') == NULL;
}

typedef void (*line_fn)(char **field, int lineno, const char *path);

/* Calls fn with the n fields of every vector line of file; returns how many. */
static int for_each_line(const char *file, int n, line_fn fn)
{
    char path[1024];
    FILE *fp = open_vectors(file, path, sizeof path);
    if (fp == NULL) {
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int count = 0, lineno = 0;
    while ((got = getline(&line, &cap, fp)) != -1) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
            line[--got] = '\0';
        }
        if (line[0] == '\0' || line[0] == '#') {
            continue;
        }
        char *field[4];
        if (!split_tabs(line, field, n)) {
            tt_fail(__FILE__, __LINE__, "%s:%d: not %d tab-separated fields", path, lineno, n);
            continue;
        }
        fn(field, lineno, path);
        count++;
    }
    free(line);
    fclose(fp);
    return count;
}

static void keep_frame(char **field, int lineno, const char *path)
{
    size_t len;
    uint8_t *bytes = parse_hex(field[2], &len);
    named *grown = realloc(frames_by_name, (frames_count + 1) * sizeof *grown);
    if (bytes == NULL || grown == NULL) {
        tt_fail(__FILE__, __LINE__, "%s:%d: bad hex or out of memory", path, lineno);
        free(bytes);
        if (grown != NULL) {
            frames_by_name = grown;
        }
        return;
    }
    frames_by_name = grown;
    frames_by_name[frames_count].name = strdup(field[0]);
    frames_by_name[frames_count].bytes = bytes;
    frames_by_name[frames_count].len = len;
    frames_count++;
}

static void load_frames(void)
{
    if (frames_count == 0) {
        for_each_line("valid.txt", 3, keep_frame);
    }
}

static const named *frame_named(const char *name, size_t len)
{
    for (size_t i = 0; i < frames_count; i++) {
        if (strlen(frames_by_name[i].name) == len && memcmp(frames_by_name[i].name, name, len) == 0) {
            return &frames_by_name[i];
        }
    }
    return NULL;
}

static void free_frames(void)
{
    for (size_t i = 0; i < frames_count; i++) {
        free(frames_by_name[i].name);
        free(frames_by_name[i].bytes);
    }
    free(frames_by_name);
    frames_by_name = NULL;
    frames_count = 0;
}

static const struct {
    const char *name;
    int kind;
} kinds[] = {
    {"open", TETHER__HC_OPEN},
    {"answer", TETHER__HC_ANSWER},
    {"send", TETHER__HC_SEND},
    {"poll", TETHER__HC_POLL},
    {"stream", TETHER__HC_STREAM},
};

/* "send" or "send/1000" into kind and max_message; 0 when it is neither. */
static int parse_kind(const char *text, int *kind, uint32_t *max_message)
{
    size_t n = strcspn(text, "/");
    *max_message = DEFAULT_MAX;
    if (text[n] == '/') {
        char *end;
        unsigned long v = strtoul(text + n + 1, &end, 10);
        if (*end != '\0' || v == 0 || v > UINT32_MAX) {
            return 0;
        }
        *max_message = (uint32_t)v;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strlen(kinds[i].name) == n && strncmp(text, kinds[i].name, n) == 0) {
            *kind = kinds[i].kind;
            return 1;
        }
    }
    return 0;
}

/* The frames an expect field lists ("a,b*3" or "-"), as pointers into the
 * valid.txt table; returns the count, or -1 (after failing) on a bad name. */
static long expected_frames(const char *expect, const named ***out, const char *where)
{
    *out = NULL;
    if (strcmp(expect, "-") == 0) {
        return 0;
    }
    long count = 0;
    const named **list = NULL;
    const char *p = expect;
    for (;;) {
        size_t item = strcspn(p, ",");
        size_t name_len = strcspn(p, ",*");
        long times = 1;
        if (name_len < item) {
            times = strtol(p + name_len + 1, NULL, 10);
        }
        const named *f = frame_named(p, name_len);
        if (f == NULL || times < 1) {
            tt_fail(__FILE__, __LINE__, "%s: '%.*s' is not a valid.txt vector", where,
                    (int)item, p);
            free(list);
            return -1;
        }
        const named **grown = realloc(list, (size_t)(count + times) * sizeof *grown);
        if (grown == NULL) {
            free(list);
            return -1;
        }
        list = grown;
        for (long i = 0; i < times; i++) {
            list[count++] = f;
        }
        if (p[item] == '\0') {
            break;
        }
        p += item + 1;
    }
    *out = list;
    return count;
}

/* Runs a body through a reader in pieces of `step` bytes (0: all at once),
 * collecting the frames into *got (a malloc'd copy, one record per frame as
 * the body had them, probe excluded). Returns what end (or the failing feed)
 * returned; *why is the reader's why. */
static int read_in_pieces(int kind, uint32_t max_message, const uint8_t *body, size_t len,
                          size_t step, tether__buf *got, size_t *frames, int *why)
{
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, kind, max_message));
    tether__buf_reset(got);
    *frames = 0;
    size_t pos = 0;
    int rc = TETHER_OK;
    while (rc == TETHER_OK && pos < len) {
        size_t chunk = step == 0 || len - pos < step ? len - pos : step;
        size_t off = 0;
        while (rc == TETHER_OK && off < chunk) {
            size_t used;
            tether__slice f;
            rc = tether__hc_reader_feed(&r, body + pos + off, chunk - off, &used, &f);
            off += used;
            if (rc == TETHER_OK && f.data != NULL) {
                (*frames)++;
                CHECK_OK(tether__hc_append(got, f.data, f.len));
            }
            if (rc == TETHER_OK && used == 0) {
                tt_fail(__FILE__, __LINE__, "the reader took nothing");
                rc = TETHER_EINVAL;
            }
        }
        pos += chunk;
    }
    if (rc == TETHER_OK) {
        rc = tether__hc_reader_end(&r);
    }
    *why = r.why;
    tether__hc_reader_free(&r);
    return rc;
}

static int valid_count, invalid_count;

static void check_valid_line(char **field, int lineno, const char *path)
{
    const char *name = field[0];
    int kind;
    uint32_t max_message;
    size_t len;
    if (!parse_kind(field[1], &kind, &max_message)) {
        tt_fail(__FILE__, __LINE__, "%s:%d: bad kind '%s'", path, lineno, field[1]);
        return;
    }
    uint8_t *body = parse_hex(field[3], &len);
    const named **want = NULL;
    long nwant = expected_frames(field[2], &want, name);
    if (body == NULL || nwant < 0) {
        tt_fail(__FILE__, __LINE__, "%s:%d: bad hex or expect", path, lineno);
        free(body);
        return;
    }
    valid_count++;

    /* Whole: structure, then every frame equals its valid.txt bytes and decodes. */
    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, kind, max_message));
    int why = -1;
    size_t frames = 0, bad = 99;
    int rc = tether__hc_check(&lim, body, len, &why, &frames);
    if (rc != TETHER_OK || frames != (size_t)nwant) {
        tt_fail(__FILE__, __LINE__, "%s: check gave %s/%s with %zu frames, expected %ld", name,
                code_name(rc), tether__hc_why_name(why), frames, nwant);
    }
    size_t pos = 0, i = 0;
    tether__slice s;
    while (tether__hc_next(body, len, &pos, &s)) {
        if (i >= (size_t)nwant || s.len != want[i]->len ||
            memcmp(s.data, want[i]->bytes, s.len) != 0) {
            tt_fail(__FILE__, __LINE__, "%s: frame %zu is not %s", name, i + 1,
                    i < (size_t)nwant ? want[i]->name : "(none expected)");
        }
        i++;
    }
    CHECK_EQ_U64(i, nwant);
    tether__decoder d;
    CHECK_OK(tether__decoder_init(&d, max_message));
    rc = tether__hc_verify(&lim, &d, body, len, &why, &bad, &frames);
    if (rc != TETHER_OK || why != TETHER__HC_VALID || bad != 0) {
        tt_fail(__FILE__, __LINE__, "%s: verify gave %s at frame %zu", name, code_name(rc), bad);
    }
    tether__decoder_free(&d);

    /* The writer makes the same bytes from the listed frames. */
    tether__buf b;
    tether__buf_init(&b, 16);
    size_t body_len = 0;
    if (kind == TETHER__HC_STREAM) {
        CHECK_OK(tether__hc_append_probe(&b));
        body_len = 4;
    }
    for (long k = 0; k < nwant; k++) {
        if (!tether__hc_room(&lim, b.len, (size_t)k, want[k]->len)) {
            tt_fail(__FILE__, __LINE__, "%s: room says frame %ld does not fit", name, k + 1);
        }
        CHECK_OK(tether__hc_append(&b, want[k]->bytes, want[k]->len));
        body_len += 4 + want[k]->len;
    }
    if (b.len != len || memcmp(tether__buf_frame(&b), body, len) != 0) {
        tt_fail(__FILE__, __LINE__, "%s: re-encoding differs (%zu bytes, expected %zu)", name,
                b.len, len);
    }
    CHECK_EQ_U64(body_len, len);

    /* The reader, whole, byte by byte and in 7-byte pieces, finds the same frames. */
    static const size_t steps[] = {0, 1, 7};
    tether__buf got;
    tether__buf_init(&got, 0);
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        if (steps[k] == 1 && len > 100000) {
            continue; /* the byte-by-byte pass is for the small bodies */
        }
        rc = read_in_pieces(kind, max_message, body, len, steps[k], &got, &frames, &why);
        size_t skip = kind == TETHER__HC_STREAM ? 4 : 0;
        if (rc != TETHER_OK || frames != (size_t)nwant || got.len != len - skip ||
            (got.len > 0 && memcmp(tether__buf_frame(&got), body + skip, got.len) != 0)) {
            tt_fail(__FILE__, __LINE__, "%s: the reader in pieces of %zu gave %s/%s, %zu frames",
                    name, steps[k], code_name(rc), tether__hc_why_name(why), frames);
        }
    }
    tether__buf_free(&got);
    tether__buf_free(&b);
    free(want);
    free(body);
}

/* Splits "TETHER_EFRAME_SEQ0@2" into a code name and an index (0 without '@'). */
static size_t expect_index(const char *expect, char *name, size_t name_len)
{
    const char *at = strchr(expect, '@');
    size_t n = at ? (size_t)(at - expect) : strlen(expect);
    snprintf(name, name_len, "%.*s", (int)n, expect);
    return at ? strtoul(at + 1, NULL, 10) : 0;
}

static void check_invalid_line(char **field, int lineno, const char *path)
{
    const char *name = field[0];
    int kind;
    uint32_t max_message;
    size_t len;
    if (!parse_kind(field[1], &kind, &max_message)) {
        tt_fail(__FILE__, __LINE__, "%s:%d: bad kind '%s'", path, lineno, field[1]);
        return;
    }
    uint8_t *body = parse_hex(field[3], &len);
    if (body == NULL) {
        tt_fail(__FILE__, __LINE__, "%s:%d: bad hex", path, lineno);
        return;
    }
    invalid_count++;
    char want[64];
    size_t want_index = expect_index(field[2], want, sizeof want);
    int body_error = strncmp(want, "BODY_", 5) == 0;
    if (body_error == (want_index != 0)) {
        tt_fail(__FILE__, __LINE__, "%s: a body error has no index, a frame error has one", name);
    }

    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, kind, max_message));
    tether__decoder d;
    CHECK_OK(tether__decoder_init(&d, max_message));
    int why = -1;
    size_t bad = 0, frames = 0;
    int rc = tether__hc_verify(&lim, &d, body, len, &why, &bad, &frames);
    const char *got = why == TETHER__HC_FRAME ? code_name(rc) : tether__hc_why_name(why);
    if (strcmp(got, want) != 0 || (!body_error && bad != want_index)) {
        tt_fail(__FILE__, __LINE__, "%s: verify gave %s at frame %zu, expected %s", name, got, bad,
                field[2]);
    }
    if (body_error) {
        /* The code follows the status: 413 rules are OVERSIZE, 400 rules MALFORMED. */
        int code = tether__hc_why_status(why) == 413 ? TETHER_EFRAME_OVERSIZE : TETHER_EMALFORMED;
        CHECK_EQ_INT(rc, code);
        CHECK_EQ_INT(tether__hc_check(&lim, body, len, NULL, NULL), code);
    } else {
        CHECK_OK(tether__hc_check(&lim, body, len, NULL, &frames));
        CHECK(frames >= want_index);
    }

    /* The reader finds the same body error in any piece size; for a frame
     * error it accepts the structure and hands over the same frames. */
    static const size_t steps[] = {0, 1, 5};
    tether__buf out;
    tether__buf_init(&out, 0);
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        if (steps[k] == 1 && len > 100000) {
            continue;
        }
        int rwhy;
        int rrc = read_in_pieces(kind, max_message, body, len, steps[k], &out, &frames, &rwhy);
        const char *rgot = rrc == TETHER_OK ? "VALID" : tether__hc_why_name(rwhy);
        if (strcmp(rgot, body_error ? want : "VALID") != 0 || (!body_error && rrc != TETHER_OK)) {
            tt_fail(__FILE__, __LINE__, "%s: the reader in pieces of %zu gave %s", name, steps[k],
                    rgot);
        }
    }
    tether__buf_free(&out);
    tether__decoder_free(&d);
    free(body);
}

TEST(vectors_valid)
{
    load_frames();
    CHECK(frames_count >= 40);
    for_each_line("http_valid.txt", 4, check_valid_line);
    CHECK(valid_count >= 20);
}

TEST(vectors_invalid)
{
    load_frames();
    for_each_line("http_invalid.txt", 4, check_invalid_line);
    CHECK(invalid_count >= 35);
}

/* The worked example of HTTP.md section 17 is in the vectors, byte for byte. */
TEST(worked_example_bodies_are_vectors)
{
    load_frames();
    static const char *const bodies[] = {
        "00 00 00 13 94 04 01 00 92 c4 05 68 65 6c 6c 6f c4 05 77 6f 72 6c 64",
        "00 00 00 03 92 05 02 00 00 00 09 94 04 01 00 91 c4 02 6f 6b",
        "00 00 00 03 92 05 01 00 00 00 0c 94 04 03 00 91 c4 05 61 67 61 69 6e",
        "00 00 00 03 92 05 03",
        "00 00 00 04 93 06 00 a0",
    };
    static const char *const names[] = {"example_data_run", "example_ack_2,example_server_data",
                                        "ack_1,example_data_3", "example_ack_3", "example_bye"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        size_t len;
        uint8_t *body = parse_hex(bodies[i], &len);
        const named **want;
        long n = expected_frames(names[i], &want, names[i]);
        tether__buf b;
        tether__buf_init(&b, 0);
        for (long k = 0; k < n; k++) {
            CHECK_OK(tether__hc_append(&b, want[k]->bytes, want[k]->len));
        }
        CHECK(body != NULL && b.len == len && memcmp(tether__buf_frame(&b), body, len) == 0);
        tether__buf_free(&b);
        free(want);
        free(body);
    }
}

int main(void)
{
    RUN(vectors_valid);
    RUN(vectors_invalid);
    RUN(worked_example_bodies_are_vectors);
    free_frames();
    return tt_finish();
}

/*
 * The HTTP carriage's codec (src/engine/httpcarry.c) against proto/HTTP.md:
 * the body vectors of proto/vectors/http_*.txt (each read whole, byte by byte
 * and in chunks, and re-encoded), the limits, every error path of the writer
 * and the incremental reader, connection ids, headers and URLs.
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

/* ------------------------------------------------------------------------ */
/* Limits and names                                                          */
/* ------------------------------------------------------------------------ */

TEST(limits_follow_the_spec)
{
    tether__hc_limits l;
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_OPEN, 12345));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_EQ_U64(l.body_max, 1028);
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 1);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_SEND, 1048576));
    CHECK_EQ_U64(l.record_max, 1048640);
    CHECK_EQ_U64(l.body_max, 2 * (1048640 + 4));
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 4096);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_ANSWER, 1048576));
    CHECK_EQ_U64(l.min_frames, 1);
    CHECK_EQ_U64(l.max_frames, 2);

    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_STREAM, 1048576));
    CHECK_EQ_U64(l.body_max, 2 * (1048640 + 4) + 4);
    CHECK_EQ_U64(l.min_frames, 0);

    /* Small limits: a record may always be 1024 bytes, a body 65536. */
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 1));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_EQ_U64(l.body_max, 65536);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 0)); /* taken as 1 */
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 960));
    CHECK_EQ_U64(l.record_max, 1024);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 961));
    CHECK_EQ_U64(l.record_max, 1025);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 32700));
    CHECK_EQ_U64(l.body_max, 65536);
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_POLL, 32701));
    CHECK_EQ_U64(l.body_max, 65538);

    /* The largest max_message does not overflow. */
    CHECK_OK(tether__hc_limits_for(&l, TETHER__HC_SEND, UINT32_MAX));
    CHECK_EQ_U64(l.record_max, (uint64_t)UINT32_MAX + 64);
    CHECK_EQ_U64(l.body_max, 2 * ((uint64_t)UINT32_MAX + 68));

    CHECK_ERR(tether__hc_limits_for(&l, 0, 100), TETHER_EINVAL);
    CHECK_ERR(tether__hc_limits_for(&l, 6, 100), TETHER_EINVAL);
    CHECK_EQ_INT(l.kind, 0);
    CHECK_ERR(tether__hc_limits_for(NULL, TETHER__HC_SEND, 100), TETHER_EINVAL);
}

TEST(error_names_and_statuses_match_section_3_3)
{
    static const struct {
        int why;
        const char *name;
        int status;
    } table[] = {
        {TETHER__HC_VALID, "VALID", 0},
        {TETHER__HC_PREFIX_TRUNCATED, "BODY_PREFIX_TRUNCATED", 400},
        {TETHER__HC_RECORD_TRUNCATED, "BODY_RECORD_TRUNCATED", 400},
        {TETHER__HC_RECORD_EMPTY, "BODY_RECORD_EMPTY", 400},
        {TETHER__HC_NO_PROBE, "BODY_NO_PROBE", 400},
        {TETHER__HC_RECORD_TOO_LARGE, "BODY_RECORD_TOO_LARGE", 413},
        {TETHER__HC_BODY_TOO_LARGE, "BODY_TOO_LARGE", 413},
        {TETHER__HC_TOO_MANY, "BODY_TOO_MANY", 413},
        {TETHER__HC_COUNT, "BODY_COUNT", 400},
        {TETHER__HC_FRAME, "FRAME", 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK_EQ_STR(tether__hc_why_name(table[i].why), table[i].name);
        CHECK_EQ_INT(tether__hc_why_status(table[i].why), table[i].status);
    }
    CHECK_EQ_STR(tether__hc_why_name(-1), "(not a body result)");
    CHECK_EQ_STR(tether__hc_why_name(TETHER__HC_FRAME + 1), "(not a body result)");
    CHECK_EQ_INT(tether__hc_why_status(99), 0);
}

/* ------------------------------------------------------------------------ */
/* Whole bodies: arguments and edges the vectors do not reach                 */
/* ------------------------------------------------------------------------ */

TEST(check_arguments)
{
    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_SEND, 100));
    static const uint8_t ack[] = {0, 0, 0, 3, 0x92, 0x05, 0x01};
    int why = -1;
    size_t frames = 99;
    CHECK_ERR(tether__hc_check(NULL, ack, sizeof ack, &why, &frames), TETHER_EINVAL);
    CHECK_EQ_U64(frames, 0);
    CHECK_ERR(tether__hc_check(&lim, NULL, 1, &why, &frames), TETHER_EINVAL);
    /* NULL with length 0 is the empty body. */
    CHECK_ERR(tether__hc_check(&lim, NULL, 0, &why, &frames), TETHER_EMALFORMED);
    CHECK_EQ_INT(why, TETHER__HC_COUNT);
    CHECK_OK(tether__hc_check(&lim, ack, sizeof ack, NULL, NULL));

    /* A failed check leaves *frames at 0 even after counting some. */
    static const uint8_t two_then_cut[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 3, 0x92, 0x05,
                                           0x02, 0, 0};
    frames = 99;
    CHECK_ERR(tether__hc_check(&lim, two_then_cut, sizeof two_then_cut, &why, &frames),
              TETHER_EMALFORMED);
    CHECK_EQ_INT(why, TETHER__HC_PREFIX_TRUNCATED);
    CHECK_EQ_U64(frames, 0);

    tether__decoder d;
    CHECK_OK(tether__decoder_init(&d, 100));
    size_t bad = 7;
    CHECK_ERR(tether__hc_verify(&lim, NULL, ack, sizeof ack, &why, &bad, &frames), TETHER_EINVAL);
    CHECK_ERR(tether__hc_verify(NULL, &d, ack, sizeof ack, &why, &bad, &frames), TETHER_EINVAL);
    CHECK_OK(tether__hc_verify(&lim, &d, ack, sizeof ack, NULL, NULL, NULL));
    tether__decoder_free(&d);
}

TEST(next_walks_frames_and_stops_at_damage)
{
    static const uint8_t stream[] = {0, 0, 0, 0, 0, 0, 0, 3, 0x92, 0x05, 0x01,
                                     0, 0, 0, 1, 0xc0, 0, 0, 0, 9, 0x94};
    size_t pos = 0;
    tether__slice s;
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 1);
    CHECK_EQ_U64(s.len, 3);
    CHECK(s.data == stream + 8);
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 1);
    CHECK_EQ_U64(s.len, 1);
    CHECK_EQ_INT(s.data[0], 0xc0);
    /* the last record claims 9 bytes and has 1 */
    CHECK_EQ_INT(tether__hc_next(stream, sizeof stream, &pos, &s), 0);
    /* a partial prefix */
    pos = 0;
    CHECK_EQ_INT(tether__hc_next(stream, 3, &pos, &s), 0);
}

TEST(room_says_what_fits)
{
    tether__hc_limits lim;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_POLL, 1000)); /* record 1064, body 65536 */
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 1064), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 1065), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 0, 0, 0), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 65536 - 1068, 10, 1064), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 65536 - 1067, 10, 1064), 0);
    CHECK_EQ_INT(tether__hc_room(&lim, 100, 4095, 3), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 100, 4096, 3), 0);
    CHECK_EQ_INT(tether__hc_room(NULL, 0, 0, 3), 0);
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_ANSWER, 1000));
    CHECK_EQ_INT(tether__hc_room(&lim, 40, 1, 20), 1);
    CHECK_EQ_INT(tether__hc_room(&lim, 60, 2, 4), 0);
}

TEST(append_errors_leave_the_body_unchanged)
{
    tether__buf b;
    tether__buf_init(&b, 8);
    static const uint8_t ack[] = {0x92, 0x05, 0x01};
    CHECK_ERR(tether__hc_append(NULL, ack, 3), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append(&b, NULL, 3), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append(&b, ack, 0), TETHER_EINVAL);
    CHECK_ERR(tether__hc_append_probe(NULL), TETHER_EINVAL);
#if SIZE_MAX > UINT32_MAX
    CHECK_ERR(tether__hc_append(&b, ack, (size_t)UINT32_MAX + 1), TETHER_EINVAL);
#endif
    CHECK_EQ_U64(b.len, 0);
    CHECK_OK(tether__hc_append(&b, ack, 3));
    CHECK_OK(tether__hc_append_probe(&b));
    static const uint8_t want[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 0};
    CHECK_EQ_U64(b.len, sizeof want);
    CHECK_MEM(tether__buf_frame(&b), want, sizeof want);

    /* A body that cannot grow any more: ENOMEM, nothing written. */
    tether__buf full = b;
    full.pre = SIZE_MAX - 2;
    full.len = 0;
    CHECK_ERR(tether__hc_append(&full, ack, 3), TETHER_ENOMEM);
    CHECK_ERR(tether__hc_append_probe(&full), TETHER_ENOMEM);
    CHECK_EQ_U64(full.len, 0);
    full.pre = 0;
    full.len = SIZE_MAX - 5;
    CHECK_ERR(tether__hc_append(&full, ack, 3), TETHER_ENOMEM);
    CHECK_EQ_U64(full.len, SIZE_MAX - 5);

    /* Records accumulate across many growths, each after the headroom. */
    tether__buf_reset(&b);
    for (int i = 0; i < 1000; i++) {
        CHECK_OK(tether__hc_append(&b, ack, 3));
    }
    CHECK_EQ_U64(b.len, 7000);
    tether__hc_limits lim;
    size_t frames;
    CHECK_OK(tether__hc_limits_for(&lim, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_check(&lim, tether__buf_frame(&b), b.len, NULL, &frames));
    CHECK_EQ_U64(frames, 1000);
    tether__buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* The incremental reader                                                    */
/* ------------------------------------------------------------------------ */

TEST(reader_arguments)
{
    tether__hc_reader r;
    CHECK_ERR(tether__hc_reader_init(NULL, TETHER__HC_SEND, 100), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_init(&r, 0, 100), TETHER_EINVAL);
    size_t used = 9;
    tether__slice f;
    static const uint8_t b[] = {0, 0, 0, 1, 0xc0};
    /* a reader whose init failed refuses everything */
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, &used, &f), TETHER_EINVAL);
    CHECK_EQ_U64(used, 0);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EINVAL);
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_ERR(tether__hc_reader_feed(NULL, b, sizeof b, &used, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, NULL, 1, &used, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, NULL, &f), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, sizeof b, &used, NULL), TETHER_EINVAL);
    CHECK_ERR(tether__hc_reader_end(NULL), TETHER_EINVAL);
    /* nothing fed: an empty send body */
    CHECK_OK(tether__hc_reader_feed(&r, NULL, 0, &used, &f));
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_COUNT);
    tether__hc_reader_free(&r);
    tether__hc_reader_free(NULL);
}

TEST(reader_stops_after_each_frame)
{
    static const uint8_t b[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 3, 0x92, 0x05, 0x02};
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_POLL, 100));
    size_t used;
    tether__slice f;
    CHECK_OK(tether__hc_reader_feed(&r, b, sizeof b, &used, &f));
    CHECK_EQ_U64(used, 7);
    CHECK(f.data != NULL && f.len == 3 && f.data[2] == 0x01);
    CHECK_OK(tether__hc_reader_feed(&r, b + 7, sizeof b - 7, &used, &f));
    CHECK_EQ_U64(used, 7);
    CHECK(f.data != NULL && f.len == 3 && f.data[2] == 0x02);
    CHECK_OK(tether__hc_reader_end(&r));
    CHECK_EQ_U64(r.frames, 2);
    tether__hc_reader_free(&r);
}

TEST(reader_errors_stick)
{
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x92};
    size_t used;
    tether__slice f;
    CHECK_ERR(tether__hc_reader_feed(&r, huge, sizeof huge, &used, &f), TETHER_EFRAME_OVERSIZE);
    CHECK_EQ_U64(used, 4); /* judged from the prefix, the rest untouched */
    CHECK_EQ_INT(r.why, TETHER__HC_RECORD_TOO_LARGE);
    CHECK(r.rec == NULL); /* nothing was allocated for the claim */
    static const uint8_t ack[] = {0, 0, 0, 3, 0x92, 0x05, 0x01};
    CHECK_ERR(tether__hc_reader_feed(&r, ack, sizeof ack, &used, &f), TETHER_EFRAME_OVERSIZE);
    CHECK_EQ_U64(used, 0);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EFRAME_OVERSIZE);
    tether__hc_reader_free(&r);

    /* end inside a record, then inside a prefix */
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_reader_feed(&r, ack, 6, &used, &f));
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_RECORD_TRUNCATED);
    tether__hc_reader_free(&r);
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_SEND, 100));
    CHECK_OK(tether__hc_reader_feed(&r, ack, 2, &used, &f));
    CHECK_ERR(tether__hc_reader_end(&r), TETHER_EMALFORMED);
    CHECK_EQ_INT(r.why, TETHER__HC_PREFIX_TRUNCATED);
    tether__hc_reader_free(&r);
}

static size_t fail_after; /* allocations the test allocator grants before failing */

static void *test_realloc(void *p, size_t n)
{
    if (fail_after == 0) {
        return NULL;
    }
    fail_after--;
    return realloc(p, n);
}

TEST(reader_out_of_memory)
{
    tether__hc_reader r;
    CHECK_OK(tether__hc_reader_init(&r, TETHER__HC_POLL, 100));
    r.realloc_fn = test_realloc;
    fail_after = 1;
    static const uint8_t b[] = {0, 0, 0, 3, 0x92, 0x05, 0x01, 0, 0, 0, 4, 0x92, 0x05, 0xcc, 0x80};
    size_t used;
    tether__slice f;
    CHECK_OK(tether__hc_reader_feed(&r, b, sizeof b, &used, &f)); /* one allocation: granted */
    CHECK(f.data != NULL && f.len == 3);
    /* the second record is longer: a larger buffer is needed and refused */
    CHECK_ERR(tether__hc_reader_feed(&r, b + used, sizeof b - used, &used, &f), TETHER_ENOMEM);
    CHECK(f.data == NULL);
    CHECK_ERR(tether__hc_reader_feed(&r, b, 1, &used, &f), TETHER_ENOMEM);
    tether__hc_reader_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Connection ids                                                            */
/* ------------------------------------------------------------------------ */

TEST(ids_are_base64url_of_24_bytes)
{
    uint8_t raw[TETHER__HC_ID_BYTES];
    char id[TETHER__HC_ID_CHARS + 1];
    for (size_t i = 0; i < sizeof raw; i++) {
        raw[i] = (uint8_t)i;
    }
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"); /* HTTP.md section 17 */
    for (size_t i = 0; i < sizeof raw; i++) {
        raw[i] = (uint8_t)(0xa0 + i);
    }
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3");
    memset(raw, 0xff, sizeof raw);
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "________________________________");
    memset(raw, 0xfb, sizeof raw); /* 111110 111111 101111 111011: '+' and '/' in base64 */
    tether__hc_id_from_bytes(raw, id);
    CHECK_EQ_STR(id, "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7");
    CHECK_EQ_INT(tether__hc_id_valid(id, strlen(id)), 1);
}

TEST(id_validation)
{
    const char *good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    CHECK_EQ_INT(tether__hc_id_valid(good, 32), 1);
    CHECK_EQ_INT(tether__hc_id_valid(good, 31), 0);
    CHECK_EQ_INT(tether__hc_id_valid("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXA", 33), 0);
    CHECK_EQ_INT(tether__hc_id_valid(NULL, 32), 0);
    CHECK_EQ_INT(tether__hc_id_valid("", 0), 0);
    static const char bad_chars[] = "+/=. \t\"%";
    for (size_t i = 0; i < sizeof bad_chars - 1; i++) {
        char id[33];
        memcpy(id, good, 33);
        id[i * 3] = bad_chars[i];
        CHECK_EQ_INT(tether__hc_id_valid(id, 32), 0);
    }
    char with_nul[33];
    memcpy(with_nul, good, 33);
    with_nul[5] = '\0';
    CHECK_EQ_INT(tether__hc_id_valid(with_nul, 32), 0);
}

TEST(new_ids_are_random_and_valid)
{
    char a[TETHER__HC_ID_CHARS + 1], b[TETHER__HC_ID_CHARS + 1];
    CHECK_OK(tether__hc_id_new(a));
    CHECK_OK(tether__hc_id_new(b));
    CHECK_EQ_U64(strlen(a), 32);
    CHECK_EQ_INT(tether__hc_id_valid(a, strlen(a)), 1);
    CHECK_EQ_INT(tether__hc_id_valid(b, strlen(b)), 1);
    CHECK(strcmp(a, b) != 0);
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */
/* ------------------------------------------------------------------------ */

TEST(content_type)
{
    static const char *const yes[] = {
        "application/vnd.tether.v1+frames",
        "Application/VND.Tether.V1+Frames",
        "  application/vnd.tether.v1+frames\t",
        "application/vnd.tether.v1+frames; charset=binary",
        "application/vnd.tether.v1+frames ;x=y",
    };
    static const char *const no[] = {
        "",
        ";",
        "application/octet-stream",
        "application/vnd.tether.v1+frame",
        "application/vnd.tether.v1+framesx",
        "application/vnd.tether.v2+frames",
        "application/vnd.tether.v1+frames, text/plain",
        "xapplication/vnd.tether.v1+frames",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!tether__hc_content_type_ok(yes[i])) {
            tt_fail(__FILE__, __LINE__, "refused '%s'", yes[i]);
        }
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (tether__hc_content_type_ok(no[i])) {
            tt_fail(__FILE__, __LINE__, "accepted '%s'", no[i]);
        }
    }
    CHECK_EQ_INT(tether__hc_content_type_ok(NULL), 0);
}

TEST(counts)
{
    uint64_t v = 77;
    CHECK_OK(tether__hc_parse_count("0", &v));
    CHECK_EQ_U64(v, 0);
    CHECK_OK(tether__hc_parse_count("1", &v));
    CHECK_EQ_U64(v, 1);
    CHECK_OK(tether__hc_parse_count(" 4096\t", &v));
    CHECK_EQ_U64(v, 4096);
    CHECK_OK(tether__hc_parse_count("18446744073709551615", &v));
    CHECK_EQ_U64(v, UINT64_MAX);
    static const char *const bad[] = {"",   " ",  "01", "00", "-1",  "+1",  "1 2",  "1a",
                                      "0x1", "1.0", "18446744073709551616",
                                      "99999999999999999999", "184467440737095516150"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 77;
        if (tether__hc_parse_count(bad[i], &v) != TETHER_EINVAL || v != 77) {
            tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
        }
    }
    CHECK_ERR(tether__hc_parse_count(NULL, &v), TETHER_EINVAL);
    CHECK_ERR(tether__hc_parse_count("1", NULL), TETHER_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* URLs                                                                      */
/* ------------------------------------------------------------------------ */

TEST(urls_of_section_2_1)
{
    static const struct {
        const char *ws;
        int op;
        const char *http;
    } table[] = {
        {"ws://h:8080", TETHER__HC_OP_OPEN, "http://h:8080/.tether/v1/open"},
        {"ws://h:8080/", TETHER__HC_OP_OPEN, "http://h:8080/.tether/v1/open"},
        {"wss://example.com/chat", TETHER__HC_OP_OPEN, "https://example.com/chat/.tether/v1/open"},
        {"wss://example.com/chat/?room=7", TETHER__HC_OP_OPEN,
         "https://example.com/chat/.tether/v1/open?room=7"},
        {"ws://h:8080/a/b", TETHER__HC_OP_SEND, "http://h:8080/a/b/.tether/v1/send"},
        {"ws://h?x=/y", TETHER__HC_OP_POLL, "http://h/.tether/v1/poll?x=/y"},
        {"WSS://[::1]:9/", TETHER__HC_OP_STREAM, "https://[::1]:9/.tether/v1/stream"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK_OK(tether__hc_url(table[i].ws, table[i].op, out, sizeof out));
        CHECK_EQ_STR(out, table[i].http);
    }
    CHECK_ERR(tether__hc_url("http://h/x", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_EQ_STR(out, "");
    CHECK_ERR(tether__hc_url("ws://h/x#frag", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws:///x", TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", 0, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", 5, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url(NULL, TETHER__HC_OP_OPEN, out, sizeof out), TETHER_EINVAL);
    CHECK_ERR(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, NULL, 10), TETHER_EINVAL);
    /* exactly long enough, then one byte short */
    const char *want = "http://h/.tether/v1/open";
    CHECK_OK(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, out, strlen(want) + 1));
    CHECK_EQ_STR(out, want);
    CHECK_ERR(tether__hc_url("ws://h", TETHER__HC_OP_OPEN, out, strlen(want)), TETHER_ENOMEM);
    CHECK_EQ_STR(out, "");
}

TEST(routes_of_section_2_3)
{
    static const struct {
        const char *target;
        int op;
        const char *app;
    } table[] = {
        {"/.tether/v1/open", TETHER__HC_OP_OPEN, "/"},
        {"/chat/.tether/v1/poll?room=7", TETHER__HC_OP_POLL, "/chat?room=7"},
        {"/a/b/.tether/v1/send", TETHER__HC_OP_SEND, "/a/b"},
        {"/.tether/v1/stream?x=/.tether/v1/open", TETHER__HC_OP_STREAM, "/?x=/.tether/v1/open"},
        {"/.tether/v1/foo", -1, ""},
        {"/.tether/v1/", -1, ""},
        {"/.tether/v1/openx", -1, ""},
        {"/.tether/v1/OPEN", -1, ""},
        {"/x.tether/v1/open", 0, ""},
        {"/.tether/v2/open", 0, ""},
        {"/.tether/v1/open/", 0, ""},
        {"/ws?x=/.tether/v1/open", 0, ""},
        {"/", 0, ""},
        {"", 0, ""},
        {"http://h/.tether/v1/open", 0, ""},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char app[64] = "junk";
        int op = tether__hc_route(table[i].target, app, sizeof app);
        if (op != table[i].op || strcmp(app, table[i].app) != 0) {
            tt_fail(__FILE__, __LINE__, "'%s' routed to %d '%s', expected %d '%s'",
                    table[i].target, op, app, table[i].op, table[i].app);
        }
    }
    CHECK_EQ_INT(tether__hc_route(NULL, NULL, 0), 0);
    CHECK_EQ_INT(tether__hc_route("/chat/.tether/v1/send", NULL, 0), TETHER__HC_OP_SEND);
    char small[4];
    CHECK_EQ_INT(tether__hc_route("/chat/.tether/v1/send?q", small, sizeof small),
                 TETHER__HC_OP_SEND);
    CHECK_EQ_STR(small, "/ch");

    /* Every derived URL routes back to its operation and the application path. */
    for (int op = TETHER__HC_OP_OPEN; op <= TETHER__HC_OP_STREAM; op++) {
        char url[128], app[64];
        CHECK_OK(tether__hc_url("wss://example.com:8443/chat?room=7", op, url, sizeof url));
        const char *target = strchr(url + strlen("https://"), '/');
        CHECK_EQ_INT(tether__hc_route(target, app, sizeof app), op);
        CHECK_EQ_STR(app, "/chat?room=7");
        CHECK_EQ_STR(tether__hc_op_method(op),
                     op == TETHER__HC_OP_OPEN || op == TETHER__HC_OP_SEND ? "POST" : "GET");
    }
    CHECK(tether__hc_op_name(0) == NULL);
    CHECK(tether__hc_op_name(5) == NULL);
    CHECK(tether__hc_op_method(-1) == NULL);
}

int main(void)
{
    RUN(vectors_valid);
    RUN(vectors_invalid);
    RUN(worked_example_bodies_are_vectors);
    RUN(limits_follow_the_spec);
    RUN(error_names_and_statuses_match_section_3_3);
    RUN(check_arguments);
    RUN(next_walks_frames_and_stops_at_damage);
    RUN(room_says_what_fits);
    RUN(append_errors_leave_the_body_unchanged);
    RUN(reader_arguments);
    RUN(reader_stops_after_each_frame);
    RUN(reader_errors_stick);
    RUN(reader_out_of_memory);
    RUN(ids_are_base64url_of_24_bytes);
    RUN(id_validation);
    RUN(new_ids_are_random_and_valid);
    RUN(content_type);
    RUN(counts);
    RUN(urls_of_section_2_1);
    RUN(routes_of_section_2_3);
    free_frames();
    return tt_finish();
}

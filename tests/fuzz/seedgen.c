/*
 * Turns the protocol's hex test vectors (the .txt files of proto/vectors, format in
 * proto/README.md) into seed corpora for the fuzz targets, at build time:
 *
 *   seedgen <proto/vectors dir> <output dir>
 *
 * writes <output>/frame/<file>_<name>: every vector's bytes (valid,
 * non-canonical and invalid alike), and <output>/engine/...: short engine
 * scripts in engine_fuzz.c's input format built from the example_* vectors
 * and each DATA/ACK/BYE vector, and <output>/httpcarry/...: the carriage's
 * body vectors (http_valid.txt, http_invalid.txt) in httpcarry_fuzz.c's input
 * format. Vectors over 64 KiB are left out (the fuzzers run with a smaller
 * -max_len).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SEED 65536
#define MAX_VECTORS 512

typedef struct vec {
    char name[96];    /* the vector's name */
    uint8_t *bytes;   /* decoded hex */
    size_t len;       /* bytes */
} vec;

static vec vecs[MAX_VECTORS];
static size_t nvecs;

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes "tok tok*N ..." into a new buffer; NULL when malformed or too big. */
static uint8_t *parse_hex(const char *s, size_t *len)
{
    size_t cap = 1024, n = 0;
    uint8_t *out = malloc(cap);
    while (out && *s) {
        while (*s == ' ') {
            s++;
        }
        if (!*s) {
            break;
        }
        uint8_t tok[256];
        size_t tn = 0;
        while (hexval(s[0]) >= 0 && hexval(s[1]) >= 0 && tn < sizeof tok) {
            tok[tn++] = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
            s += 2;
        }
        unsigned long rep = 1;
        if (*s == '*') {
            char *e;
            rep = strtoul(s + 1, &e, 10);
            s = e;
        }
        if (tn == 0 || (*s && *s != ' ')) {
            free(out);
            return NULL;
        }
        if (tn * rep > MAX_SEED || n + tn * rep > MAX_SEED) {
            free(out);
            return NULL; /* too big to be a useful seed */
        }
        while (n + tn * rep > cap) {
            cap *= 2;
            uint8_t *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                return NULL;
            }
            out = bigger;
        }
        for (unsigned long r = 0; r < rep; r++) {
            memcpy(out + n, tok, tn);
            n += tn;
        }
    }
    *len = n;
    return out;
}

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "seedgen: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int load(const char *dir, const char *file, const char *outdir)
{
    char path[4096], line[1 << 16];
    snprintf(path, sizeof path, "%s/%s.txt", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "seedgen: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (line[0] == '#' || !t2) {
            continue;
        }
        *t1 = *t2 = '\0';
        size_t len;
        uint8_t *bytes = parse_hex(t2 + 1, &len);
        if (!bytes) {
            continue;
        }
        char name[160];
        snprintf(name, sizeof name, "%s_%s", file, line);
        if (write_file(outdir, name, bytes, len) != 0) {
            fclose(f);
            return -1;
        }
        if (nvecs < MAX_VECTORS) {
            vec *v = &vecs[nvecs++];
            snprintf(v->name, sizeof v->name, "%s", line);
            v->bytes = bytes;
            v->len = len;
        } else {
            free(bytes);
        }
    }
    fclose(f);
    return 0;
}

/* The carriage's body vectors (http_*.txt: name, kind[/max_message], frames,
 * hex) as httpcarry_fuzz.c inputs: the kind selector, max_message (4 bytes,
 * big-endian), a cut seed of 0, then the body. */
static int load_http(const char *dir, const char *file, const char *outdir)
{
    static const char *const kinds[] = {"open", "answer", "send", "poll", "stream"};
    char path[4096], line[1 << 16];
    snprintf(path, sizeof path, "%s/%s.txt", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "seedgen: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        char *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        if (line[0] == '#' || !t3) {
            continue;
        }
        *t1 = *t2 = *t3 = '\0';
        unsigned long max = 1048576;
        char *slash = strchr(t1 + 1, '/');
        if (slash) {
            *slash = '\0';
            max = strtoul(slash + 1, NULL, 10);
        }
        int kind = -1;
        for (int k = 0; k < 5; k++) {
            if (!strcmp(t1 + 1, kinds[k])) {
                kind = k;
            }
        }
        size_t len;
        uint8_t *bytes = kind >= 0 ? parse_hex(t3 + 1, &len) : NULL;
        if (!bytes) {
            continue;
        }
        uint8_t *seed = malloc(len + 6);
        if (!seed) {
            free(bytes);
            fclose(f);
            return -1;
        }
        seed[0] = (uint8_t)kind;
        for (int i = 0; i < 4; i++) {
            seed[1 + i] = (uint8_t)(max >> (24 - 8 * i));
        }
        seed[5] = 0;
        memcpy(seed + 6, bytes, len);
        char name[160];
        snprintf(name, sizeof name, "%s_%s", file, line);
        int rc = write_file(outdir, name, seed, len + 6);
        free(seed);
        free(bytes);
        if (rc != 0) {
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    return n;
}

static const vec *find(const char *name)
{
    for (size_t i = 0; i < nvecs; i++) {
        if (!strcmp(vecs[i].name, name)) {
            return &vecs[i];
        }
    }
    fprintf(stderr, "seedgen: no vector %s\n", name);
    exit(1);
}

/* An engine script being built (engine_fuzz.c's format). */
typedef struct script {
    uint8_t b[MAX_SEED];
    size_t n;
} script;

static void put(script *s, const void *p, size_t n)
{
    if (s->n + n <= sizeof s->b) {
        memcpy(s->b + s->n, p, n);
        s->n += n;
    }
}

static void put_u8(script *s, uint8_t v)
{
    put(s, &v, 1);
}

/* op 0: a frame from the client, u16 length then the bytes */
static void put_frame(script *s, const vec *v)
{
    put_u8(s, 0);
    put_u8(s, (uint8_t)(v->len >> 8));
    put_u8(s, (uint8_t)v->len);
    put(s, v->bytes, v->len);
}

static void start(script *s, const uint8_t cfg[8], const vec *hello)
{
    s->n = 0;
    put(s, cfg, 8);
    put_u8(s, (uint8_t)(hello->len >> 8));
    put_u8(s, (uint8_t)hello->len);
    put(s, hello->bytes, hello->len);
}

static int engine_seeds(const char *outdir)
{
    static script s;
    /* window 16, max_message 1021, run 513 bytes, queue 4097 bytes, ack every 2 */
    const uint8_t fresh[8] = {0x04, 15, 255, 64, 0, 0, 0, 0};
    /* the same with history: 5 messages sent, 2 acked, 0 received */
    const uint8_t history[8] = {0x06, 15, 255, 64, 255, 5, 2, 0};
    const uint8_t manual[8] = {0x05, 3, 255, 8, 16, 0, 0, 0};
    const vec *hello = find("example_hello");

    /* the worked example of PROTOCOL.md section 11, seen from the server */
    start(&s, fresh, hello);
    put_frame(&s, find("example_data_run"));
    put_u8(&s, 4);
    put(&s, "\x03\x00\x02", 3); /* the application sends one 4-byte message */
    put_u8(&s, 4);
    put_frame(&s, find("ack_1"));
    put(&s, "\x05\x01\x00\x00", 4); /* reconnect, resume=1, consistent cursors */
    put_frame(&s, find("example_data_resent"));
    put_frame(&s, find("example_data_3"));
    put(&s, "\x02\x10", 2); /* 64 ms pass */
    put_u8(&s, 4);
    put_frame(&s, find("example_bye"));
    put_u8(&s, 4);
    if (write_file(outdir, "example_session", s.b, s.n) != 0) {
        return -1;
    }

    start(&s, history, find("hello_resume"));
    put_u8(&s, 4);
    put_frame(&s, find("ack_1"));
    put(&s, "\x03\x03\x01\x02\x03\x04", 6);
    put_u8(&s, 4);
    put(&s, "\x05\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00", 18);
    put_u8(&s, 4);
    if (write_file(outdir, "history_resume", s.b, s.n) != 0) {
        return -1;
    }

    start(&s, manual, hello);
    put_frame(&s, find("data_one"));
    put(&s, "\x06\x00", 2);
    put_u8(&s, 4);
    put(&s, "\x07\x00", 2);
    put_u8(&s, 4);
    if (write_file(outdir, "manual_ack_bye", s.b, s.n) != 0) {
        return -1;
    }

    /* every frame vector after a fresh HELLO */
    for (size_t i = 0; i < nvecs; i++) {
        if (vecs[i].len > 4096) {
            continue;
        }
        char name[160];
        start(&s, fresh, hello);
        put_frame(&s, &vecs[i]);
        put_u8(&s, 4);
        snprintf(name, sizeof name, "after_hello_%s", vecs[i].name);
        if (write_file(outdir, name, s.b, s.n) != 0) {
            return -1;
        }
    }
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "seedgen: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char frame_dir[4096], engine_dir[4096], http_dir[4096];
    if (argc != 3) {
        fprintf(stderr, "usage: seedgen <proto/vectors dir> <output dir>\n");
        return 2;
    }
    snprintf(frame_dir, sizeof frame_dir, "%s/frame", argv[2]);
    snprintf(engine_dir, sizeof engine_dir, "%s/engine", argv[2]);
    snprintf(http_dir, sizeof http_dir, "%s/httpcarry", argv[2]);
    if (make_dir(argv[2]) || make_dir(frame_dir) || make_dir(engine_dir) || make_dir(http_dir)) {
        return 1;
    }
    const char *files[] = {"valid", "noncanonical", "invalid"};
    for (size_t i = 0; i < 3; i++) {
        if (load(argv[1], files[i], frame_dir) != 0) {
            return 1;
        }
    }
    int http_valid = load_http(argv[1], "http_valid", http_dir);
    int http_invalid = load_http(argv[1], "http_invalid", http_dir);
    if (http_valid < 10 || http_invalid < 10) {
        fprintf(stderr, "seedgen: too few HTTP carriage vectors (%d valid, %d invalid)\n",
                http_valid, http_invalid);
        return 1;
    }
    if (nvecs < 50 || engine_seeds(engine_dir) != 0) {
        fprintf(stderr, "seedgen: too few vectors (%zu) or no engine seeds\n", nvecs);
        return 1;
    }
    for (size_t i = 0; i < nvecs; i++) {
        free(vecs[i].bytes);
    }
    return 0;
}

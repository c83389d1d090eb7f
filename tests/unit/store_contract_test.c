/*
 * The store contract (src/store/store.h), checked against every
 * implementation: run without arguments (ctest store_contract), every test
 * here runs once on the memory store and once on the SQLite store; run as
 * `store_contract_test pg` (ctest store_contract_pg), the same tests run on
 * the PostgreSQL store against a private server the run starts itself
 * (tests/support/pgtest.h), each store in a database of its own. Tests that
 * only make sense for one of them are in store_sqlite_test.c,
 * store_memory_test.c and store_pg_test.c.
 */
#include "store_fixture.h"

#include "pgtest.h"
#include "store/store_testhooks.h"

/* ---- the implementations under test ---- */

typedef struct impl {
    const char *name;                                          /* shown in the test name */
    int (*open)(tether__store_role role, tether__store **out); /* opens a fresh, empty store */
    void (*fault)(tether__store *st);                          /* makes storing more data fail */
    void (*unfault)(tether__store *st);                        /* undoes fault() */
    int fault_code;                                            /* a write's error under fault */
} impl;

static const impl *cur; /* the implementation the running test uses */

static int open_memory(tether__store_role role, tether__store **out)
{
    return tether__store_memory_open(role, out);
}

static int open_sqlite(tether__store_role role, tether__store **out)
{
    static int n;
    char name[64], path[512], err[256];
    snprintf(name, sizeof name, "generic-%d.db", n++);
    int rc = tether__store_sqlite_open(tt_path(path, sizeof path, name), role,
                                       TETHER_DURABILITY_NORMAL, out, err, sizeof err);
    if (rc != TETHER_OK) {
        fprintf(stderr, "open %s: %s\n", path, err);
    }
    return rc;
}

static char pg_db[64]; /* the database of the PostgreSQL store opened last */

static int open_pg(tether__store_role role, tether__store **out)
{
    char ci[256], err[512];
    if (pgt_createdb("contract", pg_db, sizeof pg_db) != 0) {
        return TETHER_ESTORE;
    }
    int rc = tether__store_pg_open(pgt_conninfo(pg_db, ci, sizeof ci), role,
                                   TETHER_DURABILITY_NORMAL, out, err, sizeof err);
    if (rc != TETHER_OK) {
        fprintf(stderr, "open %s: %s\n", pg_db, err);
    }
    return rc;
}

static void fault_memory(tether__store *st)
{
    tether__store_memory_fail_after(st, 5);
}

static void unfault_memory(tether__store *st)
{
    tether__store_memory_fail_after(st, -1);
}

static void fault_sqlite(tether__store *st)
{
    CHECK_OK(tether__store_sqlite_set_max_pages(st, 1));
}

static void unfault_sqlite(tether__store *st)
{
    CHECK_OK(tether__store_sqlite_set_max_pages(st, 1073741823u));
}

/* A trigger in the store's database that fails the insert of every outbox
 * row whose seq ends in 10 modulo 20 as a full disk would: a batch that
 * spans one fails part-way, after earlier rows of it went in. */
static void fault_pg(tether__store *st)
{
    (void)st;
    CHECK_EQ_INT(pgt_exec(pg_db,
                          "CREATE FUNCTION tether_test_full() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$BEGIN IF NEW.seq % 20 = 10 THEN RAISE EXCEPTION 'injected: disk full' "
                          "USING ERRCODE = 'disk_full'; END IF; RETURN NEW; END$$;"
                          "CREATE TRIGGER tether_test_full BEFORE INSERT ON tether_outbox "
                          "FOR EACH ROW EXECUTE FUNCTION tether_test_full()",
                          0),
                 0);
}

static void unfault_pg(tether__store *st)
{
    (void)st;
    CHECK_EQ_INT(pgt_exec(pg_db,
                          "DROP TRIGGER tether_test_full ON tether_outbox;"
                          "DROP FUNCTION tether_test_full()",
                          0),
                 0);
}

static const impl impls[] = {
    {"memory", open_memory, fault_memory, unfault_memory, TETHER_ENOMEM},
    {"sqlite", open_sqlite, fault_sqlite, unfault_sqlite, TETHER_ESTORE_FULL},
};

static const impl impls_pg[] = {
    {"pg", open_pg, fault_pg, unfault_pg, TETHER_ESTORE_FULL},
};

static const impl *run_impls = impls;                          /* the set this run checks */
static size_t run_n = sizeof impls / sizeof impls[0];          /* its size */

static tether__store *open_store(tether__store_role role)
{
    tether__store *st = NULL;
    CHECK_OK(cur->open(role, &st));
    if (!st) {
        fprintf(stderr, "cannot open a %s store\n", cur->name);
        exit(2);
    }
    return st;
}

/* ---- generic tests (both stores) ---- */

TEST(session_crud)
{
    tether__store *st = open_store(TETHER__ROLE_SERVER);
    tether__session_rec a = mkrec(10), b = mkrec(200), c = mkrec(50), r;

    CHECK_ERR(st->ops->session_get(st, a.id, &r), TETHER_ENOTFOUND);
    CHECK(strstr(st->ops->errmsg(st), "session_get") != NULL);
    CHECK_ERR(st->ops->session_delete(st, a.id), TETHER_ENOTFOUND);
    CHECK_EQ_U64(list(st)->n, 0);

    a.out_last = 7;
    a.peer_acked = 3;
    a.recv_cursor = 11;
    a.established = 1;
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_OK(st->ops->session_put(st, &b));
    CHECK_OK(st->ops->session_put(st, &c));
    r = get(st, a.id);
    CHECK(rec_eq(&r, &a));
    r = get(st, b.id);
    CHECK(rec_eq(&r, &b));

    /* list: id order, early stop */
    idlist *l = list(st);
    CHECK_EQ_U64(l->n, 3);
    CHECK_MEM(l->id[0], a.id, 16);
    CHECK_MEM(l->id[1], c.id, 16);
    CHECK_MEM(l->id[2], b.id, 16);
    static idlist one;
    memset(&one, 0, sizeof one);
    one.stop_after = 1;
    CHECK_OK(st->ops->session_list(st, on_list, &one));
    CHECK_EQ_U64(one.n, 1);

    /* put replaces the record but keeps the outbox */
    CHECK_EQ_U64(app(st, a.id, "x"), 8);
    a.token[0] ^= 0xff;
    a.out_last = 20;
    a.established = 0;
    CHECK_OK(st->ops->session_put(st, &a));
    r = get(st, a.id);
    CHECK(rec_eq(&r, &a));
    check_pending(st, a.id, 1, 1);
    CHECK_EQ_U64(app(st, a.id, "y"), 21);

    /* established is stored as 0/1 */
    c.established = 42;
    CHECK_OK(st->ops->session_put(st, &c));
    CHECK_EQ_INT(get(st, c.id).established, 1);

    /* delete removes the session and its outbox */
    CHECK_OK(st->ops->session_delete(st, a.id));
    CHECK_ERR(st->ops->session_get(st, a.id, &r), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->session_delete(st, a.id), TETHER_ENOTFOUND);
    CHECK_EQ_U64(list(st)->n, 2);
    a = mkrec(10);
    CHECK_OK(st->ops->session_put(st, &a));
    check_pending(st, a.id, 0, 0);
    CHECK_EQ_U64(load(st, a.id, 0, 100).n, 0);
    CHECK_OK(st->ops->session_delete(st, a.id));

    /* every per-session operation reports a missing session */
    tether_msg m = {"z", 1};
    uint64_t seq, cnt, bytes;
    got g;
    tether__session_rec nr = mkrec(99);
    CHECK_ERR(st->ops->append(st, a.id, &m, 1, 0, 0, &seq), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->load(st, a.id, 0, 10, on_load, &g), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->ack(st, a.id, 0), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->set_cursor(st, a.id, 1), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->pending(st, a.id, &cnt, &bytes), TETHER_ENOTFOUND);
    CHECK_ERR(st->ops->rebase(st, a.id, &nr, 0), TETHER_ENOTFOUND);
    CHECK(strstr(st->ops->errmsg(st), "rebase") != NULL);

    /* invalid arguments */
    CHECK_ERR(st->ops->session_get(st, b.id, NULL), TETHER_EINVAL);
    CHECK_ERR(st->ops->session_put(st, NULL), TETHER_EINVAL);
    CHECK_ERR(st->ops->session_list(st, NULL, NULL), TETHER_EINVAL);
    CHECK_ERR(st->ops->append(st, b.id, NULL, 1, 0, 0, &seq), TETHER_EINVAL);
    CHECK_ERR(st->ops->append(st, b.id, &m, 1, 0, 0, NULL), TETHER_EINVAL);
    CHECK_ERR(st->ops->load(st, b.id, 0, 1, NULL, NULL), TETHER_EINVAL);
    CHECK_ERR(st->ops->pending(st, b.id, NULL, &bytes), TETHER_EINVAL);
    CHECK(st->ops->errmsg(st) != NULL);
    st->ops->close(st);
}

TEST(put_validation)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(1);
    a.out_last = 3;
    a.peer_acked = 4;
    CHECK_ERR(st->ops->session_put(st, &a), TETHER_EINVAL);
    a.peer_acked = 0;
    a.out_last = (uint64_t)INT64_MAX + 1;
    CHECK_ERR(st->ops->session_put(st, &a), TETHER_EINVAL);
    a.out_last = 0;
    a.recv_cursor = UINT64_MAX;
    CHECK_ERR(st->ops->session_put(st, &a), TETHER_EINVAL);
    CHECK_EQ_U64(list(st)->n, 0);

    a.recv_cursor = 0;
    a.out_last = 7;
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "a"), 8);
    CHECK_EQ_U64(app(st, a.id, "b"), 9);
    uint64_t d = digest(st);
    /* out_last may not fall below the outbox's last row */
    a.out_last = 8;
    CHECK_ERR(st->ops->session_put(st, &a), TETHER_EINVAL);
    CHECK_EQ_U64(digest(st), d);
    a.out_last = 9;
    CHECK_OK(st->ops->session_put(st, &a));
    /* raising it leaves a gap in the seqs, which load shows as is */
    a.out_last = 20;
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "c"), 21);
    got g = load(st, a.id, 0, 10);
    CHECK_EQ_U64(g.n, 3);
    CHECK_EQ_U64(g.seq[1], 9);
    CHECK_EQ_U64(g.seq[2], 21);
    g = load(st, a.id, 10, 10);
    CHECK_EQ_U64(g.n, 1);
    CHECK_EQ_U64(g.seq[0], 21);
    st->ops->close(st);
}

TEST(append_seqs)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(1);
    a.out_last = 5;
    a.peer_acked = 5;
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "six"), 6);
    CHECK_EQ_U64(get(st, a.id).out_last, 6);
    tether_msg m[3] = {{"seven", 5}, {"eight", 5}, {"nine", 4}};
    uint64_t first = 0;
    CHECK_OK(st->ops->append(st, a.id, m, 3, 0, 0, &first));
    CHECK_EQ_U64(first, 7);
    CHECK_EQ_U64(get(st, a.id).out_last, 9);
    CHECK_EQ_U64(get(st, a.id).peer_acked, 5);
    got g = load(st, a.id, 0, 100);
    CHECK_EQ_U64(g.n, 4);
    for (size_t i = 0; i < 4 && i < g.n; i++) {
        CHECK_EQ_U64(g.seq[i], 6 + i);
    }
    CHECK_EQ_STR(g.data[0], "six");
    CHECK_EQ_STR(g.data[1], "seven");
    CHECK_EQ_STR(g.data[3], "nine");
    /* an empty batch stores nothing and tells the next seq */
    first = 0;
    CHECK_OK(st->ops->append(st, a.id, NULL, 0, 0, 0, &first));
    CHECK_EQ_U64(first, 10);
    CHECK_EQ_U64(get(st, a.id).out_last, 9);
    check_pending(st, a.id, 4, 3 + 5 + 5 + 4);
    /* sequence numbers end at INT64_MAX */
    tether__session_rec b = mkrec(2);
    b.out_last = (uint64_t)INT64_MAX - 1;
    CHECK_OK(st->ops->session_put(st, &b));
    CHECK_ERR(st->ops->append(st, b.id, m, 2, 0, 0, &first), TETHER_EINVAL);
    CHECK_EQ_U64(app(st, b.id, "last"), (uint64_t)INT64_MAX);
    st->ops->close(st);
}

TEST(append_all_or_nothing)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(3);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_EQ_U64(app(st, a.id, "one"), 1);
    CHECK_EQ_U64(app(st, a.id, "two"), 2);
    uint64_t d = digest(st);

    static char big[20][4000];
    tether_msg m[20];
    for (int i = 0; i < 20; i++) {
        memset(big[i], 'a' + i, sizeof big[i]);
        m[i].data = big[i];
        m[i].len = sizeof big[i];
    }
    /* a message without data in the middle: nothing is stored */
    uint64_t first = 77;
    m[7].data = NULL;
    CHECK_ERR(st->ops->append(st, a.id, m, 20, 0, 0, &first), TETHER_EINVAL);
    m[7].data = big[7];
    CHECK_EQ_U64(first, 77);
    CHECK_EQ_U64(digest(st), d);

    /* the lower layer fails part-way through the batch: nothing is stored */
    cur->fault(st);
    CHECK_ERR(st->ops->append(st, a.id, m, 20, 0, 0, &first), cur->fault_code);
    CHECK_EQ_U64(first, 77);
    cur->unfault(st);
    CHECK_EQ_U64(get(st, a.id).out_last, 2);
    check_pending(st, a.id, 2, 6);
    CHECK_EQ_U64(load(st, a.id, 0, 100).n, 2);
    CHECK_EQ_U64(digest(st), d);

    CHECK_OK(st->ops->append(st, a.id, m, 20, 0, 0, &first));
    CHECK_EQ_U64(first, 3);
    check_pending(st, a.id, 22, 6 + 20 * 4000);
    got g = load(st, a.id, 3, 100);
    CHECK_EQ_U64(g.n, 20);
    CHECK_EQ_U64(g.len[19], 4000);
    CHECK_EQ_INT(g.data[19][0], 'a' + 19);
    st->ops->close(st);
}

TEST(caps)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(4);
    CHECK_OK(st->ops->session_put(st, &a));
    tether_msg two[2] = {{"ab", 2}, {"cd", 2}};
    uint64_t first = 0;

    /* count */
    CHECK_OK(st->ops->append(st, a.id, two, 2, 3, 0, &first));
    uint64_t d = digest(st);
    CHECK_ERR(st->ops->append(st, a.id, two, 2, 3, 0, &first), TETHER_EOUTBOX_FULL);
    CHECK(strstr(st->ops->errmsg(st), "cap") != NULL);
    CHECK_EQ_U64(digest(st), d);
    CHECK_EQ_U64(get(st, a.id).out_last, 2);
    CHECK_OK(st->ops->append(st, a.id, two, 1, 3, 0, &first)); /* exactly at the cap */
    CHECK_EQ_U64(first, 3);
    d = digest(st);
    CHECK_ERR(st->ops->append(st, a.id, two, 1, 3, 0, &first), TETHER_EOUTBOX_FULL);
    CHECK_EQ_U64(digest(st), d);
    CHECK_OK(st->ops->append(st, a.id, two, 2, 0, 0, &first)); /* 0: no cap */
    CHECK_EQ_U64(first, 4);
    /* acks make room */
    CHECK_OK(st->ops->ack(st, a.id, 4));
    check_pending(st, a.id, 1, 2);
    CHECK_OK(st->ops->append(st, a.id, two, 2, 3, 0, &first));
    CHECK_EQ_U64(first, 6);

    /* bytes */
    tether__session_rec b = mkrec(5);
    CHECK_OK(st->ops->session_put(st, &b));
    static char buf[100];
    memset(buf, 'q', sizeof buf);
    tether_msg m60 = {buf, 60}, m50 = {buf, 50}, m40 = {buf, 40}, m1 = {buf, 1}, m0 = {NULL, 0};
    tether_msg m101 = {buf, 100};
    CHECK_ERR(st->ops->append(st, b.id, &m101, 1, 0, 99, &first), TETHER_EOUTBOX_FULL);
    CHECK_OK(st->ops->append(st, b.id, &m60, 1, 0, 100, &first));
    d = digest(st);
    CHECK_ERR(st->ops->append(st, b.id, &m50, 1, 0, 100, &first), TETHER_EOUTBOX_FULL);
    CHECK_EQ_U64(digest(st), d);
    tether_msg pair[2] = {m40, m1};
    CHECK_ERR(st->ops->append(st, b.id, pair, 2, 0, 100, &first), TETHER_EOUTBOX_FULL);
    CHECK_EQ_U64(digest(st), d);
    CHECK_OK(st->ops->append(st, b.id, &m40, 1, 0, 100, &first)); /* exactly at the cap */
    CHECK_ERR(st->ops->append(st, b.id, &m1, 1, 0, 100, &first), TETHER_EOUTBOX_FULL);
    CHECK_OK(st->ops->append(st, b.id, &m0, 1, 0, 100, &first)); /* 0 bytes still fit */
    CHECK_ERR(st->ops->append(st, b.id, &m0, 1, 3, 100, &first), TETHER_EOUTBOX_FULL);
    check_pending(st, b.id, 3, 100);
    CHECK_EQ_U64(get(st, b.id).out_last, 3);
    st->ops->close(st);
}

TEST(load_ranges)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(6);
    CHECK_OK(st->ops->session_put(st, &a));
    char text[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(text, sizeof text, "m%d", i);
        CHECK_EQ_U64(app(st, a.id, text), (uint64_t)i);
    }
    got g = load(st, a.id, 0, 100);
    CHECK_EQ_U64(g.n, 10);
    CHECK_EQ_STR(g.data[9], "m10");
    g = load(st, a.id, 4, 3);
    CHECK_EQ_U64(g.n, 3);
    CHECK_EQ_U64(g.seq[0], 4);
    CHECK_EQ_U64(g.seq[2], 6);
    CHECK_EQ_STR(g.data[0], "m4");
    /* early stop is not an error */
    memset(&g, 0, sizeof g);
    g.stop_after = 2;
    CHECK_OK(st->ops->load(st, a.id, 5, 100, on_load, &g));
    CHECK_EQ_U64(g.n, 2);
    CHECK_EQ_U64(g.seq[1], 6);
    CHECK_EQ_U64(load(st, a.id, 10, 100).n, 1);
    CHECK_EQ_U64(load(st, a.id, 11, 100).n, 0);
    CHECK_EQ_U64(load(st, a.id, 1, 0).n, 0);
    CHECK_EQ_U64(load(st, a.id, UINT64_MAX, 10).n, 0);
    CHECK_EQ_U64(load(st, a.id, (uint64_t)INT64_MAX + 1, 10).n, 0);
    CHECK_OK(st->ops->ack(st, a.id, 5));
    g = load(st, a.id, 0, 100);
    CHECK_EQ_U64(g.n, 5);
    CHECK_EQ_U64(g.seq[0], 6);
    st->ops->close(st);
}

TEST(ack_prunes)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(7);
    CHECK_OK(st->ops->session_put(st, &a));
    for (int i = 0; i < 10; i++) {
        app(st, a.id, "0123456789");
    }
    CHECK_OK(st->ops->ack(st, a.id, 4));
    CHECK_EQ_U64(get(st, a.id).peer_acked, 4);
    check_pending(st, a.id, 6, 60);
    CHECK_EQ_U64(load(st, a.id, 0, 100).seq[0], 5);
    /* never lowers */
    CHECK_OK(st->ops->ack(st, a.id, 2));
    CHECK_EQ_U64(get(st, a.id).peer_acked, 4);
    CHECK_OK(st->ops->ack(st, a.id, 4));
    CHECK_OK(st->ops->ack(st, a.id, 0));
    CHECK_EQ_U64(get(st, a.id).peer_acked, 4);
    check_pending(st, a.id, 6, 60);
    /* beyond what was sent */
    uint64_t d = digest(st);
    CHECK_ERR(st->ops->ack(st, a.id, 11), TETHER_EINVAL);
    CHECK_ERR(st->ops->ack(st, a.id, UINT64_MAX), TETHER_EINVAL);
    CHECK_EQ_U64(digest(st), d);
    CHECK_OK(st->ops->ack(st, a.id, 10));
    CHECK_EQ_U64(get(st, a.id).peer_acked, 10);
    check_pending(st, a.id, 0, 0);
    CHECK_EQ_U64(load(st, a.id, 0, 100).n, 0);
    CHECK_EQ_U64(app(st, a.id, "again"), 11);
    /* put may raise peer_acked past stored rows; an older ack prunes them
     * but still does not lower it */
    app(st, a.id, "twelve");
    tether__session_rec r = get(st, a.id);
    r.peer_acked = 12;
    CHECK_OK(st->ops->session_put(st, &r));
    check_pending(st, a.id, 2, 11);
    CHECK_OK(st->ops->ack(st, a.id, 11));
    CHECK_EQ_U64(get(st, a.id).peer_acked, 12);
    check_pending(st, a.id, 1, 6);
    st->ops->close(st);
}

TEST(set_cursor_never_lowers)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(8);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_OK(st->ops->set_cursor(st, a.id, 5));
    CHECK_EQ_U64(get(st, a.id).recv_cursor, 5);
    CHECK_OK(st->ops->set_cursor(st, a.id, 3));
    CHECK_EQ_U64(get(st, a.id).recv_cursor, 5);
    CHECK_OK(st->ops->set_cursor(st, a.id, 9));
    CHECK_EQ_U64(get(st, a.id).recv_cursor, 9);
    CHECK_ERR(st->ops->set_cursor(st, a.id, (uint64_t)INT64_MAX + 1), TETHER_EINVAL);
    CHECK_EQ_U64(get(st, a.id).recv_cursor, 9);
    CHECK_EQ_U64(get(st, a.id).out_last, 0);
    st->ops->close(st);
}

TEST(pending_totals)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(9), b = mkrec(90);
    CHECK_OK(st->ops->session_put(st, &a));
    CHECK_OK(st->ops->session_put(st, &b));
    check_pending(st, a.id, 0, 0);
    static const char text[] = "abcdefghij";
    tether_msg m[10];
    for (int i = 0; i < 10; i++) {
        m[i].data = text;
        m[i].len = (size_t)i + 1;
    }
    uint64_t first;
    CHECK_OK(st->ops->append(st, a.id, m, 10, 0, 0, &first));
    check_pending(st, a.id, 10, 55);
    check_pending(st, b.id, 0, 0);
    CHECK_OK(st->ops->ack(st, a.id, 3));
    check_pending(st, a.id, 7, 49);
    tether_msg empty = {NULL, 0};
    CHECK_OK(st->ops->append(st, a.id, &empty, 1, 0, 0, &first));
    check_pending(st, a.id, 8, 49);
    CHECK_OK(st->ops->ack(st, a.id, 11));
    check_pending(st, a.id, 0, 0);
    st->ops->close(st);
}

TEST(rebase_moves)
{
    tether__store *st = open_store(TETHER__ROLE_SERVER);
    tether__session_rec old = mkrec(20), other = mkrec(40);
    old.recv_cursor = 17;
    CHECK_OK(st->ops->session_put(st, &old));
    CHECK_OK(st->ops->session_put(st, &other));
    char text[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(text, sizeof text, "p%d", i);
        app(st, old.id, text);
    }
    CHECK_OK(st->ops->ack(st, old.id, 3));
    uint64_t d = digest(st);

    tether__session_rec nr = mkrec(30);
    nr.out_last = 5;
    nr.recv_cursor = 2;
    /* wrong arithmetic, overlong skip, same id, id in use: all refused, unchanged */
    CHECK_ERR(st->ops->rebase(st, old.id, &nr, 4), TETHER_EINVAL);
    CHECK_ERR(st->ops->rebase(st, old.id, &nr, 11), TETHER_EINVAL);
    tether__session_rec same = nr;
    memcpy(same.id, old.id, 16);
    CHECK_ERR(st->ops->rebase(st, old.id, &same, 5), TETHER_EINVAL);
    tether__session_rec taken = nr;
    memcpy(taken.id, other.id, 16);
    CHECK_ERR(st->ops->rebase(st, old.id, &taken, 5), TETHER_EINVAL);
    tether__session_rec bad = nr;
    bad.peer_acked = 6;
    CHECK_ERR(st->ops->rebase(st, old.id, &bad, 5), TETHER_EINVAL);
    CHECK_EQ_U64(digest(st), d);

    CHECK_OK(st->ops->rebase(st, old.id, &nr, 5));
    tether__session_rec r;
    CHECK_ERR(st->ops->session_get(st, old.id, &r), TETHER_ENOTFOUND);
    r = get(st, nr.id);
    CHECK(rec_eq(&r, &nr));
    got g = load(st, nr.id, 0, 100);
    CHECK_EQ_U64(g.n, 5);
    for (size_t i = 0; i < 5 && i < g.n; i++) {
        CHECK_EQ_U64(g.seq[i], i + 1);
        snprintf(text, sizeof text, "p%zu", i + 6);
        CHECK_EQ_STR(g.data[i], text);
    }
    check_pending(st, nr.id, 5, 2 + 2 + 2 + 2 + 3);
    idlist *l = list(st);
    CHECK_EQ_U64(l->n, 2);
    CHECK_MEM(l->id[0], nr.id, 16);
    CHECK_MEM(l->id[1], other.id, 16);
    CHECK_EQ_U64(app(st, nr.id, "next"), 6);

    /* skip 0 keeps every row; skip below peer_acked only renumbers */
    tether__session_rec n2 = mkrec(60);
    n2.out_last = 6;
    CHECK_OK(st->ops->rebase(st, nr.id, &n2, 0));
    g = load(st, n2.id, 0, 100);
    CHECK_EQ_U64(g.n, 6);
    CHECK_EQ_U64(g.seq[0], 1);
    CHECK_EQ_STR(g.data[5], "next");
    check_pending(st, n2.id, 6, 15);
    st->ops->close(st);
}

TEST(zero_length_payloads)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(11);
    CHECK_OK(st->ops->session_put(st, &a));
    tether_msg m[3] = {{NULL, 0}, {"xyz", 3}, {"", 0}};
    uint64_t first;
    CHECK_OK(st->ops->append(st, a.id, m, 3, 0, 3, &first));
    CHECK_EQ_U64(first, 1);
    check_pending(st, a.id, 3, 3);
    got g = load(st, a.id, 0, 10);
    CHECK_EQ_U64(g.n, 3);
    CHECK_EQ_U64(g.len[0], 0);
    CHECK_EQ_U64(g.len[1], 3);
    CHECK_EQ_U64(g.len[2], 0);
    CHECK_EQ_STR(g.data[1], "xyz");
    CHECK(!g.null_data);
    CHECK_OK(st->ops->ack(st, a.id, 1));
    check_pending(st, a.id, 2, 3);
    st->ops->close(st);
}

TEST(backlog_streamed)
{
    enum { TOTAL = 20000, CHUNK = 256 };
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__session_rec a = mkrec(12);
    CHECK_OK(st->ops->session_put(st, &a));
    static char buf[500][64];
    tether_msg m[500];
    uint64_t first;
    for (int b = 0; b < TOTAL / 500; b++) {
        for (int i = 0; i < 500; i++) {
            snprintf(buf[i], sizeof buf[i], "message %d", b * 500 + i + 1);
            m[i].data = buf[i];
            m[i].len = strlen(buf[i]);
        }
        CHECK_OK(st->ops->append(st, a.id, m, 500, 0, 0, &first));
    }
    uint64_t from = 0, seen = 0, chunks = 0;
    int ok = 1;
    for (;;) {
        got g = load(st, a.id, from, CHUNK);
        if (g.n == 0) {
            break;
        }
        chunks++;
        ok = ok && g.n <= CHUNK && g.seq[0] == seen + 1;
        char want[64];
        snprintf(want, sizeof want, "message %llu", (unsigned long long)g.seq[0]);
        ok = ok && strcmp(g.data[0], want) == 0;
        seen += g.n;
        from = g.seq[0] + g.n;
    }
    CHECK(ok);
    CHECK_EQ_U64(seen, TOTAL);
    CHECK_EQ_U64(chunks, (TOTAL + CHUNK - 1) / CHUNK);
    CHECK_OK(st->ops->ack(st, a.id, TOTAL / 2));
    check_pending(st, a.id, TOTAL / 2, (TOTAL / 2) * strlen("message 12345"));
    got g = load(st, a.id, 0, 3);
    CHECK_EQ_U64(g.seq[0], TOTAL / 2 + 1);
    st->ops->close(st);
}

TEST(many_sessions)
{
    enum { N = 300 };
    tether__store *st = open_store(TETHER__ROLE_SERVER);
    static tether__session_rec recs[N];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        recs[i] = mkrec(0);
        for (int k = 0; k < 16; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            recs[i].id[k] = (uint8_t)x;
        }
        CHECK_OK(st->ops->session_put(st, &recs[i]));
        for (int k = 0; k <= i % 5; k++) {
            app(st, recs[i].id, "hello");
        }
    }
    idlist *l = list(st);
    CHECK_EQ_U64(l->n, N);
    int sorted = 1;
    for (size_t i = 1; i < l->n && i < 512; i++) {
        sorted = sorted && memcmp(l->id[i - 1], l->id[i], 16) < 0;
    }
    CHECK(sorted);
    for (int i = 0; i < N; i += 3) {
        CHECK_OK(st->ops->session_delete(st, recs[i].id));
    }
    CHECK_EQ_U64(list(st)->n, N - (N + 2) / 3);
    for (int i = 0; i < N; i++) {
        uint64_t c = 0, b = 0;
        int rc = st->ops->pending(st, recs[i].id, &c, &b);
        if (i % 3 == 0) {
            CHECK_EQ_INT(rc, TETHER_ENOTFOUND);
        } else {
            CHECK_EQ_INT(rc, TETHER_OK);
            CHECK_EQ_U64(c, (uint64_t)(i % 5 + 1));
            CHECK_EQ_U64(b, (uint64_t)(i % 5 + 1) * 5);
        }
    }
    st->ops->close(st);
}

/* ---- runner ---- */

static void run_both(const char *name, void (*fn)(void))
{
    static char names[64][96];
    static int used;
    for (size_t i = 0; i < run_n; i++) {
        char *full = names[used++ % 64];
        snprintf(full, sizeof names[0], "%s/%s", run_impls[i].name, name);
        cur = &run_impls[i];
        tt_run(full, fn);
    }
}

/* Fallback verdicts: kept per key, replaced, forgotten, checked; a refused
 * put leaves what was kept. */
TEST(verdicts)
{
    tether__store *st = open_store(TETHER__ROLE_CLIENT);
    tether__verdict v = {1700000000000ull, 2}, r = {0, 0};
    const char *k1 = "ws://a.example:80/x|proxy=", *k2 = "ws://a.example:80/x|proxy=p:3128";

    CHECK_ERR(st->ops->verdict_get(st, k1, &r), TETHER_ENOTFOUND);
    CHECK(strstr(st->ops->errmsg(st), "verdict_get") != NULL);
    CHECK_OK(st->ops->verdict_put(st, k1, NULL)); /* forgetting nothing is fine */
    CHECK_OK(st->ops->verdict_put(st, k1, &v));
    CHECK_ERR(st->ops->verdict_get(st, k2, &r), TETHER_ENOTFOUND); /* the proxy is in the key */
    CHECK_OK(st->ops->verdict_get(st, k1, &r));
    CHECK_EQ_U64(r.until_ms, v.until_ms);
    CHECK_EQ_U64(r.probes_failed, 2);
    tether__verdict w = {(uint64_t)INT64_MAX, UINT32_MAX};
    CHECK_OK(st->ops->verdict_put(st, k2, &w));
    v.until_ms += 5;
    v.probes_failed = 0;
    CHECK_OK(st->ops->verdict_put(st, k1, &v));
    CHECK_OK(st->ops->verdict_get(st, k1, &r));
    CHECK_EQ_U64(r.until_ms, 1700000000005ull);
    CHECK_EQ_U64(r.probes_failed, 0);
    CHECK_OK(st->ops->verdict_get(st, k2, &r));
    CHECK_EQ_U64(r.until_ms, (uint64_t)INT64_MAX);
    CHECK_EQ_U64(r.probes_failed, UINT32_MAX);

    /* out of range: refused, nothing changed */
    tether__verdict bad = {0, 1};
    CHECK_ERR(st->ops->verdict_put(st, k1, &bad), TETHER_EINVAL);
    bad.until_ms = (uint64_t)INT64_MAX + 1;
    CHECK_ERR(st->ops->verdict_put(st, k1, &bad), TETHER_EINVAL);
    CHECK(strstr(st->ops->errmsg(st), "until_ms") != NULL);
    CHECK_ERR(st->ops->verdict_put(st, "", &v), TETHER_EINVAL);
    CHECK_ERR(st->ops->verdict_get(st, NULL, &r), TETHER_EINVAL);
    CHECK_ERR(st->ops->verdict_get(st, k1, NULL), TETHER_EINVAL);
    char longkey[TETHER__VERDICT_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    CHECK_ERR(st->ops->verdict_put(st, longkey, &v), TETHER_EINVAL);
    longkey[TETHER__VERDICT_KEY_MAX] = '\0'; /* exactly the maximum passes */
    CHECK_OK(st->ops->verdict_put(st, longkey, &v));
    CHECK_OK(st->ops->verdict_get(st, longkey, &r));
    CHECK_OK(st->ops->verdict_get(st, k1, &r));
    CHECK_EQ_U64(r.until_ms, 1700000000005ull);

    /* forgetting one leaves the other; sessions are untouched by verdicts */
    CHECK_OK(st->ops->verdict_put(st, k1, NULL));
    CHECK_ERR(st->ops->verdict_get(st, k1, &r), TETHER_ENOTFOUND);
    CHECK_OK(st->ops->verdict_get(st, k2, &r));
    tether__store_info info;
    CHECK_OK(st->ops->inspect(st, 0, &info));
    CHECK_EQ_U64(info.sessions, 0);
    st->ops->close(st);
}

#define BOTH(name) run_both(#name, test_##name)

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "pg") == 0) {
        pgt_start(); /* exits with a clear message when PostgreSQL is missing */
        run_impls = impls_pg;
        run_n = sizeof impls_pg / sizeof impls_pg[0];
    } else if (argc > 1) {
        fprintf(stderr, "usage: store_contract_test [pg]\n");
        return 2;
    }
    BOTH(session_crud);
    BOTH(put_validation);
    BOTH(append_seqs);
    BOTH(append_all_or_nothing);
    BOTH(caps);
    BOTH(load_ranges);
    BOTH(ack_prunes);
    BOTH(set_cursor_never_lowers);
    BOTH(pending_totals);
    BOTH(rebase_moves);
    BOTH(zero_length_payloads);
    BOTH(backlog_streamed);
    BOTH(many_sessions);
    BOTH(verdicts);
    return tt_finish();
}

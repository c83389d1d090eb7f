/*
 * The memory store only (src/store/store_memory.c): allocation failure leaves
 * it unchanged. The contract both stores keep is in store_contract_test.c.
 */
#include "store_fixture.h"

#include "store/store_testhooks.h" /* declares the memory store's test hook too */

/* ---- memory only ---- */

TEST(memory_out_of_memory)
{
    tether__store *st = NULL;
    CHECK_OK(tether__store_memory_open(TETHER__ROLE_SERVER, &st));
    tether__session_rec a = mkrec(23);
    CHECK_OK(st->ops->session_put(st, &a));
    app(st, a.id, "keep");
    static char buf[40][32];
    tether_msg m[40];
    for (int i = 0; i < 40; i++) {
        snprintf(buf[i], sizeof buf[i], "batch %d", i);
        m[i].data = buf[i];
        m[i].len = strlen(buf[i]);
    }
    /* each allocation in turn fails: ENOMEM and nothing changed, until it fits */
    int fails = 0;
    for (long k = 0; k < 100; k++) {
        uint64_t d = digest(st), first = 0;
        tether__store_memory_fail_after(st, k);
        int rc = st->ops->append(st, a.id, m, 40, 0, 0, &first);
        tether__store_memory_fail_after(st, -1);
        if (rc == TETHER_OK) {
            CHECK_EQ_U64(first, 2);
            break;
        }
        fails++;
        CHECK_EQ_INT(rc, TETHER_ENOMEM);
        CHECK_EQ_U64(digest(st), d);
    }
    CHECK(fails >= 40);
    check_pending(st, a.id, 41, 4 + 40 * 7 + 30);
    for (int i = 0; i < 12; i++) {
        tether__session_rec r = mkrec((uint8_t)(100 + i));
        for (long k = 0; k < 10; k++) {
            uint64_t d = digest(st);
            tether__store_memory_fail_after(st, k);
            int rc = st->ops->session_put(st, &r);
            tether__store_memory_fail_after(st, -1);
            if (rc == TETHER_OK) {
                break;
            }
            CHECK_EQ_INT(rc, TETHER_ENOMEM);
            CHECK_EQ_U64(digest(st), d);
        }
    }
    CHECK_EQ_U64(list(st)->n, 13);
    /* ack, set_cursor, rebase and delete need no memory */
    tether__store_memory_fail_after(st, 0);
    CHECK_OK(st->ops->ack(st, a.id, 38));
    CHECK_OK(st->ops->set_cursor(st, a.id, 4));
    tether__session_rec nr = mkrec(200);
    nr.out_last = 41 - 38;
    CHECK_OK(st->ops->rebase(st, a.id, &nr, 38));
    CHECK_OK(st->ops->session_delete(st, nr.id));
    tether__store_memory_fail_after(st, -1);
    st->ops->close(st);
}

int main(void)
{
    RUN(memory_out_of_memory);
    return tt_finish();
}

/*
 * The WAL pre-sync of an exclusive store at NORMAL (the client's file).
 *
 * At synchronous=NORMAL a commit writes its WAL frames without syncing them;
 * the checkpoint that copies them into the database syncs the WAL first.
 * With locking_mode=EXCLUSIVE there is no second connection and the writer
 * checkpoints itself from its WAL hook once the WAL holds hard_pages (see
 * the top of store_sqlite.c), inside a commit, so whatever called the store
 * waits for that sync. Measured here (strace -T, 1000-page WALs of 64-byte
 * appends): the WAL's fdatasync was 13-15 ms of each checkpoint, the
 * database's 0.7 ms and the WAL header's 0.3 ms: the checkpoint's cost is
 * the write-back of some 4 MB of WAL frames that accumulated unsynced.
 *
 * So a thread of the store syncs the WAL file through a descriptor of its
 * own each time the WAL grew by hard_pages / CKPT_FLUSH_DIV since the last
 * such sync, while the writer goes on; the checkpoint's own sync then finds
 * at most about that many pages still to write. It uses no SQLite lock and
 * no connection: fdatasync() of the same file from another descriptor
 * writes back the same pages. It only adds syncs (SQLite's own stay where
 * they are), so what a commit or a checkpoint guarantees is unchanged.
 * OFF never syncs and FULL syncs every commit: neither starts it.
 *
 * The -wal file is opened for each sync and closed after it, so the thread
 * never holds a descriptor of a file SQLite may remove at close. A failed
 * sync (the file missing, an I/O error) is counted with its message and
 * otherwise ignored: the next checkpoint syncs everything anyway and
 * reports its own failure to the writer.
 */
#include "store_sqlite_int.h"
#include "common/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static void *fl_main(void *arg)
{
    ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (c->flush_due == 0) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        int err = 0;
        int fd = open(c->wal_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            err = errno;
        } else {
            if (fdatasync(fd) != 0) {
                err = errno;
            }
            close(fd);
        }
        pthread_mutex_lock(&c->mu);
        c->flush_due = 0;
        if (err) {
            c->flush_errors++;
            snprintf(c->flush_err, sizeof c->flush_err, "WAL pre-sync of %s failed: %s",
                     c->wal_path, strerror(err));
        } else {
            c->flushes++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void tether__sq_flush_grew(ckpt *c, int pages)
{
    pthread_mutex_lock(&c->mu);
    if (pages < c->synced_pages) {
        c->synced_pages = 0; /* a checkpoint synced it all and the WAL started over */
    }
    unsigned every = c->hard_pages / CKPT_FLUSH_DIV ? c->hard_pages / CKPT_FLUSH_DIV : 1;
    if (c->flush_pages) {
        every = c->flush_pages;
    }
    if (c->wal_path && c->flush_due == 0 && (unsigned)(pages - c->synced_pages) >= every) {
        c->flush_due = pages;
        c->synced_pages = pages;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

int tether__sq_flush_start(sqstore *s, const char *op)
{
    size_t n = strlen(s->path) + sizeof "-wal";
    s->ck.wal_path = tether__malloc(n);
    if (!s->ck.wal_path) {
        return tether__sq_fail(s, TETHER_ENOMEM, "%s: out of memory", op);
    }
    snprintf(s->ck.wal_path, n, "%s-wal", s->path);
    if (pthread_create(&s->ck.thread, NULL, fl_main, &s->ck) != 0) {
        return tether__sq_fail(s, TETHER_ESYS, "%s: cannot start the WAL pre-sync thread", op);
    }
    s->ck.started = 1;
    return TETHER_OK;
}

/* ---- test hooks (store_testhooks.h) ---- */

static ckpt *flusher_of(tether__store *st)
{
    if (!st || st->ops != &tether__sqlite_ops) {
        return NULL;
    }
    sqstore *s = (sqstore *)st;
    return s->ck.wal_path && s->ck.started ? &s->ck : NULL;
}

int tether__store_sqlite_flushes(tether__store *st, unsigned long *done, unsigned long *failed,
                                 char *err, size_t errlen)
{
    ckpt *c = flusher_of(st);
    if (!c) {
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    /* wait for a sync under way, so the counts are settled */
    while (c->flush_due != 0 && !c->stop) {
        pthread_mutex_unlock(&c->mu);
        usleep(1000);
        pthread_mutex_lock(&c->mu);
    }
    *done = c->flushes;
    *failed = c->flush_errors;
    if (err && errlen) {
        snprintf(err, errlen, "%s", c->flush_err);
    }
    pthread_mutex_unlock(&c->mu);
    return 1;
}

void tether__store_sqlite_set_flush(tether__store *st, unsigned pages, const char *wal_path)
{
    ckpt *c = flusher_of(st);
    if (!c) {
        return;
    }
    char *dup = wal_path ? tether__strdup(wal_path) : NULL;
    pthread_mutex_lock(&c->mu);
    c->flush_pages = pages;
    if (dup) {
        /* the thread reads wal_path outside mu: swap only while it is idle */
        while (c->flush_due != 0) {
            pthread_mutex_unlock(&c->mu);
            usleep(1000);
            pthread_mutex_lock(&c->mu);
        }
        tether__free(c->wal_path);
        c->wal_path = dup;
    }
    pthread_mutex_unlock(&c->mu);
}

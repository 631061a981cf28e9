/*
 * check_ofile.c — the daemon's table of files being read (src/fuse/ofile.c): a record is found by
 * inode while it is in use and after, idle records are bounded in number and in stream map entries
 * (the oldest go first), and a record in use is never freed. A volume's records are found by device and
 * inode, and a plain file's descriptor is closed with its record.
 */
#include "config.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/ofile.h"
#include "testutil.h"

/* A stream map of n entries (contents do not matter to the table). */
static streammap *map_of(size_t n)
{
    streammap *m = xcalloc(1, sizeof(*m));
    m->n = n;
    m->e = xcalloc(n ? n : 1, sizeof(*m->e));
    m->start = xcalloc(n ? n : 1, sizeof(*m->start));
    return m;
}

START_TEST(test_get_add_put)
{
    ofile_table t;
    ofile_table_init(&t);
    ck_assert_ptr_null(ofile_get(&t, 7));
    ofile *a = ofile_add(&t, 7, 1, 42, map_of(3));
    ck_assert_uint_eq(a->refs, 1);
    ck_assert_uint_eq(a->snap, 1);
    ck_assert_uint_eq(a->entry, 42);
    /* A second reader of the same inode shares the record. */
    ck_assert_ptr_eq(ofile_get(&t, 7), a);
    ck_assert_uint_eq(a->refs, 2);
    ofile_put(&t, a);
    ofile_put(&t, a);
    ck_assert_uint_eq(t.nidle, 1);
    ck_assert_uint_eq(t.idle_entries, 3);
    /* Idle, it is still found (the next read of the file does not load its map again). */
    ck_assert_ptr_eq(ofile_get(&t, 7), a);
    ck_assert_uint_eq(t.nidle, 0);
    ck_assert_uint_eq(t.idle_entries, 0);
    ofile_put(&t, a);
    /* Inodes that share a bucket are told apart. */
    ofile *b = ofile_add(&t, 7 + ((uint64_t)1 << 40), 0, 1, map_of(1));
    ck_assert_ptr_eq(ofile_get(&t, 7), a);
    ck_assert_ptr_eq(ofile_get(&t, 7 + ((uint64_t)1 << 40)), b);
    ofile_put(&t, a);
    ofile_put(&t, b);
    ofile_put(&t, b);
    ofile_table_free(&t);
}
END_TEST

START_TEST(test_idle_count_bound)
{
    ofile_table t;
    ofile_table_init(&t);
    ofile *busy = ofile_add(&t, 1000, 0, 0, map_of(1)); /* in use throughout */
    for (uint64_t i = 0; i < OFILE_IDLE_MAX + 10; i++)
        ofile_put(&t, ofile_add(&t, i, 0, i, map_of(1)));
    ck_assert_uint_eq(t.nidle, OFILE_IDLE_MAX);
    /* The oldest ten went; the newest OFILE_IDLE_MAX are still there. */
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_ptr_null(ofile_get(&t, i));
    for (uint64_t i = 10; i < OFILE_IDLE_MAX + 10; i++) {
        ofile *of = ofile_get(&t, i);
        ck_assert_ptr_nonnull(of);
        ck_assert_uint_eq(of->entry, i);
        ofile_put(&t, of);
    }
    /* The record in use was never a candidate. */
    ck_assert_ptr_eq(ofile_get(&t, 1000), busy);
    ck_assert_uint_eq(busy->refs, 2);
    ofile_put(&t, busy);
    ofile_put(&t, busy);
    ofile_table_free(&t);
}
END_TEST

START_TEST(test_idle_entries_bound)
{
    ofile_table t;
    ofile_table_init(&t);
    size_t big = OFILE_IDLE_ENTRIES / 2 + 1;
    ofile_put(&t, ofile_add(&t, 1, 0, 1, map_of(big)));
    ofile_put(&t, ofile_add(&t, 2, 0, 2, map_of(big))); /* the two together are over the bound */
    ck_assert_ptr_null(ofile_get(&t, 1));
    ck_assert_uint_eq(t.idle_entries, big);
    /* One record larger than the bound on its own is kept while it is the only idle one. */
    ofile *huge = ofile_add(&t, 3, 0, 3, map_of(OFILE_IDLE_ENTRIES * 2));
    ofile_put(&t, huge);
    ck_assert_ptr_null(ofile_get(&t, 2));
    ck_assert_ptr_eq(ofile_get(&t, 3), huge);
    ofile_put(&t, huge);
    ofile_table_free(&t);
}
END_TEST

/* The volume mount's use (volume.c): records made on the pool, inserted later by device and inode. */
START_TEST(test_volume_records)
{
    ofile_table t;
    ofile_table_init(&t);
    ofile *a = ofile_new(1, 7, map_of(2));
    ck_assert_int_eq(a->fd, -1);
    ck_assert_uint_eq(a->refs, 1);
    ck_assert_ptr_null(ofile_find(&t, 1, 7)); /* made, not yet inserted */
    ofile_insert(&t, a);
    ck_assert_ptr_eq(ofile_find(&t, 1, 7), a);
    for (uint64_t dev = 0; dev < 4096; dev++) /* the same inode number on another device (some share
                                                * a's bucket) */
        ck_assert_ptr_null(dev == 1 ? NULL : ofile_find(&t, dev, 7));
    ck_assert_ptr_null(ofile_get(&t, 7));     /* ... or in a store's mount (device 0) */
    ofile_put(&t, a);
    ofile_put(&t, a);
    ck_assert_uint_eq(t.idle_entries, 2);

    /* A plain file: no map, a descriptor that goes with the record. */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ofile *p = ofile_new(2, 7, NULL);
    p->fd = fds[0];
    ofile_insert(&t, p);
    ofile_put(&t, p);
    ck_assert_uint_eq(t.nidle, 2);
    ck_assert_uint_eq(t.idle_entries, 2); /* counts no entries */
    for (uint64_t i = 100; i < 100 + OFILE_IDLE_MAX; i++)
        ofile_put(&t, ofile_add(&t, i, 0, i, map_of(1)));
    ck_assert_ptr_null(ofile_find(&t, 2, 7)); /* evicted ... */
    ck_assert_int_eq(fcntl(fds[0], F_GETFD), -1); /* ... and its descriptor closed */
    close(fds[1]);

    /* A record made but not needed (another job inserted the file first) is discarded. */
    ofile *dup = ofile_new(3, 9, map_of(1));
    ofile_discard(dup);
    ofile_table_free(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ofile");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_get_add_put);
    tcase_add_test(tc, test_idle_count_bound);
    tcase_add_test(tc, test_idle_entries_bound);
    tcase_add_test(tc, test_volume_records);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

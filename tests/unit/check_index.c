/*
 * check_index.c — the SQLite chunk index: creation and reopening, lookups, INSERT OR IGNORE semantics,
 * transactions, the staleness checks of index_open (another store, garbage, an empty file), read-only
 * handles, index_matches, index_clear, index_stats, a reader beside a writer (WAL), and a file at rest
 * that read-only handles open without creating anything beside it.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rehydrate/rehydrate.h>
#include <sqlite3.h>

#include "common/util.h"
#include "index/index.h"
#include "testutil.h"

static const uint8_t uuid_a[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                    0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01 };
static const uint8_t uuid_b[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                    0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x02 };

static char *dir;
static char *db_path;

static void setup(void)
{
    dir = test_mkdtemp();
    db_path = xasprintf("%s/index.db", dir);
}

static void teardown(void)
{
    test_rmtree(dir);
    free(db_path);
    free(dir);
}

static void digest_of(unsigned long long n, uint8_t d[HASH_LEN]) { test_fill_random(d, HASH_LEN, n); }

static index_loc loc_of(unsigned long long n)
{
    return (index_loc){ .container = (uint32_t)(n % 7),
                        .offset = 64 + n * 1000 + (1ull << 33), /* above 32 bits on purpose */
                        .stored_len = (uint32_t)(1000 + n),
                        .raw_len = (uint32_t)(65536 + n),
                        .codec = (uint8_t)(n % 2) };
}

static void assert_loc_eq(const index_loc *a, const index_loc *b)
{
    ck_assert_uint_eq(a->container, b->container);
    ck_assert_uint_eq(a->offset, b->offset);
    ck_assert_uint_eq(a->stored_len, b->stored_len);
    ck_assert_uint_eq(a->raw_len, b->raw_len);
    ck_assert_uint_eq(a->codec, b->codec);
}

static index_t *open_ok(const uint8_t *uuid, int flags)
{
    index_t *ix = NULL;
    int r = index_open(db_path, uuid, flags, &ix);
    ck_assert_msg(r == 0, "index_open: %s", rh_strerror(r));
    ck_assert_ptr_nonnull(ix);
    return ix;
}

/* Creates an index holding chunks 0..n-1, streams 1000..1000+n-1 and containers (id i, kind 1). */
static void make_index(unsigned n)
{
    index_t *ix = open_ok(uuid_a, INDEX_CREATE);
    ck_assert_int_eq(index_begin(ix), 0);
    for (unsigned i = 0; i < n; i++) {
        uint8_t d[HASH_LEN];
        index_loc l = loc_of(i);
        digest_of(i, d);
        ck_assert_int_eq(index_add_chunk(ix, d, &l), 0);
        digest_of(1000 + i, d);
        ck_assert_int_eq(index_add_stream(ix, d, &l), 0);
        ck_assert_int_eq(index_add_container(ix, &(index_container){ i, 1, 4096 + i }), 0);
    }
    ck_assert_int_eq(index_commit(ix), 0);
    index_close(ix);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ---- open, create, reopen ---- */

START_TEST(test_create_reopen_keeps_rows)
{
    make_index(10);
    index_t *ix = open_ok(uuid_a, 0);
    for (unsigned i = 0; i < 10; i++) {
        uint8_t d[HASH_LEN];
        index_loc got, want = loc_of(i);
        digest_of(i, d);
        ck_assert_int_eq(index_find_chunk(ix, d, &got), 0);
        assert_loc_eq(&got, &want);
        digest_of(1000 + i, d);
        ck_assert_int_eq(index_find_stream(ix, d, &got), 0);
        assert_loc_eq(&got, &want);
    }
    index_close(ix);
    /* Reopening with INDEX_CREATE must not recreate (and so empty) an existing index. */
    ix = open_ok(uuid_a, INDEX_CREATE);
    uint64_t c = 0, s = 0, k = 0;
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 10);
    ck_assert_uint_eq(s, 10);
    ck_assert_uint_eq(k, 10);
    index_close(ix);
}
END_TEST

START_TEST(test_open_missing)
{
    index_t *ix = (index_t *)0x1;
    ck_assert_int_eq(index_open(db_path, uuid_a, 0, &ix), -ENOENT);
    ck_assert_int_eq(index_open(db_path, uuid_a, INDEX_READONLY, &ix), -ENOENT);
    ck_assert_ptr_eq(ix, (index_t *)0x1); /* untouched on failure */
    ck_assert_int_eq(access(db_path, F_OK), -1);
    ck_assert_int_eq(index_open(db_path, uuid_a, 0x40, &ix), -EINVAL);
    ck_assert_ptr_eq(ix, (index_t *)0x1);
    index_close(NULL);
}
END_TEST

START_TEST(test_readonly_create)
{
    /* READONLY | CREATE: creates a missing index, then refuses writes like a read-only handle. */
    index_t *ix = open_ok(uuid_a, INDEX_READONLY | INDEX_CREATE);
    ck_assert_int_eq(access(db_path, F_OK), 0);
    uint8_t d[HASH_LEN];
    index_loc l = loc_of(1), got;
    digest_of(1, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    ck_assert_int_eq(index_add_chunk(ix, d, &l), -EROFS);
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 1, 1, 1 }), -EROFS);
    ck_assert_int_eq(index_rollback(ix), 0);
    index_close(ix);
    /* It is a real index of this store: it opens for writing, and not for another store. */
    ck_assert_int_eq(index_open(db_path, uuid_b, INDEX_READONLY | INDEX_CREATE, &ix), RH_ESTALEINDEX);
    make_index(2);
    ix = open_ok(uuid_a, INDEX_READONLY | INDEX_CREATE);
    uint64_t c = 0;
    ck_assert_int_eq(index_stats(ix, &c, NULL, NULL), 0);
    ck_assert_uint_eq(c, 2);
    index_close(ix);
}
END_TEST

START_TEST(test_uuid_mismatch_is_stale)
{
    make_index(3);
    index_t *ix = (index_t *)0x1;
    ck_assert_int_eq(index_open(db_path, uuid_b, 0, &ix), RH_ESTALEINDEX);
    ck_assert_int_eq(index_open(db_path, uuid_b, INDEX_CREATE, &ix), RH_ESTALEINDEX);
    ck_assert_int_eq(index_open(db_path, uuid_b, INDEX_READONLY, &ix), RH_ESTALEINDEX);
    ck_assert_ptr_eq(ix, (index_t *)0x1);
    /* The right uuid still opens it: the failed opens changed nothing. */
    ix = open_ok(uuid_a, INDEX_READONLY);
    uint64_t c = 0;
    ck_assert_int_eq(index_stats(ix, &c, NULL, NULL), 0);
    ck_assert_uint_eq(c, 3);
    index_close(ix);
}
END_TEST

START_TEST(test_garbage_is_stale)
{
    static const size_t sizes[] = { 1, 50, 100, 4096, 65536 };
    uint8_t *junk = xmalloc(65536);
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        test_fill_random(junk, sizes[i], 77 + i);
        write_file(db_path, junk, sizes[i]);
        index_t *ix = NULL;
        ck_assert_int_eq(index_open(db_path, uuid_a, 0, &ix), RH_ESTALEINDEX);
        ck_assert_int_eq(index_open(db_path, uuid_a, INDEX_CREATE, &ix), RH_ESTALEINDEX);
        ck_assert_int_eq(index_open(db_path, uuid_a, INDEX_READONLY, &ix), RH_ESTALEINDEX);
        ck_assert_ptr_null(ix);
    }
    /* SQLite's own magic followed by garbage: still not a usable index. */
    test_fill_random(junk, 65536, 5);
    memcpy(junk, "SQLite format 3", 16);
    write_file(db_path, junk, 65536);
    index_t *ix = NULL;
    ck_assert_int_eq(index_open(db_path, uuid_a, INDEX_CREATE, &ix), RH_ESTALEINDEX);
    ck_assert_ptr_null(ix);
    free(junk);
}
END_TEST

START_TEST(test_empty_file)
{
    /* SQLite takes an empty file for an empty database: stale without INDEX_CREATE, created with it. */
    write_file(db_path, "", 0);
    index_t *ix = NULL;
    ck_assert_int_eq(index_open(db_path, uuid_a, 0, &ix), RH_ESTALEINDEX);
    ck_assert_int_eq(index_open(db_path, uuid_a, INDEX_READONLY, &ix), RH_ESTALEINDEX);
    ix = open_ok(uuid_a, INDEX_CREATE);
    index_close(ix);
    ix = open_ok(uuid_a, INDEX_READONLY);
    index_close(ix);
}
END_TEST

/* ---- lookups and inserts ---- */

START_TEST(test_lookup_hit_miss)
{
    make_index(5);
    index_t *ix = open_ok(uuid_a, INDEX_READONLY);
    uint8_t d[HASH_LEN];
    index_loc got = { .container = 0xdead }, want = loc_of(4);
    digest_of(4, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), 0);
    assert_loc_eq(&got, &want);
    /* A chunk digest is not a stream digest, and an unknown digest is missing; *ret stays untouched. */
    got.container = 0xdead;
    ck_assert_int_eq(index_find_stream(ix, d, &got), RH_ENOCHUNK);
    digest_of(5, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    memset(d, 0, sizeof(d));
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    ck_assert_uint_eq(got.container, 0xdead);
    digest_of(1004, d);
    ck_assert_int_eq(index_find_stream(ix, d, &got), 0);
    assert_loc_eq(&got, &want);
    index_close(ix);
}
END_TEST

START_TEST(test_oversized_value_is_damage)
{
    /* A damaged index can hold a value of any size where ours are a few bytes; the handle never
     * materializes one past INDEX_VALUE_MAX (SQLITE_LIMIT_LENGTH), and the row counts as damage. */
    make_index(3);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "UPDATE chunks SET member = zeroblob(100000)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    index_t *ix = open_ok(uuid_a, INDEX_READONLY);
    uint8_t d[HASH_LEN];
    index_loc got;
    digest_of(1, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ECORRUPT);
    index_close(ix);
}
END_TEST

START_TEST(test_duplicate_keeps_first)
{
    index_t *ix = open_ok(uuid_a, INDEX_CREATE);
    uint8_t d[HASH_LEN];
    digest_of(42, d);
    index_loc first = loc_of(1), second = loc_of(2), got;
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_add_chunk(ix, d, &first), 0);
    ck_assert_int_eq(index_add_chunk(ix, d, &second), 0);
    ck_assert_int_eq(index_add_stream(ix, d, &second), 0);
    ck_assert_int_eq(index_add_stream(ix, d, &first), 0);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 3, 1, 100 }), 0);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 3, 1, 200 }), 0);
    ck_assert_int_eq(index_commit(ix), 0);
    /* Also across transactions. */
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_add_chunk(ix, d, &second), 0);
    ck_assert_int_eq(index_commit(ix), 0);

    ck_assert_int_eq(index_find_chunk(ix, d, &got), 0);
    assert_loc_eq(&got, &first);
    ck_assert_int_eq(index_find_stream(ix, d, &got), 0);
    assert_loc_eq(&got, &second);
    uint64_t c, s, k;
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 1);
    ck_assert_uint_eq(s, 1);
    ck_assert_uint_eq(k, 1);
    bool m = false;
    ck_assert_int_eq(index_matches(ix, &(index_container){ 3, 1, 100 }, 1, &m), 0);
    ck_assert(m);
    index_close(ix);
}
END_TEST

START_TEST(test_rollback_discards)
{
    make_index(2);
    index_t *ix = open_ok(uuid_a, 0);
    uint8_t d[HASH_LEN];
    index_loc l = loc_of(9), got;
    digest_of(9, d);
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_begin(ix), -EINVAL); /* no nesting */
    ck_assert_int_eq(index_add_chunk(ix, d, &l), 0);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 9, 2, 1 }), 0);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), 0); /* visible inside the transaction */
    ck_assert_int_eq(index_clear(ix), 0);
    ck_assert_int_eq(index_rollback(ix), 0);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    uint64_t c, s, k;
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 2); /* the clear was rolled back too */
    ck_assert_uint_eq(k, 2);
    /* Nothing to commit; nothing to roll back is fine for an unwinding caller. */
    ck_assert_int_eq(index_commit(ix), -EINVAL);
    ck_assert_int_eq(index_rollback(ix), 0);
    index_close(ix);

    /* A transaction left open at close is rolled back. */
    ix = open_ok(uuid_a, 0);
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_add_chunk(ix, d, &l), 0);
    index_close(ix);
    ix = open_ok(uuid_a, INDEX_READONLY);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    index_close(ix);
}
END_TEST

START_TEST(test_readonly_cannot_write)
{
    make_index(2);
    index_t *ix = open_ok(uuid_a, INDEX_READONLY);
    uint8_t d[HASH_LEN];
    index_loc l = loc_of(7), got;
    digest_of(7, d);
    ck_assert_int_lt(index_add_chunk(ix, d, &l), 0); /* outside a transaction */
    ck_assert_int_eq(index_begin(ix), 0);           /* a read transaction */
    ck_assert_int_lt(index_add_chunk(ix, d, &l), 0);
    ck_assert_int_lt(index_add_stream(ix, d, &l), 0);
    ck_assert_int_lt(index_add_container(ix, &(index_container){ 7, 1, 1 }), 0);
    ck_assert_int_lt(index_clear(ix), 0);
    ck_assert_int_eq(index_commit(ix), 0);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    uint64_t c, s, k;
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 2);
    ck_assert_uint_eq(k, 2);
    index_close(ix);
}
END_TEST

START_TEST(test_bad_arguments)
{
    index_t *ix = open_ok(uuid_a, INDEX_CREATE);
    uint8_t d[HASH_LEN] = { 0 };
    index_loc l = loc_of(1);
    l.offset = UINT64_MAX;
    ck_assert_int_eq(index_add_chunk(ix, d, &l), -EINVAL);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 1, 1, UINT64_MAX }), -EINVAL);
    ck_assert_int_eq(index_find_chunk(ix, d, NULL), -EINVAL);
    bool m;
    ck_assert_int_eq(index_matches(ix, NULL, 1, &m), -EINVAL);
    index_close(ix);
}
END_TEST

/* ---- staleness, clear, counts ---- */

/* index_each: every row once, in digest (memcmp) order, with its location. */
struct each_state {
    unsigned n;
    uint8_t last[HASH_LEN];
    bool seen[16];
};

static int each_row(void *ud, const uint8_t *digest, const index_loc *loc)
{
    struct each_state *e = ud;
    ck_assert_ptr_nonnull(digest);
    ck_assert_ptr_nonnull(loc);
    if (e->n)
        ck_assert_int_lt(memcmp(e->last, digest, HASH_LEN), 0);
    memcpy(e->last, digest, HASH_LEN);
    bool found = false;
    for (unsigned i = 0; i < 16 && !found; i++) {
        uint8_t d[HASH_LEN];
        digest_of(i, d);
        if (memcmp(d, digest, HASH_LEN) == 0) {
            index_loc want = loc_of(i);
            assert_loc_eq(loc, &want);
            ck_assert(!e->seen[i]);
            e->seen[i] = found = true;
        }
    }
    ck_assert_msg(found, "a row that was never added");
    e->n++;
    return 0;
}

static int stop_at_two(void *ud, const uint8_t *digest, const index_loc *loc)
{
    (void)digest, (void)loc;
    return ++*(unsigned *)ud == 2 ? -EINTR : 0;
}

START_TEST(test_each_in_digest_order)
{
    make_index(16);
    index_t *ix = open_ok(uuid_a, INDEX_READONLY);
    struct each_state e = { 0 };
    ck_assert_int_eq(index_each(ix, false, each_row, &e), 0);
    ck_assert_uint_eq(e.n, 16);
    unsigned calls = 0;
    ck_assert_int_eq(index_each(ix, true, stop_at_two, &calls), -EINTR);
    ck_assert_uint_eq(calls, 2);
    char *report = (char *)"unset";
    ck_assert_int_eq(index_integrity(ix, 10, &report), 0);
    ck_assert_ptr_null(report);
    index_close(ix);
}
END_TEST

/* Flipped bytes in the chunk pages are what integrity_check reports, and what a walk of the rows meets;
 * the file still opens, as it did for readers that then failed intact files. */
START_TEST(test_integrity_finds_flips)
{
    make_index(600);
    struct stat st;
    ck_assert_int_eq(stat(db_path, &st), 0);
    int fd = open(db_path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    /* Past the first pages (schema, meta): the middle of the file is the chunks and streams trees. */
    for (off_t at = st.st_size / 3; at < st.st_size * 2 / 3; at += 509) {
        uint8_t b;
        ck_assert_int_eq(pread(fd, &b, 1, at), 1);
        b ^= 0x5a;
        ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
    }
    close(fd);
    index_t *ix = open_ok(uuid_a, INDEX_READONLY);
    char *report = NULL;
    ck_assert_int_eq(index_integrity(ix, 10, &report), 0);
    ck_assert_ptr_nonnull(report);
    ck_assert_ptr_null(strchr(report, '\n'));
    free(report);
    index_close(ix);
}
END_TEST

/* The newest container of a kind: what a reader's quick staleness check starts from (store.c). */
START_TEST(test_newest_container)
{
    index_t *ix = open_ok(uuid_a, INDEX_CREATE);
    index_container c = { 0 };
    bool found = true;
    ck_assert_int_eq(index_newest_container(ix, 1, &c, &found), 0);
    ck_assert(!found);
    const index_container set[] = { { 3, 1, 100 }, { 12, 1, 1200 }, { 7, 1, 700 }, { 1, 2, 10 } };
    ck_assert_int_eq(index_begin(ix), 0);
    for (size_t i = 0; i < ARRAY_SIZE(set); i++)
        ck_assert_int_eq(index_add_container(ix, &set[i]), 0);
    ck_assert_int_eq(index_commit(ix), 0);
    ck_assert_int_eq(index_newest_container(ix, 1, &c, &found), 0);
    ck_assert(found);
    ck_assert_uint_eq(c.id, 12);
    ck_assert_uint_eq(c.kind, 1);
    ck_assert_uint_eq(c.size, 1200);
    ck_assert_int_eq(index_newest_container(ix, 2, &c, &found), 0);
    ck_assert(found && c.id == 1 && c.size == 10);
    ck_assert_int_eq(index_newest_container(ix, 3, &c, &found), 0);
    ck_assert(!found);
    index_close(ix);
}
END_TEST

START_TEST(test_matches)
{
    index_t *ix = open_ok(uuid_a, INDEX_CREATE);
    bool m = false;
    ck_assert_int_eq(index_matches(ix, NULL, 0, &m), 0);
    ck_assert(m); /* both empty */

    const index_container set[] = { { 1, 1, 100 }, { 2, 1, 200 }, { 1, 2, 300 }, { 7, 2, 70 } };
    ck_assert_int_eq(index_begin(ix), 0);
    for (size_t i = 0; i < ARRAY_SIZE(set); i++)
        ck_assert_int_eq(index_add_container(ix, &set[i]), 0);
    ck_assert_int_eq(index_commit(ix), 0);

    index_container have[5];
    memcpy(have, set, sizeof(set));
    ck_assert_int_eq(index_matches(ix, have, 4, &m), 0);
    ck_assert(m);
    /* Any order. */
    const index_container shuffled[] = { set[3], set[1], set[0], set[2] };
    m = false;
    ck_assert_int_eq(index_matches(ix, shuffled, 4, &m), 0);
    ck_assert(m);
    /* A container missing from `have`. */
    ck_assert_int_eq(index_matches(ix, have, 3, &m), 0);
    ck_assert(!m);
    ck_assert_int_eq(index_matches(ix, NULL, 0, &m), 0);
    ck_assert(!m);
    /* An extra container in `have`, at the end and in the middle of the order. */
    have[4] = (index_container){ 8, 2, 80 };
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 5, &m), 0);
    ck_assert(!m);
    have[4] = (index_container){ 3, 1, 80 };
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 5, &m), 0);
    ck_assert(!m);
    /* A different size, and the same id with another kind. */
    memcpy(have, set, sizeof(set));
    have[2].size = 301;
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 4, &m), 0);
    ck_assert(!m);
    memcpy(have, set, sizeof(set));
    have[3].kind = 1;
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 4, &m), 0);
    ck_assert(!m);
    /* Repeats count once, as in a set, unless they disagree on the size. */
    memcpy(have, set, sizeof(set));
    have[4] = set[1];
    m = false;
    ck_assert_int_eq(index_matches(ix, have, 5, &m), 0);
    ck_assert(m);
    have[4].size = 201;
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 5, &m), 0);
    ck_assert(!m);
    /* Same count as the table but a repeat hides a missing one. */
    have[4] = set[0];
    have[3] = set[0];
    m = true;
    ck_assert_int_eq(index_matches(ix, have, 4, &m), 0);
    ck_assert(!m);
    index_close(ix);
}
END_TEST

START_TEST(test_clear_and_stats)
{
    make_index(25);
    index_t *ix = open_ok(uuid_a, 0);
    uint64_t c = 0, s = 0, k = 0;
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 25);
    ck_assert_uint_eq(s, 25);
    ck_assert_uint_eq(k, 25);

    /* A rebuild: clear and refill in one transaction. */
    ck_assert_int_eq(index_begin(ix), 0);
    ck_assert_int_eq(index_clear(ix), 0);
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0); /* inside the caller's transaction */
    ck_assert_uint_eq(c + s + k, 0);
    uint8_t d[HASH_LEN];
    index_loc l = loc_of(3), got;
    digest_of(500, d);
    ck_assert_int_eq(index_add_chunk(ix, d, &l), 0);
    ck_assert_int_eq(index_add_container(ix, &(index_container){ 0, 1, 1 }), 0);
    ck_assert_int_eq(index_commit(ix), 0);
    index_close(ix);

    ix = open_ok(uuid_a, INDEX_READONLY);
    ck_assert_int_eq(index_stats(ix, &c, &s, &k), 0);
    ck_assert_uint_eq(c, 1);
    ck_assert_uint_eq(s, 0);
    ck_assert_uint_eq(k, 1);
    digest_of(0, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), RH_ENOCHUNK);
    digest_of(500, d);
    ck_assert_int_eq(index_find_chunk(ix, d, &got), 0);
    assert_loc_eq(&got, &l);
    /* The schema and meta survive a clear: the store's uuid still opens it, another does not. */
    index_close(ix);
    ck_assert_int_eq(index_open(db_path, uuid_b, 0, &ix), RH_ESTALEINDEX);
}
END_TEST

/* ---- at rest: one file, and read-only handles create nothing ---- */

/* The names in the test directory other than index.db, joined by spaces ("" when there are none). */
static char *others_in_dir(void)
{
    char *list = xstrdup("");
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, "index.db") == 0)
            continue;
        char *l = xasprintf("%s%s ", list, e->d_name);
        free(list);
        list = l;
    }
    closedir(d);
    return list;
}

START_TEST(test_readers_create_nothing)
{
    /* A writer uses WAL while it is open, and leaves one file behind when it closes. */
    make_index(0);
    index_t *w = open_ok(uuid_a, 0);
    ck_assert_int_eq(index_begin(w), 0);
    for (unsigned i = 0; i < 500; i++) {
        uint8_t d[HASH_LEN];
        index_loc l = loc_of(i);
        digest_of(i, d);
        ck_assert_int_eq(index_add_chunk(w, d, &l), 0);
    }
    ck_assert_int_eq(index_commit(w), 0);
    char *during = others_in_dir();
    ck_assert_msg(strstr(during, "index.db-wal "), "an open writer uses WAL: %s", during);
    free(during);
    index_close(w);
    char *after = others_in_dir();
    ck_assert_msg(strcmp(after, "") == 0, "a closed writer left: %s", after);
    free(after);

    /* Lookup handles, pooled or not, inside and outside a read transaction, change nothing. */
    struct stat before, now;
    ck_assert_int_eq(stat(db_path, &before), 0);
    index_t *r = open_ok(uuid_a, INDEX_READONLY);
    index_t *p = open_ok(uuid_a, INDEX_READONLY | INDEX_POOLED);
    uint8_t d[HASH_LEN];
    index_loc got, want = loc_of(7);
    digest_of(7, d);
    ck_assert_int_eq(index_find_chunk(r, d, &got), 0);
    assert_loc_eq(&got, &want);
    ck_assert_int_eq(index_begin(p), 0);
    ck_assert_int_eq(index_find_chunk(p, d, &got), 0);
    ck_assert_int_eq(index_commit(p), 0);
    char *open_now = others_in_dir();
    ck_assert_msg(strcmp(open_now, "") == 0, "read-only handles created: %s", open_now);
    free(open_now);
    index_close(p);
    index_close(r);
    ck_assert_int_eq(stat(db_path, &now), 0);
    ck_assert_int_eq(now.st_size, before.st_size);
    ck_assert_int_eq(now.st_mtim.tv_sec, before.st_mtim.tv_sec);
    ck_assert_int_eq(now.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    char *closed = others_in_dir();
    ck_assert_str_eq(closed, "");
    free(closed);
}
END_TEST

/* ---- two handles ---- */

START_TEST(test_writer_and_reader)
{
    make_index(1);
    index_t *w = open_ok(uuid_a, 0);
    index_t *r = open_ok(uuid_a, INDEX_READONLY);
    char *wal = xasprintf("%s-wal", db_path);
    uint8_t d[HASH_LEN];
    index_loc l = loc_of(11), got;
    digest_of(11, d);

    ck_assert_int_eq(index_begin(w), 0);
    for (unsigned i = 100; i < 2100; i++) { /* enough to spill past the first page */
        uint8_t x[HASH_LEN];
        index_loc xl = loc_of(i);
        digest_of(i, x);
        ck_assert_int_eq(index_add_chunk(w, x, &xl), 0);
    }
    ck_assert_int_eq(index_add_chunk(w, d, &l), 0);
    /* Opening an existing index, even with INDEX_CREATE, does not wait for the writer. */
    double t0 = mono_seconds();
    index_t *o = open_ok(uuid_a, INDEX_CREATE);
    index_close(o);
    o = open_ok(uuid_a, INDEX_READONLY | INDEX_CREATE);
    index_close(o);
    ck_assert(mono_seconds() - t0 < 2.0);
    /* The reader reads while the writer's transaction is open, and does not see it. */
    ck_assert_int_eq(index_find_chunk(r, d, &got), RH_ENOCHUNK);
    uint64_t c = 0;
    ck_assert_int_eq(index_stats(r, &c, NULL, NULL), 0);
    ck_assert_uint_eq(c, 1);

    /* A read transaction keeps its view across the writer's commit (WAL snapshot). */
    ck_assert_int_eq(index_begin(r), 0);
    ck_assert_int_eq(index_find_chunk(r, d, &got), RH_ENOCHUNK);
    ck_assert_int_eq(index_commit(w), 0);
    ck_assert_int_eq(access(wal, F_OK), 0); /* WAL mode: committed pages are in the -wal file */
    ck_assert_int_eq(index_find_chunk(r, d, &got), RH_ENOCHUNK);
    ck_assert_int_eq(index_commit(r), 0);

    /* Then sees the commit. */
    ck_assert_int_eq(index_find_chunk(r, d, &got), 0);
    assert_loc_eq(&got, &l);
    ck_assert_int_eq(index_stats(r, &c, NULL, NULL), 0);
    ck_assert_uint_eq(c, 2002);

    /* Once the first writer has committed, a second handle can take the write lock. */
    index_t *w2 = open_ok(uuid_a, 0);
    ck_assert_int_eq(index_begin(w2), 0);
    ck_assert_int_eq(index_rollback(w2), 0);
    index_close(w2);

    index_close(r);
    index_close(w);
    free(wal);
}
END_TEST

START_TEST(test_second_writer_busy)
{
    make_index(1);
    index_t *w = open_ok(uuid_a, 0);
    index_t *w2 = open_ok(uuid_a, 0);
    ck_assert_int_eq(index_begin(w), 0);
    /* The second writer waits for the busy timeout (5 s), then gives up with -EBUSY. */
    double t0 = mono_seconds();
    ck_assert_int_eq(index_begin(w2), -EBUSY);
    double waited = mono_seconds() - t0;
    ck_assert_msg(waited > 3.0 && waited < 20.0, "waited %.1f s", waited);
    ck_assert_int_eq(index_rollback(w2), 0); /* nothing began */
    ck_assert_int_eq(index_commit(w), 0);
    ck_assert_int_eq(index_begin(w2), 0);
    ck_assert_int_eq(index_commit(w2), 0);
    index_close(w2);
    index_close(w);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_create_reopen_keeps_rows);
    tcase_add_test(tc, test_open_missing);
    tcase_add_test(tc, test_newest_container);
    tcase_add_test(tc, test_readonly_create);
    tcase_add_test(tc, test_uuid_mismatch_is_stale);
    tcase_add_test(tc, test_garbage_is_stale);
    tcase_add_test(tc, test_empty_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("rows");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_lookup_hit_miss);
    tcase_add_test(tc, test_oversized_value_is_damage);
    tcase_add_test(tc, test_duplicate_keeps_first);
    tcase_add_test(tc, test_rollback_discards);
    tcase_add_test(tc, test_readonly_cannot_write);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("containers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_matches);
    tcase_add_test(tc, test_each_in_digest_order);
    tcase_add_test(tc, test_integrity_finds_flips);
    tcase_add_test(tc, test_clear_and_stats);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20); /* test_second_writer_busy sits out the 5 s busy timeout */
    tcase_add_test(tc, test_writer_and_reader);
    tcase_add_test(tc, test_readers_create_nothing);
    tcase_add_test(tc, test_second_writer_busy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

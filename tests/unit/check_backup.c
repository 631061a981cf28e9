/*
 * check_backup.c — the backup engine end to end at the library level: what backup_run stores reads
 * back byte for byte through the lazy reader; cut points do not depend on how a file is split into
 * segments; holes stay holes; duplicates are stored once; unchanged files are reused; small files
 * go through in batches with a bounded number of open files; containers rotate at the seal size; a
 * taken name or a held lock change nothing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "backup/backup.h"
#include "backup/pipeline.h"
#include "common/util.h"
#include "read/reader.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/store.h"
#include "testutil.h"

static char *dir, *src, *storepath;
static rh_store *store;

static void write_file(const char *name, const void *data, size_t n)
{
    char *p = xasprintf("%s/%s", src, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
    free(p);
}

static void setup_store(uint64_t seal)
{
    dir = test_mkdtemp();
    src = xasprintf("%s/src", dir);
    storepath = xasprintf("%s/store", dir);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    store_config c;
    store_config_default(&c);
    if (seal)
        c.seal_size = seal;
    ck_assert_int_eq(store_create(storepath, &c), 0);
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &store), 0);
}

static void setup(void) { setup_store(0); }

static void teardown(void)
{
    rh_store_close(store);
    test_rmtree(dir);
    free(dir);
    free(src);
    free(storepath);
}

static int run(const char *name, backup_stats *st)
{
    backup_options o = { .name = name, .compression_level = -1 };
    return backup_run(store, src, &o, st);
}

/* Reads file `path` of snapshot `snap` whole through the lazy reader. */
static uint8_t *read_back(const char *snap, const char *path, size_t *ret_len, catalog_entry **ret_e)
{
    char *cp = store_snapshot_path(snap);
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, path, &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    index_t *ix;
    ck_assert_int_eq(store_open_index(store, INDEX_READONLY, false, NULL, &ix), 0);
    reader_file *f;
    ck_assert_int_eq(reader_open(store, ix, e, true, &f), 0);
    uint8_t *data = xmalloc(e->size + 1);
    size_t n;
    ck_assert_int_eq(reader_pread(f, data, e->size, 0, &n), 0);
    ck_assert_uint_eq(n, e->size);
    *ret_len = n;
    reader_close(f);
    index_close(ix);
    catalog_close(c);
    free(cp);
    if (ret_e)
        *ret_e = e;
    else
        catalog_entry_free(e);
    return data;
}

START_TEST(test_roundtrip_and_random_reads)
{
    size_t big = 20u << 20; /* three segments */
    uint8_t *a = xmalloc(big);
    test_fill_random(a, big, 11);
    write_file("big", a, big);
    write_file("one", "x", 1);
    write_file("empty", "", 0);
    uint8_t *text = xmalloc(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        text[i] = (uint8_t)("abcdefgh\n"[i % 9]);
    write_file("text", text, 1 << 20);
    backup_stats st;
    ck_assert_int_eq(run("s1", &st), 0);
    ck_assert(!st.partial);
    ck_assert_uint_eq(st.files, 4);

    size_t n;
    uint8_t *b = read_back("s1", "big", &n, NULL);
    ck_assert_uint_eq(n, big);
    ck_assert(memcmp(a, b, big) == 0);
    free(b);
    b = read_back("s1", "text", &n, NULL);
    ck_assert(n == (1u << 20) && memcmp(b, text, n) == 0);
    free(b);
    b = read_back("s1", "one", &n, NULL);
    ck_assert(n == 1 && b[0] == 'x');
    free(b);
    b = read_back("s1", "empty", &n, NULL);
    ck_assert_uint_eq(n, 0);
    free(b);
    ck_assert_uint_lt(st.stored_bytes, big + (200u << 10)); /* text compressed well, random stored once */

    /* random ranges across chunk boundaries */
    char *cp = store_snapshot_path("s1");
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, "big", &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    index_t *ix;
    ck_assert_int_eq(store_open_index(store, INDEX_READONLY, false, NULL, &ix), 0);
    reader_file *f;
    ck_assert_int_eq(reader_open(store, ix, e, false, &f), 0);
    uint8_t *buf = xmalloc(1 << 20);
    unsigned long long seed = 5;
    for (int i = 0; i < 200; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t off = (seed >> 11) % big;
        size_t len = (size_t)((seed >> 40) % (1 << 20));
        ck_assert_int_eq(reader_pread(f, buf, len, off, &n), 0);
        ck_assert_uint_eq(n, MIN(len, big - off));
        ck_assert(memcmp(buf, a + off, n) == 0);
    }
    ck_assert_int_eq(reader_pread(f, buf, 10, big, &n), 0); /* at EOF */
    ck_assert_uint_eq(n, 0);
    reader_close(f);
    index_close(ix);
    catalog_entry_free(e);
    catalog_close(c);
    free(cp);
    free(buf);
    free(a);
    free(text);
}
END_TEST

START_TEST(test_cut_points_independent_of_segments)
{
    size_t big = 19u << 20;
    uint8_t *a = xmalloc(big);
    test_fill_random(a, big, 12);
    write_file("f", a, big);
    backup_stats st;
    ck_assert_int_eq(run("s", &st), 0);
    /* the chunks of the stored stream map are those of the whole file cut in one buffer */
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, "f", &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    streammap *m;
    ck_assert_int_eq(reader_load_streammap(store, &e->stream, &m), 0);
    size_t pos = 0, i = 0;
    while (pos < big) {
        size_t cut = chunker_next(&store->chunker, a + pos, big - pos, true);
        ck_assert_uint_lt(i, m->n);
        ck_assert_uint_eq(m->e[i].length, cut);
        uint8_t d[HASH_LEN];
        xhash_sha256(a + pos, cut, d);
        ck_assert_mem_eq(m->e[i].digest, d, HASH_LEN);
        pos += cut;
        i++;
    }
    ck_assert_uint_eq(i, m->n);
    streammap_free(m);
    catalog_entry_free(e);
    catalog_close(c);
    free(cp);
    free(a);
}
END_TEST

START_TEST(test_holes_stay_holes)
{
    char *p = xasprintf("%s/sparse", src);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    uint8_t blk[100000];
    test_fill_random(blk, sizeof(blk), 3);
    ck_assert_int_eq(pwrite(fd, blk, sizeof(blk), 3ull << 30), (ssize_t)sizeof(blk));
    ck_assert_int_eq(ftruncate(fd, 6ull << 30), 0);
    close(fd);
    free(p);
    uint8_t *zeros = xcalloc(1, 3 << 20);
    write_file("zeros", zeros, 3 << 20); /* written zeros, not a hole: detected as zero chunks */
    backup_stats st;
    ck_assert_int_eq(run("s", &st), 0);
    /* data regions are whole filesystem blocks, so a few KiB of zeros travel with the data */
    ck_assert_uint_ge(st.hole_bytes, (6ull << 30) - sizeof(blk) - (64u << 10) + (3 << 20));
    ck_assert_uint_lt(st.read_bytes, (3u << 20) + 1000000); /* the holes were not read */
    catalog_entry *e;
    size_t n;
    uint8_t *b = read_back("s", "zeros", &n, &e);
    ck_assert(n == (3u << 20) && memcmp(b, zeros, n) == 0);
    ck_assert_uint_eq(e->alloc, 0);
    catalog_entry_free(e);
    free(b);
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, "sparse", &idx), 0);
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    ck_assert_uint_eq(e->size, 6ull << 30);
    ck_assert_uint_lt(e->alloc, 1u << 20);
    index_t *ix;
    ck_assert_int_eq(store_open_index(store, INDEX_READONLY, false, NULL, &ix), 0);
    reader_file *f;
    ck_assert_int_eq(reader_open(store, ix, e, true, &f), 0);
    uint8_t got[sizeof(blk) + 20];
    ck_assert_int_eq(reader_pread(f, got, sizeof(got), (3ull << 30) - 10, &n), 0);
    ck_assert_uint_eq(n, sizeof(got));
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(got[i], 0);
    ck_assert(memcmp(got + 10, blk, sizeof(blk)) == 0);
    for (int i = 0; i < 10; i++)
        ck_assert_uint_eq(got[10 + sizeof(blk) + i], 0);
    reader_close(f);
    index_close(ix);
    catalog_entry_free(e);
    catalog_close(c);
    free(cp);
    free(zeros);
}
END_TEST

START_TEST(test_dedup_and_reuse)
{
    size_t n = 4u << 20;
    uint8_t *a = xmalloc(n);
    test_fill_random(a, n, 21);
    write_file("a", a, n);
    write_file("copy-of-a", a, n);
    backup_stats st1, st2;
    ck_assert_int_eq(run("s1", &st1), 0);
    ck_assert_uint_ge(st1.dedup_bytes, n);     /* the copy's chunks were found */
    ck_assert_uint_le(st1.new_bytes, n);       /* and stored once */
    ck_assert_int_eq(run("s2", &st2), 0);
    ck_assert_uint_eq(st2.reused_files, 2);
    ck_assert_uint_eq(st2.read_bytes, 0);
    ck_assert_uint_eq(st2.new_chunks, 0);
    ck_assert_str_eq(st2.parent, "s1");
    size_t m;
    uint8_t *b = read_back("s2", "copy-of-a", &m, NULL);
    ck_assert(m == n && memcmp(a, b, n) == 0);
    free(b);
    free(a);
}
END_TEST

/* Small file i: its size (around and at the batch limits, empty files included) and the seed of its
 * bytes. Every tenth file is a copy of the one before. */
static size_t small_file(unsigned i, unsigned *seed)
{
    static const size_t sizes[] = { 0, 1, 100, 5000, 20000, 70000, 200000, BATCH_FILE_MAX,
                                    BATCH_FILE_MAX + 1 };
    if (i % 10 == 9)
        i--;
    *seed = 1000 + i;
    return sizes[i % ARRAY_SIZE(sizes)];
}

START_TEST(test_small_files_in_batches)
{
    /* Many more small files than one batch holds, under an open-file limit below their number. */
    enum { NFILES = 1500 };
    ck_assert_uint_gt(NFILES, PIPELINE_MAX_BATCH_FDS + 200);
    struct rlimit rl = { 700, 700 };
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    uint8_t *buf = xmalloc(BATCH_FILE_MAX + 1);
    uint64_t copies = 0;
    for (unsigned i = 0; i < NFILES; i++) {
        unsigned seed;
        size_t n = small_file(i, &seed);
        test_fill_random(buf, n, seed);
        copies += i % 10 == 9 ? n : 0;
        char name[32];
        snprintf(name, sizeof(name), "f%04u", i);
        write_file(name, buf, n);
    }
    /* tiny files: batches full by count (BATCH_MAX_FILES) rather than by bytes */
    char *tiny = xasprintf("%s/tiny", src);
    ck_assert_int_eq(mkdir(tiny, 0755), 0);
    free(tiny);
    for (unsigned i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "tiny/t%04u", i);
        write_file(name, name, strlen(name));
    }
    /* a small sparse file: data, a hole, data */
    char *p = xasprintf("%s/sparse", src);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(pwrite(fd, "head", 4, 0), 4);
    ck_assert_int_eq(pwrite(fd, "tail", 4, 200000), 4);
    close(fd);
    free(p);

    backup_stats st;
    ck_assert_int_eq(run("s", &st), 0);
    ck_assert(!st.partial);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.files, NFILES + 3000 + 1);
    ck_assert_uint_ge(st.dedup_bytes, copies);

    for (unsigned i = 0; i < NFILES; i++) {
        unsigned seed;
        size_t n = small_file(i, &seed), m;
        test_fill_random(buf, n, seed);
        char name[32];
        snprintf(name, sizeof(name), "f%04u", i);
        uint8_t *b = read_back("s", name, &m, NULL);
        ck_assert_uint_eq(m, n);
        ck_assert_msg(memcmp(b, buf, n) == 0, "%s differs", name);
        free(b);
    }
    catalog_entry *e;
    size_t m;
    uint8_t *b = read_back("s", "sparse", &m, &e);
    ck_assert_uint_eq(m, 200004);
    ck_assert(memcmp(b, "head", 4) == 0 && memcmp(b + 200000, "tail", 4) == 0);
    for (size_t i = 4; i < 200000; i++)
        ck_assert_uint_eq(b[i], 0);
    ck_assert_uint_lt(e->alloc, 200004 - 65536); /* the hole was not stored as data */
    catalog_entry_free(e);
    free(b);
    free(buf);
}
END_TEST

START_TEST(test_refusals_change_nothing)
{
    write_file("a", "data", 4);
    backup_stats st;
    ck_assert_int_eq(run("s", &st), 0);
    uint32_t next;
    ck_assert_int_eq(store_next_container_id(store, CONTAINER_DATA, &next), 0);
    ck_assert_int_eq(run("s", &st), RH_EEXIST);
    int lock;
    ck_assert_int_eq(store_lock(store, &lock), 0);
    rh_store *other;
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &other), 0);
    backup_options o = { .name = "t", .compression_level = -1 };
    ck_assert_int_eq(backup_run(other, src, &o, &st), -EBUSY);
    close(lock);
    rh_store_close(other);
    uint32_t after;
    ck_assert_int_eq(store_next_container_id(store, CONTAINER_DATA, &after), 0);
    ck_assert_uint_eq(after, next);
    char **names;
    size_t n;
    ck_assert_int_eq(store_list_snapshots(store, &names, &n), 0);
    ck_assert_uint_eq(n, 1);
    store_free_names(names, n);
}
END_TEST

static void setup_small_seal(void) { setup_store(1u << 20); }

START_TEST(test_containers_rotate_at_seal_size)
{
    size_t n = 6u << 20;
    uint8_t *a = xmalloc(n);
    test_fill_random(a, n, 31);
    write_file("a", a, n);
    backup_stats st;
    ck_assert_int_eq(run("s", &st), 0);
    index_container *cs;
    size_t nc;
    ck_assert_int_eq(store_list_containers(store, &cs, &nc), 0);
    size_t data = 0;
    for (size_t i = 0; i < nc; i++) {
        data += cs[i].kind == CONTAINER_DATA;
        ck_assert_uint_le(cs[i].size, (1u << 20) + (300u << 10)); /* one record may overshoot */
    }
    ck_assert_uint_ge(data, 5);
    free(cs);
    size_t m;
    uint8_t *b = read_back("s", "a", &m, NULL);
    ck_assert(m == n && memcmp(a, b, n) == 0);
    free(b);
    free(a);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("backup");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_roundtrip_and_random_reads);
    tcase_add_test(tc, test_cut_points_independent_of_segments);
    tcase_add_test(tc, test_holes_stay_holes);
    tcase_add_test(tc, test_dedup_and_reuse);
    tcase_add_test(tc, test_small_files_in_batches);
    tcase_add_test(tc, test_refusals_change_nothing);
    suite_add_tcase(s, tc);
    TCase *seal = tcase_create("seal");
    tcase_add_checked_fixture(seal, setup_small_seal, teardown);
    tcase_set_timeout(seal, 120);
    tcase_add_test(seal, test_containers_rotate_at_seal_size);
    suite_add_tcase(s, seal);
    return s;
}

int main(void) { return test_run_suite(suite()); }

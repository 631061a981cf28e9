/*
 * check_callbacks.c — what restoring through callbacks costs, counted: every read call and every byte
 * read, containers and index together. Restoring one 1 MiB file from a 1 GiB store with an empty cache
 * takes at most 64 calls and 4 MiB: the index is the store's own, read in place a few blocks per lookup
 * (index/vfs.h), never rebuilt by reading every container, and nothing is written to the cache.
 *
 * RH_TEST_STORE_MIB sets the store's size (default 1024) for a quicker run by hand.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "backup/backup.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "store/reparse.h"
#include "snapshot/catalog.h"
#include "store/store.h"
#include "stubutil.h"
#include "testutil.h"

#define PIECE (8u << 20)

static char *dir, *src, *storepath, *target, *cache;
static uint8_t one[1u << 20];

typedef struct counter {
    int rootfd;
    uint64_t calls, bytes;
    uint64_t index_calls, index_bytes;
    uint64_t container_calls;
} counter;

static int counting_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    counter *c = ctx;
    c->calls++;
    if (!strcmp(path, STORE_INDEX_FILE))
        c->index_calls++;
    if (!strncmp(path, "containers/", 11))
        c->container_calls++;
    int fd = openat(c->rootfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fs_pread_full(fd, buf, size, off);
    close(fd);
    if (r == 0) {
        c->bytes += size;
        if (!strcmp(path, STORE_INDEX_FILE))
            c->index_bytes += size;
    }
    return r;
}

static const rh_store_ops counting_ops = { .version = RH_STORE_OPS_VERSION, .read = counting_read };

static char *pathf(const char *base, const char *name) { return xasprintf("%s/%s", base, name); }

static void setup(void)
{
    dir = test_mkdtemp();
    src = pathf(dir, "src");
    storepath = pathf(dir, "store");
    target = pathf(dir, "target");
    cache = pathf(dir, "cache");
    setenv("XDG_CACHE_HOME", cache, 1);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    ck_assert_int_eq(mkdir(target, 0755), 0);
    const char *mib = getenv("RH_TEST_STORE_MIB");
    uint64_t size = (uint64_t)(mib && *mib ? strtoul(mib, NULL, 10) : 1024) << 20;
    /* The big file: random, so the store holds as many bytes as it (and about 16,000 chunks). */
    char *p = pathf(src, "big");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    uint8_t *buf = xmalloc(PIECE);
    for (uint64_t off = 0; off < size; off += PIECE) {
        test_fill_random(buf, PIECE, off / PIECE + 1000);
        ck_assert_int_eq(fs_write_full(fd, buf, PIECE), 0);
    }
    close(fd);
    free(buf), free(p);
    test_fill_random(one, sizeof(one), 7);
    p = pathf(src, "one");
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_eq(fs_write_full(fd, one, sizeof(one)), 0);
    close(fd);
    free(p);

    store_config c;
    store_config_default(&c);
    ck_assert_int_eq(store_create(storepath, &c), 0);
    rh_store *s;
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &s), 0);
    backup_options o = { .name = "s", .compression_level = -1 };
    backup_stats st;
    ck_assert_int_eq(backup_run(s, src, &o, &st), 0);
    rh_store_close(s);
}

static void teardown(void)
{
    test_rmtree(dir);
    free(dir), free(src), free(storepath), free(target), free(cache);
}

/* The stub of snapshot file `name`, read from the local store as phase 1 of a restore would. */
static char *make_stub(const char *name)
{
    rh_store *s;
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &s), 0);
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(s->ops, s->ctx, cp, &c), 0);
    char *p = test_make_stub(c, s->cfg.uuid, name, target);
    catalog_close(c);
    free(cp);
    rh_store_close(s);
    return p;
}

static bool dir_empty_or_missing(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n == 0;
}

START_TEST(test_one_file_reads_little)
{
    char *stub = make_stub("one");
    counter cnt = { .rootfd = open(storepath, O_RDONLY | O_DIRECTORY) };
    rh_store *s;
    ck_assert_int_eq(rh_store_open("counted", &counting_ops, &cnt, &s), 0);
    const char *paths[1] = { stub };
    int res[1] = { 99 };
    ck_assert_int_eq(rh_restore_files(s, 1, paths, 0, res), 0);
    ck_assert_int_eq(res[0], 0);
    rh_store_close(s);
    close(cnt.rootfd);
    fprintf(stderr, "# one 1 MiB file: %llu read calls, %llu bytes (index: %llu calls, %llu bytes)\n",
            (unsigned long long)cnt.calls, (unsigned long long)cnt.bytes, (unsigned long long)cnt.index_calls,
            (unsigned long long)cnt.index_bytes);
    ck_assert_uint_le(cnt.calls, 64);
    ck_assert_uint_le(cnt.bytes, 4u << 20);
    ck_assert_uint_gt(cnt.index_calls, 0); /* the index was read through the callbacks ... */
    ck_assert(dir_empty_or_missing(cache)); /* ... not rebuilt into the cache by reading every container */
    /* and the file is right */
    uint8_t *got = xmalloc(sizeof(one));
    int fd = open(stub, O_RDONLY);
    ck_assert_int_eq(fs_pread_full(fd, got, sizeof(one), 0), 0);
    close(fd);
    ck_assert_mem_eq(got, one, sizeof(one));
    free(got);
    free(stub);
}
END_TEST

static uint64_t count_containers(void)
{
    uint64_t n = 0;
    const char *kinds[2] = { "containers/data", "containers/stream" };
    for (int k = 0; k < 2; k++) {
        char *p = pathf(storepath, kinds[k]);
        DIR *d = opendir(p);
        ck_assert_ptr_nonnull(d);
        struct dirent *de;
        while ((de = readdir(d)))
            n += strstr(de->d_name, ".ctr") != NULL;
        closedir(d);
        free(p);
    }
    ck_assert_uint_gt(n, 2);
    return n;
}

/*
 * A store whose index.db cannot be read through the callbacks, and no copy in the cache: opening and
 * restoring read no container (the restore fails with RH_ENOINDEX) until the application asks for the
 * scan with rh_store_build_index; then the copy is built in the cache and the restore works.
 */
START_TEST(test_no_index_no_scan)
{
    char *stub = make_stub("one");
    char *ix = pathf(storepath, STORE_INDEX_FILE), *away = pathf(storepath, "index.db.away");
    ck_assert_int_eq(rename(ix, away), 0);
    counter cnt = { .rootfd = open(storepath, O_RDONLY | O_DIRECTORY) };
    rh_store *s;
    ck_assert_int_eq(rh_store_open("counted", &counting_ops, &cnt, &s), 0);
    const char *paths[1] = { stub };
    int res[1] = { 99 };
    ck_assert_int_eq(rh_restore_files(s, 1, paths, 0, res), RH_ENOINDEX);
    ck_assert_int_eq(res[0], RH_ENOINDEX);
    ck_assert_uint_eq(cnt.container_calls, 0);
    ck_assert(dir_empty_or_missing(cache));

    ck_assert_int_eq(rh_store_build_index(s), 0);
    ck_assert_uint_ge(cnt.container_calls, count_containers()); /* every container was read */
    ck_assert(!dir_empty_or_missing(cache));
    res[0] = 99;
    ck_assert_int_eq(rh_restore_files(s, 1, paths, 0, res), 0);
    ck_assert_int_eq(res[0], 0);
    rh_store_close(s);
    uint8_t *got = xmalloc(sizeof(one));
    int fd = open(stub, O_RDONLY);
    ck_assert_int_eq(fs_pread_full(fd, got, sizeof(one), 0), 0);
    close(fd);
    ck_assert_mem_eq(got, one, sizeof(one));

    /* The copy serves the next open, which again reads no container. */
    cnt.container_calls = 0;
    ck_assert_int_eq(rh_store_open("counted", &counting_ops, &cnt, &s), 0);
    ck_assert_uint_eq(cnt.container_calls, 0);
    ck_assert_int_eq(rh_store_build_index(s), 0); /* usable already: no scan */
    ck_assert_uint_eq(cnt.container_calls, 0);
    rh_store_close(s);
    close(cnt.rootfd);
    ck_assert_int_eq(rename(away, ix), 0);
    free(got), free(stub), free(ix), free(away);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("callbacks");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_one_file_reads_little);
    tcase_add_test(tc, test_no_index_no_scan);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

/*
 * check_vfs.c — the read-only SQLite VFS over a store's read callback (src/index/vfs.c): a database read
 * through callbacks answers like the file itself, a lookup reads a few blocks rather than the file, and
 * files the VFS cannot vouch for (WAL mode, a bad header, a header claiming more than the file holds, a
 * failing callback) are refused or fail cleanly instead of returning wrong rows.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "index/vfs.h"
#include "testutil.h"

#define ROWS 20000

static char *dir;

typedef struct counting {
    int dirfd;
    int fail_after; /* reads that succeed before every read fails with -EIO; <0: never */
} counting;

static int counting_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    counting *c = ctx;
    if (c->fail_after == 0)
        return -EIO;
    if (c->fail_after > 0)
        c->fail_after--;
    int fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fs_pread_full(fd, buf, size, off);
    close(fd);
    return r;
}

static const rh_store_ops ops = { .version = RH_STORE_OPS_VERSION, .read = counting_read };

static void key_of(unsigned i, uint8_t key[32]) { test_fill_random(key, 32, i * 7919u + 1); }

/* A database like the index: ROWS rows of a 32-byte key and a few integers, in rollback mode. */
static void make_db(const char *name, bool wal)
{
    char *path = xasprintf("%s/%s", dir, name);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "CREATE TABLE chunk (digest BLOB PRIMARY KEY, ctr INTEGER, off INTEGER, "
                                  "len INTEGER) WITHOUT ROWID; BEGIN",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO chunk VALUES (?, ?, ?, ?)", -1, &st, NULL), SQLITE_OK);
    for (unsigned i = 0; i < ROWS; i++) {
        uint8_t key[32];
        key_of(i, key);
        sqlite3_bind_blob(st, 1, key, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, i % 97);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)i * 65536);
        sqlite3_bind_int64(st, 4, i + 1000);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    if (wal)
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    free(path);
}

static void setup(void)
{
    dir = test_mkdtemp();
    make_db("index.db", false);
}

static void teardown(void)
{
    test_rmtree(dir);
    free(dir);
}

static int open_via(index_vfs_source *src, sqlite3 **ret)
{
    char name[40];
    ck_assert_int_eq(index_vfs_name(src, name), 0);
    int rc = sqlite3_open_v2(name, ret, SQLITE_OPEN_READONLY, INDEX_VFS_NAME);
    return rc;
}

/* Looks row i up; returns its len column, or -1 when absent, or -2 on an error. */
static sqlite3_int64 lookup(sqlite3 *db, unsigned i)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT len FROM chunk WHERE digest = ?", -1, &st, NULL) != SQLITE_OK)
        return -2;
    uint8_t key[32];
    key_of(i, key);
    sqlite3_bind_blob(st, 1, key, 32, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_int64 v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? -1 : -2;
    sqlite3_finalize(st);
    return v;
}

START_TEST(test_lookups_read_little)
{
    counting c = { .dirfd = open(dir, O_RDONLY | O_DIRECTORY), .fail_after = -1 };
    index_vfs_source src = { .ops = &ops, .ctx = &c, .path = "index.db" };
    struct stat st;
    ck_assert_int_eq(fstatat(c.dirfd, "index.db", &st, 0), 0);
    sqlite3 *db;
    ck_assert_int_eq(open_via(&src, &db), SQLITE_OK);
    for (unsigned i = 0; i < 16; i++) {
        unsigned row = (i * 1237u) % ROWS;
        ck_assert_int_eq(lookup(db, row), row + 1000);
    }
    ck_assert_int_eq(lookup(db, ROWS + 5), -1); /* absent keys are absent */
    /* 17 lookups in a B-tree of 20,000 rows: the header, the schema page, interior pages and one leaf
     * each. Far less than the file (about 1.3 MB). */
    ck_assert_uint_le(src.reads, 24);
    ck_assert_uint_le(src.bytes, (uint64_t)src.reads * INDEX_VFS_BLOCK);
    ck_assert_uint_lt(src.bytes, (uint64_t)st.st_size / 2);
    /* Every row read through the VFS equals the file's. */
    for (unsigned i = 0; i < ROWS; i += 97)
        ck_assert_int_eq(lookup(db, i), i + 1000);
    sqlite3_close(db);
    close(c.dirfd);
}
END_TEST

/* A source with a larger block (object storage): each read callback asks for that many bytes (or the
 * file's tail), so a full scan costs a few round trips, and every row still reads right. */
START_TEST(test_larger_blocks)
{
    counting c = { .dirfd = open(dir, O_RDONLY | O_DIRECTORY), .fail_after = -1 };
    index_vfs_source src = { .ops = &ops, .ctx = &c, .path = "index.db", .block = 256u << 10 };
    struct stat st;
    ck_assert_int_eq(fstatat(c.dirfd, "index.db", &st, 0), 0);
    sqlite3 *db;
    ck_assert_int_eq(open_via(&src, &db), SQLITE_OK);
    for (unsigned i = 0; i < ROWS; i += 13)
        ck_assert_int_eq(lookup(db, i), i + 1000);
    uint64_t blocks = ((uint64_t)st.st_size + (256u << 10) - 1) / (256u << 10);
    /* The header and the last byte at open, then each block once: the file fits the cache. */
    ck_assert_uint_le(src.reads, 2 + blocks);
    ck_assert_uint_gt(src.bytes, (uint64_t)st.st_size / 2);
    sqlite3_close(db);
    close(c.dirfd);
}
END_TEST

START_TEST(test_refusals)
{
    counting c = { .dirfd = open(dir, O_RDONLY | O_DIRECTORY), .fail_after = -1 };
    sqlite3 *db = NULL;
    /* a database in WAL mode: its newest pages may be in the -wal file */
    make_db("wal.db", true);
    index_vfs_source wal = { .ops = &ops, .ctx = &c, .path = "wal.db" };
    ck_assert_int_ne(open_via(&wal, &db), SQLITE_OK);
    sqlite3_close(db);
    /* not a database */
    ck_assert_int_eq(fs_write_atomic(c.dirfd, "junk.db", "not a database at all, not at all.......", 40, 0), 0);
    index_vfs_source junk = { .ops = &ops, .ctx = &c, .path = "junk.db" };
    ck_assert_int_ne(open_via(&junk, &db), SQLITE_OK);
    sqlite3_close(db);
    /* a header that claims more than the file holds: the last page cut off, or 2^32 - 1 pages in a file
     * of a few; SQLite would believe the size and may allocate by it */
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(fs_read_file(c.dirfd, "index.db", &data, &len), 0);
    uint32_t page = (uint32_t)data[16] << 8 | data[17];
    ck_assert_int_eq(fs_write_atomic(c.dirfd, "cut.db", data, len - page, 0), 0);
    index_vfs_source cut = { .ops = &ops, .ctx = &c, .path = "cut.db" };
    ck_assert_int_ne(open_via(&cut, &db), SQLITE_OK);
    sqlite3_close(db);
    memset(data + 28, 0xff, 4);
    ck_assert_int_eq(fs_write_atomic(c.dirfd, "huge.db", data, len, 0), 0);
    index_vfs_source huge = { .ops = &ops, .ctx = &c, .path = "huge.db" };
    ck_assert_int_ne(open_via(&huge, &db), SQLITE_OK);
    sqlite3_close(db);
    free(data);
    /* missing */
    index_vfs_source none = { .ops = &ops, .ctx = &c, .path = "none.db" };
    ck_assert_int_ne(open_via(&none, &db), SQLITE_OK);
    sqlite3_close(db);
    /* writing is refused */
    index_vfs_source src = { .ops = &ops, .ctx = &c, .path = "index.db" };
    char name[40];
    ck_assert_int_eq(index_vfs_name(&src, name), 0);
    ck_assert_int_ne(sqlite3_open_v2(name, &db, SQLITE_OPEN_READWRITE, INDEX_VFS_NAME), SQLITE_OK);
    sqlite3_close(db);
    close(c.dirfd);
}
END_TEST

/* A callback that starts failing makes queries fail, never answer wrongly. */
START_TEST(test_failing_reads)
{
    counting c = { .dirfd = open(dir, O_RDONLY | O_DIRECTORY), .fail_after = -1 };
    index_vfs_source src = { .ops = &ops, .ctx = &c, .path = "index.db" };
    sqlite3 *db;
    ck_assert_int_eq(open_via(&src, &db), SQLITE_OK);
    ck_assert_int_eq(lookup(db, 1), 1001);
    c.fail_after = 0;
    sqlite3_int64 got = 0;
    for (unsigned i = 2; i < 400 && got != -2; i += 37)
        got = lookup(db, i * 41u % ROWS); /* a block not read yet fails */
    ck_assert_int_eq(got, -2);
    c.fail_after = -1;
    ck_assert_int_eq(lookup(db, 12345), 12345 + 1000); /* and a later read works again */
    sqlite3_close(db);
    close(c.dirfd);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vfs");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lookups_read_little);
    tcase_add_test(tc, test_larger_blocks);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_failing_reads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

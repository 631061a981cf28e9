/*
 * check_nomem.c — the library never takes the process down and never talks on its own: every
 * allocation on the public API's paths may fail, and each failure comes back as -ENOMEM.
 *
 * The sequence rh_store_open → rh_snapshot_open → rh_file_open → rh_file_pread → rh_restore_files (on
 * a few stubs and a file that is not one) → the closes is run once to count the allocations it makes
 * (mem_alloc_count), then once more for every n with the allocation after the next n failing
 * (mem_fail_after, util.h). Each run must see every call return 0 or -ENOMEM; a failed call leave its
 * outputs as rehydrate.h documents (ret_* untouched; every result of rh_restore_files written, and the
 * return code agreeing with them); a file that rh_restore_files says it restored hold its data and lose
 * its xattr, and one that failed keep it; and the library print nothing: stderr is a file, which must
 * stay empty. Leaks are the ASan build's to find (LeakSanitizer, at exit). Both kinds of store are
 * walked: a local directory, and one behind callbacks whose index is read through the SQLite VFS and
 * whose order_containers answers with a plan. Each is walked twice: as it is, and with its index
 * removed before every run, so that every run rebuilds it from the containers (store_reindex: in
 * rh_store_build_index, which an application behind callbacks calls to ask for it, and at the first
 * index lookup for a local store).
 *
 * Each run is made on a fresh thread, so that the per-thread contexts (digest, zstd, scratch buffer)
 * of the thread that calls are made, and may fail, in every run. Not reached by the hook: allocations
 * inside SQLite, OpenSSL, libuv and glibc; and the libuv workers' per-thread contexts after their first
 * run. The catalog reader (src/snapshot) is reached: a catalog block whose zstd context cannot be made
 * is -ENOMEM too, never RH_ECORRUPT (damage).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
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

#define RAND_SIZE (400u << 10)
#define TEXT_SIZE (512u << 10)
#define SPARSE_SIZE (1u << 20)
#define SPARSE_AT (512u << 10) /* where the sparse file's data starts */
#define SPARSE_DATA (100u << 10)

static char *dir, *src, *storepath, *target, *plain, *cachedir;
static uint8_t *rnd, *text;
static rh_store *stubs_store; /* local, for making stubs between runs (outside the hook) */

/* What each restored file must hold: name, data, size (the sparse file is zeros around its data). */
static const char *const names[] = { "rand", "copy", "text", "sparse", "small" };
#define NSTUBS (sizeof(names) / sizeof(names[0]))
#define NPATHS (NSTUBS + 1) /* and `plain`, which is not a stub */

static char *pathf(const char *base, const char *name) { return xasprintf("%s/%s", base, name); }

static void write_file(const char *name, const void *data, size_t n, uint64_t at, uint64_t size)
{
    char *p = pathf(src, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fs_pwrite_full(fd, data, n, at), 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    close(fd);
    free(p);
}

static void setup(void)
{
    dir = test_mkdtemp();
    src = pathf(dir, "src");
    storepath = pathf(dir, "store");
    target = pathf(dir, "target");
    plain = pathf(target, "plain");
    char *cache = pathf(dir, "cache");
    setenv("XDG_CACHE_HOME", cache, 1);
    cachedir = pathf(cache, "rehydrate"); /* where a store behind callbacks keeps its index */
    free(cache);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    ck_assert_int_eq(mkdir(target, 0755), 0);
    rnd = xmalloc(RAND_SIZE);
    test_fill_random(rnd, RAND_SIZE, 13);
    text = xmalloc(TEXT_SIZE);
    unsigned long long ts = 5;
    for (size_t i = 0; i < TEXT_SIZE; i++) {
        ts = ts * 6364136223846793005ull + 1442695040888963407ull;
        text[i] = (uint8_t)("abcdefgh \n"[(ts >> 33) % 10]);
    }
    write_file("rand", rnd, RAND_SIZE, 0, RAND_SIZE);
    write_file("copy", rnd, RAND_SIZE, 0, RAND_SIZE);
    write_file("text", text, TEXT_SIZE, 0, TEXT_SIZE);
    write_file("sparse", rnd, SPARSE_DATA, SPARSE_AT, SPARSE_SIZE);
    write_file("small", "tiny\n", 5, 0, 5);
    int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);

    store_config c;
    store_config_default(&c);
    c.seal_size = 1u << 20; /* several containers, so that order and plans matter */
    ck_assert_int_eq(store_create(storepath, &c), 0);
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &stubs_store), 0);
    backup_options o = { .name = "s", .compression_level = -1 };
    backup_stats st;
    ck_assert_int_eq(backup_run(stubs_store, src, &o, &st), 0);
}

static void teardown(void)
{
    rh_store_close(stubs_store);
    test_rmtree(dir);
    free(dir), free(src), free(storepath), free(target), free(plain), free(cachedir), free(rnd), free(text);
}

/* ---- a store behind callbacks ---- */

typedef struct ops_ctx {
    int rootfd;
} ops_ctx;

static int ops_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    ops_ctx *c = ctx;
    int fd = openat(c->rootfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fs_pread_full(fd, buf, size, off);
    close(fd);
    return r;
}

/* A plan in the reverse of the engine's order; none when rh_plan_alloc cannot make one (the hook). */
static int ops_order(void *ctx, size_t n, const char *const *paths, rh_container_extent **ret_plan,
                     size_t *ret_len)
{
    rh_container_extent *plan = rh_plan_alloc(n);
    if (!plan)
        return 0;
    for (size_t k = 0; k < n; k++)
        plan[k] = (rh_container_extent){ (uint32_t)(n - 1 - k), 0, UINT64_MAX };
    *ret_plan = plan;
    *ret_len = n;
    return 0;
}

static const rh_store_ops test_ops = { .version = RH_STORE_OPS_VERSION, .read = ops_read,
                                       .order_containers = ops_order };

/* ---- one run of the sequence ---- */

typedef struct run {
    bool ops;                  /* through test_ops, else the local directory */
    bool reindex;              /* the index removed first: the run rebuilds it */
    char *stubs[NPATHS];       /* the stubs, then `plain` */
    char fail[512];            /* the first broken promise, or "" */
    unsigned failed;           /* how many calls (or restore results) failed */
    unsigned restored;         /* how many files rh_restore_files restored */
    unsigned logged;           /* messages through rh_store_set_log */
} run;

static void broken(run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void broken(run *R, const char *fmt, ...)
{
    if (R->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(R->fail, sizeof(R->fail), fmt, ap);
    va_end(ap);
}

#define EXPECT(R, cond, ...)                                                                        \
    do {                                                                                            \
        if (!(cond))                                                                                \
            broken(R, __VA_ARGS__);                                                                 \
    } while (0)

/* A call's code: 0, or -ENOMEM (the only failure a run without damage can have). */
static bool code_ok(run *R, const char *call, int r)
{
    EXPECT(R, r == 0 || r == -ENOMEM, "%s returned %d (%s)", call, r, rh_strerror(r));
    if (r < 0)
        R->failed++;
    return r == 0;
}

static void log_fn(void *ud, int level, const char *msg)
{
    run *R = ud;
    R->logged++;
    EXPECT(R, msg && !strchr(msg, '\n') && level >= RH_LOG_ERROR && level <= RH_LOG_INFO,
           "a log message of level %d is not one line: %s", level, msg ? msg : "(null)");
}

static rh_store *const NO_STORE = (rh_store *)(uintptr_t)0x5107e;
static rh_snapshot *const NO_SNAPSHOT = (rh_snapshot *)(uintptr_t)0x5a95;
static rh_file *const NO_FILE = (rh_file *)(uintptr_t)0xf11e;
#define NO_COUNT ((size_t)0xc0c0c0)
#define NO_RESULT 0x7777

/* Byte i of snapshot file `name` as it was backed up. */
static const uint8_t *expected(const char *name, uint64_t *ret_size)
{
    if (!strcmp(name, "rand") || !strcmp(name, "copy")) {
        *ret_size = RAND_SIZE;
        return rnd;
    }
    if (!strcmp(name, "text")) {
        *ret_size = TEXT_SIZE;
        return text;
    }
    if (!strcmp(name, "small")) {
        *ret_size = 5;
        return (const uint8_t *)"tiny\n";
    }
    *ret_size = SPARSE_SIZE;
    return NULL; /* sparse: zeros, then rnd[0..SPARSE_DATA) at SPARSE_AT, then zeros */
}

static bool same_bytes(const char *name, const uint8_t *got, uint64_t off, size_t n)
{
    uint64_t size;
    const uint8_t *want = expected(name, &size);
    for (size_t i = 0; i < n; i++) {
        uint64_t at = off + i;
        bool data = at >= SPARSE_AT && at < SPARSE_AT + SPARSE_DATA;
        uint8_t w = want ? want[at] : data ? rnd[at - SPARSE_AT] : 0;
        if (got[i] != w)
            return false;
    }
    return true;
}

/* Opens snapshot file `name` and reads it in three ranges (the last one past its end). */
static void read_file(run *R, rh_snapshot *sn, const char *name, unsigned flags)
{
    rh_file *f = NO_FILE;
    int r = rh_file_open(sn, name, flags, &f);
    if (!code_ok(R, "rh_file_open", r)) {
        EXPECT(R, f == NO_FILE, "rh_file_open(%s) failed with %d and set *ret_file", name, r);
        return;
    }
    uint64_t size;
    expected(name, &size);
    EXPECT(R, rh_file_size(f) == size, "rh_file_size(%s) is %llu", name, (unsigned long long)rh_file_size(f));
    static const struct { uint64_t off, len; } ranges[] = { { 0, 200u << 10 }, { 150u << 10, 500u << 10 },
                                                            { SPARSE_SIZE - 10, 100 } };
    uint8_t *buf = xmalloc(500u << 10);
    for (size_t k = 0; k < ARRAY_SIZE(ranges); k++) {
        size_t got = NO_COUNT;
        r = rh_file_pread(f, buf, ranges[k].len, ranges[k].off, &got);
        if (!code_ok(R, "rh_file_pread", r)) {
            EXPECT(R, got == NO_COUNT, "rh_file_pread(%s) failed with %d and set *ret_read", name, r);
            continue;
        }
        uint64_t want = ranges[k].off >= size ? 0 : MIN(ranges[k].len, size - ranges[k].off);
        EXPECT(R, got == want, "rh_file_pread(%s) at %llu read %zu bytes, not %llu", name,
               (unsigned long long)ranges[k].off, got, (unsigned long long)want);
        EXPECT(R, got != want || same_bytes(name, buf, ranges[k].off, got),
               "rh_file_pread(%s) at %llu: wrong bytes", name, (unsigned long long)ranges[k].off);
    }
    free(buf);
    rh_file_close(f);
}

/* Checks a file that rh_restore_files restored (result 0): its bytes, and no xattr left. */
static void check_restored(run *R, size_t i)
{
    const char *path = R->stubs[i];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    EXPECT(R, fd >= 0, "cannot open %s", path);
    if (fd < 0)
        return;
    uint64_t size;
    expected(names[i], &size);
    struct stat st;
    EXPECT(R, fstat(fd, &st) == 0 && (uint64_t)st.st_size == size, "%s: restored with the wrong size", path);
    uint8_t *buf = xmalloc(size);
    EXPECT(R, fs_pread_full(fd, buf, size, 0) == 0 && same_bytes(names[i], buf, 0, size),
           "%s: restored wrong", path);
    free(buf);
    EXPECT(R, fgetxattr(fd, REPARSE_XATTR, NULL, 0) < 0 && errno == ENODATA,
           "%s: restored but kept its xattr", path);
    close(fd);
}

static void restore(run *R, rh_store *s)
{
    int results[NPATHS];
    for (size_t i = 0; i < NPATHS; i++)
        results[i] = NO_RESULT;
    unsigned flags = R->ops ? RH_RESTORE_VERIFY : 0;
    int r = rh_restore_files(s, NPATHS, (const char *const *)R->stubs, flags, results);
    /* A failure before any file could be looked at is that failure in every element (rehydrate.h). */
    bool early = r < 0;
    for (size_t i = 0; i < NPATHS; i++)
        early = early && results[i] == r;
    size_t ok = 0, bad = 0;
    int first = 0;
    for (size_t i = 0; i < NPATHS; i++) {
        int x = results[i];
        EXPECT(R, x != NO_RESULT, "rh_restore_files returned %d and left result %zu unwritten", r, i);
        if (i == NSTUBS) {
            EXPECT(R, x == RH_NOT_A_STUB || early, "rh_restore_files: the file that is not a stub got %d", x);
            ok += x >= 0; /* RH_NOT_A_STUB is not a failure */
            bad += x < 0;
            continue;
        }
        code_ok(R, "a result of rh_restore_files", x);
        if (x == 0) {
            ok++;
            R->restored++;
            check_restored(R, i);
        } else if (x < 0) {
            bad++;
            first = first ? first : x;
            EXPECT(R, getxattr(R->stubs[i], REPARSE_XATTR, NULL, 0) > 0, "%s failed (%d) but lost its xattr",
                   R->stubs[i], x);
        }
    }
    int want = !bad ? 0 : ok ? RH_EPARTIAL : first;
    EXPECT(R, r == want, "rh_restore_files returned %d for %zu restored and %zu failed files (not %d)", r,
           ok, bad, want);
}

/* The sequence, on a thread of its own (see the head comment). */
static void *sequence(void *arg)
{
    run *R = arg;
    ops_ctx ctx = { .rootfd = -1 };
    if (R->ops && (ctx.rootfd = open(storepath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        broken(R, "cannot open %s", storepath);
        return NULL;
    }
    rh_store *s = NO_STORE;
    int r = rh_store_open(storepath, R->ops ? &test_ops : NULL, &ctx, &s);
    /* Behind callbacks, an index is built only when the application asks: without it, the rest of the
     * sequence would fail with RH_ENOINDEX, so a failed build ends the run. */
    if (r == 0 && R->ops && R->reindex && !code_ok(R, "rh_store_build_index", rh_store_build_index(s))) {
        rh_store_close(s);
        close(ctx.rootfd);
        return NULL;
    }
    if (code_ok(R, "rh_store_open", r)) {
        rh_store_set_log(s, log_fn, R);
        rh_snapshot *sn = NO_SNAPSHOT;
        r = rh_snapshot_open(s, "s", &sn);
        if (code_ok(R, "rh_snapshot_open", r)) {
            read_file(R, sn, "rand", RH_RESTORE_VERIFY);
            read_file(R, sn, "text", 0);
            read_file(R, sn, "sparse", 0);
            rh_snapshot_close(sn);
        } else {
            EXPECT(R, sn == NO_SNAPSHOT, "rh_snapshot_open failed with %d and set *ret_snapshot", r);
        }
        restore(R, s);
        rh_store_close(s);
    } else {
        EXPECT(R, s == NO_STORE, "rh_store_open failed with %d and set *ret_store", r);
    }
    if (ctx.rootfd >= 0)
        close(ctx.rootfd);
    return NULL;
}

/* Removes the index of the store as either kind of handle sees it (and SQLite's files beside it). */
static void remove_index(void)
{
    char *p = pathf(storepath, STORE_INDEX_FILE);
    unlink(p);
    free(p);
    DIR *d = opendir(cachedir);
    if (!d)
        return; /* not made yet */
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.')
            ck_assert_int_eq(unlinkat(dirfd(d), de->d_name, 0), 0);
    closedir(d);
}

/* Makes fresh stubs, then runs the sequence with allocation n failing (n < 0: none). */
static void run_once(run *R, bool ops, bool reindex, long n)
{
    *R = (run){ .ops = ops, .reindex = reindex };
    if (reindex)
        remove_index();
    for (size_t i = 0; i < NSTUBS; i++) {
        char *cp = store_snapshot_path("s");
        catalog *c;
        ck_assert_int_eq(catalog_open(stubs_store->ops, stubs_store->ctx, cp, &c), 0);
        R->stubs[i] = test_make_stub(c, stubs_store->cfg.uuid, names[i], target);
        catalog_close(c);
        free(cp);
    }
    R->stubs[NSTUBS] = xstrdup(plain);
    pthread_t t;
    mem_fail_after(n);
    int e = pthread_create(&t, NULL, sequence, R);
    if (e == 0)
        pthread_join(t, NULL);
    mem_fail_after(-1);
    ck_assert_int_eq(e, 0);
    for (size_t i = 0; i < NPATHS; i++)
        free(R->stubs[i]);
}

START_TEST(test_every_allocation_may_fail)
{
    bool ops = _i & 1, reindex = _i & 2;
    run R;
    /* Once to start what starts once per process (SQLite, libuv's pool, the VFS), then once to count. */
    run_once(&R, ops, reindex, -1);
    ck_assert_msg(!R.fail[0], "without failures: %s", R.fail);
    unsigned long before = mem_alloc_count();
    run_once(&R, ops, reindex, -1);
    unsigned long count = mem_alloc_count() - before;
    ck_assert_msg(!R.fail[0], "without failures: %s", R.fail);
    ck_assert_uint_eq(R.failed, 0);
    ck_assert_uint_eq(R.restored, NSTUBS);
    ck_assert_uint_gt(count, 50); /* the hook sees the paths at all */

    /* The library prints nothing: stderr is a file for the whole walk. */
    char *errpath = pathf(dir, "stderr");
    int errfd = open(errpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(errfd, 0);
    fflush(stderr);
    int saved = dup(2);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(errfd, 2), 0);
    unsigned long fired = 0, calls_failed = 0, logged = 0;
    long n = 0;
    /* A few past the count: runs differ a little with the threads that do the work. */
    for (; n < (long)count + 16 && !R.fail[0]; n++) {
        before = mem_alloc_count();
        run_once(&R, ops, reindex, n);
        fired += mem_alloc_count() - before > (unsigned long)n;
        calls_failed += R.failed;
        logged += R.logged;
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_msg(!R.fail[0], "allocation %ld failing (of %lu): %s", n - 1, count, R.fail);
    struct stat st;
    ck_assert_int_eq(fstat(errfd, &st), 0);
    char said[256] = "";
    if (st.st_size > 0)
        ck_assert_int_ge(pread(errfd, said, sizeof(said) - 1, 0), 0);
    ck_assert_msg(st.st_size == 0, "the library wrote %lld bytes to stderr: %s", (long long)st.st_size, said);
    close(errfd);
    free(errpath);
    /* Nearly every run had a failure, and the failures were seen (not all swallowed). */
    ck_assert_uint_ge(fired, count * 9 / 10);
    ck_assert_uint_ge(calls_failed, fired / 2);
    printf("%s store%s: %lu allocations a run; %lu runs had one fail, %lu calls or results failed, %lu "
           "messages logged\n",
           ops ? "callbacks" : "local", reindex ? ", index rebuilt" : "", count, fired, calls_failed, logged);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nomem");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    /* bit 0: callbacks (else a local store); bit 1: the index removed before each run */
    tcase_add_loop_test(tc, test_every_allocation_may_fail, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

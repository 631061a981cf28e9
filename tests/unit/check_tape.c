/*
 * check_tape.c — the callback contract of rh_restore_files, on a store read through a table that
 * simulates tape and records every call:
 *   - before the first order call, nothing but the identity and the index is read (no container);
 *   - the order is asked twice, stream-map containers first, then data containers;
 *   - every container read is preceded by a preview of that container listing the extents that follow,
 *     and nothing else is read between a preview and its reads;
 *   - containers are visited in the application's plan order (here: the reverse of the engine's), each
 *     once, and no byte of a container is read twice;
 *   - nothing is read after the data containers.
 * Checked on restores of one file, of 10,000 files in one call, of files that share chunks, of sparse,
 * empty and compressible files, and of a store with a damaged data record (only the files that use it
 * fail; the contract still holds); on a store of each format (1: a record per chunk; 2: packs) and on
 * a Windows Server dedup chunk store that tests/tools/windedup-mk ($WINDEDUP_MK) makes of the same
 * tree, opened through the same tape with its `list` callback.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "backup/backup.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "store/reparse.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/store.h"
#include "stubutil.h"
#include "testutil.h"

#define NMANY 10000
#define SHARED_SIZE (3u << 20)

static char *dir, *src, *storepath, *target;
static uint32_t format; /* the store format the fixture makes: 1 (a record per chunk) or 2 (packs) */
static bool windows;    /* the fixture also made a Windows chunk store of src, and the tests use it */
static char *ddp;       /* its {GUID}.ddp directory */
/* Where the store in use keeps stream-map and data containers. */
static const char *stream_dir = "containers/stream/", *data_dir = "containers/data/";
static bytebuf logged; /* what the library logged during the last restore, one message a line */

static char *pathf(const char *base, const char *name) { return xasprintf("%s/%s", base, name); }

static void write_file(const char *name, const void *data, size_t n)
{
    char *p = pathf(src, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fs_write_full(fd, data, n), 0);
    close(fd);
    free(p);
}

/* A store of format 1 (every chunk its own record, so that one flipped byte damages one chunk) with
 * small containers: NMANY small distinct files, a 3 MiB file and its copy, a file of one block
 * repeated, and a file unlike any other. */
static void setup(void)
{
    dir = test_mkdtemp();
    src = pathf(dir, "src");
    storepath = pathf(dir, "store");
    target = pathf(dir, "target");
    char *cache = pathf(dir, "cache");
    setenv("XDG_CACHE_HOME", cache, 1);
    free(cache);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    ck_assert_int_eq(mkdir(target, 0755), 0);
    char *many = pathf(src, "many");
    ck_assert_int_eq(mkdir(many, 0755), 0);
    char *tm = pathf(target, "many");
    ck_assert_int_eq(mkdir(tm, 0755), 0);
    free(many), free(tm);
    uint8_t buf[4096];
    for (unsigned i = 0; i < NMANY; i++) {
        test_fill_random(buf, sizeof(buf), i + 1);
        char name[32];
        snprintf(name, sizeof(name), "many/f%05u", i);
        write_file(name, buf, 100 + i % 3000);
    }
    uint8_t *big = xmalloc(SHARED_SIZE);
    test_fill_random(big, SHARED_SIZE, 77);
    write_file("shared", big, SHARED_SIZE);
    write_file("shared-copy", big, SHARED_SIZE);
    for (unsigned k = 1; k < 8; k++)
        memcpy(big + k * (SHARED_SIZE / 8), big, SHARED_SIZE / 8);
    write_file("repeats", big, SHARED_SIZE);
    test_fill_random(big, SHARED_SIZE, 78);
    write_file("alone", big, SHARED_SIZE);
    for (size_t i = 0; i < SHARED_SIZE; i++) /* compressible: compressed records and packs */
        big[i] = (uint8_t)"abcdefgh \n"[big[i] % 10];
    write_file("text", big, SHARED_SIZE);
    write_file("empty", "", 0);
    char *sp = pathf(src, "sparse"); /* 64 MiB: 200,000 bytes of data at 32 MiB, holes around */
    int fd = open(sp, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(pwrite(fd, big, 200000, 32u << 20), 200000);
    ck_assert_int_eq(ftruncate(fd, 64u << 20), 0);
    close(fd);
    free(sp);
    free(big);

    store_config c;
    store_config_default(&c);
    c.version = format;
    c.seal_size = 1u << 20; /* many containers, so that the order matters */
    ck_assert_int_eq(store_create(storepath, &c), 0);
    /* The backup runs in a child of its own: this fixture runs once in the parent, whose forks run the
     * tests, and the backup's thread pool would leave its threads' buffers behind in every fork, where
     * LeakSanitizer counts them as leaks. _exit: the child's own buffers are not the tests' business. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        rh_store *s;
        backup_options o = { .name = "s", .compression_level = -1 };
        backup_stats st;
        int r = rh_store_open(storepath, NULL, NULL, &s);
        if (r == 0)
            r = backup_run(s, src, &o, &st);
        _exit(r == 0 ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void setup_format1(void)
{
    format = 1;
    setup();
}

static void setup_format2(void)
{
    format = 2;
    setup();
}

/* The tree of setup() as a Windows volume: windedup-mk with compression, 1 MiB containers, several
 * sessions and stale generations beside current ones. */
static void setup_windows(void)
{
    format = 1;
    setup();
    windows = true;
    stream_dir = "Stream/";
    data_dir = "Data/";
    const char *mk = getenv("WINDEDUP_MK");
    ck_assert_msg(mk != NULL, "WINDEDUP_MK is not set (make check sets it)");
    char *vol = pathf(dir, "vol");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(mk, mk, "--format", "mixed", "--compress", "--container-size", "1M", "--session-size", "256K",
              "--generations=all", src, vol, (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *pat = xasprintf("%s/System Volume Information/Dedup/ChunkStore/*.ddp", vol);
    glob_t g;
    ck_assert_int_eq(glob(pat, 0, NULL, &g), 0);
    ck_assert_uint_eq(g.gl_pathc, 1);
    ddp = xstrdup(g.gl_pathv[0]);
    globfree(&g);
    free(pat), free(vol);
}

static void teardown(void)
{
    buf_free(&logged);
    test_rmtree(dir);
    free(dir), free(src), free(storepath), free(target), free(ddp);
    ddp = NULL;
    windows = false;
    stream_dir = "containers/stream/";
    data_dir = "containers/data/";
}

/* The stub of `name` as the Windows volume has it, made in the target (its reparse buffer and its
 * size); a file the volume keeps plain (empty) is copied plain. */
static char *make_windows_stub(const char *name)
{
    char *vp = xasprintf("%s/../../../../%s", ddp, name), *tp = pathf(target, name);
    uint8_t raw[16384];
    ssize_t n = lgetxattr(vp, "user.ntfs_reparse_data", raw, sizeof(raw));
    struct stat st;
    ck_assert_int_eq(lstat(vp, &st), 0);
    int fd = open(tp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, st.st_size), 0);
    if (n >= 0)
        ck_assert_int_eq(fsetxattr(fd, "user.ntfs_reparse_data", raw, (size_t)n, 0), 0);
    close(fd);
    free(vp);
    return tp;
}

/* Stubs of the snapshot files `names` in the target, as phase 1 of a restore makes them. */
static char **make_stubs(const char *const *names, size_t n)
{
    if (windows) {
        char **paths = xcalloc(n, sizeof(*paths));
        for (size_t i = 0; i < n; i++)
            paths[i] = make_windows_stub(names[i]);
        return paths;
    }
    rh_store *s;
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &s), 0);
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(s->ops, s->ctx, cp, &c), 0);
    char **paths = xcalloc(n, sizeof(*paths));
    for (size_t i = 0; i < n; i++)
        paths[i] = test_make_stub(c, s->cfg.uuid, names[i], target);
    catalog_close(c);
    free(cp);
    rh_store_close(s);
    return paths;
}

static bool same_file(const char *name)
{
    char *a = pathf(src, name), *b = pathf(target, name);
    uint8_t *x, *y;
    size_t nx, ny;
    ck_assert_int_eq(fs_read_file(AT_FDCWD, a, &x, &nx), 0);
    ck_assert_int_eq(fs_read_file(AT_FDCWD, b, &y, &ny), 0);
    bool same = nx == ny && memcmp(x, y, nx) == 0;
    free(x), free(y), free(a), free(b);
    return same;
}

/* ---- the tape ---- */

enum { EV_READ, EV_ORDER, EV_PREVIEW };
typedef struct event {
    int kind;
    char path[CONTAINER_PATH_MAX];
    uint64_t off, len; /* EV_READ */
    size_t first, n;   /* EV_PREVIEW: its extents in tape.ext; EV_ORDER: containers named */
} event;

typedef struct tape {
    int rootfd;
    event *ev;
    size_t nev, cap;
    rh_extent *ext; /* every previewed extent, in order */
    size_t next, extcap;
    char (*order[2])[CONTAINER_PATH_MAX]; /* the plan we answered, per order call */
    size_t norder[2];
    int calls;
} tape;

static void record(tape *t, event e)
{
    t->ev = xgrow(t->ev, &t->cap, t->nev, sizeof(*t->ev), 1024);
    t->ev[t->nev++] = e;
}

static int tape_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    tape *t = ctx;
    event e = { .kind = EV_READ, .off = off, .len = size };
    snprintf(e.path, sizeof(e.path), "%s", path);
    record(t, e);
    int fd = openat(t->rootfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fs_pread_full(fd, buf, size, off);
    close(fd);
    return r;
}

static int tape_order(void *ctx, size_t n, const char *const *paths, rh_container_extent **ret_plan,
                      size_t *ret_len)
{
    tape *t = ctx;
    ck_assert_int_lt(t->calls, 2);
    event e = { .kind = EV_ORDER, .n = n };
    snprintf(e.path, sizeof(e.path), "%s", n ? paths[0] : "");
    record(t, e);
    /* Tape order: the reverse of the engine's, whole containers. */
    rh_container_extent *plan = rh_plan_alloc(n);
    ck_assert_ptr_nonnull(plan);
    int k = t->calls++;
    t->order[k] = xcalloc(n, sizeof(*t->order[k]));
    for (size_t i = 0; i < n; i++) {
        plan[i] = (rh_container_extent){ (uint32_t)(n - 1 - i), 0, UINT64_MAX };
        snprintf(t->order[k][i], CONTAINER_PATH_MAX, "%s", paths[n - 1 - i]);
    }
    t->norder[k] = n;
    *ret_plan = plan;
    *ret_len = n;
    return 0;
}

static int tape_preview(void *ctx, const char *path, size_t n, const rh_extent *x)
{
    tape *t = ctx;
    event e = { .kind = EV_PREVIEW, .first = t->next, .n = n };
    snprintf(e.path, sizeof(e.path), "%s", path);
    record(t, e);
    for (size_t i = 0; i < n; i++) {
        t->ext = xgrow(t->ext, &t->extcap, t->next, sizeof(*t->ext), 256);
        t->ext[t->next++] = x[i];
    }
    return 0;
}

/* Listing is not reading: it is not recorded. */
static int tape_list(void *ctx, const char *dirname, int (*visit)(void *ud, const char *name), void *ud)
{
    tape *t = ctx;
    int fd = openat(t->rootfd, dirname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d)))
        r = visit(ud, de->d_name);
    closedir(d);
    return r < 0 ? r : 0;
}

static const rh_store_ops tape_ops = {
    .version = RH_STORE_OPS_VERSION,
    .read = tape_read,
    .order_containers = tape_order,
    .preview = tape_preview,
    .list = tape_list,
};

static bool is_container(const char *path)
{
    return !strncmp(path, stream_dir, strlen(stream_dir)) || !strncmp(path, data_dir, strlen(data_dir));
}

/* Asserts the contract (see the head comment) on everything the tape recorded. */
static void check_contract(const tape *t)
{
    size_t orders[2], no = 0;
    for (size_t i = 0; i < t->nev; i++)
        if (t->ev[i].kind == EV_ORDER) {
            ck_assert_uint_lt(no, 2);
            orders[no++] = i;
        }
    ck_assert_uint_eq(no, 2);
    ck_assert(strncmp(t->ev[orders[0]].path, stream_dir, strlen(stream_dir)) == 0);
    ck_assert(strncmp(t->ev[orders[1]].path, data_dir, strlen(data_dir)) == 0);
    /* Before the first order: the identity and the index only. */
    for (size_t i = 0; i < orders[0]; i++) {
        ck_assert_int_eq(t->ev[i].kind, EV_READ);
        ck_assert_msg(!is_container(t->ev[i].path), "%s read before the first order", t->ev[i].path);
    }
    for (int phase = 0; phase < 2; phase++) {
        size_t from = orders[phase] + 1, to = phase ? t->nev : orders[1];
        const char *kind = phase ? data_dir : stream_dir;
        size_t visit = 0;
        const event *pv = NULL;
        size_t next_ext = 0; /* the previewed extent the next read must fall in */
        for (size_t i = from; i < to; i++) {
            const event *e = &t->ev[i];
            if (e->kind == EV_PREVIEW) {
                /* the previous container's previewed extents were all read */
                ck_assert(!pv || next_ext == pv->first + pv->n);
                ck_assert_uint_lt(visit, t->norder[phase]);
                ck_assert_str_eq(e->path, t->order[phase][visit]); /* the plan's order */
                for (size_t j = from; j < i; j++)
                    ck_assert_str_ne(t->ev[j].path, e->path); /* each container once */
                ck_assert_uint_gt(e->n, 0);
                visit++;
                pv = e;
                next_ext = e->first;
                continue;
            }
            ck_assert_int_eq(e->kind, EV_READ);
            if (!is_container(e->path)) {
                /* between the stream phase's last reads and the data order, chunk lookups may read
                 * the index; never between a preview and its reads */
                ck_assert_int_eq(phase, 0);
                ck_assert(!pv || next_ext == pv->first + pv->n);
                continue;
            }
            ck_assert_msg(pv && !strcmp(e->path, pv->path), "%s read without its preview", e->path);
            ck_assert(strncmp(e->path, kind, strlen(kind)) == 0);
            ck_assert_uint_le(e->len, 4u << 20);
            /* within the previewed extents, in their order, each byte once */
            ck_assert_uint_lt(next_ext, pv->first + pv->n);
            const rh_extent *x = &t->ext[next_ext];
            ck_assert_uint_ge(e->off, x->offset);
            ck_assert_uint_le(e->off + e->len, x->offset + x->length);
            if (e->off + e->len == x->offset + x->length)
                next_ext++;
            for (size_t j = from; j < i; j++)
                if (t->ev[j].kind == EV_READ && !strcmp(t->ev[j].path, e->path))
                    ck_assert(e->off >= t->ev[j].off + t->ev[j].len || e->off + e->len <= t->ev[j].off);
        }
        ck_assert(!pv || next_ext == pv->first + pv->n);
        ck_assert_uint_eq(visit, t->norder[phase]); /* every container named was read */
    }
}

static void collect(void *ud, int level, const char *msg)
{
    ck_assert_ptr_eq(ud, &logged);
    ck_assert(level == RH_LOG_ERROR || level == RH_LOG_WARNING || level == RH_LOG_INFO);
    ck_assert_ptr_null(strchr(msg, '\n'));
    buf_append(&logged, msg, strlen(msg));
    buf_append(&logged, "\n", 2); /* with its NUL: the buffer is a string */
    logged.len--;
}

/* Restores `names` through the tape and checks the contract; returns rh_restore_files's result. */
static int restore_through_tape(const char *const *names, size_t n, int *results)
{
    buf_free(&logged);
    buf_append(&logged, "", 1);
    logged.len = 0;
    char **paths = make_stubs(names, n);
    tape *t = xcalloc(1, sizeof(*t));
    t->rootfd = open(windows ? ddp : storepath, O_RDONLY | O_DIRECTORY);
    rh_store *ts;
    ck_assert_int_eq(rh_store_open(windows ? ddp : "tape", &tape_ops, t, &ts), 0);
    rh_store_set_log(ts, collect, &logged);
    int r = rh_restore_files(ts, n, (const char *const *)paths, 0, results);
    rh_store_close(ts);
    check_contract(t);
    close(t->rootfd);
    free(t->ev), free(t->ext), free(t->order[0]), free(t->order[1]), free(t);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return r;
}

START_TEST(test_one_file)
{
    const char *names[] = { "alone" };
    int res[1];
    ck_assert_int_eq(restore_through_tape(names, 1, res), 0);
    ck_assert_int_eq(res[0], 0);
    ck_assert(same_file("alone"));
}
END_TEST

START_TEST(test_ten_thousand_files)
{
    char **names = xcalloc(NMANY, sizeof(*names));
    for (unsigned i = 0; i < NMANY; i++)
        names[i] = xasprintf("many/f%05u", i);
    int *res = xcalloc(NMANY, sizeof(*res));
    ck_assert_int_eq(restore_through_tape((const char *const *)names, NMANY, res), 0);
    for (unsigned i = 0; i < NMANY; i++) {
        ck_assert_int_eq(res[i], 0);
        if (i % 97 == 0)
            ck_assert_msg(same_file(names[i]), "%s", names[i]);
    }
    for (unsigned i = 0; i < NMANY; i++)
        free(names[i]);
    free(names), free(res);
}
END_TEST

START_TEST(test_shared_chunks)
{
    const char *names[] = { "shared", "shared-copy", "repeats" };
    int res[3];
    ck_assert_int_eq(restore_through_tape(names, 3, res), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(res[i], 0);
        ck_assert_msg(same_file(names[i]), "%s", names[i]);
    }
}
END_TEST

START_TEST(test_file_kinds)
{
    const char *names[] = { "sparse", "empty", "text", "alone" };
    int res[4];
    ck_assert_int_eq(restore_through_tape(names, 4, res), 0);
    for (int i = 0; i < 4; i++) {
        /* Windows never optimizes an empty file: it is plain, and a plain file is not a stub. */
        ck_assert_int_eq(res[i], windows && !strcmp(names[i], "empty") ? RH_NOT_A_STUB : 0);
        ck_assert_msg(same_file(names[i]), "%s", names[i]);
    }
}
END_TEST

/* Flips one byte of the stored copy of "shared" at 1 MiB (random data is stored raw, verbatim). */
static void damage_shared(void)
{
    char *p = pathf(src, "shared");
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(fs_read_file(AT_FDCWD, p, &data, &len), 0);
    free(p);
    const uint8_t *needle = data + (1u << 20);
    bool found = false;
    glob_t g = { 0 };
    if (windows) {
        char *pat = xasprintf("%s/Data/*.ccc", ddp);
        ck_assert_int_eq(glob(pat, 0, NULL, &g), 0);
        free(pat);
    }
    for (uint32_t id = 1; id < 1000 && !found && (!windows || id <= g.gl_pathc); id++) {
        char cp[CONTAINER_PATH_MAX];
        container_path(CONTAINER_DATA, id, cp);
        /* Windows: from the last name, so that of an id's generations the current (highest) one is
         * searched first (a stale one holds a prefix of it, which the restore does not read). */
        char *ctr = windows ? xstrdup(g.gl_pathv[g.gl_pathc - id]) : pathf(storepath, cp);
        uint8_t *c;
        size_t n;
        if (fs_read_file(AT_FDCWD, ctr, &c, &n) == 0) {
            uint8_t *at = memmem(c, n, needle, 64);
            if (at) {
                int fd = open(ctr, O_WRONLY);
                uint8_t b = at[10] ^ 0xff;
                ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)(at - c) + 10), 1);
                close(fd);
                found = true;
            }
            free(c);
        }
        free(ctr);
    }
    free(data);
    globfree(&g);
    ck_assert(found);
}

START_TEST(test_damaged_store)
{
    damage_shared();
    const char *names[] = { "shared", "alone", "shared-copy", "many/f00042" };
    int res[4];
    ck_assert_int_eq(restore_through_tape(names, 4, res), RH_EPARTIAL);
    ck_assert_int_eq(res[0], RH_ECHECKSUM);
    ck_assert_int_eq(res[2], RH_ECHECKSUM); /* the copy uses the same chunk */
    ck_assert_int_eq(res[1], 0);
    ck_assert_int_eq(res[3], 0);
    ck_assert(same_file("alone"));
    ck_assert(same_file("many/f00042"));
    /* Each failed file is named, by its index and path, with the object, the offset and why. */
    const char *log = (const char *)logged.data;
    for (int i = 0; i < 4; i += 2) {
        char *want = xasprintf("restore: file %d (%s/%s): chunk ", i, target, names[i]);
        const char *at = strstr(log, want);
        ck_assert_msg(at, "no message for file %d in:\n%s", i, log);
        const char *eol = strchr(at, '\n');
        char *line = xmemdup(at, (size_t)(eol - at) + 1);
        line[eol - at] = 0;
        char *in = xasprintf(" in %s", data_dir);
        ck_assert_msg(strstr(line, in) && strstr(line, windows ? ".ccc, record at offset " : ".ctr, record at offset ") &&
                          strstr(line, ": record checksum mismatch"),
                      "%s", line);
        free(line), free(want), free(in);
    }
    ck_assert_ptr_null(strstr(log, "file 1 ")); /* and nothing of the files that did not fail */
    ck_assert_ptr_null(strstr(log, "file 3 "));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tape");
    /* One store per format for all its tests: making 10,000 files and backing them up is most of the
     * time. The damage test runs last, as it changes the store. */
    void (*setups[3])(void) = { setup_format1, setup_format2, setup_windows };
    const char *names[3] = { "format1", "format2", "windows" };
    for (int f = 0; f < 3; f++) {
        TCase *tc = tcase_create(names[f]);
        tcase_add_unchecked_fixture(tc, setups[f], teardown);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, test_one_file);
        tcase_add_test(tc, test_ten_thousand_files);
        tcase_add_test(tc, test_shared_chunks);
        tcase_add_test(tc, test_file_kinds);
        tcase_add_test(tc, test_damaged_store);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) { return test_run_suite(suite()); }

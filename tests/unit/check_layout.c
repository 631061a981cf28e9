/*
 * check_layout.c — phases 1 and 3 of a restore against a real store: a source tree with every kind of
 * entry (and awkward names, modes, owners, xattrs, ns times, hard links across directories) is backed
 * up, laid out as stubs and finished; then the safety rules (non-empty target, planted symlinks),
 * subtree restores and resuming. The unsafe-name check is not tested here: neither the catalog writer
 * nor the reader lets such a name through, so no real catalog can carry one.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <sys/xattr.h>

#include "backup/backup.h"
#include "common/util.h"
#include "tree/layout.h"
#include "store/reparse.h"
#include "snapshot/catalog.h"
#include "store/store.h"
#include "testutil.h"

static char *dir, *src, *storepath, *tgt;
static rh_store *store;
static catalog *cat;
static int tfd = -1;
static int nwarn;

static char *P(const char *base, const char *rel) { return xasprintf("%s/%s", base, rel); }

static void mkfile(const char *rel, size_t n, mode_t mode, unsigned seed)
{
    _cleanup_(freep) char *p = P(src, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    uint8_t *data = xmalloc(n + 1);
    test_fill_random(data, n, seed);
    ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
    free(data);
    close(fd);
    ck_assert_int_eq(chmod(p, mode), 0);
}

static void mkdir_src(const char *rel, mode_t mode)
{
    _cleanup_(freep) char *p = P(src, rel);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(chmod(p, mode), 0);
}

static void set_xattr(const char *rel, const char *name, const char *value)
{
    _cleanup_(freep) char *p = P(src, rel);
    ck_assert_int_eq(lsetxattr(p, name, value, strlen(value), 0), 0);
}

/* Distinct ns times on every entry, directories after their contents (post-order). */
static int64_t tick = 1500000000LL * 1000000000LL + 123456789;
static void set_times(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        _cleanup_(freep) char *p = P(path, de->d_name);
        struct stat st;
        ck_assert_int_eq(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode))
            set_times(p);
        tick += 1000000007;
        struct timespec ts[2] = { { tick / 1000000000 - 5000, 17 },
                                  { tick / 1000000000, tick % 1000000000 } };
        ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
    }
    closedir(d);
}

static void build_source(void)
{
    mkdir_src("dir", 0755);
    mkdir_src("dir/sub", 0750);
    mkdir_src("dir/sub/deep", 0755);
    mkdir_src("a", 0755);
    mkdir_src("sticky", 01777);
    mkdir_src("odir", 0711);
    mkfile("dir/sub/file1", 100000, 0644, 1);
    mkfile("dir/sub/deep/f", 5, 0640, 2);
    mkfile("zlink", 5000, 0644, 3); /* first in the catalog: the leader; a/hl1 is laid out before it */
    mkfile("empty", 0, 0644, 4);
    mkfile("name with spaces", 10, 0644, 5);
    mkfile("new\nline", 11, 0644, 6);
    mkfile("bad\xff\xfe", 12, 0644, 7);
    mkfile("suid", 100, 04755, 8);
    mkfile("private", 100, 0600, 9);
    mkfile("owned", 100, 0644, 10);
    mkfile("dir/sub/deep/empty2", 0, 0444, 11);
    mkdir_src("dir/locked", 0700);
    mkfile("dir/locked/inner", 7, 0644, 12);
    _cleanup_(freep) char *lk = P(src, "dir/locked");
    ck_assert_int_eq(chmod(lk, 0600), 0); /* no search permission: its owner must finish it last */
    _cleanup_(freep) char *z = P(src, "zlink"), *h1 = P(src, "a/hl1"), *h2 = P(src, "dir/sub/hl2");
    ck_assert_int_eq(link(z, h1), 0);
    ck_assert_int_eq(link(z, h2), 0);
    _cleanup_(freep) char *ln = P(src, "link"), *dl = P(src, "dangling"), *ff = P(src, "fifo");
    ck_assert_int_eq(symlink("dir/sub/file1", ln), 0);
    ck_assert_int_eq(symlink("nowhere/x", dl), 0);
    ck_assert_int_eq(mkfifo(ff, 0640), 0);
    if (geteuid() == 0) {
        _cleanup_(freep) char *ch = P(src, "chr"), *ow = P(src, "owned"), *od = P(src, "odir");
        ck_assert_int_eq(mknod(ch, S_IFCHR | 0620, makedev(1, 3)), 0);
        ck_assert_int_eq(lchown(ow, 1234, 5678), 0);
        ck_assert_int_eq(lchown(od, 1234, 5678), 0);
    }
    _cleanup_(freep) char *so = P(src, "sock");
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    ck_assert_uint_lt(strlen(so), sizeof(sa.sun_path));
    strcpy(sa.sun_path, so);
    ck_assert_int_eq(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(sfd);
    set_xattr("dir/sub/file1", "user.a", "one");
    set_xattr("dir/sub/file1", "user.b", "");
    set_xattr("dir", "user.d", "dirval");
    set_xattr("zlink", "user.z", "linked");
    set_xattr("dir/sub/deep/empty2", "user.ro", "read-only file"); /* the owner sets it before chmod */
    set_times(src);
}

static char last_warn[64];
static void on_warn(void *ud, const char *path, int code, const char *what)
{
    nwarn++;
    snprintf(last_warn, sizeof(last_warn), "%s", path);
    fprintf(stderr, "layout warning: %s: %s: %s\n", path, what, rh_strerror(code));
}

static void setup(void)
{
    dir = test_mkdtemp();
    src = P(dir, "src");
    storepath = P(dir, "store");
    tgt = P(dir, "tgt");
    ck_assert_int_eq(mkdir(src, 0755), 0);
    ck_assert_int_eq(mkdir(tgt, 0755), 0);
    build_source();
    store_config c;
    store_config_default(&c);
    ck_assert_int_eq(store_create(storepath, &c), 0);
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &store), 0);
    backup_options o = { .name = "s1", .compression_level = -1 };
    backup_stats st;
    ck_assert_int_eq(backup_run(store, src, &o, &st), 0);
    ck_assert(!st.partial);
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, "snapshots/s1.snap", &cat), 0);
    tfd = open(tgt, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(tfd, 0);
    nwarn = 0;
}

static void teardown(void)
{
    close(tfd);
    catalog_close(cat);
    rh_store_close(store);
    test_rmtree(dir);
    free(dir);
    free(src);
    free(storepath);
    free(tgt);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static const layout_options opts = { .warn = on_warn };

/* The stub at target path `rel`: sparse, of the catalog's size, with the catalog's stream. */
static void check_stub(const char *rel, const char *catpath)
{
    _cleanup_(freep) char *p = P(tgt, rel);
    struct stat st;
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    /* No block at all: no data, and the reparse point fits in the inode (of a default ext4 inode of
     * 256 bytes; removing an xattr that had a block of its own costs a block free per file). The file's
     * own xattrs, once finished, may need a block. */
    bool only_reparse = llistxattr(p, NULL, 0) == (ssize_t)sizeof(REPARSE_XATTR);
    ck_assert_msg(st.st_blocks == 0 || (!only_reparse && st.st_blocks <= 8), "%s: st_blocks %lld", rel,
                  (long long)st.st_blocks);
    int fd = open(p, O_RDONLY | O_NOFOLLOW);
    ck_assert_int_ge(fd, 0);
    errno = 0;
    ck_assert_int_eq(lseek(fd, 0, SEEK_DATA), -1);
    ck_assert_int_eq(errno, ENXIO);
    close(fd);
    uint8_t buf[REPARSE_SIZE + 1];
    ck_assert_int_eq(lgetxattr(p, REPARSE_XATTR, buf, sizeof(buf)), REPARSE_SIZE);
    reparse_point rp;
    ck_assert_int_eq(reparse_decode(buf, REPARSE_SIZE, &rp), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(cat, catpath, &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(cat, idx, &e), 0);
    ck_assert(e->has_stream);
    ck_assert_uint_eq(rp.size, e->size);
    ck_assert_uint_eq((uint64_t)st.st_size, e->size);
    ck_assert(reparse_in_store(&rp, store->cfg.uuid));
    ck_assert(memcmp(rp.stream.digest, e->stream.digest, REPARSE_DIGEST_PREFIX) == 0);
    ck_assert_uint_eq(rp.stream.container, e->stream.container);
    ck_assert_uint_eq(rp.stream.offset, e->stream.offset);
    catalog_entry_free(e);
}

static bool is_stub(const char *rel)
{
    _cleanup_(freep) char *p = P(tgt, rel);
    return lgetxattr(p, REPARSE_XATTR, NULL, 0) == REPARSE_SIZE;
}

/* Compares the user-visible xattrs of a and b (b may carry a reparse point on top). */
static void check_xattrs(const char *a, const char *b)
{
    char la[4096], lb[4096];
    ssize_t na = llistxattr(a, la, sizeof(la)), nb = llistxattr(b, lb, sizeof(lb));
    ck_assert_int_ge(na, 0);
    ck_assert_int_ge(nb, 0);
    int ca = 0, cb = 0;
    for (char *k = la; k < la + na; k += strlen(k) + 1) {
        char va[256], vb[256];
        ssize_t x = lgetxattr(a, k, va, sizeof(va)), y = lgetxattr(b, k, vb, sizeof(vb));
        ck_assert_int_ge(x, 0);
        ck_assert_msg(x == y && memcmp(va, vb, (size_t)x) == 0, "xattr %s of %s", k, b);
        ca++;
    }
    for (char *k = lb; k < lb + nb; k += strlen(k) + 1)
        cb += strcmp(k, REPARSE_XATTR) != 0;
    ck_assert_int_eq(ca, cb);
}

/*
 * Walks source and target side by side. `finished`: metadata must match too. Counts regular files
 * with data in *nreg (hard links once, by source inode).
 */
static void compare(const char *rel, bool finished, int *nreg, ino_t *seen, int *nseen)
{
    _cleanup_(freep) char *sp = *rel ? P(src, rel) : xstrdup(src);
    DIR *d = opendir(sp);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        _cleanup_(freep) char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        _cleanup_(freep) char *a = P(src, r), *b = P(tgt, r);
        struct stat sa, sb;
        ck_assert_int_eq(lstat(a, &sa), 0);
        ck_assert_msg(lstat(b, &sb) == 0, "missing %s", r);
        ck_assert_msg((sa.st_mode & S_IFMT) == (sb.st_mode & S_IFMT), "type of %s", r);
        if (S_ISREG(sa.st_mode)) {
            ck_assert_int_eq(sa.st_size, sb.st_size);
            if (sa.st_size > 0) {
                check_stub(r, r);
                bool dup = false;
                for (int i = 0; i < *nseen; i++)
                    dup |= seen[i] == sa.st_ino;
                if (!dup) {
                    seen[(*nseen)++] = sa.st_ino;
                    (*nreg)++;
                }
            } else {
                ck_assert(!is_stub(r));
            }
        } else if (S_ISLNK(sa.st_mode)) {
            char ta[256], tb[256];
            ssize_t x = readlink(a, ta, sizeof(ta)), y = readlink(b, tb, sizeof(tb));
            ck_assert(x > 0 && x == y && memcmp(ta, tb, (size_t)x) == 0);
        } else if (S_ISCHR(sa.st_mode)) {
            ck_assert_uint_eq(sa.st_rdev, sb.st_rdev);
        } else if (S_ISDIR(sa.st_mode)) {
            compare(r, finished, nreg, seen, nseen);
        }
        if (finished) {
            ck_assert_msg(sa.st_mode == sb.st_mode, "mode of %s: %o != %o", r, sa.st_mode, sb.st_mode);
            ck_assert_int_eq(sa.st_uid, sb.st_uid);
            ck_assert_int_eq(sa.st_gid, sb.st_gid);
            ck_assert_msg(sa.st_mtim.tv_sec == sb.st_mtim.tv_sec && sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec,
                          "mtime of %s", r);
            ck_assert_int_eq(sb.st_atim.tv_nsec, 17); /* as set in the source before the backup */
            check_xattrs(a, b);
        }
    }
    closedir(d);
}

static void check_hardlinks(int nlink)
{
    const char *names[] = { "zlink", "a/hl1", "dir/sub/hl2" };
    struct stat st[3];
    for (int i = 0; i < 3; i++) {
        _cleanup_(freep) char *p = P(tgt, names[i]);
        ck_assert_int_eq(lstat(p, &st[i]), 0);
        ck_assert_int_eq(st[i].st_nlink, nlink);
    }
    ck_assert(st[0].st_ino == st[1].st_ino && st[1].st_ino == st[2].st_ino);
}

START_TEST(test_full_layout_and_finish)
{
    int fds = count_fds();
    layout *l;
    ck_assert_int_eq(layout_create(store, cat, tfd, NULL, 0, &opts, &l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    ck_assert_int_eq(nwarn, 0);
    ino_t seen[64];
    int nreg = 0, nseen = 0;
    compare("", false, &nreg, seen, &nseen);
    check_hardlinks(3);
    /* one stub per inode with data; every stub path is a stub */
    ck_assert_int_eq(layout_stub_count(l), nreg);
    for (size_t i = 0; i < layout_stub_count(l); i++) {
        const layout_stub *s = layout_stub_get(l, i);
        ck_assert(is_stub(s->path));
        _cleanup_(freep) char *p = P(tgt, s->path);
        struct stat st;
        ck_assert_int_eq(lstat(p, &st), 0);
        ck_assert_uint_eq(s->size, (uint64_t)st.st_size);
        ck_assert_uint_eq(s->alloc, s->size); /* random data: no holes */
    }
    ck_assert_ptr_null(layout_stub_get(l, layout_stub_count(l)));
    ck_assert_uint_eq(layout_entries(l), catalog_get_meta(cat)->entry_count);

    ck_assert_int_eq(layout_finish(l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    nreg = nseen = 0;
    compare("", true, &nreg, seen, &nseen); /* stubs still carry their reparse point: no phase 2 ran */
    /* the target itself got the snapshot root's metadata */
    struct stat sa, sb;
    ck_assert_int_eq(lstat(src, &sa), 0);
    ck_assert_int_eq(lstat(tgt, &sb), 0);
    ck_assert_int_eq(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
    layout_free(l);
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

START_TEST(test_not_empty)
{
    _cleanup_(freep) char *x = P(tgt, "x");
    ck_assert_int_eq(mkdir(x, 0700), 0);
    layout *l = (layout *)0x1;
    ck_assert_int_eq(layout_create(store, cat, tfd, NULL, 0, &opts, &l), -ENOTEMPTY);
    ck_assert_ptr_eq(l, (layout *)0x1);
    ck_assert_int_eq(count_dir(tgt), 1);
    /* a subtree that is not in the snapshot: nothing is created either */
    ck_assert_int_eq(rmdir(x), 0);
    const char *sub[] = { "dir/nope" };
    ck_assert_int_eq(layout_create(store, cat, tfd, sub, 1, &opts, &l), -ENOENT);
    ck_assert_int_eq(count_dir(tgt), 0);
}
END_TEST

START_TEST(test_planted_symlinks_force)
{
    char outside[] = "/tmp/outside-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(outside));
    _cleanup_(freep) char *victim = P(outside, "victim");
    int fd = open(victim, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(write(fd, "keep", 4), 4);
    close(fd);
    struct stat before, vbefore;
    ck_assert_int_eq(lstat(outside, &before), 0);
    ck_assert_int_eq(lstat(victim, &vbefore), 0);
    /* traps: a symlink where a directory goes, one where a file goes, a directory where a fifo goes */
    _cleanup_(freep) char *d = P(tgt, "dir"), *e = P(tgt, "empty"), *f = P(tgt, "fifo");
    _cleanup_(freep) char *fx = P(tgt, "fifo/x");
    ck_assert_int_eq(symlink(outside, d), 0);
    ck_assert_int_eq(symlink(victim, e), 0);
    ck_assert_int_eq(mkdir(f, 0755), 0);
    ck_assert_int_eq(symlink(outside, fx), 0);
    layout_options o = opts;
    o.force = true;
    layout *l;
    ck_assert_int_eq(layout_create(store, cat, tfd, NULL, 0, &o, &l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    ck_assert_int_eq(layout_finish(l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    layout_free(l);

    ck_assert_int_eq(count_dir(outside), 1); /* only the victim */
    struct stat st;
    ck_assert_int_eq(lstat(victim, &st), 0);
    ck_assert_int_eq(st.st_size, 4);
    ck_assert_int_eq(st.st_mode, vbefore.st_mode);
    ck_assert_int_eq(st.st_uid, vbefore.st_uid);
    ck_assert(st.st_mtim.tv_nsec == vbefore.st_mtim.tv_nsec);
    ck_assert_int_eq(lstat(outside, &st), 0);
    ck_assert_int_eq(st.st_mode, before.st_mode);
    ck_assert(st.st_mtim.tv_sec == before.st_mtim.tv_sec && st.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    ck_assert_int_eq(lstat(d, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(lstat(e, &st), 0);
    ck_assert(S_ISREG(st.st_mode) && st.st_size == 0);
    ck_assert_int_eq(lstat(f, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    int nreg = 0, nseen = 0;
    ino_t seen[64];
    compare("", true, &nreg, seen, &nseen);
    test_rmtree(outside);
}
END_TEST

START_TEST(test_subtrees)
{
    /* "dir/sub/deep" lies inside "dir/sub" and is laid out once; a/hl1 and dir/sub/hl2 have their leader
     * (zlink) outside the subtrees: the first becomes a stub, the second a link to it */
    const char *subs[] = { "dir/sub/deep", "/dir//sub/", "a" };
    layout *l;
    ck_assert_int_eq(layout_create(store, cat, tfd, subs, 3, &opts, &l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    ck_assert_int_eq(count_dir(tgt), 2);
    _cleanup_(freep) char *d = P(tgt, "dir"), *h1 = P(tgt, "a/hl1"), *h2 = P(tgt, "dir/sub/hl2");
    ck_assert_int_eq(count_dir(d), 1);
    struct stat st, s1, s2;
    ck_assert_int_eq(lstat(d, &st), 0);
    ck_assert_int_eq(st.st_mode, S_IFDIR | 0700);
    _cleanup_(freep) char *sd = P(src, "dir/sub"), *td = P(tgt, "dir/sub");
    ck_assert_int_eq(count_dir(td), count_dir(sd));
    ck_assert_int_eq(lstat(h1, &s1), 0);
    ck_assert_int_eq(lstat(h2, &s2), 0);
    ck_assert(s1.st_ino == s2.st_ino && s1.st_nlink == 2);
    check_stub("dir/sub/hl2", "dir/sub/hl2");
    int hl = 0;
    for (size_t i = 0; i < layout_stub_count(l); i++) {
        const char *p = layout_stub_get(l, i)->path;
        ck_assert_msg(!strncmp(p, "dir/sub/", 8) || !strncmp(p, "a/", 2), "stub %s", p);
        hl += !strcmp(p, "dir/sub/hl2") + !strcmp(p, "a/hl1");
    }
    ck_assert_int_eq(hl, 1);
    ck_assert_int_eq(layout_stub_count(l), 3); /* file1, deep/f, the group */
    ck_assert_int_eq(layout_finish(l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    struct stat ss;
    ck_assert_int_eq(lstat(sd, &ss), 0);
    ck_assert_int_eq(lstat(td, &st), 0);
    ck_assert_int_eq(st.st_mode, ss.st_mode);
    ck_assert_int_eq(st.st_mtim.tv_nsec, ss.st_mtim.tv_nsec);
    ck_assert_int_eq(lstat(d, &st), 0);
    ck_assert_int_eq(st.st_mode, S_IFDIR | 0700); /* a parent made for the subtree keeps its defaults */
    layout_free(l);
}
END_TEST

START_TEST(test_resume)
{
    layout *l;
    ck_assert_int_eq(layout_create(store, cat, tfd, NULL, 0, &opts, &l), 0);
    size_t nstubs = layout_stub_count(l);
    layout_free(l);
    /* file1 was rehydrated, deep/f not made yet, and a temp file of a crashed run is left over */
    _cleanup_(freep) char *f1 = P(tgt, "dir/sub/file1"), *df = P(tgt, "dir/sub/deep/f"),
                         *tmp = P(tgt, "dir/.rh-stub.deadbeef"), *mine = P(tgt, "dir/.rh-stub.mine");
    ck_assert_int_eq(lremovexattr(f1, REPARSE_XATTR), 0);
    ck_assert_int_eq(unlink(df), 0);
    uint8_t rp[REPARSE_SIZE] = { 0 };
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_eq(fsetxattr(fd, REPARSE_XATTR, rp, sizeof(rp), 0), 0);
    close(fd);
    fd = open(mine, O_WRONLY | O_CREAT | O_EXCL, 0600); /* no reparse point: not ours, kept */
    close(fd);

    layout_options o = opts;
    o.resume = true;
    ck_assert_int_eq(layout_create(store, cat, tfd, NULL, 0, &o, &l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    ck_assert_int_eq(layout_stub_count(l), nstubs - 1);
    bool found_df = false;
    for (size_t i = 0; i < layout_stub_count(l); i++) {
        const char *p = layout_stub_get(l, i)->path;
        ck_assert_str_ne(p, "dir/sub/file1");
        ck_assert(is_stub(p));
        found_df |= !strcmp(p, "dir/sub/deep/f");
    }
    ck_assert(found_df);
    check_stub("dir/sub/deep/f", "dir/sub/deep/f");
    ck_assert(!is_stub("dir/sub/file1"));
    struct stat st;
    ck_assert_int_eq(lstat(tmp, &st), -1);
    ck_assert_int_eq(lstat(mine, &st), 0);
    check_hardlinks(3); /* kept, not linked twice */
    ck_assert_int_eq(unlink(mine), 0);
    ck_assert_int_eq(layout_finish(l), 0);
    ck_assert_int_eq(layout_errors(l), 0);
    ck_assert(!is_stub("dir/sub/file1"));
    ck_assert(is_stub("dir/sub/deep/f"));
    _cleanup_(freep) char *s1 = P(src, "dir/sub/file1");
    check_xattrs(s1, f1);
    layout_free(l);
}
END_TEST


/*
 * As an ordinary user (what root does cannot show it): a directory without search permission is
 * finished after its contents, and a read-only file gets its user.* xattrs before its mode. The device
 * node cannot be made: exactly one warning, naming it, and everything else is restored.
 */
START_TEST(test_finish_as_user)
{
    if (geteuid() != 0)
        return; /* cannot switch users */
    const uid_t nobody = 65534;
    ck_assert_int_eq(chmod(dir, 0755), 0);
    ck_assert_int_eq(chown(tgt, nobody, nobody), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setresgid(nobody, nobody, nobody) < 0 ||
            setresuid(nobody, nobody, nobody) < 0)
            _exit(100);
        layout *l;
        if (layout_create(store, cat, tfd, NULL, 0, &opts, &l) < 0)
            _exit(101);
        if (layout_errors(l) != 1 || nwarn != 1 || strcmp(last_warn, "chr") != 0)
            _exit(102);
        if (layout_finish(l) < 0)
            _exit(103);
        int errs = (int)MIN(layout_errors(l), 99);
        layout_free(l);
        _exit(errs == 1 ? 0 : errs);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    const char *check[] = { "dir/locked", "dir/locked/inner", "dir/sub/deep/empty2", "dir/sub", "dir" };
    for (size_t i = 0; i < ARRAY_SIZE(check); i++) {
        _cleanup_(freep) char *a = P(src, check[i]), *b = P(tgt, check[i]);
        struct stat sa, sb;
        ck_assert_int_eq(lstat(a, &sa), 0);
        ck_assert_int_eq(lstat(b, &sb), 0);
        ck_assert_int_eq(sb.st_uid, nobody);
        ck_assert_msg(sa.st_mode == sb.st_mode, "mode of %s", check[i]);
        ck_assert_msg(sa.st_mtim.tv_sec == sb.st_mtim.tv_sec && sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec,
                      "mtime of %s", check[i]);
        check_xattrs(a, b);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("layout");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_full_layout_and_finish);
    tcase_add_test(tc, test_not_empty);
    tcase_add_test(tc, test_planted_symlinks_force);
    tcase_add_test(tc, test_subtrees);
    tcase_add_test(tc, test_resume);
    tcase_add_test(tc, test_finish_as_user);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

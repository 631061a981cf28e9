/*
 * volume.c — restoring a Windows dedup volume's tree (see volume.h).
 *
 * One walk of the source, depth first, with directory fds on both sides (names may hold any bytes):
 * - a directory is made (0700 while it fills), its metadata set once its entries are done;
 * - a symlink, fifo or device node is made with its owner and times;
 * - a plain file is copied, holes kept as holes, with its xattrs, owner, mode and times;
 * - a stub is laid out as a stub in the target (an empty file that carries the reparse buffer in
 *   user.ntfs_reparse_data) and queued; every STUB_BATCH stubs, and at the end, the queue is rehydrated
 *   by rh_restore_files (one call per chunk store) and each rehydrated file gets its metadata. A stub
 *   that fails keeps its reparse buffer, so the user can see what failed and retry.
 * - a second name of a file (st_nlink > 1, same device and inode) becomes a hard link to the first.
 * On ntfs-3g without a dedup plugin a stub shows as a symlink (to "unsupported reparse tag
 * 0x80000013"): what makes an entry a stub is its reparse buffer, not its type.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <rehydrate/rehydrate.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "store/format_windows.h"
#include "tree/volume.h"
#include "windows/winreparse.h"
#include "windows/winvolume.h"

#define STUB_BATCH 4096
#define COPY_BUF (1u << 20)

typedef struct vstub {
    char *rel;        /* relative to the volume root, for messages */
    char *path;       /* the target file, for rh_restore_files */
    uint8_t guid[16]; /* its chunk store */
    struct stat st;   /* the source's metadata, set once rehydrated */
} vstub;

typedef struct vlink {
    dev_t dev;
    ino_t ino;
    char *rel; /* the first name's target path, relative to the target */
} vlink;

typedef struct vstore {
    uint8_t guid[16];
    rh_store *s;
    int err; /* why it could not be opened */
} vstore;

typedef struct vctx {
    const char *volume, *target;
    const volume_options *o;
    volume_stats st;
    int targetfd;
    vstub *q;
    size_t nq;
    vlink *links;
    size_t nlinks, links_cap;
    vstore *stores;
    size_t nstores;
    uint8_t *buf; /* COPY_BUF */
} vctx;

bool volume_detect(const char *path)
{
    char *p = winvolume_chunkstore_dir(path);
    struct stat st;
    bool yes = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return yes;
}

static void warn(vctx *c, const char *rel, int code, const char *what)
{
    c->st.failed++;
    if (c->o->warn)
        c->o->warn(c->o->ud, rel, code, what);
}

/* "/proc/self/fd/N/name": the l*xattr calls take a path; this one does not leave dirfd. */
static void fd_path(char out[PATH_MAX], int dirfd, const char *name)
{
    snprintf(out, PATH_MAX, "/proc/self/fd/%d/%s", dirfd, name);
}

/* The reparse buffer of (dirfd, name) when it is a dedup stub: a malloc'd copy in *ret, its length the
 * return value; 0 when the entry has none (or another tag); negative on an error reading it. */
static ssize_t read_reparse(int dirfd, const char *name, uint8_t **ret)
{
    char p[PATH_MAX];
    fd_path(p, dirfd, name);
    size_t len;
    const char *xattr;
    int r = winvolume_read_reparse(p, false, ret, &len, &xattr);
    if (r <= 0)
        return r;
    if (len > WINSTORE_STUB_MAX) {
        free(*ret);
        return RH_ECORRUPT;
    }
    return (ssize_t)len;
}

/* Copies the xattrs of source path sp to fd, but not a reparse buffer. Failures are reported. */
static void copy_xattrs(vctx *c, const char *rel, const char *sp, int fd)
{
    uint8_t *list;
    size_t n;
    if (fs_xattr_fetch(sp, NULL, false, &list, &n) < 0)
        return;
    const char *names = (const char *)list;
    for (size_t i = 0; i < n; i += strnlen(names + i, n - i) + 1) {
        const char *x = names + i;
        if (!strcmp(x, winvolume_reparse_xattrs[0]) || !strcmp(x, winvolume_reparse_xattrs[1]))
            continue;
        uint8_t *v;
        size_t vn;
        int r = fs_xattr_fetch(sp, x, false, &v, &vn);
        if (r == 0) {
            r = fsetxattr(fd, x, v, vn, 0) == 0 ? 0 : -errno;
            free(v);
        }
        if (r == 0)
            continue;
        char *what = xasprintf("copying xattr %s", x);
        warn(c, rel, r, what);
        c->st.failed--; /* a lost xattr is reported, but the file itself is restored */
        free(what);
    }
    free(list);
}

/* Owner, mode and times of fd as st says. */
static int set_meta(int fd, const struct stat *st)
{
    if (fchown(fd, st->st_uid, st->st_gid) < 0 && errno != EPERM)
        return -errno;
    if (fchmod(fd, st->st_mode & 07777) < 0)
        return -errno;
    const struct timespec ts[2] = { st->st_atim, st->st_mtim };
    return futimens(fd, ts) < 0 ? -errno : 0;
}

/* Copies the regular file sfd to tfd: data extents only, holes left as holes. */
static int copy_data(vctx *c, int sfd, int tfd, off_t size)
{
    off_t off = 0;
    while (off < size) {
        off_t d = lseek(sfd, off, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            break; /* only a hole is left */
        if (d < 0)
            d = off; /* no SEEK_DATA here: copy everything */
        off_t h = lseek(sfd, d, SEEK_HOLE);
        if (h < 0)
            h = size;
        for (off = d; off < h;) {
            size_t want = (size_t)(h - off) < COPY_BUF ? (size_t)(h - off) : COPY_BUF;
            ssize_t n = pread(sfd, c->buf, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -errno;
            if (n == 0)
                return -EIO; /* the file shrank under us */
            int r = fs_pwrite_full(tfd, c->buf, (size_t)n, (uint64_t)off);
            if (r < 0)
                return r;
            off += n;
            c->st.bytes += (uint64_t)n;
        }
    }
    return ftruncate(tfd, size) < 0 ? -errno : 0;
}

/* The hard-link table: the target path of (dev, ino)'s first name, or NULL (and it is remembered). */
static const char *link_seen(vctx *c, const struct stat *st, const char *rel)
{
    for (size_t i = 0; i < c->nlinks; i++)
        if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino)
            return c->links[i].rel;
    c->links = xgrow(c->links, &c->links_cap, c->nlinks + 1, sizeof(*c->links), 16);
    c->links[c->nlinks++] = (vlink){ st->st_dev, st->st_ino, xstrdup(rel) };
    return NULL;
}

static rh_store *store_for(vctx *c, const uint8_t guid[16], int *ret_err)
{
    for (size_t i = 0; i < c->nstores; i++)
        if (c->o->chunkstore || !memcmp(c->stores[i].guid, guid, 16)) {
            *ret_err = c->stores[i].err;
            return c->stores[i].s;
        }
    char *path = NULL;
    if (c->o->chunkstore) {
        path = xstrdup(c->o->chunkstore);
    } else {
        char *dir = winvolume_chunkstore_dir(c->volume);
        path = dir ? winvolume_store_path(dir, guid) : NULL;
        free(dir);
    }
    vstore v = { .err = 0 };
    memcpy(v.guid, guid, 16);
    v.err = path ? rh_store_open(path, NULL, NULL, &v.s) : -ENOENT;
    free(path);
    if (v.err < 0)
        v.s = NULL;
    c->stores = xrealloc(c->stores, (c->nstores + 1) * sizeof(*c->stores));
    c->stores[c->nstores++] = v;
    *ret_err = v.err;
    return v.s;
}

/* Rehydrates the queued stubs, one rh_restore_files call per chunk store, and sets their metadata. */
static void flush(vctx *c)
{
    const char **paths = xcalloc(c->nq ? c->nq : 1, sizeof(*paths));
    int *results = xcalloc(c->nq ? c->nq : 1, sizeof(*results));
    size_t *idx = xcalloc(c->nq ? c->nq : 1, sizeof(*idx));
    bool *done = xcalloc(c->nq ? c->nq : 1, sizeof(*done));
    for (size_t i = 0; i < c->nq; i++) {
        if (done[i])
            continue;
        int err;
        rh_store *s = store_for(c, c->q[i].guid, &err);
        size_t n = 0;
        for (size_t k = i; k < c->nq; k++)
            if (!done[k] && (c->o->chunkstore || !memcmp(c->q[k].guid, c->q[i].guid, 16))) {
                done[k] = true;
                idx[n] = k;
                paths[n++] = c->q[k].path;
            }
        if (s)
            rh_restore_files(s, n, paths, 0, results);
        for (size_t k = 0; k < n; k++) {
            vstub *v = &c->q[idx[k]];
            int r = s ? results[k] : err;
            if (r == 0) {
                int fd = open(v->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                r = fd < 0 ? -errno : set_meta(fd, &v->st);
                if (fd >= 0)
                    close(fd);
                if (r < 0) {
                    warn(c, v->rel, r, "setting its owner, mode and times");
                } else {
                    c->st.stubs++;
                    c->st.bytes += (uint64_t)v->st.st_size;
                }
            } else {
                warn(c, v->rel, r, s ? "rebuilding it from the chunk store" : "opening its chunk store");
            }
            free(v->rel);
            free(v->path);
        }
    }
    c->nq = 0;
    free(paths);
    free(results);
    free(idx);
    free(done);
}

/* Lays out the stub of (sdir, name) in (tdir, name) and queues it. */
static void add_stub(vctx *c, int sdir, int tdir, const char *name, const char *rel, const char *trel,
                     const struct stat *st, const uint8_t *raw, size_t len)
{
    winreparse rp;
    int r = winreparse_parse(raw, len, &rp);
    if (r < 0) {
        char *what = xasprintf("its reparse data (offset %zu: %s)", rp.why_at, rp.why ? rp.why : "?");
        warn(c, rel, r, what);
        free(what);
        return;
    }
    int fd = openat(tdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fsetxattr(fd, WINSTORE_STUB_XATTR, raw, len, 0) < 0) {
        warn(c, rel, -errno, "laying out its stub");
        if (fd >= 0)
            close(fd);
        winreparse_free(&rp);
        return;
    }
    char sp[PATH_MAX];
    fd_path(sp, sdir, name);
    copy_xattrs(c, rel, sp, fd);
    close(fd);
    vstub *v = &c->q[c->nq++];
    *v = (vstub){ .rel = xstrdup(rel), .path = xasprintf("%s/%s", c->target, trel), .st = *st };
    memcpy(v->guid, rp.guid, 16);
    winreparse_free(&rp);
    /* A stub that ntfs-3g shows as a symlink becomes the regular file it stands for. */
    v->st.st_mode = S_IFREG | (st->st_mode & 07777);
    v->st.st_size = (off_t)rp.size;
    if (c->nq == STUB_BATCH)
        flush(c);
}

static void walk(vctx *c, int sdir, int tdir, const char *rel, bool root);

/* One entry (sdir, name) into (tdir, name). */
static void entry(vctx *c, int sdir, int tdir, const char *name, const char *rel)
{
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        warn(c, rel, -errno, "reading its metadata");
        return;
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
        const char *first = link_seen(c, &st, rel);
        if (first) {
            if (linkat(c->targetfd, first, tdir, name, 0) < 0)
                warn(c, rel, -errno, "making it a hard link");
            else
                c->st.entries++;
            return;
        }
    }
    uint8_t *raw = NULL;
    ssize_t rn = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? read_reparse(sdir, name, &raw) : 0;
    if (rn < 0) {
        warn(c, rel, (int)rn, "reading its reparse data");
        return;
    }
    c->st.entries++;
    if (rn > 0) {
        add_stub(c, sdir, tdir, name, rel, rel, &st, raw, (size_t)rn);
        free(raw);
        return;
    }
    int r = 0;
    const char *what = "";
    if (S_ISDIR(st.st_mode)) {
        if (mkdirat(tdir, name, 0700) < 0) {
            warn(c, rel, -errno, "making the directory");
            return;
        }
        int s2 = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int t2 = openat(tdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s2 < 0 || t2 < 0) {
            warn(c, rel, -errno, "opening the directory");
        } else {
            walk(c, s2, t2, rel, false);
            char sp[PATH_MAX];
            fd_path(sp, sdir, name);
            copy_xattrs(c, rel, sp, t2);
            if ((r = set_meta(t2, &st)) < 0)
                what = "setting its owner, mode and times";
        }
        if (s2 >= 0)
            close(s2);
        if (t2 >= 0)
            close(t2);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
        const struct timespec ts[2] = { st.st_atim, st.st_mtim };
        if (n < 0 || (target[n] = '\0', symlinkat(target, tdir, name)) < 0)
            r = -errno, what = "copying the symlink";
        else if ((fchownat(tdir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM) ||
                 utimensat(tdir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno, what = "setting its owner and times";
    } else if (S_ISREG(st.st_mode)) {
        int sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int tfd = sfd < 0 ? -1 : openat(tdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (sfd < 0 || tfd < 0) {
            r = -errno, what = "opening it";
        } else if ((r = copy_data(c, sfd, tfd, st.st_size)) < 0) {
            what = "copying its data";
        } else {
            char sp[PATH_MAX];
            fd_path(sp, sdir, name);
            copy_xattrs(c, rel, sp, tfd);
            if ((r = set_meta(tfd, &st)) < 0)
                what = "setting its owner, mode and times";
        }
        if (sfd >= 0)
            close(sfd);
        if (tfd >= 0)
            close(tfd);
    } else { /* fifo, socket, device */
        const struct timespec ts[2] = { st.st_atim, st.st_mtim };
        if (mknodat(tdir, name, st.st_mode, st.st_rdev) < 0)
            r = -errno, what = "making the special file";
        else if ((fchownat(tdir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM) ||
                 fchmodat(tdir, name, st.st_mode & 07777, 0) < 0 || utimensat(tdir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno, what = "setting its owner, mode and times";
    }
    if (r < 0)
        warn(c, rel, r, what);
}

static void walk(vctx *c, int sdir, int tdir, const char *rel, bool root)
{
    int dfd = dup(sdir);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        warn(c, *rel ? rel : ".", -errno, "reading the directory");
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        if (root && !strcmp(n, "System Volume Information"))
            continue; /* the dedup machinery, not data */
        char *r2 = *rel ? xasprintf("%s/%s", rel, n) : xstrdup(n);
        entry(c, sdir, tdir, n, r2);
        free(r2);
    }
    if (errno)
        warn(c, *rel ? rel : ".", -errno, "reading the directory");
    closedir(d);
}

int volume_restore(const char *volume, const char *target, const volume_options *o, volume_stats *ret)
{
    vctx c = { .volume = volume, .target = target, .o = o };
    int sfd = open(volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return -errno;
    c.targetfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c.targetfd < 0) {
        int e = -errno;
        close(sfd);
        return e;
    }
    c.q = xcalloc(STUB_BATCH, sizeof(*c.q));
    c.buf = xmalloc(COPY_BUF);
    walk(&c, sfd, c.targetfd, "", true);
    flush(&c);
    struct stat st;
    if (fstat(sfd, &st) == 0)
        set_meta(c.targetfd, &st);
    for (size_t i = 0; i < c.nlinks; i++)
        free(c.links[i].rel);
    free(c.links);
    for (size_t i = 0; i < c.nstores; i++)
        rh_store_close(c.stores[i].s);
    free(c.stores);
    free(c.q);
    free(c.buf);
    close(sfd);
    close(c.targetfd);
    *ret = c.st;
    return c.st.failed ? RH_EPARTIAL : 0;
}

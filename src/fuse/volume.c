/*
 * volume.c — the FUSE operations of a volume mount (see volume.h), over the volume, its inodes and its
 * chunk stores (volnode.h).
 *
 * Every request that touches the volume is a job on libuv's thread pool, which replies exactly once:
 * the volume may be another FUSE file system (ntfs-3g) or a slow disk, and the loop thread must go on
 * receiving meanwhile. What needs no I/O is answered on the loop thread, which saves two thread
 * hand-offs: FORGET, a stub's RELEASE, a read of a stub whose chunks are all in the cache, and the open
 * of a stub whose map the read-ahead across its directory has read (voldirahead.h).
 *
 * An open file is a vfile: for a plain file, a descriptor open for reading; for a stub, its whole-file
 * stream map, read once at open, whose chunks are read through its chunk store's cache (cache.h), with
 * read-ahead for a sequential reader. A vfile is counted: the open, and every job on it from its
 * dispatch to its after-work callback, so that a RELEASE never frees it under a job still using it.
 *
 * Damage is reported once per file (daemon_log): a stub whose reparse data cannot be parsed, or whose
 * stream map cannot be read, fails to open with EIO; a chunk that cannot be read fails that read with
 * EIO. The rest of the mount goes on.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "fuse/pagepush.h"
#include "fuse/readonly.h"
#include "fuse/voldirahead.h"
#include "fuse/volnode.h"
#include "read/reader.h"
#include "store/container.h"
#include "store/format.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#define VOL_TIMEOUT 86400.0

typedef struct vfile {
    vhandle h;        /* on the volume's list from the open's reply to the last reference's drop */
    volume *v;
    vnode *n;         /* the kernel keeps the inode while the file is open */
    int fd;           /* a plain file's, open for reading; -1 for a stub */
    vstore *st;       /* a stub's chunk store and map */
    streammap *map;
    unsigned refs;    /* atomic */
    pthread_mutex_t lock;
    uint64_t next_off; /* where a sequential reader goes on; protected by lock */
    size_t ra_upto;    /* map entries below this were queued for read-ahead; protected by lock */
} vfile;

typedef struct vdir {
    vhandle h; /* on the volume's list from the open's reply to its release */
    DIR *dp;
    off_t offset;          /* of the next entry readdir gives */
    struct dirent *entry;  /* read but not yet sent, or NULL */
} vdir;

/* A request, copied for the job that answers it on the pool. */
typedef struct vjob vjob;
struct vjob {
    uv_work_t work;
    volume *v;
    fuse_req_t req;
    void (*run)(vjob *j);  /* the job: replies exactly once */
    fuse_ino_t ino;        /* the inode the request names (a lookup's parent) */
    char *name;            /* lookup, getxattr: the name, copied (the request's lives only during the call) */
    size_t size;           /* read, readdir, getxattr, listxattr: bytes asked for */
    off_t off;             /* read, readdir, lseek */
    int whence;            /* lseek */
    bool plus;             /* readdirplus */
    uint64_t fh;           /* readdir, releasedir: the vdir */
    vfile *file;           /* read, lseek, release, prefetch: a reference, dropped after the job */
    size_t ra_from, ra_to; /* a read's planned read-ahead, queued by job_done */
    vnode *opened;         /* open: the file, held, for the read-ahead across its directory (job_done) */
};

static volume *vol_of(fuse_req_t req) { return fuse_req_userdata(req); }

static void vfile_free(vhandle *h)
{
    vfile *f = container_of(h, vfile, h);
    if (f->fd >= 0)
        close(f->fd);
    streammap_free(f->map);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static void vfile_put(vfile *f)
{
    if (!f || __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    volume_handle_remove(f->v, &f->h);
    vfile_free(&f->h);
}

static void vdir_free(vhandle *h)
{
    vdir *d = container_of(h, vdir, h);
    closedir(d->dp);
    free(d);
}

static vfile *vfile_get(vfile *f)
{
    __atomic_add_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);
    return f;
}

/* ---- jobs ---- */

static void prefetch_run(vjob *j);
static void read_run(vjob *j);

static void job_work(uv_work_t *w)
{
    vjob *j = container_of(w, vjob, work);
    j->run(j);
}

/* The loop thread, after a job: queues the read-ahead a read planned, drops the job's reference. */
static void job_done(uv_work_t *w, int status)
{
    vjob *j = container_of(w, vjob, work);
    if (j->run == read_run && j->ra_to > j->ra_from) {
        vjob *p = xcalloc(1, sizeof(*p));
        *p = (vjob){ .v = j->v, .run = prefetch_run, .file = j->file, .ra_from = j->ra_from, .ra_to = j->ra_to };
        j->file = NULL; /* the prefetch holds the reference now */
        if (uv_queue_work(p->v->loop, &p->work, job_work, job_done) < 0) {
            vfile_put(p->file);
            free(p);
        }
    }
    if (j->opened)
        voldirahead_opened(j->v->dirahead, j->opened);
    vfile_put(j->file);
    free(j->name);
    free(j);
}

static void queue(fuse_req_t req, vjob *j, void (*run)(vjob *j))
{
    j->v = vol_of(req);
    j->req = req;
    j->run = run;
    if (uv_queue_work(j->v->loop, &j->work, job_work, job_done) < 0) {
        fuse_reply_err(req, EIO);
        vfile_put(j->file);
        free(j->name);
        free(j);
    }
}

static vjob *new_job(fuse_ino_t ino)
{
    vjob *j = xcalloc(1, sizeof(*j));
    j->ino = ino;
    return j;
}

/* ---- metadata ---- */

static void lookup_run(vjob *j)
{
    struct fuse_entry_param e;
    int err = vnode_lookup(j->v, vnode_of(j->v, j->ino), j->name, &e);
    if (err)
        fuse_reply_err(j->req, err);
    else if (fuse_reply_entry(j->req, &e) != 0)
        vnode_forget(j->v, vnode_of(j->v, e.ino), 1); /* the kernel did not take it */
}

static void getattr_run(vjob *j)
{
    struct stat st;
    int err = vnode_stat(vnode_of(j->v, j->ino), &st);
    if (err)
        fuse_reply_err(j->req, err);
    else
        fuse_reply_attr(j->req, &st, VOL_TIMEOUT);
}

static void readlink_run(vjob *j)
{
    const vnode *n = vnode_of(j->v, j->ino);
    char buf[PATH_MAX + 1];
    if (n->kind != VN_PLAIN) { /* a stub is shown as a regular file */
        fuse_reply_err(j->req, EINVAL);
        return;
    }
    int fd = vnode_get_fd(n);
    ssize_t len = fd < 0 ? fd : readlinkat(fd, "", buf, PATH_MAX);
    int err = fd < 0 ? -fd : errno;
    vnode_put_fd(n, fd);
    if (len < 0) {
        fuse_reply_err(j->req, err);
        return;
    }
    buf[len] = 0;
    fuse_reply_readlink(j->req, buf);
}

/* getxattr and listxattr: the volume's, except the reparse data of a stub (shown as its contents). */
static void xattr_run(vjob *j)
{
    const vnode *n = vnode_of(j->v, j->ino);
    const char *hidden = n->kind == VN_PLAIN ? NULL : n->xattr;
    uint8_t *buf = NULL;
    size_t len = 0;
    int err = ENODATA;
    if (!j->name || !hidden || strcmp(j->name, hidden) != 0) {
        int fd = vnode_get_fd(n);
        char proc[32];
        vnode_proc_path(fd, proc);
        err = fd < 0 ? -fd : -fs_xattr_fetch(proc, j->name, true, &buf, &len);
        vnode_put_fd(n, fd);
    }
    if (!err && !j->name && hidden) { /* drop the hidden name from the list */
        size_t out = 0;
        for (size_t at = 0; at < len;) {
            size_t k = strnlen((char *)buf + at, len - at) + 1;
            if (strcmp((char *)buf + at, hidden) != 0)
                memmove(buf + out, buf + at, k), out += k;
            at += k;
        }
        len = out;
    }
    if (err)
        fuse_reply_err(j->req, err);
    else
        daemon_reply_xattr(j->req, j->size, buf, len);
    free(buf);
}

static void statfs_run(vjob *j)
{
    struct statvfs sv;
    if (statvfs(j->v->root_path, &sv) < 0) {
        fuse_reply_err(j->req, errno);
        return;
    }
    sv.f_flag |= ST_RDONLY;
    sv.f_bfree = sv.f_bavail = sv.f_ffree = sv.f_favail = 0; /* nothing can be written */
    fuse_reply_statfs(j->req, &sv);
}

/* ---- files ---- */

/* A stub's map, ready to read: its store, its stream maps joined, runs of zeros as holes. */
static int open_stub(volume *v, vnode *n, vfile *f)
{
    if (n->kind == VN_BADSTUB) {
        _cleanup_(freep) char *path = vnode_path(v, n);
        daemon_log_once(&v->log, "reparse", path, "%s: damaged dedup reparse data (%s): %s at byte %zu", path,
                        n->xattr, n->why, n->why_at);
        return EIO;
    }
    int err = vstore_of(v, n, &f->st);
    if (err)
        return err;
    int r = reader_load_stub(f->st->s, n->reparse, n->reparse_len, &f->map);
    if (r < 0) {
        _cleanup_(freep) char *path = vnode_path(v, n);
        daemon_log_once(&v->log, "stream map", path, "%s: its stream map in %s: %s", path, f->st->path,
                        rh_strerror(r));
        return r == -ENOMEM ? ENOMEM : EIO;
    }
    vstore_zero_holes(f->st, f->map);
    return 0;
}

static vfile *vfile_new(volume *v, vnode *n)
{
    vfile *f = xcalloc(1, sizeof(*f));
    *f = (vfile){ .h = { &f->h, &f->h, vfile_free }, .v = v, .n = n, .fd = -1, .refs = 1 };
    pthread_mutex_init(&f->lock, NULL);
    return f;
}

/* Replies to an open with f, or with err (and frees f). */
static void reply_open(fuse_req_t req, vfile *f, int err)
{
    if (err) {
        vfile_put(f);
        fuse_reply_err(req, err);
        return;
    }
    struct fuse_file_info fi = { .fh = (uintptr_t)f, .keep_cache = 1 }; /* the volume does not change */
    volume_handle_add(f->v, &f->h);
    if (fuse_reply_open(req, &fi) != 0)
        vfile_put(f); /* the open was interrupted: no RELEASE will come */
}

static void open_run(vjob *j)
{
    volume *v = j->v;
    vnode *n = vnode_of(v, j->ino);
    vfile *f = vfile_new(v, n);
    int err = 0;
    if (n->kind != VN_PLAIN) {
        err = open_stub(v, n, f);
    } else {
        int fd = vnode_get_fd(n);
        char proc[32];
        vnode_proc_path(fd, proc);
        if (fd < 0)
            err = -fd;
        else if ((f->fd = open(proc, O_RDONLY | O_CLOEXEC)) < 0)
            err = errno;
        vnode_put_fd(n, fd);
    }
    if (!err && v->dirahead) { /* held while the request is: n is alive */
        vnode_hold(v, n);
        j->opened = n;
    }
    reply_open(j->req, f, err);
}

/*
 * Loop thread: opens stub n at once, without a job, when the read-ahead across its directory left its
 * map ready (voldirahead.h): nothing is left to read from the volume or the store then. False when it
 * did not.
 */
static bool open_prefetched(fuse_req_t req, volume *v, vnode *n)
{
    vstore *st;
    streammap *m = n->kind == VN_STUB ? voldirahead_take_map(v->dirahead, n, &st) : NULL;
    if (!m)
        return false;
    vfile *f = vfile_new(v, n);
    f->map = m;
    f->st = st;
    vnode_hold(v, n);
    voldirahead_opened(v->dirahead, n);
    reply_open(req, f, 0);
    return true;
}

static char *file_name(void *ud)
{
    const vjob *j = ud;
    return vnode_path(j->v, j->file->n);
}

/* After a read of n bytes of a stub is answered: plans the read-ahead of a sequential reader (queued by
 * job_done), or gives a random one the rest of the chunks it fetched (pagepush.h). */
static void after_stub_read(vjob *j, size_t n)
{
    vfile *f = j->file;
    pthread_mutex_lock(&f->lock); /* the job's reference keeps f, also after the reply */
    bool sequential = cache_plan_readahead(f->map, (uint64_t)j->off, n, j->v->cfg.readahead,
                                           cache_readahead_bytes(f->st->cache), &f->next_off,
                                           &f->ra_upto, &j->ra_from, &j->ra_to);
    pthread_mutex_unlock(&f->lock);
    /* A random reader gets the rest of the chunks it fetched whole into the page cache; a sequential
     * one asks for it next, and the kernel's readahead is on its way (pagepush.h). */
    if (!sequential)
        pusher_push_around(j->v->pusher, f->st->cache, j->ino, f->map, (uint64_t)j->off, n);
}

/* A read of a stub through its store's chunk cache, replied without a copy (writev). */
static void read_stub(vjob *j)
{
    vfile *f = j->file;
    cache_iov io;
    if (daemon_read_map(j->req, &j->v->log, f->st->cache, f->st->s, f->st->path, f->map, (uint64_t)j->off, j->size,
                        file_name, j, &io) < 0)
        return;
    size_t n = io.bytes;
    cache_iov_release(f->st->cache, &io);
    after_stub_read(j, n);
}

static void read_run(vjob *j)
{
    vfile *f = j->file;
    if (f->map) {
        read_stub(j);
        return;
    }
    uint8_t *buf = mem_alloc(j->size ? j->size : 1);
    ssize_t n = buf ? pread(f->fd, buf, j->size, j->off) : -1;
    if (!buf)
        errno = ENOMEM;
    if (n < 0)
        fuse_reply_err(j->req, errno);
    else
        fuse_reply_buf(j->req, (char *)buf, (size_t)n);
    free(buf);
}

static void prefetch_run(vjob *j) { cache_prefetch(j->file->st->cache, j->file->map, j->ra_from, j->ra_to); }

static void lseek_run(vjob *j)
{
    vfile *f = j->file;
    if (!f->map) {
        off_t at = lseek(f->fd, j->off, j->whence);
        if (at < 0)
            fuse_reply_err(j->req, errno);
        else
            fuse_reply_lseek(j->req, at);
        return;
    }
    uint64_t at;
    int r = j->off < 0 ? -ENXIO : streammap_seek(f->map, (uint64_t)j->off, j->whence, &at);
    if (r < 0)
        fuse_reply_err(j->req, -r);
    else
        fuse_reply_lseek(j->req, (off_t)at);
}

/* The open's reference goes after the reply: closing a descriptor on the volume may wait for it. */
static void release_run(vjob *j) { fuse_reply_err(j->req, 0); }

/* ---- directories ---- */

static void opendir_run(vjob *j)
{
    const vnode *n = vnode_of(j->v, j->ino);
    int fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        fuse_reply_err(j->req, err);
        return;
    }
    vdir *d = xcalloc(1, sizeof(*d));
    *d = (vdir){ .h = { &d->h, &d->h, vdir_free }, .dp = dp };
    struct fuse_file_info fi = { .fh = (uintptr_t)d, .keep_cache = 1, .cache_readdir = 1 };
    volume_handle_add(j->v, &d->h);
    if (fuse_reply_open(j->req, &fi) != 0) {
        volume_handle_remove(j->v, &d->h);
        vdir_free(&d->h);
    }
}

/* One entry of a listing into buf (room bytes left); 0 when it does not fit. In readdirplus, every
 * name but "." and ".." is looked up, which counts as a lookup of its record when it is sent. */
static size_t add_entry(vjob *j, vnode *dir, const struct dirent *de, char *buf, size_t room, int *ret_err)
{
    const char *name = de->d_name;
    *ret_err = 0;
    if (!j->plus) {
        struct stat st = { .st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type) };
        size_t need = fuse_add_direntry(j->req, NULL, 0, name, NULL, 0);
        return need > room ? 0 : fuse_add_direntry(j->req, buf, room, name, &st, de->d_off);
    }
    struct fuse_entry_param e = { .attr = { .st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type) } };
    bool dots = !strcmp(name, ".") || !strcmp(name, "..");
    if (fuse_add_direntry_plus(j->req, NULL, 0, name, NULL, 0) > room)
        return 0;
    if (!dots && (*ret_err = vnode_lookup(j->v, dir, name, &e)))
        return 0;
    return fuse_add_direntry_plus(j->req, buf, room, name, &e, de->d_off);
}

static void readdir_run(vjob *j)
{
    vdir *d = (vdir *)(uintptr_t)j->fh;
    vnode *dir = vnode_of(j->v, j->ino);
    char *buf = xmalloc(j->size ? j->size : 1);
    size_t used = 0;
    int err = 0;
    if (j->off != d->offset) {
        seekdir(d->dp, j->off);
        d->entry = NULL;
        d->offset = j->off;
    }
    for (;;) {
        if (!d->entry) {
            errno = 0;
            if (!(d->entry = readdir(d->dp))) {
                err = errno;
                break;
            }
        }
        size_t k = add_entry(j, dir, d->entry, buf + used, j->size - used, &err);
        if (err == ENOENT) { /* gone since it was listed */
            err = 0;
        } else if (err || k == 0) {
            break;
        }
        used += k;
        d->offset = d->entry->d_off;
        d->entry = NULL;
    }
    if (err && used == 0)
        fuse_reply_err(j->req, err);
    else
        fuse_reply_buf(j->req, buf, used); /* what was listed so far is right */
    free(buf);
}

static void releasedir_run(vjob *j)
{
    vdir *d = (vdir *)(uintptr_t)j->fh;
    volume_handle_remove(j->v, &d->h);
    vdir_free(&d->h);
    fuse_reply_err(j->req, 0);
}

/* ---- the handlers (loop thread) ---- */

static void vol_init(void *userdata, struct fuse_conn_info *conn) { daemon_conn_init(conn); }

static void vol_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    vjob *j = new_job(parent);
    j->name = xstrdup(name);
    queue(req, j, lookup_run);
}

static void vol_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    vnode_forget(vol_of(req), vnode_of(vol_of(req), ino), nlookup);
    fuse_reply_none(req);
}

static void vol_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        vnode_forget(vol_of(req), vnode_of(vol_of(req), forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
}

static void vol_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    queue(req, new_job(ino), getattr_run);
}

static void vol_readlink(fuse_req_t req, fuse_ino_t ino) { queue(req, new_job(ino), readlink_run); }

static void vol_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    volume *v = vol_of(req);
    if (!open_prefetched(req, v, vnode_of(v, ino)))
        queue(req, new_job(ino), open_run);
}

/* Queues a job on open file fi, with a reference to it. */
static void queue_on_file(fuse_req_t req, vjob *j, struct fuse_file_info *fi, void (*run)(vjob *j))
{
    j->file = vfile_get((vfile *)(uintptr_t)fi->fh);
    queue(req, j, run);
}

static void vol_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    vjob *j = new_job(ino);
    j->size = size;
    j->off = off;
    vfile *f = (vfile *)(uintptr_t)fi->fh;
    cache_iov io;
    if (f->map && cache_peek_iov(f->st->cache, f->map, (uint64_t)off, size, &io) == 0) {
        /* Every chunk it needs is decompressed in the cache (and now held): answered here, without a
         * hand-off and without I/O. */
        *j = (vjob){ .v = vol_of(req), .req = req, .run = read_run, .ino = ino, .size = size, .off = off,
                     .file = vfile_get(f) };
        daemon_reply_iov(req, &io);
        size_t n = io.bytes;
        cache_iov_release(f->st->cache, &io);
        after_stub_read(j, n);
        job_done(&j->work, 0);
        return;
    }
    queue_on_file(req, j, fi, read_run);
}

static void vol_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    vjob *j = new_job(ino);
    j->off = off;
    j->whence = whence;
    queue_on_file(req, j, fi, lseek_run);
}

static void vol_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vfile *f = (vfile *)(uintptr_t)fi->fh;
    if (f->fd < 0) { /* a stub's: freeing its map touches no file, so it needs no job */
        fuse_reply_err(req, 0);
        vfile_put(f);
        return;
    }
    vjob *j = new_job(ino);
    j->file = f; /* the open's reference: dropped after the job */
    queue(req, j, release_run);
}

static void vol_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    queue(req, new_job(ino), opendir_run);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                           bool plus)
{
    vjob *j = new_job(ino);
    j->size = size;
    j->off = off;
    j->fh = fi->fh;
    j->plus = plus;
    queue(req, j, readdir_run);
}

static void vol_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, false);
}

static void vol_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, fi, true);
}

static void vol_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vjob *j = new_job(ino);
    j->fh = fi->fh;
    queue(req, j, releasedir_run);
}

static void vol_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    vjob *j = new_job(ino);
    j->name = xstrdup(name);
    j->size = size;
    queue(req, j, xattr_run);
}

static void vol_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    vjob *j = new_job(ino);
    j->size = size;
    queue(req, j, xattr_run);
}

static void vol_statfs(fuse_req_t req, fuse_ino_t ino) { queue(req, new_job(ino), statfs_run); }

static const struct fuse_lowlevel_ops volume_ops = {
    .init = vol_init,
    .lookup = vol_lookup,
    .forget = vol_forget,
    .forget_multi = vol_forget_multi,
    .getattr = vol_getattr,
    .readlink = vol_readlink,
    .open = vol_open,
    .read = vol_read,
    .lseek = vol_lseek,
    .release = vol_release,
    .opendir = vol_opendir,
    .readdir = vol_readdir,
    .readdirplus = vol_readdirplus,
    .releasedir = vol_releasedir,
    .getxattr = vol_getxattr,
    .listxattr = vol_listxattr,
    .statfs = vol_statfs,
    READONLY_OPS,
};

int volume_serve(const volume_config *c, daemon_config *dc)
{
    volume v;
    int status = 1;
    if (volume_open(&v, c) == 0) {
        voldirahead_new(&v, c->dir_readahead, &v.dirahead);
        v.log.foreground = dc->foreground;
        dc->ops = &volume_ops;
        dc->ops_size = sizeof(volume_ops);
        dc->userdata = &v;
        dc->ret_se = &v.se;
        dc->ret_loop = &v.loop;
        dc->push_pages = true;
        dc->ret_pusher = &v.pusher;
        status = daemon_run(dc);
        voldirahead_free(v.dirahead); /* the loop has run dry: no fetch is in flight */
    }
    volume_close(&v); /* the loop, if it ran, has run dry: no job is left */
    return status;
}

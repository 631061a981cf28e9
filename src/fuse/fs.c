/*
 * fs.c — the FUSE low-level operations of rehydratefs.
 *
 * Each handler that needs the store copies what it needs from the request (names are valid only
 * during the call) into a job. A job that needs no store I/O runs at once on the loop thread
 * (runs_inline); the others are queued on libuv's thread pool. Either way the job replies exactly once
 * (fuse_reply_* may be called from any thread). Operations that would change anything answer EROFS.
 * What the operations show of an entry (its attributes, its lookup reply) is in entry.c; the inode
 * scheme is in inode.h.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "common/util.h"
#include "fuse/dirahead.h"
#include "fuse/fs.h"
#include "fuse/ofile.h"
#include "fuse/pagepush.h"
#include "fuse/readonly.h"
#include "read/reader.h"
#include "store/container.h"
#include "store/format.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

static fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* Maps our codes to an errno for the kernel: damage becomes EIO. */
static int to_errno(int r)
{
    if (r >= 0)
        return 0;
    if (r > -4000)
        return -r;
    return r == RH_ENOSNAPSHOT ? ENOENT : EIO;
}

/* ---- jobs ---- */

enum op { OP_LOOKUP, OP_GETATTR, OP_READLINK, OP_READ, OP_READDIR, OP_GETXATTR, OP_LISTXATTR,
          OP_LSEEK, OP_PREFETCH };

typedef struct job {
    uv_work_t work;
    fs *f;
    fuse_req_t req;
    enum op op;
    fuse_ino_t ino;
    char *name;
    size_t size;
    off_t off;
    int whence;
    bool plus;
    ofile *of;
    size_t ra_from, ra_to; /* after a sequential read: entries to fetch ahead */
} job;
static void job_work(uv_work_t *w);
static void job_done(uv_work_t *w, int status);

/*
 * Whether a job runs right here on the loop thread. A hand-off to the pool and back costs two thread
 * wake-ups, more than a job that needs no store I/O: metadata (from the catalog's block cache, after
 * the first touch of a block), loading a file's stream map on its first read (one small record for most
 * files), a read whose chunks are all in the cache. squashfuse answers everything on its receiving
 * thread; we keep the pool for what can wait on the disk or decompress: reads of chunks not cached,
 * and read-ahead.
 */
static bool runs_inline(const job *j)
{
    switch (j->op) {
    case OP_READ:
        return cache_range_cached(j->f->cache, j->of->map, (uint64_t)j->off, j->size);
    case OP_PREFETCH:
        return false;
    default:
        return true;
    }
}

static void queue(fuse_req_t req, job *j)
{
    j->f = fs_of(req);
    j->req = req;
    if (runs_inline(j)) {
        job_work(&j->work);
        job_done(&j->work, 0);
        return;
    }
    int r = uv_queue_work(j->f->loop, &j->work, job_work, job_done);
    if (r < 0) {
        fuse_reply_err(req, EIO);
        if (j->op == OP_READ || j->op == OP_LSEEK)
            ofile_put(&j->f->files, j->of);
        free(j->name);
        free(j);
    }
}

static job *new_job(enum op op, fuse_ino_t ino)
{
    job *j = xcalloc(1, sizeof(*j));
    j->op = op;
    j->ino = ino;
    return j;
}

/* read_entry for a job: replies with the error and returns NULL on failure. */
static catalog_entry *get_entry(job *j, size_t snap, uint64_t idx)
{
    catalog_entry *e;
    int r = fs_read_entry(j->f, snap, idx, &e);
    if (r < 0) {
        fuse_reply_err(j->req, to_errno(r));
        return NULL;
    }
    return e;
}

static void do_lookup(job *j)
{
    fs *f = j->f;
    size_t snap;
    uint64_t dir;
    struct fuse_entry_param p;
    if (j->ino == FS_INO_ROOT && f->single < 0) {
        memset(&p, 0, sizeof(p));
        p.attr_timeout = p.entry_timeout = FS_TIMEOUT;
        if (!strcmp(j->name, "latest") && f->nsnaps) {
            fs_latest_stat(f, &p.attr);
            p.ino = FS_INO_LATEST;
            fuse_reply_entry(j->req, &p);
            return;
        }
        for (size_t s = 0; s < f->nsnaps; s++) {
            if (strcmp(f->snaps[s].name, j->name))
                continue;
            catalog_entry *e = get_entry(j, s, 0);
            if (!e)
                return;
            fs_entry_param(f, s, 0, e, &p);
            catalog_entry_free(e);
            fuse_reply_entry(j->req, &p);
            return;
        }
        fuse_reply_err(j->req, ENOENT);
        return;
    }
    if (!fs_decode(f, j->ino, &snap, &dir)) {
        fuse_reply_err(j->req, ENOENT);
        return;
    }
    uint64_t idx;
    int r = catalog_lookup(f->snaps[snap].c, dir, (const uint8_t *)j->name, strlen(j->name), &idx);
    if (r < 0) {
        fuse_reply_err(j->req, to_errno(r));
        return;
    }
    catalog_entry *e = get_entry(j, snap, idx);
    if (!e)
        return;
    fs_entry_param(f, snap, idx, e, &p);
    catalog_entry_free(e);
    fuse_reply_entry(j->req, &p);
}

static void do_getattr(job *j)
{
    fs *f = j->f;
    struct stat st;
    size_t snap;
    uint64_t idx;
    if (j->ino == FS_INO_ROOT && f->single < 0) {
        fs_root_stat(f, &st);
    } else if (j->ino == FS_INO_LATEST && f->single < 0) {
        fs_latest_stat(f, &st);
    } else if (fs_decode(f, j->ino, &snap, &idx)) {
        catalog_entry *e = get_entry(j, snap, idx);
        if (!e)
            return;
        fs_entry_stat(f, snap, idx, e, &st);
        catalog_entry_free(e);
    } else {
        fuse_reply_err(j->req, ENOENT);
        return;
    }
    fuse_reply_attr(j->req, &st, FS_TIMEOUT);
}

static void do_readlink(job *j)
{
    fs *f = j->f;
    size_t snap;
    uint64_t idx;
    if (j->ino == FS_INO_LATEST && f->single < 0) {
        fuse_reply_readlink(j->req, fs_latest_name(f));
        return;
    }
    if (!fs_decode(f, j->ino, &snap, &idx)) {
        fuse_reply_err(j->req, ENOENT);
        return;
    }
    catalog_entry *e = get_entry(j, snap, idx);
    if (!e)
        return;
    if (e->type != CT_SYMLINK || !e->target)
        fuse_reply_err(j->req, EINVAL);
    else
        fuse_reply_readlink(j->req, (char *)e->target);
    catalog_entry_free(e);
}

/*
 * The record of regular file ino with a reference (ofile.h), loaded on the file's first read: its stream
 * map is read once and then searched by offset, and the files after it in its directory are fetched
 * ahead (dirahead.h). 0, or a positive errno for the reply. Loop thread.
 */
static int file_of(fs *f, fuse_ino_t ino, ofile **ret)
{
    if ((*ret = ofile_get(&f->files, ino)))
        return 0;
    size_t snap;
    uint64_t idx;
    if (!fs_decode(f, ino, &snap, &idx))
        return ENOENT;
    catalog *c = f->snaps[snap].c;
    catalog_entry *e;
    int r = fs_read_entry(f, snap, idx, &e);
    if (r < 0)
        return to_errno(r);
    if (e->type != CT_REG) {
        r = e->type == CT_DIR ? EISDIR : EINVAL;
        catalog_entry_free(e);
        return r;
    }
    streammap *m;
    r = reader_load_file_map(f->s, e, &m);
    if (r < 0) {
        _cleanup_(freep) char *path = fs_entry_path(c, idx);
        char cp[CONTAINER_PATH_MAX];
        store_container_path(f->s, CONTAINER_STREAM, e->stream.container, cp);
        fs_log_once(f, cp, path, "%s:%s: stream map in %s: %s", f->snaps[snap].name, path, cp,
                    r == RH_ENOTDEDUP ? "the file could not be read at backup time" : rh_strerror(r));
        catalog_entry_free(e);
        return EIO;
    }
    dirahead_opened(f->dirahead, snap, c, idx, e);
    catalog_entry_free(e);
    *ret = ofile_add(&f->files, ino, snap, idx, m);
    return 0;
}

/* "snapshot:path" of the file a read job reads, for a message. */
static char *read_name(void *ud)
{
    const job *j = ud;
    const fs_snapshot *snap = &j->f->snaps[j->of->snap];
    _cleanup_(freep) char *path = fs_entry_path(snap->c, j->of->entry);
    return xasprintf("%s:%s", snap->name, path);
}

static void do_read(job *j)
{
    fs *f = j->f;
    ofile *of = j->of;
    /* The reply is written straight from the cached chunks (writev): no copy into a reply buffer. */
    cache_iov v;
    if (daemon_read_map(j->req, &f->log, f->cache, f->s, NULL, of->map, (uint64_t)j->off, j->size, read_name, j,
                        &v) < 0)
        return;
    size_t n = v.bytes;
    cache_iov_release(f->cache, &v);
    /* A sequential reader gets the following chunks fetched ahead; job_done queues that, because only
     * the loop thread may queue work. */
    pthread_mutex_lock(&of->lock);
    bool sequential = cache_plan_readahead(of->map, (uint64_t)j->off, n, f->readahead,
                                           cache_readahead_bytes(f->cache), &of->next_off,
                                           &of->ra_upto, &j->ra_from, &j->ra_to);
    pthread_mutex_unlock(&of->lock);
    /* A sequential reader asks for the rest of these chunks next, and the kernel's readahead is
     * already on its way: pushing them too would only copy them twice. */
    if (!sequential)
        pusher_push_around(f->pusher, f->cache, j->ino, of->map, (uint64_t)j->off, n);
}

static void do_prefetch(job *j) { cache_prefetch(j->f->cache, j->of->map, j->ra_from, j->ra_to); }

static bool add_dirent(job *j, char *buf, size_t *used, const char *name, const struct stat *st,
                       const struct fuse_entry_param *p, off_t next)
{
    size_t room = j->size - *used;
    size_t need = j->plus ? fuse_add_direntry_plus(j->req, NULL, 0, name, NULL, 0)
                          : fuse_add_direntry(j->req, NULL, 0, name, NULL, 0);
    if (need > room)
        return false;
    if (j->plus)
        fuse_add_direntry_plus(j->req, buf + *used, room, name, p, next);
    else
        fuse_add_direntry(j->req, buf + *used, room, name, st, next);
    *used += need;
    return true;
}

/* The root in list mode: ".", "..", one directory per snapshot, "latest". Offsets: 0 ".", 1 "..",
 * 2 + s for snapshot s, 2 + nsnaps for latest. */
static void readdir_root(job *j, char *buf, size_t *used)
{
    fs *f = j->f;
    for (size_t s = (size_t)j->off - 2; s <= f->nsnaps; s++) {
        struct fuse_entry_param sp;
        memset(&sp, 0, sizeof(sp));
        const char *name;
        if (s < f->nsnaps) {
            catalog_entry *e;
            if (catalog_get(f->snaps[s].c, 0, &e) < 0)
                continue; /* a damaged catalog: its directory is left out, the others work */
            fs_entry_param(f, s, 0, e, &sp);
            catalog_entry_free(e);
            name = f->snaps[s].name;
        } else if (f->nsnaps) {
            fs_latest_stat(f, &sp.attr);
            sp.ino = FS_INO_LATEST;
            sp.attr_timeout = sp.entry_timeout = FS_TIMEOUT;
            name = "latest";
        } else {
            break;
        }
        if (!add_dirent(j, buf, used, name, &sp.attr, &sp, (off_t)s + 3))
            break;
    }
}

/* A listing of directory dir of snapshot snap into a reply buffer. */
typedef struct fsdir {
    job *j;
    size_t snap;
    uint64_t dir;
    char *buf;
    size_t *used;
} fsdir;

/* Child k sits at offset 2 + k ("." and ".." come first); the next one at 3 + k. Stops when full. */
static int readdir_child(void *ctx, uint64_t k, const catalog_entry *e)
{
    fsdir *d = ctx;
    struct fuse_entry_param ep;
    fs_entry_param(d->j->f, d->snap, e->idx, e, &ep);
    return add_dirent(d->j, d->buf, d->used, (char *)e->name, &ep.attr, &ep, (off_t)k + 3) ? 0 : 1;
}

/* Left out: its siblings are listed, lookups of it fail. */
static int readdir_damaged(void *ctx, uint64_t k, const catalog_entry *e)
{
    fsdir *d = ctx;
    fs *f = d->j->f;
    fs_log_once(f, "catalog", f->snaps[d->snap].name, "snapshot %s: directory %llu: entry %llu: %s",
                f->snaps[d->snap].name, (unsigned long long)d->dir, (unsigned long long)e->idx,
                rh_strerror(e->damage));
    return 0;
}

static int readdir_snapshot(job *j, size_t snap, uint64_t dir, char *buf, size_t *used)
{
    static const catalog_walk_ops ops = { .child = readdir_child, .damaged = readdir_damaged };
    catalog *c = j->f->snaps[snap].c;
    catalog_entry *e;
    int r = catalog_get(c, dir, &e); /* a directory whose own entry cannot be read is not listed */
    if (r < 0)
        return r;
    catalog_entry_free(e);
    fsdir d = { j, snap, dir, buf, used };
    r = catalog_walk_dir(c, dir, (uint64_t)j->off - 2, &ops, &d);
    if (r < 0)
        return *used ? 0 : r; /* what was listed so far is still right */
    return 0;
}

static void do_readdir(job *j)
{
    fs *f = j->f;
    size_t snap = 0;
    uint64_t dir = 0;
    bool root_list = j->ino == FS_INO_ROOT && f->single < 0;
    if (!root_list && !fs_decode(f, j->ino, &snap, &dir)) {
        fuse_reply_err(j->req, ENOENT);
        return;
    }
    char *buf = xmalloc(j->size);
    size_t used = 0;
    /* "." and ".." come first; in readdirplus their entry param has ino 0, so they are no lookups. */
    struct fuse_entry_param none;
    memset(&none, 0, sizeof(none));
    int r = 0;
    for (; j->off < 2; j->off++) {
        struct stat st = { .st_ino = j->ino, .st_mode = S_IFDIR };
        if (!add_dirent(j, buf, &used, j->off == 0 ? "." : "..", &st, &none, j->off + 1))
            goto reply;
    }
    if (root_list)
        readdir_root(j, buf, &used);
    else
        r = readdir_snapshot(j, snap, dir, buf, &used);
reply:
    if (r < 0) {
        fs_log_once(f, "catalog", f->snaps[snap].name, "snapshot %s: directory %llu: %s", f->snaps[snap].name,
                    (unsigned long long)dir, rh_strerror(r));
        fuse_reply_err(j->req, to_errno(r));
    } else {
        fuse_reply_buf(j->req, buf, used);
    }
    free(buf);
}

static void do_xattr(job *j)
{
    fs *f = j->f;
    size_t snap;
    uint64_t idx;
    catalog_entry *e = NULL;
    if (fs_decode(f, j->ino, &snap, &idx) && !(e = get_entry(j, snap, idx)))
        return;
    uint32_t count = e ? e->xattr_count : 0;
    if (j->op == OP_LISTXATTR) {
        bytebuf names = { 0 };
        for (uint32_t i = 0; i < count; i++)
            buf_append(&names, e->xattrs[i].name, e->xattrs[i].name_len + 1u);
        daemon_reply_xattr(j->req, j->size, names.data, names.len);
        buf_free(&names);
    } else {
        const catalog_xattr *x = NULL;
        for (uint32_t i = 0; i < count && !x; i++)
            if (!strcmp((char *)e->xattrs[i].name, j->name))
                x = &e->xattrs[i];
        if (!x)
            fuse_reply_err(j->req, ENODATA);
        else
            daemon_reply_xattr(j->req, j->size, x->value, x->value_len);
    }
    catalog_entry_free(e);
}

static void do_lseek(job *j)
{
    uint64_t at;
    int r = j->off < 0 ? -ENXIO : streammap_seek(j->of->map, (uint64_t)j->off, j->whence, &at);
    if (r < 0)
        fuse_reply_err(j->req, -r);
    else
        fuse_reply_lseek(j->req, (off_t)at);
}

static void job_work(uv_work_t *w)
{
    job *j = container_of(w, job, work);
    switch (j->op) {
    case OP_LOOKUP:
        do_lookup(j);
        break;
    case OP_GETATTR:
        do_getattr(j);
        break;
    case OP_READLINK:
        do_readlink(j);
        break;
    case OP_READ:
        do_read(j);
        break;
    case OP_READDIR:
        do_readdir(j);
        break;
    case OP_GETXATTR:
    case OP_LISTXATTR:
        do_xattr(j);
        break;
    case OP_LSEEK:
        do_lseek(j);
        break;
    case OP_PREFETCH:
        do_prefetch(j);
        break;
    }
}

/* Runs on the loop thread after a job: starts read-ahead planned by a read, drops references. */
static void job_done(uv_work_t *w, int status)
{
    job *j = container_of(w, job, work);
    if (j->op == OP_READ && j->ra_to > j->ra_from) {
        job *p = new_job(OP_PREFETCH, j->ino);
        p->f = j->f;
        p->of = j->of;
        p->ra_from = j->ra_from;
        p->ra_to = j->ra_to;
        p->of->refs++;
        if (uv_queue_work(j->f->loop, &p->work, job_work, job_done) < 0) {
            p->of->refs--;
            free(p);
        }
    }
    if (j->op == OP_PREFETCH || j->op == OP_READ || j->op == OP_LSEEK)
        ofile_put(&j->f->files, j->of);
    free(j->name);
    free(j);
}

/* ---- the handlers (loop thread) ---- */

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
    daemon_conn_init(conn);
    fs *f = userdata;
    f->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
    f->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    job *j = new_job(OP_LOOKUP, parent);
    j->name = xstrdup(name);
    queue(req, j);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    queue(req, new_job(OP_GETATTR, ino));
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino) { queue(req, new_job(OP_READLINK, ino)); }

/*
 * Nothing is kept per open: reads find their file by inode (ofile.h). Where the kernel supports it, the
 * first OPEN is answered ENOSYS, after which the kernel opens files itself (keeping their page cache)
 * and sends no OPEN or RELEASE again; the "ro" mount refuses writable opens before they get here.
 */
static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (fs_of(req)->no_open) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fi->keep_cache = 1; /* a snapshot never changes: keep the page cache across opens */
    fuse_reply_open(req, fi);
}

/* Queues job j on regular file j->ino, holding a reference to its record (file_of) until job_done. */
static void queue_on_file(fuse_req_t req, job *j)
{
    int e = file_of(fs_of(req), j->ino, &j->of);
    if (e) {
        fuse_reply_err(req, e);
        free(j);
        return;
    }
    queue(req, j);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    job *j = new_job(OP_READ, ino);
    j->size = size;
    j->off = off;
    queue_on_file(req, j);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

/*
 * Directories likewise: after OPENDIR answers ENOSYS, the kernel opens directories itself, with their
 * listings cached (its default for "no opendir" is keep_cache and cache_readdir, what we would ask
 * for), and sends no OPENDIR or RELEASEDIR again. A tree of 400 directories costs 800 requests less.
 */
static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (fs_of(req)->no_opendir) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fi->cache_readdir = 1; /* directories never change */
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
    job *j = new_job(OP_READDIR, ino);
    j->size = size;
    j->off = off;
    j->plus = plus;
    queue(req, j);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    readdir_common(req, ino, size, off, true);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    job *j = new_job(OP_GETXATTR, ino);
    j->name = xstrdup(name);
    j->size = size;
    queue(req, j);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    job *j = new_job(OP_LISTXATTR, ino);
    j->size = size;
    queue(req, j);
}

static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL); /* SEEK_SET/CUR/END never reach the file system */
        return;
    }
    job *j = new_job(OP_LSEEK, ino);
    j->off = off;
    j->whence = whence;
    queue_on_file(req, j);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv = { .f_bsize = 65536, .f_frsize = 65536, .f_namemax = 255, .f_flag = ST_RDONLY };
    fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_init,
    .lookup = fs_lookup,
    .getattr = fs_getattr,
    .readlink = fs_readlink,
    .open = fs_open,
    .read = fs_read,
    .release = fs_release,
    .opendir = fs_opendir,
    .readdir = fs_readdir,
    .readdirplus = fs_readdirplus,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .lseek = fs_lseek,
    .statfs = fs_statfs,
    READONLY_OPS,
};

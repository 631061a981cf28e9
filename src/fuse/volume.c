/*
 * volume.c — the FUSE operations of a volume mount (see volume.h), over the volume, its inodes and its
 * chunk stores (volnode.h).
 *
 * Every request that touches the volume is a job on libuv's thread pool, which replies exactly once:
 * the volume may be another FUSE file system (ntfs-3g) or a slow disk, and the loop thread must go on
 * receiving meanwhile. What needs no I/O is answered on the loop thread, which saves two thread
 * hand-offs: FORGET, OPEN and RELEASE, and a read of a stub whose chunks are all in the cache.
 *
 * Nothing is kept per open, as in a store's mount (ofile.h): where the kernel supports it, OPEN is
 * answered ENOSYS once and the kernel sends no OPEN or RELEASE again, so a small file read through the
 * mount costs one request, or none when the read-ahead across its directory pushed its pages
 * (voldirahead.h). Reads find their file's record by the volume's (device, inode): for a plain file, a
 * descriptor open for reading; for a stub, its whole-file stream map, whose chunks are read through its
 * chunk store's cache (cache.h), with read-ahead for a sequential reader. A file's first read or
 * lseek makes the record on the pool (I/O); the loop thread keeps the table.
 *
 * Damage is reported once per file (daemon_log): a stub whose reparse data cannot be parsed, or whose
 * stream map cannot be read, fails every read with EIO; a chunk that cannot be read fails that read
 * with EIO. The rest of the mount goes on.
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
#include "fuse/ofile.h"
#include "fuse/pagepush.h"
#include "fuse/readonly.h"
#include "fuse/voldirahead.h"
#include "fuse/volmetahead.h"
#include "fuse/volnode.h"
#include "read/reader.h"
#include "store/container.h"
#include "store/format.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#define VOL_TIMEOUT 86400.0

typedef struct vdir {
    vhandle h; /* on the volume's list from the open's reply to its release */
    DIR *dp;
    off_t offset;          /* of the next entry readdir gives */
    struct dirent *entry;  /* read but not yet sent, or NULL */
    off_t end;             /* the offset at which the listing was found to end, or -1; atomic */
    char **subdirs;        /* READDIRPLUS: the subdirectories listed so far, from the start */
    size_t nsubdirs, subdirs_cap;
    bool from_start;       /* the listing so far began at the directory's start */
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
    struct plusbatch *batch; /* readdirplus: its lookups, shared with helpers */
    char **subdirs;        /* readdirplus that found the end: the listing's subdirectories, for */
    size_t nsubdirs;       /* the metadata read-ahead (job_done), with a hold of the directory */
    ofile *of;             /* read, lseek, prefetch: the file's record with a reference (job_done drops
                            * it); NULL for a read or lseek of a file with none yet: the job makes it */
    bool made;             /* the job made of: job_done puts it in the table */
    size_t ra_from, ra_to; /* a read's planned read-ahead, queued by job_done */
};

static volume *vol_of(fuse_req_t req) { return fuse_req_userdata(req); }

static void vdir_free(vhandle *h)
{
    vdir *d = container_of(h, vdir, h);
    for (size_t i = 0; i < d->nsubdirs; i++)
        free(d->subdirs[i]);
    free(d->subdirs);
    closedir(d->dp);
    free(d);
}

/* ---- jobs ---- */

static void prefetch_run(vjob *j);
static void read_run(vjob *j);
struct plusbatch;
static void plusbatch_put(struct plusbatch *b);

static void job_work(uv_work_t *w)
{
    vjob *j = container_of(w, vjob, work);
    j->run(j);
}

/* The loop thread, after a job: puts a record the job made in the table (or, when another job was
 * faster, uses that one), queues the read-ahead a read planned, drops the job's reference. */
static void job_done(uv_work_t *w, int status)
{
    vjob *j = container_of(w, vjob, work);
    ofile_table *t = &j->v->files;
    if (j->made) {
        ofile *had = ofile_find(t, j->of->dev, j->of->ino);
        if (had) { /* the same file, the same map: the planned read-ahead holds for it too */
            ofile_discard(j->of);
            j->of = had;
        } else {
            ofile_insert(t, j->of);
        }
    }
    if (j->run == read_run && j->ra_to > j->ra_from) {
        vjob *p = xcalloc(1, sizeof(*p));
        *p = (vjob){ .v = j->v, .run = prefetch_run, .of = j->of, .ra_from = j->ra_from, .ra_to = j->ra_to };
        j->of = NULL; /* the prefetch holds the reference now */
        if (uv_queue_work(p->v->loop, &p->work, job_work, job_done) < 0) {
            ofile_put(t, p->of);
            free(p);
        }
    }
    if (j->of)
        ofile_put(t, j->of);
    if (j->subdirs) {
        vnode *dir = vnode_of(j->v, j->ino);
        volmetahead_listed(j->v->metahead, dir, j->subdirs, j->nsubdirs);
        vnode_forget(j->v, dir, 1);
    }
    free(j->name);
    free(j);
}

/* Queues job j on the pool; false when it cannot be (the request is answered EIO and j freed). */
static bool queue(fuse_req_t req, vjob *j, void (*run)(vjob *j))
{
    j->v = vol_of(req);
    j->req = req;
    j->run = run;
    if (uv_queue_work(j->v->loop, &j->work, job_work, job_done) < 0) {
        fuse_reply_err(req, EIO);
        if (j->of)
            ofile_put(&j->v->files, j->of);
        if (j->batch)
            plusbatch_put(j->batch);
        free(j->name);
        free(j);
        return false;
    }
    return true;
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

/* The chunk store of a stub's record. */
static vstore *store_of(const ofile *of) { return of->store; }

/* A stub's map, ready to read: its store, its stream maps joined, runs of zeros as holes. */
static int load_stub(volume *v, vnode *n, ofile **ret)
{
    if (n->kind == VN_BADSTUB) {
        _cleanup_(freep) char *path = vnode_path(v, n);
        daemon_log_once(&v->log, "reparse", path, "%s: damaged dedup reparse data (%s): %s at byte %zu", path,
                        n->xattr, n->why, n->why_at);
        return EIO;
    }
    vstore *st;
    int err = vstore_of(v, n, &st);
    if (err)
        return err;
    streammap *m;
    int r = reader_load_stub(st->s, n->reparse, n->reparse_len, &m);
    if (r < 0) {
        _cleanup_(freep) char *path = vnode_path(v, n);
        daemon_log_once(&v->log, "stream map", path, "%s: its stream map in %s: %s", path, st->path,
                        rh_strerror(r));
        return r == -ENOMEM ? ENOMEM : EIO;
    }
    vstore_zero_holes(st, m);
    *ret = ofile_new(n->dev, n->ino, m);
    (*ret)->store = st;
    return 0;
}

/* Pool: makes the record of regular file n (not yet in the table): a stub's map, a plain file's
 * descriptor. 0, or a positive errno for the reply. */
static int load_file(volume *v, vnode *n, ofile **ret)
{
    if (n->kind != VN_PLAIN)
        return load_stub(v, n, ret);
    int fd = vnode_get_fd(n);
    if (fd < 0)
        return -fd;
    char proc[32];
    vnode_proc_path(fd, proc);
    int rfd = open(proc, O_RDONLY | O_CLOEXEC);
    int err = rfd < 0 ? errno : 0;
    vnode_put_fd(n, fd);
    if (err)
        return err;
    *ret = ofile_new(n->dev, n->ino, NULL);
    (*ret)->fd = rfd;
    return 0;
}

/* Pool: gives a read or lseek job the record of its file, making it when the loop thread found none.
 * False when it cannot be made: the request is answered. */
static bool job_file(vjob *j)
{
    if (j->of)
        return true;
    int err = load_file(j->v, vnode_of(j->v, j->ino), &j->of);
    if (err) {
        fuse_reply_err(j->req, err);
        return false;
    }
    j->made = true;
    return true;
}

static char *file_name(void *ud)
{
    const vjob *j = ud;
    return vnode_path(j->v, vnode_of(j->v, j->ino)); /* the kernel keeps the inode while it reads */
}

/* After a read of n bytes of a stub is answered: plans the read-ahead of a sequential reader (queued by
 * job_done), or gives a random one the rest of the chunks it fetched (pagepush.h). */
static void after_stub_read(vjob *j, size_t n)
{
    ofile *of = j->of;
    pthread_mutex_lock(&of->lock); /* the job's reference keeps of, also after the reply */
    bool sequential = cache_plan_readahead(of->map, (uint64_t)j->off, n, j->v->cfg.readahead,
                                           cache_readahead_bytes(store_of(of)->cache), &of->next_off,
                                           &of->ra_upto, &j->ra_from, &j->ra_to);
    pthread_mutex_unlock(&of->lock);
    /* A random reader gets the rest of the chunks it fetched whole into the page cache; a sequential
     * one asks for it next, and the kernel's readahead is on its way (pagepush.h). */
    if (!sequential)
        pusher_push_around(j->v->pusher, store_of(of)->cache, j->ino, of->map, (uint64_t)j->off, n);
}

/* A read of a stub through its store's chunk cache, replied without a copy (writev). */
static void read_stub(vjob *j)
{
    vstore *st = store_of(j->of);
    cache_iov io;
    if (daemon_read_map(j->req, &j->v->log, st->cache, st->s, st->path, j->of->map, (uint64_t)j->off, j->size,
                        file_name, j, &io) < 0)
        return;
    size_t n = io.bytes;
    cache_iov_release(st->cache, &io);
    after_stub_read(j, n);
}

static void read_run(vjob *j)
{
    if (!job_file(j))
        return;
    if (j->of->map) {
        read_stub(j);
        return;
    }
    uint8_t *buf = mem_alloc(j->size ? j->size : 1);
    ssize_t n = buf ? pread(j->of->fd, buf, j->size, j->off) : -1;
    if (!buf)
        errno = ENOMEM;
    if (n < 0)
        fuse_reply_err(j->req, errno);
    else
        fuse_reply_buf(j->req, (char *)buf, (size_t)n);
    free(buf);
}

static void prefetch_run(vjob *j) { cache_prefetch(store_of(j->of)->cache, j->of->map, j->ra_from, j->ra_to); }

static void lseek_run(vjob *j)
{
    if (!job_file(j))
        return;
    ofile *of = j->of;
    if (!of->map) {
        off_t at = lseek(of->fd, j->off, j->whence);
        if (at < 0)
            fuse_reply_err(j->req, errno);
        else
            fuse_reply_lseek(j->req, at);
        return;
    }
    uint64_t at;
    int r = j->off < 0 ? -ENXIO : streammap_seek(of->map, (uint64_t)j->off, j->whence, &at);
    if (r < 0)
        fuse_reply_err(j->req, -r);
    else
        fuse_reply_lseek(j->req, (off_t)at);
}

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
    *d = (vdir){ .h = { &d->h, &d->h, vdir_free }, .dp = dp, .end = -1 };
    struct fuse_file_info fi = { .fh = (uintptr_t)d, .keep_cache = 1, .cache_readdir = 1 };
    volume_handle_add(j->v, &d->h);
    if (fuse_reply_open(j->req, &fi) != 0) {
        volume_handle_remove(j->v, &d->h);
        vdir_free(&d->h);
    }
}

static bool is_dots(const char *name) { return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])); }

/* READDIR: the entries that fit, with their types; the kernel looks up what it needs. */
static void readdir_plain(vjob *j, vdir *d, char *buf, size_t *used, int *err)
{
    for (;;) {
        if (!d->entry) {
            errno = 0;
            if (!(d->entry = readdir(d->dp))) {
                *err = errno;
                return;
            }
        }
        const struct dirent *de = d->entry;
        struct stat st = { .st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type) };
        size_t room = j->size - *used;
        if (fuse_add_direntry(j->req, NULL, 0, de->d_name, NULL, 0) > room)
            return;
        *used += fuse_add_direntry(j->req, buf + *used, room, de->d_name, &st, de->d_off);
        d->offset = de->d_off;
        d->entry = NULL;
    }
}

/*
 * READDIRPLUS looks up every entry it sends but . and .., and on a volume a lookup is I/O: the inode,
 * and for a file its reparse data, which ext4 keeps in a block of its own. One after the other, that
 * is one random read at a time. So the job that answers the request lists the entries that fit, and it
 * and the helpers queued with it (PLUS_HELPERS jobs) look them up side by side, each taking the next
 * entry not yet taken. Whoever runs first lists. The job waits only for lookups that have been taken,
 * i.e. for threads that are running, never for a helper still in the queue: a helper that starts late
 * finds nothing left and ends. Only the lister touches the vdir, and before the reply.
 */
#define PLUS_HELPERS 3

typedef struct plusent {
    char *name;
    ino_t ino;
    unsigned char type;
    off_t next;                  /* the listing's offset after it */
    struct fuse_entry_param e;   /* its lookup, counted for the kernel */
    int err;
} plusent;

typedef struct plusbatch {
    pthread_mutex_t lock;
    pthread_cond_t done;      /* every entry taken has been looked up */
    unsigned refs;            /* the job and its helpers; protected by lock */
    volume *v;
    vnode *dir;
    vjob *job;                /* whose vdir and buffer size the lister uses (before the reply only) */
    bool listed;              /* protected by lock, as is everything below until listed */
    bool at_end;              /* the listing reached the directory's end */
    int list_err;
    plusent *ents;
    size_t n, taken, finished;
} plusbatch;

typedef struct plushelper {
    uv_work_t work;
    plusbatch *b;
} plushelper;

static void plusbatch_put(plusbatch *b)
{
    pthread_mutex_lock(&b->lock);
    bool last = --b->refs == 0;
    pthread_mutex_unlock(&b->lock);
    if (!last)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->ents[i].name);
    free(b->ents);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->done);
    free(b);
}

/* Lists the entries that fit the job's buffer into b (under b->lock, before the reply). */
static void plus_list_locked(plusbatch *b)
{
    vjob *j = b->job;
    vdir *d = (vdir *)(uintptr_t)j->fh;
    size_t used = 0, cap = 0;
    if (j->off != d->offset) {
        seekdir(d->dp, j->off);
        d->entry = NULL;
        d->offset = j->off;
    }
    if (j->off == 0) { /* from the start: the metadata read-ahead gets this listing's subdirectories */
        for (size_t i = 0; i < d->nsubdirs; i++)
            free(d->subdirs[i]);
        d->nsubdirs = 0;
        d->from_start = true;
    }
    for (;;) {
        if (!d->entry) {
            errno = 0;
            if (!(d->entry = readdir(d->dp))) {
                if (!(b->list_err = errno)) { /* stored before the reply, so before the next request */
                    __atomic_store_n(&d->end, b->n ? b->ents[b->n - 1].next : d->offset, __ATOMIC_RELAXED);
                    b->at_end = true;
                }
                break;
            }
        }
        const struct dirent *de = d->entry;
        size_t need = fuse_add_direntry_plus(j->req, NULL, 0, de->d_name, NULL, 0);
        if (need > j->size - used)
            break; /* d->entry stays for the next request */
        used += need;
        if (b->n == cap)
            b->ents = xrealloc(b->ents, (cap = cap ? 2 * cap : 32) * sizeof(*b->ents));
        b->ents[b->n++] = (plusent){ .name = xstrdup(de->d_name), .ino = de->d_ino, .type = de->d_type,
                                     .next = de->d_off };
        d->entry = NULL;
    }
    b->listed = true;
}

/* The job's and every helper's part: lists if no one has, then looks up entries until none is left. */
static void plus_take_part(plusbatch *b)
{
    pthread_mutex_lock(&b->lock);
    if (!b->listed)
        plus_list_locked(b);
    while (b->taken < b->n) {
        plusent *pe = &b->ents[b->taken++];
        pthread_mutex_unlock(&b->lock);
        pe->e = (struct fuse_entry_param){ .attr = { .st_ino = pe->ino, .st_mode = (mode_t)DTTOIF(pe->type) } };
        pe->err = is_dots(pe->name) ? 0 : vnode_lookup(b->v, b->dir, pe->name, &pe->e);
        pthread_mutex_lock(&b->lock);
        if (++b->finished == b->n)
            pthread_cond_broadcast(&b->done);
    }
    pthread_mutex_unlock(&b->lock);
}

static void plus_helper_work(uv_work_t *w) { plus_take_part(container_of(w, plushelper, work)->b); }

static void plus_helper_done(uv_work_t *w, int status)
{
    plushelper *h = container_of(w, plushelper, work);
    plusbatch_put(h->b);
    free(h);
}

/* READDIRPLUS: the entries that fit, each looked up; an entry gone since it was listed is left out. */
static void readdir_plus(vjob *j, vdir *d, char *buf, size_t *used, int *err)
{
    plusbatch *b = j->batch;
    plus_take_part(b);
    pthread_mutex_lock(&b->lock);
    while (b->finished < b->n)
        pthread_cond_wait(&b->done, &b->lock);
    pthread_mutex_unlock(&b->lock);
    size_t i = 0;
    for (; i < b->n; i++) {
        plusent *pe = &b->ents[i];
        if (pe->err == ENOENT)
            continue;
        if (pe->err) {
            *err = pe->err;
            break;
        }
        *used += fuse_add_direntry_plus(j->req, buf + *used, j->size - *used, pe->name, &pe->e, pe->next);
        if (d->from_start && S_ISDIR(pe->e.attr.st_mode) && !is_dots(pe->name)) {
            if (d->nsubdirs == d->subdirs_cap)
                d->subdirs = xrealloc(d->subdirs, (d->subdirs_cap = d->subdirs_cap ? 2 * d->subdirs_cap : 16) *
                                                      sizeof(*d->subdirs));
            d->subdirs[d->nsubdirs++] = xstrdup(pe->name);
        }
    }
    if (i < b->n) { /* stopped at entry i: the next request starts there, found again by offset */
        for (size_t k = i + 1; k < b->n; k++)
            if (!b->ents[k].err && !is_dots(b->ents[k].name))
                vnode_forget(j->v, vnode_of(j->v, b->ents[k].e.ino), 1);
        d->offset = -1;
        d->entry = NULL;
    } else {
        if (b->n)
            d->offset = b->ents[b->n - 1].next;
        if (!*err)
            *err = b->list_err;
        if (b->at_end && d->from_start && d->nsubdirs && j->v->metahead) { /* to job_done */
            j->subdirs = d->subdirs;
            j->nsubdirs = d->nsubdirs;
            d->subdirs = NULL;
            d->nsubdirs = d->subdirs_cap = 0;
            vnode_hold(j->v, vnode_of(j->v, j->ino));
        }
        if (b->at_end)
            d->from_start = false;
    }
}

static void readdir_run(vjob *j)
{
    vdir *d = (vdir *)(uintptr_t)j->fh;
    char *buf = xmalloc(j->size ? j->size : 1);
    size_t used = 0;
    int err = 0;
    if (j->plus) {
        readdir_plus(j, d, buf, &used, &err);
    } else {
        if (j->off != d->offset) {
            seekdir(d->dp, j->off);
            d->entry = NULL;
            d->offset = j->off;
        }
        readdir_plain(j, d, buf, &used, &err);
    }
    if (err && used == 0)
        fuse_reply_err(j->req, err);
    else
        fuse_reply_buf(j->req, buf, used); /* what was listed so far is right */
    free(buf);
    if (j->batch)
        plusbatch_put(j->batch);
}

static void releasedir_run(vjob *j)
{
    vdir *d = (vdir *)(uintptr_t)j->fh;
    volume_handle_remove(j->v, &d->h);
    vdir_free(&d->h);
    fuse_reply_err(j->req, 0);
}

/* ---- the handlers (loop thread) ---- */

static void vol_init(void *userdata, struct fuse_conn_info *conn)
{
    volume *v = userdata;
    daemon_conn_init(conn);
    v->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
    /* Every listing is a READDIRPLUS, not only a directory's first: the lookups it makes side by side
     * (readdir_plus) save the kernel a LOOKUP per entry of a large directory, one at a time, when a
     * reader then looks at each entry (ls -l, find, tar, cp -r). */
    conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
}

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

/* Read-only opens only; nothing is kept per open (see the top of this file). */
static void vol_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (vol_of(req)->no_open) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fi->keep_cache = 1; /* the volume does not change */
    fuse_reply_open(req, fi);
}

/*
 * Gives job j, a read or lseek of regular file j->ino, its file's record: the table's, or one made of
 * the map that the read-ahead across its directory fetched, or none (the job makes it on the pool). The
 * file's first read, the one that finds no record, moves that read-ahead on (voldirahead.h).
 */
static void find_file(volume *v, vjob *j)
{
    vnode *n = vnode_of(v, j->ino);
    if ((j->of = ofile_find(&v->files, n->dev, n->ino)))
        return;
    vstore *st;
    streammap *m = n->kind == VN_STUB ? voldirahead_take_map(v->dirahead, n, &st) : NULL;
    if (m) {
        j->of = ofile_new(n->dev, n->ino, m);
        j->of->store = st;
        ofile_insert(&v->files, j->of);
    }
    if (v->dirahead) {
        vnode_hold(v, n);
        voldirahead_reading(v->dirahead, n);
    }
}

static void vol_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    volume *v = vol_of(req);
    vjob *j = new_job(ino);
    *j = (vjob){ .v = v, .req = req, .run = read_run, .ino = ino, .size = size, .off = off };
    find_file(v, j);
    ofile *of = j->of;
    cache_iov io;
    if (of && of->map && cache_peek_iov(store_of(of)->cache, of->map, (uint64_t)off, size, &io) == 0) {
        /* Every chunk it needs is decompressed in the cache (and now held): answered here, without a
         * hand-off and without I/O. */
        daemon_reply_iov(req, &io);
        size_t n = io.bytes;
        cache_iov_release(store_of(of)->cache, &io);
        after_stub_read(j, n);
        job_done(&j->work, 0);
        return;
    }
    queue(req, j, read_run);
}

static void vol_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    volume *v = vol_of(req);
    vjob *j = new_job(ino);
    j->off = off;
    j->whence = whence;
    find_file(v, j);
    queue(req, j, lseek_run);
}

static void vol_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

static void vol_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    queue(req, new_job(ino), opendir_run);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                           bool plus)
{
    volume *v = vol_of(req);
    vjob *j = new_job(ino);
    j->size = size;
    j->off = off;
    j->fh = fi->fh;
    j->plus = plus;
    /* The request that only finds the end (the last of every listing) gets no helpers. */
    vdir *d = (vdir *)(uintptr_t)fi->fh;
    unsigned helpers = off == __atomic_load_n(&d->end, __ATOMIC_RELAXED) ? 0 : PLUS_HELPERS;
    plusbatch *b = NULL;
    if (plus) { /* the job's reference and its helpers', taken now: the job may end before they start */
        b = xcalloc(1, sizeof(*b));
        *b = (plusbatch){ .refs = 1 + helpers, .v = v, .dir = vnode_of(v, ino), .job = j };
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->done, NULL);
        j->batch = b;
    }
    if (!queue(req, j, readdir_run)) { /* answered EIO: no helper may list for it */
        for (unsigned k = 0; b && k < helpers; k++)
            plusbatch_put(b);
        return;
    }
    for (unsigned k = 0; b && k < helpers; k++) {
        plushelper *h = xcalloc(1, sizeof(*h));
        h->b = b;
        if (uv_queue_work(v->loop, &h->work, plus_helper_work, plus_helper_done) < 0) {
            plusbatch_put(b);
            free(h);
        }
    }
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
        if (c->dir_readahead)
            volmetahead_new(&v, &v.metahead);
        ofile_table_init(&v.files);
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
        volmetahead_free(v.metahead);
        ofile_table_free(&v.files);
    }
    volume_close(&v); /* the loop, if it ran, has run dry: no job is left */
    return status;
}

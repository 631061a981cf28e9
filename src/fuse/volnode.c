/*
 * volnode.c — the volume, its inodes and its chunk stores, beneath volume.c's operations (see volnode.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/volnode.h"
#include "store/format.h"
#include "store/format_windows.h"
#include "windows/winreparse.h"
#include "windows/winvolume.h"

#define VOL_TIMEOUT 86400.0 /* the volume does not change while mounted (volume.h) */


/* ---- xattrs and paths ---- */

void vnode_proc_path(int fd, char out[32]) { snprintf(out, 32, "/proc/self/fd/%d", fd); }

int vnode_get_fd(const vnode *n)
{
    if (n->fd >= 0)
        return n->fd;
    int fd = openat(n->parent->fd, n->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

void vnode_put_fd(const vnode *n, int fd)
{
    if (fd >= 0 && fd != n->fd)
        close(fd);
}

char *vnode_path(const volume *v, const vnode *n)
{
    char proc[32], buf[PATH_MAX + 1];
    int fd = vnode_get_fd(n);
    if (fd < 0)
        return xstrdup("?");
    vnode_proc_path(fd, proc);
    ssize_t len = readlink(proc, buf, PATH_MAX);
    vnode_put_fd(n, fd);
    if (len < 0)
        return xstrdup("?");
    buf[len] = 0;
    size_t root = strlen(v->root_path);
    if (strncmp(buf, v->root_path, root) == 0 && buf[root] == '/')
        return xstrdup(buf + root + 1);
    return xstrdup(strncmp(buf, v->root_path, root) == 0 && !buf[root] ? "." : buf);
}

/* ---- stubs ---- */

/* Reads n's dedup reparse data, if it has any, and sets what it says. A stub whose reparse data cannot
 * be read is shown as a damaged one (its opens fail with EIO, said once), not as the empty file or
 * link that ntfs-3g shows. */
static void read_stub(vnode *n, int fd, mode_t mode)
{
    if (!S_ISREG(mode) && !S_ISLNK(mode))
        return;
    char proc[32];
    vnode_proc_path(fd, proc);
    int r = winvolume_read_reparse(proc, true, &n->reparse, &n->reparse_len, &n->xattr);
    if (r == 0 || r == -EACCES) /* not a stub; or not ours to read, which its open will say */
        return;
    n->kind = VN_BADSTUB;
    winreparse rp;
    if (r < 0) {
        n->xattr = winvolume_reparse_xattrs[0];
        n->why = strerror(-r);
    } else if (n->reparse_len > WINSTORE_STUB_MAX) {
        n->why = "larger than NTFS allows";
    } else if ((r = winreparse_parse(n->reparse, n->reparse_len, &rp)) == 0) {
        n->kind = VN_STUB;
        n->size = rp.size;
        memcpy(n->guid, rp.guid, sizeof(n->guid));
        winreparse_free(&rp);
    } else {
        n->why = r == RH_ECORRUPT ? rp.why : rh_strerror(r);
        n->why_at = r == RH_ECORRUPT ? rp.why_at : 0;
    }
}

/*
 * What the mount shows for n, whose own attributes are in *st. A stub's data is in the chunk store: it
 * has no blocks of its own (Windows says "size on disk: 0" of an optimized file), whatever ntfs-3g and
 * its dedup plugin, if one is installed, report. So cp and tar ask lseek where its data is, and keep
 * its holes.
 */
static void show(const vnode *n, struct stat *st)
{
    if (n->kind == VN_PLAIN)
        return;
    if (S_ISLNK(st->st_mode)) /* ntfs-3g's stand-in for a file it cannot read: a link, mode 0777 */
        st->st_mode = S_IFREG | 0444;
    if (n->kind == VN_STUB) {
        st->st_size = (off_t)n->size;
        st->st_blocks = 0;
    }
}

int vnode_stat(const vnode *n, struct stat *st)
{
    int fd = vnode_get_fd(n);
    if (fd < 0)
        return -fd;
    int err = fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? errno : 0;
    vnode_put_fd(n, fd);
    if (!err)
        show(n, st);
    return err;
}

/* ---- the inode table ---- */

static size_t bucket(const volume *v, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 32 | (uint64_t)dev >> 32)) * UINT64_C(0x9e3779b97f4a7c15);
    return (size_t)(h >> 32) & (v->nbuckets - 1);
}

static vnode *find_locked(const volume *v, dev_t dev, ino_t ino)
{
    for (vnode *n = v->buckets[bucket(v, dev, ino)]; n; n = n->hnext)
        if (n->dev == dev && n->ino == ino)
            return n;
    return NULL;
}

/* Doubles the table when it holds twice as many records as buckets. */
static void grow_locked(volume *v)
{
    if (v->count < 2 * v->nbuckets)
        return;
    vnode **old = v->buckets;
    size_t nold = v->nbuckets;
    vnode **fresh = mem_calloc(2 * nold, sizeof(*fresh));
    if (!fresh)
        return; /* longer chains, no failure */
    v->buckets = fresh;
    v->nbuckets = 2 * nold;
    for (size_t b = 0; b < nold; b++)
        for (vnode *n = old[b], *next; n; n = next) {
            next = n->hnext;
            size_t nb = bucket(v, n->dev, n->ino);
            n->hnext = v->buckets[nb];
            v->buckets[nb] = n;
        }
    free(old);
}

static void insert_locked(volume *v, vnode *n)
{
    size_t b = bucket(v, n->dev, n->ino);
    n->hnext = v->buckets[b];
    v->buckets[b] = n;
    v->count++;
    grow_locked(v);
}

static void vnode_free(vnode *n)
{
    if (n->fd >= 0)
        close(n->fd);
    free(n->name);
    free(n->reparse);
    free(n);
}

/* Takes n out of the table when neither the kernel nor a child needs it any more, and so its parent
 * after it; returns the records to free (chained through hnext). */
static vnode *unlink_unused_locked(volume *v, vnode *n)
{
    vnode *dead = NULL;
    while (n && n != v->root && n->nlookup == 0 && n->kids == 0) {
        vnode **p = &v->buckets[bucket(v, n->dev, n->ino)];
        while (*p != n)
            p = &(*p)->hnext;
        *p = n->hnext;
        v->count--;
        vnode *parent = n->parent;
        n->hnext = dead;
        dead = n;
        if (parent)
            parent->kids--;
        n = parent;
    }
    return dead;
}

/* The record of the file open at fd (attributes st), found as name in parent, with one more lookup;
 * takes fd over: a directory's record keeps it, anything else is reopened from parent when needed. */
static vnode *get_record(volume *v, vnode *parent, const char *name, int fd, const struct stat *st)
{
    pthread_mutex_lock(&v->lock);
    vnode *n = find_locked(v, st->st_dev, st->st_ino);
    if (n)
        n->nlookup++;
    pthread_mutex_unlock(&v->lock);
    if (n) {
        close(fd);
        return n;
    }
    /* A new record: its stub is read without the lock (that is I/O), then it is inserted unless another
     * thread was faster. */
    vnode *fresh = xcalloc(1, sizeof(*fresh));
    *fresh = (vnode){ .dev = st->st_dev, .ino = st->st_ino, .fd = -1, .nlookup = 1 };
    read_stub(fresh, fd, st->st_mode);
    if (S_ISDIR(st->st_mode)) {
        fresh->fd = fd;
    } else {
        close(fd);
        fresh->parent = parent;
        fresh->name = xstrdup(name);
    }
    pthread_mutex_lock(&v->lock);
    if ((n = find_locked(v, st->st_dev, st->st_ino))) {
        n->nlookup++;
    } else {
        insert_locked(v, n = fresh);
        if (n->parent)
            n->parent->kids++;
    }
    pthread_mutex_unlock(&v->lock);
    if (n != fresh)
        vnode_free(fresh);
    return n;
}

vnode *vnode_of(volume *v, fuse_ino_t ino) { return ino == FUSE_ROOT_ID ? v->root : (vnode *)(uintptr_t)ino; }

fuse_ino_t vnode_id(const volume *v, const vnode *n) { return n == v->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n; }

int vnode_lookup(volume *v, vnode *parent, const char *name, struct fuse_entry_param *e)
{
    if (parent == v->root && !strcmp(name, ".."))
        name = "."; /* never above the volume's root */
    int fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        int err = errno;
        close(fd);
        return err;
    }
    vnode *n = get_record(v, parent, name, fd, &st);
    show(n, &st);
    memset(e, 0, sizeof(*e));
    e->ino = vnode_id(v, n);
    e->attr = st;
    e->attr_timeout = e->entry_timeout = VOL_TIMEOUT;
    return 0;
}

vnode *vnode_find(volume *v, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&v->lock);
    vnode *n = find_locked(v, dev, ino);
    if (n)
        n->nlookup++;
    pthread_mutex_unlock(&v->lock);
    return n;
}

void vnode_hold(volume *v, vnode *n)
{
    pthread_mutex_lock(&v->lock);
    n->nlookup++;
    pthread_mutex_unlock(&v->lock);
}

void vnode_forget(volume *v, vnode *n, uint64_t count)
{
    pthread_mutex_lock(&v->lock);
    n->nlookup -= MIN(count, n->nlookup);
    vnode *dead = unlink_unused_locked(v, n);
    pthread_mutex_unlock(&v->lock);
    for (vnode *next; dead; dead = next) {
        next = dead->hnext;
        vnode_free(dead);
    }
}

/* ---- chunk stores ---- */

/* Opens the chunk store at st->path (NULL: none found) into st; st->err says why not. */
static void open_store(volume *v, vstore *st)
{
    static const uint8_t zeros[VSTORE_ZERO_CHUNK];
    int r = st->path ? rh_store_open(st->path, NULL, NULL, &st->s) : -ENOENT;
    if (r == 0 && st->s->fmt != &store_format_windows)
        r = RH_ENOTSTORE;
    if (r == 0) {
        rh_store_set_log(st->s, daemon_store_message, &v->log);
        r = chunk_cache_new(st->s, v->cfg.cache_size, v->cfg.verify, &st->cache);
    }
    if (r == 0)
        r = store_digest(st->s, zeros, sizeof(zeros), st->zero_digest);
    st->err = r;
}

int vstore_of(volume *v, const vnode *n, vstore **ret)
{
    pthread_mutex_lock(&v->stores_lock);
    vstore *st = v->only;
    for (size_t i = 0; !st && i < v->nstores; i++)
        if (!memcmp(v->stores[i]->guid, n->guid, sizeof(n->guid)))
            st = v->stores[i];
    if (!st) {
        st = xcalloc(1, sizeof(*st));
        memcpy(st->guid, n->guid, sizeof(st->guid));
        st->path = winvolume_store_path(v->store_dir, n->guid);
        open_store(v, st);
        v->stores = xrealloc(v->stores, (v->nstores + 1) * sizeof(*v->stores));
        v->stores[v->nstores++] = st;
    }
    pthread_mutex_unlock(&v->stores_lock);
    if (st->err) {
        _cleanup_(freep) char *path = vnode_path(v, n);
        char name[40];
        winvolume_guid_name(n->guid, name);
        if (st->path)
            daemon_log_once(&v->log, name, path, "%s: its chunk store %s: %s", path, st->path, rh_strerror(st->err));
        else
            daemon_log_once(&v->log, name, path, "%s: its chunk store %s.ddp is not in %s/%s", path, name,
                            v->root_path, WINVOLUME_CHUNKSTORES);
        return EIO;
    }
    *ret = st;
    return 0;
}

void vstore_zero_holes(const vstore *st, streammap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        streammap_entry *e = &m->e[i];
        if (!e->hole && e->length == VSTORE_ZERO_CHUNK && !memcmp(e->digest, st->zero_digest, HASH_LEN)) {
            e->hole = true;
            memset(e->digest, 0, HASH_LEN); /* as holes have (streammap.h) */
        }
    }
}

static void store_free(vstore *st)
{
    if (!st)
        return;
    chunk_cache_free(st->cache);
    rh_store_close(st->s);
    free(st->path);
    free(st);
}

/* ---- the volume ---- */

int volume_open(volume *v, const volume_config *c)
{
    *v = (volume){ .cfg = *c, .root_path = xstrdup(c->root), .nbuckets = 4096 };
    v->buckets = xcalloc(v->nbuckets, sizeof(*v->buckets));
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_init(&v->stores_lock, NULL);
    pthread_mutex_init(&v->handles_lock, NULL);
    v->handles.prev = v->handles.next = &v->handles;
    daemon_log_init(&v->log);
    int fd = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstatat(fd, "", &st, AT_EMPTY_PATH) < 0) {
        int err = errno;
        fprintf(stderr, "rehydratefs: %s: %s\n", c->root, strerror(err));
        if (fd >= 0)
            close(fd);
        return -err;
    }
    v->root = xcalloc(1, sizeof(*v->root));
    *v->root = (vnode){ .dev = st.st_dev, .ino = st.st_ino, .fd = fd, .nlookup = 1 };
    insert_locked(v, v->root);
    if (c->chunkstore) { /* every stub's store: it must open now */
        v->only = xcalloc(1, sizeof(*v->only));
        v->only->path = xstrdup(c->chunkstore);
        open_store(v, v->only);
        if (v->only->err) {
            fprintf(stderr, "rehydratefs: -o chunkstore=%s: %s\n", c->chunkstore,
                    v->only->err == RH_ENOTSTORE ? "not a Windows dedup chunk store (no Data/ or Stream/)"
                                                 : rh_strerror(v->only->err));
            return v->only->err;
        }
        return 0;
    }
    /* The chunk-store directory, its names in any case: a volume without one is no dedup volume. */
    char *dir = winvolume_chunkstore_dir(c->root);
    if (!dir) {
        fprintf(stderr,
                "rehydratefs: %s: neither a rehydrate store (no %s) nor a Windows dedup volume (no %s); "
                "name a chunk store with -o chunkstore=DIR\n",
                c->root, STORE_IDENTITY_FILE, WINVOLUME_CHUNKSTORES);
        return RH_ENOTSTORE;
    }
    v->store_dir = dir;
    return 0;
}

void volume_handle_add(volume *v, vhandle *h)
{
    pthread_mutex_lock(&v->handles_lock);
    h->prev = &v->handles;
    h->next = v->handles.next;
    h->next->prev = h;
    v->handles.next = h;
    pthread_mutex_unlock(&v->handles_lock);
}

void volume_handle_remove(volume *v, vhandle *h)
{
    pthread_mutex_lock(&v->handles_lock);
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->prev = h->next = h;
    pthread_mutex_unlock(&v->handles_lock);
}

void volume_close(volume *v)
{
    while (v->handles.next && v->handles.next != &v->handles) {
        vhandle *h = v->handles.next;
        volume_handle_remove(v, h);
        h->free(h);
    }
    for (size_t b = 0; v->buckets && b < v->nbuckets; b++)
        for (vnode *n = v->buckets[b], *next; n; n = next) {
            next = n->hnext;
            vnode_free(n);
        }
    free(v->buckets);
    for (size_t i = 0; i < v->nstores; i++)
        store_free(v->stores[i]);
    free(v->stores);
    store_free(v->only);
    free(v->store_dir);
    free(v->root_path);
    daemon_log_free(&v->log);
    pthread_mutex_destroy(&v->lock);
    pthread_mutex_destroy(&v->stores_lock);
    pthread_mutex_destroy(&v->handles_lock);
}

/*
 * local.c — the built-in callbacks of a local store directory (rh_store_open with ops == NULL): reads
 * with pread through a small cache of open files, previews as posix_fadvise(WILLNEED). See store.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "store/store.h"

/*
 * Store files never change once committed, so the local callbacks keep the last FD_CACHE_SIZE of them
 * open instead of opening a container for every chunk read. Slots are reference counted: a slot in use
 * by a reader (the daemon reads from many threads) is never closed under it.
 */
#define FD_CACHE_SIZE 32

struct fd_cache {
    pthread_mutex_t lock; /* protects the slots */
    struct fd_slot {
        char *path;
        int fd;
        unsigned refs;
        uint64_t used; /* LRU clock */
    } slot[FD_CACHE_SIZE];
    uint64_t clock;
};

static struct fd_slot *fd_acquire(struct fd_cache *c, int rootfd, const char *path, int *ret_err)
{
    pthread_mutex_lock(&c->lock);
    struct fd_slot *victim = NULL;
    for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
        struct fd_slot *sl = &c->slot[i];
        if (sl->path && !strcmp(sl->path, path)) {
            sl->refs++;
            sl->used = ++c->clock;
            pthread_mutex_unlock(&c->lock);
            return sl;
        }
        if (sl->refs == 0 && (!victim || !sl->path || (victim->path && sl->used < victim->used)))
            victim = sl;
    }
    pthread_mutex_unlock(&c->lock);
    int fd = openat(rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *ret_err = -errno;
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    /* Another reader may have taken the victim meanwhile: only a still unused slot is recycled. */
    if (!victim || victim->refs) {
        victim = NULL;
        for (size_t i = 0; i < FD_CACHE_SIZE && !victim; i++)
            if (c->slot[i].refs == 0)
                victim = &c->slot[i];
    }
    /* Every slot busy, or no memory to remember the path: read through a private fd, signalled by
     * returning NULL with the fd in *ret_err. */
    char *copy = victim ? mem_strdup(path) : NULL;
    if (!copy) {
        pthread_mutex_unlock(&c->lock);
        *ret_err = fd;
        return NULL;
    }
    if (victim->path) {
        close(victim->fd);
        free(victim->path);
    }
    victim->path = copy;
    victim->fd = fd;
    victim->refs = 1;
    victim->used = ++c->clock;
    pthread_mutex_unlock(&c->lock);
    return victim;
}

static void fd_release(struct fd_cache *c, struct fd_slot *sl)
{
    pthread_mutex_lock(&c->lock);
    sl->refs--;
    pthread_mutex_unlock(&c->lock);
}

/* An fd for the store file `path`: a cache slot's (*ret_slot set) or, when every slot is busy, a private
 * one (*ret_slot NULL); or a negative errno. Give it back with local_put. */
static int local_get(rh_store *s, const char *path, struct fd_slot **ret_slot)
{
    int r = 0;
    *ret_slot = fd_acquire(s->fds, s->rootfd, path, &r);
    return *ret_slot ? (*ret_slot)->fd : r;
}

static void local_put(rh_store *s, struct fd_slot *sl, int fd)
{
    if (sl)
        fd_release(s->fds, sl);
    else
        close(fd);
}

static int local_read(void *ctx, const char *path, uint64_t offset, void *buf, size_t size)
{
    rh_store *s = ctx;
    struct fd_slot *sl;
    int fd = local_get(s, path, &sl);
    if (fd < 0)
        return fd;
    int r = fs_pread_full(fd, buf, size, offset);
    local_put(s, sl, fd);
    return r;
}

/* The restore engine announces all the reads of a container before the first: ask the kernel to start
 * them all, so that the disk works while the engine decompresses what it read before. */
static int local_preview(void *ctx, const char *path, size_t n, const rh_extent *extents)
{
    rh_store *s = ctx;
    struct fd_slot *sl;
    int fd = local_get(s, path, &sl);
    if (fd < 0)
        return 0; /* a prefetch is only a hint: errors are left to the reads */
    for (size_t i = 0; i < n; i++)
        posix_fadvise(fd, (off_t)extents[i].offset, (off_t)extents[i].length, POSIX_FADV_WILLNEED);
    local_put(s, sl, fd);
    return 0;
}

static const rh_store_ops local_ops = {
    .version = RH_STORE_OPS_VERSION,
    .read = local_read,
    .preview = local_preview,
};

int store_local_init(rh_store *s)
{
    if (!(s->fds = mem_calloc(1, sizeof(*s->fds))))
        return -ENOMEM;
    pthread_mutex_init(&s->fds->lock, NULL);
    s->ops = &local_ops;
    s->ctx = s;
    return 0;
}

void store_local_close(rh_store *s)
{
    if (!s->fds)
        return;
    for (size_t i = 0; i < FD_CACHE_SIZE; i++)
        if (s->fds->slot[i].path) {
            close(s->fds->slot[i].fd);
            free(s->fds->slot[i].path);
        }
    pthread_mutex_destroy(&s->fds->lock);
    free(s->fds);
    s->fds = NULL;
}

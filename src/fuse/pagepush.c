/*
 * pagepush.c — the page pusher (see pagepush.h): one thread, a ring of pending pushes.
 */
#include "config.h"

#include <errno.h>

#include "common/util.h"
#include "fuse/pagepush.h"

#define PUSH_QUEUE 32

typedef struct push {
    fuse_ino_t ino;
    uint64_t chunk_off, from, len;
    chunk_ref *ref;
} push;

struct pusher {
    struct fuse_session *se;
    chunk_cache *cache;
    pthread_t thread;
    pthread_mutex_t lock; /* protects everything below */
    pthread_cond_t wake;
    push q[PUSH_QUEUE];
    size_t head, n;
    bool stop, busy;
};

static void *run(void *arg)
{
    pusher *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->n && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        if (!p->n)
            break; /* stopped and drained */
        push x = p->q[p->head];
        p->head = (p->head + 1) % PUSH_QUEUE;
        p->n--;
        p->busy = true;
        pthread_mutex_unlock(&p->lock);
        struct fuse_bufvec bv = FUSE_BUFVEC_INIT(x.len);
        bv.buf[0].mem = (void *)(chunk_data(x.ref) + x.from);
        /* Fails harmlessly when the kernel has forgotten the inode (ENOENT) or the mount is gone. */
        fuse_lowlevel_notify_store(p->se, x.ino, (off_t)(x.chunk_off + x.from), &bv, 0);
        chunk_release(p->cache, x.ref);
        pthread_mutex_lock(&p->lock);
        p->busy = false;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int pusher_start(struct fuse_session *se, chunk_cache *c, pusher **ret)
{
    pusher *p = xcalloc(1, sizeof(*p));
    p->se = se;
    p->cache = c;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    int r = pthread_create(&p->thread, NULL, run, p);
    if (r != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return -r;
    }
    *ret = p;
    return 0;
}

void pusher_push(pusher *p, fuse_ino_t ino, uint64_t chunk_off, chunk_ref *ref, uint64_t from, uint64_t len)
{
    if (len == 0) {
        chunk_release(p->cache, ref);
        return;
    }
    pthread_mutex_lock(&p->lock);
    bool queued = !p->stop && p->n < PUSH_QUEUE;
    if (queued) {
        p->q[(p->head + p->n) % PUSH_QUEUE] = (push){ ino, chunk_off, from, len, ref };
        p->n++;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    if (!queued)
        chunk_release(p->cache, ref);
}

bool pusher_idle(pusher *p)
{
    if (!p)
        return true;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    while (p->n) {
        chunk_release(p->cache, p->q[p->head].ref);
        p->head = (p->head + 1) % PUSH_QUEUE;
        p->n--;
    }
    pthread_cond_signal(&p->wake);
    bool idle = !p->busy;
    pthread_mutex_unlock(&p->lock);
    return idle;
}

void pusher_free(pusher *p)
{
    if (!p)
        return;
    pusher_idle(p);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/*
 * pagepush.c — the page pusher (see pagepush.h): one thread, a ring of pending pushes.
 */
#include "config.h"

#include <errno.h>

#include "common/util.h"
#include "fuse/pagepush.h"

/* Pushes queued at most, and bytes: the queue pins its chunks in memory until they are pushed. */
#define PUSH_QUEUE 256
#define PUSH_QUEUE_BYTES (8u << 20)

typedef struct push {
    chunk_cache *cache; /* the pieces' */
    fuse_ino_t ino;
    uint64_t off, bytes;
    size_t n;
    push_piece piece[PUSH_MAX_PIECES];
} push;

struct pusher {
    struct fuse_session *se;
    pthread_t thread;
    pthread_mutex_t lock; /* protects everything below */
    pthread_cond_t wake;
    push q[PUSH_QUEUE];
    size_t head, n;
    uint64_t queued_bytes;
    bool stop, busy;
};

static void release_pieces(const push *x)
{
    for (size_t i = 0; i < x->n; i++)
        chunk_release(x->cache, x->piece[i].ref);
}

static void *run(void *arg)
{
    pusher *p = arg;
    /* Room for PUSH_MAX_PIECES buffers (fuse_bufvec ends in buf[1]); with more than one, libfuse copies
     * them into one buffer for the write. */
    struct fuse_bufvec *bv = xmalloc(sizeof(*bv) + (PUSH_MAX_PIECES - 1) * sizeof(bv->buf[0]));
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->n && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        if (!p->n)
            break; /* stopped and drained */
        push x = p->q[p->head];
        p->head = (p->head + 1) % PUSH_QUEUE;
        p->n--;
        p->queued_bytes -= x.bytes;
        p->busy = true;
        pthread_mutex_unlock(&p->lock);
        *bv = (struct fuse_bufvec){ .count = x.n };
        for (size_t i = 0; i < x.n; i++)
            bv->buf[i] = (struct fuse_buf){ .size = x.piece[i].len,
                                            .mem = (void *)(chunk_data(x.piece[i].ref) + x.piece[i].from) };
        /* Fails harmlessly when the kernel has forgotten the inode (ENOENT) or the mount is gone. */
        fuse_lowlevel_notify_store(p->se, x.ino, (off_t)x.off, bv, 0);
        release_pieces(&x);
        pthread_mutex_lock(&p->lock);
        p->busy = false;
    }
    pthread_mutex_unlock(&p->lock);
    free(bv);
    return NULL;
}

int pusher_start(struct fuse_session *se, pusher **ret)
{
    pusher *p = xcalloc(1, sizeof(*p));
    p->se = se;
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

void pusher_push_pieces(pusher *p, chunk_cache *c, fuse_ino_t ino, uint64_t off, const push_piece *pieces,
                        size_t n)
{
    push x = { .cache = c, .ino = ino, .off = off, .n = n };
    for (size_t i = 0; i < n; i++) {
        x.piece[i] = pieces[i];
        x.bytes += pieces[i].len;
    }
    pthread_mutex_lock(&p->lock);
    bool queued = !p->stop && p->n < PUSH_QUEUE && p->queued_bytes + x.bytes <= PUSH_QUEUE_BYTES;
    if (queued) {
        p->q[(p->head + p->n) % PUSH_QUEUE] = x;
        p->n++;
        p->queued_bytes += x.bytes;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    if (!queued)
        release_pieces(&x);
}

void pusher_push(pusher *p, chunk_cache *c, fuse_ino_t ino, uint64_t chunk_off, chunk_ref *ref, uint64_t from,
                 uint64_t len)
{
    if (len == 0) {
        chunk_release(c, ref);
        return;
    }
    push_piece one = { ref, from, len };
    pusher_push_pieces(p, c, ino, chunk_off + from, &one, 1);
}

void pusher_push_around(pusher *p, chunk_cache *c, fuse_ino_t ino, const streammap *m, uint64_t off, size_t n)
{
    if (!p || n == 0)
        return;
    size_t first = streammap_find(m, off), last = streammap_find(m, off + n - 1);
    uint64_t end = off + n;
    const streammap_entry *a = &m->e[first], *z = &m->e[last];
    chunk_ref *ref;
    if (!a->hole && off > m->start[first] && (ref = chunk_peek(c, a->digest, a->length)))
        pusher_push(p, c, ino, m->start[first], ref, 0, off - m->start[first]);
    uint64_t last_end = m->start[last] + z->length;
    if (!z->hole && last_end > end && (ref = chunk_peek(c, z->digest, z->length)))
        pusher_push(p, c, ino, m->start[last], ref, end - m->start[last], last_end - end);
}

bool pusher_idle(pusher *p)
{
    if (!p)
        return true;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    while (p->n) {
        release_pieces(&p->q[p->head]);
        p->head = (p->head + 1) % PUSH_QUEUE;
        p->n--;
    }
    p->queued_bytes = 0;
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

void pusher_push_head(pusher *p, chunk_cache *c, fuse_ino_t ino, const streammap *m, uint64_t bytes)
{
    push_piece run[PUSH_MAX_PIECES];
    size_t n = 0, k; /* run holds the n chunks before entry k */
    for (k = 0; k < m->n && m->start[k] < bytes; k++) {
        const streammap_entry *e = &m->e[k];
        chunk_ref *ref = NULL;
        if (!e->hole && chunk_get_entry(c, m, k, &ref, NULL) < 0)
            ref = NULL; /* damage ends the run like a hole */
        if (n > 0 && (!ref || n == PUSH_MAX_PIECES)) {
            pusher_push_pieces(p, c, ino, m->start[k - n], run, n);
            n = 0;
        }
        if (ref && p)
            run[n++] = (push_piece){ ref, 0, e->length };
        else if (ref)
            chunk_release(c, ref);
    }
    if (n > 0)
        pusher_push_pieces(p, c, ino, m->start[k - n], run, n);
}

/*
 * voldirahead.c — read-ahead across the files of a directory of a volume mount (see voldirahead.h).
 *
 * The loop thread queues a fetch at every first read of a file, at most MAX_JOBS fetches in flight: the
 * files fetched ahead are read from the page cache without a request, so a first read that reaches the
 * daemon is one the window did not cover. A fetch job finds where the file read stands in
 * the listing (listing the directory first when it is a new one), claims the entries after it that no
 * fetch claimed yet, and fetches the stubs among them. The listing and the claims are shared by the
 * jobs under the handle's lock; the fetching itself runs without it.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/dirahead.h"
#include "fuse/pagepush.h"
#include "fuse/voldirahead.h"
#include "read/reader.h"

#define MAX_JOBS 4
#define MAX_BATCH 64 /* entries one fetch claims at most; the window is cut to it */
#define STASH_MAX 64 /* maps kept for first reads at most */

typedef struct dent {
    char *name;
    ino_t ino;
} dent;

struct voldirahead {
    volume *v;
    unsigned files;
    /* loop thread only */
    unsigned jobs;  /* fetches queued and not done */
    /* shared by the fetches */
    pthread_mutex_t lock;
    vnode *listed; /* the directory ents lists, held (vnode_hold); NULL: none */
    dent *ents;
    size_t n;
    size_t pos;  /* one past where the last search found its name: the next search starts there */
    size_t next; /* the first entry no fetch has claimed */
    /* The maps fetched, each with its stub (held), for the open that follows: a ring, the oldest
     * replaced first; under stash_lock, which is held only briefly (the loop thread takes it). */
    pthread_mutex_t stash_lock;
    struct stashed {
        vnode *n;
        vstore *st;
        streammap *m;
    } stash[STASH_MAX];
    size_t stash_at;
};

typedef struct fetch {
    uv_work_t work;
    voldirahead *d;
    vnode *first; /* held */
} fetch;

void voldirahead_new(volume *v, unsigned files, voldirahead **ret)
{
    size_t fit = MIN(v->cfg.cache_size / 4 / DIRAHEAD_FILE_BYTES, MAX_BATCH);
    if (files > fit)
        files = (unsigned)fit;
    if (files == 0) {
        *ret = NULL;
        return;
    }
    voldirahead *d = xcalloc(1, sizeof(*d));
    d->v = v;
    d->files = files;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->stash_lock, NULL);
    *ret = d;
}

/* Forgets the listing; under d->lock (or with no fetch left). */
static void drop_listing(voldirahead *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ents[i].name);
    free(d->ents);
    d->ents = NULL;
    d->n = d->pos = d->next = 0;
    if (d->listed)
        vnode_forget(d->v, d->listed, 1);
    d->listed = NULL;
}

void voldirahead_free(voldirahead *d)
{
    if (!d)
        return;
    drop_listing(d);
    for (size_t i = 0; i < STASH_MAX; i++)
        if (d->stash[i].n) {
            streammap_free(d->stash[i].m);
            vnode_forget(d->v, d->stash[i].n, 1);
        }
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->stash_lock);
    free(d);
}

/* Lists directory dir into d (under d->lock): its entries but . and .., in the volume's order. */
static void list_locked(voldirahead *d, vnode *dir)
{
    drop_listing(d);
    int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        if (fd >= 0)
            close(fd);
        return;
    }
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (d->n == cap)
            d->ents = xrealloc(d->ents, (cap = cap ? 2 * cap : 64) * sizeof(*d->ents));
        d->ents[d->n++] = (dent){ xstrdup(e->d_name), e->d_ino };
    }
    closedir(dp);
    vnode_hold(d->v, dir);
    d->listed = dir;
}

/* Where name stands in the listing, searched from where the last search stopped; n when it is not there. */
static size_t find_locked(voldirahead *d, const char *name)
{
    for (size_t k = 0; k < d->n; k++) {
        size_t i = (d->pos + k) % d->n;
        if (!strcmp(d->ents[i].name, name))
            return i;
    }
    return d->n;
}

/* Keeps map m of stub n in store st (n held: the stash takes the hold over) for n's open. */
static void stash_put(voldirahead *d, vnode *n, vstore *st, streammap *m)
{
    pthread_mutex_lock(&d->stash_lock);
    struct stashed old = d->stash[d->stash_at];
    d->stash[d->stash_at] = (struct stashed){ n, st, m };
    d->stash_at = (d->stash_at + 1) % STASH_MAX;
    pthread_mutex_unlock(&d->stash_lock);
    if (old.n) {
        streammap_free(old.m);
        vnode_forget(d->v, old.n, 1);
    }
}

streammap *voldirahead_take_map(voldirahead *d, const vnode *n, vstore **ret_st)
{
    if (!d)
        return NULL;
    struct stashed got = { NULL, NULL, NULL };
    pthread_mutex_lock(&d->stash_lock);
    for (size_t i = 0; i < STASH_MAX; i++)
        if (d->stash[i].n == n) {
            got = d->stash[i];
            d->stash[i] = (struct stashed){ NULL, NULL, NULL };
            break;
        }
    pthread_mutex_unlock(&d->stash_lock);
    if (got.n)
        vnode_forget(d->v, got.n, 1); /* the caller's request holds n */
    *ret_st = got.st;
    return got.m;
}

/* Reads stub n's map, fetches its head into the caches and stashes the map with n's hold; drops the hold
 * when it fails. */
static void fetch_stub(voldirahead *d, vnode *n)
{
    vstore *st;
    streammap *m;
    if (vstore_of(d->v, n, &st) != 0 || reader_load_stub(st->s, n->reparse, n->reparse_len, &m) < 0) {
        vnode_forget(d->v, n, 1);
        return;
    }
    vstore_zero_holes(st, m);
    pusher_push_head(d->v->pusher, st->cache, vnode_id(d->v, n), m, DIRAHEAD_FILE_BYTES);
    stash_put(d, n, st, m);
}

static void fetch_work(uv_work_t *w)
{
    fetch *f = (fetch *)w;
    voldirahead *d = f->d;
    vnode *first = f->first, *dir = first->parent;
    vnode *todo[MAX_BATCH];
    size_t ntodo = 0;
    pthread_mutex_lock(&d->lock);
    if (d->listed != dir)
        list_locked(d, dir);
    size_t at = find_locked(d, first->name);
    if (at < d->n) {
        if (at + 1 < d->pos)
            d->next = at + 1; /* the reader went back (a second pass): claim again from there */
        d->pos = at + 1;
        size_t from = MAX(d->next, at + 1), to = MIN(d->n, at + 1 + d->files);
        to = MIN(to, from + ARRAY_SIZE(todo));
        for (size_t i = from; i < to; i++) {
            vnode *k = vnode_find(d->v, dir->dev, d->ents[i].ino);
            if (k && k->kind == VN_STUB)
                todo[ntodo++] = k;
            else if (k)
                vnode_forget(d->v, k, 1);
        }
        if (to > d->next)
            d->next = to;
    }
    pthread_mutex_unlock(&d->lock);
    for (size_t i = 0; i < ntodo; i++)
        fetch_stub(d, todo[i]);
}

static void fetch_done(uv_work_t *w, int status)
{
    fetch *f = (fetch *)w;
    f->d->jobs--;
    vnode_forget(f->d->v, f->first, 1);
    free(f);
}

void voldirahead_reading(voldirahead *d, vnode *n)
{
    if (!n->parent || d->jobs >= MAX_JOBS) { /* the next first read tries again */
        vnode_forget(d->v, n, 1);
        return;
    }
    fetch *f = xcalloc(1, sizeof(*f));
    f->d = d;
    f->first = n;
    if (uv_queue_work(d->v->loop, &f->work, fetch_work, fetch_done) < 0) {
        vnode_forget(d->v, n, 1);
        free(f);
        return;
    }
    d->jobs++;
}

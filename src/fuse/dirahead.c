/*
 * dirahead.c — read-ahead across the files of a directory (see dirahead.h).
 *
 * The handle follows one directory at a time: the one whose file was opened last. Its state lives on
 * the loop thread (first reads are answered there), so it needs no lock; the fetches run on the pool
 * and touch only the chunk cache, the catalog, the store and the pusher, which are thread-safe. A
 * fetch that fails is dropped without a word: the reader's own read of that file meets the same damage
 * and reports it with the path.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"
#include "fuse/dirahead.h"
#include "fuse/pagepush.h"
#include "read/reader.h"

/* Fetch jobs in flight at most: a reader that jumps between directories cannot flood the pool. */
#define DIRAHEAD_MAX_JOBS 4

struct dirahead {
    dirahead_config cfg; /* cfg.files: the window, files after the one opened */
    /* The directory followed, loop thread only. */
    bool valid;
    size_t snap;
    uint64_t parent;
    uint64_t end;  /* one past its last child's entry index */
    uint64_t next; /* its first child not yet queued */
    unsigned jobs; /* fetch jobs queued and not done */
};

typedef struct fetch {
    uv_work_t work;
    dirahead *d;
    size_t snap;
    catalog *c;
    uint64_t from, to; /* entry indices */
} fetch;

void dirahead_new(const dirahead_config *cfg, dirahead **ret)
{
    size_t fit = cfg->cache_capacity / 4 / DIRAHEAD_FILE_BYTES;
    unsigned files = cfg->files > fit ? (unsigned)fit : cfg->files;
    if (files == 0) {
        *ret = NULL;
        return;
    }
    dirahead *d = xcalloc(1, sizeof(*d));
    d->cfg = *cfg;
    d->cfg.files = files;
    *ret = d;
}

void dirahead_free(dirahead *d) { free(d); }

/* Puts the first DIRAHEAD_FILE_BYTES of a file's data into the chunk cache and the page cache. */
static void fetch_file(dirahead *d, fuse_ino_t ino, const catalog_entry *e)
{
    streammap *m;
    if (reader_load_file_map(d->cfg.s, e, &m) < 0) /* checked against e: no push past its end */
        return;
    pusher_push_head(d->cfg.pusher, d->cfg.cache, ino, m, DIRAHEAD_FILE_BYTES);
    streammap_free(m);
}

static void fetch_work(uv_work_t *w)
{
    fetch *f = (fetch *)w;
    for (uint64_t i = f->from; i < f->to; i++) {
        catalog_entry *e;
        if (catalog_get(f->c, i, &e) < 0)
            return;
        if (e->type == CT_REG && e->has_stream && e->size > 0)
            fetch_file(f->d, fs_entry_ino(f->d->cfg.single, f->snap, i, e), e);
        catalog_entry_free(e);
    }
}

static void fetch_done(uv_work_t *w, int status)
{
    fetch *f = (fetch *)w;
    f->d->jobs--;
    free(f);
}

/* Starts following the directory of entry e, or returns false when its entry cannot be read. */
static bool follow(dirahead *d, size_t snap, catalog *c, uint64_t idx, const catalog_entry *e)
{
    catalog_entry *p;
    if (catalog_get(c, e->parent, &p) < 0)
        return false;
    d->valid = true;
    d->snap = snap;
    d->parent = e->parent;
    d->end = p->first_child + p->child_count;
    d->next = idx + 1;
    catalog_entry_free(p);
    return true;
}

void dirahead_opened(dirahead *d, size_t snap, catalog *c, uint64_t idx, const catalog_entry *e)
{
    if (!d || e->parent == CATALOG_NONE)
        return;
    if ((!d->valid || d->snap != snap || d->parent != e->parent) && !follow(d, snap, c, idx, e))
        return;
    if (d->next <= idx) /* the reader went past what was queued */
        d->next = idx + 1;
    uint64_t want = MIN(d->end, idx + 1 + d->cfg.files);
    if (d->next >= want)
        return;
    /* Refill half a window at a time (fewer, larger jobs), and the directory's tail when it is near. */
    if ((want - d->next) * 2 < d->cfg.files && want < d->end)
        return;
    if (d->jobs >= DIRAHEAD_MAX_JOBS)
        return;
    fetch *f = xcalloc(1, sizeof(*f));
    f->d = d;
    f->snap = snap;
    f->c = c;
    f->from = d->next;
    f->to = want;
    if (uv_queue_work(d->cfg.loop, &f->work, fetch_work, fetch_done) < 0) {
        free(f);
        return;
    }
    d->jobs++;
    d->next = want;
}

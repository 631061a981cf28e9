/*
 * ofile.c — the table of files being read, by inode (see ofile.h): a chained hash table plus a list of
 * the idle records, most recently used first.
 */
#include "config.h"

#include <unistd.h>

#include "common/util.h"
#include "fuse/ofile.h"

#define OFILE_BUCKETS 1024 /* a power of two; records in use plus OFILE_IDLE_MAX idle ones */

static size_t bucket_of(const ofile_table *t, uint64_t dev, uint64_t ino)
{
    return (size_t)(((ino ^ dev * UINT64_C(0xff51afd7ed558ccd)) * UINT64_C(0x9e3779b97f4a7c15)) >> 32) &
           (t->nbuckets - 1);
}

static size_t entries_of(const ofile *of) { return of->map ? of->map->n : 0; }

void ofile_table_init(ofile_table *t)
{
    *t = (ofile_table){ .nbuckets = OFILE_BUCKETS };
    t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
}

static void ofile_free(ofile *of)
{
    if (of->fd >= 0)
        close(of->fd);
    streammap_free(of->map);
    pthread_mutex_destroy(&of->lock);
    free(of);
}

void ofile_table_free(ofile_table *t)
{
    if (!t->buckets)
        return;
    for (size_t b = 0; b < t->nbuckets; b++)
        for (ofile *of = t->buckets[b], *next; of; of = next) {
            next = of->hnext;
            ofile_free(of);
        }
    free(t->buckets);
    *t = (ofile_table){ 0 };
}

static void idle_unlink(ofile_table *t, ofile *of)
{
    if (of->lru_prev)
        of->lru_prev->lru_next = of->lru_next;
    else
        t->idle_head = of->lru_next;
    if (of->lru_next)
        of->lru_next->lru_prev = of->lru_prev;
    else
        t->idle_tail = of->lru_prev;
    of->lru_prev = of->lru_next = NULL;
    t->nidle--;
    t->idle_entries -= entries_of(of);
}

static void remove_from_hash(ofile_table *t, ofile *of)
{
    ofile **p = &t->buckets[bucket_of(t, of->dev, of->ino)];
    while (*p != of)
        p = &(*p)->hnext;
    *p = of->hnext;
}

ofile *ofile_find(ofile_table *t, uint64_t dev, uint64_t ino)
{
    for (ofile *of = t->buckets[bucket_of(t, dev, ino)]; of; of = of->hnext) {
        if (of->ino != ino || of->dev != dev)
            continue;
        if (of->refs++ == 0)
            idle_unlink(t, of);
        return of;
    }
    return NULL;
}

ofile *ofile_new(uint64_t dev, uint64_t ino, streammap *map)
{
    ofile *of = xcalloc(1, sizeof(*of));
    of->dev = dev;
    of->ino = ino;
    of->map = map;
    of->fd = -1;
    of->refs = 1;
    pthread_mutex_init(&of->lock, NULL);
    return of;
}

void ofile_insert(ofile_table *t, ofile *of)
{
    size_t b = bucket_of(t, of->dev, of->ino);
    of->hnext = t->buckets[b];
    t->buckets[b] = of;
}

void ofile_discard(ofile *of) { ofile_free(of); }

ofile *ofile_add(ofile_table *t, uint64_t ino, size_t snap, uint64_t entry, streammap *map)
{
    ofile *of = ofile_new(0, ino, map);
    of->snap = snap;
    of->entry = entry;
    ofile_insert(t, of);
    return of;
}

void ofile_put(ofile_table *t, ofile *of)
{
    if (--of->refs > 0)
        return;
    of->lru_next = t->idle_head;
    if (t->idle_head)
        t->idle_head->lru_prev = of;
    else
        t->idle_tail = of;
    t->idle_head = of;
    t->nidle++;
    t->idle_entries += entries_of(of);
    while (t->nidle > OFILE_IDLE_MAX || (t->idle_entries > OFILE_IDLE_ENTRIES && t->nidle > 1)) {
        ofile *old = t->idle_tail;
        idle_unlink(t, old);
        remove_from_hash(t, old);
        ofile_free(old);
    }
}

/*
 * ofile.h — the files being read through the mount, one record per inode: the file's stream map (found
 * once, then searched by offset) and where its sequential reader is.
 *
 * The daemon answers the kernel's OPEN with ENOSYS where the kernel supports that (FUSE "no open"):
 * the kernel then opens every file itself, with its page cache kept, and sends neither OPEN nor
 * RELEASE again. A small file read through the mount costs one request (READ) instead of three. Reads
 * therefore name a file by inode only, and this table finds its record, loading it on the first read.
 *
 * A Windows volume's mount (volume.c) keeps its files here too, found by the volume's device and
 * inode: a stub's map and chunk store, or a plain file's descriptor (which the idle bound bounds too).
 *
 * Records are reference counted by the jobs that use them. Idle records stay cached, most recently
 * used first, up to OFILE_IDLE_MAX records and OFILE_IDLE_ENTRIES stream map entries in all (a 1 GiB
 * file's map has about 16k entries), so memory stays bounded however many files are read. The table
 * is used on the loop thread only; a record's own fields say what else may touch them.
 */
#ifndef RH_FUSE_OFILE_H
#define RH_FUSE_OFILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/streammap.h"

#define OFILE_IDLE_MAX 64
#define OFILE_IDLE_ENTRIES (256u << 10)

typedef struct ofile {
    uint64_t ino;      /* the key: the mount's inode (a store's), or with dev the volume's (a volume's) */
    uint64_t dev;      /* 0 in a store's mount */
    size_t snap;       /* a store's: the file's snapshot and catalog entry */
    uint64_t entry;
    streammap *map;    /* immutable once loaded: any thread may read it while it holds a reference; NULL
                        * for a volume's plain file, which is read through fd */
    int fd;            /* a volume's plain file, open for reading (closed with the record); else -1 */
    void *store;       /* a volume's stub: its chunk store (vstore, volnode.h) */
    pthread_mutex_t lock;
    uint64_t next_off; /* where a sequential reader's next read starts; protected by lock */
    size_t ra_upto;    /* stream map entries below this were queued for read-ahead; protected by lock */
    unsigned refs;     /* jobs using the record; loop thread only */
    struct ofile *hnext;           /* hash chain; loop thread only */
    struct ofile *lru_prev, *lru_next; /* in the idle list while refs == 0; loop thread only */
} ofile;

typedef struct ofile_table {
    ofile **buckets;
    size_t nbuckets;
    ofile *idle_head, *idle_tail; /* most recently used first */
    size_t nidle, idle_entries;
} ofile_table;

void ofile_table_init(ofile_table *t);
/* Frees every record; no job may be running. */
void ofile_table_free(ofile_table *t);
/* The record of inode ino (of device dev) with one more reference, or NULL when there is none. */
ofile *ofile_find(ofile_table *t, uint64_t dev, uint64_t ino);
static inline ofile *ofile_get(ofile_table *t, uint64_t ino) { return ofile_find(t, 0, ino); }
/* Makes a record of inode ino of device dev for `map` (taken over; may be NULL), with one reference,
 * not yet in any table: any thread. */
ofile *ofile_new(uint64_t dev, uint64_t ino, streammap *map);
/* Inserts record `of` (from ofile_new, whose inode has no record in t yet), reference and all. */
void ofile_insert(ofile_table *t, ofile *of);
/* Frees a record that was never inserted. */
void ofile_discard(ofile *of);
/* Makes a record for `map` (which it takes over), inserts it and returns it with one reference. */
ofile *ofile_add(ofile_table *t, uint64_t ino, size_t snap, uint64_t entry, streammap *map);
/* Drops a reference; the last one makes the record idle, and the oldest idle records beyond the
 * bounds are freed. */
void ofile_put(ofile_table *t, ofile *of);

#endif

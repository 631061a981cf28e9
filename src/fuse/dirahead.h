/*
 * dirahead.h — read-ahead across the files of a directory, for readers that go through a tree file by
 * file (tar, cp -r, rsync, a backup of the mount).
 *
 * Such a reader opens a small file, reads it, closes it and opens the next one in directory order. Each
 * cold read would wait for a request to the daemon and a fetch on the thread pool (two thread
 * hand-offs, an index lookup, a record read, a decompression) while the reader and the kernel sit idle.
 * When a file is first read, the files that follow it in its directory (catalog order is readdir order)
 * are fetched ahead on the pool: their stream maps are read, the first chunks of each go into the chunk
 * cache, and the same bytes are pushed into the kernel's page cache (pagepush.h). The reader's next
 * reads are then answered by the kernel without a request to the daemon; where a push did not land
 * (the kernel takes pages only for inodes it knows, i.e. files it has looked up or listed, and drops
 * pushes when the queue is full), the chunk cache answers on the loop thread. Backup wrote those files
 * one after the other, so their chunks lie side by side in the containers.
 *
 * The window is bounded in files and in bytes per file (a large file gets the sequential read-ahead of
 * its own reads instead), and in total by a quarter of the chunk cache, so that read-ahead never evicts
 * what a reader is using. Everything here runs on the loop thread except the fetches themselves.
 */
#ifndef RH_FUSE_DIRAHEAD_H
#define RH_FUSE_DIRAHEAD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fuse/inode.h"
#include "read/cache.h"
#include "snapshot/catalog.h"
#include "store/store.h"

typedef struct dirahead dirahead;
struct pusher;

/* Bytes of a file's first chunks that are fetched ahead (at least one chunk when a file has data). */
#define DIRAHEAD_FILE_BYTES (256u << 10)

/* What the read-ahead works with: the mount's loop, store, chunk cache and pusher, which must outlive the
 * handle. */
typedef struct dirahead_config {
    uv_loop_t *loop;
    rh_store *s;
    chunk_cache *cache;
    size_t cache_capacity; /* the chunk cache's size in bytes; the window is cut to fit a quarter of it */
    struct pusher *pusher; /* NULL: nothing is pushed */
    long single;           /* the snapshot mounted as the root, or -1, for inode numbers (inode.h) */
    unsigned files; /* how many files after the one opened to keep fetched (0: off, *ret is NULL) */
} dirahead_config;

void dirahead_new(const dirahead_config *cfg, dirahead **ret);
/* Frees the handle once the loop has run dry (no fetch is in flight then). NULL is a no-op. */
void dirahead_free(dirahead *d);
/*
 * Loop thread: regular file `idx` (entry e) of catalog c, which the mount calls snapshot `snap`, was
 * opened. Queues fetches of the files after it when the window has room. c must stay open until the
 * loop has run dry. d may be NULL.
 */
void dirahead_opened(dirahead *d, size_t snap, catalog *c, uint64_t idx, const catalog_entry *e);

#endif

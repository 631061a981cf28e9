/*
 * pagepush.h — hands decompressed chunks to the kernel's page cache (FUSE_NOTIFY_STORE).
 *
 * A read fetches and decompresses whole chunks (64 KiB on average) to answer a request that may be 4
 * KiB. The pusher gives the kernel the rest of such a chunk, and the first bytes of the files that
 * directory read-ahead fetched (dirahead.h), so that later reads of those pages never reach the daemon.
 * The page cache is the kernel's memory: it does not count against the daemon and is reclaimed under
 * pressure, and a snapshot never changes, so the pages stay valid (files are opened with keep_cache).
 *
 * Storing into a page waits for the page's lock, which a read request in flight holds until it is
 * answered. So pushes run on a thread of their own that nothing waits for, with a bounded queue (a push
 * that does not fit is dropped: it is only an optimisation), and shutdown lets that thread finish its
 * current push while the loop still answers requests (pusher_idle).
 */
#ifndef RH_FUSE_PAGEPUSH_H
#define RH_FUSE_PAGEPUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "fuse/inode.h"
#include "read/cache.h"

typedef struct pusher pusher;

/* Bytes [from, from + len) of a cached chunk, one piece of a push. */
typedef struct push_piece {
    chunk_ref *ref;
    uint64_t from, len;
} push_piece;

/* Pieces in one push at most: enough for 256 KiB of the smallest chunks. */
#define PUSH_MAX_PIECES 16

/* Starts the pusher thread for session se. */
int pusher_start(struct fuse_session *se, pusher **ret);
/*
 * Queues n pieces (1 <= n <= PUSH_MAX_PIECES), which lie back to back from byte off of inode ino, for
 * the page cache as one store: only its last page may stay partial (the kernel marks a page valid once
 * all of it, or all of it up to the end of the file, is stored). Takes over the pieces' references
 * (released to cache c after the push, or at once when it is dropped: the queue is bounded in pushes
 * and bytes).
 */
void pusher_push_pieces(pusher *p, chunk_cache *c, fuse_ino_t ino, uint64_t off, const push_piece *pieces,
                        size_t n);
/* One piece: bytes [from, from + len) of chunk ref, which starts at byte chunk_off of inode ino. */
void pusher_push(pusher *p, chunk_cache *c, fuse_ino_t ino, uint64_t chunk_off, chunk_ref *ref, uint64_t from,
                 uint64_t len);
/* After a read of [off, off + n) of inode ino (map m) is answered: gives the kernel the rest of the
 * chunks at both ends, which the read fetched whole and which are still in cache c. p NULL: no-op. */
void pusher_push_around(pusher *p, chunk_cache *c, fuse_ino_t ino, const streammap *m, uint64_t off, size_t n);
/* Fetches the chunks of map m that begin below byte `bytes` into cache c and gives them to the kernel
 * as the pages of inode ino, one push per run of data between holes; a chunk that cannot be read ends
 * its run (the reader's own read meets the damage and reports it). For the read-ahead across a
 * directory's files (dirahead.h, voldirahead.h). p NULL: only the cache is filled. */
void pusher_push_head(pusher *p, chunk_cache *c, fuse_ino_t ino, const streammap *m, uint64_t bytes);
/* Accepts no more pushes and drops the queued ones; true when no push is in progress any more. */
bool pusher_idle(pusher *p);
/* Stops and joins the thread (after pusher_idle returned true or the session is gone). NULL: no-op. */
void pusher_free(pusher *p);

#endif

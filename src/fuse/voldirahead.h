/*
 * voldirahead.h — read-ahead across the files of a directory of a volume mount (volume.h): what
 * dirahead.h does for our own store, for readers that go through a Windows volume file by file (tar,
 * cp -r, rsync).
 *
 * When a file of a directory is first read, the stubs that follow it in the directory's order (the order
 * in which the volume lists it, and so the mount) are fetched on the pool: their stream maps are read,
 * their first chunks go into their store's chunk cache and, as the pages of their inodes, into the
 * kernel's page cache (pagepush.h). The reader's reads of those files are then answered by the kernel.
 * Only stubs the kernel already knows are fetched (a push needs the inode; a reader that lists a
 * directory before it reads its files, as tar does, has made the kernel look them all up).
 *
 * The maps read are kept (a few dozen at most) for the first reads of those files that the pushed pages
 * do not cover, which then need no I/O to find their map.
 *
 * The directory followed is listed once, by the first fetch after the reader moves into it, and kept
 * until the reader moves on; the window is bounded in files (64 at most) and, in total, by a quarter of
 * a chunk cache. A fetch that fails is dropped without a word: the reader's own read meets the same damage
 * and reports it with the path.
 *
 * Threads: voldirahead_reading on the loop thread only; the fetches run on the pool.
 */
#ifndef RH_FUSE_VOLDIRAHEAD_H
#define RH_FUSE_VOLDIRAHEAD_H

#include "fuse/volnode.h"

typedef struct voldirahead voldirahead;

/* Read-ahead for volume v (whose loop and pusher must be set before the first read and outlive the
 * handle), `files` files after the one read, cut to fit a quarter of v's chunk cache size. 0 files:
 * off, *ret is NULL. */
void voldirahead_new(volume *v, unsigned files, voldirahead **ret);
/* Frees the handle once the loop has run dry (no fetch is in flight then). NULL is a no-op. */
void voldirahead_free(voldirahead *d);
/* Loop thread: regular file n is read for the first time since the mount last dropped its record
 * (ofile.h). Takes over one lookup of n that the caller holds (vnode_hold), which keeps n until the
 * fetch is done. */
void voldirahead_reading(voldirahead *d, vnode *n);

/* The map that a fetch read for stub n, handed over (the caller frees it), and its chunk store in
 * *ret_st; or NULL: a stub whose map is fetched is read without reading its map again, or taking a lock
 * that a store's opening may hold. Any thread; d may be NULL. */
streammap *voldirahead_take_map(voldirahead *d, const vnode *n, vstore **ret_st);

#endif

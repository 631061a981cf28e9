/*
 * volmetahead.h — read-ahead of a volume's metadata, for readers that walk a tree (tar, cp -r, find,
 * rsync).
 *
 * A lookup on a Windows volume reads the file's inode and, for a stub, its reparse data, which ext4
 * keeps in an xattr block of its own: one random read per file. READDIRPLUS does the lookups of one
 * directory side by side (volume.c), but the reader waits for them at every directory it enters. So
 * when a directory is listed, its subdirectories are queued to be warmed, in the order a depth-first
 * reader enters them: a subdirectory's own subdirectories go before its later siblings. A warm job
 * lists one directory and reads the inode and reparse data of each entry into the kernel's caches;
 * the reader's own lookups then find them there. Nothing warmed is kept by the daemon: a directory the
 * reader has already passed costs a few cached system calls, one it never visits some reads the
 * kernel may reclaim.
 *
 * The queue is bounded (what falls off its end is not warmed), and at most three warm jobs run at once,
 * so that the reader's own requests always find threads on the pool.
 *
 * Threads: everything but the warm jobs themselves runs on the loop thread.
 */
#ifndef RH_FUSE_VOLMETAHEAD_H
#define RH_FUSE_VOLMETAHEAD_H

#include <stddef.h>

#include "fuse/volnode.h"

typedef struct volmetahead volmetahead;

/* Metadata read-ahead for volume v, whose loop must be set before the first listing and outlive it. */
void volmetahead_new(volume *v, volmetahead **ret);
/* Frees it once the loop has run dry (no warm job is in flight then). NULL is a no-op. */
void volmetahead_free(volmetahead *m);
/* Loop thread: directory dir was listed from its start; names[0..n) are its subdirectories in the
 * listing's order (taken over, with the array). */
void volmetahead_listed(volmetahead *m, vnode *dir, char **names, size_t n);

#endif

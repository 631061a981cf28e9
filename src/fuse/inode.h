/*
 * inode.h — the lowest header of rehydratefs: the FUSE API version it is written against, and its inode
 * scheme, as plain arithmetic that needs nothing of the daemon's state (fs.h), so that dirahead.c and
 * pagepush.c can name inodes without including it.
 *
 * Inodes are computed, not stored: the root is 1, "latest" is 2, and entry e of snapshot s (its index in
 * the mount's snapshot table, which is sorted by creation time so that a newer snapshot never renumbers
 * an older one) is ((s + 1) << 40) | e. Every member of a hard-link group reports the inode of the
 * group's first entry. Nothing is kept per inode that the kernel looks up, so forget is free; only the
 * files being read have a record (ofile.h), and the idle ones are bounded, so memory does not grow with
 * the number of files looked at or read.
 *
 */
#ifndef RH_FUSE_INODE_H
#define RH_FUSE_INODE_H

#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/catalog.h"

#define FS_INO_ROOT 1
#define FS_INO_LATEST 2
#define FS_INO_SHIFT 40
#define FS_ENTRY_MASK ((UINT64_C(1) << FS_INO_SHIFT) - 1)

/* The inode of entry `entry` of snapshot `snap` (its index in the mount's snapshot table). */
static inline fuse_ino_t fs_ino_of(size_t snap, uint64_t entry)
{
    return ((uint64_t)(snap + 1) << FS_INO_SHIFT) | entry;
}

/*
 * The inode that entry idx (e) of snapshot snap is seen as: hard-link members share their group's
 * first entry's. `single` is the snapshot mounted as the root (-1: the root lists the snapshots); the
 * root entry of that snapshot is FS_INO_ROOT.
 */
static inline fuse_ino_t fs_entry_ino(long single, size_t snap, uint64_t idx, const catalog_entry *e)
{
    if (e->link_group != CATALOG_NONE)
        idx = e->link_group;
    if (single >= 0 && (long)snap == single && idx == 0)
        return FS_INO_ROOT;
    return fs_ino_of(snap, idx);
}

/*
 * Decodes an inode of a mount of nsnaps snapshots (single as above) into (snapshot, entry); false for
 * the synthetic root and "latest", and for an inode of no snapshot.
 */
static inline bool fs_ino_decode(long single, size_t nsnaps, fuse_ino_t ino, size_t *ret_snap,
                                 uint64_t *ret_entry)
{
    if (ino == FS_INO_ROOT && single >= 0) {
        *ret_snap = (size_t)single;
        *ret_entry = 0;
        return true;
    }
    if (ino >> FS_INO_SHIFT == 0 || (ino >> FS_INO_SHIFT) > nsnaps)
        return false;
    *ret_snap = (size_t)(ino >> FS_INO_SHIFT) - 1;
    *ret_entry = ino & FS_ENTRY_MASK;
    return true;
}

#endif

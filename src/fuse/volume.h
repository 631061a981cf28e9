/*
 * volume.h — rehydratefs VOLUME MOUNTPOINT: a Windows Server dedup volume mounted read-only, its
 * deduplicated files rehydrated lazily from its chunk store, everything else passed through.
 *
 * VOLUME is the root of an NTFS volume mounted with ntfs-3g (best read-only) or a copy of one in which
 * each deduplicated file carries its reparse data in user.ntfs_reparse_data. The volume must not change
 * while it is mounted: the kernel keeps what it was shown. See volnode.h for inodes, stubs and chunk
 * stores, volume.c for the operations, and doc/windows.md for the user's side.
 */
#ifndef RH_FUSE_VOLUME_H
#define RH_FUSE_VOLUME_H

#include <stdbool.h>
#include <stddef.h>

#include "fuse/daemon.h"

typedef struct volume_config {
    const char *root;       /* the volume's root directory, absolute */
    const char *chunkstore; /* -o chunkstore=DIR (absolute): the store of every stub; NULL: by GUID */
    size_t cache_size;      /* bytes of decompressed chunks kept, per chunk store */
    bool verify;            /* check every chunk's digest when it is read */
    unsigned readahead;     /* chunks fetched ahead of a sequential reader of a stub */
    unsigned dir_readahead; /* stubs fetched ahead of a reader going through a directory (voldirahead.h) */
} volume_config;

/* Mounts the volume with the daemon's settings in dc (daemon.h: its args, mount point, foreground,
 * kernel readahead; the rest is filled here). Returns the process's exit status. */
int volume_serve(const volume_config *c, daemon_config *dc);

#endif

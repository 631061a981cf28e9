/*
 * volume.h — restoring the tree of a Windows Server dedup volume (an ntfs-3g mount of it, a disk image's,
 * or a copy) into a directory: every entry copied with its metadata, and every deduplicated file ("stub":
 * its reparse buffer in system.ntfs_reparse_data on ntfs-3g, user.ntfs_reparse_data in a copy) rebuilt
 * from the volume's chunk store by rh_restore_files, with the Windows semantics: laid out as a stub in
 * the target, rehydrated in place, its result its own.
 */
#ifndef RH_TREE_VOLUME_H
#define RH_TREE_VOLUME_H

#include <stdbool.h>
#include <stdint.h>

/* Whether `path` looks like a dedup volume's root (it has WINVOLUME_CHUNKSTORES, in any case). */
bool volume_detect(const char *path);

typedef struct volume_stats {
    uint64_t entries;  /* created in the target: directories, files, links */
    uint64_t stubs;    /* deduplicated files rehydrated */
    uint64_t bytes;    /* bytes of regular files written (plain and rehydrated) */
    uint64_t failed;   /* entries that could not be restored (each reported) */
} volume_stats;

/* Says what went wrong with one entry (path relative to the volume root); the restore goes on. */
typedef void volume_warn_fn(void *ud, const char *path, int code, const char *what);

typedef struct volume_options {
    const char *chunkstore; /* the {GUID}.ddp directory for every stub; NULL: found by each stub's GUID */
    volume_warn_fn *warn;
    void *ud;
} volume_options;

/*
 * Restores the tree at `volume` (except its System Volume Information, which holds the dedup
 * machinery, not data) into the existing directory `target`, which the caller has checked is empty.
 * 0 when everything was restored, RH_EPARTIAL when some entries failed (reported through o->warn and
 * counted), or a code for a failure that stopped the whole restore (the volume or target unusable).
 */
int volume_restore(const char *volume, const char *target, const volume_options *o, volume_stats *ret);

#endif

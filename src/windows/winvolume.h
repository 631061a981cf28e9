/*
 * winvolume.h — a Windows Server dedup volume as Linux shows it, for the three readers of one (the
 * mount, rehydrate restore VOLUME, rehydrate verify --volume).
 *
 * A stub (an optimized file) keeps its dedup reparse buffer in an xattr: system.ntfs_reparse_data on an
 * NTFS volume mounted with ntfs-3g, user.ntfs_reparse_data in a copy (WINSTORE_STUB_XATTR). The volume's
 * chunk stores are "System Volume Information/Dedup/ChunkStore/{GUID}.ddp", the GUID the one its stubs
 * name; Windows names are not case-sensitive, so every part is found in any case.
 */
#ifndef RH_WINDOWS_WINVOLUME_H
#define RH_WINDOWS_WINVOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WINVOLUME_CHUNKSTORES "System Volume Information/Dedup/ChunkStore"

/* The xattrs a stub's reparse buffer may be in, in the order they are asked. */
extern const char *const winvolume_reparse_xattrs[2];

/*
 * The dedup reparse buffer of the file at path, not following a symlink unless follow (ntfs-3g without
 * a dedup plugin shows a stub as a symlink; /proc/self/fd/N of an O_PATH descriptor must be followed).
 * Returns 1 with *ret (malloc'd; it may be longer than NTFS allows, WINSTORE_STUB_MAX, which the caller
 * judges), *ret_len and *ret_xattr (which of winvolume_reparse_xattrs); 0 when the file has none (no
 * such xattr, or one of another reparse tag, or shorter than a tag); a negative errno when it cannot
 * be read.
 */
int winvolume_read_reparse(const char *path, bool follow, uint8_t **ret, size_t *ret_len, const char **ret_xattr);

/* The GUID as Windows names a store's directory, without ".ddp": "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}". */
void winvolume_guid_name(const uint8_t guid[16], char out[40]);

/* dir/name, where name matches an entry of dir in any case (an exact match is taken without listing
 * dir); malloc'd, or NULL when dir has no such entry. */
char *winvolume_find_any_case(const char *dir, const char *name);

/* The chunk-store directory of the volume at root (WINVOLUME_CHUNKSTORES, any case), malloc'd, or NULL
 * when it has none. */
char *winvolume_chunkstore_dir(const char *root);

/* The chunk store "{GUID}.ddp" in store_dir (any case), malloc'd, or NULL when it is not there. */
char *winvolume_store_path(const char *store_dir, const uint8_t guid[16]);

#endif

/*
 * vfs.h — a read-only SQLite VFS over rh_store_ops->read, so that the chunk index of a store behind
 * callbacks (tape, object storage, an application's own medium) is read in place, a few pages at a
 * time, instead of being rebuilt by scanning every container.
 *
 * The database is read in aligned blocks of INDEX_VFS_BLOCK bytes through the store's `read` callback
 * and kept in a small LRU cache per open file; SQLite's own page cache sits above it. The file is
 * treated as immutable (SQLITE_IOCAP_IMMUTABLE): no locks, no journal, no WAL. Its size comes from the
 * database header (page size and the in-header page count), because the callback table has no "size"
 * call and a short read is an error; opening reads the byte before that size to prove it, since SQLite
 * sizes some allocations by it. A file whose header is not a valid SQLite 3 header, whose in-header size
 * is not trustworthy or larger than the file, or that is in WAL mode (its newest pages may be in a -wal
 * file beside it) is refused with RH_ESTALEINDEX: the caller then has no usable index through callbacks.
 *
 * Only index.c uses this (and the tests check_vfs and fuzz-vfs); it opens such a database with
 * index_open_ops() (index.h).
 */
#ifndef RH_INDEX_VFS_H
#define RH_INDEX_VFS_H

#include <stdint.h>

#include <rehydrate/rehydrate.h>

#define INDEX_VFS_NAME "rehydrate-ops"
#define INDEX_VFS_BLOCK (32u << 10) /* bytes per read callback */
#define INDEX_VFS_CACHE 128         /* blocks kept per open file: 4 MiB at most */

/* Where a database lives: the store's callbacks and the file's path in the store. Must outlive the
 * connection that opens it. The counters are updated by the VFS: every `read` call and its bytes. */
typedef struct index_vfs_source {
    const rh_store_ops *ops;
    void *ctx;
    const char *path;
    uint32_t block; /* bytes per read callback when above INDEX_VFS_BLOCK (a store with costly round
                     * trips: object storage), else 0 */
    uint64_t reads, bytes;
} index_vfs_source;

/*
 * The size of a database from its 100-byte header: page size times the in-header page count, into *ret.
 * RH_ESTALEINDEX when the header is not SQLite 3's, its page size is not a power of two from 512 to
 * 65536, it is in WAL mode, or its page count is 0 or not valid (the version-valid-for number differs
 * from the change counter). The VFS's open uses it; it is not static so that tests/fuzz/fuzz-vfs.c can
 * compare the VFS with it.
 */
int index_vfs_header_size(const uint8_t h[static 100], uint64_t *ret);

/*
 * Registers the VFS with SQLite (once per process; thread-safe) and writes into `name` (at least 40
 * bytes) the file name under which sqlite3_open_v2(name, ..., SQLITE_OPEN_READONLY, INDEX_VFS_NAME)
 * opens `src`. Returns 0 or a negative code.
 */
int index_vfs_name(index_vfs_source *src, char name[static 40]);

#endif

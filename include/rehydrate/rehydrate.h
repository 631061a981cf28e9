/*
 * rehydrate.h — the public API of librehydrate.
 *
 * librehydrate reads a rehydrate backup store (see doc/format.md) and rebuilds files from it. It reads
 * every store file through a table of callbacks, rh_store_ops, modelled on Windows Server Data
 * Deduplication's IDedupReadFileCallback, so a store may live on a local disk, on tape or behind an object
 * store; the library never assumes a local directory unless it is asked to open one.
 *
 * Conventions: every function that can fail returns an int, 0 (or a count) on success and a negative code
 * on failure. Codes are negated errno values (-ENOENT, -EIO, ...) or the domain codes RH_E* below;
 * rh_strerror() explains either kind. Output parameters are named ret_* and are left untouched when a
 * call fails. Destructors accept NULL.
 *
 * This header is the reference manual: each declaration says who owns what it returns, and which thread
 * calls each callback. The man pages (rh_store_open(3), rh_restore_files(3), rh_file_open(3)) say the
 * same at more length, with complete examples.
 *
 * Compatibility: within one major version (the soname), functions are only added, the members of
 * rh_store_ops are only appended (see RH_STORE_OPS_VERSION), and no documented behaviour changes.
 * Compare RH_VERSION_NUMBER (the header's) with rh_version_number() (the library's) to find out at run
 * time what the library knows.
 *
 * The library never prints, never exits, never aborts on bad input or I/O errors, and never calls a
 * callback from a thread the application did not expect (see rh_store_ops). Memory exhaustion is a
 * failure like the others: the call that could not allocate returns -ENOMEM (rh_restore_files: in
 * the results of the files it failed), after freeing what it had allocated; it neither aborts nor
 * prints. That includes decoding a snapshot's catalog and rebuilding a missing, stale or damaged index.
 *
 * SPDX-License-Identifier: BSD-2-Clause (see LICENSE).
 */
#ifndef REHYDRATE_REHYDRATE_H
#define REHYDRATE_REHYDRATE_H

#include <stddef.h>
#include <stdint.h>

#include <rehydrate/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RH_EXPORT __attribute__((visibility("default")))
#else
#define RH_EXPORT
#endif

/*
 * Domain error codes. They are negative and below -4000, so they never collide with a negated errno.
 * The X-macro lists (name, value, message); rh_strerror() is generated from it.
 */
#define RH_ERRNO_MAP(X)                                                                            \
    X(RH_ECORRUPT, -4001, "store data is corrupt")                                                 \
    X(RH_ENOTSTORE, -4002, "not a rehydrate store")                                                \
    X(RH_EVERSION, -4003, "unsupported store format version")                                      \
    X(RH_ENOCONTAINER, -4004, "container not found")                                               \
    X(RH_ENOSNAPSHOT, -4005, "snapshot not found")                                                 \
    X(RH_ENOCHUNK, -4006, "chunk not found in the index")                                          \
    X(RH_EPARTIAL, -4007, "some files were restored and some failed")                              \
    X(RH_ENOTDEDUP, -4008, "not a deduplicated file (no reparse point)")                           \
    X(RH_EDIGEST, -4009, "chunk digest mismatch")                                                  \
    X(RH_ECHECKSUM, -4010, "record checksum mismatch")                                             \
    X(RH_EEXIST, -4011, "already exists")                                                          \
    X(RH_EUNSAFE, -4012, "unsafe name in catalog")                                                 \
    X(RH_ESTALEINDEX, -4013, "index does not match the store's containers")                       \
    X(RH_EWRONGSTORE, -4014, "reparse point belongs to another store")                             \
    X(RH_ENOINDEX, -4015, "no chunk index readable through the callbacks (see rh_store_build_index)")

enum {
#define RH_ERR_ENUM(name, value, msg) name = (value),
    RH_ERRNO_MAP(RH_ERR_ENUM)
#undef RH_ERR_ENUM
};

/*
 * A human-readable message for a code returned by any rh_ function: a domain code RH_E*, a negated errno,
 * or 0. The string is static; never free it.
 */
RH_EXPORT const char *rh_strerror(int code);

/* The library's version: its string ("0.2.0"; static, never free it) and its comparable number
 * (MAJOR * 10000 + MINOR * 100 + PATCH), to compare with RH_VERSION_STRING and RH_VERSION_NUMBER of the
 * header the application was compiled against. */
RH_EXPORT const char *rh_version(void);
RH_EXPORT unsigned rh_version_number(void);

typedef struct rh_store rh_store;
typedef struct rh_extent {
    uint64_t offset, length;
} rh_extent;
typedef struct rh_container_extent {
    uint32_t container_index;
    uint64_t offset, length;
} rh_container_extent;

/*
 * The backup-store callback table, our counterpart of IDedupReadFileCallback. Paths are relative to the
 * store root and use '/' ("rehydrate.store", "containers/data/00000003.ctr", "snapshots/monday.snap").
 *
 * Threads: every callback is called on the thread that called the rh_ function that needs it, never on
 * a thread of the library's own (rh_restore_files decompresses and writes on worker threads, but reads
 * only on the caller's). An rh_store, and the snapshots and files opened from it, may be used by one
 * thread at a time (like an SQLite connection): callers that share one across threads serialize their
 * calls, and callbacks are then never called concurrently, nor reentered from inside a callback.
 * Applications that open several rh_stores over the same ctx get calls from each store's thread.
 *
 * Lifetime: the table and ctx must outlive the store; `ctx` is passed back unchanged.
 *
 * Growth: `version` says which members the application filled in. A later library appends members
 * (never reorders, removes or changes one) and raises RH_STORE_OPS_VERSION; it reads a member only when
 * the table's version is high enough to have it, so a table compiled against an older header keeps
 * working. A version of 0, or higher than the library knows, is refused by rh_store_open with -EINVAL.
 */
#define RH_STORE_OPS_VERSION 2
typedef struct rh_store_ops {
    unsigned version; /* RH_STORE_OPS_VERSION of the header the table was written against */
    /* ReadBackupFile: read exactly `size` bytes at `offset` of the store file `path`. Returns 0, or a
     * negative code: -ENOENT when the file does not exist, -EIO or any other on failure. A short read
     * (the file ends before offset+size) is an error, not a partial success. Required. */
    int (*read)(void *ctx, const char *path, uint64_t offset, void *buf, size_t size);
    /* OrderContainersRestore: the engine names every container that it needs; the application may set
     * *ret_plan to an array of *ret_len extents, allocated with rh_plan_alloc(), in the order it wants
     * them read (container_index indexes `paths`; length UINT64_MAX means "to the end"), or leave it
     * NULL to accept the engine's own order. The plan then belongs to the engine, which frees it with
     * rh_plan_free(), also when the callback fails. `paths` is valid during the call only. Called once
     * for stream-map containers and once for data containers (when any is needed). Containers the plan
     * leaves out are read after those it names; a negative return fails every file of this call.
     * Optional (NULL). */
    int (*order_containers)(void *ctx, size_t n, const char *const *paths,
                            rh_container_extent **ret_plan, size_t *ret_len);
    /* PreviewContainerRead: called before the reads of a container, with the extents that will be read
     * from it, so that the application can prefetch. A negative return skips that container: the
     * files that need it fail with that code. Optional (NULL). */
    int (*preview)(void *ctx, const char *path, size_t n, const rh_extent *extents);
    /* Since version 2. Lists the names of the files in the store directory `dir` ("Data", "Stream"):
     * calls visit(ud, name) once per file, in any order, and returns 0 (also for a directory that does
     * not exist), or a negative code. When visit returns non-zero the listing may end there; a
     * negative return of visit must be returned.
     * Needed only for Windows Server dedup chunk stores, whose container names carry a generation that
     * no reference gives: without it, rh_store_open refuses such a store behind callbacks with
     * RH_ENOTSTORE. Called by rh_store_open and, once per directory, by the first read that needs
     * it. Optional (NULL). */
    int (*list)(void *ctx, const char *dir, int (*visit)(void *ud, const char *name), void *ud);
} rh_store_ops;

/*
 * Opens a store. With ops == NULL, `path` is a local store directory read with built-in callbacks, or
 * a store on S3-compatible object storage, "s3:https://HOST[:PORT]/BUCKET[/PREFIX]" (also "s3:http://"
 * and restic's "s3:HOST/BUCKET"), read with built-in callbacks that make ranged GETs through libcurl;
 * credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_DEFAULT_REGION or the AWS CLI's profile files (doc/s3.md); rh_restore_files() fetches the extents
 * each container's preview names ahead, REHYDRATE_S3_CONNECTIONS GETs at once (default 5), on threads of
 * the library's own. The library only reads it (backups into it are the rehydrate command's).
 * With ops != NULL, `path` names the store only for messages; every byte is read through ops/ctx.
 * On success *ret_store owns the store until rh_store_close().
 *
 * Two formats open: ours (the directory holds rehydrate.store) and a Windows Server Data Deduplication
 * chunk store, `{GUID}.ddp` with Data/ and Stream/ holding `<id>.<generation>.ccc` containers (a
 * directory without rehydrate.store that has either; behind callbacks, found through `list`). A
 * Windows store has no index: its stream maps say where every chunk is. Its stubs (for
 * rh_restore_files) keep the Windows reparse buffer in the xattr user.ntfs_reparse_data; when
 * `path`'s last component is the `{GUID}.ddp` name, stubs of another GUID fail with RH_EWRONGSTORE.
 * rh_restore_files keeps the contract of rh_store_ops for it, with one addition: a record that Windows
 * moved within its container (its old place holds another valid record) is found through the
 * container's redirection table, which takes a second visit of that container (a preview and read of
 * the table page, then of the moved records) after the phase's planned reads.
 *
 * The chunk index, behind callbacks: the store's own index.db, read through `read` a few blocks at a
 * time as lookups need them; opening reads its header and nothing of any container. When that file
 * cannot be read through the callbacks (absent, in WAL mode, of another store), a copy in
 * $XDG_CACHE_HOME/rehydrate/ (else ~/.cache/rehydrate/) that rh_store_build_index() made earlier serves.
 * When there is neither, rh_store_open still succeeds and restores and reads fail with RH_ENOINDEX:
 * the library never reads every container on its own. A local store (ops == NULL) rebuilds its index
 * when it is missing or stale, as `rehydrate reindex` does.
 */
RH_EXPORT int rh_store_open(const char *path, const rh_store_ops *ops, void *ctx, rh_store **ret_store);

/*
 * Makes sure the store has a usable chunk index, building one when it has none: behind callbacks, the
 * copy in the cache directory (see rh_store_open), by reading every container through `read` — a scan
 * of the whole store, which on tape or object storage is a full read, so ask the user first. For a
 * local store, STORE/index.db (or the cache copy when the store is read-only). Returns 0 (also when an
 * index was usable already) or a negative code; calls no callback but `read`.
 */
RH_EXPORT int rh_store_build_index(rh_store *store);
RH_EXPORT void rh_store_close(rh_store *store); /* NULL is a no-op */

/*
 * What the library has to say, beyond return codes: the details of a failed file (which file, by its
 * index in the rh_restore_files call and its path, and which object and offset failed why), and
 * repairs it made (a damaged index rebuilt). The library never prints: without a log function, these
 * messages are dropped. `fn` is called on the thread that called the rh_ function that has something
 * to say, with a message of one line (no newline) valid during the call; it must not call back into
 * the library with the same store. Levels: RH_LOG_ERROR (something failed), RH_LOG_WARNING (something
 * was wrong and was worked around), RH_LOG_INFO. fn NULL turns logging off.
 */
enum { RH_LOG_ERROR = 1, RH_LOG_WARNING = 2, RH_LOG_INFO = 3 };
typedef void (*rh_log_fn)(void *ud, int level, const char *msg);
RH_EXPORT void rh_store_set_log(rh_store *store, rh_log_fn fn, void *ud);

/*
 * The memory of a read plan (order_containers): rh_plan_alloc returns room for n extents (NULL when it
 * cannot, or when n is 0 or too large), from the allocator the library frees it with; rh_plan_free
 * releases it (NULL is a no-op). An application that allocated a plan and then does not hand it over
 * frees it with rh_plan_free.
 */
RH_EXPORT rh_container_extent *rh_plan_alloc(size_t n);
RH_EXPORT void rh_plan_free(rh_container_extent *plan);

/* ---- Restoring files: the counterpart of IDedupBackupSupport::RestoreFiles ---- */

#define RH_RESTORE_MAX_FILES 10000
#define RH_NOT_A_STUB 1      /* per-file result: the path carries no reparse point */
#define RH_RESTORE_VERIFY 1u /* flag: check every chunk's SHA-256 (records' checksums are always checked) */

/*
 * Rehydrates up to RH_RESTORE_MAX_FILES stubs in place. A stub is a regular file that carries its
 * reparse point in the xattr "user.rehydrate.reparse" (written by `rehydrate restore --stubs-only`, see
 * doc/format.md, "Stubs"): it names the store, the file's size and its stream map. On success the
 * file holds its data (holes stay holes) and the xattr is gone. In a Windows chunk store (see
 * rh_store_open) a stub carries the Windows reparse buffer in "user.ntfs_reparse_data" instead.
 *
 * `results` (may be NULL) gets one code per path: 0, RH_NOT_A_STUB (the file has no reparse point; it is
 * left alone), or a negative code (RH_ECORRUPT, RH_ECHECKSUM, RH_EDIGEST, RH_ENOCONTAINER, RH_ENOCHUNK,
 * RH_EWRONGSTORE, a negated errno, ...) that rh_strerror explains; a failed file keeps its xattr and may
 * be retried. Memory that runs out fails the files that needed it with -ENOMEM, like any other error.
 *
 * Returns 0 when no file failed (RH_NOT_A_STUB is not a failure), RH_EPARTIAL when some files failed
 * and others did not, otherwise (every file failed) the first path's error. The failure contract:
 * -EINVAL (store NULL, paths NULL with n > 0, a NULL path, more than RH_RESTORE_MAX_FILES paths, an
 * unknown flag bit) is returned before anything is read or touched, and `results` is left untouched;
 * on every other return, every element of `results` has been written, so a caller never reads a
 * stale code (a failure before any file could be looked at, such as an unreadable index or no memory
 * for the call's own state, is that failure in every element).
 *
 * Every store file is read through the store's callbacks, on the calling thread: first
 * order_containers for the stream-map containers, then for each of them (in the returned order)
 * preview and the reads of its records; then the same for the data containers. Each container is read
 * once per call, in coalesced reads of up to 4 MiB; a chunk that occurs in many files, or many times in
 * one, is decompressed once and written with pwrite to every place it belongs. Decompression and writing
 * run on libuv's thread pool (UV_THREADPOOL_SIZE threads), never inside a callback.
 */
RH_EXPORT int rh_restore_files(rh_store *store, size_t n, const char *const *paths, unsigned flags,
                               int *results);

/* ---- Lazy reads: one file of a snapshot, any byte range (the daemon's path) ---- */

typedef struct rh_snapshot rh_snapshot;
typedef struct rh_file rh_file;

/*
 * Opens snapshot `name` ("latest" is not resolved here: names only) of `store`. Its catalog is read
 * through the store's callbacks, a directory at a time; nothing is loaded whole. The snapshot must be
 * closed before its store. RH_ENOSNAPSHOT if there is no such snapshot.
 */
RH_EXPORT int rh_snapshot_open(rh_store *store, const char *name, rh_snapshot **ret_snapshot);
RH_EXPORT void rh_snapshot_close(rh_snapshot *snapshot); /* NULL is a no-op */

/*
 * Opens the regular file at `path` ('/'-separated, relative to the snapshot root) for reading. Its
 * stream map is read and checked once here. -ENOENT, -EISDIR (a directory), -EINVAL (another type that
 * is not a regular file), RH_ENOTDEDUP (the
 * snapshot has no data for it: it could not be read at backup time). flags: RH_RESTORE_VERIFY checks
 * each chunk's SHA-256 as it is read. Close every file before its snapshot.
 */
RH_EXPORT int rh_file_open(rh_snapshot *snapshot, const char *path, unsigned flags, rh_file **ret_file);
RH_EXPORT uint64_t rh_file_size(const rh_file *file);
/*
 * Reads up to `size` bytes at `offset` into buf; *ret_read gets the count, which is less than size only
 * at the end of the file. Holes read as zeros without touching the store. See rh_store_ops for the
 * threading rule: one thread at a time per store.
 */
RH_EXPORT int rh_file_pread(rh_file *file, void *buf, size_t size, uint64_t offset, size_t *ret_read);
RH_EXPORT void rh_file_close(rh_file *file); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif /* REHYDRATE_REHYDRATE_H */

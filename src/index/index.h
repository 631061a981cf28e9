/*
 * index.h — the SQLite chunk index (index.db): where every chunk and stream map lives.
 *
 * The index is derived data: every row can be rebuilt from the containers, and the index records which
 * containers (id, kind, size) it was built from so that a reader can tell it is stale. Only this module
 * includes sqlite3.h. Lookups use prepared statements kept for the life of the handle.
 *
 * Threading: one index handle belongs to one thread at a time (SQLite's multi-thread mode); open one
 * handle per thread that needs one. Several read handles and one writer may coexist (WAL while a
 * writer is open; a writer puts the file back in rollback-journal mode when it closes, so that opening
 * it read-only creates no file beside it: read paths never write to the store).
 */
#ifndef RH_INDEX_INDEX_H
#define RH_INDEX_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include <rehydrate/rehydrate.h>

#include "hash/hash.h"

typedef struct index index_t;

/* Where a chunk or a stream map is stored. */
typedef struct index_loc {
    uint32_t container;  /* container id: containers/data/%08x.ctr or containers/stream/%08x.ctr */
    uint64_t offset;     /* offset of the record header within the container */
    uint32_t stored_len; /* payload bytes as stored */
    uint32_t raw_len;    /* payload bytes after decoding */
    uint8_t codec;       /* CODEC_RAW / CODEC_ZSTD */
    /* 0: the record holds this chunk alone (or is a stream map). k > 0: the record is a pack, and the
     * chunk is its member k - 1; stored_len and codec are the pack's, raw_len the chunk's. */
    uint16_t member;
    /* Formats that number the records of a container (Windows: the Ckhr sequence number) name the
     * record by it too, so that a moved record can be found; 0 in ours. Not kept in the index. */
    uint32_t seq;
} index_loc;

/* A container as the index remembers it. kind is CONTAINER_DATA or CONTAINER_STREAM (store/container.h:
 * 1 and 2). */
typedef struct index_container {
    uint32_t id;
    uint8_t kind;
    uint64_t size;
} index_container;

enum { INDEX_READONLY = 1, INDEX_CREATE = 2, INDEX_POOLED = 4 };
/* The largest string, blob or row a handle reads (SQLITE_LIMIT_LENGTH): ours are tens of bytes, so a
 * damaged file cannot make SQLite allocate for a value it claims is huge. */
#define INDEX_VALUE_MAX (64 << 10)
/*
 * Opens (INDEX_CREATE: creating if missing, with the schema) the index at `path`. A database that is not
 * our schema, or of another store (the uuid stored at creation differs from `store_uuid`), gives
 * RH_ESTALEINDEX. A writer (no INDEX_READONLY) uses WAL and leaves the rollback journal when it closes;
 * synchronous=NORMAL (the index is rebuildable). A missing file without INDEX_CREATE is -ENOENT.
 * INDEX_POOLED: one of several lookup handles that a process keeps on the same file (the daemon's).
 * Such a handle maps nothing and keeps a small page cache: each handle's map would count every page
 * it touched in the process's RSS again, and grow with the store.
 */
int index_open(const char *path, const uint8_t store_uuid[16], int flags, index_t **ret);
/*
 * Opens, for lookups only, the index at `path` of a store read through `ops` (its own index.db, read in
 * place a block at a time through ops->read: index/vfs.h). Not our schema, of another store, missing, in
 * WAL mode, or unreadable: a negative code, and the caller falls back to a cached copy. `ops` and `ctx`
 * must outlive the handle. `block`: bytes per read when more than the VFS's default are cheaper (each
 * read a round trip: object storage), else 0.
 */
int index_open_ops(const rh_store_ops *ops, void *ctx, const char *path, const uint8_t store_uuid[16],
                   uint32_t block, index_t **ret);
void index_close(index_t *ix); /* NULL is a no-op */

/* Lookups: 0 and *ret filled, RH_ENOCHUNK when absent, other negative codes on failure. */
int index_find_chunk(index_t *ix, const uint8_t digest[HASH_LEN], index_loc *ret);
int index_find_stream(index_t *ix, const uint8_t digest[HASH_LEN], index_loc *ret);

/* Writes happen between index_begin and index_commit (or index_rollback); inserting a digest that is
 * already present keeps the existing row and returns 0. */
int index_begin(index_t *ix);
int index_commit(index_t *ix);
int index_rollback(index_t *ix);
int index_add_chunk(index_t *ix, const uint8_t digest[HASH_LEN], const index_loc *loc);
int index_add_stream(index_t *ix, const uint8_t digest[HASH_LEN], const index_loc *loc);
int index_add_container(index_t *ix, const index_container *c);

/* Removes every chunk, stream and container row (for a rebuild inside one transaction). */
int index_clear(index_t *ix);

/* Compares the containers recorded in the index with `have` (any order): true when the sets (id, kind,
 * size) are equal. */
int index_matches(index_t *ix, const index_container *have, size_t n, bool *ret_match);

/* The container of `kind` with the highest id that the index records, in *ret; *ret_found false when
 * it records none of that kind. */
int index_newest_container(index_t *ix, uint8_t kind, index_container *ret, bool *ret_found);

/* Counts, for reports. */
int index_stats(index_t *ix, uint64_t *ret_chunks, uint64_t *ret_streams, uint64_t *ret_containers);

/* SQLite's PRAGMA integrity_check, at most `max` findings: *ret_report is NULL when it finds the file
 * sound, else a malloc'd text of its findings ("; " between them). A file too damaged for the check to run
 * is reported the same way. */
int index_integrity(index_t *ix, int max, char **ret_report);

/* Calls fn for every row of the chunks table (streams: of the streams table) in digest order. digest is
 * NULL when the row's digest is not HASH_LEN bytes, loc NULL when a value is out of range. A negative
 * return of fn stops the walk and is returned; a read error gives its code. */
typedef int index_row_fn(void *ud, const uint8_t *digest, const index_loc *loc);
int index_each(index_t *ix, bool streams, index_row_fn *fn, void *ud);

#endif

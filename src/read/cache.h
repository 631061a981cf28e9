/*
 * cache.h — concurrent lazy reads for many threads at once (the daemon's data path): a bounded LRU of
 * decompressed chunks shared by every reader, a pool of index handles (one SQLite connection is used
 * by one thread at a time), and chunk fetches that read through the store callbacks on a miss.
 *
 * All functions are thread-safe. The store's read callback is called from several threads at once:
 * use this only with stores whose callbacks allow that (the built-in local store does).
 */
#ifndef RH_READ_CACHE_H
#define RH_READ_CACHE_H

#include <stdbool.h>
#include <sys/uio.h>
#include <stddef.h>
#include <stdint.h>

#include "hash/hash.h"
#include "store/store.h"
#include "store/streammap.h"

typedef struct chunk_cache chunk_cache;

/* A chunk held by a reader: data stays valid until chunk_release. */
typedef struct chunk_ref chunk_ref;
const uint8_t *chunk_data(const chunk_ref *c);

typedef struct cache_stats {
    uint64_t hits, misses, fetched_bytes, evictions, bytes, entries;
    uint64_t fetches; /* reads through the store: a miss that found its chunk in flight makes none */
    uint64_t waits;   /* times a miss waited for a fetch in flight (of its chunk, or of its pack) */
} cache_stats;

/* capacity: bytes of decompressed chunks kept (at least one chunk is always kept while referenced);
 * verify: check every fetched chunk's SHA-256. 0, or -ENOMEM (*ret untouched). */
int chunk_cache_new(rh_store *s, size_t capacity, bool verify, chunk_cache **ret);
void chunk_cache_free(chunk_cache *c); /* NULL is a no-op; no chunk may be held */
size_t chunk_cache_capacity(const chunk_cache *c);
/*
 * The chunk `digest` of raw length `len`: from the cache, or fetched (index lookup, one read through the
 * callbacks, checksum, decompression) and inserted. *ret_loc (may be NULL) gets the location on a fetch
 * failure, for messages. Errors as reader_fetch_chunk; RH_ECORRUPT also when the cached chunk of that
 * digest has another length.
 */
int chunk_get(chunk_cache *c, const uint8_t digest[HASH_LEN], uint64_t len, chunk_ref **ret,
              index_loc *ret_loc);
/* chunk_get for entry i (not a hole) of stream map m: at the location the map gives, if any (then no
 * index is involved), else where the index says. What the readers of files use. */
int chunk_get_entry(chunk_cache *c, const streammap *m, size_t i, chunk_ref **ret, index_loc *ret_loc);
void chunk_release(chunk_cache *c, chunk_ref *ref);
/* True when the chunk is cached or being fetched (for read-ahead decisions; the answer may be stale at
 * once). */
bool chunk_cached(chunk_cache *c, const uint8_t digest[HASH_LEN]);
/* A reference to the chunk of length len if it is cached, else NULL; never fetches. */
chunk_ref *chunk_peek(chunk_cache *c, const uint8_t digest[HASH_LEN], uint64_t len);
/* Whether every chunk of m that bytes [off, off + len) touch is in the cache (holes need none). */
bool cache_range_cached(chunk_cache *c, const streammap *m, uint64_t off, size_t len);
void chunk_cache_get_stats(chunk_cache *c, cache_stats *ret);

/*
 * Reads file bytes [off, off+len) described by stream map m into out, through the cache; holes are
 * zeros. *ret_n is short only at the end of the file. On failure *ret_bad (may be NULL) gets the
 * index of the stream map entry that failed.
 */
int cache_pread(chunk_cache *c, const streammap *m, void *out, size_t len, uint64_t off, size_t *ret_n,
                size_t *ret_bad, index_loc *ret_loc);

/*
 * The bytes [off, off+len) of stream map m as pieces of cached chunks, without copying: for a reply
 * with writev (fuse_reply_iov). Holds a reference on every chunk in refs until cache_iov_release.
 * Holes point at a static zero buffer. Failure as for cache_pread (nothing is held then).
 */
typedef struct cache_iov {
    struct iovec *iov;
    size_t n;
    chunk_ref **refs;
    size_t nrefs;
    size_t bytes; /* short only at the end of the file */
} cache_iov;
int cache_pread_iov(chunk_cache *c, const streammap *m, uint64_t off, size_t len, cache_iov *v,
                    size_t *ret_bad, index_loc *ret_loc);
/* The same from what the cache holds, never fetching (no I/O: for a thread that must not wait): -EAGAIN
 * when a chunk it needs is not cached. */
int cache_peek_iov(chunk_cache *c, const streammap *m, uint64_t off, size_t len, cache_iov *v);
void cache_iov_release(chunk_cache *c, cache_iov *v);

/* ---- read-ahead for a sequential reader ---- */

/*
 * After a read of [off, off + n) of the file of map m: whether it went on where the file's last read ended
 * (*next_off, which becomes off + n), and which entries to fetch ahead, [*ret_from, *ret_to): up to
 * `window` entries past the read, and of those only the ones that start within max_bytes of its end (at
 * least one), none below *ra_upto (queued already; it becomes *ret_to). An empty range when the read was
 * not sequential. The caller serializes the calls for one file.
 */
bool cache_plan_readahead(const streammap *m, uint64_t off, size_t n, unsigned window, uint64_t max_bytes,
                          uint64_t *next_off, size_t *ra_upto, size_t *ret_from, size_t *ret_to);
/* The bytes a sequential reader's read-ahead may run ahead of it: half of the cache, so that what is
 * fetched ahead is still there when it is read, also with a second reader going. */
#define cache_readahead_bytes(c) (chunk_cache_capacity(c) / 2)
/* Fetches entries [from, to) of m into the cache, those not there yet; failures are left for the reads. */
void cache_prefetch(chunk_cache *c, const streammap *m, size_t from, size_t to);

#endif

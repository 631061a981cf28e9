/*
 * reader.h — the lazy read path: open one regular file of a snapshot and read any byte range of it.
 * The file's stream map is read once at open (binary search by offset afterwards); each chunk's location
 * comes from the stream map when it carries locations (streammap_loc), else from the index; its record
 * is read through the store callbacks, checked (checksum always, SHA-256 when asked) and decompressed.
 * Holes read as zeros without touching the store.
 */
#ifndef RH_READ_READER_H
#define RH_READ_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/index.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/store.h"
#include "store/streammap.h"

/*
 * The last pack a reader decoded, so that reading its members one after another decodes it once. The
 * record is kept as read (header, member table, data) beside its decoded data.
 */
typedef struct pack_memo {
    bool valid;
    uint32_t container;
    uint64_t offset;
    container_record rec;
    uint8_t *buf, *raw;
    size_t buf_cap, raw_cap;
    const uint8_t *data; /* the decoded data: in raw, or in buf for a pack stored raw */
} pack_memo;
void pack_memo_clear(pack_memo *m); /* frees the buffers */

typedef struct reader_file {
    rh_store *s;
    index_t *ix;      /* reader_open's handle */
    index_t **ixp;    /* the handle in use: &ix, or &s->ix for reader_open_shared */
    unsigned *genp;   /* reader_open_shared: &s->ix_handle_gen, so that a damaged index is repaired */
    streammap *map;
    bool verify;
    pack_memo memo;
    /* the last chunk decoded, so that small sequential reads decode each chunk once */
    size_t cached;
    uint8_t *cache;
    size_t cache_cap;
    bool cache_valid;
} reader_file;

/* Reads and decodes the stream map that `cs` refers to (checking its digest). */
int reader_load_streammap(rh_store *s, const catalog_stream *cs, streammap **ret);
/* The same for a stream map at `loc` (raw_len: its decoded length) whose reference names the first
 * digest_len bytes of its digest (a stub's reference, or a Windows reparse point's). */
int reader_load_streammap_at(rh_store *s, const index_loc *loc, const uint8_t *digest, size_t digest_len,
                             uint64_t start, streammap **ret);
/* The stream map of regular file e (for a hard-link member, the stream it carries), checked against
 * the entry: RH_ENOTDEDUP when the file has none (it could not be read at backup time), RH_ECORRUPT
 * when the map's size is not the entry's. */
int reader_load_file_map(rh_store *s, const catalog_entry *e, streammap **ret);
/* Opens the file of catalog entry e (a regular file with a stream; for a hard-link member, the stream
 * it carries). ix is used for chunk lookups and must outlive the file. */
int reader_open(rh_store *s, index_t *ix, const catalog_entry *e, bool verify, reader_file **ret);
/* Opens a file by its stream map, which the file then owns (and frees, also when this fails): for
 * formats whose stubs are not catalog entries (a Windows reparse point). */
int reader_open_map(rh_store *s, streammap *m, bool verify, reader_file **ret);
/*
 * Opens the file that a stub describes, given the value of its stub xattr (the store format's
 * stub_xattr): all its stream maps read, checked and joined. RH_ECORRUPT for a damaged value or map,
 * RH_EWRONGSTORE for a stub of another store. The file's size is reader_size().
 */
int reader_open_stub(rh_store *s, const uint8_t *raw, size_t len, bool verify, reader_file **ret);
/* The map of the whole file that a stub describes (what reader_open_stub opens), for readers that read
 * through the chunk cache (cache.h). Errors as reader_open_stub. */
int reader_load_stub(rh_store *s, const uint8_t *raw, size_t len, streammap **ret);
static inline uint64_t reader_size(const reader_file *f) { return f->map->size; }
/* reader_open on the store's shared handle s->ix (store_shared_index), which it reopens when the index is
 * repaired: the public API's lazy reads. The caller serializes reads that share s->ix. */
int reader_open_shared(rh_store *s, const catalog_entry *e, bool verify, reader_file **ret);
void reader_close(reader_file *f); /* NULL is a no-op */
/* Reads up to len bytes at off; *ret_n gets the count (short only at the end of the file). Errors name
 * no path: the caller knows which file it read. */
int reader_pread(reader_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n);
/*
 * Fetches chunk `digest` of raw length raw_len into out (raw_len bytes): index lookup, one read through
 * the callbacks, checksum, decompression, and the SHA-256 when verify is set. RH_ENOCHUNK,
 * RH_ENOCONTAINER, RH_ECHECKSUM, RH_ECORRUPT or RH_EDIGEST on failure; *ret_loc (may be NULL) gets the
 * location looked up, for messages.
 */
int reader_fetch_chunk(rh_store *s, index_t *ix, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                       bool verify, uint8_t *out, index_loc *ret_loc);

/* Gets the other members of a pack that a fetch decoded (checked against their digests when the fetch
 * verifies), for a cache to keep: they are likely read next. */
typedef void reader_sibling_fn(void *ud, const uint8_t digest[HASH_LEN], const uint8_t *data, uint32_t len);
/*
 * reader_fetch_chunk, with the chunk's location when the stream map gave it (known, from streammap_loc;
 * NULL: look it up in ix, which may then not be NULL), and two options for chunks stored in packs: memo
 * (may be NULL) keeps the pack decoded for the next fetch; sibling (may be NULL) is called with every
 * other member of a pack the fetch had to decode.
 */
int reader_fetch_chunk_ex(rh_store *s, index_t *ix, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                          const index_loc *known, bool verify, uint8_t *out, index_loc *ret_loc,
                          pack_memo *memo, reader_sibling_fn *sibling, void *ud);

/*
 * reader_fetch_chunk_ex through a handle that follows index repairs (store.h, "a damaged index"): *ixp,
 * of generation *genp, is (re)opened with index_open `flags` when it is NULL or older than the store's
 * generation. When the fetch fails and store_index_repair finds the index at fault, the index is rebuilt
 * (once per process) and the fetch retried once through a new handle; so a damaged index never fails an
 * intact chunk. With a known location the index is neither opened nor repaired.
 */
int reader_fetch_chunk_rx(rh_store *s, index_t **ixp, unsigned *genp, int flags,
                          const uint8_t digest[HASH_LEN], uint64_t raw_len, const index_loc *known,
                          bool verify, uint8_t *out, index_loc *ret_loc, pack_memo *memo,
                          reader_sibling_fn *sibling, void *ud);

#endif

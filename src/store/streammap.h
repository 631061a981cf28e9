/*
 * streammap.h — a regular file's stream map: its chunks in order, each (length, SHA-256), with runs of
 * zeros recorded as holes that have no digest and no stored data. The raw encoding (doc/format.md,
 * "Stream maps") is what is hashed to name the stream map and what is compressed into a RECORD_STREAM
 * record. Decoded maps carry cumulative offsets so that the chunk holding a byte is a binary search.
 */
#ifndef RH_STORE_STREAMMAP_H
#define RH_STORE_STREAMMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "hash/hash.h"
#include "index/index.h"

#define STREAMMAP_HEADER_SIZE 24
#define STREAMMAP_ENTRY_SIZE 40
#define STREAMMAP_HOLE (1ull << 63)

typedef struct streammap_entry {
    uint64_t length; /* raw bytes; a hole may be longer than a chunk */
    bool hole;
    uint8_t digest[HASH_LEN]; /* all zero for holes */
} streammap_entry;

typedef struct streammap {
    uint64_t size; /* sum of all lengths: the file's size */
    size_t n;
    streammap_entry *e;
    uint64_t *start; /* start[i] is the file offset of entry i */
    /*
     * Where each entry's chunk is stored, when the stream map itself says so (a Windows dedup stream map
     * carries container, offset and stored size per chunk), else NULL: then the index says (our format,
     * whose maps hold digests only). Readers ask streammap_loc and look in the index only when it gives
     * NULL. Holes have no location.
     */
    index_loc *loc;
} streammap;

/* Where entry i's chunk is stored if the map says, else NULL (look it up in the index by digest). */
static inline const index_loc *streammap_loc(const streammap *m, size_t i)
{
    return m->loc && !m->e[i].hole ? &m->loc[i] : NULL;
}

/* Appends the raw encoding of a stream map of n entries (whose lengths sum to size) to out (a writer's:
 * bytebuf aborts when it cannot grow). */
void streammap_encode(const streammap_entry *e, size_t n, uint64_t size, bytebuf *out);
/* Parses raw bytes into a new map; RH_ECORRUPT when malformed or when the lengths do not add up,
 * -ENOMEM when the map cannot be allocated. */
int streammap_decode(const uint8_t *raw, size_t len, streammap **ret);
void streammap_free(streammap *m); /* NULL is a no-op */
/* Index of the entry that holds byte `off` (off < m->size), by binary search over start[]. */
size_t streammap_find(const streammap *m, uint64_t off);

/* lseek(2)'s SEEK_DATA or SEEK_HOLE from off over m's holes: 0 and the offset in *ret; -ENXIO when off is
 * at or past the end, or when SEEK_DATA finds no data after it (the end counts as a hole); -EINVAL for
 * another whence. */
int streammap_seek(const streammap *m, uint64_t off, int whence, uint64_t *ret);

/*
 * File bytes [off, off + len) as pieces of entries, in order: the one place where a range of a file
 * becomes "these bytes of these chunks" (the readers, the daemon's cache and its zero-copy replies all
 * walk it). Use:
 *     streammap_range r;
 *     size_t total = streammap_range_start(&r, m, off, len);   // len clamped at the end of the file
 *     streammap_piece p;
 *     while (streammap_range_next(&r, &p)) ... bytes [p.in, p.in + p.n) of m->e[p.i] go to p.done ...
 */
typedef struct streammap_range {
    const streammap *m;
    size_t i;       /* the next entry */
    uint64_t pos;   /* the next file offset */
    uint64_t end;   /* the range's end */
    size_t done;    /* bytes handed out so far */
} streammap_range;
typedef struct streammap_piece {
    size_t i;    /* entry index */
    uint64_t in; /* offset of the piece in the entry's bytes */
    size_t n;    /* length, at least 1 */
    size_t done; /* offset of the piece in the range */
} streammap_piece;
/* Starts a walk; returns the range's length: len, short at the end of the file, 0 past it. */
size_t streammap_range_start(streammap_range *r, const streammap *m, uint64_t off, size_t len);
/* The next piece; false when the range is done. */
bool streammap_range_next(streammap_range *r, streammap_piece *p);

#endif

/*
 * catalog_internal.h — what the reader's files share about an open catalog: the handle's layout, its
 * block cache and the record of damage found. catalog_read.c (entries) reads through catalog_file.c
 * (opening, bytes, the block cache), and both record damage through catalog_damage.c. Not for other
 * modules: they use catalog.h.
 */
#ifndef RH_SNAPSHOT_CATALOG_INTERNAL_H
#define RH_SNAPSHOT_CATALOG_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/util.h"
#include "snapshot/catalog.h"

/* 64 blocks of 32 KiB: 2 MiB per open catalog. Small blocks keep the bytes of a binary search over a
 * huge directory low; reads of two blocks or more bypass the cache (they are listings, read once). */
#define CACHE_BLOCK (32u << 10)
#define CACHE_BLOCKS 64

typedef struct cblock {
    uint8_t *data; /* CACHE_BLOCK bytes */
    uint64_t start;
    uint64_t used; /* LRU clock; 0 when the block holds nothing */
} cblock;

/* Where one block of a packed catalog is stored, and what became of it. */
typedef struct pblock {
    uint64_t off, sum;
    uint32_t len;
    uint8_t codec;
    bool damaged; /* its checksum failed once (recorded); it is decoded anyway, each entry checks itself */
} pblock;

struct catalog {
    const rh_store_ops *ops;
    void *ctx;
    char *path;
    /* file_end is the end of the catalog's bytes: of the file, or of a packed file's logical catalog */
    uint64_t entry_count, table_off, heap_off, meta_off, file_end;
    uint64_t nblocks;
    pblock *blocks_at; /* a packed catalog's blocks, NULL for a plain one */
    uint8_t *zbuf;     /* one stored block (protected by lock) */
    catalog_meta meta;
    char *source, *hostname;

    pthread_mutex_t lock;
    cblock blocks[CACHE_BLOCKS]; /* protected by lock */
    uint64_t clock;              /* protected by lock */
    catalog_damage *damage;      /* protected by lock */
    size_t ndamage;              /* protected by lock */
    /* The children of a damaged root, found from the table once (protected by lock). */
    bool root_known;
    uint64_t root_first, root_count;
};

/* A NUL-terminated malloc'd copy of p[0..n) (p may be NULL when n is 0), or NULL when memory is
 * exhausted: the reader allocates with mem_* (util.h), since the public API reaches it. */
static inline uint8_t *catalog_dup0(const uint8_t *p, size_t n)
{
    uint8_t *q = mem_alloc(n + 1);
    if (!q)
        return NULL;
    if (n)
        memcpy(q, p, n);
    q[n] = 0;
    return q;
}

/* Reads logical bytes dst[0..len) at off (catalog_file.c); RH_ECORRUPT outside the catalog or in a block
 * that is lost. */
int catalog_read_at(catalog *c, uint64_t off, void *dst, size_t len);
/* Records one damaged part (once per offset and code). Called with c->lock held iff `locked`. Returns 0,
 * or -ENOMEM when the record cannot grow: the caller then fails with -ENOMEM, so that no damage found
 * goes unrecorded. */
int catalog_note_damage(catalog *c, bool locked, int code, uint64_t off, uint64_t len, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/*
 * A header of `len` bytes whose checksum (the u64 at sum_off, over bytes [0, sum_off)) fails: tries every
 * change of one byte and keeps the one that makes it match. Returns the repaired byte's offset, or -1
 * (h untouched) when no single byte does. A 64-bit checksum makes a wrong repair as unlikely as a
 * damaged header that passes its check.
 */
int catalog_repair_header(uint8_t *h, size_t sum_off);
/* The same for a blob whose checksum, hash_checksum(p, len, NULL, 0), must be `sum`; only for len up to
 * CATALOG_REPAIR_MAX (the cost grows with the square of len). */
#define CATALOG_REPAIR_MAX 1024
int catalog_repair_blob(uint8_t *p, size_t len, uint64_t sum);

#endif

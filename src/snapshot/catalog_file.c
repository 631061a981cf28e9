/*
 * catalog_file.c — an open snapshot catalog as bytes: catalog_open reads and checks the 128-byte header
 * (repairing one damaged byte), the meta blob at the end of the file and, for a packed catalog, its
 * header and block index; catalog_read_at then gives the logical bytes of either form through a small
 * LRU cache of aligned blocks, decoding a packed catalog's blocks as they are needed. Decoding entries
 * from these bytes is catalog_read.c's business, above this file.
 *
 * A catalog may live behind an object store where every read is a ranged GET, so nothing here reads it
 * whole: open costs a few small reads, and every later read fetches only the blocks it touches. Every
 * length and offset in the header and block index is checked before anything is allocated or read. The
 * cache and the damage record are the only mutable state; one mutex guards them and serializes the read
 * callback, as rh_store_ops requires.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"
#include "snapshot/catalog_internal.h"

/* Reads this long or longer bypass the cache (they are listings, read once). */
#define DIRECT_READ_MIN (2 * CACHE_BLOCK)

/* ---- Reading bytes ---- */

/* Called with c->lock held: block b of a packed catalog, decoded into dst. */
static int load_block(catalog *c, uint64_t b, uint8_t *dst)
{
    const pblock *pb = &c->blocks_at[b];
    size_t n = (size_t)MIN((uint64_t)CATALOG_PACK_BLOCK, c->file_end - b * CATALOG_PACK_BLOCK);
    uint8_t *into = pb->codec == CODEC_RAW ? dst : c->zbuf; /* a raw block's length is n (checked at open) */
    int r = c->ops->read(c->ctx, c->path, pb->off, into, pb->len);
    if (r < 0)
        return r == -EIO ? RH_ECORRUPT : r; /* the index said the bytes are there */
    /* This checksum catches damage even where it decodes to the same bytes, as every stored byte of a
     * store is checked. A block that fails it is recorded and still decoded: every entry in it (and the
     * plain header and the meta blob) has a checksum of its own, so only what the damage touched is
     * lost; a block that no longer decodes is lost whole. */
    if (hash_checksum(into, pb->len, NULL, 0) != pb->sum && !c->blocks_at[b].damaged) {
        r = catalog_note_damage(c, true, RH_ECHECKSUM, b * CATALOG_PACK_BLOCK, n,
                                "block %llu (logical bytes %llu..%llu): checksum mismatch", (unsigned long long)b,
                                (unsigned long long)(b * CATALOG_PACK_BLOCK),
                                (unsigned long long)(b * CATALOG_PACK_BLOCK + n));
        if (r < 0)
            return r;
        c->blocks_at[b].damaged = true;
    }
    r = pb->codec == CODEC_RAW ? 0 : decompress_chunk(pb->codec, c->zbuf, pb->len, dst, n);
    if (r == -ENOMEM)
        return r; /* no zstd context for this thread: the block is not damaged */
    if (r < 0) {
        r = catalog_note_damage(c, true, RH_ECORRUPT, b * CATALOG_PACK_BLOCK, n,
                                "block %llu (logical bytes %llu..%llu): cannot be decoded, its entries are lost",
                                (unsigned long long)b, (unsigned long long)(b * CATALOG_PACK_BLOCK),
                                (unsigned long long)(b * CATALOG_PACK_BLOCK + n));
        return r < 0 ? r : RH_ECORRUPT;
    }
    return 0;
}

/* Called with c->lock held: the cached block that starts at `start`, read on a miss. */
static int cache_block(catalog *c, uint64_t start, cblock **ret)
{
    cblock *victim = &c->blocks[0];
    for (int i = 0; i < CACHE_BLOCKS; i++) {
        cblock *b = &c->blocks[i];
        if (b->used && b->start == start) {
            b->used = ++c->clock;
            *ret = b;
            return 0;
        }
        if (b->used < victim->used)
            victim = b;
    }
    if (!victim->data && !(victim->data = mem_alloc(CACHE_BLOCK)))
        return -ENOMEM;
    victim->used = 0;
    size_t len = (size_t)MIN((uint64_t)CACHE_BLOCK, c->file_end - start);
    int r = c->blocks_at ? load_block(c, start / CATALOG_PACK_BLOCK, victim->data)
                         : c->ops->read(c->ctx, c->path, start, victim->data, len);
    if (r < 0)
        return r;
    victim->start = start;
    victim->used = ++c->clock;
    *ret = victim;
    return 0;
}

int catalog_read_at(catalog *c, uint64_t off, void *dst, size_t len)
{
    if (off > c->file_end || len > c->file_end - off)
        return RH_ECORRUPT;
    if (len == 0)
        return 0;
    int r = 0;
    pthread_mutex_lock(&c->lock);
    if (len >= DIRECT_READ_MIN && !c->blocks_at) {
        r = c->ops->read(c->ctx, c->path, off, dst, len);
    } else {
        /* A large read of a packed catalog decodes the blocks it covers whole straight into dst. */
        bool direct = len >= DIRECT_READ_MIN;
        uint8_t *p = dst;
        while (len > 0 && r == 0) {
            uint64_t start = off - off % CACHE_BLOCK;
            size_t n = (size_t)MIN((uint64_t)len, start + CACHE_BLOCK - off);
            if (direct && off == start && (n == CACHE_BLOCK || off + n == c->file_end)) {
                r = load_block(c, start / CATALOG_PACK_BLOCK, p);
            } else {
                cblock *b;
                r = cache_block(c, start, &b);
                if (r >= 0)
                    memcpy(p, b->data + (off - start), n);
            }
            p += n;
            off += n;
            len -= n;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- Opening ---- */

/*
 * A read at open failed. The callback reports a short read like any other failure, so tell "the file is
 * shorter than its header says" (corrupt) from "the store cannot be read" by probing its first byte.
 */
static int open_read_error(const rh_store_ops *ops, void *ctx, const char *path, int r)
{
    if (r == -ENOENT)
        return RH_ENOSNAPSHOT;
    if (r == -ENOMEM)
        return r; /* the callback (or the store below it) ran out of memory: not a short read */
    uint8_t b;
    return ops->read(ctx, path, 0, &b, 1) == 0 ? RH_ECORRUPT : r;
}

/* Repairs a header whose checksum fails when one byte makes it pass, and records either outcome: 0 when
 * repaired, else RH_ECORRUPT (or -ENOMEM when the damage cannot be recorded). */
static int repair_header(catalog *c, uint8_t *h, size_t sum_off, uint64_t at, const char *what)
{
    int pos = catalog_repair_header(h, sum_off);
    int r;
    if (pos >= 0)
        r = catalog_note_damage(c, false, RH_ECHECKSUM, at, sum_off + 8,
                                "%s: checksum mismatch, byte %d repaired", what, pos);
    else
        r = catalog_note_damage(c, false, RH_ECORRUPT, at, sum_off + 8,
                                "%s: checksum mismatch, more than one byte damaged: unrecoverable", what);
    return r < 0 ? r : pos >= 0 ? 0 : RH_ECORRUPT;
}

/* Checks the header (repairing one damaged byte) and fills the layout fields of c. */
static int parse_header(catalog *c, uint8_t h[CATALOG_HEADER_SIZE], uint32_t *ret_meta_len)
{
    int r;
    if (get_le64(h + CH_CHECKSUM) != hash_checksum(h, CATALOG_HEADER_SUMMED, NULL, 0) &&
        (r = repair_header(c, h, CATALOG_HEADER_SUMMED, 0, "header")) < 0)
        return r;
    if (memcmp(h + CH_MAGIC, CATALOG_MAGIC, CATALOG_MAGIC_LEN) != 0)
        return RH_ECORRUPT;
    if (get_le32(h + CH_VERSION) != CATALOG_VERSION)
        return RH_EVERSION;
    uint32_t flags = get_le32(h + CH_FLAGS), meta_len = get_le32(h + CH_META_LENGTH);
    uint64_t count = get_le64(h + CH_ENTRY_COUNT), heap_len = get_le64(h + CH_HEAP_LENGTH);
    c->table_off = get_le64(h + CH_TABLE_OFFSET);
    c->heap_off = get_le64(h + CH_HEAP_OFFSET);
    c->meta_off = get_le64(h + CH_META_OFFSET);
    if ((flags & ~(uint32_t)CATALOG_PARTIAL) || get_le32(h + CH_ENTRY_SIZE) != CATALOG_ENTRY_SIZE ||
        !mem_is_zero(h + CH_RESERVED, CH_CHECKSUM - CH_RESERVED))
        return RH_ECORRUPT;
    if (count == 0 || count > CATALOG_ENTRIES_MAX || c->table_off != CATALOG_HEADER_SIZE ||
        c->heap_off != c->table_off + count * CATALOG_ENTRY_SIZE || heap_len > UINT64_MAX - c->heap_off)
        return RH_ECORRUPT;
    c->file_end = c->heap_off + heap_len;
    if (meta_len < 8 || meta_len > CATALOG_META_MAX || c->meta_off < c->heap_off ||
        c->meta_off > c->file_end || c->file_end - c->meta_off != meta_len)
        return RH_ECORRUPT;
    c->entry_count = count;
    c->meta = (catalog_meta){
        .flags = flags,
        .entry_count = count,
        .created_ns = get_le64(h + CH_CREATED_NS),
        .files = get_le64(h + CH_FILES),
        .bytes = get_le64(h + CH_BYTES),
    };
    *ret_meta_len = meta_len;
    return 0;
}

/* Copies the source path and hostname into c (catalog_close frees them): 0 or -ENOMEM. */
static int set_meta_strings(catalog *c, const uint8_t *src, size_t slen, const uint8_t *host, size_t hlen)
{
    c->source = (char *)catalog_dup0(src, slen);
    c->hostname = (char *)catalog_dup0(host, hlen);
    c->meta.source = c->source;
    c->meta.hostname = c->hostname;
    return c->source && c->hostname ? 0 : -ENOMEM;
}

/*
 * The meta blob: u32 length + source path, u32 length + hostname, nothing after. It only informs (no
 * entry depends on it), so a damaged one that cannot be repaired leaves both strings empty, recorded.
 */
static int parse_meta(catalog *c, uint8_t *p, size_t len, uint64_t sum)
{
    if (hash_checksum(p, len, NULL, 0) != sum) {
        int pos = catalog_repair_blob(p, len, sum);
        int r = catalog_note_damage(c, false, pos >= 0 ? RH_ECHECKSUM : RH_ECORRUPT, c->meta_off, len,
                                    pos >= 0 ? "meta blob: checksum mismatch, byte %d repaired"
                                             : "meta blob: checksum mismatch: source path and hostname lost%.0d",
                                    pos);
        if (r < 0)
            return r;
        if (pos < 0)
            return set_meta_strings(c, NULL, 0, NULL, 0);
    }
    cursor cu = cursor_make(p, len);
    uint32_t slen = cursor_le32(&cu);
    const uint8_t *src = cursor_take(&cu, slen);
    uint32_t hlen = cursor_le32(&cu);
    const uint8_t *host = cursor_take(&cu, hlen);
    if (cu.bad || cu.left || memchr(src, 0, slen) || memchr(host, 0, hlen))
        return RH_ECORRUPT;
    return set_meta_strings(c, src, slen, host, hlen);
}

/*
 * The header and block index of a packed catalog (its first CATALOG_PACK_HEADER_SIZE bytes in h): checks
 * them and fills c->blocks_at and c->file_end (the logical size). The index must tile the file from the
 * header to itself, and every block must be one that could have been written: a raw block is exactly
 * its logical length, a compressed one at most zstd's bound for it.
 */
static int open_packed(catalog *c, uint8_t *h)
{
    int r;
    if (get_le64(h + CPH_CHECKSUM) != hash_checksum(h, CATALOG_PACK_HEADER_SUMMED, NULL, 0) &&
        (r = repair_header(c, h, CATALOG_PACK_HEADER_SUMMED, 0, "packed header")) < 0)
        return r;
    if (get_le32(h + CPH_VERSION) != CATALOG_PACK_VERSION)
        return RH_EVERSION;
    uint64_t size = get_le64(h + CPH_LOGICAL_SIZE), index_off = get_le64(h + CPH_INDEX_OFFSET);
    if (get_le32(h + CPH_BLOCK_SIZE) != CATALOG_PACK_BLOCK ||
        !mem_is_zero(h + CPH_RESERVED, CPH_CHECKSUM - CPH_RESERVED) ||
        size < CATALOG_HEADER_SIZE + CATALOG_ENTRY_SIZE || size > CATALOG_PACK_LOGICAL_MAX ||
        index_off < CATALOG_PACK_HEADER_SIZE)
        return RH_ECORRUPT;
    /* Every block takes at least one byte before the index: a bound on what a bad header can make us
     * allocate, besides the size limit. */
    uint64_t n = (size + CATALOG_PACK_BLOCK - 1) / CATALOG_PACK_BLOCK;
    if (n > index_off - CATALOG_PACK_HEADER_SIZE || index_off > UINT64_MAX - n * CATALOG_PACK_ENTRY_SIZE)
        return RH_ECORRUPT;
    /* Nor is the index allocated before its last byte is known to exist: the header alone could
     * otherwise make a 64-byte file cost 128 MiB. */
    uint8_t last;
    r = c->ops->read(c->ctx, c->path, index_off + n * CATALOG_PACK_ENTRY_SIZE - 1, &last, 1);
    if (r < 0)
        return open_read_error(c->ops, c->ctx, c->path, r);
    _cleanup_(freep) uint8_t *ix = mem_alloc(n * CATALOG_PACK_ENTRY_SIZE);
    if (!ix)
        return -ENOMEM;
    r = c->ops->read(c->ctx, c->path, index_off, ix, n * CATALOG_PACK_ENTRY_SIZE);
    if (r < 0)
        return open_read_error(c->ops, c->ctx, c->path, r);
    uint64_t ixsum = get_le64(h + CPH_INDEX_CHECKSUM);
    if (hash_checksum(ix, n * CATALOG_PACK_ENTRY_SIZE, NULL, 0) != ixsum) {
        /* Repaired if one byte is wrong and the index small; else used as it is if it still describes
         * blocks that tile the file: each block is checked against its own checksum anyway. */
        int pos = catalog_repair_blob(ix, n * CATALOG_PACK_ENTRY_SIZE, ixsum);
        r = catalog_note_damage(c, false, RH_ECHECKSUM, index_off, n * CATALOG_PACK_ENTRY_SIZE,
                                pos >= 0 ? "block index: checksum mismatch, byte %d repaired"
                                         : "block index: checksum mismatch%.0d", pos);
        if (r < 0)
            return r;
    }
    if (!(c->blocks_at = mem_calloc(n, sizeof(*c->blocks_at))))
        return -ENOMEM;
    c->nblocks = n;
    uint64_t at = CATALOG_PACK_HEADER_SIZE;
    for (uint64_t b = 0; b < n; b++) {
        const uint8_t *e = ix + b * CATALOG_PACK_ENTRY_SIZE;
        pblock *pb = &c->blocks_at[b];
        size_t want = (size_t)MIN((uint64_t)CATALOG_PACK_BLOCK, size - b * CATALOG_PACK_BLOCK);
        *pb = (pblock){ .off = at, .sum = get_le64(e + 8), .len = get_le32(e), .codec = e[4] };
        if (e[5] || e[6] || e[7] || (pb->codec == CODEC_RAW && pb->len != want) ||
            (pb->codec == CODEC_ZSTD && pb->len > compress_bound(want)) ||
            (pb->codec != CODEC_RAW && pb->codec != CODEC_ZSTD))
            break;
        at += pb->len;
    }
    if (at != index_off) {
        r = catalog_note_damage(c, false, RH_ECORRUPT, index_off, n * CATALOG_PACK_ENTRY_SIZE,
                                "block index: does not describe the blocks: unrecoverable");
        return r < 0 ? r : RH_ECORRUPT;
    }
    if (!(c->zbuf = mem_alloc(compress_bound(CATALOG_PACK_BLOCK))))
        return -ENOMEM;
    c->file_end = size;
    return 0;
}

int catalog_open(const rh_store_ops *ops, void *ctx, const char *path, catalog **ret)
{
    return catalog_open_why(ops, ctx, path, ret, NULL);
}

int catalog_open_why(const rh_store_ops *ops, void *ctx, const char *path, catalog **ret,
                     char why[CATALOG_WHY_MAX])
{
    if (why)
        *why = 0;
    if (!ops || !ops->read || !path || !ret)
        return -EINVAL;
    /* Enough to tell the two forms apart: a packed catalog may be shorter than a plain header. */
    uint8_t h[CATALOG_HEADER_SIZE];
    int r = ops->read(ctx, path, 0, h, CATALOG_PACK_HEADER_SIZE);
    if (r < 0)
        return open_read_error(ops, ctx, path, r);

    catalog *c = mem_calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ops = ops;
    c->ctx = ctx;
    pthread_mutex_init(&c->lock, NULL);
    if (!(c->path = mem_strdup(path))) {
        catalog_close(c);
        return -ENOMEM;
    }
    bool packed = memcmp(h, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN) == 0;
    if (!packed && memcmp(h, CATALOG_MAGIC, CATALOG_MAGIC_LEN) != 0) {
        /* A damaged magic: a packed header that one byte repairs is one (open_packed records it). */
        uint8_t try[CATALOG_PACK_HEADER_SIZE];
        memcpy(try, h, sizeof(try));
        packed = catalog_repair_header(try, CATALOG_PACK_HEADER_SUMMED) >= 0 &&
                 memcmp(try, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN) == 0;
    }
    if (packed) {
        if ((r = open_packed(c, h)) == 0)
            r = catalog_read_at(c, 0, h, CATALOG_HEADER_SIZE);
    } else {
        r = ops->read(ctx, path, CATALOG_PACK_HEADER_SIZE, h + CATALOG_PACK_HEADER_SIZE,
                      CATALOG_HEADER_SIZE - CATALOG_PACK_HEADER_SIZE);
        if (r < 0)
            r = open_read_error(ops, ctx, path, r);
    }
    uint64_t logical_size = c->file_end;
    uint32_t meta_len = 0;
    if (r == 0)
        r = parse_header(c, h, &meta_len);
    if (r == 0 && packed && c->file_end != logical_size)
        r = RH_ECORRUPT;
    if (r == 0) {
        /* The meta blob ends the file: reading it also proves the file is complete. */
        uint8_t *m = mem_alloc(meta_len);
        r = !m ? -ENOMEM
            : packed ? catalog_read_at(c, c->meta_off, m, meta_len)
                     : ops->read(ctx, path, c->meta_off, m, meta_len);
        if (r < 0 && m && !packed)
            r = open_read_error(ops, ctx, path, r);
        else if (r == RH_ECORRUPT)
            memset(m, 0, meta_len); /* in a lost block: parse_meta records it; the index proved the size */
        if (r == 0 || (packed && r == RH_ECORRUPT))
            r = parse_meta(c, m, meta_len, get_le64(h + CH_META_CHECKSUM));
        free(m);
    }
    if (r < 0) {
        if (why && c->ndamage && r != -ENOMEM) /* the last damage found is what stopped the open */
            snprintf(why, CATALOG_WHY_MAX, "%s", c->damage[c->ndamage - 1].what);
        catalog_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

void catalog_close(catalog *c)
{
    if (!c)
        return;
    for (int i = 0; i < CACHE_BLOCKS; i++)
        free(c->blocks[i].data);
    free(c->blocks_at);
    free(c->zbuf);
    free(c->damage);
    pthread_mutex_destroy(&c->lock);
    free(c->source);
    free(c->hostname);
    free(c->path);
    free(c);
}

const catalog_meta *catalog_get_meta(const catalog *c) { return c ? &c->meta : NULL; }

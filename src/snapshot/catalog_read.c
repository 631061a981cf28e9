/*
 * catalog_read.c — reads a snapshot catalog through the store callbacks, a few small reads at a time.
 *
 * A catalog may be large (a million files make a 200+ MiB table) and may live behind an object store
 * where every read is a ranged GET, so the reader never loads it whole: open reads the 128-byte header and
 * the meta blob at the end of the file; every other access reads only the entries it needs, through a
 * small LRU cache of aligned blocks. A path lookup is a binary search per component (each probe reads one
 * table entry and its name), so it costs O(depth * log(directory size)) small reads; a directory listing
 * is one read of its contiguous slice of the table and one of the matching slice of the heap.
 *
 * Everything read from the file is untrusted: offsets and lengths are checked against the bounds that the
 * header declares before anything is allocated or read, every decoded entry's checksum is verified, and
 * any inconsistency is RH_ECORRUPT, never a crash. The cache is the only mutable state; one mutex guards
 * it and serializes the read callback, as rh_store_ops requires.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"

/* 64 blocks of 32 KiB: 2 MiB per open catalog. Small blocks keep the bytes of a binary search over a
 * huge directory low; reads of two blocks or more bypass the cache (they are listings, read once). */
#define CACHE_BLOCK (32u << 10)
#define CACHE_BLOCKS 64
#define DIRECT_READ_MIN (2 * CACHE_BLOCK)
/* One readdir call returns at most this many entries (callers page until 0 anyway) ... */
#define READDIR_MAX 65536
/* ... and reads the heap slice of a listing in one go only up to this size. */
#define BULK_HEAP_MAX (32u << 20)

typedef struct cblock {
    uint8_t *data; /* CACHE_BLOCK bytes */
    uint64_t start;
    uint64_t used; /* LRU clock; 0 when the block holds nothing */
} cblock;

/* Where one block of a packed catalog is stored. */
typedef struct pblock {
    uint64_t off, sum;
    uint32_t len;
    uint8_t codec;
} pblock;

struct catalog {
    const rh_store_ops *ops;
    void *ctx;
    char *path;
    /* file_end is the end of the catalog's bytes: of the file, or of a packed file's logical catalog */
    uint64_t entry_count, table_off, heap_off, meta_off, file_end;
    pblock *blocks_at; /* a packed catalog's blocks, NULL for a plain one */
    uint8_t *zbuf;     /* one stored block (protected by lock) */
    catalog_meta meta;
    char *source, *hostname;

    pthread_mutex_t lock;
    cblock blocks[CACHE_BLOCKS]; /* protected by lock */
    uint64_t clock;              /* protected by lock */
};

/* An entry's table bytes and, once read, its heap bytes (name then extra). */
typedef struct raw {
    uint64_t idx;
    const uint8_t *fixed;
    const uint8_t *heap;
    uint64_t name_off;
    uint32_t name_len, extra_len;
} raw;

void catalog_entry_clear(catalog_entry *e)
{
    if (!e)
        return;
    free(e->name);
    free(e->target);
    for (uint32_t i = 0; e->xattrs && i < e->xattr_count; i++) {
        free(e->xattrs[i].name);
        free(e->xattrs[i].value);
    }
    free(e->xattrs);
    memset(e, 0, sizeof(*e));
}

void catalog_entry_free(catalog_entry *e)
{
    catalog_entry_clear(e);
    free(e);
}

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
    /* The entries' own checksums would catch damage to what a block decodes to; this one also catches
     * damage that decodes to the same bytes, as every stored byte of a store is checked. */
    if (hash_checksum(into, pb->len, NULL, 0) != pb->sum)
        return RH_ECORRUPT;
    return pb->codec == CODEC_RAW ? 0 : decompress_chunk(pb->codec, c->zbuf, pb->len, dst, n);
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
    if (!victim->data)
        victim->data = xmalloc(CACHE_BLOCK);
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

/* Reads dst[0..len) at file offset off; RH_ECORRUPT if that is outside the file the header describes. */
static int cat_read(catalog *c, uint64_t off, void *dst, size_t len)
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

/* ---- Checking and decoding entries ---- */

static bool name_ok(const uint8_t *name, uint32_t len)
{
    if (len == 0 || len > CATALOG_NAME_MAX)
        return false;
    if (memchr(name, '/', len) || memchr(name, 0, len))
        return false;
    return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

/* Checks where an entry's heap bytes are, before they are read. */
static int check_bounds(const catalog *c, raw *e)
{
    const uint8_t *f = e->fixed;
    e->name_len = get_le32(f + CE_NAME_LEN);
    e->extra_len = get_le32(f + CE_EXTRA_LENGTH);
    e->name_off = get_le64(f + CE_NAME_OFFSET);
    uint64_t extra_off = get_le64(f + CE_EXTRA_OFFSET);
    if (e->name_len > CATALOG_NAME_MAX || e->extra_len < CATALOG_EXTRA_MIN ||
        e->extra_len > CATALOG_EXTRA_MAX)
        return RH_ECORRUPT;
    if (e->name_off < c->heap_off || e->name_off > c->meta_off ||
        c->meta_off - e->name_off < (uint64_t)e->name_len + e->extra_len ||
        extra_off != e->name_off + e->name_len)
        return RH_ECORRUPT;
    return 0;
}

/* Verifies the checksum and every rule of the format that one entry can be checked against alone. */
static int check_entry(const catalog *c, const raw *e)
{
    const uint8_t *f = e->fixed;
    if (get_le64(f + CE_CHECKSUM) !=
        hash_checksum(f, CATALOG_ENTRY_SUMMED, e->heap, (size_t)e->name_len + e->extra_len))
        return RH_ECORRUPT;
    uint8_t type = f[CE_TYPE], flags = f[CE_FLAGS];
    if (type < CT_REG || type > CT_SOCK || (flags & ~(CF_HARDLINK | CF_UNREADABLE)) ||
        get_le16(f + CE_RESERVED0) || !mem_is_zero(f + CE_RESERVED1, 6) || get_le32(f + CE_NLINK) == 0)
        return RH_ECORRUPT;

    uint64_t parent = get_le64(f + CE_PARENT);
    if (e->idx == 0) {
        if (parent != CATALOG_NONE || type != CT_DIR || e->name_len != 0)
            return RH_ECORRUPT;
    } else if (parent >= e->idx || !name_ok(e->heap, e->name_len)) {
        return RH_ECORRUPT;
    }

    uint64_t first = get_le64(f + CE_FIRST_CHILD), count = get_le64(f + CE_CHILD_COUNT);
    if (count == 0) {
        if (first != CATALOG_NONE)
            return RH_ECORRUPT;
    } else if (type != CT_DIR || first <= e->idx || first > c->entry_count ||
               count > c->entry_count - first) {
        return RH_ECORRUPT;
    }

    uint64_t group = get_le64(f + CE_LINK_GROUP);
    if (group == CATALOG_NONE) {
        if (flags & CF_HARDLINK)
            return RH_ECORRUPT;
    } else if (type != CT_REG || ((flags & CF_HARDLINK) ? group >= e->idx : group != e->idx)) {
        return RH_ECORRUPT;
    }

    uint8_t has_stream = f[CE_HAS_STREAM];
    if (has_stream > 1 || (has_stream && type != CT_REG))
        return RH_ECORRUPT;
    return 0;
}

static uint8_t *dup0(const uint8_t *p, size_t n)
{
    uint8_t *q = xmalloc(n + 1);
    if (n)
        memcpy(q, p, n);
    q[n] = 0;
    return q;
}

/* Parses the extra blob into e (target, xattrs); on failure e owns whatever was allocated. */
static int decode_extra(const raw *r, catalog_entry *e)
{
    cursor cu = cursor_make(r->heap + r->name_len, r->extra_len);
    uint32_t tlen = cursor_le32(&cu);
    const uint8_t *target = cursor_take(&cu, tlen);
    if (!target || tlen > CATALOG_TARGET_MAX || memchr(target, 0, tlen) ||
        (tlen && e->type != CT_SYMLINK))
        return RH_ECORRUPT;
    if (e->type == CT_SYMLINK) {
        e->target = dup0(target, tlen);
        e->target_len = tlen;
    }
    uint32_t count = cursor_le32(&cu);
    if (cu.bad || count > cu.left / 6)
        return RH_ECORRUPT;
    if (count)
        e->xattrs = xcalloc(count, sizeof(*e->xattrs));
    for (uint32_t i = 0; i < count; i++) {
        uint16_t nlen = cursor_le16(&cu);
        uint32_t vlen = cursor_le32(&cu);
        const uint8_t *name = cursor_take(&cu, nlen), *value = cursor_take(&cu, vlen);
        if (cu.bad || nlen == 0 || nlen > CATALOG_XATTR_NAME_MAX || memchr(name, 0, nlen))
            return RH_ECORRUPT;
        e->xattrs[i] = (catalog_xattr){ dup0(name, nlen), nlen, dup0(value, vlen), vlen };
        e->xattr_count = i + 1;
    }
    return cu.left == 0 ? 0 : RH_ECORRUPT;
}

/* Decodes a checked entry into *out, which is untouched on failure. */
static int decode(const raw *r, catalog_entry *out)
{
    const uint8_t *f = r->fixed;
    catalog_entry e = {
        .type = f[CE_TYPE],
        .flags = f[CE_FLAGS],
        .mode = get_le32(f + CE_MODE),
        .uid = get_le32(f + CE_UID),
        .gid = get_le32(f + CE_GID),
        .nlink = get_le32(f + CE_NLINK),
        .size = get_le64(f + CE_SIZE),
        .alloc = get_le64(f + CE_ALLOC),
        .atime_ns = (int64_t)get_le64(f + CE_ATIME),
        .mtime_ns = (int64_t)get_le64(f + CE_MTIME),
        .ctime_ns = (int64_t)get_le64(f + CE_CTIME),
        .rdev = get_le64(f + CE_RDEV),
        .ino = get_le64(f + CE_INO),
        .dev = get_le64(f + CE_DEV),
        .parent = get_le64(f + CE_PARENT),
        .first_child = get_le64(f + CE_FIRST_CHILD),
        .child_count = get_le64(f + CE_CHILD_COUNT),
        .link_group = get_le64(f + CE_LINK_GROUP),
        .name_len = r->name_len,
        .has_stream = f[CE_HAS_STREAM] != 0,
    };
    if (e.has_stream) {
        e.stream.container = get_le32(f + CE_S_CONTAINER);
        e.stream.offset = get_le64(f + CE_S_OFFSET);
        e.stream.stored_len = get_le32(f + CE_S_STORED_LEN);
        e.stream.raw_len = get_le32(f + CE_S_RAW_LEN);
        memcpy(e.stream.digest, f + CE_S_DIGEST, HASH_LEN);
        e.stream.codec = f[CE_S_CODEC];
    }
    e.name = dup0(r->heap, r->name_len);
    int rc = decode_extra(r, &e);
    if (rc < 0) {
        catalog_entry_clear(&e);
        return rc;
    }
    *out = e;
    return 0;
}

/* Reads and checks entry idx; *ret_heap (name + extra) is malloc'd and owned by the caller. */
static int read_raw(catalog *c, uint64_t idx, uint8_t fixed[CATALOG_ENTRY_SIZE], raw *e,
                    uint8_t **ret_heap)
{
    if (idx >= c->entry_count)
        return -ENOENT;
    int r = cat_read(c, c->table_off + idx * CATALOG_ENTRY_SIZE, fixed, CATALOG_ENTRY_SIZE);
    if (r < 0)
        return r;
    *e = (raw){ .idx = idx, .fixed = fixed };
    r = check_bounds(c, e);
    if (r < 0)
        return r;
    size_t len = (size_t)e->name_len + e->extra_len;
    uint8_t *heap = xmalloc(len);
    r = cat_read(c, e->name_off, heap, len);
    e->heap = heap;
    if (r >= 0)
        r = check_entry(c, e);
    if (r < 0) {
        free(heap);
        return r;
    }
    *ret_heap = heap;
    return 0;
}

int catalog_get(catalog *c, uint64_t idx, catalog_entry **ret)
{
    if (!c || !ret)
        return -EINVAL;
    uint8_t fixed[CATALOG_ENTRY_SIZE];
    raw e;
    _cleanup_(freep) uint8_t *heap = NULL;
    int r = read_raw(c, idx, fixed, &e, &heap);
    if (r < 0)
        return r;
    catalog_entry *out = xmalloc(sizeof(*out));
    r = decode(&e, out);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- Directories ---- */

static int cmp_names(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int r = memcmp(a, b, MIN(alen, blen));
    if (r)
        return r;
    return (alen > blen) - (alen < blen);
}

/* The children range of directory `dir`: -ENOENT if there is no such entry, -ENOTDIR if not a dir. */
static int dir_range(catalog *c, uint64_t dir, uint64_t *ret_first, uint64_t *ret_count)
{
    uint8_t fixed[CATALOG_ENTRY_SIZE];
    raw e;
    uint8_t *heap;
    int r = read_raw(c, dir, fixed, &e, &heap);
    if (r < 0)
        return r;
    free(heap);
    if (fixed[CE_TYPE] != CT_DIR)
        return -ENOTDIR;
    *ret_first = get_le64(fixed + CE_FIRST_CHILD);
    *ret_count = get_le64(fixed + CE_CHILD_COUNT);
    return 0;
}

int catalog_lookup(catalog *c, uint64_t dir, const uint8_t *name, size_t len, uint64_t *ret_idx)
{
    if (!c || !ret_idx || (!name && len))
        return -EINVAL;
    uint64_t first, count;
    int r = dir_range(c, dir, &first, &count);
    if (r < 0)
        return r;
    if (len == 0 || len > CATALOG_NAME_MAX || memchr(name, '/', len))
        return -ENOENT;
    uint64_t lo = 0, hi = count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint8_t fixed[CATALOG_ENTRY_SIZE];
        raw e;
        uint8_t *heap;
        r = read_raw(c, first + mid, fixed, &e, &heap);
        if (r < 0)
            return r == -ENOENT ? RH_ECORRUPT : r;
        int cmp = cmp_names(name, len, e.heap, e.name_len);
        bool child = get_le64(fixed + CE_PARENT) == dir;
        free(heap);
        if (!child)
            return RH_ECORRUPT;
        if (cmp == 0) {
            *ret_idx = first + mid;
            return 0;
        }
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -ENOENT;
}

int catalog_lookup_path(catalog *c, const char *path, uint64_t *ret_idx)
{
    if (!c || !path || !ret_idx)
        return -EINVAL;
    uint64_t cur = 0;
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len > 0) {
            int r = catalog_lookup(c, cur, (const uint8_t *)p, len, &cur);
            if (r < 0)
                return r;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    if (cur == 0) {
        /* The root itself: still prove that the catalog has a sound entry 0. */
        uint64_t first, count;
        int r = dir_range(c, 0, &first, &count);
        if (r < 0)
            return r == -ENOTDIR ? RH_ECORRUPT : r;
    }
    *ret_idx = cur;
    return 0;
}

/*
 * Decodes entries first..first+n of a listing from their table bytes `table`. The heap slice of a listing
 * is contiguous (the heap is in table order), so it is read in one go unless it is implausibly large.
 */
static int decode_slice(catalog *c, uint64_t dir, uint64_t first, size_t n, const uint8_t *table,
                        catalog_entry *out)
{
    raw *rs = xcalloc(n, sizeof(*rs));
    uint8_t *bulk = NULL;
    int r = 0;
    for (size_t j = 0; j < n && r == 0; j++) {
        rs[j] = (raw){ .idx = first + j, .fixed = table + j * CATALOG_ENTRY_SIZE };
        r = check_bounds(c, &rs[j]);
        const raw *p = j > 0 ? &rs[j - 1] : NULL;
        if (r == 0 && p && rs[j].name_off != p->name_off + p->name_len + p->extra_len)
            r = RH_ECORRUPT; /* the heap is not in table order */
    }
    uint64_t lo = rs[0].name_off;
    uint64_t hi = r == 0 ? rs[n - 1].name_off + rs[n - 1].name_len + rs[n - 1].extra_len : lo;
    if (r == 0 && hi - lo <= BULK_HEAP_MAX) {
        bulk = xmalloc(hi - lo);
        r = cat_read(c, lo, bulk, hi - lo);
    }
    size_t done = 0;
    for (size_t j = 0; j < n && r == 0; j++) {
        uint8_t *own = NULL;
        if (bulk) {
            rs[j].heap = bulk + (rs[j].name_off - lo);
        } else {
            size_t len = (size_t)rs[j].name_len + rs[j].extra_len;
            own = xmalloc(len);
            r = cat_read(c, rs[j].name_off, own, len);
            rs[j].heap = own;
        }
        if (r == 0)
            r = check_entry(c, &rs[j]);
        if (r == 0 && get_le64(rs[j].fixed + CE_PARENT) != dir)
            r = RH_ECORRUPT;
        if (r == 0 && j > 0 &&
            cmp_names(out[j - 1].name, out[j - 1].name_len, rs[j].heap, rs[j].name_len) >= 0)
            r = RH_ECORRUPT; /* children must be sorted and unique */
        if (r == 0)
            r = decode(&rs[j], &out[j]);
        if (r == 0)
            done++;
        free(own);
    }
    if (r < 0)
        for (size_t j = 0; j < done; j++)
            catalog_entry_clear(&out[j]);
    free(bulk);
    free(rs);
    return r;
}

int catalog_readdir(catalog *c, uint64_t dir, uint64_t start, size_t max, catalog_entry **ret_entries,
                    size_t *ret_n)
{
    if (!c || !ret_entries || !ret_n)
        return -EINVAL;
    uint64_t first, count;
    int r = dir_range(c, dir, &first, &count);
    if (r < 0)
        return r;
    if (start >= count || max == 0) {
        *ret_entries = NULL;
        *ret_n = 0;
        return 0;
    }
    size_t n = (size_t)MIN(MIN(count - start, (uint64_t)max), (uint64_t)READDIR_MAX);
    uint8_t *table = xmalloc(n * CATALOG_ENTRY_SIZE);
    r = cat_read(c, c->table_off + (first + start) * CATALOG_ENTRY_SIZE, table, n * CATALOG_ENTRY_SIZE);
    catalog_entry *out = xcalloc(n, sizeof(*out));
    if (r == 0)
        r = decode_slice(c, dir, first + start, n, table, out);
    free(table);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret_entries = out;
    *ret_n = n;
    return 0;
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
    uint8_t b;
    return ops->read(ctx, path, 0, &b, 1) == 0 ? RH_ECORRUPT : r;
}

/* Checks the header and fills the layout fields of c. */
static int parse_header(catalog *c, const uint8_t h[CATALOG_HEADER_SIZE], uint32_t *ret_meta_len)
{
    if (memcmp(h + CH_MAGIC, CATALOG_MAGIC, CATALOG_MAGIC_LEN) != 0 ||
        get_le64(h + CH_CHECKSUM) != hash_checksum(h, CATALOG_HEADER_SUMMED, NULL, 0))
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

/* The meta blob: u32 length + source path, u32 length + hostname, nothing after. */
static int parse_meta(catalog *c, const uint8_t *p, size_t len, uint64_t sum)
{
    if (hash_checksum(p, len, NULL, 0) != sum)
        return RH_ECORRUPT;
    cursor cu = cursor_make(p, len);
    uint32_t slen = cursor_le32(&cu);
    const uint8_t *src = cursor_take(&cu, slen);
    uint32_t hlen = cursor_le32(&cu);
    const uint8_t *host = cursor_take(&cu, hlen);
    if (cu.bad || cu.left || memchr(src, 0, slen) || memchr(host, 0, hlen))
        return RH_ECORRUPT;
    c->source = (char *)dup0(src, slen);
    c->hostname = (char *)dup0(host, hlen);
    c->meta.source = c->source;
    c->meta.hostname = c->hostname;
    return 0;
}

/*
 * The header and block index of a packed catalog (its first CATALOG_PACK_HEADER_SIZE bytes in h): checks
 * them and fills c->blocks_at and c->file_end (the logical size). The index must tile the file from the
 * header to itself, and every block must be one that could have been written: a raw block is exactly
 * its logical length, a compressed one at most zstd's bound for it.
 */
static int open_packed(catalog *c, const uint8_t *h)
{
    if (get_le64(h + CPH_CHECKSUM) != hash_checksum(h, CATALOG_PACK_HEADER_SUMMED, NULL, 0))
        return RH_ECORRUPT;
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
    int r = c->ops->read(c->ctx, c->path, index_off + n * CATALOG_PACK_ENTRY_SIZE - 1, &last, 1);
    if (r < 0)
        return open_read_error(c->ops, c->ctx, c->path, r);
    _cleanup_(freep) uint8_t *ix = xmalloc(n * CATALOG_PACK_ENTRY_SIZE);
    r = c->ops->read(c->ctx, c->path, index_off, ix, n * CATALOG_PACK_ENTRY_SIZE);
    if (r < 0)
        return open_read_error(c->ops, c->ctx, c->path, r);
    if (hash_checksum(ix, n * CATALOG_PACK_ENTRY_SIZE, NULL, 0) != get_le64(h + CPH_INDEX_CHECKSUM))
        return RH_ECORRUPT;
    c->blocks_at = xmalloc(n * sizeof(*c->blocks_at));
    uint64_t at = CATALOG_PACK_HEADER_SIZE;
    for (uint64_t b = 0; b < n; b++) {
        const uint8_t *e = ix + b * CATALOG_PACK_ENTRY_SIZE;
        pblock *pb = &c->blocks_at[b];
        size_t want = (size_t)MIN((uint64_t)CATALOG_PACK_BLOCK, size - b * CATALOG_PACK_BLOCK);
        *pb = (pblock){ .off = at, .sum = get_le64(e + 8), .len = get_le32(e), .codec = e[4] };
        if (e[5] || e[6] || e[7] || (pb->codec == CODEC_RAW && pb->len != want) ||
            (pb->codec == CODEC_ZSTD && pb->len > compress_bound(want)) ||
            (pb->codec != CODEC_RAW && pb->codec != CODEC_ZSTD))
            return RH_ECORRUPT;
        at += pb->len;
    }
    if (at != index_off)
        return RH_ECORRUPT;
    c->zbuf = xmalloc(compress_bound(CATALOG_PACK_BLOCK));
    c->file_end = size;
    return 0;
}

int catalog_open(const rh_store_ops *ops, void *ctx, const char *path, catalog **ret)
{
    if (!ops || !ops->read || !path || !ret)
        return -EINVAL;
    /* Enough to tell the two forms apart: a packed catalog may be shorter than a plain header. */
    uint8_t h[CATALOG_HEADER_SIZE];
    int r = ops->read(ctx, path, 0, h, CATALOG_PACK_HEADER_SIZE);
    if (r < 0)
        return open_read_error(ops, ctx, path, r);

    catalog *c = xcalloc(1, sizeof(*c));
    c->ops = ops;
    c->ctx = ctx;
    c->path = xstrdup(path);
    pthread_mutex_init(&c->lock, NULL);
    bool packed = memcmp(h, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN) == 0;
    if (packed) {
        if ((r = open_packed(c, h)) == 0)
            r = cat_read(c, 0, h, CATALOG_HEADER_SIZE);
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
        uint8_t *m = xmalloc(meta_len);
        r = packed ? cat_read(c, c->meta_off, m, meta_len) : ops->read(ctx, path, c->meta_off, m, meta_len);
        if (r < 0 && !packed)
            r = open_read_error(ops, ctx, path, r);
        else if (r == 0)
            r = parse_meta(c, m, meta_len, get_le64(h + CH_META_CHECKSUM));
        free(m);
    }
    if (r < 0) {
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
    pthread_mutex_destroy(&c->lock);
    free(c->source);
    free(c->hostname);
    free(c->path);
    free(c);
}

const catalog_meta *catalog_get_meta(const catalog *c) { return c ? &c->meta : NULL; }

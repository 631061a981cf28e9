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
 * any inconsistency is RH_ECORRUPT, never a crash. Damage costs only the unit that a checksum covers
 * (catalog_damage.c): a listing returns its damaged children as such and goes on, a lookup steps around
 * them, a damaged root is stood in for. The cache and the damage record are the only mutable state; one
 * mutex guards them and serializes the read callback, as rh_store_ops requires.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"
#include "snapshot/catalog_internal.h"

#define DIRECT_READ_MIN (2 * CACHE_BLOCK)
/* One readdir call returns at most this many entries (callers page until 0 anyway) ... */
#define READDIR_MAX 65536
/* ... and reads the heap slice of a listing in one go only up to this size. */
#define BULK_HEAP_MAX (32u << 20)

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
    /* This checksum catches damage even where it decodes to the same bytes, as every stored byte of a
     * store is checked. A block that fails it is recorded and still decoded: every entry in it (and the
     * plain header and the meta blob) has a checksum of its own, so only what the damage touched is
     * lost; a block that no longer decodes is lost whole. */
    if (hash_checksum(into, pb->len, NULL, 0) != pb->sum && !c->blocks_at[b].damaged) {
        c->blocks_at[b].damaged = true;
        catalog_note_damage(c, true, RH_ECHECKSUM, b * CATALOG_PACK_BLOCK, n,
                            "block %llu (logical bytes %llu..%llu): checksum mismatch", (unsigned long long)b,
                            (unsigned long long)(b * CATALOG_PACK_BLOCK),
                            (unsigned long long)(b * CATALOG_PACK_BLOCK + n));
    }
    r = pb->codec == CODEC_RAW ? 0 : decompress_chunk(pb->codec, c->zbuf, pb->len, dst, n);
    if (r < 0)
        catalog_note_damage(c, true, RH_ECORRUPT, b * CATALOG_PACK_BLOCK, n,
                            "block %llu (logical bytes %llu..%llu): cannot be decoded, its entries are lost",
                            (unsigned long long)b, (unsigned long long)(b * CATALOG_PACK_BLOCK),
                            (unsigned long long)(b * CATALOG_PACK_BLOCK + n));
    return r < 0 ? RH_ECORRUPT : 0;
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
    } else if (parent >= e->idx) {
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
    /* Last: an entry that is sound but for its name is refused as unsafe, not as damaged. */
    return e->idx == 0 || name_ok(e->heap, e->name_len) ? 0 : RH_EUNSAFE;
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
        .idx = r->idx,
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
    int r = catalog_read_at(c, c->table_off + idx * CATALOG_ENTRY_SIZE, fixed, CATALOG_ENTRY_SIZE);
    if (r < 0)
        return r;
    *e = (raw){ .idx = idx, .fixed = fixed };
    r = check_bounds(c, e);
    if (r < 0)
        return r;
    size_t len = (size_t)e->name_len + e->extra_len;
    uint8_t *heap = xmalloc(len);
    r = catalog_read_at(c, e->name_off, heap, len);
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

/* A failure that is about the bytes read (the entry is lost), not about reading them. */
static bool is_damage(int r) { return r == RH_ECORRUPT || r == RH_EUNSAFE; }

/*
 * The children of a damaged root, which entries 1, 2, ... are for as long as their parent is 0 (the
 * table is breadth-first). Damaged entries among or right after them may be the root's too: they are
 * counted in, and come back from a listing as damaged. Found once, from the table.
 */
static int find_root_children(catalog *c, uint64_t *ret_first, uint64_t *ret_count)
{
    pthread_mutex_lock(&c->lock);
    bool known = c->root_known;
    uint64_t count = c->root_count;
    pthread_mutex_unlock(&c->lock);
    if (!known) {
        uint64_t i;
        for (i = 1; i < c->entry_count; i++) {
            uint8_t fixed[CATALOG_ENTRY_SIZE];
            raw e;
            uint8_t *heap;
            int r = read_raw(c, i, fixed, &e, &heap);
            if (r == 0)
                free(heap);
            else if (!is_damage(r))
                return r;
            /* An unsafe entry passed its checksum: its parent is known. */
            if ((r == 0 || r == RH_EUNSAFE) && get_le64(fixed + CE_PARENT) != 0)
                break;
        }
        count = i - 1;
        pthread_mutex_lock(&c->lock);
        c->root_known = true;
        c->root_count = count;
        pthread_mutex_unlock(&c->lock);
    }
    *ret_first = count ? 1 : CATALOG_NONE;
    *ret_count = count;
    return 0;
}

/* Entry 0 when it is damaged: a directory that only the superuser may enter, children from the table. */
static int stand_in_root(catalog *c, catalog_entry **ret)
{
    uint64_t first, count;
    int r = find_root_children(c, &first, &count);
    if (r < 0)
        return r;
    catalog_entry *e = xcalloc(1, sizeof(*e));
    *e = (catalog_entry){ .idx = 0, .damage = RH_ECORRUPT, .type = CT_DIR, .mode = S_IFDIR | 0700,
                          .nlink = 1, .parent = CATALOG_NONE, .first_child = first, .child_count = count,
                          .link_group = CATALOG_NONE, .name = dup0(NULL, 0) };
    *ret = e;
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
    if (r == RH_ECORRUPT && idx == 0)
        return stand_in_root(c, ret);
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
    if (r == RH_ECORRUPT && dir == 0)
        return find_root_children(c, ret_first, ret_count);
    if (r < 0)
        return r;
    free(heap);
    if (fixed[CE_TYPE] != CT_DIR)
        return -ENOTDIR;
    *ret_first = get_le64(fixed + CE_FIRST_CHILD);
    *ret_count = get_le64(fixed + CE_CHILD_COUNT);
    return 0;
}

/*
 * Compares `name` with child k of the listing that starts at `first`: 0 and *ret_cmp, or RH_ECORRUPT
 * when that child cannot be used as a probe (damaged, unsafe, or not a child of dir), or a read error.
 */
static int probe(catalog *c, uint64_t dir, uint64_t idx, const uint8_t *name, size_t len, int *ret_cmp)
{
    uint8_t fixed[CATALOG_ENTRY_SIZE];
    raw e;
    uint8_t *heap;
    int r = read_raw(c, idx, fixed, &e, &heap);
    if (r < 0)
        return is_damage(r) || r == -ENOENT ? RH_ECORRUPT : r;
    *ret_cmp = cmp_names(name, len, e.heap, e.name_len);
    bool child = get_le64(fixed + CE_PARENT) == dir;
    free(heap);
    return child ? 0 : RH_ECORRUPT;
}

/*
 * A binary search over the children. A child that cannot be read is stepped around: the nearest
 * readable one above it (else below it) in the range serves as the probe instead, which keeps the
 * search sound; when only unreadable children remain where the name would be, the answer is
 * RH_ECORRUPT (the name may be one of them), not -ENOENT.
 */
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
        uint64_t mid = lo + (hi - lo) / 2, k = mid;
        int cmp = 0;
        while ((r = probe(c, dir, first + k, name, len, &cmp)) == RH_ECORRUPT && k + 1 < hi)
            k++;
        if (r == RH_ECORRUPT) {
            for (k = mid; k > lo && (r = probe(c, dir, first + k - 1, name, len, &cmp)) == RH_ECORRUPT;)
                k--;
            if (r == 0)
                k--;
        }
        if (r < 0)
            return r; /* a read error, or nothing readable is left in [lo, hi) */
        if (cmp == 0) {
            *ret_idx = first + k;
            return 0;
        }
        if (cmp < 0)
            hi = k;
        else
            lo = k + 1;
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

/* What a listing gives for a child that cannot be read: its index, why, and an unsafe one's name. */
static void damaged_child(catalog_entry *out, uint64_t idx, int code, const raw *r)
{
    bool named = code == RH_EUNSAFE && r && r->heap;
    *out = (catalog_entry){ .idx = idx, .damage = code, .parent = CATALOG_NONE, .first_child = CATALOG_NONE,
                            .link_group = CATALOG_NONE, .name_len = named ? r->name_len : 0 };
    out->name = dup0(named ? r->heap : NULL, out->name_len);
}

/* Checks and decodes one child of dir, whose table and heap bytes are in r; prev is the child before
 * it that was sound (NULL for none), for the order. */
static int child_entry(const catalog *c, uint64_t dir, const raw *r, const catalog_entry *prev,
                       catalog_entry *out)
{
    int rc = check_entry(c, r);
    if (rc == 0 && get_le64(r->fixed + CE_PARENT) != dir)
        rc = RH_ECORRUPT;
    if (rc == 0 && prev && cmp_names(prev->name, prev->name_len, r->heap, r->name_len) >= 0)
        rc = RH_ECORRUPT; /* children must be sorted and unique */
    return rc == 0 ? decode(r, out) : rc;
}

/*
 * Decodes entries first..first+n of a listing, from their table bytes `table`, or when those could not
 * be read as one piece (NULL), entry by entry. The heap slice of a listing is contiguous (the heap is in
 * table order), so it is read in one go when it is plausibly small and can be read whole; else each
 * entry's heap bytes are read on their own. An entry that cannot be read becomes a damaged child.
 */
static int decode_slice(catalog *c, uint64_t dir, uint64_t first, size_t n, const uint8_t *table,
                        catalog_entry *out)
{
    raw *rs = xcalloc(n, sizeof(*rs));
    int *bad = xcalloc(n, sizeof(*bad));
    uint8_t *bulk = NULL;
    bool whole = table != NULL;
    for (size_t j = 0; j < n && table; j++) {
        rs[j] = (raw){ .idx = first + j, .fixed = table + j * CATALOG_ENTRY_SIZE };
        bad[j] = check_bounds(c, &rs[j]);
        const raw *p = j > 0 ? &rs[j - 1] : NULL;
        whole &= bad[j] == 0 && (!p || rs[j].name_off == p->name_off + p->name_len + p->extra_len);
    }
    uint64_t lo = rs[0].name_off, hi = whole ? rs[n - 1].name_off + rs[n - 1].name_len + rs[n - 1].extra_len : lo;
    int r = 0;
    if (whole && hi - lo <= BULK_HEAP_MAX) {
        bulk = xmalloc(hi - lo);
        r = catalog_read_at(c, lo, bulk, hi - lo);
        if (r < 0) {
            free(bulk);
            bulk = NULL;
            r = is_damage(r) ? 0 : r; /* a lost block: entry by entry, around it */
        }
    }
    const catalog_entry *prev = NULL;
    size_t done = 0;
    for (size_t j = 0; j < n && r == 0; j++, done++) {
        uint8_t fixed[CATALOG_ENTRY_SIZE];
        uint8_t *own = NULL;
        int rc = bad[j];
        if (!table) {
            rs[j] = (raw){ .idx = first + j, .fixed = fixed };
            rc = catalog_read_at(c, c->table_off + (first + j) * CATALOG_ENTRY_SIZE, fixed, sizeof(fixed));
            if (rc == 0)
                rc = check_bounds(c, &rs[j]);
        }
        if (rc == 0 && bulk) {
            rs[j].heap = bulk + (rs[j].name_off - lo);
        } else if (rc == 0) {
            own = xmalloc((size_t)rs[j].name_len + rs[j].extra_len);
            rc = catalog_read_at(c, rs[j].name_off, own, (size_t)rs[j].name_len + rs[j].extra_len);
            rs[j].heap = own;
        }
        if (rc == 0)
            rc = child_entry(c, dir, &rs[j], prev, &out[j]);
        if (rc == 0)
            prev = &out[j];
        else if (is_damage(rc))
            damaged_child(&out[j], first + j, rc, &rs[j]);
        else
            r = rc;
        free(own);
    }
    if (r < 0)
        for (size_t j = 0; j + 1 < done; j++)
            catalog_entry_clear(&out[j]);
    free(bulk);
    free(bad);
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
    r = catalog_read_at(c, c->table_off + (first + start) * CATALOG_ENTRY_SIZE, table, n * CATALOG_ENTRY_SIZE);
    catalog_entry *out = xcalloc(n, sizeof(*out));
    if (r == 0 || is_damage(r))
        r = decode_slice(c, dir, first + start, n, r == 0 ? table : NULL, out);
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

/* Repairs a header whose checksum fails when one byte makes it pass, and records either outcome. */
static bool repair_header(catalog *c, uint8_t *h, size_t sum_off, uint64_t at, const char *what)
{
    int pos = catalog_repair_header(h, sum_off);
    if (pos >= 0)
        catalog_note_damage(c, false, RH_ECHECKSUM, at, sum_off + 8, "%s: checksum mismatch, byte %d repaired",
                            what, pos);
    else
        catalog_note_damage(c, false, RH_ECORRUPT, at, sum_off + 8,
                            "%s: checksum mismatch, more than one byte damaged: unrecoverable", what);
    return pos >= 0;
}

/* Checks the header (repairing one damaged byte) and fills the layout fields of c. */
static int parse_header(catalog *c, uint8_t h[CATALOG_HEADER_SIZE], uint32_t *ret_meta_len)
{
    if (get_le64(h + CH_CHECKSUM) != hash_checksum(h, CATALOG_HEADER_SUMMED, NULL, 0) &&
        !repair_header(c, h, CATALOG_HEADER_SUMMED, 0, "header"))
        return RH_ECORRUPT;
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

/*
 * The meta blob: u32 length + source path, u32 length + hostname, nothing after. It only informs (no
 * entry depends on it), so a damaged one that cannot be repaired leaves both strings empty, recorded.
 */
static int parse_meta(catalog *c, uint8_t *p, size_t len, uint64_t sum)
{
    if (hash_checksum(p, len, NULL, 0) != sum) {
        int pos = catalog_repair_blob(p, len, sum);
        catalog_note_damage(c, false, pos >= 0 ? RH_ECHECKSUM : RH_ECORRUPT, c->meta_off, len,
                            pos >= 0 ? "meta blob: checksum mismatch, byte %d repaired"
                                     : "meta blob: checksum mismatch: source path and hostname lost%.0d",
                            pos);
        if (pos < 0) {
            c->source = (char *)dup0(NULL, 0);
            c->hostname = (char *)dup0(NULL, 0);
            c->meta.source = c->source;
            c->meta.hostname = c->hostname;
            return 0;
        }
    }
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
static int open_packed(catalog *c, uint8_t *h)
{
    if (get_le64(h + CPH_CHECKSUM) != hash_checksum(h, CATALOG_PACK_HEADER_SUMMED, NULL, 0) &&
        !repair_header(c, h, CATALOG_PACK_HEADER_SUMMED, 0, "packed header"))
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
    uint64_t ixsum = get_le64(h + CPH_INDEX_CHECKSUM);
    if (hash_checksum(ix, n * CATALOG_PACK_ENTRY_SIZE, NULL, 0) != ixsum) {
        /* Repaired if one byte is wrong and the index small; else used as it is if it still describes
         * blocks that tile the file: each block is checked against its own checksum anyway. */
        int pos = catalog_repair_blob(ix, n * CATALOG_PACK_ENTRY_SIZE, ixsum);
        catalog_note_damage(c, false, RH_ECHECKSUM, index_off, n * CATALOG_PACK_ENTRY_SIZE,
                            pos >= 0 ? "block index: checksum mismatch, byte %d repaired"
                                     : "block index: checksum mismatch%.0d", pos);
    }
    c->blocks_at = xcalloc(n, sizeof(*c->blocks_at));
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
        catalog_note_damage(c, false, RH_ECORRUPT, index_off, n * CATALOG_PACK_ENTRY_SIZE,
                            "block index: does not describe the blocks: unrecoverable");
        return RH_ECORRUPT;
    }
    c->zbuf = xmalloc(compress_bound(CATALOG_PACK_BLOCK));
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

    catalog *c = xcalloc(1, sizeof(*c));
    c->ops = ops;
    c->ctx = ctx;
    c->path = xstrdup(path);
    pthread_mutex_init(&c->lock, NULL);
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
        uint8_t *m = xmalloc(meta_len);
        r = packed ? catalog_read_at(c, c->meta_off, m, meta_len) : ops->read(ctx, path, c->meta_off, m, meta_len);
        if (r < 0 && !packed)
            r = open_read_error(ops, ctx, path, r);
        else if (r == RH_ECORRUPT)
            memset(m, 0, meta_len); /* in a lost block: parse_meta records it; the index proved the size */
        if (r == 0 || (packed && r == RH_ECORRUPT))
            r = parse_meta(c, m, meta_len, get_le64(h + CH_META_CHECKSUM));
        free(m);
    }
    if (r < 0) {
        if (why && c->ndamage) /* the last damage found is what stopped the open */
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

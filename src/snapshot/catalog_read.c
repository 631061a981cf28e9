/*
 * catalog_read.c — the entries of a snapshot catalog: each checked and decoded (catalog_get), a path
 * looked up (catalog_lookup, catalog_lookup_path) and a directory listed (catalog_readdir), a few small
 * reads at a time through catalog_read_at (catalog_file.c, which opens the catalog and owns its bytes).
 *
 * A catalog may be large (a million files make a 200+ MiB table) and may live behind an object store
 * where every read is a ranged GET, so no access reads it whole. A path lookup is a binary search per
 * component (each probe reads one table entry and its name), so it costs O(depth * log(directory size))
 * small reads; a directory listing is one read of its contiguous slice of the table and one of the
 * matching slice of the heap.
 *
 * Everything read from the file is untrusted: offsets and lengths are checked against the bounds that the
 * header declares before anything is allocated or read, every decoded entry's checksum is verified, and
 * any inconsistency is RH_ECORRUPT, never a crash. Damage costs only the unit that a checksum covers
 * (catalog_damage.c): a listing returns its damaged children as such and goes on, a lookup steps around
 * them, a damaged root is stood in for.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"
#include "snapshot/catalog_internal.h"

/* One readdir call returns at most this many entries (catalog.h promises fewer only at the end) ... */
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
        if (!(e->target = catalog_dup0(target, tlen)))
            return -ENOMEM;
        e->target_len = tlen;
    }
    uint32_t count = cursor_le32(&cu);
    if (cu.bad || count > cu.left / 6)
        return RH_ECORRUPT;
    if (count && !(e->xattrs = mem_calloc(count, sizeof(*e->xattrs))))
        return -ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        uint16_t nlen = cursor_le16(&cu);
        uint32_t vlen = cursor_le32(&cu);
        const uint8_t *name = cursor_take(&cu, nlen), *value = cursor_take(&cu, vlen);
        if (cu.bad || nlen == 0 || nlen > CATALOG_XATTR_NAME_MAX || memchr(name, 0, nlen))
            return RH_ECORRUPT;
        e->xattrs[i] = (catalog_xattr){ catalog_dup0(name, nlen), nlen, catalog_dup0(value, vlen), vlen };
        e->xattr_count = i + 1; /* catalog_entry_clear frees what this one holds, NULL or not */
        if (!e->xattrs[i].name || !e->xattrs[i].value)
            return -ENOMEM;
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
    e.name = catalog_dup0(r->heap, r->name_len);
    int rc = e.name ? decode_extra(r, &e) : -ENOMEM;
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
    uint8_t *heap = mem_alloc(len);
    if (!heap)
        return -ENOMEM;
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
    catalog_entry *e = mem_alloc(sizeof(*e));
    uint8_t *name = catalog_dup0(NULL, 0);
    if (!e || !name) {
        free(e);
        free(name);
        return -ENOMEM;
    }
    *e = (catalog_entry){ .idx = 0, .damage = RH_ECORRUPT, .type = CT_DIR, .mode = S_IFDIR | 0700,
                          .nlink = 1, .parent = CATALOG_NONE, .first_child = first, .child_count = count,
                          .link_group = CATALOG_NONE, .name = name };
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
    catalog_entry *out = mem_alloc(sizeof(*out));
    if (!out)
        return -ENOMEM;
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

/* What a listing gives for a child that cannot be read: its index, why, and an unsafe one's name. 0, or
 * -ENOMEM with *out untouched. */
static int damaged_child(catalog_entry *out, uint64_t idx, int code, const raw *r)
{
    bool named = code == RH_EUNSAFE && r && r->heap;
    uint32_t len = named ? r->name_len : 0;
    uint8_t *name = catalog_dup0(named ? r->heap : NULL, len);
    if (!name)
        return -ENOMEM;
    *out = (catalog_entry){ .idx = idx, .damage = code, .parent = CATALOG_NONE, .first_child = CATALOG_NONE,
                            .link_group = CATALOG_NONE, .name_len = len, .name = name };
    return 0;
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
    raw *rs = mem_calloc(n, sizeof(*rs));
    int *bad = mem_calloc(n, sizeof(*bad));
    uint8_t *bulk = NULL;
    if (!rs || !bad) {
        free(rs);
        free(bad);
        return -ENOMEM;
    }
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
        bulk = mem_alloc(hi - lo);
        r = bulk ? catalog_read_at(c, lo, bulk, hi - lo) : -ENOMEM;
        if (r < 0 && bulk) {
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
            own = mem_alloc((size_t)rs[j].name_len + rs[j].extra_len);
            rc = own ? catalog_read_at(c, rs[j].name_off, own, (size_t)rs[j].name_len + rs[j].extra_len)
                     : -ENOMEM;
            rs[j].heap = own;
        }
        if (rc == 0)
            rc = child_entry(c, dir, &rs[j], prev, &out[j]);
        if (rc == 0)
            prev = &out[j];
        else if (is_damage(rc))
            r = damaged_child(&out[j], first + j, rc, &rs[j]);
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
    uint8_t *table = mem_alloc(n * CATALOG_ENTRY_SIZE);
    catalog_entry *out = mem_calloc(n, sizeof(*out));
    if (!table || !out) {
        free(table);
        free(out);
        return -ENOMEM;
    }
    r = catalog_read_at(c, c->table_off + (first + start) * CATALOG_ENTRY_SIZE, table, n * CATALOG_ENTRY_SIZE);
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


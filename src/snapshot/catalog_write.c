/*
 * catalog_write.c — builds a snapshot catalog in memory and writes it in one pass.
 *
 * The backup walk adds entries in whatever order it meets them and learns streams and hard links later,
 * so the writer keeps every entry (with copies of its name, target and xattrs) until commit. Commit then
 * fixes the final order — entry 0 the root, the children of every directory contiguous and sorted
 * bytewise, directories breadth-first — turns handles into final indices, resolves hard-link groups, and
 * streams header, entry table and heap into an O_EXCL temp file through two large buffers (one for the
 * table, one for the heap, each flushed with pwrite at its own file offset), so the file is written
 * exactly once without holding the heap in memory.
 *
 * The setters return nothing (the backup pipeline calls them from completion callbacks, where an error
 * has nowhere to go); a misuse such as an unknown handle is remembered and reported by commit as -EINVAL,
 * so a malformed catalog is never written.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"

#define OUT_FLUSH (1u << 20) /* bytes buffered per output stream before a pwrite */

struct catalog_writer {
    bool pack;      /* commit writes the packed form */
    int pack_level; /* zstd level of its blocks */
    catalog_entry *ents; /* by handle; parent holds the parent's handle */
    uint64_t *link_to;   /* by handle: the leader handle of set_link, or CATALOG_NONE */
    size_t n, cap;
    int error; /* first misuse of a setter, reported by commit */
};

catalog_writer *catalog_writer_new(void) { return xcalloc(1, sizeof(catalog_writer)); }

void catalog_writer_free(catalog_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        catalog_entry_clear(&w->ents[i]);
    free(w->ents);
    free(w->link_to);
    free(w);
}

size_t catalog_writer_count(const catalog_writer *w) { return w ? w->n : 0; }

/* A name of a directory entry: 1..255 bytes, no '/' or NUL, not "." or "..". */
static bool name_ok(const uint8_t *name, size_t len)
{
    if (len == 0 || len > CATALOG_NAME_MAX || !name)
        return false;
    if (memchr(name, '/', len) || memchr(name, 0, len))
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    return true;
}

/* Size of the extra blob of an entry (see catalog_format.h); 0 if it would exceed the format's limit. */
static uint64_t extra_size(const catalog_entry *e)
{
    uint64_t n = CATALOG_EXTRA_MIN + (uint64_t)e->target_len;
    for (uint32_t i = 0; i < e->xattr_count; i++)
        n += 6 + (uint64_t)e->xattrs[i].name_len + e->xattrs[i].value_len;
    return n <= CATALOG_EXTRA_MAX ? n : 0;
}

static bool entry_args_ok(const catalog_entry *e)
{
    if (e->type < CT_REG || e->type > CT_SOCK)
        return false;
    if (e->type == CT_SYMLINK) {
        if (e->target_len > CATALOG_TARGET_MAX || (e->target_len && !e->target) ||
            (e->target_len && memchr(e->target, 0, e->target_len)))
            return false;
    }
    if (e->xattr_count && !e->xattrs)
        return false;
    for (uint32_t i = 0; i < e->xattr_count; i++) {
        const catalog_xattr *x = &e->xattrs[i];
        if (x->name_len == 0 || x->name_len > CATALOG_XATTR_NAME_MAX || !x->name ||
            memchr(x->name, 0, x->name_len) || (x->value_len && !x->value))
            return false;
    }
    return true;
}

/* A NUL-terminated copy of p[0..n). */
static uint8_t *dup0(const uint8_t *p, size_t n)
{
    uint8_t *q = xmalloc(n + 1);
    if (n)
        memcpy(q, p, n);
    q[n] = 0;
    return q;
}

uint64_t catalog_writer_add(catalog_writer *w, uint64_t parent, const catalog_entry *e)
{
    if (!w || !e || !entry_args_ok(e))
        return CATALOG_NONE;
    if (parent == CATALOG_NONE) {
        if (w->n != 0 || e->type != CT_DIR || e->name_len != 0)
            return CATALOG_NONE;
    } else {
        if (parent >= w->n || w->ents[parent].type != CT_DIR || !name_ok(e->name, e->name_len))
            return CATALOG_NONE;
    }
    uint32_t target_len = e->type == CT_SYMLINK ? e->target_len : 0;
    catalog_entry tmp = *e;
    tmp.target_len = target_len;
    if (extra_size(&tmp) == 0)
        return CATALOG_NONE;

    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->ents = xrealloc(w->ents, w->cap * sizeof(*w->ents));
        w->link_to = xrealloc(w->link_to, w->cap * sizeof(*w->link_to));
    }
    catalog_entry *c = &w->ents[w->n];
    *c = *e;
    c->flags = e->flags & CF_UNREADABLE; /* CF_HARDLINK comes from set_link only */
    c->nlink = 1;
    c->parent = parent;
    c->first_child = c->child_count = 0;
    c->link_group = CATALOG_NONE;
    c->name = dup0(e->name, e->name_len);
    c->target = NULL;
    c->target_len = target_len;
    if (e->type == CT_SYMLINK) {
        c->target = dup0(e->target, target_len);
        c->size = target_len;
    }
    c->xattrs = NULL;
    if (e->xattr_count) {
        c->xattrs = xcalloc(e->xattr_count, sizeof(*c->xattrs));
        for (uint32_t i = 0; i < e->xattr_count; i++) {
            const catalog_xattr *x = &e->xattrs[i];
            c->xattrs[i] = (catalog_xattr){ dup0(x->name, x->name_len), x->name_len,
                                            dup0(x->value, x->value_len), x->value_len };
        }
    }
    if (e->type != CT_REG)
        c->has_stream = false; /* only regular files have data */
    if (!c->has_stream)
        memset(&c->stream, 0, sizeof(c->stream));
    w->link_to[w->n] = CATALOG_NONE;
    return w->n++;
}

static void fail(catalog_writer *w)
{
    if (!w->error)
        w->error = -EINVAL;
}

static bool is_reg(const catalog_writer *w, uint64_t h) { return h < w->n && w->ents[h].type == CT_REG; }

void catalog_writer_set_stream(catalog_writer *w, uint64_t handle, const catalog_stream *s, uint64_t alloc)
{
    if (!w)
        return;
    if (!is_reg(w, handle)) {
        fail(w);
        return;
    }
    catalog_entry *e = &w->ents[handle];
    e->has_stream = s != NULL;
    if (s)
        e->stream = *s;
    else
        memset(&e->stream, 0, sizeof(e->stream));
    e->alloc = alloc;
}

static uint64_t group_root(const catalog_writer *w, uint64_t h)
{
    while (w->link_to[h] != CATALOG_NONE)
        h = w->link_to[h];
    return h;
}

void catalog_writer_set_link(catalog_writer *w, uint64_t handle, uint64_t leader)
{
    if (!w)
        return;
    if (!is_reg(w, handle) || !is_reg(w, leader) || w->link_to[handle] != CATALOG_NONE) {
        fail(w);
        return;
    }
    /* Linking to a member links to its group; linking a group to itself would make a cycle. */
    uint64_t root = group_root(w, leader);
    if (root == handle) {
        fail(w);
        return;
    }
    w->link_to[handle] = root;
}

void catalog_writer_set_flags(catalog_writer *w, uint64_t handle, uint8_t flags)
{
    if (!w)
        return;
    if (handle >= w->n || (flags & ~(CF_HARDLINK | CF_UNREADABLE))) {
        fail(w);
        return;
    }
    w->ents[handle].flags = flags & CF_UNREADABLE;
}

/* ---- Commit: order, groups, serialization ---- */

/* The final layout computed by commit; all arrays are indexed as their comment says. */
typedef struct layout {
    uint64_t *order;       /* final index -> handle */
    uint64_t *pos;         /* handle -> final index */
    uint64_t *first_child; /* handle -> final index of its first child (valid when it has children) */
    uint64_t *child_count; /* handle -> number of children */
    uint64_t *group_first; /* root handle -> smallest final index in its group */
    uint64_t *group_size;  /* root handle -> members + leader; 1 if no group */
} layout;

static void layout_free(layout *l)
{
    free(l->order);
    free(l->pos);
    free(l->first_child);
    free(l->child_count);
    free(l->group_first);
    free(l->group_size);
}

static int cmp_name(const void *a, const void *b, void *arg)
{
    const catalog_entry *ents = arg;
    const catalog_entry *x = &ents[*(const uint64_t *)a], *y = &ents[*(const uint64_t *)b];
    int r = memcmp(x->name, y->name, MIN(x->name_len, y->name_len));
    if (r)
        return r;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Breadth-first order with sorted, contiguous children; -EINVAL on two equal names in a directory. */
static int compute_order(const catalog_writer *w, layout *l)
{
    size_t n = w->n;
    uint64_t *start = xcalloc(n + 1, sizeof(uint64_t));
    uint64_t *kids = xmalloc(n * sizeof(uint64_t));
    for (size_t h = 1; h < n; h++)
        l->child_count[w->ents[h].parent]++;
    for (size_t h = 0; h < n; h++)
        start[h + 1] = start[h] + l->child_count[h];
    uint64_t *fill = xmemdup(start, n * sizeof(uint64_t));
    for (size_t h = 1; h < n; h++)
        kids[fill[w->ents[h].parent]++] = h;
    free(fill);

    int r = 0;
    size_t next = 1;
    l->order[0] = 0;
    for (size_t i = 0; i < next && r == 0; i++) {
        uint64_t h = l->order[i];
        uint64_t *k = kids + start[h], cnt = l->child_count[h];
        qsort_r(k, cnt, sizeof(uint64_t), cmp_name, w->ents);
        l->first_child[h] = next;
        for (uint64_t j = 0; j < cnt; j++) {
            if (j > 0 && cmp_name(&k[j - 1], &k[j], w->ents) == 0)
                r = -EINVAL;
            l->order[next++] = k[j];
        }
    }
    if (r == 0)
        for (size_t i = 0; i < n; i++)
            l->pos[l->order[i]] = i;
    free(start);
    free(kids);
    return r;
}

static void compute_groups(const catalog_writer *w, layout *l)
{
    for (size_t h = 0; h < w->n; h++) {
        l->group_first[h] = l->pos[h];
        l->group_size[h] = 1;
    }
    for (size_t h = 0; h < w->n; h++) {
        if (w->link_to[h] == CATALOG_NONE)
            continue;
        uint64_t root = group_root(w, h);
        l->group_size[root]++;
        l->group_first[root] = MIN(l->group_first[root], l->pos[h]);
    }
}

/* One of the two output streams: bytes buffered here belong at file offset `off`. */
typedef struct out {
    int fd;
    uint64_t off;
    bytebuf b;
    int err;
} out;

static void out_flush(out *o)
{
    if (o->b.len && !o->err)
        o->err = fs_pwrite_full(o->fd, o->b.data, o->b.len, o->off);
    o->off += o->b.len;
    o->b.len = 0;
}

static void out_put(out *o, const void *p, size_t n)
{
    buf_append(&o->b, p, n);
    if (o->b.len >= OUT_FLUSH)
        out_flush(o);
}

/* The entry as it is written: the caller's entry with its group's data and its final indices. */
static void final_entry(const catalog_writer *w, const layout *l, uint64_t h, catalog_entry *f)
{
    const catalog_entry *e = &w->ents[h];
    *f = *e;
    f->parent = h == 0 ? CATALOG_NONE : l->pos[e->parent];
    f->child_count = l->child_count[h];
    f->first_child = f->child_count ? l->first_child[h] : CATALOG_NONE;
    f->link_group = CATALOG_NONE;
    f->nlink = 1;
    uint64_t root = e->type == CT_REG ? group_root(w, h) : h;
    if (l->group_size[root] > 1) {
        /* The group's data is the leader's; the entry that comes first in the catalog owns it. */
        const catalog_entry *src = &w->ents[root];
        f->link_group = l->group_first[root];
        f->nlink = (uint32_t)MIN(l->group_size[root], UINT32_MAX);
        f->has_stream = src->has_stream;
        f->stream = src->stream;
        f->alloc = src->alloc;
        f->flags = src->flags & CF_UNREADABLE;
        if (l->pos[h] != f->link_group)
            f->flags |= CF_HARDLINK;
    }
}

static void encode_extra(bytebuf *b, const catalog_entry *e)
{
    buf_put_le32(b, e->target_len);
    buf_append(b, e->target, e->target_len);
    buf_put_le32(b, e->xattr_count);
    for (uint32_t i = 0; i < e->xattr_count; i++) {
        const catalog_xattr *x = &e->xattrs[i];
        buf_put_le16(b, x->name_len);
        buf_put_le32(b, x->value_len);
        buf_append(b, x->name, x->name_len);
        buf_append(b, x->value, x->value_len);
    }
}

static void encode_fixed(uint8_t p[CATALOG_ENTRY_SIZE], const catalog_entry *f, uint64_t name_off,
                         uint32_t extra_len)
{
    memset(p, 0, CATALOG_ENTRY_SIZE);
    p[CE_TYPE] = f->type;
    p[CE_FLAGS] = f->flags;
    put_le32(p + CE_MODE, f->mode);
    put_le32(p + CE_UID, f->uid);
    put_le32(p + CE_GID, f->gid);
    put_le32(p + CE_NLINK, f->nlink);
    put_le32(p + CE_NAME_LEN, f->name_len);
    put_le64(p + CE_SIZE, f->size);
    put_le64(p + CE_ALLOC, f->alloc);
    put_le64(p + CE_ATIME, (uint64_t)f->atime_ns);
    put_le64(p + CE_MTIME, (uint64_t)f->mtime_ns);
    put_le64(p + CE_CTIME, (uint64_t)f->ctime_ns);
    put_le64(p + CE_RDEV, f->rdev);
    put_le64(p + CE_INO, f->ino);
    put_le64(p + CE_DEV, f->dev);
    put_le64(p + CE_PARENT, f->parent);
    put_le64(p + CE_FIRST_CHILD, f->first_child);
    put_le64(p + CE_CHILD_COUNT, f->child_count);
    put_le64(p + CE_LINK_GROUP, f->link_group);
    put_le64(p + CE_NAME_OFFSET, name_off);
    put_le64(p + CE_EXTRA_OFFSET, name_off + f->name_len);
    put_le32(p + CE_EXTRA_LENGTH, extra_len);
    if (f->has_stream) {
        put_le32(p + CE_S_CONTAINER, f->stream.container);
        put_le64(p + CE_S_OFFSET, f->stream.offset);
        put_le32(p + CE_S_STORED_LEN, f->stream.stored_len);
        put_le32(p + CE_S_RAW_LEN, f->stream.raw_len);
        memcpy(p + CE_S_DIGEST, f->stream.digest, HASH_LEN);
        p[CE_S_CODEC] = f->stream.codec;
        p[CE_HAS_STREAM] = 1;
    }
}

static void encode_header(uint8_t h[CATALOG_HEADER_SIZE], uint32_t flags, uint64_t count,
                          uint64_t heap_off, uint64_t meta_off, const bytebuf *blob, const catalog_meta *meta)
{
    memset(h, 0, CATALOG_HEADER_SIZE);
    memcpy(h + CH_MAGIC, CATALOG_MAGIC, CATALOG_MAGIC_LEN);
    put_le32(h + CH_VERSION, CATALOG_VERSION);
    put_le32(h + CH_FLAGS, flags);
    put_le64(h + CH_ENTRY_COUNT, count);
    put_le64(h + CH_TABLE_OFFSET, CATALOG_HEADER_SIZE);
    put_le64(h + CH_HEAP_OFFSET, heap_off);
    put_le64(h + CH_HEAP_LENGTH, meta_off + blob->len - heap_off);
    put_le64(h + CH_CREATED_NS, meta && meta->created_ns ? meta->created_ns : now_ns());
    put_le64(h + CH_FILES, meta ? meta->files : 0);
    put_le64(h + CH_BYTES, meta ? meta->bytes : 0);
    put_le64(h + CH_META_OFFSET, meta_off);
    put_le32(h + CH_META_LENGTH, (uint32_t)blob->len);
    put_le64(h + CH_META_CHECKSUM, hash_checksum(blob->data, blob->len, NULL, 0));
    put_le32(h + CH_ENTRY_SIZE, CATALOG_ENTRY_SIZE);
    put_le64(h + CH_CHECKSUM, hash_checksum(h, CATALOG_HEADER_SUMMED, NULL, 0));
}

/* Writes the whole catalog to fd; the layout is final. */
static int write_catalog(const catalog_writer *w, const layout *l, int fd, const catalog_meta *meta)
{
    const char *src = meta && meta->source ? meta->source : "";
    const char *host = meta && meta->hostname ? meta->hostname : "";
    size_t src_len = strlen(src), host_len = strlen(host);
    if (src_len > CATALOG_META_STR_MAX || host_len > CATALOG_META_STR_MAX)
        return -EINVAL;

    uint64_t heap_off = CATALOG_HEADER_SIZE + (uint64_t)w->n * CATALOG_ENTRY_SIZE;
    out table = { .fd = fd, .off = CATALOG_HEADER_SIZE }, heap = { .fd = fd, .off = heap_off };
    bytebuf scratch = { 0 };
    uint32_t flags = meta ? meta->flags & CATALOG_PARTIAL : 0;
    uint64_t name_off = heap_off;
    for (size_t i = 0; i < w->n; i++) {
        catalog_entry f;
        final_entry(w, l, l->order[i], &f);
        if (f.flags & CF_UNREADABLE)
            flags |= CATALOG_PARTIAL;
        scratch.len = 0;
        buf_append(&scratch, f.name, f.name_len);
        encode_extra(&scratch, &f);
        uint8_t fixed[CATALOG_ENTRY_SIZE];
        encode_fixed(fixed, &f, name_off, (uint32_t)(scratch.len - f.name_len));
        put_le64(fixed + CE_CHECKSUM,
                 hash_checksum(fixed, CATALOG_ENTRY_SUMMED, scratch.data, scratch.len));
        out_put(&table, fixed, sizeof(fixed));
        out_put(&heap, scratch.data, scratch.len);
        name_off += scratch.len;
    }
    buf_free(&scratch);

    uint64_t meta_off = name_off;
    bytebuf blob = { 0 };
    buf_put_le32(&blob, (uint32_t)src_len);
    buf_append(&blob, src, src_len);
    buf_put_le32(&blob, (uint32_t)host_len);
    buf_append(&blob, host, host_len);
    out_put(&heap, blob.data, blob.len);
    out_flush(&table);
    out_flush(&heap);
    int r = table.err ? table.err : heap.err;
    buf_free(&table.b);
    buf_free(&heap.b);
    if (r == 0) {
        uint8_t h[CATALOG_HEADER_SIZE];
        encode_header(h, flags, w->n, heap_off, meta_off, &blob, meta);
        r = fs_pwrite_full(fd, h, sizeof(h), 0);
    }
    buf_free(&blob);
    return r;
}

void catalog_writer_pack(catalog_writer *w, int level)
{
    w->pack = true;
    w->pack_level = level;
}

/*
 * Copies the plain catalog in `in` (size bytes) to `dst` in the packed form: header, the blocks
 * compressed one by one, the block index. Memory stays at two blocks whatever the catalog's size.
 */
static int pack_catalog(int in, uint64_t size, int dst, int level)
{
    uint64_t nblocks = (size + CATALOG_PACK_BLOCK - 1) / CATALOG_PACK_BLOCK;
    size_t cap = compress_bound(CATALOG_PACK_BLOCK);
    _cleanup_(freep) uint8_t *raw = xmalloc(CATALOG_PACK_BLOCK);
    _cleanup_(freep) uint8_t *z = xmalloc(cap);
    _cleanup_(buf_free) bytebuf index = { 0 };
    uint64_t at = CATALOG_PACK_HEADER_SIZE;
    int r = 0;
    for (uint64_t b = 0; b < nblocks && r >= 0; b++) {
        size_t n = (size_t)MIN((uint64_t)CATALOG_PACK_BLOCK, size - b * CATALOG_PACK_BLOCK);
        uint8_t codec;
        size_t len;
        if ((r = fs_pread_full(in, raw, n, b * CATALOG_PACK_BLOCK)) < 0 ||
            (r = compress_chunk(level, raw, n, z, cap, &codec, &len)) < 0 ||
            (r = fs_pwrite_full(dst, codec == CODEC_RAW ? raw : z, len, at)) < 0)
            break;
        buf_put_le32(&index, (uint32_t)len);
        buf_put_u8(&index, codec);
        buf_append(&index, "\0\0\0", 3);
        buf_put_le64(&index, hash_checksum(codec == CODEC_RAW ? raw : z, len, NULL, 0));
        at += len;
    }
    if (r < 0)
        return r;
    if ((r = fs_pwrite_full(dst, index.data, index.len, at)) < 0)
        return r;
    uint8_t h[CATALOG_PACK_HEADER_SIZE] = { 0 };
    memcpy(h + CPH_MAGIC, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN);
    put_le32(h + CPH_VERSION, CATALOG_PACK_VERSION);
    put_le32(h + CPH_BLOCK_SIZE, CATALOG_PACK_BLOCK);
    put_le64(h + CPH_LOGICAL_SIZE, size);
    put_le64(h + CPH_INDEX_OFFSET, at);
    put_le64(h + CPH_INDEX_CHECKSUM, hash_checksum(index.data, index.len, NULL, 0));
    put_le64(h + CPH_CHECKSUM, hash_checksum(h, CATALOG_PACK_HEADER_SUMMED, NULL, 0));
    return fs_pwrite_full(dst, h, sizeof(h), 0);
}

/* A file for the plain catalog before it is packed: unnamed where the file system allows it, else a temp
 * file whose name is removed at once. */
static int open_scratch(int snapdirfd, const char *file)
{
    int fd = openat(snapdirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd >= 0 ? fd : -errno;
    /* fs_create_temp opens for writing only; packing reads the file back */
    _cleanup_(freep) char *name = xasprintf("%s.plain", file), *tmp = NULL;
    int wfd = fs_create_temp(snapdirfd, name, &tmp);
    if (wfd < 0)
        return wfd;
    fd = openat(snapdirfd, tmp, O_RDWR | O_CLOEXEC);
    int r = fd < 0 ? -errno : fd;
    close(wfd);
    unlinkat(snapdirfd, tmp, 0);
    return r;
}

/* Writes the catalog to fd, plain or (w->pack) packed. */
static int write_form(const catalog_writer *w, const layout *l, int snapdirfd, const char *file, int fd,
                      const catalog_meta *meta)
{
    if (!w->pack)
        return write_catalog(w, l, fd, meta);
    int plain = open_scratch(snapdirfd, file);
    if (plain < 0)
        return plain;
    int r = write_catalog(w, l, plain, meta);
    struct stat st;
    if (r >= 0 && fstat(plain, &st) < 0)
        r = -errno;
    if (r >= 0)
        r = pack_catalog(plain, (uint64_t)st.st_size, fd, w->pack_level);
    close(plain);
    return r;
}

/* Leaves room for ".snap" and the temp suffix ".tmp.PID.NNNNNNNNN" within NAME_MAX. */
#define SNAPSHOT_NAME_MAX 200

static bool snapshot_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= SNAPSHOT_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

int catalog_writer_commit(catalog_writer *w, int snapdirfd, const char *name, const catalog_meta *meta)
{
    if (!w || snapdirfd < 0 || !snapshot_name_ok(name))
        return -EINVAL;
    if (w->error)
        return w->error;
    if (w->n == 0)
        return -EINVAL; /* no root */
    if ((uint64_t)w->n > CATALOG_ENTRIES_MAX)
        return -EFBIG;

    _cleanup_(freep) char *file = xasprintf("%s.snap", name);
    /* Fail early rather than write a large file that the final rename would refuse. */
    if (faccessat(snapdirfd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return RH_EEXIST;

    size_t n = w->n;
    layout l = {
        .order = xmalloc(n * sizeof(uint64_t)),
        .pos = xmalloc(n * sizeof(uint64_t)),
        .first_child = xcalloc(n, sizeof(uint64_t)),
        .child_count = xcalloc(n, sizeof(uint64_t)),
        .group_first = xmalloc(n * sizeof(uint64_t)),
        .group_size = xmalloc(n * sizeof(uint64_t)),
    };
    int r = compute_order(w, &l);
    if (r < 0)
        goto out;
    compute_groups(w, &l);

    char *tmp = NULL;
    int fd = fs_create_temp(snapdirfd, file, &tmp);
    if (fd < 0) {
        r = fd;
        goto out;
    }
    r = write_form(w, &l, snapdirfd, file, fd, meta);
    if (r >= 0)
        r = fs_commit_temp(snapdirfd, fd, tmp, file, 0);
    if (r < 0)
        unlinkat(snapdirfd, tmp, 0); /* fails harmlessly if the rename already happened */
    close(fd);
    free(tmp);
    if (r == -EEXIST)
        r = RH_EEXIST;
out:
    layout_free(&l);
    return r;
}

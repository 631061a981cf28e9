/*
 * check_catalog.c — snapshot catalogs: every field survives a round trip, lookups and listings follow the
 * format's order, a lookup in a huge directory reads a tiny part of the file, damage is RH_ECORRUPT (every
 * single-byte flip is detected), and one handle serves several threads. catalog_walk_dir pages across
 * its page boundaries, hands damaged children to their own callback, and walks empty directories.
 *
 * The catalog is read back through an rh_store_ops implementation over a local directory that counts
 * every read, as an object store would be charged for them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"
#include "testutil.h"

/* ---- A store that reads a local directory with pread and counts what it reads ---- */

typedef struct tstore {
    int dirfd;
    atomic_ulong reads, bytes;
} tstore;

static int t_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    tstore *s = ctx;
    int fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fs_pread_full(fd, buf, size, off);
    close(fd);
    atomic_fetch_add(&s->reads, 1);
    atomic_fetch_add(&s->bytes, size);
    return r;
}

static const rh_store_ops t_ops = { .version = RH_STORE_OPS_VERSION, .read = t_read };

static char *tmpdir;
static int snapfd = -1;
static tstore store;
static bool packed; /* the test case writes packed catalogs (stores of format 2) */

static void setup(void)
{
    tmpdir = test_mkdtemp();
    store.dirfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(store.dirfd, 0);
    ck_assert_int_eq(mkdirat(store.dirfd, "snapshots", 0755), 0);
    snapfd = openat(store.dirfd, "snapshots", O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(snapfd, 0);
    store.reads = store.bytes = 0;
}

static void setup_packed(void)
{
    setup();
    packed = true;
}

static void teardown(void)
{
    packed = false;
    close(snapfd);
    close(store.dirfd);
    test_rmtree(tmpdir);
    free(tmpdir);
}

/* ---- Helpers ---- */

static catalog_entry ent(uint8_t type, const void *name, size_t len)
{
    return (catalog_entry){
        .type = type,
        .mode = type == CT_DIR ? 040755 : 0100644,
        .uid = 1000,
        .gid = 100,
        .name = (uint8_t *)name,
        .name_len = (uint32_t)len,
        .atime_ns = 1700000000123456789,
        .mtime_ns = -1234567890, /* before the epoch */
        .ctime_ns = 1700000000000000001,
    };
}

static uint64_t add(catalog_writer *w, uint64_t parent, uint8_t type, const char *name)
{
    catalog_entry e = ent(type, name, strlen(name));
    uint64_t h = catalog_writer_add(w, parent, &e);
    ck_assert_uint_ne(h, CATALOG_NONE);
    return h;
}

static uint64_t add_root(catalog_writer *w)
{
    catalog_entry e = ent(CT_DIR, NULL, 0);
    uint64_t h = catalog_writer_add(w, CATALOG_NONE, &e);
    ck_assert_uint_eq(h, 0);
    return h;
}

static catalog_stream stream_of(uint32_t seed)
{
    catalog_stream s = { .container = seed, .offset = (uint64_t)seed << 33 | 17, .stored_len = seed * 3,
                         .raw_len = seed * 5, .codec = (uint8_t)(seed & 1) };
    test_fill_random(s.digest, sizeof(s.digest), seed);
    return s;
}

static void commit(catalog_writer *w, const char *name)
{
    catalog_meta m = { .source = "/home/user", .hostname = "host-1", .files = 7, .bytes = 12345,
                       .created_ns = 1700000000000000000 };
    if (packed)
        catalog_writer_pack(w, 3);
    int r = catalog_writer_commit(w, snapfd, name, &m);
    ck_assert_msg(r == 0, "commit: %s", rh_strerror(r));
    catalog_writer_free(w);
}

static catalog *open_cat(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "snapshots/%s.snap", name);
    catalog *c;
    int r = catalog_open(&t_ops, &store, path, &c);
    ck_assert_msg(r == 0, "open: %s", rh_strerror(r));
    return c;
}

static catalog_entry *get_path(catalog *c, const char *path, uint64_t *ret_idx)
{
    uint64_t idx;
    int r = catalog_lookup_path(c, path, &idx);
    ck_assert_msg(r == 0, "lookup %s: %s", path, rh_strerror(r));
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    if (ret_idx)
        *ret_idx = idx;
    return e;
}

static uint64_t file_size(const char *name)
{
    struct stat st;
    ck_assert_int_eq(fstatat(snapfd, name, &st, 0), 0);
    return (uint64_t)st.st_size;
}

/* ---- Round trip ---- */

static const char name255[] =
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void build_tree(void)
{
    _Static_assert(sizeof(name255) == 256, "a 255-byte name");
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    uint64_t dir = add(w, root, CT_DIR, "dir a");

    uint8_t bin[5] = { 0, 1, 0xff, 0, 7 };
    catalog_xattr xs[2] = { { (uint8_t *)"user.empty", 10, NULL, 0 },
                            { (uint8_t *)"user.bin", 8, bin, sizeof(bin) } };
    catalog_entry f = ent(CT_REG, "file\n1", 6);
    f.size = 1 << 20;
    f.ino = 42;
    f.dev = 0x803;
    f.xattrs = xs;
    f.xattr_count = 2;
    uint64_t hf = catalog_writer_add(w, dir, &f);
    ck_assert_uint_ne(hf, CATALOG_NONE);
    catalog_stream s = stream_of(9);
    catalog_writer_set_stream(w, hf, &s, 65536);

    uint64_t hu = add(w, dir, CT_REG, "\xff\xfe");
    catalog_writer_set_flags(w, hu, CF_UNREADABLE);
    add(w, dir, CT_DIR, "sub");

    catalog_entry l = ent(CT_SYMLINK, "link", 4);
    l.mode = 0120777;
    l.target = (uint8_t *)"../some target\n";
    l.target_len = 15;
    ck_assert_uint_ne(catalog_writer_add(w, root, &l), CATALOG_NONE);
    catalog_entry d = ent(CT_CHR, "null", 4);
    d.rdev = makedev(1, 3);
    ck_assert_uint_ne(catalog_writer_add(w, root, &d), CATALOG_NONE);
    d = ent(CT_BLK, "sda1", 4);
    d.rdev = makedev(8, 1);
    ck_assert_uint_ne(catalog_writer_add(w, root, &d), CATALOG_NONE);
    add(w, root, CT_FIFO, "fifo");
    add(w, root, CT_SOCK, "sock");
    add(w, root, CT_REG, name255);
    add(w, root, CT_REG, "with space ");
    ck_assert_uint_eq(catalog_writer_count(w), 12);
    commit(w, "tree");
}

START_TEST(test_round_trip)
{
    build_tree();
    catalog *c = open_cat("tree");
    const catalog_meta *m = catalog_get_meta(c);
    ck_assert_uint_eq(m->entry_count, 12);
    ck_assert_str_eq(m->source, "/home/user");
    ck_assert_str_eq(m->hostname, "host-1");
    ck_assert_uint_eq(m->files, 7);
    ck_assert_uint_eq(m->bytes, 12345);
    ck_assert_uint_eq(m->created_ns, 1700000000000000000);
    ck_assert_uint_eq(m->flags, CATALOG_PARTIAL); /* set because of the CF_UNREADABLE entry */

    uint64_t di;
    catalog_entry *e = get_path(c, "dir a/file\n1", NULL);
    catalog_entry *dir = get_path(c, "dir a", &di);
    ck_assert_uint_eq(e->type, CT_REG);
    ck_assert_uint_eq(e->mode, 0100644);
    ck_assert_uint_eq(e->uid, 1000);
    ck_assert_uint_eq(e->gid, 100);
    ck_assert_uint_eq(e->size, 1 << 20);
    ck_assert_uint_eq(e->alloc, 65536);
    ck_assert_int_eq(e->atime_ns, 1700000000123456789);
    ck_assert_int_eq(e->mtime_ns, -1234567890);
    ck_assert_int_eq(e->ctime_ns, 1700000000000000001);
    ck_assert_uint_eq(e->ino, 42);
    ck_assert_uint_eq(e->dev, 0x803);
    ck_assert_uint_eq(e->nlink, 1);
    ck_assert_uint_eq(e->link_group, CATALOG_NONE);
    ck_assert_uint_eq(e->parent, di);
    ck_assert_uint_eq(e->name_len, 6);
    ck_assert_mem_eq(e->name, "file\n1", 7);
    ck_assert(e->has_stream);
    catalog_stream s = stream_of(9);
    ck_assert_mem_eq(&e->stream.digest, s.digest, HASH_LEN);
    ck_assert_uint_eq(e->stream.container, s.container);
    ck_assert_uint_eq(e->stream.offset, s.offset);
    ck_assert_uint_eq(e->stream.stored_len, s.stored_len);
    ck_assert_uint_eq(e->stream.raw_len, s.raw_len);
    ck_assert_uint_eq(e->stream.codec, s.codec);
    ck_assert_uint_eq(e->xattr_count, 2);
    ck_assert_str_eq((char *)e->xattrs[0].name, "user.empty");
    ck_assert_uint_eq(e->xattrs[0].value_len, 0);
    ck_assert_str_eq((char *)e->xattrs[1].name, "user.bin");
    ck_assert_uint_eq(e->xattrs[1].value_len, 5);
    ck_assert_mem_eq(e->xattrs[1].value, ((uint8_t[]){ 0, 1, 0xff, 0, 7 }), 5);
    ck_assert_ptr_null(e->target);
    catalog_entry_free(e);

    ck_assert_uint_eq(dir->type, CT_DIR);
    ck_assert_uint_eq(dir->child_count, 3);
    ck_assert_uint_eq(dir->parent, 0);
    catalog_entry_free(dir);

    e = get_path(c, "dir a/\xff\xfe", NULL);
    ck_assert_uint_eq(e->flags, CF_UNREADABLE);
    ck_assert(!e->has_stream);
    catalog_entry_free(e);

    e = get_path(c, "link", NULL);
    ck_assert_uint_eq(e->type, CT_SYMLINK);
    ck_assert_uint_eq(e->target_len, 15);
    ck_assert_str_eq((char *)e->target, "../some target\n");
    ck_assert_uint_eq(e->size, 15);
    catalog_entry_free(e);

    e = get_path(c, "null", NULL);
    ck_assert_uint_eq(e->type, CT_CHR);
    ck_assert_uint_eq(e->rdev, makedev(1, 3));
    catalog_entry_free(e);
    e = get_path(c, "sda1", NULL);
    ck_assert_uint_eq(e->type, CT_BLK);
    ck_assert_uint_eq(e->rdev, makedev(8, 1));
    catalog_entry_free(e);
    e = get_path(c, "fifo", NULL);
    ck_assert_uint_eq(e->type, CT_FIFO);
    catalog_entry_free(e);
    e = get_path(c, "sock", NULL);
    ck_assert_uint_eq(e->type, CT_SOCK);
    catalog_entry_free(e);
    e = get_path(c, name255, NULL);
    ck_assert_uint_eq(e->name_len, 255);
    ck_assert_str_eq((char *)e->name, name255);
    catalog_entry_free(e);
    e = get_path(c, "with space ", NULL);
    ck_assert_uint_eq(e->type, CT_REG);
    catalog_entry_free(e);

    e = get_path(c, "", NULL);
    ck_assert_uint_eq(e->type, CT_DIR);
    ck_assert_uint_eq(e->name_len, 0);
    ck_assert_uint_eq(e->parent, CATALOG_NONE);
    ck_assert_uint_eq(e->first_child, 1); /* breadth-first: the root's children come first */
    ck_assert_uint_eq(e->child_count, 8);
    catalog_entry_free(e);
    catalog_close(c);
}
END_TEST

START_TEST(test_order)
{
    build_tree();
    catalog *c = open_cat("tree");
    catalog_entry *ents;
    size_t n;
    ck_assert_int_eq(catalog_readdir(c, 0, 0, 100, &ents, &n), 0);
    const char *want[] = { name255, "dir a", "fifo", "link", "null", "sda1", "sock", "with space " };
    ck_assert_uint_eq(n, ARRAY_SIZE(want));
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq((char *)ents[i].name, want[i]);
        ck_assert_uint_eq(ents[i].parent, 0);
    }
    /* Directories breadth-first: "dir a" is entry 2, its children follow the root's. */
    ck_assert_uint_eq(ents[1].first_child, 1 + n);
    for (size_t i = 0; i < n; i++)
        catalog_entry_clear(&ents[i]);
    free(ents);

    ck_assert_int_eq(catalog_readdir(c, 2, 0, 100, &ents, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq((char *)ents[0].name, "file\n1"); /* bytewise: 'f' < 's' < 0xff */
    ck_assert_str_eq((char *)ents[1].name, "sub");
    ck_assert_str_eq((char *)ents[2].name, "\xff\xfe");
    ck_assert_uint_eq(ents[1].child_count, 0);
    ck_assert_uint_eq(ents[1].first_child, CATALOG_NONE);
    for (size_t i = 0; i < n; i++)
        catalog_entry_clear(&ents[i]);
    free(ents);

    /* An empty directory lists nothing; a file cannot be listed. */
    uint64_t sub, lnk;
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/sub", &sub), 0);
    ck_assert_int_eq(catalog_readdir(c, sub, 0, 100, &ents, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(catalog_lookup_path(c, "link", &lnk), 0);
    ck_assert_int_eq(catalog_readdir(c, lnk, 0, 100, &ents, &n), -ENOTDIR);
    catalog_close(c);
}
END_TEST

START_TEST(test_hardlinks)
{
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    uint64_t z = add(w, root, CT_DIR, "z");
    uint64_t deep = add(w, z, CT_DIR, "deep");
    uint64_t leader = add(w, deep, CT_REG, "file"); /* met first by the walk, but deepest */
    catalog_stream s = stream_of(77);
    catalog_writer_set_stream(w, leader, &s, 4096);
    uint64_t m1 = add(w, root, CT_REG, "a");
    uint64_t m2 = add(w, z, CT_REG, "b");
    catalog_writer_set_link(w, m1, leader);
    catalog_writer_set_link(w, m2, m1); /* linking to a member joins the same group */
    add(w, z, CT_REG, "x");
    commit(w, "hl");

    catalog *c = open_cat("hl");
    uint64_t ia, ib, ifile;
    catalog_entry *a = get_path(c, "a", &ia), *b = get_path(c, "z/b", &ib);
    catalog_entry *f = get_path(c, "z/deep/file", &ifile), *x = get_path(c, "z/x", NULL);
    ck_assert_uint_lt(ia, ib);
    ck_assert_uint_lt(ib, ifile);
    /* The group's first entry in the catalog owns the data; the others are CF_HARDLINK to it. */
    ck_assert_uint_eq(a->link_group, ia);
    ck_assert_uint_eq(b->link_group, ia);
    ck_assert_uint_eq(f->link_group, ia);
    ck_assert_uint_eq(a->flags & CF_HARDLINK, 0);
    ck_assert_uint_eq(b->flags & CF_HARDLINK, CF_HARDLINK);
    ck_assert_uint_eq(f->flags & CF_HARDLINK, CF_HARDLINK);
    ck_assert_uint_eq(a->nlink, 3);
    ck_assert_uint_eq(b->nlink, 3);
    ck_assert_uint_eq(f->nlink, 3);
    ck_assert(a->has_stream && b->has_stream && f->has_stream);
    ck_assert_mem_eq(a->stream.digest, s.digest, HASH_LEN);
    ck_assert_mem_eq(b->stream.digest, s.digest, HASH_LEN);
    ck_assert_uint_eq(a->alloc, 4096);
    ck_assert_uint_eq(x->nlink, 1);
    ck_assert_uint_eq(x->link_group, CATALOG_NONE);
    ck_assert_uint_eq(x->flags, 0);
    catalog_entry_free(a);
    catalog_entry_free(b);
    catalog_entry_free(f);
    catalog_entry_free(x);
    catalog_close(c);
}
END_TEST

/* ---- Lookups and listings ---- */

START_TEST(test_lookup)
{
    build_tree();
    catalog *c = open_cat("tree");
    uint64_t idx, sub;
    ck_assert_int_eq(catalog_lookup_path(c, "", &idx), 0);
    ck_assert_uint_eq(idx, 0);
    ck_assert_int_eq(catalog_lookup_path(c, "/", &idx), 0);
    ck_assert_uint_eq(idx, 0);
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/sub", &sub), 0);
    ck_assert_int_eq(catalog_lookup_path(c, "//dir a///sub/", &idx), 0);
    ck_assert_uint_eq(idx, sub);
    ck_assert_int_eq(catalog_lookup(c, 2, (const uint8_t *)"sub", 3, &idx), 0); /* 2 is "dir a" */
    ck_assert_uint_eq(idx, sub);

    idx = 4242;
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/nope", &idx), -ENOENT);
    ck_assert_int_eq(catalog_lookup_path(c, "dir", &idx), -ENOENT);
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/sub/deeper", &idx), -ENOENT);
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/file\n1/x", &idx), -ENOTDIR);
    ck_assert_int_eq(catalog_lookup_path(c, "fifo/x", &idx), -ENOTDIR);
    ck_assert_int_eq(catalog_lookup(c, 0, (const uint8_t *)"dir a/sub", 9, &idx), -ENOENT);
    ck_assert_int_eq(catalog_lookup(c, 0, (const uint8_t *)"", 0, &idx), -ENOENT);
    ck_assert_uint_eq(idx, 4242); /* untouched on failure */
    ck_assert_int_eq(catalog_lookup(c, 1000, (const uint8_t *)"a", 1, &idx), -ENOENT);

    catalog_entry *e = NULL;
    ck_assert_int_eq(catalog_get(c, 12, &e), -ENOENT);
    ck_assert_ptr_null(e);
    catalog_close(c);
}
END_TEST

START_TEST(test_readdir_paging)
{
    enum { N = 1000 };
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    uint64_t d = add(w, root, CT_DIR, "d");
    for (int i = 0; i < N; i++) {
        /* Random bytes (any but '/' and NUL), made unique by a decimal suffix. */
        uint8_t name[16];
        size_t len = (size_t)i % 9;
        test_fill_random(name, len, (unsigned long long)i);
        for (size_t j = 0; j < len; j++)
            name[j] = name[j] == '/' || name[j] == 0 ? 'x' : name[j];
        len += (size_t)snprintf((char *)name + len, sizeof(name) - len, "%04d", i);
        catalog_entry e = ent(CT_REG, name, len);
        e.size = (uint64_t)i;
        ck_assert_uint_ne(catalog_writer_add(w, d, &e), CATALOG_NONE);
    }
    commit(w, "page");

    catalog *c = open_cat("page");
    uint8_t prev[256];
    size_t prev_len = 0, total = 0;
    bool seen[N] = { false };
    for (;;) {
        catalog_entry *ents;
        size_t n;
        ck_assert_int_eq(catalog_readdir(c, 1, total, 7, &ents, &n), 0);
        if (n == 0)
            break;
        ck_assert_uint_le(n, 7);
        for (size_t i = 0; i < n; i++) {
            catalog_entry *e = &ents[i];
            if (total + i > 0) {
                int cmp = memcmp(prev, e->name, MIN(prev_len, e->name_len));
                ck_assert(cmp < 0 || (cmp == 0 && prev_len < e->name_len));
            }
            memcpy(prev, e->name, e->name_len);
            prev_len = e->name_len;
            ck_assert_uint_lt(e->size, N);
            ck_assert(!seen[e->size]);
            seen[e->size] = true;
            /* Each listed entry can be found again by name. */
            uint64_t idx;
            ck_assert_int_eq(catalog_lookup(c, 1, e->name, e->name_len, &idx), 0);
            ck_assert_uint_eq(e->parent, 1);
            ck_assert_uint_eq(idx, 2 + total + i); /* children are contiguous, in listing order */
            catalog_entry_clear(e);
        }
        free(ents);
        total += n;
    }
    ck_assert_uint_eq(total, N);
    catalog_close(c);
}
END_TEST

/* ---- Scale: a lookup must not read the catalog ---- */

enum { BIG = 100000, DEPTH = 40 };

START_TEST(test_big_lookup)
{
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    uint64_t big = add(w, root, CT_DIR, "big");
    char name[64];
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof(name), "file-%06d", (i * 7919) % BIG); /* added out of order */
        uint64_t h = add(w, big, CT_REG, name);
        catalog_stream s = stream_of((uint32_t)i);
        catalog_writer_set_stream(w, h, &s, 0);
    }
    uint64_t d = root;
    for (int i = 0; i < DEPTH; i++) {
        snprintf(name, sizeof(name), "d%d", i);
        d = add(w, d, CT_DIR, name);
    }
    add(w, d, CT_REG, "leaf");
    commit(w, "big");
    uint64_t size = file_size("big.snap");

    catalog *c = open_cat("big");
    ck_assert_uint_eq(catalog_get_meta(c)->entry_count, BIG + DEPTH + 3);
    fprintf(stderr, "big: file %llu bytes; open: %lu reads, %lu bytes\n", (unsigned long long)size,
            (unsigned long)store.reads, (unsigned long)store.bytes);
    /* A packed catalog is opened through its block index (8 bytes a block) and the blocks that hold
     * the header and the meta blob. */
    uint64_t index_bytes = (size / 2 + CATALOG_PACK_BLOCK - 1) / CATALOG_PACK_BLOCK * CATALOG_PACK_ENTRY_SIZE;
    ck_assert_uint_lt(store.bytes, packed ? 1024 + index_bytes + 2 * CATALOG_PACK_BLOCK : 1024);
    const char *paths[] = { "big/file-054321", "big/file-000000", "big/file-099999", "big/file-1" };
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        store.bytes = store.reads = 0;
        uint64_t idx;
        int r = catalog_lookup_path(c, paths[i], &idx);
        fprintf(stderr, "big: lookup %s: %lu reads, %lu bytes\n", paths[i], (unsigned long)store.reads,
                (unsigned long)store.bytes);
        ck_assert_uint_lt(store.bytes, size / 20);
        if (i == 3) {
            ck_assert_int_eq(r, -ENOENT);
            break;
        }
        ck_assert_int_eq(r, 0);
        catalog_entry *e;
        ck_assert_int_eq(catalog_get(c, idx, &e), 0);
        ck_assert_str_eq((char *)e->name, paths[i] + 4);
        catalog_entry_free(e);
    }
    catalog_close(c);

    store.bytes = store.reads = 0;
    c = open_cat("big");
    char path[512] = "";
    for (int i = 0; i < DEPTH; i++)
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "d%d/", i);
    strcat(path, "leaf");
    catalog_entry *e = get_path(c, path, NULL);
    ck_assert_str_eq((char *)e->name, "leaf");
    catalog_entry_free(e);
    catalog_close(c);
    fprintf(stderr, "big: depth-%d lookup: %lu reads, %lu bytes\n", DEPTH, (unsigned long)store.reads,
            (unsigned long)store.bytes);
    ck_assert_uint_lt(store.bytes, size / 20);
}
END_TEST

/* ---- Commit ---- */

START_TEST(test_collision)
{
    build_tree();
    uint8_t *before, *after;
    size_t blen, alen;
    ck_assert_int_eq(fs_read_file(snapfd, "tree.snap", &before, &blen), 0);

    catalog_writer *w = catalog_writer_new();
    add(w, add_root(w), CT_REG, "other");
    ck_assert_int_eq(catalog_writer_commit(w, snapfd, "tree", NULL), RH_EEXIST);
    catalog_writer_free(w);

    ck_assert_int_eq(fs_read_file(snapfd, "tree.snap", &after, &alen), 0);
    ck_assert_uint_eq(alen, blen);
    ck_assert_mem_eq(after, before, blen);
    free(before);
    free(after);
    char *cmd = xasprintf("test $(ls -A '%s/snapshots' | wc -l) -eq 1", tmpdir);
    ck_assert_int_eq(system(cmd), 0); /* no temp file left behind */
    free(cmd);
}
END_TEST

START_TEST(test_writer_rejects)
{
    catalog_writer *w = catalog_writer_new();
    catalog_entry e = ent(CT_REG, "x", 1);
    ck_assert_uint_eq(catalog_writer_add(w, CATALOG_NONE, &e), CATALOG_NONE); /* root must be a dir */
    uint64_t root = add_root(w);
    catalog_entry r2 = ent(CT_DIR, NULL, 0);
    ck_assert_uint_eq(catalog_writer_add(w, CATALOG_NONE, &r2), CATALOG_NONE); /* only one root */
    const struct {
        const char *name;
        size_t len;
    } bad[] = { { "a/b", 3 }, { "", 0 }, { ".", 1 }, { "..", 2 }, { "a\0b", 3 }, { name255, 256 } };
    char long_name[257];
    memset(long_name, 'b', sizeof(long_name));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        e = ent(CT_REG, i == 5 ? long_name : bad[i].name, bad[i].len);
        ck_assert_uint_eq(catalog_writer_add(w, root, &e), CATALOG_NONE);
    }
    uint64_t f = add(w, root, CT_REG, "f");
    e = ent(CT_REG, "g", 1);
    ck_assert_uint_eq(catalog_writer_add(w, f, &e), CATALOG_NONE); /* parent is not a directory */
    ck_assert_uint_eq(catalog_writer_count(w), 2);

    /* Two equal names in one directory cannot be looked up: commit refuses. */
    add(w, root, CT_REG, "f");
    ck_assert_int_eq(catalog_writer_commit(w, snapfd, "dup", NULL), -EINVAL);
    catalog_writer_free(w);

    /* A misused setter is reported by commit. */
    w = catalog_writer_new();
    root = add_root(w);
    uint64_t d = add(w, root, CT_DIR, "d");
    catalog_stream s = stream_of(1);
    catalog_writer_set_stream(w, d, &s, 0);
    ck_assert_int_eq(catalog_writer_commit(w, snapfd, "bad", NULL), -EINVAL);
    catalog_writer_free(w);
    ck_assert_int_eq(catalog_writer_commit(NULL, snapfd, "x", NULL), -EINVAL);

    char *cmd = xasprintf("test -z \"$(ls -A '%s/snapshots')\"", tmpdir);
    ck_assert_int_eq(system(cmd), 0); /* nothing left behind */
    free(cmd);
}
END_TEST

/* ---- Damage ---- */

static void patch(const char *file, uint64_t off, uint8_t xor)
{
    int fd = openat(snapfd, file, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t b;
    ck_assert_int_eq(fs_pread_full(fd, &b, 1, off), 0);
    b ^= xor;
    ck_assert_int_eq(fs_pwrite_full(fd, &b, 1, off), 0);
    close(fd);
}

START_TEST(test_corrupt_entry)
{
    build_tree();
    catalog *c = open_cat("tree");
    uint64_t k;
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/file\n1", &k), 0);
    catalog_close(c);

    patch("tree.snap", CATALOG_HEADER_SIZE + k * CATALOG_ENTRY_SIZE + CE_MODE, 0x01);
    c = open_cat("tree");
    catalog_entry *e = NULL;
    ck_assert_int_eq(catalog_get(c, k, &e), RH_ECORRUPT);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(catalog_get(c, k - 1, &e), 0); /* the damage stays local */
    catalog_entry_free(e);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, "dir a/file\n1", &idx), RH_ECORRUPT);
    catalog_close(c);
    patch("tree.snap", CATALOG_HEADER_SIZE + k * CATALOG_ENTRY_SIZE + CE_MODE, 0x01);

    /* A byte of a name in the heap. */
    int fd = openat(snapfd, "tree.snap", O_RDONLY);
    uint8_t fixed[CATALOG_ENTRY_SIZE];
    ck_assert_int_eq(fs_pread_full(fd, fixed, sizeof(fixed), CATALOG_HEADER_SIZE + k * CATALOG_ENTRY_SIZE), 0);
    close(fd);
    patch("tree.snap", get_le64(fixed + CE_NAME_OFFSET) + 2, 0x20);
    c = open_cat("tree");
    ck_assert_int_eq(catalog_get(c, k, &e), RH_ECORRUPT);
    catalog_entry *ents;
    size_t n;
    /* The listing of "dir a" (entry 2) goes on: the damaged child comes back as such, alone. */
    ck_assert_int_eq(catalog_readdir(c, 2, 0, 10, &ents, &n), 0);
    size_t damaged = 0;
    for (size_t j = 0; j < n; j++) {
        if (ents[j].damage) {
            ck_assert_int_eq(ents[j].damage, RH_ECORRUPT);
            ck_assert_uint_eq(ents[j].idx, k);
            damaged++;
        }
        catalog_entry_clear(&ents[j]);
    }
    free(ents);
    ck_assert_uint_eq(damaged, 1);
    ck_assert_uint_ge(n, 2);
    catalog_close(c);
}
END_TEST

/* ---- catalog_walk_dir: paging, stopping, damaged children, empty directories ---- */

/* What a walk saw: every child number and entry index, and the damaged ones apart. */
typedef struct walk_log {
    uint64_t first; /* the directory's first_child */
    uint64_t next_k;  /* the child number expected next */
    size_t children, damaged;
    uint64_t gaps; /* child numbers that reached no callback */
    uint64_t damaged_k[4];
    int damage[4];
    uint64_t stop_at; /* child number at which child returns `stop` (UINT64_MAX: never) */
    int stop;
} walk_log;

static int log_child(void *ctx, uint64_t k, const catalog_entry *e)
{
    walk_log *w = ctx;
    ck_assert_uint_ge(k, w->next_k); /* in order */
    w->gaps += k - w->next_k;
    ck_assert_int_eq(e->damage, 0);
    ck_assert_uint_eq(e->idx, w->first + k);
    char want[16];
    snprintf(want, sizeof(want), "f%05llu", (unsigned long long)k);
    ck_assert_str_eq((const char *)e->name, want);
    w->next_k = k + 1;
    w->children++;
    return k == w->stop_at ? w->stop : 0;
}

static int log_damaged(void *ctx, uint64_t k, const catalog_entry *e)
{
    walk_log *w = ctx;
    ck_assert_uint_eq(k, w->next_k);
    ck_assert_int_ne(e->damage, 0);
    ck_assert_uint_eq(e->idx, w->first + k);
    ck_assert_uint_lt(w->damaged, ARRAY_SIZE(w->damaged_k));
    w->damaged_k[w->damaged] = k;
    w->damage[w->damaged++] = e->damage;
    w->next_k = k + 1;
    return 0;
}

static const catalog_walk_ops log_ops = { .child = log_child, .damaged = log_damaged };

static int fail_on_damage(void *ctx, uint64_t k, const catalog_entry *e) { return -EIO; }

/* A root with directory "d" of n files f00000.. (entry 1, children from entry 3) and an empty "e". */
static void build_wide(const char *name, unsigned n)
{
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    uint64_t d = add(w, root, CT_DIR, "d");
    add(w, root, CT_DIR, "e");
    for (unsigned i = 0; i < n; i++) {
        char fn[16];
        snprintf(fn, sizeof(fn), "f%05u", i);
        add(w, d, CT_REG, fn);
    }
    commit(w, name);
}

static walk_log walk(catalog *c, uint64_t dir, uint64_t start, int *ret)
{
    catalog_entry *d;
    ck_assert_int_eq(catalog_get(c, dir, &d), 0);
    walk_log w = { .first = d->first_child, .next_k = start, .stop_at = UINT64_MAX };
    catalog_entry_free(d);
    *ret = catalog_walk_dir(c, dir, start, &log_ops, &w);
    return w;
}

START_TEST(test_walk_paging)
{
    /* Pages of 256, then of 1024: 2500 children cross a boundary of each kind and end mid-page. */
    enum { N = 2500 };
    build_wide("wide", N);
    catalog *c = open_cat("wide");
    uint64_t d, e;
    ck_assert_int_eq(catalog_lookup_path(c, "d", &d), 0);
    ck_assert_int_eq(catalog_lookup_path(c, "e", &e), 0);
    int r;
    walk_log w = walk(c, d, 0, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(w.children, N);
    ck_assert_uint_eq(w.damaged, 0);
    /* From child numbers on both sides of the page boundaries, and at or past the end. */
    static const uint64_t starts[] = { 1, 255, 256, 257, 1279, 1280, 1281, N - 1, N, N + 5 };
    for (size_t i = 0; i < ARRAY_SIZE(starts); i++) {
        w = walk(c, d, starts[i], &r);
        ck_assert_int_eq(r, 0);
        ck_assert_uint_eq(w.children, starts[i] < N ? N - starts[i] : 0);
        ck_assert_uint_eq(w.next_k, starts[i] < N ? N : starts[i]);
    }
    /* A callback's non-zero result stops the walk at once and is what the walk returns. */
    static const uint64_t stops[] = { 0, 255, 256, 1280, N - 1 };
    for (size_t i = 0; i < ARRAY_SIZE(stops); i++) {
        for (int stop = -EIO; stop <= 1; stop += EIO + 1) {
            catalog_entry *de;
            ck_assert_int_eq(catalog_get(c, d, &de), 0);
            w = (walk_log){ .first = de->first_child, .stop_at = stops[i], .stop = stop };
            catalog_entry_free(de);
            ck_assert_int_eq(catalog_walk_dir(c, d, 0, &log_ops, &w), stop);
            ck_assert_uint_eq(w.children, stops[i] + 1);
        }
    }
    /* An empty directory: no callback, 0. */
    w = walk(c, e, 0, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(w.children + w.damaged, 0);
    /* Not a directory, and no such entry: the reader's code. */
    uint64_t f;
    ck_assert_int_eq(catalog_lookup_path(c, "d/f00007", &f), 0);
    walk_log none = { .stop_at = UINT64_MAX };
    ck_assert_int_eq(catalog_walk_dir(c, f, 0, &log_ops, &none), -ENOTDIR);
    ck_assert_int_eq(catalog_walk_dir(c, 1u << 30, 0, &log_ops, &none), -ENOENT);
    ck_assert_uint_eq(none.children + none.damaged, 0);
    ck_assert_int_eq(catalog_walk_dir(c, d, 0, &(catalog_walk_ops){ 0 }, &none), -EINVAL);
    catalog_close(c);
}
END_TEST

START_TEST(test_walk_damaged)
{
    /* A damaged child in the second page and one in the first: each goes to `damaged`, in its place,
     * and the walk goes on past it. */
    enum { N = 300 };
    static const uint64_t bad[] = { 3, 260 };
    build_wide("wide", N);
    catalog *c = open_cat("wide");
    uint64_t d;
    ck_assert_int_eq(catalog_lookup_path(c, "d", &d), 0);
    catalog_entry *de;
    ck_assert_int_eq(catalog_get(c, d, &de), 0);
    uint64_t first = de->first_child;
    catalog_entry_free(de);
    catalog_close(c);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        patch("wide.snap", CATALOG_HEADER_SIZE + (first + bad[i]) * CATALOG_ENTRY_SIZE + CE_MODE, 0x01);

    c = open_cat("wide");
    int r;
    walk_log w = walk(c, d, 0, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(w.children, N - ARRAY_SIZE(bad));
    ck_assert_uint_eq(w.damaged, ARRAY_SIZE(bad));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_uint_eq(w.damaged_k[i], bad[i]);
        ck_assert_int_eq(w.damage[i], RH_ECORRUPT);
    }
    ck_assert_uint_eq(w.next_k, N);
    ck_assert_uint_eq(w.gaps, 0);
    /* Without a `damaged` callback they are skipped silently; `child` still never sees them. */
    static const catalog_walk_ops child_only = { .child = log_child };
    walk_log skip = { .first = first, .stop_at = UINT64_MAX };
    ck_assert_int_eq(catalog_walk_dir(c, d, 0, &child_only, &skip), 0);
    ck_assert_uint_eq(skip.children, N - ARRAY_SIZE(bad));
    ck_assert_uint_eq(skip.gaps, ARRAY_SIZE(bad));
    /* A `damaged` callback that fails stops the walk there. */
    static const catalog_walk_ops fail_damaged = { .child = log_child, .damaged = fail_on_damage };
    walk_log stop = { .first = first, .stop_at = UINT64_MAX };
    ck_assert_int_eq(catalog_walk_dir(c, d, 0, &fail_damaged, &stop), -EIO);
    ck_assert_uint_eq(stop.children, bad[0]);
    catalog_close(c);
}
END_TEST

START_TEST(test_corrupt_open)
{
    build_tree();
    uint64_t size = file_size("tree.snap");
    catalog *c = NULL;
    ck_assert_int_eq(catalog_open(&t_ops, &store, "snapshots/none.snap", &c), RH_ENOSNAPSHOT);

    c = open_cat("tree");
    uint64_t count = catalog_get_meta(c)->entry_count;
    char *host = xstrdup(catalog_get_meta(c)->hostname);
    catalog_close(c);
    /* One damaged byte of the header, the meta blob or the magic is caught by its checksum, repaired,
     * and recorded; two are beyond repair. */
    static const uint64_t one[] = { CH_ENTRY_COUNT, CH_CHECKSUM + 3, 0 };
    for (size_t i = 0; i < ARRAY_SIZE(one) + 1; i++) {
        uint64_t at = i < ARRAY_SIZE(one) ? one[i] : size - 3; /* last: the hostname, in the meta blob */
        patch("tree.snap", at, 0x01);
        c = NULL;
        ck_assert_int_eq(catalog_open(&t_ops, &store, "snapshots/tree.snap", &c), 0);
        ck_assert_uint_eq(catalog_get_meta(c)->entry_count, count);
        ck_assert_str_eq(catalog_get_meta(c)->hostname, host);
        catalog_damage *d;
        size_t nd;
        catalog_damage_get(c, &d, &nd);
        ck_assert_uint_eq(nd, 1);
        ck_assert_int_eq(d[0].code, RH_ECHECKSUM);
        ck_assert_ptr_nonnull(strstr(d[0].what, "repaired"));
        free(d);
        catalog_close(c);
        patch("tree.snap", at, 0x01);
    }
    free(host);
    patch("tree.snap", CH_ENTRY_COUNT, 0x01);
    patch("tree.snap", CH_CREATED_NS, 0x01);
    char why[CATALOG_WHY_MAX];
    c = NULL;
    ck_assert_int_eq(catalog_open_why(&t_ops, &store, "snapshots/tree.snap", &c, why), RH_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(why, "unrecoverable"));
    patch("tree.snap", CH_ENTRY_COUNT, 0x01);
    patch("tree.snap", CH_CREATED_NS, 0x01);

    /* A newer version with a valid checksum is a version problem, not damage. */
    int fd = openat(snapfd, "tree.snap", O_RDWR);
    uint8_t h[CATALOG_HEADER_SIZE], saved[CATALOG_HEADER_SIZE];
    ck_assert_int_eq(fs_pread_full(fd, h, sizeof(h), 0), 0);
    memcpy(saved, h, sizeof(h));
    put_le32(h + CH_VERSION, 2);
    put_le64(h + CH_CHECKSUM, hash_checksum(h, CATALOG_HEADER_SUMMED, NULL, 0));
    ck_assert_int_eq(fs_pwrite_full(fd, h, sizeof(h), 0), 0);
    ck_assert_int_eq(catalog_open(&t_ops, &store, "snapshots/tree.snap", &c), RH_EVERSION);
    ck_assert_int_eq(fs_pwrite_full(fd, saved, sizeof(saved), 0), 0);

    c = open_cat("tree"); /* restored: fine again */
    catalog_close(c);
    c = NULL;
    ck_assert_int_eq(ftruncate(fd, (off_t)size - 1), 0);
    ck_assert_int_eq(catalog_open(&t_ops, &store, "snapshots/tree.snap", &c), RH_ECORRUPT);
    ck_assert_int_eq(ftruncate(fd, 100), 0);
    ck_assert_int_eq(catalog_open(&t_ops, &store, "snapshots/tree.snap", &c), RH_ECORRUPT);
    ck_assert_ptr_null(c);
    close(fd);
}
END_TEST

/*
 * Rewrites entry k of tree.snap with `mutate` applied to its table bytes and heap bytes, and a checksum
 * that matches again, as a malicious or buggy writer would: the reader's structural checks must catch it.
 */
typedef void mutate_fn(uint8_t *fixed, uint8_t *heap);

static void craft(uint64_t k, mutate_fn *mutate)
{
    int fd = openat(snapfd, "tree.snap", O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t fixed[CATALOG_ENTRY_SIZE], heap[4096];
    uint64_t at = CATALOG_HEADER_SIZE + k * CATALOG_ENTRY_SIZE;
    ck_assert_int_eq(fs_pread_full(fd, fixed, sizeof(fixed), at), 0);
    uint64_t hoff = get_le64(fixed + CE_NAME_OFFSET);
    size_t hlen = get_le32(fixed + CE_NAME_LEN) + get_le32(fixed + CE_EXTRA_LENGTH);
    ck_assert_uint_le(hlen, sizeof(heap));
    ck_assert_int_eq(fs_pread_full(fd, heap, hlen, hoff), 0);
    mutate(fixed, heap);
    put_le64(fixed + CE_CHECKSUM, hash_checksum(fixed, CATALOG_ENTRY_SUMMED, heap, hlen));
    ck_assert_int_eq(fs_pwrite_full(fd, fixed, sizeof(fixed), at), 0);
    ck_assert_int_eq(fs_pwrite_full(fd, heap, hlen, hoff), 0);
    close(fd);
}

static void m_children(uint8_t *f, uint8_t *h) { put_le64(f + CE_CHILD_COUNT, UINT64_MAX - 1); }
static void m_first_child(uint8_t *f, uint8_t *h) { put_le64(f + CE_FIRST_CHILD, 0); }
static void m_slash(uint8_t *f, uint8_t *h) { h[0] = '/'; }
static void m_dotdot(uint8_t *f, uint8_t *h)
{
    h[0] = h[1] = '.'; /* "dir a" becomes ".." at length 2 */
    put_le32(f + CE_NAME_LEN, 2);
    put_le32(f + CE_EXTRA_LENGTH, get_le32(f + CE_EXTRA_LENGTH) + 3); /* keep the heap contiguous */
    put_le64(f + CE_EXTRA_OFFSET, get_le64(f + CE_NAME_OFFSET) + 2);
}
static void m_name_len(uint8_t *f, uint8_t *h) { put_le32(f + CE_NAME_LEN, 300); }
static void m_extra_huge(uint8_t *f, uint8_t *h) { put_le32(f + CE_EXTRA_LENGTH, UINT32_MAX); }
static void m_name_off(uint8_t *f, uint8_t *h) { put_le64(f + CE_NAME_OFFSET, UINT64_MAX - 3); }
static void m_type(uint8_t *f, uint8_t *h) { f[CE_TYPE] = 9; }
static void m_parent(uint8_t *f, uint8_t *h) { put_le64(f + CE_PARENT, 99); }
static void m_link(uint8_t *f, uint8_t *h)
{
    f[CE_FLAGS] |= CF_HARDLINK;
    put_le64(f + CE_LINK_GROUP, 1000);
}
static void m_xattrs(uint8_t *f, uint8_t *h)
{
    uint32_t nlen = get_le32(f + CE_NAME_LEN);
    put_le32(h + nlen + 4 + get_le32(h + nlen), 0x7fffffff); /* xattr_count */
}
static void m_target_nul(uint8_t *f, uint8_t *h) { h[get_le32(f + CE_NAME_LEN) + 4 + 3] = 0; }

START_TEST(test_crafted_entries)
{
    static const struct {
        const char *path;
        mutate_fn *fn;
        int want; /* unsafe names are refused as such, not as damage */
    } cases[] = {
        { "", m_children, RH_ECORRUPT },          { "", m_first_child, RH_ECORRUPT },
        { "dir a", m_slash, RH_EUNSAFE },         { "dir a", m_dotdot, RH_EUNSAFE },
        { "fifo", m_name_len, RH_ECORRUPT },      { "fifo", m_extra_huge, RH_ECORRUPT },
        { "fifo", m_name_off, RH_ECORRUPT },      { "fifo", m_type, RH_ECORRUPT },
        { "fifo", m_parent, RH_ECORRUPT },        { "dir a/sub", m_link, RH_ECORRUPT },
        { "dir a/file\n1", m_xattrs, RH_ECORRUPT }, { "link", m_target_nul, RH_ECORRUPT },
    };
    build_tree();
    uint8_t *orig;
    size_t len;
    ck_assert_int_eq(fs_read_file(snapfd, "tree.snap", &orig, &len), 0);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        catalog *c = open_cat("tree");
        uint64_t k;
        ck_assert_int_eq(catalog_lookup_path(c, cases[i].path, &k), 0);
        catalog_close(c);
        craft(k, cases[i].fn);
        c = open_cat("tree");
        catalog_entry *e = NULL;
        int r = catalog_get(c, k, &e);
        if (k == 0) { /* a damaged root is stood in for, and says so */
            ck_assert_msg(r == 0 && e->damage == cases[i].want, "case %zu: %d", i, r);
            catalog_entry_free(e);
        } else {
            ck_assert_msg(r == cases[i].want, "case %zu: %d", i, r);
            ck_assert_ptr_null(e);
        }
        catalog_close(c);
        ck_assert_int_eq(fs_write_atomic(snapfd, "tree.snap", orig, len, 1), 0);
    }
    free(orig);
}
END_TEST

/*
 * Reads everything a reader can reach; returns the first error, where damage that the reader got by with
 * counts as one: a damaged child in a listing, a stand-in root, or damage recorded in the catalog
 * (a repaired header, a block that failed its checksum) — a flip must never go unnoticed.
 */
static int walk_all(catalog *c)
{
    uint64_t count = catalog_get_meta(c)->entry_count;
    int first = 0;
    for (uint64_t i = 0; i < count; i++) {
        catalog_entry *e;
        int r = catalog_get(c, i, &e);
        if (r < 0) {
            first = first ? first : r;
            continue;
        }
        first = first ? first : e->damage;
        if (e->type == CT_DIR) {
            catalog_entry *ents;
            size_t n;
            r = catalog_readdir(c, i, 0, 1000, &ents, &n);
            if (r == 0) {
                for (size_t j = 0; j < n; j++) {
                    uint64_t idx;
                    int lr = ents[j].damage ? ents[j].damage
                                            : catalog_lookup(c, i, ents[j].name, ents[j].name_len, &idx);
                    first = first ? first : lr;
                    catalog_entry_clear(&ents[j]);
                }
                free(ents);
            }
            first = first ? first : r;
        }
        catalog_entry_free(e);
    }
    catalog_damage *d;
    size_t nd;
    catalog_scan_blocks(c);
    catalog_damage_get(c, &d, &nd);
    first = first ? first : nd ? d[0].code : 0;
    free(d);
    return first;
}

START_TEST(test_every_flip_detected)
{
    build_tree();
    uint8_t *orig;
    size_t len;
    ck_assert_int_eq(fs_read_file(snapfd, "tree.snap", &orig, &len), 0);
    catalog *c = open_cat("tree");
    ck_assert_int_eq(walk_all(c), 0);
    catalog_close(c);
    for (size_t off = 0; off < len; off++) {
        uint8_t x = (uint8_t)(1u << (off % 8));
        patch("tree.snap", off, x);
        int r = catalog_open(&t_ops, &store, "snapshots/tree.snap", &c);
        if (r == 0) {
            r = walk_all(c);
            catalog_close(c);
        }
        ck_assert_msg(r == RH_ECORRUPT || r == RH_EVERSION || r == RH_ECHECKSUM || r == RH_EUNSAFE,
                      "flip at offset %zu: %d (%s)", off, r, rh_strerror(r));
        patch("tree.snap", off, x);
    }
    free(orig);
}
END_TEST

/* ---- The packed form ---- */

/* A packed catalog is its header, blocks and index as doc/format.md lays them out, much smaller than
 * the plain one, and decodes to the same entries. */
START_TEST(test_packed_form)
{
    build_tree(); /* packed: this case's fixture */
    packed = false;
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "file-%05d.txt", i);
        add(w, root, CT_REG, name);
    }
    commit(w, "plain");
    packed = true;
    w = catalog_writer_new();
    root = add_root(w);
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "file-%05d.txt", i);
        add(w, root, CT_REG, name);
    }
    commit(w, "small");
    uint64_t plain = file_size("plain.snap"), small = file_size("small.snap");
    ck_assert_uint_lt(small * 4, plain);

    uint8_t *f;
    size_t len;
    ck_assert_int_eq(fs_read_file(snapfd, "small.snap", &f, &len), 0);
    ck_assert_mem_eq(f, "RHYDSNPK", 8);
    ck_assert_uint_eq(get_le32(f + 8), 1);
    ck_assert_uint_eq(get_le32(f + 12), 32768);
    ck_assert_uint_eq(get_le64(f + 16), plain); /* the logical catalog is the plain one */
    uint64_t index = get_le64(f + 24), blocks = (plain + 32767) / 32768, at = 64;
    ck_assert_uint_eq(len, index + blocks * 16);
    ck_assert_uint_eq(get_le64(f + 32), hash_checksum(f + index, blocks * 16, NULL, 0));
    ck_assert_uint_eq(get_le64(f + 56), hash_checksum(f, 56, NULL, 0));
    for (uint64_t b = 0; b < blocks; b++) {
        const uint8_t *e = f + index + b * 16;
        ck_assert_uint_eq(e[4], 1); /* names compress: zstd */
        ck_assert_uint_eq(get_le64(e + 8), hash_checksum(f + at, get_le32(e), NULL, 0));
        at += get_le32(e);
    }
    ck_assert_uint_eq(at, index);
    free(f);

    catalog *a = open_cat("plain"), *b = open_cat("small");
    ck_assert_uint_eq(catalog_get_meta(a)->entry_count, catalog_get_meta(b)->entry_count);
    for (uint64_t i = 0; i < catalog_get_meta(a)->entry_count; i += 7) {
        catalog_entry *x, *y;
        ck_assert_int_eq(catalog_get(a, i, &x), 0);
        ck_assert_int_eq(catalog_get(b, i, &y), 0);
        ck_assert_uint_eq(x->name_len, y->name_len);
        ck_assert_mem_eq(x->name, y->name, x->name_len);
        catalog_entry_free(x);
        catalog_entry_free(y);
    }
    catalog_close(a);
    catalog_close(b);
}
END_TEST

/* ---- Threads ---- */

enum { TD = 40, TF = 500, THREADS = 4 };

typedef struct tctx {
    catalog *c;
    unsigned seed;
    int errors;
} tctx;

static void *reader_thread(void *arg)
{
    tctx *t = arg;
    for (int k = 0; k < 3000; k++) {
        t->seed = t->seed * 1103515245u + 12345u;
        int d = (int)(t->seed >> 8) % TD, f = (int)(t->seed >> 16) % TF;
        char path[64];
        snprintf(path, sizeof(path), "d%03d/f%04d", d, f);
        uint64_t idx;
        catalog_entry *e;
        if (catalog_lookup_path(t->c, path, &idx) < 0 || catalog_get(t->c, idx, &e) < 0) {
            t->errors++;
            continue;
        }
        if (e->size != (uint64_t)(d * 10000 + f) || strcmp((char *)e->name, path + 5) != 0)
            t->errors++;
        catalog_entry_free(e);
    }
    return NULL;
}

START_TEST(test_threads)
{
    catalog_writer *w = catalog_writer_new();
    uint64_t root = add_root(w);
    char name[32];
    for (int d = 0; d < TD; d++) {
        snprintf(name, sizeof(name), "d%03d", d);
        uint64_t dh = add(w, root, CT_DIR, name);
        for (int f = 0; f < TF; f++) {
            snprintf(name, sizeof(name), "f%04d", f);
            catalog_entry e = ent(CT_REG, name, strlen(name));
            e.size = (uint64_t)(d * 10000 + f);
            ck_assert_uint_ne(catalog_writer_add(w, dh, &e), CATALOG_NONE);
        }
    }
    commit(w, "mt");
    uint64_t bytes = file_size("mt.snap");
    if (packed) { /* what counts is the catalog the blocks hold */
        uint8_t h[CATALOG_PACK_HEADER_SIZE];
        ck_assert_int_eq(t_read(&store, "snapshots/mt.snap", 0, h, sizeof(h)), 0);
        bytes = get_le64(h + CPH_LOGICAL_SIZE);
    }
    ck_assert_uint_gt(bytes, 2 * 64 * 32768); /* larger than the cache: blocks evict */

    catalog *c = open_cat("mt");
    pthread_t th[THREADS];
    tctx t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        t[i] = (tctx){ c, (unsigned)i * 7919u + 1, 0 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_thread, &t[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(t[i].errors, 0);
    }
    catalog_close(c);
}
END_TEST

typedef struct test_case {
    const char *name;
    const TTest *test;
} test_case;

static void add_cases(Suite *s, const test_case *cases, size_t n, void (*fixture)(void), int timeout)
{
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, fixture, teardown);
        tcase_set_timeout(tc, timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
}

static Suite *suite(void)
{
    Suite *s = suite_create("catalog");
    const test_case plain[] = {
        { "round_trip", test_round_trip },
        { "order", test_order },
        { "hardlinks", test_hardlinks },
        { "lookup", test_lookup },
        { "readdir_paging", test_readdir_paging },
        { "walk_paging", test_walk_paging },
        { "walk_damaged", test_walk_damaged },
        { "big_lookup", test_big_lookup },
        { "collision", test_collision },
        { "writer_rejects", test_writer_rejects },
        { "corrupt_entry", test_corrupt_entry },
        { "corrupt_open", test_corrupt_open },
        { "crafted_entries", test_crafted_entries },
        { "every_flip_detected", test_every_flip_detected },
        { "threads", test_threads },
    };
    /* The same reads of packed catalogs (the tests that patch plain bytes by offset stay plain). */
    const test_case packed_cases[] = {
        { "round_trip_packed", test_round_trip },
        { "order_packed", test_order },
        { "hardlinks_packed", test_hardlinks },
        { "lookup_packed", test_lookup },
        { "readdir_paging_packed", test_readdir_paging },
        { "walk_paging_packed", test_walk_paging },
        { "big_lookup_packed", test_big_lookup },
        { "every_flip_detected_packed", test_every_flip_detected },
        { "threads_packed", test_threads },
        { "packed_form", test_packed_form },
    };
    add_cases(s, plain, ARRAY_SIZE(plain), setup, 30);
    add_cases(s, packed_cases, ARRAY_SIZE(packed_cases), setup_packed, 60);
    return s;
}

int main(void) { return test_run_suite(suite()); }

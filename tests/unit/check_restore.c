/*
 * check_restore.c — rh_restore_files and the lazy rh_file reads. A callback table that simulates tape
 * records every call so that the engine's contract can be asserted: the order is asked twice (stream
 * maps, then data), every container is previewed before its reads, containers are read in the plan's
 * order, each in one visit, and no byte is read twice.
 */
#include "config.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "backup/backup.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "maint/verify.h"
#include "read/cache.h"
#include "read/reader.h"
#include "store/reparse.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/format.h"
#include "store/store.h"
#include "stubutil.h"
#include "testutil.h"

static char *dir, *src, *storepath, *target;
static rh_store *store; /* local: for the backup and for catalog reads */

static uint8_t *big, *rep, *text;
#define TEXT_SIZE (1u << 20) /* compressible: its packs are stored with zstd */
#define BIG_SIZE (12u << 20)
#define REP_BLOCK (300u << 10)
#define REP_COUNT 8

static char *pathf(const char *base, const char *name) { return xasprintf("%s/%s", base, name); }

static void write_file(const char *name, const void *data, size_t n)
{
    char *p = pathf(src, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fs_write_full(fd, data, n), 0);
    close(fd);
    free(p);
}

static const char *files[] = { "big", "big-copy", "repeats", "sparse", "empty", "small", "text" };
#define NFILES (sizeof(files) / sizeof(files[0]))

static void setup(void)
{
    dir = test_mkdtemp();
    src = pathf(dir, "src");
    storepath = pathf(dir, "store");
    target = pathf(dir, "target");
    char *cache = pathf(dir, "cache");
    setenv("XDG_CACHE_HOME", cache, 1); /* the index of a store behind callbacks is cached here */
    free(cache);
    ck_assert_int_eq(mkdir(src, 0755), 0);
    ck_assert_int_eq(mkdir(target, 0755), 0);
    big = xmalloc(BIG_SIZE);
    test_fill_random(big, BIG_SIZE, 99);
    write_file("big", big, BIG_SIZE);
    write_file("big-copy", big, BIG_SIZE);
    rep = xmalloc(REP_BLOCK * REP_COUNT); /* the same 300 KiB block again and again: repeated chunks */
    test_fill_random(rep, REP_BLOCK, 5);
    for (int i = 1; i < REP_COUNT; i++)
        memcpy(rep + i * REP_BLOCK, rep, REP_BLOCK);
    write_file("repeats", rep, REP_BLOCK * REP_COUNT);
    char *sp = pathf(src, "sparse");
    int fd = open(sp, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(pwrite(fd, big, 200000, 1ull << 30), 200000);
    ck_assert_int_eq(ftruncate(fd, 2ull << 30), 0);
    close(fd);
    free(sp);
    write_file("empty", "", 0);
    write_file("small", "tiny\n", 5);
    text = xmalloc(TEXT_SIZE);
    unsigned long long ts = 3;
    for (size_t i = 0; i < TEXT_SIZE; i++) {
        ts = ts * 6364136223846793005ull + 1442695040888963407ull;
        text[i] = (uint8_t)("abcdefgh \n"[(ts >> 33) % 10]);
    }
    write_file("text", text, TEXT_SIZE);

    store_config c;
    store_config_default(&c);
    c.seal_size = 1u << 20; /* many containers, so that order matters */
    ck_assert_int_eq(store_create(storepath, &c), 0);
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &store), 0);
    backup_options o = { .name = "s", .compression_level = -1 };
    backup_stats st;
    ck_assert_int_eq(backup_run(store, src, &o, &st), 0);
}

static void teardown(void)
{
    rh_store_close(store);
    test_rmtree(dir);
    free(dir), free(src), free(storepath), free(target), free(big), free(rep), free(text);
}

/* Creates the stub of snapshot file `name` at target/name, as phase 1 of a restore would. */
static char *make_stub(const char *name)
{
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    char *p = test_make_stub(c, store->cfg.uuid, name, target);
    catalog_close(c);
    free(cp);
    return p;
}

/* Compares two files region by region: data regions of either file must hold equal bytes, and where
 * both have holes there is nothing to read. Sparse files of GiBs compare in the time of their data. */
static bool same_range(int fa, int fb, uint64_t off, uint64_t len)
{
    uint8_t x[1 << 16], y[1 << 16];
    while (len > 0) {
        size_t n = (size_t)MIN(len, sizeof(x));
        if (fs_pread_full(fa, x, n, off) < 0 || fs_pread_full(fb, y, n, off) < 0 || memcmp(x, y, n))
            return false;
        off += n;
        len -= n;
    }
    return true;
}

static bool regions_match(int fa, int fb, uint64_t size)
{
    /* every data region of fa, compared with the same range of fb */
    for (off_t d = 0; (uint64_t)d < size;) {
        d = lseek(fa, d, SEEK_DATA);
        if (d < 0)
            break;
        off_t h = lseek(fa, d, SEEK_HOLE);
        if (!same_range(fa, fb, (uint64_t)d, (uint64_t)(h - d)))
            return false;
        d = h;
    }
    return true;
}

static bool same_content(const char *name)
{
    char *a = pathf(src, name), *b = pathf(target, name);
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    ck_assert(fa >= 0 && fb >= 0);
    struct stat sa, sb;
    fstat(fa, &sa);
    fstat(fb, &sb);
    bool same = sa.st_size == sb.st_size && regions_match(fa, fb, (uint64_t)sa.st_size) &&
                regions_match(fb, fa, (uint64_t)sa.st_size);
    close(fa), close(fb), free(a), free(b);
    return same;
}

static bool has_xattr(const char *p) { return getxattr(p, REPARSE_XATTR, NULL, 0) >= 0; }

START_TEST(test_restore_all_files)
{
    char *paths[NFILES];
    for (size_t i = 0; i < NFILES; i++)
        paths[i] = make_stub(files[i]);
    int results[NFILES];
    ck_assert_int_eq(rh_restore_files(store, NFILES, (const char *const *)paths, 0, results), 0);
    for (size_t i = 0; i < NFILES; i++) {
        ck_assert_int_eq(results[i], 0);
        ck_assert_msg(same_content(files[i]), "%s differs", files[i]);
        ck_assert_msg(!has_xattr(paths[i]), "%s still has its reparse point", files[i]);
    }
    struct stat st;
    ck_assert_int_eq(stat(paths[3], &st), 0); /* sparse: 2 GiB, a few hundred KiB of blocks */
    ck_assert_int_eq(st.st_size, 2ll << 30);
    ck_assert_int_lt(st.st_blocks * 512, 4 << 20);
    /* A second call finds no reparse points: nothing to do, nothing changed. */
    ck_assert_int_eq(rh_restore_files(store, NFILES, (const char *const *)paths, 0, results), 0);
    for (size_t i = 0; i < NFILES; i++)
        ck_assert_int_eq(results[i], RH_NOT_A_STUB);
    ck_assert(same_content("big"));
    for (size_t i = 0; i < NFILES; i++)
        free(paths[i]);
}
END_TEST

/* The stream map of file `name` of snapshot s. */
static streammap *file_map(const char *name)
{
    char *cp = store_snapshot_path("s");
    catalog *c;
    ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, name, &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    streammap *m;
    ck_assert_int_eq(reader_load_streammap(store, &e->stream, &m), 0);
    catalog_entry_free(e);
    catalog_close(c);
    free(cp);
    return m;
}

/* Finds the record of the chunk that holds byte `off` of source file `name`. */
static index_loc locate(const char *name, uint64_t off, uint8_t digest[HASH_LEN])
{
    rh_snapshot *sn; /* opens the store's index (store->ix), used below */
    ck_assert_int_eq(rh_snapshot_open(store, "s", &sn), 0);
    rh_snapshot_close(sn);
    streammap *m = file_map(name);
    size_t i = streammap_find(m, off);
    memcpy(digest, m->e[i].digest, HASH_LEN);
    index_loc loc;
    ck_assert_int_eq(index_find_chunk(store->ix, digest, &loc), 0);
    streammap_free(m);
    return loc;
}

/* Rewrites byte 100 of a chunk's stored bytes (random data is stored raw); with fix_checksum the
 * record stays well-formed. In a pack, the chunk's bytes follow the member table and the members
 * before it. */
static void damage(index_loc loc, bool fix_checksum)
{
    char cp[CONTAINER_PATH_MAX];
    container_path(CONTAINER_DATA, loc.container, cp);
    char *p = pathf(storepath, cp);
    int fd = open(p, O_RDWR);
    uint8_t *rec = xmalloc(RECORD_HEADER_SIZE + loc.stored_len);
    ck_assert_int_eq(fs_pread_full(fd, rec, RECORD_HEADER_SIZE + loc.stored_len, loc.offset), 0);
    ck_assert_int_eq(rec[5], 0); /* random data is stored raw */
    ck_assert_uint_gt(loc.raw_len, 100);
    size_t at = RECORD_HEADER_SIZE + 100;
    if (loc.member) {
        ck_assert_uint_eq(rec[4], RECORD_PACK);
        at += (size_t)get_le16(rec + 6) * PACK_ENTRY_SIZE;
        for (unsigned k = 0; k + 1 < loc.member; k++)
            at += get_le32(rec + RECORD_HEADER_SIZE + k * PACK_ENTRY_SIZE + HASH_LEN);
    }
    rec[at] ^= 0x5a;
    if (fix_checksum)
        put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, loc.stored_len));
    ck_assert_int_eq(fs_pwrite_full(fd, rec, RECORD_HEADER_SIZE + loc.stored_len, loc.offset), 0);
    close(fd);
    free(rec);
    free(p);
}

START_TEST(test_corrupt_chunk_fails_only_its_files)
{
    uint8_t d[HASH_LEN];
    damage(locate("repeats", 0, d), false);
    char *paths[NFILES];
    for (size_t i = 0; i < NFILES; i++)
        paths[i] = make_stub(files[i]);
    int results[NFILES];
    ck_assert_int_eq(rh_restore_files(store, NFILES, (const char *const *)paths, 0, results), RH_EPARTIAL);
    for (size_t i = 0; i < NFILES; i++) {
        if (!strcmp(files[i], "repeats")) {
            ck_assert_int_eq(results[i], RH_ECHECKSUM);
            ck_assert(has_xattr(paths[i])); /* still a stub: it can be retried */
        } else {
            ck_assert_int_eq(results[i], 0);
            ck_assert_msg(same_content(files[i]), "%s", files[i]);
        }
    }
    for (size_t i = 0; i < NFILES; i++)
        free(paths[i]);
}
END_TEST

START_TEST(test_verify_flag_checks_digests)
{
    uint8_t d[HASH_LEN];
    damage(locate("big", 0, d), true); /* checksum fixed: only the SHA-256 can tell */
    char *p = make_stub("big");
    int plain;
    /* Without the flag the damage goes unnoticed (the record is well-formed): that is what it is for. */
    ck_assert_int_eq(rh_restore_files(store, 1, (const char *const *)&p, 0, &plain), 0);
    ck_assert(!same_content("big"));
    free(p);
    p = make_stub("big");
    int res;
    ck_assert_int_eq(rh_restore_files(store, 1, (const char *const *)&p, RH_RESTORE_VERIFY, &res), RH_EDIGEST);
    ck_assert_int_eq(res, RH_EDIGEST);
    ck_assert(has_xattr(p));
    free(p);
}
END_TEST

START_TEST(test_missing_container)
{
    uint8_t d[HASH_LEN];
    index_loc loc = locate("big", 5u << 20, d);
    char cp[CONTAINER_PATH_MAX];
    container_path(CONTAINER_DATA, loc.container, cp);
    char *ctr = pathf(storepath, cp), *moved = pathf(dir, "moved.ctr");
    ck_assert_int_eq(rename(ctr, moved), 0);
    rh_store_close(store); /* reopen: the index (now stale) must not be rebuilt for this test */
    ck_assert_int_eq(rh_store_open(storepath, NULL, NULL, &store), 0);
    char *p[2] = { make_stub("big"), make_stub("small") };
    int res[2];
    int r = rh_restore_files(store, 2, (const char *const *)p, 0, res);
    /* The index is rebuilt (the container set changed), so the chunk is unknown, or (if it is still
     * indexed elsewhere) its container is missing: either way big fails and small does not. */
    ck_assert_int_eq(r, RH_EPARTIAL);
    ck_assert(res[0] == RH_ENOCHUNK || res[0] == RH_ENOCONTAINER);
    ck_assert_int_eq(res[1], 0);
    ck_assert(same_content("small"));
    rename(moved, ctr);
    free(ctr), free(moved), free(p[0]), free(p[1]);
}
END_TEST

static int refuse_read(void *ctx, const char *path, uint64_t off, void *buf, size_t size)
{
    (void)ctx, (void)path, (void)off, (void)buf, (void)size;
    return -EIO;
}

/* The header's version macros and the library agree; a table newer than the library is refused. */
START_TEST(test_versions)
{
    ck_assert_uint_eq(rh_version_number(), RH_VERSION_NUMBER);
    ck_assert_str_eq(rh_version(), RH_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", RH_VERSION_MAJOR, RH_VERSION_MINOR, RH_VERSION_PATCH);
    ck_assert_str_eq(rh_version(), want);
    ck_assert_uint_eq(RH_VERSION_NUMBER, RH_VERSION_MAJOR * 10000 + RH_VERSION_MINOR * 100 + RH_VERSION_PATCH);
    rh_store_ops future = { .version = RH_STORE_OPS_VERSION + 1, .read = refuse_read };
    rh_store *s = (rh_store *)&future; /* untouched on failure */
    ck_assert_int_eq(rh_store_open("x", &future, NULL, &s), -EINVAL);
    ck_assert_ptr_eq(s, (rh_store *)&future);
    future.version = 0;
    ck_assert_int_eq(rh_store_open("x", &future, NULL, &s), -EINVAL);
    ck_assert_ptr_null(rh_plan_alloc(0));
    ck_assert_ptr_null(rh_plan_alloc(SIZE_MAX / 2));
    rh_container_extent *plan = rh_plan_alloc(3);
    ck_assert_ptr_nonnull(plan);
    rh_plan_free(plan);
    rh_plan_free(NULL);
}
END_TEST

START_TEST(test_refusals)
{
    char *p = make_stub("small");
    const char **many = xcalloc(RH_RESTORE_MAX_FILES + 1, sizeof(*many));
    for (size_t i = 0; i <= RH_RESTORE_MAX_FILES; i++)
        many[i] = p;
    int untouched[2] = { 12345, 12345 };
    ck_assert_int_eq(rh_restore_files(store, RH_RESTORE_MAX_FILES + 1, many, 0, NULL), -EINVAL);
    ck_assert_int_eq(rh_restore_files(store, 1, many, 0x80, untouched), -EINVAL);
    const char *with_null[2] = { p, NULL };
    ck_assert_int_eq(rh_restore_files(store, 2, with_null, 0, untouched), -EINVAL);
    ck_assert_int_eq(untouched[0], 12345); /* the contract: -EINVAL leaves results alone */
    ck_assert_int_eq(untouched[1], 12345);
    ck_assert(has_xattr(p)); /* nothing was touched */
    /* a plain file is not a stub; a directory neither */
    char *plain = pathf(target, "plain");
    int fd = open(plain, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    int res[3];
    const char *three[3] = { plain, target, p };
    ck_assert_int_eq(rh_restore_files(store, 3, three, 0, res), 0);
    ck_assert_int_eq(res[0], RH_NOT_A_STUB);
    ck_assert_int_eq(res[1], RH_NOT_A_STUB);
    ck_assert_int_eq(res[2], 0);
    /* a stub of another store */
    char *q = make_stub("empty");
    uint8_t raw[REPARSE_SIZE];
    reparse_point rp;
    ck_assert_int_eq(getxattr(q, REPARSE_XATTR, raw, sizeof(raw)), REPARSE_SIZE);
    ck_assert_int_eq(reparse_decode(raw, sizeof(raw), &rp), 0);
    rp.store_id[0] ^= 1;
    reparse_encode(&rp, raw);
    ck_assert_int_eq(setxattr(q, REPARSE_XATTR, raw, sizeof(raw), 0), 0);
    ck_assert_int_eq(rh_restore_files(store, 1, (const char *const *)&q, 0, res), RH_EWRONGSTORE);
    raw[10] ^= 1; /* damaged reparse point */
    ck_assert_int_eq(setxattr(q, REPARSE_XATTR, raw, sizeof(raw), 0), 0);
    ck_assert_int_eq(rh_restore_files(store, 1, (const char *const *)&q, 0, res), RH_ECORRUPT);
    free(many), free(p), free(plain), free(q);
}
END_TEST

START_TEST(test_lazy_reads)
{
    rh_snapshot *sn;
    ck_assert_int_eq(rh_snapshot_open(store, "nope", &sn), RH_ENOSNAPSHOT);
    ck_assert_int_eq(rh_snapshot_open(store, "s", &sn), 0);
    rh_file *f;
    ck_assert_int_eq(rh_file_open(sn, "missing", 0, &f), -ENOENT);
    ck_assert_int_eq(rh_file_open(sn, "", 0, &f), -EISDIR);
    ck_assert_int_eq(rh_file_open(sn, "repeats", RH_RESTORE_VERIFY, &f), 0);
    ck_assert_uint_eq(rh_file_size(f), REP_BLOCK * REP_COUNT);
    uint8_t *buf = xmalloc(1 << 20);
    unsigned long long seed = 77;
    for (int i = 0; i < 300; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t off = (seed >> 13) % (REP_BLOCK * REP_COUNT + 10);
        size_t len = (size_t)((seed >> 41) % (1 << 20)), n;
        ck_assert_int_eq(rh_file_pread(f, buf, len, off, &n), 0);
        size_t want = off >= REP_BLOCK * REP_COUNT ? 0 : MIN(len, REP_BLOCK * REP_COUNT - off);
        ck_assert_uint_eq(n, want);
        ck_assert(memcmp(buf, rep + off, n) == 0);
    }
    rh_file_close(f);
    ck_assert_int_eq(rh_file_open(sn, "sparse", 0, &f), 0);
    size_t n;
    ck_assert_int_eq(rh_file_pread(f, buf, 300000, (1ull << 30) - 50000, &n), 0);
    ck_assert_uint_eq(n, 300000);
    for (int i = 0; i < 50000; i++)
        ck_assert_uint_eq(buf[i], 0);
    ck_assert(memcmp(buf + 50000, big, 200000) == 0);
    rh_file_close(f);
    rh_snapshot_close(sn);
    free(buf);
}
END_TEST

/* A store of format 2 keeps neighbouring chunks in packs: random data in raw ones, text in compressed
 * ones. Lazy reads (with the reader's memo of the last pack) and cached reads give their bytes back, and
 * a cached read of one member keeps the pack's other members too. */
START_TEST(test_packs)
{
    uint8_t d0[HASH_LEN], d1[HASH_LEN];
    index_loc big0 = locate("big", 0, d0), text0 = locate("text", 0, d1);
    ck_assert_uint_gt(big0.member, 0);
    ck_assert_uint_eq(big0.codec, CODEC_RAW);
    ck_assert_uint_gt(text0.member, 0);
    ck_assert_uint_eq(text0.codec, CODEC_ZSTD);
    ck_assert_uint_lt(text0.stored_len, text0.raw_len * 2); /* the whole pack, compressed */

    rh_snapshot *sn;
    rh_file *f;
    ck_assert_int_eq(rh_snapshot_open(store, "s", &sn), 0);
    ck_assert_int_eq(rh_file_open(sn, "text", RH_RESTORE_VERIFY, &f), 0);
    uint8_t *buf = xmalloc(TEXT_SIZE);
    size_t n;
    for (size_t off = 0; off < TEXT_SIZE; off += n) { /* small sequential reads across every pack */
        ck_assert_int_eq(rh_file_pread(f, buf + off, 5000, off, &n), 0);
        ck_assert_uint_gt(n, 0);
    }
    ck_assert(memcmp(buf, text, TEXT_SIZE) == 0);
    rh_file_close(f);
    rh_snapshot_close(sn);

    /* The chunk after text's first one is in the same pack: fetching the first caches the second. */
    streammap *m = file_map("text");
    ck_assert_uint_gt(m->n, 2);
    index_loc l1;
    ck_assert_int_eq(index_find_chunk(store->ix, m->e[1].digest, &l1), 0);
    ck_assert_uint_eq(l1.offset, text0.offset);
    ck_assert_uint_eq(l1.member, text0.member + 1);
    chunk_cache *cc;
    ck_assert_int_eq(chunk_cache_new(store, 8 << 20, true, &cc), 0);
    ck_assert(!chunk_cached(cc, m->e[1].digest));
    ck_assert_int_eq(cache_pread(cc, m, buf, 10, 0, &n, NULL, NULL), 0);
    ck_assert(chunk_cached(cc, m->e[1].digest));
    cache_stats cs;
    chunk_cache_get_stats(cc, &cs);
    ck_assert_uint_eq(cs.misses, 1);
    ck_assert_int_eq(cache_pread(cc, m, buf, TEXT_SIZE, 0, &n, NULL, NULL), 0);
    ck_assert_uint_eq(n, TEXT_SIZE);
    ck_assert(memcmp(buf, text, TEXT_SIZE) == 0);
    chunk_cache_get_stats(cc, &cs);
    ck_assert_uint_lt(cs.misses, m->n); /* fewer fetches than chunks */
    chunk_cache_free(cc);
    streammap_free(m);
    free(buf);
}
END_TEST

/* Bytes of the member table entry of the chunk at loc (a pack member): its raw_len field. */
static void damage_table(index_loc loc)
{
    char cp[CONTAINER_PATH_MAX];
    container_path(CONTAINER_DATA, loc.container, cp);
    char *p = pathf(storepath, cp);
    int fd = open(p, O_RDWR);
    uint8_t b[4];
    uint64_t at = loc.offset + RECORD_HEADER_SIZE + (loc.member - 1u) * PACK_ENTRY_SIZE + HASH_LEN;
    ck_assert_int_eq(fs_pread_full(fd, b, 4, at), 0);
    put_le32(b, get_le32(b) + 1);
    ck_assert_int_eq(fs_pwrite_full(fd, b, 4, at), 0);
    close(fd);
    free(p);
}

/* A damaged member costs only itself in verify's count, and a damaged member table only its pack in a
 * rebuilt index: the other records of the container are still indexed. */
START_TEST(test_pack_damage_is_contained)
{
    verify_report vr;
    ck_assert_int_eq(verify_store(store, &vr, NULL, NULL), 0);
    ck_assert_uint_eq(vr.nproblems, 0);
    uint64_t chunks = vr.chunks;
    verify_report_free(&vr);

    /* The first member of a pack of big (the others follow it), and a pack after it in the same
     * container. */
    uint8_t d[HASH_LEN], d2[HASH_LEN];
    index_loc loc = { 0 }, later = { 0 };
    for (uint64_t off = 0; off + 600000 < BIG_SIZE; off += 16u << 10) {
        loc = locate("big", off, d);
        later = locate("big", off + 600000, d2);
        if (loc.member == 1 && later.member && later.container == loc.container && later.offset > loc.offset)
            break;
    }
    ck_assert_uint_eq(loc.member, 1);
    ck_assert_uint_gt(later.member, 0);
    ck_assert_uint_eq(later.container, loc.container);
    ck_assert_uint_gt(later.offset, loc.offset);
    damage(loc, true); /* a well-formed record whose member's bytes are wrong */
    ck_assert_int_eq(verify_store(store, &vr, NULL, NULL), 0);
    ck_assert_uint_eq(vr.nproblems, 1);
    ck_assert_uint_eq(vr.chunks, chunks - 1);
    verify_report_free(&vr);

    /* The earlier pack's table damaged too: reindex skips that pack alone, the later one is indexed. */
    damage_table(loc);
    char *ix = store_index_path(store);
    uint64_t n;
    ck_assert_int_eq(store_reindex(store, ix, &n, NULL), 0);
    free(ix);
    /* The rebuild is a new file renamed over the old one: a handle opened before still reads the old. */
    index_close(store->ix);
    store->ix = NULL;
    index_t *h;
    ck_assert_int_eq(store_shared_index(store, &h), 0);
    index_loc got;
    ck_assert_int_eq(index_find_chunk(store->ix, d, &got), RH_ENOCHUNK);
    ck_assert_int_eq(index_find_chunk(store->ix, d2, &got), 0);
    ck_assert_uint_eq(got.offset, later.offset);
    ck_assert_uint_lt(n, chunks);
}
END_TEST

/* The cache hands out a chunk only at the length its reader expects: a damaged stream map or member
 * table that disagrees gets an error, never a read past the chunk. */
START_TEST(test_cache_checks_lengths)
{
    uint8_t d[HASH_LEN];
    index_loc loc = locate("big", 0, d);
    chunk_cache *cc;
    ck_assert_int_eq(chunk_cache_new(store, 8 << 20, false, &cc), 0);
    chunk_ref *ref;
    ck_assert_int_eq(chunk_get(cc, d, loc.raw_len, &ref, NULL), 0);
    chunk_release(cc, ref);
    ck_assert_int_eq(chunk_get(cc, d, loc.raw_len + 1, &ref, NULL), RH_ECORRUPT);
    ck_assert_ptr_null(chunk_peek(cc, d, loc.raw_len + 1));
    ref = chunk_peek(cc, d, loc.raw_len);
    ck_assert_ptr_nonnull(ref);
    chunk_release(cc, ref);
    chunk_cache_free(cc);
}
END_TEST

/* The daemon's zero-copy reads (cache_pread_iov) give the same bytes as cache_pread, holes included.
 * The cache is smaller than a read, so the pieces stay valid only through the references they hold. */
START_TEST(test_cache_iov_matches_pread)
{
    chunk_cache *cc;
    ck_assert_int_eq(chunk_cache_new(store, 256 << 10, false, &cc), 0);
    uint8_t *want = xmalloc(1 << 20), *got = xmalloc(1 << 20);
    unsigned long long seed = 99;
    for (int fi = 0; fi < 2; fi++) {
        streammap *m = file_map(fi ? "sparse" : "repeats");
        for (int i = 0; i < 200; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t off = (seed >> 13) % (m->size + 10);
            if (fi && i % 2) /* around the end of the sparse file's hole */
                off = (1ull << 30) - 50000 + (seed >> 50) % 100000;
            size_t len = (size_t)((seed >> 41) % (1 << 20)), n;
            ck_assert_int_eq(cache_pread(cc, m, want, len, off, &n, NULL, NULL), 0);
            cache_iov v;
            ck_assert_int_eq(cache_pread_iov(cc, m, off, len, &v, NULL, NULL), 0);
            ck_assert_uint_eq(v.bytes, n);
            size_t at = 0;
            for (size_t k = 0; k < v.n; at += v.iov[k++].iov_len)
                memcpy(got + at, v.iov[k].iov_base, v.iov[k].iov_len);
            ck_assert_uint_eq(at, n);
            ck_assert(memcmp(got, want, n) == 0);
            cache_iov_release(cc, &v);
        }
        streammap_free(m);
    }
    free(want), free(got);
    chunk_cache_free(cc);
}
END_TEST

/* Reads all of a file through the cache, chunk by chunk from chunk `first` on and round to it, after
 * every other reader is ready. */
typedef struct racer {
    chunk_cache *cc;
    const streammap *m;
    const uint8_t *want;
    size_t first;
    pthread_barrier_t *go;
    bool same;
} racer;

static void *race_read(void *p)
{
    racer *r = p;
    const streammap *m = r->m;
    uint8_t *buf = xmalloc(m->size);
    pthread_barrier_wait(r->go);
    size_t n = 0;
    r->same = true;
    for (size_t k = 0; k < m->n && r->same; k++) {
        size_t i = (r->first + k) % m->n;
        r->same = cache_pread(r->cc, m, buf + m->start[i], m->e[i].length, m->start[i], &n, NULL, NULL) == 0 &&
                  n == m->e[i].length;
    }
    r->same = r->same && memcmp(buf, r->want, m->size) == 0;
    free(buf);
    return NULL;
}

/* Eight readers of one file at once, through one cache that holds it all: every record is read and
 * decoded once. Readers that miss a chunk another is fetching (all start at the first chunk), or a chunk
 * of a pack another is decoding (each starts at another chunk), wait for that fetch (cache.c, flights)
 * instead of decoding the same bytes again. */
START_TEST(test_cache_fetches_each_record_once)
{
    enum { READERS = 8 };
    for (int run = 0; run < 10; run++) { /* spread: the race is likelier than certain, so run it often */
        int fi = run % 2;
        bool spread = run >= 2;
        const char *name = fi ? "big" : "text";
        streammap *m = file_map(name);
        /* the records the file's chunks are in: packs count once */
        rh_snapshot *sn; /* opens the store's index (store->ix) */
        ck_assert_int_eq(rh_snapshot_open(store, "s", &sn), 0);
        rh_snapshot_close(sn);
        size_t records = 0;
        index_loc *seen = xcalloc(m->n, sizeof(*seen));
        for (size_t i = 0; i < m->n; i++) {
            index_loc loc;
            ck_assert_int_eq(index_find_chunk(store->ix, m->e[i].digest, &loc), 0);
            bool dup = false;
            for (size_t k = 0; k < records && !dup; k++)
                dup = seen[k].container == loc.container && seen[k].offset == loc.offset;
            if (!dup)
                seen[records++] = loc;
        }
        free(seen);
        ck_assert_uint_lt(records, m->n); /* some chunks share a pack */

        chunk_cache *cc;
        ck_assert_int_eq(chunk_cache_new(store, 64 << 20, true, &cc), 0);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, READERS);
        racer r[READERS];
        pthread_t t[READERS];
        for (int i = 0; i < READERS; i++) {
            r[i] = (racer){ .cc = cc, .m = m, .want = fi ? big : text, .first = spread ? (size_t)i % m->n : 0,
                            .go = &go };
            ck_assert_int_eq(pthread_create(&t[i], NULL, race_read, &r[i]), 0);
        }
        for (int i = 0; i < READERS; i++) {
            pthread_join(t[i], NULL);
            ck_assert_msg(r[i].same, "%s: reader %d read other bytes", name, i);
        }
        pthread_barrier_destroy(&go);
        cache_stats cs;
        chunk_cache_get_stats(cc, &cs);
        ck_assert_uint_eq(cs.evictions, 0);
        ck_assert_msg(cs.fetches == records, "%s%s: %llu fetches for %zu records (%llu waits)", name,
                      spread ? ", spread" : "", (unsigned long long)cs.fetches, records,
                      (unsigned long long)cs.waits);
        chunk_cache_free(cc);
        streammap_free(m);
    }
}
END_TEST

/* ---- the format seam: stream maps that say where their chunks are ---- */

/* Where every chunk of the test files is, read from the index before the test empties it: what a
 * format whose stream maps carry locations (Windows dedup) would find in the maps themselves. */
static struct {
    uint8_t digest[HASH_LEN];
    index_loc loc;
} known[4096];
static size_t nknown;

static int located_decode(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret)
{
    (void)s;
    if (start != 0)
        return RH_ECORRUPT;
    streammap *m;
    int r = streammap_decode(raw, len, &m);
    if (r < 0)
        return r;
    m->loc = xcalloc(m->n ? m->n : 1, sizeof(*m->loc));
    for (size_t i = 0; i < m->n; i++) {
        size_t k = 0;
        while (!m->e[i].hole && k < nknown && memcmp(known[k].digest, m->e[i].digest, HASH_LEN) != 0)
            k++;
        if (m->e[i].hole)
            continue;
        if (k == nknown) {
            streammap_free(m);
            return RH_ENOCHUNK;
        }
        m->loc[i] = known[k].loc;
    }
    *ret = m;
    return 0;
}

static void learn_locations(const char *name)
{
    streammap *m = file_map(name);
    for (size_t i = 0; i < m->n; i++) {
        if (m->e[i].hole)
            continue;
        ck_assert_uint_lt(nknown, sizeof(known) / sizeof(*known));
        memcpy(known[nknown].digest, m->e[i].digest, HASH_LEN);
        ck_assert_int_eq(index_find_chunk(store->ix, m->e[i].digest, &known[nknown].loc), 0);
        nknown++;
    }
    streammap_free(m);
}

static int64_t index_rows(void)
{
    char *p = pathf(storepath, STORE_INDEX_FILE);
    sqlite3 *db;
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(p);
    return n;
}

/*
 * With a format whose stream maps carry chunk locations (its store_format's decode_streammap), the lazy reads, the
 * daemon's cache and the restore engine read every chunk where the map says and never ask the index:
 * the test empties the index's chunk table, so any lookup would fail (and a repair would refill it).
 * A wrong location in a map fails that file alone, which shows the location is the one used.
 */
START_TEST(test_locations_from_stream_maps)
{
    rh_snapshot *sn;
    ck_assert_int_eq(rh_snapshot_open(store, "s", &sn), 0); /* opens store->ix */
    const char *names[] = { "big", "repeats", "sparse", "text" };
    nknown = 0;
    for (size_t i = 0; i < 4; i++)
        learn_locations(names[i]);
    index_close(store->ix);
    store->ix = NULL;
    char *p = pathf(storepath, STORE_INDEX_FILE);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "DELETE FROM chunks", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    free(p);
    ck_assert_int_eq(index_rows(), 0);
    unsigned gen = store_index_gen(store);
    store_format located = store_format_ours;
    located.decode_streammap = located_decode;
    store->fmt = &located;

    /* Lazy reads (rh_file, reader.c). */
    rh_file *f;
    uint8_t *buf = xmalloc(REP_BLOCK * REP_COUNT);
    size_t n;
    ck_assert_int_eq(rh_file_open(sn, "repeats", RH_RESTORE_VERIFY, &f), 0);
    ck_assert_int_eq(rh_file_pread(f, buf, REP_BLOCK * REP_COUNT, 0, &n), 0);
    ck_assert_uint_eq(n, REP_BLOCK * REP_COUNT);
    ck_assert(memcmp(buf, rep, n) == 0);
    rh_file_close(f);
    ck_assert_uint_eq(store_index_gen(store), gen); /* no repair refilled the index */
    ck_assert_int_eq(index_rows(), 0);

    /* The daemon's cache, by copy and by reference. */
    chunk_cache *cc;
    ck_assert_int_eq(chunk_cache_new(store, 1 << 20, true, &cc), 0);
    streammap *m;
    {
        char *cp = store_snapshot_path("s");
        catalog *c;
        ck_assert_int_eq(catalog_open(store->ops, store->ctx, cp, &c), 0);
        uint64_t idx;
        ck_assert_int_eq(catalog_lookup_path(c, "sparse", &idx), 0);
        catalog_entry *e;
        ck_assert_int_eq(catalog_get(c, idx, &e), 0);
        ck_assert_int_eq(reader_load_file_map(store, e, &m), 0);
        catalog_entry_free(e);
        catalog_close(c);
        free(cp);
    }
    ck_assert_ptr_nonnull(m->loc);
    ck_assert_int_eq(cache_pread(cc, m, buf, 300000, (1ull << 30) - 50000, &n, NULL, NULL), 0);
    ck_assert_uint_eq(n, 300000);
    ck_assert(memcmp(buf + 50000, big, 200000) == 0);
    cache_iov v;
    ck_assert_int_eq(cache_pread_iov(cc, m, 1ull << 30, 200000, &v, NULL, NULL), 0);
    size_t at = 0;
    for (size_t k = 0; k < v.n; at += v.iov[k++].iov_len)
        ck_assert(memcmp(big + at, v.iov[k].iov_base, v.iov[k].iov_len) == 0);
    ck_assert_uint_eq(at, 200000);
    cache_iov_release(cc, &v);
    streammap_free(m);
    chunk_cache_free(cc);
    ck_assert_uint_eq(store_index_gen(store), gen);
    ck_assert_int_eq(index_rows(), 0);

    /* The restore engine; text's first chunk is sent to another chunk's record (the first entry of
     * the table with that digest is the one located_decode uses). */
    streammap *tm = file_map("text");
    size_t j = 0, k = 0;
    while (j < nknown && memcmp(known[j].digest, tm->e[0].digest, HASH_LEN) != 0)
        j++;
    while (k < nknown && memcmp(known[k].digest, tm->e[0].digest, HASH_LEN) == 0)
        k++;
    ck_assert_uint_lt(j, nknown);
    ck_assert_uint_lt(k, nknown);
    known[j].loc = known[k].loc;
    streammap_free(tm);
    char *paths[4];
    int results[4];
    for (size_t i = 0; i < 4; i++)
        paths[i] = make_stub(names[i]);
    ck_assert_int_eq(rh_restore_files(store, 4, (const char *const *)paths, RH_RESTORE_VERIFY, results),
                     RH_EPARTIAL);
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(names[i], "text") == 0) {
            ck_assert_int_lt(results[i], 0);
        } else {
            ck_assert_msg(results[i] == 0, "%s: %s", names[i], rh_strerror(results[i]));
            ck_assert_msg(same_content(names[i]), "%s differs", names[i]);
        }
        free(paths[i]);
    }
    /* Nobody asked the index: no repair, no rebuild. */
    ck_assert_uint_eq(store_index_gen(store), gen);
    ck_assert_int_eq(index_rows(), 0);
    store->fmt = &store_format_ours; /* `located` goes out of scope */
    rh_snapshot_close(sn);
    free(buf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("restore");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_restore_all_files);
    tcase_add_test(tc, test_corrupt_chunk_fails_only_its_files);
    tcase_add_test(tc, test_verify_flag_checks_digests);
    tcase_add_test(tc, test_missing_container);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_versions);
    tcase_add_test(tc, test_lazy_reads);
    tcase_add_test(tc, test_cache_iov_matches_pread);
    tcase_add_test(tc, test_packs);
    tcase_add_test(tc, test_pack_damage_is_contained);
    tcase_add_test(tc, test_cache_checks_lengths);
    tcase_add_test(tc, test_cache_fetches_each_record_once);
    tcase_add_test(tc, test_locations_from_stream_maps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

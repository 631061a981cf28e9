/*
 * check_container.c — containers (writer, header, footer, records, torn-tail scan) and stream maps
 * (encoding, decoding, lookup).
 *
 * Containers are written into a fresh directory and read back through a small rh_store_ops that
 * preads files of that directory, failing short reads with -EIO as the callback contract says. Torn
 * tails are made by copying container bytes into new files cut at chosen offsets; an unsealed image is
 * a sealed container cut before its footer with the header's footer_offset set back to 0 (the header
 * checksum is recomputed here from the documented layout, which checks that layout too).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "read/cache.h"
#include "store/container.h"
#include "store/streammap.h"
#include "testutil.h"

/* ---- a local directory behind rh_store_ops ---- */

typedef struct dir_ctx {
    int dirfd;
    unsigned reads, failed;
} dir_ctx;

static int dir_read(void *ctx, const char *path, uint64_t offset, void *out, size_t size)
{
    dir_ctx *d = ctx;
    d->reads++;
    int fd = openat(d->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        d->failed++;
        return -errno;
    }
    int r = fs_pread_full(fd, out, size, offset); /* -EIO on a short read */
    close(fd);
    if (r < 0)
        d->failed++;
    return r;
}

static const rh_store_ops dir_ops = { .version = RH_STORE_OPS_VERSION, .read = dir_read };

/* ---- fixture: a temp directory ---- */

static char *tmpdir;
static dir_ctx dctx;
static const uint8_t test_uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void setup(void)
{
    tmpdir = test_mkdtemp();
    dctx = (dir_ctx){ .dirfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
    ck_assert_int_ge(dctx.dirfd, 0);
}

static void teardown(void)
{
    close(dctx.dirfd);
    test_rmtree(tmpdir);
    free(tmpdir);
}

static size_t count_files(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* The name of the one temp file of container `id`, malloc'd. */
static char *find_temp(uint32_t id)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%08x.ctr.tmp.", (unsigned)id);
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    char *found = NULL;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            ck_assert_ptr_null(found);
            found = xstrdup(de->d_name);
        }
    closedir(d);
    ck_assert_ptr_nonnull(found);
    return found;
}

static void write_file(const char *name, const void *data, size_t len)
{
    ck_assert_int_eq(fs_write_atomic(dctx.dirfd, name, data, len, 1), 0);
}

static uint8_t *read_file(const char *name, size_t *ret_len)
{
    uint8_t *data;
    ck_assert_int_eq(fs_read_file(dctx.dirfd, name, &data, ret_len), 0);
    return data;
}

/* ---- a container of random records, remembered for comparison ---- */

typedef struct written {
    container_record *recs;
    uint8_t **payloads;
    size_t n;
    uint64_t size; /* container_writer_size before sealing: where the footer starts */
} written;

static void written_free(written *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->payloads[i]);
    free(w->payloads);
    free(w->recs);
}

/* Record i's stored length: mostly small, with `big` forcing a few past the 4 MiB write buffer. */
static uint32_t pick_len(size_t i, uint32_t max, bool big)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;
    uint32_t len = (uint32_t)((x >> 33) % (max + 1));
    if (big && i % 37 == 5)
        len = (5u << 20) + (uint32_t)i;
    return len;
}

/* Appends n records to w (codecs alternating, digests of the payloads) and remembers them. */
static void append_records(container_writer *cw, uint8_t type, size_t n, uint32_t max, bool big,
                           written *out)
{
    *out = (written){ .recs = xcalloc(n, sizeof(container_record)), .payloads = xcalloc(n, sizeof(void *)),
                      .n = n };
    for (size_t i = 0; i < n; i++) {
        container_record *e = &out->recs[i];
        e->type = type;
        e->codec = i % 2 ? CODEC_ZSTD : CODEC_RAW;
        e->stored_len = pick_len(i, max, big);
        e->raw_len = e->stored_len;
        out->payloads[i] = xmalloc(e->stored_len);
        test_fill_random(out->payloads[i], e->stored_len, 1000 + i);
        if (e->codec == CODEC_ZSTD) {
            /* A real frame, as readers check that raw_len is within what the frame can decode to:
             * the random bytes, then as many zeros, compressed. */
            e->raw_len = e->stored_len * 2;
            uint8_t *raw = xcalloc(1, e->raw_len + 1);
            memcpy(raw, out->payloads[i], e->stored_len);
            size_t cap = compress_bound(e->raw_len), zlen;
            uint8_t codec;
            out->payloads[i] = xrealloc(out->payloads[i], cap);
            ck_assert_int_eq(compress_chunk(1, raw, e->raw_len, out->payloads[i], cap, &codec, &zlen), 0);
            if (codec == CODEC_RAW) { /* too small to gain (0 bytes): store it raw */
                memcpy(out->payloads[i], raw, e->raw_len);
                e->codec = CODEC_RAW;
                zlen = e->raw_len;
            }
            free(raw);
            e->stored_len = (uint32_t)zlen;
        }
        xhash_sha256(out->payloads[i], e->stored_len, e->digest);
        uint64_t before = container_writer_size(cw);
        ck_assert_int_eq(container_writer_append(cw, e->type, e->codec, e->digest, out->payloads[i],
                                                 e->stored_len, e->raw_len, &e->offset),
                         0);
        ck_assert_uint_eq(e->offset, before);
        ck_assert_uint_eq(container_writer_size(cw), before + RECORD_HEADER_SIZE + e->stored_len);
        ck_assert_uint_eq(container_writer_records(cw), i + 1);
    }
    out->size = container_writer_size(cw);
}

static void write_sealed(uint32_t id, size_t n, uint32_t max, bool big, written *out)
{
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, id, test_uuid, &cw), 0);
    ck_assert_uint_eq(container_writer_id(cw), id);
    ck_assert_uint_eq(container_writer_size(cw), CONTAINER_HEADER_SIZE);
    append_records(cw, RECORD_CHUNK, n, max, big, out);
    ck_assert_int_eq(container_writer_seal(cw), 0);
}

/* Where a record ends: its header, then its payload. */
static uint64_t rec_end(const container_record *e) { return e->offset + RECORD_HEADER_SIZE + e->stored_len; }

static void assert_record_eq(const container_record *a, const container_record *b)
{
    ck_assert_uint_eq(a->offset, b->offset);
    ck_assert_uint_eq(a->type, b->type);
    ck_assert_uint_eq(a->codec, b->codec);
    ck_assert_uint_eq(a->stored_len, b->stored_len);
    ck_assert_uint_eq(a->members, b->members);
    ck_assert_uint_eq(a->raw_len, b->raw_len);
    ck_assert_mem_eq(a->digest, b->digest, HASH_LEN);
}

/* Reads every record with container_read_record and compares header fields and payloads. */
static void check_records(const char *path, const written *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const container_record *e = &w->recs[i];
        uint8_t *b = xmalloc(RECORD_HEADER_SIZE + e->stored_len);
        container_record got;
        const uint8_t *payload;
        ck_assert_int_eq(container_read_record(&dir_ops, &dctx, path, e->offset, e->stored_len, b, &got,
                                               &payload),
                         0);
        assert_record_eq(&got, e);
        ck_assert_ptr_eq(payload, b + RECORD_HEADER_SIZE);
        ck_assert_mem_eq(payload, w->payloads[i], e->stored_len);
        free(b);
    }
}

/* Rewrites the header of an image with another footer_offset and a fresh checksum (doc/format.md). */
static void patch_footer_offset(uint8_t *img, uint64_t footer_offset)
{
    put_le64(img + 40, footer_offset);
    put_le64(img + 56, hash_checksum(img, 56, NULL, 0));
}

/* ---- container tests ---- */

START_TEST(test_paths)
{
    char p[CONTAINER_PATH_MAX];
    ck_assert_str_eq(container_path(CONTAINER_DATA, 0x2a, p), "containers/data/0000002a.ctr");
    ck_assert_str_eq(container_path(CONTAINER_STREAM, 0xffffffffu, p), "containers/stream/ffffffff.ctr");
    ck_assert_str_eq(container_dir(CONTAINER_DATA), "containers/data");
    ck_assert_str_eq(container_dir(CONTAINER_STREAM), "containers/stream");
    ck_assert_ptr_null(container_dir(7));
    ck_assert_ptr_null(container_path(0, 1, p));
}
END_TEST

START_TEST(test_write_read_footer)
{
    written w;
    write_sealed(0x2a, 120, 70000, true, &w);
    ck_assert_uint_eq(count_files(), 1); /* the temp file became 0000002a.ctr */

    container_header h;
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "0000002a.ctr", &h), 0);
    ck_assert_uint_eq(h.version, 1);
    ck_assert_uint_eq(h.kind, CONTAINER_DATA);
    ck_assert_uint_eq(h.id, 0x2a);
    ck_assert_mem_eq(h.uuid, test_uuid, 16);
    ck_assert_uint_eq(h.footer_offset, w.size);
    ck_assert_uint_gt(h.created_ns, 0);

    container_record *recs;
    size_t n;
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "0000002a.ctr", &h, &recs, &n), 0);
    ck_assert_uint_eq(n, w.n);
    for (size_t i = 0; i < n; i++)
        assert_record_eq(&recs[i], &w.recs[i]);
    free(recs);

    /* The file ends right after the footer: magic, count, reserved, entries, checksum. */
    size_t len;
    uint8_t *img = read_file("0000002a.ctr", &len);
    ck_assert_uint_eq(len, w.size + 16 + 52 * w.n + 8);
    ck_assert_mem_eq(img + w.size, "RHYDFOOT", 8);
    ck_assert_uint_eq(get_le32(img + w.size + 8), w.n);
    free(img);

    check_records("0000002a.ctr", &w, w.n);
    written_free(&w);
}
END_TEST

START_TEST(test_scan_sealed_equals_footer)
{
    written w;
    write_sealed(7, 200, 40000, true, &w);
    container_header h;
    container_record *foot, *scan;
    size_t nf, ns;
    uint64_t end;
    int bad = 12345;
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "00000007.ctr", &h), 0);
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "00000007.ctr", &h, &foot, &nf), 0);
    dctx.failed = 0;
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "00000007.ctr", &scan, &ns, &end, &bad), 0);
    ck_assert_uint_eq(ns, nf);
    for (size_t i = 0; i < ns; i++)
        assert_record_eq(&scan[i], &foot[i]);
    ck_assert_uint_eq(end, h.footer_offset);
    ck_assert_int_eq(bad, 0);
    /* A sealed container is scanned up to its footer without probing for the end of the file. */
    ck_assert_uint_eq(dctx.failed, 0);
    free(foot);
    free(scan);
    written_free(&w);
}
END_TEST

START_TEST(test_empty_container)
{
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_STREAM, 3, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_seal(cw), 0);
    container_header h;
    container_record *recs;
    size_t n = 99;
    uint64_t end;
    int bad = 1;
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "00000003.ctr", &h), 0);
    ck_assert_uint_eq(h.kind, CONTAINER_STREAM);
    ck_assert_uint_eq(h.footer_offset, CONTAINER_HEADER_SIZE);
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "00000003.ctr", &h, &recs, &n), 0);
    ck_assert_uint_eq(n, 0);
    free(recs);
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "00000003.ctr", &recs, &n, &end, &bad), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(end, CONTAINER_HEADER_SIZE);
    ck_assert_int_eq(bad, 0);
    free(recs);
}
END_TEST

/* A real crash: the temp file holds the header and whatever the 4 MiB buffer flushed. */
START_TEST(test_scan_temp_file)
{
    container_writer *cw;
    written w;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_STREAM, 9, test_uuid, &cw), 0);
    append_records(cw, RECORD_STREAM, 150, 90000, false, &w);
    char *tmp = find_temp(9);
    size_t len;
    uint8_t *img = read_file(tmp, &len);
    ck_assert_uint_gt(len, 3u << 20); /* at least one flush happened */
    ck_assert_uint_lt(len, w.size);   /* and some records are still buffered */
    write_file("crashed.ctr", img, len);
    container_writer_abort(cw);
    ck_assert_int_eq(faccessat(dctx.dirfd, tmp, F_OK, 0), -1); /* abort removed the temp file */

    container_record *recs;
    size_t n;
    uint64_t end;
    int bad;
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "crashed.ctr", &recs, &n, &end, &bad), 0);
    size_t complete = 0;
    while (complete < w.n && rec_end(&w.recs[complete]) <= len)
        complete++;
    ck_assert_uint_gt(complete, 0);
    ck_assert_uint_eq(n, complete);
    for (size_t i = 0; i < n; i++)
        assert_record_eq(&recs[i], &w.recs[i]);
    ck_assert_uint_eq(end, complete < w.n ? w.recs[complete].offset : w.size);
    ck_assert_int_eq(bad, end == len ? 0 : RH_ECORRUPT);
    check_records("crashed.ctr", &w, n);
    free(recs);
    free(img);
    free(tmp);
    written_free(&w);
}
END_TEST

/* Scans an image cut at `cut` (header's footer_offset reset to 0) and checks the torn-tail rule. */
static void check_cut(const uint8_t *img, size_t cut, const written *w)
{
    write_file("torn.ctr", img, cut);
    container_record *recs;
    size_t n;
    uint64_t end;
    int bad;
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "torn.ctr", &recs, &n, &end, &bad), 0);
    size_t complete = 0;
    uint64_t want_end = CONTAINER_HEADER_SIZE;
    while (complete < w->n && rec_end(&w->recs[complete]) <= cut)
        want_end = rec_end(&w->recs[complete++]);
    ck_assert_msg(n == complete, "cut %zu: %zu records, expected %zu", cut, n, complete);
    for (size_t i = 0; i < n; i++)
        assert_record_eq(&recs[i], &w->recs[i]);
    ck_assert_uint_eq(end, want_end);
    ck_assert_int_eq(bad, want_end == cut || cut >= w->size ? 0 : RH_ECORRUPT);
    free(recs);
}

START_TEST(test_scan_torn_tail)
{
    written w;
    write_sealed(1, 40, 3000, false, &w);
    size_t len;
    uint8_t *img = read_file("00000001.ctr", &len);
    patch_footer_offset(img, 0);

    for (size_t i = 0; i < w.n; i++) {
        uint64_t o = w.recs[i].offset, e = rec_end(&w.recs[i]);
        uint64_t cuts[] = { o, o + 1, o + 7, o + RECORD_HEADER_SIZE - 1, o + RECORD_HEADER_SIZE,
                            o + RECORD_HEADER_SIZE + 1, (o + e) / 2, e - 1 };
        for (size_t k = 0; k < ARRAY_SIZE(cuts); k++)
            if (cuts[k] >= o && cuts[k] <= e)
                check_cut(img, cuts[k], &w);
    }
    /* All records, then nothing; then all records followed by a complete or torn footer (a seal
     * interrupted before the header was patched): every record, and no error. */
    check_cut(img, w.size, &w);
    check_cut(img, w.size + 8, &w);
    check_cut(img, len, &w);
    free(img);
    written_free(&w);
}
END_TEST

/* The same over several 1 MiB scan blocks, with records straddling their boundaries. */
START_TEST(test_scan_torn_tail_large)
{
    written w;
    write_sealed(2, 120, 70000, true, &w);
    size_t len;
    uint8_t *img = read_file("00000002.ctr", &len);
    patch_footer_offset(img, 0);
    check_cut(img, w.size, &w);
    for (size_t i = 10; i < w.n; i += 17) {
        uint64_t o = w.recs[i].offset;
        check_cut(img, o + RECORD_HEADER_SIZE + w.recs[i].stored_len / 2, &w);
        check_cut(img, o + 30, &w);
    }
    /* A sealed container cut short: the scan stops at the cut and reports it. */
    uint8_t *sealed = read_file("00000002.ctr", &len);
    write_file("short.ctr", sealed, w.recs[50].offset);
    container_record *recs;
    size_t n;
    uint64_t end;
    int bad;
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "short.ctr", &recs, &n, &end, &bad), 0);
    ck_assert_uint_eq(n, 50);
    ck_assert_uint_eq(end, w.recs[50].offset);
    ck_assert_int_eq(bad, RH_ECORRUPT);
    free(recs);
    free(sealed);
    free(img);
    written_free(&w);
}
END_TEST

START_TEST(test_flipped_payload_byte)
{
    written w;
    write_sealed(4, 30, 5000, false, &w);
    size_t len;
    uint8_t *img = read_file("00000004.ctr", &len);
    size_t k = 11;
    while (w.recs[k].stored_len == 0)
        k++;
    img[w.recs[k].offset + RECORD_HEADER_SIZE + w.recs[k].stored_len / 2] ^= 0x10;
    write_file("00000004.ctr", img, len);

    uint8_t *b = xmalloc(RECORD_HEADER_SIZE + w.recs[k].stored_len);
    container_record got;
    const uint8_t *payload;
    ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "00000004.ctr", w.recs[k].offset,
                                           w.recs[k].stored_len, b, &got, &payload),
                     RH_ECHECKSUM);
    free(b);
    check_records("00000004.ctr", &w, k); /* the records before it are intact */

    container_record *recs;
    size_t n;
    uint64_t end;
    int bad;
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "00000004.ctr", &recs, &n, &end, &bad), 0);
    ck_assert_uint_eq(n, k);
    ck_assert_uint_eq(end, w.recs[k].offset);
    ck_assert_int_eq(bad, RH_ECHECKSUM);
    free(recs);
    free(img);
    written_free(&w);
}
END_TEST

START_TEST(test_flipped_header_bytes)
{
    written w;
    write_sealed(5, 10, 2000, false, &w);
    size_t len;
    uint8_t *img = read_file("00000005.ctr", &len);
    container_header h;
    container_record *recs;
    size_t n;
    uint64_t end;

    /* Every byte of the container header is covered: magic or checksum. */
    for (size_t i = 0; i < CONTAINER_HEADER_SIZE; i++) {
        if (i >= 8 && i < 12)
            continue; /* the version, below */
        img[i] ^= 0x01;
        write_file("bad.ctr", img, len);
        ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "bad.ctr", &h), RH_ECORRUPT);
        ck_assert_int_eq(container_scan(&dir_ops, &dctx, "bad.ctr", &recs, &n, &end, NULL), RH_ECORRUPT);
        img[i] ^= 0x01;
    }
    img[8] = 2;
    write_file("bad.ctr", img, len);
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "bad.ctr", &h), RH_EVERSION);
    img[8] = 1;

    /* A record's magic, and a record header field (covered by the record checksum). */
    uint64_t o = w.recs[3].offset;
    uint8_t *b = xmalloc(RECORD_HEADER_SIZE + w.recs[3].stored_len);
    const uint8_t *payload;
    container_record got;
    img[o] ^= 0x01;
    write_file("bad.ctr", img, len);
    ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "bad.ctr", o, w.recs[3].stored_len, b, &got,
                                           &payload),
                     RH_ECORRUPT);
    img[o] ^= 0x01;
    img[o + 20] ^= 0x01; /* inside the digest */
    write_file("bad.ctr", img, len);
    ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "bad.ctr", o, w.recs[3].stored_len, b, &got,
                                           &payload),
                     RH_ECHECKSUM);
    img[o + 20] ^= 0x01;
    free(b);

    /* A footer byte (the checksum covers it), and a footer whose header was not sealed. */
    img[w.size + 16 + 52 + 3] ^= 0x01;
    write_file("bad.ctr", img, len);
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "bad.ctr", &h), 0);
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "bad.ctr", &h, &recs, &n), RH_ECORRUPT);
    img[w.size + 16 + 52 + 3] ^= 0x01;
    h.footer_offset = 0;
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "bad.ctr", &h, &recs, &n), RH_ECORRUPT);
    /* A footer cut short. */
    write_file("bad.ctr", img, len - 1);
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "bad.ctr", &h), 0);
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "bad.ctr", &h, &recs, &n), RH_ECORRUPT);
    free(img);
    written_free(&w);
}
END_TEST

START_TEST(test_parse_record)
{
    uint8_t payload[100], digest[HASH_LEN], rec[RECORD_HEADER_SIZE + sizeof(payload)];
    test_fill_random(payload, sizeof(payload), 5);
    xhash_sha256(payload, sizeof(payload), digest);
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, 6, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, CODEC_RAW, digest, payload, 100, 100, NULL),
                     0);
    ck_assert_int_eq(container_writer_seal(cw), 0);
    ck_assert_int_eq(dir_read(&dctx, "00000006.ctr", CONTAINER_HEADER_SIZE, rec, sizeof(rec)), 0);

    container_record r;
    const uint8_t *p;
    ck_assert_int_eq(container_parse_record(rec, sizeof(rec), 777, &r, &p), 0);
    ck_assert_uint_eq(r.offset, 777);
    ck_assert_uint_eq(r.stored_len, 100);
    ck_assert_mem_eq(p, payload, 100);
    ck_assert_mem_eq(r.digest, digest, HASH_LEN);
    ck_assert_mem_eq(rec, "RREC", 4);
    ck_assert_uint_eq(get_le64(rec + 48), hash_checksum(rec, 48, payload, 100));
    ck_assert_int_eq(container_parse_record(rec, sizeof(rec) - 1, 0, &r, &p), RH_ECORRUPT);
    ck_assert_int_eq(container_parse_record(rec, 10, 0, &r, &p), RH_ECORRUPT);
    rec[5] = 9; /* unknown codec */
    ck_assert_int_eq(container_parse_record(rec, sizeof(rec), 0, &r, &p), RH_ECORRUPT);

    /* The caller's idea of the length must match the record's; a missing container is -ENOENT. */
    uint8_t b[RECORD_HEADER_SIZE + 200];
    ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "00000006.ctr", CONTAINER_HEADER_SIZE, 99, b,
                                           &r, &p),
                     RH_ECORRUPT);
    ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "nope.ctr", CONTAINER_HEADER_SIZE, 100, b, &r,
                                           &p),
                     -ENOENT);
    container_header h;
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "nope.ctr", &h), -ENOENT);
}
END_TEST

START_TEST(test_parse_record_raw_len_bound)
{
    /* A compressed record whose raw_len claims more than its frames can decode to is refused by the
     * parser, before any reader sizes a buffer by it; the honest record still parses. */
    uint8_t plain[4096], rec[RECORD_HEADER_SIZE + 4096 + 64];
    memset(plain, 'a', sizeof(plain));
    uint8_t codec;
    size_t n;
    ck_assert_int_eq(compress_chunk(3, plain, sizeof(plain), rec + RECORD_HEADER_SIZE,
                                    sizeof(rec) - RECORD_HEADER_SIZE, &codec, &n), 0);
    ck_assert_uint_eq(codec, CODEC_ZSTD);
    memcpy(rec, "RREC", 4);
    rec[4] = RECORD_CHUNK;
    rec[5] = CODEC_ZSTD;
    put_le16(rec + 6, 0);
    put_le32(rec + 8, (uint32_t)n);
    xhash_sha256(plain, sizeof(plain), rec + 16);
    const uint32_t claims[] = { sizeof(plain), sizeof(plain) + 1, RECORD_LEN_MAX };
    for (size_t i = 0; i < sizeof(claims) / sizeof(*claims); i++) {
        put_le32(rec + 12, claims[i]);
        put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, n));
        container_record r;
        const uint8_t *p;
        ck_assert_int_eq(container_parse_record(rec, RECORD_HEADER_SIZE + n, 0, &r, &p),
                         i == 0 ? 0 : RH_ECORRUPT);
    }

    /* A frame whose header declares 200 MiB of content, followed by one RLE block of 128 KiB: 17
     * bytes that zstd's own bound trusts. Three bytes per block at least give 768 KiB at most. */
    uint8_t liar[17] = { 0x28, 0xb5, 0x2f, 0xfd, 0xe0 };
    put_le64(liar + 5, 200u << 20);
    uint32_t bh = 1u | (1u << 1) | (131072u << 3); /* last block, RLE, 128 KiB */
    liar[13] = (uint8_t)bh, liar[14] = (uint8_t)(bh >> 8), liar[15] = (uint8_t)(bh >> 16);
    liar[16] = 'a';
    ck_assert(decompress_size_ok(CODEC_ZSTD, liar, sizeof(liar), 131072));
    ck_assert(!decompress_size_ok(CODEC_ZSTD, liar, sizeof(liar), 200u << 20));
    ck_assert(!decompress_size_ok(CODEC_ZSTD, liar, sizeof(liar), 768u << 10 | 1));
    uint8_t *big = xmalloc(131072);
    ck_assert_int_eq(decompress_chunk(CODEC_ZSTD, liar, sizeof(liar), big, 131072), RH_ECORRUPT);
    free(big);
}
END_TEST

START_TEST(test_append_rejects)
{
    uint8_t digest[HASH_LEN] = { 0 }, payload[16] = { 0 };
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, 8, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_append(cw, RECORD_STREAM, CODEC_RAW, digest, payload, 16, 16, NULL),
                     -EINVAL); /* a stream map in a data container */
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, 5, digest, payload, 16, 16, NULL), -EINVAL);
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, CODEC_RAW, digest, payload, 16, 17, NULL),
                     -EINVAL);
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, CODEC_ZSTD, digest, NULL, 16, 100, NULL),
                     -EINVAL);
    ck_assert_uint_eq(container_writer_records(cw), 0);
    ck_assert_uint_eq(container_writer_size(cw), CONTAINER_HEADER_SIZE);
    ck_assert_int_eq(container_writer_open(dctx.dirfd, 3, 8, test_uuid, &(container_writer *){ NULL }),
                     -EINVAL);
    container_writer_abort(cw);
    container_writer_abort(NULL);
    ck_assert_uint_eq(count_files(), 0);
}
END_TEST

START_TEST(test_seal_never_replaces)
{
    write_file("0000000a.ctr", "hello", 5);
    uint8_t digest[HASH_LEN] = { 1 }, payload[64];
    test_fill_random(payload, sizeof(payload), 3);
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, 10, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, CODEC_RAW, digest, payload, 64, 64, NULL),
                     0);
    int r = container_writer_seal(cw);
    ck_assert(r == -EEXIST || r == RH_EEXIST);
    size_t len;
    uint8_t *data = read_file("0000000a.ctr", &len);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(data, "hello", 5);
    free(data);
    ck_assert_uint_eq(count_files(), 1); /* the temp file is gone */
}
END_TEST

/* ---- packs ---- */

/* Three members of 5000, 1 and 70000 bytes: their table, and their data one after another. */
#define PACK_N 3
static const uint32_t pack_lens[PACK_N] = { 5000, 1, 70000 };

static void make_pack(uint8_t *table, uint8_t *data, uint32_t *ret_raw)
{
    uint32_t at = 0;
    for (unsigned k = 0; k < PACK_N; k++) {
        /* compressible members: a repeated random block */
        for (uint32_t i = 0; i < pack_lens[k]; i++)
            data[at + i] = (uint8_t)(i % 97 + k);
        xhash_sha256(data + at, pack_lens[k], table + k * PACK_ENTRY_SIZE);
        put_le32(table + k * PACK_ENTRY_SIZE + HASH_LEN, pack_lens[k]);
        at += pack_lens[k];
    }
    *ret_raw = at;
}

START_TEST(test_pack_roundtrip)
{
    uint8_t table[PACK_N * PACK_ENTRY_SIZE];
    uint32_t raw;
    uint8_t *data = xmalloc(80000);
    make_pack(table, data, &raw);
    size_t cap = compress_bound(raw);
    uint8_t *z = xmalloc(cap), codec;
    size_t zlen;
    ck_assert_int_eq(compress_chunk(3, data, raw, z, cap, &codec, &zlen), 0);
    ck_assert_uint_eq(codec, CODEC_ZSTD);

    uint8_t digest[HASH_LEN] = { 7 }, one[10] = { 1 };
    container_writer *cw;
    uint64_t off1, off2, off3;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, 0x30, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_append(cw, RECORD_CHUNK, CODEC_RAW, digest, one, 10, 10, &off1), 0);
    ck_assert_int_eq(
        container_writer_append_pack(cw, CODEC_ZSTD, PACK_N, table, z, (uint32_t)zlen, raw, &off2), 0);
    ck_assert_int_eq(container_writer_append_pack(cw, CODEC_RAW, PACK_N, table, data, raw, raw, &off3), 0);
    ck_assert_int_eq(container_writer_seal(cw), 0);
    ck_assert_uint_eq(off2, off1 + RECORD_HEADER_SIZE + 10);
    ck_assert_uint_eq(off3, off2 + RECORD_HEADER_SIZE + sizeof(table) + zlen);

    /* The footer lists the packs as records of type 3 with their member count; a scan agrees. */
    container_header h;
    container_record *recs, *scanned;
    size_t n, ns;
    uint64_t end;
    ck_assert_int_eq(container_read_header(&dir_ops, &dctx, "00000030.ctr", &h), 0);
    ck_assert_int_eq(container_read_footer(&dir_ops, &dctx, "00000030.ctr", &h, &recs, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(recs[0].members, 0);
    ck_assert_uint_eq(recs[1].type, RECORD_PACK);
    ck_assert_uint_eq(recs[1].members, PACK_N);
    ck_assert_uint_eq(recs[1].raw_len, raw);
    ck_assert_uint_eq(recs[1].stored_len, sizeof(table) + zlen);
    ck_assert_uint_eq(recs[2].codec, CODEC_RAW);
    ck_assert_uint_eq(recs[2].stored_len, sizeof(table) + raw);
    ck_assert(hash_is_zero(recs[1].digest));
    ck_assert_int_eq(container_scan(&dir_ops, &dctx, "00000030.ctr", &scanned, &ns, &end, NULL), 0);
    ck_assert_uint_eq(ns, n);
    for (size_t i = 0; i < n; i++)
        assert_record_eq(&scanned[i], &recs[i]);

    /* Byte 6 of the record header holds the member count; the members sit where the table says. */
    for (size_t i = 1; i < 3; i++) {
        uint8_t *buf = xmalloc(RECORD_HEADER_SIZE + recs[i].stored_len);
        container_record got;
        const uint8_t *payload;
        ck_assert_int_eq(container_read_record(&dir_ops, &dctx, "00000030.ctr", recs[i].offset,
                                               recs[i].stored_len, buf, &got, &payload),
                         0);
        ck_assert_uint_eq(get_le16(buf + 6), PACK_N);
        ck_assert_mem_eq(payload, table, sizeof(table));
        uint32_t dlen;
        const uint8_t *stored = pack_data(&got, payload, &dlen);
        uint8_t *dec = xmalloc(raw);
        ck_assert_int_eq(decompress_chunk(got.codec, stored, dlen, dec, raw), 0);
        const uint8_t *decoded;
        uint8_t *scratch = xmalloc(raw);
        ck_assert_int_eq(pack_decode(&got, payload, scratch, &decoded), 0);
        ck_assert_mem_eq(decoded, data, raw);
        ck_assert(got.codec == CODEC_RAW ? decoded == stored : decoded == scratch);
        free(scratch);
        uint32_t at = 0;
        for (unsigned k = 0; k < PACK_N; k++) {
            pack_entry pe;
            ck_assert_int_eq(pack_member(&got, payload, k, &pe), 0);
            ck_assert_uint_eq(pe.offset, at);
            ck_assert_uint_eq(pe.raw_len, pack_lens[k]);
            ck_assert_mem_eq(pe.digest, table + k * PACK_ENTRY_SIZE, HASH_LEN);
            ck_assert_mem_eq(dec + at, data + at, pack_lens[k]);
            at += pack_lens[k];
        }
        pack_entry pe;
        ck_assert_int_eq(pack_member(&got, payload, PACK_N, &pe), RH_ECORRUPT);
        /* The table alone, as reindex reads it. */
        uint8_t *t;
        ck_assert_int_eq(container_read_pack_table(&dir_ops, &dctx, "00000030.ctr", &recs[i], &t), 0);
        ck_assert_mem_eq(t, table, sizeof(table));
        free(t);
        free(dec);
        free(buf);
    }
    /* A table read for a record whose footer entry disagrees (another member count) is refused. */
    container_record wrong = recs[1];
    wrong.members = 2;
    uint8_t *t;
    ck_assert_int_eq(container_read_pack_table(&dir_ops, &dctx, "00000030.ctr", &wrong, &t), RH_ECORRUPT);
    free(recs);
    free(scanned);
    free(z);
    free(data);
}
END_TEST

START_TEST(test_pack_rejects)
{
    uint8_t table[PACK_N * PACK_ENTRY_SIZE];
    uint32_t raw;
    uint8_t *data = xmalloc(80000);
    make_pack(table, data, &raw);
    container_writer *cw;
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_DATA, 0x31, test_uuid, &cw), 0);
    /* One member is a chunk record; the lengths must add up; no member may be empty. */
    ck_assert_int_eq(container_writer_append_pack(cw, CODEC_RAW, 1, table, data, 5000, 5000, NULL), -EINVAL);
    ck_assert_int_eq(container_writer_append_pack(cw, CODEC_RAW, PACK_N, table, data, raw - 1, raw - 1, NULL),
                     -EINVAL);
    ck_assert_int_eq(container_writer_append(cw, RECORD_PACK, CODEC_RAW, table, data, 10, 10, NULL), -EINVAL);
    uint8_t bad[PACK_N * PACK_ENTRY_SIZE];
    memcpy(bad, table, sizeof(bad));
    put_le32(bad + HASH_LEN, 0);
    put_le32(bad + PACK_ENTRY_SIZE + HASH_LEN, 5001);
    ck_assert_int_eq(container_writer_append_pack(cw, CODEC_RAW, PACK_N, bad, data, raw, raw, NULL), -EINVAL);
    ck_assert_uint_eq(container_writer_records(cw), 0);
    container_writer_abort(cw);

    /* A stream container takes no packs. */
    ck_assert_int_eq(container_writer_open(dctx.dirfd, CONTAINER_STREAM, 0x32, test_uuid, &cw), 0);
    ck_assert_int_eq(container_writer_append_pack(cw, CODEC_RAW, PACK_N, table, data, raw, raw, NULL),
                     -EINVAL);
    container_writer_abort(cw);

    /* A record whose checksum is right but whose table does not add up to raw_len is corrupt: build
     * it by hand from the documented layout. */
    size_t len = RECORD_HEADER_SIZE + sizeof(table) + raw;
    uint8_t *rec = xcalloc(1, len);
    memcpy(rec, "RREC", 4);
    rec[4] = RECORD_PACK;
    rec[5] = CODEC_RAW;
    put_le16(rec + 6, PACK_N);
    put_le32(rec + 8, (uint32_t)(sizeof(table) + raw));
    put_le32(rec + 12, raw);
    memcpy(rec + RECORD_HEADER_SIZE, table, sizeof(table));
    memcpy(rec + RECORD_HEADER_SIZE + sizeof(table), data, raw);
    put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, len - RECORD_HEADER_SIZE));
    container_record r;
    const uint8_t *p;
    ck_assert_int_eq(container_parse_record(rec, len, 64, &r, &p), 0);
    ck_assert_uint_eq(r.members, PACK_N);
    put_le32(rec + RECORD_HEADER_SIZE + HASH_LEN, 4999); /* member 0 one byte short */
    put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, len - RECORD_HEADER_SIZE));
    ck_assert_int_eq(container_parse_record(rec, len, 64, &r, &p), RH_ECORRUPT);
    put_le32(rec + RECORD_HEADER_SIZE + HASH_LEN, 5000);
    put_le16(rec + 6, 0); /* a pack of no members */
    put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, len - RECORD_HEADER_SIZE));
    ck_assert_int_eq(container_parse_record(rec, len, 64, &r, &p), RH_ECORRUPT);
    /* In a chunk record the member field is reserved: ignored, whatever it holds. */
    rec[4] = RECORD_CHUNK;
    put_le16(rec + 6, 77);
    put_le32(rec + 8, raw);
    put_le64(rec + 48, hash_checksum(rec, 48, rec + RECORD_HEADER_SIZE, raw));
    ck_assert_int_eq(container_parse_record(rec, RECORD_HEADER_SIZE + raw, 64, &r, &p), 0);
    ck_assert_uint_eq(r.members, 0);
    free(rec);
    free(data);
}
END_TEST

/* ---- stream maps ---- */

static streammap_entry chunk_entry(uint64_t len, unsigned seed)
{
    streammap_entry e = { .length = len };
    test_fill_random(e.digest, HASH_LEN, seed);
    return e;
}

static streammap_entry hole_entry(uint64_t len) { return (streammap_entry){ .length = len, .hole = true }; }

START_TEST(test_streammap_roundtrip)
{
    streammap_entry e[] = { chunk_entry(100, 1), hole_entry(5000), chunk_entry(1, 2), chunk_entry(65536, 3),
                            hole_entry(1), chunk_entry(7, 4), hole_entry(1ull << 40) };
    uint64_t size = 100 + 5000 + 1 + 65536 + 1 + 7 + (1ull << 40);
    bytebuf b = { 0 };
    streammap_encode(e, ARRAY_SIZE(e), size, &b);
    ck_assert_uint_eq(b.len, STREAMMAP_HEADER_SIZE + ARRAY_SIZE(e) * STREAMMAP_ENTRY_SIZE);
    ck_assert_mem_eq(b.data, "RHSM", 4);
    ck_assert_uint_eq(get_le32(b.data + 4), 1);
    ck_assert_uint_eq(get_le64(b.data + 8), size);
    ck_assert_uint_eq(get_le64(b.data + 16), ARRAY_SIZE(e));
    ck_assert_uint_eq(get_le64(b.data + 24 + 40), 5000 | STREAMMAP_HOLE);

    streammap *m;
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    ck_assert_uint_eq(m->size, size);
    ck_assert_uint_eq(m->n, ARRAY_SIZE(e));
    uint64_t start = 0;
    for (size_t i = 0; i < m->n; i++) {
        ck_assert_uint_eq(m->e[i].length, e[i].length);
        ck_assert_int_eq(m->e[i].hole, e[i].hole);
        ck_assert_mem_eq(m->e[i].digest, e[i].digest, HASH_LEN);
        ck_assert_uint_eq(m->start[i], start);
        start += e[i].length;
    }
    streammap_free(m);

    /* A hole's digest is encoded as zeros whatever the caller left in it. */
    bytebuf b2 = { 0 };
    e[1].digest[0] = 0xff;
    streammap_encode(e, ARRAY_SIZE(e), size, &b2);
    ck_assert_uint_eq(b2.len, b.len);
    ck_assert_mem_eq(b2.data, b.data, b.len);
    buf_free(&b2);
    buf_free(&b);

    /* The empty file. */
    streammap_encode(NULL, 0, 0, &b);
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    ck_assert_uint_eq(m->n, 0);
    ck_assert_uint_eq(m->size, 0);
    ck_assert_uint_eq(streammap_find(m, 0), 0); /* no entry */
    streammap_free(m);
    streammap_free(NULL);
    buf_free(&b);
}
END_TEST

START_TEST(test_streammap_find)
{
    enum { N = 1000 };
    streammap_entry *e = xcalloc(N, sizeof(*e));
    uint64_t size = 0;
    for (size_t i = 0; i < N; i++) {
        uint64_t len = 1 + ((i * 2654435761u) % 9000);
        if (i % 3 == 0)
            len = 1; /* one-byte entries: first and last byte coincide */
        e[i] = i % 5 == 2 ? hole_entry(len) : chunk_entry(len, (unsigned)i);
        size += len;
    }
    bytebuf b = { 0 };
    streammap_encode(e, N, size, &b);
    streammap *m;
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    uint64_t start = 0;
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(streammap_find(m, start), i);
        ck_assert_uint_eq(streammap_find(m, start + e[i].length - 1), i);
        if (e[i].length > 2)
            ck_assert_uint_eq(streammap_find(m, start + e[i].length / 2), i);
        start += e[i].length;
    }
    ck_assert_uint_eq(start, size);
    ck_assert_uint_eq(streammap_find(m, size), N); /* past the end: no entry */
    streammap_free(m);
    buf_free(&b);
    free(e);
}
END_TEST

START_TEST(test_streammap_range)
{
    /* Entries of 3, 5 (a hole) and 2 bytes. Every range is compared with a byte-by-byte model: piece
     * by piece, each byte of the range is byte `in` of entry `i`, in order and exactly once. */
    streammap_entry e[3] = { chunk_entry(3, 1), hole_entry(5), chunk_entry(2, 2) };
    const size_t owner[10] = { 0, 0, 0, 1, 1, 1, 1, 1, 2, 2 }, first[3] = { 0, 3, 8 };
    bytebuf b = { 0 };
    streammap_encode(e, 3, 10, &b);
    streammap *m;
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    for (uint64_t off = 0; off <= 12; off++) {
        for (size_t len = 0; len <= 12; len++) {
            streammap_range r;
            size_t want = off >= 10 ? 0 : MIN(len, 10 - off), got = 0;
            ck_assert_uint_eq(streammap_range_start(&r, m, off, len), want);
            streammap_piece p;
            size_t pieces = 0;
            while (streammap_range_next(&r, &p)) {
                ck_assert_uint_ge(p.n, 1);
                ck_assert_uint_eq(p.done, got);
                for (size_t k = 0; k < p.n; k++) {
                    ck_assert_uint_eq(owner[off + got + k], p.i);
                    ck_assert_uint_eq(off + got + k - first[p.i], p.in + k);
                }
                got += p.n;
                pieces++;
            }
            ck_assert_uint_eq(got, want);
            ck_assert_uint_le(pieces, 3);
        }
    }
    streammap_free(m);
    buf_free(&b);
}
END_TEST

START_TEST(test_streammap_seek)
{
    /* 3 bytes of data, a hole of 5, 2 of data, a hole of 4: every offset and both whences against a
     * byte-by-byte model, as lseek(2) says (the end of the file counts as a hole). */
    streammap_entry e[4] = { chunk_entry(3, 1), hole_entry(5), chunk_entry(2, 2), hole_entry(4) };
    const bool data[14] = { 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0 };
    bytebuf b = { 0 };
    streammap_encode(e, 4, 14, &b);
    streammap *m;
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    for (uint64_t off = 0; off <= 16; off++) {
        for (int w = 0; w < 2; w++) {
            bool want_data = w == 0;
            uint64_t want = off;
            while (want < 14 && data[want] != want_data)
                want++;
            uint64_t got = 99;
            int r = streammap_seek(m, off, want_data ? SEEK_DATA : SEEK_HOLE, &got);
            if (off >= 14 || (want_data && want == 14)) {
                ck_assert_int_eq(r, -ENXIO);
            } else {
                ck_assert_int_eq(r, 0);
                ck_assert_uint_eq(got, want);
            }
        }
    }
    uint64_t got;
    ck_assert_int_eq(streammap_seek(m, 0, SEEK_SET, &got), -EINVAL);
    streammap_free(m);
    buf_free(&b);
}
END_TEST

START_TEST(test_plan_readahead)
{
    /* 100 entries of 10 bytes; a window of 8. */
    streammap_entry e[100];
    for (size_t i = 0; i < 100; i++)
        e[i] = chunk_entry(10, (unsigned)i);
    bytebuf b = { 0 };
    streammap_encode(e, 100, 1000, &b);
    streammap *m;
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), 0);
    uint64_t next = 0;
    size_t upto = 0, from, to;
    /* a first read at 0 is sequential: the 8 entries after it */
    ck_assert(cache_plan_readahead(m, 0, 10, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 1);
    ck_assert_uint_eq(to, 9);
    ck_assert_uint_eq(next, 10);
    /* the next read goes on: only what was not queued yet */
    ck_assert(cache_plan_readahead(m, 10, 25, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 9);
    ck_assert_uint_eq(to, 11);
    ck_assert_uint_eq(next, 35);
    /* a jump: nothing, and the next read from there is sequential again */
    ck_assert(!cache_plan_readahead(m, 500, 10, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, to);
    ck_assert(cache_plan_readahead(m, 510, 10, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 52);
    ck_assert_uint_eq(to, 60);
    /* near the end: cut at the last entry; at the end: nothing */
    ck_assert(cache_plan_readahead(m, 520, 450, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 97);
    ck_assert_uint_eq(to, 100);
    ck_assert(cache_plan_readahead(m, 970, 30, 8, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, to);
    /* at most max_bytes past the read: the entries that start before end + 30, and at least one */
    next = 0, upto = 0;
    ck_assert(cache_plan_readahead(m, 0, 10, 8, 30, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 1);
    ck_assert_uint_eq(to, 4);
    ck_assert(cache_plan_readahead(m, 10, 5, 8, 31, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 4);
    ck_assert_uint_eq(to, 5); /* bytes 15..45: entries 1..4 */
    ck_assert(cache_plan_readahead(m, 15, 10, 8, 0, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, to); /* 0 bytes: at least entry 2, queued already */
    next = 0, upto = 0;
    ck_assert(cache_plan_readahead(m, 0, 10, 8, 0, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, 1);
    ck_assert_uint_eq(to, 2);
    /* a window of 0: no read-ahead */
    next = 0, upto = 0;
    ck_assert(cache_plan_readahead(m, 0, 10, 0, UINT64_MAX, &next, &upto, &from, &to));
    ck_assert_uint_eq(from, to);
    streammap_free(m);
    buf_free(&b);
}
END_TEST

static int decode_patched(const bytebuf *b, size_t at, uint64_t v, int width)
{
    uint8_t *copy = xmemdup(b->data, b->len);
    if (width == 8)
        put_le64(copy + at, v);
    else if (width == 4)
        put_le32(copy + at, (uint32_t)v);
    else
        copy[at] = (uint8_t)v;
    streammap *m = NULL;
    int r = streammap_decode(copy, b->len, &m);
    streammap_free(m);
    free(copy);
    return r;
}

START_TEST(test_streammap_decode_rejects)
{
    streammap_entry e[] = { chunk_entry(10, 1), hole_entry(20), chunk_entry(30, 2) };
    bytebuf b = { 0 };
    streammap_encode(e, 3, 60, &b);
    streammap *m;
    ck_assert_int_eq(decode_patched(&b, 0, 'X', 1), RH_ECORRUPT);        /* magic */
    ck_assert_int_eq(decode_patched(&b, 4, 2, 4), RH_ECORRUPT);          /* version */
    ck_assert_int_eq(decode_patched(&b, 16, 2, 8), RH_ECORRUPT);         /* count too small */
    ck_assert_int_eq(decode_patched(&b, 16, 4, 8), RH_ECORRUPT);         /* count too large */
    ck_assert_int_eq(decode_patched(&b, 16, UINT64_MAX / 8, 8), RH_ECORRUPT);
    ck_assert_int_eq(decode_patched(&b, 8, 61, 8), RH_ECORRUPT);         /* size != sum */
    ck_assert_int_eq(decode_patched(&b, 8, 59, 8), RH_ECORRUPT);
    ck_assert_int_eq(decode_patched(&b, 24, 0, 8), RH_ECORRUPT);         /* zero-length chunk */
    ck_assert_int_eq(decode_patched(&b, 64, STREAMMAP_HOLE, 8), RH_ECORRUPT); /* zero-length hole */
    ck_assert_int_eq(decode_patched(&b, 64 + 8 + 5, 1, 1), RH_ECORRUPT);  /* hole with a digest */
    ck_assert_int_eq(decode_patched(&b, 8, 60, 8), 0);                   /* the unpatched map is fine */
    ck_assert_int_eq(streammap_decode(b.data, b.len - 1, &m), RH_ECORRUPT);
    ck_assert_int_eq(streammap_decode(b.data, 23, &m), RH_ECORRUPT);
    buf_free(&b);

    /* Lengths whose sum overflows 64 bits, with a size that matches the wrapped sum. */
    streammap_entry big[] = { chunk_entry(STREAMMAP_HOLE - 1, 1), chunk_entry(STREAMMAP_HOLE - 1, 2),
                              chunk_entry(3, 3) };
    streammap_encode(big, 3, 1, &b);
    ck_assert_int_eq(streammap_decode(b.data, b.len, &m), RH_ECORRUPT);
    buf_free(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("container");
    TCase *tc = tcase_create("container");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_write_read_footer);
    tcase_add_test(tc, test_scan_sealed_equals_footer);
    tcase_add_test(tc, test_empty_container);
    tcase_add_test(tc, test_scan_temp_file);
    tcase_add_test(tc, test_scan_torn_tail);
    tcase_add_test(tc, test_scan_torn_tail_large);
    tcase_add_test(tc, test_flipped_payload_byte);
    tcase_add_test(tc, test_flipped_header_bytes);
    tcase_add_test(tc, test_parse_record);
    tcase_add_test(tc, test_parse_record_raw_len_bound);
    tcase_add_test(tc, test_append_rejects);
    tcase_add_test(tc, test_seal_never_replaces);
    tcase_add_test(tc, test_pack_roundtrip);
    tcase_add_test(tc, test_pack_rejects);
    suite_add_tcase(s, tc);

    TCase *sm = tcase_create("streammap");
    tcase_add_test(sm, test_streammap_roundtrip);
    tcase_add_test(sm, test_streammap_find);
    tcase_add_test(sm, test_streammap_range);
    tcase_add_test(sm, test_streammap_seek);
    tcase_add_test(sm, test_plan_readahead);
    tcase_add_test(sm, test_streammap_decode_rejects);
    suite_add_tcase(s, sm);
    return s;
}

int main(void) { return test_run_suite(suite()); }

/*
 * check_hash.c — the small modules under everything: hashes, compression, digest sets, cursors, durable
 * writes, error strings and the store identity file.
 */
#include "config.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>

#include "common/digestset.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "store/store.h"
#include "testutil.h"

START_TEST(test_sha256_vectors)
{
    uint8_t d[HASH_LEN];
    char hex[65];
    ck_assert_int_eq(hash_sha256("abc", 3, d), 0);
    ck_assert_str_eq(hash_hex(d, hex), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert_int_eq(hash_sha256("", 0, d), 0);
    ck_assert_str_eq(hash_hex(d, hex), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    uint8_t back[HASH_LEN];
    ck_assert(hash_from_hex(hex, back));
    ck_assert_mem_eq(back, d, HASH_LEN);
    ck_assert(!hash_from_hex("zz", back));
}
END_TEST

START_TEST(test_checksum_covers_head_and_payload)
{
    uint8_t head[48] = { 1, 2, 3 }, payload[100];
    test_fill_random(payload, sizeof(payload), 1);
    uint64_t a = hash_checksum(head, sizeof(head), payload, sizeof(payload));
    head[47] ^= 1;
    ck_assert_uint_ne(a, hash_checksum(head, sizeof(head), payload, sizeof(payload)));
    head[47] ^= 1;
    payload[99] ^= 1;
    ck_assert_uint_ne(a, hash_checksum(head, sizeof(head), payload, sizeof(payload)));
    payload[99] ^= 1;
    ck_assert_uint_eq(a, hash_checksum(head, sizeof(head), payload, sizeof(payload)));
}
END_TEST

START_TEST(test_mem_is_zero)
{
    uint8_t b[4096] = { 0 };
    ck_assert(mem_is_zero(b, 0));
    ck_assert(mem_is_zero(b, 1));
    ck_assert(mem_is_zero(b, sizeof(b)));
    for (size_t i = 0; i < sizeof(b); i += 511) {
        b[i] = 1;
        ck_assert(!mem_is_zero(b, sizeof(b)));
        ck_assert(mem_is_zero(b, i));
        b[i] = 0;
    }
}
END_TEST

START_TEST(test_compress_roundtrip)
{
    size_t n = 256 * 1024;
    uint8_t *text = xmalloc(n), *rnd = xmalloc(n), *out = xmalloc(compress_bound(n)), *back = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = "rehydrate "[i % 10];
    test_fill_random(rnd, n, 7);
    uint8_t codec;
    size_t len;
    ck_assert_int_eq(compress_chunk(3, text, n, out, compress_bound(n), &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_ZSTD);
    ck_assert_uint_lt(len, n / 10);
    ck_assert_int_eq(decompress_chunk(codec, out, len, back, n), 0);
    ck_assert_mem_eq(back, text, n);
    /* A wrong raw length or damaged bytes are corruption, not a crash. */
    ck_assert_int_eq(decompress_chunk(codec, out, len, back, n - 1), RH_ECORRUPT);
    /* (A flipped literal byte may still decode: zstd frames carry no checksum here, which is why every
     * record has its own. A damaged frame header must be caught.) */
    out[0] ^= 0xff;
    ck_assert_int_eq(decompress_chunk(codec, out, len, back, n), RH_ECORRUPT);
    /* Random data does not compress: stored raw. */
    ck_assert_int_eq(compress_chunk(3, rnd, n, out, compress_bound(n), &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_RAW);
    ck_assert_int_eq(decompress_chunk(CODEC_RAW, rnd, n, back, n), 0);
    ck_assert_mem_eq(back, rnd, n);
    ck_assert_int_eq(decompress_chunk(9, rnd, n, back, n), RH_ECORRUPT);
    /* Level 0 means raw. */
    ck_assert_int_eq(compress_chunk(0, text, n, out, compress_bound(n), &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_RAW);
    free(text), free(rnd), free(out), free(back);
}
END_TEST

/* In-place compression, with input sizes that make zstd pick different tables one call after another
 * (the per-thread static context must fit all of them), several levels, and inputs larger than the
 * static context covers. */
START_TEST(test_compress_inplace)
{
    static const size_t sizes[] = { 100, 300000, 16384, 262144, 5000, 131072, 1 << 20, 70000 };
    static const int levels[] = { 3, 1, 19, 3 };
    size_t max = 1 << 20;
    uint8_t *orig = xmalloc(max), *buf = xmalloc(max), *back = xmalloc(max);
    for (size_t i = 0; i < max; i++)
        orig[i] = (uint8_t)("rehydrate the chunks "[i % 21] + (i / 4096) % 7);
    for (size_t l = 0; l < ARRAY_SIZE(levels); l++) {
        for (size_t k = 0; k < 3 * ARRAY_SIZE(sizes); k++) {
            size_t n = sizes[k % ARRAY_SIZE(sizes)];
            memcpy(buf, orig, n);
            uint8_t codec;
            size_t len;
            ck_assert_int_eq(compress_chunk_inplace(levels[l], buf, n, &codec, &len), 0);
            ck_assert_int_eq(codec, CODEC_ZSTD);
            ck_assert_uint_lt(len, n);
            ck_assert_int_eq(decompress_chunk(codec, buf, len, back, n), 0);
            ck_assert_mem_eq(back, orig, n);
        }
    }
    /* random data: raw, untouched */
    test_fill_random(orig, 65536, 9);
    memcpy(buf, orig, 65536);
    uint8_t codec;
    size_t len;
    ck_assert_int_eq(compress_chunk_inplace(3, buf, 65536, &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_RAW);
    ck_assert_uint_eq(len, 65536);
    ck_assert_mem_eq(buf, orig, 65536);
    free(orig), free(buf), free(back);
}
END_TEST

/* The checksum of a payload in two pieces is that of the whole, wherever it is split. */
START_TEST(test_checksum2)
{
    uint8_t head[48], p[3000];
    test_fill_random(head, sizeof(head), 1);
    test_fill_random(p, sizeof(p), 2);
    uint64_t whole = hash_checksum(head, sizeof(head), p, sizeof(p));
    static const size_t cuts[] = { 0, 1, 36, 1500, 2999, 3000 };
    for (size_t i = 0; i < ARRAY_SIZE(cuts); i++)
        ck_assert_uint_eq(hash_checksum2(head, sizeof(head), p, cuts[i], p + cuts[i], sizeof(p) - cuts[i]),
                          whole);
    p[2000] ^= 1;
    ck_assert_uint_ne(hash_checksum2(head, sizeof(head), p, 36, p + 36, sizeof(p) - 36), whole);
}
END_TEST

/* A pack of data of sixteen distinct bytes (4 bits of entropy a byte): zstd's level-3 parameters for
 * 256 KiB look for 4-byte matches and come out near 57 %; a pack, with 5-byte matches, near 50 %, which
 * is what the chunks compressed one by one take. Text compresses well too, and both decode. */
START_TEST(test_compress_pack)
{
    size_t n = 256u << 10;
    uint8_t *orig = xmalloc(n), *buf = xmalloc(n), *back = xmalloc(n);
    test_fill_random(orig, n, 4);
    for (size_t i = 0; i < n; i++)
        orig[i] = (uint8_t)("0123456789abcdef"[orig[i] & 15]);
    uint8_t codec;
    size_t len, first;
    memcpy(buf, orig, n);
    ck_assert_int_eq(compress_chunk_inplace(3, buf, n, &codec, &first), 0);
    memcpy(buf, orig, n);
    ck_assert_int_eq(compress_pack_inplace(3, buf, n, &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_ZSTD);
    ck_assert_uint_le(len, first);
    ck_assert_uint_lt(len, n * 53 / 100);
    ck_assert_int_eq(decompress_chunk(codec, buf, len, back, n), 0);
    ck_assert_mem_eq(back, orig, n);
    for (size_t i = 0; i < n; i++)
        orig[i] = (uint8_t)("rehydrate the chunks "[i % 21] + (i / 4096) % 7);
    memcpy(buf, orig, n);
    ck_assert_int_eq(compress_pack_inplace(3, buf, n, &codec, &len), 0);
    ck_assert_uint_lt(len, n / 10);
    ck_assert_int_eq(decompress_chunk(codec, buf, len, back, n), 0);
    ck_assert_mem_eq(back, orig, n);
    /* random data: raw, untouched */
    test_fill_random(orig, n, 9);
    memcpy(buf, orig, n);
    ck_assert_int_eq(compress_pack_inplace(3, buf, n, &codec, &len), 0);
    ck_assert_int_eq(codec, CODEC_RAW);
    ck_assert_mem_eq(buf, orig, n);
    free(orig), free(buf), free(back);
}
END_TEST

START_TEST(test_digest_set)
{
    digest_set s = { 0 };
    uint8_t d[HASH_LEN];
    for (uint32_t i = 0; i < 20000; i++) {
        xhash_sha256(&i, sizeof(i), d);
        digest_set_add(&s, d);
        digest_set_add(&s, d); /* adding twice keeps one */
    }
    ck_assert_uint_eq(s.n, 20000);
    for (uint32_t i = 0; i < 40000; i++) {
        xhash_sha256(&i, sizeof(i), d);
        ck_assert(digest_set_contains(&s, d) == (i < 20000));
    }
    digest_set_free(&s);
    ck_assert(!digest_set_contains(&s, d));
}
END_TEST

START_TEST(test_cursor_bounds)
{
    uint8_t b[6] = { 1, 0, 2, 0, 0, 0 };
    cursor c = cursor_make(b, sizeof(b));
    ck_assert_uint_eq(cursor_le16(&c), 1);
    ck_assert_uint_eq(cursor_le32(&c), 2);
    ck_assert(!c.bad);
    ck_assert_uint_eq(cursor_u8(&c), 0);
    ck_assert(c.bad);
    ck_assert_ptr_null(cursor_take(&c, 0)); /* once bad, stays bad */
}
END_TEST

START_TEST(test_parse_numbers)
{
    uint64_t v = 7;
    ck_assert_int_eq(parse_u64("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(parse_u64("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    v = 7;
    ck_assert_int_eq(parse_u64("18446744073709551616", &v), -ERANGE);
    ck_assert_int_eq(parse_u64("-1", &v), -EINVAL);
    ck_assert_int_eq(parse_u64("+1", &v), -EINVAL);
    ck_assert_int_eq(parse_u64(" 1", &v), -EINVAL);
    ck_assert_int_eq(parse_u64("", &v), -EINVAL);
    ck_assert_int_eq(parse_u64("12x", &v), -EINVAL);
    ck_assert_int_eq(parse_u64("0x10", &v), -EINVAL);
    ck_assert_uint_eq(v, 7); /* untouched on failure */

    ck_assert_int_eq(parse_size("64M", &v), 0);
    ck_assert_uint_eq(v, 64u << 20);
    ck_assert_int_eq(parse_size("64MiB", &v), 0);
    ck_assert_uint_eq(v, 64u << 20);
    ck_assert_int_eq(parse_size("1gB", &v), 0);
    ck_assert_uint_eq(v, 1u << 30);
    ck_assert_int_eq(parse_size("2T", &v), 0);
    ck_assert_uint_eq(v, UINT64_C(2) << 40);
    ck_assert_int_eq(parse_size("4096", &v), 0);
    ck_assert_uint_eq(v, 4096);
    ck_assert_int_eq(parse_size("17179869184G", &v), -ERANGE); /* 2^64: wrapped to 0 before */
    ck_assert_int_eq(parse_size("16777215T", &v), 0);
    ck_assert_int_eq(parse_size("16777216T", &v), -ERANGE);
    ck_assert_int_eq(parse_size("-1", &v), -EINVAL);
    ck_assert_int_eq(parse_size("1X", &v), -EINVAL);
    ck_assert_int_eq(parse_size("1iB", &v), -EINVAL);
    ck_assert_int_eq(parse_size("M", &v), -EINVAL);
}
END_TEST

START_TEST(test_atomic_write_never_replaces)
{
    char *dir = test_mkdtemp();
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_eq(fs_write_atomic(fd, "f", "one", 3, 0), 0);
    ck_assert_int_eq(fs_write_atomic(fd, "f", "two", 3, 0), -EEXIST);
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(fs_read_file(fd, "f", &data, &len), 0);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(data, "one", 3);
    free(data);
    ck_assert_int_eq(fs_write_atomic(fd, "f", "three", 5, 1), 0);
    ck_assert_int_eq(fs_read_file(fd, "f", &data, &len), 0);
    ck_assert_mem_eq(data, "three", 5);
    free(data);
    /* no temp files are left behind */
    int n = 0;
    DIR *d = fdopendir(dup(fd));
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(n, 1);
    close(fd);
    test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_strerror)
{
    ck_assert_str_eq(rh_strerror(0), "success");
    ck_assert_str_eq(rh_strerror(RH_ECHECKSUM), "record checksum mismatch");
    ck_assert_str_eq(rh_strerror(-ENOENT), strerror(ENOENT));
    ck_assert_str_eq(rh_strerror(-99999), "unknown error");
}
END_TEST

START_TEST(test_store_identity)
{
    store_config c, back;
    store_config_default(&c);
    c.compression_level = 7;
    uint8_t b[STORE_IDENTITY_SIZE];
    store_config_encode(&c, b);
    ck_assert_int_eq(store_config_decode(b, &back), 0);
    ck_assert_mem_eq(back.uuid, c.uuid, 16);
    ck_assert_int_eq(back.compression_level, 7);
    ck_assert_uint_eq(back.chunker.avg_size, CHUNKER_AVG_DEFAULT);
    ck_assert_uint_eq(back.seal_size, c.seal_size);
    for (size_t i = 0; i < sizeof(b); i++) {
        b[i] ^= 0x40;
        ck_assert_int_lt(store_config_decode(b, &back), 0);
        b[i] ^= 0x40;
    }
    b[0] = 'X';
    ck_assert_int_eq(store_config_decode(b, &back), RH_ENOTSTORE);
    store_config d;
    store_config_default(&d);
    ck_assert(memcmp(c.uuid, d.uuid, 16) != 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hash");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sha256_vectors);
    tcase_add_test(tc, test_checksum_covers_head_and_payload);
    tcase_add_test(tc, test_mem_is_zero);
    tcase_add_test(tc, test_compress_roundtrip);
    tcase_add_test(tc, test_compress_inplace);
    tcase_add_test(tc, test_checksum2);
    tcase_add_test(tc, test_compress_pack);
    tcase_add_test(tc, test_digest_set);
    tcase_add_test(tc, test_cursor_bounds);
    tcase_add_test(tc, test_parse_numbers);
    tcase_add_test(tc, test_atomic_write_never_replaces);
    tcase_add_test(tc, test_strerror);
    tcase_add_test(tc, test_store_identity);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

/*
 * check_wincrc.c — the Windows dedup checksums against values found independently of this code:
 *
 * - CRC-64: the header bytes and stored CRCs of a real Windows container (00000001.00000001.ccc of
 *   the public WinDedup_Extracter repository, commit a8b6b06, the "public sample" of
 *   WINDOWS-DEDUP.md): its stale and current Cthr, its Rrtl, a padding record and the first data
 *   Ckhr. The stored CRC is the expected value, so these vectors do not depend on our reading of the
 *   polynomial. "123456789" and the empty string were computed once by a bitwise Python reference
 *   (shift right, XOR 0x9a6c9329ac4bc9b5 when the low bit is set, init 0, final XOR all-ones) that
 *   reproduces all the stored CRCs above.
 * - CRC-32: the standard check value of zlib's CRC-32, "123456789" -> 0xcbf43926, and
 *   python3 zlib.crc32 for the others.
 */
#include "config.h"

#include <string.h>

#include "windows/wincrc.h"
#include "testutil.h"

/* Decodes a hex string into out (at most cap bytes); returns the length. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

struct vector {
    const char *what;
    const char *hex;   /* the bytes the CRC covers */
    uint64_t expected; /* the CRC stored beside them on the Windows volume */
};

static const struct vector real_headers[] = {
    { "stale Cthr at 0 (USN 1, 39 chunks)",
      "437468720104040101000000000000000100000001000000270000002800000000302c00000000008eed694afe88d701"
      "0040000000000000",
      0x17e9221e4a1c8266ull },
    { "current Cthr at 0x1000 (USN 2, 53 chunks)",
      "437468720104040102000000000000000100000001000000350000003600000000903c00000000002f08b619d0ced701"
      "0040000000000000",
      0x12f6f0b02e604e2cull },
    { "Rrtl at 0x3000", "5272746c010303010000000008000000ffffffffffffffff", 0xf552d977c8339a53ull },
    { "padding Ckhr at 0x2c2b10",
      "436b68720103030100000000c004000004000000080000000800000008000000ffffffffffffffff",
      0x47bc5a8a4c649542ull },
    { "first data Ckhr at 0x5000",
      "436b6872010303010100000050950000010028000800000008000000080000000000000000000000beb364276ceec464"
      "466f843689d364490b957e0c686c9a3238f8409275d3765013ef555073c86a3c",
      0x461b0dcf4318bcfeull },
};

START_TEST(test_crc64_real_headers)
{
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof(real_headers) / sizeof(real_headers[0]); i++) {
        size_t n = unhex(real_headers[i].hex, buf, sizeof(buf));
        uint64_t got = wincrc_64(buf, n);
        ck_assert_msg(got == real_headers[i].expected, "%s: got %016llx, want %016llx", real_headers[i].what,
                      (unsigned long long)got, (unsigned long long)real_headers[i].expected);
    }
}
END_TEST

START_TEST(test_crc64_reference_values)
{
    ck_assert_uint_eq(wincrc_64("123456789", 9), 0x87ff3f9b2b57c87bull);
    ck_assert_uint_eq(wincrc_64(NULL, 0), 0xffffffffffffffffull);
    /* In pieces, every cut: the same as at once. */
    for (size_t cut = 0; cut <= 9; cut++)
        ck_assert_uint_eq(wincrc_64_more(wincrc_64("123456789", cut), "123456789" + cut, 9 - cut),
                          0x87ff3f9b2b57c87bull);
    ck_assert_uint_eq(wincrc_64_more(wincrc_64(NULL, 0), NULL, 0), 0xffffffffffffffffull);
    /* One flipped bit anywhere changes it. */
    uint8_t b[64] = { 0 };
    uint64_t zero = wincrc_64(b, sizeof(b));
    for (size_t i = 0; i < sizeof(b) * 8; i += 37) {
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        ck_assert_uint_ne(wincrc_64(b, sizeof(b)), zero);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
}
END_TEST

/* wincrc_64_more folds long inputs by carry-less multiplication where the CPU can: it must agree with
 * the tables on every length around its steps (16 and 64 bytes), at every alignment, from any CRC. */
START_TEST(test_crc64_fold_agrees_with_tables)
{
    enum { MAX = 1100 };
    uint8_t *buf = malloc(MAX + 16);
    ck_assert_ptr_nonnull(buf);
    uint64_t seed = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < MAX + 16; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(seed >> 56);
    }
    for (size_t len = 0; len <= MAX; len += len < 300 ? 1 : 97)
        for (size_t align = 0; align < 16; align += 5) {
            uint64_t start = len % 3 == 0 ? wincrc_64(NULL, 0) : seed ^ len;
            uint64_t want = wincrc_64_more_tables(start, buf + align, len);
            ck_assert_msg(wincrc_64_more(start, buf + align, len) == want, "length %zu at +%zu", len, align);
        }
    /* A megabyte at once equals the same in pieces by tables. */
    size_t big = 1u << 20;
    uint8_t *m = malloc(big);
    ck_assert_ptr_nonnull(m);
    for (size_t i = 0; i < big; i++)
        m[i] = (uint8_t)(i * 131 + (i >> 9));
    uint64_t pieces = wincrc_64(NULL, 0);
    for (size_t at = 0; at < big; at += 4096)
        pieces = wincrc_64_more_tables(pieces, m + at, 4096);
    ck_assert_uint_eq(wincrc_64(m, big), pieces);
    free(m);
    free(buf);
}
END_TEST

START_TEST(test_crc32_check_values)
{
    ck_assert_uint_eq(wincrc_32("123456789", 9), 0xcbf43926u);
    ck_assert_uint_eq(wincrc_32(NULL, 0), 0);
    ck_assert_uint_eq(wincrc_32("a", 1), 0xe8b7be43u);
    ck_assert_uint_eq(wincrc_32("The quick brown fox jumps over the lazy dog", 43), 0x414fa339u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wincrc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_crc64_real_headers);
    tcase_add_test(tc, test_crc64_reference_values);
    tcase_add_test(tc, test_crc64_fold_agrees_with_tables);
    tcase_add_test(tc, test_crc32_check_values);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}

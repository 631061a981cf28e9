/*
 * check_xpress.c — MS-XCA plain LZ77 (src/compress/xpress.c): the examples of [MS-XCA] byte for byte,
 * round trips through our compressor (every extended-length form, overlapping matches, every period,
 * text, random data, a 128 KiB chunk), and the streams the decoder must reject: truncated ones, matches
 * reaching before the output or past raw_len, malformed long lengths; and decoding to the stream's end
 * when the length is not known (xpress_decompress_to_end). Buffers are allocated at their exact
 * size, so that the ASan build catches any access past them.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "compress/xpress.h"
#include "testutil.h"

/* A malloc'd copy of p[0..n), exactly n bytes (1 when n is 0). */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* Decodes stream[0..n) from an exactly sized copy into an exactly sized buffer; on success compares the
 * output with want (when given). Returns xpress_decompress's result. */
static int decode(const void *stream, size_t n, size_t raw_len, const void *want)
{
    uint8_t *in = dup_exact(stream, n), *out = malloc(raw_len ? raw_len : 1);
    ck_assert_ptr_nonnull(out);
    int r = xpress_decompress(in, n, out, raw_len);
    if (r == 0 && want)
        ck_assert_mem_eq(out, want, raw_len);
    free(in);
    free(out);
    return r;
}

/* Decodes stream[0..n) to its end (xpress_decompress_to_end) from an exactly sized copy into a buffer of
 * exactly cap bytes; on success sets *ret_len and checks that the output is the first *ret_len bytes of
 * want (when given) and that xpress_decompress of that length gives the same bytes. */
static int decode_to_end(const void *stream, size_t n, size_t cap, const void *want, size_t *ret_len)
{
    uint8_t *in = dup_exact(stream, n), *out = malloc(cap ? cap : 1);
    ck_assert_ptr_nonnull(out);
    size_t len = 12345;
    int r = xpress_decompress_to_end(in, n, out, cap, &len);
    ck_assert_msg(r == 0 || r == RH_ECORRUPT || r == -ENOSPC, "xpress_decompress_to_end: %d", r);
    if (r == 0) {
        ck_assert_uint_le(len, cap);
        if (want)
            ck_assert_mem_eq(out, want, len);
        uint8_t *again = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(again);
        ck_assert_int_eq(xpress_decompress(in, n, again, len), 0);
        ck_assert_mem_eq(again, out, len);
        free(again);
        *ret_len = len;
    } else {
        ck_assert_uint_eq(len, 12345);
    }
    free(in);
    free(out);
    return r;
}

/* Compresses data into an exactly sized buffer of xpress_compress_bound bytes; returns the stream
 * (malloc'd) and its size. */
static uint8_t *compress(const void *data, size_t n, size_t *ret_len)
{
    size_t cap = xpress_compress_bound(n);
    uint8_t *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(xpress_compress(data, n, out, cap, ret_len), 0);
    ck_assert_uint_le(*ret_len, cap);
    return out;
}

/* Compress, decompress, compare; also every truncation of the stream: a prefix that lacks bytes the
 * symbols need fails, and one that decodes gives the same bytes (only the last flag word can go unread,
 * when it carries no symbol). Returns the stream's size. */
static size_t roundtrip(const void *data, size_t n, int truncations)
{
    size_t len;
    uint8_t *s = compress(data, n, &len);
    ck_assert_int_eq(decode(s, len, n, data), 0);
    /* Decoded to its end, the stream gives n bytes: into exactly n, not into one byte less. */
    size_t got = 0;
    ck_assert_int_eq(decode_to_end(s, len, n, data, &got), 0);
    ck_assert_uint_eq(got, n);
    if (n > 0)
        ck_assert_int_eq(decode_to_end(s, len, n - 1, NULL, &got), -ENOSPC);
    if (truncations) {
        for (size_t cut = 0; cut < len; cut++) {
            int r = decode(s, cut, n, data);
            if (cut + 4 < len || (n > 0 && cut < 4))
                ck_assert_msg(r == RH_ECORRUPT, "n=%zu: a stream cut to %zu of %zu bytes decoded", n, cut, len);
            /* Cut where a match would begin, a stream ends early (section 2.4 cannot tell); it then
             * gives a prefix of the data (decode_to_end checks), never more. */
            if (decode_to_end(s, cut, n, data, &got) == 0)
                ck_assert_uint_lt(got, n);
        }
    }
    free(s);
    return len;
}

/* ---- the examples of [MS-XCA] section 3.1 ---- */

START_TEST(test_spec_examples)
{
    /* "abcdefghijklmnopqrstuvwxyz": 26 literals, the other 6 flag bits set. */
    static const uint8_t alpha_stream[] = { 0x3f, 0x00, 0x00, 0x00, 'a', 'b', 'c', 'd', 'e', 'f', 'g',
                                            'h',  'i',  'j',  'k',  'l', 'm', 'n', 'o', 'p', 'q', 'r',
                                            's',  't',  'u',  'v',  'w', 'x', 'y', 'z' };
    const char *alpha = "abcdefghijklmnopqrstuvwxyz";
    ck_assert_int_eq(decode(alpha_stream, sizeof(alpha_stream), 26, alpha), 0);

    /* "abc" x 100: three literals and one match of 297 bytes at offset 3, its length in the 16-bit form
     * (nibble 15, byte 255, then 294 = 0x0126). */
    static const uint8_t abc_stream[] = { 0xff, 0xff, 0xff, 0x1f, 'a',  'b',  'c',
                                          0x17, 0x00, 0x0f, 0xff, 0x26, 0x01 };
    char abc[300];
    for (int i = 0; i < 300; i++)
        abc[i] = "abc"[i % 3];
    ck_assert_int_eq(decode(abc_stream, sizeof(abc_stream), 300, abc), 0);

    /* Our compressor writes exactly these streams. */
    size_t len;
    uint8_t *s = compress(alpha, 26, &len);
    ck_assert_uint_eq(len, sizeof(alpha_stream));
    ck_assert_mem_eq(s, alpha_stream, len);
    free(s);
    s = compress(abc, 300, &len);
    ck_assert_uint_eq(len, sizeof(abc_stream));
    ck_assert_mem_eq(s, abc_stream, len);
    free(s);
}
END_TEST

/* ---- round trips ---- */

START_TEST(test_roundtrip_small)
{
    /* Empty: one all-ones flag word. */
    size_t len;
    uint8_t *s = compress("", 0, &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_uint_eq(get_le32(s), UINT32_MAX);
    ck_assert_int_eq(decode(s, len, 0, NULL), 0);
    free(s);
    ck_assert_int_eq(decode("", 0, 0, NULL), 0);

    uint8_t buf[200];
    test_fill_random(buf, sizeof(buf), 3);
    for (size_t n = 1; n <= sizeof(buf); n++)
        roundtrip(buf, n, 1);
    memset(buf, 'x', sizeof(buf));
    for (size_t n = 1; n <= sizeof(buf); n++)
        roundtrip(buf, n, 1);
}
END_TEST

/* Data of period p (1..40) and various lengths: matches that overlap themselves, near the end of the
 * output (where the decoder cannot overshoot) and far from it. */
START_TEST(test_roundtrip_periods)
{
    uint8_t seed[64], buf[3000];
    test_fill_random(seed, sizeof(seed), 11);
    for (size_t p = 1; p <= 40; p++) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = seed[i % p];
        static const size_t lens[] = { 4, 9, 10, 11, 17, 31, 64, 100, 279, 280, 281, 1000, 3000 };
        for (size_t k = 0; k < ARRAY_SIZE(lens); k++)
            roundtrip(buf, lens[k], lens[k] < 300);
    }
}
END_TEST

/* 16 random bytes, then a match of `len` at offset 16: the stream must be 4 + 16 + the match's size, so
 * that the match takes the length form under test. */
static void long_match(size_t len, size_t match_bytes)
{
    size_t n = 16 + len;
    uint8_t *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, 16, 5);
    for (size_t i = 16; i < n; i++)
        buf[i] = buf[i - 16];
    size_t slen = roundtrip(buf, n, n < 2000);
    ck_assert_msg(slen == 4 + 16 + match_bytes, "match of %zu: stream of %zu bytes", len, slen);
    free(buf);
}

START_TEST(test_length_forms)
{
    long_match(3, 2);           /* length - 3 in the word */
    long_match(9, 2);           /* 6, the largest there */
    long_match(10, 3);          /* 7: nibble 0 */
    long_match(24, 3);          /* nibble 14 */
    long_match(25, 4);          /* nibble 15, byte 0 */
    long_match(279, 4);         /* byte 254 */
    long_match(280, 6);         /* byte 255, 16 bits: 277 */
    long_match(65538, 6);       /* 16 bits: 65535 */
    long_match(65539, 10);      /* 16 bits 0, 32 bits: 65536 */
    long_match(128 << 10, 10);  /* a whole chunk of one match */
    long_match(1u << 20, 10);
}
END_TEST

/* Two long matches in a row share one nibble byte: the second takes its high half. */
START_TEST(test_nibble_pairs)
{
    uint8_t buf[4096];
    test_fill_random(buf, sizeof(buf), 9);
    /* Random, then 12 copied bytes, random, 20 copied bytes, random, 40 copied bytes: three long
     * matches, the first two sharing a nibble byte, the third opening a new one. */
    memcpy(buf + 100, buf + 10, 12);
    memcpy(buf + 200, buf + 30, 20);
    memcpy(buf + 300, buf + 50, 40);
    roundtrip(buf, 400, 1);
    /* Hand-made: 'a', then matches of 10 (nibble 0) and 24 (nibble 14) at offset 1 sharing byte 0xe0. */
    static const uint8_t s[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x07, 0x00, 0xe0, 0x07, 0x00 };
    uint8_t want[35];
    memset(want, 'a', sizeof(want));
    ck_assert_int_eq(decode(s, sizeof(s), 35, want), 0);
    ck_assert_int_eq(decode(s, sizeof(s), 36, NULL), RH_ECORRUPT); /* the stream ends at 35 */
    ck_assert_int_eq(decode(s, sizeof(s), 34, NULL), RH_ECORRUPT); /* the second match overruns */
}
END_TEST

/* Text-like data (words from a small vocabulary) and random data, in chunk sizes Windows uses. */
START_TEST(test_roundtrip_chunks)
{
    static const char *words[] = { "the ",   "chunk ", "store ",  "of ",  "Windows ", "dedup ",
                                   "reads ", "a ",     "stream ", "map\n", "and ",    "0x1234 " };
    size_t n = 128 << 10;
    uint8_t *text = malloc(n), *rnd = malloc(n);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(rnd);
    uint8_t pick[1];
    for (size_t i = 0, k = 0; i < n; k++) {
        test_fill_random(pick, 1, k);
        const char *w = words[pick[0] % ARRAY_SIZE(words)];
        for (size_t j = 0; w[j] && i < n; j++)
            text[i++] = (uint8_t)w[j];
    }
    test_fill_random(rnd, n, 77);
    size_t sizes[] = { 1, 31, 32, 33, 4096, 32 << 10, 64 << 10, 100000, 128 << 10 };
    for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
        size_t t = roundtrip(text, sizes[k], 0);
        size_t r = roundtrip(rnd, sizes[k], 0);
        if (sizes[k] >= 4096) {
            ck_assert_uint_lt(t, sizes[k] / 4 * 3); /* text compresses */
            ck_assert_uint_le(r, xpress_compress_bound(sizes[k]));
        }
    }
    free(text);
    free(rnd);
}
END_TEST

/* ---- rejects ---- */

START_TEST(test_reject_offsets)
{
    /* A match first: nothing to copy from. */
    static const uint8_t first[] = { 0x00, 0x00, 0x00, 0x80, 0x00, 0x00 };
    ck_assert_int_eq(decode(first, sizeof(first), 3, NULL), RH_ECORRUPT);
    /* 'a', then a match at offset 2: one byte before the start. */
    static const uint8_t two[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x08, 0x00 };
    ck_assert_int_eq(decode(two, sizeof(two), 4, NULL), RH_ECORRUPT);
    /* ... at offset 1 it is fine. */
    static const uint8_t one[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x00, 0x00 };
    ck_assert_int_eq(decode(one, sizeof(one), 4, "aaaa"), 0);
    /* The largest offset, 8192, one byte short of enough output behind it. */
    uint8_t s[4 + 8191 + 2 + 4 * 300];
    size_t n = 0;
    uint8_t lit[8192];
    test_fill_random(lit, sizeof(lit), 1);
    /* Build 8191 literals then a match at offset 8192, flag words every 32 symbols. */
    size_t fpos = n, sym = 0;
    n += 4;
    uint32_t flags = 0;
    for (size_t i = 0; i < 8191; i++) {
        s[n++] = lit[i];
        flags <<= 1;
        if (++sym == 32) {
            put_le32(s + fpos, flags);
            fpos = n;
            n += 4;
            flags = 0;
            sym = 0;
        }
    }
    put_le16(s + n, (uint16_t)(8191 << 3));
    n += 2;
    flags = flags << 1 | 1;
    sym++;
    put_le32(s + fpos, flags << (32 - sym) | ((UINT32_C(1) << (32 - sym)) - 1));
    ck_assert_int_eq(decode(s, n, 8191 + 3, NULL), RH_ECORRUPT);
}
END_TEST

START_TEST(test_reject_overrun_and_lengths)
{
    static const uint8_t abc[] = { 0xff, 0xff, 0xff, 0x1f, 'a', 'b', 'c', 0x17, 0x00, 0x0f, 0xff, 0x26, 0x01 };
    ck_assert_int_eq(decode(abc, sizeof(abc), 299, NULL), RH_ECORRUPT); /* the match passes raw_len */
    ck_assert_int_eq(decode(abc, sizeof(abc), 301, NULL), RH_ECORRUPT); /* the stream ends short */
    /* Trailing input is not examined: stopping after the literals is a success. */
    ck_assert_int_eq(decode(abc, sizeof(abc), 3, "abc"), 0);
    ck_assert_int_eq(decode(abc, 7, 3, "abc"), 0);

    /* The 16-bit form must hold at least 22 (section 2.4). */
    uint8_t s[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x07, 0x00, 0x0f, 0xff, 21, 0x00 };
    uint8_t want[26];
    memset(want, 'a', sizeof(want));
    ck_assert_int_eq(decode(s, sizeof(s), 25, NULL), RH_ECORRUPT);
    s[9] = 22; /* length 25 */
    ck_assert_int_eq(decode(s, sizeof(s), 26, want), 0);

    /* The 32-bit form: 0xffffffff + 3 bytes must not be written anywhere; nor 21. */
    uint8_t l[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x07, 0x00, 0x0f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff };
    ck_assert_int_eq(decode(l, sizeof(l), 1000, NULL), RH_ECORRUPT);
    put_le32(l + 11, 21);
    ck_assert_int_eq(decode(l, sizeof(l), 25, NULL), RH_ECORRUPT);
    put_le32(l + 11, 22);
    ck_assert_int_eq(decode(l, sizeof(l), 26, want), 0);
    /* Each length field cut short. */
    for (size_t cut = 5; cut < sizeof(l); cut++)
        ck_assert_int_eq(decode(l, cut, 26, NULL), RH_ECORRUPT);

    /* A flag word cut short; no input at all. */
    ck_assert_int_eq(decode("\0\0\0", 3, 1, NULL), RH_ECORRUPT);
    ck_assert_int_eq(decode("", 0, 1, NULL), RH_ECORRUPT);
    /* All-ones flags with no input: a match with nothing behind it. */
    ck_assert_int_eq(decode("\xff\xff\xff\xff", 4, 1, NULL), RH_ECORRUPT);
}
END_TEST

/* Random streams into exactly sized buffers: whatever the result, nothing is touched outside them (the
 * ASan build checks); and a success is repeatable. */
START_TEST(test_garbage)
{
    uint8_t s[512];
    for (unsigned seed = 0; seed < 3000; seed++) {
        test_fill_random(s, sizeof(s), seed);
        size_t n = 1 + s[0] % sizeof(s), raw = (size_t)(s[1] | s[2] << 8) % 4096;
        /* Mostly matches and long lengths, to go further than random bits would. */
        if (seed % 2)
            for (size_t i = 0; i + 4 <= n; i += 37)
                memset(s + i, 0xff, 4);
        (void)decode(s, n, raw, NULL);
    }
}
END_TEST

/* ---- decoding to the stream's end, length unknown ---- */

START_TEST(test_to_end)
{
    size_t len = 0;
    /* The examples of section 3.1: 26 and 300 bytes. */
    static const uint8_t alpha[] = { 0x3f, 0x00, 0x00, 0x00, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j',
                                     'k',  'l',  'm',  'n',  'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x',
                                     'y',  'z' };
    ck_assert_int_eq(decode_to_end(alpha, sizeof(alpha), 128 << 10, "abcdefghijklmnopqrstuvwxyz", &len), 0);
    ck_assert_uint_eq(len, 26);
    ck_assert_int_eq(decode_to_end(alpha, sizeof(alpha), 26, NULL, &len), 0);
    ck_assert_int_eq(decode_to_end(alpha, sizeof(alpha), 25, NULL, &len), -ENOSPC);
    static const uint8_t abc[] = { 0xff, 0xff, 0xff, 0x1f, 'a', 'b', 'c', 0x17, 0x00, 0x0f, 0xff, 0x26, 0x01 };
    ck_assert_int_eq(decode_to_end(abc, sizeof(abc), 1000, NULL, &len), 0);
    ck_assert_uint_eq(len, 300);
    ck_assert_int_eq(decode_to_end(abc, sizeof(abc), 299, NULL, &len), -ENOSPC); /* the match passes cap */

    /* The empty stream is one all-ones flag word; without it there is no end. */
    ck_assert_int_eq(decode_to_end("\xff\xff\xff\xff", 4, 0, NULL, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(decode_to_end("", 0, 100, NULL, &len), RH_ECORRUPT);
    ck_assert_int_eq(decode_to_end("\xff\xff\xff", 3, 100, NULL, &len), RH_ECORRUPT);
    /* A literal with no input left is not an end: 26 literals whose flag word names 27. */
    uint8_t cut[sizeof(alpha)];
    memcpy(cut, alpha, sizeof(alpha));
    cut[0] = 0x1f;
    ck_assert_int_eq(decode_to_end(cut, sizeof(cut), 100, NULL, &len), RH_ECORRUPT);
    /* All 32 flag bits used by literals, and no next flag word: cut. */
    uint8_t lits[36] = { 0 };
    ck_assert_int_eq(decode_to_end(lits, sizeof(lits), 100, NULL, &len), RH_ECORRUPT);
    /* A match reaching before the start; a match word cut short. */
    static const uint8_t two[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x08, 0x00 };
    ck_assert_int_eq(decode_to_end(two, sizeof(two), 100, NULL, &len), RH_ECORRUPT);
    ck_assert_int_eq(decode_to_end(two, sizeof(two) - 1, 100, NULL, &len), RH_ECORRUPT);
    static const uint8_t one[] = { 0xff, 0xff, 0xff, 0x7f, 'a', 0x00, 0x00 };
    ck_assert_int_eq(decode_to_end(one, sizeof(one), 100, "aaaa", &len), 0);
    ck_assert_uint_eq(len, 4);

    /* Random streams: whatever the result, nothing outside the buffers is touched (ASan), and a
     * success agrees with xpress_decompress of the length found (decode_to_end checks). */
    uint8_t s[512];
    for (unsigned seed = 0; seed < 3000; seed++) {
        test_fill_random(s, sizeof(s), seed);
        size_t n = 1 + s[0] % sizeof(s), cap = (size_t)(s[1] | s[2] << 8) % 4096;
        if (seed % 2)
            for (size_t i = 0; i + 4 <= n; i += 37)
                memset(s + i, 0xff, 4);
        (void)decode_to_end(s, n, cap, NULL, &len);
    }
}
END_TEST

/* ---- the compressor's capacity ---- */

START_TEST(test_compress_capacity)
{
    uint8_t data[300];
    test_fill_random(data, 150, 4);
    memcpy(data + 150, data, 150);
    size_t need;
    uint8_t *s = compress(data, sizeof(data), &need);
    free(s);
    for (size_t cap = 0; cap < need; cap++) {
        uint8_t *out = malloc(cap ? cap : 1);
        size_t len = 12345;
        ck_assert_int_eq(xpress_compress(data, sizeof(data), out, cap, &len), -ENOSPC);
        ck_assert_uint_eq(len, 12345);
        free(out);
    }
    uint8_t *out = malloc(need);
    size_t len;
    ck_assert_int_eq(xpress_compress(data, sizeof(data), out, need, &len), 0);
    ck_assert_uint_eq(len, need);
    ck_assert_int_eq(decode(out, len, sizeof(data), data), 0);
    free(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("xpress");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_spec_examples);
    tcase_add_test(tc, test_roundtrip_small);
    tcase_add_test(tc, test_roundtrip_periods);
    tcase_add_test(tc, test_length_forms);
    tcase_add_test(tc, test_nibble_pairs);
    tcase_add_test(tc, test_roundtrip_chunks);
    tcase_add_test(tc, test_reject_offsets);
    tcase_add_test(tc, test_reject_overrun_and_lengths);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_to_end);
    tcase_add_test(tc, test_compress_capacity);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

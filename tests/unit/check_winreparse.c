/*
 * check_winreparse.c — winreparse_parse on buffers built here byte by byte from the offsets of
 * WINDOWS-DEDUP.md "The reparse point" (and doc/windows-format-notes.md for the bag), not with the
 * test tool's writer: each format's fields come back, and every kind of damage is RH_ECORRUPT with a
 * reason, including the buffer truncated at every length.
 */
#include "config.h"

#include <string.h>

#include <rehydrate/rehydrate.h>

#include "windows/wincrc.h"
#include "windows/winreparse.h"
#include "testutil.h"

static void p16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void p32(uint8_t *p, uint32_t v) { p16(p, (uint16_t)v); p16(p + 2, (uint16_t)(v >> 16)); }
static void p64(uint8_t *p, uint64_t v) { p32(p, (uint32_t)v); p32(p + 4, (uint32_t)(v >> 32)); }

static const uint8_t guid[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                  0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01 };

/* Tag, data length (twice), format, CRC over 0x08..total-4. */
static void finish(uint8_t *b, size_t total, uint16_t format)
{
    p32(b, 0x80000013u);
    p16(b + 4, (uint16_t)(total - 8));
    p16(b + 8, format);
    p16(b + 10, (uint16_t)(total - 8));
    p32(b + total - 4, wincrc_32(b + 8, total - 12));
}

static void entry(uint8_t *e, uint32_t seq, uint32_t cont, uint32_t off, uint32_t smap, uint8_t dig)
{
    p32(e, seq);
    p32(e + 4, cont);
    p32(e + 8, off);
    p32(e + 0x18, smap);
    for (int i = 0; i < 32; i++)
        e[0x20 + i] = (uint8_t)(dig + i);
}

static size_t mk_short(uint8_t *b)
{
    memset(b, 0, 0x84);
    p64(b + 0x10, 1234567);
    memcpy(b + 0x20, guid, 16);
    p64(b + 0x30, 0x01d9000000000000ull);
    entry(b + 0x40, 7, 0x10000, 0x3000, 8 + 64 * 10, 0xa0);
    finish(b, 0x84, 0x0201);
    return 0x84;
}

/* n parts of 1000 bytes each, array at `at` (absolute). */
static size_t mk_long(uint8_t *b, size_t n, size_t at)
{
    size_t total = at + 64 * n + 4;
    memset(b, 0, total);
    p16(b + 0x54, (uint16_t)(64 * n));
    p16(b + 0x56, (uint16_t)(at - 8));
    memcpy(b + 0x7c, guid, 16);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = b + at + 64 * i;
        entry(e, (uint32_t)(10 + i), 0x10001, (uint32_t)(0x1000 * i), 8 + 64 * 3, (uint8_t)i);
        p64(e + 0x30, 1000 * (i + 1));
        p64(e + 0x38, 1000 * i);
    }
    finish(b, total, 0x0102);
    return total;
}

static size_t mk_bag(uint8_t *b)
{
    const size_t total = 0x9c + 0x6c + 4;
    memset(b, 0, total);
    memcpy(b + 0x0c, "FeRp", 4);
    p32(b + 0x14, 0x9c + 0x6c - 0x0c);
    memcpy(b + 0x6c, guid, 16);
    p64(b + 0x84, 99999);
    memcpy(b + 0x8c, "RbRp", 4);
    p32(b + 0x8c + 8, 0x10);
    uint8_t *d = b + 0x9c;
    memcpy(d, "DdRp", 4);
    p32(d + 8, 0x6c);
    p32(d + 0x28, 2);
    p32(d + 0x2c, 5);
    p32(d + 0x30, 0x10002);
    p32(d + 0x3c, 0x4000);
    p32(d + 0x4c, 8 + 64 * 2);
    for (int i = 0; i < 16; i++)
        d[0x54 + i] = (uint8_t)(0x50 + i);
    p64(d + 0x64, 99999);
    finish(b, total, 0x0103);
    return total;
}

static void expect_corrupt(const uint8_t *b, size_t len)
{
    winreparse r;
    ck_assert_int_eq(winreparse_parse(b, len, &r), RH_ECORRUPT);
    ck_assert_ptr_nonnull(r.why);
    ck_assert_ptr_null(r.refs);
}

START_TEST(test_short)
{
    uint8_t b[0x84];
    size_t n = mk_short(b);
    winreparse r;
    ck_assert_int_eq(winreparse_parse(b, n, &r), 0);
    ck_assert_uint_eq(r.format, WINREPARSE_SHORT);
    ck_assert_mem_eq(r.guid, guid, 16);
    ck_assert(r.has_size);
    ck_assert_uint_eq(r.size, 1234567);
    ck_assert_uint_eq(r.nrefs, 1);
    ck_assert_uint_eq(r.refs[0].seq, 7);
    ck_assert_uint_eq(r.refs[0].container, 0x10000);
    ck_assert_uint_eq(r.refs[0].offset, 0x3000);
    ck_assert_uint_eq(r.refs[0].smap_size, 8 + 640);
    ck_assert_uint_eq(r.refs[0].digest_len, 32);
    ck_assert_uint_eq(r.refs[0].digest[0], 0xa0);
    ck_assert_uint_eq(r.refs[0].digest[31], 0xa0 + 31);
    ck_assert_uint_eq(r.refs[0].end, 1234567);
    winreparse_free(&r);
}
END_TEST

START_TEST(test_long)
{
    uint8_t b[0x200 + 64 * 8];
    size_t n = mk_long(b, 5, 0x9c);
    winreparse r;
    ck_assert_int_eq(winreparse_parse(b, n, &r), 0);
    ck_assert_uint_eq(r.format, WINREPARSE_LONG);
    ck_assert_mem_eq(r.guid, guid, 16);
    ck_assert_uint_eq(r.size, 5000);
    ck_assert_uint_eq(r.nrefs, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(r.refs[i].seq, 10 + i);
        ck_assert_uint_eq(r.refs[i].container, 0x10001);
        ck_assert_uint_eq(r.refs[i].offset, 0x1000 * i);
        ck_assert_uint_eq(r.refs[i].smap_size, 8 + 192);
        ck_assert_uint_eq(r.refs[i].digest_len, 16);
        ck_assert_uint_eq(r.refs[i].digest[15], (uint8_t)(i + 15));
        ck_assert_uint_eq(r.refs[i].digest[16], 0);
        ck_assert_uint_eq(r.refs[i].begin, 1000 * i);
        ck_assert_uint_eq(r.refs[i].end, 1000 * (i + 1));
    }
    winreparse_free(&r);
    /* the array is found through its offset field, wherever it is */
    n = mk_long(b, 2, 0x100);
    ck_assert_int_eq(winreparse_parse(b, n, &r), 0);
    ck_assert_uint_eq(r.nrefs, 2);
    ck_assert_uint_eq(r.refs[1].seq, 11);
    winreparse_free(&r);
}
END_TEST

START_TEST(test_bag)
{
    uint8_t b[0x200];
    size_t n = mk_bag(b);
    winreparse r;
    ck_assert_int_eq(winreparse_parse(b, n, &r), 0);
    ck_assert_uint_eq(r.format, WINREPARSE_BAG);
    ck_assert_mem_eq(r.guid, guid, 16);
    ck_assert_uint_eq(r.size, 99999);
    ck_assert_uint_eq(r.nrefs, 1);
    ck_assert_uint_eq(r.refs[0].generation, 2);
    ck_assert_uint_eq(r.refs[0].seq, 5);
    ck_assert_uint_eq(r.refs[0].container, 0x10002);
    ck_assert_uint_eq(r.refs[0].offset, 0x4000);
    ck_assert_uint_eq(r.refs[0].smap_size, 8 + 128);
    ck_assert_uint_eq(r.refs[0].digest_len, 16);
    ck_assert_uint_eq(r.refs[0].digest[0], 0x50);
    winreparse_free(&r);
}
END_TEST

/* Every buffer cut short at every length, and one byte too long, is refused. */
START_TEST(test_truncated)
{
    uint8_t b[0x400], c[0x401];
    size_t (*mk[3])(uint8_t *) = { mk_short, mk_bag, NULL };
    for (int f = 0; f < 3; f++) {
        size_t n = mk[f] != NULL ? mk[f](b) : mk_long(b, 3, 0x9c);
        for (size_t len = 0; len < n; len++) {
            memcpy(c, b, len); /* a copy of exactly len bytes: the sanitizers see any overread */
            expect_corrupt(c, len);
        }
        memcpy(c, b, n);
        c[n] = 0;
        expect_corrupt(c, n + 1);
    }
}
END_TEST

START_TEST(test_rejects)
{
    uint8_t b[0x400];
    size_t n;

    n = mk_short(b);
    b[0] ^= 1; /* tag */
    expect_corrupt(b, n);
    n = mk_short(b);
    b[0x50] ^= 1; /* CRC */
    expect_corrupt(b, n);
    n = mk_short(b);
    b[n - 1] ^= 0x80; /* the CRC itself */
    expect_corrupt(b, n);
    n = mk_short(b);
    p16(b + 4, (uint16_t)(n - 12)); /* data length */
    expect_corrupt(b, n);
    n = mk_short(b);
    p16(b + 10, (uint16_t)(n - 12)); /* repeated length, CRC fixed up */
    p32(b + n - 4, wincrc_32(b + 8, n - 12));
    expect_corrupt(b, n);
    static const uint16_t formats[] = { 0, 0x0101, 0x0202, 0x0104, 0x0301, 0xffff };
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        n = mk_short(b);
        finish(b, n, formats[i]);
        expect_corrupt(b, n);
    }
    /* short format too short for its entry though self-consistent */
    memset(b, 0, 0x60);
    finish(b, 0x60, 0x0201);
    expect_corrupt(b, 0x60);

    /* 0x0102: a gap, an overlap, a first part not at 0, an empty part */
    const struct {
        size_t part, field;
        uint64_t v;
    } parts[] = { { 1, 0x38, 1001 }, { 1, 0x38, 999 }, { 0, 0x38, 1 }, { 2, 0x30, 2000 } };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        n = mk_long(b, 3, 0x9c);
        p64(b + 0x9c + 64 * parts[i].part + parts[i].field, parts[i].v);
        finish(b, n, 0x0102);
        expect_corrupt(b, n);
    }
    /* 0x0102 array fields: size 0, not a multiple of 64, past the end, offset into the header */
    const struct {
        size_t at;
        uint16_t v;
    } fields[] = { { 0x54, 0 }, { 0x54, 100 }, { 0x54, 64 * 4 }, { 0x56, 0x9c - 8 + 1 },
                   { 0x56, 0 }, { 0x56, 0xffff } };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        n = mk_long(b, 3, 0x9c);
        p16(b + fields[i].at, fields[i].v);
        finish(b, n, 0x0102);
        expect_corrupt(b, n);
    }
    /* bag: magics, block sizes, sizes that disagree */
    const struct {
        size_t at;
        uint32_t v;
    } bag[] = { { 0x0c, 0 }, { 0x14, 0x1000 }, { 0x8c, 0 }, { 0x94, 0x1000 }, { 0x94, 4 },
                { 0x9c, 0 }, { 0xa4, 0x6b }, { 0xa4, 0x1000 }, { 0x84, 1 } };
    for (size_t i = 0; i < sizeof(bag) / sizeof(bag[0]); i++) {
        n = mk_bag(b);
        p32(b + bag[i].at, bag[i].v);
        finish(b, n, 0x0103);
        expect_corrupt(b, n);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("winreparse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_short);
    tcase_add_test(tc, test_long);
    tcase_add_test(tc, test_bag);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_rejects);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}

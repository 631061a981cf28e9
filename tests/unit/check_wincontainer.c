/*
 * check_wincontainer.c — the container parsers of wincontainer.h on:
 *
 * - real Windows bytes: the stale and current Cthr, the Rrtl header, a padding Ckhr and the first data
 *   Ckhr of the public sample container (00000001.00000001.ccc of WinDedup_Extracter, commit a8b6b06),
 *   the same header bytes and stored CRCs as check_wincrc.c. The sample's chunk payloads (33-128 KB
 *   each) are not copied here; wincontainer-dump --walk on the whole sample checks them (see
 *   doc/windows-format-notes.md).
 * - records built here byte by byte from the offsets of WINDOWS-DEDUP.md and the notes (not with the
 *   test tool's writer): each field comes back, and each kind of damage gives its exact code and the
 *   offset of the field at fault.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "windows/wincontainer.h"
#include "windows/wincrc.h"
#include "testutil.h"

static void p16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void p32(uint8_t *p, uint32_t v) { p16(p, (uint16_t)v); p16(p + 2, (uint16_t)(v >> 16)); }
static void p64(uint8_t *p, uint64_t v) { p32(p, (uint32_t)v); p32(p + 4, (uint32_t)(v >> 32)); }

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

/* ---- real bytes of the sample (header bytes, then the CRC-64 stored after them) ---- */

static const char stale_cthr[] =
    "437468720104040101000000000000000100000001000000270000002800000000302c00000000008eed694afe88d701"
    "0040000000000000";
static const uint64_t stale_cthr_crc = 0x17e9221e4a1c8266ull;
static const char current_cthr[] =
    "437468720104040102000000000000000100000001000000350000003600000000903c00000000002f08b619d0ced701"
    "0040000000000000";
static const uint64_t current_cthr_crc = 0x12f6f0b02e604e2cull;
static const char rrtl_head[] = "5272746c010303010000000008000000ffffffffffffffff";
static const uint64_t rrtl_crc = 0xf552d977c8339a53ull;
static const char pad_ckhr[] = "436b68720103030100000000c004000004000000080000000800000008000000ffffffffffffffff";
static const uint64_t pad_crc = 0x47bc5a8a4c649542ull;
static const char data_ckhr[] =
    "436b6872010303010100000050950000010028000800000008000000080000000000000000000000beb364276ceec464"
    "466f843689d364490b957e0c686c9a3238f8409275d3765013ef555073c86a3c";
static const uint64_t data_crc = 0x461b0dcf4318bcfeull;

/* The sample's three header pages: the stale copy at 0, the current one at 0x1000 and 0x2000. */
static void sample_cthr_pages(uint8_t *b)
{
    memset(b, 0, 3 * WIN_PAGE);
    p64(b + unhex(stale_cthr, b, 0x38), stale_cthr_crc);
    for (int i = 1; i < 3; i++)
        p64(b + i * WIN_PAGE + unhex(current_cthr, b + i * WIN_PAGE, 0x38), current_cthr_crc);
}

START_TEST(test_cthr_real)
{
    static uint8_t b[3 * WIN_PAGE];
    sample_cthr_pages(b);
    win_cthr c;
    win_why w = { 0 };
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), 0);
    ck_assert_uint_eq(c.copy, 1); /* the first of the two current copies */
    ck_assert_uint_eq(c.usn, 2);
    ck_assert_uint_eq(c.id, 1);
    ck_assert_uint_eq(c.generation, 1);
    ck_assert_uint_eq(c.chunks, 53);
    ck_assert_uint_eq(c.next_seq, 54);
    ck_assert_uint_eq(c.valid_len, 0x3c9000);
    ck_assert_uint_eq(c.filetime, 0x01d7ced019b6082full);
    ck_assert_uint_eq(c.rrtl_offset, 0x4000);

    /* Each copy alone. */
    win_cthr one;
    ck_assert_int_eq(win_cthr_parse_copy(b, WIN_PAGE, &one, &w), 0);
    ck_assert_uint_eq(one.usn, 1);
    ck_assert_uint_eq(one.copy, 0);
    ck_assert_int_eq(win_cthr_parse_copy(b + 0x2000, 0x40, &one, &w), 0);
    ck_assert_uint_eq(one.usn, 2);
    ck_assert_uint_eq(one.valid_len, 0x3c9000);
    ck_assert_int_eq(win_cthr_parse_copy(b, 0x3f, &one, &w), RH_ECORRUPT);

    b[0x1000 + 0x18] ^= 1; /* the copy at 0x1000 fails its CRC: the one at 0x2000 */
    one.usn = 77;
    ck_assert_int_eq(win_cthr_parse_copy(b + 0x1000, WIN_PAGE, &one, &w), RH_ECHECKSUM);
    ck_assert_uint_eq(w.at, 0x38);
    ck_assert_uint_eq(one.usn, 77);
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), 0);
    ck_assert_uint_eq(c.copy, 2);
    ck_assert_uint_eq(c.chunks, 53);
    b[0x2000 + 4] = 2; /* and the one at 0x2000 its version: the stale copy remains */
    ck_assert_int_eq(win_cthr_parse_copy(b + 0x2000, WIN_PAGE, &one, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 4);
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), 0);
    ck_assert_uint_eq(c.copy, 0);
    ck_assert_uint_eq(c.usn, 1);
    ck_assert_uint_eq(c.chunks, 39);
    ck_assert_uint_eq(c.valid_len, 0x2c3000);

    /* No copy valid: RH_ECORRUPT (also for CRCs only), naming the first copy's fault. */
    win_cthr untouched = { .usn = 77 };
    c = untouched;
    b[0x3f] ^= 0x80; /* the stale copy's CRC itself */
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 0x38);
    ck_assert_ptr_nonnull(strstr(w.why, "CRC-64"));
    ck_assert_uint_eq(c.usn, 77);
    b[5] = 5;
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 4);
    memcpy(b, "Ctht", 4);
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 0);
    ck_assert_ptr_nonnull(strstr(w.why, "magic"));

    /* Fewer than three pages. */
    sample_cthr_pages(b);
    ck_assert_int_eq(win_cthr_parse(b, 3 * WIN_PAGE - 1, &c, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 3 * WIN_PAGE - 1);
    ck_assert_int_eq(win_cthr_parse(b, 0, &c, NULL), RH_ECORRUPT); /* why may be NULL */
}
END_TEST

/* A copy of the highest USN wins wherever it is; the first of equals. */
START_TEST(test_cthr_usn)
{
    static uint8_t b[3 * WIN_PAGE];
    memset(b, 0, sizeof(b));
    const uint64_t usn[3] = { 5, 9, 3 };
    for (int i = 0; i < 3; i++) {
        uint8_t *h = b + i * WIN_PAGE;
        unhex(current_cthr, h, 0x38);
        p64(h + 8, usn[i]);
        p32(h + 0x18, 100 + i);
        p64(h + 0x38, wincrc_64(h, 0x38));
    }
    win_cthr c;
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, NULL), 0);
    ck_assert_uint_eq(c.copy, 1);
    ck_assert_uint_eq(c.usn, 9);
    ck_assert_uint_eq(c.chunks, 101);
    p64(b + 2 * WIN_PAGE + 8, 9);
    p64(b + 2 * WIN_PAGE + 0x38, wincrc_64(b + 2 * WIN_PAGE, 0x38));
    ck_assert_int_eq(win_cthr_parse(b, sizeof(b), &c, NULL), 0);
    ck_assert_uint_eq(c.copy, 1);
}
END_TEST

/* An Rrtl page of n entries {seq 100 + i, offset 0x5000 + 0x100 * i}, CRC computed. */
static void mk_rrtl(uint8_t *b, uint32_t n)
{
    memset(b, 0, WIN_PAGE);
    unhex(rrtl_head, b, 0x18);
    p32(b + 8, n);
    p64(b + 0x18, wincrc_64(b, 0x18));
    for (uint32_t i = 0; i < n && i < (WIN_PAGE - 0x20) / 8; i++) {
        p32(b + 0x20 + 8 * i, 100 + i);
        p32(b + 0x24 + 8 * i, 0x5000 + 0x100 * i);
    }
}

START_TEST(test_rrtl)
{
    static uint8_t b[WIN_PAGE];
    win_rrtl t;
    win_why w;
    /* the sample's (empty) table */
    memset(b, 0, sizeof(b));
    p64(b + unhex(rrtl_head, b, 0x18), rrtl_crc);
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), 0);
    ck_assert_uint_eq(t.n, 0);
    uint32_t off = 1;
    ck_assert(!win_rrtl_find(&t, 0, &off));
    ck_assert_uint_eq(off, 1);

    mk_rrtl(b, 3);
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), 0);
    ck_assert_uint_eq(t.n, 3);
    ck_assert_ptr_eq(t.entries, b + 0x20);
    ck_assert(win_rrtl_find(&t, 102, &off));
    ck_assert_uint_eq(off, 0x5200);
    ck_assert(win_rrtl_find(&t, 100, &off));
    ck_assert_uint_eq(off, 0x5000);
    ck_assert(!win_rrtl_find(&t, 103, &off)); /* past the count, though the page holds zeros there */
    ck_assert(!win_rrtl_find(&t, 0, &off));
    /* unsorted entries are found too */
    p32(b + 0x20, 500);
    ck_assert(win_rrtl_find(&t, 500, &off));
    ck_assert_uint_eq(off, 0x5000);

    /* the largest count the page holds, and one more */
    mk_rrtl(b, 508);
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), 0);
    ck_assert(win_rrtl_find(&t, 100 + 507, &off));
    ck_assert_uint_eq(off, 0x5000 + 0x100 * 507);
    win_rrtl untouched = { .n = 77 };
    t = untouched;
    mk_rrtl(b, 509);
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 8);
    ck_assert_uint_eq(t.n, 77);
    mk_rrtl(b, 0xffffffffu);
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 8);

    mk_rrtl(b, 3);
    b[0x10] = 0; /* covered by the CRC */
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), RH_ECHECKSUM);
    ck_assert_uint_eq(w.at, 0x18);
    mk_rrtl(b, 3);
    b[3] = 'L';
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 0);
    mk_rrtl(b, 3);
    b[5] = 4; /* the Cthr's version is not the Rrtl's */
    p64(b + 0x18, wincrc_64(b, 0x18));
    ck_assert_int_eq(win_rrtl_parse(b, sizeof(b), &t, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, 4);
    mk_rrtl(b, 3);
    ck_assert_int_eq(win_rrtl_parse(b, WIN_PAGE - 1, &t, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, WIN_PAGE - 1);
}
END_TEST

/* ---- records built here ---- */

static void ckhr_head(uint8_t *h, uint32_t seq, uint32_t payload_len, uint16_t type, uint16_t field)
{
    memcpy(h, "Ckhr\x01\x03\x03\x01", 8);
    p32(h + 0x08, seq);
    p32(h + 0x0c, payload_len);
    p16(h + 0x10, type);
    p16(h + 0x12, field);
    p32(h + 0x14, 8);
    p32(h + 0x18, 8);
    p32(h + 0x1c, 8);
}

/* A data record: header 0x58 then the payload; compression at 0x20 and 0x24, digest at 0x28, payload
 * CRC at 0x48, header CRC at 0x50. Returns the record's length. */
static size_t mk_data(uint8_t *b, uint32_t seq, const uint8_t *payload, uint32_t n, uint32_t comp)
{
    memset(b, 0, WIN_DATA_HEADER);
    ckhr_head(b, seq, n, 1, 0x28);
    p32(b + 0x20, comp);
    p32(b + 0x24, comp);
    for (int i = 0; i < 32; i++)
        b[0x28 + i] = (uint8_t)(0xd0 + i);
    memcpy(b + WIN_DATA_HEADER, payload, n);
    p64(b + 0x48, wincrc_64(payload, n));
    p64(b + 0x50, wincrc_64(b, 0x50));
    return WIN_DATA_HEADER + n;
}

/* A stream-map record: header 0x68 (16-byte digest at 0x38, payload CRC at 0x58 and header CRC at
 * 0x60, the places inferred), then the payload. */
static size_t mk_stream(uint8_t *b, uint32_t seq, const uint8_t *payload, uint32_t n)
{
    memset(b, 0, WIN_STREAM_HEADER);
    ckhr_head(b, seq, n, 2, 0x38);
    for (int i = 0; i < 16; i++)
        b[0x38 + i] = (uint8_t)(0x50 + i);
    memcpy(b + WIN_STREAM_HEADER, payload, n);
    p64(b + 0x58, wincrc_64(payload, n));
    p64(b + 0x60, wincrc_64(b, 0x60));
    return WIN_STREAM_HEADER + n;
}

static void fix_header_crc(uint8_t *b, size_t hl) { p64(b + hl - 8, wincrc_64(b, hl - 8)); }

static void expect(int want, size_t at, int rc, const win_why *w)
{
    ck_assert_int_eq(rc, want);
    ck_assert_ptr_nonnull(w->why);
    ck_assert_uint_eq(w->at, at);
}

START_TEST(test_record_real)
{
    uint8_t b[0x100 + 0x4c0];
    win_record r;
    win_why w = { 0 };
    /* the first data chunk's header: its payload is not here, only its size and CRC */
    p64(b + unhex(data_ckhr, b, 0x50), data_crc);
    ck_assert_int_eq(win_record_parse(b, WIN_DATA_HEADER, &r, &w), 0);
    ck_assert_uint_eq(r.type, WIN_REC_DATA);
    ck_assert_uint_eq(r.seq, 1);
    ck_assert_uint_eq(r.header_len, WIN_DATA_HEADER);
    ck_assert_uint_eq(r.payload_len, 0x9550);
    ck_assert_uint_eq(r.compression, WIN_COMP_NONE);
    ck_assert_uint_eq(r.digest[0], 0xbe);
    ck_assert_uint_eq(r.digest[31], 0x50);
    ck_assert_int_eq(win_record_check_payload(&r, b, WIN_DATA_HEADER, &w), RH_ECORRUPT); /* payload absent */
    ck_assert_uint_eq(w.at, WIN_DATA_HEADER);
    b[0x30] ^= 1;
    expect(RH_ECHECKSUM, 0x50, win_record_parse(b, WIN_DATA_HEADER, &r, &w), &w);

    /* a padding record's header, and its payload of zeros (no CRC of its own) */
    memset(b, 0, sizeof(b));
    p64(b + unhex(pad_ckhr, b, 0x28), pad_crc);
    ck_assert_int_eq(win_record_parse(b, sizeof(b), &r, &w), 0);
    ck_assert_uint_eq(r.type, WIN_REC_PAD);
    ck_assert_uint_eq(r.seq, 0);
    ck_assert_uint_eq(r.header_len, WIN_PAD_HEADER);
    ck_assert_uint_eq(r.payload_len, 0x4c0);
    ck_assert_uint_eq(r.compression, 0);
    ck_assert_int_eq(win_record_check_payload(&r, b, WIN_PAD_HEADER + 0x4c0, &w), 0);
    ck_assert_int_eq(win_record_check_payload(&r, b, WIN_PAD_HEADER + 0x4bf, &w), RH_ECORRUPT);
    ck_assert_uint_eq(w.at, WIN_PAD_HEADER + 0x4bf);
    b[0x20] = 0; /* the all-ones marker, covered by the CRC */
    expect(RH_ECHECKSUM, 0x28, win_record_parse(b, sizeof(b), &r, &w), &w);
}
END_TEST

START_TEST(test_record_built)
{
    static uint8_t b[0x100 + 70000], payload[70000];
    test_fill_random(payload, sizeof(payload), 14);
    win_record r;
    win_why w;
    size_t n = mk_data(b, 42, payload, 70000, 2);
    ck_assert_int_eq(win_record_parse(b, WIN_DATA_HEADER, &r, &w), 0); /* the header alone is enough */
    ck_assert_uint_eq(r.type, WIN_REC_DATA);
    ck_assert_uint_eq(r.seq, 42);
    ck_assert_uint_eq(r.payload_len, 70000);
    ck_assert_uint_eq(r.compression, WIN_COMP_LZ77);
    ck_assert_uint_eq(r.digest[31], 0xd0 + 31);
    ck_assert_uint_eq(r.payload_crc, wincrc_64(payload, 70000));
    ck_assert_int_eq(win_record_check_payload(&r, b, n, &w), 0);
    ck_assert_int_eq(win_record_check_payload(&r, b, n + 10, &w), 0);
    expect(RH_ECORRUPT, n - 1, win_record_check_payload(&r, b, n - 1, &w), &w);
    b[WIN_DATA_HEADER + 69999] ^= 4;
    expect(RH_ECHECKSUM, 0x48, win_record_check_payload(&r, b, n, &w), &w);

    n = mk_stream(b, 7, payload, 8 + 64);
    ck_assert_int_eq(win_record_parse(b, n, &r, &w), 0);
    ck_assert_uint_eq(r.type, WIN_REC_STREAM);
    ck_assert_uint_eq(r.header_len, WIN_STREAM_HEADER);
    ck_assert_uint_eq(r.payload_len, 72);
    ck_assert_uint_eq(r.compression, 0);
    ck_assert_uint_eq(r.digest[0], 0x50);
    ck_assert_uint_eq(r.digest[15], 0x5f);
    ck_assert_uint_eq(r.digest[16], 0);
    ck_assert_uint_eq(r.payload_crc, wincrc_64(payload, 72));
    ck_assert_int_eq(win_record_check_payload(&r, b, n, &w), 0);
    b[WIN_STREAM_HEADER] ^= 1;
    expect(RH_ECHECKSUM, 0x58, win_record_check_payload(&r, b, n, &w), &w);
    mk_stream(b, 7, payload, 72);
    b[0x40] ^= 1;
    expect(RH_ECHECKSUM, 0x60, win_record_parse(b, n, &r, &w), &w);
}
END_TEST

START_TEST(test_record_rejects)
{
    static uint8_t b[0x200], payload[100];
    test_fill_random(payload, sizeof(payload), 7);
    win_record r, untouched = { .seq = 77 };
    win_why w;
    size_t n;

#define REJECT(want, at)                                                                                \
    do {                                                                                                \
        r = untouched;                                                                                  \
        expect(want, at, win_record_parse(b, n, &r, &w), &w);                                           \
        ck_assert_uint_eq(r.seq, 77);                                                                   \
    } while (0)

    n = mk_data(b, 1, payload, 100, 0);
    b[1] = 'K';
    REJECT(RH_ECORRUPT, 0);
    n = mk_data(b, 1, payload, 100, 0);
    b[5] = 4; /* 01 04 03 01 */
    fix_header_crc(b, WIN_DATA_HEADER);
    REJECT(RH_ECORRUPT, 4);
    static const uint16_t types[] = { 0, 3, 5, 8, 0xffff };
    for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
        n = mk_data(b, 1, payload, 100, 0);
        p16(b + 0x10, types[i]);
        fix_header_crc(b, WIN_DATA_HEADER);
        REJECT(RH_ECORRUPT, 0x10);
    }
    /* the header-size field: the header size itself, another type's, 0 */
    static const uint16_t fields[] = { 0x58, 0x38, 0, 0x29 };
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        n = mk_data(b, 1, payload, 100, 0);
        p16(b + 0x12, fields[i]);
        fix_header_crc(b, WIN_DATA_HEADER);
        REJECT(RH_ECORRUPT, 0x12);
    }
    /* a stream map with the data header's field, padding with the stream map's */
    n = mk_stream(b, 1, payload, 72);
    p16(b + 0x12, 0x28);
    fix_header_crc(b, WIN_STREAM_HEADER);
    REJECT(RH_ECORRUPT, 0x12);
    memset(b, 0, WIN_PAD_HEADER);
    ckhr_head(b, 0, 0x100, 4, 0x38);
    n = WIN_PAD_HEADER + 0x100;
    fix_header_crc(b, WIN_PAD_HEADER);
    REJECT(RH_ECORRUPT, 0x12);

    /* compression: 1 (LZNT1), 3 (LZ77+Huffman), unknown, and the two fields differing */
    const struct {
        uint32_t at20, at24;
        size_t at;
        const char *named;
    } comp[] = { { 1, 1, 0x20, "LZNT1" }, { 3, 3, 0x20, "Huffman" }, { 4, 4, 0x20, "unknown" },
                 { 0xffffffffu, 0xffffffffu, 0x20, "unknown" }, { 0, 2, 0x24, "differ" },
                 { 2, 0, 0x24, "differ" }, { 2, 0x102, 0x24, "differ" } };
    for (size_t i = 0; i < ARRAY_SIZE(comp); i++) {
        n = mk_data(b, 1, payload, 100, 0);
        p32(b + 0x20, comp[i].at20);
        p32(b + 0x24, comp[i].at24);
        fix_header_crc(b, WIN_DATA_HEADER);
        REJECT(RH_ECORRUPT, comp[i].at);
        ck_assert_msg(strstr(w.why, comp[i].named), "%s", w.why);
    }

    /* header CRC-64 of each type, and a header CRC that is itself damaged */
    n = mk_data(b, 1, payload, 100, 0);
    b[0x08] ^= 1;
    REJECT(RH_ECHECKSUM, 0x50);
    n = mk_data(b, 1, payload, 100, 0);
    b[0x57] ^= 1;
    REJECT(RH_ECHECKSUM, 0x50);
    n = mk_stream(b, 1, payload, 72);
    b[0x0c] ^= 1;
    REJECT(RH_ECHECKSUM, 0x60);
    memset(b, 0, WIN_PAD_HEADER);
    ckhr_head(b, 0, 0x100, 4, 0);
    memset(b + 0x20, 0xff, 8);
    fix_header_crc(b, WIN_PAD_HEADER);
    n = WIN_PAD_HEADER;
    ck_assert_int_eq(win_record_parse(b, n, &r, &w), 0);
    b[0x21] = 0;
    REJECT(RH_ECHECKSUM, 0x28);

    /* a header cut short at every length: never read past avail */
    n = mk_data(b, 1, payload, 100, 0);
    for (size_t len = 0; len < WIN_DATA_HEADER; len++) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, b, len);
        r = untouched;
        expect(RH_ECORRUPT, len, win_record_parse(c, len, &r, &w), &w);
        free(c);
    }
#undef REJECT
}
END_TEST

/* ---- Smap ---- */

/* A stream map of n chunks of `chunk` bytes each from `start`, stored sizes chunk - i. */
static size_t mk_smap(uint8_t *b, size_t n, uint64_t start, uint32_t chunk)
{
    memset(b, 0, WIN_SMAP_HEADER + WIN_SMAP_ENTRY * n);
    memcpy(b, "Smap", 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = b + WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        p32(e, (uint32_t)(10 + i));
        p32(e + 4, 3);
        p32(e + 8, (uint32_t)(0x5000 + 0x1000 * i));
        p32(e + 0x0c, 2);
        p64(e + 0x10, start + (uint64_t)chunk * (i + 1));
        for (int k = 0; k < 32; k++)
            e[0x18 + k] = (uint8_t)(i * 32 + k);
        p32(e + 0x38, chunk - (uint32_t)i);
    }
    return WIN_SMAP_HEADER + WIN_SMAP_ENTRY * n;
}

#define ENTRY_AT(i, field) (WIN_SMAP_HEADER + WIN_SMAP_ENTRY * (i) + (field))

START_TEST(test_smap)
{
    static uint8_t b[8 + 64 * 10];
    win_smap_entry *e;
    size_t n;
    win_why w;
    size_t len = mk_smap(b, 4, 0, 65536);
    ck_assert_int_eq(win_smap_parse(b, len, 0, &e, &n, &w), 0);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(e[i].seq, 10 + i);
        ck_assert_uint_eq(e[i].container, 3);
        ck_assert_uint_eq(e[i].offset, 0x5000 + 0x1000 * i);
        ck_assert_uint_eq(e[i].generation, 2);
        ck_assert_uint_eq(e[i].end, 65536 * (i + 1));
        ck_assert_uint_eq(e[i].digest[0], (uint8_t)(i * 32));
        ck_assert_uint_eq(e[i].digest[31], (uint8_t)(i * 32 + 31));
        ck_assert_uint_eq(e[i].stored_len, 65536 - i);
    }
    free(e);
    /* a later part of a file: ends from its begin on; chunks of exactly 128 KiB and of 1 byte */
    const uint64_t start = 5ull << 32;
    len = mk_smap(b, 3, start, WIN_CHUNK_MAX);
    ck_assert_int_eq(win_smap_parse(b, len, start, &e, &n, &w), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(e[2].end, start + 3 * WIN_CHUNK_MAX);
    free(e);
    len = mk_smap(b, 1, 0, 1);
    ck_assert_int_eq(win_smap_parse(b, len, 0, &e, &n, &w), 0);
    ck_assert_uint_eq(e[0].end, 1);
    ck_assert_uint_eq(e[0].stored_len, 1);
    free(e);
    /* the 4 bytes after the magic and each entry's last u32 are not read */
    len = mk_smap(b, 2, 0, 1000);
    memset(b + 4, 0xff, 4);
    memset(b + ENTRY_AT(1, 0x3c), 0xff, 4);
    ck_assert_int_eq(win_smap_parse(b, len, 0, &e, &n, &w), 0);
    free(e);
}
END_TEST

START_TEST(test_smap_rejects)
{
    static uint8_t b[8 + 64 * 10];
    win_smap_entry *e = (win_smap_entry *)b;
    size_t n = 77;
    win_why w;
    size_t len;

#define SMAP_REJECT(at, start)                                                                          \
    do {                                                                                                \
        expect(RH_ECORRUPT, at, win_smap_parse(b, len, start, &e, &n, &w), &w);                         \
        ck_assert_ptr_eq(e, (win_smap_entry *)b);                                                       \
        ck_assert_uint_eq(n, 77);                                                                       \
    } while (0)

    len = mk_smap(b, 3, 0, 1000);
    b[0] = 's';
    SMAP_REJECT(0, 0);
    /* lengths that are not 8 + 64 k, k >= 1 */
    mk_smap(b, 3, 0, 1000);
    for (len = 0; len < 8; len++)
        SMAP_REJECT(len, 0);
    len = 8;
    SMAP_REJECT(8, 0);
    len = 8 + 63;
    SMAP_REJECT(8, 0);
    len = 8 + 64 * 2 + 1;
    SMAP_REJECT(8 + 128, 0);
    len = 8 + 64 * 3 - 1;
    SMAP_REJECT(8 + 128, 0);
    /* ends: the first not past start, equal to the one before, going back */
    len = mk_smap(b, 3, 4096, 1000);
    SMAP_REJECT(ENTRY_AT(0, 0x10), 4096 + 1000);
    SMAP_REJECT(ENTRY_AT(0, 0x10), 1ull << 40);
    p64(b + ENTRY_AT(2, 0x10), 4096 + 2000);
    SMAP_REJECT(ENTRY_AT(2, 0x10), 4096);
    p64(b + ENTRY_AT(2, 0x10), 4096 + 1500);
    SMAP_REJECT(ENTRY_AT(2, 0x10), 4096);
    p64(b + ENTRY_AT(2, 0x10), 0);
    SMAP_REJECT(ENTRY_AT(2, 0x10), 4096);
    /* a chunk of more than 128 KiB, first or later; an end that would overflow */
    len = mk_smap(b, 3, 0, WIN_CHUNK_MAX);
    p64(b + ENTRY_AT(0, 0x10), WIN_CHUNK_MAX + 1);
    SMAP_REJECT(ENTRY_AT(0, 0x10), 0);
    len = mk_smap(b, 3, 0, WIN_CHUNK_MAX);
    p64(b + ENTRY_AT(2, 0x10), 2 * WIN_CHUNK_MAX + WIN_CHUNK_MAX + 1);
    SMAP_REJECT(ENTRY_AT(2, 0x10), 0);
    p64(b + ENTRY_AT(2, 0x10), UINT64_MAX);
    SMAP_REJECT(ENTRY_AT(2, 0x10), 0);
    /* a stored size of 0 */
    len = mk_smap(b, 3, 0, 1000);
    p32(b + ENTRY_AT(1, 0x38), 0);
    SMAP_REJECT(ENTRY_AT(1, 0x38), 0);
#undef SMAP_REJECT
}
END_TEST

START_TEST(test_smap_nomem)
{
    static uint8_t b[8 + 64 * 4];
    size_t len = mk_smap(b, 4, 0, 1000);
    win_smap_entry *e = NULL;
    size_t n = 77;
    mem_fail_after(0);
    int rc = win_smap_parse(b, len, 0, &e, &n, NULL);
    mem_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_ptr_null(e);
    ck_assert_uint_eq(n, 77);
}
END_TEST

/* SHA-512's published test vectors ("abc" from FIPS 180-2, and the empty string), first 32 bytes. */
START_TEST(test_digest)
{
    uint8_t d[WIN_DIGEST_LEN], want[WIN_DIGEST_LEN];
    ck_assert_int_eq(win_digest("abc", 3, d), 0);
    unhex("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a", want, sizeof(want));
    ck_assert_mem_eq(d, want, WIN_DIGEST_LEN);
    ck_assert_int_eq(win_digest("", 0, d), 0);
    unhex("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce", want, sizeof(want));
    ck_assert_mem_eq(d, want, WIN_DIGEST_LEN);
    mem_fail_after(0);
    int rc = win_digest("abc", 3, d);
    mem_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wincontainer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_cthr_real);
    tcase_add_test(tc, test_cthr_usn);
    tcase_add_test(tc, test_rrtl);
    tcase_add_test(tc, test_record_real);
    tcase_add_test(tc, test_record_built);
    tcase_add_test(tc, test_record_rejects);
    tcase_add_test(tc, test_smap);
    tcase_add_test(tc, test_smap_rejects);
    tcase_add_test(tc, test_smap_nomem);
    tcase_add_test(tc, test_digest);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}

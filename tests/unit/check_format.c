/*
 * check_format.c — the format seam's own logic (store/format.c, store/format_windows.c), on maps built
 * by hand: joining a stub's parts into one map (store_stub_join), and turning a Windows Smap payload
 * into a map with locations (winstore_smap_to_map), where each chunk's stored size must not exceed its
 * length and a part starts where its reference says.
 */
#include "config.h"

#include <string.h>

#include "common/util.h"
#include "compress/compress.h"
#include "store/format.h"
#include "store/format_windows.h"
#include "windows/wincontainer.h"
#include "testutil.h"

/* A map of n chunks of `len` bytes from file offset `start`, with locations (container = start's MiB). */
static streammap *part(uint64_t start, size_t n, uint64_t len, bool loc)
{
    streammap *m = xcalloc(1, sizeof(*m));
    m->n = n;
    m->e = xcalloc(n, sizeof(*m->e));
    m->start = xcalloc(n, sizeof(*m->start));
    m->loc = loc ? xcalloc(n, sizeof(*m->loc)) : NULL;
    for (size_t i = 0; i < n; i++) {
        m->e[i].length = len;
        m->e[i].digest[0] = (uint8_t)(start + i);
        m->start[i] = start + i * len;
        if (loc)
            m->loc[i] = (index_loc){ .container = (uint32_t)(start >> 20), .offset = 0x5000 + i * 0x1000,
                                     .stored_len = (uint32_t)len, .raw_len = (uint32_t)len, .seq = (uint32_t)i };
    }
    m->size = start + n * len;
    return m;
}

START_TEST(test_join_parts)
{
    streammap *p[3] = { part(0, 2, 100, true), part(200, 3, 50, true), part(350, 1, 10, true) };
    streammap *m;
    ck_assert_int_eq(store_stub_join((const streammap *const *)p, 3, 360, &m), 0);
    ck_assert_uint_eq(m->n, 6);
    ck_assert_uint_eq(m->size, 360);
    const uint64_t starts[6] = { 0, 100, 200, 250, 300, 350 };
    const uint8_t tags[6] = { 0, 1, 200, 201, 202, (uint8_t)350 }; /* part(): its start + the index in it */
    for (size_t i = 0; i < 6; i++) {
        ck_assert_uint_eq(m->start[i], starts[i]);
        ck_assert_uint_eq(m->e[i].digest[0], tags[i]);
    }
    ck_assert_uint_eq(m->loc[3].container, 0);
    ck_assert_uint_eq(m->loc[3].seq, 1);  /* the second chunk of the second part */
    ck_assert_uint_eq(streammap_find(m, 349), 4);
    ck_assert_uint_eq(streammap_find(m, 350), 5);
    streammap_free(m);
    for (int i = 0; i < 3; i++)
        streammap_free(p[i]);
}
END_TEST

START_TEST(test_join_refuses)
{
    streammap *m = NULL;
    streammap *gap[2] = { part(0, 2, 100, true), part(201, 1, 10, true) };
    ck_assert_int_eq(store_stub_join((const streammap *const *)gap, 2, 211, &m), RH_ECORRUPT);
    streammap *overlap[2] = { part(0, 2, 100, true), part(150, 1, 100, true) };
    ck_assert_int_eq(store_stub_join((const streammap *const *)overlap, 2, 250, &m), RH_ECORRUPT);
    streammap *ok[2] = { part(0, 2, 100, true), part(200, 1, 10, true) };
    ck_assert_int_eq(store_stub_join((const streammap *const *)ok, 2, 211, &m), RH_ECORRUPT); /* size */
    ck_assert_int_eq(store_stub_join((const streammap *const *)ok, 2, 209, &m), RH_ECORRUPT);
    streammap *mixed[2] = { part(0, 2, 100, true), part(200, 1, 10, false) };
    ck_assert_int_eq(store_stub_join((const streammap *const *)mixed, 2, 210, &m), RH_ECORRUPT);
    ck_assert_ptr_null(m);
    for (int i = 0; i < 2; i++) {
        streammap_free(gap[i]), streammap_free(overlap[i]), streammap_free(ok[i]), streammap_free(mixed[i]);
    }
}
END_TEST

/* An Smap payload of n entries: chunk i ends at start + (i + 1) * len, stored[i] bytes stored. */
static size_t smap(uint8_t *out, uint64_t start, size_t n, uint32_t len, const uint32_t *stored)
{
    memset(out, 0, WIN_SMAP_HEADER + n * WIN_SMAP_ENTRY);
    memcpy(out, "Smap", 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = out + WIN_SMAP_HEADER + i * WIN_SMAP_ENTRY;
        put_le32(e, (uint32_t)i + 7);             /* seq */
        put_le32(e + 4, 3);                       /* data container */
        put_le32(e + 8, 0x5000 + (uint32_t)i * 0x100); /* offset */
        put_le32(e + 12, 1);                      /* generation */
        put_le64(e + 16, start + (i + 1) * len);  /* cumulative end */
        e[24] = (uint8_t)i;                       /* digest */
        put_le32(e + 56, stored[i]);
    }
    return WIN_SMAP_HEADER + n * WIN_SMAP_ENTRY;
}

START_TEST(test_smap_to_map)
{
    uint8_t buf[WIN_SMAP_HEADER + 3 * WIN_SMAP_ENTRY];
    const uint32_t stored[3] = { 4096, 1000, 4096 }; /* the second is compressed */
    size_t n = smap(buf, 1 << 20, 3, 4096, stored);
    streammap *m;
    ck_assert_int_eq(winstore_smap_to_map(buf, n, 1 << 20, &m), 0);
    ck_assert_uint_eq(m->n, 3);
    ck_assert_uint_eq(m->start[0], 1 << 20);
    ck_assert_uint_eq(m->size, (1 << 20) + 3 * 4096);
    ck_assert_uint_eq(m->loc[1].codec, CODEC_XPRESS);
    ck_assert_uint_eq(m->loc[0].codec, CODEC_RAW);
    ck_assert_uint_eq(m->loc[1].seq, 8);
    ck_assert_uint_eq(m->loc[2].offset, 0x5200);
    ck_assert_uint_eq(m->loc[2].raw_len, 4096);
    ck_assert_uint_eq(m->e[2].digest[0], 2);
    streammap_free(m);
    /* The same payload read as a whole file's map: its first chunk would be 1 MiB + 4 KiB long. */
    ck_assert_int_eq(winstore_smap_to_map(buf, n, 0, &m), RH_ECORRUPT);
}
END_TEST

START_TEST(test_smap_stored_larger)
{
    uint8_t buf[WIN_SMAP_HEADER + 2 * WIN_SMAP_ENTRY];
    const uint32_t stored[2] = { 4096, 4097 };
    size_t n = smap(buf, 0, 2, 4096, stored);
    streammap *m = NULL;
    ck_assert_int_eq(winstore_smap_to_map(buf, n, 0, &m), RH_ECORRUPT);
    ck_assert_ptr_null(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_join_parts);
    tcase_add_test(tc, test_join_refuses);
    tcase_add_test(tc, test_smap_to_map);
    tcase_add_test(tc, test_smap_stored_larger);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

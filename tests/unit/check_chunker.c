/*
 * check_chunker.c — tests of the FastCDC chunker: the test vectors of doc/format.md, determinism under
 * streaming, size bounds and end of input, every cut point against a fresh start and a byte-by-byte
 * reference written from the specification, resistance to boundary shift, the normalized size
 * distribution, and parameter checking.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunk/chunker.h"
#include "hash/hash.h"
#include "testutil.h"

#define BIG (64u * 1024 * 1024)
#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const chunker_params defaults = {
    .min_size = CHUNKER_MIN_DEFAULT,
    .avg_size = CHUNKER_AVG_DEFAULT,
    .max_size = CHUNKER_MAX_DEFAULT,
    .normalization = CHUNKER_NORMALIZATION_DEFAULT,
    .seed = 0,
};

/* A list of chunk lengths. */
typedef struct cuts {
    size_t n, cap;
    size_t *len;
} cuts;

static void cuts_push(cuts *c, size_t v)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->len = realloc(c->len, c->cap * sizeof(*c->len));
        ck_assert_ptr_nonnull(c->len);
    }
    c->len[c->n++] = v;
}

static void cuts_free(cuts *c) { free(c->len); }

/* Cuts buf[0..len) the plain way: the whole rest of the buffer in every call, eof set. */
static cuts cut_all(const chunker *c, const uint8_t *buf, size_t len)
{
    cuts r = { 0 };
    size_t off = 0;
    while (off < len) {
        size_t n = chunker_next(c, buf + off, len - off, true);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_le(n, len - off);
        cuts_push(&r, n);
        off += n;
    }
    return r;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Cuts buf[0..len) like a streaming reader does: the data "arrives" in pieces of random size, and the
 * chunker sees only what has arrived since the last cut, with eof only once everything has arrived.
 */
static cuts cut_streaming(const chunker *c, const uint8_t *buf, size_t len, uint64_t seed)
{
    cuts r = { 0 };
    size_t off = 0, avail = 0;
    uint64_t rng = seed | 1;
    while (off < len) {
        size_t n = chunker_next(c, buf + off, avail - off, avail == len);
        if (n == 0) {
            ck_assert_uint_lt(avail, len);
            /* Mostly small pieces (as from a pipe), now and then a large read. */
            uint64_t x = xorshift(&rng);
            size_t step = (x & 7) == 0 ? 1 + x % (300 * 1024) : 1 + (x >> 8) % 4096;
            avail = avail + step > len ? len : avail + step;
            continue;
        }
        ck_assert_uint_le(n, avail - off);
        cuts_push(&r, n);
        off += n;
    }
    return r;
}

static void assert_cuts_equal(const cuts *a, const cuts *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        ck_assert_msg(a->len[i] == b->len[i], "chunk %zu: %zu != %zu", i, a->len[i], b->len[i]);
}

/*
 * The cut rule as doc/format.md states it, one byte at a time with no shortcuts, for comparison with
 * the optimized chunker. Returns the chunk length for buf[0..len) with eof.
 */
static size_t reference_cut(const chunker *c, const uint8_t *buf, size_t len)
{
    const chunker_params *p = &c->p;
    if (len <= p->min_size)
        return len;
    uint64_t h = 0;
    for (size_t i = p->min_size; i < len && i < p->max_size; i++) {
        h = (h << 1) + c->gear[buf[i]];
        uint64_t mask = i < p->avg_size ? c->mask_s : c->mask_l;
        if ((h & mask) == 0)
            return i + 1;
    }
    return len < p->max_size ? len : p->max_size;
}

/* The splitmix64 stream of doc/format.md's test vectors, little-endian. */
static void fill_vector_data(uint8_t *buf, size_t len)
{
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t z = (s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        for (int k = 0; k < 8; k++)
            buf[i + k] = (uint8_t)(z >> (8 * k));
    }
}

START_TEST(test_vectors)
{
    chunker c;
    chunker_init(&c, &defaults);
    ck_assert_uint_eq(c.gear[0], UINT64_C(0x151c9fee9b3523bc));
    ck_assert_uint_eq(c.gear[1], UINT64_C(0x0acf759fe079e43b));
    ck_assert_uint_eq(c.gear[255], UINT64_C(0xb56ee655f215f780));
    ck_assert_uint_eq(c.mask_s, UINT64_C(0xffffc00000000000));
    ck_assert_uint_eq(c.mask_l, UINT64_C(0xfffc000000000000));

    chunker_params p1 = defaults;
    p1.seed = 1;
    chunker c1;
    chunker_init(&c1, &p1);
    ck_assert_uint_eq(c1.gear[0], UINT64_C(0xdb2da0b5235e1775));

    size_t len = 1024 * 1024;
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    fill_vector_data(buf, len);
    static const uint8_t head[] = { 0xaf, 0xcd, 0x1d, 0x7b, 0x39, 0xa8, 0x20, 0xe2,
                                    0xf4, 0x65, 0xb9, 0xa1, 0x6a, 0x9e, 0x78, 0x6e };
    ck_assert_mem_eq(buf, head, sizeof(head));

    static const size_t want[] = { 19883, 75415, 92267, 67428, 68492, 68628, 74899, 81893,
                                   58380, 95257, 66425, 74706, 57415, 69281, 78207 };
    cuts got = cut_all(&c, buf, len);
    ck_assert_uint_eq(got.n, N_ELEMS(want));
    for (size_t i = 0; i < got.n; i++)
        ck_assert_uint_eq(got.len[i], want[i]);
    cuts_free(&got);

    /* Small sizes, normalization 1, seed 7, over the first 256 KiB. */
    chunker_params p2 = { .min_size = 256, .avg_size = 1024, .max_size = 4096, .normalization = 1,
                          .seed = 7 };
    chunker c2;
    chunker_init(&c2, &p2);
    ck_assert_uint_eq(c2.mask_s, UINT64_C(0xffe0000000000000));
    ck_assert_uint_eq(c2.mask_l, UINT64_C(0xff80000000000000));
    static const size_t want_head[] = { 1032, 258, 1171, 2206, 2143, 1122, 1561, 369, 1313, 1500 };
    static const size_t want_tail[] = { 1085, 1170, 455, 1641, 74 };
    got = cut_all(&c2, buf, 256 * 1024);
    ck_assert_uint_eq(got.n, 205);
    for (size_t i = 0; i < N_ELEMS(want_head); i++)
        ck_assert_uint_eq(got.len[i], want_head[i]);
    for (size_t i = 0; i < N_ELEMS(want_tail); i++)
        ck_assert_uint_eq(got.len[got.n - N_ELEMS(want_tail) + i], want_tail[i]);
    cuts_free(&got);
    free(buf);
}
END_TEST

START_TEST(test_determinism_streaming)
{
    uint8_t *buf = malloc(BIG);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, BIG, 0x1234);
    chunker c;
    chunker_init(&c, &defaults);

    cuts a = cut_all(&c, buf, BIG);
    cuts b = cut_all(&c, buf, BIG);
    assert_cuts_equal(&a, &b);
    ck_assert_uint_gt(a.n, 500);

    cuts s1 = cut_streaming(&c, buf, BIG, 1);
    assert_cuts_equal(&a, &s1);
    /* A second, different piece sequence over a smaller prefix. */
    cuts s2 = cut_streaming(&c, buf, BIG / 8, 99);
    cuts a2 = cut_all(&c, buf, BIG / 8);
    assert_cuts_equal(&a2, &s2);

    /* The same data elsewhere in memory, at an odd address, is cut the same way. */
    uint8_t *copy = malloc(BIG / 8 + 3);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy + 3, buf, BIG / 8);
    cuts a3 = cut_all(&c, copy + 3, BIG / 8);
    assert_cuts_equal(&a2, &a3);

    cuts_free(&a);
    cuts_free(&b);
    cuts_free(&s1);
    cuts_free(&s2);
    cuts_free(&a2);
    cuts_free(&a3);
    free(copy);
    free(buf);
}
END_TEST

START_TEST(test_bounds_and_eof)
{
    chunker c;
    chunker_init(&c, &defaults);
    const size_t min = defaults.min_size, max = defaults.max_size;

    /* Random data: every chunk but the last within (min, max]; the lengths add up. */
    size_t len = 16u * 1024 * 1024 + 12345;
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, len, 77);
    cuts a = cut_all(&c, buf, len);
    size_t sum = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (i + 1 < a.n) {
            ck_assert_uint_gt(a.len[i], min);
            ck_assert_uint_le(a.len[i], max);
        }
        sum += a.len[i];
    }
    ck_assert_uint_eq(sum, len);
    ck_assert_uint_le(a.len[a.n - 1], max);
    cuts_free(&a);

    /* Empty input: nothing to cut, with or without eof. */
    ck_assert_uint_eq(chunker_next(&c, buf, 0, true), 0);
    ck_assert_uint_eq(chunker_next(&c, NULL, 0, true), 0);
    ck_assert_uint_eq(chunker_next(&c, buf, 0, false), 0);

    /* Up to min bytes: one whole chunk at eof, "more data" otherwise. */
    ck_assert_uint_eq(chunker_next(&c, buf, 1, true), 1);
    ck_assert_uint_eq(chunker_next(&c, buf, min, true), min);
    ck_assert_uint_eq(chunker_next(&c, buf, min, false), 0);
    ck_assert_uint_eq(chunker_next(&c, buf, 1, false), 0);

    /* More than min but no cut yet: the rest at eof, "more data" otherwise. */
    size_t first = chunker_next(&c, buf, len, true);
    ck_assert_uint_gt(first, min + 1);
    ck_assert_uint_eq(chunker_next(&c, buf, first - 1, true), first - 1);
    ck_assert_uint_eq(chunker_next(&c, buf, first - 1, false), 0);
    ck_assert_uint_eq(chunker_next(&c, buf, first, false), first);

    /* Zeros never match for the default table (the hash settles at -gear[0]): cut at max. */
    memset(buf, 0, 3 * max);
    ck_assert_uint_eq(reference_cut(&c, buf, 3 * max), max);
    ck_assert_uint_eq(chunker_next(&c, buf, 3 * max, false), max);
    ck_assert_uint_eq(chunker_next(&c, buf, 3 * max, true), max);
    ck_assert_uint_eq(chunker_next(&c, buf, max, false), max);
    ck_assert_uint_eq(chunker_next(&c, buf, max - 1, false), 0);
    ck_assert_uint_eq(chunker_next(&c, buf, max - 1, true), max - 1);
    ck_assert_uint_eq(chunker_next(&c, buf, max + 1, true), max);
    free(buf);
}
END_TEST

/*
 * Every cut point, checked from a fresh start on a copy of the data (at varying alignment) and against
 * the reference rule; counts chunks that ended by the loose mask and by max_size.
 */
static void check_fresh_start(const uint8_t *buf, size_t len, const chunker_params *p,
                              size_t *ret_after_avg, size_t *ret_at_max)
{
    chunker c;
    chunker_init(&c, p);
    cuts a = cut_all(&c, buf, len);
    ck_assert_uint_gt(a.n, 2000);

    uint8_t *scratch = malloc(2 * p->max_size + 8);
    ck_assert_ptr_nonnull(scratch);
    size_t off = 0, at_max = 0, after_avg = 0;
    for (size_t i = 0; i < a.n; off += a.len[i], i++) {
        size_t rest = len - off, cut = a.len[i];
        size_t window = rest < 2 * p->max_size ? rest : 2 * p->max_size;
        uint8_t *copy = scratch + (i % 8);
        memcpy(copy, buf + off, window);

        ck_assert_uint_eq(reference_cut(&c, copy, window), cut);
        ck_assert_uint_eq(chunker_next(&c, copy, window, window == rest), cut);
        if (i + 1 == a.n)
            continue;
        /* The chunk alone is enough to find its end; one byte less is not. */
        ck_assert_uint_eq(chunker_next(&c, copy, cut, false), cut);
        ck_assert_uint_eq(chunker_next(&c, copy, cut - 1, false), 0);
        at_max += cut == p->max_size;
        after_avg += cut > p->avg_size;
    }
    ck_assert_uint_eq(off, len);
    *ret_after_avg = after_avg;
    *ret_at_max = at_max;
    cuts_free(&a);
    free(scratch);
}

START_TEST(test_fresh_start)
{
    size_t len = 32u * 1024 * 1024;
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, len, 4242);
    size_t after_avg, at_max;

    /* Smaller chunks than the default, so that there are many cut points; both masks cut. */
    chunker_params p = { .min_size = 2048, .avg_size = 8192, .max_size = 32768, .normalization = 2 };
    check_fresh_start(buf, len, &p, &after_avg, &at_max);
    ck_assert_uint_gt(after_avg, 100);

    /* A max just above avg, so that many chunks end at max_size. */
    chunker_params q = { .min_size = 1024, .avg_size = 4096, .max_size = 6144, .normalization = 1,
                         .seed = 3 };
    check_fresh_start(buf, len, &q, &after_avg, &at_max);
    ck_assert_uint_gt(at_max, 100);
    free(buf);
}
END_TEST

typedef struct digest {
    uint8_t d[HASH_LEN];
} digest;

static int digest_cmp(const void *a, const void *b) { return memcmp(a, b, HASH_LEN); }

/* SHA-256 of every chunk, in chunk order. The digest covers the content and so the length. */
static digest *chunk_digests(const uint8_t *buf, const cuts *a)
{
    digest *d = calloc(a->n, sizeof(*d));
    ck_assert_ptr_nonnull(d);
    size_t off = 0;
    for (size_t i = 0; i < a->n; off += a->len[i], i++)
        xhash_sha256(buf + off, a->len[i], d[i].d);
    return d;
}

/* How many chunks of `orig` are not chunks of `mod` after an edit of mod. */
static size_t chunks_lost(const chunker *c, const uint8_t *orig, size_t olen, const uint8_t *mod,
                          size_t mlen, size_t *ret_total)
{
    cuts a = cut_all(c, orig, olen), b = cut_all(c, mod, mlen);
    digest *da = chunk_digests(orig, &a), *db = chunk_digests(mod, &b);
    qsort(db, b.n, sizeof(*db), digest_cmp);
    size_t lost = 0;
    for (size_t i = 0; i < a.n; i++)
        lost += bsearch(&da[i], db, b.n, sizeof(*db), digest_cmp) == NULL;
    *ret_total = a.n;
    free(da);
    free(db);
    cuts_free(&a);
    cuts_free(&b);
    return lost;
}

START_TEST(test_boundary_shift)
{
    uint8_t *orig = malloc(BIG), *mod = malloc(BIG + 7);
    ck_assert_ptr_nonnull(orig);
    ck_assert_ptr_nonnull(mod);
    test_fill_random(orig, BIG, 555);
    chunker c;
    chunker_init(&c, &defaults);
    size_t total;

    /* Insert 7 bytes near the start: only the chunks around the edit change. */
    size_t at = 1000;
    memcpy(mod, orig, at);
    memcpy(mod + at, "INSERTD", 7);
    memcpy(mod + at + 7, orig + at, BIG - at);
    size_t lost = chunks_lost(&c, orig, BIG, mod, BIG + 7, &total);
    ck_assert_uint_gt(total, 500);
    ck_assert_uint_ge(lost, 1); /* the edited chunk itself must differ */
    ck_assert_uint_le(lost, 3);

    /* Delete 5 bytes in the middle. */
    at = BIG / 2 + 12345;
    memcpy(mod, orig, at);
    memcpy(mod + at, orig + at + 5, BIG - at - 5);
    lost = chunks_lost(&c, orig, BIG, mod, BIG - 5, &total);
    ck_assert_uint_ge(lost, 1);
    ck_assert_uint_le(lost, 3);

    free(orig);
    free(mod);
}
END_TEST

typedef struct size_stats {
    double mean, var, in_band; /* in_band: fraction of chunks in [min, 2 * avg] */
    size_t n;
} size_stats;

static size_stats stats_for(const uint8_t *buf, size_t len, const chunker_params *p)
{
    chunker c;
    chunker_init(&c, p);
    cuts a = cut_all(&c, buf, len);
    size_stats s = { 0 };
    size_t n = a.n - 1; /* the last chunk is cut by eof, not by the rule */
    double sum = 0, sq = 0;
    size_t band = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)a.len[i];
        sum += v;
        sq += v * v;
        band += a.len[i] >= p->min_size && a.len[i] <= 2 * (size_t)p->avg_size;
    }
    s.n = n;
    s.mean = sum / n;
    s.var = sq / n - s.mean * s.mean;
    s.in_band = (double)band / n;
    cuts_free(&a);
    return s;
}

START_TEST(test_distribution)
{
    uint8_t *buf = malloc(BIG);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, BIG, 31337);

    size_stats nc2 = stats_for(buf, BIG, &defaults);
    ck_assert_uint_gt(nc2.n, 500);
    ck_assert_double_ge(nc2.mean, 0.6 * defaults.avg_size);
    ck_assert_double_le(nc2.mean, 1.6 * defaults.avg_size);
    ck_assert_double_ge(nc2.in_band, 0.9);

    /* Without normalization the sizes spread much wider; with it they gather around avg. */
    chunker_params p0 = defaults;
    p0.normalization = 0;
    size_stats nc0 = stats_for(buf, BIG, &p0);
    ck_assert_double_ge(nc0.mean, 0.6 * defaults.avg_size);
    ck_assert_double_le(nc0.mean, 1.6 * defaults.avg_size);
    ck_assert_double_gt(nc2.in_band, nc0.in_band);
    ck_assert_double_lt(nc2.var, 0.5 * nc0.var); /* sd below 0.7x */
    free(buf);
}
END_TEST

START_TEST(test_seed)
{
    chunker a, b, d;
    chunker_params p = defaults;
    chunker_init(&a, &p);
    chunker_init(&d, &p);
    ck_assert_int_eq(memcmp(&a, &d, sizeof(a)), 0);
    p.seed = 0xdeadbeef;
    chunker_init(&b, &p);
    ck_assert_int_ne(memcmp(a.gear, b.gear, sizeof(a.gear)), 0);
    ck_assert_uint_eq(a.mask_s, b.mask_s);

    size_t len = 8u * 1024 * 1024;
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    test_fill_random(buf, len, 8);
    cuts ca = cut_all(&a, buf, len), cb = cut_all(&b, buf, len);
    ck_assert(ca.len[0] != cb.len[0] || ca.len[1] != cb.len[1] || ca.n != cb.n);
    cuts_free(&ca);
    cuts_free(&cb);
    free(buf);
}
END_TEST

START_TEST(test_params_check)
{
    ck_assert_int_eq(chunker_params_check(&defaults), 0);
    ck_assert_int_eq(chunker_params_check(NULL), -EINVAL);

    static const chunker_params good[] = {
        { 64, 128, 129, 3, 0 },
        { 64, 128, 129, 0, 1 },
        { 1024, 4096, 64u * 1024 * 1024, 1, 0 },
        { 32u * 1024 * 1024 - 1, 32u * 1024 * 1024, 64u * 1024 * 1024, 3, UINT64_MAX },
    };
    for (size_t i = 0; i < N_ELEMS(good); i++)
        ck_assert_msg(chunker_params_check(&good[i]) == 0, "good[%zu] rejected", i);

    static const chunker_params bad[] = {
        { 16384, 65535, 262144, 2, 0 },               /* avg not a power of two */
        { 16384, 98304, 262144, 2, 0 },               /* avg not a power of two */
        { 0, 0, 0, 0, 0 },                            /* all zero */
        { 63, 128, 256, 2, 0 },                       /* min < 64 */
        { 0, 128, 256, 2, 0 },                        /* min 0 */
        { 65536, 65536, 262144, 2, 0 },               /* min == avg */
        { 131072, 65536, 262144, 2, 0 },              /* min > avg */
        { 16384, 65536, 65536, 2, 0 },                /* avg == max */
        { 16384, 65536, 32768, 2, 0 },                /* max < avg */
        { 16384, 65536, 64u * 1024 * 1024 + 1, 2, 0 }, /* max > 64 MiB */
        { 16384, 65536, UINT32_MAX, 2, 0 },           /* max > 64 MiB */
        { 16384, 65536, 262144, 4, 0 },               /* normalization > 3 */
        { 16384, 65536, 262144, UINT32_MAX, 0 },      /* normalization > 3 */
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++)
        ck_assert_msg(chunker_params_check(&bad[i]) == -EINVAL, "bad[%zu] accepted", i);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chunker");
    TCase *tc = tcase_create("spec");
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_params_check);
    tcase_add_test(tc, test_seed);
    suite_add_tcase(s, tc);

    tc = tcase_create("cuts");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_determinism_streaming);
    tcase_add_test(tc, test_bounds_and_eof);
    tcase_add_test(tc, test_fresh_start);
    suite_add_tcase(s, tc);

    tc = tcase_create("quality");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_boundary_shift);
    tcase_add_test(tc, test_distribution);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }

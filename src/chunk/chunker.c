/*
 * chunker.c — FastCDC content-defined chunking (Xia et al., USENIX ATC 2016; IEEE TPDS 2020) with a
 * 64-bit gear hash and normalized chunking.
 *
 * The gear hash is h = (h << 1) + gear[byte]; bit j of h depends only on the last j + 1 bytes, so the
 * masks take their bits from the top of the word, where every bit has seen the most bytes (the paper's
 * masks spread their bits over the upper part of the word for the same reason). The hash restarts at zero
 * at byte min_size of every chunk; bytes before it are skipped unread. Until the chunk is avg_size long
 * the stricter mask_s (more bits) makes a cut unlikely, after it the looser mask_l makes one likely; that
 * pulls chunk sizes towards avg_size ("normalized chunking"). A chunk that reaches max_size is cut there.
 *
 * Everything here is part of the store format: doc/format.md ("Chunking") specifies the gear table, the
 * masks and the cut rule byte for byte, with test vectors. Changing any of it changes every chunk
 * boundary and so breaks deduplication against existing stores.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "chunk/chunker.h"

/* The splitmix64 state starts at this constant XOR params.seed; it is the ASCII bytes "rehydrat". */
#define GEAR_SEED_BASE UINT64_C(0x7265687964726174)

static uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* log2 of a power of two; the caller has checked that v is one. */
static unsigned log2_pow2(uint32_t v) { return (unsigned)__builtin_ctz(v); }

/* A mask with its `bits` most significant bits set (1 <= bits <= 64). */
static uint64_t top_mask(unsigned bits) { return ~UINT64_C(0) << (64 - bits); }

int chunker_params_check(const chunker_params *p)
{
    if (!p)
        return -EINVAL;
    if (p->avg_size == 0 || (p->avg_size & (p->avg_size - 1)) != 0)
        return -EINVAL;
    if (p->min_size < 64 || p->min_size >= p->avg_size || p->avg_size >= p->max_size ||
        p->max_size > 64u * 1024 * 1024)
        return -EINVAL;
    if (p->normalization > 3)
        return -EINVAL;
    /* With avg >= 128 (since 64 <= min < avg) and n <= 3 these always hold; kept so that a later
     * widening of the ranges cannot silently make an empty or overfull mask. */
    unsigned b = log2_pow2(p->avg_size);
    if (b <= p->normalization || b + p->normalization > 64)
        return -EINVAL;
    return 0;
}

void chunker_init(chunker *c, const chunker_params *p)
{
    memset(c, 0, sizeof(*c));
    c->p = *p;
    unsigned b = log2_pow2(p->avg_size);
    c->mask_s = top_mask(b + p->normalization);
    c->mask_l = top_mask(b - p->normalization);
    uint64_t state = GEAR_SEED_BASE ^ p->seed;
    for (size_t i = 0; i < 256; i++)
        c->gear[i] = splitmix64_next(&state);
}

/*
 * Rolls the hash over buf[i..end) and returns the index of the first byte after which
 * (h & mask) == 0, or end if there is none. Per byte: a load, a table load, one shift-add (a single
 * `lea` on x86-64, the only loop-carried dependency) and the mask test. Unrolling by four or FastCDC
 * 2020's two-bytes-per-step trick measured no faster here, because that one-cycle dependency is the
 * bound; the trick would also need the mask's top bit free. Inlined so that h and the mask stay in
 * registers.
 */
static inline __attribute__((always_inline)) size_t scan(const uint64_t *restrict gear,
                                                         const uint8_t *restrict buf, size_t i,
                                                         size_t end, uint64_t *hp, uint64_t mask)
{
    uint64_t h = *hp;
    for (; i < end; i++) {
        h = (h << 1) + gear[buf[i]];
        if (__builtin_expect(!(h & mask), 0))
            break;
    }
    *hp = h;
    return i;
}

size_t chunker_next(const chunker *c, const uint8_t *buf, size_t len, bool eof)
{
    size_t min = c->p.min_size, avg = c->p.avg_size, max = c->p.max_size;

    if (len <= min)
        return eof ? len : 0;
    size_t n = len < max ? len : max;
    size_t normal = n < avg ? n : avg;
    uint64_t h = 0;

    /* Bytes min..avg-1 are tested with the strict mask, bytes avg..max-1 with the loose one. A match
     * on the byte at index i ends the chunk after it: the chunk is i + 1 bytes long. */
    size_t i = scan(c->gear, buf, min, normal, &h, c->mask_s);
    if (i < normal)
        return i + 1;
    i = scan(c->gear, buf, normal, n, &h, c->mask_l);
    if (i < n)
        return i + 1;
    if (n == max)
        return max;
    return eof ? len : 0;
}

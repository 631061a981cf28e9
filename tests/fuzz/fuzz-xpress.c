/*
 * fuzz-xpress.c — MS-XCA plain LZ77 (src/compress/xpress.c), the compression of Windows dedup chunks:
 * xpress_decompress on arbitrary streams, and a round trip through xpress_compress.
 *
 * Input: a 3-byte little-endian raw length (modulo 256 KiB + 1: up to twice a Windows chunk), then
 * the stream. The stream is decoded into a buffer of exactly that length, so that ASan sees any write
 * past it; a success must be repeatable and must not depend on input past what the decoder needed (a
 * second decode with one more trailing byte gives the same bytes). Then the stream bytes, taken as data,
 * are compressed (into exactly xpress_compress_bound bytes, and into a buffer one byte short of what
 * the stream needs, which must fail with -ENOSPC) and decoded back: the round trip must give the data.
 */
#include "config.h"

#include "common/util.h"
#include "compress/xpress.h"
#include "fuzz.h"

#define RAW_MAX ((size_t)1 << 18)

static void decode(const uint8_t *s, size_t n, size_t raw_len)
{
    uint8_t *out = malloc(raw_len ? raw_len : 1);
    if (!out)
        abort();
    int r = xpress_decompress(s, n, out, raw_len);
    FUZZ_ASSERT(r == 0 || r == RH_ECORRUPT);
    if (r == 0) {
        /* One more byte of input changes nothing: the decoder stopped at raw_len. */
        uint8_t *more = malloc(n + 1), *again = malloc(raw_len ? raw_len : 1);
        if (!more || !again)
            abort();
        if (n)
            memcpy(more, s, n);
        more[n] = 0xa5;
        FUZZ_ASSERT(xpress_decompress(more, n + 1, again, raw_len) == 0);
        FUZZ_ASSERT(raw_len == 0 || memcmp(out, again, raw_len) == 0);
        free(more);
        free(again);
    }
    free(out);
}

static void roundtrip(const uint8_t *data, size_t n)
{
    size_t cap = xpress_compress_bound(n), len = 0;
    uint8_t *c = malloc(cap);
    if (!c)
        abort();
    FUZZ_ASSERT(xpress_compress(data, n, c, cap, &len) == 0);
    FUZZ_ASSERT(len >= 4 && len <= cap);
    uint8_t *back = malloc(n ? n : 1);
    if (!back)
        abort();
    FUZZ_ASSERT(xpress_decompress(c, len, back, n) == 0);
    FUZZ_ASSERT(n == 0 || memcmp(back, data, n) == 0);
    free(back);
    /* One byte short: -ENOSPC, and nothing written past the smaller buffer. */
    uint8_t *small = malloc(len - 1 ? len - 1 : 1);
    if (!small)
        abort();
    size_t untouched = 7;
    FUZZ_ASSERT(xpress_compress(data, n, small, len - 1, &untouched) == -ENOSPC && untouched == 7);
    free(small);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t raw_len = (size_t)(data[0] | data[1] << 8 | data[2] << 16) % (RAW_MAX + 1);
    decode(data + 3, size - 3, raw_len);
    roundtrip(data + 3, size - 3);
    return 0;
}

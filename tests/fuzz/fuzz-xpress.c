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
 * xpress_decompress_to_end (length unknown) decodes the same stream into a buffer of exactly that length
 * as its bound: a success must agree with xpress_decompress of the length it found, and our compressor's
 * streams must decode to their data's length, not fit one byte less. Every decode is also compared with
 * ref_decode, a symbol-at-a-time decoder written straight from MS-XCA section 2.4: the fast one must give
 * the same result and the same bytes.
 */
#include "config.h"

#include "common/util.h"
#include "compress/xpress.h"
#include "fuzz.h"

#define RAW_MAX ((size_t)1 << 18)


/* MS-XCA 2.4, one flag bit and one byte at a time, with xpress_decompress's rules of acceptance (see
 * xpress.c): stop once raw_len bytes are out; RH_ECORRUPT for input cut short, a match before the start
 * or past raw_len, a 16/32-bit length under 22. */
static int ref_decode(const uint8_t *in, size_t n, uint8_t *out, size_t raw_len)
{
    size_t i = 0, o = 0, nibble = SIZE_MAX;
    uint32_t flags = 0;
    int nflags = 0;
    while (o < raw_len) {
        if (nflags == 0) {
            if (n - i < 4)
                return RH_ECORRUPT;
            flags = get_le32(in + i);
            i += 4;
            nflags = 32;
        }
        nflags--;
        if (!(flags >> nflags & 1)) {
            if (i == n)
                return RH_ECORRUPT;
            out[o++] = in[i++];
            continue;
        }
        if (n - i < 2)
            return RH_ECORRUPT;
        size_t word = get_le16(in + i);
        i += 2;
        size_t off = (word >> 3) + 1;
        uint64_t len = word & 7;
        if (len == 7) {
            if (nibble == SIZE_MAX) {
                if (i == n)
                    return RH_ECORRUPT;
                nibble = i;
                len = in[i++] & 15;
            } else {
                len = in[nibble] >> 4;
                nibble = SIZE_MAX;
            }
            if (len == 15) {
                if (i == n)
                    return RH_ECORRUPT;
                len = in[i++];
                if (len == 255) {
                    if (n - i < 2)
                        return RH_ECORRUPT;
                    len = get_le16(in + i);
                    i += 2;
                    if (len == 0) {
                        if (n - i < 4)
                            return RH_ECORRUPT;
                        len = get_le32(in + i);
                        i += 4;
                    }
                    if (len < 15 + 7)
                        return RH_ECORRUPT;
                    len -= 15 + 7;
                }
                len += 15;
            }
            len += 7;
        }
        len += 3;
        if (off > o || len > raw_len - o)
            return RH_ECORRUPT;
        for (uint64_t k = 0; k < len; k++, o++)
            out[o] = out[o - off];
    }
    return 0;
}

static void decode(const uint8_t *s, size_t n, size_t raw_len)
{
    uint8_t *out = malloc(raw_len ? raw_len : 1);
    if (!out)
        abort();
    int r = xpress_decompress(s, n, out, raw_len);
    FUZZ_ASSERT(r == 0 || r == RH_ECORRUPT);
    uint8_t *ref = malloc(raw_len ? raw_len : 1);
    if (!ref)
        abort();
    FUZZ_ASSERT(ref_decode(s, n, ref, raw_len) == r);
    FUZZ_ASSERT(r != 0 || raw_len == 0 || memcmp(out, ref, raw_len) == 0);
    free(ref);
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

/* Decoded to its end into at most cap bytes: a success gives what xpress_decompress gives for that
 * length. */
static void decode_to_end(const uint8_t *s, size_t n, size_t cap)
{
    uint8_t *out = malloc(cap ? cap : 1);
    if (!out)
        abort();
    size_t len = SIZE_MAX;
    int r = xpress_decompress_to_end(s, n, out, cap, &len);
    FUZZ_ASSERT(r == 0 || r == RH_ECORRUPT || r == -ENOSPC);
    FUZZ_ASSERT(r == 0 ? len <= cap : len == SIZE_MAX);
    if (r == 0) {
        uint8_t *again = malloc(len ? len : 1);
        if (!again)
            abort();
        FUZZ_ASSERT(xpress_decompress(s, n, again, len) == 0);
        FUZZ_ASSERT(len == 0 || memcmp(out, again, len) == 0);
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
    size_t got = 0;
    FUZZ_ASSERT(xpress_decompress_to_end(c, len, back, n, &got) == 0 && got == n);
    FUZZ_ASSERT(n == 0 || memcmp(back, data, n) == 0);
    FUZZ_ASSERT(n == 0 || xpress_decompress_to_end(c, len, back, n - 1, &got) == -ENOSPC);
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
    decode_to_end(data + 3, size - 3, raw_len);
    roundtrip(data + 3, size - 3);
    return 0;
}

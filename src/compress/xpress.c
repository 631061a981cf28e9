/*
 * xpress.c — MS-XCA "plain LZ77", the format Windows Server Data Deduplication compresses chunks with
 * (compression format 2; COMPRESSION_FORMAT_XPRESS of RtlCompressBuffer). Specified publicly in
 * Microsoft's [MS-XCA] "Xpress Compression Algorithm", section 2.3 (compression) and 2.4 (decompression),
 * https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-xca/.
 *
 * The stream is a sequence of 32-bit little-endian flag words, each followed by the symbols its bits
 * describe, most significant bit first: 0 is a literal (one byte, copied), 1 a match. A match starts with
 * a 16-bit little-endian word: offset - 1 in its upper 13 bits (offsets 1..8192), length - 3 in its lower
 * 3. A length field of 7 means the length goes on:
 *
 *   - in a half byte (nibble): the first such match of a pair reads a new byte and uses its low nibble,
 *     the next one uses the high nibble of that same byte (which may lie several symbols back);
 *   - a nibble of 15 goes on in the next byte; a byte of 255 goes on in the next 16 bits, which then hold
 *     the whole length - 3; 16 bits of 0 go on in the next 32 bits, which hold the whole length - 3.
 *
 * So a length is 3 + (0..6), or 3 + 7 + (0..14), or 3 + 7 + 15 + (0..254), or 3 + u16, or 3 + u32. The
 * stream carries no size: the caller knows the decoded length (for dedup chunks, the stream map's end
 * offsets). The compressor of section 2.3 ends the stream with the remaining bits of the last flag word
 * set, and the decoder of 2.4 stops at a 1 bit with no input left.
 *
 * What this decoder accepts: it produces exactly raw_len bytes and stops at the symbol that completes
 * them; it does not look at what follows (normally the last flag word's 1 bits and nothing else). That
 * is what the other decoders of this format do (libfwnt and the ntfs-3g dedup plugin stop when the output
 * is full; Windows' RtlDecompressBuffer is given the output size), and a dedup chunk's integrity is
 * vouched for by its SHA-512 digest of the decoded bytes, not by the stream's tail: being strict here would
 * only risk rejecting a Windows writer whose tail differs from section 2.3's. It rejects (RH_ECORRUPT): a
 * stream that ends (flag word, literal, match word or length bytes) before raw_len bytes; a match that
 * reaches before the output's start or past raw_len (the format never needs either); and a 16/32-bit
 * length smaller than 22, which section 2.4 calls an error (such a value cannot be written by the
 * scheme above).
 *
 * xpress_decompress_to_end is for a stream whose decoded length is not known (a Windows chunk that no
 * stream map names): it decodes until the end that section 2.4 defines, a match flag bit met with no
 * input left (what the compressor of 2.3 writes: the last flag word's unused bits are 1), and returns
 * the length. A stream that runs out anywhere else (a literal or a match cut short, a flag word missing
 * or cut) is RH_ECORRUPT; output beyond the caller's bound is -ENOSPC. The bytes it produces are those
 * xpress_decompress gives for that length: both follow the same symbols.
 *
 * Speed: the decoder takes runs of literals from a flag word's leading zero bits with one memcpy, copies
 * matches at least 8 bytes back in 8-byte steps when the output has room to overshoot, and matches
 * closer than that by doubling the copied pattern; on text it decodes at several hundred MB/s
 * (doc/performance.md, "Windows chunks: the plain-LZ77 decoder").
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "compress/xpress.h"

/* Unaligned fixed-size copies; the compiler makes each a load and a store. */
static inline void copy8(uint8_t *d, const uint8_t *s) { memcpy(d, s, 8); }
static inline void copy16(uint8_t *d, const uint8_t *s) { memcpy(d, s, 16); }

/* Input and output room the fast loop of decode() needs for one step (see there). */
#define FAST_IN 64
#define FAST_OUT 64

/* Copies a match of len bytes from off bytes back, with `room` bytes of output from `out` on; the
 * caller checked that the match fits both ways. */
static inline void copy_match(uint8_t *out, size_t off, size_t len, size_t room)
{
    const uint8_t *from = out - off;
    if (off >= 16 && room >= len + 16) {
        /* Each load reads bytes at least 16 behind its store, all written already; the last store may
         * run up to 15 bytes past the match, which `room` allows. */
        copy16(out, from);
        for (size_t i = 16; i < len; i += 16)
            copy16(out + i, from + i);
    } else if (off >= 8 && room >= len + 8) {
        for (size_t i = 0; i < len; i += 8)
            copy8(out + i, from + i);
    } else if (off == 1) {
        if (len <= 16 && room >= 16)
            memset(out, *from, 16); /* a fixed size: inlined */
        else
            memset(out, *from, len);
    } else if (len <= 16) {
        for (size_t i = 0; i < len; i++)
            out[i] = from[i];
    } else {
        /* The match repeats the off bytes before it: copy what is there, then twice as much from the
         * same start (still a whole number of periods back), and so on; no copy overlaps itself. */
        size_t have = off;
        while (len > 0) {
            size_t c = MIN(have, len);
            memcpy(out, out - have, c);
            out += c;
            len -= c;
            have += c;
        }
    }
}

/* A match's length field of 7 goes on (see the head comment): reads the rest from *in (at most 7
 * bytes, each checked against in_end) and returns the length - 3, or -1 for a stream cut short or a 16/32-bit
 * length under 22. */
static inline int64_t long_len(const uint8_t **inp, const uint8_t *in_end, const uint8_t **nibble)
{
    const uint8_t *in = *inp;
    uint64_t len;
    if (*nibble) {
        len = **nibble >> 4;
        *nibble = NULL;
    } else {
        if (in == in_end)
            return -1;
        *nibble = in;
        len = *in++ & 15;
    }
    if (len == 15) {
        if (in == in_end)
            return -1;
        len = *in++;
        if (len == 255) {
            if (in_end - in < 2)
                return -1;
            len = get_le16(in);
            in += 2;
            if (len == 0) {
                if (in_end - in < 4)
                    return -1;
                len = get_le32(in);
                in += 4;
            }
            if (len < 15 + 7)
                return -1;
            len -= 15 + 7;
        }
        len += 15;
    }
    *inp = in;
    return (int64_t)len + 7;
}

/*
 * The decoder of both entry points. With to_end false it stops once the output (cap bytes) is full;
 * with to_end true it goes on until the stream's end as section 2.4 defines it, a match flag bit with no
 * input left, and sets *ret_len. Always inlined, so that each entry point gets its own copy with the
 * other mode's tests folded away.
 */
static inline __attribute__((always_inline)) int decode(const void *src, size_t n, void *dst, size_t cap,
                                                        bool to_end, size_t *ret_len)
{
    const uint8_t *in = src, *const in_end = in + n;
    uint8_t *out = dst, *const out_start = dst, *const out_end = out + cap;
    const uint8_t *nibble = NULL; /* the byte whose high nibble the next long match takes */
    uint32_t flags = 0;           /* left-aligned: the next symbol's bit is bit 31 */
    unsigned nflags = 0;          /* bits of `flags` not used yet */

    /* The fast loop, while both sides have room for a symbol pair's widest fixed-size copies: a run of
     * literals (perhaps empty: the fixed 32-byte copy costs less than a branch the decoder mispredicts
     * at every change from literals to matches) and, unless the flag word ends first, one match. It
     * checks no input bound but a long match's: one step reads at most 4 + 32 + 2 bytes before those. */
    while (in_end - in >= FAST_IN && out_end - out >= FAST_OUT) {
        if (nflags == 0) {
            flags = get_le32(in);
            in += 4;
            nflags = 32;
        }
        unsigned run = flags ? (unsigned)__builtin_clz(flags) : 32;
        if (run > nflags)
            run = nflags;
        copy16(out, in);
        copy16(out + 16, in + 16);
        out += run;
        in += run;
        flags = run < 32 ? flags << run : 0;
        nflags -= run;
        if (nflags == 0)
            continue;
        flags <<= 1;
        nflags--;
        unsigned word = get_le16(in);
        in += 2;
        size_t off = (word >> 3) + 1;
        uint64_t len = word & 7; /* 64 bits: a 32-bit length + 3 must not wrap where size_t is 32 */
        if (off > (size_t)(out - out_start))
            return RH_ECORRUPT;
        if (len != 7 && off >= 8) {
            /* A short match (3..9 bytes; the room is at least FAST_OUT - 32): 8-byte steps read only
             * bytes written already. */
            copy8(out, out - off);
            copy8(out + 8, out - off + 8);
            out += len + 3;
            continue;
        }
        if (len == 7) {
            int64_t l = long_len(&in, in_end, &nibble);
            if (l < 0)
                return RH_ECORRUPT;
            len = (uint64_t)l;
        }
        len += 3;
        size_t room = (size_t)(out_end - out);
        if (len > room)
            return to_end ? -ENOSPC : RH_ECORRUPT;
        copy_match(out, off, (size_t)len, room);
        out += len;
    }

    /* The careful loop: every bound checked, for the last bytes on either side and for to_end's end. It
     * repeats the fast loop's match tail on purpose: sharing it through a helper measured 2-3 % slower
     * in bench/xpress-bench. */
    while (to_end || out < out_end) {
        if (nflags == 0) {
            if (in_end - in < 4)
                return RH_ECORRUPT;
            flags = get_le32(in);
            in += 4;
            nflags = 32;
        }
        /* A run of literals: the flag word's leading zero bits. */
        unsigned run = flags ? (unsigned)__builtin_clz(flags) : 32;
        if (run > nflags)
            run = nflags;
        if (run > 0) {
            size_t lit = run;
            if ((size_t)(in_end - in) >= 32 && (size_t)(out_end - out) >= 32) {
                /* Room on both sides: copy 32 bytes, keep `lit` of them. */
                copy16(out, in);
                copy16(out + 16, in + 16);
            } else {
                if (!to_end)
                    lit = MIN(lit, (size_t)(out_end - out));
                if ((size_t)(in_end - in) < lit)
                    return RH_ECORRUPT;
                if ((size_t)(out_end - out) < lit)
                    return -ENOSPC; /* to_end only: past cap */
                memcpy(out, in, lit);
            }
            out += lit;
            in += lit;
            flags = run < 32 ? flags << run : 0;
            nflags -= run;
            continue;
        }

        /* A match, or with no input left the end of the stream. */
        flags <<= 1;
        nflags--;
        if (to_end && in == in_end) {
            *ret_len = (size_t)(out - out_start);
            return 0;
        }
        if (in_end - in < 2)
            return RH_ECORRUPT;
        unsigned word = get_le16(in);
        in += 2;
        size_t off = (word >> 3) + 1;
        uint64_t len = word & 7;
        if (len == 7) {
            int64_t l = long_len(&in, in_end, &nibble);
            if (l < 0)
                return RH_ECORRUPT;
            len = (uint64_t)l;
        }
        len += 3;
        size_t room = (size_t)(out_end - out);
        if (off > (size_t)(out - out_start))
            return RH_ECORRUPT;
        if (len > room)
            return to_end ? -ENOSPC : RH_ECORRUPT;
        copy_match(out, off, (size_t)len, room);
        out += len;
    }
    return 0;
}

int xpress_decompress(const void *src, size_t n, void *dst, size_t raw_len)
{
    return decode(src, n, dst, raw_len, false, NULL);
}

int xpress_decompress_to_end(const void *src, size_t n, void *dst, size_t cap, size_t *ret_len)
{
    size_t len;
    int r = decode(src, n, dst, cap, true, &len);
    if (r == 0)
        *ret_len = len;
    return r;
}

/* ---- the compressor ---- */

#define HASH_BITS 14
#define MIN_MATCH 3
/* The longest match we write: its length - 3 must fit the 32-bit field. */
#define MAX_MATCH ((size_t)UINT32_MAX)

size_t xpress_compress_bound(size_t n) { return n + 4 * (n / 32) + 4; }

static inline uint32_t hash3(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    return (v * 2654435761u) >> (32 - HASH_BITS);
}

/* The output of the compressor: bytes written so far, and where the open flag word and half-used
 * nibble byte are. */
typedef struct writer {
    uint8_t *buf;
    size_t cap, pos;
    size_t flag_pos; /* of the flag word being filled */
    uint32_t flags;
    unsigned nflags;
    size_t nibble_pos; /* of the byte whose high nibble is free, or SIZE_MAX */
} writer;

/* Bytes a match of len needs, beyond its flag bit. */
static size_t match_size(const writer *w, size_t len)
{
    size_t m = len - 3, size = 2;
    if (m < 7)
        return size;
    m -= 7;
    size += w->nibble_pos == SIZE_MAX;
    if (m < 15)
        return size;
    m -= 15;
    if (m < 255)
        return size + 1;
    return len - 3 < 65536 ? size + 3 : size + 7;
}

/* Records the symbol's flag bit; after the 32nd, closes the word and reserves the next one. */
static int put_flag(writer *w, unsigned bit)
{
    w->flags = w->flags << 1 | bit;
    if (++w->nflags < 32)
        return 0;
    put_le32(w->buf + w->flag_pos, w->flags);
    if (w->cap - w->pos < 4)
        return -ENOSPC;
    w->flag_pos = w->pos;
    w->pos += 4;
    w->flags = 0;
    w->nflags = 0;
    return 0;
}

static int put_match(writer *w, size_t off, size_t len)
{
    if (w->cap - w->pos < match_size(w, len))
        return -ENOSPC;
    uint8_t *p = w->buf;
    size_t m = len - 3;
    uint16_t word = (uint16_t)((off - 1) << 3);
    if (m < 7) {
        put_le16(p + w->pos, word | (uint16_t)m);
        w->pos += 2;
        return put_flag(w, 1);
    }
    put_le16(p + w->pos, word | 7);
    w->pos += 2;
    m -= 7;
    unsigned nib = m < 15 ? (unsigned)m : 15;
    if (w->nibble_pos == SIZE_MAX) {
        w->nibble_pos = w->pos;
        p[w->pos++] = (uint8_t)nib;
    } else {
        p[w->nibble_pos] |= (uint8_t)(nib << 4);
        w->nibble_pos = SIZE_MAX;
    }
    if (m >= 15) {
        m -= 15;
        if (m < 255) {
            p[w->pos++] = (uint8_t)m;
        } else {
            p[w->pos++] = 255;
            m = len - 3;
            if (m < 65536) {
                put_le16(p + w->pos, (uint16_t)m);
                w->pos += 2;
            } else {
                put_le16(p + w->pos, 0);
                put_le32(p + w->pos + 2, (uint32_t)m);
                w->pos += 6;
            }
        }
    }
    return put_flag(w, 1);
}

/* The length of the common prefix of a and b, at most max bytes. */
static size_t common_len(const uint8_t *a, const uint8_t *b, size_t max)
{
    size_t i = 0;
    while (i + 8 <= max) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return i + (size_t)(__builtin_ctzll(x ^ y) >> 3); /* little-endian: first differing byte */
        i += 8;
    }
    while (i < max && a[i] == b[i])
        i++;
    return i;
}

int xpress_compress(const void *src, size_t n, void *dst, size_t cap, size_t *ret_len)
{
    const uint8_t *in = src;
    if (cap < 4)
        return -ENOSPC;
    /* Positions + 1 of the last occurrence of each 3-byte hash; 0 = none. */
    uint32_t *table = calloc((size_t)1 << HASH_BITS, sizeof(*table));
    if (!table)
        return -ENOMEM;
    writer w = { .buf = dst, .cap = cap, .pos = 4, .flag_pos = 0, .nibble_pos = SIZE_MAX };
    int r = 0;
    size_t pos = 0;
    while (pos < n && r == 0) {
        size_t best = 0, best_off = 0;
        if (n - pos >= MIN_MATCH) {
            uint32_t h = hash3(in + pos);
            size_t cand = table[h];
            table[h] = (uint32_t)(pos + 1);
            /* Positions past 4 GiB alias in the table; the comparison below catches a wrong candidate. */
            if (cand > 0 && cand - 1 < pos && pos - (cand - 1) <= XPRESS_WINDOW) {
                size_t c = cand - 1;
                best = common_len(in + c, in + pos, MIN(n - pos, MAX_MATCH));
                best_off = pos - c;
            }
        }
        if (best >= MIN_MATCH) {
            r = put_match(&w, best_off, best);
            /* Remember the positions inside the match too (later matches find them). */
            size_t end = pos + best;
            for (pos++; pos < end; pos++)
                if (n - pos >= MIN_MATCH)
                    table[hash3(in + pos)] = (uint32_t)(pos + 1);
        } else {
            if (w.pos == w.cap) {
                r = -ENOSPC;
                break;
            }
            w.buf[w.pos++] = in[pos++];
            r = put_flag(&w, 0);
        }
    }
    free(table);
    if (r < 0)
        return r;
    /* Close the last flag word with 1 bits: the decoder of section 2.4 stops at a 1 with no input. */
    uint32_t flags = w.nflags ? w.flags << (32 - w.nflags) | ((UINT32_C(1) << (32 - w.nflags)) - 1)
                              : UINT32_MAX;
    put_le32(w.buf + w.flag_pos, flags);
    *ret_len = w.pos;
    return 0;
}

/*
 * wincrc.c — table-driven CRC-64 and CRC-32 of the Windows dedup format (see wincrc.h). The tables are
 * built once, on first use, from the polynomials; tests/unit/check_wincrc.c checks both against
 * published check values and against header CRCs of a real Windows container.
 *
 * The CRC-64 covers every chunk's stored bytes on every read, so it runs "slicing by 8": eight tables,
 * where table k gives the contribution of a byte followed by k zero bytes, fold eight input bytes into
 * the register per step instead of one (Intel's slicing-by-8 for CRC-32, applied to the 64-bit
 * register). A byte at a time it was 80 % of a Windows volume mount's CPU time.
 *
 * On x86-64 CPUs with carry-less multiplication (PCLMULQDQ, every x86-64 CPU since 2010), long inputs
 * are folded 64 bytes per step instead (Intel, "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ Instruction", 2009), and only the last 16 folded bytes and the tail go through the tables;
 * see crc64_clmul. Slicing by 8 was still 11 % of a sequential read's CPU through a Windows volume mount.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/util.h"
#include "windows/wincrc.h"

#define CRC64_POLY 0x9a6c9329ac4bc9b5ull /* reflected */
#define CRC32_POLY 0xedb88320u           /* reflected */

static uint64_t crc64_table[8][256];
static uint32_t crc32_table[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* For crc64_clmul: x^n mod P for the n it needs, bit-reflected like the register; and whether the CPU
 * can multiply without carries. */
static uint64_t fold_k[4]; /* x^(128+63), x^127 (one 16-byte step); x^(512+63), x^511 (four) */
static bool have_clmul;

static uint64_t reverse64(uint64_t v)
{
    uint64_t r = 0;
    for (int i = 0; i < 64; i++, v >>= 1)
        r = r << 1 | (v & 1);
    return r;
}

/* x^n mod P, reflected: computed on the polynomial in normal bit order, then reversed. */
static uint64_t xpow_mod(unsigned n)
{
    const uint64_t poly = reverse64(CRC64_POLY);
    uint64_t r = 1;
    while (n--)
        r = (r << 1) ^ (r >> 63 ? poly : 0);
    return reverse64(r);
}

static void tables_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c64 = i;
        uint32_t c32 = i;
        for (int k = 0; k < 8; k++) {
            c64 = (c64 & 1) ? (c64 >> 1) ^ CRC64_POLY : c64 >> 1;
            c32 = (c32 & 1) ? (c32 >> 1) ^ CRC32_POLY : c32 >> 1;
        }
        crc64_table[0][i] = c64;
        crc32_table[i] = c32;
    }
    for (unsigned i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc64_table[k][i] = (crc64_table[k - 1][i] >> 8) ^ crc64_table[0][crc64_table[k - 1][i] & 0xff];
    fold_k[0] = xpow_mod(128 + 63);
    fold_k[1] = xpow_mod(127);
    fold_k[2] = xpow_mod(512 + 63);
    fold_k[3] = xpow_mod(511);
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul");
#endif
}

/* The register c after the bytes p[0..len), a byte or eight at a time. */
static uint64_t crc64_tables(uint64_t c, const uint8_t *p, size_t len)
{
    for (; len >= 8; p += 8, len -= 8) {
        c ^= get_le64(p);
        c = crc64_table[7][c & 0xff] ^ crc64_table[6][(c >> 8) & 0xff] ^ crc64_table[5][(c >> 16) & 0xff] ^
            crc64_table[4][(c >> 24) & 0xff] ^ crc64_table[3][(c >> 32) & 0xff] ^ crc64_table[2][(c >> 40) & 0xff] ^
            crc64_table[1][(c >> 48) & 0xff] ^ crc64_table[0][c >> 56];
    }
    for (; len > 0; p++, len--)
        c = (c >> 8) ^ crc64_table[0][(c ^ *p) & 0xff];
    return c;
}

#if defined(__x86_64__)
/* x (16 bytes of message, first byte in the low lane) carried forward over the bytes whose constants k
 * holds: the first 8 bytes times the low constant plus the last 8 times the high one. */
__attribute__((target("pclmul"))) static inline __m128i fold(__m128i x, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/*
 * The register c after p[0..len), len >= 64: the CRC as arithmetic on polynomials over GF(2). A 16-byte
 * block X followed by more bytes Y is, as a message, X * x^(8 |Y|) + Y, and only its remainder modulo P
 * matters; X = A * x^64 + B (A its first 8 bytes), so X * x^128 has the remainder of A * (x^192 mod P) +
 * B * (x^128 mod P), two 64-by-64-bit carry-less products that fit in 128 bits. Folding thus keeps a
 * 16-byte value congruent to everything read so far; four of them run side by side, 64 bytes apart, to
 * hide the multiplier's latency, and are folded into one at the end. The register starts in the first
 * 8 bytes (the tables do the same: an 8-byte step XORs it in and leaves nothing else), and the CRC of
 * the last 16-byte value, taken from a zero register, is the register for the whole message.
 *
 * The bits are reflected (a byte's bit 0 is its highest power), so a product of two 64-bit values comes
 * out one power short of its place in the 128 bits; the constants make up for it, x^191 and x^127 instead
 * of x^192 and x^128.
 */
__attribute__((target("pclmul"))) static uint64_t crc64_clmul(uint64_t c, const uint8_t *p, size_t len)
{
    const __m128i k16 = _mm_set_epi64x((long long)fold_k[1], (long long)fold_k[0]);
    const __m128i k64 = _mm_set_epi64x((long long)fold_k[3], (long long)fold_k[2]);
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_set_epi64x(0, (long long)c));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
        x0 = _mm_xor_si128(fold(x0, k64), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k64), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k64), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k64), _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = _mm_xor_si128(fold(x0, k16), x1);
    x = _mm_xor_si128(fold(x, k16), x2);
    x = _mm_xor_si128(fold(x, k16), x3);
    for (; len >= 16; p += 16, len -= 16)
        x = _mm_xor_si128(fold(x, k16), _mm_loadu_si128((const __m128i *)p));
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, x);
    return crc64_tables(crc64_tables(0, last, sizeof(last)), p, len);
}
#endif

uint64_t wincrc_64_more_tables(uint64_t crc, const void *data, size_t len)
{
    pthread_once(&tables_once, tables_init);
    return ~crc64_tables(~crc, data, len);
}

uint64_t wincrc_64_more(uint64_t crc, const void *data, size_t len)
{
    pthread_once(&tables_once, tables_init);
    uint64_t c = ~crc; /* undo the final XOR: the register as it was after the earlier bytes */
#if defined(__x86_64__)
    if (have_clmul && len >= 64)
        return ~crc64_clmul(c, data, len);
#endif
    return ~crc64_tables(c, data, len);
}

uint64_t wincrc_64(const void *data, size_t len) { return wincrc_64_more(~UINT64_C(0), data, len); }

uint32_t wincrc_32(const void *data, size_t len)
{
    pthread_once(&tables_once, tables_init);
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = (c >> 8) ^ crc32_table[(c ^ p[i]) & 0xff];
    return ~c;
}

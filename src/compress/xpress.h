/*
 * xpress.h — MS-XCA "plain LZ77" (Xpress without Huffman), the compression of Windows Server Data
 * Deduplication's chunks (compression format 2 of a Ckhr record; see xpress.c for the format, where it is
 * specified, and what this decoder accepts).
 */
#ifndef RH_COMPRESS_XPRESS_H
#define RH_COMPRESS_XPRESS_H

#include <stddef.h>

/* The largest match offset of the format: 13 bits of offset - 1. */
#define XPRESS_WINDOW 8192

/*
 * Decodes the plain-LZ77 stream src[0..n) into exactly raw_len bytes at dst. Returns 0, or RH_ECORRUPT
 * when the stream ends before raw_len bytes, a match reaches before the start of the output or past
 * raw_len, or a length field is malformed. Never reads outside src[0..n) nor writes outside
 * dst[0..raw_len), whatever the input; on failure dst holds garbage. Input after the symbol that
 * completes raw_len bytes is not examined (xpress.c says why). Thread-safe, no allocation.
 */
int xpress_decompress(const void *src, size_t n, void *dst, size_t raw_len);

/*
 * Decodes the plain-LZ77 stream src[0..n), whose decoded length is not known, into dst (at most cap
 * bytes) until the stream's end: a match flag bit with no input left, as [MS-XCA] 2.4 ends and 2.3's
 * compressor (and xpress_compress) writes. Sets *ret_len to the bytes decoded. Returns 0, RH_ECORRUPT when
 * the stream is malformed or cut anywhere else (a flag word, literal or match cut short; a match
 * reaching before the start), or -ENOSPC when it decodes to more than cap bytes. Never reads outside
 * src[0..n) nor writes outside dst[0..cap); *ret_len is untouched and dst holds garbage on failure.
 * On success, xpress_decompress(src, n, dst, *ret_len) gives the same bytes. Thread-safe, no allocation.
 */
int xpress_decompress_to_end(const void *src, size_t n, void *dst, size_t cap, size_t *ret_len);

/* The most xpress_compress can write for n input bytes (all literals, a flag word per 32). */
size_t xpress_compress_bound(size_t n);

/*
 * Compresses src[0..n) into a plain-LZ77 stream at dst (capacity cap) with a greedy match finder, and
 * sets *ret_len to its size. Returns 0, or -ENOSPC when the stream would not fit in cap (a cap of
 * xpress_compress_bound(n) always suffices), or -ENOMEM. *ret_len is untouched on failure. Meant for
 * tests and tools that write Windows-format data: correct and simple, not tuned.
 */
int xpress_compress(const void *src, size_t n, void *dst, size_t cap, size_t *ret_len);

#endif

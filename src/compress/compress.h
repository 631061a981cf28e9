/*
 * compress.h — per-chunk compression. A chunk is stored with codec CODEC_ZSTD when that makes it smaller
 * and CODEC_RAW otherwise; readers dispatch on the codec byte of the record.
 */
#ifndef RH_COMPRESS_COMPRESS_H
#define RH_COMPRESS_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* CODEC_XPRESS (MS-XCA plain LZ77) is never written by us: it is how a Windows dedup record says
 * compression format 2 (windows/winstore.c); our records accept only the first two. */
enum { CODEC_RAW = 0, CODEC_ZSTD = 1, CODEC_XPRESS = 2 };

#define COMPRESS_DEFAULT_LEVEL 3

/* Upper bound of compress_chunk's output for n input bytes. */
size_t compress_bound(size_t n);
/*
 * Compresses src[0..n) with zstd at `level` into dst (capacity compress_bound(n)). Sets *ret_codec to
 * CODEC_ZSTD and *ret_len to the compressed size, or, when that would not be smaller, copies nothing and
 * sets *ret_codec to CODEC_RAW (the caller stores src itself). Level 0 means "store raw".
 * Thread-safe: each thread keeps its own zstd context. Returns 0 or a negative code: -ENOMEM when the
 * context (or compress_chunk_inplace's buffer) cannot be allocated, -EIO when zstd fails otherwise.
 */
int compress_chunk(int level, const void *src, size_t n, void *dst, size_t cap, uint8_t *ret_codec,
                   size_t *ret_len);
/*
 * Like compress_chunk, but the result replaces the input: on CODEC_ZSTD, buf[0..*ret_len) holds the
 * compressed bytes (compressed through a per-thread buffer, then copied back); on CODEC_RAW, buf is
 * untouched. Spares the caller an output buffer per chunk, whose fresh pages cost faults.
 */
int compress_chunk_inplace(int level, void *buf, size_t n, uint8_t *ret_codec, size_t *ret_len);
/* compress_chunk_inplace for a pack (several chunks, at most 256 KiB): at levels whose parameters look
 * for matches shorter than 5 bytes with the fastest strategies, it asks for 5 (see compress.c). */
int compress_pack_inplace(int level, void *buf, size_t n, uint8_t *ret_codec, size_t *ret_len);
/* Whether n stored bytes of codec can decode to raw_len bytes at all, from the frame headers alone:
 * a record that fails this is damaged, and nothing need be allocated for its raw_len. Never reads
 * past src + n. Non-zero when plausible. */
int decompress_size_ok(uint8_t codec, const void *src, size_t n, size_t raw_len);
/* Decodes a record payload of `codec` into exactly raw_len bytes; RH_ECORRUPT if it does not fit,
 * -ENOMEM when the thread's zstd context cannot be made. */
int decompress_chunk(uint8_t codec, const void *src, size_t n, void *dst, size_t raw_len);
/* Whether compress_chunk accepts this level (0 and 1..19). */
int compress_level_valid(int level);

#endif

/*
 * hash.h — the two hashes of the store: SHA-256 names chunks and stream maps (identity, checked by
 * verify), XXH3-64 guards every stored record (integrity, checked on every read). XXH3 runs at memory
 * bandwidth, so checking it on every read costs nothing measurable next to decompression.
 */
#ifndef RH_HASH_HASH_H
#define RH_HASH_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define HASH_LEN 32

/*
 * SHA-256 of data[0..len) into out. Thread-safe: each thread keeps its own digest context, made on its
 * first call. 0, or -ENOMEM when that context cannot be made, -ENOTSUP when OpenSSL has no SHA-256,
 * -EIO when OpenSSL fails otherwise; out is then undefined.
 */
int hash_sha256(const void *data, size_t len, uint8_t out[HASH_LEN]) __attribute__((warn_unused_result));
/* hash_sha256 for front ends and writers that cannot go on without a digest: prints and aborts when it
 * fails (util.h: the x* family). */
void xhash_sha256(const void *data, size_t len, uint8_t out[HASH_LEN]);

/* The record checksum: XXH3-64 of `payload`, seeded with XXH3-64 of `head` (see doc/format.md). */
uint64_t hash_checksum(const void *head, size_t head_len, const void *payload, size_t payload_len);
/* The same checksum of a payload given in two pieces (a pack's member table, then its data):
 * hash_checksum2(h, hl, a, an, b, bn) == hash_checksum(h, hl, a ++ b, an + bn). */
uint64_t hash_checksum2(const void *head, size_t head_len, const void *a, size_t a_len, const void *b,
                        size_t b_len);

/* Lowercase hex of a digest into out (2*HASH_LEN+1 bytes). */
const char *hash_hex(const uint8_t d[HASH_LEN], char out[2 * HASH_LEN + 1]);
/* Parses 64 hex digits; false if malformed. */
bool hash_from_hex(const char *hex, uint8_t out[HASH_LEN]);
bool hash_is_zero(const uint8_t d[HASH_LEN]);
/* True when every byte of data[0..len) is zero (fast: compares words). */
bool mem_is_zero(const void *data, size_t len);

#endif

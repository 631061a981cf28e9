/*
 * wincrc.h — the two checksums of Windows Server Data Deduplication (doc/windows-format-notes.md):
 *
 * - CRC-64 of every chunk-store record header and of every stored chunk payload: the reflected
 *   polynomial 0x9a6c9329ac4bc9b5, initial value 0, final XOR all-ones. (Close to, but not, the
 *   polynomial of CRC-64/REDIS; no public catalogue lists this CRC, so its tests use real Windows bytes.)
 * - CRC-32 of the reparse point's data: zlib's CRC-32 (reflected 0xedb88320, initial and final
 *   value all-ones), the CRC-32 of ISO-HDLC.
 *
 * Both are pure functions of their bytes, safe from any thread.
 */
#ifndef RH_WINDOWS_WINCRC_H
#define RH_WINDOWS_WINCRC_H

#include <stddef.h>
#include <stdint.h>

/* CRC-64 of data[0..len) as Windows dedup stores it. wincrc_64(NULL, 0) is all-ones. */
uint64_t wincrc_64(const void *data, size_t len);

/* The CRC-64 of the bytes crc was computed over followed by data[0..len), for a payload read in pieces:
 * wincrc_64_more(wincrc_64(a, n), b, m) == CRC-64 of a[0..n) then b[0..m); start from wincrc_64(NULL, 0). */
uint64_t wincrc_64_more(uint64_t crc, const void *data, size_t len);

/* The same by tables alone, where wincrc_64_more takes the CPU's carry-less multiply for long inputs if
 * it has one: for the tests that compare the two. */
uint64_t wincrc_64_more_tables(uint64_t crc, const void *data, size_t len);

/* CRC-32 (zlib's) of data[0..len). wincrc_32("123456789", 9) == 0xcbf43926. */
uint32_t wincrc_32(const void *data, size_t len);

#endif

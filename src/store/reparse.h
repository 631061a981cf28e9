/*
 * reparse.h — reparse points: what a stub carries in the xattr user.rehydrate.reparse so that
 * rh_restore_files can rehydrate it in place. Like a Windows dedup reparse point it names the store,
 * the file's size and its stream map (location and digest). 52 bytes, so that with its name it fits in
 * the in-inode xattr space of a default ext4 inode (256 bytes): setting and removing it then allocates
 * and frees no block. doc/format.md "Stubs".
 */
#ifndef RH_STORE_REPARSE_H
#define RH_STORE_REPARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/catalog.h"

#define REPARSE_XATTR "user.rehydrate.reparse"
#define REPARSE_SIZE 52
#define REPARSE_STORE_ID 8      /* leading bytes of the store UUID that a reparse point keeps */
#define REPARSE_DIGEST_PREFIX 8 /* leading bytes of the stream map's SHA-256 that it keeps */

typedef struct reparse_point {
    uint8_t store_id[REPARSE_STORE_ID];
    uint64_t size;
    /* Where the stream map is. Only the first REPARSE_DIGEST_PREFIX bytes of stream.digest are known;
     * the rest are zero. The stream map record in its container carries the whole digest. */
    catalog_stream stream;
} reparse_point;

/* The reparse point of a file of `size` bytes with stream map `stream` in the store `uuid`. */
void reparse_make(reparse_point *rp, const uint8_t uuid[16], uint64_t size, const catalog_stream *stream);
bool reparse_in_store(const reparse_point *rp, const uint8_t uuid[16]);

void reparse_encode(const reparse_point *rp, uint8_t out[REPARSE_SIZE]);
/* RH_ECORRUPT when the bytes are not a reparse point of this version (length, magic, checksum). */
int reparse_decode(const uint8_t *in, size_t len, reparse_point *ret);

#endif

/*
 * reparse.h — reparse points: what a stub carries in the xattr user.rehydrate.reparse so that
 * rh_restore_files can rehydrate it in place. Like a Windows dedup reparse point it names the store
 * (UUID), the file's size and its stream map (digest and location). 96 bytes, doc/format.md "Stubs".
 */
#ifndef RH_RESTORE_REPARSE_H
#define RH_RESTORE_REPARSE_H

#include <stdint.h>

#include "snapshot/catalog.h"

#define REPARSE_XATTR "user.rehydrate.reparse"
#define REPARSE_SIZE 96

typedef struct reparse_point {
    uint8_t uuid[16];
    uint64_t size;
    catalog_stream stream;
} reparse_point;

void reparse_encode(const reparse_point *rp, uint8_t out[REPARSE_SIZE]);
/* RH_ECORRUPT when the bytes are not a reparse point of this version (length, magic, checksum). */
int reparse_decode(const uint8_t *in, size_t len, reparse_point *ret);

#endif

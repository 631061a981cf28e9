/*
 * reparse.c — encoding of reparse points (see reparse.h and doc/format.md "Stubs").
 */
#include "config.h"

#include "common/util.h"
#include "hash/hash.h"
#include "store/reparse.h"

#define REPARSE_VERSION 2

static const uint8_t magic[2] = { 'R', 'P' };

void reparse_make(reparse_point *rp, const uint8_t uuid[16], uint64_t size, const catalog_stream *stream)
{
    *rp = (reparse_point){ .size = size, .stream = *stream };
    memcpy(rp->store_id, uuid, REPARSE_STORE_ID);
    memset(rp->stream.digest + REPARSE_DIGEST_PREFIX, 0, HASH_LEN - REPARSE_DIGEST_PREFIX);
}

bool reparse_in_store(const reparse_point *rp, const uint8_t uuid[16])
{
    return memcmp(rp->store_id, uuid, REPARSE_STORE_ID) == 0;
}

void reparse_encode(const reparse_point *rp, uint8_t out[REPARSE_SIZE])
{
    memcpy(out, magic, 2);
    out[2] = REPARSE_VERSION;
    out[3] = rp->stream.codec;
    memcpy(out + 4, rp->store_id, REPARSE_STORE_ID);
    put_le64(out + 12, rp->size);
    put_le64(out + 20, rp->stream.offset);
    put_le32(out + 28, rp->stream.container);
    put_le32(out + 32, rp->stream.stored_len);
    put_le32(out + 36, rp->stream.raw_len);
    memcpy(out + 40, rp->stream.digest, REPARSE_DIGEST_PREFIX);
    put_le32(out + 48, (uint32_t)hash_checksum(out, 48, NULL, 0));
}

int reparse_decode(const uint8_t *in, size_t len, reparse_point *ret)
{
    if (len != REPARSE_SIZE || memcmp(in, magic, 2) != 0 || in[2] != REPARSE_VERSION ||
        get_le32(in + 48) != (uint32_t)hash_checksum(in, 48, NULL, 0))
        return RH_ECORRUPT;
    reparse_point rp = { 0 };
    rp.stream.codec = in[3];
    memcpy(rp.store_id, in + 4, REPARSE_STORE_ID);
    rp.size = get_le64(in + 12);
    rp.stream.offset = get_le64(in + 20);
    rp.stream.container = get_le32(in + 28);
    rp.stream.stored_len = get_le32(in + 32);
    rp.stream.raw_len = get_le32(in + 36);
    memcpy(rp.stream.digest, in + 40, REPARSE_DIGEST_PREFIX);
    *ret = rp;
    return 0;
}

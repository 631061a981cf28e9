/*
 * reparse.c — encoding of reparse points (see reparse.h).
 */
#include "config.h"

#include "common/util.h"
#include "hash/hash.h"
#include "restore/reparse.h"

static const uint8_t magic[4] = { 'R', 'H', 'R', 'P' };

void reparse_encode(const reparse_point *rp, uint8_t out[REPARSE_SIZE])
{
    memset(out, 0, REPARSE_SIZE);
    memcpy(out, magic, 4);
    put_le32(out + 4, 1);
    memcpy(out + 8, rp->uuid, 16);
    put_le64(out + 24, rp->size);
    memcpy(out + 32, rp->stream.digest, HASH_LEN);
    put_le32(out + 64, rp->stream.container);
    put_le32(out + 68, rp->stream.stored_len);
    put_le64(out + 72, rp->stream.offset);
    put_le32(out + 80, rp->stream.raw_len);
    out[84] = rp->stream.codec;
    put_le64(out + 88, hash_checksum(out, 88, NULL, 0));
}

int reparse_decode(const uint8_t *in, size_t len, reparse_point *ret)
{
    if (len != REPARSE_SIZE || memcmp(in, magic, 4) != 0 || get_le32(in + 4) != 1 ||
        get_le64(in + 88) != hash_checksum(in, 88, NULL, 0))
        return RH_ECORRUPT;
    reparse_point rp = { 0 };
    memcpy(rp.uuid, in + 8, 16);
    rp.size = get_le64(in + 24);
    memcpy(rp.stream.digest, in + 32, HASH_LEN);
    rp.stream.container = get_le32(in + 64);
    rp.stream.stored_len = get_le32(in + 68);
    rp.stream.offset = get_le64(in + 72);
    rp.stream.raw_len = get_le32(in + 80);
    rp.stream.codec = in[84];
    *ret = rp;
    return 0;
}

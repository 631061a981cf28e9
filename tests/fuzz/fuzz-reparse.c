/*
 * fuzz-reparse.c — the reparse point a stub carries in user.rehydrate.reparse: reparse_decode, as
 * rh_restore_files calls it on an xattr value of any length, then reparse_in_store and, for a point
 * that decodes, a round trip through reparse_encode that must give the same bytes back.
 *
 * Input: the xattr value. Its checksum is recomputed on a second pass (fuzz.h).
 */
#include "config.h"

#include "common/util.h"
#include "hash/hash.h"
#include "store/reparse.h"
#include "fuzz.h"

static void parse(const uint8_t *data, size_t size)
{
    reparse_point rp;
    if (reparse_decode(data, size, &rp) != 0)
        return;
    uint8_t uuid[16] = { 0 };
    memcpy(uuid, rp.store_id, REPARSE_STORE_ID);
    FUZZ_ASSERT(reparse_in_store(&rp, uuid));
    uint8_t again[REPARSE_SIZE];
    reparse_encode(&rp, again);
    FUZZ_ASSERT(memcmp(again, data, REPARSE_SIZE) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = fuzz_dup(data, size);
    parse(copy, size);
    if (size == REPARSE_SIZE) {
        put_le32(copy + 48, (uint32_t)hash_checksum(copy, 48, NULL, 0));
        parse(copy, size);
    }
    free(copy);
    return 0;
}

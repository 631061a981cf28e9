/*
 * fuzz-identity.c — the store's identity file (rehydrate.store, 128 bytes): store_config_decode, which
 * every open of a store runs first, then a round trip through store_config_encode that must give the
 * same bytes back, and the chunker built from the decoded parameters (store.c does that next).
 *
 * Input: the file's bytes; only inputs of exactly 128 bytes reach the decoder, as store.c reads exactly
 * that. Its checksum is recomputed on a second pass (fuzz.h).
 */
#include "config.h"

#include "common/util.h"
#include "hash/hash.h"
#include "store/store.h"
#include "fuzz.h"

static void parse(const uint8_t *in)
{
    store_config c;
    if (store_config_decode(in, &c) != 0)
        return;
    uint8_t again[STORE_IDENTITY_SIZE];
    store_config_encode(&c, again);
    store_config d;
    FUZZ_ASSERT(store_config_decode(again, &d) == 0);
    FUZZ_ASSERT(d.version == c.version && memcmp(d.uuid, c.uuid, 16) == 0 &&
                d.chunker.min_size == c.chunker.min_size && d.chunker.avg_size == c.chunker.avg_size &&
                d.chunker.max_size == c.chunker.max_size &&
                d.chunker.normalization == c.chunker.normalization && d.chunker.seed == c.chunker.seed &&
                d.compression_level == c.compression_level && d.seal_size == c.seal_size &&
                d.created_ns == c.created_ns);
    chunker ck;
    chunker_init(&ck, &c.chunker);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size != STORE_IDENTITY_SIZE)
        return 0;
    uint8_t in[STORE_IDENTITY_SIZE];
    memcpy(in, data, sizeof(in));
    parse(in);
    put_le64(in + 120, hash_checksum(in, 120, NULL, 0));
    parse(in);
    return 0;
}

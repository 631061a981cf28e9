/*
 * fuzz-winreparse.c — the Windows dedup reparse point (system.ntfs_reparse_data, tag 0x80000013):
 * winreparse_parse on an xattr value of any length. A buffer that parses must have consistent fields
 * (one part at least; the parts of 0x0102 consecutive from 0 up to the size).
 *
 * Input: the xattr value. The CRC-32 in its last 4 bytes is recomputed on a second pass (fuzz.h).
 */
#include "config.h"

#include "common/util.h"
#include "windows/wincrc.h"
#include "windows/winreparse.h"
#include "fuzz.h"

static void parse(const uint8_t *data, size_t size)
{
    winreparse r;
    int rc = winreparse_parse(data, size, &r);
    if (rc != 0) {
        FUZZ_ASSERT(rc != RH_ECORRUPT || (r.why != NULL && r.refs == NULL));
        return;
    }
    FUZZ_ASSERT(r.nrefs >= 1 && r.refs != NULL && r.has_size);
    FUZZ_ASSERT(r.refs[0].begin == 0 && r.refs[r.nrefs - 1].end == r.size);
    for (size_t i = 0; i < r.nrefs; i++) {
        FUZZ_ASSERT(r.refs[i].digest_len == 16 || r.refs[i].digest_len == 32);
        if (i > 0)
            FUZZ_ASSERT(r.refs[i].begin == r.refs[i - 1].end);
    }
    winreparse_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = fuzz_dup(data, size);
    parse(copy, size);
    if (size >= 12) {
        put_le32(copy + size - 4, wincrc_32(copy + 8, size - 12));
        parse(copy, size);
    }
    free(copy);
    return 0;
}

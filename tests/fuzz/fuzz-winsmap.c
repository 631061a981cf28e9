/*
 * fuzz-winsmap.c — the stream map of a Windows dedup file (the "Smap" payload of a stream-map record,
 * wincontainer.h): win_smap_parse on a payload of any length, from a start offset of any value. A map
 * that parses must hold what the reader's binary search relies on: at least one entry, one per 64 bytes,
 * ends strictly increasing from the start, no chunk over 128 KiB, no stored size of 0, and the fields as
 * the bytes give them. The map has no checksum of its own (its record's CRC-64 covers it), so there is
 * nothing to fix up; a second pass parses it from 0 when the input gave another start.
 *
 * Input: a u64 little-endian start offset (the file offset where the map begins: 0, or a 0x0102 part's
 * begin), then the payload. An input shorter than 8 bytes is a payload from 0.
 */
#include "config.h"

#include "common/util.h"
#include "windows/wincontainer.h"
#include "fuzz.h"

static void parse(const uint8_t *p, size_t len, uint64_t start)
{
    win_smap_entry *e = NULL;
    size_t n = 0;
    win_why w = { 0 };
    int rc = win_smap_parse(p, len, start, &e, &n, &w);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -ENOMEM || (rc == RH_ECORRUPT && w.why != NULL && w.at <= len));
        FUZZ_ASSERT(e == NULL && n == 0);
        return;
    }
    FUZZ_ASSERT(n >= 1 && len == WIN_SMAP_HEADER + WIN_SMAP_ENTRY * n && !memcmp(p, "Smap", 4));
    uint64_t prev = start;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = p + WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        FUZZ_ASSERT(e[i].end > prev && e[i].end - prev <= WIN_CHUNK_MAX && e[i].stored_len >= 1);
        FUZZ_ASSERT(e[i].seq == get_le32(b) && e[i].container == get_le32(b + 4) &&
                    e[i].offset == get_le32(b + 8) && e[i].generation == get_le32(b + 0x0c) &&
                    e[i].end == get_le64(b + 0x10) && !memcmp(e[i].digest, b + 0x18, WIN_DIGEST_LEN) &&
                    e[i].stored_len == get_le32(b + 0x38));
        prev = e[i].end;
    }
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = fuzz_dup(data, size);
    if (size < 8) {
        parse(copy, size, 0);
    } else {
        uint64_t start = get_le64(copy);
        parse(copy + 8, size - 8, start);
        if (start != 0)
            parse(copy + 8, size - 8, 0);
    }
    free(copy);
    return 0;
}

/*
 * fuzz-streammap.c — a stream map's raw encoding: streammap_decode, then streammap_find over the result
 * at the offsets a reader asks for (the first byte, the last, every entry's first and last byte, and
 * past the end), checking that every answer is the entry that holds the byte.
 *
 * Input: a stream map's raw (decoded) bytes, as a RECORD_STREAM record's payload decodes to.
 */
#include "config.h"

#include "store/streammap.h"
#include "fuzz.h"

static void check_find(const streammap *m, uint64_t off)
{
    size_t i = streammap_find(m, off);
    if (off >= m->size) {
        FUZZ_ASSERT(i == m->n);
        return;
    }
    FUZZ_ASSERT(i < m->n);
    FUZZ_ASSERT(m->start[i] <= off && off - m->start[i] < m->e[i].length);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    streammap *m;
    if (streammap_decode(data ? data : (const uint8_t *)"", size, &m) != 0)
        return 0;
    check_find(m, 0);
    check_find(m, m->size);
    check_find(m, UINT64_MAX);
    if (m->size)
        check_find(m, m->size - 1);
    for (size_t i = 0; i < m->n && i < 4096; i++) {
        check_find(m, m->start[i]);
        check_find(m, m->start[i] + m->e[i].length - 1);
    }
    streammap_free(m);
    return 0;
}

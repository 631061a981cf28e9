/*
 * fuzz-record.c — one container record as the read paths see it: container_parse_record (what
 * container_read_record and the scanner check every record with), then, as reader.c does with a record
 * it fetched, its payload decoded: a chunk's data, a stream map (decoded, then searched), or a pack's
 * member table (pack_member for every member and one past the end) and its data (pack_decode).
 *
 * Input: the record's bytes (header + payload), as cut from a container. The record checksum is
 * recomputed on a second pass (fuzz.h) so that the checks behind it are reached.
 */
#include "config.h"

#include "compress/compress.h"
#include "hash/hash.h"
#include "store/container.h"
#include "store/streammap.h"
#include "common/util.h"
#include "fuzz.h"

/* What reader.c does with a stream map's payload: decode it (if compressed) and parse it. */
static void stream_payload(const container_record *rec, const uint8_t *payload)
{
    uint8_t *raw = malloc(rec->raw_len ? rec->raw_len : 1);
    if (!raw)
        return;
    if (decompress_chunk(rec->codec, payload, rec->stored_len, raw, rec->raw_len) == 0) {
        streammap *m;
        if (streammap_decode(raw, rec->raw_len, &m) == 0) {
            size_t i = streammap_find(m, m->size ? m->size - 1 : 0);
            FUZZ_ASSERT(m->size == 0 || i < m->n);
            streammap_free(m);
        }
    }
    free(raw);
}

static void pack_payload(const container_record *rec, const uint8_t *payload)
{
    uint64_t end = 0;
    for (unsigned k = 0; k < rec->members; k++) {
        pack_entry e;
        FUZZ_ASSERT(pack_member(rec, payload, k, &e) == 0);
        /* Members tile the decoded data: reader.c copies [offset, offset + raw_len) of it. */
        FUZZ_ASSERT(e.offset == end && e.raw_len > 0);
        end += e.raw_len;
    }
    FUZZ_ASSERT(end == rec->raw_len);
    pack_entry e;
    FUZZ_ASSERT(pack_member(rec, payload, rec->members, &e) < 0);

    uint8_t *scratch = rec->codec == CODEC_RAW ? NULL : malloc(rec->raw_len ? rec->raw_len : 1);
    const uint8_t *data;
    if (pack_decode(rec, payload, scratch, &data) == 0) {
        /* Touch the last byte of the last member, which must lie inside the decoded data. */
        uint8_t x = rec->raw_len ? data[rec->raw_len - 1] : 0;
        (void)x;
    }
    free(scratch);
}

static void parse(const uint8_t *data, size_t size)
{
    container_record rec;
    const uint8_t *payload;
    if (container_parse_record(data, size, CONTAINER_HEADER_SIZE, &rec, &payload) != 0)
        return;
    FUZZ_ASSERT(payload == data + RECORD_HEADER_SIZE && rec.stored_len <= size - RECORD_HEADER_SIZE);
    if (rec.type == RECORD_PACK) {
        pack_payload(&rec, payload);
    } else if (rec.type == RECORD_STREAM) {
        stream_payload(&rec, payload);
    } else {
        uint8_t *raw = malloc(rec.raw_len ? rec.raw_len : 1);
        if (raw)
            (void)decompress_chunk(rec.codec, payload, rec.stored_len, raw, rec.raw_len);
        free(raw);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse(data, size);
    if (size < RECORD_HEADER_SIZE)
        return 0;
    /* Second pass: the checksum over the header and the payload the header announces (or what there
     * is of it) recomputed. */
    uint8_t *copy = fuzz_dup(data, size);
    size_t stored = MIN((size_t)get_le32(copy + 8), size - RECORD_HEADER_SIZE);
    put_le64(copy + 48, hash_checksum(copy, 48, copy + RECORD_HEADER_SIZE, stored));
    parse(copy, size);
    free(copy);
    return 0;
}

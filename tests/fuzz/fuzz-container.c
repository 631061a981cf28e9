/*
 * fuzz-container.c — a whole container file read through the store callbacks, as verify, reindex and
 * the readers do: container_read_header; for a sealed container container_read_footer; container_scan
 * (which every container gets when it is reindexed, and a temp file always); and, for every record
 * either of them lists, container_read_record at its offset and length, and for a pack
 * container_read_pack_table, pack_member over its table and pack_decode of its data.
 *
 * Input: the container file. A second pass recomputes the checksums of the header, of every record the
 * input lays out from offset 64, and of the footer (fuzz.h).
 */
#include "config.h"

#include "common/util.h"
#include "hash/hash.h"
#include "store/container.h"
#include "fuzz.h"

#define PATH "containers/data/00000001.ctr"
#define RECORDS_READ_MAX 256 /* records read back per list: enough for the seeds, keeps a run fast */

static void read_pack(fuzz_file *f, const container_record *listed, const container_record *rec,
                      const uint8_t *payload)
{
    uint8_t *table;
    if (container_read_pack_table(&fuzz_file_ops, f, PATH, listed, &table) == 0) {
        /* The table read alone must be the one in the record. */
        FUZZ_ASSERT(memcmp(table, payload, (size_t)rec->members * PACK_ENTRY_SIZE) == 0);
        free(table);
    }
    for (unsigned k = 0; k < rec->members; k++) {
        pack_entry e;
        FUZZ_ASSERT(pack_member(rec, payload, k, &e) == 0);
        FUZZ_ASSERT((uint64_t)e.offset + e.raw_len <= rec->raw_len);
    }
    uint8_t *scratch = malloc(rec->raw_len ? rec->raw_len : 1);
    const uint8_t *data;
    if (scratch && pack_decode(rec, payload, scratch, &data) == 0 && rec->raw_len)
        FUZZ_ASSERT(data[rec->raw_len - 1] == data[rec->raw_len - 1]);
    free(scratch);
}

static void read_records(fuzz_file *f, const container_record *recs, size_t n)
{
    for (size_t i = 0; i < n && i < RECORDS_READ_MAX; i++) {
        /* The listed length is bounded by the bytes a footer or a scan found in the file. */
        FUZZ_ASSERT(recs[i].offset + RECORD_HEADER_SIZE + recs[i].stored_len <= f->size);
        uint8_t *buf = malloc(RECORD_HEADER_SIZE + (size_t)recs[i].stored_len);
        if (!buf)
            abort();
        container_record rec;
        const uint8_t *payload;
        if (container_read_record(&fuzz_file_ops, f, PATH, recs[i].offset, recs[i].stored_len, buf, &rec,
                                  &payload) == 0 &&
            rec.type == RECORD_PACK)
            read_pack(f, &recs[i], &rec, payload);
        free(buf);
    }
}

static void walk(const uint8_t *data, size_t size)
{
    fuzz_file f = { data, size };
    container_header h;
    if (container_read_header(&fuzz_file_ops, &f, PATH, &h) != 0)
        return;
    container_record *recs;
    size_t n;
    if (h.footer_offset && container_read_footer(&fuzz_file_ops, &f, PATH, &h, &recs, &n) == 0) {
        read_records(&f, recs, n);
        free(recs);
    }
    uint64_t end;
    int bad;
    if (container_scan(&fuzz_file_ops, &f, PATH, &recs, &n, &end, &bad) == 0) {
        FUZZ_ASSERT(end <= size);
        read_records(&f, recs, n);
        free(recs);
    }
}

/* Recomputes every checksum that the input's own layout lets us find. */
static void fix_up(uint8_t *p, size_t size)
{
    if (size < CONTAINER_HEADER_SIZE)
        return;
    uint64_t footer = get_le64(p + 32);
    uint64_t off = CONTAINER_HEADER_SIZE;
    while (size >= RECORD_HEADER_SIZE && off <= size - RECORD_HEADER_SIZE &&
           memcmp(p + off, "RREC", 4) == 0 && (footer < CONTAINER_HEADER_SIZE || off < footer)) {
        uint32_t stored = get_le32(p + off + 8);
        size_t have = MIN((uint64_t)stored, size - off - RECORD_HEADER_SIZE);
        put_le64(p + off + 48, hash_checksum(p + off, 48, p + off + RECORD_HEADER_SIZE, have));
        off += RECORD_HEADER_SIZE + (uint64_t)stored;
    }
    /* The footer: at footer_offset when sealed, else where the records end (an interrupted seal). */
    uint64_t at = footer >= CONTAINER_HEADER_SIZE ? footer : off;
    if (at <= size && size - at >= 16 && memcmp(p + at, "RHYDFOOT", 8) == 0) {
        uint64_t len = 16 + (uint64_t)get_le32(p + at + 8) * 52;
        if (len + 8 <= size - at)
            put_le64(p + at + len, hash_checksum(p + at, (size_t)len, NULL, 0));
    }
    put_le64(p + 56, hash_checksum(p, 56, NULL, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk(data, size);
    uint8_t *copy = fuzz_dup(data, size);
    fix_up(copy, size);
    walk(copy, size);
    free(copy);
    return 0;
}

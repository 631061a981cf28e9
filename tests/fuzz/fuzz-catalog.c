/*
 * fuzz-catalog.c — a snapshot catalog, plain or packed, read through an in-memory rh_store_ops whose
 * read callback serves the input as the catalog file: catalog_open (header, meta blob, a packed one's
 * block index), then a walk over it as ls, restore and the daemon do: the root by path, every
 * directory listed page by page (catalog_readdir), every child looked up again by name
 * (catalog_lookup, which must find an entry of that name) and read alone (catalog_get).
 *
 * Input: the .snap file. Besides the input as it is, the target reads a copy whose checksums it has
 * recomputed (header, meta blob, every entry; for a packed catalog also its blocks, index and header,
 * and the logical catalog inside when its blocks are raw), and, when the fixed-up input is a plain
 * catalog, the same catalog packed (blocks compressed when that helps, as the writer does), so that a
 * mutation of a plain catalog also reaches the packed reader.
 */
#include "config.h"

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "snapshot/catalog_format.h"
#include "fuzz.h"

#define PATH "snapshots/fuzz.snap"
#define VISIT_MAX 2048 /* entries visited per catalog: a walk stays fast on a large one */
#define DIRS_MAX 256
#define PAGE 16

static void walk_dir(catalog *c, uint64_t dir, uint64_t *dirs, size_t *ndirs, unsigned *budget)
{
    catalog_entry *d;
    if (catalog_get(c, dir, &d) != 0)
        return;
    uint64_t first = d->first_child;
    catalog_entry_free(d);
    for (uint64_t start = 0; *budget > 0;) {
        catalog_entry *ents;
        size_t n;
        if (catalog_readdir(c, dir, start, PAGE, &ents, &n) != 0 || n == 0)
            return;
        for (size_t j = 0; j < n; j++) {
            uint64_t want = first + start + j, found;
            catalog_entry *e;
            /* An entry that could not be read is listed as damaged, in its place, with nothing else. */
            FUZZ_ASSERT(ents[j].idx == want);
            if (ents[j].damage) {
                FUZZ_ASSERT(ents[j].damage < 0 && ents[j].type == 0);
                catalog_entry_clear(&ents[j]);
                if (*budget > 0)
                    (*budget)--;
                continue;
            }
            /* A damaged catalog may fail the lookup (its binary search reads entries beyond this page),
             * but what a lookup finds is an entry of that name. */
            if (catalog_lookup(c, dir, ents[j].name, ents[j].name_len, &found) == 0 &&
                catalog_get(c, found, &e) == 0) {
                FUZZ_ASSERT(e->name_len == ents[j].name_len &&
                            memcmp(e->name, ents[j].name, e->name_len) == 0 && e->parent == dir);
                catalog_entry_free(e);
            }
            if (catalog_get(c, want, &e) == 0) {
                FUZZ_ASSERT(e->name_len == ents[j].name_len && e->parent == dir);
                catalog_entry_free(e);
            }
            if (ents[j].type == CT_DIR && *ndirs < DIRS_MAX)
                dirs[(*ndirs)++] = want;
            catalog_entry_clear(&ents[j]);
            if (*budget > 0)
                (*budget)--;
        }
        free(ents);
        start += n;
    }
}

static void walk(const uint8_t *data, size_t size)
{
    fuzz_file f = { data, size };
    catalog *c;
    if (catalog_open(&fuzz_file_ops, &f, PATH, &c) != 0)
        return;
    const catalog_meta *m = catalog_get_meta(c);
    FUZZ_ASSERT(m && m->source && m->hostname && m->entry_count > 0);
    uint64_t idx;
    (void)catalog_lookup_path(c, "/", &idx);
    (void)catalog_lookup_path(c, "a/b/c", &idx);
    catalog_entry *e;
    FUZZ_ASSERT(catalog_get(c, m->entry_count, &e) == -ENOENT);
    for (uint64_t i = 0; i < m->entry_count && i < 8; i++)
        if (catalog_get(c, i, &e) == 0)
            catalog_entry_free(e);

    uint64_t dirs[DIRS_MAX] = { 0 };
    size_t ndirs = 1;
    unsigned budget = VISIT_MAX;
    for (size_t i = 0; i < ndirs && budget > 0; i++)
        walk_dir(c, dirs[i], dirs, &ndirs, &budget);
    catalog_close(c);
}

/* Checksums of a plain catalog of `size` bytes at p. */
static void fix_plain(uint8_t *p, size_t size)
{
    if (size < CATALOG_HEADER_SIZE)
        return;
    uint64_t count = get_le64(p + CH_ENTRY_COUNT);
    for (uint64_t i = 0; i < count && i < (size - CATALOG_HEADER_SIZE) / CATALOG_ENTRY_SIZE; i++) {
        uint8_t *e = p + CATALOG_HEADER_SIZE + i * CATALOG_ENTRY_SIZE;
        uint64_t off = get_le64(e + CE_NAME_OFFSET);
        uint64_t len = (uint64_t)get_le32(e + CE_NAME_LEN) + get_le32(e + CE_EXTRA_LENGTH);
        if (off <= size && len <= size - off)
            put_le64(e + CE_CHECKSUM, hash_checksum(e, CATALOG_ENTRY_SUMMED, p + off, (size_t)len));
    }
    uint64_t moff = get_le64(p + CH_META_OFFSET), mlen = get_le32(p + CH_META_LENGTH);
    if (moff <= size && mlen <= size - moff)
        put_le64(p + CH_META_CHECKSUM, hash_checksum(p + moff, (size_t)mlen, NULL, 0));
    put_le64(p + CH_CHECKSUM, hash_checksum(p, CATALOG_HEADER_SUMMED, NULL, 0));
}

/* Checksums of a packed catalog: of the logical catalog when every block is raw (it then lies in the
 * file as it is, after the header), of every block, of the index and of the header. */
static void fix_packed(uint8_t *p, size_t size)
{
    if (size < CATALOG_PACK_HEADER_SIZE)
        return;
    uint64_t logical = get_le64(p + CPH_LOGICAL_SIZE), ix = get_le64(p + CPH_INDEX_OFFSET);
    uint64_t n = logical / CATALOG_PACK_BLOCK + (logical % CATALOG_PACK_BLOCK != 0);
    if (ix >= CATALOG_PACK_HEADER_SIZE && ix <= size && n <= (size - ix) / CATALOG_PACK_ENTRY_SIZE) {
        bool raw = true;
        for (uint64_t b = 0; b < n; b++)
            raw = raw && p[ix + b * CATALOG_PACK_ENTRY_SIZE + 4] == CODEC_RAW;
        if (raw && logical <= ix - CATALOG_PACK_HEADER_SIZE)
            fix_plain(p + CATALOG_PACK_HEADER_SIZE, (size_t)logical);
        uint64_t at = CATALOG_PACK_HEADER_SIZE;
        for (uint64_t b = 0; b < n; b++) {
            uint8_t *e = p + ix + b * CATALOG_PACK_ENTRY_SIZE;
            uint32_t len = get_le32(e);
            if (at > ix || len > ix - at)
                break;
            put_le64(e + 8, hash_checksum(p + at, len, NULL, 0));
            at += len;
        }
        put_le64(p + CPH_INDEX_CHECKSUM, hash_checksum(p + ix, (size_t)n * CATALOG_PACK_ENTRY_SIZE, NULL, 0));
    }
    put_le64(p + CPH_CHECKSUM, hash_checksum(p, CATALOG_PACK_HEADER_SUMMED, NULL, 0));
}

/* The plain catalog p[0..size) in the packed form (doc/format.md, "Packed catalogs"); malloc'd. */
static uint8_t *pack(const uint8_t *p, size_t size, size_t *ret_len)
{
    size_t n = size / CATALOG_PACK_BLOCK + (size % CATALOG_PACK_BLOCK != 0);
    size_t per_block = compress_bound(CATALOG_PACK_BLOCK) + CATALOG_PACK_ENTRY_SIZE;
    size_t cap = CATALOG_PACK_HEADER_SIZE + n * per_block;
    uint8_t *out = calloc(1, cap), *index = calloc(n, CATALOG_PACK_ENTRY_SIZE);
    if (!out || !index)
        abort();
    size_t at = CATALOG_PACK_HEADER_SIZE;
    for (size_t b = 0; b < n; b++) {
        size_t len = MIN((size_t)CATALOG_PACK_BLOCK, size - b * CATALOG_PACK_BLOCK);
        uint8_t codec;
        size_t stored;
        if (compress_chunk(1, p + b * CATALOG_PACK_BLOCK, len, out + at, cap - at, &codec, &stored) < 0 ||
            codec == CODEC_RAW) {
            codec = CODEC_RAW;
            stored = len;
            memcpy(out + at, p + b * CATALOG_PACK_BLOCK, len);
        }
        uint8_t *e = index + b * CATALOG_PACK_ENTRY_SIZE;
        put_le32(e, (uint32_t)stored);
        e[4] = codec;
        put_le64(e + 8, hash_checksum(out + at, stored, NULL, 0));
        at += stored;
    }
    memcpy(out, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN);
    put_le32(out + CPH_VERSION, CATALOG_PACK_VERSION);
    put_le32(out + CPH_BLOCK_SIZE, CATALOG_PACK_BLOCK);
    put_le64(out + CPH_LOGICAL_SIZE, size);
    put_le64(out + CPH_INDEX_OFFSET, at);
    put_le64(out + CPH_INDEX_CHECKSUM, hash_checksum(index, n * CATALOG_PACK_ENTRY_SIZE, NULL, 0));
    put_le64(out + CPH_CHECKSUM, hash_checksum(out, CATALOG_PACK_HEADER_SUMMED, NULL, 0));
    memcpy(out + at, index, n * CATALOG_PACK_ENTRY_SIZE);
    free(index);
    *ret_len = at + n * CATALOG_PACK_ENTRY_SIZE;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk(data, size);
    uint8_t *copy = fuzz_dup(data, size);
    bool packed = size >= CATALOG_MAGIC_LEN && memcmp(copy, CATALOG_PACK_MAGIC, CATALOG_MAGIC_LEN) == 0;
    if (packed)
        fix_packed(copy, size);
    else
        fix_plain(copy, size);
    walk(copy, size);
    if (!packed && size >= CATALOG_HEADER_SIZE + CATALOG_ENTRY_SIZE) {
        size_t len;
        uint8_t *p = pack(copy, size, &len);
        walk(p, len);
        free(p);
    }
    free(copy);
    return 0;
}

/*
 * pipeline_store.c — the backup pipeline's writes to the store, on the loop thread: records appended to
 * the open data or stream container (opened on demand, sealed and replaced when the next record would
 * pass the store's seal size), each file's stream map stored once per distinct map and referenced from
 * its catalog entry, and the sealing (or, after a failure, the removal) of the containers at the end of
 * a run. Every sealed container is recorded in the index at once. pipeline.c decides what to append and
 * in which order; nothing here calls back into it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "backup/pipeline.h"
#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"

/* Seals *w (if open), records it in the index and counts its bytes. */
static int seal_one(backup *b, container_writer **w, uint8_t kind)
{
    if (!*w)
        return 0;
    index_container c = { container_writer_id(*w), kind, 0 };
    int r = container_writer_seal(*w);
    *w = NULL;
    if (r < 0)
        return r;
    char path[CONTAINER_PATH_MAX];
    struct stat sst;
    container_path(kind, c.id, path);
    if (fstatat(b->wfd, path, &sst, 0) < 0)
        return -errno;
    c.size = (uint64_t)sst.st_size;
    b->sealed_bytes += c.size;
    if ((r = index_add_container(b->ix, &c)) < 0)
        return r;
    /* On object storage a container is uploaded once, sealed, while the backup goes on. */
    return b->rem ? store_remote_publish_async(b->rem, path) : 0;
}

int pipeline_append_record(backup *b, uint8_t kind, uint8_t codec, const uint8_t digest[HASH_LEN],
                           uint16_t members, const uint8_t *table, const void *payload, uint32_t stored,
                           uint32_t raw, index_loc *ret)
{
    container_writer **w = kind == CONTAINER_DATA ? &b->data_w : &b->stream_w;
    uint32_t *next_id = kind == CONTAINER_DATA ? &b->next_data_id : &b->next_stream_id;
    uint32_t table_len = (uint32_t)members * PACK_ENTRY_SIZE;
    int r;
    if (*w && container_writer_size(*w) + RECORD_HEADER_SIZE + table_len + stored > b->s->cfg.seal_size &&
        container_writer_records(*w) > 0 && (r = seal_one(b, w, kind)) < 0)
        return r;
    if (!*w) {
        _cleanup_(closep) int dfd =
            openat(b->wfd, container_dir(kind), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -errno;
        if ((r = container_writer_open(dfd, kind, (*next_id)++, b->s->cfg.uuid, w)) < 0)
            return r;
    }
    uint64_t off;
    if (members)
        r = container_writer_append_pack(*w, codec, members, table, payload, stored, raw, &off);
    else
        r = container_writer_append(*w, kind == CONTAINER_DATA ? RECORD_CHUNK : RECORD_STREAM, codec,
                                    digest, payload, stored, raw, &off);
    if (r < 0)
        return r;
    *ret = (index_loc){ .container = container_writer_id(*w), .offset = off, .stored_len = table_len + stored,
                        .raw_len = raw, .codec = codec };
    b->st->stored_bytes += RECORD_HEADER_SIZE + table_len + stored;
    return 0;
}

int pipeline_store_map(backup *b, uint64_t handle, const streammap_entry *map, size_t n, uint64_t mapped,
                       uint64_t alloc)
{
    bytebuf raw = { 0 };
    streammap_encode(map, n, mapped, &raw);
    catalog_stream cs = { 0 };
    xhash_sha256(raw.data, raw.len, cs.digest);
    index_loc loc;
    int r = index_find_stream(b->ix, cs.digest, &loc);
    if (r == RH_ENOCHUNK) {
        size_t cap = compress_bound(raw.len);
        _cleanup_(freep) uint8_t *c = xmalloc(cap);
        uint8_t codec;
        size_t clen;
        r = compress_chunk(b->level ? b->level : 1, raw.data, raw.len, c, cap, &codec, &clen);
        if (r >= 0 && raw.len > RECORD_LEN_MAX)
            r = -EFBIG; /* format v1 keeps a stream map in one record (doc/format.md, "Limits") */
        if (r >= 0)
            r = pipeline_append_record(b, CONTAINER_STREAM, codec, cs.digest, 0, NULL,
                                       codec == CODEC_RAW ? raw.data : c, (uint32_t)clen, (uint32_t)raw.len,
                                       &loc);
        if (r >= 0)
            r = index_add_stream(b->ix, cs.digest, &loc);
    }
    buf_free(&raw);
    if (r < 0)
        return r;
    cs.container = loc.container;
    cs.offset = loc.offset;
    cs.stored_len = loc.stored_len;
    cs.raw_len = loc.raw_len;
    cs.codec = loc.codec;
    catalog_writer_set_stream(b->cw, handle, &cs, alloc);
    return 0;
}

int pipeline_seal(backup *b)
{
    int r = seal_one(b, &b->data_w, CONTAINER_DATA);
    if (r >= 0)
        r = seal_one(b, &b->stream_w, CONTAINER_STREAM);
    return r;
}

void pipeline_abort(backup *b)
{
    container_writer_abort(b->data_w);
    container_writer_abort(b->stream_w);
    b->data_w = b->stream_w = NULL;
}

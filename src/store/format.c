/*
 * format.c — the format seam (format.h): our format's table, and the calls through which every reader
 * reaches the records of whichever format its store has.
 */
#include "config.h"

#include <errno.h>

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "store/format.h"
#include "store/reparse.h"

/* ---- ours ---- */

static const char *ours_container_path(rh_store *s, uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX])
{
    (void)s;
    return container_path(kind, id, out);
}

static int ours_parse_record(uint8_t kind, const uint8_t *rec, size_t avail, uint64_t offset,
                             container_record *ret, const uint8_t **ret_payload)
{
    (void)kind;
    /* Records start after the container header: an offset inside it is a damaged reference. */
    if (offset < CONTAINER_HEADER_SIZE)
        return RH_ECORRUPT;
    return container_parse_record(rec, avail, offset, ret, ret_payload);
}

static int ours_decode_streammap(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret)
{
    (void)s;
    return start == 0 ? streammap_decode(raw, len, ret) : RH_ECORRUPT; /* our maps are whole files */
}

static int ours_decode_stub(rh_store *s, const uint8_t *raw, size_t len, store_stub *ret)
{
    reparse_point rp;
    int r = reparse_decode(raw, len, &rp);
    if (r < 0)
        return r;
    if (!reparse_in_store(&rp, s->cfg.uuid))
        return RH_EWRONGSTORE;
    const catalog_stream *st = &rp.stream;
    *ret = (store_stub){ .size = rp.size, .nparts = 1,
                         .one = { .digest_known = REPARSE_DIGEST_PREFIX,
                                  .stream = { .container = st->container, .offset = st->offset,
                                              .stored_len = st->stored_len, .raw_len = st->raw_len,
                                              .codec = st->codec } } };
    memcpy(ret->one.digest, st->digest, REPARSE_DIGEST_PREFIX);
    return 0;
}

const store_format store_format_ours = {
    .name = "rehydrate",
    .indexed = true,
    .data_header = RECORD_HEADER_SIZE,
    .stream_header = RECORD_HEADER_SIZE,
    .container_path = ours_container_path,
    .parse_record = ours_parse_record,
    .digest = hash_sha256,
    .stream_digest_checked = true,
    .decode_streammap = ours_decode_streammap,
    .stub_xattr = REPARSE_XATTR,
    .stub_max = REPARSE_SIZE,
    .decode_stub = ours_decode_stub,
};

/* ---- stubs ---- */

void store_stub_free(store_stub *st)
{
    if (!st)
        return;
    free(st->more);
    st->more = NULL;
}

int store_stub_join(const streammap *const *parts, size_t n, uint64_t size, streammap **ret)
{
    size_t total = 0;
    uint64_t end = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i]->n == 0 || parts[i]->start[0] != end || (parts[i]->loc == NULL) != (parts[0]->loc == NULL))
            return RH_ECORRUPT;
        total += parts[i]->n;
        end = parts[i]->size;
    }
    if (n == 0 || end != size)
        return RH_ECORRUPT;
    streammap *m = mem_calloc(1, sizeof(*m));
    if (m) {
        m->e = mem_calloc(total, sizeof(*m->e));
        m->start = mem_calloc(total, sizeof(*m->start));
        m->loc = parts[0]->loc ? mem_calloc(total, sizeof(*m->loc)) : NULL;
    }
    if (!m || !m->e || !m->start || (parts[0]->loc && !m->loc)) {
        streammap_free(m);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const streammap *p = parts[i];
        memcpy(m->e + m->n, p->e, p->n * sizeof(*p->e));
        memcpy(m->start + m->n, p->start, p->n * sizeof(*p->start));
        if (m->loc)
            memcpy(m->loc + m->n, p->loc, p->n * sizeof(*p->loc));
        m->n += p->n;
    }
    m->size = size;
    *ret = m;
    return 0;
}

/* ---- through s->fmt ---- */

const char *store_container_path(rh_store *s, uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX])
{
    return s->fmt->container_path(s, kind, id, out);
}

int store_parse_record(rh_store *s, uint8_t kind, const uint8_t *rec, size_t avail, uint64_t offset,
                       container_record *ret, const uint8_t **ret_payload)
{
    return s->fmt->parse_record(kind, rec, avail, offset, ret, ret_payload);
}

bool store_record_matches(rh_store *s, uint8_t kind, const container_record *got, const index_loc *loc,
                          const uint8_t *digest, size_t digest_len)
{
    (void)s;
    uint8_t type = kind == CONTAINER_STREAM ? RECORD_STREAM : loc->member ? RECORD_PACK : RECORD_CHUNK;
    return got->type == type && got->stored_len == loc->stored_len && got->seq == loc->seq &&
           (got->raw_len == 0 || loc->member || got->raw_len == loc->raw_len) &&
           (!digest || memcmp(got->digest, digest, digest_len) == 0);
}

int store_digest(rh_store *s, const void *data, size_t len, uint8_t out[HASH_LEN])
{
    return s->fmt->digest(data, len, out);
}

int store_read_record(rh_store *s, uint8_t kind, const index_loc *loc, const uint8_t *digest, size_t digest_len,
                      uint8_t **buf, size_t *cap, container_record *ret, const uint8_t **ret_payload)
{
    /* The length comes from the index, a catalog or a stream map: one over the record limit is corrupt
     * before anything is allocated. */
    if (loc->stored_len > RECORD_LEN_MAX)
        return RH_ECORRUPT;
    size_t len = store_record_span(s, kind, loc->stored_len);
    if (len > *cap) {
        free(*buf);
        *cap = 0;
        if (!(*buf = mem_alloc(len)))
            return -ENOMEM;
        *cap = len;
    }
    char path[CONTAINER_PATH_MAX];
    if (!store_container_path(s, kind, loc->container, path))
        return RH_ENOCONTAINER;
    uint64_t offset = loc->offset;
    for (bool moved = false;; moved = true) {
        int r = s->ops->read(s->ctx, path, offset, *buf, len);
        if (r < 0)
            return r == -ENOENT ? RH_ENOCONTAINER : r;
        container_record got;
        const uint8_t *payload;
        r = store_parse_record(s, kind, *buf, len, offset, &got, &payload);
        if (r >= 0 && store_record_matches(s, kind, &got, loc, digest, digest_len)) {
            *ret = got;
            *ret_payload = payload;
            return 0;
        }
        /* Not the record named: stale (it moved, and the container says where) or damaged. The first
         * error is the one to report when the container knows no other place. */
        if (!store_may_have_moved(s, r) || moved || s->fmt->relocate(s, kind, loc->container, loc->seq, &offset) < 0)
            return r < 0 ? r : RH_ECORRUPT;
    }
}

int store_decode_payload(const container_record *rec, const uint8_t *payload, uint8_t *out, size_t raw_len)
{
    return decompress_chunk(rec->codec, payload, rec->stored_len, out, raw_len);
}

/*
 * reader.c — the lazy read path (see reader.h). It is the public API's (rh_file_*): every allocation
 * may fail, with -ENOMEM, and leaves the file as it was, so that a later read can succeed.
 */
#include "config.h"

#include <errno.h>

#include "common/util.h"
#include "compress/compress.h"
#include "read/reader.h"
#include "store/container.h"
#include "store/format.h"

int reader_load_streammap_at(rh_store *s, const index_loc *loc, const uint8_t *digest, size_t digest_len,
                             uint64_t start, streammap **ret)
{
    _cleanup_(freep) uint8_t *rec = NULL;
    size_t cap = 0;
    container_record got;
    const uint8_t *payload;
    int r = store_read_record(s, CONTAINER_STREAM, loc, digest, digest_len, &rec, &cap, &got, &payload);
    if (r < 0)
        return r;
    /* Allocated once the record, whose length is at most RECORD_LEN_MAX, agrees with the reference. */
    _cleanup_(freep) uint8_t *raw = mem_alloc(loc->raw_len);
    if (!raw)
        return -ENOMEM;
    if ((r = store_decode_payload(&got, payload, raw, loc->raw_len)) < 0)
        return r;
    /* Stream maps are small next to the data they describe: check their digest where the format
     * names them by one. */
    if (s->fmt->stream_digest_checked) {
        uint8_t d[HASH_LEN];
        if ((r = store_digest(s, raw, loc->raw_len, d)) < 0)
            return r;
        if (memcmp(d, got.digest, HASH_LEN) != 0)
            return RH_EDIGEST;
    }
    return store_decode_streammap(s, raw, loc->raw_len, start, ret);
}

int reader_load_streammap(rh_store *s, const catalog_stream *cs, streammap **ret)
{
    index_loc loc = { .container = cs->container, .offset = cs->offset, .stored_len = cs->stored_len,
                      .raw_len = cs->raw_len, .codec = cs->codec };
    return reader_load_streammap_at(s, &loc, cs->digest, HASH_LEN, 0, ret);
}

void pack_memo_clear(pack_memo *m)
{
    free(m->buf);
    free(m->raw);
    *m = (pack_memo){ 0 };
}

/* Reads and decodes the pack at loc into m, unless m holds it already. */
static int load_pack(rh_store *s, const index_loc *loc, pack_memo *m, bool *ret_fresh)
{
    *ret_fresh = false;
    if (m->valid && m->container == loc->container && m->offset == loc->offset)
        return 0;
    m->valid = false;
    const uint8_t *payload;
    int r = store_read_record(s, CONTAINER_DATA, loc, NULL, 0, &m->buf, &m->buf_cap, &m->rec, &payload);
    if (r < 0)
        return r;
    if (loc->member > m->rec.members)
        return RH_ECORRUPT;
    if (m->rec.codec != CODEC_RAW && m->rec.raw_len > m->raw_cap) {
        free(m->raw);
        m->raw_cap = 0;
        if (!(m->raw = mem_alloc(m->rec.raw_len)))
            return -ENOMEM;
        m->raw_cap = m->rec.raw_len;
    }
    if ((r = pack_decode(&m->rec, payload, m->raw, &m->data)) < 0)
        return r;
    m->container = loc->container;
    m->offset = loc->offset;
    m->valid = true;
    *ret_fresh = true;
    return 0;
}

/* Hands every member of the pack in m but `skip` to sibling. */
static void give_siblings(const pack_memo *m, unsigned skip, bool verify, reader_sibling_fn *sibling,
                          void *ud)
{
    const uint8_t *table = m->buf + RECORD_HEADER_SIZE;
    for (unsigned k = 0; k < m->rec.members; k++) {
        pack_entry pe;
        if (k == skip || pack_member(&m->rec, table, k, &pe) < 0)
            continue;
        if (verify) {
            uint8_t d[HASH_LEN];
            if (hash_sha256(m->data + pe.offset, pe.raw_len, d) < 0 || memcmp(d, pe.digest, HASH_LEN) != 0)
                continue; /* fails when it is asked for itself */
        }
        sibling(ud, pe.digest, m->data + pe.offset, pe.raw_len);
    }
}

/* Member loc->member - 1 of a pack into out. */
static int fetch_member(rh_store *s, const index_loc *loc, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                        bool verify, uint8_t *out, pack_memo *memo, reader_sibling_fn *sibling, void *ud)
{
    pack_memo local = { 0 };
    pack_memo *m = memo ? memo : &local;
    bool fresh;
    int r = load_pack(s, loc, m, &fresh);
    pack_entry pe;
    if (r >= 0)
        r = pack_member(&m->rec, m->buf + RECORD_HEADER_SIZE, loc->member - 1u, &pe);
    /* The member table is covered by the record's checksum: it must name the chunk the index named. */
    if (r >= 0 && (pe.raw_len != raw_len || memcmp(pe.digest, digest, HASH_LEN) != 0))
        r = RH_ECORRUPT;
    if (r >= 0) {
        memcpy(out, m->data + pe.offset, raw_len);
        if (sibling && fresh)
            give_siblings(m, loc->member - 1u, verify, sibling, ud);
    }
    if (r < 0)
        m->valid = false;
    pack_memo_clear(&local);
    return r;
}

/* reader_fetch_chunk_ex at location `known`, or (known NULL) where the index says; *ret_found tells
 * whether the location was known (then in *ret_loc). */
static int fetch(rh_store *s, index_t *ix, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                 const index_loc *known, bool verify, uint8_t *out, index_loc *ret_loc, bool *ret_found,
                 pack_memo *memo, reader_sibling_fn *sibling, void *ud)
{
    index_loc loc;
    int r = 0;
    if (known)
        loc = *known;
    else
        r = index_find_chunk(ix, digest, &loc);
    if (r < 0)
        return r;
    *ret_loc = loc;
    *ret_found = true;
    if (loc.raw_len != raw_len)
        return RH_ECORRUPT;
    if (loc.member) {
        r = fetch_member(s, &loc, digest, raw_len, verify, out, memo, sibling, ud);
    } else {
        _cleanup_(freep) uint8_t *rec = NULL;
        size_t cap = 0;
        container_record got;
        const uint8_t *payload;
        r = store_read_record(s, CONTAINER_DATA, &loc, digest, HASH_LEN, &rec, &cap, &got, &payload);
        if (r < 0)
            return r;
        r = store_decode_payload(&got, payload, out, raw_len);
    }
    if (r < 0)
        return r;
    if (verify) {
        uint8_t d[HASH_LEN];
        if ((r = store_digest(s, out, raw_len, d)) < 0)
            return r;
        if (memcmp(d, digest, HASH_LEN) != 0)
            return RH_EDIGEST;
    }
    return 0;
}

int reader_fetch_chunk_ex(rh_store *s, index_t *ix, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                          const index_loc *known, bool verify, uint8_t *out, index_loc *ret_loc,
                          pack_memo *memo, reader_sibling_fn *sibling, void *ud)
{
    index_loc loc;
    bool found = false;
    int r = fetch(s, ix, digest, raw_len, known, verify, out, &loc, &found, memo, sibling, ud);
    if (found && ret_loc)
        *ret_loc = loc;
    return r;
}

/* Replaces *ixp by a handle on the index file of the current generation. */
static int reopen(rh_store *s, index_t **ixp, unsigned *genp, int flags)
{
    index_close(*ixp);
    *ixp = NULL;
    *genp = store_index_gen(s); /* also when the open fails: that failure is of this generation */
    return store_index_open_gen(s, flags, ixp, genp);
}

int reader_fetch_chunk_rx(rh_store *s, index_t **ixp, unsigned *genp, int flags,
                          const uint8_t digest[HASH_LEN], uint64_t raw_len, const index_loc *known,
                          bool verify, uint8_t *out, index_loc *ret_loc, pack_memo *memo,
                          reader_sibling_fn *sibling, void *ud)
{
    /* A location the stream map gave involves no index: nothing to open, nothing to repair. */
    if (known)
        return reader_fetch_chunk_ex(s, NULL, digest, raw_len, known, verify, out, ret_loc, memo, sibling, ud);
    for (int attempt = 0;; attempt++) {
        int r = 0;
        if (!*ixp || *genp != store_index_gen(s))
            r = reopen(s, ixp, genp, flags);
        index_loc loc;
        bool found = false;
        if (r >= 0)
            r = fetch(s, *ixp, digest, raw_len, NULL, verify, out, &loc, &found, memo, sibling, ud);
        /* One retry, after the index was found at fault and rebuilt (store_index_repair), or replaced
         * by a writer behind the callbacks (store_index_replaced). */
        if (r >= 0 || attempt > 0 ||
            !(store_index_repair(s, *genp, r, digest, found ? &loc : NULL) || store_index_replaced(s, *genp))) {
            if (found && ret_loc)
                *ret_loc = loc;
            return r;
        }
    }
}

int reader_fetch_chunk(rh_store *s, index_t *ix, const uint8_t digest[HASH_LEN], uint64_t raw_len,
                       bool verify, uint8_t *out, index_loc *ret_loc)
{
    return reader_fetch_chunk_ex(s, ix, digest, raw_len, NULL, verify, out, ret_loc, NULL, NULL, NULL);
}

int reader_load_file_map(rh_store *s, const catalog_entry *e, streammap **ret)
{
    if (!e->has_stream)
        return RH_ENOTDEDUP;
    streammap *m;
    int r = reader_load_streammap(s, &e->stream, &m);
    if (r < 0)
        return r;
    if (m->size != e->size) {
        streammap_free(m);
        return RH_ECORRUPT;
    }
    *ret = m;
    return 0;
}

int reader_open(rh_store *s, index_t *ix, const catalog_entry *e, bool verify, reader_file **ret)
{
    if (e->type != CT_REG)
        return -EINVAL;
    streammap *m;
    int r = reader_load_file_map(s, e, &m);
    if (r < 0)
        return r;
    r = reader_open_map(s, m, verify, ret);
    if (r >= 0)
        (*ret)->ix = ix;
    return r;
}

int reader_load_stub(rh_store *s, const uint8_t *raw, size_t len, streammap **ret)
{
    store_stub st;
    int r = s->fmt->decode_stub(s, raw, len, &st);
    if (r < 0)
        return r;
    streammap **parts = mem_calloc(st.nparts, sizeof(*parts));
    if (!parts)
        r = -ENOMEM;
    for (size_t i = 0; r >= 0 && i < st.nparts; i++) {
        const store_stub_part *p = store_stub_part_at(&st, i);
        r = reader_load_streammap_at(s, &p->stream, p->digest, p->digest_known, p->begin, &parts[i]);
    }
    streammap *m = NULL;
    if (r >= 0 && st.nparts == 1 && parts[0]->size == st.size) {
        m = parts[0]; /* a whole file's map (its start is 0: reader_load_streammap_at asked for that) */
        parts[0] = NULL;
    } else if (r >= 0) {
        r = store_stub_join((const streammap *const *)parts, st.nparts, st.size, &m);
    }
    for (size_t i = 0; parts && i < st.nparts; i++)
        streammap_free(parts[i]);
    free(parts);
    store_stub_free(&st);
    if (r >= 0)
        *ret = m;
    return r;
}

int reader_open_stub(rh_store *s, const uint8_t *raw, size_t len, bool verify, reader_file **ret)
{
    streammap *m;
    int r = reader_load_stub(s, raw, len, &m);
    return r < 0 ? r : reader_open_map(s, m, verify, ret);
}

int reader_open_map(rh_store *s, streammap *m, bool verify, reader_file **ret)
{
    reader_file *f = mem_calloc(1, sizeof(*f));
    if (!f) {
        streammap_free(m);
        return -ENOMEM;
    }
    f->s = s;
    f->ixp = &f->ix;
    f->map = m;
    f->verify = verify;
    *ret = f;
    return 0;
}

int reader_open_shared(rh_store *s, const catalog_entry *e, bool verify, reader_file **ret)
{
    reader_file *f;
    int r = reader_open(s, NULL, e, verify, &f);
    if (r < 0)
        return r;
    f->ixp = &s->ix;
    f->genp = &s->ix_handle_gen;
    *ret = f;
    return 0;
}

void reader_close(reader_file *f)
{
    if (!f)
        return;
    streammap_free(f->map);
    pack_memo_clear(&f->memo);
    free(f->cache);
    free(f);
}

int reader_pread(reader_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
    const streammap *m = f->map;
    uint8_t *out = buf;
    streammap_range rg;
    size_t total = streammap_range_start(&rg, m, off, len);
    streammap_piece p;
    while (streammap_range_next(&rg, &p)) {
        const streammap_entry *e = &m->e[p.i];
        if (e->hole) {
            memset(out + p.done, 0, p.n);
            continue;
        }
        if (!f->cache_valid || f->cached != p.i) {
            /* No chunk is longer than a record: a longer entry is a damaged map, not a size to allocate. */
            if (e->length > RECORD_LEN_MAX)
                return RH_ECORRUPT;
            f->cache_valid = false;
            if (e->length > f->cache_cap) {
                uint8_t *cache = mem_realloc(f->cache, e->length);
                if (!cache)
                    return -ENOMEM;
                f->cache = cache;
                f->cache_cap = e->length;
            }
            const index_loc *at = streammap_loc(m, p.i);
            int r = f->genp ? reader_fetch_chunk_rx(f->s, f->ixp, f->genp, INDEX_READONLY, e->digest, e->length,
                                                    at, f->verify, f->cache, NULL, &f->memo, NULL, NULL)
                            : reader_fetch_chunk_ex(f->s, f->ix, e->digest, e->length, at, f->verify, f->cache,
                                                    NULL, &f->memo, NULL, NULL);
            if (r < 0)
                return r;
            f->cached = p.i;
            f->cache_valid = true;
        }
        memcpy(out + p.done, f->cache + p.in, p.n);
    }
    *ret_n = total;
    return 0;
}

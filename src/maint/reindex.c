/*
 * reindex.c — rebuilds index.db from the containers. Sealed containers are read through their footers
 * (three small reads each, and one more per pack for its member table, so a rebuild costs little even
 * for a large store); a committed container
 * without a footer is scanned record by record. The rebuild happens in one transaction: a crash during
 * it leaves the previous index as it was.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "common/util.h"
#include "store/container.h"
#include "store/store.h"

static int open_fresh(rh_store *s, const char *path, index_t **ret)
{
    int r = index_open(path, s->cfg.uuid, INDEX_CREATE, ret);
    if (r != RH_ESTALEINDEX)
        return r;
    /* Not our database (another store's, another schema, or garbage): start from nothing. */
    static const char *suffixes[] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        _cleanup_(freep) char *p = xasprintf("%s%s", path, suffixes[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            return -errno;
    }
    return index_open(path, s->cfg.uuid, INDEX_CREATE, ret);
}

/* The members of a pack, from its member table (one small read). */
static int add_pack(rh_store *s, index_t *ix, const char *path, const container_record *rec, index_loc *loc)
{
    _cleanup_(freep) uint8_t *table = NULL;
    int r = container_read_pack_table(s->ops, s->ctx, path, rec, &table);
    for (unsigned k = 0; r >= 0 && k < rec->members; k++) {
        pack_entry pe;
        if ((r = pack_member(rec, table, k, &pe)) < 0)
            break;
        loc->raw_len = pe.raw_len;
        loc->member = (uint16_t)(k + 1);
        r = index_add_chunk(ix, pe.digest, loc);
    }
    return r;
}

static int add_container(rh_store *s, index_t *ix, const index_container *c, uint64_t *chunks,
                         uint64_t *streams)
{
    char path[CONTAINER_PATH_MAX];
    container_path(c->kind, c->id, path);
    container_header h;
    container_record *rec = NULL;
    size_t n = 0;
    int r = container_read_header(s->ops, s->ctx, path, &h);
    if (r >= 0 && (h.kind != c->kind || h.id != c->id || memcmp(h.uuid, s->cfg.uuid, 16) != 0))
        r = RH_ECORRUPT;
    if (r >= 0 && h.footer_offset)
        r = container_read_footer(s->ops, s->ctx, path, &h, &rec, &n);
    else if (r >= 0) {
        uint64_t end;
        r = container_scan(s->ops, s->ctx, path, &rec, &n, &end, NULL);
    }
    for (size_t i = 0; r >= 0 && i < n; i++) {
        index_loc loc = { c->id, rec[i].offset, rec[i].stored_len, rec[i].raw_len, rec[i].codec, 0 };
        if (rec[i].type == RECORD_PACK && c->kind == CONTAINER_DATA) {
            r = add_pack(s, ix, path, &rec[i], &loc);
            if (r == RH_ECORRUPT) { /* its table is damaged: that costs this pack, not the container */
                fprintf(stderr, "rehydrate: %s: pack at offset %llu: %s (skipped; run 'rehydrate verify')\n",
                        path, (unsigned long long)rec[i].offset, rh_strerror(r));
                r = 0;
            } else if (r >= 0) {
                *chunks += rec[i].members;
            }
        } else if (rec[i].type == RECORD_CHUNK && c->kind == CONTAINER_DATA) {
            r = index_add_chunk(ix, rec[i].digest, &loc);
            (*chunks)++;
        } else if (rec[i].type == RECORD_STREAM && c->kind == CONTAINER_STREAM) {
            r = index_add_stream(ix, rec[i].digest, &loc);
            (*streams)++;
        } else {
            r = RH_ECORRUPT;
        }
    }
    free(rec);
    if (r >= 0)
        r = index_add_container(ix, c);
    return r;
}

int store_reindex(rh_store *s, const char *path, uint64_t *ret_chunks, uint64_t *ret_streams)
{
    index_container *have = NULL;
    size_t n = 0;
    int r = store_list_containers(s, &have, &n);
    if (r < 0)
        return r;
    index_t *ix = NULL;
    uint64_t chunks = 0, streams = 0;
    r = open_fresh(s, path, &ix);
    if (r >= 0)
        r = index_begin(ix);
    if (r >= 0)
        r = index_clear(ix);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        r = add_container(s, ix, &have[i], &chunks, &streams);
        if (r < 0) {
            char cp[CONTAINER_PATH_MAX];
            fprintf(stderr, "rehydrate: %s: %s (skipped; run 'rehydrate verify')\n",
                    container_path(have[i].kind, have[i].id, cp), rh_strerror(r));
            /* A damaged container must not stop the rebuild: its chunks are simply not indexed, and
             * verify reports the files that need them. It is still recorded, so the index is current. */
            r = index_add_container(ix, &have[i]);
        }
    }
    if (r >= 0)
        r = index_commit(ix);
    else if (ix)
        index_rollback(ix);
    index_close(ix);
    free(have);
    if (r >= 0) {
        if (ret_chunks)
            *ret_chunks = chunks;
        if (ret_streams)
            *ret_streams = streams;
    }
    return r;
}

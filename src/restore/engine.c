/*
 * engine.c — rh_restore_files: rehydrate stubs in place.
 *
 * 1. Open every stub, decode its reparse point, and empty it to its size (so holes are holes and a
 *    retried restore starts clean).
 * 2. Stream maps: every distinct stream map is a "need" placed into the files that use it. The needs
 *    are read container by container (see read_phase) and decoded.
 * 3. Chunks: every distinct chunk of every stream map is a need, placed at every (file, offset) where it
 *    occurs; the index says where it lives. The needs are read container by container again.
 * 4. Files whose needs all succeeded are synced (one syncfs per file system) and lose their xattr.
 *
 * read_phase asks the application for its container order (order_containers), then for each container
 * calls preview with the extents it will read and reads them, coalescing neighbouring records into reads
 * of up to READ_MAX bytes. All callbacks run on the calling thread; each block read is handed to the
 * libuv thread pool, which checks, decompresses (once per chunk) and pwrites it while the next block is
 * read. A need that fails marks every file it belongs to as failed; the others go on.
 *
 * Memory that cannot be had is one more such failure: a need, a block or a step fails with -ENOMEM
 * (a step that every file needs, every file), and the call still ends with a result for each file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <uv.h>

#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"
#include "restore/engine.h"
#include "restore/reparse.h"
#include "store/container.h"
#include "store/streammap.h"

#define READ_MAX (4u << 20)       /* largest coalesced read */
#define READ_GAP (256u << 10)     /* records this close are read together, the gap with them */
#define INFLIGHT_MAX (32ull << 20) /* bytes read but not yet processed by the pool */
#define POOL_MIN (128u << 10)      /* blocks larger than this read into pooled buffers */
#define WRITEBACK_STEP (32ull << 20) /* see start_writeback */

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

typedef struct rfile {
    const char *path;
    int fd;
    int result; /* 0 so far, RH_NOT_A_STUB, or the first error */
    reparse_point rp;
    const streammap *map; /* owned by the need of its stream map */
    uint64_t pending;     /* data bytes not written yet; the workers count them down atomically */
    dev_t dev;
} rfile;

typedef struct place {
    uint64_t off;
    uint32_t file;
} place;

typedef struct need {
    uint8_t digest[HASH_LEN];
    uint64_t raw_len;
    index_loc loc;
    bool located;          /* loc came from the stream map, not the index (data phase) */
    bool found;            /* loc is known: the stream map gave it or the index had a row (data phase) */
    bool retry;            /* read again after the index was repaired */
    size_t first, nplaces; /* into engine.places */
    int err;
    size_t ctr_rank, ext_rank; /* read order */
    streammap *map;            /* decoded stream map (stream phase) */
} need;

typedef struct engine {
    rh_store *s;
    index_t *ix;     /* s->ix, the store's shared handle (store_shared_index) */
    unsigned ix_gen; /* its generation */
    int ix_err;      /* why ix is NULL, after a failed reopen */
    unsigned flags;
    rfile *files;
    size_t nfiles;
    need *needs;
    size_t nneeds;
    place *places;
    size_t nplaces;
    uv_loop_t loop;
    uint64_t inflight;
    uint8_t *pool[INFLIGHT_MAX / READ_MAX]; /* block buffers kept for reuse (block_buf) */
    size_t npool;
} engine;

typedef struct block {
    uv_work_t work;
    engine *e;
    uint8_t kind;
    uint8_t *data;
    uint64_t base, len;
    size_t nrecs;
    need *recs[]; /* the needs whose records the block holds */
} block;

/* ---- step 1: the stubs ---- */

static int open_stub(engine *e, rfile *f)
{
    f->fd = open(f->path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f->fd < 0)
        return errno == EISDIR ? RH_NOT_A_STUB : -errno;
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return RH_NOT_A_STUB;
    f->dev = st.st_dev;
    uint8_t raw[REPARSE_SIZE + 1];
    ssize_t n = fgetxattr(f->fd, REPARSE_XATTR, raw, sizeof(raw));
    if (n < 0)
        return errno == ENODATA || errno == ENOTSUP ? RH_NOT_A_STUB : -errno;
    int r = reparse_decode(raw, (size_t)n, &f->rp);
    if (r < 0)
        return r;
    if (!reparse_in_store(&f->rp, e->s->cfg.uuid))
        return RH_EWRONGSTORE;
    /* Start from an empty file of the right size: holes read as zeros, and a retry rewrites all. A
     * stub as phase 1 makes it (the right size, no data) is that already. */
    if ((uint64_t)st.st_size == f->rp.size && lseek(f->fd, 0, SEEK_DATA) < 0 && errno == ENXIO)
        return 0;
    if (ftruncate(f->fd, 0) < 0 || ftruncate(f->fd, (off_t)f->rp.size) < 0)
        return -errno;
    return 0;
}

/* Fails a file (its first error stands) and says why through the store's log (rh_store_set_log),
 * naming the file by its index in the call and its path: an application can tell its user more than
 * the code alone. */
static void fail_file(engine *e, rfile *f, int err, const char *what)
{
    if (f->result != 0)
        return;
    f->result = err;
    store_log(e->s, RH_LOG_ERROR, "restore: file %zu (%s): %s: %s", (size_t)(f - e->files), f->path, what,
              rh_strerror(err));
}

/* Fails every file that has not failed yet: a step that all of them need could not be taken (no
 * memory for it). */
static void fail_all(engine *e, int err, const char *what)
{
    for (size_t i = 0; i < e->nfiles; i++)
        fail_file(e, &e->files[i], err, what);
}

/* ---- needs: distinct chunks or stream maps and where they go ---- */

typedef struct tuple {
    uint8_t digest[HASH_LEN];
    uint64_t raw_len, off;
    uint32_t file;
    const catalog_stream *stream; /* stream phase: its location */
    const index_loc *loc;         /* data phase: its location, when the stream map gives it */
} tuple;

static int cmp_tuple(const void *a, const void *b)
{
    const tuple *x = a, *y = b;
    int c = memcmp(x->digest, y->digest, HASH_LEN);
    return c ? c : (x->file < y->file ? -1 : x->file > y->file);
}

/* Turns tuples into needs (one per distinct digest) and places, into e->needs and e->places, which the
 * caller has emptied. -ENOMEM leaves them empty. */
static int build_needs(engine *e, tuple *t, size_t n)
{
    sort_array(t, n, sizeof(*t), cmp_tuple);
    e->nneeds = e->nplaces = 0;
    e->needs = mem_calloc(n, sizeof(*e->needs));
    e->places = mem_calloc(n, sizeof(*e->places));
    if (!e->needs || !e->places) {
        free(e->needs);
        free(e->places);
        e->needs = NULL;
        e->places = NULL;
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || memcmp(t[i].digest, t[i - 1].digest, HASH_LEN) != 0) {
            need *nd = &e->needs[e->nneeds++];
            memcpy(nd->digest, t[i].digest, HASH_LEN);
            nd->raw_len = t[i].raw_len;
            nd->first = e->nplaces;
            if (t[i].stream)
                nd->loc = (index_loc){ t[i].stream->container, t[i].stream->offset, t[i].stream->stored_len,
                                       t[i].stream->raw_len, t[i].stream->codec, 0 };
            if (t[i].loc) {
                nd->loc = *t[i].loc;
                nd->located = true;
            }
        }
        e->places[e->nplaces++] = (place){ t[i].off, t[i].file };
        e->needs[e->nneeds - 1].nplaces++;
    }
    return 0;
}

/* Empties e->needs and e->places, freeing the stream maps that needs of the stream phase decoded. */
static void drop_needs(engine *e)
{
    for (size_t i = 0; i < e->nneeds; i++)
        streammap_free(e->needs[i].map);
    free(e->needs);
    free(e->places);
    e->needs = NULL;
    e->places = NULL;
    e->nneeds = e->nplaces = 0;
    for (size_t i = 0; i < e->nfiles; i++)
        e->files[i].map = NULL;
}

/* Fails every file that needs nd, a stream map (kind CONTAINER_STREAM) or a chunk, saying where it is. */
static void fail_need(engine *e, need *nd, int err, uint8_t kind)
{
    char cp[CONTAINER_PATH_MAX], hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", nd->digest[i]);
    _cleanup_(freep) char *what =
        kind == CONTAINER_STREAM
            ? mem_asprintf("stream map in %s, record at offset %llu",
                           container_path(kind, nd->loc.container, cp), (unsigned long long)nd->loc.offset)
        : nd->found
            ? mem_asprintf("chunk %s in %s, record at offset %llu", hex,
                           container_path(kind, nd->loc.container, cp), (unsigned long long)nd->loc.offset)
            : mem_asprintf("chunk %s (not in the index)", hex);
    const char *said = what ? what : kind == CONTAINER_STREAM ? "its stream map" : "a chunk";
    for (size_t k = 0; k < nd->nplaces; k++)
        fail_file(e, &e->files[e->places[nd->first + k].file], err, said);
}

/* ---- reading containers in the application's order ---- */

static int cmp_need_loc(const void *a, const void *b)
{
    const need *x = a, *y = b;
    if (x->loc.container != y->loc.container)
        return x->loc.container < y->loc.container ? -1 : 1;
    return x->loc.offset < y->loc.offset ? -1 : x->loc.offset > y->loc.offset;
}

static int cmp_need_rank(const void *a, const void *b)
{
    const need *x = *(need *const *)a, *y = *(need *const *)b;
    if (x->ctr_rank != y->ctr_rank)
        return x->ctr_rank < y->ctr_rank ? -1 : 1;
    if (x->ext_rank != y->ext_rank)
        return x->ext_rank < y->ext_rank ? -1 : 1;
    return x->loc.offset < y->loc.offset ? -1 : x->loc.offset > y->loc.offset;
}

static uint64_t rec_end(const need *nd) { return nd->loc.offset + RECORD_HEADER_SIZE + nd->loc.stored_len; }

/* Counts n bytes of f as written. Writeback of a file starts when it is complete, and every
 * WRITEBACK_STEP bytes of a large one, so that the disk writes while the engine reads and decompresses
 * and the syncfs of finish_files has little left to wait for. */
static void start_writeback(rfile *f, uint64_t n)
{
    uint64_t left = __atomic_sub_fetch(&f->pending, n, __ATOMIC_RELAXED);
    if (left == 0 || (left + n) / WRITEBACK_STEP != left / WRITEBACK_STEP)
        sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* Writes a chunk's bytes to every place that needs them. */
static int place_chunk(engine *e, const need *nd, const uint8_t *raw)
{
    for (size_t k = 0; k < nd->nplaces; k++) {
        const place *p = &e->places[nd->first + k];
        rfile *f = &e->files[p->file];
        ssize_t wn = pwrite(f->fd, raw, nd->raw_len, (off_t)p->off);
        if (wn < 0)
            return -errno;
        if ((uint64_t)wn != nd->raw_len)
            return -EIO;
        start_writeback(f, nd->raw_len);
    }
    return 0;
}

/*
 * A pack member: the pack is checked and decoded once for all its members in the block (they follow one
 * another in b->recs, since they share an offset). *pk remembers the last pack decoded: its offset (or
 * UINT64_MAX), its record, its payload and the result of decoding it, in `data`.
 */
typedef struct decoded_pack {
    uint64_t offset;
    int err;
    container_record rec;
    const uint8_t *payload;
    const uint8_t *data;
} decoded_pack;

static int pack_need(block *b, need *nd, decoded_pack *pk, const uint8_t **ret_raw)
{
    if (pk->offset != nd->loc.offset) {
        pk->offset = nd->loc.offset;
        uint64_t at = nd->loc.offset - b->base;
        int r = container_parse_record(b->data + at, b->len - at, nd->loc.offset, &pk->rec, &pk->payload);
        if (r >= 0 && (pk->rec.type != RECORD_PACK || pk->rec.stored_len != nd->loc.stored_len))
            r = RH_ECORRUPT;
        if (r >= 0) {
            uint8_t *scratch = pk->rec.codec == CODEC_RAW ? NULL : thread_scratch(pk->rec.raw_len);
            r = pk->rec.codec != CODEC_RAW && !scratch
                    ? -ENOMEM
                    : pack_decode(&pk->rec, pk->payload, scratch, &pk->data);
        }
        pk->err = r < 0 ? r : 0;
    }
    if (pk->err < 0)
        return pk->err;
    pack_entry pe;
    int r = pack_member(&pk->rec, pk->payload, nd->loc.member - 1u, &pe);
    if (r >= 0 && (pe.raw_len != nd->raw_len || memcmp(pe.digest, nd->digest, HASH_LEN) != 0))
        r = RH_ECORRUPT;
    if (r >= 0)
        *ret_raw = pk->data + pe.offset;
    return r;
}

/* A record of its own: a chunk or a stream map. */
static int record_need(block *b, need *nd, const uint8_t **ret_raw)
{
    uint64_t at = nd->loc.offset - b->base;
    container_record got;
    const uint8_t *payload;
    int r = container_parse_record(b->data + at, b->len - at, nd->loc.offset, &got, &payload);
    /* A stream map need knows only a prefix of its digest (from the reparse point): the rest
     * comes from the record, whose checksum container_parse_record has checked. */
    size_t known = b->kind == CONTAINER_STREAM ? REPARSE_DIGEST_PREFIX : HASH_LEN;
    if (r >= 0 && (memcmp(got.digest, nd->digest, known) != 0 || got.raw_len != nd->raw_len ||
                   got.stored_len != nd->loc.stored_len ||
                   got.type != (b->kind == CONTAINER_DATA ? RECORD_CHUNK : RECORD_STREAM)))
        r = RH_ECORRUPT;
    if (r < 0)
        return r;
    memcpy(nd->digest, got.digest, HASH_LEN);
    /* A raw record is written from the block itself; others are decoded into the thread's
     * scratch buffer, which the next record reuses. */
    *ret_raw = payload;
    if (got.codec != CODEC_RAW) {
        uint8_t *out = thread_scratch(nd->raw_len);
        if (!out)
            return -ENOMEM;
        r = decompress_chunk(got.codec, payload, got.stored_len, out, nd->raw_len);
        *ret_raw = out;
    } else if (got.stored_len != nd->raw_len) {
        r = RH_ECORRUPT;
    }
    return r;
}

/* Processes one block on the pool: check, decode, and (data) write every record in it. */
static void block_work(uv_work_t *w)
{
    block *b = container_of(w, block, work);
    engine *e = b->e;
    decoded_pack pk = { .offset = UINT64_MAX };
    for (size_t i = 0; i < b->nrecs; i++) {
        need *nd = b->recs[i];
        const uint8_t *raw = NULL;
        int r = nd->loc.member ? pack_need(b, nd, &pk, &raw) : record_need(b, nd, &raw);
        if (r >= 0 && (b->kind == CONTAINER_STREAM || (e->flags & RH_RESTORE_VERIFY))) {
            uint8_t d[HASH_LEN];
            r = hash_sha256(raw, nd->raw_len, d);
            if (r >= 0 && memcmp(d, nd->digest, HASH_LEN) != 0)
                r = RH_EDIGEST;
        }
        if (r >= 0 && b->kind == CONTAINER_STREAM)
            r = store_decode_streammap(e->s, raw, nd->raw_len, &nd->map);
        else if (r >= 0)
            r = place_chunk(e, nd, raw);
        nd->err = r < 0 ? r : 0;
    }
}

/*
 * Block buffers. A block of more than POOL_MIN bytes reads into a buffer of READ_MAX bytes that is kept
 * for the next one (a fresh buffer costs a page fault per 4 KiB that pread copies into it) and counts
 * READ_MAX against INFLIGHT_MAX, which bounds the pool. Both ends run on the loop thread.
 */
static uint64_t block_charge(uint64_t len) { return len > POOL_MIN && len <= READ_MAX ? READ_MAX : len; }

/* A buffer for a block of len bytes, or NULL. */
static uint8_t *block_buf(engine *e, uint64_t len)
{
    if (block_charge(len) != READ_MAX)
        return mem_alloc(len);
    return e->npool ? e->pool[--e->npool] : mem_alloc(READ_MAX);
}

static void block_done(uv_work_t *w, int status)
{
    block *b = container_of(w, block, work);
    engine *e = b->e;
    e->inflight -= block_charge(b->len);
    if (block_charge(b->len) == READ_MAX && e->npool < ARRAY_SIZE(e->pool))
        e->pool[e->npool++] = b->data;
    else
        free(b->data);
    free(b);
}

/* The rank of each container (by its first appearance in the plan) and of each need's extent. */
static int apply_plan(engine *e, need **order, size_t n, const uint32_t *ids, size_t nids,
                      const rh_container_extent *plan, size_t plan_len)
{
    size_t *rank = mem_calloc(nids, sizeof(*rank));
    if (!rank)
        return -ENOMEM;
    for (size_t c = 0; c < nids; c++)
        rank[c] = SIZE_MAX;
    size_t next = 0;
    for (size_t k = 0; k < plan_len; k++) {
        if (plan[k].container_index >= nids) {
            free(rank);
            return -EINVAL;
        }
        if (rank[plan[k].container_index] == SIZE_MAX)
            rank[plan[k].container_index] = next++;
    }
    for (size_t c = 0; c < nids; c++) /* containers the plan left out come after, in our order */
        if (rank[c] == SIZE_MAX)
            rank[c] = next++;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        need *nd = order[i];
        while (ids[c] != nd->loc.container)
            c++;
        nd->ctr_rank = rank[c];
        nd->ext_rank = SIZE_MAX; /* records no extent covers are read after those that one does */
        for (size_t k = 0; k < plan_len; k++) {
            const rh_container_extent *x = &plan[k];
            uint64_t end = x->length == UINT64_MAX ? UINT64_MAX : x->offset + x->length;
            if (x->container_index == c && nd->loc.offset >= x->offset && nd->loc.offset < end) {
                nd->ext_rank = k;
                break;
            }
        }
    }
    free(rank);
    return 0;
}

/* Fails needs order[from..to) with err (their records will not be read). */
static void fail_needs(need **order, size_t from, size_t to, int err)
{
    for (size_t k = from; k < to; k++)
        order[k]->err = err;
}

/*
 * Reads the records of needs order[0..n) (sorted by container, offset) of containers of `kind`. A
 * negative return (the application's order_containers failed, or memory ran out before anything was
 * read) fails them all; once reading has begun, each need that cannot be read gets its own error.
 */
static int read_phase(engine *e, uint8_t kind, need **order, size_t n)
{
    if (n == 0)
        return 0;
    int r = -ENOMEM;
    char (*paths)[CONTAINER_PATH_MAX] = NULL;
    const char **pp = NULL;
    rh_extent *ext = NULL;
    /* The distinct containers, in our order (ascending id). */
    uint32_t *ids = mem_calloc(n, sizeof(*ids));
    if (!ids)
        goto out;
    size_t nids = 0;
    for (size_t i = 0; i < n; i++)
        if (nids == 0 || ids[nids - 1] != order[i]->loc.container)
            ids[nids++] = order[i]->loc.container;
    paths = mem_calloc(nids, sizeof(*paths));
    pp = mem_calloc(nids, sizeof(*pp));
    if (!paths || !pp)
        goto out;
    for (size_t c = 0; c < nids; c++)
        pp[c] = container_path(kind, ids[c], paths[c]);

    rh_container_extent *plan = NULL;
    size_t plan_len = 0;
    r = 0;
    if (e->s->ops->order_containers)
        r = e->s->ops->order_containers(e->s->ctx, nids, pp, &plan, &plan_len);
    if (r >= 0)
        r = apply_plan(e, order, n, ids, nids, plan, plan ? plan_len : 0);
    rh_plan_free(plan);
    if (r >= 0 && !(ext = mem_calloc(n, sizeof(*ext))))
        r = -ENOMEM;
    if (r < 0)
        goto out;
    sort_array(order, n, sizeof(*order), cmp_need_rank);

    for (size_t i = 0; i < n;) {
        /* One container: [i, j). Plan the coalesced extents, preview them, then read them. */
        size_t j = i;
        while (j < n && order[j]->ctr_rank == order[i]->ctr_rank)
            j++;
        char cpath[CONTAINER_PATH_MAX];
        container_path(kind, order[i]->loc.container, cpath);
        size_t next = 0;
        size_t *ext_first = mem_calloc(j - i + 1, sizeof(*ext_first));
        if (!ext_first) {
            fail_needs(order, i, j, -ENOMEM);
            i = j;
            continue;
        }
        for (size_t k = i; k < j; k++) {
            need *nd = order[k];
            rh_extent *last = next ? &ext[next - 1] : NULL;
            if (last && rec_end(nd) <= last->offset + last->length && nd->loc.offset >= last->offset)
                continue; /* another member of a pack the extent already holds */
            if (last && nd->loc.offset >= last->offset + last->length &&
                nd->loc.offset - (last->offset + last->length) <= READ_GAP &&
                rec_end(nd) - last->offset <= READ_MAX) {
                last->length = rec_end(nd) - last->offset;
            } else {
                ext_first[next] = k;
                ext[next++] = (rh_extent){ nd->loc.offset, rec_end(nd) - nd->loc.offset };
            }
        }
        ext_first[next] = j;
        if (e->s->ops->preview && (r = e->s->ops->preview(e->s->ctx, cpath, next, ext)) < 0) {
            fail_needs(order, i, j, r);
            r = 0;
            next = 0; /* the application refused this container: its needs fail */
        }
        for (size_t x = 0; x < next; x++) {
            while (e->inflight >= INFLIGHT_MAX)
                uv_run(&e->loop, UV_RUN_ONCE);
            size_t nrecs = ext_first[x + 1] - ext_first[x];
            block *b = mem_calloc(1, sizeof(*b) + nrecs * sizeof(b->recs[0]));
            uint8_t *data = b ? block_buf(e, ext[x].length) : NULL;
            if (!data) {
                free(b);
                fail_needs(order, ext_first[x], ext_first[x + 1], -ENOMEM);
                continue;
            }
            b->e = e;
            b->kind = kind;
            b->base = ext[x].offset;
            b->len = ext[x].length;
            b->data = data;
            b->nrecs = nrecs;
            memcpy(b->recs, order + ext_first[x], nrecs * sizeof(b->recs[0]));
            int rr = e->s->ops->read(e->s->ctx, cpath, b->base, b->data, b->len);
            if (rr < 0) {
                rr = rr == -ENOENT ? RH_ENOCONTAINER : rr;
                for (size_t k = 0; k < b->nrecs; k++)
                    b->recs[k]->err = rr;
                e->inflight += block_charge(b->len);
                block_done(&b->work, 0); /* gives the buffer back */
                continue;
            }
            e->inflight += block_charge(b->len);
            if ((rr = uv_queue_work(&e->loop, &b->work, block_work, block_done)) < 0) {
                block_work(&b->work); /* cannot happen with a valid loop; stay correct anyway */
                block_done(&b->work, 0);
            }
        }
        free(ext_first);
        i = j;
    }
    uv_run(&e->loop, UV_RUN_DEFAULT);
out:
    free(ext);
    free(ids);
    free(paths);
    free(pp);
    return r;
}

/* Collects the needs without an error (retry: only those marked for a retry), sorted by location, as
 * pointers for read_phase; NULL when there is no memory for them. */
static need **readable_needs(engine *e, bool retry, size_t *ret_n)
{
    sort_array(e->needs, e->nneeds, sizeof(*e->needs), cmp_need_loc);
    need **order = mem_calloc(e->nneeds, sizeof(*order));
    if (!order)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < e->nneeds; i++)
        if (!e->needs[i].err && (!retry || e->needs[i].retry))
            order[n++] = &e->needs[i];
    *ret_n = n;
    return order;
}

/* ---- the whole call ---- */

/* Reads and decodes the stream map of every file still going; a file whose map fails fails. */
static void stream_phase(engine *e)
{
    tuple *t = mem_calloc(e->nfiles, sizeof(*t));
    if (!t) {
        fail_all(e, -ENOMEM, "listing the stream maps");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result)
            continue;
        /* Files with the same stream map share one need. The reparse point has only a digest prefix,
         * so the key is the prefix and the map's location: one stream map is stored once. */
        const catalog_stream *st = &f->rp.stream;
        t[n] = (tuple){ .raw_len = st->raw_len, .file = (uint32_t)i, .stream = st };
        memcpy(t[n].digest, st->digest, REPARSE_DIGEST_PREFIX);
        put_le32(t[n].digest + REPARSE_DIGEST_PREFIX, st->container);
        put_le64(t[n].digest + REPARSE_DIGEST_PREFIX + 4, st->offset);
        n++;
    }
    int r = build_needs(e, t, n);
    free(t);
    if (r < 0) {
        fail_all(e, r, "listing the stream maps");
        return;
    }
    size_t nr;
    need **order = readable_needs(e, false, &nr);
    r = order ? read_phase(e, CONTAINER_STREAM, order, nr) : -ENOMEM;
    free(order);
    for (size_t i = 0; i < e->nneeds; i++) {
        need *nd = &e->needs[i];
        int err = r < 0 ? r : nd->err;
        for (size_t k = 0; k < nd->nplaces && !err; k++) {
            rfile *f = &e->files[e->places[nd->first + k].file];
            if (nd->map->size != f->rp.size)
                fail_file(e, f, RH_ECORRUPT, "its stream map's size differs from its reparse point's");
            else
                f->map = nd->map;
        }
        if (err)
            fail_need(e, nd, err, CONTAINER_STREAM);
    }
}

/* Looks every need (retry: every need marked for a retry) up in the index. */
static void lookup_needs(engine *e, bool retry)
{
    /* One read transaction for all the lookups: outside one, SQLite takes and drops its locks and
     * checks for a journal on every query (five system calls per chunk). */
    bool txn = e->ix && index_begin(e->ix) == 0;
    for (size_t i = 0; i < e->nneeds; i++) {
        need *nd = &e->needs[i];
        if ((retry && !nd->retry) || nd->located) {
            nd->found = true;
            continue;
        }
        int r = e->ix ? index_find_chunk(e->ix, nd->digest, &nd->loc) : e->ix_err;
        nd->found = r == 0;
        if (r == 0 && nd->loc.raw_len != nd->raw_len)
            r = RH_ECORRUPT;
        nd->err = r;
    }
    if (txn)
        index_commit(e->ix);
}

/*
 * Asks store_index_repair about the needs that failed, until it finds the index at fault and rebuilds
 * it: then true, with e->ix reopened. A record read that failed is compared with its container's record
 * table, once per container (needs are sorted by location).
 */
static bool repair_index(engine *e)
{
    uint32_t checked = 0;
    bool any = false;
    for (size_t i = 0; i < e->nneeds; i++) {
        need *nd = &e->needs[i];
        /* A location from the stream map owes nothing to the index. */
        if (!nd->err || nd->located || (nd->found && any && nd->loc.container == checked))
            continue;
        if (store_index_repair(e->s, e->ix_gen, nd->err, nd->digest, nd->found ? &nd->loc : NULL)) {
            e->ix_err = store_shared_index(e->s, &e->ix);
            e->ix_gen = e->s->ix_handle_gen;
            if (e->ix_err < 0)
                e->ix = NULL;
            return true;
        }
        if (!nd->found)
            return false; /* not repaired: the index was rebuilt once already, or the failure is not damage */
        checked = nd->loc.container;
        any = true;
    }
    return false;
}

/* Reads every chunk of every file still going and writes it where it belongs; a file whose chunk fails
 * fails. */
static void data_phase(engine *e)
{
    size_t cap = 0;
    for (size_t i = 0; i < e->nfiles; i++)
        if (!e->files[i].result)
            cap += e->files[i].map->n;
    tuple *t = mem_calloc(cap, sizeof(*t));
    if (!t) {
        drop_needs(e);
        fail_all(e, -ENOMEM, "listing its chunks");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result)
            continue;
        for (size_t k = 0; k < f->map->n; k++) {
            const streammap_entry *se = &f->map->e[k];
            if (se->hole)
                continue; /* the stub is already a hole there */
            f->pending += se->length;
            t[n] = (tuple){ .raw_len = se->length, .off = f->map->start[k], .file = (uint32_t)i,
                            .loc = streammap_loc(f->map, k) };
            memcpy(t[n].digest, se->digest, HASH_LEN);
            n++;
        }
    }
    /* The stream maps are no longer needed once their chunks are listed as needs (which copy the
     * locations the maps carry): the stream phase's needs, which own them, go once the new ones are
     * built. */
    need *stream_needs = e->needs;
    size_t nstream = e->nneeds;
    free(e->places);
    e->needs = NULL;
    e->places = NULL;
    int r = build_needs(e, t, n);
    free(t);
    for (size_t i = 0; i < nstream; i++)
        streammap_free(stream_needs[i].map);
    free(stream_needs);
    for (size_t i = 0; i < e->nfiles; i++)
        e->files[i].map = NULL;
    if (r < 0) {
        fail_all(e, r, "listing its chunks");
        return;
    }
    lookup_needs(e, false);
    size_t nr;
    need **order = readable_needs(e, false, &nr);
    r = order ? read_phase(e, CONTAINER_DATA, order, nr) : -ENOMEM;
    free(order);
    /* Needs that failed through a damaged index are looked up again in the repaired one and read. */
    if (r >= 0 && repair_index(e)) {
        for (size_t i = 0; i < e->nneeds; i++)
            e->needs[i].retry = e->needs[i].err != 0;
        lookup_needs(e, true);
        order = readable_needs(e, true, &nr);
        r = order ? read_phase(e, CONTAINER_DATA, order, nr) : -ENOMEM;
        free(order);
    }
    for (size_t i = 0; i < e->nneeds; i++)
        if (r < 0 || e->needs[i].err)
            fail_need(e, &e->needs[i], r < 0 ? r : e->needs[i].err, CONTAINER_DATA);
}

/* Makes the data durable (one syncfs per file system) before the xattrs go: a crash in between leaves
 * stubs that a retry rehydrates again, never a file without its xattr and without its data. */
static void finish_files(engine *e)
{
    /* The file systems synced so far; without memory to remember them, each file's is synced. */
    dev_t *done = mem_calloc(e->nfiles, sizeof(*done));
    size_t ndone = 0;
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result)
            continue;
        size_t k = 0;
        while (done && k < ndone && done[k] != f->dev)
            k++;
        if (k == ndone) {
            if (done)
                done[ndone++] = f->dev;
            if (syncfs(f->fd) < 0) { /* nothing on this file system is known durable: all keep their xattr */
                int err = -errno;
                for (size_t m = i; m < e->nfiles; m++)
                    if (e->files[m].dev == f->dev)
                        fail_file(e, &e->files[m], err, "syncfs of its file system");
            }
        }
    }
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result == 0 && fremovexattr(f->fd, REPARSE_XATTR) < 0 && errno != ENODATA)
            f->result = -errno;
    }
    free(done);
}

int engine_restore(rh_store *s, size_t n, const char *const *paths, unsigned flags, int *results)
{
    if ((n && !paths) || n > RH_RESTORE_MAX_FILES || (flags & ~RH_RESTORE_VERIFY))
        return -EINVAL;
    index_t *ix;
    int r = store_shared_index(s, &ix);
    engine e = { .s = s, .ix = ix, .ix_gen = s->ix_handle_gen, .flags = flags, .nfiles = n };
    if (r >= 0 && !(e.files = mem_calloc(n, sizeof(*e.files))))
        r = -ENOMEM;
    if (r >= 0 && (r = uv_loop_init(&e.loop)) < 0)
        free(e.files);
    if (r < 0) { /* the contract (rehydrate.h): past the argument checks, every result is written */
        for (size_t i = 0; results && i < n; i++)
            results[i] = r;
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        e.files[i].path = paths[i];
        e.files[i].result = open_stub(&e, &e.files[i]);
    }
    stream_phase(&e);
    data_phase(&e);
    finish_files(&e);

    size_t ok = 0, failed = 0;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        rfile *f = &e.files[i];
        if (f->fd >= 0)
            close(f->fd);
        if (results)
            results[i] = f->result;
        if (f->result < 0) {
            failed++;
            if (!first)
                first = f->result;
        } else {
            ok++;
        }
    }
    uv_loop_close(&e.loop);
    while (e.npool)
        free(e.pool[--e.npool]);
    drop_needs(&e);
    free(e.files);
    if (!failed)
        return 0;
    return ok ? RH_EPARTIAL : first;
}

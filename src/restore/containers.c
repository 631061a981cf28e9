/*
 * containers.c — the restore engine's reads (see engine.c's head comment): the needs of one phase, read
 * container by container in the order the application plans, each preceded by a preview of its
 * extents, neighbouring records coalesced into reads of up to READ_MAX bytes, each block checked,
 * decompressed and written out by the libuv pool while the next is read.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/util.h"
#include "hash/hash.h"
#include "compress/compress.h"
#include "restore/engine_internal.h"
#include "store/container.h"
#include "store/format.h"

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

static uint64_t rec_end(const engine *e, uint8_t kind, const need *nd)
{
    return nd->loc.offset + store_record_span(e->s, kind, nd->loc.stored_len);
}

/* Counts n bytes of f as written. Writeback of a file starts when it is complete, and every
 * WRITEBACK_STEP bytes of a large one, so that the disk writes while the engine reads and decompresses
 * and the syncfs of finish_files has little left to wait for. */
static void start_writeback(rfile *f, uint64_t n)
{
    uint64_t left = __atomic_sub_fetch(&f->pending, n, __ATOMIC_RELAXED);
    if (left == 0 || (left + n) / WRITEBACK_STEP != left / WRITEBACK_STEP)
        sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/*
 * Writes a chunk's bytes to every place that needs them. A chunk of zeros is not written: the stub is
 * a hole there already (open_stub empties it), and stays one. Our stream maps record zero runs as
 * holes anyway; Windows stores them as chunks like any other, and a sparse file would come back full.
 */
static int place_chunk(engine *e, const need *nd, const uint8_t *raw)
{
    bool zero = mem_is_zero(raw, nd->raw_len);
    for (size_t k = 0; k < nd->nplaces; k++) {
        const place *p = &e->places[nd->first + k];
        rfile *f = &e->files[p->file];
        if (zero) {
            start_writeback(f, nd->raw_len);
            continue;
        }
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
        int r = store_parse_record(b->e->s, b->kind, b->data + at, b->len - at, nd->loc.offset, &pk->rec,
                                   &pk->payload);
        if (r >= 0 && !store_record_matches(b->e->s, b->kind, &pk->rec, &nd->loc, NULL, 0))
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

/*
 * A record of its own: a chunk or a stream map. A record that is not the one the need names is
 * NEED_MOVED when the format can say where records moved (engine_relocate then asks, on the loop
 * thread, and the need is read again there), else damage.
 */
static int record_need(block *b, need *nd, const uint8_t **ret_raw)
{
    rh_store *s = b->e->s;
    uint64_t at = nd->loc.offset - b->base;
    container_record got;
    const uint8_t *payload;
    int r = store_parse_record(s, b->kind, b->data + at, b->len - at, nd->loc.offset, &got, &payload);
    /* A stream map need knows only a prefix of its digest (from the stub): the rest comes from the
     * record, whose checksum store_parse_record has checked. */
    size_t known = b->kind == CONTAINER_STREAM ? nd->digest_known : HASH_LEN;
    if (r >= 0 && !store_record_matches(s, b->kind, &got, &nd->loc, nd->digest, known))
        r = RH_ECORRUPT;
    if (r < 0 && store_may_have_moved(s, r) && !nd->relocated) {
        nd->moved_err = r;
        return NEED_MOVED;
    }
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
        r = store_decode_payload(&got, payload, out, nd->raw_len);
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
        if (r == NEED_MOVED) {
            nd->err = r; /* read_moved reads it where it is now */
            continue;
        }
        bool check = b->kind == CONTAINER_STREAM ? e->s->fmt->stream_digest_checked
                                                 : (e->flags & RH_RESTORE_VERIFY) != 0;
        if (r >= 0 && check) {
            uint8_t d[HASH_LEN];
            r = store_digest(e->s, raw, nd->raw_len, d);
            if (r >= 0 && memcmp(d, nd->digest, HASH_LEN) != 0)
                r = RH_EDIGEST;
        }
        if (r >= 0 && b->kind == CONTAINER_STREAM)
            r = store_decode_streammap(e->s, raw, nd->raw_len, nd->map_start, &nd->map);
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

static int cmp_need_ptr_loc(const void *a, const void *b) { return cmp_need_loc(*(need *const *)a, *(need *const *)b); }

/*
 * The needs of order[0..n) whose records were not where their locations said (NEED_MOVED): asks the
 * format where each moved (on this thread: it reads through the callbacks) and reads them there, once.
 * A record the format cannot place keeps the error that the first read found.
 */
static void read_moved(engine *e, uint8_t kind, need **order, size_t n)
{
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        need *nd = order[i];
        if (nd->err != NEED_MOVED)
            continue;
        uint64_t off;
        nd->relocated = true;
        if (e->s->fmt->relocate(e->s, kind, nd->loc.container, nd->loc.seq, &off) < 0) {
            nd->err = nd->moved_err;
            continue;
        }
        nd->loc.offset = off;
        nd->err = 0;
        order[nm++] = nd; /* order[0..i) is no longer needed: the moved ones gather at its front */
    }
    if (nm == 0)
        return;
    sort_array(order, nm, sizeof(*order), cmp_need_ptr_loc);
    int r = engine_read_phase(e, kind, order, nm);
    if (r < 0)
        fail_needs(order, 0, nm, r);
}

/*
 * Reads the records of needs order[0..n) (sorted by container, offset) of containers of `kind`. A
 * negative return (the application's order_containers failed, or memory ran out before anything was
 * read) fails them all; once reading has begun, each need that cannot be read gets its own error.
 */
int engine_read_phase(engine *e, uint8_t kind, need **order, size_t n)
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
        pp[c] = store_container_path(e->s, kind, ids[c], paths[c]);

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
        store_container_path(e->s, kind, order[i]->loc.container, cpath);
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
            if (last && rec_end(e, kind, nd) <= last->offset + last->length && nd->loc.offset >= last->offset)
                continue; /* another member of a pack the extent already holds */
            if (last && nd->loc.offset >= last->offset + last->length &&
                nd->loc.offset - (last->offset + last->length) <= READ_GAP &&
                rec_end(e, kind, nd) - last->offset <= READ_MAX) {
                last->length = rec_end(e, kind, nd) - last->offset;
            } else {
                ext_first[next] = k;
                ext[next++] = (rh_extent){ nd->loc.offset, rec_end(e, kind, nd) - nd->loc.offset };
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
    read_moved(e, kind, order, n);
out:
    free(ext);
    free(ids);
    free(paths);
    free(pp);
    return r;
}

/* Collects the needs without an error (retry: only those marked for a retry), sorted by location, as
 * pointers for read_phase; NULL when there is no memory for them. */
need **engine_readable_needs(engine *e, bool retry, size_t *ret_n)
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


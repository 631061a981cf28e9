/*
 * engine.c — rh_restore_files: rehydrate stubs in place.
 *
 * 1. Open every stub, decode its reparse point, and empty it to its size (so holes are holes and a
 *    retried restore starts clean).
 * 2. Stream maps: every distinct stream map is a "need" placed into the files that use it. The needs
 *    are read container by container (engine_read_phase, containers.c) and decoded.
 * 3. Chunks: every distinct chunk of every stream map is a need, placed at every (file, offset) where it
 *    occurs; the stream map or the index says where it lives. The needs are read container by
 *    container again.
 * 4. Files whose needs all succeeded are synced (one syncfs per file system) and lose their xattr.
 *
 * engine_read_phase (containers.c) asks the application for its container order (order_containers),
 * then for each container calls preview with the extents it will read and reads them, coalescing
 * neighbouring records into reads of up to READ_MAX bytes. All callbacks run on the calling thread;
 * each block read is handed to the libuv thread pool, which checks, decompresses (once per chunk) and
 * pwrites it while the next block is read. A need that fails marks every file it belongs to as failed;
 * the others go on.
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
#include "restore/engine_internal.h"
#include "store/reparse.h"
#include "store/container.h"
#include "store/format.h"
#include "store/streammap.h"

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
    /* Most stubs fit on the stack (ours always do); a larger one is read once its size is known. */
    const store_format *fmt = e->s->fmt;
    uint8_t small[128];
    _cleanup_(freep) uint8_t *big = NULL;
    uint8_t *raw = small;
    ssize_t n = fgetxattr(f->fd, fmt->stub_xattr, small, sizeof(small));
    if (n < 0 && errno == ERANGE) {
        n = fgetxattr(f->fd, fmt->stub_xattr, NULL, 0);
        if (n > (ssize_t)fmt->stub_max)
            return RH_ECORRUPT;
        if (n >= 0 && !(raw = big = mem_alloc((size_t)n + 1)))
            return -ENOMEM;
        if (n >= 0)
            n = fgetxattr(f->fd, fmt->stub_xattr, big, (size_t)n + 1);
    }
    if (n < 0)
        return errno == ENODATA || errno == ENOTSUP ? RH_NOT_A_STUB : errno == ERANGE ? RH_ECORRUPT : -errno;
    int r = fmt->decode_stub(e->s, raw, (size_t)n, &f->rp);
    if (r < 0)
        return r;
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
void engine_fail_file(engine *e, rfile *f, int err, const char *what)
{
    if (f->result != 0)
        return;
    f->result = err;
    store_log(e->s, RH_LOG_ERROR, "restore: file %zu (%s): %s: %s", (size_t)(f - e->files), f->path, what,
              rh_strerror(err));
}

/* Fails every file that has not failed yet: a step that all of them need could not be taken (no
 * memory for it). */
void engine_fail_all(engine *e, int err, const char *what)
{
    for (size_t i = 0; i < e->nfiles; i++)
        engine_fail_file(e, &e->files[i], err, what);
}

/* ---- needs: distinct chunks or stream maps and where they go ---- */

typedef struct tuple {
    uint8_t digest[HASH_LEN];
    uint64_t raw_len, off;
    uint32_t file;
    const index_loc *stream;      /* stream phase: its location */
    const index_loc *loc;         /* data phase: its location, when the stream map gives it */
    uint64_t map_start;           /* stream phase: the file offset where the map begins */
    uint8_t digest_known;         /* stream phase: leading bytes of digest that the stub names */
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
            nd->digest_known = t[i].digest_known;
            nd->map_start = t[i].map_start;
            nd->first = e->nplaces;
            if (t[i].stream)
                nd->loc = *t[i].stream;
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

/* Forgets a file's stream maps: those of the needs it borrowed, and the one joined for it. */
static void rfile_drop_maps(rfile *f)
{
    f->map = NULL;
    free(f->parts);
    f->parts = NULL;
    streammap_free(f->own);
    f->own = NULL;
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
        rfile_drop_maps(&e->files[i]);
}

/* Fails every file that needs nd, a stream map (kind CONTAINER_STREAM) or a chunk, saying where it is. */
void engine_fail_need(engine *e, need *nd, int err, uint8_t kind)
{
    char cp[CONTAINER_PATH_MAX], hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", nd->digest[i]);
    _cleanup_(freep) char *what =
        kind == CONTAINER_STREAM
            ? mem_asprintf("stream map in %s, record at offset %llu",
                           store_container_path(e->s, kind, nd->loc.container, cp), (unsigned long long)nd->loc.offset)
        : nd->found
            ? mem_asprintf("chunk %s in %s, record at offset %llu", hex,
                           store_container_path(e->s, kind, nd->loc.container, cp), (unsigned long long)nd->loc.offset)
            : mem_asprintf("chunk %s (not in the index)", hex);
    const char *said = what ? what : kind == CONTAINER_STREAM ? "its stream map" : "a chunk";
    for (size_t k = 0; k < nd->nplaces; k++)
        engine_fail_file(e, &e->files[e->places[nd->first + k].file], err, said);
}

/* ---- the whole call ---- */

/* Reads and decodes the stream map of every file still going; a file whose map fails fails. */
static void stream_phase(engine *e)
{
    size_t cap = 0;
    for (size_t i = 0; i < e->nfiles; i++)
        if (!e->files[i].result)
            cap += e->files[i].rp.nparts;
    tuple *t = mem_calloc(cap ? cap : 1, sizeof(*t));
    if (!t) {
        engine_fail_all(e, -ENOMEM, "listing the stream maps");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result)
            continue;
        if (f->rp.nparts > 1 && !(f->parts = mem_calloc(f->rp.nparts, sizeof(*f->parts)))) {
            engine_fail_file(e, f, -ENOMEM, "listing its stream maps");
            continue;
        }
        /* Files with the same stream map share one need. A stub has only a digest prefix, so the key
         * is the prefix (at most 20 bytes of it are checked) and the map's location: one stream map is
         * stored once. A place of this phase is a part of a file: its index goes in place.off. */
        for (size_t k = 0; k < f->rp.nparts; k++) {
            const store_stub_part *p = store_stub_part_at(&f->rp, k);
            size_t known = p->digest_known < HASH_LEN - 12 ? p->digest_known : HASH_LEN - 12;
            t[n] = (tuple){ .raw_len = p->stream.raw_len, .off = k, .file = (uint32_t)i, .stream = &p->stream,
                            .map_start = p->begin, .digest_known = (uint8_t)known };
            memcpy(t[n].digest, p->digest, known);
            put_le32(t[n].digest + known, p->stream.container);
            put_le64(t[n].digest + known + 4, p->stream.offset);
            n++;
        }
    }
    int r = build_needs(e, t, n);
    free(t);
    if (r < 0) {
        engine_fail_all(e, r, "listing the stream maps");
        return;
    }
    size_t nr;
    need **order = engine_readable_needs(e, false, &nr);
    r = order ? engine_read_phase(e, CONTAINER_STREAM, order, nr) : -ENOMEM;
    free(order);
    for (size_t i = 0; i < e->nneeds; i++) {
        need *nd = &e->needs[i];
        int err = r < 0 ? r : nd->err;
        for (size_t k = 0; k < nd->nplaces && !err; k++) {
            const place *pl = &e->places[nd->first + k];
            rfile *f = &e->files[pl->file];
            if (f->parts)
                f->parts[pl->off] = nd->map;
            else if (nd->map->size != f->rp.size)
                engine_fail_file(e, f, RH_ECORRUPT, "its stream map's size differs from its reparse point's");
            else
                f->map = nd->map;
        }
        if (err)
            engine_fail_need(e, nd, err, CONTAINER_STREAM);
    }
    /* A file of several stream maps gets one map of its own, joined from theirs. */
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (!f->parts || f->result)
            continue;
        int rr = store_stub_join((const streammap *const *)f->parts, f->rp.nparts, f->rp.size, &f->own);
        if (rr < 0)
            engine_fail_file(e, f, rr, rr == -ENOMEM ? "joining its stream maps"
                                                     : "its stream maps do not cover it from start to end");
        else
            f->map = f->own;
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
        engine_fail_all(e, -ENOMEM, "listing its chunks");
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
        rfile_drop_maps(&e->files[i]);
    if (r < 0) {
        engine_fail_all(e, r, "listing its chunks");
        return;
    }
    lookup_needs(e, false);
    size_t nr;
    need **order = engine_readable_needs(e, false, &nr);
    r = order ? engine_read_phase(e, CONTAINER_DATA, order, nr) : -ENOMEM;
    free(order);
    /* Needs that failed through a damaged index are looked up again in the repaired one and read. */
    if (r >= 0 && repair_index(e)) {
        for (size_t i = 0; i < e->nneeds; i++)
            e->needs[i].retry = e->needs[i].err != 0;
        lookup_needs(e, true);
        order = engine_readable_needs(e, true, &nr);
        r = order ? engine_read_phase(e, CONTAINER_DATA, order, nr) : -ENOMEM;
        free(order);
    }
    for (size_t i = 0; i < e->nneeds; i++)
        if (r < 0 || e->needs[i].err)
            engine_fail_need(e, &e->needs[i], r < 0 ? r : e->needs[i].err, CONTAINER_DATA);
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
                        engine_fail_file(e, &e->files[m], err, "syncfs of its file system");
            }
        }
    }
    for (size_t i = 0; i < e->nfiles; i++) {
        rfile *f = &e->files[i];
        if (f->result == 0 && fremovexattr(f->fd, e->s->fmt->stub_xattr) < 0 && errno != ENODATA)
            f->result = -errno;
    }
    free(done);
}

int engine_restore(rh_store *s, size_t n, const char *const *paths, unsigned flags, int *results)
{
    if ((n && !paths) || n > RH_RESTORE_MAX_FILES || (flags & ~RH_RESTORE_VERIFY))
        return -EINVAL;
    index_t *ix = NULL;
    /* A format whose stream maps say where every chunk is needs no index (format.h). */
    int r = s->fmt->indexed ? store_shared_index(s, &ix) : 0;
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
        store_stub_free(&f->rp);
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

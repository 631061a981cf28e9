/*
 * pipeline.c — the stages of the backup data path; see pipeline.h for the overview.
 *
 * Ownership: a bfile lives from pipeline_add_file() until its last segment is appended; a segment from
 * its start until it is appended. Stage A touches only its segment and the region state of its file,
 * which no other thread uses while A runs (a file has at most one segment in stage A, and the loop
 * thread starts the next only after A completes). Everything else runs on the loop thread.
 *
 * What the stages produce is written to the store by pipeline_store.c (records into containers, stream
 * maps, sealing); this file decides what to write and in which order.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>

#include "backup/pipeline.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "hash/hash.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

enum piece_kind { PIECE_HOLE, PIECE_DATA };
enum piece_state { PIECE_KNOWN, PIECE_NEW };

typedef struct piece {
    uint8_t kind, state, codec;
    uint64_t len;
    size_t off; /* in the segment's data (PIECE_DATA) */
    uint8_t digest[HASH_LEN];
    size_t clen;   /* stored bytes: after stage B, g->data[off, off + clen) is the payload */
    uint32_t pack; /* a new chunk stored in a pack: 1 + its index in the segment's packs; else 0 */
} piece;

/*
 * New chunks of one segment stored together as a pack record (store format 2): neighbours compress
 * better together than alone. The members are the new pieces in [first, last] whose `pack` names this
 * pack; stage B moves their bytes together and compresses them as one.
 */
typedef struct pack {
    size_t first, last;
    uint16_t members;
    uint32_t raw;   /* the members' bytes */
    size_t off;     /* after stage B, g->data[off, off + clen) is the stored data */
    size_t clen;
    uint8_t codec;
    bool appended;
} pack;

typedef struct bfile {
    backup *b;
    int fd;
    uint64_t handle;
    char *path;
    uint64_t size;            /* st_size when the file was opened: we read no further */
    uint64_t off, region_end; /* next byte to read; end of the data region being read */
    uint8_t *leftover;        /* bytes after the last cut, carried into the next segment */
    size_t leftover_len;
    int error;
    const char *error_op;
    /* the stream map, built on the loop thread as segments are appended */
    streammap_entry *map;
    size_t map_n, map_cap;
    uint64_t mapped, alloc;
    struct bfile *next_parked; /* in b->parked, waiting for room to start its next segment */
} bfile;

/* One file's share of a segment: the pieces p[first .. first + n) and the bytes read for them. */
typedef struct part {
    bfile *f;
    size_t first, n;
    uint64_t read;
    bool last; /* the file's last segment: append finishes the file */
    int err;
    const char *err_op;
} part;

/*
 * A segment is either up to SEGMENT_SIZE bytes of one data region of a file (one part), or a batch:
 * whole small files, read and cut one after another by one task (one part each). Batching spares a
 * small file the two hand-offs to the pool and back that cost more than its bytes do.
 */
struct segment {
    uv_work_t work;
    backup *b;
    uint64_t seq;
    bool batch;
    part *parts;
    size_t nparts, partcap;
    size_t nfds; /* batch: open files it holds until stage A closes them */
    uint8_t *data;
    bool big; /* data is a buffer of big_buf_size(), else of SMALL_BUF_SIZE */
    size_t len, leftover_off;
    piece *p;
    size_t np, pcap;
    pack *packs;
    size_t npacks, packcap;
    uint64_t charge; /* bytes counted in inflight_bytes */
    segment *next;
};

/* ---- stage A: read, cut, hash (thread pool) ---- */

static piece *add_piece(segment *g, part *pt)
{
    g->p = xgrow(g->p, &g->pcap, g->np, sizeof(*g->p), 64);
    piece *p = &g->p[g->np++];
    memset(p, 0, sizeof(*p));
    pt->n++;
    return p;
}

/* Moves f->off to the next data region; records the hole before it in the part. */
static int next_region(segment *g, part *pt)
{
    bfile *f = pt->f;
    off_t d = lseek(f->fd, (off_t)f->off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO)
            d = (off_t)f->size; /* only a hole remains */
        else if (errno == EINVAL || errno == EOPNOTSUPP)
            d = (off_t)f->off; /* no hole support: all data */
        else
            return -errno;
    }
    uint64_t data = MIN((uint64_t)d, f->size);
    if (data > f->off) {
        piece *p = add_piece(g, pt);
        p->kind = PIECE_HOLE;
        p->len = data - f->off;
    }
    f->off = data;
    off_t h = data < f->size ? lseek(f->fd, (off_t)data, SEEK_HOLE) : (off_t)f->size;
    f->region_end = h < 0 ? f->size : MIN((uint64_t)h, f->size);
    return 0;
}

/* Reads exactly n bytes of f at f->off into buf and advances f->off. */
static int read_full(part *pt, uint8_t *buf, size_t n)
{
    bfile *f = pt->f;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(f->fd, buf + got, n - got, (off_t)(f->off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            pt->err = r < 0 ? -errno : -ENODATA;
            pt->err_op = r < 0 ? "read" : "read (the file shrank while it was read)";
            return pt->err;
        }
        got += (size_t)r;
    }
    f->off += n;
    pt->read += n;
    return 0;
}

/* Cuts g->data[pos, end) into pieces of pt: zero chunks become holes, the others are hashed now when
 * `hash`, else by stage H. Returns where the last cut fell (end, when the region ends there). */
static size_t cut_chunks(segment *g, part *pt, size_t pos, size_t end, bool region_done, bool hash)
{
    const chunker *ch = &g->b->s->chunker;
    while (pos < end) {
        size_t c = chunker_next(ch, g->data + pos, end - pos, region_done);
        if (c == 0)
            break;
        piece *p = add_piece(g, pt);
        p->len = c;
        p->off = pos;
        if (mem_is_zero(g->data + pos, c)) {
            p->kind = PIECE_HOLE; /* all-zero chunks are not stored */
        } else {
            p->kind = PIECE_DATA;
            if (hash)
                xhash_sha256(g->data + pos, c, p->digest);
        }
        pos += c;
    }
    return pos;
}

/* ---- segment buffers ---- */

/*
 * A segment's buffer holds what stage A reads: a batch (at most BATCH_MAX_BYTES), or a file's leftover
 * (less than one chunk) and at most SEGMENT_SIZE new bytes. Buffers come from two pools by size; a
 * segment's size class is chosen when it starts (segment_big), since a big buffer is charged in full
 * against PIPELINE_MAX_INFLIGHT_BYTES: that bounds how many big buffers the pool ever makes.
 */
#define SMALL_BUF_SIZE (BATCH_MAX_BYTES + 1)
static size_t big_buf_size(const backup *b) { return SEGMENT_SIZE + b->s->chunker.p.max_size + 1; }

static void buf_take(backup *b, segment *g)
{
    buf_pool *pool = &b->pools[g->big];
    pthread_mutex_lock(&b->buf_lock);
    g->data = pool->n ? pool->bufs[--pool->n] : NULL;
    pthread_mutex_unlock(&b->buf_lock);
    if (!g->data)
        g->data = xmalloc(g->big ? big_buf_size(b) : SMALL_BUF_SIZE);
}

static void buf_give(backup *b, segment *g)
{
    buf_pool *pool = &b->pools[g->big];
    if (g->data) {
        pthread_mutex_lock(&b->buf_lock);
        if (pool->n < ARRAY_SIZE(pool->bufs)) {
            pool->bufs[pool->n++] = g->data;
            g->data = NULL;
        }
        pthread_mutex_unlock(&b->buf_lock);
    }
    free(g->data);
    g->data = NULL;
}

void pipeline_buffers_free(backup *b)
{
    for (size_t i = 0; i < ARRAY_SIZE(b->pools); i++)
        while (b->pools[i].n)
            free(b->pools[i].bufs[--b->pools[i].n]);
}

/* Stage A of a segment of one file: the next (up to) SEGMENT_SIZE bytes of its current data region. */
static void read_segment(segment *g)
{
    part *pt = &g->parts[0];
    bfile *f = pt->f;

    if (f->leftover_len == 0 && f->off == f->region_end && f->off < f->size) {
        int r = next_region(g, pt);
        if (r < 0) {
            pt->err = r;
            pt->err_op = "seek";
            return;
        }
    }
    size_t want = (size_t)MIN((uint64_t)SEGMENT_SIZE, f->region_end - f->off);
    buf_take(g->b, g);
    if (f->leftover_len)
        memcpy(g->data, f->leftover, f->leftover_len);
    if (read_full(pt, g->data + f->leftover_len, want) < 0)
        return;
    /* The disk reads the next segments while this one is cut and the next stage A waits its turn. */
    if (f->off < f->region_end)
        posix_fadvise(f->fd, (off_t)f->off, (off_t)MIN((uint64_t)READ_AHEAD_SEGMENTS * SEGMENT_SIZE,
                                                       f->region_end - f->off), POSIX_FADV_WILLNEED);
    g->len = f->leftover_len + want;
    bool region_done = f->off == f->region_end;
    g->leftover_off = cut_chunks(g, pt, 0, g->len, region_done, false);
    pt->last = region_done && f->off >= f->size;
}

/* Stage A of a batch: every file whole, one after another, each closed once read. */
static void read_batch(segment *g)
{
    buf_take(g->b, g);
    for (size_t i = 0; i < g->nparts; i++) {
        part *pt = &g->parts[i];
        bfile *f = pt->f;
        pt->first = g->np;
        pt->last = true;
        while (f->off < f->size) {
            int r = next_region(g, pt);
            if (r < 0) {
                pt->err = r;
                pt->err_op = "seek";
                break;
            }
            size_t start = g->len, want = (size_t)(f->region_end - f->off);
            if (read_full(pt, g->data + start, want) < 0)
                break;
            g->len += want;
            cut_chunks(g, pt, start, g->len, true, true);
        }
        if (f->fd >= 0) {
            close(f->fd);
            f->fd = -1;
        }
    }
}

static void stage_a(uv_work_t *w)
{
    segment *g = container_of(w, segment, work);
    if (g->batch)
        read_batch(g);
    else
        read_segment(g);
}

/* ---- stage H: hash a file segment's chunks (thread pool) ---- */

/* A file's segments must be cut one after another, but hashed in parallel: stage A of the next segment
 * starts as soon as this one is cut, so that one large file keeps every core busy. (A batch hashes in
 * stage A: batches already run side by side.) */
static void stage_h(uv_work_t *w)
{
    segment *g = container_of(w, segment, work);
    for (size_t i = 0; i < g->np; i++)
        if (g->p[i].kind == PIECE_DATA)
            xhash_sha256(g->data + g->p[i].off, g->p[i].len, g->p[i].digest);
}

/* ---- stage B: compress new chunks (thread pool) ---- */

static bool piece_new(const piece *p) { return p->kind == PIECE_DATA && p->state == PIECE_NEW; }

/* Ends the pack being gathered, [first, last] with n members and raw bytes: two members or more make a
 * pack; a lone chunk stays a record of its own. */
static void close_pack(segment *g, size_t first, size_t last, unsigned n, uint32_t raw)
{
    if (n < 2) {
        if (n == 1)
            g->p[first].pack = 0;
        return;
    }
    g->packs = xgrow(g->packs, &g->packcap, g->npacks, sizeof(*g->packs), 8);
    g->packs[g->npacks++] = (pack){ .first = first, .last = last, .members = (uint16_t)n, .raw = raw };
}

/* Groups the segment's new chunks, in order, into packs of at most PACK_RAW_MAX bytes. */
static void form_packs(segment *g)
{
    size_t first = 0, last = 0;
    unsigned n = 0;
    uint32_t raw = 0;
    for (size_t i = 0; i < g->np; i++) {
        piece *p = &g->p[i];
        if (!piece_new(p))
            continue;
        if (n && (raw + p->len > PACK_RAW_MAX || n == PACK_MEMBERS_MAX)) {
            close_pack(g, first, last, n, raw);
            n = 0;
            raw = 0;
        }
        if (n == 0)
            first = i;
        last = i;
        n++;
        raw += (uint32_t)p->len;
        p->pack = (uint32_t)g->npacks + 1; /* the index it gets if it closes with two members or more */
    }
    close_pack(g, first, last, n, raw);
}

/* Moves a pack's members together (their bytes are no longer needed where they were: known chunks
 * between them are not stored) and compresses them in place as one. */
static void compress_pack(segment *g, pack *pk, int level)
{
    uint32_t id = (uint32_t)(pk - g->packs) + 1;
    pk->off = g->p[pk->first].off;
    size_t at = pk->off;
    for (size_t i = pk->first; i <= pk->last; i++) {
        piece *p = &g->p[i];
        if (!piece_new(p) || p->pack != id)
            continue;
        if (p->off != at)
            memmove(g->data + at, g->data + p->off, p->len);
        at += p->len;
    }
    if (compress_pack_inplace(level, g->data + pk->off, pk->raw, &pk->codec, &pk->clen) < 0) {
        pk->codec = CODEC_RAW;
        pk->clen = pk->raw;
    }
}

static void stage_b(uv_work_t *w)
{
    segment *g = container_of(w, segment, work);
    int level = g->b->level;
    if (g->b->packs)
        form_packs(g);
    for (size_t i = 0; i < g->npacks; i++)
        compress_pack(g, &g->packs[i], level);
    for (size_t i = 0; i < g->np; i++) {
        piece *p = &g->p[i];
        if (!piece_new(p) || p->pack)
            continue;
        /* In place: the raw bytes are not needed once compressed (the digest is taken). */
        if (compress_chunk_inplace(level, g->data + p->off, p->len, &p->codec, &p->clen) < 0) {
            p->codec = CODEC_RAW;
            p->clen = p->len;
        }
    }
}

/* ---- appending, in start order (loop thread) ---- */

static void map_add(bfile *f, const piece *p)
{
    if (p->kind == PIECE_HOLE && f->map_n && f->map[f->map_n - 1].hole) {
        f->map[f->map_n - 1].length += p->len; /* one entry per run of holes */
    } else {
        f->map = xgrow(f->map, &f->map_cap, f->map_n, sizeof(*f->map), 16);
        streammap_entry *e = &f->map[f->map_n++];
        memset(e, 0, sizeof(*e));
        e->length = p->len;
        e->hole = p->kind == PIECE_HOLE;
        if (!e->hole)
            memcpy(e->digest, p->digest, HASH_LEN);
    }
    f->mapped += p->len;
    if (p->kind == PIECE_DATA)
        f->alloc += p->len;
}

/* Appends pack pk of segment g and tells the index where each of its members is. */
static int append_pack(backup *b, segment *g, pack *pk)
{
    uint32_t id = (uint32_t)(pk - g->packs) + 1;
    _cleanup_(freep) uint8_t *table = xmalloc((size_t)pk->members * PACK_ENTRY_SIZE);
    size_t k = 0;
    for (size_t i = pk->first; i <= pk->last; i++) {
        const piece *p = &g->p[i];
        if (piece_new(p) && p->pack == id) {
            memcpy(table + k * PACK_ENTRY_SIZE, p->digest, HASH_LEN);
            put_le32(table + k * PACK_ENTRY_SIZE + HASH_LEN, (uint32_t)p->len);
            k++;
        }
    }
    index_loc loc;
    int r = pipeline_append_record(b, CONTAINER_DATA, pk->codec, NULL, pk->members, table,
                                   g->data + pk->off, (uint32_t)pk->clen, pk->raw, &loc);
    pk->appended = true;
    k = 0;
    for (size_t i = pk->first; r >= 0 && i <= pk->last; i++) {
        const piece *p = &g->p[i];
        if (piece_new(p) && p->pack == id) {
            loc.raw_len = (uint32_t)p->len;
            loc.member = (uint16_t)++k;
            r = index_add_chunk(b->ix, p->digest, &loc);
        }
    }
    return r;
}

void pipeline_warn(backup *b, const char *path, int code, const char *what)
{
    b->st->errors++;
    b->st->partial = true;
    if (b->o->warn)
        b->o->warn(b->o->ud, path, code, what);
}

static void bfile_free(bfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f->leftover);
    free(f->map);
    free(f);
}

static void segment_free(backup *b, segment *g)
{
    free(g->packs);
    free(g->p);
    free(g->parts);
    buf_give(b, g);
    free(g);
}

/* Appends one file's share of a segment; finishes the file after its last one. */
static void append_part(backup *b, segment *g, part *pt)
{
    bfile *f = pt->f;
    if (pt->err < 0 && !f->error) {
        f->error = pt->err;
        f->error_op = pt->err_op;
    }
    for (size_t i = pt->first; i < pt->first + pt->n && !f->error && !b->fatal; i++) {
        piece *p = &g->p[i];
        if (p->kind == PIECE_HOLE) {
            b->st->hole_bytes += p->len;
        } else if (p->state == PIECE_NEW) {
            int r = 0;
            if (p->pack) {
                pack *pk = &g->packs[p->pack - 1];
                if (!pk->appended) /* at its first member: the others may belong to later parts */
                    r = append_pack(b, g, pk);
            } else {
                index_loc loc;
                r = pipeline_append_record(b, CONTAINER_DATA, p->codec, p->digest, 0, NULL,
                                           g->data + p->off, (uint32_t)p->clen, (uint32_t)p->len, &loc);
                if (r >= 0)
                    r = index_add_chunk(b->ix, p->digest, &loc);
            }
            if (r < 0) {
                b->fatal = r;
                break;
            }
            b->st->new_chunks++;
            b->st->new_bytes += p->len;
        } else {
            b->st->dedup_bytes += p->len;
        }
        map_add(f, p);
    }
    b->st->read_bytes += pt->read;
    if (pt->last || pt->err < 0) {
        if (f->error) {
            catalog_writer_set_flags(b->cw, f->handle, CF_UNREADABLE);
            pipeline_warn(b, f->path, f->error, f->error_op);
        } else if (!b->fatal) {
            int r = pipeline_store_map(b, f->handle, f->map, f->map_n, f->mapped, f->alloc);
            if (r == -EFBIG) { /* this file only: the backup goes on */
                catalog_writer_set_flags(b->cw, f->handle, CF_UNREADABLE);
                pipeline_warn(b, f->path, r, "store (too many chunks for one stream map)");
            } else if (r < 0) {
                b->fatal = r;
            }
        }
        bfile_free(f);
    }
}

static void start_segment(bfile *f);

static void append_segment(backup *b, segment *g)
{
    for (size_t i = 0; i < g->nparts; i++)
        append_part(b, g, &g->parts[i]);
    b->inflight--;
    b->inflight_bytes -= g->charge;
    segment_free(b, g);
    while (b->parked && b->inflight_bytes < PIPELINE_MAX_INFLIGHT_BYTES) {
        bfile *f = b->parked;
        b->parked = f->next_parked;
        start_segment(f);
    }
}

/* Queues a finished segment and appends every segment whose turn has come. */
static void segment_done(backup *b, segment *g)
{
    segment **pp = &b->ready;
    while (*pp && (*pp)->seq < g->seq)
        pp = &(*pp)->next;
    g->next = *pp;
    *pp = g;
    while (b->ready && b->ready->seq == b->next_append) {
        segment *h = b->ready;
        b->ready = h->next;
        b->next_append++;
        append_segment(b, h);
    }
}

static void after_b(uv_work_t *w, int status)
{
    segment *g = container_of(w, segment, work);
    segment_done(g->b, g);
}

static void next_segment(bfile *f);

/* Decides which of pt's chunks are new: neither this run nor the index has them. */
static bool find_new(backup *b, segment *g, const part *pt)
{
    bool any_new = false;
    for (size_t i = pt->first; i < pt->first + pt->n && !b->fatal; i++) {
        piece *p = &g->p[i];
        if (p->kind != PIECE_DATA)
            continue;
        if (digest_set_contains(&b->new_chunks, p->digest)) {
            p->state = PIECE_KNOWN;
            continue;
        }
        index_loc loc;
        int r = index_find_chunk(b->ix, p->digest, &loc);
        if (r == 0) {
            p->state = PIECE_KNOWN;
        } else if (r == RH_ENOCHUNK) {
            p->state = PIECE_NEW;
            digest_set_add(&b->new_chunks, p->digest);
            any_new = true;
        } else {
            b->fatal = r;
        }
    }
    return any_new;
}

static void after_h(uv_work_t *w, int status);

static void after_a(uv_work_t *w, int status)
{
    segment *g = container_of(w, segment, work);
    backup *b = g->b;

    if (g->batch) {
        b->batch_fds -= g->nfds;
        after_h(w, status); /* hashed in stage A */
        return;
    }
    /* The bytes after the last cut start the next segment of this file. */
    part *pt = &g->parts[0];
    bfile *f = pt->f;
    size_t left = pt->err < 0 ? 0 : g->len - g->leftover_off;
    free(f->leftover);
    f->leftover = left ? xmemdup(g->data + g->leftover_off, left) : NULL;
    f->leftover_len = left;
    if (pt->err >= 0 && !pt->last) {
        if (b->fatal) { /* stop this file; its segment still goes through the ordered append */
            pt->err = -ECANCELED;
            pt->err_op = "read (backup stopped)";
        } else {
            next_segment(f);
        }
    }
    if (pt->err >= 0 && !b->fatal) {
        int r = uv_queue_work(&b->loop, &g->work, stage_h, after_h);
        if (r == 0)
            return;
        b->fatal = r;
    }
    after_h(w, status);
}

/* After the segment's chunks are hashed: only new chunks go on to compression. A failed part's chunks
 * never count as new, since they will not be appended. */
static void after_h(uv_work_t *w, int status)
{
    segment *g = container_of(w, segment, work);
    backup *b = g->b;
    bool any_new = false;
    for (size_t i = 0; i < g->nparts; i++)
        if (g->parts[i].err >= 0 && find_new(b, g, &g->parts[i]))
            any_new = true;
    if (any_new && !b->fatal) {
        int r = uv_queue_work(&b->loop, &g->work, stage_b, after_b);
        if (r == 0)
            return;
        b->fatal = r;
    }
    segment_done(b, g);
}

static segment *segment_new(backup *b, bool batch)
{
    segment *g = xcalloc(1, sizeof(*g));
    g->b = b;
    g->batch = batch;
    return g;
}

static part *segment_add_part(segment *g, bfile *f)
{
    g->parts = xgrow(g->parts, &g->partcap, g->nparts, sizeof(*g->parts), 1);
    part *pt = &g->parts[g->nparts++];
    memset(pt, 0, sizeof(*pt));
    pt->f = f;
    return pt;
}

/* Gives g its place in the append order and queues its stage A. */
static void segment_start(backup *b, segment *g)
{
    g->big = g->charge + 1 > SMALL_BUF_SIZE;
    if (g->big)
        g->charge = big_buf_size(b);
    g->seq = b->next_seq++;
    b->inflight++;
    b->inflight_bytes += g->charge;
    int r = uv_queue_work(&b->loop, &g->work, stage_a, after_a);
    if (r < 0) { /* only on a programming error; finish the segment as failed */
        for (size_t i = 0; i < g->nparts; i++) {
            g->parts[i].err = r;
            g->parts[i].err_op = "queue";
        }
        after_a(&g->work, 0);
    }
}

static void start_segment(bfile *f)
{
    backup *b = f->b;
    segment *g = segment_new(b, false);
    segment_add_part(g, f);
    g->charge = MIN((uint64_t)SEGMENT_SIZE, f->size - f->off) + f->leftover_len;
    segment_start(b, g);
}

/* Starts f's next segment, or parks f until appends make room: segments that wait for their turn to
 * be appended hold their buffers, and every buffer made once is kept (and was paid for in faults). */
static void next_segment(bfile *f)
{
    backup *b = f->b;
    if (b->inflight_bytes < PIPELINE_MAX_INFLIGHT_BYTES) {
        start_segment(f);
        return;
    }
    bfile **pp = &b->parked;
    while (*pp)
        pp = &(*pp)->next_parked;
    f->next_parked = NULL;
    *pp = f;
}

static void submit_batch(backup *b)
{
    segment *g = b->batch;
    b->batch = NULL;
    if (g)
        segment_start(b, g);
}

void pipeline_add_file(backup *b, int fd, uint64_t handle, const char *path, uint64_t size)
{
    bfile *f = xcalloc(1, sizeof(*f));
    f->b = b;
    f->fd = fd;
    f->handle = handle;
    f->path = xstrdup(path);
    f->size = size;
    if (size <= BATCH_FILE_MAX) {
        if (b->batch && (b->batch->charge + size > BATCH_MAX_BYTES || b->batch->nparts == BATCH_MAX_FILES))
            submit_batch(b);
        if (!b->batch)
            b->batch = segment_new(b, true);
        segment_add_part(b->batch, f);
        b->batch->charge += size;
        if (fd >= 0) {
            b->batch->nfds++;
            b->batch_fds++;
            posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED); /* the batch reads it soon: start now */
        }
    } else {
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        start_segment(f);
    }
    while (!b->fatal && (b->inflight >= PIPELINE_MAX_INFLIGHT ||
                         b->inflight_bytes >= PIPELINE_MAX_INFLIGHT_BYTES ||
                         b->batch_fds >= PIPELINE_MAX_BATCH_FDS))
        uv_run(&b->loop, UV_RUN_ONCE);
}

void pipeline_drain(backup *b)
{
    submit_batch(b);
    while (b->inflight > 0)
        uv_run(&b->loop, UV_RUN_ONCE);
}

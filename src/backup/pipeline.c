/*
 * pipeline.c — the stages of the backup data path; see pipeline.h for the overview.
 *
 * Ownership: a bfile lives from pipeline_add_file() until its last segment is appended; a segment from
 * its start until it is appended. Stage A touches only its segment and the region state of its file,
 * which no other thread uses while A runs (a file has at most one segment in stage A, and the loop
 * thread starts the next only after A completes). Everything else runs on the loop thread.
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
    uint8_t *cdata; /* compressed payload (owned), or NULL when stored raw */
    size_t clen;
} piece;

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
} bfile;

struct segment {
    uv_work_t work;
    bfile *f;
    uint64_t seq;
    bool last;
    int err;
    const char *err_op;
    uint8_t *data;
    bool pooled; /* data is a buffer of buf_size(b), from b->bufs */
    size_t len, leftover_off;
    uint64_t read; /* bytes read from the file by this segment */
    piece *p;
    size_t np, pcap;
    uint64_t charge; /* bytes counted in inflight_bytes */
    segment *next;
};

/* ---- stage A: read, cut, hash (thread pool) ---- */

static piece *add_piece(segment *g)
{
    if (g->np == g->pcap) {
        g->pcap = g->pcap ? 2 * g->pcap : 64;
        g->p = xrealloc(g->p, g->pcap * sizeof(*g->p));
    }
    piece *p = &g->p[g->np++];
    memset(p, 0, sizeof(*p));
    return p;
}

/* Moves f->off to the next data region; records the hole before it in g. */
static int next_region(segment *g)
{
    bfile *f = g->f;
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
        piece *p = add_piece(g);
        p->kind = PIECE_HOLE;
        p->len = data - f->off;
    }
    f->off = data;
    off_t h = data < f->size ? lseek(f->fd, (off_t)data, SEEK_HOLE) : (off_t)f->size;
    f->region_end = h < 0 ? f->size : MIN((uint64_t)h, f->size);
    return 0;
}

/* ---- segment buffers ---- */

/* A segment holds the file's leftover (less than one chunk) and at most SEGMENT_SIZE new bytes. */
static size_t buf_size(const backup *b) { return SEGMENT_SIZE + b->s->chunker.p.max_size + 1; }

static void buf_take(backup *b, segment *g, size_t need)
{
    g->pooled = need > SEGMENT_SIZE / 2 && need <= buf_size(b);
    if (!g->pooled) { /* small files: malloc serves these from its heap without faults */
        g->data = xmalloc(need);
        return;
    }
    pthread_mutex_lock(&b->buf_lock);
    g->data = b->nbufs ? b->bufs[--b->nbufs] : NULL;
    pthread_mutex_unlock(&b->buf_lock);
    if (!g->data)
        g->data = xmalloc(buf_size(b));
}

static void buf_give(backup *b, segment *g)
{
    if (g->pooled && g->data) {
        pthread_mutex_lock(&b->buf_lock);
        if (b->nbufs < ARRAY_SIZE(b->bufs)) {
            b->bufs[b->nbufs++] = g->data;
            g->data = NULL;
        }
        pthread_mutex_unlock(&b->buf_lock);
    }
    free(g->data);
    g->data = NULL;
}

void pipeline_buffers_free(backup *b)
{
    while (b->nbufs)
        free(b->bufs[--b->nbufs]);
}

static void stage_a(uv_work_t *w)
{
    segment *g = container_of(w, segment, work);
    bfile *f = g->f;
    const chunker *ch = &f->b->s->chunker;

    if (f->leftover_len == 0 && f->off == f->region_end && f->off < f->size) {
        g->err = next_region(g);
        if (g->err < 0) {
            g->err_op = "seek";
            return;
        }
    }
    size_t want = (size_t)MIN((uint64_t)SEGMENT_SIZE, f->region_end - f->off);
    buf_take(f->b, g, f->leftover_len + want + 1);
    if (f->leftover_len)
        memcpy(g->data, f->leftover, f->leftover_len);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(f->fd, g->data + f->leftover_len + got, want - got, (off_t)(f->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g->err = -errno;
            g->err_op = "read";
            return;
        }
        if (n == 0) {
            g->err = -ENODATA;
            g->err_op = "read (the file shrank while it was read)";
            return;
        }
        got += (size_t)n;
    }
    f->off += got;
    g->read = got;
    g->len = f->leftover_len + got;
    bool region_done = f->off == f->region_end;

    size_t pos = 0;
    while (pos < g->len) {
        size_t c = chunker_next(ch, g->data + pos, g->len - pos, region_done);
        if (c == 0)
            break;
        piece *p = add_piece(g);
        p->len = c;
        p->off = pos;
        if (mem_is_zero(g->data + pos, c)) {
            p->kind = PIECE_HOLE; /* all-zero chunks are not stored */
        } else {
            p->kind = PIECE_DATA;
            hash_sha256(g->data + pos, c, p->digest);
        }
        pos += c;
    }
    g->leftover_off = pos;
    g->last = region_done && f->off >= f->size;
}

/* ---- stage B: compress new chunks (thread pool) ---- */

static void stage_b(uv_work_t *w)
{
    segment *g = container_of(w, segment, work);
    int level = g->f->b->level;
    for (size_t i = 0; i < g->np; i++) {
        piece *p = &g->p[i];
        if (p->kind != PIECE_DATA || p->state != PIECE_NEW)
            continue;
        size_t cap = compress_bound(p->len);
        p->cdata = xmalloc(cap);
        int r = compress_chunk(level, g->data + p->off, p->len, p->cdata, cap, &p->codec, &p->clen);
        if (r < 0 || p->codec == CODEC_RAW) {
            free(p->cdata);
            p->cdata = NULL;
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
        if (f->map_n == f->map_cap) {
            f->map_cap = f->map_cap ? 2 * f->map_cap : 16;
            f->map = xrealloc(f->map, f->map_cap * sizeof(*f->map));
        }
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
    if (fstatat(b->s->rootfd, path, &sst, 0) < 0)
        return -errno;
    c.size = (uint64_t)sst.st_size;
    b->sealed_bytes += c.size;
    return index_add_container(b->ix, &c);
}

/* Appends a record to the data or stream container, opening or rotating containers as needed. */
static int append_record(backup *b, uint8_t kind, uint8_t codec, const uint8_t digest[HASH_LEN],
                         const void *payload, uint32_t stored, uint32_t raw, index_loc *ret)
{
    container_writer **w = kind == CONTAINER_DATA ? &b->data_w : &b->stream_w;
    uint32_t *next_id = kind == CONTAINER_DATA ? &b->next_data_id : &b->next_stream_id;
    int r;
    if (*w && container_writer_size(*w) + RECORD_HEADER_SIZE + stored > b->s->cfg.seal_size &&
        container_writer_records(*w) > 0 && (r = seal_one(b, w, kind)) < 0)
        return r;
    if (!*w) {
        _cleanup_(closep) int dfd =
            openat(b->s->rootfd, container_dir(kind), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -errno;
        if ((r = container_writer_open(dfd, kind, (*next_id)++, b->s->cfg.uuid, w)) < 0)
            return r;
    }
    uint64_t off;
    r = container_writer_append(*w, kind == CONTAINER_DATA ? RECORD_CHUNK : RECORD_STREAM, codec, digest,
                                payload, stored, raw, &off);
    if (r < 0)
        return r;
    *ret = (index_loc){ container_writer_id(*w), off, stored, raw, codec };
    b->st->stored_bytes += RECORD_HEADER_SIZE + stored;
    return 0;
}

/* Stores f's stream map (unless an identical one exists) and points its catalog entry at it. */
static int finish_file(bfile *f)
{
    backup *b = f->b;
    bytebuf raw = { 0 };
    streammap_encode(f->map, f->map_n, f->mapped, &raw);
    catalog_stream cs = { 0 };
    hash_sha256(raw.data, raw.len, cs.digest);
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
            r = append_record(b, CONTAINER_STREAM, codec, cs.digest, codec == CODEC_RAW ? raw.data : c,
                              (uint32_t)clen, (uint32_t)raw.len, &loc);
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
    catalog_writer_set_stream(b->cw, f->handle, &cs, f->alloc);
    return 0;
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
    for (size_t i = 0; i < g->np; i++)
        free(g->p[i].cdata);
    free(g->p);
    buf_give(b, g);
    free(g);
}

static void append_segment(backup *b, segment *g)
{
    bfile *f = g->f;
    if (g->err < 0 && !f->error) {
        f->error = g->err;
        f->error_op = g->err_op;
    }
    for (size_t i = 0; i < g->np && !f->error && !b->fatal; i++) {
        piece *p = &g->p[i];
        if (p->kind == PIECE_HOLE) {
            b->st->hole_bytes += p->len;
        } else if (p->state == PIECE_NEW) {
            index_loc loc;
            int r = append_record(b, CONTAINER_DATA, p->codec, p->digest,
                                  p->cdata ? p->cdata : g->data + p->off, (uint32_t)p->clen,
                                  (uint32_t)p->len, &loc);
            if (r >= 0)
                r = index_add_chunk(b->ix, p->digest, &loc);
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
    b->st->read_bytes += g->read;
    if (g->last || g->err < 0) {
        if (f->error) {
            catalog_writer_set_flags(b->cw, f->handle, CF_UNREADABLE);
            backup_warn(b, f->path, f->error, f->error_op);
        } else if (!b->fatal) {
            int r = finish_file(f);
            if (r == -EFBIG) { /* this file only: the backup goes on */
                catalog_writer_set_flags(b->cw, f->handle, CF_UNREADABLE);
                backup_warn(b, f->path, r, "store (too many chunks for one stream map)");
            } else if (r < 0) {
                b->fatal = r;
            }
        }
        bfile_free(f);
    }
    b->inflight--;
    b->inflight_bytes -= g->charge;
    segment_free(b, g);
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
    segment_done(g->f->b, g);
}

static void start_segment(bfile *f);

static void after_a(uv_work_t *w, int status)
{
    segment *g = container_of(w, segment, work);
    bfile *f = g->f;
    backup *b = f->b;

    /* The bytes after the last cut start the next segment of this file. */
    size_t left = g->err < 0 ? 0 : g->len - g->leftover_off;
    free(f->leftover);
    f->leftover = left ? xmemdup(g->data + g->leftover_off, left) : NULL;
    f->leftover_len = left;
    if (g->err >= 0 && !g->last) {
        if (b->fatal) { /* stop this file; its segment still goes through the ordered append */
            g->err = -ECANCELED;
            g->err_op = "read (backup stopped)";
        } else {
            start_segment(f);
        }
    }

    /* Deduplicate: only chunks that neither this run nor the index has go on to compression. */
    bool any_new = false;
    for (size_t i = 0; i < g->np && g->err >= 0; i++) {
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
    if (any_new && !b->fatal) {
        int r = uv_queue_work(&b->loop, &g->work, stage_b, after_b);
        if (r == 0)
            return;
        b->fatal = r;
    }
    segment_done(b, g);
}

static void start_segment(bfile *f)
{
    backup *b = f->b;
    segment *g = xcalloc(1, sizeof(*g));
    g->f = f;
    g->seq = b->next_seq++;
    g->charge = MIN((uint64_t)SEGMENT_SIZE, f->size - f->off) + f->leftover_len;
    b->inflight++;
    b->inflight_bytes += g->charge;
    int r = uv_queue_work(&b->loop, &g->work, stage_a, after_a);
    if (r < 0) { /* only on a programming error; finish the segment as failed */
        g->err = r;
        g->err_op = "queue";
        after_a(&g->work, 0);
    }
}

void pipeline_add_file(backup *b, int fd, uint64_t handle, const char *path, uint64_t size)
{
    bfile *f = xcalloc(1, sizeof(*f));
    f->b = b;
    f->fd = fd;
    f->handle = handle;
    f->path = xstrdup(path);
    f->size = size;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    start_segment(f);
    while (!b->fatal && (b->inflight >= PIPELINE_MAX_INFLIGHT ||
                         b->inflight_bytes >= PIPELINE_MAX_INFLIGHT_BYTES))
        uv_run(&b->loop, UV_RUN_ONCE);
}

void pipeline_drain(backup *b)
{
    while (b->inflight > 0)
        uv_run(&b->loop, UV_RUN_ONCE);
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

/*
 * pipeline.h — the backup's data path beneath backup.c (the traversal): the state of one run, and the
 * pipeline that pipeline.c (the stages) and pipeline_store.c (the writes to the store) implement.
 * backup.c calls down into it; nothing here calls up into backup.c.
 *
 * A regular file is read in segments of at most SEGMENT_SIZE bytes of one data region. Each segment goes
 * through three steps:
 *   A (thread pool)  read, find holes (SEEK_DATA/SEEK_HOLE), cut chunks, SHA-256 them, spot zero chunks;
 *   D (loop thread)  look each digest up (this run's new chunks, then the index): only new ones go on;
 *   B (thread pool)  compress the new chunks: in a store of format 2, neighbouring new chunks of the
 *                    segment go together into packs of up to PACK_RAW_MAX bytes, compressed as one;
 *   then, on the loop thread and in the order the segments were started, the new chunks are appended to
 *   the data container, the index learns where they are, and the file's stream map grows. When a file's
 *   last segment is appended, its stream map is stored (once per distinct map) and its catalog entry
 *   gets the reference. The segments of one file run A one after another (a cut point depends on the
 *   bytes before it); segments of different files, and B of all segments, run in parallel.
 */
#ifndef RH_BACKUP_PIPELINE_H
#define RH_BACKUP_PIPELINE_H

#include <pthread.h>
#include <uv.h>

#include "backup/options.h"
#include "common/digestset.h"
#include "index/index.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/store.h"
#include "store/streammap.h"

#define SEGMENT_SIZE (8u << 20)
#define READ_AHEAD_SEGMENTS 4 /* a large file's data asked of the disk ahead of stage A */
#define PIPELINE_MAX_INFLIGHT 24
#define PIPELINE_MAX_INFLIGHT_BYTES (64ull << 20) /* a segment with a big buffer counts its full size */
#define BATCH_FILE_MAX (256u << 10)
#define BATCH_MAX_BYTES (1u << 20)
#define BATCH_MAX_FILES 128
#define PACK_RAW_MAX (256u << 10) /* a pack's members add up to at most this */
#define PIPELINE_MAX_BATCH_FDS 512 /* files held open by batches waiting for stage A (> BATCH_MAX_FILES) */

typedef struct segment segment;

typedef struct buf_pool {
    void *bufs[PIPELINE_MAX_INFLIGHT];
    size_t n;
} buf_pool;

/* The state of one backup run. */
typedef struct backup {
    rh_store *s;
    int wfd;           /* where containers and the catalog are written: the store's directory, or the
                        * stage of a store on object storage */
    store_remote *rem; /* a store on object storage: what uploads the stage's files (store.h); or NULL */
    const backup_options *o;
    backup_stats *st;
    uv_loop_t loop;
    uv_timer_t timer;
    index_t *ix;
    catalog_writer *cw;
    catalog *prev; /* the previous snapshot, for unchanged files, or NULL */
    int level;     /* zstd level */
    bool packs;    /* store format 2: new chunks go into packs */
    container_writer *data_w, *stream_w;
    uint32_t next_data_id, next_stream_id;
    digest_set new_chunks; /* chunks this run found new (the index learns them only at append) */
    uint64_t next_seq, next_append; /* segments are appended in start order */
    segment *ready;                 /* finished segments waiting for their turn, sorted by seq */
    size_t inflight;
    uint64_t inflight_bytes;
    segment *batch;   /* the batch being filled, not yet started */
    struct bfile *parked; /* files whose next segment waits for inflight_bytes to drop (FIFO) */
    size_t batch_fds; /* files open in batches (filled or started) until their stage A reads them */
    int fatal; /* the first error that stops the run (a failed store write) */
    uint64_t sealed_bytes;
    double started;
    /* Segment buffers, kept for reuse (pipeline_buffers_free) in two sizes: a fresh buffer costs a page
     * fault per 4 KiB read into it. Taken on the pool, given back on the loop thread. */
    pthread_mutex_t buf_lock;
    buf_pool pools[2]; /* [0] SMALL_BUF_SIZE bytes, [1] big_buf_size() bytes */
} backup;

/*
 * Starts backing up the regular file open at fd (the pipeline owns fd from now on) whose catalog entry
 * is `handle`; `path` (copied) names it in messages. Runs the loop while too much is in flight.
 */
void pipeline_add_file(backup *b, int fd, uint64_t handle, const char *path, uint64_t size);
/* Runs the loop until every started file is appended. */
void pipeline_drain(backup *b);
/* Frees the kept segment buffers (after the loop has ended). */
void pipeline_buffers_free(backup *b);
/* Reports an error for path, relative to the source (through o->warn), and counts it. */
void pipeline_warn(backup *b, const char *path, int code, const char *what);

/* ---- writing to the store (pipeline_store.c; loop thread) ---- */

/*
 * Appends a record to the data or stream container, opening or rotating containers as needed: a chunk
 * or stream map (members 0), or a pack of `members` chunks whose member table is `table`. *ret gets
 * where it went, for the index.
 */
int pipeline_append_record(backup *b, uint8_t kind, uint8_t codec, const uint8_t digest[HASH_LEN],
                           uint16_t members, const uint8_t *table, const void *payload, uint32_t stored,
                           uint32_t raw, index_loc *ret);
/*
 * Stores the stream map map[0, n) of a file of `mapped` bytes (unless an identical one exists) and
 * points catalog entry `handle` at it; `alloc` is the file's stored (non-hole) bytes. -EFBIG when the
 * map does not fit in one record: that fails only this file.
 */
int pipeline_store_map(backup *b, uint64_t handle, const streammap_entry *map, size_t n, uint64_t mapped,
                       uint64_t alloc);
/* Seals the open containers and records them in the index. */
int pipeline_seal(backup *b);
/* Removes the temp files of containers that were not sealed (after a failure). */
void pipeline_abort(backup *b);

#endif

/*
 * engine_internal.h — what the restore engine's two files share: engine.c (the call, its steps and
 * needs) and containers.c (reading the needed containers in the application's order). Not for anyone
 * else; engine.h is the interface.
 */
#ifndef RH_RESTORE_ENGINE_INTERNAL_H
#define RH_RESTORE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "hash/hash.h"
#include "index/index.h"
#include "restore/engine.h"
#include "store/reparse.h"
#include "store/format.h"
#include "store/store.h"
#include "store/streammap.h"

#define READ_MAX (4u << 20)       /* largest coalesced read */
#define READ_GAP (256u << 10)     /* records this close are read together, the gap with them */
#define INFLIGHT_MAX (32ull << 20) /* bytes read but not yet processed by the pool */
#define POOL_MIN (128u << 10)      /* blocks larger than this read into pooled buffers */
#define WRITEBACK_STEP (32ull << 20) /* see start_writeback */

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* A need's record was not at its location, and the format may know where it moved (containers.c). */
#define NEED_MOVED 1

typedef struct rfile {
    const char *path;
    int fd;
    int result; /* 0 so far, RH_NOT_A_STUB, or the first error */
    store_stub rp; /* what its stub says */
    const streammap *map; /* owned by the need of its stream map, or `own` */
    const streammap **parts; /* a stub of several parts: each part's map (the needs'), until joined */
    streammap *own;          /* the map joined from parts */
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
    bool relocated;        /* loc is where the format said the record moved (store_format.relocate) */
    uint8_t digest_known;  /* stream phase: how many leading bytes of digest the stub named */
    uint64_t map_start;    /* stream phase: the file offset where the map's first chunk begins */
    int moved_err;         /* why the record at the first loc was not the one named (NEED_MOVED) */
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

/* Fails file f with err (the first error stays), saying what failed. */
void engine_fail_file(engine *e, rfile *f, int err, const char *what);
/* Fails every file that is not failed yet. */
void engine_fail_all(engine *e, int err, const char *what);
/* Fails every file that needs nd, a stream map (kind CONTAINER_STREAM) or a chunk, saying where it is. */
void engine_fail_need(engine *e, need *nd, int err, uint8_t kind);
/* The needs that can be read (found, not failed; with retry, those marked for a retry), sorted by
 * location; *ret_n of them. NULL with every file failed when memory runs out. */
need **engine_readable_needs(engine *e, bool retry, size_t *ret_n);
/* Reads the needs `order` (of containers of kind) container by container in the application's order:
 * order_containers, then per container a preview and its reads, checked and placed by the pool. */
int engine_read_phase(engine *e, uint8_t kind, need **order, size_t n);

#endif

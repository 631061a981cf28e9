/*
 * store.h — the store as a whole: its identity file (rehydrate.store), the rh_store handle that every
 * reader goes through, the built-in callbacks for a local directory, and the local-only services that
 * writers need (the backup lock, container id allocation, listing containers and snapshots); also the
 * index as the store keeps it: opened or rebuilt from the containers (reindex.c), and repaired when a
 * reader finds it damaged (index_repair.c).
 */
#ifndef RH_STORE_STORE_H
#define RH_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include <rehydrate/rehydrate.h>

#include "chunk/chunker.h"
#include "index/index.h"
#include "store/streammap.h"

/* Format 2 adds pack records (several chunks compressed together); a store of format 1 is read and
 * written as format 1 (no packs), so that older rehydrate can still read it. */
#define STORE_FORMAT_VERSION 2
#define STORE_FORMAT_MIN 1
#define STORE_IDENTITY_FILE "rehydrate.store"
#define STORE_IDENTITY_SIZE 128
#define STORE_LOCK_FILE "lock"
#define STORE_INDEX_FILE "index.db"

typedef struct store_format store_format; /* format.h */

typedef struct store_config {
    uint32_t version;
    uint8_t uuid[16];
    chunker_params chunker;
    int32_t compression_level;
    uint64_t seal_size;
    uint64_t created_ns;
} store_config;

/* Bytes per read of index.db through the callbacks of a store on object storage, where every read
 * is a round trip (index_open_ops); other stores read the VFS's default 32 KiB. */
#define STORE_S3_INDEX_BLOCK (256u << 10)
#define store_index_block(s) ((s)->s3 ? STORE_S3_INDEX_BLOCK : 0u)

struct rh_store {
    char *path;                /* as given; for messages */
    char *ix_path;             /* where the index lives (store_index_path), fixed at open */
    const rh_store_ops *ops;   /* every read goes through ops->read */
    void *ctx;
    int rootfd;                /* the store directory when local, else -1 */
    bool s3;                   /* on object storage: ops and ctx are the S3 client's (s3/s3.h), ours */
    bool readonly;             /* local, but we may not write (index goes to the cache dir) */
    store_config cfg;
    chunker chunker;           /* gear table for cfg.chunker */
    index_t *ix;               /* the index, opened on first use by the public API (api.c) */
    unsigned ix_handle_gen;    /* the index generation that ix was opened at */
    bool ix_in_store;          /* behind callbacks: ix reads the store's own index.db through them */
    bool scan_ok;              /* behind callbacks: the application asked for a scan of every container
                                * (rh_store_build_index); never set otherwise */
    struct fd_cache *fds;      /* open store files of a local store (store.c) */
    /* How readers share a repaired index (index_repair.c). */
    pthread_mutex_t ix_lock;   /* serializes repairs; protects ix_dev, ix_ino */
    unsigned ix_gen;           /* bumped when the index file is replaced; read with __atomic_load_n */
    dev_t ix_dev;              /* the index file that generation ix_gen opened (0, 0: not known yet) */
    ino_t ix_ino;
    uint8_t ix_stamp[8];       /* ix_in_store: the header bytes of index.db that a commit changes, as */
    bool ix_stamped;           /* ... the handles of generation ix_gen saw them (store_index_stamp) */
    /* Where the library's messages go (rh_store_set_log; NULL: nowhere). */
    rh_log_fn log;
    void *log_ud;
    /*
     * The format seam beneath the readers (format.h): how containers are named, records framed and
     * checked, chunks named, stream maps decoded. &store_format_ours unless the store is another
     * format's; fmt_state is that format's own (freed by fmt->close).
     */
    const store_format *fmt;
    void *fmt_state;
};

/* rh_store_open for a path (a local directory or an s3: URL) with the store's log set from the start,
 * so that what goes wrong while opening (a URL without credentials, a refused request) is told. */
int store_open_logged(const char *path, rh_log_fn log, void *log_ud, rh_store **ret_store);

/* The built-in callbacks of a local store directory (local.c): sets s->ops and s->ctx for s->rootfd and
 * makes the cache of open files; store_local_close frees it (a no-op for a store behind callbacks). */
int store_local_init(rh_store *s);
void store_local_close(rh_store *s);

/* Decodes a stream map's raw bytes the way the store's format does (s->fmt). A format whose stream maps
 * say where each chunk is stored sets streammap.loc, and then no reader asks the index. */
int store_decode_streammap(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret);

/* Defaults: format 2, a random UUID, 16/64/256 KiB chunking, zstd level 3, 64 MiB seal size. */
void store_config_default(store_config *c);
/* Encodes/decodes the 128-byte identity file. Decode: RH_ENOTSTORE (magic), RH_EVERSION, RH_ECORRUPT. */
void store_config_encode(const store_config *c, uint8_t out[STORE_IDENTITY_SIZE]);
int store_config_decode(const uint8_t in[STORE_IDENTITY_SIZE], store_config *ret);

/*
 * Creates a store at `path` (made if missing; it must be empty if it exists): the directories and an
 * atomically written rehydrate.store. RH_EEXIST if `path` already holds a store, -ENOTEMPTY if it holds
 * something else.
 */
int store_create(const char *path, const store_config *cfg);
/*
 * For a `path` where store_create found a directory that is not empty: waits (up to timeout_ms) while
 * another process is creating a store there (it holds the lock file). 0 once a store exists, -EBUSY
 * if the creator has not finished in time, -ENOTEMPTY if nobody is creating one (the directory holds
 * something else, or a creation that was interrupted).
 */
int store_await_creation(const char *path, unsigned timeout_ms);
/* True when `path` is a directory that holds a rehydrate.store file. */
bool store_exists(const char *path);

/* Reads through the store's callbacks (and maps -ENOENT on containers to RH_ENOCONTAINER). */
int store_read(rh_store *s, const char *path, uint64_t off, void *buf, size_t len);

/* ---- local stores only ---- */

/* Takes the store's exclusive writer lock (flock on STORE/lock, non-blocking); the fd holds it. -EBUSY
 * when another process holds it. */
int store_lock(rh_store *s, int *ret_fd);
/*
 * Removes the temp files that writers killed mid-way left behind (stale.c): temp containers and
 * catalogs, which only a holder of the store lock writes (so the caller must hold it), and a temp
 * identity file whose creating process is gone. *ret_removed (may be NULL) gets how many.
 */
int store_remove_stale_temps(rh_store *s, size_t *ret_removed);
/* The next unused container id of `kind` (one more than the highest id of a committed or temp file). */
int store_next_container_id(rh_store *s, uint8_t kind, uint32_t *ret_id);
/* Every committed container (id, kind, size), sorted by kind then id. A store behind callbacks is
 * probed through them (store.c, probe_containers). */
int store_list_containers(rh_store *s, index_container **ret, size_t *ret_n);
/* The same, except that behind callbacks the containers of kind k with ids above upto[k - CONTAINER_DATA]
 * are not read (a stopped backup's on object storage, which may be half-written on a server that
 * keeps a PUT cut short): only counted in *ret_skipped (NULL: not wanted). */
int store_list_containers_upto(rh_store *s, const uint32_t upto[2], index_container **ret, size_t *ret_n,
                               size_t *ret_skipped);
/* On object storage, the highest container id of each kind (limit[kind - CONTAINER_DATA]) that ix, the
 * store's index.db, names: the containers after it are a stopped backup's, which no snapshot references
 * (store/remote.c removes them at the next backup). UINT32_MAX elsewhere, or when ix is NULL or cannot
 * answer (then its error is returned). */
int store_unfinished_after(rh_store *s, index_t *ix, uint32_t limit[2]);
/* The ids of the committed containers of `kind` by their names, sorted (a listing: nothing is read;
 * behind callbacks through `list`, -EOPNOTSUPP without it). Free *ret_ids. */
int store_container_ids(rh_store *s, uint8_t kind, uint32_t **ret_ids, size_t *ret_n);
/* Names of the committed snapshots (without ".snap"), sorted by name. */
int store_list_snapshots(rh_store *s, char ***ret_names, size_t *ret_n);
void store_free_names(char **names, size_t n);
/* Resolves "latest" (newest by creation time) or checks that NAME exists: a malloc'd name, or
 * RH_ENOSNAPSHOT. */
int store_resolve_snapshot(rh_store *s, const char *name, char **ret_name);
/* "snapshots/NAME.snap" (malloc'd; aborts when it cannot: for front ends). Names are validated by
 * store_snapshot_name_ok. */
char *store_snapshot_path(const char *name);
/* The same into out, allocating nothing: out, or NULL when the name is too long to be valid. */
#define STORE_SNAPSHOT_PATH_MAX 224 /* "snapshots/" + a name of at most 200 bytes + ".snap" */
const char *store_snapshot_path_buf(const char *name, char out[STORE_SNAPSHOT_PATH_MAX]);
bool store_snapshot_name_ok(const char *name);

/*
 * Opens the chunk index: STORE/index.db, or when the store is not writable a file under
 * $XDG_CACHE_HOME/rehydrate (default ~/.cache/rehydrate) named after the store UUID. When the index is
 * missing, stale (its containers differ from the store's) or unreadable and `rebuild` is true, it is
 * rebuilt first (reporting through `note`, which may be NULL). INDEX_READONLY opens for lookups only,
 * read-only: unless it has to rebuild, it creates and changes nothing in the store.
 */
int store_open_index(rh_store *s, int flags, bool rebuild, void (*note)(const char *msg),
                     index_t **ret);
/* The path store_open_index uses (malloc'd copy of s->ix_path, which rh_store_open works out from the
 * store and $XDG_CACHE_HOME / $HOME as they are then; aborts when it cannot copy: for front ends). */
char *store_index_path(rh_store *s);
/*
 * Rebuilds the index at `path` from every container (reindex.c) into a fresh file beside it (O_EXCL
 * temp, fsync, rename over `path`, fsync of the directory), so that a damaged file is never reused and a
 * reader that has the old file open keeps a consistent view. *ret_chunks may be NULL.
 */
int store_reindex(rh_store *s, const char *path, uint64_t *ret_chunks, uint64_t *ret_streams);

/* ---- writing a store on object storage (remote.c) ---- */

/*
 * A backup into an s3: store: store_remote_begin takes the store's lock object (-EBUSY, with a message
 * naming the holder, when another writer holds it; stale locks are removed with a message), makes the
 * local stage directory (store_remote_stagefd: laid out like a store, where containers and the catalog
 * are written) and downloads index.db into it, setting s->ix_path there, which store_open_index then
 * opens as the writer's index (so s is the backup's own handle). Each complete file of the stage is
 * uploaded, then removed: a sealed container with store_remote_publish_async (two uploads at a time
 * in the background, at most two more waiting: it returns at once, or once there is room, with the
 * error of any upload that failed before), the catalog with store_remote_publish (now). The index goes
 * up with store_remote_publish_index after it is closed, once every container has (it flushes them);
 * the catalog last, which commits the snapshot. store_remote_flush waits for the uploads and returns
 * the first failure. store_remote_end releases the lock, and drops uploads not yet begun (NULL is a
 * no-op).
 */
typedef struct store_remote store_remote;
/* What a lock object says (doc/format.md, "A store on object storage"). */
typedef struct store_lock_body {
    char host[256];
    long pid;
    long long time; /* Unix seconds of its last renewal */
} store_lock_body;
/* Parses the n bytes of a lock object: 0, or RH_ECORRUPT for anything but the exact form a writer
 * writes (a lock in another form is never judged stale). */
int store_lock_parse(const char *body, size_t n, store_lock_body *ret);
int store_remote_begin(rh_store *s, store_remote **ret);
int store_remote_stagefd(const store_remote *r);
int store_remote_publish(store_remote *r, const char *path);
int store_remote_publish_async(store_remote *r, const char *path);
int store_remote_flush(store_remote *r);
int store_remote_publish_index(store_remote *r);
void store_remote_end(store_remote *r);
/* 'rehydrate reindex' of an s3: store: under the lock object, index.db rebuilt from the containers
 * (store_reindex, through the store's callbacks) in the stage and uploaded over the old one by one PUT,
 * so that readers see the old index or the new one. */
int store_remote_reindex(rh_store *s, uint64_t *ret_chunks, uint64_t *ret_streams);
/* store_create for an s3: URL: writes rehydrate.store unless the prefix holds one (RH_EEXIST) or any
 * other object (-ENOTEMPTY). Messages go to log. */
int store_create_remote(const char *url, const store_config *cfg, rh_log_fn log, void *ud);

/* ---- a damaged index (index_repair.c) ---- */

/*
 * The index is derived data, so a reader that finds it damaged rebuilds it and goes on. Readers keep
 * index handles tagged with the generation they were opened at; store_index_repair replaces the file
 * (store_reindex) and bumps the generation, and every reader that sees a newer generation reopens its
 * handle. A process rebuilds a given index file at most once: damage that a rebuild does not cure is
 * in the containers, and verify reports it.
 */
unsigned store_index_gen(rh_store *s);
/* Opens the index file for lookups (flags as index_open) and gives the generation it belongs to. */
int store_index_open_gen(rh_store *s, int flags, index_t **ret, unsigned *ret_gen);
/*
 * A reader's lookup of chunk `digest` through a handle of generation `gen` failed with `err`: loc is the
 * row the index gave (NULL when the lookup itself failed). Decides whether the index is at fault (SQLite
 * reports it damaged, the chunk is missing from it, or the row disagrees with the container's own record
 * table), and if so rebuilds it with one message through store_log. True when the caller should reopen its
 * handle (store_index_open_gen) and retry once: the index was rebuilt, now or by another thread since
 * `gen`. Thread-safe.
 */
bool store_index_repair(rh_store *s, unsigned gen, int err, const uint8_t digest[HASH_LEN],
                        const index_loc *loc);
/*
 * The store's own index.db, read through the callbacks (s->ix_in_store), is never rebuilt by readers.
 * But a writer may replace it while they read (a backup into a store on object storage uploads a new
 * one), and a lookup through an older handle then misses the chunks of newer snapshots. After a failed
 * lookup through a handle of generation `gen`, store_index_replaced reads the file's header and, when
 * a commit changed it since store_index_stamp remembered it, moves to a new generation (every handle
 * reopens) and returns true: retry once. False for any other index. For lazy reads (reader.c); the
 * restore engine reads only in its plan's order and does not call it.
 */
void store_index_stamp(rh_store *s);
bool store_index_replaced(rh_store *s, unsigned gen);
/* Called after store_open_index opened (or rebuilt: `rebuilt_damaged` when the old file was damaged)
 * the index: remembers which file the current generation uses. */
void store_index_remember(rh_store *s, bool rebuilt_damaged);
/* The store's handle s->ix for the public API: opened on first use (rebuilt when missing, stale or
 * unreadable), reopened when the generation moved on. The caller serializes uses of s->ix. */
int store_shared_index(rh_store *s, index_t **ret);
/* Formats a message and hands it to the store's log function (rh_store_set_log), if it has one. */
void store_log(rh_store *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

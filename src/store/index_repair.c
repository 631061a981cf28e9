/*
 * index_repair.c — readers that find the index damaged rebuild it and go on (see store.h, "a damaged
 * index").
 *
 * index.db is derived data: every row can be rebuilt from the containers, which are the truth. A reader
 * that meets an index that SQLite calls malformed, a chunk that a stream map needs and the index lacks,
 * or a row that leads to a record of another digest or length must therefore not fail an intact file.
 * It asks store_index_repair, which decides whether the index is at fault: a failed lookup always is;
 * a failed record read is only when the container's own record table (its footer) disagrees with the
 * row, since otherwise the record itself is damaged and rebuilding would change nothing. The rebuild
 * writes a fresh file and renames it over the old one (store_reindex), into the cache directory when
 * the store is not writable, like every rebuild of a stale index; it writes nothing else. Handles carry
 * the generation they were opened at; a repair bumps s->ix_gen, and readers with an older handle reopen
 * theirs. Other store handles of the same process (the CLI restores through two) notice that the file
 * was replaced by its inode. A process rebuilds one index file once: if a rebuilt index still fails a
 * lookup, the damage is in the containers.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/util.h"
#include "store/container.h"
#include "store/store.h"

/* The index files this process has rebuilt (protected by repaired_lock). Few: one per store used. */
static pthread_mutex_t repaired_lock = PTHREAD_MUTEX_INITIALIZER;
static char **repaired;
static size_t nrepaired;

static bool was_repaired(const char *path)
{
    bool found = false;
    pthread_mutex_lock(&repaired_lock);
    for (size_t i = 0; i < nrepaired && !found; i++)
        found = strcmp(repaired[i], path) == 0;
    pthread_mutex_unlock(&repaired_lock);
    return found;
}

/* Remembers that path was rebuilt; false when there is no memory to remember it. */
static bool mark_repaired(const char *path)
{
    char *copy = mem_strdup(path);
    if (!copy)
        return false;
    pthread_mutex_lock(&repaired_lock);
    char **v = mem_realloc(repaired, (nrepaired + 1) * sizeof(*repaired));
    if (v) {
        repaired = v;
        repaired[nrepaired++] = copy;
    }
    pthread_mutex_unlock(&repaired_lock);
    if (!v)
        free(copy);
    return v != NULL;
}

void store_log(rh_store *s, int level, const char *fmt, ...)
{
    if (!s || !s->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = mem_vasprintf(fmt, ap); /* without memory, the message is dropped */
    va_end(ap);
    if (msg)
        s->log(s->log_ud, level, msg);
    free(msg);
}

RH_EXPORT void rh_store_set_log(rh_store *s, rh_log_fn fn, void *ud)
{
    if (!s)
        return;
    s->log = fn;
    s->log_ud = ud;
}

unsigned store_index_gen(rh_store *s)
{
    return __atomic_load_n(&s->ix_gen, __ATOMIC_ACQUIRE);
}

/* Whether the file at path is another than the one generation ix_gen began with. Remembers the file
 * when none is known yet. The caller holds ix_lock. */
static bool file_replaced_locked(rh_store *s, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    if (s->ix_dev == 0 && s->ix_ino == 0) {
        s->ix_dev = st.st_dev;
        s->ix_ino = st.st_ino;
        return false;
    }
    return st.st_dev != s->ix_dev || st.st_ino != s->ix_ino;
}

/* Starts a new generation for the file now at path. The caller holds ix_lock. */
static void next_gen_locked(rh_store *s, const char *path)
{
    s->ix_dev = 0;
    s->ix_ino = 0;
    file_replaced_locked(s, path);
    __atomic_add_fetch(&s->ix_gen, 1, __ATOMIC_RELEASE);
}

void store_index_remember(rh_store *s, bool rebuilt_damaged)
{
    const char *path = s->ix_path;
    pthread_mutex_lock(&s->ix_lock);
    if (file_replaced_locked(s, path))
        next_gen_locked(s, path);
    /* Without memory to remember the rebuild, a reader may rebuild the file once more: harmless. */
    if (rebuilt_damaged && !was_repaired(path))
        (void)mark_repaired(path);
    pthread_mutex_unlock(&s->ix_lock);
}

int store_index_open_gen(rh_store *s, int flags, index_t **ret, unsigned *ret_gen)
{
    const char *path = s->ix_path;
    /* The generation is read before the file is opened: a repair in between makes the handle newer
     * than its tag, which costs one needless reopen, never a stale handle tagged as current. */
    unsigned gen = store_index_gen(s);
    if (s->ix_in_store) {
        /* Behind callbacks, the store's own index.db through them (store_open_index chose it); it is
         * never repaired, so the generation never moves. */
        int r = index_open_ops(s->ops, s->ctx, STORE_INDEX_FILE, s->cfg.uuid, store_index_block(s), ret);
        if (r >= 0)
            *ret_gen = gen;
        return r;
    }
    pthread_mutex_lock(&s->ix_lock);
    file_replaced_locked(s, path); /* remembers the file when this is the first handle */
    pthread_mutex_unlock(&s->ix_lock);
    int r = index_open(path, s->cfg.uuid, flags, ret);
    if (r >= 0)
        *ret_gen = gen;
    return r;
}

static void hex_prefix(const uint8_t digest[HASH_LEN], char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* Whether the pack member that loc names is the chunk digest, by the pack's member table. */
static bool member_matches(rh_store *s, const char *path, const container_record *rec, const index_loc *loc,
                           const uint8_t digest[HASH_LEN])
{
    _cleanup_(freep) uint8_t *table = NULL;
    pack_entry pe;
    if (container_read_pack_table(s->ops, s->ctx, path, rec, &table) < 0 ||
        pack_member(rec, table, loc->member - 1u, &pe) < 0)
        return true; /* the pack itself is damaged: not the index's fault */
    return pe.raw_len == loc->raw_len && memcmp(pe.digest, digest, HASH_LEN) == 0;
}

/*
 * Compares the row `loc` of chunk `digest` with the record table of the container it names: a malloc'd
 * description of the disagreement, or NULL when they agree or the container cannot tell (its header or
 * footer is damaged: that is damage of the container, which verify reports). Without memory to find
 * out or to say so, also NULL: the index is then not blamed, and the read fails as it did.
 */
static char *row_fault(rh_store *s, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    char path[CONTAINER_PATH_MAX], hex[17];
    container_path(CONTAINER_DATA, loc->container, path);
    hex_prefix(digest, hex);
    container_header h;
    int r = container_read_header(s->ops, s->ctx, path, &h);
    if (r == -ENOENT || r == RH_ENOCONTAINER)
        return mem_asprintf("the row of chunk %s names %s, which does not exist", hex, path);
    if (r < 0 || h.kind != CONTAINER_DATA || h.id != loc->container)
        return NULL;
    container_record *rec = NULL;
    size_t n = 0;
    uint64_t end;
    r = h.footer_offset ? container_read_footer(s->ops, s->ctx, path, &h, &rec, &n)
                        : container_scan(s->ops, s->ctx, path, &rec, &n, &end, NULL);
    if (r < 0)
        return NULL;
    const container_record *at = NULL;
    for (size_t i = 0; i < n && !at; i++)
        if (rec[i].offset == loc->offset)
            at = &rec[i];
    char *why = NULL;
    if (!at) {
        why = mem_asprintf("the row of chunk %s points at offset %llu of %s, where no record starts", hex,
                        (unsigned long long)loc->offset, path);
    } else if (loc->member == 0 ? at->type != RECORD_CHUNK || memcmp(at->digest, digest, HASH_LEN) != 0 ||
                                      at->raw_len != loc->raw_len
                                : at->type != RECORD_PACK || loc->member > at->members ||
                                      !member_matches(s, path, at, loc, digest)) {
        why = mem_asprintf("the row of chunk %s points at the record at offset %llu of %s, which holds "
                        "another chunk",
                        hex, (unsigned long long)loc->offset, path);
    } else if (at->stored_len != loc->stored_len || at->codec != loc->codec) {
        why = mem_asprintf("the row of chunk %s gives a stored length of %u (codec %u) for the record at "
                        "offset %llu of %s, which has %u (codec %u)",
                        hex, loc->stored_len, loc->codec, (unsigned long long)loc->offset, path,
                        at->stored_len, at->codec);
    }
    free(rec);
    return why;
}

/* Why a failed lookup (no row: loc NULL) or a failed record read (loc) is the index's fault, or NULL
 * (also when there is no memory to say why). */
static char *index_fault(rh_store *s, int err, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    char hex[17];
    hex_prefix(digest, hex);
    if (loc)
        return err == -ENOMEM ? NULL : row_fault(s, digest, loc);
    switch (err) {
    case RH_ENOCHUNK:
        return mem_asprintf("chunk %s, which a stream map needs, is not in it", hex);
    case -ENOENT:
        return mem_strdup("it is missing");
    case RH_ECORRUPT:
    case RH_ESTALEINDEX:
    case -EIO:
        return mem_asprintf("looking up chunk %s: %s", hex, rh_strerror(err));
    default:
        return NULL; /* -ENOMEM, -EBUSY, ...: not damage */
    }
}

/* The bytes of an index file's header that change whenever a writer commits: SQLite's file change
 * counter and page count (offsets 24-31). */
#define IX_STAMP_OFF 24
#define IX_STAMP_LEN 8

void store_index_stamp(rh_store *s)
{
    uint8_t h[IX_STAMP_OFF + IX_STAMP_LEN];
    if (!s->ix_in_store || s->ops->read(s->ctx, STORE_INDEX_FILE, 0, h, sizeof(h)) != 0)
        return;
    pthread_mutex_lock(&s->ix_lock);
    if (!s->ix_stamped) {
        memcpy(s->ix_stamp, h + IX_STAMP_OFF, IX_STAMP_LEN);
        s->ix_stamped = true;
    }
    pthread_mutex_unlock(&s->ix_lock);
}

/* See store.h. One read of index.db's first 32 bytes. */
bool store_index_replaced(rh_store *s, unsigned gen)
{
    if (!s->ix_in_store)
        return false;
    uint8_t h[IX_STAMP_OFF + IX_STAMP_LEN];
    if (s->ops->read(s->ctx, STORE_INDEX_FILE, 0, h, sizeof(h)) != 0)
        return false;
    pthread_mutex_lock(&s->ix_lock);
    bool retry = store_index_gen(s) != gen; /* another thread saw it first */
    if (!retry && s->ix_stamped && memcmp(s->ix_stamp, h + IX_STAMP_OFF, IX_STAMP_LEN) != 0) {
        __atomic_add_fetch(&s->ix_gen, 1, __ATOMIC_RELEASE);
        retry = true;
    }
    memcpy(s->ix_stamp, h + IX_STAMP_OFF, IX_STAMP_LEN);
    s->ix_stamped = true;
    pthread_mutex_unlock(&s->ix_lock);
    return retry;
}

bool store_index_repair(rh_store *s, unsigned gen, int err, const uint8_t digest[HASH_LEN],
                        const index_loc *loc)
{
    /* An index read through the callbacks is the store's (see store_index_replaced); rebuilding means
     * reading every container, which an application behind callbacks (tape, object storage) must ask
     * for itself. */
    if (s->ix_in_store || (s->rootfd < 0 && !s->scan_ok))
        return false;
    const char *path = s->ix_path;
    pthread_mutex_lock(&s->ix_lock);
    bool retry = false;
    if (store_index_gen(s) != gen) {
        retry = true; /* another thread has rebuilt it since the caller opened its handle */
    } else if (file_replaced_locked(s, path)) {
        next_gen_locked(s, path); /* another store handle or process rebuilt it */
        retry = true;
    } else if (!was_repaired(path)) {
        _cleanup_(freep) char *why = index_fault(s, err, digest, loc);
        /* A rebuild that cannot be remembered is not made: one per file and process is the rule. */
        if (why && mark_repaired(path)) {
            int r = store_reindex(s, path, NULL, NULL);
            if (r < 0)
                store_log(s, RH_LOG_ERROR, "%s: the index is damaged (%s), and rebuilding it failed: %s",
                          path, why, rh_strerror(r));
            else
                store_log(s, RH_LOG_WARNING,
                          "%s: the index is damaged (%s); rebuilt it from the containers (it is derived "
                          "data; 'rehydrate verify' checks it)",
                          path, why);
            if (r >= 0) {
                next_gen_locked(s, path);
                retry = true;
            }
        }
    }
    pthread_mutex_unlock(&s->ix_lock);
    return retry;
}

int store_shared_index(rh_store *s, index_t **ret)
{
    if (s->ix && s->ix_handle_gen != store_index_gen(s)) {
        index_close(s->ix);
        s->ix = NULL;
    }
    if (!s->ix) {
        unsigned gen = store_index_gen(s);
        int r = s->ix_gen == 0 ? store_open_index(s, INDEX_READONLY, true, NULL, &s->ix)
                               : store_index_open_gen(s, INDEX_READONLY, &s->ix, &gen);
        if (r < 0)
            return r;
        s->ix_handle_gen = gen;
    }
    *ret = s->ix;
    return 0;
}

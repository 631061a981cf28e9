/*
 * reindex.c — rebuilds index.db from the containers (store_reindex). It lives in store/ because the
 * store itself needs it: store_open_index rebuilds a missing or stale index, and index_repair.c a
 * damaged one; 'rehydrate reindex' calls down into it. Sealed containers are read through their footers
 * (three small reads each, and one more per pack for its member table, so a rebuild costs little even
 * for a large store); a committed container without a footer is scanned record by record. The rebuild
 * writes a fresh file in one transaction and renames it over the old one: a crash during it leaves the previous index as it was, and an old index
 * that SQLite finds malformed is never needed to build the new one.
 *
 * Readers of the public API reach it (a missing, stale or damaged index), so it allocates with mem_*
 * (util.h): running out of memory is -ENOMEM and leaves the old index as it was, never a rebuild that
 * skips containers for want of memory.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "store/container.h"
#include "store/store.h"

/* The directory and file name of `path` (malloc'd), for the temp file beside it: 0, or -ENOMEM with
 * nothing allocated. */
static int split_path(const char *path, char **ret_dir, char **ret_base)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? mem_memdup(path, (size_t)(slash - path) + 2) : mem_strdup(".");
    char *base = mem_strdup(slash ? slash + 1 : path);
    if (!dir || !base) {
        free(dir);
        free(base);
        return -ENOMEM;
    }
    if (slash)
        dir[slash - path == 0 ? 1 : slash - path] = 0;
    *ret_dir = dir;
    *ret_base = base;
    return 0;
}

/* Removes the journal files that SQLite keeps beside `path`: those of the file being replaced must not
 * be applied to its successor (a hot -journal or a -wal would be played into the new file). The names
 * are built on the stack, so that this cannot fail for want of memory once a rebuild is complete. */
static void remove_journals(const char *path)
{
    static const char *suffixes[] = { "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s%s", path, suffixes[i]) < (int)sizeof(p))
            unlink(p);
    }
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
        index_loc loc = { .container = c->id, .offset = rec[i].offset, .stored_len = rec[i].stored_len,
                           .raw_len = rec[i].raw_len, .codec = rec[i].codec };
        if (rec[i].type == RECORD_PACK && c->kind == CONTAINER_DATA) {
            r = add_pack(s, ix, path, &rec[i], &loc);
            if (r == RH_ECORRUPT) { /* its table is damaged: that costs this pack, not the container */
                store_log(s, RH_LOG_WARNING, "%s: pack at offset %llu: %s (skipped; run 'rehydrate verify')",
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

/* Fills the fresh index ix from the containers `have`, in one transaction. */
static int fill(rh_store *s, index_t *ix, const index_container *have, size_t n, uint64_t *chunks,
                uint64_t *streams)
{
    int r = index_begin(ix);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        r = add_container(s, ix, &have[i], chunks, streams);
        if (r < 0 && r != -ENOMEM) {
            char cp[CONTAINER_PATH_MAX];
            store_log(s, RH_LOG_WARNING, "%s: %s (skipped; run 'rehydrate verify')",
                      container_path(have[i].kind, have[i].id, cp), rh_strerror(r));
            /* A damaged container must not stop the rebuild: its chunks are simply not indexed, and
             * verify reports the files that need them. It is still recorded, so the index is current. */
            r = index_add_container(ix, &have[i]);
        }
    }
    if (r >= 0)
        r = index_commit(ix);
    else
        index_rollback(ix);
    return r;
}

int store_reindex(rh_store *s, const char *path, uint64_t *ret_chunks, uint64_t *ret_streams)
{
    index_container *have = NULL;
    size_t n = 0;
    int r = store_list_containers(s, &have, &n);
    if (r < 0)
        return r;
    /* The new index is built in a file of its own: the old one may be damaged beyond what SQLite can
     * clear (a malformed B-tree fails DELETE as it fails SELECT), and readers may have it open. */
    _cleanup_(freep) char *dir = NULL, *base = NULL, *tmp = NULL, *tmppath = NULL;
    if ((r = split_path(path, &dir, &base)) < 0) {
        free(have);
        return r;
    }
    _cleanup_(closep) int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_(closep) int fd = dfd < 0 ? -errno : fs_create_temp(dfd, base, &tmp);
    if (fd < 0) {
        free(have);
        return fd;
    }
    index_t *ix = NULL;
    uint64_t chunks = 0, streams = 0;
    tmppath = mem_asprintf("%s/%s", dir, tmp);
    r = tmppath ? index_open(tmppath, s->cfg.uuid, INDEX_CREATE, &ix) : -ENOMEM;
    if (r >= 0)
        r = fill(s, ix, have, n, &chunks, &streams);
    index_close(ix); /* back to the rollback journal: the file is complete in itself */
    free(have);
    if (r >= 0) {
        remove_journals(path);
        r = fs_commit_temp(dfd, fd, tmp, base, 1);
    }
    if (r < 0) {
        unlinkat(dfd, tmp, 0);
        if (tmppath)
            remove_journals(tmppath);
        return r;
    }
    if (ret_chunks)
        *ret_chunks = chunks;
    if (ret_streams)
        *ret_streams = streams;
    return 0;
}

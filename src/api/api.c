/*
 * api.c — the public restore API of librehydrate: rh_restore_files and the lazy rh_snapshot / rh_file
 * reads, as thin wrappers over engine.c, reader.c and the catalog. Like everything below them, they
 * allocate with mem_* (util.h): memory exhaustion is -ENOMEM, never an abort.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>

#include "common/util.h"
#include "restore/engine.h"
#include "read/reader.h"
#include "snapshot/catalog.h"

struct rh_snapshot {
    rh_store *s;
    catalog *c;
    pthread_mutex_t lock; /* protects s->ix, which one thread may use at a time */
};

struct rh_file {
    rh_snapshot *snap;
    reader_file *r;
};

/* The store's index, opened (and rebuilt when missing, stale or damaged) on first use, and reopened
 * after a reader repaired it. */
static int store_index(rh_store *s, index_t **ret) { return store_shared_index(s, ret); }

RH_EXPORT int rh_restore_files(rh_store *store, size_t n, const char *const *paths, unsigned flags,
                               int *results)
{
    if (!store || n > RH_RESTORE_MAX_FILES || (n && !paths) || (flags & ~RH_RESTORE_VERIFY))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!paths[i])
            return -EINVAL;
    return engine_restore(store, n, paths, flags, results);
}

/* A plan is an array of plain structs; the library's malloc and free are the matching pair. */
RH_EXPORT rh_container_extent *rh_plan_alloc(size_t n)
{
    if (n == 0 || n > SIZE_MAX / sizeof(rh_container_extent))
        return NULL;
    return mem_alloc(n * sizeof(rh_container_extent));
}

RH_EXPORT void rh_plan_free(rh_container_extent *plan) { free(plan); }

RH_EXPORT int rh_snapshot_open(rh_store *store, const char *name, rh_snapshot **ret_snapshot)
{
    if (!store || !name || !ret_snapshot)
        return -EINVAL;
    char path[STORE_SNAPSHOT_PATH_MAX];
    if (!store_snapshot_name_ok(name) || !store_snapshot_path_buf(name, path))
        return RH_ENOSNAPSHOT;
    index_t *ix;
    int r = store_index(store, &ix);
    if (r < 0)
        return r;
    catalog *c;
    if ((r = catalog_open(store->ops, store->ctx, path, &c)) < 0)
        return r;
    rh_snapshot *sn = mem_calloc(1, sizeof(*sn));
    if (!sn) {
        catalog_close(c);
        return -ENOMEM;
    }
    sn->s = store;
    sn->c = c;
    pthread_mutex_init(&sn->lock, NULL);
    *ret_snapshot = sn;
    return 0;
}

RH_EXPORT void rh_snapshot_close(rh_snapshot *sn)
{
    if (!sn)
        return;
    catalog_close(sn->c);
    pthread_mutex_destroy(&sn->lock);
    free(sn);
}

RH_EXPORT int rh_file_open(rh_snapshot *sn, const char *path, unsigned flags, rh_file **ret_file)
{
    if (!sn || !path || !ret_file || (flags & ~RH_RESTORE_VERIFY))
        return -EINVAL;
    uint64_t idx;
    int r = catalog_lookup_path(sn->c, path, &idx);
    if (r < 0)
        return r;
    catalog_entry *e;
    if ((r = catalog_get(sn->c, idx, &e)) < 0)
        return r;
    if (e->type != CT_REG) {
        r = e->type == CT_DIR ? -EISDIR : -EINVAL;
        catalog_entry_free(e);
        return r;
    }
    reader_file *rf = NULL;
    pthread_mutex_lock(&sn->lock);
    r = reader_open_shared(sn->s, e, flags & RH_RESTORE_VERIFY, &rf);
    pthread_mutex_unlock(&sn->lock);
    catalog_entry_free(e);
    if (r < 0)
        return r;
    rh_file *f = mem_calloc(1, sizeof(*f));
    if (!f) {
        reader_close(rf);
        return -ENOMEM;
    }
    f->snap = sn;
    f->r = rf;
    *ret_file = f;
    return 0;
}

RH_EXPORT uint64_t rh_file_size(const rh_file *f) { return f ? f->r->map->size : 0; }

RH_EXPORT int rh_file_pread(rh_file *f, void *buf, size_t size, uint64_t offset, size_t *ret_read)
{
    if (!f || (!buf && size) || !ret_read)
        return -EINVAL;
    /* The index handle is shared by the snapshot's files; chunk lookups take turns. */
    pthread_mutex_lock(&f->snap->lock);
    int r = reader_pread(f->r, buf, size, offset, ret_read);
    pthread_mutex_unlock(&f->snap->lock);
    return r;
}

RH_EXPORT void rh_file_close(rh_file *f)
{
    if (!f)
        return;
    reader_close(f->r);
    free(f);
}

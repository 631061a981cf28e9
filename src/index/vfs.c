/*
 * vfs.c — the read-only SQLite VFS over a store's read callback (see vfs.h).
 *
 * A file is read in aligned blocks of INDEX_VFS_BLOCK bytes, or the source's own block size (the last
 * one shorter: the read callback takes exact sizes only) into an LRU cache of INDEX_VFS_CACHE blocks, or
 * as many larger blocks as make twice that many bytes. Everything that is not reading
 * (randomness, time, sleeping) is delegated to SQLite's default VFS.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "index/vfs.h"

typedef struct vblock {
    uint64_t no; /* block number */
    uint8_t *data;
    uint64_t stamp; /* last use, for LRU */
} vblock;

typedef struct vfile {
    sqlite3_file base; /* must be first: SQLite casts */
    index_vfs_source *src;
    uint64_t size;
    vblock cache[INDEX_VFS_CACHE];
    size_t ncache;
    size_t bsize; /* bytes per block */
    size_t bmax;  /* blocks kept at most */
    uint64_t clock;
} vfile;

/* ---- reading ---- */

static int src_read(index_vfs_source *src, uint64_t off, void *buf, size_t len)
{
    int r = src->ops->read(src->ctx, src->path, off, buf, len);
    src->reads++;
    if (r == 0)
        src->bytes += len;
    return r > 0 ? -EIO : r;
}

int index_vfs_header_size(const uint8_t h[static 100], uint64_t *ret)
{
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return RH_ESTALEINDEX;
    uint32_t page = (uint32_t)h[16] << 8 | h[17];
    if (page == 1)
        page = 65536;
    if (page < 512 || (page & (page - 1)))
        return RH_ESTALEINDEX;
    if (h[18] == 2 || h[19] == 2) /* WAL: pages may live in a -wal file we cannot see */
        return RH_ESTALEINDEX;
    uint32_t pages = (uint32_t)h[28] << 24 | (uint32_t)h[29] << 16 | (uint32_t)h[30] << 8 | h[31];
    /* The in-header size is valid only when version-valid-for equals the change counter. */
    if (memcmp(h + 24, h + 92, 4) != 0 || pages == 0)
        return RH_ESTALEINDEX;
    *ret = (uint64_t)pages * page;
    return 0;
}

static vblock *get_block(vfile *f, uint64_t no, int *ret_err)
{
    vblock *victim = NULL;
    for (size_t i = 0; i < f->ncache; i++) {
        if (f->cache[i].no == no) {
            f->cache[i].stamp = ++f->clock;
            return &f->cache[i];
        }
        if (!victim || f->cache[i].stamp < victim->stamp)
            victim = &f->cache[i];
    }
    if (f->ncache < f->bmax) {
        victim = &f->cache[f->ncache];
        victim->data = mem_alloc(f->bsize);
        if (!victim->data) {
            *ret_err = -ENOMEM;
            return NULL;
        }
        f->ncache++;
    }
    uint64_t off = no * f->bsize;
    size_t len = (size_t)MIN((uint64_t)f->bsize, f->size - off);
    int r = src_read(f->src, off, victim->data, len);
    if (r < 0) {
        victim->no = UINT64_MAX; /* the slot holds nothing valid */
        victim->stamp = 0;
        *ret_err = r;
        return NULL;
    }
    victim->no = no;
    victim->stamp = ++f->clock;
    return victim;
}

static int vfile_read(sqlite3_file *file, void *buf, int amount, sqlite3_int64 offset)
{
    vfile *f = (vfile *)file;
    if (amount < 0 || offset < 0)
        return SQLITE_IOERR_READ;
    uint8_t *out = buf;
    uint64_t off = (uint64_t)offset, left = (uint64_t)amount;
    while (left > 0 && off < f->size) {
        int err = 0;
        vblock *b = get_block(f, off / f->bsize, &err);
        if (!b)
            return err == -ENOMEM ? SQLITE_IOERR_NOMEM : SQLITE_IOERR_READ;
        uint64_t in = off % f->bsize;
        uint64_t n = MIN(left, MIN((uint64_t)f->bsize - in, f->size - off));
        memcpy(out, b->data + in, n);
        out += n, off += n, left -= n;
    }
    if (left > 0) { /* past the end: SQLite wants zeros and this code */
        memset(out, 0, left);
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

/* ---- the rest of the file methods: an immutable file ---- */

static int vfile_close(sqlite3_file *file)
{
    vfile *f = (vfile *)file;
    for (size_t i = 0; i < f->ncache; i++)
        free(f->cache[i].data);
    f->ncache = 0;
    return SQLITE_OK;
}

static int vfile_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) { return SQLITE_READONLY; }
static int vfile_truncate(sqlite3_file *f, sqlite3_int64 size) { return SQLITE_READONLY; }
static int vfile_sync(sqlite3_file *f, int flags) { return SQLITE_OK; }
static int vfile_size(sqlite3_file *file, sqlite3_int64 *ret)
{
    *ret = (sqlite3_int64)((vfile *)file)->size;
    return SQLITE_OK;
}
static int vfile_lock(sqlite3_file *f, int level) { return SQLITE_OK; }
static int vfile_check_reserved(sqlite3_file *f, int *ret)
{
    *ret = 0;
    return SQLITE_OK;
}
static int vfile_control(sqlite3_file *f, int op, void *arg) { return SQLITE_NOTFOUND; }
static int vfile_sector(sqlite3_file *f) { return 4096; }
static int vfile_device(sqlite3_file *f) { return SQLITE_IOCAP_IMMUTABLE; }

static const sqlite3_io_methods vfile_methods = {
    .iVersion = 1,
    .xClose = vfile_close,
    .xRead = vfile_read,
    .xWrite = vfile_write,
    .xTruncate = vfile_truncate,
    .xSync = vfile_sync,
    .xFileSize = vfile_size,
    .xLock = vfile_lock,
    .xUnlock = vfile_lock,
    .xCheckReservedLock = vfile_check_reserved,
    .xFileControl = vfile_control,
    .xSectorSize = vfile_sector,
    .xDeviceCharacteristics = vfile_device,
};

/* ---- the VFS ---- */

static sqlite3_vfs *default_vfs;

/* The name encodes the source's address: "rhops:0x7f..." (see index_vfs_name). */
static index_vfs_source *source_of(const char *name)
{
    void *p = NULL;
    if (!name || sscanf(name, "rhops:%p", &p) != 1)
        return NULL;
    return p;
}

/* Why this thread's last vfs_open failed, as a positive code (an errno, or minus a domain code such as
 * RH_ESTALEINDEX): SQLite asks xGetLastError when an open fails, and index.c's map_rc turns the answer
 * back, so that a missing file is -ENOENT and a damaged header RH_ESTALEINDEX, not -EIO. */
static __thread int open_error;

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    vfile *f = (vfile *)file;
    memset(f, 0, sizeof(*f)); /* pMethods NULL: SQLite calls no xClose when the open fails */
    open_error = 0;
    index_vfs_source *src = source_of(name);
    if (!src || !(flags & SQLITE_OPEN_MAIN_DB) || (flags & (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)))
        return SQLITE_CANTOPEN;
    uint8_t h[100], last;
    int r = src_read(src, 0, h, sizeof(h));
    if (r >= 0)
        r = index_vfs_header_size(h, &f->size);
    /* The file must hold what its header claims: SQLite believes the size we report, and sizes some
     * allocations by it (a damaged cell's payload may be as large as the whole database), so a header
     * of a few bytes claiming 2^32 pages could cost gigabytes. The callback refuses short reads, so
     * reading the last byte proves the size. */
    if (r >= 0 && (r = src_read(src, f->size - 1, &last, 1)) == RH_ECORRUPT)
        r = RH_ESTALEINDEX; /* shorter than its header says */
    if (r < 0) {
        open_error = -r;
        return SQLITE_CANTOPEN;
    }
    f->src = src;
    f->bsize = src->block > INDEX_VFS_BLOCK ? src->block : INDEX_VFS_BLOCK;
    f->bmax = MIN((size_t)INDEX_VFS_CACHE, MAX((size_t)8, f->bsize == INDEX_VFS_BLOCK ? INDEX_VFS_CACHE :
                                                   2 * INDEX_VFS_CACHE * (size_t)INDEX_VFS_BLOCK / f->bsize));
    f->base.pMethods = &vfile_methods;
    if (out_flags)
        *out_flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB;
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync) { return SQLITE_READONLY; }

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *ret)
{
    *ret = 0; /* no journal, no -wal: nothing else exists */
    return SQLITE_OK;
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    if ((int)strlen(name) >= n)
        return SQLITE_CANTOPEN;
    strcpy(out, name);
    return SQLITE_OK;
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return default_vfs->xRandomness(default_vfs, n, out);
}
static int vfs_sleep(sqlite3_vfs *vfs, int us) { return default_vfs->xSleep(default_vfs, us); }
static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    return default_vfs->xCurrentTime(default_vfs, out);
}
static int vfs_last_error(sqlite3_vfs *vfs, int n, char *out) { return open_error; }

static sqlite3_vfs ops_vfs = {
    .iVersion = 1,
    .szOsFile = sizeof(vfile),
    .mxPathname = 64,
    .zName = INDEX_VFS_NAME,
    .xOpen = vfs_open,
    .xDelete = vfs_delete,
    .xAccess = vfs_access,
    .xFullPathname = vfs_full_pathname,
    .xRandomness = vfs_randomness,
    .xSleep = vfs_sleep,
    .xCurrentTime = vfs_current_time,
    .xGetLastError = vfs_last_error,
};

static int register_rc = SQLITE_ERROR;

static void register_once(void)
{
    default_vfs = sqlite3_vfs_find(NULL);
    register_rc = default_vfs ? sqlite3_vfs_register(&ops_vfs, 0) : SQLITE_ERROR;
}

int index_vfs_name(index_vfs_source *src, char name[static 40])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!src || !src->ops || !src->ops->read || !src->path)
        return -EINVAL;
    pthread_once(&once, register_once);
    if (register_rc != SQLITE_OK)
        return -ENOTSUP;
    snprintf(name, 40, "rhops:%p", (void *)src);
    return 0;
}

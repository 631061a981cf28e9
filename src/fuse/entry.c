/*
 * entry.c — catalog entries as rehydratefs shows them, beneath the operations in fs.c: an entry read by
 * index (a damaged catalog reported once), its path for messages, and the attributes and lookup replies
 * of entries, of the root in list mode and of "latest". Nothing here replies to a request or calls into
 * fs.c. See inode.h for the inode numbers.
 */
#include "config.h"

#include <stdio.h>
#include <sys/stat.h>

#include "common/util.h"
#include "fuse/fs.h"

bool fs_decode(const fs *f, fuse_ino_t ino, size_t *ret_snap, uint64_t *ret_entry)
{
    return fs_ino_decode(f->single, f->nsnaps, ino, ret_snap, ret_entry);
}

char *fs_entry_path(catalog *c, uint64_t idx)
{
    char *path = xstrdup("");
    for (int depth = 0; idx != 0 && idx != CATALOG_NONE && depth < 4096; depth++) {
        catalog_entry *e;
        if (catalog_get(c, idx, &e) < 0)
            break;
        char *p = *path ? xasprintf("%s/%s", (char *)e->name, path) : xstrdup((char *)e->name);
        free(path);
        path = p;
        idx = e->parent;
        catalog_entry_free(e);
    }
    return path;
}

int fs_read_entry(fs *f, size_t snap, uint64_t idx, catalog_entry **ret)
{
    int r = catalog_get(f->snaps[snap].c, idx, ret);
    if (r < 0)
        fs_log_once(f, "catalog", f->snaps[snap].name, "snapshot %s: entry %llu: %s", f->snaps[snap].name,
                    (unsigned long long)idx, rh_strerror(r));
    return r;
}

void fs_entry_stat(const fs *f, size_t snap, uint64_t idx, const catalog_entry *e, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = fs_entry_ino(f->single, snap, idx, e);
    st->st_mode = e->mode;
    /* Directories report 1 link: "unknown", so find(1) does not take the leaf shortcut. */
    st->st_nlink = e->type == CT_DIR ? 1 : e->nlink ? e->nlink : 1;
    st->st_uid = e->uid;
    st->st_gid = e->gid;
    st->st_rdev = (dev_t)e->rdev;
    st->st_size = (off_t)e->size;
    st->st_blksize = 65536;
    st->st_blocks = e->type == CT_REG ? (blkcnt_t)((e->alloc + 511) / 512) : 0;
    st->st_atim = (struct timespec){ e->atime_ns / 1000000000, e->atime_ns % 1000000000 };
    st->st_mtim = (struct timespec){ e->mtime_ns / 1000000000, e->mtime_ns % 1000000000 };
    st->st_ctim = (struct timespec){ e->ctime_ns / 1000000000, e->ctime_ns % 1000000000 };
}

void fs_root_stat(const fs *f, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = FS_INO_ROOT;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    st->st_atim = st->st_mtim = st->st_ctim =
        (struct timespec){ (time_t)(f->mount_ns / 1000000000), (long)(f->mount_ns % 1000000000) };
}

const char *fs_latest_name(const fs *f) { return f->nsnaps ? f->snaps[f->nsnaps - 1].name : ""; }

void fs_latest_stat(const fs *f, struct stat *st)
{
    fs_root_stat(f, st);
    st->st_ino = FS_INO_LATEST;
    st->st_mode = S_IFLNK | 0777;
    st->st_nlink = 1;
    st->st_size = (off_t)strlen(fs_latest_name(f));
}

void fs_entry_param(const fs *f, size_t snap, uint64_t idx, const catalog_entry *e, struct fuse_entry_param *p)
{
    memset(p, 0, sizeof(*p));
    fs_entry_stat(f, snap, idx, e, &p->attr);
    p->ino = p->attr.st_ino;
    p->attr_timeout = p->entry_timeout = FS_TIMEOUT;
}

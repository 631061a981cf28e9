/*
 * walk.c — metadata capture for the backup. The xattr calls for entries that are not open go through
 * "/proc/self/fd/DIRFD/NAME" with the l* variants: that names the entry relative to an open directory
 * without a path that could exceed PATH_MAX, and without following a symlink in the last component.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/xattr.h>

#include "backup/walk.h"
#include "common/util.h"

uint8_t walk_type_of(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return CT_REG;
    case S_IFDIR:
        return CT_DIR;
    case S_IFLNK:
        return CT_SYMLINK;
    case S_IFCHR:
        return CT_CHR;
    case S_IFBLK:
        return CT_BLK;
    case S_IFIFO:
        return CT_FIFO;
    case S_IFSOCK:
        return CT_SOCK;
    default:
        return 0;
    }
}

static int64_t ts_ns(struct timespec ts) { return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }

/* Lists or gets xattrs either through fd or through the /proc path of (dirfd, name). */
static ssize_t do_listxattr(int fd, const char *procpath, char *list, size_t size)
{
    return fd >= 0 ? flistxattr(fd, list, size) : llistxattr(procpath, list, size);
}

static ssize_t do_getxattr(int fd, const char *procpath, const char *name, void *value, size_t size)
{
    return fd >= 0 ? fgetxattr(fd, name, value, size) : lgetxattr(procpath, name, value, size);
}

static int read_xattrs(int dirfd, const char *name, int fd, catalog_entry *e)
{
    _cleanup_(freep) char *procpath = xasprintf("/proc/self/fd/%d/%s", dirfd, name);
    _cleanup_(freep) char *list = NULL;
    ssize_t n;
    for (;;) {
        n = do_listxattr(fd, procpath, NULL, 0);
        if (n < 0)
            return errno == ENOTSUP || errno == ENOSYS ? 0 : -errno;
        if (n == 0)
            return 0;
        list = xrealloc(list, (size_t)n);
        ssize_t m = do_listxattr(fd, procpath, list, (size_t)n);
        if (m >= 0) {
            n = m;
            break;
        }
        if (errno != ERANGE) /* ERANGE: the list grew between the calls; ask again */
            return -errno;
    }
    for (char *k = list; k < list + n; k += strlen(k) + 1) {
        size_t klen = strlen(k);
        if (klen == 0 || klen > UINT16_MAX)
            continue;
        ssize_t vlen = do_getxattr(fd, procpath, k, NULL, 0);
        if (vlen < 0) {
            if (errno == ENODATA) /* removed meanwhile */
                continue;
            return -errno;
        }
        uint8_t *val = xmalloc((size_t)vlen + 1);
        vlen = do_getxattr(fd, procpath, k, val, (size_t)vlen);
        if (vlen < 0) {
            int err = errno;
            free(val);
            if (err == ENODATA || err == ERANGE)
                continue;
            return -err;
        }
        e->xattrs = xrealloc(e->xattrs, (e->xattr_count + 1) * sizeof(*e->xattrs));
        e->xattrs[e->xattr_count++] = (catalog_xattr){
            .name = xmemdup(k, klen + 1),
            .name_len = (uint16_t)klen,
            .value = val,
            .value_len = (uint32_t)vlen,
        };
    }
    return 0;
}

int walk_fill_entry(int dirfd, const char *name, int fd, const struct stat *st, catalog_entry *e)
{
    e->type = walk_type_of(st->st_mode);
    e->mode = st->st_mode;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->nlink = 1;
    e->size = S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (uint64_t)st->st_size : 0;
    e->atime_ns = ts_ns(st->st_atim);
    e->mtime_ns = ts_ns(st->st_mtim);
    e->ctime_ns = ts_ns(st->st_ctim);
    e->rdev = S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? (uint64_t)st->st_rdev : 0;
    e->ino = st->st_ino;
    e->dev = st->st_dev;
    e->name = (uint8_t *)xstrdup(name);
    e->name_len = (uint32_t)strlen(name);
    int r = 0;
    if (S_ISLNK(st->st_mode)) {
        size_t cap = (size_t)st->st_size + 1;
        for (;;) {
            e->target = xrealloc(e->target, cap);
            ssize_t n = readlinkat(dirfd, name, (char *)e->target, cap);
            if (n < 0) {
                r = -errno;
                break;
            }
            if ((size_t)n < cap) {
                e->target[n] = 0;
                e->target_len = (uint32_t)n;
                e->size = (uint64_t)n;
                break;
            }
            cap *= 2; /* the link changed between lstat and readlink */
        }
    }
    if (r >= 0)
        r = read_xattrs(dirfd, name, fd, e);
    if (r < 0)
        catalog_entry_clear(e);
    return r;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int walk_list_dir(int fd, char ***ret_names, size_t *ret_n)
{
    int dfd = dup(fd);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    rewinddir(d);
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        v = xgrow(v, &cap, n, sizeof(*v), 32);
        v[n++] = xstrdup(de->d_name);
        errno = 0;
    }
    int r = errno ? -errno : 0;
    closedir(d);
    if (r < 0) {
        walk_free_names(v, n);
        return r;
    }
    sort_array(v, n, sizeof(*v), cmp_name);
    *ret_names = v;
    *ret_n = n;
    return 0;
}

void walk_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

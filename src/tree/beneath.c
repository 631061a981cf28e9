/*
 * beneath.c — file-system calls that never leave the target (see beneath.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "store/reparse.h"
#include "tree/beneath.h"

bool tree_name_safe(const uint8_t *name, size_t len)
{
    if (!name || len == 0 || memchr(name, '/', len) || memchr(name, 0, len))
        return false;
    return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

/* Opens `path` below dirfd without leaving it and without following any symlink. */
int tree_open_beneath(int dirfd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd;
    do
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    while (fd < 0 && (errno == EAGAIN || errno == EINTR)); /* EAGAIN: a rename raced the lookup */
    return fd < 0 ? -errno : (int)fd;
}

/* True when (dirfd, name) carries a reparse point; the l-variant never follows the entry. */
bool tree_has_reparse(int dirfd, const char *name)
{
    char proc[64 + NAME_MAX];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
    return lgetxattr(proc, REPARSE_XATTR, NULL, 0) >= 0;
}

/* Removes the directory tree (dirfd, name); symlinks inside are removed, never followed. */
int tree_rmtree_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int r = 0;
    for (int pass = 0; pass < 3 && r == 0; pass++) {
        rewinddir(d);
        struct dirent *de;
        while ((de = readdir(d)) && r == 0) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            struct stat st;
            if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                r = errno == ENOENT ? 0 : -errno;
            else if (S_ISDIR(st.st_mode))
                r = tree_rmtree_at(fd, de->d_name);
            else if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
                r = -errno;
        }
        if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
            break;
        if (r == 0 && errno != ENOTEMPTY && errno != EEXIST)
            r = -errno;
    }
    closedir(d);
    return r;
}

/* Removes whatever non-wanted thing is at (dirfd, name) as st describes it. */
int tree_clear_way(int dirfd, const char *name, const struct stat *st)
{
    if (S_ISDIR(st->st_mode))
        return tree_rmtree_at(dirfd, name);
    return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* A directory stream over a duplicate of dirfd, from its start; NULL with errno set. */
DIR *tree_dir_stream(int dirfd)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    if (d)
        rewinddir(d);
    return d;
}

/* Whether name is one that make_temp gives: TREE_TEMP_PREFIX and eight lowercase hex digits. */
bool tree_temp_name(const char *name)
{
    size_t n = strlen(TREE_TEMP_PREFIX);
    if (strncmp(name, TREE_TEMP_PREFIX, n) != 0 || strlen(name) != n + 8)
        return false;
    for (const char *p = name + n; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/*
 * Whether (dirfd, name) is a temp file that an earlier run killed in phase 1 left: a regular file of
 * make_temp's naming that either carries a reparse point (killed after fsetxattr) or is still as
 * make_temp created it, empty and with no permission beyond 0600 (killed before fsetxattr). Anything
 * else of that name is left alone: it is not ours.
 */
bool tree_stale_temp(int dirfd, const char *name)
{
    struct stat st;
    if (!tree_temp_name(name) || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return false;
    return tree_has_reparse(dirfd, name) || (st.st_size == 0 && (st.st_mode & 07177) == 0);
}

/* Moves tmp to name; replaces a non-directory only if `replace`. */
int tree_commit_temp(int dirfd, const char *tmp, const char *name, bool replace)
{
    int r = renameat2(dirfd, tmp, dirfd, name, replace ? 0 : RENAME_NOREPLACE);
    if (r < 0 && errno == EINVAL && !replace) { /* a file system without RENAME_NOREPLACE */
        r = linkat(dirfd, tmp, dirfd, name, 0);
        if (r == 0)
            unlinkat(dirfd, tmp, 0);
    }
    if (r < 0) {
        r = -errno;
        unlinkat(dirfd, tmp, 0);
    }
    return r;
}


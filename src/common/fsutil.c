/*
 * fsutil.c — full reads and writes, and atomic durable file creation.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "common/fsutil.h"
#include "common/util.h"

int fs_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int fs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int fs_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fs_read_file(int dirfd, const char *name, uint8_t **ret_data, size_t *ret_len)
{
    _cleanup_(closep) int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    uint8_t *data = mem_alloc((size_t)st.st_size + 1);
    if (!data)
        return -ENOMEM;
    int r = fs_pread_full(fd, data, (size_t)st.st_size, 0);
    if (r < 0) {
        free(data);
        return r;
    }
    data[st.st_size] = 0;
    *ret_data = data;
    *ret_len = (size_t)st.st_size;
    return 0;
}

int fs_fsync_dir(int dirfd)
{
    if (fsync(dirfd) < 0 && errno != EINVAL)
        return -errno;
    return 0;
}

int fs_create_temp(int dirfd, const char *name, char **ret_tmpname)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        char *tmp = mem_asprintf("%s.tmp.%d.%u", name, (int)getpid(), (unsigned)(now_ns() % 1000000007u));
        if (!tmp)
            return -ENOMEM;
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            *ret_tmpname = tmp;
            return fd;
        }
        int e = errno;
        free(tmp);
        if (e != EEXIST)
            return -e;
    }
    return -EEXIST;
}

int fs_commit_temp(int dirfd, int fd, const char *tmpname, const char *name, int replace)
{
    if (fsync(fd) < 0)
        return -errno;
    if (replace) {
        if (renameat(dirfd, tmpname, dirfd, name) < 0)
            return -errno;
    } else {
        /* link+unlink gives "fail if the target exists" without renameat2's filesystem support. */
        if (renameat2(dirfd, tmpname, dirfd, name, RENAME_NOREPLACE) < 0) {
            if (errno != EINVAL && errno != ENOSYS)
                return -errno;
            if (linkat(dirfd, tmpname, dirfd, name, 0) < 0)
                return -errno;
            unlinkat(dirfd, tmpname, 0);
        }
    }
    return fs_fsync_dir(dirfd);
}

int fs_write_atomic(int dirfd, const char *name, const void *data, size_t len, int replace)
{
    _cleanup_(freep) char *tmp = NULL;
    _cleanup_(closep) int fd = fs_create_temp(dirfd, name, &tmp);
    if (fd < 0)
        return fd;
    int r = fs_write_full(fd, data, len);
    if (r >= 0)
        r = fs_commit_temp(dirfd, fd, tmp, name, replace);
    if (r < 0)
        unlinkat(dirfd, tmp, 0);
    return r;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void fs_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#define XATTR_MAX (64u << 10) /* Linux's limit on an xattr value and on a list of names */

/* One listxattr or getxattr call, following links or not. */
static ssize_t xattr_call(const char *path, const char *name, bool follow, void *buf, size_t size)
{
    if (!name)
        return follow ? listxattr(path, buf, size) : llistxattr(path, buf, size);
    return follow ? getxattr(path, name, buf, size) : lgetxattr(path, name, buf, size);
}

int fs_xattr_fetch(const char *path, const char *name, bool follow, uint8_t **ret, size_t *ret_len)
{
    for (int attempt = 0; attempt < 4; attempt++) { /* the value may change between the two calls */
        ssize_t n = xattr_call(path, name, follow, NULL, 0);
        if (n < 0)
            return -errno;
        if ((size_t)n > XATTR_MAX)
            return -E2BIG;
        uint8_t *buf = mem_alloc(n ? (size_t)n : 1);
        if (!buf)
            return -ENOMEM;
        ssize_t got = xattr_call(path, name, follow, buf, (size_t)n);
        if (got >= 0) {
            *ret = buf;
            *ret_len = (size_t)got;
            return 0;
        }
        int e = errno;
        free(buf);
        if (e != ERANGE)
            return -e;
    }
    return -EIO;
}

/*
 * fsutil.h — whole-buffer I/O that retries on EINTR and short transfers, and the durable-write recipe
 * every store write uses: O_EXCL temp file, write, fsync, rename, fsync of the directory.
 * All functions return 0 or a negated errno.
 */
#ifndef RH_COMMON_FSUTIL_H
#define RH_COMMON_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int fs_pread_full(int fd, void *buf, size_t len, uint64_t off); /* -EIO on a short read (EOF) */
int fs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int fs_write_full(int fd, const void *buf, size_t len);
/* Reads the whole of a regular file below dirfd into a malloc'd buffer. */
int fs_read_file(int dirfd, const char *name, uint8_t **ret_data, size_t *ret_len);
/* Writes `name` below dirfd atomically and durably; fails with -EEXIST when it exists and !replace. */
int fs_write_atomic(int dirfd, const char *name, const void *data, size_t len, int replace);
/* Creates a temp file "name.tmp.XXXXXX" below dirfd with O_EXCL; returns its fd and malloc'd name. */
int fs_create_temp(int dirfd, const char *name, char **ret_tmpname);
/* fsync(fd), then renames tmpname to name (failing with -EEXIST if name exists and !replace), then
 * fsyncs the directory. */
int fs_commit_temp(int dirfd, int fd, const char *tmpname, const char *name, int replace);
int fs_fsync_dir(int dirfd);
int fs_mkdir_p(const char *path, mode_t mode);
/* Raises this process's soft limit on open descriptors to its hard limit (for a process that may hold
 * many at once: a restore's stubs, a mount's directories and open files). */
void fs_raise_fd_limit(void);
/* The value of xattr `name` of path, or with name NULL the list of its names (as listxattr gives it),
 * into a malloc'd *ret of *ret_len bytes; of a symbolic link at path itself unless follow. Asks the
 * size first (ntfs-3g answers a buffer too small with EIO, not ERANGE) and asks again when the value
 * grew in between. -E2BIG past Linux's 64 KiB limit on a value. */
int fs_xattr_fetch(const char *path, const char *name, bool follow, uint8_t **ret, size_t *ret_len);

#endif

/*
 * readonly.h — the operations that would change a mount, which every rehydratefs mount refuses with
 * EROFS (a snapshot, a volume: both read-only), shared by the operation tables of fs.c and volume.c.
 * The mount is "ro" too, so the kernel refuses most changes before they get here.
 */
#ifndef RH_FUSE_READONLY_H
#define RH_FUSE_READONLY_H

#include "fuse/inode.h"

void erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int to_set, struct fuse_file_info *fi);
void erofs_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d);
void erofs_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m);
void erofs_unlink(fuse_req_t req, fuse_ino_t p, const char *n); /* rmdir too */
void erofs_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n);
void erofs_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned f);
void erofs_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n);
void erofs_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi);
void erofs_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f);
void erofs_removexattr(fuse_req_t req, fuse_ino_t i, const char *n);
/* access(2) without default_permissions' checks: only writing is refused. */
void erofs_access(fuse_req_t req, fuse_ino_t ino, int mask);

/* The members of a struct fuse_lowlevel_ops that the functions above fill. */
#define READONLY_OPS                                                                                       \
    .setattr = erofs_setattr, .mknod = erofs_mknod, .mkdir = erofs_mkdir, .unlink = erofs_unlink,          \
    .rmdir = erofs_unlink, .symlink = erofs_symlink, .rename = erofs_rename, .link = erofs_link,           \
    .create = erofs_create, .setxattr = erofs_setxattr, .removexattr = erofs_removexattr,                  \
    .access = erofs_access

#endif

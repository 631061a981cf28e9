/*
 * readonly.c — every change refused with EROFS (see readonly.h).
 */
#include "config.h"

#include <errno.h>
#include <unistd.h>

#include "fuse/readonly.h"

void erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int to_set, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}
void erofs_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) { fuse_reply_err(req, EROFS); }
void erofs_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { fuse_reply_err(req, EROFS); }
void erofs_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
void erofs_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
void erofs_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned f)
{
    fuse_reply_err(req, EROFS);
}
void erofs_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
void erofs_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}
void erofs_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f)
{
    fuse_reply_err(req, EROFS);
}
void erofs_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { fuse_reply_err(req, EROFS); }
void erofs_access(fuse_req_t req, fuse_ino_t ino, int mask) { fuse_reply_err(req, mask & W_OK ? EROFS : 0); }

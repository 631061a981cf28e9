/*
 * beneath.h — file-system calls of a restore that never leave the target directory and never follow a
 * symlink: every path is relative to a directory fd, opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) or acted on with *at(..., AT_SYMLINK_NOFOLLOW); names from a catalog are checked
 * first. Also the naming of the temp files phase 1 makes stubs in (TREE_TEMP_PREFIX + 8 hex digits).
 */
#ifndef RH_TREE_BENEATH_H
#define RH_TREE_BENEATH_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define TREE_TEMP_PREFIX ".rh-stub."

/* Whether a catalog name may be created: not empty, ".", "..", and without '/' or NUL. */
bool tree_name_safe(const uint8_t *name, size_t len);
/* Opens `path` below dirfd without leaving it and without following any symlink; an fd or -errno. */
int tree_open_beneath(int dirfd, const char *path, int flags);
/* True when (dirfd, name) carries a reparse point; never follows the entry. */
bool tree_has_reparse(int dirfd, const char *name);
/* Removes the directory tree (dirfd, name); symlinks inside are removed, never followed. */
int tree_rmtree_at(int dirfd, const char *name);
/* Removes whatever non-wanted thing is at (dirfd, name) as st describes it. */
int tree_clear_way(int dirfd, const char *name, const struct stat *st);
/* A directory stream over a duplicate of dirfd, from its start; NULL with errno set. */
DIR *tree_dir_stream(int dirfd);
/* Whether name is a temp file name: TREE_TEMP_PREFIX and eight lowercase hex digits. */
bool tree_temp_name(const char *name);
/* Whether (dirfd, name) is a temp file an earlier, killed run left (see beneath.c). */
bool tree_stale_temp(int dirfd, const char *name);
/* Moves tmp to name in dirfd; replaces a non-directory only if `replace`; removes tmp on failure. */
int tree_commit_temp(int dirfd, const char *tmp, const char *name, bool replace);

#endif

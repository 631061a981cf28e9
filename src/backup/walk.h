/*
 * walk.h — reading the source tree: one entry's metadata (stat, xattrs, symlink target) into a
 * catalog_entry, and the names of one directory. Everything is relative to directory fds and never
 * follows symlinks, so trees deeper than PATH_MAX and hostile symlinks are handled.
 */
#ifndef RH_BACKUP_WALK_H
#define RH_BACKUP_WALK_H

#include <sys/stat.h>

#include "snapshot/catalog.h"

/* The catalog type of a stat mode, or 0 for an unknown type. */
uint8_t walk_type_of(mode_t mode);
/*
 * Fills *e (zero it first) from `st` of entry `name` below dirfd: type, mode, owners, ns times, rdev,
 * ino/dev, size, the symlink target, and the xattrs (all namespaces the caller may read). `fd` is an
 * open fd of the entry (a directory or a regular file) or -1. Returns 0, or a negative code when the
 * target or xattrs could not be read (e is then cleared).
 */
int walk_fill_entry(int dirfd, const char *name, int fd, const struct stat *st, catalog_entry *e);
/* The names in directory fd (without "." and ".."), sorted bytewise; free with walk_free_names. */
int walk_list_dir(int fd, char ***ret_names, size_t *ret_n);
void walk_free_names(char **names, size_t n);

#endif

/*
 * backup.h — making a snapshot: walk a source tree, chunk, hash, deduplicate, compress and append new
 * chunks, write stream maps and commit the catalog. The entry point of backup/: backup.c (the traversal)
 * drives pipeline.c (the data path), which writes through pipeline_store.c; walk.c fills entries.
 */
#ifndef RH_BACKUP_BACKUP_H
#define RH_BACKUP_BACKUP_H

#include "backup/options.h"
#include "store/store.h"

/*
 * Backs `src` (a directory) up into the local store `s` as a new snapshot. The store must be writable.
 * Returns 0 (st->partial says whether some entries could not be read), or a negative code, in which
 * case no snapshot was written: RH_EEXIST when the name is taken, -EBUSY when another backup runs.
 */
int backup_run(rh_store *s, const char *src, const backup_options *o, backup_stats *st);

#endif

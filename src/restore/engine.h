/*
 * engine.h — the restore engine behind rh_restore_files (engine.c): rehydrating stubs in place by
 * reading each needed container once, in the order the application asks for.
 */
#ifndef RH_RESTORE_ENGINE_H
#define RH_RESTORE_ENGINE_H

#include <stddef.h>

#include "index/index.h"
#include "store/store.h"

/* See rh_restore_files in rehydrate.h. The chunk lookups go through the store's shared index handle
 * (store_shared_index), which the engine repairs and reopens when it finds the index damaged. */
int engine_restore(rh_store *s, size_t n, const char *const *paths, unsigned flags, int *results);

#endif

/*
 * layout.h — phases 1 and 3 of a restore (DESIGN.md, "Two-phase, resumable restore").
 *
 * Phase 1 (layout_create) lays out a snapshot's tree, or some subtrees of it, below a target directory:
 * directories, symlinks, fifos, sockets, device nodes, hard links, and for every regular file a *stub*:
 * a file of the right size (sparse, no data) that carries its reparse point in the xattr
 * user.rehydrate.reparse. Phase 2 (rh_restore_files, not here) rehydrates the stubs. Phase 3
 * (layout_finish) sets owners (when root), modes, xattrs and ns times, directories last.
 *
 * Safety: everything is created relative to directory fds with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW; a
 * catalog name that is empty, ".", "..", or contains '/' is refused (RH_EUNSAFE, the entry and its
 * subtree are skipped and reported); nothing is ever created, modified or followed outside the target,
 * even when the target already holds symlinks planted to point elsewhere.
 */
#ifndef RH_TREE_LAYOUT_H
#define RH_TREE_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/catalog.h"
#include "store/store.h"

typedef struct layout_options {
    bool force;  /* allow a non-empty target: existing entries in the way are replaced (never followed) */
    bool resume; /* finish an interrupted restore: keep what exists; regular files that still carry a
                    reparse point become stubs again; others count as restored */
    bool stubs_only; /* informational: the caller stops after phase 1 */
    /* Called for every entry that could not be laid out or finished (path relative to the target). */
    void (*warn)(void *ud, const char *path, int code, const char *what);
    void *ud;
} layout_options;

typedef struct layout_stub {
    char *path;     /* relative to the target, e.g. "dir/file" (any bytes but NUL) */
    uint64_t size;  /* bytes of data to rehydrate (the file's size) */
    uint64_t alloc; /* bytes that are data, not holes */
    uint64_t rec;   /* the layout's record of it (private) */
} layout_stub;

typedef struct layout layout;

/*
 * Phase 1. targetfd is an open directory. subtrees (n of them, or n == 0 for the whole snapshot) are
 * '/'-separated paths within the snapshot; each is restored at the same relative path below the
 * target (its parent directories are created). Without force or resume, a target that is not empty
 * gives -ENOTEMPTY and nothing is created. Returns 0, or a negative code for a failure that stops the
 * whole restore; per-entry failures go to warn and are counted (layout_errors).
 */
int layout_create(rh_store *s, catalog *c, int targetfd, const char *const *subtrees, size_t n,
                  const layout_options *o, layout **ret);
size_t layout_stub_count(const layout *l);
const layout_stub *layout_stub_get(const layout *l, size_t i);
/* Counts of what phase 1 made or found, for reports. */
uint64_t layout_entries(const layout *l);
uint64_t layout_errors(const layout *l);
/* Phase 3: metadata of every entry laid out (or kept, with resume), directories last and deepest first.
 * Stubs whose rehydration failed still carry their reparse xattr and keep it (so that a later resume
 * finds them); their other metadata is set like everyone else's. */
int layout_finish(layout *l);
/* Phase 3 for stubs [from, to) only, as soon as phase 2 is done with them; layout_finish then skips
 * them. Not thread-safe: one call on a layout at a time. */
int layout_finish_stubs(layout *l, size_t from, size_t to);
void layout_free(layout *l); /* NULL is a no-op */

#endif

/*
 * layout_internal.h — what the two halves of the restore layout share: layout.c (phase 1, and the
 * records every phase reads) and finish.c (phase 3). Not for anyone else; layout.h is the interface.
 */
#ifndef RH_TREE_LAYOUT_INTERNAL_H
#define RH_TREE_LAYOUT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/util.h"
#include "tree/layout.h"

#define NO_REC UINT64_MAX

/* One entry laid out or kept; idx is CATALOG_NONE for a parent made for a subtree (not finished). */
typedef struct rec {
    uint64_t idx;
    uint64_t parent;   /* record of the directory that holds it; NO_REC: the target itself */
    uint64_t name_off; /* into l->names; the record of the snapshot root has the empty name */
    bool finished;     /* its metadata is set already (layout_finish_stubs) */
} rec;

/* A hard-link member waiting for the end of phase 1 (sorted by group, then index). */
typedef struct member {
    uint64_t group, idx, parent, name_off;
} member;

/* A restored group leader: its catalog index (the members' link_group) and its record. */
typedef struct leader {
    uint64_t group, rec;
} leader;

struct layout {
    rh_store *s;
    catalog *c;
    int tfd; /* our own dup of the target directory */
    layout_options o;
    bool may_exist; /* force || resume: entries may be in the way */
    rec *recs;
    size_t nrecs, caprecs;
    bytebuf names;
    member *members;
    size_t nmembers, capmembers;
    leader *leaders;
    size_t nleaders, capleaders;
    size_t *implicit; /* records of parents made for subtrees */
    size_t nimplicit;
    layout_stub *stubs;
    size_t nstubs, capstubs;
    uint64_t entries, errors;
    uint32_t temp_seq;
};

/* The name of record r (the empty name for the snapshot root). */
const char *layout_rec_name(const layout *l, uint64_t r);
/* Reports one entry (record dir, optional name) to the caller; counted as an error if `error`. */
void layout_report(layout *l, uint64_t dir, const char *name, int code, const char *what, bool error);
/* layout_report, counted as an error. */
void layout_warn(layout *l, uint64_t dir, const char *name, int code, const char *what);
/* The directory of record r as an fd (*owned says whether the caller closes it). */
int layout_open_rec_dir(layout *l, uint64_t r, bool *owned);
/* The S_IFMT bits of a catalog entry type. */
mode_t layout_ifmt_of(uint8_t type);

#endif

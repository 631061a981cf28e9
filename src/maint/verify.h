/*
 * verify.h — a full check of a store: every record's checksum and SHA-256, every container's footer,
 * every stream map, every catalog entry; damage is mapped back to the snapshot paths that it affects.
 * Verify only reads: it never writes to the store, not even the index.
 */
#ifndef RH_MAINT_VERIFY_H
#define RH_MAINT_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

typedef struct verify_problem {
    char *object;    /* store path: "containers/data/00000003.ctr", "snapshots/x.snap" */
    bool has_offset;
    uint64_t offset; /* of the damaged record, when known */
    int code;        /* RH_ECHECKSUM, RH_EDIGEST, RH_ECORRUPT, RH_ENOCHUNK, ... */
    char *detail;    /* what was wrong, in words */
} verify_problem;

typedef struct verify_affected {
    char *snapshot;
    char *path; /* relative to the snapshot root; any bytes but NUL */
} verify_affected;

typedef struct verify_report {
    uint64_t containers, records, chunks, packs, streams, snapshots, entries, bytes; /* packs: of chunks */
    uint64_t unfinished; /* on object storage: containers of a backup that stopped before its index went
                          * up (numbered after the index's newest), which no snapshot uses and the next
                          * backup removes; not checked */
    verify_problem *problems;
    size_t nproblems;
    verify_affected *affected;
    size_t naffected;
} verify_report;

/* Checks the local store s. Returns 0 when the check ran (the report says what it found), or a negative
 * code when it could not run. progress (may be NULL) is called now and then with the bytes checked. */
int verify_store(rh_store *s, verify_report *ret, void (*progress)(void *ud, uint64_t bytes), void *ud);
void verify_report_free(verify_report *r);

#endif

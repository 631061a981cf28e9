/*
 * winverify_internal.h — what the two halves of the Windows chunk-store check share: winverify.c walks
 * the containers record by record and keeps a small summary of every record it could trust;
 * winverify_refs.c resolves the references (Smap entries, stubs' reparse points) against those summaries
 * and maps damage to files. Memory is O(records + Smap entries + stubs), never O(container bytes).
 */
#ifndef RH_MAINT_WINVERIFY_INTERNAL_H
#define RH_MAINT_WINVERIFY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "maint/winverify.h"
#include "windows/wincontainer.h"
#include "windows/winreparse.h"

/* A record whose header could be trusted (its CRC-64 matched). */
typedef struct vrec {
    uint32_t offset, seq, payload_len;
    uint32_t raw_len; /* data: the decoded length once its digest matched, else 0 */
    uint32_t first, n; /* stream map: its entries, v->ents[first .. first + n) (n = 0 when damaged) */
    uint32_t problem; /* index + 1 of the problem that damaged it, 0 when intact */
    uint8_t type;     /* enum win_record_type */
    bool compressed, used;
    uint8_t digest[WIN_DIGEST_LEN]; /* 16 bytes for a stream map */
} vrec;

/* A stretch of a container with no usable record header: a reference into it meets that problem. */
typedef struct vspan {
    uint64_t start, end;
    uint32_t problem;
} vspan;

typedef struct vctr {
    char *name; /* "Data/xxxxxxxx.yyyyyyyy.ccc" */
    bool data, current;
    uint32_t id, gen;
    uint32_t unusable; /* problem index + 1 when the file cannot be read at all */
    uint32_t *rrtl;    /* {seq, offset} pairs */
    uint32_t *rrtl_bad; /* per entry: the problem (index + 1) of an entry that leads nowhere, or 0 */
    uint32_t nrrtl;
    vrec *recs; /* by offset */
    size_t nrecs, cap_recs;
    vspan *bad;
    size_t nbad, cap_bad;
} vctr;

/* One entry of an intact stream map. */
typedef struct vent {
    uint32_t seq, container, offset, generation, stored_len;
    uint32_t length; /* decoded length; 0 when unknown (a map's first entry when its begin is unknown) */
    uint64_t end;    /* cumulative end offset in the file */
    uint8_t digest[WIN_DIGEST_LEN];
    uint32_t smap_ctr;  /* the Stream container (index in v->ctrs) */
    uint64_t at;        /* the entry's offset in that container */
    uint32_t smap_seq;  /* the stream map's sequence number */
    uint32_t index;     /* in its map */
    uint32_t problem;   /* after resolution: index + 1 of the problem that makes it unreadable */
} vent;

/* One stream-map reference of a stub (a reparse point's part). */
typedef struct vref {
    uint32_t stub, part;
    winreparse_ref r;
} vref;

typedef struct vstub {
    char *path; /* under the volume */
    uint32_t problem; /* the reparse point itself is unusable */
} vstub;

/* A chunk's decoded length as a Smap entry gives it. */
typedef struct vlen {
    uint32_t id, seq, len;
} vlen;

typedef struct winverifier {
    int dirfd;
    winverify_report *rep;
    vctr *ctrs;
    size_t nctrs;
    vent *ents;
    size_t nents, cap_ents;
    vstub *stubs;
    size_t nstubs, cap_stubs;
    vref *refs; /* sorted by (container, seq) once the volume is walked */
    size_t nrefs, cap_refs;
    vlen *lens; /* sorted by (id, seq): wv_index_lengths */
    size_t nlens;
    void (*progress)(void *ud, uint64_t bytes);
    void *ud;
} winverifier;

/* Records a problem (what is printf-like) and returns its index + 1, for vrec.problem and the like. */
uint32_t wv_problem(winverifier *v, const char *container, bool has_offset, uint64_t offset, bool has_seq,
                    uint32_t seq, bool warning, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

/* The record of container c at exactly `offset`, or NULL. */
vrec *wv_rec_at(const vctr *c, uint64_t offset);
/* The problem of a damaged stretch of c holding `offset`, or 0. */
uint32_t wv_span_at(const vctr *c, uint64_t offset);

/* winverify_refs.c */
/* Walks the volume's stubs of this store (guid NULL: any store's) into v->stubs and v->refs. */
int wv_walk_volume(winverifier *v, const char *volume, const uint8_t *guid);
/* The file offset where the stream map (Stream container id, seq) begins, when a stub says it. */
bool wv_smap_begin(const winverifier *v, uint32_t container, uint32_t seq, uint64_t *ret_begin);
/* The decoded length of chunk seq of data container id, when stream maps give one (and agree). */
bool wv_chunk_length(const winverifier *v, uint32_t id, uint32_t seq, uint32_t *ret_len);
/* Sorts what wv_chunk_length searches; call once every stream map is read. */
void wv_index_lengths(winverifier *v);
/* Resolves every Smap entry to its data record, then every stub's references; fills files_affected. */
void wv_resolve(winverifier *v);

#endif

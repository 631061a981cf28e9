/*
 * verify_index.h — verify's check of index.db against the containers. verify's walk over every container
 * tells what the index should hold (vindex_add and friends); vindex_check then reads the index once, in
 * digest order, and reports every row that disagrees and every record that no row names. The index is
 * only read: a missing index is no problem (readers build it), a damaged one is reported with the advice
 * that 'rehydrate reindex' rebuilds it.
 */
#ifndef RH_MAINT_VERIFY_INDEX_H
#define RH_MAINT_VERIFY_INDEX_H

#include "maint/verify.h"
#include "store/container.h"

typedef struct vindex vindex;

vindex *vindex_new(void);
void vindex_free(vindex *vi); /* NULL is a no-op */
/* A chunk (kind CONTAINER_DATA) or stream map (CONTAINER_STREAM) record, or a pack member, that the
 * walk found where loc says: the index should have a row of `digest` there. */
void vindex_add(vindex *vi, uint8_t kind, const uint8_t digest[HASH_LEN], const index_loc *loc);
/* A pack record at offset of data container id; vindex_pack_known once its members were added. Rows
 * that point into a pack whose members are unknown (its record is damaged) are not judged. */
void vindex_pack(vindex *vi, uint32_t id, uint64_t offset);
void vindex_pack_known(vindex *vi, uint32_t id, uint64_t offset);
/* The records of container c as its footer (or a scan) lists them: chunks and stream maps, and packs
 * whose members follow with vindex_add_members once the pack's record was read and checked. */
void vindex_add_records(vindex *vi, const index_container *c, const container_record *rec, size_t n);
void vindex_add_members(vindex *vi, uint32_t id, const container_record *pack, const uint8_t *payload);
/* A container whose records cannot be listed (bad header or footer): rows into it are not judged.
 * verify marks each container unknown first, and known once its records are listed. */
void vindex_unknown_container(vindex *vi, uint8_t kind, uint32_t id);
void vindex_known_container(vindex *vi, uint8_t kind, uint32_t id);
/* Opens the index of s (store_index_path; behind callbacks the store's index.db) before the walk, and
 * sets limit to what store_unfinished_after says of it: the walk does not read the containers after it. */
void vindex_open(vindex *vi, rh_store *s, uint32_t limit[2]);
/* Reads the index vindex_open opened and appends its problems (or why it could not be opened) to rep. */
void vindex_check(vindex *vi, rh_store *s, verify_report *rep);

#endif

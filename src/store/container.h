/*
 * container.h — containers: append-only files of records, one chunk or one stream map each.
 *
 * Layout (doc/format.md, "Containers"): a 64-byte header, records (56-byte record header + payload), and,
 * once sealed, a footer that lists every record. A container is written as "%08x.ctr.tmp.*" and becomes
 * "%08x.ctr" only when it is sealed (footer written, header's footer_offset set, fsync, rename, fsync of
 * the directory); a committed container is never modified again. A reader finds the records of a sealed
 * container through its footer, and those of an unsealed one (a temp file left by a crash, whose tail may
 * be torn) by scanning records from offset 64 and stopping at the first that is incomplete or fails its
 * checksum.
 *
 * Writing is local (a directory fd); reading goes through the store callback table. Reading is on the
 * public API's paths and fails with -ENOMEM when memory is exhausted; writing (backup only) aborts
 * (util.h).
 */
#ifndef RH_STORE_CONTAINER_H
#define RH_STORE_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rehydrate/rehydrate.h>

#include "hash/hash.h"

enum container_kind { CONTAINER_DATA = 1, CONTAINER_STREAM = 2 };
/* A pack (store format 2) holds several chunks of a data container compressed together: see
 * doc/format.md, "Pack records". */
enum record_type { RECORD_CHUNK = 1, RECORD_STREAM = 2, RECORD_PACK = 3 };

#define CONTAINER_HEADER_SIZE 64
#define RECORD_HEADER_SIZE 56
#define CONTAINER_SEAL_DEFAULT (64ull << 20)
/* No record payload, compressed or raw, exceeds this (readers reject larger ones as corrupt). */
#define RECORD_LEN_MAX (256u << 20)
/* A pack's payload starts with one entry per member: its digest and its raw length (u32). */
#define PACK_ENTRY_SIZE (HASH_LEN + 4)
#define PACK_MEMBERS_MAX 1024
/* Longest store path of a container, e.g. "containers/stream/0000002a.ctr". */
#define CONTAINER_PATH_MAX 48

typedef struct container_header {
    uint32_t version;
    uint8_t kind; /* enum container_kind */
    uint32_t id;
    uint8_t uuid[16];
    uint64_t footer_offset; /* 0 while unsealed */
    uint64_t created_ns;
} container_header;

/* One record as a reader sees it. */
typedef struct container_record {
    uint64_t offset; /* of the record header within the container */
    uint8_t type;    /* enum record_type */
    uint8_t codec;   /* CODEC_RAW / CODEC_ZSTD */
    uint16_t members; /* RECORD_PACK: how many chunks it holds; 0 for the other types */
    uint32_t stored_len, raw_len;
    uint8_t digest[HASH_LEN]; /* all zero for a pack */
    uint32_t seq;             /* formats that number their records (format.h); 0 in ours */
} container_record;

/* One member of a pack, as pack_member finds it in a checked record. */
typedef struct pack_entry {
    const uint8_t *digest; /* points into the record's payload */
    uint32_t raw_len;
    uint32_t offset; /* where its bytes start in the pack's decoded data */
} pack_entry;

/* "containers/data/%08x.ctr" or "containers/stream/%08x.ctr" into out; the directory part is
 * container_dir(kind): "containers/data" or "containers/stream". */
const char *container_path(uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX]);
const char *container_dir(uint8_t kind);

/* ---- writing ---- */

typedef struct container_writer container_writer;

/* Creates the temp file of container `id` of `kind` below dirfd (the kind's directory). The writer
 * keeps its own duplicate of dirfd; the caller may close dirfd at once. */
int container_writer_open(int dirfd, uint8_t kind, uint32_t id, const uint8_t uuid[16],
                          container_writer **ret);
/* Appends one record; *ret_offset (may be NULL) gets the offset of its header. Buffered. */
int container_writer_append(container_writer *w, uint8_t type, uint8_t codec,
                            const uint8_t digest[HASH_LEN], const void *payload, uint32_t stored_len,
                            uint32_t raw_len, uint64_t *ret_offset);
/*
 * Appends a pack of `members` chunks (2 .. PACK_MEMBERS_MAX; a lone chunk is a RECORD_CHUNK): `table`
 * is members × PACK_ENTRY_SIZE bytes (digest, raw_len), `data` the members' bytes as stored (codec)
 * and raw_len their total length decoded.
 */
int container_writer_append_pack(container_writer *w, uint8_t codec, uint16_t members, const uint8_t *table,
                                 const void *data, uint32_t data_len, uint32_t raw_len, uint64_t *ret_offset);
uint64_t container_writer_size(const container_writer *w); /* bytes written so far, header included */
uint32_t container_writer_id(const container_writer *w);
size_t container_writer_records(const container_writer *w);
/* Writes the footer, sets footer_offset in the header, fsyncs and renames to "%08x.ctr" (never
 * replacing), fsyncs the directory, and frees w (also on failure, after removing the temp file). */
int container_writer_seal(container_writer *w);
/* Removes the temp file and frees w. NULL is a no-op. */
void container_writer_abort(container_writer *w);

/* ---- reading (through the store callbacks) ---- */

/* Reads and checks the header (magic, version, checksum): RH_ECORRUPT if bad, or the read's error. */
int container_read_header(const rh_store_ops *ops, void *ctx, const char *path, container_header *ret);
/* The records of a sealed container, from its footer (one malloc'd array). RH_ECORRUPT if the footer is
 * missing or bad. */
int container_read_footer(const rh_store_ops *ops, void *ctx, const char *path,
                          const container_header *h, container_record **ret, size_t *ret_n);
/*
 * The records of any container by scanning from offset 64: it reads every record, checks its checksum,
 * and stops at the first that is incomplete, malformed or fails its checksum (a torn tail), or at the
 * footer. *ret_end gets the offset where valid records end; *ret_bad (may be NULL) is set to the code
 * of the record that stopped the scan (0 when it stopped at the footer or cleanly at the end).
 */
int container_scan(const rh_store_ops *ops, void *ctx, const char *path, container_record **ret,
                   size_t *ret_n, uint64_t *ret_end, int *ret_bad);
/*
 * The same scan without reading the header, for a container whose header is damaged: the header has a
 * fixed size, so the records still start at offset 64. Having no footer_offset, the scan stops at a
 * footer magic (a sealed container's footer) as it does in a temp file, or where the records end.
 */
int container_scan_headerless(const rh_store_ops *ops, void *ctx, const char *path, container_record **ret,
                              size_t *ret_n, uint64_t *ret_end, int *ret_bad);
/*
 * Checks the record whose header starts at rec[0] (avail bytes available from there, header + payload):
 * magic, lengths, checksum. On success fills *ret (offset set to `offset`) and *ret_payload.
 * RH_ECHECKSUM for a checksum mismatch, RH_ECORRUPT for a malformed header or when avail is too short.
 */
int container_parse_record(const uint8_t *rec, size_t avail, uint64_t offset, container_record *ret,
                           const uint8_t **ret_payload);
/*
 * Reads the record at `offset` of container `path` whose payload is `stored_len` bytes into buf (at least
 * RECORD_HEADER_SIZE + stored_len bytes), checks it, and points *ret_payload into buf.
 */
int container_read_record(const rh_store_ops *ops, void *ctx, const char *path, uint64_t offset,
                          uint32_t stored_len, uint8_t *buf, container_record *ret,
                          const uint8_t **ret_payload);

/* ---- packs ---- */

/* Member k of the pack record rec whose checked payload is `payload`; RH_ECORRUPT if k >= members. */
int pack_member(const container_record *rec, const uint8_t *payload, unsigned k, pack_entry *ret);
/* The stored (compressed or raw) data of a pack: what follows its member table. */
const uint8_t *pack_data(const container_record *rec, const uint8_t *payload, uint32_t *ret_len);
/* A checked pack's data decoded: *ret_data is the stored data itself when the pack is raw (scratch may
 * then be NULL), else scratch (rec->raw_len bytes), decoded into. */
int pack_decode(const container_record *rec, const uint8_t *payload, uint8_t *scratch,
                const uint8_t **ret_data);
/*
 * Reads the member table of pack `rec` (a footer entry or a scanned record) without its data: one read
 * of RECORD_HEADER_SIZE + members × PACK_ENTRY_SIZE bytes, whose header must repeat rec's fields. The
 * table cannot be checked against the record checksum without the data; a chunk read through it is
 * (reader_fetch_chunk checks the whole record and the member's digest). *ret is malloc'd.
 */
int container_read_pack_table(const rh_store_ops *ops, void *ctx, const char *path,
                              const container_record *rec, uint8_t **ret);

#endif

/*
 * catalog_format.h — the on-disk layout of a snapshot catalog (snapshots/NAME.snap), format v1, shared by
 * the writer and the reader so that the two cannot drift apart. doc/format.md ("Snapshot catalog") is the
 * prose version of this file; the offsets below are the reference.
 *
 *     [header: 128 bytes][entry table: entry_count * 208 bytes][heap: names, extras, then the meta blob]
 *
 * All integers are little-endian. The file ends exactly where the heap ends (heap_offset + heap_length),
 * and the meta blob is the last thing in the heap, so reading the meta blob at open also proves that the
 * file was not truncated.
 */
#ifndef RH_SNAPSHOT_CATALOG_FORMAT_H
#define RH_SNAPSHOT_CATALOG_FORMAT_H

#include <stdint.h>

#define CATALOG_MAGIC "RHYDSNAP" /* 8 bytes, no NUL on disk */
#define CATALOG_MAGIC_LEN 8
#define CATALOG_VERSION 1

/* ---- Header (128 bytes at offset 0) ---- */
/*
 * A packed catalog (stores of format 2) holds the same bytes, the "logical" catalog, cut into blocks of
 * CATALOG_PACK_BLOCK bytes that are compressed one by one, behind a header of its own and before an
 * index of the blocks' stored lengths (doc/format.md, "Packed catalogs").
 */
#define CATALOG_PACK_MAGIC "RHYDSNPK"
#define CATALOG_PACK_VERSION 1
#define CATALOG_PACK_HEADER_SIZE 64
#define CPH_MAGIC 0          /* u8[8] "RHYDSNPK" */
#define CPH_VERSION 8        /* u32 CATALOG_PACK_VERSION */
#define CPH_BLOCK_SIZE 12    /* u32 = CATALOG_PACK_BLOCK */
#define CPH_LOGICAL_SIZE 16  /* u64 bytes of the logical catalog */
#define CPH_INDEX_OFFSET 24  /* u64 file offset of the block index */
#define CPH_INDEX_CHECKSUM 32 /* u64 hash_checksum(index, block_count * 16, NULL, 0) */
#define CPH_RESERVED 40      /* u8[16] zero */
#define CPH_CHECKSUM 56      /* u64 hash_checksum(header[0..56), 56, NULL, 0) */
#define CATALOG_PACK_HEADER_SUMMED 56
#define CATALOG_PACK_BLOCK (32u << 10)
#define CATALOG_PACK_ENTRY_SIZE 16 /* u32 stored_len, u8 codec, u8[3] zero, u64 checksum */
#define CATALOG_PACK_LOGICAL_MAX (1ull << 38) /* 256 GiB: an index of at most 128 MiB */

#define CATALOG_HEADER_SIZE 128
#define CH_MAGIC 0         /* u8[8] "RHYDSNAP" */
#define CH_VERSION 8       /* u32 CATALOG_VERSION */
#define CH_FLAGS 12        /* u32 enum catalog_flags */
#define CH_ENTRY_COUNT 16  /* u64, >= 1 (the root) */
#define CH_TABLE_OFFSET 24 /* u64, = CATALOG_HEADER_SIZE */
#define CH_HEAP_OFFSET 32  /* u64, = table_offset + entry_count * CATALOG_ENTRY_SIZE */
#define CH_HEAP_LENGTH 40  /* u64; the file is heap_offset + heap_length bytes long */
#define CH_CREATED_NS 48   /* u64 ns since the epoch */
#define CH_FILES 56        /* u64 regular files */
#define CH_BYTES 64        /* u64 their total st_size */
#define CH_META_OFFSET 72  /* u64 file offset of the meta blob (inside the heap, at its end) */
#define CH_META_LENGTH 80  /* u32 */
#define CH_ENTRY_SIZE 84   /* u32, = CATALOG_ENTRY_SIZE (lets a reader reject a foreign layout early) */
#define CH_META_CHECKSUM 88 /* u64 hash_checksum(meta blob, meta_length, NULL, 0) */
#define CH_RESERVED 96     /* u8[24] zero */
#define CH_CHECKSUM 120    /* u64 hash_checksum(header[0..120), 120, NULL, 0) */
#define CATALOG_HEADER_SUMMED 120

/* ---- Entry (208 bytes at table_offset + index * 208) ---- */
#define CATALOG_ENTRY_SIZE 208
#define CE_TYPE 0            /* u8 enum catalog_type */
#define CE_FLAGS 1           /* u8 enum catalog_entry_flags */
#define CE_RESERVED0 2       /* u16 zero */
#define CE_MODE 4            /* u32 st_mode (type bits included, as lstat reports it) */
#define CE_UID 8             /* u32 */
#define CE_GID 12            /* u32 */
#define CE_NLINK 16          /* u32 size of the hard-link group, 1 if none */
#define CE_NAME_LEN 20       /* u32, 0 for the root, 1..255 otherwise */
#define CE_SIZE 24           /* u64 */
#define CE_ALLOC 32          /* u64 */
#define CE_ATIME 40          /* i64 ns */
#define CE_MTIME 48          /* i64 ns */
#define CE_CTIME 56          /* i64 ns */
#define CE_RDEV 64           /* u64 */
#define CE_INO 72            /* u64 */
#define CE_DEV 80            /* u64 */
#define CE_PARENT 88         /* u64 entry index; CATALOG_NONE for the root */
#define CE_FIRST_CHILD 96    /* u64 entry index; CATALOG_NONE when child_count is 0 */
#define CE_CHILD_COUNT 104   /* u64 */
#define CE_LINK_GROUP 112    /* u64 entry index of the group's first entry; CATALOG_NONE if none */
#define CE_NAME_OFFSET 120   /* u64 file offset of the name bytes (in the heap) */
#define CE_EXTRA_OFFSET 128  /* u64 file offset of the extra blob, = name_offset + name_len */
#define CE_EXTRA_LENGTH 136  /* u32, >= CATALOG_EXTRA_MIN */
#define CE_S_CONTAINER 140   /* u32 stream-map container number */
#define CE_S_OFFSET 144      /* u64 record offset in that container */
#define CE_S_STORED_LEN 152  /* u32 */
#define CE_S_RAW_LEN 156     /* u32 */
#define CE_S_DIGEST 160      /* u8[32] SHA-256 of the stream map */
#define CE_S_CODEC 192       /* u8 */
#define CE_HAS_STREAM 193    /* u8 0 or 1; when 0 every CE_S_* field is zero */
#define CE_RESERVED1 194     /* u8[6] zero */
#define CE_CHECKSUM 200      /* u64 hash_checksum(entry[0..200), 200, heap name+extra bytes) */
#define CATALOG_ENTRY_SUMMED 200

/* ---- Limits: the writer refuses to write beyond them, the reader treats them as corruption ---- */
#define CATALOG_NAME_MAX 255          /* NAME_MAX */
#define CATALOG_TARGET_MAX 4096       /* PATH_MAX: a symlink target */
#define CATALOG_XATTR_NAME_MAX 255    /* XATTR_NAME_MAX */
#define CATALOG_EXTRA_MIN 8           /* u32 target_len + u32 xattr_count */
#define CATALOG_EXTRA_MAX (16u << 20) /* bounds one allocation when reading a damaged entry */
#define CATALOG_META_STR_MAX 4096     /* source path, hostname */
#define CATALOG_META_MAX (8 + 2 * CATALOG_META_STR_MAX)
/* Bounds entry_count so that table sizes cannot overflow (2^40 entries is far beyond any real tree). */
#define CATALOG_ENTRIES_MAX (UINT64_C(1) << 40)

_Static_assert(CE_CHECKSUM + 8 == CATALOG_ENTRY_SIZE, "entry layout");
_Static_assert(CE_RESERVED1 + 6 == CE_CHECKSUM, "entry layout");
_Static_assert(CE_S_DIGEST + 32 == CE_S_CODEC, "entry layout");
_Static_assert(CH_CHECKSUM + 8 == CATALOG_HEADER_SIZE, "header layout");
_Static_assert(CH_RESERVED + 24 == CH_CHECKSUM, "header layout");

#endif

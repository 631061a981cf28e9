/*
 * catalog.h — snapshot catalogs (snapshots/NAME.snap): the immutable namespace of one backup. An entry
 * of a regular file carries the reference to its stream map: it is our reparse point.
 *
 * The format (doc/format.md, "Snapshot catalog") is a fixed-size entry table plus a heap of names and
 * extras. Entry 0 is the root directory; the children of every directory are contiguous and sorted by
 * name (bytewise), so looking up one path is a binary search per component and listing one directory is
 * one contiguous read: neither reads the whole catalog. Readers read through the store callback table
 * (rh_store_ops), so a catalog need not be on a local disk.
 */
#ifndef RH_SNAPSHOT_CATALOG_H
#define RH_SNAPSHOT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rehydrate/rehydrate.h>

#include "hash/hash.h"

#define CATALOG_NONE UINT64_MAX

enum catalog_type {
    CT_REG = 1,
    CT_DIR = 2,
    CT_SYMLINK = 3,
    CT_CHR = 4,
    CT_BLK = 5,
    CT_FIFO = 6,
    CT_SOCK = 7,
};

enum catalog_entry_flags {
    CF_HARDLINK = 1,   /* a regular file whose data is that of entry link_group (the group's first) */
    CF_UNREADABLE = 2, /* the file could not be read at backup time; it has no stream */
};

enum catalog_flags {
    CATALOG_PARTIAL = 1, /* some files could not be read; see CF_UNREADABLE entries */
};

typedef struct catalog_xattr {
    uint8_t *name; /* not NUL-terminated inside the catalog; the in-memory copy is NUL-terminated */
    uint16_t name_len;
    uint8_t *value;
    uint32_t value_len;
} catalog_xattr;

/* The reference to a regular file's stream map: its identity and where it is stored. */
typedef struct catalog_stream {
    uint8_t digest[HASH_LEN]; /* SHA-256 of the stream map's raw bytes */
    uint32_t container;       /* containers/stream/%08x.ctr */
    uint64_t offset;          /* record header offset in that container */
    uint32_t stored_len, raw_len;
    uint8_t codec;
} catalog_stream;

/*
 * One entry, in memory. Everything it points to is owned by the entry (catalog_entry_free). Indices
 * (parent, first_child, link_group) are entry indices in the written catalog.
 */
typedef struct catalog_entry {
    uint64_t idx;  /* this entry's index (set by catalog_get and catalog_readdir) */
    /* 0, or why the entry could not be read (catalog_readdir only, see there): RH_ECORRUPT (damaged)
     * or RH_EUNSAFE (a name that is empty, ".", "..", or holds '/' or NUL). */
    int damage;
    uint8_t type;  /* enum catalog_type; 0 when damage is set */
    uint8_t flags; /* enum catalog_entry_flags */
    uint32_t mode, uid, gid;
    uint32_t nlink; /* number of entries of this snapshot that share the inode (1 if none) */
    uint64_t size;  /* st_size; for symlinks the target length */
    uint64_t alloc; /* bytes that are data, not holes (regular files); st_blocks = ceil(alloc/512) */
    int64_t atime_ns, mtime_ns, ctime_ns;
    uint64_t rdev, ino, dev; /* ino/dev of the source, for incremental backups */
    uint64_t parent, first_child, child_count, link_group;
    uint8_t *name; /* NUL-terminated copy; the root's name is empty */
    uint32_t name_len;
    uint8_t *target; /* symlink target, NUL-terminated, or NULL */
    uint32_t target_len;
    catalog_xattr *xattrs;
    uint32_t xattr_count;
    bool has_stream;
    catalog_stream stream;
} catalog_entry;

void catalog_entry_free(catalog_entry *e); /* frees e and what it owns; NULL is a no-op */
/* Frees only what the entry owns (for entries that live in arrays). */
void catalog_entry_clear(catalog_entry *e);

/* What a snapshot records about itself. Strings are NUL-terminated and owned by the catalog. When the
 * meta blob is damaged, source and hostname are empty (catalog_damage_get says so). */
typedef struct catalog_meta {
    uint32_t flags; /* enum catalog_flags */
    uint64_t entry_count;
    uint64_t created_ns;
    const char *source;   /* absolute path that was backed up */
    const char *hostname;
    uint64_t files, bytes; /* regular files and their total st_size */
} catalog_meta;

/* ---- Writing ---- */

typedef struct catalog_writer catalog_writer;

catalog_writer *catalog_writer_new(void);
void catalog_writer_free(catalog_writer *w); /* NULL is a no-op */
/*
 * Adds an entry below `parent` (a handle returned earlier, or CATALOG_NONE for the root, which must be
 * added first and only once) and returns its handle. The writer copies name, target and xattrs; the
 * entry's parent/first_child/child_count/link_group fields are ignored (the writer computes them).
 */
uint64_t catalog_writer_add(catalog_writer *w, uint64_t parent, const catalog_entry *e);
/* Sets the stream of a regular file added earlier (backup fills streams as files finish). */
void catalog_writer_set_stream(catalog_writer *w, uint64_t handle, const catalog_stream *s,
                               uint64_t alloc);
/* Marks `handle` as a hard link to `leader` (an earlier regular file): CF_HARDLINK, shared data. */
void catalog_writer_set_link(catalog_writer *w, uint64_t handle, uint64_t leader);
void catalog_writer_set_flags(catalog_writer *w, uint64_t handle, uint8_t flags);
size_t catalog_writer_count(const catalog_writer *w);
/*
 * Orders the entries (children of each directory contiguous and sorted by name, directories
 * breadth-first), computes nlink of hard-link groups, and writes snapshots/<name>.snap below
 * `snapdirfd` atomically: O_EXCL temp file, fsync, rename without replacing, fsync of the directory.
 * RH_EEXIST when a snapshot of that name exists; nothing is left behind on failure.
 */
int catalog_writer_commit(catalog_writer *w, int snapdirfd, const char *name, const catalog_meta *meta);
/* Makes commit write the packed form, its blocks compressed at zstd `level` (stores of format 2). */
void catalog_writer_pack(catalog_writer *w, int level);

/* ---- Reading ---- */

typedef struct catalog catalog;

/*
 * Opens the catalog at store path `path` (e.g. "snapshots/monday.snap"), read through ops/ctx, in either
 * form (plain or packed). Reads and checks the header only (of a packed one, also its block index).
 * RH_ENOSNAPSHOT if it does not exist, RH_ECORRUPT if it is malformed beyond what the reader can get by
 * with (doc/format.md, "Damaged catalogs"): a header with one damaged byte is repaired, a damaged meta
 * blob leaves source and hostname empty, a damaged block of a packed catalog costs only the entries that
 * it holds; each is recorded (catalog_damage_get). A catalog handle may be used from several threads; it
 * serializes its own reads.
 */
int catalog_open(const rh_store_ops *ops, void *ctx, const char *path, catalog **ret);
/* catalog_open that, when it fails on damage, says in `why` which part stopped it ("" otherwise). */
#define CATALOG_WHY_MAX 112
int catalog_open_why(const rh_store_ops *ops, void *ctx, const char *path, catalog **ret,
                     char why[CATALOG_WHY_MAX]);
void catalog_close(catalog *c); /* NULL is a no-op */
const catalog_meta *catalog_get_meta(const catalog *c);
/*
 * Entry `idx` (0 is the root) as a new allocation; RH_ECORRUPT (checksum), RH_EUNSAFE (a name that
 * restore must refuse) or -ENOENT (out of range). A damaged root is the one exception: entry 0 then
 * comes back as a stand-in directory (mode 0700, owner 0, times 0) with damage = RH_ECORRUPT, whose
 * children are found from the entry table, so that the rest of the snapshot stays reachable.
 */
int catalog_get(catalog *c, uint64_t idx, catalog_entry **ret);
/* The child of directory `dir` named name[0..len): 0 and *ret_idx, -ENOENT, or -ENOTDIR. */
int catalog_lookup(catalog *c, uint64_t dir, const uint8_t *name, size_t len, uint64_t *ret_idx);
/* A '/'-separated path relative to the root ("" and "/" are the root; empty components are skipped). */
int catalog_lookup_path(catalog *c, const char *path, uint64_t *ret_idx);
/*
 * Up to `max` children of directory `dir`, starting at child number `start`, in name order, as an array
 * of entries (free each with catalog_entry_clear, then the array with free). Fewer than max (or than
 * 65536, whichever is less) come back only at the end; *ret_n may be 0 there. Most callers want
 * catalog_walk_dir, below, which pages through this.
 * Child k is entry first_child + k (its idx). A child that cannot be read does not fail the listing: it
 * comes back with `damage` set, idx, and nothing else but, for RH_EUNSAFE, its raw name (name_len bytes,
 * NUL-terminated, possibly with '/' inside); callers skip it (and report it). Only a failure to read
 * (an I/O error), or a directory entry that is itself damaged, fails the call.
 */
int catalog_readdir(catalog *c, uint64_t dir, uint64_t start, size_t max, catalog_entry **ret_entries,
                    size_t *ret_n);

/*
 * Walks the children of directory `dir` in name order from child number `start` (catalog_walk.c), reading
 * them a page at a time through catalog_readdir. ops->child gets each child that could be read, with its
 * child number k (its entry index is e->idx, first_child + k); ops->damaged (NULL: skipped silently)
 * gets each child that could not be, with e->damage set as catalog_readdir describes, and the walk goes
 * on past it: a damaged child never reaches ops->child and never stops the walk by itself. The entry is
 * valid during the call only. A callback returns 0 to go on; anything else stops the walk and is
 * returned (a positive value to stop on purpose, a negative code to fail). Returns 0 after the last
 * child, or a negative code from catalog_readdir (the children before it were visited). The callbacks run
 * on the calling thread and may walk other directories (recursion).
 */
typedef struct catalog_walk_ops {
    int (*child)(void *ctx, uint64_t k, const catalog_entry *e);
    int (*damaged)(void *ctx, uint64_t k, const catalog_entry *e);
} catalog_walk_ops;
int catalog_walk_dir(catalog *c, uint64_t dir, uint64_t start, const catalog_walk_ops *ops, void *ctx);

/* ---- Damage ---- */

/* One damaged part of a catalog, as the reader found it. */
typedef struct catalog_damage {
    int code;           /* RH_ECORRUPT (or RH_ECHECKSUM for a packed block that still decoded) */
    uint64_t offset;    /* where: a file offset, or for a packed block the logical offset it holds */
    uint64_t length;    /* bytes of that part */
    char what[CATALOG_WHY_MAX]; /* e.g. "header: byte 40 repaired", "block 2 (logical bytes 65536..70719): ..." */
} catalog_damage;

/* A copy of the damage found so far (at open and by the reads since); free *ret with free(). 0, or
 * -ENOMEM (outputs untouched). */
int catalog_damage_get(catalog *c, catalog_damage **ret, size_t *ret_n);
/* Reads every block of a packed catalog once (plain catalogs: nothing), so that catalog_damage_get lists
 * every damaged block; for verify. Returns 0 or a read error that is not damage. */
int catalog_scan_blocks(catalog *c);

#endif

/*
 * index.c — the SQLite chunk index (index.db): digest → location of every chunk and stream map, plus the
 * list of containers the rows were built from (doc/format.md, "The index").
 *
 * The index is derived data, so it is tuned for speed rather than durability: WAL with
 * synchronous=NORMAL (a crash may lose the last transactions but never corrupts the file, and the
 * staleness check notices lost rows because the container list is written in the same transaction as
 * the rows it describes). Tables are WITHOUT ROWID and keyed by the 32-byte digest, so a lookup is one
 * B-tree descent and a row is stored once. Every statement is prepared once at open and kept for the
 * life of the handle; the hot paths (find, add) are bind, step, reset.
 *
 * Anything that is not an index of this store — another schema, another version, another store's uuid,
 * a file that is not a database at all, a corrupt one — is reported by index_open as RH_ESTALEINDEX, which
 * tells the caller to delete and rebuild it. A handle is used by one thread at a time (SQLITE_OPEN_NOMUTEX);
 * threads that need lookups at the same time open one handle each, and WAL lets them read while one
 * writer writes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rehydrate/rehydrate.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "index/index.h"
#include "index/vfs.h"

#define INDEX_SCHEMA_VERSION 2
/* PRAGMA application_id: "RHIX", so that file(1) and a quick check can tell the database is ours. */
#define INDEX_APPLICATION_ID 0x52484958
#define INDEX_BUSY_TIMEOUT_MS 5000
/*
 * Memory per handle, measured with 1M random digests (doc/format.md, "The index"). Reads go through a
 * memory map of the file, which every handle shares with the OS page cache, so a lookup handle needs
 * little page cache of its own. A writer's transaction dirties random leaves all over the tree; when they
 * outgrow the cache SQLite spills them to the WAL mid-transaction, so a writer gets a larger cache.
 * SQLite reads a negative cache_size as KiB.
 */
#ifndef INDEX_READER_CACHE_KIB
#define INDEX_READER_CACHE_KIB (8 << 10)
#endif
#ifndef INDEX_POOLED_CACHE_KIB /* INDEX_POOLED: reads go through pread, the OS page cache holds the file */
#define INDEX_POOLED_CACHE_KIB (1 << 10)
#endif
#ifndef INDEX_WRITER_CACHE_KIB
#define INDEX_WRITER_CACHE_KIB (64 << 10)
#endif
#ifndef INDEX_MMAP_BYTES
#define INDEX_MMAP_BYTES (256ll << 20)
#endif

/* Every statement, prepared once at open. The X-macro keeps ids and SQL side by side. */
#define INDEX_STMTS(X)                                                                              \
    X(FIND_CHUNK, "SELECT container, offset, stored_len, raw_len, codec, member FROM chunks "      \
                  "WHERE digest = ?1")                                                              \
    X(FIND_STREAM, "SELECT container, offset, stored_len, raw_len, codec, member FROM streams "    \
                   "WHERE digest = ?1")                                                             \
    X(ADD_CHUNK, "INSERT OR IGNORE INTO chunks(digest, container, offset, stored_len, raw_len, codec, " \
                 "member) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                                     \
    X(ADD_STREAM, "INSERT OR IGNORE INTO streams(digest, container, offset, stored_len, raw_len, codec, " \
                  "member) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                                    \
    X(ADD_CONTAINER, "INSERT OR IGNORE INTO containers(id, kind, size) VALUES (?1, ?2, ?3)")        \
    X(LIST_CONTAINERS, "SELECT kind, id, size FROM containers ORDER BY kind, id")                   \
    X(NEWEST_CONTAINER, "SELECT id, size FROM containers WHERE kind = ?1 ORDER BY id DESC LIMIT 1")   \
    X(CLEAR_CHUNKS, "DELETE FROM chunks")                                                           \
    X(CLEAR_STREAMS, "DELETE FROM streams")                                                         \
    X(CLEAR_CONTAINERS, "DELETE FROM containers")                                                   \
    X(COUNT_CHUNKS, "SELECT count(*) FROM chunks")                                                  \
    X(COUNT_STREAMS, "SELECT count(*) FROM streams")                                                \
    X(COUNT_CONTAINERS, "SELECT count(*) FROM containers")                                          \
    X(BEGIN_READ, "BEGIN DEFERRED")                                                                 \
    X(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                               \
    X(COMMIT, "COMMIT")                                                                             \
    X(ROLLBACK, "ROLLBACK")

enum {
#define STMT_ENUM(name, sql) STMT_##name,
    INDEX_STMTS(STMT_ENUM)
#undef STMT_ENUM
    STMT_COUNT
};

static const char *const stmt_sql[STMT_COUNT] = {
#define STMT_SQL(name, sql) [STMT_##name] = sql,
    INDEX_STMTS(STMT_SQL)
#undef STMT_SQL
};

/* The schema, created in one transaction by index_open with INDEX_CREATE. */
static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE chunks(digest BLOB PRIMARY KEY, container INTEGER NOT NULL, offset INTEGER NOT NULL,"
    " stored_len INTEGER NOT NULL, raw_len INTEGER NOT NULL, codec INTEGER NOT NULL,"
    " member INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE streams(digest BLOB PRIMARY KEY, container INTEGER NOT NULL, offset INTEGER NOT NULL,"
    " stored_len INTEGER NOT NULL, raw_len INTEGER NOT NULL, codec INTEGER NOT NULL,"
    " member INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE containers(id INTEGER NOT NULL, kind INTEGER NOT NULL, size INTEGER NOT NULL,"
    " PRIMARY KEY(kind, id)) WITHOUT ROWID;";

struct index {
    sqlite3 *db;
    bool readonly;
    sqlite3_stmt *stmt[STMT_COUNT];
    index_vfs_source *vsrc; /* read through a store's callbacks (index_open_ops), or NULL */
};

/* Maps an SQLite result code to our codes. Codes that mean "this file is not a usable index" are
 * RH_ESTALEINDEX while opening (the caller rebuilds) and RH_ECORRUPT afterwards. */
static int map_rc(sqlite3 *db, int rc, bool opening)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_TOOBIG: /* a value past INDEX_VALUE_MAX: none of ours is */
        return opening ? RH_ESTALEINDEX : RH_ECORRUPT;
    case SQLITE_CANTOPEN: {
        int e = db ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : -EIO;
    }
    default:
        return -EIO;
    }
}

/* Runs one kept statement that returns no rows, then resets it. */
static int run(index_t *ix, int id)
{
    sqlite3_stmt *st = ix->stmt[id];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : map_rc(ix->db, rc, false);
}

/* Runs a kept single-value query (count(*)) into *ret. */
static int run_count(index_t *ix, int id, uint64_t *ret)
{
    sqlite3_stmt *st = ix->stmt[id];
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        if (v < 0)
            r = RH_ECORRUPT;
        else
            *ret = (uint64_t)v;
    } else {
        r = map_rc(ix->db, rc, false);
        if (r == 0)
            r = -EIO; /* count(*) always returns a row */
    }
    sqlite3_reset(st);
    return r;
}

/* ---- opening ---- */

/* SQLite takes a file shorter than its header for an empty database, and INDEX_CREATE would then write
 * a fresh index over whatever it held. An existing, non-empty file must therefore start with SQLite's
 * magic; anything else is RH_ESTALEINDEX. A missing or unreadable file is left to sqlite3_open_v2 to
 * report. */
static int check_magic(const char *path)
{
    static const char magic[16] = "SQLite format 3";
    _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
        return 0;
    uint8_t head[sizeof(magic)];
    if (fs_pread_full(fd, head, sizeof(head), 0) < 0 || memcmp(head, magic, sizeof(magic)) != 0)
        return RH_ESTALEINDEX;
    return 0;
}

/* Reads one pragma that returns an integer. */
static int pragma_int(sqlite3 *db, const char *sql, sqlite3_int64 *ret)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* How many of our four tables exist, and how many tables of any name. */
static int count_tables(sqlite3 *db, int *ret_ours, int *ret_all)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT count(*), coalesce(sum(name IN ('meta', 'chunks', 'streams',"
                                " 'containers')), 0) FROM sqlite_master WHERE type = 'table'",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret_all = sqlite3_column_int(st, 0);
            *ret_ours = sqlite3_column_int(st, 1);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Creates the schema and the meta rows in an empty database (inside the caller's transaction). */
static int create_schema(sqlite3 *db, const uint8_t uuid[16])
{
    sqlite3_stmt *st = NULL;
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA application_id = %d", INDEX_APPLICATION_ID);
    int rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, pragma, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES ('version', ?1), ('uuid', ?2)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, INDEX_SCHEMA_VERSION);
        sqlite3_bind_blob(st, 2, uuid, 16, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Checks application_id and the meta rows: 0 when the database is an index of version
 * INDEX_SCHEMA_VERSION for the store `uuid`, RH_ESTALEINDEX when it is not, another code on failure. */
static int check_meta(sqlite3 *db, const uint8_t uuid[16])
{
    sqlite3_int64 app = 0;
    int rc = pragma_int(db, "PRAGMA application_id", &app);
    if (rc != SQLITE_OK)
        return map_rc(db, rc, true);
    if (app != INDEX_APPLICATION_ID)
        return RH_ESTALEINDEX;

    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT key, value FROM meta WHERE key IN ('version', 'uuid')", -1, &st,
                            NULL);
    if (rc != SQLITE_OK)
        return rc == SQLITE_ERROR ? RH_ESTALEINDEX : map_rc(db, rc, true); /* ERROR: no such column */
    bool version_ok = false, uuid_ok = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (!key)
            continue;
        if (strcmp(key, "version") == 0) {
            version_ok = sqlite3_column_type(st, 1) == SQLITE_INTEGER &&
                         sqlite3_column_int64(st, 1) == INDEX_SCHEMA_VERSION;
        } else if (strcmp(key, "uuid") == 0) {
            const void *b = sqlite3_column_blob(st, 1);
            uuid_ok = sqlite3_column_type(st, 1) == SQLITE_BLOB && sqlite3_column_bytes(st, 1) == 16 &&
                      b && memcmp(b, uuid, 16) == 0;
        }
    }
    int r = rc == SQLITE_DONE ? 0 : map_rc(db, rc, true);
    sqlite3_finalize(st);
    if (r == 0 && !(version_ok && uuid_ok))
        r = RH_ESTALEINDEX;
    return r;
}

/* One attempt of setup_schema inside a transaction of the given kind. Sets *ret_retry when the
 * database is empty and must be created, which needs the write lock. */
static int setup_once(sqlite3 *db, const uint8_t uuid[16], bool create, bool immediate, bool *ret_retry)
{
    int rc = sqlite3_exec(db, immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return map_rc(db, rc, true);
    int ours = 0, all = 0, r = 0;
    rc = count_tables(db, &ours, &all);
    if (rc != SQLITE_OK)
        r = map_rc(db, rc, true);
    else if (all == 0 && create && !immediate)
        *ret_retry = true;
    else if (all == 0 && create)
        r = map_rc(db, create_schema(db, uuid), true);
    else if (ours != 4)
        r = RH_ESTALEINDEX;
    if (r == 0 && !*ret_retry)
        r = check_meta(db, uuid);
    if (r == 0 && !*ret_retry) {
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            r = map_rc(db, rc, true);
    }
    if ((r != 0 || *ret_retry) && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* Checks that the database is an index of this store, first creating the schema in an empty database
 * when `create`. The check runs in a read transaction, so that opening an existing index never waits
 * for a writer's long transaction; only an empty database is created under the write lock (BEGIN
 * IMMEDIATE, after which it is checked again: another process may have created it meanwhile). */
static int setup_schema(sqlite3 *db, const uint8_t uuid[16], bool create)
{
    bool retry = false;
    int r = setup_once(db, uuid, create, false, &retry);
    if (r == 0 && retry) {
        retry = false;
        r = setup_once(db, uuid, create, true, &retry);
    }
    return r;
}

/* Connection settings. journal_mode is persistent in the file and a connection opened read-only cannot
 * change it, so only writers set it: WAL while they write (readers keep reading), and back to the
 * rollback journal when they close (index_close), so that a file at rest is one file and a read-only
 * connection to it creates no -wal or -shm beside it. Setting it is the first statement that reads
 * the file (for a read-only connection, the schema check is), which is where a file that is not a
 * database shows itself (SQLITE_NOTADB). */
static int configure(sqlite3 *db, bool writer, bool pooled)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous = NORMAL; PRAGMA mmap_size = %lld; PRAGMA cache_size = -%d",
             pooled ? 0 : (long long)INDEX_MMAP_BYTES,
             writer ? INDEX_WRITER_CACHE_KIB : pooled ? INDEX_POOLED_CACHE_KIB : INDEX_READER_CACHE_KIB);
    int rc = sqlite3_busy_timeout(db, INDEX_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    /* The mode that results is not checked: a file system without shared memory support keeps the
     * rollback journal, which is slower but correct. */
    if (rc == SQLITE_OK && writer)
        rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : map_rc(db, rc, true);
}

static int prepare_all(index_t *ix)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        int rc = sqlite3_prepare_v3(ix->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ix->stmt[i], NULL);
        if (rc != SQLITE_OK) /* SQLITE_ERROR here means a table lacks a column: not our schema */
            return rc == SQLITE_ERROR ? RH_ESTALEINDEX : map_rc(ix->db, rc, true);
    }
    return 0;
}

/* Opens the database `name` (through VFS `vfs`, NULL for the default) into ix, configured for `flags`
 * (index_open's), checks the schema and prepares the statements; on failure closes ix. */
static int open_db(index_t *ix, const char *name, const char *vfs, const uint8_t store_uuid[16], int flags,
                   index_t **ret)
{
    bool readonly = flags & INDEX_READONLY, create = flags & INDEX_CREATE;
    bool rw = !readonly || create;
    int oflags = SQLITE_OPEN_NOMUTEX |
                 (rw ? SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) : SQLITE_OPEN_READONLY);
    int rc = sqlite3_open_v2(name, &ix->db, oflags, vfs);
    int r = rc == SQLITE_OK ? 0 : map_rc(ix->db, rc, true);
    if (r == 0)
        sqlite3_limit(ix->db, SQLITE_LIMIT_LENGTH, INDEX_VALUE_MAX);
    if (r == 0)
        r = configure(ix->db, !readonly, flags & INDEX_POOLED);
    if (r == 0)
        r = setup_schema(ix->db, store_uuid, create);
    if (r == 0 && readonly && rw) {
        rc = sqlite3_exec(ix->db, "PRAGMA query_only = ON", NULL, NULL, NULL);
        r = map_rc(ix->db, rc, true);
    }
    if (r == 0)
        r = prepare_all(ix);
    if (r != 0) {
        index_close(ix);
        return r;
    }
    *ret = ix;
    return 0;
}

/*
 * INDEX_READONLY | INDEX_CREATE is accepted and means "create the index if it is missing, then use the
 * handle for lookups only": the file is opened read-write so that the schema can be created, and
 * PRAGMA query_only makes every later write fail with -EROFS, as on a handle opened read-only.
 */
int index_open(const char *path, const uint8_t store_uuid[16], int flags, index_t **ret)
{
    if (!path || !store_uuid || !ret || (flags & ~(INDEX_READONLY | INDEX_CREATE | INDEX_POOLED)))
        return -EINVAL;
    bool readonly = flags & INDEX_READONLY;
    /* SQLITE_OPEN_NOMUTEX is only safe, and only honoured, when the library was built thread-safe. */
    if (!sqlite3_threadsafe())
        return -ENOTSUP;

    int r = check_magic(path);
    if (r != 0)
        return r;

    index_t *ix = mem_calloc(1, sizeof(*ix));
    if (!ix)
        return -ENOMEM;
    ix->readonly = readonly;
    return open_db(ix, path, NULL, store_uuid, flags, ret);
}

int index_open_ops(const rh_store_ops *ops, void *ctx, const char *path, const uint8_t store_uuid[16],
                   uint32_t block, index_t **ret)
{
    if (!ops || !path || !store_uuid || !ret)
        return -EINVAL;
    if (!sqlite3_threadsafe())
        return -ENOTSUP;
    index_t *ix = mem_calloc(1, sizeof(*ix));
    if (!ix)
        return -ENOMEM;
    ix->readonly = true;
    char *copy = mem_strdup(path);
    if (!copy || !(ix->vsrc = mem_calloc(1, sizeof(*ix->vsrc)))) {
        free(copy);
        free(ix);
        return -ENOMEM;
    }
    *ix->vsrc = (index_vfs_source){ .ops = ops, .ctx = ctx, .path = copy, .block = block };
    char name[40];
    int r = index_vfs_name(ix->vsrc, name);
    if (r < 0) {
        index_close(ix);
        return r;
    }
    /* As a pooled handle: no map (the VFS has none) and a small page cache above the VFS's own. */
    return open_db(ix, name, INDEX_VFS_NAME, store_uuid, INDEX_READONLY | INDEX_POOLED, ret);
}

void index_close(index_t *ix)
{
    if (!ix)
        return;
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(ix->stmt[i]);
    /* A writer leaves the file in rollback-journal mode: the switch checkpoints the WAL into the file and
     * deletes it. It needs the file to itself; while another process has it open (a mounted daemon) it
     * fails with SQLITE_BUSY at once, and the file stays in WAL mode until a later writer closes alone.
     * Either way the file is consistent, so the result is not checked. */
    if (!ix->readonly) {
        sqlite3_busy_timeout(ix->db, 0);
        sqlite3_exec(ix->db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    }
    /* An open transaction is rolled back by sqlite3_close; with every statement finalized it cannot
     * fail with SQLITE_BUSY. */
    sqlite3_close(ix->db);
    if (ix->vsrc)
        free((char *)ix->vsrc->path);
    free(ix->vsrc);
    free(ix);
}

/* ---- lookups ---- */

/* Reads a location row (container, offset, stored_len, raw_len, codec, member), checking every value's range:
 * the index is a file on disk like any other. */
static int read_loc(sqlite3_stmt *st, index_loc *ret)
{
    sqlite3_int64 container = sqlite3_column_int64(st, 0), offset = sqlite3_column_int64(st, 1),
                  stored_len = sqlite3_column_int64(st, 2), raw_len = sqlite3_column_int64(st, 3),
                  codec = sqlite3_column_int64(st, 4), member = sqlite3_column_int64(st, 5);
    if (container < 0 || container > UINT32_MAX || offset < 0 || stored_len < 0 ||
        stored_len > UINT32_MAX || raw_len < 0 || raw_len > UINT32_MAX || codec < 0 || codec > UINT8_MAX ||
        member < 0 || member > UINT16_MAX)
        return RH_ECORRUPT;
    *ret = (index_loc){
        .container = (uint32_t)container,
        .offset = (uint64_t)offset,
        .stored_len = (uint32_t)stored_len,
        .raw_len = (uint32_t)raw_len,
        .codec = (uint8_t)codec,
        .member = (uint16_t)member,
    };
    return 0;
}

static int find(index_t *ix, int id, const uint8_t digest[HASH_LEN], index_loc *ret)
{
    if (!ix || !digest || !ret)
        return -EINVAL;
    sqlite3_stmt *st = ix->stmt[id];
    int rc = sqlite3_bind_blob(st, 1, digest, HASH_LEN, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return map_rc(ix->db, rc, false);
    rc = sqlite3_step(st);
    int r;
    if (rc == SQLITE_ROW) {
        index_loc loc;
        r = read_loc(st, &loc);
        if (r == 0)
            *ret = loc;
    } else if (rc == SQLITE_DONE) {
        r = RH_ENOCHUNK;
    } else {
        r = map_rc(ix->db, rc, false);
    }
    sqlite3_reset(st);
    return r;
}

int index_find_chunk(index_t *ix, const uint8_t digest[HASH_LEN], index_loc *ret)
{
    return find(ix, STMT_FIND_CHUNK, digest, ret);
}

int index_find_stream(index_t *ix, const uint8_t digest[HASH_LEN], index_loc *ret)
{
    return find(ix, STMT_FIND_STREAM, digest, ret);
}

/* ---- writes ---- */

int index_begin(index_t *ix)
{
    if (!ix)
        return -EINVAL;
    if (!sqlite3_get_autocommit(ix->db))
        return -EINVAL; /* already in a transaction */
    /* A writer takes the write lock now, where the busy timeout applies, rather than failing with
     * SQLITE_BUSY at its first insert when a read transaction cannot be upgraded. A read-only handle
     * begins a read transaction: a consistent view across several lookups. */
    return run(ix, ix->readonly ? STMT_BEGIN_READ : STMT_BEGIN_WRITE);
}

int index_commit(index_t *ix)
{
    if (!ix)
        return -EINVAL;
    if (sqlite3_get_autocommit(ix->db))
        return -EINVAL; /* no transaction */
    return run(ix, STMT_COMMIT);
}

int index_rollback(index_t *ix)
{
    if (!ix)
        return -EINVAL;
    /* SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, SQLITE_IOERR, ...), so
     * there may be nothing left to roll back; that is success for a caller that is unwinding. */
    if (sqlite3_get_autocommit(ix->db))
        return 0;
    return run(ix, STMT_ROLLBACK);
}

static int add_loc(index_t *ix, int id, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    if (!ix || !digest || !loc || loc->offset > INT64_MAX)
        return -EINVAL;
    sqlite3_stmt *st = ix->stmt[id];
    int rc = sqlite3_bind_blob(st, 1, digest, HASH_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, loc->container);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)loc->offset);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, loc->stored_len);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, loc->raw_len);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 6, loc->codec);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 7, loc->member);
    if (rc != SQLITE_OK)
        return map_rc(ix->db, rc, false);
    return run(ix, id);
}

int index_add_chunk(index_t *ix, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    return add_loc(ix, STMT_ADD_CHUNK, digest, loc);
}

int index_add_stream(index_t *ix, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    return add_loc(ix, STMT_ADD_STREAM, digest, loc);
}

int index_add_container(index_t *ix, const index_container *c)
{
    if (!ix || !c || c->size > INT64_MAX)
        return -EINVAL;
    sqlite3_stmt *st = ix->stmt[STMT_ADD_CONTAINER];
    int rc = sqlite3_bind_int64(st, 1, c->id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 2, c->kind);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)c->size);
    if (rc != SQLITE_OK)
        return map_rc(ix->db, rc, false);
    return run(ix, STMT_ADD_CONTAINER);
}

int index_clear(index_t *ix)
{
    if (!ix)
        return -EINVAL;
    int r = run(ix, STMT_CLEAR_CHUNKS);
    if (r == 0)
        r = run(ix, STMT_CLEAR_STREAMS);
    if (r == 0)
        r = run(ix, STMT_CLEAR_CONTAINERS);
    return r;
}

/* ---- staleness and counts ---- */

static int cmp_container(const void *a, const void *b)
{
    const index_container *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return 0;
}

/* Merges the table (read in primary-key order, one row at a time, so memory does not grow with the
 * index) with a sorted copy of `have`. Entries repeated in `have` count once, as in a set; the same
 * (kind, id) twice with different sizes cannot match any table and gives false. */
int index_matches(index_t *ix, const index_container *have, size_t n, bool *ret_match)
{
    if (!ix || (!have && n) || !ret_match)
        return -EINVAL;
    _cleanup_(freep) index_container *sorted = n ? mem_memdup(have, n * sizeof(*have)) : NULL;
    if (n && !sorted)
        return -ENOMEM;
    if (n)
        sort_array(sorted, n, sizeof(*sorted), cmp_container);

    sqlite3_stmt *st = ix->stmt[STMT_LIST_CONTAINERS];
    bool match = true;
    size_t i = 0;
    int rc = SQLITE_DONE;
    while (match && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 kind = sqlite3_column_int64(st, 0), id = sqlite3_column_int64(st, 1),
                      size = sqlite3_column_int64(st, 2);
        if (i == n || sorted[i].kind != kind || sorted[i].id != id || size < 0 ||
            sorted[i].size != (uint64_t)size) {
            match = false;
            break;
        }
        /* Skip repeats of the entry just matched. */
        while (++i < n && cmp_container(&sorted[i], &sorted[i - 1]) == 0) {
            if (sorted[i].size != sorted[i - 1].size)
                match = false;
        }
    }
    int r = 0;
    if (match) {
        if (rc != SQLITE_DONE)
            r = map_rc(ix->db, rc, false);
        else if (i != n)
            match = false; /* `have` lists containers that the index does not */
    }
    sqlite3_reset(st);
    if (r == 0)
        *ret_match = match;
    return r;
}

int index_newest_container(index_t *ix, uint8_t kind, index_container *ret, bool *ret_found)
{
    if (!ix || !ret || !ret_found)
        return -EINVAL;
    sqlite3_stmt *st = ix->stmt[STMT_NEWEST_CONTAINER];
    int rc = sqlite3_bind_int(st, 1, kind);
    if (rc != SQLITE_OK)
        return map_rc(ix->db, rc, false);
    int r = 0;
    *ret_found = false;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sqlite3_int64 id = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
        if (id < 0 || id > UINT32_MAX || size < 0) {
            r = RH_ECORRUPT;
        } else {
            *ret = (index_container){ .id = (uint32_t)id, .kind = kind, .size = (uint64_t)size };
            *ret_found = true;
        }
    } else if (rc != SQLITE_DONE) {
        r = map_rc(ix->db, rc, false);
    }
    sqlite3_reset(st);
    return r;
}

int index_stats(index_t *ix, uint64_t *ret_chunks, uint64_t *ret_streams, uint64_t *ret_containers)
{
    if (!ix)
        return -EINVAL;
    /* Outside a caller's transaction, read the three counts in one of our own so that they agree. */
    bool own = sqlite3_get_autocommit(ix->db);
    int r = own ? run(ix, STMT_BEGIN_READ) : 0;
    if (r != 0)
        return r;
    uint64_t chunks = 0, streams = 0, containers = 0;
    r = run_count(ix, STMT_COUNT_CHUNKS, &chunks);
    if (r == 0)
        r = run_count(ix, STMT_COUNT_STREAMS, &streams);
    if (r == 0)
        r = run_count(ix, STMT_COUNT_CONTAINERS, &containers);
    /* Ends our read transaction; should that fail, roll back so the handle is never left inside it. */
    if (own && run(ix, STMT_COMMIT) != 0 && !sqlite3_get_autocommit(ix->db))
        run(ix, STMT_ROLLBACK);
    if (r != 0)
        return r;
    if (ret_chunks)
        *ret_chunks = chunks;
    if (ret_streams)
        *ret_streams = streams;
    if (ret_containers)
        *ret_containers = containers;
    return 0;
}

/* ---- checking (verify) ---- */

int index_integrity(index_t *ix, int max, char **ret_report)
{
    if (!ix || max < 1 || !ret_report)
        return -EINVAL;
    char sql[48];
    snprintf(sql, sizeof(sql), "PRAGMA integrity_check(%d)", max);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL);
    bytebuf b = { 0 };
    if (rc == SQLITE_OK)
        rc = SQLITE_ROW;
    while (rc == SQLITE_ROW && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (!line || strcmp(line, "ok") == 0)
            continue;
        if (b.len)
            buf_append(&b, "; ", 2);
        buf_append(&b, line, strlen(line));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        /* SQLite may fail the check itself on a badly damaged file: that is its verdict too. */
        if ((rc & 0xff) != SQLITE_CORRUPT && (rc & 0xff) != SQLITE_NOTADB) {
            buf_free(&b);
            return map_rc(ix->db, rc, false);
        }
        if (b.len)
            buf_append(&b, "; ", 2);
        const char *e = sqlite3_errstr(rc);
        buf_append(&b, e, strlen(e));
    }
    if (b.len) {
        for (size_t i = 0; i < b.len; i++)
            if (b.data[i] == '\n')
                b.data[i] = ' ';
        buf_put_u8(&b, 0);
        *ret_report = (char *)b.data;
    } else {
        buf_free(&b);
        *ret_report = NULL;
    }
    return 0;
}

int index_each(index_t *ix, bool streams, index_row_fn *fn, void *ud)
{
    if (!ix || !fn)
        return -EINVAL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ix->db,
                                streams ? "SELECT container, offset, stored_len, raw_len, codec, member, "
                                          "digest FROM streams ORDER BY digest"
                                        : "SELECT container, offset, stored_len, raw_len, codec, member, "
                                          "digest FROM chunks ORDER BY digest",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return map_rc(ix->db, rc, false);
    }
    int r = 0;
    while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        index_loc loc;
        bool ok = read_loc(st, &loc) == 0;
        const void *d = sqlite3_column_blob(st, 6);
        int dlen = sqlite3_column_bytes(st, 6);
        r = fn(ud, dlen == HASH_LEN && d ? d : NULL, ok ? &loc : NULL);
    }
    if (r >= 0 && rc != SQLITE_DONE)
        r = map_rc(ix->db, rc, false);
    sqlite3_finalize(st);
    return r;
}

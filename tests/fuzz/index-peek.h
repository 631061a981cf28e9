/*
 * index-peek.h — what the index and vfs targets read straight from an index.db image before
 * handing it to the code under test: the store uuid and some digests to look up, so that lookups reach
 * past the uuid check and find rows. Read as index_open's handles read (values up to INDEX_VALUE_MAX).
 */
#ifndef RH_FUZZ_INDEX_PEEK_H
#define RH_FUZZ_INDEX_PEEK_H

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "hash/hash.h"
#include "index/index.h"

#define LOOKUPS_MAX 64

/* The uuid in the meta table and up to LOOKUPS_MAX digests of `table` of the database `name`, opened
 * read-only through SQLite VFS `vfs` (NULL: the default one). */
static size_t index_peek(const char *name, const char *vfs, uint8_t uuid[16], const char *table,
                         uint8_t (*digests)[HASH_LEN])
{
    sqlite3 *db;
    size_t n = 0;
    if (sqlite3_open_v2(name, &db, SQLITE_OPEN_READONLY, vfs) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, INDEX_VALUE_MAX);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'uuid'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 16 && sqlite3_column_blob(st, 0))
            memcpy(uuid, sqlite3_column_blob(st, 0), 16);
        sqlite3_finalize(st);
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "SELECT digest FROM %s LIMIT %d", table, LOOKUPS_MAX);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        while (n < LOOKUPS_MAX && sqlite3_step(st) == SQLITE_ROW) {
            const void *b = sqlite3_column_blob(st, 0);
            memset(digests[n], 0, HASH_LEN);
            if (b)
                memcpy(digests[n], b, MIN((size_t)sqlite3_column_bytes(st, 0), (size_t)HASH_LEN));
            n++;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

#endif

/*
 * fuzz-index.c — an index.db file image opened read-only, as a reader opens the index of a store it may
 * not write: index_open (magic, application_id, schema, meta rows), then what turns rows into values:
 * index_find_chunk and index_find_stream (read_loc, which checks every column's range) for every digest
 * the tables hold (up to a bound) and for one they do not, index_matches over the container rows, and
 * index_stats.
 *
 * Input: the database file. The target writes it to a temporary file (index_open takes a path), reads
 * the store uuid and the digests to look up straight from the image with SQLite, so that the checks
 * behind the uuid comparison are reached, and removes any -wal/-shm file SQLite made beside it.
 */
#include "config.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "common/util.h"
#include "index/index.h"
#include "store/container.h"
#include "index-peek.h"
#include "fuzz.h"


static char db_path[64];

static void cleanup_files(void)
{
    char p[80];
    unlink(db_path);
    snprintf(p, sizeof(p), "%s-wal", db_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-journal", db_path);
    unlink(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db_path[0])
        snprintf(db_path, sizeof(db_path), "%s/rh-fuzz-index.%ld.db",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    int fd = open(db_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    uint8_t uuid[16] = { 0 };
    static uint8_t chunks[LOOKUPS_MAX][HASH_LEN], streams[LOOKUPS_MAX][HASH_LEN];
    size_t nc = index_peek(db_path, NULL, uuid, "chunks", chunks);
    size_t ns = index_peek(db_path, NULL, uuid, "streams", streams);

    index_t *ix;
    if (index_open(db_path, uuid, INDEX_READONLY, &ix) == 0) {
        index_loc loc;
        for (size_t i = 0; i < nc; i++)
            (void)index_find_chunk(ix, chunks[i], &loc);
        for (size_t i = 0; i < ns; i++)
            (void)index_find_stream(ix, streams[i], &loc);
        /* On a damaged file SQLite may even return a row for a digest that no row has: what the
         * lookup returns is only a place to look, and the readers check the record's digest. */
        static const uint8_t absent[HASH_LEN] = { 0xff, 0xfe };
        (void)index_find_chunk(ix, absent, &loc);
        bool match;
        (void)index_matches(ix, NULL, 0, &match);
        index_container have[2] = { { 1, CONTAINER_DATA, 4096 }, { 1, CONTAINER_STREAM, 4096 } };
        (void)index_matches(ix, have, 2, &match);
        uint64_t a, b, c;
        (void)index_stats(ix, &a, &b, &c);
        index_close(ix);
    }
    cleanup_files();
    return 0;
}

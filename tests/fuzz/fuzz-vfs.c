/*
 * fuzz-vfs.c — an index.db image read in place through the read-only SQLite VFS (index/vfs.c), as the
 * index of a store behind rh_store_ops is read: the header that gives the file's size
 * (index_vfs_header_size), the VFS's own open and its block reads at odd offsets and lengths, then
 * index_open_ops and the lookups of fuzz-index.c through it.
 *
 * Input: the whole index.db, served by a read callback over the input (a read past its end is -EIO, as
 * rh_store_ops wants of a short read), so that short files and headers that claim more or fewer pages
 * than the input holds are all reached. Checked, and trapped on when false:
 *  - the VFS opens the file exactly when the input holds a header that index_vfs_header_size accepts
 *    and at least the size that it gives, and reports that size;
 *  - every read returns the input's bytes, and zeros with SQLITE_IOERR_SHORT_READ past that size;
 *  - in a second pass, on the input padded with zeros to the size the header claims (when that is at
 *    most a few blocks more than the LRU of INDEX_VFS_CACHE blocks holds), where the callback fails
 *    every read of some blocks as a damaged medium would: reads that need such a block fail with
 *    SQLITE_IOERR_READ, all others still return the right bytes, also after a few bytes read in every
 *    block, forwards and back, have made the LRU evict and refill.
 * The reads are a fixed set around block boundaries and the file's end, plus up to eight (offset, length)
 * pairs taken from the input's last bytes, so the fuzzer steers them too.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/util.h"
#include "index/index.h"
#include "index/vfs.h"
#include "store/container.h"
#include "index-peek.h"
#include "fuzz.h"

#define B ((uint64_t)INDEX_VFS_BLOCK)
#define PAD_BLOCKS (INDEX_VFS_CACHE + 16) /* the largest file padded: enough to make the LRU evict */

/* The input followed by zeros up to `avail` bytes. With `bad` set, every read that starts in a block
 * (INDEX_VFS_BLOCK) whose number b is neither 0 nor `last` and has (b + bad) % 5 == 0 fails. */
typedef struct padded_file {
    const uint8_t *data;
    size_t size;
    uint64_t avail;
    unsigned bad;
    uint64_t last;
} padded_file;

static bool bad_block(const padded_file *f, uint64_t b)
{
    return f->bad && b != 0 && b != f->last && (b + f->bad) % 5 == 0;
}

static int padded_read(void *ctx, const char *path, uint64_t offset, void *buf, size_t size)
{
    const padded_file *f = ctx;
    (void)path;
    if (offset > f->avail || size > f->avail - offset || bad_block(f, offset / B))
        return -EIO;
    size_t have = offset < f->size ? (size_t)MIN((uint64_t)size, f->size - offset) : 0;
    if (have)
        memcpy(buf, f->data + offset, have);
    memset((uint8_t *)buf + have, 0, size - have);
    return 0;
}

static const rh_store_ops padded_ops = { .version = RH_STORE_OPS_VERSION, .read = padded_read };

/* What a read of [off, off + len) must return from a file of `hsize` bytes (the header's size) served by
 * f. Blocks are read whole (up to hsize): the read fails when one that it needs fails. */
static int expected_rc(const padded_file *f, uint64_t hsize, uint64_t off, uint64_t len)
{
    if (len == 0)
        return SQLITE_OK;
    if (off < hsize) {
        uint64_t end = MIN(off + len, hsize);
        if (MIN(((end - 1) / B + 1) * B, hsize) > f->avail) /* the last block ends furthest */
            return SQLITE_IOERR_READ;
        for (uint64_t b = off / B; b <= (end - 1) / B; b++)
            if (bad_block(f, b))
                return SQLITE_IOERR_READ;
    }
    return off + len > hsize ? SQLITE_IOERR_SHORT_READ : SQLITE_OK;
}

/* Reads [off, off + len) through the VFS's xRead into a buffer of exactly len bytes and checks the code
 * and the bytes. */
static void read_check(sqlite3_file *file, const padded_file *pf, uint64_t hsize, uint64_t off, uint64_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    int rc = file->pMethods->xRead(file, buf, (int)len, (sqlite3_int64)off);
    int want = expected_rc(pf, hsize, off, len);
    FUZZ_ASSERT(rc == want || rc == SQLITE_IOERR_NOMEM);
    if (rc == SQLITE_OK || rc == SQLITE_IOERR_SHORT_READ) {
        for (uint64_t i = 0; i < len; i++) {
            uint64_t at = off + i;
            uint8_t b = at < hsize && at < pf->size ? pf->data[at] : 0;
            FUZZ_ASSERT(buf[i] == b);
        }
    }
    free(buf);
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Opens the input through the VFS itself (xOpen, as SQLite's pager does), checks that it opens exactly
 * when it should, and reads it at the offsets described at the top. */
static void read_direct(const uint8_t *data, size_t size, bool padded)
{
    uint64_t hsize = 0;
    bool header_ok = size >= 100 && index_vfs_header_size(data, &hsize) == 0;
    if (padded && (!header_ok || hsize > PAD_BLOCKS * B))
        return;
    padded_file pf = { data, size, size, 0, 0 };
    if (padded) {
        pf.avail = MAX((uint64_t)size, hsize);
        pf.bad = 1 + data[size - 1] % 5;
        pf.last = (hsize - 1) / B;
    }
    index_vfs_source src = { .ops = &padded_ops, .ctx = &pf, .path = "index.db" };
    char name[40];
    FUZZ_ASSERT(index_vfs_name(&src, name) == 0);
    sqlite3_vfs *vfs = sqlite3_vfs_find(INDEX_VFS_NAME);
    FUZZ_ASSERT(vfs);
    sqlite3_file *file = calloc(1, (size_t)vfs->szOsFile);
    if (!file)
        abort();
    int out = 0;
    int rc = vfs->xOpen(vfs, name, file, SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READONLY, &out);
    FUZZ_ASSERT((rc == SQLITE_OK) == (header_ok && pf.avail >= hsize));
    if (rc != SQLITE_OK) {
        FUZZ_ASSERT(file->pMethods == NULL); /* SQLite calls no xClose then: nothing may be held */
        free(file);
        return;
    }
    sqlite3_int64 fsize = -1;
    FUZZ_ASSERT(file->pMethods->xFileSize(file, &fsize) == SQLITE_OK && (uint64_t)fsize == hsize);

    if (!padded) {
        const uint64_t fixed[][2] = {
            { 0, 100 },         { 0, 0 },           { 1, 511 },          { B - 1, 2 },
            { B - 3, B + 7 },   { 2 * B - 1, 1 },   { hsize - 1, 1 },    { hsize - 1, 2 },
            { hsize - 5, 100 }, { hsize, 1 },       { hsize + B, 10 },   { size, 3 },
            { size - 1, 1 },    { hsize / 2, 4096 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) /* hsize >= 512 and size >= 100: no wrap */
            read_check(file, &pf, hsize, fixed[i][0], fixed[i][1]);
        for (size_t i = 0; i < 8 && 6 * (i + 1) <= size; i++) {
            const uint8_t *p = data + size - 6 * (i + 1);
            uint64_t off = le32(p) % (hsize + 2 * B);
            uint64_t len = (uint64_t)(p[4] | p[5] << 8) + 1;
            read_check(file, &pf, hsize, off, len);
        }
    } else {
        /* Three bytes at an odd place in every block, forwards then back, so that blocks are evicted and
         * read again; then the first block once more, long evicted when the file has that many. */
        uint64_t nblocks = (hsize + B - 1) / B;
        for (uint64_t b = 0; b < nblocks; b++)
            read_check(file, &pf, hsize, b * B + (b * 4099) % (B - 2), 3);
        for (uint64_t b = nblocks; b-- > 0;)
            read_check(file, &pf, hsize, b * B + (b * 8191 + 17) % (B - 2), 3);
        read_check(file, &pf, hsize, 7, 93);
    }
    FUZZ_ASSERT(file->pMethods->xClose(file) == SQLITE_OK);
    free(file);
}

static int count_row(void *ud, const uint8_t *digest, const index_loc *loc)
{
    (void)digest, (void)loc;
    return ++*(int *)ud < LOOKUPS_MAX ? 0 : -ECANCELED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_direct(data, size, false);
    read_direct(data, size, true);

    fuzz_file file = { data, size };
    index_vfs_source src = { .ops = &fuzz_file_ops, .ctx = &file, .path = "index.db" };
    char name[40];
    FUZZ_ASSERT(index_vfs_name(&src, name) == 0);
    uint8_t uuid[16] = { 0 };
    static uint8_t chunks[LOOKUPS_MAX][HASH_LEN], streams[LOOKUPS_MAX][HASH_LEN];
    size_t nc = index_peek(name, INDEX_VFS_NAME, uuid, "chunks", chunks);
    size_t ns = index_peek(name, INDEX_VFS_NAME, uuid, "streams", streams);

    index_t *ix;
    uint64_t hsize;
    if (index_open_ops(&fuzz_file_ops, &file, "index.db", uuid, 0, &ix) == 0) {
        FUZZ_ASSERT(size >= 100 && index_vfs_header_size(data, &hsize) == 0 && size >= hsize);
        index_loc loc;
        for (size_t i = 0; i < nc; i++)
            (void)index_find_chunk(ix, chunks[i], &loc);
        for (size_t i = 0; i < ns; i++)
            (void)index_find_stream(ix, streams[i], &loc);
        static const uint8_t absent[HASH_LEN] = { 0xff, 0xfe };
        (void)index_find_chunk(ix, absent, &loc);
        bool match;
        index_container have[2] = { { 1, CONTAINER_DATA, 4096 }, { 1, CONTAINER_STREAM, 4096 } };
        (void)index_matches(ix, have, 2, &match);
        uint64_t a, b, c;
        (void)index_stats(ix, &a, &b, &c);
        int rows = 0;
        (void)index_each(ix, false, count_row, &rows);
        rows = 0;
        (void)index_each(ix, true, count_row, &rows);
        index_close(ix);
    }
    return 0;
}

/*
 * fuzz.h — what the fuzz targets share: the libFuzzer entry point's prototype, and a one-file store
 * behind rh_store_ops whose read callback serves the fuzzer's input, so that a target can hand the input
 * to a reader that reads through the store callbacks (catalogs, containers) exactly as the read paths do.
 *
 * Every target is a file tests/fuzz/fuzz-NAME.c defining LLVMFuzzerTestOneInput. It is linked twice: with
 * libFuzzer (-fsanitize=fuzzer, ./configure --enable-fuzzing) to fuzz, and with fuzz-main.c into a check
 * program that `make check` runs to replay tests/fuzz/corpus/NAME/ in any build (doc/fuzzing.md).
 *
 * Many store structures are guarded by a checksum that random mutation almost never gets right, which
 * would stop the fuzzer at the first comparison. So a target may run the parser twice: on the input as
 * it is, and on a copy whose checksums it has recomputed (fixed up), so that the checks behind them are
 * reached too. The parsers are the real ones; only their input is helped along.
 */
#ifndef RH_TESTS_FUZZ_H
#define RH_TESTS_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rehydrate/rehydrate.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A store with a single file: every path reads `data`. A read that the file cannot satisfy whole is
 * -EIO, as rh_store_ops wants of a short read. */
typedef struct fuzz_file {
    const uint8_t *data;
    size_t size;
} fuzz_file;

static inline int fuzz_file_read(void *ctx, const char *path, uint64_t offset, void *buf, size_t size)
{
    const fuzz_file *f = ctx;
    (void)path;
    if (offset > f->size || size > f->size - offset)
        return -EIO;
    if (size)
        memcpy(buf, f->data + offset, size);
    return 0;
}

static const rh_store_ops fuzz_file_ops = { .version = RH_STORE_OPS_VERSION, .read = fuzz_file_read };

/* A malloc'd copy of data[0..size) (never NULL, even for size 0), for targets that fix inputs up. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t size)
{
    uint8_t *p = calloc(1, size ? size : 1);
    if (!p)
        abort();
    if (size)
        memcpy(p, data, size);
    return p;
}

/* A property the read paths rely on did not hold: crash, so that the fuzzer and the replay report it. */
#define FUZZ_ASSERT(cond)                                                                           \
    do {                                                                                            \
        if (!(cond))                                                                                \
            __builtin_trap();                                                                       \
    } while (0)

#endif

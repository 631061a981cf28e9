/*
 * xpress-bench.c — decoding speed of MS-XCA plain LZ77 (Windows dedup chunks): our decoder
 * (src/compress/xpress.c) against libfwnt's libfwnt_lzxpress_decompress, on the same chunks.
 *
 *     make bench/xpress-bench
 *     bench/xpress-bench [-r REPS] [-m MIB] PATH...      # files, or directories walked recursively
 *
 * It reads up to MIB MiB (default 64) of the files named, concatenated, cuts that into chunks of 64-128
 * KiB (sizes from a fixed pseudo-random sequence, as Windows' chunks vary), compresses each with xpress_compress
 * and keeps those that got smaller (Windows stores the others uncompressed). Then it decodes all kept
 * chunks REPS times (default 5) with each decoder and reports the best pass, in MB/s (10^6 bytes of
 * decoded data per second). Every decoded chunk is compared with the original.
 *
 * libfwnt is optional: it is loaded at run time (dlopen of libfwnt.so.1, Debian's libfwnt1), so the
 * program builds and runs without it and only our decoder is measured then. libfwnt decodes only
 * matches up to 32771 bytes (it has no 32-bit length form); a chunk it fails on or decodes wrongly is
 * counted and left out of its timing.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compress/xpress.h"

typedef struct chunk {
    uint8_t *raw, *stored;
    size_t raw_len, stored_len;
    int fwnt_ok; /* libfwnt decoded it to the right bytes */
} chunk;

static chunk *chunks;
static size_t nchunks, cap_chunks, total_read, limit;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static size_t next_chunk_size(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (64u << 10) + (size_t)(rng % ((64u << 10) + 1));
}

static void add_chunk(const uint8_t *p, size_t n)
{
    size_t cap = xpress_compress_bound(n), len;
    uint8_t *c = malloc(cap);
    if (!c || xpress_compress(p, n, c, cap, &len) != 0) {
        fprintf(stderr, "xpress-bench: compressing a chunk failed\n");
        exit(1);
    }
    if (len >= n) {
        free(c);
        return;
    }
    if (nchunks == cap_chunks) {
        cap_chunks = cap_chunks ? 2 * cap_chunks : 256;
        chunks = realloc(chunks, cap_chunks * sizeof(*chunks));
        if (!chunks)
            abort();
    }
    chunk *k = &chunks[nchunks++];
    k->raw = malloc(n);
    k->stored = realloc(c, len);
    if (!k->raw || !k->stored)
        abort();
    memcpy(k->raw, p, n);
    k->raw_len = n;
    k->stored_len = len;
    k->fwnt_ok = 0;
}

/* The files' bytes, concatenated, are cut into chunks of 64-128 KiB: this buffer holds the next one. */
static uint8_t pending[128u << 10];
static size_t npending, want_next;

static void add_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r;
    if (!want_next)
        want_next = next_chunk_size();
    while (total_read < limit && (r = read(fd, pending + npending, want_next - npending)) > 0) {
        npending += (size_t)r;
        total_read += (size_t)r;
        if (npending == want_next) {
            add_chunk(pending, npending);
            npending = 0;
            want_next = next_chunk_size();
        }
    }
    close(fd);
}

static void walk(const char *path)
{
    struct stat st;
    if (total_read >= limit || lstat(path, &st) < 0)
        return;
    if (S_ISREG(st.st_mode)) {
        add_file(path);
        return;
    }
    if (!S_ISDIR(st.st_mode))
        return;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) && total_read < limit) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *sub;
        if (asprintf(&sub, "%s/%s", path, de->d_name) < 0)
            abort();
        walk(sub);
        free(sub);
    }
    closedir(d);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*fwnt_fn)(const uint8_t *, size_t, uint8_t *, size_t *, void **);
typedef void (*fwnt_free_fn)(void **);

/* One pass of a decoder over the chunks; returns seconds, adds decoded bytes to *bytes. */
static double pass(int use_fwnt, fwnt_fn fwnt, fwnt_free_fn fwnt_free, uint8_t *out, uint64_t *bytes,
                   size_t *bad)
{
    double t0 = now();
    for (size_t i = 0; i < nchunks; i++) {
        chunk *k = &chunks[i];
        if (use_fwnt) {
            if (!k->fwnt_ok)
                continue;
            size_t len = k->raw_len;
            void *err = NULL;
            if (fwnt(k->stored, k->stored_len, out, &len, &err) != 1 || len != k->raw_len) {
                if (err)
                    fwnt_free(&err);
                (*bad)++;
                continue;
            }
        } else if (xpress_decompress(k->stored, k->stored_len, out, k->raw_len) != 0) {
            (*bad)++;
            continue;
        }
        *bytes += k->raw_len;
    }
    return now() - t0;
}

/* Decodes every chunk once and compares; for libfwnt, marks the chunks it gets right. */
static size_t verify(int use_fwnt, fwnt_fn fwnt, fwnt_free_fn fwnt_free, uint8_t *out)
{
    size_t wrong = 0;
    for (size_t i = 0; i < nchunks; i++) {
        chunk *k = &chunks[i];
        int ok;
        if (use_fwnt) {
            size_t len = k->raw_len;
            void *err = NULL;
            ok = fwnt(k->stored, k->stored_len, out, &len, &err) == 1 && len == k->raw_len;
            if (err)
                fwnt_free(&err);
        } else {
            ok = xpress_decompress(k->stored, k->stored_len, out, k->raw_len) == 0;
        }
        ok = ok && memcmp(out, k->raw, k->raw_len) == 0;
        if (use_fwnt)
            k->fwnt_ok = ok;
        wrong += !ok;
    }
    return wrong;
}

static void measure(const char *name, int use_fwnt, fwnt_fn fwnt, fwnt_free_fn fwnt_free, int reps)
{
    uint8_t *out = malloc(128u << 10);
    if (!out)
        abort();
    size_t wrong = verify(use_fwnt, fwnt, fwnt_free, out);
    double best = 0;
    uint64_t bytes = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t b = 0;
        size_t bad = 0;
        double t = pass(use_fwnt, fwnt, fwnt_free, out, &b, &bad);
        if (r == 0 || t < best)
            best = t;
        bytes = b;
    }
    printf("%-8s %8.1f MB/s  (%zu chunks, %.1f MiB decoded in %.3f s, best of %d; %zu chunks failed or wrong)\n",
           name, best > 0 ? (double)bytes / best / 1e6 : 0.0, nchunks - wrong, (double)bytes / 1048576.0,
           best, reps, wrong);
    free(out);
}

int main(int argc, char **argv)
{
    int reps = 5, opt;
    limit = (size_t)64 << 20;
    while ((opt = getopt(argc, argv, "r:m:")) != -1) {
        if (opt == 'r')
            reps = atoi(optarg);
        else if (opt == 'm')
            limit = (size_t)atol(optarg) << 20;
        else
            goto usage;
    }
    if (optind >= argc || reps < 1)
        goto usage;
    for (int i = optind; i < argc; i++)
        walk(argv[i]);
    if (npending > 0)
        add_chunk(pending, npending); /* the last, shorter chunk */
    uint64_t raw = 0, stored = 0;
    for (size_t i = 0; i < nchunks; i++) {
        raw += chunks[i].raw_len;
        stored += chunks[i].stored_len;
    }
    printf("%zu compressible chunks of 64-128 KiB: %.1f MiB -> %.1f MiB (%.1f %%), of %.1f MiB read\n", nchunks,
           (double)raw / 1048576.0, (double)stored / 1048576.0, raw ? 100.0 * (double)stored / (double)raw : 0.0,
           (double)total_read / 1048576.0);
    if (nchunks == 0)
        return 1;

    measure("ours", 0, NULL, NULL, reps);
    void *lib = dlopen("libfwnt.so.1", RTLD_NOW);
    fwnt_fn fwnt = lib ? (fwnt_fn)dlsym(lib, "libfwnt_lzxpress_decompress") : NULL;
    fwnt_free_fn fwnt_free = lib ? (fwnt_free_fn)dlsym(lib, "libfwnt_error_free") : NULL;
    if (fwnt && fwnt_free)
        measure("libfwnt", 1, fwnt, fwnt_free, reps);
    else
        printf("libfwnt  not installed (libfwnt.so.1): not measured\n");
    return 0;

usage:
    fprintf(stderr, "usage: xpress-bench [-r REPS] [-m MIB] PATH...\n");
    return 2;
}

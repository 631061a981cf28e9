/* restore-stubs.c: rehydrate stubs from a store in a directory */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rehydrate/rehydrate.h>

struct dir_store {
    int dirfd; /* the store's root directory */
};

/* ReadBackupFile: exactly size bytes at offset, or an error. */
static int dir_read(void *ctx, const char *path, uint64_t offset,
                    void *buf, size_t size)
{
    struct dir_store *ds = ctx;
    int fd = openat(ds->dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;           /* -ENOENT: no such store file */
    char *p = buf;
    while (size > 0) {
        ssize_t n = pread(fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EIO; /* short read: error */
            close(fd);
            return r;
        }
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    close(fd);
    return 0;
}

/* OrderContainersRestore: accept the engine's order. */
static int dir_order(void *ctx, size_t n, const char *const *paths,
                     rh_container_extent **ret_plan, size_t *ret_len)
{
    (void)ctx;
    (void)paths;
    fprintf(stderr, "engine needs %zu container(s)\n", n);
    *ret_plan = NULL;
    *ret_len = 0;
    return 0;
}

/* PreviewContainerRead: a tape application would seek here. */
static int dir_preview(void *ctx, const char *path, size_t n,
                       const rh_extent *extents)
{
    uint64_t bytes = 0;
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        bytes += extents[i].length;
    fprintf(stderr, "%s: %zu read(s), %llu bytes\n", path, n,
            (unsigned long long)bytes);
    return 0;
}

static const rh_store_ops dir_ops = {
    .version = RH_STORE_OPS_VERSION,
    .read = dir_read,
    .order_containers = dir_order,
    .preview = dir_preview,
};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s STORE FILE...\n", argv[0]);
        return 2;
    }
    struct dir_store ds;
    ds.dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ds.dirfd < 0) {
        perror(argv[1]);
        return 1;
    }
    rh_store *store;
    int r = rh_store_open(argv[1], &dir_ops, &ds, &store);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rh_strerror(r));
        return 1;
    }
    size_t n = (size_t)argc - 2;
    int *results = malloc(n * sizeof(*results));
    if (!results) {
        rh_store_close(store);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        results[i] = INT_MIN; /* left so if the call fails early */
    r = rh_restore_files(store, n, (const char *const *)(argv + 2),
                         0, results);
    if (r < 0 && r != RH_EPARTIAL)
        fprintf(stderr, "rh_restore_files: %s\n", rh_strerror(r));
    for (size_t i = 0; i < n; i++) {
        const char *msg = results[i] == INT_MIN ? "not attempted"
            : results[i] == RH_NOT_A_STUB ? "not a stub, left alone"
            : rh_strerror(results[i]);
        printf("%s: %s\n", argv[2 + i], msg);
    }
    free(results);
    rh_store_close(store);
    close(ds.dirfd);
    return r == 0 ? 0 : 1;
}

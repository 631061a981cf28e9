/*
 * win-read — reads Windows dedup stubs (files whose reparse buffer is in user.ntfs_reparse_data, as
 * windedup-mk writes them) out of a chunk store through librehydrate's two read paths:
 *
 *     win-read cat DDP STUB         the file's bytes to stdout, by the lazy reader (reader.c) in 1 MiB
 *                                   preads, as the daemon reads
 *     win-read restore DDP STUB...  rh_restore_files in place; one line "RESULT PATH" per stub
 *
 * DDP is the {GUID}.ddp directory, opened with rh_store_open like any store. Exit 0 when every file
 * read or restored, 1 otherwise (the reasons on stderr).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "read/reader.h"
#include "store/format.h"
#include "store/format_windows.h"
#include "store/store.h"

static int cat(rh_store *s, const char *stub)
{
    uint8_t raw[WINSTORE_STUB_MAX];
    ssize_t n = lgetxattr(stub, WINSTORE_STUB_XATTR, raw, sizeof(raw));
    if (n < 0) {
        fprintf(stderr, "win-read: %s: %s: %s\n", stub, WINSTORE_STUB_XATTR, strerror(errno));
        return 1;
    }
    reader_file *f;
    int r = reader_open_stub(s, raw, (size_t)n, true, &f);
    if (r < 0) {
        fprintf(stderr, "win-read: %s: %s\n", stub, rh_strerror(r));
        return 1;
    }
    const streammap *m = f->map;
    static uint8_t buf[1 << 20];
    for (uint64_t off = 0; off < m->size;) {
        size_t got;
        if ((r = reader_pread(f, buf, sizeof(buf), off, &got)) < 0) {
            fprintf(stderr, "win-read: %s: at offset %llu: %s\n", stub, (unsigned long long)off, rh_strerror(r));
            reader_close(f);
            return 1;
        }
        if (fwrite(buf, 1, got, stdout) != got)
            return 1;
        off += got;
    }
    reader_close(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "cat") != 0 && strcmp(argv[1], "restore") != 0)) {
        fprintf(stderr, "usage: win-read cat DDP STUB | win-read restore DDP STUB...\n");
        return 2;
    }
    rh_store *s;
    int r = rh_store_open(argv[2], NULL, NULL, &s);
    if (r < 0) {
        fprintf(stderr, "win-read: %s: %s\n", argv[2], rh_strerror(r));
        return 1;
    }
    int status = 0;
    if (strcmp(argv[1], "cat") == 0) {
        status = cat(s, argv[3]);
    } else {
        size_t n = (size_t)argc - 3;
        int *results = calloc(n, sizeof(*results));
        rh_restore_files(s, n, (const char *const *)argv + 3, 0, results);
        for (size_t i = 0; i < n; i++) {
            printf("%d %s\n", results[i], argv[3 + i]);
            if (results[i] < 0) {
                fprintf(stderr, "win-read: %s: %s\n", argv[3 + i], rh_strerror(results[i]));
                status = 1;
            }
        }
        free(results);
    }
    rh_store_close(s);
    return status;
}

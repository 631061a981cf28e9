/*
 * winreparse-dump — prints, for each FILE, what winreparse_parse finds in its reparse xattr:
 *   FILE<TAB>FORMAT<TAB>SIZE<TAB>PARTS       (FORMAT as 0x0201, 0x0102 or 0x0103)
 * or FILE: at offset X: WHY on stderr. Exit 1 if any file failed. For tests/integration/winreparse.sh.
 * usage: winreparse-dump XATTR FILE...
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <rehydrate/rehydrate.h>

#include "windows/winreparse.h"

static int dump(const char *name, const char *path)
{
    ssize_t n = lgetxattr(path, name, NULL, 0); /* the size first: ntfs-3g gives EIO, not ERANGE */
    if (n < 0) {
        fprintf(stderr, "%s: %s: %s\n", path, name, strerror(errno));
        return 1;
    }
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf == NULL)
        return 1;
    ssize_t got = lgetxattr(path, name, buf, (size_t)n);
    if (got < 0) {
        fprintf(stderr, "%s: %s: %s\n", path, name, strerror(errno));
        free(buf);
        return 1;
    }
    winreparse r;
    int rc = winreparse_parse(buf, (size_t)got, &r);
    free(buf);
    if (rc == RH_ECORRUPT) {
        fprintf(stderr, "%s: at offset %#zx: %s\n", path, r.why_at, r.why);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(-rc));
        return 1;
    }
    printf("%s\t0x%04x\t%llu\t%zu\n", path, r.format, (unsigned long long)r.size, r.nrefs);
    winreparse_free(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: winreparse-dump XATTR FILE...\n");
        return 2;
    }
    int bad = 0;
    for (int i = 2; i < argc; i++)
        bad |= dump(argv[1], argv[i]);
    return bad;
}

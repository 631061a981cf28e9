/*
 * fuzz-main.c — replays fuzz inputs without libFuzzer (casync's test-fuzz idea): linked with one target
 * (tests/fuzz/fuzz-NAME.c) into the check program tests/fuzz/fuzz-NAME, it calls LLVMFuzzerTestOneInput
 * on every file named on the command line, and on every file of every directory named there. With no
 * argument it replays the target's corpus, $TOP_SRCDIR/tests/fuzz/corpus/NAME (NAME from argv[0]), which
 * is how `make check` runs it in every build, sanitized or not.
 *
 * Output is one TAP-like line, "ok 1 - fuzz-NAME: replayed K inputs", that the test scripts' counters
 * understand. A crash is the failure (the input being replayed is named on stderr first); so is finding
 * no input at all, which would otherwise pass a test that tests nothing.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the whole file into an allocation of exactly its size, so that a sanitizer sees any read past
 * the end of the input. */
static int replay_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        close(fd);
        return -EIO;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) {
            fprintf(stderr, "fuzz: %s: short read\n", path);
            free(buf);
            close(fd);
            return -EIO;
        }
        got += (size_t)n;
    }
    close(fd);
    if (!buf)
        abort();
    fprintf(stderr, "fuzz: replaying %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(size ? buf : NULL, size);
    free(buf);
    return 0;
}

/* Replays every regular file of dir (not recursively, in name order, skipping dot files). */
static int replay_dir(const char *dir, unsigned *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz: %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                abort();
        }
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n])
            abort();
        snprintf(names[n++], len, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (r == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            r = replay_file(names[i]);
            if (r == 0)
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return r;
}

static int replay(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    if (S_ISDIR(st.st_mode))
        return replay_dir(path, count);
    int r = replay_file(path);
    if (r == 0)
        (*count)++;
    return r;
}

int main(int argc, char **argv)
{
    /* "fuzz-NAME", also when run as ./fuzz-NAME or through a libtool wrapper ("lt-fuzz-NAME"). */
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strncmp(prog, "lt-", 3) == 0)
        prog += 3;
    const char *name = strncmp(prog, "fuzz-", 5) == 0 ? prog + 5 : prog;

    unsigned count = 0;
    int r = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && r == 0; i++)
            r = replay(argv[i], &count);
    } else {
        const char *top = getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : ".";
        size_t len = strlen(top) + strlen(name) + sizeof("/tests/fuzz/corpus/");
        char *dir = malloc(len);
        if (!dir)
            abort();
        snprintf(dir, len, "%s/tests/fuzz/corpus/%s", top, name);
        r = replay(dir, &count);
        free(dir);
    }
    printf("1..1\n");
    if (r < 0 || count == 0) {
        printf("not ok 1 - fuzz-%s: %s\n", name, r < 0 ? "an input could not be read" : "no input to replay");
        return 1;
    }
    printf("ok 1 - fuzz-%s: replayed %u inputs\n", name, count);
    return 0;
}

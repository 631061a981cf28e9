/*
 * stale.c — removes the temp files that a writer killed mid-way leaves in a store.
 *
 * Every writer goes through fs_create_temp, which names a temp file "NAME.tmp.PID.N" beside its final
 * NAME: containers "%08x.ctr.tmp.PID.N" (a backup), catalogs "NAME.snap.tmp.PID.N" and their unpacked
 * scratch copies "NAME.snap.plain.tmp.PID.N" (a backup), and the identity "rehydrate.store.tmp.PID.N"
 * (the creation of a store), and a rebuilt index "index.db.tmp.PID.N" with SQLite's companions of it
 * ("-journal", "-wal", "-shm"). Containers and catalogs are written only by a process holding the store
 * lock, so a caller that holds it knows that every such file is stale: no snapshot refers to a temp
 * container (containers are renamed into place before a catalog that uses them is written) and a temp
 * catalog is not a snapshot. The identity is written before any lock exists, and a reader that finds
 * the index damaged rebuilds it without the lock: their temp files are stale only once the process
 * named in them is gone. The index itself, and its journal, are SQLite's to recover: never touched.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>

#include "common/util.h"
#include "store/container.h"
#include "store/store.h"

/* Where fs_create_temp's suffix ".tmp.PID.N" starts in name, with *ret_pid the PID; -1 if it has none. */
static ssize_t temp_suffix(const char *name, long *ret_pid)
{
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        t = p;
    if (!t || t == name)
        return -1;
    const char *p = t + 5, *pid = p;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == pid || *p != '.' || !p[1])
        return -1;
    for (const char *q = p + 1; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    *ret_pid = strtol(pid, NULL, 10);
    return t - name;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static bool is_name(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* Whether `name` in directory `dir` (a store path) is a temp file of the store's own naming. */
static bool is_store_temp(const char *dir, const char *name, long *ret_pid)
{
    char base[256];
    size_t len = strlen(name);
    static const char *sqlite_companions[] = { "-journal", "-wal", "-shm" };
    for (size_t i = 0; i < ARRAY_SIZE(sqlite_companions); i++)
        if (strcmp(dir, ".") == 0 && ends_with(name, len, sqlite_companions[i]))
            len -= strlen(sqlite_companions[i]);
    if (len >= sizeof(base))
        return false;
    memcpy(base, name, len);
    base[len] = 0;
    ssize_t stem = temp_suffix(base, ret_pid);
    if (stem < 0)
        return false;
    if (strcmp(dir, "snapshots") == 0)
        return len == strlen(name) &&
               (ends_with(name, (size_t)stem, ".snap") || ends_with(name, (size_t)stem, ".snap.plain"));
    if (strcmp(dir, ".") == 0)
        return is_name(name, (size_t)stem, STORE_INDEX_FILE) ||
               (len == strlen(name) && is_name(name, (size_t)stem, STORE_IDENTITY_FILE));
    /* a container directory: "%08x.ctr" */
    if (stem != 12 || strncmp(name + 8, ".ctr", 4) != 0)
        return false;
    for (int i = 0; i < 8; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return true;
}

/* Whether process pid may still be running (and so still own its temp file). */
static bool pid_alive(long pid)
{
    if (pid <= 0 || pid > INT32_MAX)
        return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Removes the stale temp files of directory `dir`. The names are collected first: what readdir returns
 * after an entry was removed is unspecified. */
static int remove_in(rh_store *s, const char *dir, size_t *removed)
{
    int dfd = openat(s->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(dup(dfd));
    if (!d) {
        int e = -errno;
        close(dfd);
        return e;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        long pid;
        if (!is_store_temp(dir, de->d_name, &pid))
            continue;
        /* The identity's temp file belongs to a store creation, and an index's to a reader's rebuild:
         * neither takes the lock. */
        if (strcmp(dir, ".") == 0 && pid_alive(pid))
            continue;
        char **v = mem_grow(names, &cap, n, sizeof(*names), 16);
        if (v)
            names = v;
        if (!v || !(names[n] = mem_strdup(de->d_name)))
            r = -ENOMEM; /* the ones found so far are still removed */
        else
            n++;
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        if (unlinkat(dfd, names[i], 0) == 0)
            (*removed)++;
        else if (errno != ENOENT && r == 0)
            r = -errno;
        free(names[i]);
    }
    free(names);
    close(dfd);
    return r;
}

int store_remove_stale_temps(rh_store *s, size_t *ret_removed)
{
    if (s->rootfd < 0 || s->readonly)
        return -EROFS;
    static const char *dirs[] = { ".", "snapshots", "containers/data", "containers/stream" };
    size_t removed = 0;
    int r = 0;
    for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(dirs); i++)
        r = remove_in(s, dirs[i], &removed);
    if (ret_removed)
        *ret_removed = removed;
    return r;
}

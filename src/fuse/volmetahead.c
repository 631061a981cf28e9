/*
 * volmetahead.c — read-ahead of a volume's metadata (see volmetahead.h): a double-ended queue of
 * directories to warm, taken from the front; a listed directory's subdirectories go to the front, in
 * order, so the queue is the depth-first order a reader walks in.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/volmetahead.h"
#include "windows/winvolume.h"

#define QUEUE_MAX 1024 /* directories waiting at most; the last ones fall off */
#define MAX_JOBS 3

typedef struct item {
    vnode *parent; /* held (vnode_hold), one hold per item */
    char *name;
} item;

struct volmetahead {
    volume *v;
    item *q; /* a ring of QUEUE_MAX: head is the next to warm */
    size_t head, n;
    unsigned jobs;
};

typedef struct warm {
    uv_work_t work;
    volmetahead *m;
    item it;
} warm;

void volmetahead_new(volume *v, volmetahead **ret)
{
    volmetahead *m = xcalloc(1, sizeof(*m));
    m->v = v;
    m->q = xcalloc(QUEUE_MAX, sizeof(*m->q));
    *ret = m;
}

static void item_drop(volmetahead *m, item *it)
{
    vnode_forget(m->v, it->parent, 1);
    free(it->name);
}

void volmetahead_free(volmetahead *m)
{
    if (!m)
        return;
    for (size_t k = 0; k < m->n; k++)
        item_drop(m, &m->q[(m->head + k) % QUEUE_MAX]);
    free(m->q);
    free(m);
}

/* Reads the inode and any reparse data of every entry of it.parent/it.name into the kernel's caches. */
static void warm_work(uv_work_t *w)
{
    const item *it = &((warm *)w)->it;
    int fd = openat(it->parent->fd, it->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char path[PATH_MAX];
    for (struct dirent *de; (de = readdir(dp));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)))
            continue;
        if (snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", fd, de->d_name) >= (int)sizeof(path))
            continue;
        uint8_t *b = NULL;
        size_t len;
        const char *x;
        if (winvolume_read_reparse(path, false, &b, &len, &x) > 0)
            free(b);
    }
    closedir(dp);
}

static void start_jobs(volmetahead *m);

static void warm_done(uv_work_t *w, int status)
{
    warm *wj = (warm *)w;
    volmetahead *m = wj->m;
    item_drop(m, &wj->it);
    free(wj);
    m->jobs--;
    start_jobs(m);
}

static void start_jobs(volmetahead *m)
{
    while (m->jobs < MAX_JOBS && m->n) {
        warm *wj = xcalloc(1, sizeof(*wj));
        wj->m = m;
        wj->it = m->q[m->head];
        m->head = (m->head + 1) % QUEUE_MAX;
        m->n--;
        if (uv_queue_work(m->v->loop, &wj->work, warm_work, warm_done) < 0) {
            item_drop(m, &wj->it);
            free(wj);
            return;
        }
        m->jobs++;
    }
}

void volmetahead_listed(volmetahead *m, vnode *dir, char **names, size_t n)
{
    /* To the front, last first, so that they come out in the listing's order; what the ring cannot
     * hold falls off its back. */
    for (size_t k = n; k-- > 0;) {
        if (m->n == QUEUE_MAX) {
            item_drop(m, &m->q[(m->head + m->n - 1) % QUEUE_MAX]);
            m->n--;
        }
        m->head = (m->head + QUEUE_MAX - 1) % QUEUE_MAX;
        vnode_hold(m->v, dir);
        m->q[m->head] = (item){ dir, names[k] };
        m->n++;
    }
    free(names);
    start_jobs(m);
}

/*
 * finish.c — phase 3 of a restore (see layout.h): owners, xattrs, modes and times, from the records
 * phase 1 left, each entry's metadata read from the catalog again, directories after their contents.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "store/reparse.h"
#include "tree/layout_internal.h"

static struct timespec ts_of(int64_t ns)
{
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        sec--;
    }
    return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = (long)rem };
}

/*
 * Owner, xattrs, mode, times of one entry, every call relative to dirfd and never following the
 * entry. The order matters: chown clears setuid/setgid and security.capability, so xattrs and mode
 * come after it; xattrs come before the mode because a non-root owner cannot set user.* xattrs on a
 * read-only file and an ACL xattr rewrites the mode bits; times come last since the others change
 * ctime only, but setting them must not be undone by anything after.
 */
static void finish_one(layout *l, int dirfd, uint64_t dirrec, const char *name, const catalog_entry *e)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        layout_warn(l, dirrec, name, -errno, "stat");
        return;
    }
    if ((st.st_mode & S_IFMT) != layout_ifmt_of(e->type)) {
        layout_warn(l, dirrec, name, -EEXIST, "replaced by another kind of file since the layout");
        return;
    }
    bool lnk = e->type == CT_SYMLINK;
    if (geteuid() == 0 && fchownat(dirfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
        layout_warn(l, dirrec, name, -errno, "chown");
    char proc[64 + NAME_MAX];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dirfd, name);
    for (uint32_t i = 0; i < e->xattr_count; i++) {
        const char *xn = (const char *)e->xattrs[i].name;
        if (!strcmp(xn, REPARSE_XATTR))
            continue; /* only our stubs carry one, and only while they are stubs */
        if (lsetxattr(proc, xn, e->xattrs[i].value, e->xattrs[i].value_len, 0) == 0)
            continue;
        int err = errno;
        _cleanup_(freep) char *what = xasprintf("set xattr %s", xn);
        layout_report(l, dirrec, name, -err, what, err != ENOTSUP && err != EPERM);
    }
    if (!lnk && fchmodat(dirfd, name, e->mode & 07777, AT_SYMLINK_NOFOLLOW) < 0)
        layout_warn(l, dirrec, name, -errno, "chmod");
    struct timespec ts[2] = { ts_of(e->atime_ns), ts_of(e->mtime_ns) };
    if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        layout_warn(l, dirrec, name, -errno, "set times");
}

/* Where layout_finish and layout_finish_stubs are: the open directory of the last record finished. */
typedef struct finisher {
    uint64_t cur; /* record of that directory */
    int dirfd;
    bool owned;
} finisher;

/* Finishes record i; failures are reported and counted, so it returns 0. */
static int finish_rec(layout *l, finisher *fs, size_t i)
{
    rec *r = &l->recs[i];
    if (r->idx == CATALOG_NONE || r->finished)
        return 0; /* a parent made for a subtree keeps its default metadata */
    if (r->parent != fs->cur || fs->dirfd < 0) {
        if (fs->owned)
            close(fs->dirfd);
        fs->cur = r->parent;
        fs->dirfd = layout_open_rec_dir(l, fs->cur, &fs->owned);
    }
    const char *name = *layout_rec_name(l, i) ? layout_rec_name(l, i) : ".";
    if (fs->dirfd < 0) {
        layout_warn(l, r->parent, name, fs->dirfd, "open directory");
        return 0;
    }
    catalog_entry *e;
    int rc = catalog_get(l->c, r->idx, &e);
    if (rc < 0) {
        layout_warn(l, r->parent, name, rc, "read catalog entry");
        return 0;
    }
    if (e->damage) /* a stand-in for a damaged root: its metadata is lost, the target's is kept */
        layout_warn(l, r->parent, name, e->damage, "metadata lost (catalog entry damaged)");
    else
        finish_one(l, fs->dirfd, r->parent, name, e);
    catalog_entry_free(e);
    r->finished = true;
    return 0;
}

int layout_finish_stubs(layout *l, size_t from, size_t to)
{
    if (!l || from > to || to > l->nstubs)
        return -EINVAL;
    finisher fs = { NO_REC, -1, false };
    int fatal = 0;
    for (size_t i = from; i < to && !fatal; i++)
        fatal = finish_rec(l, &fs, l->stubs[i].rec);
    if (fs.owned)
        close(fs.dirfd);
    return fatal;
}

int layout_finish(layout *l)
{
    if (!l)
        return -EINVAL;
    finisher fs = { NO_REC, l->tfd, false };
    int fatal = 0;
    for (size_t i = l->nrecs; i-- > 0 && !fatal;)
        fatal = finish_rec(l, &fs, i);
    if (fs.owned)
        close(fs.dirfd);
    return fatal;
}


/*
 * layout.c — phase 1 of a restore (see layout.h), and the records that phase 3 (finish.c) walks.
 *
 * Phase 1 walks the catalog depth-first and keeps one directory fd open per level of the current path,
 * so every entry is created relative to its parent's fd and nothing is ever resolved through a path
 * that a symlink in the target could redirect. What it creates (or keeps, when resuming) is recorded
 * in a compact array: catalog index, parent record and an offset into a name arena. That array is in
 * pre-order, so walking it backwards finishes every directory after all its contents, and it is all
 * phase 3 needs: it reopens each parent directory from the target fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) and reads each entry's metadata from the catalog again, so nothing held since
 * phase 1 (no fd, no entry) is needed and memory stays at a small record plus a name per entry.
 *
 * Hard-link members are deferred to the end of phase 1, when every leader that will exist does: a
 * member is linked to its leader's path, or becomes a stub of its own (and the group's new leader)
 * when the leader was not restored.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#include "common/util.h"
#include "tree/beneath.h"
#include "tree/layout_internal.h"
#include "store/reparse.h"

/* ---- Records, names and paths ---- */

/* Orders leaders and members by their first field (the group), members then by catalog index. */
static int cmp_group(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_member(const void *a, const void *b)
{
    const member *x = a, *y = b;
    return x->group != y->group ? cmp_group(a, b) : x->idx < y->idx ? -1 : x->idx > y->idx;
}

static uint64_t add_rec(layout *l, uint64_t idx, uint64_t parent, const char *name)
{
    l->recs = xgrow(l->recs, &l->caprecs, l->nrecs, sizeof(*l->recs), 64);
    l->recs[l->nrecs] = (rec){ idx, parent, l->names.len, false };
    buf_append(&l->names, name, strlen(name) + 1);
    if (idx != CATALOG_NONE)
        l->entries++;
    return l->nrecs++;
}

const char *layout_rec_name(const layout *l, uint64_t r)
{
    return (const char *)l->names.data + l->recs[r].name_off;
}

static void path_append(const layout *l, uint64_t r, bytebuf *b)
{
    if (r == NO_REC)
        return;
    path_append(l, l->recs[r].parent, b);
    const char *n = layout_rec_name(l, r);
    if (*n && b->len)
        buf_append(b, "/", 1);
    buf_append(b, n, strlen(n));
}

/* The path of record r relative to the target ("" for the target itself), plus "/name" if name. */
static char *rec_path(const layout *l, uint64_t r, const char *name)
{
    bytebuf b = { 0 };
    path_append(l, r, &b);
    if (name && b.len)
        buf_append(&b, "/", 1);
    if (name)
        buf_append(&b, name, strlen(name));
    buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Reports one entry (record dir, optional name) to the caller; counted as an error if `error`. */
void layout_report(layout *l, uint64_t dir, const char *name, int code, const char *what, bool error)
{
    if (error)
        l->errors++;
    if (!l->o.warn)
        return;
    _cleanup_(freep) char *p = rec_path(l, dir, name);
    l->o.warn(l->o.ud, *p ? p : ".", code, what);
}

void layout_warn(layout *l, uint64_t dir, const char *name, int code, const char *what)
{
    layout_report(l, dir, name, code, what, true);
}

/* ---- Directories and temp files of the layout ---- */

/* The directory of record r as an fd (*owned says whether the caller closes it). */
int layout_open_rec_dir(layout *l, uint64_t r, bool *owned)
{
    *owned = false;
    if (r == NO_REC)
        return l->tfd;
    _cleanup_(freep) char *p = rec_path(l, r, NULL);
    if (!*p)
        return l->tfd;
    int fd = tree_open_beneath(l->tfd, p, O_RDONLY | O_DIRECTORY);
    *owned = fd >= 0;
    return fd;
}

/* In a directory that existed before, removes the temp files of an earlier run (stale_temp). */
static void clean_temps(layout *l, int dirfd, uint64_t dirrec)
{
    DIR *d = tree_dir_stream(dirfd);
    if (!d) {
        layout_warn(l, dirrec, NULL, -errno, "list directory");
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!tree_stale_temp(dirfd, de->d_name))
            continue;
        if (unlinkat(dirfd, de->d_name, 0) < 0)
            layout_warn(l, dirrec, de->d_name, -errno, "remove leftover temp file");
    }
    closedir(d);
}

/* Creates a fresh temp name below dirfd: either an empty 0600 file (returns its fd) or, when
 * link_dirfd >= 0, a hard link to (link_dirfd, link_name) (returns 0). */
static int make_temp(layout *l, int dirfd, char tmp[32], int link_dirfd, const char *link_name)
{
    for (int i = 0; i < 100; i++) {
        uint32_t x = (uint32_t)getpid() * 2654435761u ^ ++l->temp_seq * 40503u ^ (uint32_t)now_ns();
        snprintf(tmp, 32, TREE_TEMP_PREFIX "%08x", x);
        int fd = link_dirfd >= 0
                     ? linkat(link_dirfd, link_name, dirfd, tmp, 0)
                     : openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd < 0 ? -errno : fd;
    }
    return -EEXIST;
}

/* ---- Phase 1 ---- */

static int lay_entry(layout *l, int dirfd, uint64_t dirrec, uint64_t idx, const catalog_entry *e);

/* Looks at what is at (dirfd, name): 1 and *st when something is, 0 when nothing, or an error. */
static int look(layout *l, int dirfd, const char *name, struct stat *st)
{
    if (!l->may_exist)
        return 0; /* the target was empty: EEXIST from creation reports the unexpected */
    if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT ? 0 : -errno;
}

/* A child that the catalog could not give: refused (unsafe name) or lost (damaged), never fatal. */
static void skip_damaged(layout *l, uint64_t dirrec, const catalog_entry *e)
{
    if (e->damage == RH_EUNSAFE) {
        layout_warn(l, dirrec, (const char *)e->name, RH_EUNSAFE, "refused (entry and its subtree skipped)");
        return;
    }
    _cleanup_(freep) char *what =
        xasprintf("catalog entry %llu is damaged: lost with, for a directory, its contents",
                  (unsigned long long)e->idx);
    layout_warn(l, dirrec, NULL, e->damage, what);
}

/* A walk of the catalog directory that record dirrec, open at dirfd, lays out. */
typedef struct laydir {
    layout *l;
    int dirfd;
    uint64_t dirrec;
    bool failed; /* a child failed the layout: the walk's error is that child's, not the catalog's */
} laydir;

static int lay_child(void *ctx, uint64_t k, const catalog_entry *e)
{
    laydir *d = ctx;
    int r = lay_entry(d->l, d->dirfd, d->dirrec, e->idx, e);
    d->failed = r < 0;
    return r;
}

static int lay_damaged(void *ctx, uint64_t k, const catalog_entry *e)
{
    laydir *d = ctx;
    skip_damaged(d->l, d->dirrec, e);
    return 0;
}

static int lay_children(layout *l, int dirfd, uint64_t dirrec, uint64_t diridx, const catalog_entry *dir)
{
    if (dir->child_count == 0)
        return 0; /* known from its entry: no need to read the catalog again */
    static const catalog_walk_ops ops = { .child = lay_child, .damaged = lay_damaged };
    laydir d = { l, dirfd, dirrec, false };
    int r = catalog_walk_dir(l->c, diridx, 0, &ops, &d);
    if (r < 0 && !d.failed) {
        layout_warn(l, dirrec, NULL, r, "read catalog directory (its contents are skipped)");
        return 0;
    }
    return r;
}

static int lay_dir(layout *l, int dirfd, uint64_t dirrec, uint64_t idx, const catalog_entry *e,
                   const char *name)
{
    struct stat st;
    int r = look(l, dirfd, name, &st);
    bool existed = r == 1 && S_ISDIR(st.st_mode);
    if (r == 1 && !existed)
        r = tree_clear_way(dirfd, name, &st);
    if (r >= 0 && !existed && mkdirat(dirfd, name, 0700) < 0)
        r = -errno;
    int fd = r >= 0 ? openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd < 0) {
        layout_warn(l, dirrec, name, r < 0 ? r : -errno, existed ? "open directory" : "create directory");
        return 0;
    }
    uint64_t me = add_rec(l, idx, dirrec, name);
    if (existed)
        clean_temps(l, fd, me);
    r = lay_children(l, fd, me, idx, e);
    close(fd);
    return r;
}

/*
 * Makes the regular file (dirfd, name): a stub when e has data to rehydrate, else an empty file.
 * `replace`: something not a directory may be in the way. -ENOTSUP means the target cannot hold stubs.
 */
static int make_file(layout *l, int dirfd, const char *name, const catalog_entry *e, bool stub, bool replace)
{
    if (!stub) {
        if (replace && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
            return -errno;
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        close(fd);
        return 0;
    }
    char tmp[32];
    int fd = make_temp(l, dirfd, tmp, -1, NULL);
    if (fd < 0)
        return fd;
    reparse_point rp;
    reparse_make(&rp, l->s->cfg.uuid, e->size, &e->stream);
    uint8_t enc[REPARSE_SIZE];
    reparse_encode(&rp, enc);
    /* The xattr first: a temp file that a crash leaves behind is then recognisable as ours. */
    int r = fsetxattr(fd, REPARSE_XATTR, enc, sizeof(enc), 0) < 0 ? -errno : 0;
    if (r == 0 && ftruncate(fd, (off_t)e->size) < 0)
        r = -errno;
    close(fd);
    if (r < 0) {
        unlinkat(dirfd, tmp, 0);
        return r;
    }
    return tree_commit_temp(dirfd, tmp, name, replace);
}

static void add_stub(layout *l, uint64_t dirrec, const char *name, const catalog_entry *e, uint64_t me)
{
    l->stubs = xgrow(l->stubs, &l->capstubs, l->nstubs, sizeof(*l->stubs), 64);
    l->stubs[l->nstubs++] = (layout_stub){ rec_path(l, dirrec, name), e->size, e->alloc, me };
}

/* A regular file that is not a hard-link member (or a member whose leader was not restored). */
static int lay_reg(layout *l, int dirfd, uint64_t dirrec, uint64_t idx, const catalog_entry *e,
                   const char *name)
{
    bool nodata = (e->flags & CF_UNREADABLE) || (!e->has_stream && e->size > 0);
    bool stub = !nodata && e->size > 0;
    struct stat st;
    int r = look(l, dirfd, name, &st);
    if (r == 1 && l->o.resume && S_ISREG(st.st_mode)) {
        stub = tree_has_reparse(dirfd, name); /* else it was rehydrated: it counts as restored */
        nodata = false;
    } else {
        if (r == 1 && S_ISDIR(st.st_mode))
            r = tree_rmtree_at(dirfd, name);
        if (r >= 0)
            r = make_file(l, dirfd, name, e, stub, r == 1);
        if (r < 0) {
            layout_warn(l, dirrec, name, r, stub ? "create stub" : "create file");
            return r == -ENOTSUP ? r : 0;
        }
    }
    uint64_t me = add_rec(l, idx, dirrec, name);
    if (e->link_group != CATALOG_NONE && !(e->flags & CF_HARDLINK)) {
        l->leaders = xgrow(l->leaders, &l->capleaders, l->nleaders, sizeof(*l->leaders), 64);
        l->leaders[l->nleaders++] = (leader){ e->link_group, me };
    }
    if (stub)
        add_stub(l, dirrec, name, e, me);
    if (nodata)
        layout_warn(l, dirrec, name, -ENODATA, "no data in snapshot");
    return 0;
}

mode_t layout_ifmt_of(uint8_t type)
{
    static const mode_t f[] = { [CT_REG] = S_IFREG,  [CT_DIR] = S_IFDIR,  [CT_SYMLINK] = S_IFLNK,
                                [CT_CHR] = S_IFCHR,  [CT_BLK] = S_IFBLK,  [CT_FIFO] = S_IFIFO,
                                [CT_SOCK] = S_IFSOCK };
    return type < ARRAY_SIZE(f) ? f[type] : 0;
}

/* Symlinks, fifos, sockets and device nodes. */
static int lay_other(layout *l, int dirfd, uint64_t dirrec, uint64_t idx, const catalog_entry *e,
                     const char *name)
{
    struct stat st;
    int r = look(l, dirfd, name, &st);
    if (r == 1 && l->o.resume && (st.st_mode & S_IFMT) == layout_ifmt_of(e->type)) {
        add_rec(l, idx, dirrec, name);
        return 0;
    }
    if (r == 1)
        r = tree_clear_way(dirfd, name, &st);
    if (r >= 0) {
        if (e->type != CT_SYMLINK)
            r = mknodat(dirfd, name, layout_ifmt_of(e->type) | 0600, (dev_t)e->rdev) < 0 ? -errno : 0;
        else if (!e->target || !*e->target)
            r = -EINVAL; /* the backup could not read the link */
        else
            r = symlinkat((const char *)e->target, dirfd, name) < 0 ? -errno : 0;
    }
    if (r < 0) {
        layout_warn(l, dirrec, name, r, e->type == CT_SYMLINK ? "create symlink" : "create special file");
        return 0;
    }
    add_rec(l, idx, dirrec, name);
    return 0;
}

static int lay_entry(layout *l, int dirfd, uint64_t dirrec, uint64_t idx, const catalog_entry *e)
{
    if (!tree_name_safe(e->name, e->name_len)) {
        layout_warn(l, dirrec, NULL, RH_EUNSAFE, "unsafe name in catalog (entry and its subtree skipped)");
        return 0;
    }
    const char *name = (const char *)e->name;
    switch (e->type) {
    case CT_DIR:
        return lay_dir(l, dirfd, dirrec, idx, e, name);
    case CT_REG:
        if (e->flags & CF_HARDLINK) {
            l->members = xgrow(l->members, &l->capmembers, l->nmembers, sizeof(*l->members), 64);
            l->members[l->nmembers++] = (member){ e->link_group, idx, dirrec, l->names.len };
            buf_append(&l->names, name, strlen(name) + 1);
            return 0;
        }
        return lay_reg(l, dirfd, dirrec, idx, e, name);
    default:
        return lay_other(l, dirfd, dirrec, idx, e, name);
    }
}

/* Links member name (dirfd) to the leader of record lr. 1 when kept as it was (resume). */
static int link_member(layout *l, int dirfd, const char *name, uint64_t lr)
{
    bool owned;
    int ldfd = layout_open_rec_dir(l, l->recs[lr].parent, &owned);
    if (ldfd < 0)
        return ldfd;
    const char *lname = layout_rec_name(l, lr);
    struct stat st, lst;
    int r = look(l, dirfd, name, &st);
    if (r == 1 && l->o.resume && S_ISREG(st.st_mode) &&
        fstatat(ldfd, lname, &lst, AT_SYMLINK_NOFOLLOW) == 0 && lst.st_ino == st.st_ino &&
        lst.st_dev == st.st_dev) {
        r = 1; /* linked by the earlier run */
    } else if (r == 1) {
        char tmp[32];
        r = S_ISDIR(st.st_mode) ? tree_rmtree_at(dirfd, name) : 0;
        if (r == 0)
            r = make_temp(l, dirfd, tmp, ldfd, lname);
        if (r == 0)
            r = tree_commit_temp(dirfd, tmp, name, true);
    } else if (r == 0) {
        r = linkat(ldfd, lname, dirfd, name, 0) < 0 ? -errno : 0;
    }
    if (owned)
        close(ldfd);
    return r;
}

/* Lays out member m; *lr is the record members of its group link to (NO_REC: none yet). */
static int lay_member(layout *l, const member *m, uint64_t *lr)
{
    const char *name = (const char *)l->names.data + m->name_off;
    catalog_entry *e;
    int r = catalog_get(l->c, m->idx, &e);
    if (r < 0) {
        layout_warn(l, m->parent, name, r, "read catalog entry");
        return 0;
    }
    bool owned;
    int dirfd = layout_open_rec_dir(l, m->parent, &owned);
    if (dirfd < 0) {
        layout_warn(l, m->parent, name, dirfd, "open directory");
        catalog_entry_free(e);
        return 0;
    }
    if (*lr != NO_REC) {
        r = link_member(l, dirfd, name, *lr);
        if (r >= 0) {
            add_rec(l, m->idx, m->parent, name);
            r = 0;
        } else {
            layout_warn(l, m->parent, name, r, "hard link (restored as a separate file)");
        }
    }
    if (*lr == NO_REC || r < 0) {
        size_t before = l->nrecs;
        r = lay_reg(l, dirfd, m->parent, m->idx, e, name); /* the group's data, as its own stub */
        if (*lr == NO_REC && l->nrecs > before)
            *lr = before; /* the group's new leader */
    }
    if (owned)
        close(dirfd);
    catalog_entry_free(e);
    return r;
}

/*
 * Enters (making it with mode 0700 if missing) directory `name` below dirfd, one of a subtree's parents,
 * and returns its fd; *dirrec becomes its record. Such parents are not finished in phase 3.
 */
static int enter_parent(layout *l, int dirfd, uint64_t *dirrec, const char *name)
{
    size_t i;
    for (i = 0; i < l->nimplicit; i++)
        if (l->recs[l->implicit[i]].parent == *dirrec && !strcmp(layout_rec_name(l, l->implicit[i]), name))
            break;
    struct stat st;
    bool existed = false;
    int r = 0;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        existed = S_ISDIR(st.st_mode);
        if (!existed)
            r = l->may_exist ? tree_clear_way(dirfd, name, &st) : -EEXIST;
    } else if (errno != ENOENT) {
        r = -errno;
    }
    if (r == 0 && !existed && mkdirat(dirfd, name, 0700) < 0)
        r = -errno;
    int fd = r == 0 ? openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (r == 0 && fd < 0)
        r = -errno;
    if (r < 0) {
        layout_warn(l, *dirrec, name, r, "create parent directory (subtree skipped)");
        return r;
    }
    if (i == l->nimplicit) {
        l->implicit = xrealloc(l->implicit, (l->nimplicit + 1) * sizeof(*l->implicit));
        l->implicit[l->nimplicit++] = add_rec(l, CATALOG_NONE, *dirrec, name);
    }
    *dirrec = l->implicit[i];
    if (existed && l->may_exist)
        clean_temps(l, fd, *dirrec);
    return fd;
}

/* Lays out the subtree at catalog index idx, whose path (normalized, non-empty) is `path`. */
static int lay_subtree(layout *l, const char *path, uint64_t idx)
{
    _cleanup_(freep) char *p = xstrdup(path);
    int dirfd = l->tfd;
    uint64_t dirrec = NO_REC;
    char *comp = p, *slash;
    while ((slash = strchr(comp, '/'))) {
        *slash = 0;
        int fd = enter_parent(l, dirfd, &dirrec, comp);
        if (dirfd != l->tfd)
            close(dirfd);
        if (fd < 0)
            return 0; /* reported; the other subtrees go on */
        dirfd = fd;
        comp = slash + 1;
    }
    catalog_entry *e;
    int r = catalog_get(l->c, idx, &e);
    if (r == 0) {
        r = lay_entry(l, dirfd, dirrec, idx, e);
        catalog_entry_free(e);
    }
    if (dirfd != l->tfd)
        close(dirfd);
    return r;
}

/* "a//b/" -> "a/b": the form in which subtrees are compared. */
static char *normalize(const char *path)
{
    char *out = xmalloc(strlen(path) + 1), *o = out;
    for (const char *s = path; *s; s++)
        if (*s != '/' || (o > out && o[-1] != '/'))
            *o++ = *s;
    if (o > out && o[-1] == '/')
        o--;
    *o = 0;
    return out;
}

/* True when b is a or lies below it. */
static bool covers(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == 0 || b[n] == '/');
}

static int target_empty(int tfd)
{
    DIR *d = tree_dir_stream(tfd);
    if (!d)
        return -errno;
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            r = -ENOTEMPTY;
    closedir(d);
    return r;
}

static int lay_all(layout *l, char **paths, const uint64_t *idxs, size_t n)
{
    int r = 0;
    bool whole = n == 0;
    for (size_t i = 0; i < n; i++)
        whole |= !*paths[i];
    if (whole) {
        catalog_entry *root;
        r = catalog_get(l->c, 0, &root);
        if (r < 0)
            return r;
        uint64_t me = add_rec(l, 0, NO_REC, "");
        if (l->may_exist)
            clean_temps(l, l->tfd, me);
        r = lay_children(l, l->tfd, me, 0, root);
        catalog_entry_free(root);
    } else {
        /* A subtree that is a file of the snapshot's root has its temp files in the target itself. */
        if (l->may_exist)
            clean_temps(l, l->tfd, NO_REC);
        for (size_t i = 0; i < n && r == 0; i++) {
            bool dup = false; /* a subtree inside another (or given twice) is laid out once */
            for (size_t j = 0; j < n && !dup; j++)
                dup = j != i && covers(paths[j], paths[i]) && (strcmp(paths[i], paths[j]) || j < i);
            if (!dup)
                r = lay_subtree(l, paths[i], idxs[i]);
        }
    }
    /* Every leader that will exist does now; members meet their groups in sorted order. */
    if (l->nmembers == 0)
        return r;
    if (l->nleaders)
        qsort(l->leaders, l->nleaders, sizeof(*l->leaders), cmp_group);
    qsort(l->members, l->nmembers, sizeof(*l->members), cmp_member);
    uint64_t lr = NO_REC;
    for (size_t i = 0; i < l->nmembers && r == 0; i++) {
        const member *m = &l->members[i];
        if (i == 0 || m->group != m[-1].group) {
            const leader *f =
                l->nleaders ? bsearch(&m->group, l->leaders, l->nleaders, sizeof(*f), cmp_group) : NULL;
            lr = f ? f->rec : NO_REC;
        }
        r = lay_member(l, m, &lr);
    }
    return r;
}

int layout_create(rh_store *s, catalog *c, int targetfd, const char *const *subtrees, size_t n,
                  const layout_options *o, layout **ret)
{
    if (!s || !c || targetfd < 0 || (n && !subtrees) || !ret)
        return -EINVAL;
    layout_options opt = o ? *o : (layout_options){ 0 };
    char **paths = xcalloc(n ? n : 1, sizeof(*paths));
    uint64_t *idxs = xcalloc(n ? n : 1, sizeof(*idxs));
    struct stat st;
    int r = fstat(targetfd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    for (size_t i = 0; i < n && r == 0; i++) {
        paths[i] = subtrees[i] ? normalize(subtrees[i]) : NULL;
        r = paths[i] ? catalog_lookup_path(c, paths[i], &idxs[i]) : -EINVAL;
    }
    if (r == 0 && !opt.force && !opt.resume)
        r = target_empty(targetfd);
    layout *l = NULL;
    if (r == 0) {
        l = xcalloc(1, sizeof(*l));
        *l = (layout){ .s = s, .c = c, .o = opt, .may_exist = opt.force || opt.resume };
        l->tfd = fcntl(targetfd, F_DUPFD_CLOEXEC, 3);
        r = l->tfd < 0 ? -errno : lay_all(l, paths, idxs, n);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    free(idxs);
    if (r < 0) {
        layout_free(l);
        return r;
    }
    *ret = l;
    return 0;
}

size_t layout_stub_count(const layout *l) { return l ? l->nstubs : 0; }

const layout_stub *layout_stub_get(const layout *l, size_t i)
{
    return l && i < l->nstubs ? &l->stubs[i] : NULL;
}

uint64_t layout_entries(const layout *l) { return l ? l->entries : 0; }
uint64_t layout_errors(const layout *l) { return l ? l->errors : 0; }

void layout_free(layout *l)
{
    if (!l)
        return;
    if (l->tfd >= 0)
        close(l->tfd);
    for (size_t i = 0; i < l->nstubs; i++)
        free(l->stubs[i].path);
    free(l->stubs);
    free(l->recs);
    buf_free(&l->names);
    free(l->members);
    free(l->leaders);
    free(l->implicit);
    free(l);
}

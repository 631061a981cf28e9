/*
 * backup.c — one backup run: take the store lock, open the index and the previous snapshot, walk the
 * source depth-first (relative to directory fds, never following symlinks), feed regular files to the
 * pipeline, then seal containers, commit the index and commit the catalog, in that order, so that a
 * crash at any point leaves every committed snapshot readable and no snapshot that refers to missing
 * data.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "backup/backup.h"
#include "backup/pipeline.h"
#include "backup/walk.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"

#define HARDLINK_MAP_INITIAL 64

/* (dev, ino) → catalog handle of the first entry seen for an inode with more than one link. */
typedef struct link_map {
    struct link_slot {
        uint64_t dev, ino, handle;
        bool used;
    } *v;
    size_t n, cap;
} link_map;

static uint64_t *link_find(link_map *m, uint64_t dev, uint64_t ino, bool insert)
{
    if (insert && (m->n + 1) * 2 >= m->cap) {
        link_map old = *m;
        m->cap = old.cap ? 2 * old.cap : HARDLINK_MAP_INITIAL;
        m->v = xcalloc(m->cap, sizeof(*m->v));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.v[i].used)
                *link_find(m, old.v[i].dev, old.v[i].ino, true) = old.v[i].handle;
        free(old.v);
    }
    if (!m->cap)
        return NULL;
    size_t i = (size_t)((ino * 0x9e3779b97f4a7c15ull) ^ dev) & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        struct link_slot *s = &m->v[i];
        if (!s->used) {
            if (!insert)
                return NULL;
            *s = (struct link_slot){ dev, ino, CATALOG_NONE, true };
            m->n++;
            return &s->handle;
        }
        if (s->dev == dev && s->ino == ino)
            return &s->handle;
    }
}

typedef struct walker {
    backup *b;
    link_map links;
    dev_t store_dev; /* the store itself is never backed up, even when it lies inside the source */
    ino_t store_ino;
    bytebuf path; /* the path of the current directory relative to the source, NUL-terminated */
    size_t since_poll;
} walker;

static void on_timer(uv_timer_t *t)
{
    backup *b = t->data;
    b->st->seconds = mono_seconds() - b->started;
    if (b->o->progress)
        b->o->progress(b->o->ud, b->st, false);
}

/* Appends "/name" ("name" at the top) to w->path; returns the old length for path_pop. */
static size_t path_push(walker *w, const char *name)
{
    size_t old = w->path.len;
    if (old)
        w->path.data[old - 1] = '/';
    buf_append(&w->path, name, strlen(name) + 1);
    return old;
}

static void path_pop(walker *w, size_t old)
{
    w->path.len = old;
    if (old)
        w->path.data[old - 1] = 0;
}

/* The entry of the previous snapshot with the same name in directory prev_dir, or NULL. */
static catalog_entry *prev_child(backup *b, uint64_t prev_dir, const char *name)
{
    uint64_t idx;
    catalog_entry *e = NULL;
    if (!b->prev || prev_dir == CATALOG_NONE ||
        catalog_lookup(b->prev, prev_dir, (const uint8_t *)name, strlen(name), &idx) < 0 ||
        catalog_get(b->prev, idx, &e) < 0)
        return NULL;
    e->parent = idx; /* reused below as "index of this entry in the previous catalog" */
    return e;
}

static bool unchanged(const catalog_entry *old, const catalog_entry *now)
{
    /* Members of a hard-link group carry the group's stream too, so any member can be reused. */
    return old && old->type == CT_REG && old->has_stream && !(old->flags & CF_UNREADABLE) &&
           old->size == now->size && old->mtime_ns == now->mtime_ns && old->ctime_ns == now->ctime_ns &&
           old->ino == now->ino && old->dev == now->dev;
}

static int walk_dir(walker *w, int dirfd, uint64_t dir_handle, uint64_t prev_dir);

static void walk_one(walker *w, int dirfd, uint64_t dir_handle, uint64_t prev_dir, const char *name)
{
    backup *b = w->b;
    size_t saved = path_push(w, name);
    const char *path = (const char *)w->path.data;
    struct stat st;
    catalog_entry e = { 0 };
    int fd = -1, r;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        pipeline_warn(b, path, -errno, "stat");
        goto out;
    }
    if (S_ISDIR(st.st_mode) && st.st_dev == w->store_dev && st.st_ino == w->store_ino)
        goto out;
    if (!walk_type_of(st.st_mode))
        goto out;
    if (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size > 0)) {
        int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
        fd = openat(dirfd, name, flags | O_NOATIME);
        if (fd < 0 && errno == EPERM)
            fd = openat(dirfd, name, flags); /* O_NOATIME needs ownership or CAP_FOWNER */
    }
    r = walk_fill_entry(dirfd, name, fd, &st, &e);
    if (r < 0) {
        /* Keep the entry with what stat said, so that the tree stays complete. */
        pipeline_warn(b, path, r, S_ISLNK(st.st_mode) ? "readlink" : "listxattr");
        memset(&e, 0, sizeof(e));
        walk_fill_entry(dirfd, name, -1, &(struct stat){ .st_mode = st.st_mode & S_IFMT }, &e);
        e.mode = st.st_mode;
    }
    uint64_t h = catalog_writer_add(b->cw, dir_handle, &e);

    switch (e.type) {
    case CT_DIR:
        b->st->dirs++;
        if (fd < 0) {
            pipeline_warn(b, path, -errno, "open directory");
            catalog_writer_set_flags(b->cw, h, CF_UNREADABLE);
        } else {
            catalog_entry *old = prev_child(b, prev_dir, name);
            uint64_t prev_idx = old && old->type == CT_DIR ? old->parent : CATALOG_NONE;
            catalog_entry_free(old);
            walk_dir(w, fd, h, prev_idx);
        }
        break;
    case CT_REG: {
        b->st->files++;
        b->st->bytes += e.size;
        if (st.st_nlink > 1) {
            uint64_t *leader = link_find(&w->links, st.st_dev, st.st_ino, true);
            if (*leader != CATALOG_NONE) {
                catalog_writer_set_link(b->cw, h, *leader);
                break;
            }
            *leader = h;
        }
        catalog_entry *old = prev_child(b, prev_dir, name);
        if (unchanged(old, &e)) {
            catalog_writer_set_stream(b->cw, h, &old->stream, old->alloc);
            b->st->reused_files++;
        } else if (e.size == 0) {
            /* An empty file: an empty stream map, stored once, without opening a pipeline. */
            pipeline_add_file(b, -1, h, path, 0);
        } else if (fd < 0) {
            pipeline_warn(b, path, -errno, "open");
            catalog_writer_set_flags(b->cw, h, CF_UNREADABLE);
        } else {
            pipeline_add_file(b, fd, h, path, e.size);
            fd = -1; /* the pipeline owns it now */
        }
        catalog_entry_free(old);
        break;
    }
    default:
        b->st->others++;
    }
out:
    catalog_entry_clear(&e);
    if (fd >= 0)
        close(fd);
    path_pop(w, saved);
    if (++w->since_poll >= 256) { /* let progress and completions run during long metadata walks */
        w->since_poll = 0;
        uv_run(&b->loop, UV_RUN_NOWAIT);
    }
}

static int walk_dir(walker *w, int dirfd, uint64_t dir_handle, uint64_t prev_dir)
{
    char **names;
    size_t n;
    int r = walk_list_dir(dirfd, &names, &n);
    if (r < 0) {
        pipeline_warn(w->b, w->path.len ? (const char *)w->path.data : ".", r, "read directory");
        catalog_writer_set_flags(w->b->cw, dir_handle, CF_UNREADABLE);
        return 0;
    }
    for (size_t i = 0; i < n && !w->b->fatal; i++)
        walk_one(w, dirfd, dir_handle, prev_dir, names[i]);
    walk_free_names(names, n);
    return w->b->fatal;
}

/* Chooses the previous snapshot: the newest one of the same source path. */
static void open_parent(backup *b, const char *abs_src)
{
    char **names;
    size_t n;
    if (b->o->no_parent || store_list_snapshots(b->s, &names, &n) < 0)
        return;
    uint64_t best_t = 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_(freep) char *path = store_snapshot_path(names[i]);
        catalog *c;
        if (catalog_open(b->s->ops, b->s->ctx, path, &c) < 0)
            continue;
        const catalog_meta *m = catalog_get_meta(c);
        if (strcmp(m->source, abs_src) == 0 && (!b->prev || m->created_ns >= best_t)) {
            catalog_close(b->prev);
            b->prev = c;
            best_t = m->created_ns;
            snprintf(b->st->parent, sizeof(b->st->parent), "%s", names[i]);
        } else {
            catalog_close(c);
        }
    }
    store_free_names(names, n);
}

/* Whether the store has a snapshot catalog at `path`: 1 yes, 0 no, or a negative code when that cannot
 * be told (on object storage, where this is a read of its first byte: the server may be unreachable). */
static int snapshot_taken(rh_store *s, const char *path)
{
    if (s->rootfd >= 0)
        return faccessat(s->rootfd, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    uint8_t byte;
    int r = store_read(s, path, 0, &byte, 1);
    return r == -ENOENT ? 0 : r < 0 ? r : 1;
}

static void default_name(rh_store *s, char out[256])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[64];
    strftime(base, sizeof(base), "%Y-%m-%dT%H%M%SZ", &tm); /* no colons: names become directory names */
    snprintf(out, 256, "%s", base);
    for (int i = 2;; i++) {
        char *p = store_snapshot_path(out);
        int taken = snapshot_taken(s, p);
        free(p);
        if (taken <= 0)
            break; /* free, or it cannot be told: backup_run's own check reports that */
        snprintf(out, 256, "%s-%d", base, i);
    }
}

static int run(backup *b, const char *src, int srcfd, const struct stat *srcst)
{
    rh_store *s = b->s;
    _cleanup_(freep) char *abs_src = realpath(src, NULL);
    if (!abs_src)
        return -errno;
    open_parent(b, abs_src);

    walker w = { .b = b };
    struct stat sst;
    if (fstat(s->rootfd, &sst) == 0) {
        w.store_dev = sst.st_dev;
        w.store_ino = sst.st_ino;
    }
    buf_put_u8(&w.path, 0);
    w.path.len = 0;

    catalog_entry root = { 0 };
    int r = walk_fill_entry(AT_FDCWD, src, srcfd, srcst, &root);
    if (r < 0)
        return r;
    free(root.name);
    root.name = (uint8_t *)xstrdup("");
    root.name_len = 0;
    uint64_t h = catalog_writer_add(b->cw, CATALOG_NONE, &root);
    catalog_entry_clear(&root);
    b->st->dirs++;

    r = index_begin(b->ix);
    if (r < 0)
        return r;
    walk_dir(&w, srcfd, h, b->prev ? 0 : CATALOG_NONE);
    pipeline_drain(b);
    free(w.links.v);
    buf_free(&w.path);
    if (b->fatal)
        return b->fatal;
    /* Containers first, then the index, then the catalog: see the head comment. */
    if ((r = pipeline_seal(b)) < 0 || (r = index_commit(b->ix)) < 0)
        return r;
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    catalog_meta m = {
        .flags = b->st->partial ? CATALOG_PARTIAL : 0,
        .created_ns = now_ns(),
        .source = abs_src,
        .hostname = host,
        .files = b->st->files,
        .bytes = b->st->bytes,
    };
    /* On object storage the index goes up whole after the containers it names, closed (in rollback
     * mode, which readers through callbacks need); the catalog's upload then commits the snapshot. */
    if (b->rem) {
        index_close(b->ix);
        b->ix = NULL;
        if ((r = store_remote_publish_index(b->rem)) < 0)
            return r;
    }
    _cleanup_(closep) int snapfd = openat(b->wfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (snapfd < 0)
        return -errno;
    if ((r = catalog_writer_commit(b->cw, snapfd, b->st->name, &m)) < 0 || !b->rem)
        return r;
    char path[STORE_SNAPSHOT_PATH_MAX];
    return store_remote_publish(b->rem, store_snapshot_path_buf(b->st->name, path));
}

int backup_run(rh_store *s, const char *src, const backup_options *o, backup_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!s->s3 && (s->rootfd < 0 || s->readonly))
        return -EROFS;
    if (o->name && !store_snapshot_name_ok(o->name))
        return -EINVAL;
    if (o->compression_level >= 0 && !compress_level_valid(o->compression_level))
        return -EINVAL;
    if (o->name)
        snprintf(st->name, sizeof(st->name), "%s", o->name);
    else
        default_name(s, st->name);
    _cleanup_(freep) char *snap = store_snapshot_path(st->name);
    int taken = snapshot_taken(s, snap);
    if (taken != 0)
        return taken > 0 ? RH_EEXIST : taken;

    _cleanup_(closep) int srcfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (srcfd < 0)
        return -errno;
    struct stat srcst;
    if (fstat(srcfd, &srcst) < 0)
        return -errno;
    _cleanup_(closep) int lockfd = -1;
    store_remote *rem = NULL;
    int r = s->s3 ? store_remote_begin(s, &rem) : store_lock(s, &lockfd);
    if (r < 0)
        return r;
    /* Under the lock, every temp container or catalog is a crashed writer's: none is ours yet. (The
     * stage of a store on object storage was emptied by store_remote_begin.) */
    if (!rem && (r = store_remove_stale_temps(s, NULL)) < 0 && o->note) {
        _cleanup_(freep) char *msg =
            xasprintf("%s: cannot remove stale temp files: %s", s->path, rh_strerror(r));
        o->note(msg);
    }

    backup b = {
        .s = s,
        .wfd = rem ? store_remote_stagefd(rem) : s->rootfd,
        .rem = rem,
        .o = o,
        .st = st,
        .level = o->compression_level >= 0 ? o->compression_level : s->cfg.compression_level,
        .packs = s->cfg.version >= 2,
        .started = mono_seconds(),
    };
    if ((r = store_next_container_id(s, CONTAINER_DATA, &b.next_data_id)) < 0 ||
        (r = store_next_container_id(s, CONTAINER_STREAM, &b.next_stream_id)) < 0 ||
        (r = store_open_index(s, 0, true, o->note, &b.ix)) < 0) {
        store_remote_end(rem);
        return r;
    }
    if ((r = uv_loop_init(&b.loop)) < 0) {
        index_close(b.ix);
        store_remote_end(rem);
        return r;
    }
    pthread_mutex_init(&b.buf_lock, NULL);
    uv_timer_init(&b.loop, &b.timer);
    b.timer.data = &b;
    uv_timer_start(&b.timer, on_timer, 200, 200);
    b.cw = catalog_writer_new();
    if (b.packs) /* format 2: the catalog is packed too */
        catalog_writer_pack(b.cw, b.level);

    r = run(&b, src, srcfd, &srcst);
    if (r < 0) {
        pipeline_drain(&b);
        pipeline_abort(&b);
        if (b.ix)
            index_rollback(b.ix);
    }
    uv_close((uv_handle_t *)&b.timer, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    pipeline_buffers_free(&b);
    pthread_mutex_destroy(&b.buf_lock);
    st->seconds = mono_seconds() - b.started;
    if (o->progress)
        o->progress(o->ud, st, true);
    catalog_writer_free(b.cw);
    catalog_close(b.prev);
    index_close(b.ix);
    digest_set_free(&b.new_chunks);
    store_remote_end(rem);
    return r;
}

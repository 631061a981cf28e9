/*
 * main.c — rehydratefs SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]: mounts SOURCE read-only, where SOURCE is
 * a rehydrate store (a directory with rehydrate.store: its snapshots, fs.c) or else the root of a Windows
 * Server dedup volume (volume.c). This file parses the options, picks the mode, and sets up a store's
 * mount (its snapshot table, and new snapshots picked up as they appear: see snap_watch below; SIGHUP
 * asks for a rescan too). The loop, the signals and the shutdown that both modes share are daemon.c's.
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "fuse/daemon.h"
#include "fuse/dirahead.h"
#include "fuse/fs.h"
#include "fuse/volume.h"
#include "s3/s3.h"

typedef struct options {
    char *source;
    char *snapshot;
    char *cache_size;
    char *kernel_readahead;
    char *readahead;
    char *dir_readahead;
    char *chunkstore;
    int verify;
} options;

#define OPT(t, p) { t, offsetof(options, p), 1 }
static const struct fuse_opt opt_spec[] = {
    OPT("snapshot=%s", snapshot),
    OPT("cache_size=%s", cache_size),
    OPT("verify", verify),
    OPT("readahead=%s", readahead),
    OPT("dir_readahead=%s", dir_readahead),
    OPT("kernel_readahead=%s", kernel_readahead),
    OPT("chunkstore=%s", chunkstore),
    FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    options *o = data;
    if (key == FUSE_OPT_KEY_NONOPT && !o->source) {
        o->source = xstrdup(arg);
        return 0; /* the first operand is ours; the second (the mount point) is libfuse's */
    }
    return 1;
}

static void usage(const char *prog)
{
    printf("usage: %s STORE MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n"
           "       %s VOLUME MOUNTPOINT [-f] [-d] [-o chunkstore=DIR] [-o OPTION[,OPTION...]]\n\n"
           "Mounts the rehydrate store STORE read-only at MOUNTPOINT: one directory per snapshot and\n"
           "'latest', a symlink to the newest. Or mounts VOLUME, the root of a Windows Server dedup\n"
           "volume (an NTFS volume mounted with ntfs-3g, or a copy of one), read-only: its deduplicated\n"
           "files are rehydrated from the chunk store in 'System Volume Information/Dedup/ChunkStore'.\n\n"
           "rehydratefs options:\n"
           "    -o snapshot=NAME       mount snapshot NAME (or 'latest') as the root (stores)\n"
           "    -o chunkstore=DIR      the {GUID}.ddp chunk store directory for every deduplicated file\n"
           "                           (volumes; default: the one in the volume that each file names)\n"
           "    -o cache_size=SIZE     decompressed-chunk cache (default 20M; K, M, G suffixes; for a\n"
           "                           volume, one cache of that size per chunk store)\n"
           "    -o verify              check every chunk's digest when it is read\n"
           "    -o readahead=N         chunks fetched ahead of a sequential reader (default 128; at\n"
           "                           most half the cache)\n"
           "    -o dir_readahead=N     files fetched ahead of a reader going through a directory\n"
           "                           (default 32, cut to a quarter of the cache: 20 with the\n"
           "                           default cache; 0: off)\n"
           "    -o kernel_readahead=SIZE  the kernel's readahead on this mount (default 1M; 0 keeps\n"
           "                           the kernel's own, 128K)\n\n",
           prog, prog);
}

/*
 * Every size and count a user gives is checked against a range before anything is mounted: a cache of
 * -1 bytes was 16 EiB and aborted the daemon, one of 2^64 bytes wrapped to 0, and a kernel readahead of
 * -1 reached the mount's read_ahead_kb as 18014398509481980.
 */
typedef struct num_option {
    const char *name;
    const char *value; /* as given, or NULL when the option was not given */
    bool size;         /* takes K, M, G, T suffixes */
    uint64_t min, max; /* inclusive; 0 is also accepted when zero_ok */
    bool zero_ok;
    const char *what; /* the range in words, for the message */
    uint64_t *ret;    /* unchanged when the option was not given */
} num_option;

/* Parses and range-checks one numeric option; false, with a message naming it, when it is out of range
 * or not a number. */
static bool num_option_ok(const num_option *o)
{
    if (!o->value)
        return true;
    uint64_t v;
    int r = o->size ? parse_size(o->value, &v) : parse_u64(o->value, &v);
    if (r == 0 && ((v >= o->min && v <= o->max) || (v == 0 && o->zero_ok))) {
        *o->ret = v;
        return true;
    }
    fprintf(stderr, "rehydratefs: -o %s=%s: %s %s\n", o->name, o->value,
            r == -EINVAL ? (o->size ? "not a size; expected" : "not a whole number; expected") : "out of range; expected",
            o->what);
    return false;
}

/* The machine's memory: the chunk cache may not be larger. */
static uint64_t phys_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_C(1) << 40;
}

static void note(const char *msg) { fprintf(stderr, "rehydratefs: %s\n", msg); }

/* ---- the snapshot table ---- */

static int cmp_snap(const void *a, const void *b)
{
    const fs_snapshot *x = a, *y = b;
    if (x->created_ns != y->created_ns)
        return x->created_ns < y->created_ns ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Opens the catalogs of every snapshot not in the table yet and appends them, oldest first. The table
 * has room for SNAP_EXTRA more than at mount, so workers can read it while SIGHUP appends. A catalog
 * that cannot be opened is left out, and named on stderr (unless quiet) once per run of the daemon. */
#define SNAP_EXTRA 4096
static size_t snaps_cap;

static int load_snapshots(fs *f, bool quiet)
{
    char **names;
    size_t n;
    int r = store_list_snapshots(f->s, &names, &n);
    if (r < 0)
        return r;
    if (!f->snaps) {
        snaps_cap = n + SNAP_EXTRA;
        f->snaps = xcalloc(snaps_cap, sizeof(*f->snaps));
    }
    size_t have = __atomic_load_n(&f->nsnaps, __ATOMIC_ACQUIRE);
    fs_snapshot *fresh = xcalloc(n ? n : 1, sizeof(*fresh));
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t k = 0; k < have && !known; k++)
            known = !strcmp(f->snaps[k].name, names[i]);
        if (known)
            continue;
        _cleanup_(freep) char *path = store_snapshot_path(names[i]);
        catalog *c;
        if ((r = catalog_open(f->s->ops, f->s->ctx, path, &c)) < 0) {
            /* Said once: every rescan tries it again, and would say it again. */
            if (!quiet && fs_once(f, "left out", path))
                fprintf(stderr, "rehydratefs: %s: %s (left out)\n", path, rh_strerror(r));
            continue;
        }
        fresh[nf++] = (fs_snapshot){ xstrdup(names[i]), c, catalog_get_meta(c)->created_ns };
    }
    sort_array(fresh, nf, sizeof(*fresh), cmp_snap);
    size_t add = 0;
    for (; add < nf && have + add < snaps_cap; add++)
        f->snaps[have + add] = fresh[add];
    for (size_t k = add; k < nf; k++) {
        catalog_close(fresh[k].c);
        free(fresh[k].name);
    }
    __atomic_store_n(&f->nsnaps, have + add, __ATOMIC_RELEASE);
    free(fresh);
    store_free_names(names, n);
    return (int)add;
}

/* ---- new snapshots ---- */

/*
 * New snapshots appear in a running mount without a signal. Two watchers on STORE/snapshots: inotify
 * (uv_fs_event_t) says at once when a backup renames its catalog in; a stat every second (uv_fs_poll_t)
 * covers stores on file systems where inotify sees nothing (NFS, other FUSE mounts). Either one queues
 * a rescan on the thread pool: listing the directory and opening the new catalogs is I/O, and the
 * kernel invalidations that follow may wait for a lookup that only the loop thread can answer (the
 * kernel holds the root's lock while it waits), so none of it may run on the loop thread. One rescan
 * runs at a time; an event during it asks for another. Snapshots are only ever appended to the table:
 * what an open snapshot shows never changes.
 */
typedef struct snap_watch {
    fs *f;
    uv_fs_event_t event;
    uv_fs_poll_t poll;
    uv_timer_t timer; /* a store on S3: a listing every S3_RESCAN_MS instead */
    uv_work_t work;
    bool event_on, poll_on, timer_on;
    bool running, again; /* loop thread only */
    int added;           /* written by the rescan, read in its after-work callback */
    bool stopping;       /* the daemon is shutting down; loop thread only */
} snap_watch;

/* On the pool: picks up new snapshots and tells the kernel that the root's listing and "latest" changed. */
static void rescan_work(uv_work_t *w)
{
    snap_watch *sw = w->data;
    fs *f = sw->f;
    int added = sw->added = load_snapshots(f, !f->foreground);
    if (added <= 0 || f->single >= 0)
        return;
    fuse_lowlevel_notify_inval_inode(f->se, FS_INO_ROOT, 0, 0);
    fuse_lowlevel_notify_inval_entry(f->se, FS_INO_ROOT, "latest", 6);
    /* The link's target is cached with its inode (FUSE_CAP_CACHE_SYMLINKS), which the kernel may keep after
     * the entry is dropped; "one" -> "two" would not even change its size. */
    fuse_lowlevel_notify_inval_inode(f->se, FS_INO_LATEST, 0, 0);
}

static void start_rescan(snap_watch *w);

static void rescan_done(uv_work_t *work, int status)
{
    snap_watch *w = work->data;
    w->running = false;
    if (w->f->foreground && w->added > 0)
        fprintf(stderr, "rehydratefs: %d new snapshot%s\n", w->added, w->added == 1 ? "" : "s");
    if (w->again) {
        w->again = false;
        start_rescan(w);
    }
}

static void start_rescan(snap_watch *w)
{
    if (w->stopping)
        return;
    if (w->running) {
        w->again = true;
        return;
    }
    w->running = true;
    w->work.data = w;
    uv_queue_work(w->f->loop, &w->work, rescan_work, rescan_done);
}

static void on_snapdir_event(uv_fs_event_t *h, const char *name, int events, int status)
{
    /* Only a catalog's arrival matters; a writer's temp files come and go unseen. A NULL name (the
     * kernel's queue overflowed) could be anything. */
    size_t n = name ? strlen(name) : 0;
    if (!name || (n > 5 && !strcmp(name + n - 5, ".snap")))
        start_rescan(h->data);
}

static void on_snapdir_poll(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
    if (status == 0)
        start_rescan(h->data);
}

static void on_rescan_timer(uv_timer_t *t) { start_rescan(t->data); }

/* A store on S3 has nothing to watch: a new snapshot is noticed by listing its catalogs this often
 * (one small request), or at once on SIGHUP. */
#define S3_RESCAN_MS 30000

/* Starts both watchers (each is optional: a failure only costs that way of noticing). */
static void watch_snapshots(snap_watch *w, uv_loop_t *loop)
{
    if (w->f->single >= 0)
        return; /* one snapshot as the root: nothing new can appear */
    if (w->f->s->s3) {
        if (uv_timer_init(loop, &w->timer) == 0) {
            w->timer.data = w;
            w->timer_on = true;
            uv_timer_start(&w->timer, on_rescan_timer, S3_RESCAN_MS, S3_RESCAN_MS);
        }
        return;
    }
    _cleanup_(freep) char *dir = xasprintf("%s/snapshots", w->f->s->path);
    if (uv_fs_event_init(loop, &w->event) == 0) {
        w->event.data = w;
        w->event_on = true;
        if (uv_fs_event_start(&w->event, on_snapdir_event, dir, 0) < 0 && w->f->foreground)
            fprintf(stderr, "rehydratefs: %s: cannot watch for new snapshots; polling once a second\n", dir);
    }
    if (uv_fs_poll_init(loop, &w->poll) == 0) {
        w->poll.data = w;
        w->poll_on = true;
        uv_fs_poll_start(&w->poll, on_snapdir_poll, dir, 1000);
    }
}

/* ---- a store's mount: the hooks of the loop (daemon.h) ---- */

typedef struct store_mount {
    fs *f;
    snap_watch watch;
    size_t cache_size;
    unsigned dir_readahead;
} store_mount;

static void store_start(void *ud, uv_loop_t *loop)
{
    store_mount *m = ud;
    fs *f = m->f;
    m->watch.f = f;
    watch_snapshots(&m->watch, loop);
    dirahead_config dc = { .loop = loop, .s = f->s, .cache = f->cache, .cache_capacity = m->cache_size,
                           .pusher = f->pusher, .single = f->single, .files = m->dir_readahead };
    dirahead_new(&dc, &f->dirahead);
}

/* SIGHUP: still a way to ask, where neither watcher sees the store change. */
static void store_hangup(void *ud) { start_rescan(&((store_mount *)ud)->watch); }

static void store_stop(void *ud)
{
    snap_watch *w = &((store_mount *)ud)->watch;
    w->stopping = true;
    if (w->event_on)
        uv_close((uv_handle_t *)&w->event, NULL);
    if (w->poll_on)
        uv_close((uv_handle_t *)&w->poll, NULL);
    if (w->timer_on)
        uv_close((uv_handle_t *)&w->timer, NULL);
}

static const daemon_hooks store_hooks = { .start = store_start, .hangup = store_hangup, .stop = store_stop };

/* Mounts the rehydrate store o->source (absolute, or an s3: URL). Returns the exit status. */
static int serve_store(const options *o, daemon_config *dc, uint64_t cache_size, unsigned readahead,
                       unsigned dir_readahead)
{
    int status = 1;
    fs f = { .single = -1, .uid = getuid(), .gid = getgid(), .mount_ns = now_ns(), .foreground = dc->foreground,
             .readahead = readahead };
    daemon_log_init(&f.log);
    f.log.foreground = dc->foreground;
    ofile_table_init(&f.files);
    int r = store_open_logged(o->source, daemon_store_message, &f.log, &f.s);
    if (r < 0) {
        fprintf(stderr, "rehydratefs: %s: %s\n", o->source, rh_strerror(r));
        goto out;
    }
    /* Check the index once (rebuilding it when missing or stale, with a message); workers then open
     * their own read-only handles, and repair it should they find it damaged (store_index_repair). */
    index_t *ix;
    if ((r = store_open_index(f.s, INDEX_READONLY, true, note, &ix)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot open or rebuild the index: %s\n", o->source, rh_strerror(r));
        goto out;
    }
    index_close(ix);
    if ((r = load_snapshots(&f, false)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot list snapshots: %s\n", o->source, rh_strerror(r));
        goto out;
    }
    if (o->snapshot) {
        for (size_t i = 0; i < f.nsnaps; i++)
            if (!strcmp(f.snaps[i].name, o->snapshot))
                f.single = (long)i;
        if (!strcmp(o->snapshot, "latest") && f.nsnaps)
            f.single = (long)f.nsnaps - 1;
        if (f.single < 0) {
            fprintf(stderr, "rehydratefs: %s: no snapshot '%s'\n", o->source, o->snapshot);
            goto out;
        }
    }
    if ((r = chunk_cache_new(f.s, (size_t)cache_size, o->verify, &f.cache)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot make the chunk cache (cache_size=%llu): %s\n", o->source,
                (unsigned long long)cache_size, rh_strerror(r));
        goto out;
    }
    store_mount m = { .f = &f, .cache_size = (size_t)cache_size, .dir_readahead = dir_readahead };
    dc->ops = &fs_ops;
    dc->ops_size = sizeof(fs_ops);
    dc->userdata = &f;
    dc->push_pages = true;
    dc->hooks = &store_hooks;
    dc->hooks_ud = &m;
    dc->ret_se = &f.se;
    dc->ret_loop = &f.loop;
    dc->ret_pusher = &f.pusher;
    status = daemon_run(dc);
    dirahead_free(f.dirahead); /* the loop has run dry: no fetch is in flight */
out:
    ofile_table_free(&f.files); /* likewise: no job uses a record */
    for (size_t i = 0; i < f.nsnaps; i++) {
        catalog_close(f.snaps[i].c);
        free(f.snaps[i].name);
    }
    free(f.snaps);
    chunk_cache_free(f.cache);
    daemon_log_free(&f.log);
    rh_store_close(f.s);
    return status;
}

/* A rehydrate store is a directory with its identity file; anything else is taken for a volume. */
static bool is_store(const char *path)
{
    if (s3_is_url(path))
        return true;
    _cleanup_(freep) char *id = xasprintf("%s/%s", path, STORE_IDENTITY_FILE);
    struct stat st;
    return stat(id, &st) == 0;
}

int main(int argc, char **argv)
{
    setenv("UV_THREADPOOL_SIZE", "8", 0); /* readers wait on I/O: more threads than cores */
    /* One malloc arena, not one per worker: the chunk cache is allocated by whichever worker missed,
     * and eight arenas each kept their share of freed chunks (peak RSS 81 MiB against 57 MiB). The
     * workers allocate a few buffers per read, so they hardly contend for it. */
    mallopt(M_ARENA_MAX, 1);
    fs_raise_fd_limit(); /* a volume mount keeps a descriptor per directory the kernel knows */
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    options o = { 0 };
    struct fuse_cmdline_opts co = { 0 };
    int status = 1;
    /* Defaults measured on real data (doc/performance.md, "Read-ahead, cache and memory"): a larger
     * cache made no read faster and the heap grew by more than it; a window of 32 chunks (2 MiB) left a
     * core idle a quarter of a sequential read, 128 keeps both busy. */
    uint64_t cache_size = 20u << 20, kernel_readahead = 1u << 20, readahead = 128, dir_readahead = 32;

    if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0 || fuse_parse_cmdline(&args, &co) < 0)
        goto out;
    if (co.show_help) {
        usage(argv[0]);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        status = 0;
        goto out;
    }
    if (co.show_version) {
        printf("rehydratefs %s (libfuse %s)\n", rh_version(), fuse_pkgversion());
        status = 0;
        goto out;
    }
    if (!o.source || !co.mountpoint) {
        fprintf(stderr, "rehydratefs: expected STORE or VOLUME, and MOUNTPOINT (see %s --help)\n", argv[0]);
        status = 2;
        goto out;
    }
    const num_option nums[] = {
        { "cache_size", o.cache_size, true, 1u << 20, phys_memory(), false,
          "a size from 1M to this machine's memory", &cache_size },
        { "kernel_readahead", o.kernel_readahead, true, 4u << 10, 1u << 30, true,
          "0 (the kernel's own) or a size from 4K to 1G", &kernel_readahead },
        { "readahead", o.readahead, false, 0, 1024, true, "a number of chunks from 0 to 1024", &readahead },
        { "dir_readahead", o.dir_readahead, false, 0, 4096, true, "a number of files from 0 to 4096",
          &dir_readahead },
    };
    for (size_t i = 0; i < ARRAY_SIZE(nums); i++) {
        if (!num_option_ok(&nums[i])) {
            status = 2;
            goto out;
        }
    }
    /* fuse_daemonize changes to "/", even in the foreground: from here on paths are absolute. */
    char *abs;
    if (!s3_is_url(o.source)) {
        if (!(abs = realpath(o.source, NULL))) {
            fprintf(stderr, "rehydratefs: %s: %s\n", o.source, strerror(errno));
            goto out;
        }
        free(o.source);
        o.source = abs;
    }
    if (o.chunkstore) {
        if (!(abs = realpath(o.chunkstore, NULL))) {
            fprintf(stderr, "rehydratefs: -o chunkstore=%s: %s\n", o.chunkstore, strerror(errno));
            goto out;
        }
        free(o.chunkstore);
        o.chunkstore = abs;
    }
    daemon_config dc = { .args = &args, .source = o.source, .mountpoint = co.mountpoint,
                         .foreground = co.foreground, .kernel_readahead = (size_t)kernel_readahead };
    if (is_store(o.source)) {
        if (o.chunkstore) {
            fprintf(stderr, "rehydratefs: -o chunkstore= is for Windows dedup volumes; %s is a rehydrate store\n",
                    o.source);
            status = 2;
            goto out;
        }
        status = serve_store(&o, &dc, cache_size, (unsigned)readahead, (unsigned)dir_readahead);
        goto out;
    }
    if (o.snapshot) {
        fprintf(stderr, "rehydratefs: -o snapshot= is for rehydrate stores; %s is none (no %s)\n", o.source,
                STORE_IDENTITY_FILE);
        status = 2;
        goto out;
    }
    volume_config vc = { .root = o.source, .chunkstore = o.chunkstore, .cache_size = (size_t)cache_size,
                         .verify = o.verify, .readahead = (unsigned)readahead,
                         .dir_readahead = (unsigned)dir_readahead };
    status = volume_serve(&vc, &dc);
out:
    free(co.mountpoint);
    free(o.source), free(o.snapshot), free(o.cache_size), free(o.kernel_readahead);
    free(o.readahead), free(o.dir_readahead), free(o.chunkstore);
    fuse_opt_free_args(&args);
    return status;
}

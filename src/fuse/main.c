/*
 * main.c — rehydratefs STORE MOUNTPOINT [-f] [-d] [-o OPTIONS]: mounts a store read-only.
 *
 * The FUSE session is driven by a libuv loop: a uv_poll_t on the session fd receives requests and
 * dispatches them (fs.c queues a job per request on the thread pool, which replies); uv_signal_t
 * handles SIGINT and SIGTERM (unmount and exit); new snapshots are picked up as they appear (see
 * snap_watch below; SIGHUP asks for a rescan too).
 * Shutdown, whatever starts it (a signal, or fusermount3 -u making the session fd report ENODEV):
 * stop receiving, unmount lazily, let every queued job finish and reply, close every handle, then
 * destroy the session, which closes /dev/fuse so that anything still waiting gets ENOTCONN.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/dirahead.h"
#include "fuse/fs.h"
#include "fuse/pagepush.h"

typedef struct options {
    char *store;
    char *snapshot;
    char *cache_size;
    char *kernel_readahead;
    char *readahead;
    char *dir_readahead;
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
    FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    options *o = data;
    if (key == FUSE_OPT_KEY_NONOPT && !o->store) {
        o->store = xstrdup(arg);
        return 0; /* the first operand is ours; the second (the mount point) is libfuse's */
    }
    return 1;
}

static void usage(const char *prog)
{
    printf("usage: %s STORE MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n\n"
           "Mounts the rehydrate store STORE read-only at MOUNTPOINT: one directory per snapshot and\n"
           "'latest', a symlink to the newest.\n\n"
           "rehydratefs options:\n"
           "    -o snapshot=NAME       mount snapshot NAME (or 'latest') as the root\n"
           "    -o cache_size=SIZE     decompressed-chunk cache (default 32M; K, M, G suffixes)\n"
           "    -o verify              check every chunk's SHA-256 when it is read\n"
           "    -o readahead=N         chunks fetched ahead of a sequential reader (default 32)\n"
           "    -o dir_readahead=N     files fetched ahead of a reader going through a directory\n"
           "                           (default 32, at most a quarter of the cache; 0: off)\n"
           "    -o kernel_readahead=SIZE  the kernel's readahead on this mount (default 1M; 0 keeps\n"
           "                           the kernel's own, 128K)\n\n",
           prog);
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

/* Read-only at the kernel too, and the store path as the source (escaped: it may hold commas). */
static void add_mount_options(struct fuse_args *args, const char *store)
{
    char *mopts = NULL;
    char *fsname = xasprintf("fsname=%s", store);
    fuse_opt_add_opt(&mopts, "ro");
    /* The kernel checks every access against the backed-up owners and modes, as on the original system:
     * without this, -o allow_other let every local user read every file of the backup. Always on. */
    fuse_opt_add_opt(&mopts, "default_permissions");
    fuse_opt_add_opt(&mopts, "subtype=rehydratefs");
    fuse_opt_add_opt_escaped(&mopts, fsname);
    fuse_opt_add_arg(args, "-o");
    fuse_opt_add_arg(args, mopts);
    free(mopts);
    free(fsname);
}

static void note(const char *msg) { fprintf(stderr, "rehydratefs: %s\n", msg); }

/* The library's messages (rh_store_set_log), such as a damaged index rebuilt by a worker: to stderr in
 * the foreground, else to syslog, like the read errors of fs_log_once. */
static void store_message(void *ud, int level, const char *msg)
{
    const fs *f = ud;
    if (f->foreground)
        fprintf(stderr, "rehydratefs: %s\n", msg);
    else
        syslog(level == RH_LOG_ERROR ? LOG_ERR : level == RH_LOG_WARNING ? LOG_WARNING : LOG_INFO, "%s", msg);
}

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

/* ---- the loop ---- */

/*
 * The kernel gives a FUSE mount the default readahead of a block device (128 KiB) and only ever lowers
 * it to what the daemon's init reply asks for, so a sequential reader's requests stay 128 KiB however
 * large max_readahead is. The mount's backing device info can be raised through sysfs by root; that
 * needs the mount's device number, which /proc/self/mountinfo lists once fuse_session_mount has
 * returned. It runs on the pool, after the loop has started, as it did when it took a stat.
 */

typedef struct ra_tune {
    uv_work_t work;
    const char *mountpoint;
    size_t bytes;
    bool verbose;
} ra_tune;

/*
 * The device number of the rehydratefs mount at `mountpoint` (canonical, as libfuse made it), from
 * /proc/self/mountinfo: the last mount there, which must be ours. A stat of the mount point would give
 * it too, but that walks into the mount, and an unmount that meets the walk fails with EBUSY: a
 * `fusermount3 -u` right after mounting failed now and then under load for that reason.
 */
static int mount_device(const char *mountpoint, unsigned *ret_major, unsigned *ret_minor)
{
    FILE *mi = fopen("/proc/self/mountinfo", "re");
    if (!mi)
        return -errno;
    /* mountinfo escapes space, tab, newline and backslash in octal */
    char want[PATH_MAX * 4 + 1], *w = want;
    for (const char *p = mountpoint; *p && w < want + sizeof(want) - 5; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
            w += sprintf(w, "\\%03o", (unsigned char)*p);
        else
            *w++ = *p;
    }
    *w = 0;
    char *line = NULL;
    size_t cap = 0;
    int r = -ENOTCONN;
    while (getline(&line, &cap, mi) > 0) {
        unsigned maj, min;
        int at = 0;
        if (sscanf(line, "%*u %*u %u:%u %*s %n", &maj, &min, &at) != 2 || !at)
            continue;
        size_t n = strlen(want);
        if (strncmp(line + at, want, n) != 0 || line[at + n] != ' ')
            continue;
        const char *sep = strstr(line + at, " - ");
        /* the last mount at that point decides: ours, or (unmounted already) not ours */
        r = sep && !strncmp(sep + 3, "fuse.rehydratefs ", 17) ? 0 : -ENOTCONN;
        *ret_major = maj, *ret_minor = min;
    }
    free(line);
    fclose(mi);
    return r;
}

static void ra_tune_work(uv_work_t *w)
{
    ra_tune *t = (ra_tune *)w;
    unsigned maj = 0, min = 0;
    int r = mount_device(t->mountpoint, &maj, &min); /* never the device underneath */
    if (r == 0) {
        char path[64], val[32];
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
        int n = snprintf(val, sizeof(val), "%zu", t->bytes >> 10);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, val, (size_t)n) != n)
            r = -errno;
        if (fd >= 0)
            close(fd);
    }
    if (r < 0 && t->verbose)
        fprintf(stderr, "rehydratefs: cannot set the kernel's readahead to %zu KiB (needs root): %s\n",
                t->bytes >> 10, strerror(-r));
}

static void ra_tune_done(uv_work_t *w, int status) { (void)w, (void)status; }

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
    uv_fs_event_t event;
    uv_fs_poll_t poll;
    uv_work_t work;
    bool event_on, poll_on;
    bool running, again; /* loop thread only */
    int added;           /* written by the rescan, read in its after-work callback */
} snap_watch;

typedef struct daemon_state {
    fs *f;
    uv_poll_t poll;
    uv_signal_t sig[3];
    uv_timer_t drain;
    snap_watch watch;
    struct fuse_buf fbuf;
    bool draining, stopping;
    double drain_deadline;
} daemon_state;

#define DRAIN_SECONDS 2.0

static void finish_shutdown(daemon_state *d);

/* While the pusher finishes its current push (which may wait for a page that a read request holds),
 * the loop goes on answering requests; then the shutdown proper. */
static void on_drain_timer(uv_timer_t *t)
{
    daemon_state *d = t->data;
    if (pusher_idle(d->f->pusher) || mono_seconds() > d->drain_deadline)
        finish_shutdown(d);
}

static void shutdown_daemon(daemon_state *d, const char *why)
{
    if (d->stopping)
        return;
    if (!why) { /* the kernel ended the session: no request is in flight, so no push can wait */
        finish_shutdown(d);
        return;
    }
    if (d->draining)
        return;
    if (d->f->foreground)
        fprintf(stderr, "rehydratefs: %s: unmounting\n", why);
    if (pusher_idle(d->f->pusher)) {
        finish_shutdown(d);
        return;
    }
    d->draining = true;
    d->drain_deadline = mono_seconds() + DRAIN_SECONDS;
    uv_timer_start(&d->drain, on_drain_timer, 1, 1);
}

static void finish_shutdown(daemon_state *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    uv_close((uv_handle_t *)&d->drain, NULL);
    fuse_session_exit(d->f->se);
    uv_close((uv_handle_t *)&d->poll, NULL);
    for (size_t i = 0; i < ARRAY_SIZE(d->sig); i++)
        uv_close((uv_handle_t *)&d->sig[i], NULL);
    if (d->watch.event_on)
        uv_close((uv_handle_t *)&d->watch.event, NULL);
    if (d->watch.poll_on)
        uv_close((uv_handle_t *)&d->watch.poll, NULL);
    /* Lazy: open files do not keep the mount point busy. Queued jobs still reply; the loop ends when
     * the last one is done. */
    fuse_session_unmount(d->f->se);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    daemon_state *d = p->data;
    if (status < 0) { /* the kernel closed the connection (unmounted): same as ENODEV below */
        shutdown_daemon(d, NULL);
        return;
    }
    for (int i = 0; i < 64 && !d->stopping; i++) { /* a batch, then let completions run */
        int r = fuse_session_receive_buf(d->f->se, &d->fbuf);
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN)
            return;
        if (r <= 0 || fuse_session_exited(d->f->se)) { /* 0 or -ENODEV: unmounted (fusermount3 -u) */
            shutdown_daemon(d, NULL);
            return;
        }
        fuse_session_process_buf(d->f->se, &d->fbuf);
    }
}

/* On the pool: picks up new snapshots and tells the kernel that the root's listing and "latest" changed. */
static void rescan_work(uv_work_t *w)
{
    daemon_state *d = w->data;
    fs *f = d->f;
    int added = d->watch.added = load_snapshots(f, !f->foreground);
    if (added <= 0 || f->single >= 0)
        return;
    fuse_lowlevel_notify_inval_inode(f->se, FS_INO_ROOT, 0, 0);
    fuse_lowlevel_notify_inval_entry(f->se, FS_INO_ROOT, "latest", 6);
    /* The link's target is cached with its inode (FUSE_CAP_CACHE_SYMLINKS), which the kernel may keep after
     * the entry is dropped; "one" -> "two" would not even change its size. */
    fuse_lowlevel_notify_inval_inode(f->se, FS_INO_LATEST, 0, 0);
}

static void start_rescan(daemon_state *d);

static void rescan_done(uv_work_t *w, int status)
{
    daemon_state *d = w->data;
    d->watch.running = false;
    if (d->f->foreground && d->watch.added > 0)
        fprintf(stderr, "rehydratefs: %d new snapshot%s\n", d->watch.added, d->watch.added == 1 ? "" : "s");
    if (d->watch.again) {
        d->watch.again = false;
        start_rescan(d);
    }
}

static void start_rescan(daemon_state *d)
{
    if (d->stopping)
        return;
    if (d->watch.running) {
        d->watch.again = true;
        return;
    }
    d->watch.running = true;
    d->watch.work.data = d;
    uv_queue_work(d->f->loop, &d->watch.work, rescan_work, rescan_done);
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

/* Starts both watchers (each is optional: a failure only costs that way of noticing). */
static void watch_snapshots(daemon_state *d, uv_loop_t *loop)
{
    if (d->f->single >= 0)
        return; /* one snapshot as the root: nothing new can appear */
    _cleanup_(freep) char *dir = xasprintf("%s/snapshots", d->f->s->path);
    snap_watch *w = &d->watch;
    if (uv_fs_event_init(loop, &w->event) == 0) {
        w->event.data = d;
        w->event_on = true;
        if (uv_fs_event_start(&w->event, on_snapdir_event, dir, 0) < 0 && d->f->foreground)
            fprintf(stderr, "rehydratefs: %s: cannot watch for new snapshots; polling once a second\n", dir);
    }
    if (uv_fs_poll_init(loop, &w->poll) == 0) {
        w->poll.data = d;
        w->poll_on = true;
        uv_fs_poll_start(&w->poll, on_snapdir_poll, dir, 1000);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_state *d = s->data;
    if (signum != SIGHUP) {
        shutdown_daemon(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    start_rescan(d); /* still a way to ask, where neither watcher sees the store change */
}

static int run_loop(fs *f, const char *mountpoint, size_t kernel_readahead, size_t cache_size,
                    unsigned dir_readahead)
{
    uv_loop_t loop;
    int r = uv_loop_init(&loop);
    if (r < 0)
        return r;
    f->loop = &loop;
    daemon_state d = { .f = f };
    int fd = fuse_session_fd(f->se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_poll_init(&loop, &d.poll, fd);
    d.poll.data = &d;
    uv_poll_start(&d.poll, UV_READABLE, on_readable);
    uv_timer_init(&loop, &d.drain);
    d.drain.data = &d;
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        uv_signal_init(&loop, &d.sig[i]);
        d.sig[i].data = &d;
        uv_signal_start(&d.sig[i], on_signal, sigs[i]);
    }
    watch_snapshots(&d, &loop);
    ra_tune ra = { .mountpoint = mountpoint, .bytes = kernel_readahead, .verbose = f->foreground };
    if (kernel_readahead)
        uv_queue_work(&loop, &ra.work, ra_tune_work, ra_tune_done);
    dirahead_config dc = { .loop = &loop, .s = f->s, .cache = f->cache, .cache_capacity = cache_size,
                           .pusher = f->pusher, .single = f->single, .files = dir_readahead };
    dirahead_new(&dc, &f->dirahead);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns when every handle is closed and every job is done */
    dirahead_free(f->dirahead);
    f->dirahead = NULL;
    free(d.fbuf.mem);
    r = uv_loop_close(&loop);
    f->loop = NULL;
    return r;
}

int main(int argc, char **argv)
{
    setenv("UV_THREADPOOL_SIZE", "8", 0); /* readers wait on I/O: more threads than cores */
    /* One malloc arena, not one per worker: the chunk cache is allocated by whichever worker missed,
     * and eight arenas each kept their share of freed chunks (peak RSS 81 MiB against 57 MiB). The
     * workers allocate a few buffers per read, so they hardly contend for it. */
    mallopt(M_ARENA_MAX, 1);
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    options o = { 0 };
    struct fuse_cmdline_opts co = { 0 };
    int status = 1;
    fs f = { .single = -1, .uid = getuid(), .gid = getgid(), .mount_ns = now_ns() };
    pthread_mutex_init(&f.log_lock, NULL);
    ofile_table_init(&f.files);
    uint64_t cache_size = 32u << 20, kernel_readahead = 1u << 20, readahead = 32, dir_readahead = 32;

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
    if (!o.store || !co.mountpoint) {
        fprintf(stderr, "rehydratefs: expected STORE and MOUNTPOINT (see %s --help)\n", argv[0]);
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
    /* fuse_daemonize changes to "/", even in the foreground: from here on the store is absolute. */
    char *abs = realpath(o.store, NULL);
    if (!abs) {
        fprintf(stderr, "rehydratefs: %s: %s\n", o.store, strerror(errno));
        goto out;
    }
    free(o.store);
    o.store = abs;
    f.foreground = co.foreground;
    f.readahead = (unsigned)readahead;
    int r = rh_store_open(o.store, NULL, NULL, &f.s);
    if (r < 0) {
        fprintf(stderr, "rehydratefs: %s: %s\n", o.store, rh_strerror(r));
        goto out;
    }
    rh_store_set_log(f.s, store_message, &f);
    /* Check the index once (rebuilding it when missing or stale, with a message); workers then open
     * their own read-only handles, and repair it should they find it damaged (store_index_repair). */
    index_t *ix;
    if ((r = store_open_index(f.s, INDEX_READONLY, true, note, &ix)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot open or rebuild the index: %s\n", o.store, rh_strerror(r));
        goto out;
    }
    index_close(ix);
    if ((r = load_snapshots(&f, false)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot list snapshots: %s\n", o.store, rh_strerror(r));
        goto out;
    }
    if (o.snapshot) {
        for (size_t i = 0; i < f.nsnaps; i++)
            if (!strcmp(f.snaps[i].name, o.snapshot))
                f.single = (long)i;
        if (!strcmp(o.snapshot, "latest") && f.nsnaps)
            f.single = (long)f.nsnaps - 1;
        if (f.single < 0) {
            fprintf(stderr, "rehydratefs: %s: no snapshot '%s'\n", o.store, o.snapshot);
            goto out;
        }
    }
    if ((r = chunk_cache_new(f.s, (size_t)cache_size, o.verify, &f.cache)) < 0) {
        fprintf(stderr, "rehydratefs: %s: cannot make the chunk cache (cache_size=%llu): %s\n", o.store,
                (unsigned long long)cache_size, rh_strerror(r));
        goto out;
    }

    add_mount_options(&args, o.store);
    f.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &f);
    if (!f.se)
        goto out;
    /* A mount on a file would succeed and leave the file unusable. (The mount helper may pass
     * /dev/fd/N, a fuse device it opened: that is no path to check.) */
    struct stat mst;
    const char *not_dir = NULL;
    if (strncmp(co.mountpoint, "/dev/fd/", 8) != 0 && stat(co.mountpoint, &mst) < 0)
        not_dir = strerror(errno);
    else if (strncmp(co.mountpoint, "/dev/fd/", 8) != 0 && !S_ISDIR(mst.st_mode))
        not_dir = "the mount point is not a directory";
    if (not_dir) {
        fprintf(stderr, "rehydratefs: %s: %s\n", co.mountpoint, not_dir);
        status = 2;
        goto out;
    }
    if (fuse_session_mount(f.se, co.mountpoint) != 0)
        goto out;
    if (fuse_daemonize(co.foreground) != 0) {
        fuse_session_unmount(f.se);
        goto out;
    }
    if (!co.foreground)
        openlog("rehydratefs", LOG_PID, LOG_DAEMON);
    if ((r = pusher_start(f.se, f.cache, &f.pusher)) < 0) /* after daemonizing: threads do not fork */
        fprintf(stderr, "rehydratefs: cannot start the page pusher: %s\n", strerror(-r));
    r = run_loop(&f, co.mountpoint, (size_t)kernel_readahead, (size_t)cache_size, (unsigned)dir_readahead);
    pusher_free(f.pusher);
    f.pusher = NULL;
    status = r < 0 ? 1 : 0;
out:
    ofile_table_free(&f.files); /* the loop, if it ran, has run dry: no job uses a record */
    if (f.se)
        fuse_session_destroy(f.se);
    for (size_t i = 0; i < f.nsnaps; i++) {
        catalog_close(f.snaps[i].c);
        free(f.snaps[i].name);
    }
    free(f.snaps);
    chunk_cache_free(f.cache);
    digest_set_free(&f.logged);
    rh_store_close(f.s);
    free(co.mountpoint);
    free(o.store), free(o.snapshot), free(o.cache_size), free(o.kernel_readahead);
    free(o.readahead), free(o.dir_readahead);
    fuse_opt_free_args(&args);
    return status;
}

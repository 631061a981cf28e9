/*
 * main.c — rehydratefs STORE MOUNTPOINT [-f] [-d] [-o OPTIONS]: mounts a store read-only.
 *
 * The FUSE session is driven by a libuv loop: a uv_poll_t on the session fd receives requests and
 * dispatches them (fs.c queues a job per request on the thread pool, which replies); uv_signal_t
 * handles SIGINT and SIGTERM (unmount and exit) and SIGHUP (pick up snapshots made since the mount).
 * Shutdown, whatever starts it (a signal, or fusermount3 -u making the session fd report ENODEV):
 * stop receiving, unmount lazily, let every queued job finish and reply, close every handle, then
 * destroy the session, which closes /dev/fuse so that anything still waiting gets ENOTCONN.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
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
    int verify;
    int readahead;
    int dir_readahead;
} options;

#define OPT(t, p) { t, offsetof(options, p), 1 }
static const struct fuse_opt opt_spec[] = {
    OPT("snapshot=%s", snapshot),
    OPT("cache_size=%s", cache_size),
    OPT("verify", verify),
    OPT("readahead=%d", readahead),
    OPT("dir_readahead=%d", dir_readahead),
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

static int parse_size(const char *s, size_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end && strcmp(end, "B") && strcmp(end, "iB"))
        return -EINVAL;
    *ret = (size_t)v;
    return 0;
}

/* Parses the value of -o NAME=VALUE into *ret (unchanged when the option was not given); false, with a
 * message, when it is not a size. */
static bool size_option(const char *name, const char *value, size_t *ret)
{
    if (!value || parse_size(value, ret) == 0)
        return true;
    fprintf(stderr, "rehydratefs: %s=%s: expected a size such as 64M\n", name, value);
    return false;
}

/* Read-only at the kernel too, and the store path as the source (escaped: it may hold commas). */
static void add_mount_options(struct fuse_args *args, const char *store)
{
    char *mopts = NULL;
    char *fsname = xasprintf("fsname=%s", store);
    fuse_opt_add_opt(&mopts, "ro");
    fuse_opt_add_opt(&mopts, "subtype=rehydratefs");
    fuse_opt_add_opt_escaped(&mopts, fsname);
    fuse_opt_add_arg(args, "-o");
    fuse_opt_add_arg(args, mopts);
    free(mopts);
    free(fsname);
}

static void note(const char *msg) { fprintf(stderr, "rehydratefs: %s\n", msg); }

/* What the store says about its index at read time (a damaged index rebuilt by a worker): to stderr in
 * the foreground, else to syslog, like the read errors of fs_log_once. */
static void index_note(void *ud, const char *msg)
{
    const fs *f = ud;
    if (f->foreground)
        fprintf(stderr, "rehydratefs: %s\n", msg);
    else
        syslog(LOG_WARNING, "%s", msg);
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
 * has room for SNAP_EXTRA more than at mount, so workers can read it while SIGHUP appends. */
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
            if (!quiet)
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
 * needs the mount's device number, which a stat of the mount point gives once the loop answers. So
 * this runs on the pool, after the loop has started.
 */
#define FUSE_SUPER_MAGIC 0x65735546

typedef struct ra_tune {
    uv_work_t work;
    const char *mountpoint;
    size_t bytes;
    bool verbose;
} ra_tune;

static void ra_tune_work(uv_work_t *w)
{
    ra_tune *t = (ra_tune *)w;
    struct stat st;
    struct statfs sfs;
    int r = stat(t->mountpoint, &st) < 0 || statfs(t->mountpoint, &sfs) < 0 ? -errno : 0;
    if (r == 0 && sfs.f_type != FUSE_SUPER_MAGIC)
        r = -ENOTCONN; /* unmounted already: never touch the device underneath */
    if (r == 0) {
        char path[64], val[32];
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
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

typedef struct daemon_state {
    fs *f;
    uv_poll_t poll;
    uv_signal_t sig[3];
    uv_timer_t drain;
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

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_state *d = s->data;
    if (signum != SIGHUP) {
        shutdown_daemon(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    int added = load_snapshots(d->f, !d->f->foreground);
    if (added > 0) /* the root's listing and the "latest" link changed */
        fuse_lowlevel_notify_inval_inode(d->f->se, FS_INO_ROOT, 0, 0);
    if (added > 0 && d->f->single < 0)
        fuse_lowlevel_notify_inval_entry(d->f->se, FS_INO_ROOT, "latest", 6);
    if (d->f->foreground)
        fprintf(stderr, "rehydratefs: SIGHUP: %d new snapshot%s\n", added < 0 ? 0 : added, added == 1 ? "" : "s");
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
    ra_tune ra = { .mountpoint = mountpoint, .bytes = kernel_readahead, .verbose = f->foreground };
    if (kernel_readahead)
        uv_queue_work(&loop, &ra.work, ra_tune_work, ra_tune_done);
    dirahead_new(f, cache_size, dir_readahead, &f->dirahead);
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
    options o = { .readahead = 32, .dir_readahead = 32 };
    struct fuse_cmdline_opts co = { 0 };
    int status = 1;
    fs f = { .single = -1, .uid = getuid(), .gid = getgid(), .mount_ns = now_ns() };
    pthread_mutex_init(&f.log_lock, NULL);
    ofile_table_init(&f.files);
    size_t cache_size = 32u << 20, kernel_readahead = 1u << 20;

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
    if (!size_option("cache_size", o.cache_size, &cache_size) ||
        !size_option("kernel_readahead", o.kernel_readahead, &kernel_readahead)) {
        status = 2;
        goto out;
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
    f.readahead = o.readahead > 0 ? (unsigned)o.readahead : 0;
    int r = rh_store_open(o.store, NULL, NULL, &f.s);
    if (r < 0) {
        fprintf(stderr, "rehydratefs: %s: %s\n", o.store, rh_strerror(r));
        goto out;
    }
    f.s->note = index_note;
    f.s->note_ud = &f;
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
    chunk_cache_new(f.s, cache_size, o.verify, &f.cache);

    add_mount_options(&args, o.store);
    f.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &f);
    if (!f.se)
        goto out;
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
    r = run_loop(&f, co.mountpoint, kernel_readahead, cache_size,
                 o.dir_readahead > 0 ? (unsigned)o.dir_readahead : 0);
    pusher_free(f.pusher);
    f.pusher = NULL;
    ofile_table_free(&f.files); /* the loop has run dry: no job uses a record */
    status = r < 0 ? 1 : 0;
out:
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
    fuse_opt_free_args(&args);
    return status;
}

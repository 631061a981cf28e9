/*
 * daemon.c — the mount, the loop and the shutdown that every rehydratefs mount shares (see daemon.h),
 * and the daemon's messages.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/util.h"
#include "fuse/daemon.h"
#include "fuse/pagepush.h"
#include "store/container.h"
#include "store/format.h"

/* Read-only at the kernel too, and the source's path as its name (escaped: it may hold commas). */
static void add_mount_options(struct fuse_args *args, const char *source)
{
    char *mopts = NULL;
    char *fsname = xasprintf("fsname=%s", source);
    fuse_opt_add_opt(&mopts, "ro");
    /* The kernel checks every access against the owners and modes shown, as on the original system:
     * without this, -o allow_other let every local user read every file. Always on. */
    fuse_opt_add_opt(&mopts, "default_permissions");
    fuse_opt_add_opt(&mopts, "subtype=rehydratefs");
    fuse_opt_add_opt_escaped(&mopts, fsname);
    fuse_opt_add_arg(args, "-o");
    fuse_opt_add_arg(args, mopts);
    free(mopts);
    free(fsname);
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

typedef struct daemon_state {
    const daemon_config *c;
    struct fuse_session *se;
    struct pusher *pusher;
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
    if (pusher_idle(d->pusher) || mono_seconds() > d->drain_deadline)
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
    if (d->c->foreground)
        fprintf(stderr, "rehydratefs: %s: unmounting\n", why);
    if (pusher_idle(d->pusher)) {
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
    fuse_session_exit(d->se);
    uv_close((uv_handle_t *)&d->poll, NULL);
    for (size_t i = 0; i < ARRAY_SIZE(d->sig); i++)
        uv_close((uv_handle_t *)&d->sig[i], NULL);
    if (d->c->hooks && d->c->hooks->stop)
        d->c->hooks->stop(d->c->hooks_ud);
    /* Lazy: open files do not keep the mount point busy. Queued jobs still reply; the loop ends when
     * the last one is done. */
    fuse_session_unmount(d->se);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    daemon_state *d = p->data;
    if (status < 0) { /* the kernel closed the connection (unmounted): same as ENODEV below */
        shutdown_daemon(d, NULL);
        return;
    }
    for (int i = 0; i < 64 && !d->stopping; i++) { /* a batch, then let completions run */
        int r = fuse_session_receive_buf(d->se, &d->fbuf);
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN)
            return;
        if (r <= 0 || fuse_session_exited(d->se)) { /* 0 or -ENODEV: unmounted (fusermount3 -u) */
            shutdown_daemon(d, NULL);
            return;
        }
        fuse_session_process_buf(d->se, &d->fbuf);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_state *d = s->data;
    if (signum != SIGHUP) {
        shutdown_daemon(d, signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    if (d->c->hooks && d->c->hooks->hangup && !d->stopping)
        d->c->hooks->hangup(d->c->hooks_ud);
}

/* Runs the loop until the session ends and every job has replied. */
static int run_loop(daemon_state *d)
{
    const daemon_config *c = d->c;
    uv_loop_t loop;
    int r = uv_loop_init(&loop);
    if (r < 0)
        return r;
    if (c->ret_loop)
        *c->ret_loop = &loop;
    int fd = fuse_session_fd(d->se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_poll_init(&loop, &d->poll, fd);
    d->poll.data = d;
    uv_poll_start(&d->poll, UV_READABLE, on_readable);
    uv_timer_init(&loop, &d->drain);
    d->drain.data = d;
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        uv_signal_init(&loop, &d->sig[i]);
        d->sig[i].data = d;
        uv_signal_start(&d->sig[i], on_signal, sigs[i]);
    }
    if (c->hooks && c->hooks->start)
        c->hooks->start(c->hooks_ud, &loop);
    ra_tune ra = { .mountpoint = c->mountpoint, .bytes = c->kernel_readahead, .verbose = c->foreground };
    if (c->kernel_readahead)
        uv_queue_work(&loop, &ra.work, ra_tune_work, ra_tune_done);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns when every handle is closed and every job is done */
    free(d->fbuf.mem);
    r = uv_loop_close(&loop);
    if (c->ret_loop)
        *c->ret_loop = NULL;
    return r;
}

int daemon_run(const daemon_config *c)
{
    daemon_state d = { .c = c };
    int status = 1;
    add_mount_options(c->args, c->source);
    d.se = fuse_session_new(c->args, c->ops, c->ops_size, c->userdata);
    if (!d.se)
        return 1;
    if (c->ret_se)
        *c->ret_se = d.se;
    /* A mount on a file would succeed and leave the file unusable. (The mount helper may pass
     * /dev/fd/N, a fuse device it opened: that is no path to check.) */
    struct stat mst;
    const char *not_dir = NULL;
    bool fd_dev = strncmp(c->mountpoint, "/dev/fd/", 8) == 0;
    if (!fd_dev && stat(c->mountpoint, &mst) < 0)
        not_dir = strerror(errno);
    else if (!fd_dev && !S_ISDIR(mst.st_mode))
        not_dir = "the mount point is not a directory";
    if (not_dir) {
        fprintf(stderr, "rehydratefs: %s: %s\n", c->mountpoint, not_dir);
        status = 2;
        goto out;
    }
    if (fuse_session_mount(d.se, c->mountpoint) != 0)
        goto out;
    if (fuse_daemonize(c->foreground) != 0) {
        fuse_session_unmount(d.se);
        goto out;
    }
    if (!c->foreground)
        openlog("rehydratefs", LOG_PID, LOG_DAEMON);
    int r;
    /* after daemonizing: threads do not fork */
    if (c->push_pages && (r = pusher_start(d.se, &d.pusher)) < 0)
        fprintf(stderr, "rehydratefs: cannot start the page pusher: %s\n", strerror(-r));
    if (c->ret_pusher)
        *c->ret_pusher = d.pusher;
    r = run_loop(&d);
    if (c->ret_pusher)
        *c->ret_pusher = NULL;
    pusher_free(d.pusher);
    status = r < 0 ? 1 : 0;
out:
    if (c->ret_se)
        *c->ret_se = NULL;
    fuse_session_destroy(d.se);
    return status;
}

/* ---- replies ---- */

void daemon_conn_init(struct fuse_conn_info *conn)
{
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_WRITE);
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

void daemon_reply_iov(fuse_req_t req, const cache_iov *v)
{
    if (v->n == 0) {
        fuse_reply_buf(req, NULL, 0); /* at or past the end */
    } else if (v->n < IOV_MAX) {
        fuse_reply_iov(req, v->iov, (int)v->n);
    } else {
        uint8_t *buf = xmalloc(v->bytes ? v->bytes : 1);
        for (size_t i = 0, at = 0; i < v->n; at += v->iov[i++].iov_len)
            memcpy(buf + at, v->iov[i].iov_base, v->iov[i].iov_len);
        fuse_reply_buf(req, (char *)buf, v->bytes);
        free(buf);
    }
}

int daemon_read_map(fuse_req_t req, daemon_log *log, chunk_cache *c, rh_store *s, const char *store_label,
                    const streammap *m, uint64_t off, size_t size, daemon_name_fn *name, void *ud, cache_iov *v)
{
    size_t bad = 0;
    index_loc loc = { 0 };
    int r = cache_pread_iov(c, m, off, size, v, &bad, &loc);
    if (r >= 0) {
        daemon_reply_iov(req, v);
        return 0;
    }
    _cleanup_(freep) char *file = name(ud);
    char cp[CONTAINER_PATH_MAX];
    store_container_path(s, CONTAINER_DATA, loc.container, cp);
    _cleanup_(freep) char *where = store_label ? xasprintf("%s/%s", store_label, cp) : xstrdup(cp);
    daemon_log_once(log, where, file, "%s: chunk at file offset %llu in %s (record at %llu): %s", file,
                    (unsigned long long)m->start[bad], where, (unsigned long long)loc.offset, rh_strerror(r));
    fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
    return r;
}

void daemon_reply_xattr(fuse_req_t req, size_t asked, const void *value, size_t len)
{
    if (asked == 0)
        fuse_reply_xattr(req, len);
    else if (asked < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

/* ---- messages ---- */

void daemon_log_init(daemon_log *l)
{
    *l = (daemon_log){ 0 };
    pthread_mutex_init(&l->lock, NULL);
}

void daemon_log_free(daemon_log *l)
{
    digest_set_free(&l->seen);
    pthread_mutex_destroy(&l->lock);
}

bool daemon_log_first(daemon_log *l, const char *what, const char *where)
{
    uint8_t key[HASH_LEN];
    _cleanup_(freep) char *k = xasprintf("%s\n%s", what, where);
    xhash_sha256(k, strlen(k), key);
    pthread_mutex_lock(&l->lock);
    bool seen = digest_set_contains(&l->seen, key);
    if (!seen)
        digest_set_add(&l->seen, key);
    pthread_mutex_unlock(&l->lock);
    return !seen;
}

static void vlog(const daemon_log *l, int level, const char *fmt, va_list ap)
{
    if (l->foreground) {
        fputs("rehydratefs: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    } else {
        vsyslog(level, fmt, ap);
    }
}

void daemon_log_once(daemon_log *l, const char *what, const char *where, const char *fmt, ...)
{
    if (!daemon_log_first(l, what, where))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(l, LOG_ERR, fmt, ap);
    va_end(ap);
}

static void log_line(const daemon_log *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_line(const daemon_log *l, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(l, level, fmt, ap);
    va_end(ap);
}

void daemon_store_message(void *ud, int level, const char *msg)
{
    log_line(ud, level == RH_LOG_ERROR ? LOG_ERR : level == RH_LOG_WARNING ? LOG_WARNING : LOG_INFO, "%s", msg);
}

/*
 * daemon.h — what every rehydratefs mount shares, whatever it serves (a store's snapshots: fs.c; a Windows
 * dedup volume: volume.c): the mount options, the session and the mount, the libuv loop that receives
 * requests, the signals, the clean shutdown, and the daemon's messages.
 *
 * The FUSE session is driven by a libuv loop: a uv_poll_t on the session fd receives requests and
 * dispatches them (the operations queue a job per request on the thread pool, which replies); uv_signal_t
 * handles SIGINT and SIGTERM (unmount and exit) and passes SIGHUP to the mode.
 * Shutdown, whatever starts it (a signal, or fusermount3 -u making the session fd report ENODEV): stop
 * receiving, unmount lazily, let every queued job finish and reply, close every handle, then destroy the
 * session, which closes /dev/fuse so that anything still waiting gets ENOTCONN.
 */
#ifndef RH_FUSE_DAEMON_H
#define RH_FUSE_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/digestset.h"
#include "fuse/inode.h"
#include "read/cache.h"
#include "store/store.h"

struct pusher;

/* What a mode adds to the loop. Every member may be NULL; all run on the loop thread. */
typedef struct daemon_hooks {
    void (*start)(void *ud, uv_loop_t *loop); /* before the loop runs: the mode's own handles */
    void (*hangup)(void *ud);                 /* SIGHUP */
    void (*stop)(void *ud);                   /* at shutdown: close what start opened */
} daemon_hooks;

typedef struct daemon_config {
    struct fuse_args *args;  /* the command line's (mount options are added to it) */
    const char *source;      /* the mount's source, shown as its fsname (absolute) */
    const char *mountpoint;
    bool foreground;
    size_t kernel_readahead; /* bytes; 0 keeps the kernel's own */
    const struct fuse_lowlevel_ops *ops;
    size_t ops_size;
    void *userdata;          /* the operations' */
    bool push_pages; /* start a pusher (pagepush.h), returned through ret_pusher */
    const daemon_hooks *hooks;
    void *hooks_ud;
    /* Set by daemon_run as soon as each exists, for the operations to use (NULL pointers: not wanted). */
    struct fuse_session **ret_se;
    uv_loop_t **ret_loop;
    struct pusher **ret_pusher;
} daemon_config;

/*
 * Mounts read-only (with default_permissions: the kernel checks every access against the owners and
 * modes shown), detaches unless foreground, serves until unmounted or signalled, and unmounts. Returns
 * the process's exit status: 0, 1 (failure, said on stderr), 2 (the mount point is no directory).
 */
int daemon_run(const daemon_config *c);

/* ---- messages ---- */

/* The daemon's report of damage: to stderr in the foreground, else to syslog; each message once per run. */
typedef struct daemon_log {
    bool foreground;
    pthread_mutex_t lock; /* protects seen */
    digest_set seen;      /* digests of the (what, where) pairs asked about */
} daemon_log;

void daemon_log_init(daemon_log *l);
void daemon_log_free(daemon_log *l);
/* True the first time it is asked about the (what, where) pair. Any thread. */
bool daemon_log_first(daemon_log *l, const char *what, const char *where);
/* Logs a message once per (what, where) pair (daemon_log_first). Any thread. */
void daemon_log_once(daemon_log *l, const char *what, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An rh_store_set_log callback (ud: the daemon_log) for the library's messages, such as a damaged index
 * rebuilt by a worker: to stderr in the foreground, else to syslog, every time. */
void daemon_store_message(void *ud, int level, const char *msg);

/* ---- replies that the operations of both modes share ---- */

/* The connection of every mount: large requests, no splice (the session fd is non-blocking and read
 * whole), symlinks cached, parallel lookups. From an init operation. */
void daemon_conn_init(struct fuse_conn_info *conn);
/* Replies to a read with the pieces of v (cache.h) by writev, or with a copy of them when there are more
 * than writev takes (a range of many tiny data regions). */
void daemon_reply_iov(fuse_req_t req, const cache_iov *v);
/* The name of a file for a message, malloc'd; called only when there is something to say. */
typedef char *daemon_name_fn(void *ud);
/*
 * Reads bytes [off, off + size) of the file of map m through cache c (cache_pread_iov) and replies with
 * them (daemon_reply_iov): 0, and the pieces in *v for the caller to release (cache_iov_release) once it
 * is done with them. On failure, replies EIO (or ENOMEM) and logs once per file and container "NAME: chunk
 * at file offset N in [STORE/]CONTAINER (record at M): why", the name from name(ud), the container's path
 * in store s after store_label/ (NULL: none); returns the negative code.
 */
int daemon_read_map(fuse_req_t req, daemon_log *log, chunk_cache *c, rh_store *s, const char *store_label,
                    const streammap *m, uint64_t off, size_t size, daemon_name_fn *name, void *ud, cache_iov *v);
/* Replies to getxattr or listxattr with value[0..len): its length when the caller asked for `asked` = 0
 * bytes, ERANGE when it asked for fewer. */
void daemon_reply_xattr(fuse_req_t req, size_t asked, const void *value, size_t len);

#endif

/*
 * fs.h — rehydratefs's shared state, shared by the FUSE operations (fs.c, entry.c) and the daemon
 * (main.c, daemon.c).
 *
 * Within src/fuse, calls go one way: main.c (options, the snapshot table) → daemon.c (the mount, the
 * loop) and fs.c (the operations) → entry.c (entries as the mount shows them), dirahead.c, pagepush.c,
 * ofile.c → inode.h (the FUSE version and the inode scheme). dirahead.c and pagepush.c do not include
 * this header. A Windows dedup volume is served by volume.c instead of fs.c.
 *
 * Threads: the loop thread receives requests and answers those that need no store I/O itself
 * (metadata, reads of cached chunks); the rest, and read-ahead, run as jobs on libuv's thread pool. A
 * thread of its own pushes fetched chunks into the kernel's page cache (pagepush.h). Catalog handles
 * serialize themselves; the chunk cache is thread-safe.
 */
#ifndef RH_FUSE_FS_H
#define RH_FUSE_FS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "fuse/daemon.h"
#include "fuse/inode.h"
#include "fuse/ofile.h"
#include "read/cache.h"
#include "snapshot/catalog.h"
#include "store/store.h"

#define FS_TIMEOUT 86400.0 /* snapshots never change: entries and attributes are valid for a day */

typedef struct fs_snapshot {
    char *name;
    catalog *c;
    uint64_t created_ns;
} fs_snapshot;

typedef struct fs {
    rh_store *s;
    chunk_cache *cache;
    fs_snapshot *snaps; /* sorted by creation time */
    size_t nsnaps;
    long single; /* -1: the root lists the snapshots; else the snapshot mounted as the root */
    uv_loop_t *loop;
    struct fuse_session *se;
    bool foreground;
    uint64_t mount_ns;
    uid_t uid;
    gid_t gid;
    unsigned readahead; /* chunks to fetch ahead of a sequential reader */
    struct dirahead *dirahead; /* fetches the files after the one opened (dirahead.h), or NULL */
    struct pusher *pusher; /* gives fetched chunks to the kernel's page cache (pagepush.h), or NULL */
    daemon_log log;    /* damage reported once (fs_log_once) */
    ofile_table files; /* the files being read, by inode (ofile.h); loop thread only */
    bool no_open;      /* the kernel sends no OPEN or RELEASE once OPEN has answered ENOSYS */
    bool no_opendir;   /* ... and no OPENDIR or RELEASEDIR once OPENDIR has */
} fs;

extern const struct fuse_lowlevel_ops fs_ops;

/* ---- catalog entries as the mount shows them (entry.c) ---- */

/* True the first time it is asked about the (what, where) pair in this run of the daemon. Any thread. */
static inline bool fs_once(fs *f, const char *what, const char *where)
{
    return daemon_log_first(&f->log, what, where);
}
/* Logs a message once per (what, where) pair (fs_once): to stderr in the foreground, else to syslog. */
#define fs_log_once(f, what, where, ...) daemon_log_once(&(f)->log, what, where, __VA_ARGS__)
/* Decodes ino for this mount (fs_ino_decode). */
bool fs_decode(const fs *f, fuse_ino_t ino, size_t *ret_snap, uint64_t *ret_entry);
/* Fetches entry idx of snapshot snap; logs a failure once (a damaged catalog) and returns its code. */
int fs_read_entry(fs *f, size_t snap, uint64_t idx, catalog_entry **ret);
/* The path of entry idx within its catalog, for messages (malloc'd). */
char *fs_entry_path(catalog *c, uint64_t idx);
/* The attributes of entry idx (e) of snapshot snap, of the root in list mode, and of "latest". */
void fs_entry_stat(const fs *f, size_t snap, uint64_t idx, const catalog_entry *e, struct stat *st);
void fs_root_stat(const fs *f, struct stat *st);
void fs_latest_stat(const fs *f, struct stat *st);
/* The name "latest" points to: the newest snapshot's ("" when there is none). */
const char *fs_latest_name(const fs *f);
/* The reply to a lookup of entry idx (e) of snapshot snap, also used by readdirplus. */
void fs_entry_param(const fs *f, size_t snap, uint64_t idx, const catalog_entry *e,
                    struct fuse_entry_param *p);

#endif

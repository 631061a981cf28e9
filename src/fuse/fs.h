/*
 * fs.h — rehydratefs's shared state, shared by the FUSE operations (fs.c) and the daemon (main.c).
 *
 * Inodes are computed, not stored: the root is 1, "latest" is 2, and entry e of snapshot s (its index in
 * the mount's snapshot table, which is sorted by creation time so that a newer snapshot never renumbers
 * an older one) is ((s + 1) << 40) | e. Every member of a hard-link group reports the inode of the
 * group's first entry. Nothing is kept per inode that the kernel looks up, so forget is free; only the
 * files being read have a record (ofile.h), and the idle ones are bounded, so memory does not grow with
 * the number of files looked at or read.
 *
 * Threads: the loop thread receives requests and answers those that need no store I/O itself
 * (metadata, reads of cached chunks); the rest, and read-ahead, run as jobs on libuv's thread pool. A
 * thread of its own pushes fetched chunks into the kernel's page cache (pagepush.h). Catalog handles
 * serialize themselves; the chunk cache is thread-safe.
 */
#ifndef RH_FUSE_FS_H
#define RH_FUSE_FS_H

#define FUSE_USE_VERSION 35

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/digestset.h"
#include "fuse/ofile.h"
#include "read/cache.h"
#include "snapshot/catalog.h"
#include "store/store.h"

#define FS_INO_ROOT 1
#define FS_INO_LATEST 2
#define FS_INO_SHIFT 40
#define FS_ENTRY_MASK ((UINT64_C(1) << FS_INO_SHIFT) - 1)
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
    pthread_mutex_t log_lock; /* protects logged */
    digest_set logged;        /* damage already reported (digest of container path + file) */
    ofile_table files; /* the files being read, by inode (ofile.h); loop thread only */
    bool no_open;      /* the kernel sends no OPEN or RELEASE once OPEN has answered ENOSYS */
    bool no_opendir;   /* ... and no OPENDIR or RELEASEDIR once OPENDIR has */
} fs;

extern const struct fuse_lowlevel_ops fs_ops;

/* The inode that entry idx (e) of snapshot snap is seen as: hard-link members share their group's
 * first entry's. */
fuse_ino_t fs_entry_ino(const fs *f, size_t snap, uint64_t idx, const catalog_entry *e);

/* Logs a message once per (what, where) pair: to stderr in the foreground, else to syslog. */
void fs_log_once(fs *f, const char *what, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

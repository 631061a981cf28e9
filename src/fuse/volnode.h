/*
 * volnode.h — beneath the operations of a volume mount (volume.c): the volume, its inodes and its chunk
 * stores.
 *
 * - Inodes: one record per file of the volume that the kernel knows, keyed by (st_dev, st_ino), so that
 *   every name of a hard link is one inode. It holds an O_PATH descriptor of the file (opened without
 *   following a final symlink) and counts the kernel's lookups; the last FORGET frees it. The FUSE inode
 *   number is the record's address (the root's is FUSE_ROOT_ID); st_ino shown is the volume's.
 * - Stubs: a regular file or symlink whose xattr system.ntfs_reparse_data (ntfs-3g) or
 *   user.ntfs_reparse_data (a copy of a volume on another file system) starts with tag 0x80000013 is a
 *   deduplicated file. Its reparse data is read and parsed once, when its record is made. On ntfs-3g
 *   without a dedup plugin such a file is a symlink to "unsupported reparse tag 0x80000013": it is shown
 *   as a regular file, mode 0444, with the link's owner and times, and its size from the reparse data.
 * - Chunk stores: the GUID in a stub names System Volume Information/Dedup/ChunkStore/{GUID}.ddp (names
 *   matched in any case), opened with a chunk cache of its own on first use, once; -o chunkstore=DIR
 *   names one store for every stub instead.
 *
 * Threads: any. The inode table and lookup counts are under the volume's lock, the stores under
 * stores_lock; what a record says of its file is set before the record is shared and never changes.
 */
#ifndef RH_FUSE_VOLNODE_H
#define RH_FUSE_VOLNODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <uv.h>

#include "fuse/daemon.h"
#include "fuse/ofile.h"
#include "fuse/volume.h"
#include "read/cache.h"
#include "store/store.h"

typedef enum vnode_kind {
    VN_PLAIN,   /* passed through */
    VN_STUB,    /* a deduplicated file, rehydrated */
    VN_BADSTUB, /* dedup reparse data that cannot be parsed: opens fail with EIO */
} vnode_kind;

typedef struct vnode {
    dev_t dev;
    ino_t ino;
    int fd;               /* a directory's: O_PATH; -1 for anything else (vnode_get_fd) */
    struct vnode *parent; /* anything but a directory: where it was first found, and its name there */
    char *name;
    uint64_t nlookup;     /* the kernel's references; protected by volume.lock */
    uint64_t kids;        /* records whose parent this is; protected by volume.lock */
    struct vnode *hnext;  /* hash chain; protected by volume.lock */
    vnode_kind kind;
    uint64_t size;        /* VN_STUB: the file's size, from its reparse data */
    uint8_t guid[16];     /* VN_STUB: its chunk store's GUID, bytes as stored */
    uint8_t *reparse;     /* VN_STUB, VN_BADSTUB: the reparse buffer */
    size_t reparse_len;
    const char *xattr;    /* VN_STUB, VN_BADSTUB: the xattr that holds it (not shown) */
    const char *why;      /* VN_BADSTUB: what is wrong with it, at byte why_at */
    size_t why_at;
} vnode;

/* An open directory (volume.c), on the volume's list from its open until its release. The
 * kernel sends no RELEASE for what is still open when the mount goes away (umount -l, SIGTERM), so
 * volume_close frees what is left on the list. */
typedef struct vhandle {
    struct vhandle *prev, *next;
    void (*free)(struct vhandle *h);
} vhandle;

/* A chunk store: opened on first use (s and cache set), or not to be had (err, said once). */
typedef struct vstore {
    uint8_t guid[16];
    char *path;
    rh_store *s;
    chunk_cache *cache;
    uint8_t zero_digest[HASH_LEN]; /* the digest of a chunk of VSTORE_ZERO_CHUNK zeros */
    int err; /* 0, or why the store cannot be opened (a code of rh_strerror) */
} vstore;

typedef struct volume {
    char *root_path; /* absolute */
    vnode *root;
    volume_config cfg;
    pthread_mutex_t lock; /* protects the table below and every nlookup */
    vnode **buckets;
    size_t nbuckets, count;
    pthread_mutex_t stores_lock; /* protects the list of stores */
    vstore **stores;
    size_t nstores;
    vstore *only;     /* -o chunkstore: the store of every stub */
    char *store_dir;  /* else: the volume's ChunkStore directory, as found */
    daemon_log log;
    pthread_mutex_t handles_lock; /* protects the list below */
    vhandle handles;              /* the list's head: every open directory not yet released */
    /* set by the daemon (daemon.h) */
    uv_loop_t *loop;
    struct fuse_session *se;
    struct pusher *pusher; /* while the session runs (pagepush.h) */
    struct voldirahead *dirahead; /* set by volume.c; NULL: no read-ahead across a directory's files */
    struct volmetahead *metahead; /* set by volume.c; NULL: no read-ahead of the metadata of a tree */
    ofile_table files;            /* volume.c: the files being read (loop thread only) */
    bool no_open;                 /* the kernel sends no OPEN or RELEASE once OPEN answered ENOSYS */
} volume;

/* Opens the volume at c->root; on failure says why on stderr and returns a negative code. */
int volume_open(volume *v, const volume_config *c);
/* Puts h on, or takes it off, the list of open handles. */
void volume_handle_add(volume *v, vhandle *h);
void volume_handle_remove(volume *v, vhandle *h);
/* Frees every handle still open, every record, store and descriptor (the loop has run dry). */
void volume_close(volume *v);

/* The record of FUSE inode ino (which the kernel got from a lookup reply). */
vnode *vnode_of(volume *v, fuse_ino_t ino);
/* The FUSE inode number of record n. */
fuse_ino_t vnode_id(const volume *v, const vnode *n);
/* Looks name up in directory parent: fills *e (attributes, timeouts) and counts one lookup of the
 * record. Returns 0 or a positive errno. */
int vnode_lookup(volume *v, vnode *parent, const char *name, struct fuse_entry_param *e);
/* The record of the file (dev, ino) if the kernel knows it, with one more lookup counted (which keeps it
 * for the caller: drop it with vnode_forget(v, n, 1)); NULL when there is none. */
vnode *vnode_find(volume *v, dev_t dev, ino_t ino);
/* Counts one more lookup of n (the caller's own reference, dropped with vnode_forget(v, n, 1)). */
void vnode_hold(volume *v, vnode *n);
/* Drops count lookups of n; the last frees it. */
void vnode_forget(volume *v, vnode *n, uint64_t count);
/* The attributes the mount shows for n: the volume's, a stub's as a regular file of its real size.
 * Returns 0 or a positive errno. */
int vnode_stat(const vnode *n, struct stat *st);
/*
 * An O_PATH descriptor of n (a symlink not followed) for one operation, or a negative errno: a
 * directory's own, or, for anything else, opened from its parent by name. Only directories keep one: a
 * volume has more files than a process may hold open, and the kernel keeps every inode it has looked up.
 * Give it back with vnode_put_fd.
 */
int vnode_get_fd(const vnode *n);
void vnode_put_fd(const vnode *n, int fd);
/* "/proc/self/fd/N" for descriptor fd: a path to the file itself (the link followed, a symlink not), for
 * the calls that have no *at form (xattrs) and for opening it. */
void vnode_proc_path(int fd, char out[32]);
/* n's path in the volume, for messages (malloc'd; "?" when it cannot be found). */
char *vnode_path(const volume *v, const vnode *n);

/* The chunk store of stub n, opened on first use: 0, or EIO after a message naming the file. */
int vstore_of(volume *v, const vnode *n, vstore **ret);
/*
 * Marks the entries of m that are chunks of VSTORE_ZERO_CHUNK zeros (by their digest) as holes: they read
 * as zeros without a fetch, and lseek finds them, so that cp keeps a sparse file sparse. Windows's chunker
 * cuts a run of zeros into chunks of its largest size, 128 KiB; a shorter tail stays data.
 */
#define VSTORE_ZERO_CHUNK (128u << 10)
void vstore_zero_holes(const vstore *st, streammap *m);

#endif

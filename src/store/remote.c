/*
 * remote.c — writing a store that lives on object storage (an s3: store), with objects for what a local
 * store gets from its directory. See store.h, "writing a store on object storage".
 *
 *  - The lock: an object locks/HOST-PID-RANDOM that says who holds it and since when, rewritten every
 *    LOCK_REFRESH_S by a thread while the backup runs. A lock is stale when it was last written more
 *    than LOCK_STALE_S ago, or when it is this host's and its process is gone; a stale lock is removed
 *    with a message, a live one refuses the backup with a message that names it. After writing ours we
 *    list again: if another writer got in at the same time, ours is removed and the backup refused.
 *  - The stage: a local directory beside the cached index ($XDG_CACHE_HOME/rehydrate/UUID.stage) laid
 *    out like a store, where the backup writes containers and its catalog exactly as it would locally
 *    (temp, fsync, rename); each file is uploaded once complete and removed: sealed containers by two
 *    threads in the background while the backup chunks on (at most two more wait their turn, so the
 *    stage holds a bounded number), the catalog at once.
 *  - The index: the store's index.db is downloaded into the stage (the copy the backup updates), and
 *    uploaded whole once the backup's containers are stored.
 *  - The order makes a backup atomic: containers (each uploaded when sealed), then index.db, then the
 *    catalog, whose PUT commits the snapshot. A backup that stops anywhere before leaves no snapshot;
 *    the containers it uploaded are not referenced by any, and the next backup numbers its own after
 *    them.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "s3/s3.h"
#include "index/index.h"
#include "store/container.h"
#include "store/store.h"

#define LOCK_REFRESH_S 300
#define LOCK_STALE_S 1800
#define LOCK_MAGIC "rehydrate-lock 1\n"
#define UPLOADERS 2    /* sealed containers uploaded at once */
#define UPLOAD_QUEUE 2 /* sealed containers waiting for an uploader, at most: the stage holds 4 and the open one */

struct store_remote {
    rh_store *s;
    s3_client *cl;
    char lock_key[128];
    char host[256];
    char *stage;
    int stagefd;
    pthread_t refresher;
    bool refreshing;
    pthread_mutex_t mu; /* protects stop */
    pthread_cond_t cv;
    bool stop;
    /* Sealed containers go up in the background (upload_main) while the backup chunks on. */
    pthread_mutex_t umu; /* protects the fields below */
    pthread_cond_t ucv;  /* the queue or busy changed */
    pthread_t uploader[UPLOADERS];
    unsigned nuploaders;
    char queue[UPLOAD_QUEUE][CONTAINER_PATH_MAX];
    unsigned qhead, qlen;
    unsigned busy;  /* uploads in flight */
    int upload_err; /* the first upload that failed: every later publish and the flush return it */
    bool upload_stop;
};

/* ---- the lock ---- */

static int put_lock(store_remote *r)
{
    char body[512];
    int n = snprintf(body, sizeof(body), LOCK_MAGIC "host %s\npid %ld\ntime %lld\n", r->host, (long)getpid(),
                     (long long)time(NULL));
    return s3_put(r->cl, r->lock_key, body, (size_t)n);
}

static void *refresh_main(void *arg)
{
    store_remote *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LOCK_REFRESH_S;
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT && !r->stop) {
            pthread_mutex_unlock(&r->mu);
            put_lock(r); /* a failure is logged; the next try may pass */
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

typedef struct lock_info {
    char key[256];
    store_lock_body body;
    uint64_t size; /* of the object, as the listing gave it */
    bool parsed;
} lock_info;

/* One "NAME VALUE\n" line at *p: VALUE (not empty, no space or control byte) into out. */
static bool lock_field(const char **p, const char *end, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    if ((size_t)(end - *p) < nl + 1 || memcmp(*p, name, nl) != 0 || (*p)[nl] != ' ')
        return false;
    const char *v = *p + nl + 1, *e = v;
    while (e < end && (unsigned char)*e > ' ')
        e++;
    if (e == v || e == end || *e != '\n' || (size_t)(e - v) >= out_len)
        return false;
    memcpy(out, v, (size_t)(e - v));
    out[e - v] = 0;
    *p = e + 1;
    return true;
}

int store_lock_parse(const char *body, size_t n, store_lock_body *ret)
{
    const char *p = body, *end = body + n;
    size_t ml = strlen(LOCK_MAGIC);
    char pid[24], time_s[24];
    uint64_t v_pid, v_time;
    if (n < ml || memcmp(body, LOCK_MAGIC, ml) != 0)
        return RH_ECORRUPT;
    p += ml;
    if (!lock_field(&p, end, "host", ret->host, sizeof(ret->host)) || !lock_field(&p, end, "pid", pid, sizeof(pid)) ||
        !lock_field(&p, end, "time", time_s, sizeof(time_s)) || parse_u64(pid, &v_pid) < 0 ||
        parse_u64(time_s, &v_time) < 0 || v_pid > INT32_MAX || v_time > INT64_MAX)
        return RH_ECORRUPT;
    ret->pid = (long)v_pid;
    ret->time = (long long)v_time;
    return 0;
}

struct lock_list {
    lock_info *v;
    size_t n, cap;
};

static int collect_lock(void *ud, const char *key, uint64_t size)
{
    struct lock_list *l = ud;
    if (strlen(key) >= sizeof(l->v[0].key))
        return 0;
    lock_info *v = mem_grow(l->v, &l->cap, l->n, sizeof(*l->v), 8);
    if (!v)
        return -ENOMEM;
    l->v = v;
    memset(&l->v[l->n], 0, sizeof(l->v[0]));
    l->v[l->n].size = size;
    snprintf(l->v[l->n++].key, sizeof(l->v[0].key), "%s", key);
    return 0;
}

/* Reads a lock object of the listed size into li (what it says; unparsable locks are kept as
 * unknown). */
static void read_lock(store_remote *r, lock_info *li)
{
    char body[512];
    if (li->size == 0 || li->size >= sizeof(body) || s3_get(r->cl, li->key, 0, body, (size_t)li->size) < 0)
        return;
    li->parsed = store_lock_parse(body, (size_t)li->size, &li->body) == 0;
}

/* Why the lock li is stale ("..."), or NULL when it is live. */
static const char *lock_stale(const store_remote *r, const lock_info *li)
{
    if (!li->parsed)
        return NULL; /* not ours to judge: the user decides */
    if (time(NULL) - li->body.time > LOCK_STALE_S)
        return "not renewed for more than 30 minutes";
    if (!strcmp(li->body.host, r->host) && li->body.pid > 0 && kill((pid_t)li->body.pid, 0) < 0 && errno == ESRCH)
        return "its process on this host is gone";
    return NULL;
}

static void say_locked(store_remote *r, const lock_info *li)
{
    char when[64] = "an unknown time";
    if (li->parsed) {
        time_t t = (time_t)li->body.time;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    }
    store_log(r->s, RH_LOG_WARNING,
              "%s: locked by %s pid %ld, last renewed %s (object %s): another backup is running; if none is, "
              "delete that object",
              r->s->path, li->parsed ? li->body.host : "an unknown writer", li->parsed ? li->body.pid : 0L, when, li->key);
}

/* The other live locks than ours: removes the stale ones (with a message); -EBUSY (with a message) if
 * one is live. */
static int check_locks(store_remote *r)
{
    struct lock_list l = { 0 };
    int ret = s3_list(r->cl, "locks/", collect_lock, &l);
    for (size_t i = 0; ret >= 0 && i < l.n; i++) {
        lock_info *li = &l.v[i];
        if (!strcmp(li->key, r->lock_key))
            continue;
        read_lock(r, li);
        const char *why = lock_stale(r, li);
        if (why) {
            store_log(r->s, RH_LOG_WARNING, "%s: removing stale lock %s of %s pid %ld: %s", r->s->path, li->key,
                      li->body.host, li->body.pid, why);
            s3_delete(r->cl, li->key);
            continue;
        }
        say_locked(r, li);
        ret = -EBUSY;
    }
    free(l.v);
    return ret;
}

static int lock_take(store_remote *r)
{
    uint8_t rnd[6];
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
        return -EIO;
    snprintf(r->lock_key, sizeof(r->lock_key), "locks/%.64s-%ld-%02x%02x%02x%02x%02x%02x", r->host,
             (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    int ret = check_locks(r);
    if (ret < 0 || (ret = put_lock(r)) < 0)
        return ret;
    /* Two writers that looked at the same time both see the other now: both give way. */
    if ((ret = check_locks(r)) < 0) {
        s3_delete(r->cl, r->lock_key);
        return ret;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refreshing = pthread_create(&r->refresher, NULL, refresh_main, r) == 0;
    return 0;
}

/* ---- the stage and the index ---- */

/* Makes the stage's directories and removes what a backup that stopped left in them. */
static int stage_make(store_remote *r)
{
    static const char *const dirs[] = { "containers/data", "containers/stream", "snapshots" };
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        _cleanup_(freep) char *p = mem_asprintf("%s/%s", r->stage, dirs[i]);
        if (!p)
            return -ENOMEM;
        int ret = fs_mkdir_p(p, 0700);
        if (ret < 0)
            return ret;
        _cleanup_(closep) int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -errno;
        int d2 = dup(dfd);
        DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
        if (!d) {
            if (d2 >= 0)
                close(d2);
            return -errno;
        }
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.')
                unlinkat(dfd, de->d_name, 0);
        closedir(d);
    }
    r->stagefd = open(r->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return r->stagefd < 0 ? -errno : 0;
}

static int any_object(void *ud, const char *key, uint64_t size)
{
    (void)key, (void)size;
    *(bool *)ud = true;
    return 1;
}

/* Downloads the store's index.db into the stage (the copy the backup then updates); with no
 * index.db in the store, the store must have no containers, and the backup starts a new index. */
static int index_fetch(store_remote *r)
{
    rh_store *s = r->s;
    unlinkat(r->stagefd, STORE_INDEX_FILE "-wal", 0);
    unlinkat(r->stagefd, STORE_INDEX_FILE "-shm", 0);
    uint64_t size;
    int ret = s3_size(r->cl, STORE_INDEX_FILE, &size);
    if (ret == -ENOENT) {
        bool any = false;
        ret = s3_list(r->cl, "containers/", any_object, &any);
        if (ret < 0)
            return ret;
        if (any) {
            store_log(s, RH_LOG_WARNING, "%s: the store has containers but no %s", s->path, STORE_INDEX_FILE);
            return RH_ENOINDEX;
        }
        return unlinkat(r->stagefd, STORE_INDEX_FILE, 0) < 0 && errno != ENOENT ? -errno : 0;
    }
    if (ret < 0)
        return ret;
    char *tmp = NULL;
    int fd = fs_create_temp(r->stagefd, STORE_INDEX_FILE, &tmp);
    if (fd < 0)
        return fd;
    /* In pieces of 8 MiB: one ranged GET each, written as it comes. */
    const size_t piece = 8u << 20;
    uint8_t *buf = mem_alloc(MIN((uint64_t)piece, size));
    ret = buf ? 0 : -ENOMEM;
    for (uint64_t off = 0; ret >= 0 && off < size; off += piece) {
        size_t n = (size_t)MIN((uint64_t)piece, size - off);
        if ((ret = s3_get(r->cl, STORE_INDEX_FILE, off, buf, n)) >= 0)
            ret = fs_pwrite_full(fd, buf, n, off);
    }
    free(buf);
    if (ret >= 0)
        ret = fs_commit_temp(r->stagefd, fd, tmp, STORE_INDEX_FILE, 1);
    if (ret < 0)
        unlinkat(r->stagefd, tmp, 0);
    close(fd);
    free(tmp);
    return ret;
}

/*
 * A backup that stopped after uploading containers and before index.db leaves containers numbered
 * after the index's newest, which no snapshot references (verify leaves them alone): removed here,
 * under the lock, with a message, so that they are not kept forever.
 */
static int remove_after(store_remote *r, const uint32_t limit[2])
{
    rh_store *s = r->s;
    int ret = 0;
    for (uint8_t kind = CONTAINER_DATA; ret >= 0 && kind <= CONTAINER_STREAM; kind++) {
        uint32_t *ids = NULL;
        size_t n = 0;
        ret = store_container_ids(s, kind, &ids, &n);
        for (size_t i = 0; ret >= 0 && i < n; i++) {
            if (ids[i] <= limit[kind - CONTAINER_DATA])
                continue;
            char path[CONTAINER_PATH_MAX];
            container_path(kind, ids[i], path);
            store_log(s, RH_LOG_WARNING, "%s: removing %s, left by a backup that did not finish", s->path, path);
            ret = s3_delete(r->cl, path);
        }
        free(ids);
    }
    return ret;
}

static int remove_unfinished(store_remote *r)
{
    index_t *ix = NULL;
    int ret = index_open(r->s->ix_path, r->s->cfg.uuid, INDEX_READONLY, &ix);
    if (ret == -ENOENT)
        return 0; /* a new store: index_fetch found no container */
    uint32_t limit[2];
    if (ret >= 0 && (ret = store_unfinished_after(r->s, ix, limit)) >= 0)
        ret = remove_after(r, limit);
    index_close(ix);
    return ret;
}

/* ---- the public face (store.h) ---- */

/* Takes the lock and makes the stage; with fetch, downloads index.db and removes what a stopped backup
 * left (store_remote_begin). */
static int remote_begin(rh_store *s, bool fetch, store_remote **ret_remote)
{
    if (!s->s3)
        return -EINVAL;
    store_remote *r = mem_calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->s = s;
    r->cl = s3_store_client(s->ctx);
    r->stagefd = -1;
    pthread_mutex_init(&r->umu, NULL);
    pthread_cond_init(&r->ucv, NULL);
    if (gethostname(r->host, sizeof(r->host) - 1) < 0 || !r->host[0])
        snprintf(r->host, sizeof(r->host), "unknown");
    for (char *p = r->host; *p; p++)
        if (*p == '/' || *p <= ' ')
            *p = '_';
    size_t n = strlen(s->ix_path);
    r->stage = mem_asprintf("%.*s.stage", (int)(n > 3 ? n - 3 : n), s->ix_path); /* "UUID.db" -> "UUID.stage" */
    /* The writer's index is its own copy in the stage, never the cache copy that readers may fall back
     * on (rh_store_build_index): what a backup that stops leaves behind is seen by nobody. */
    char *ix_path = r->stage ? mem_asprintf("%s/%s", r->stage, STORE_INDEX_FILE) : NULL;
    int ret = ix_path ? lock_take(r) : -ENOMEM;
    if (ret < 0) {
        free(ix_path);
        free(r->stage);
        free(r);
        return ret;
    }
    free(s->ix_path);
    s->ix_path = ix_path;
    if ((ret = stage_make(r)) < 0 || (fetch && ((ret = index_fetch(r)) < 0 || (ret = remove_unfinished(r)) < 0))) {
        store_remote_end(r);
        return ret;
    }
    *ret_remote = r;
    return 0;
}

int store_remote_begin(rh_store *s, store_remote **ret_remote)
{
    return remote_begin(s, true, ret_remote);
}

int store_remote_stagefd(const store_remote *r) { return r->stagefd; }

int store_remote_publish(store_remote *r, const char *path)
{
    _cleanup_(closep) int fd = openat(r->stagefd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    int ret = s3_put_fd(r->cl, path, fd);
    if (ret >= 0)
        unlinkat(r->stagefd, path, 0);
    return ret;
}

/* ---- uploads of sealed containers, in the background ---- */

static void *upload_main(void *arg)
{
    store_remote *r = arg;
    char path[CONTAINER_PATH_MAX];
    pthread_mutex_lock(&r->umu);
    for (;;) {
        while (!r->qlen && !r->upload_stop)
            pthread_cond_wait(&r->ucv, &r->umu);
        if (!r->qlen)
            break;
        memcpy(path, r->queue[r->qhead], sizeof(path));
        r->qhead = (r->qhead + 1) % UPLOAD_QUEUE;
        r->qlen--;
        if (r->upload_err) { /* the backup will fail: upload nothing more */
            pthread_cond_broadcast(&r->ucv);
            continue;
        }
        r->busy++;
        pthread_cond_broadcast(&r->ucv);
        pthread_mutex_unlock(&r->umu);
        int err = store_remote_publish(r, path);
        pthread_mutex_lock(&r->umu);
        r->busy--;
        if (err < 0 && !r->upload_err)
            r->upload_err = err;
        pthread_cond_broadcast(&r->ucv);
    }
    pthread_mutex_unlock(&r->umu);
    return NULL;
}

int store_remote_publish_async(store_remote *r, const char *path)
{
    if (strlen(path) >= CONTAINER_PATH_MAX)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&r->umu);
    while (r->nuploaders < UPLOADERS &&
           pthread_create(&r->uploader[r->nuploaders], NULL, upload_main, r) == 0)
        r->nuploaders++;
    if (r->nuploaders == 0) { /* no thread: upload it here */
        pthread_mutex_unlock(&r->umu);
        return store_remote_publish(r, path);
    }
    while (r->qlen == UPLOAD_QUEUE && !r->upload_err)
        pthread_cond_wait(&r->ucv, &r->umu);
    int err = r->upload_err;
    if (!err) {
        snprintf(r->queue[(r->qhead + r->qlen) % UPLOAD_QUEUE], CONTAINER_PATH_MAX, "%s", path);
        r->qlen++;
        pthread_cond_broadcast(&r->ucv);
    }
    pthread_mutex_unlock(&r->umu);
    return err;
}

int store_remote_flush(store_remote *r)
{
    pthread_mutex_lock(&r->umu);
    while ((r->qlen || r->busy) && !r->upload_err)
        pthread_cond_wait(&r->ucv, &r->umu);
    while (r->busy) /* after a failure, the other upload's end (its file is not ours to remove twice) */
        pthread_cond_wait(&r->ucv, &r->umu);
    int err = r->upload_err;
    pthread_mutex_unlock(&r->umu);
    return err;
}

static void uploads_end(store_remote *r)
{
    pthread_mutex_lock(&r->umu);
    r->upload_stop = true;
    r->qlen = 0; /* after a flush nothing is left; after a failure what is left is not wanted */
    pthread_cond_broadcast(&r->ucv);
    pthread_mutex_unlock(&r->umu);
    for (unsigned i = 0; i < r->nuploaders; i++)
        pthread_join(r->uploader[i], NULL);
    pthread_cond_destroy(&r->ucv);
    pthread_mutex_destroy(&r->umu);
}

int store_remote_publish_index(store_remote *r)
{
    int err = store_remote_flush(r); /* the index names the containers: they go up first */
    if (err < 0)
        return err;
    _cleanup_(closep) int fd = open(r->s->ix_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return s3_put_fd(r->cl, STORE_INDEX_FILE, fd);
}

/*
 * The old index is not needed to build the new one, and is not downloaded: it is asked, in place, which
 * containers it names, so that those a stopped backup left after them are removed first, as the next
 * backup would. When it cannot answer (damaged, which is why one reindexes, or absent), every container
 * is indexed: on object storage a PUT stores all of an object or none of it, so they are whole.
 */
int store_remote_reindex(rh_store *s, uint64_t *ret_chunks, uint64_t *ret_streams)
{
    store_remote *r;
    int ret = remote_begin(s, false, &r);
    if (ret < 0)
        return ret;
    index_t *ix = NULL;
    uint32_t limit[2];
    int old = index_open_ops(s->ops, s->ctx, STORE_INDEX_FILE, s->cfg.uuid, store_index_block(s), &ix);
    if (old >= 0 && (old = store_unfinished_after(s, ix, limit)) >= 0)
        ret = remove_after(r, limit);
    else if (old != -ENOENT)
        store_log(s, RH_LOG_WARNING, "%s: the old %s cannot be read (%s): every container is indexed", s->path,
                  STORE_INDEX_FILE, rh_strerror(old));
    index_close(ix);
    if (ret >= 0)
        ret = store_reindex(s, s->ix_path, ret_chunks, ret_streams);
    if (ret >= 0)
        ret = store_remote_publish_index(r);
    store_remote_end(r);
    return ret;
}

void store_remote_end(store_remote *r)
{
    if (!r)
        return;
    uploads_end(r);
    if (r->refreshing) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->refresher, NULL);
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
    }
    if (r->lock_key[0])
        s3_delete(r->cl, r->lock_key);
    if (r->stagefd >= 0)
        close(r->stagefd);
    free(r->stage);
    free(r);
}

int store_create_remote(const char *url, const store_config *cfg, rh_log_fn log, void *ud)
{
    const rh_store_ops *ops;
    void *ctx;
    char err[768];
    int ret = s3_store_open(url, &ops, &ctx, err, sizeof(err));
    if (ret < 0) {
        if (log)
            log(ud, RH_LOG_WARNING, err);
        return ret;
    }
    s3_client *cl = s3_store_client(ctx);
    s3_client_set_log(cl, log, ud);
    uint8_t id[STORE_IDENTITY_SIZE];
    ret = s3_get(cl, STORE_IDENTITY_FILE, 0, id, sizeof(id));
    if (ret == 0) {
        ret = RH_EEXIST;
    } else if (ret == -ENOENT) {
        bool any = false;
        ret = s3_list(cl, "", any_object, &any);
        if (ret >= 0 && any) {
            ret = -ENOTEMPTY;
        } else if (ret >= 0) {
            store_config_encode(cfg, id);
            ret = s3_put(cl, STORE_IDENTITY_FILE, id, sizeof(id));
        }
    }
    s3_store_close(ctx);
    return ret;
}

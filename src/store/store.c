/*
 * store.c — the store as a whole: the identity file rehydrate.store, rh_store_open() with the built-in
 * callbacks for a local directory, and the local services that writers need (lock, container ids,
 * listings). Readers only ever use store_read(), which goes through the callback table, so everything
 * built on it also works for stores that are not local directories.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "hash/hash.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/format.h"
#include "s3/s3.h"
#include "store/store.h"
#include "store/format_windows.h"

static const uint8_t identity_magic[8] = { 'R', 'H', 'Y', 'D', 'S', 'T', 'O', 'R' };

void store_config_default(store_config *c)
{
    *c = (store_config){
        .version = STORE_FORMAT_VERSION,
        .chunker = { .min_size = CHUNKER_MIN_DEFAULT,
                     .avg_size = CHUNKER_AVG_DEFAULT,
                     .max_size = CHUNKER_MAX_DEFAULT,
                     .normalization = CHUNKER_NORMALIZATION_DEFAULT,
                     .seed = 0 },
        .compression_level = 3,
        .seal_size = CONTAINER_SEAL_DEFAULT,
        .created_ns = now_ns(),
    };
    if (getrandom(c->uuid, sizeof(c->uuid), 0) != sizeof(c->uuid)) {
        /* getrandom on Linux >= 3.17 does not fail for 16 bytes once the pool is ready; fall back to
         * time and pid so a store still gets a distinct id. */
        uint64_t t = now_ns() ^ ((uint64_t)getpid() << 32);
        put_le64(c->uuid, t);
        put_le64(c->uuid + 8, t * 0x9e3779b97f4a7c15ull);
    }
    c->uuid[6] = (c->uuid[6] & 0x0f) | 0x40; /* RFC 4122 version 4 */
    c->uuid[8] = (c->uuid[8] & 0x3f) | 0x80;
}

void store_config_encode(const store_config *c, uint8_t out[STORE_IDENTITY_SIZE])
{
    memset(out, 0, STORE_IDENTITY_SIZE);
    memcpy(out, identity_magic, 8);
    put_le32(out + 8, c->version);
    put_le32(out + 12, 0); /* flags */
    memcpy(out + 16, c->uuid, 16);
    put_le32(out + 32, c->chunker.min_size);
    put_le32(out + 36, c->chunker.avg_size);
    put_le32(out + 40, c->chunker.max_size);
    put_le32(out + 44, c->chunker.normalization);
    put_le64(out + 48, c->chunker.seed);
    put_le32(out + 56, (uint32_t)c->compression_level);
    put_le64(out + 64, c->seal_size);
    put_le64(out + 72, c->created_ns);
    put_le64(out + 120, hash_checksum(out, 120, NULL, 0));
}

int store_config_decode(const uint8_t in[STORE_IDENTITY_SIZE], store_config *ret)
{
    if (memcmp(in, identity_magic, 8) != 0)
        return RH_ENOTSTORE;
    if (get_le64(in + 120) != hash_checksum(in, 120, NULL, 0))
        return RH_ECORRUPT;
    store_config c = { 0 };
    c.version = get_le32(in + 8);
    if (c.version < STORE_FORMAT_MIN || c.version > STORE_FORMAT_VERSION)
        return RH_EVERSION;
    memcpy(c.uuid, in + 16, 16);
    c.chunker.min_size = get_le32(in + 32);
    c.chunker.avg_size = get_le32(in + 36);
    c.chunker.max_size = get_le32(in + 40);
    c.chunker.normalization = get_le32(in + 44);
    c.chunker.seed = get_le64(in + 48);
    c.compression_level = (int32_t)get_le32(in + 56);
    c.seal_size = get_le64(in + 64);
    c.created_ns = get_le64(in + 72);
    if (chunker_params_check(&c.chunker) < 0 || c.seal_size < (1u << 20))
        return RH_ECORRUPT;
    *ret = c;
    return 0;
}

bool store_exists(const char *path)
{
    char p[PATH_MAX];
    struct stat st;
    if (snprintf(p, sizeof(p), "%s/%s", path, STORE_IDENTITY_FILE) >= (int)sizeof(p))
        return false;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int store_create(const char *path, const store_config *cfg)
{
    if (store_exists(path))
        return RH_EEXIST;
    int r = fs_mkdir_p(path, 0755);
    if (r < 0)
        return r;
    _cleanup_(closep) int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Refuse to turn a directory with other contents into a store: the user probably mistyped. */
    DIR *d = fdopendir(dup(fd));
    if (!d)
        return -errno;
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(d);
    if (!empty)
        return -ENOTEMPTY;

    /* The lock is the first entry and is held while the store is made: another process that finds
     * the directory not empty can tell (store_await_creation) that a store is on its way. Two that
     * both found it empty meet here; the second finds the store made. */
    _cleanup_(closep) int lfd = openat(fd, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0)
        return -errno;
    if (flock(lfd, LOCK_EX) < 0)
        return -errno;
    if (store_exists(path))
        return RH_EEXIST;
    static const char *dirs[] = { "containers", "containers/data", "containers/stream", "snapshots" };
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
        if (mkdirat(fd, dirs[i], 0755) < 0 && errno != EEXIST)
            return -errno;
    uint8_t id[STORE_IDENTITY_SIZE];
    store_config_encode(cfg, id);
    /* The identity file is written last: a directory without it is not a store, so a crash here leaves
     * nothing that a later command would mistake for one. */
    r = fs_write_atomic(fd, STORE_IDENTITY_FILE, id, sizeof(id), 0);
    return r == -EEXIST ? RH_EEXIST : r;
}

/* Whether another process holds the lock file of the directory `path` (0 no, 1 yes, or an error;
 * -ENOENT when there is no lock file). */
static int lock_held(const char *path)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/%s", path, STORE_LOCK_FILE) >= (int)sizeof(p))
        return -ENAMETOOLONG;
    _cleanup_(closep) int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK ? 1 : -errno;
}

int store_await_creation(const char *path, unsigned timeout_ms)
{
    unsigned free_seen = 0;
    for (unsigned waited = 0;; waited += 50) {
        if (store_exists(path))
            return 0;
        int r = lock_held(path);
        if (r == -ENOENT)
            return -ENOTEMPTY; /* no store creation made this directory */
        if (r < 0)
            return r;
        /* The lock is free: nobody is creating a store. Looked at twice, as the creator takes it just
         * after creating the file. */
        if (r == 0 && ++free_seen >= 3)
            return store_exists(path) ? 0 : -ENOTEMPTY;
        if (waited >= timeout_ms)
            return -EBUSY;
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static char *index_path(rh_store *s);

/* The s3 client's messages, through the store's log. */
static void s3_message(void *ud, int level, const char *msg) { store_log(ud, level, "%s", msg); }

static int store_open(const char *path, const rh_store_ops *ops, void *ctx, rh_log_fn log, void *log_ud,
                      rh_store **ret_store)
{
    if (!path || !ret_store)
        return -EINVAL;
    if (ops && (ops->version < 1 || ops->version > RH_STORE_OPS_VERSION || !ops->read))
        return -EINVAL;
    rh_store *s = mem_calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->rootfd = -1;
    s->fmt = &store_format_ours;
    s->log = log;
    s->log_ud = log_ud;
    pthread_mutex_init(&s->ix_lock, NULL);
    if (!(s->path = mem_strdup(path))) {
        rh_store_close(s);
        return -ENOMEM;
    }
    if (ops) {
        s->ops = ops;
        s->ctx = ctx;
    } else if (s3_is_url(path)) {
        /* A store on object storage: our own callbacks over an S3 client, which the store owns. */
        char err[768];
        int r = s3_store_open(path, &s->ops, &s->ctx, err, sizeof(err));
        if (r < 0) {
            store_log(s, RH_LOG_WARNING, "%s", err);
            rh_store_close(s);
            return r;
        }
        s->s3 = true;
        s->readonly = true;
        s3_store_set_log(s->ctx, s3_message, s);
    } else {
        s->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->rootfd < 0) {
            int e = errno == ENOTDIR ? RH_ENOTSTORE : -errno;
            rh_store_close(s);
            return e;
        }
        int r = store_local_init(s);
        if (r < 0) {
            rh_store_close(s);
            return r;
        }
        s->readonly = faccessat(s->rootfd, ".", W_OK, AT_EACCESS) < 0;
    }
    uint8_t id[STORE_IDENTITY_SIZE];
    int r = s->ops->read(s->ctx, STORE_IDENTITY_FILE, 0, id, sizeof(id));
    if (r > 0)
        r = -EIO; /* the contract is 0 or a negative code */
    if (r == -ENOENT)
        r = RH_ENOTSTORE;
    /* A local directory without our identity file may be a Windows dedup chunk store. */
    if (r == RH_ENOTSTORE && winstore_detect(s)) {
        if ((r = winstore_init(s)) < 0) {
            rh_store_close(s);
            return r;
        }
        *ret_store = s;
        return 0;
    }
    if (r == 0)
        r = store_config_decode(id, &s->cfg);
    if (r == 0 && !(s->ix_path = index_path(s)))
        r = -ENOMEM;
    if (r < 0) {
        rh_store_close(s);
        return r;
    }
    chunker_init(&s->chunker, &s->cfg.chunker);
    if (ops) {
        /* Open the index now (its header; nothing of a container), so that those reads are not mixed
         * into a restore's, whose pattern the application controls. Without one the store still opens:
         * restores then fail with RH_ENOINDEX until the application calls rh_store_build_index. */
        r = store_open_index(s, INDEX_READONLY, true, NULL, &s->ix);
        if (r == RH_ENOINDEX)
            r = 0;
        if (r < 0) {
            rh_store_close(s);
            return r;
        }
    }
    *ret_store = s;
    return 0;
}

RH_EXPORT int rh_store_open(const char *path, const rh_store_ops *ops, void *ctx, rh_store **ret_store)
{
    return store_open(path, ops, ctx, NULL, NULL, ret_store);
}

int store_open_logged(const char *path, rh_log_fn log, void *log_ud, rh_store **ret_store)
{
    return store_open(path, NULL, NULL, log, log_ud, ret_store);
}

RH_EXPORT void rh_store_close(rh_store *s)
{
    if (!s)
        return;
    index_close(s->ix);
    if (s->fmt && s->fmt->close)
        s->fmt->close(s);
    store_local_close(s);
    if (s->s3)
        s3_store_close(s->ctx);
    if (s->rootfd >= 0)
        close(s->rootfd);
    pthread_mutex_destroy(&s->ix_lock);
    free(s->ix_path);
    free(s->path);
    free(s);
}

RH_EXPORT int rh_store_build_index(rh_store *s)
{
    if (!s)
        return -EINVAL;
    index_t *ix;
    s->scan_ok = true;
    int r = store_shared_index(s, &ix);
    s->scan_ok = false;
    return r;
}

int store_read(rh_store *s, const char *path, uint64_t off, void *buf, size_t len)
{
    int r = s->ops->read(s->ctx, path, off, buf, len);
    if (r == -ENOENT && strncmp(path, "containers/", 11) == 0)
        return RH_ENOCONTAINER;
    return r > 0 ? 0 : r;
}

/* ---- local services ---- */

int store_lock(rh_store *s, int *ret_fd)
{
    if (s->rootfd < 0)
        return -EOPNOTSUPP;
    int fd = openat(s->rootfd, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return e;
    }
    *ret_fd = fd;
    return 0;
}

/* Parses "%08x.ctr" (committed) or "%08x.ctr.tmp..." (temp); returns 1 for committed, 2 for temp. */
static int parse_container_name(const char *name, uint32_t *ret_id)
{
    if (strlen(name) < 12)
        return 0;
    uint32_t id = 0;
    for (int i = 0; i < 8; i++) {
        char c = name[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        id = id << 4 | (uint32_t)v;
    }
    if (strcmp(name + 8, ".ctr") == 0) {
        *ret_id = id;
        return 1;
    }
    if (strncmp(name + 8, ".ctr.tmp", 8) == 0) {
        *ret_id = id;
        return 2;
    }
    return 0;
}

typedef int (*dir_visit_fn)(void *ud, int dirfd, const char *name);

struct list_adapter {
    dir_visit_fn fn;
    void *ud;
};

static int list_adapt(void *ud, const char *name)
{
    struct list_adapter *a = ud;
    return name[0] == '.' ? 0 : a->fn(a->ud, -1, name);
}

/* Calls fn for each file of the store directory `dir` but dot files; behind callbacks, through `list`
 * (dirfd -1), and a directory that does not exist lists nothing. */
static int visit_dir(rh_store *s, const char *dir, dir_visit_fn fn, void *ud)
{
    if (s->rootfd < 0) {
        if (s->ops->version < 2 || !s->ops->list)
            return -EOPNOTSUPP;
        struct list_adapter a = { fn, ud };
        return s->ops->list(s->ctx, dir, list_adapt, &a);
    }
    int dfd = openat(s->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? RH_ENOTSTORE : -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    errno = 0;
    while (r >= 0 && (de = readdir(d)))
        if (de->d_name[0] != '.')
            r = fn(ud, dfd, de->d_name);
    if (r >= 0 && errno)
        r = -errno;
    closedir(d);
    return r;
}

struct max_id {
    uint32_t max;
    bool any;
};

static int visit_max_id(void *ud, int dirfd, const char *name)
{
    struct max_id *m = ud;
    uint32_t id;
    if (parse_container_name(name, &id) && (!m->any || id > m->max)) {
        m->max = id;
        m->any = true;
    }
    return 0;
}

int store_next_container_id(rh_store *s, uint8_t kind, uint32_t *ret_id)
{
    struct max_id m = { 0, false };
    int r = visit_dir(s, container_dir(kind), visit_max_id, &m);
    if (r < 0)
        return r;
    if (m.any && m.max == UINT32_MAX)
        return -EOVERFLOW;
    *ret_id = m.any ? m.max + 1 : 1;
    return 0;
}

struct container_list {
    index_container *v;
    size_t n, cap;
    uint8_t kind;
    uint32_t upto;  /* behind callbacks: ids above it are counted in skipped, not read */
    size_t skipped;
};

static int visit_container(void *ud, int dirfd, const char *name)
{
    struct container_list *l = ud;
    uint32_t id;
    if (parse_container_name(name, &id) != 1)
        return 0;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    index_container *v = mem_grow(l->v, &l->cap, l->n, sizeof(*l->v), 64);
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->v[l->n++] = (index_container){ .id = id, .kind = l->kind, .size = (uint64_t)st.st_size };
    return 0;
}

static int cmp_container(const void *a, const void *b)
{
    const index_container *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * A store behind callbacks without `list`: its containers are found by reading the headers of ids
 * 1, 2, ... until PROBE_MISSES in a row do not exist (ids are allocated in order; a crashed backup may
 * leave a few unused). A sealed container's size is where its footer ends.
 */
#define PROBE_MISSES 256

static int list_add(struct container_list *l, uint32_t id, uint64_t size)
{
    index_container *v = mem_grow(l->v, &l->cap, l->n, sizeof(*l->v), 64);
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->v[l->n++] = (index_container){ id, l->kind, size };
    return 0;
}

/* The size of sealed container `id` of l->kind read from its header and footer, appended to l; -ENOENT
 * when it does not exist. */
static int probe_one(rh_store *s, struct container_list *l, uint32_t id)
{
    char path[CONTAINER_PATH_MAX];
    container_path(l->kind, id, path);
    container_header h;
    int r = container_read_header(s->ops, s->ctx, path, &h);
    if (r < 0)
        return r;
    uint8_t foot[16];
    if (!h.footer_offset || (r = s->ops->read(s->ctx, path, h.footer_offset, foot, sizeof(foot))) < 0)
        return r < 0 ? r : RH_ECORRUPT;
    return list_add(l, id, h.footer_offset + 24 + 52ull * get_le32(foot + 8));
}

static int probe_containers(rh_store *s, struct container_list *l)
{
    for (uint32_t id = 1, misses = 0; misses < PROBE_MISSES && id <= l->upto; id++) {
        int r = probe_one(s, l, id);
        if (r == -ENOENT) {
            misses++;
            continue;
        }
        if (r < 0)
            return r;
        misses = 0;
    }
    return 0;
}

struct id_list {
    uint32_t *v;
    size_t n, cap;
};

static int visit_listed(void *ud, int dirfd, const char *name)
{
    (void)dirfd;
    struct id_list *l = ud;
    uint32_t id;
    if (parse_container_name(name, &id) != 1)
        return 0;
    uint32_t *v = mem_grow(l->v, &l->cap, l->n, sizeof(*l->v), 64);
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->v[l->n++] = id;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int store_container_ids(rh_store *s, uint8_t kind, uint32_t **ret_ids, size_t *ret_n)
{
    struct id_list ids = { 0 };
    int r = visit_dir(s, container_dir(kind), visit_listed, &ids);
    if (r < 0) {
        free(ids.v);
        return r;
    }
    sort_array(ids.v, ids.n, sizeof(*ids.v), cmp_u32);
    *ret_ids = ids.v;
    *ret_n = ids.n;
    return 0;
}

/* Behind callbacks that can list: the containers the listing names, each probed for its size. */
static int listed_containers(rh_store *s, struct container_list *l)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int r = store_container_ids(s, l->kind, &ids, &n);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        if (ids[i] > l->upto) { /* not to be read (a stopped backup's, on object storage) */
            l->skipped++;
            continue;
        }
        if ((r = probe_one(s, l, ids[i])) == -ENOENT)
            r = 0; /* removed since the listing */
        else if (r < -4000 && r != RH_ENOINDEX) /* damaged (a domain code, not the medium failing): */
            r = list_add(l, ids[i], 0); /* listed with size 0, which no index row has, so that verify
                                         * walks it and names the damage, and the listing goes on */
    }
    free(ids);
    return r;
}

int store_unfinished_after(rh_store *s, index_t *ix, uint32_t limit[2])
{
    limit[0] = limit[1] = UINT32_MAX;
    if (!s->s3 || !ix)
        return 0;
    for (uint8_t kind = CONTAINER_DATA; kind <= CONTAINER_STREAM; kind++) {
        index_container newest;
        bool found = false;
        int r = index_newest_container(ix, kind, &newest, &found);
        if (r < 0) {
            limit[0] = limit[1] = UINT32_MAX;
            return r;
        }
        limit[kind - CONTAINER_DATA] = found ? newest.id : 0;
    }
    return 0;
}

int store_list_containers(rh_store *s, index_container **ret, size_t *ret_n)
{
    return store_list_containers_upto(s, NULL, ret, ret_n, NULL);
}

int store_list_containers_upto(rh_store *s, const uint32_t upto[2], index_container **ret, size_t *ret_n,
                               size_t *ret_skipped)
{
    struct container_list l = { 0 };
    int r = 0;
    if (s->rootfd < 0) {
        bool can_list = s->ops->version >= 2 && s->ops->list;
        for (uint8_t kind = CONTAINER_DATA; kind <= CONTAINER_STREAM && r >= 0; kind++) {
            l.kind = kind;
            l.upto = upto ? upto[kind - CONTAINER_DATA] : UINT32_MAX;
            r = can_list ? listed_containers(s, &l) : probe_containers(s, &l);
        }
        if (r < 0) {
            free(l.v);
            return r;
        }
        *ret = l.v;
        *ret_n = l.n;
        if (ret_skipped)
            *ret_skipped = l.skipped;
        return 0;
    }
    if (ret_skipped)
        *ret_skipped = 0; /* a local store's listing reads nothing: upto is for stores behind callbacks */
    for (uint8_t kind = CONTAINER_DATA; kind <= CONTAINER_STREAM && r >= 0; kind++) {
        l.kind = kind;
        r = visit_dir(s, container_dir(kind), visit_container, &l);
    }
    if (r < 0) {
        free(l.v);
        return r;
    }
    sort_array(l.v, l.n, sizeof(*l.v), cmp_container);
    *ret = l.v;
    *ret_n = l.n;
    return 0;
}

bool store_snapshot_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200 || name[0] == '.' || strcmp(name, "latest") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

const char *store_snapshot_path_buf(const char *name, char out[STORE_SNAPSHOT_PATH_MAX])
{
    if ((size_t)snprintf(out, STORE_SNAPSHOT_PATH_MAX, "snapshots/%s.snap", name) >= STORE_SNAPSHOT_PATH_MAX)
        return NULL;
    return out;
}

char *store_snapshot_path(const char *name) { return xasprintf("snapshots/%s.snap", name); }

struct name_list {
    char **v;
    size_t n, cap;
};

static int visit_snapshot(void *ud, int dirfd, const char *name)
{
    struct name_list *l = ud;
    size_t n = strlen(name);
    if (n <= 5 || strcmp(name + n - 5, ".snap") != 0)
        return 0;
    char **v = mem_grow(l->v, &l->cap, l->n, sizeof(*l->v), 16);
    if (!v)
        return -ENOMEM;
    l->v = v;
    if (!(l->v[l->n] = mem_memdup(name, n - 4)))
        return -ENOMEM;
    l->v[l->n][n - 5] = 0;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_list_snapshots(rh_store *s, char ***ret_names, size_t *ret_n)
{
    struct name_list l = { 0 };
    int r = visit_dir(s, "snapshots", visit_snapshot, &l);
    if (r < 0) {
        store_free_names(l.v, l.n);
        return r;
    }
    sort_array(l.v, l.n, sizeof(*l.v), cmp_str);
    *ret_names = l.v;
    *ret_n = l.n;
    return 0;
}

void store_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int store_resolve_snapshot(rh_store *s, const char *name, char **ret_name)
{
    if (strcmp(name, "latest") != 0) {
        char path[STORE_SNAPSHOT_PATH_MAX];
        if (!store_snapshot_name_ok(name) || !store_snapshot_path_buf(name, path))
            return RH_ENOSNAPSHOT;
        catalog *c = NULL;
        int r = catalog_open(s->ops, s->ctx, path, &c);
        catalog_close(c);
        if (r < 0)
            return r;
        char *copy = mem_strdup(name);
        if (!copy)
            return -ENOMEM;
        *ret_name = copy;
        return 0;
    }
    char **names;
    size_t n;
    int r = store_list_snapshots(s, &names, &n);
    if (r < 0)
        return r;
    const char *best = NULL;
    uint64_t best_t = 0;
    for (size_t i = 0; i < n; i++) {
        char path[STORE_SNAPSHOT_PATH_MAX];
        catalog *c = NULL;
        if (!store_snapshot_path_buf(names[i], path) || catalog_open(s->ops, s->ctx, path, &c) < 0)
            continue; /* a damaged catalog cannot be "latest"; verify reports it */
        uint64_t t = catalog_get_meta(c)->created_ns;
        catalog_close(c);
        if (!best || t >= best_t) {
            best = names[i];
            best_t = t;
        }
    }
    char *copy = best ? mem_strdup(best) : NULL;
    r = !best ? RH_ENOSNAPSHOT : !copy ? -ENOMEM : 0;
    if (copy)
        *ret_name = copy;
    store_free_names(names, n);
    return r;
}

/* ---- the index ---- */

/* Where the index of s lives (store_index_path), worked out once by rh_store_open: malloc'd, or NULL. */
static char *index_path(rh_store *s)
{
    if (s->rootfd >= 0 && !s->readonly)
        return mem_asprintf("%s/%s", s->path, STORE_INDEX_FILE);
    const char *cache = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", s->cfg.uuid[i]);
    if (cache && *cache)
        return mem_asprintf("%s/rehydrate/%s.db", cache, hex);
    return mem_asprintf("%s/.cache/rehydrate/%s.db", home && *home ? home : "/tmp", hex);
}

char *store_index_path(rh_store *s) { return xstrdup(s->ix_path); }

/* Makes the directory of an index kept in the cache directory (a store behind callbacks or read-only). */
static int make_index_dir(rh_store *s)
{
    if (s->rootfd >= 0 && !s->readonly)
        return 0;
    _cleanup_(freep) char *dir = mem_strdup(s->ix_path);
    if (!dir)
        return -ENOMEM;
    *strrchr(dir, '/') = 0;
    return fs_mkdir_p(dir, 0700);
}

static int index_is_current(rh_store *s, index_t *ix, bool *ret)
{
    index_container *have = NULL;
    size_t n = 0;
    int r = store_list_containers(s, &have, &n);
    if (r >= 0)
        r = index_matches(ix, have, n, ret);
    free(have);
    return r;
}

/*
 * The check of a reader, which opens the store often (every mount) and must not take time in the number
 * of containers: our writers number each kind's containers one after another (store_next_container_id),
 * record each in the index as they store it, and rebuild an index they find stale. What leaves an index
 * behind is then a writer that did not update this one (a backup from another machine with its own
 * index, an index.db restored from a copy of the store), and that adds containers past the newest the
 * index knows, or changes that one's size. So: the newest container of each kind is there with the size
 * the index recorded, and the next id is not. A container removed or replaced in the middle is damage,
 * not staleness: the read that needs it reports it, a lookup that misses repairs the index
 * (store_index_repair), and verify lists every container. An index that knows no container of a kind
 * (a new store) is checked by listing, which is short then. Our own format only: a Windows chunk store
 * numbers its containers its own way.
 */
static int index_is_current_quick(rh_store *s, index_t *ix, bool *ret)
{
    for (uint8_t kind = CONTAINER_DATA; kind <= CONTAINER_STREAM; kind++) {
        index_container c;
        bool found;
        int r = index_newest_container(ix, kind, &c, &found);
        if (r < 0)
            return r;
        if (!found)
            return index_is_current(s, ix, ret);
        char p[CONTAINER_PATH_MAX];
        struct stat st;
        if (fstatat(s->rootfd, store_container_path(s, kind, c.id, p), &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode) || (uint64_t)st.st_size != c.size) {
            *ret = false;
            return 0;
        }
        if (c.id == UINT32_MAX)
            continue;
        if (fstatat(s->rootfd, store_container_path(s, kind, c.id + 1, p), &st, AT_SYMLINK_NOFOLLOW) == 0 ||
            errno != ENOENT) {
            *ret = false;
            return 0;
        }
    }
    *ret = true;
    return 0;
}

int store_open_index(rh_store *s, int flags, bool rebuild, void (*note)(const char *msg),
                     index_t **ret)
{
    /* A store behind callbacks: its own index.db, read in place through them, a few blocks per lookup.
     * Only when that cannot be read (absent, in WAL mode, of another store) does a copy in the cache
     * directory serve, which is built by reading every container. */
    if (s->rootfd < 0 && (flags & INDEX_READONLY) && index_open_ops(s->ops, s->ctx, STORE_INDEX_FILE,
                                                                    s->cfg.uuid, store_index_block(s), ret) == 0) {
        s->ix_in_store = true;
        store_index_stamp(s);
        return 0;
    }
    const char *path = s->ix_path;
    bool reader = flags & INDEX_READONLY;
    /* The cache directory is made only to write in it: a reader that finds no index leaves no trace. */
    if (!reader) {
        int r = make_index_dir(s);
        if (r < 0)
            return r;
    }
    /* A writer creates a missing index in place (an empty index of an empty store is current). A reader
     * opens the file read-only, so that a read path never writes to the store; a missing index is then
     * -ENOENT, and rebuilt below like a stale one. */
    index_t *ix = NULL;
    int r = index_open(path, s->cfg.uuid, flags | (rebuild && !reader ? INDEX_CREATE : 0), &ix);
    bool current = false;
    if (r >= 0 && s->rootfd >= 0) /* a writer, which may trust no row it did not check, lists them all */
        r = reader && s->fmt == &store_format_ours ? index_is_current_quick(s, ix, &current)
                                                   : index_is_current(s, ix, &current);
    else if (r >= 0) {
        /* A store behind callbacks is listed only by probing, so a cached index is trusted once it
         * has been built (it knows at least one container). */
        uint64_t nc = 0;
        r = index_stats(ix, NULL, NULL, &nc);
        /* A writer of a store on object storage opens the copy store_remote_begin just fetched. */
        current = nc > 0 || (s->s3 && !reader);
    }
    if (r >= 0 && current) {
        store_index_remember(s, false);
        *ret = ix;
        return 0;
    }
    index_close(ix);
    if (!rebuild)
        return r < 0 ? r : RH_ESTALEINDEX;
    /* Behind callbacks a rebuild reads every container: only when the application asked for it. */
    if (s->rootfd < 0 && !s->scan_ok)
        return RH_ENOINDEX;
    /* A missing or stale index is routine (a first use, a backup from elsewhere) and is said only to a
     * caller that asks; an unreadable one is damage, which is always said. */
    bool damaged = r < 0 && r != -ENOENT;
    const char *why = r == -ENOENT ? "missing" : damaged ? "unreadable (damaged)" : "stale";
    if (note) {
        _cleanup_(freep) char *msg =
            mem_asprintf("%s: index %s, rebuilding it from the containers", path, why);
        if (msg)
            note(msg);
    } else if (damaged) {
        store_log(s, RH_LOG_WARNING, "%s: index %s, rebuilding it from the containers", path, why);
    }
    if ((r = make_index_dir(s)) < 0 || (r = store_reindex(s, path, NULL, NULL)) < 0)
        return r;
    store_index_remember(s, damaged);
    return index_open(path, s->cfg.uuid, flags, ret);
}

int store_decode_streammap(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret)
{
    return s->fmt->decode_streammap(s, raw, len, start, ret);
}

/*
 * format_windows.c — a Windows Server dedup chunk store ({GUID}.ddp) as a store format (store/format.h): the
 * readers, the restore engine and the daemon read it through the same calls as ours.
 *
 * - Containers are Data/<id>.<gen>.ccc and Stream/<id>.<gen>.ccc. A reference names the id (and for data
 *   chunks a generation, which Windows keeps when it rewrites a container); we read the highest generation
 *   present, as smx's reader does, and the record check (sequence number, stored size, digest) catches a
 *   reference that does not fit it. The generations are listed once per kind, on first use, and kept.
 * - Records are Ckhr (wincontainer.c); a data chunk's record does not carry its decoded length, the
 *   stream map does. Compression 2 is MS-XCA plain LZ77 (CODEC_XPRESS).
 * - Stream maps (Smap) say where every chunk is: the decoded map carries locations, so no index is
 *   used, read or built.
 * - A record that is not at its referenced offset is looked up by sequence number in its container's
 *   redirection table (Rrtl), for stream maps and data chunks alike.
 *
 * Behind callbacks the generations are listed through the `list` callback (rh_store_ops version 2),
 * without which a Windows store cannot be opened there.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "compress/compress.h"
#include "store/format.h"
#include "windows/wincontainer.h"
#include "windows/winreparse.h"
#include "store/format_windows.h"

typedef struct wgen {
    uint32_t id, gen;
} wgen;

typedef struct winstore {
    pthread_mutex_t lock; /* protects the lists */
    bool listed[2];       /* [kind - 1] */
    int list_err[2];
    wgen *gens[2];        /* sorted by id, one per id: its highest generation */
    size_t ngens[2];
    bool has_guid; /* the directory's name gave the store's GUID (in s->cfg.uuid) */
} winstore;

static const char *kind_dir(uint8_t kind)
{
    return kind == CONTAINER_DATA ? "Data" : kind == CONTAINER_STREAM ? "Stream" : NULL;
}

static int cmp_wgen(const void *a, const void *b)
{
    const wgen *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->gen < y->gen ? -1 : x->gen > y->gen;
}

bool winstore_parse_name(const char *name, uint32_t *id, uint32_t *gen)
{
    if (strlen(name) != 21 || strcmp(name + 17, ".ccc") != 0 || name[8] != '.')
        return false;
    for (int i = 0; i < 17; i++)
        if (i != 8 && !isxdigit((unsigned char)name[i]))
            return false;
    *id = (uint32_t)strtoul(name, NULL, 16);
    *gen = (uint32_t)strtoul(name + 9, NULL, 16);
    return true;
}

/* Lists the files of store directory `dir`: readdir for a local store, the `list` callback behind
 * callbacks (version 2). 0 for a directory that does not exist; -ENOTSUP without a way to list. */
static int list_dir(rh_store *s, const char *dir, int (*visit)(void *ud, const char *name), void *ud)
{
    if (s->rootfd < 0)
        return s->ops->version >= 2 && s->ops->list ? s->ops->list(s->ctx, dir, visit, ud) : -ENOTSUP;
    int fd = openat(s->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (errno = 0, de = readdir(d)))
        r = visit(ud, de->d_name);
    if (r == 0 && errno)
        r = -errno;
    closedir(d);
    return r;
}

typedef struct gen_list {
    wgen *v;
    size_t n, cap;
} gen_list;

static int add_gen(void *ud, const char *name)
{
    gen_list *l = ud;
    uint32_t id, gen;
    if (!winstore_parse_name(name, &id, &gen))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        wgen *nv = mem_realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = (wgen){ id, gen };
    return 0;
}

/* Lists the containers of a kind once: their highest generations, sorted by id. */
static int list_kind(rh_store *s, winstore *w, uint8_t kind)
{
    int k = kind - 1;
    if (w->listed[k])
        return w->list_err[k];
    gen_list l = { 0 };
    int r = list_dir(s, kind_dir(kind), add_gen, &l);
    if (r < 0) {
        free(l.v);
        return r == -ENOMEM ? r : (w->listed[k] = true, w->list_err[k] = r); /* ENOMEM: try again later */
    }
    sort_array(l.v, l.n, sizeof(*l.v), cmp_wgen);
    size_t m = 0; /* keep the last (highest generation) of each id */
    for (size_t i = 0; i < l.n; i++) {
        if (m && l.v[m - 1].id == l.v[i].id)
            m--;
        l.v[m++] = l.v[i];
    }
    w->listed[k] = true;
    w->gens[k] = l.v;
    w->ngens[k] = m;
    return 0;
}

static const char *win_container_path(rh_store *s, uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX])
{
    const char *dir = kind_dir(kind);
    if (!dir)
        return NULL;
    winstore *w = s->fmt_state;
    uint32_t gen = 0; /* no such container: a name that no file has */
    pthread_mutex_lock(&w->lock);
    if (list_kind(s, w, kind) == 0) {
        const wgen key = { id, 0 };
        size_t lo = 0, hi = w->ngens[kind - 1];
        const wgen *v = w->gens[kind - 1];
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (v[mid].id < key.id)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < w->ngens[kind - 1] && v[lo].id == id)
            gen = v[lo].gen;
    }
    pthread_mutex_unlock(&w->lock);
    snprintf(out, CONTAINER_PATH_MAX, "%s/%08x.%08x.ccc", dir, (unsigned)id, (unsigned)gen);
    return out;
}

static int win_parse_record(uint8_t kind, const uint8_t *rec, size_t avail, uint64_t offset, container_record *ret,
                            const uint8_t **ret_payload)
{
    (void)kind;
    if (offset < WIN_FIRST_RECORD)
        return RH_ECORRUPT;
    win_record w;
    win_why why;
    int r = win_record_parse(rec, avail, &w, &why);
    if (r < 0)
        return r;
    if (w.type == WIN_REC_PAD || avail < (size_t)w.header_len + w.payload_len)
        return RH_ECORRUPT; /* padding where a record was named: it moved (or the reference is bad) */
    if ((r = win_record_check_payload(&w, rec, avail, &why)) < 0)
        return r;
    bool raw = w.compression == WIN_COMP_NONE;
    *ret = (container_record){
        .offset = offset,
        .type = w.type == WIN_REC_DATA ? RECORD_CHUNK : RECORD_STREAM,
        .codec = raw ? CODEC_RAW : CODEC_XPRESS,
        .stored_len = w.payload_len,
        .raw_len = raw ? w.payload_len : 0, /* the stream map knows a compressed chunk's length */
        .seq = w.seq,
    };
    memcpy(ret->digest, w.digest, WIN_DIGEST_LEN);
    *ret_payload = rec + w.header_len;
    return 0;
}

static int win_decode_streammap(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret)
{
    (void)s;
    return winstore_smap_to_map(raw, len, start, ret);
}

int winstore_smap_to_map(const uint8_t *raw, size_t len, uint64_t start, streammap **ret)
{
    win_smap_entry *e;
    size_t n;
    win_why why;
    int r = win_smap_parse(raw, len, start, &e, &n, &why);
    if (r < 0)
        return r;
    streammap *m = mem_calloc(1, sizeof(*m));
    if (m) {
        m->e = mem_calloc(n, sizeof(*m->e));
        m->start = mem_calloc(n, sizeof(*m->start));
        m->loc = mem_calloc(n, sizeof(*m->loc));
    }
    if (!m || !m->e || !m->start || !m->loc) {
        streammap_free(m);
        free(e);
        return -ENOMEM;
    }
    m->n = n;
    uint64_t prev = start;
    for (size_t i = 0; i < n; i++) {
        uint64_t length = e[i].end - prev; /* win_smap_parse checked that ends increase */
        /* A chunk is stored compressed only when that makes it smaller: a larger stored size is
         * damage, and readers must not allocate for it. */
        if (e[i].stored_len > length) {
            streammap_free(m);
            free(e);
            return RH_ECORRUPT;
        }
        m->e[i] = (streammap_entry){ .length = length };
        memcpy(m->e[i].digest, e[i].digest, WIN_DIGEST_LEN);
        m->start[i] = prev;
        m->loc[i] = (index_loc){ .container = e[i].container, .offset = e[i].offset,
                                 .stored_len = e[i].stored_len, .raw_len = (uint32_t)length,
                                 .codec = e[i].stored_len == length ? CODEC_RAW : CODEC_XPRESS, .seq = e[i].seq };
        prev = e[i].end;
    }
    m->size = prev;
    free(e);
    *ret = m;
    return 0;
}

static int win_relocate(rh_store *s, uint8_t kind, uint32_t id, uint32_t seq, uint64_t *ret_offset)
{
    char path[CONTAINER_PATH_MAX];
    if (!store_container_path(s, kind, id, path))
        return RH_ECORRUPT;
    uint8_t *page = mem_alloc(WIN_PAGE);
    if (!page)
        return -ENOMEM;
    const rh_extent ext = { WIN_RRTL_OFFSET, WIN_PAGE };
    int r = s->ops->preview ? s->ops->preview(s->ctx, path, 1, &ext) : 0;
    if (r >= 0)
        r = s->ops->read(s->ctx, path, WIN_RRTL_OFFSET, page, WIN_PAGE);
    win_rrtl t;
    win_why why;
    uint32_t off;
    if (r >= 0)
        r = win_rrtl_parse(page, WIN_PAGE, &t, &why);
    if (r >= 0 && !win_rrtl_find(&t, seq, &off))
        r = RH_ECORRUPT;
    if (r >= 0)
        *ret_offset = off;
    free(page);
    return r == -ENOENT ? RH_ENOCONTAINER : r;
}

/*
 * A Windows stub: the reparse buffer as ntfs-3g shows it in system.ntfs_reparse_data, kept in a copied
 * tree (where system.* cannot be set) in user.ntfs_reparse_data, as windedup-mk writes it.
 */
static int win_decode_stub(rh_store *s, const uint8_t *raw, size_t len, store_stub *ret)
{
    winreparse rp;
    int r = winreparse_parse(raw, len, &rp);
    if (r < 0)
        return r;
    winstore *w = s->fmt_state;
    if (w->has_guid && memcmp(rp.guid, s->cfg.uuid, 16) != 0)
        r = RH_EWRONGSTORE;
    store_stub st = { .size = rp.size, .nparts = rp.nrefs };
    if (r == 0 && rp.nrefs > 1 && !(st.more = mem_calloc(rp.nrefs, sizeof(*st.more))))
        r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < rp.nrefs; i++) {
        const winreparse_ref *ref = &rp.refs[i];
        store_stub_part *p = st.more ? &st.more[i] : &st.one;
        /* The stream map record's header keeps 16 bytes of the digest [source]. */
        *p = (store_stub_part){ .begin = ref->begin, .digest_known = 16,
                                .stream = { .container = ref->container, .offset = ref->offset,
                                            .stored_len = ref->smap_size, .raw_len = ref->smap_size,
                                            .codec = CODEC_RAW, .seq = ref->seq } };
        memcpy(p->digest, ref->digest, 16);
    }
    winreparse_free(&rp);
    if (r < 0)
        store_stub_free(&st);
    else
        *ret = st;
    return r;
}

static void win_close(rh_store *s)
{
    winstore *w = s->fmt_state;
    if (!w)
        return;
    pthread_mutex_destroy(&w->lock);
    free(w->gens[0]);
    free(w->gens[1]);
    free(w);
    s->fmt_state = NULL;
}

const store_format store_format_windows = {
    .name = "windows",
    .indexed = false,
    .data_header = WIN_DATA_HEADER,
    .stream_header = WIN_STREAM_HEADER,
    .container_path = win_container_path,
    .parse_record = win_parse_record,
    .digest = win_digest,
    .stream_digest_checked = false, /* what Windows digests to name a stream map is not known */
    .decode_streammap = win_decode_streammap,
    .relocate = win_relocate,
    .stub_xattr = WINSTORE_STUB_XATTR,
    .stub_max = WINSTORE_STUB_MAX,
    .decode_stub = win_decode_stub,
    .close = win_close,
};

static int found_container(void *ud, const char *name)
{
    uint32_t id, gen;
    if (winstore_parse_name(name, &id, &gen))
        *(bool *)ud = true;
    return *(bool *)ud ? 1 : 0; /* one is enough: end the listing */
}

bool winstore_detect_dir(int rootfd)
{
    struct stat st;
    return (fstatat(rootfd, "Data", &st, 0) == 0 && S_ISDIR(st.st_mode)) ||
           (fstatat(rootfd, "Stream", &st, 0) == 0 && S_ISDIR(st.st_mode));
}

bool winstore_detect(rh_store *s)
{
    if (s->rootfd >= 0)
        return winstore_detect_dir(s->rootfd);
    bool found = false;
    for (uint8_t kind = CONTAINER_DATA; kind <= CONTAINER_STREAM && !found; kind++)
        list_dir(s, kind_dir(kind), found_container, &found);
    return found;
}

bool winstore_guid_of_name(const char *path, uint8_t out[16])
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') /* "DIR/" names DIR */
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    char base[64];
    if (n - b >= sizeof(base))
        return false;
    memcpy(base, path + b, n - b);
    base[n - b] = '\0';
    unsigned a, x, c, d[8];
    int used = 0;
    if (sscanf(base, "{%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x}.ddp%n", &a, &x, &c, &d[0], &d[1], &d[2], &d[3],
               &d[4], &d[5], &d[6], &d[7], &used) != 11 ||
        base[used] != '\0')
        return false;
    put_le32(out, a);
    put_le16(out + 4, (uint16_t)x);
    put_le16(out + 6, (uint16_t)c);
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)d[i];
    return true;
}

int winstore_init(rh_store *s)
{
    winstore *w = mem_calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    s->fmt_state = w;
    s->fmt = &store_format_windows;
    /* The store's identity is its GUID, which every reparse point into it names. */
    w->has_guid = winstore_guid_of_name(s->path, s->cfg.uuid);
    return 0;
}

/*
 * winverify_refs.c — the second half of the Windows chunk-store check (see winverify.c): the references.
 *
 * - The volume's stubs (with --volume): every regular file or symlink (ntfs-3g shows a dedup file whose
 *   tag no plugin handles as a symlink) outside "System Volume Information" that carries a reparse buffer
 *   in system.ntfs_reparse_data or user.ntfs_reparse_data with the dedup tag. Each is parsed
 *   (winreparse_parse); its parts' stream-map references are kept, and a stub naming another chunk
 *   store's GUID is left alone. The stubs also tell where each stream map begins in its file, which
 *   gives its first chunk's length.
 * - Every Smap entry is resolved to its data record as readers find it: in the data container of the
 *   entry's id and generation (then in the id's other generations, highest first), the record at the
 *   entry's offset, else the one the container's Rrtl gives for the sequence number; it must have that
 *   sequence number, stored size and digest. An entry that finds nothing is a dangling reference,
 *   reported where it is (Stream container, offset of the entry, the map's sequence number) unless it
 *   points into a stretch already reported (an unusable header, a truncated end, an unreadable file).
 *   A found chunk's decoded length must be the map's, and a compressed chunk must not be stored at
 *   exactly its length (readers would take it for raw).
 * - Every stub's reference is resolved to its stream map the same way (Stream container, highest
 *   generation first); the map must end where the part ends.
 * - Each problem then lists the stubs that use what it names (a stream map, a chunk of one, a dangling
 *   entry), and the report lists every affected stub.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "common/util.h"
#include "maint/winverify_internal.h"
#include "store/format_windows.h"
#include "windows/winvolume.h"


/* ---- the volume's stubs ---- */

static uint32_t add_stub(winverifier *v, const char *rel)
{
    v->stubs = xgrow(v->stubs, &v->cap_stubs, v->nstubs, sizeof(*v->stubs), 64);
    v->stubs[v->nstubs] = (vstub){ .path = xstrdup(rel) };
    return (uint32_t)v->nstubs++;
}

/* One file of the volume: path (full) and rel (under the volume). */
static void visit_file(winverifier *v, const char *path, const char *rel, const uint8_t *guid)
{
    uint8_t *b = NULL;
    size_t n = 0;
    const char *xattr;
    int r = winvolume_read_reparse(path, false, &b, &n, &xattr);
    if (r == 0)
        return;
    if (r < 0 || n > WINSTORE_STUB_MAX) {
        free(r > 0 ? b : NULL);
        uint32_t s = add_stub(v, rel);
        v->stubs[s].problem = wv_problem(v, rel, false, 0, false, 0, false, "cannot read its reparse data: %s",
                                         r > 0 ? "larger than NTFS allows" : strerror(-r));
        v->rep->stubs++;
        return;
    }
    winreparse rp;
    r = winreparse_parse(b, n, &rp);
    free(b);
    if (r == -ENOMEM) {
        fputs("rehydrate: out of memory\n", stderr);
        abort();
    }
    if (r < 0) {
        uint32_t s = add_stub(v, rel);
        v->stubs[s].problem = wv_problem(v, rel, true, rp.why_at, false, 0, false, "reparse point: %s", rp.why);
        v->rep->stubs++;
        return;
    }
    if (!guid || memcmp(rp.guid, guid, 16) == 0) {
        uint32_t s = add_stub(v, rel);
        v->rep->stubs++;
        for (size_t i = 0; i < rp.nrefs; i++) {
            v->refs = xgrow(v->refs, &v->cap_refs, v->nrefs, sizeof(*v->refs), 64);
            v->refs[v->nrefs++] = (vref){ .stub = s, .part = (uint32_t)i, .r = rp.refs[i] };
        }
    }
    winreparse_free(&rp);
}

/* Walks the directory path (rel under the volume; "" at its root). */
static int walk_dir(winverifier *v, bytebuf *path, size_t rel_at, const uint8_t *guid)
{
    DIR *d = opendir((char *)path->data);
    if (!d)
        return -errno;
    struct dirent *de;
    size_t saved = path->len; /* without the NUL */
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "System Volume Information"))
            continue;
        path->len = saved;
        if (saved && path->data[saved - 1] != '/')
            buf_put_u8(path, '/');
        buf_append(path, name, strlen(name) + 1);
        path->len--;
        unsigned char type = de->d_type;
        struct stat st;
        if (type == DT_UNKNOWN && lstat((char *)path->data, &st) == 0)
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : 0;
        const char *rel = (char *)path->data + MIN(rel_at, path->len);
        if (type == DT_DIR) {
            int e = walk_dir(v, path, rel_at, guid);
            if (e < 0) /* one unreadable directory does not end the walk */
                wv_problem(v, *rel ? rel : ".", false, 0, false, 0, true, "cannot read the directory: %s; its "
                           "files were not checked", strerror(-e));
        } else if (type == DT_REG || type == DT_LNK) {
            visit_file(v, (char *)path->data, rel, guid);
        }
    }
    path->len = saved;
    path->data[saved] = '\0';
    closedir(d);
    return r;
}

static int cmp_ref(const void *a, const void *b)
{
    const vref *x = a, *y = b;
    if (x->r.container != y->r.container)
        return x->r.container < y->r.container ? -1 : 1;
    if (x->r.seq != y->r.seq)
        return x->r.seq < y->r.seq ? -1 : 1;
    return x->stub < y->stub ? -1 : x->stub > y->stub;
}

int wv_walk_volume(winverifier *v, const char *volume, const uint8_t *guid)
{
    struct stat st;
    if (stat(volume, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    bytebuf path = { 0 };
    buf_append(&path, volume, strlen(volume) + 1);
    path.len--;
    while (path.len > 1 && path.data[path.len - 1] == '/')
        path.data[--path.len] = '\0';
    size_t rel_at = path.len + (path.data[path.len - 1] != '/');
    int r = walk_dir(v, &path, rel_at, guid);
    buf_free(&path);
    sort_array(v->refs, v->nrefs, sizeof(*v->refs), cmp_ref);
    return r;
}

bool wv_smap_begin(const winverifier *v, uint32_t container, uint32_t seq, uint64_t *ret_begin)
{
    size_t lo = 0, hi = v->nrefs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const winreparse_ref *r = &v->refs[mid].r;
        if (r->container < container || (r->container == container && r->seq < seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->nrefs || v->refs[lo].r.container != container || v->refs[lo].r.seq != seq)
        return false;
    *ret_begin = v->refs[lo].r.begin;
    return true;
}

/* ---- chunk lengths from the stream maps ---- */

static int cmp_len(const void *a, const void *b)
{
    const vlen *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->len < y->len ? -1 : x->len > y->len;
}

void wv_index_lengths(winverifier *v)
{
    v->lens = xcalloc(v->nents, sizeof(*v->lens));
    size_t n = 0;
    for (size_t i = 0; i < v->nents; i++)
        if (v->ents[i].length)
            v->lens[n++] = (vlen){ v->ents[i].container, v->ents[i].seq, v->ents[i].length };
    sort_array(v->lens, n, sizeof(*v->lens), cmp_len);
    size_t m = 0; /* one per (id, seq); maps that disagree leave the length unknown (0) */
    for (size_t i = 0; i < n; i++) {
        if (m && v->lens[m - 1].id == v->lens[i].id && v->lens[m - 1].seq == v->lens[i].seq) {
            if (v->lens[m - 1].len != v->lens[i].len)
                v->lens[m - 1].len = 0;
            continue;
        }
        v->lens[m++] = v->lens[i];
    }
    v->nlens = m;
}

bool wv_chunk_length(const winverifier *v, uint32_t id, uint32_t seq, uint32_t *ret_len)
{
    const vlen key = { id, seq, 0 };
    size_t lo = 0, hi = v->nlens;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const vlen *x = &v->lens[mid];
        if (x->id < key.id || (x->id == key.id && x->seq < key.seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->nlens || v->lens[lo].id != id || v->lens[lo].seq != seq || v->lens[lo].len == 0)
        return false;
    *ret_len = v->lens[lo].len;
    return true;
}

/* ---- resolving references ---- */

/* What a reference names: a record of this type, sequence number, stored size and digest (dlen bytes). */
typedef struct want {
    uint8_t type;
    uint32_t seq, offset, len;
    const uint8_t *digest;
    size_t dlen;
} want;

static bool fits(const vrec *r, const want *w)
{
    return r && r->seq == w->seq && r->type == w->type && r->payload_len == w->len &&
           memcmp(r->digest, w->digest, w->dlen) == 0;
}

/* The record in c: at the offset, else through the Rrtl. Else NULL, and *damage (when still 0) the
 * problem of a damaged stretch the reference points into. */
static vrec *find_in(winverifier *v, const vctr *c, const want *w, uint32_t *damage)
{
    if (c->unusable) {
        *damage = *damage ? *damage : c->unusable;
        return NULL;
    }
    vrec *r = wv_rec_at(c, w->offset);
    if (fits(r, w))
        return r;
    uint32_t sp = wv_span_at(c, w->offset);
    for (uint32_t i = 0; i < c->nrrtl; i++) {
        if (c->rrtl[2 * i] != w->seq)
            continue;
        r = wv_rec_at(c, c->rrtl[2 * i + 1]);
        if (fits(r, w)) {
            v->rep->moved++;
            return r;
        }
        sp = sp ? sp : c->rrtl_bad[i] ? c->rrtl_bad[i] : wv_span_at(c, c->rrtl[2 * i + 1]);
    }
    *damage = *damage ? *damage : sp;
    return NULL;
}

/* The containers of a kind and id: [*lo, *hi) of v->ctrs (sorted Data first, by id, by generation). */
static void ctrs_of(const winverifier *v, bool data, uint32_t id, size_t *ret_lo, size_t *ret_hi)
{
    size_t lo = 0, hi = v->nctrs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const vctr *c = &v->ctrs[mid];
        if (c->data > data || (c->data == data && c->id < id))
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < v->nctrs && v->ctrs[end].data == data && v->ctrs[end].id == id)
        end++;
    *ret_lo = lo;
    *ret_hi = end;
}

/* Finds what w names in container id of a kind: generation gen first (when non-zero and present), then
 * the others, highest first. Sets *ret_ctr; NULL when not found (*damage as find_in, *ret_ngens the
 * generations present). */
static vrec *find(winverifier *v, bool data, uint32_t id, uint32_t gen, const want *w, size_t *ret_ctr,
                  uint32_t *damage, size_t *ret_ngens)
{
    size_t lo, hi;
    ctrs_of(v, data, id, &lo, &hi);
    *ret_ngens = hi - lo;
    *damage = 0;
    for (size_t i = lo; gen && i < hi; i++)
        if (v->ctrs[i].gen == gen) {
            vrec *r = find_in(v, &v->ctrs[i], w, damage);
            if (r) {
                *ret_ctr = i;
                return r;
            }
        }
    for (size_t i = hi; i-- > lo;) {
        if (gen && v->ctrs[i].gen == gen)
            continue;
        vrec *r = find_in(v, &v->ctrs[i], w, damage);
        if (r) {
            *ret_ctr = i;
            return r;
        }
    }
    return NULL;
}

static void resolve_entry(winverifier *v, vent *e)
{
    const vctr *sc = &v->ctrs[e->smap_ctr];
    const want w = { WIN_REC_DATA, e->seq, e->offset, e->stored_len, e->digest, WIN_DIGEST_LEN };
    size_t ci, ngens;
    uint32_t damage;
    vrec *r = find(v, true, e->container, e->generation, &w, &ci, &damage, &ngens);
    if (!r) {
        if (damage)
            e->problem = damage;
        else if (ngens == 0)
            e->problem = wv_problem(v, sc->name, true, e->at, true, e->smap_seq, false,
                                    "Smap entry %u: chunk %u of data container %08x: the container is missing "
                                    "(no Data/%08x.*.ccc)", (unsigned)e->index, (unsigned)e->seq,
                                    (unsigned)e->container, (unsigned)e->container);
        else
            e->problem = wv_problem(v, sc->name, true, e->at, true, e->smap_seq, false,
                                    "Smap entry %u: chunk %u of data container %08x generation %08x at %#x: no "
                                    "record of that sequence number, stored size and digest there nor through "
                                    "the Rrtl (%zu generation%s present)", (unsigned)e->index, (unsigned)e->seq,
                                    (unsigned)e->container, (unsigned)e->generation, (unsigned)e->offset, ngens,
                                    ngens == 1 ? "" : "s");
        return;
    }
    r->used = true;
    if (r->problem) {
        e->problem = r->problem;
        return;
    }
    const char *dname = v->ctrs[ci].name;
    if (e->length && r->raw_len && r->raw_len != e->length)
        e->problem = wv_problem(v, sc->name, true, e->at, true, e->smap_seq, false,
                                "Smap entry %u: chunk %u (%s at %#x) is %u bytes long, the stream map says %u",
                                (unsigned)e->index, (unsigned)e->seq, dname, (unsigned)r->offset,
                                (unsigned)r->raw_len, (unsigned)e->length);
    else if (e->length && r->compressed && e->stored_len == e->length)
        e->problem = wv_problem(v, sc->name, true, e->at, true, e->smap_seq, false,
                                "Smap entry %u: chunk %u (%s at %#x) is compressed but stored at exactly its "
                                "length: readers take it for raw", (unsigned)e->index, (unsigned)e->seq, dname,
                                (unsigned)r->offset);
}

/* Resolves one stub's part; returns its stream map's record or NULL, and *ret_problem what failed. */
static const vrec *resolve_ref(winverifier *v, const vref *f, uint32_t *ret_problem)
{
    size_t part = f->part;
    const winreparse_ref *ref = &f->r;
    const char *stub = v->stubs[f->stub].path;
    const want w = { WIN_REC_STREAM, ref->seq, ref->offset, ref->smap_size, ref->digest, 16 };
    size_t ci, ngens;
    uint32_t damage;
    const vrec *r = find(v, false, ref->container, ref->generation, &w, &ci, &damage, &ngens);
    *ret_problem = 0;
    if (!r) {
        if (damage)
            *ret_problem = damage;
        else if (ngens == 0)
            *ret_problem = wv_problem(v, stub, false, 0, true, ref->seq, false,
                                      "reparse point part %zu: stream map %u of Stream container %08x: the "
                                      "container is missing (no Stream/%08x.*.ccc)", part, (unsigned)ref->seq,
                                      (unsigned)ref->container, (unsigned)ref->container);
        else
            *ret_problem = wv_problem(v, stub, false, 0, true, ref->seq, false,
                                      "reparse point part %zu: no stream map %u of %u bytes with its digest at "
                                      "%#x of Stream container %08x nor through the Rrtl", part,
                                      (unsigned)ref->seq, (unsigned)ref->smap_size, (unsigned)ref->offset,
                                      (unsigned)ref->container);
        return NULL;
    }
    if (r->problem) {
        *ret_problem = r->problem;
        return NULL;
    }
    uint64_t end = v->ents[r->first + r->n - 1].end;
    if (end != ref->end)
        *ret_problem = wv_problem(v, stub, false, 0, true, ref->seq, false,
                                  "reparse point part %zu: its stream map (%s at %#x) ends at %llu, the part at %llu",
                                  part, v->ctrs[ci].name, (unsigned)r->offset, (unsigned long long)end,
                                  (unsigned long long)ref->end);
    return r;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Lists stub s under every problem in pids[0..n) and, if any, among the affected files. */
static void affects(winverifier *v, uint32_t s, uint32_t *pids, size_t n)
{
    sort_array(pids, n, sizeof(*pids), cmp_u32);
    winverify_report *rep = v->rep;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (pids[i] == 0 || (i && pids[i] == pids[i - 1]))
            continue;
        winverify_problem *p = &rep->problems[pids[i] - 1];
        p->files = xrealloc(p->files, (p->nfiles + 1) * sizeof(*p->files));
        p->files[p->nfiles++] = xstrdup(v->stubs[s].path);
        any = true;
    }
    if (any) {
        rep->files_affected = xrealloc(rep->files_affected, (rep->nfiles_affected + 1) * sizeof(char *));
        rep->files_affected[rep->nfiles_affected++] = xstrdup(v->stubs[s].path);
    }
}

void wv_resolve(winverifier *v)
{
    for (size_t i = 0; i < v->nents; i++)
        resolve_entry(v, &v->ents[i]);
    /* The stubs' parts, grouped by stub: what each one's maps meet. */
    uint32_t **pids = xcalloc(v->nstubs, sizeof(*pids));
    size_t *npids = xcalloc(v->nstubs, sizeof(*npids)), *cap = xcalloc(v->nstubs, sizeof(*cap));
    for (size_t s = 0; s < v->nstubs; s++)
        if (v->stubs[s].problem) {
            pids[s] = xgrow(pids[s], &cap[s], npids[s], sizeof(**pids), 8);
            pids[s][npids[s]++] = v->stubs[s].problem;
        }
    for (size_t i = 0; i < v->nrefs; i++) {
        uint32_t s = v->refs[i].stub, pr;
        const vrec *r = resolve_ref(v, &v->refs[i], &pr);
        if (pr) {
            pids[s] = xgrow(pids[s], &cap[s], npids[s], sizeof(**pids), 8);
            pids[s][npids[s]++] = pr;
        }
        for (uint32_t k = 0; r && k < r->n; k++)
            if (v->ents[r->first + k].problem) {
                pids[s] = xgrow(pids[s], &cap[s], npids[s], sizeof(**pids), 8);
                pids[s][npids[s]++] = v->ents[r->first + k].problem;
            }
    }
    for (size_t s = 0; s < v->nstubs; s++) {
        affects(v, (uint32_t)s, pids[s], npids[s]);
        free(pids[s]);
    }
    free(pids);
    free(npids);
    free(cap);
    winverify_report *rep = v->rep;
    for (size_t i = 0; i < rep->nproblems; i++)
        sort_array(rep->problems[i].files, rep->problems[i].nfiles, sizeof(char *), cmp_str);
    sort_array(rep->files_affected, rep->nfiles_affected, sizeof(char *), cmp_str);
    for (size_t i = 0; i < v->nctrs; i++)
        for (size_t k = 0; v->ctrs[i].data && k < v->ctrs[i].nrecs; k++)
            rep->unreferenced_chunks += !v->ctrs[i].recs[k].used;
}

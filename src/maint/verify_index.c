/*
 * verify_index.c — checks index.db against what verify's container walk found (see verify_index.h).
 *
 * The walk's records are kept in one array, sorted by (kind, digest) at the end, and merged with the
 * index's rows, which SQLite returns in digest order: one pass over each, no lookup per record. A row
 * agrees when some record of its digest is where it says (container, offset, stored and raw length,
 * codec, pack member); the index keeps one row per digest, so a chunk stored twice needs one row. Rows
 * that point into a container or pack that the walk could not list are not judged: verify reports that
 * damage on its own. The first VINDEX_LIST_MAX findings are listed; a last problem gives their count and
 * says that the index is derived data and how it is rebuilt.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "common/util.h"
#include "maint/verify_index.h"
#include "store/container.h"

#define VINDEX_LIST_MAX 20

typedef struct vrec {
    uint8_t kind;
    uint8_t digest[HASH_LEN];
    index_loc loc;
} vrec;

typedef struct vpack {
    uint32_t id;
    uint64_t offset;
    bool known;
} vpack;

struct vindex {
    vrec *recs;
    size_t nrecs, cap_recs;
    vpack *packs; /* in (id, offset) order: the walk goes container by container, records by offset */
    size_t npacks, cap_packs;
    index_container *unknown;
    size_t nunknown, cap_unknown;
    /* The index, opened by vindex_open before the walk and checked by vindex_check after it. */
    index_t *ix;
    int open_r;    /* index_open's answer: 0, or why ix is NULL */
    bool in_store; /* ix is the store's index.db, not a cached copy at path */
    char *path;
    uint32_t limit[2]; /* store_unfinished_after */
};

/* The state of one vindex_check. */
typedef struct vcheck {
    vindex *vi;
    verify_report *rep;
    const char *object; /* "index.db", or the cached index's path */
    uint8_t kind;       /* the table being merged */
    size_t next;        /* the first record not merged yet */
    uint64_t found;     /* problems found */
} vcheck;

vindex *vindex_new(void)
{
    return xcalloc(1, sizeof(vindex));
}

void vindex_free(vindex *vi)
{
    if (!vi)
        return;
    free(vi->recs);
    free(vi->packs);
    free(vi->unknown);
    index_close(vi->ix);
    free(vi->path);
    free(vi);
}

void vindex_add(vindex *vi, uint8_t kind, const uint8_t digest[HASH_LEN], const index_loc *loc)
{
    vi->recs = xgrow(vi->recs, &vi->cap_recs, vi->nrecs, sizeof(*vi->recs), 1024);
    vrec *r = &vi->recs[vi->nrecs++];
    r->kind = kind;
    memcpy(r->digest, digest, HASH_LEN);
    r->loc = *loc;
}

void vindex_pack(vindex *vi, uint32_t id, uint64_t offset)
{
    vi->packs = xgrow(vi->packs, &vi->cap_packs, vi->npacks, sizeof(*vi->packs), 64);
    vi->packs[vi->npacks++] = (vpack){id, offset, false};
}

static vpack *find_pack(vindex *vi, uint32_t id, uint64_t offset)
{
    size_t lo = 0, hi = vi->npacks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const vpack *p = &vi->packs[mid];
        if (p->id < id || (p->id == id && p->offset < offset))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < vi->npacks && vi->packs[lo].id == id && vi->packs[lo].offset == offset ? &vi->packs[lo]
                                                                                       : NULL;
}

void vindex_pack_known(vindex *vi, uint32_t id, uint64_t offset)
{
    vpack *p = find_pack(vi, id, offset);
    if (p)
        p->known = true;
}

void vindex_add_records(vindex *vi, const index_container *c, const container_record *rec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const container_record *x = &rec[i];
        index_loc loc = { .container = c->id, .offset = x->offset, .stored_len = x->stored_len,
                           .raw_len = x->raw_len, .codec = x->codec };
        if (x->type == RECORD_PACK && c->kind == CONTAINER_DATA)
            vindex_pack(vi, c->id, x->offset);
        else if ((x->type == RECORD_CHUNK && c->kind == CONTAINER_DATA) ||
                 (x->type == RECORD_STREAM && c->kind == CONTAINER_STREAM))
            vindex_add(vi, c->kind, x->digest, &loc);
    }
}

void vindex_add_members(vindex *vi, uint32_t id, const container_record *pack, const uint8_t *payload)
{
    for (unsigned k = 0; k < pack->members; k++) {
        pack_entry pe;
        if (pack_member(pack, payload, k, &pe) < 0)
            return;
        index_loc loc = { .container = id, .offset = pack->offset, .stored_len = pack->stored_len,
                           .raw_len = pe.raw_len, .codec = pack->codec, .member = (uint16_t)(k + 1) };
        vindex_add(vi, CONTAINER_DATA, pe.digest, &loc);
    }
    vindex_pack_known(vi, id, pack->offset);
}

void vindex_unknown_container(vindex *vi, uint8_t kind, uint32_t id)
{
    vi->unknown = xgrow(vi->unknown, &vi->cap_unknown, vi->nunknown, sizeof(*vi->unknown), 8);
    vi->unknown[vi->nunknown++] = (index_container){.id = id, .kind = kind};
}

void vindex_known_container(vindex *vi, uint8_t kind, uint32_t id)
{
    for (size_t i = vi->nunknown; i-- > 0;)
        if (vi->unknown[i].kind == kind && vi->unknown[i].id == id) {
            vi->unknown[i] = vi->unknown[--vi->nunknown];
            return;
        }
}

static int cmp_vrec(const void *a, const void *b)
{
    const vrec *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return memcmp(x->digest, y->digest, HASH_LEN);
}

static void add_problem(verify_report *rep, const char *object, int code, char *detail)
{
    rep->problems = xrealloc(rep->problems, (rep->nproblems + 1) * sizeof(*rep->problems));
    rep->problems[rep->nproblems++] =
        (verify_problem){.object = xstrdup(object), .code = code, .detail = detail};
}

/* Counts a finding and lists it while fewer than VINDEX_LIST_MAX are listed; takes `detail`. */
static void finding(vcheck *c, int code, char *detail)
{
    if (c->found++ < VINDEX_LIST_MAX)
        add_problem(c->rep, c->object, code, detail);
    else
        free(detail);
}

static const char *what(uint8_t kind)
{
    return kind == CONTAINER_DATA ? "chunk" : "stream map";
}

static void hex16(const uint8_t *digest, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static char *describe(uint8_t kind, const index_loc *l)
{
    char cp[CONTAINER_PATH_MAX];
    return xasprintf("%s offset %llu (stored %u, raw %u bytes, codec %u, member %u)",
                     container_path(kind, l->container, cp), (unsigned long long)l->offset, l->stored_len,
                     l->raw_len, l->codec, l->member);
}

static bool same_loc(const index_loc *a, const index_loc *b)
{
    return a->container == b->container && a->offset == b->offset && a->stored_len == b->stored_len &&
           a->raw_len == b->raw_len && a->codec == b->codec && a->member == b->member;
}

/* Whether the walk could not list what the row points into, so that the row cannot be judged. */
static bool unjudged(vindex *vi, uint8_t kind, const index_loc *l)
{
    for (size_t i = 0; i < vi->nunknown; i++)
        if (vi->unknown[i].kind == kind && vi->unknown[i].id == l->container)
            return true;
    if (kind == CONTAINER_DATA && l->member) {
        const vpack *p = find_pack(vi, l->container, l->offset);
        return p && !p->known;
    }
    return false;
}

/* Reports the records of the table's kind before `digest` (all that are left when digest is NULL) as
 * not indexed, one finding per digest. */
static void unindexed_before(vcheck *c, const uint8_t *digest)
{
    vindex *vi = c->vi;
    while (c->next < vi->nrecs && vi->recs[c->next].kind == c->kind &&
           (!digest || memcmp(vi->recs[c->next].digest, digest, HASH_LEN) < 0)) {
        const vrec *r = &vi->recs[c->next];
        char hex[17];
        hex16(r->digest, hex);
        _cleanup_(freep) char *at = describe(c->kind, &r->loc);
        finding(c, RH_ENOCHUNK, xasprintf("%s %s at %s is not in the index", what(c->kind), hex, at));
        while (++c->next < vi->nrecs && vi->recs[c->next].kind == c->kind &&
               memcmp(vi->recs[c->next].digest, r->digest, HASH_LEN) == 0) {
        }
    }
}

static int on_row(void *ud, const uint8_t *digest, const index_loc *loc)
{
    vcheck *c = ud;
    vindex *vi = c->vi;
    if (!digest) {
        finding(c, RH_ECORRUPT,
                xasprintf("a row of the %s table has a digest that is not %d bytes",
                          c->kind == CONTAINER_DATA ? "chunks" : "streams", HASH_LEN));
        return 0;
    }
    char hex[17];
    hex16(digest, hex);
    unindexed_before(c, digest);
    size_t first = c->next, end = first;
    while (end < vi->nrecs && vi->recs[end].kind == c->kind &&
           memcmp(vi->recs[end].digest, digest, HASH_LEN) == 0)
        end++;
    c->next = end;
    if (!loc) {
        finding(c, RH_ECORRUPT, xasprintf("the row of %s %s has values out of range", what(c->kind), hex));
        return 0;
    }
    for (size_t i = first; i < end; i++)
        if (same_loc(&vi->recs[i].loc, loc))
            return 0;
    if (unjudged(vi, c->kind, loc))
        return 0;
    _cleanup_(freep) char *says = describe(c->kind, loc);
    if (first == end) {
        finding(c, RH_ECORRUPT,
                xasprintf("the row of %s %s points at %s, but no container holds that %s", what(c->kind), hex,
                          says, what(c->kind)));
    } else {
        _cleanup_(freep) char *is = describe(c->kind, &vi->recs[first].loc);
        finding(c, RH_ECORRUPT,
                xasprintf("the row of %s %s points at %s, but the %s is at %s", what(c->kind), hex, says,
                          what(c->kind), is));
    }
    return 0;
}

/* Merges one table (kind) with the walk's records of that kind. */
static void check_table(vcheck *c, index_t *ix, uint8_t kind)
{
    c->kind = kind;
    while (c->next < c->vi->nrecs && c->vi->recs[c->next].kind < kind)
        c->next++;
    int r = index_each(ix, kind == CONTAINER_STREAM, on_row, c);
    if (r < 0) {
        finding(c, r,
                xasprintf("reading the %s table: %s", kind == CONTAINER_DATA ? "chunks" : "streams",
                          r == RH_ECORRUPT ? "SQLite reports the file malformed" : rh_strerror(r)));
        return; /* what could not be read is not reported as missing as well */
    }
    unindexed_before(c, NULL);
}

/* Drops what is out of the index's reach (store_unfinished_after: a stopped backup's containers on object
 * storage, which the walk checked as containers): from the listing and from the walk's records. */
static void drop_unfinished(vindex *vi, const uint32_t limit[2], index_container *have, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (have[i].id <= limit[have[i].kind - CONTAINER_DATA])
            have[k++] = have[i];
    *n = k;
    k = 0;
    for (size_t i = 0; i < vi->nrecs; i++)
        if (vi->recs[i].loc.container <= limit[vi->recs[i].kind - CONTAINER_DATA])
            vi->recs[k++] = vi->recs[i];
    vi->nrecs = k;
}

/* Whether the index lists the containers that the store has (a stale index is rebuilt when opened). */
static void check_containers(vcheck *c, rh_store *s, index_t *ix)
{
    index_container *have = NULL;
    size_t n = 0;
    bool match = true;
    const uint32_t *limit = c->vi->limit;
    int r = store_list_containers_upto(s, limit, &have, &n, NULL);
    if (r >= 0) {
        drop_unfinished(c->vi, limit, have, &n);
        r = index_matches(ix, have, n, &match);
    }
    free(have);
    if (r < 0)
        finding(c, r, xasprintf("reading its container list: %s", rh_strerror(r)));
    else if (!match)
        finding(c, RH_ESTALEINDEX,
                xstrdup("its container list differs from the store's containers (stale or "
                        "damaged)"));
}

void vindex_open(vindex *vi, rh_store *s, uint32_t limit[2])
{
    vi->path = store_index_path(s);
    vi->in_store = s->rootfd >= 0 && !s->readonly;
    vi->open_r = -ENOENT;
    /* Behind callbacks (a store on object storage), the store's own index.db is what readers use. */
    if (s->rootfd < 0 && (vi->open_r = index_open_ops(s->ops, s->ctx, STORE_INDEX_FILE, s->cfg.uuid,
                                                      store_index_block(s), &vi->ix)) >= 0)
        vi->in_store = true;
    /* On object storage it is the only index there is (backups update it, mounts read it): when it
     * cannot be read that is the finding, whatever a cached copy says. */
    if (s->s3)
        vi->in_store = true;
    else if (!vi->in_store || s->rootfd >= 0)
        vi->open_r = index_open(vi->path, s->cfg.uuid, INDEX_READONLY, &vi->ix);
    if (vi->open_r < 0)
        vi->ix = NULL;
    store_unfinished_after(s, vi->ix, vi->limit); /* an index that cannot answer limits nothing */
    limit[0] = vi->limit[0];
    limit[1] = vi->limit[1];
}

void vindex_check(vindex *vi, rh_store *s, verify_report *rep)
{
    index_t *ix = vi->ix;
    int r = vi->open_r;
    vcheck c = {.vi = vi, .rep = rep, .object = vi->in_store ? STORE_INDEX_FILE : vi->path};
    if (r == -ENOENT) {
        if (!s->s3 || vi->nrecs == 0)
            return; /* no index yet: the first reader builds it */
        finding(&c, RH_ENOINDEX, xstrdup("missing, though the store has containers: backups refuse to run"));
    } else if (r == RH_ESTALEINDEX) {
        finding(&c, r,
                xstrdup("not a readable index of this store: SQLite cannot read its header or schema, "
                        "or they are not those of an index of this store"));
    } else if (r < 0) {
        finding(&c, r, xasprintf("cannot be opened: %s", rh_strerror(r)));
    } else {
        char *report = NULL;
        r = index_integrity(ix, 10, &report);
        if (r < 0)
            finding(&c, r, xasprintf("SQLite's integrity check could not run: %s", rh_strerror(r)));
        else if (report)
            finding(&c, RH_ECORRUPT, xasprintf("SQLite's integrity check: %s", report));
        free(report);
        check_containers(&c, s, ix);
        sort_array(vi->recs, vi->nrecs, sizeof(*vi->recs), cmp_vrec);
        check_table(&c, ix, CONTAINER_DATA);
        check_table(&c, ix, CONTAINER_STREAM);
        index_close(ix);
        vi->ix = NULL;
    }
    if (c.found)
        add_problem(
            rep, c.object, RH_ECORRUPT,
            xasprintf("%llu index problem%s%s; the index is derived data: 'rehydrate reindex %s' rebuilds "
                      "it from the containers (readers also rebuild it when they find it damaged)",
                      (unsigned long long)c.found, c.found == 1 ? "" : "s",
                      c.found > VINDEX_LIST_MAX ? " (the first ones listed above)" : "", s->path));
}

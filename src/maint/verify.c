/*
 * verify.c — reads every container in large coalesced reads (through the store callbacks), checks each
 * record against its footer entry, its checksum and, after decoding, its SHA-256; then walks every
 * catalog and checks that every regular file's stream map is intact and names only chunks that were
 * found intact. What fails is reported with the object and offset; files that need damaged or missing
 * data are reported by snapshot and path.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "common/digestset.h"
#include "common/util.h"
#include "compress/compress.h"
#include "maint/verify.h"
#include "maint/verify_index.h"
#include "snapshot/catalog.h"
#include "store/container.h"
#include "store/streammap.h"

#define VERIFY_READ_SIZE (16u << 20)

typedef struct verifier {
    rh_store *s;
    uint8_t *reached; /* bitmap: entries of the current catalog that the walk reached */
    verify_report *rep;
    digest_set chunks_ok, streams_ok, streams_bad;
    vindex *vi;      /* what the index should hold (verify_index.c) */
    uint32_t cur_id; /* the container being read */
    void (*progress)(void *ud, uint64_t bytes);
    void *ud;
} verifier;

static void problem(verifier *v, const char *object, bool has_off, uint64_t off, int code,
                    const char *detail)
{
    verify_report *r = v->rep;
    r->problems = xrealloc(r->problems, (r->nproblems + 1) * sizeof(*r->problems));
    r->problems[r->nproblems++] = (verify_problem){
        .object = xstrdup(object),
        .has_offset = has_off,
        .offset = off,
        .code = code,
        .detail = xstrdup(detail ? detail : rh_strerror(code)),
    };
}

static void affected(verifier *v, const char *snap, const char *path)
{
    verify_report *r = v->rep;
    r->affected = xrealloc(r->affected, (r->naffected + 1) * sizeof(*r->affected));
    r->affected[r->naffected++] = (verify_affected){ xstrdup(snap), xstrdup(path) };
}

/* Decodes a pack and checks every member against its digest; the good ones join chunks_ok. */
static int check_pack(verifier *v, const container_record *rec, const uint8_t *payload, uint8_t *scratch)
{
    const uint8_t *data;
    int r = pack_decode(rec, payload, scratch, &data);
    if (r < 0)
        return r;
    /* A member that fails costs only its own files: the others still join chunks_ok. */
    int bad = 0;
    for (unsigned k = 0; k < rec->members; k++) {
        pack_entry pe;
        uint8_t d[HASH_LEN];
        if ((r = pack_member(rec, payload, k, &pe)) < 0)
            return r;
        xhash_sha256(data + pe.offset, pe.raw_len, d);
        if (memcmp(d, pe.digest, HASH_LEN) != 0) {
            bad = RH_EDIGEST;
            continue;
        }
        digest_set_add(&v->chunks_ok, pe.digest);
        v->rep->chunks++;
    }
    v->rep->packs++;
    return bad;
}

/* Checks one decoded record payload against its digest (and, for stream maps, its structure). */
static int check_payload(const container_record *rec, const uint8_t *payload, uint8_t *scratch)
{
    int r = decompress_chunk(rec->codec, payload, rec->stored_len, scratch, rec->raw_len);
    if (r < 0)
        return r;
    uint8_t d[HASH_LEN];
    xhash_sha256(scratch, rec->raw_len, d);
    if (memcmp(d, rec->digest, HASH_LEN) != 0)
        return RH_EDIGEST;
    if (rec->type == RECORD_STREAM) {
        streammap *m;
        if ((r = streammap_decode(scratch, rec->raw_len, &m)) < 0)
            return r;
        streammap_free(m);
    }
    return 0;
}

static bool same_record(const container_record *a, const container_record *b)
{
    return a->type == b->type && a->codec == b->codec && a->members == b->members &&
           a->stored_len == b->stored_len &&
           a->raw_len == b->raw_len && memcmp(a->digest, b->digest, HASH_LEN) == 0;
}

static void verify_records(verifier *v, const char *path, const container_record *rec, size_t n,
                           uint64_t end)
{
    uint64_t expect = CONTAINER_HEADER_SIZE;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    for (size_t i = 0; i < n;) {
        /* One read covers as many consecutive records as fit in VERIFY_READ_SIZE (at least one). */
        size_t j = i;
        uint64_t start = rec[i].offset, stop = start;
        while (j < n && rec[j].offset == stop &&
               (j == i || rec[j].offset + RECORD_HEADER_SIZE + rec[j].stored_len - start <= VERIFY_READ_SIZE)) {
            stop = rec[j].offset + RECORD_HEADER_SIZE + rec[j].stored_len;
            j++;
        }
        if (rec[i].offset != expect) {
            problem(v, path, true, expect, RH_ECORRUPT, "footer does not match the records (gap or overlap)");
            return;
        }
        uint8_t *blk = xmalloc(stop - start);
        int r = store_read(v->s, path, start, blk, stop - start);
        if (r < 0) {
            problem(v, path, true, start, r, NULL);
            free(blk);
            return;
        }
        for (size_t k = i; k < j; k++) {
            container_record got;
            const uint8_t *payload;
            uint64_t at = rec[k].offset - start;
            r = container_parse_record(blk + at, stop - start - at, rec[k].offset, &got, &payload);
            if (r >= 0 && !same_record(&got, &rec[k]))
                r = RH_ECORRUPT;
            if (r >= 0 && got.type == RECORD_PACK)
                vindex_add_members(v->vi, v->cur_id, &got, payload);
            if (r >= 0) {
                if (got.raw_len > scratch_cap) {
                    scratch_cap = got.raw_len;
                    scratch = xrealloc(scratch, scratch_cap);
                }
                r = got.type == RECORD_PACK ? check_pack(v, &got, payload, scratch)
                                            : check_payload(&got, payload, scratch);
            }
            v->rep->records++;
            if (r < 0) {
                char detail[128];
                snprintf(detail, sizeof(detail), "record at offset %llu: %s",
                         (unsigned long long)rec[k].offset, rh_strerror(r));
                problem(v, path, true, rec[k].offset, r, detail);
                if (rec[k].type == RECORD_STREAM)
                    digest_set_add(&v->streams_bad, rec[k].digest);
                continue;
            }
            if (got.type == RECORD_CHUNK) {
                digest_set_add(&v->chunks_ok, got.digest);
                v->rep->chunks++;
            } else if (got.type == RECORD_PACK) {
                /* check_pack counted its members */
            } else {
                digest_set_add(&v->streams_ok, got.digest);
                v->rep->streams++;
            }
            v->rep->bytes += RECORD_HEADER_SIZE + got.stored_len;
        }
        free(blk);
        expect = stop;
        i = j;
        if (v->progress)
            v->progress(v->ud, v->rep->bytes);
    }
    free(scratch);
    if (expect != end)
        problem(v, path, true, expect, RH_ECORRUPT, "records do not end where the footer begins");
}

static int cmp_rec(const void *a, const void *b)
{
    const container_record *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Checks the records of a container once their list is known (from the footer or from a walk). Only a
 * complete list lets the index check judge the rows that point into the container. */
static void verify_listed(verifier *v, const char *path, const index_container *c, container_record *rec,
                          size_t n, uint64_t end, bool complete)
{
    sort_array(rec, n, sizeof(*rec), cmp_rec);
    if (complete)
        vindex_known_container(v->vi, c->kind, c->id);
    vindex_add_records(v->vi, c, rec, n);
    v->cur_id = c->id;
    for (size_t i = 0; i < n; i++)
        if ((rec[i].type == RECORD_STREAM) != (c->kind == CONTAINER_STREAM))
            problem(v, path, true, rec[i].offset, RH_ECORRUPT, "record of the wrong type for its container");
    verify_records(v, path, rec, n, end);
    free(rec);
    v->rep->containers++;
}

/*
 * A container whose header (h NULL) or footer cannot be trusted still holds its records, which readers
 * find through the index and check one by one: walk them from the end of the fixed-size header, so that
 * only the chunks that are really unreadable count as damaged. The walk stops at the footer (at
 * h->footer_offset, or at a footer magic when the header is damaged) or at the first record that fails;
 * the latter is reported with its offset.
 */
static void verify_walked(verifier *v, const char *path, const index_container *c, const container_header *h)
{
    container_record *rec;
    size_t n;
    uint64_t end;
    int bad;
    int r = h ? container_scan(v->s->ops, v->s->ctx, path, &rec, &n, &end, &bad)
              : container_scan_headerless(v->s->ops, v->s->ctx, path, &rec, &n, &end, &bad);
    if (r < 0) {
        problem(v, path, true, CONTAINER_HEADER_SIZE, r, "cannot walk the records");
        return;
    }
    if (bad < 0) {
        char detail[160];
        snprintf(detail, sizeof(detail), "record at offset %llu: %s (the records after it were not checked)",
                 (unsigned long long)end, rh_strerror(bad));
        problem(v, path, true, end, bad, detail);
    }
    verify_listed(v, path, c, rec, n, end, bad >= 0);
}

static void verify_container(verifier *v, const index_container *c)
{
    char path[CONTAINER_PATH_MAX];
    container_path(c->kind, c->id, path);
    container_header h;
    char detail[160];
    int r = container_read_header(v->s->ops, v->s->ctx, path, &h);
    /* Until its records are listed, the index rows that point into it are not judged. */
    vindex_unknown_container(v->vi, c->kind, c->id);
    if (r < 0) {
        snprintf(detail, sizeof(detail), "header at offset 0: %s; its records were checked one by one",
                 rh_strerror(r));
        problem(v, path, true, 0, r, detail);
        verify_walked(v, path, c, NULL);
        return;
    }
    if (h.kind != c->kind || h.id != c->id || memcmp(h.uuid, v->s->cfg.uuid, 16) != 0) {
        problem(v, path, true, 0, RH_ECORRUPT, "header names another container or store");
        return;
    }
    container_record *rec;
    size_t n;
    if (!h.footer_offset) {
        problem(v, path, false, 0, RH_ECORRUPT, "container is not sealed (no footer)");
        verify_walked(v, path, c, &h);
        return;
    }
    if ((r = container_read_footer(v->s->ops, v->s->ctx, path, &h, &rec, &n)) < 0) {
        snprintf(detail, sizeof(detail), "footer (record table) at offset %llu: %s; its records were checked "
                 "one by one", (unsigned long long)h.footer_offset, rh_strerror(r));
        problem(v, path, true, h.footer_offset, r, detail);
        verify_walked(v, path, c, &h);
        return;
    }
    verify_listed(v, path, c, rec, n, h.footer_offset, true);
}

/* Whether every chunk of the stream map that `e` refers to was found intact. */
static bool file_intact(verifier *v, const char *snappath, const catalog_entry *e)
{
    const catalog_stream *cs = &e->stream;
    if (digest_set_contains(&v->streams_bad, cs->digest))
        return false;
    char path[CONTAINER_PATH_MAX];
    container_path(CONTAINER_STREAM, cs->container, path);
    uint8_t *rec = xmalloc(RECORD_HEADER_SIZE + (size_t)cs->stored_len);
    uint8_t *raw = xmalloc(cs->raw_len ? cs->raw_len : 1);
    container_record got;
    const uint8_t *payload;
    streammap *m = NULL;
    int r = container_read_record(v->s->ops, v->s->ctx, path, cs->offset, cs->stored_len, rec, &got, &payload);
    if (r >= 0 && (memcmp(got.digest, cs->digest, HASH_LEN) != 0 || got.raw_len != cs->raw_len))
        r = RH_ECORRUPT;
    if (r >= 0)
        r = check_payload(&got, payload, raw);
    if (r >= 0)
        r = streammap_decode(raw, got.raw_len, &m);
    bool ok = r >= 0 && m->size == e->size;
    for (size_t i = 0; ok && i < m->n; i++)
        if (!m->e[i].hole && !digest_set_contains(&v->chunks_ok, m->e[i].digest))
            ok = false;
    streammap_free(m);
    free(rec);
    free(raw);
    if (!ok)
        digest_set_add(&v->streams_bad, cs->digest);
    return ok;
}

/* ---- Damaged catalogs: what is lost, by path where it is known, else by entry index ---- */

static const char *dir_name(const bytebuf *path) { return path->len ? (char *)path->data : "/"; }

/* A child of directory `path` that the catalog could not give (damaged, or refused for its name). */
static void lost_entry(verifier *v, const char *snap, const bytebuf *path, const catalog_entry *e)
{
    _cleanup_(freep) char *obj = store_snapshot_path(snap);
    _cleanup_(freep) char *detail = NULL, *lost = NULL;
    if (e->damage == RH_EUNSAFE) {
        detail = xasprintf("directory %s: entry %llu has an unsafe name: it and its contents are refused",
                           dir_name(path), (unsigned long long)e->idx);
        lost = xasprintf("%s%s%s", path->len ? (char *)path->data : "", path->len ? "/" : "", (char *)e->name);
    } else {
        detail = xasprintf("directory %s: entry %llu is damaged: lost, with its contents if a directory",
                           dir_name(path), (unsigned long long)e->idx);
        lost = xasprintf("%s%s<damaged entry %llu>", path->len ? (char *)path->data : "", path->len ? "/" : "",
                         (unsigned long long)e->idx);
    }
    problem(v, obj, false, 0, e->damage, detail);
    affected(v, snap, lost);
}

static void mark_reached(verifier *v, uint64_t idx)
{
    if (v->reached)
        v->reached[idx / 8] |= (uint8_t)(1u << (idx % 8));
}

/* Entries that no path reaches (they hang below a damaged directory entry), as index ranges. */
static void report_unreached(verifier *v, const char *snap, uint64_t count)
{
    _cleanup_(freep) char *obj = store_snapshot_path(snap);
    for (uint64_t i = 0; v->reached && i < count;) {
        if (v->reached[i / 8] & (1u << (i % 8))) {
            i++;
            continue;
        }
        uint64_t j = i;
        while (j < count && !(v->reached[j / 8] & (1u << (j % 8))))
            j++;
        char detail[160];
        snprintf(detail, sizeof(detail), "entries %llu..%llu: not reachable by any path (below a damaged entry)",
                 (unsigned long long)i, (unsigned long long)(j - 1));
        problem(v, obj, false, 0, RH_ECORRUPT, detail);
        i = j;
    }
}

/* What the catalog reader recorded: damaged blocks (all of them, read once), headers, meta blob. */
static void report_catalog_damage(verifier *v, catalog *c, const char *snap)
{
    _cleanup_(freep) char *obj = store_snapshot_path(snap);
    int r = catalog_scan_blocks(c);
    if (r < 0)
        problem(v, obj, false, 0, r, "cannot read the catalog's blocks");
    catalog_damage *d = NULL;
    size_t n = 0;
    if ((r = catalog_damage_get(c, &d, &n)) < 0)
        problem(v, obj, false, 0, r, "cannot list the catalog's damage");
    for (size_t i = 0; i < n; i++) {
        problem(v, obj, true, d[i].offset, d[i].code, d[i].what);
    }
    free(d);
}

static void verify_dir(verifier *v, catalog *c, const char *snap, uint64_t dir, bytebuf *path);

/* A walk of one directory of snapshot snap, whose path is in path. */
typedef struct vdir {
    verifier *v;
    catalog *c;
    const char *snap;
    bytebuf *path;
} vdir;

static int verify_child(void *ctx, uint64_t k, const catalog_entry *e)
{
    vdir *d = ctx;
    verifier *v = d->v;
    bytebuf *path = d->path;
    mark_reached(v, e->idx);
    size_t saved = path->len;
    if (saved)
        path->data[saved - 1] = '/';
    buf_append(path, e->name, e->name_len + 1);
    v->rep->entries++;
    if (e->type == CT_REG && !(e->flags & CF_UNREADABLE)) {
        catalog_entry *lead = NULL;
        const catalog_entry *data = e;
        if ((e->flags & CF_HARDLINK) && catalog_get(d->c, e->link_group, &lead) >= 0)
            data = lead;
        if (!data->has_stream || !file_intact(v, d->snap, data))
            affected(v, d->snap, (char *)path->data);
        catalog_entry_free(lead);
    } else if (e->type == CT_DIR) {
        verify_dir(v, d->c, d->snap, e->idx, path);
    }
    path->len = saved;
    if (saved)
        path->data[saved - 1] = 0;
    return 0;
}

static int verify_damaged(void *ctx, uint64_t k, const catalog_entry *e)
{
    vdir *d = ctx;
    lost_entry(d->v, d->snap, d->path, e);
    mark_reached(d->v, e->idx);
    return 0;
}

static void verify_dir(verifier *v, catalog *c, const char *snap, uint64_t dir, bytebuf *path)
{
    catalog_entry *d;
    int rd = catalog_get(c, dir, &d);
    if (rd < 0) {
        if (dir == 0) { /* the others are reported by the caller's walk */
            _cleanup_(freep) char *obj = store_snapshot_path(snap);
            problem(v, obj, false, 0, rd, "catalog root");
        }
        return;
    }
    if (d->damage) {
        _cleanup_(freep) char *obj = store_snapshot_path(snap);
        _cleanup_(freep) char *detail =
            xstrdup("the root directory's entry is damaged: its metadata is lost, its contents are not");
        problem(v, obj, false, 0, d->damage, detail);
    }
    catalog_entry_free(d);
    static const catalog_walk_ops ops = { .child = verify_child, .damaged = verify_damaged };
    vdir w = { v, c, snap, path };
    int r = catalog_walk_dir(c, dir, 0, &ops, &w);
    if (r < 0) {
        _cleanup_(freep) char *obj = store_snapshot_path(snap);
        problem(v, obj, false, 0, r, path->len ? (char *)path->data : "catalog root");
    }
}

static void verify_snapshot(verifier *v, const char *name)
{
    _cleanup_(freep) char *path = store_snapshot_path(name);
    catalog *c;
    char why[CATALOG_WHY_MAX];
    int r = catalog_open_why(v->s->ops, v->s->ctx, path, &c, why);
    if (r < 0) {
        _cleanup_(freep) char *detail = xasprintf("cannot open catalog: %s", *why ? why : rh_strerror(r));
        problem(v, path, false, 0, r, detail);
        return;
    }
    bytebuf p = { 0 };
    buf_put_u8(&p, 0);
    p.len = 0;
    v->rep->entries++; /* the root */
    uint64_t count = catalog_get_meta(c)->entry_count;
    /* Beyond 2^27 entries (a 16 MiB bitmap) the check of what no path reaches is left out. */
    v->reached = count <= (UINT64_C(1) << 27) ? xcalloc(count / 8 + 1, 1) : NULL;
    mark_reached(v, 0);
    verify_dir(v, c, name, 0, &p);
    report_unreached(v, name, count);
    report_catalog_damage(v, c, name);
    free(v->reached);
    v->reached = NULL;
    buf_free(&p);
    catalog_close(c);
    v->rep->snapshots++;
}

int verify_store(rh_store *s, verify_report *ret, void (*progress)(void *ud, uint64_t bytes), void *ud)
{
    memset(ret, 0, sizeof(*ret));
    verifier v = { .s = s, .rep = ret, .progress = progress, .ud = ud, .vi = vindex_new() };
    index_container *cs;
    size_t n, skipped = 0;
    uint32_t limit[2];
    vindex_open(v.vi, s, limit);
    int r = store_list_containers_upto(s, limit, &cs, &n, &skipped);
    if (r < 0) {
        vindex_free(v.vi);
        return r;
    }
    ret->unfinished = skipped;
    for (size_t i = 0; i < n; i++)
        verify_container(&v, &cs[i]);
    free(cs);
    char **names;
    size_t nn;
    r = store_list_snapshots(s, &names, &nn);
    if (r >= 0) {
        for (size_t i = 0; i < nn; i++)
            verify_snapshot(&v, names[i]);
        store_free_names(names, nn);
    }
    if (r >= 0)
        vindex_check(v.vi, s, ret);
    vindex_free(v.vi);
    digest_set_free(&v.chunks_ok);
    digest_set_free(&v.streams_ok);
    digest_set_free(&v.streams_bad);
    if (r < 0)
        verify_report_free(ret);
    return r;
}

void verify_report_free(verify_report *r)
{
    for (size_t i = 0; i < r->nproblems; i++) {
        free(r->problems[i].object);
        free(r->problems[i].detail);
    }
    for (size_t i = 0; i < r->naffected; i++) {
        free(r->affected[i].snapshot);
        free(r->affected[i].path);
    }
    free(r->problems);
    free(r->affected);
    memset(r, 0, sizeof(*r));
}

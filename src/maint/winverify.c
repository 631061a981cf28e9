/*
 * winverify.c — `rehydrate verify` of a Windows Server dedup chunk store (see winverify.h): lists the
 * container files of Data/ and Stream/ (every generation; the highest of an id is current), and reads
 * each once, from its start, in bounded buffers (RD_CAP):
 *
 * - the three Cthr copies (win_cthr_parse_copy each): a damaged copy is a warning while another is valid
 *   (win_cthr_parse then picks the valid copy of highest USN, as readers do), an error when none is, and
 *   the records are then walked to the end of the file; the taken copy must name the file's id and
 *   generation, and its valid data length bounds the walk (past the file's end: truncated);
 * - the Rrtl copies at 0x3000 and 0x4000 likewise (the one at 0x3000 is used, as the ntfs-3g plugin
 *   does); after the walk, each entry must lead to a record of its sequence number;
 * - every Ckhr record from 0x5000 on, found by each header's sizes (8-byte aligned): the header
 *   (win_record_parse), the payload CRC-64, the type (data in Data/, stream maps in Stream/, padding
 *   skipped unread). A header that cannot be used is one problem, and the walk resynchronizes on the
 *   next 8-byte-aligned "Ckhr" whose header parses: the stretch between is remembered (vspan) so that a
 *   reference into it meets that problem rather than a new one.
 * - a stream map's Smap is parsed (win_smap_parse) in windows of SMAP_WINDOW entries behind a copy of
 *   its 8-byte head, its CRC-64 carried across them (wincrc_64_more); its entries are kept (vent). Stream
 *   containers are read first, so that
 * - a data chunk compressed with format 2 is decoded at the length stream maps give it (per data
 *   container id and sequence number; a map's first entry has a known length only when a stub says where
 *   the map begins), or, when none does, to the end of its stream within WIN_CHUNK_MAX
 *   (xpress_decompress_to_end); raw or decoded, its SHA-512[:32] must equal the header's digest.
 * - bytes past the valid data length are a warning (the real sample's file ends exactly there).
 *
 * winverify_refs.c then resolves every Smap entry and every stub. Nothing here writes anywhere.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/util.h"
#include "compress/xpress.h"
#include "maint/winverify_internal.h"
#include "store/format_windows.h"
#include "store/store.h"
#include "windows/wincrc.h"

#define RD_CAP (1u << 20)         /* the read buffer: every read of a container goes through it */
#define SMAP_WINDOW 2048u         /* Smap entries parsed at a time (128 KiB) */
/* The scratch buffer: a decoded chunk, or a window of a stream map behind its head. */
#define SCRATCH_LEN MAX(WIN_CHUNK_MAX, WIN_SMAP_HEADER + SMAP_WINDOW * WIN_SMAP_ENTRY)
#define PROGRESS_STEP (64u << 20) /* bytes between progress calls */
/* The largest stored data chunk we read: a 128 KiB chunk compressed as badly as the format allows. */
#define DATA_STORED_MAX (WIN_CHUNK_MAX + WIN_CHUNK_MAX / 8 + 4)

uint32_t wv_problem(winverifier *v, const char *container, bool has_offset, uint64_t offset, bool has_seq,
                    uint32_t seq, bool warning, const char *fmt, ...)
{
    winverify_report *r = v->rep;
    va_list ap;
    va_start(ap, fmt);
    char *what = NULL;
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    if (!what)
        what = xstrdup("?");
    r->problems = xrealloc(r->problems, (r->nproblems + 1) * sizeof(*r->problems));
    r->problems[r->nproblems++] = (winverify_problem){
        .container = xstrdup(container),
        .has_offset = has_offset,
        .offset = offset,
        .has_seq = has_seq,
        .seq = seq,
        .warning = warning,
        .what = what,
    };
    r->nwarnings += warning;
    return (uint32_t)r->nproblems;
}

vrec *wv_rec_at(const vctr *c, uint64_t offset)
{
    size_t lo = 0, hi = c->nrecs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->recs[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nrecs && c->recs[lo].offset == offset ? &c->recs[lo] : NULL;
}

uint32_t wv_span_at(const vctr *c, uint64_t offset)
{
    for (size_t i = 0; i < c->nbad; i++)
        if (offset >= c->bad[i].start && offset < c->bad[i].end)
            return c->bad[i].problem;
    return 0;
}

static void add_span(vctr *c, uint64_t start, uint64_t end, uint32_t problem)
{
    c->bad = xgrow(c->bad, &c->cap_bad, c->nbad, sizeof(*c->bad), 4);
    c->bad[c->nbad++] = (vspan){ start, end, problem };
}

static vrec *add_rec(vctr *c, uint64_t off, const win_record *w)
{
    c->recs = xgrow(c->recs, &c->cap_recs, c->nrecs, sizeof(*c->recs), 64);
    vrec *r = &c->recs[c->nrecs++];
    *r = (vrec){ .offset = (uint32_t)off, .seq = w->seq, .payload_len = w->payload_len, .type = (uint8_t)w->type,
                 .compressed = w->compression != WIN_COMP_NONE };
    memcpy(r->digest, w->digest, WIN_DIGEST_LEN);
    return r;
}

/* ---- bounded reads ---- */

typedef struct reader {
    int fd;
    uint64_t size; /* of the file */
    uint8_t *buf;  /* RD_CAP bytes */
    uint64_t off;  /* of buf[0] in the file */
    size_t len;    /* bytes of buf that hold the file */
} reader;

/* Makes the file's bytes [at, at + n) (n <= RD_CAP) readable at *p. Returns how many are (fewer at the
 * end of the file), or a negative errno. */
static ssize_t rd_at(reader *rd, uint64_t at, size_t n, const uint8_t **p)
{
    *p = rd->buf;
    if (at >= rd->size)
        return 0;
    n = (size_t)MIN((uint64_t)n, rd->size - at);
    if (at < rd->off || at + n > rd->off + rd->len) {
        size_t want = (size_t)MIN((uint64_t)RD_CAP, rd->size - at), got = 0;
        rd->len = 0;
        while (got < want) {
            ssize_t k = pread(rd->fd, rd->buf + got, want - got, (off_t)(at + got));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return -errno;
            if (k == 0)
                break;
            got += (size_t)k;
        }
        rd->off = at;
        rd->len = got;
        n = MIN(n, got);
    }
    *p = rd->buf + (at - rd->off);
    return (ssize_t)n;
}

/* ---- the header pages ---- */

/* The Cthr copies: returns where the records end (0 when there are none to walk) and sets *valid_len
 * (the file's size when no copy is valid); a valid length past the file's end is a truncated file. */
static uint64_t check_cthr(winverifier *v, vctr *c, const uint8_t *head, uint64_t size, uint64_t *valid_len)
{
    win_why why[WIN_CTHR_COPIES], w;
    int rc[WIN_CTHR_COPIES];
    win_cthr one, h;
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++)
        rc[i] = win_cthr_parse_copy(head + i * WIN_PAGE, WIN_PAGE, &one, &why[i]);
    *valid_len = size;
    if (win_cthr_parse(head, WIN_CTHR_COPIES * WIN_PAGE, &h, &w) < 0) {
        wv_problem(v, c->name, true, 0, false, 0, false,
                   "no valid Cthr copy (0x0: %s; 0x1000: %s; 0x2000: %s): the records were walked to the "
                   "end of the file", why[0].why, why[1].why, why[2].why);
        return size;
    }
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++)
        if (rc[i] < 0)
            wv_problem(v, c->name, true, i * WIN_PAGE, false, 0, true,
                       "Cthr copy at %#x: %s (at +%#zx); the copy at %#x (USN %llu) is used", i * WIN_PAGE,
                       why[i].why, why[i].at, h.copy * WIN_PAGE, (unsigned long long)h.usn);
    if (h.id != c->id || h.generation != c->gen)
        wv_problem(v, c->name, true, h.copy * WIN_PAGE + 0x10, false, 0, false,
                   "the Cthr copy at %#x names container %08x generation %08x, not the file's", h.copy * WIN_PAGE,
                   (unsigned)h.id, (unsigned)h.generation);
    if (h.valid_len < WIN_FIRST_RECORD) {
        wv_problem(v, c->name, true, h.copy * WIN_PAGE + 0x20, false, 0, false,
                   "the Cthr's valid data length %#x lies before the first record (%#x)", (unsigned)h.valid_len,
                   WIN_FIRST_RECORD);
        return 0;
    }
    *valid_len = h.valid_len;
    return MIN((uint64_t)h.valid_len, size);
}

/* The Rrtl copies at WIN_RRTL_OFFSET and one page later: the first valid one is kept in c->rrtl. */
static void check_rrtl(winverifier *v, vctr *c, const uint8_t *head)
{
    win_rrtl t[2];
    win_why why[2];
    int rc[2];
    for (int i = 0; i < 2; i++)
        rc[i] = win_rrtl_parse(head + WIN_RRTL_OFFSET + i * WIN_PAGE, WIN_PAGE, &t[i], &why[i]);
    const unsigned at[2] = { WIN_RRTL_OFFSET, WIN_RRTL_OFFSET + WIN_PAGE };
    if (rc[0] < 0 && rc[1] < 0) {
        wv_problem(v, c->name, true, at[0], false, 0, false,
                   "no valid Rrtl copy (%#x: %s; %#x: %s): records that moved cannot be found", at[0], why[0].why,
                   at[1], why[1].why);
        return;
    }
    int use = rc[0] == 0 ? 0 : 1;
    if (rc[1 - use] < 0)
        wv_problem(v, c->name, true, at[1 - use], false, 0, true, "Rrtl copy at %#x: %s (at +%#zx); the copy at %#x is used",
                   at[1 - use], why[1 - use].why, why[1 - use].at, at[use]);
    else if (t[0].n != t[1].n || memcmp(t[0].entries, t[1].entries, 8 * (size_t)t[0].n) != 0)
        wv_problem(v, c->name, true, at[1], false, 0, true, "the Rrtl copies at %#x and %#x differ; the first is used",
                   at[0], at[1]);
    c->nrrtl = t[use].n;
    c->rrtl = xmalloc(8 * (size_t)c->nrrtl + 1);
    c->rrtl_bad = xcalloc(c->nrrtl + 1, sizeof(*c->rrtl_bad));
    for (uint32_t i = 0; i < c->nrrtl; i++) {
        c->rrtl[2 * i] = get_le32(t[use].entries + 8 * i);
        c->rrtl[2 * i + 1] = get_le32(t[use].entries + 8 * i + 4);
    }
}

/* ---- records ---- */

typedef struct walk {
    winverifier *v;
    size_t ci;
    vctr *c;
    reader *rd;
    uint8_t *scratch; /* SCRATCH_LEN bytes */
    uint64_t end;     /* where records end */
    uint64_t last_progress;
    size_t problems_before;
} walk;

static bool is_oom(int r)
{
    if (r == -ENOMEM) {
        fputs("rehydrate: out of memory\n", stderr);
        abort();
    }
    return false;
}

/* Checks a data chunk's payload: CRC-64, decoded, digest. Returns 0 or the problem's index + 1. */
static uint32_t check_data(walk *k, uint64_t off, const win_record *w, vrec *out)
{
    winverifier *v = k->v;
    vctr *c = k->c;
    v->rep->data_chunks++;
    v->rep->compressed_chunks += w->compression != WIN_COMP_NONE;
    if (w->payload_len > DATA_STORED_MAX)
        return wv_problem(v, c->name, true, off, true, w->seq, false,
                          "data chunk of %u stored bytes, more than a 128 KiB chunk can need", (unsigned)w->payload_len);
    const uint8_t *p;
    size_t n = w->header_len + (size_t)w->payload_len;
    ssize_t got = rd_at(k->rd, off, n, &p);
    if (got < (ssize_t)n)
        return wv_problem(v, c->name, true, off, true, w->seq, false, "cannot read the record: %s",
                          got < 0 ? strerror((int)-got) : "end of file");
    win_why why;
    if (win_record_check_payload(w, p, n, &why) < 0)
        return wv_problem(v, c->name, true, off, true, w->seq, false, "data chunk: %s", why.why);
    const uint8_t *payload = p + w->header_len, *chunk = payload;
    size_t len = w->payload_len;
    uint32_t from_map = 0;
    int r = 0;
    uint8_t d[WIN_DIGEST_LEN];
    if (w->compression != WIN_COMP_NONE) {
        chunk = k->scratch;
        bool known = wv_chunk_length(v, c->id, w->seq, &from_map);
        if (known && xpress_decompress(payload, w->payload_len, k->scratch, from_map) == 0 &&
            win_digest(k->scratch, from_map, d) == 0 && memcmp(d, w->digest, WIN_DIGEST_LEN) == 0) {
            out->raw_len = from_map;
            return 0;
        }
        if (!known)
            v->rep->length_unknown++;
        /* Unknown, or the length the maps give does not fit: decode to the stream's end. A chunk that
         * then matches its digest is intact (a wrong length is the stream map's fault, reported there). */
        if ((r = xpress_decompress_to_end(payload, w->payload_len, k->scratch, WIN_CHUNK_MAX, &len)) < 0) {
            if (known)
                return wv_problem(v, c->name, true, off, true, w->seq, false,
                                  "compressed chunk does not decode at the length its stream maps give (%u bytes), "
                                  "nor to its stream's end: %s", (unsigned)from_map,
                                  r == -ENOSPC ? "more than 128 KiB" : "corrupt LZ77 stream");
            return wv_problem(v, c->name, true, off, true, w->seq, false,
                              "compressed chunk (no stream map gives its length) does not decode: %s",
                              r == -ENOSPC ? "more than 128 KiB" : "corrupt LZ77 stream");
        }
    }
    if ((r = win_digest(chunk, len, d)) < 0)
        return wv_problem(v, c->name, true, off, true, w->seq, false, "cannot compute the digest: %s", rh_strerror(r));
    if (memcmp(d, w->digest, WIN_DIGEST_LEN) != 0)
        return wv_problem(v, c->name, true, off, true, w->seq, false,
                          "%s chunk's SHA-512[:32] differs from its header's digest", w->compression ? "decoded" : "raw");
    out->raw_len = (uint32_t)len;
    return 0;
}

/* Where a map's entries begin: from a stub when one names this map, else unknown (first_known false) and
 * just far enough back that the first entry passes win_smap_parse's 128 KiB bound. */
static uint64_t smap_start(const walk *k, const win_record *w, const uint8_t *win, size_t wlen, bool *first_known)
{
    uint64_t begin;
    if ((*first_known = wv_smap_begin(k->v, k->c->id, w->seq, &begin)))
        return begin;
    if (wlen < WIN_SMAP_HEADER + WIN_SMAP_ENTRY)
        return 0;
    uint64_t e0 = get_le64(win + WIN_SMAP_HEADER + 0x10);
    return e0 > WIN_CHUNK_MAX ? e0 - WIN_CHUNK_MAX : 0;
}

/* Reads a stream map's payload in windows: CRC-64, Smap, entries kept. Returns 0 or a problem + 1. */
static uint32_t check_smap(walk *k, uint64_t off, const win_record *w, vrec *out)
{
    winverifier *v = k->v;
    vctr *c = k->c;
    v->rep->stream_maps++;
    uint64_t at = off + w->header_len, crc = wincrc_64(NULL, 0), prev = 0;
    uint8_t *win = k->scratch;
    size_t first = v->nents, done = 0;
    bool first_known = false;
    const char *bad = NULL;
    uint64_t bad_at = 0;
    do {
        size_t piece = done == 0 ? MIN((size_t)w->payload_len, WIN_SMAP_HEADER + SMAP_WINDOW * WIN_SMAP_ENTRY)
                                 : MIN((size_t)w->payload_len - done, SMAP_WINDOW * WIN_SMAP_ENTRY);
        const uint8_t *p;
        ssize_t got = rd_at(k->rd, at + done, piece, &p);
        if (got < (ssize_t)piece) {
            v->nents = first;
            return wv_problem(v, c->name, true, off, true, w->seq, false, "cannot read the stream map: %s",
                              got < 0 ? strerror((int)-got) : "end of file");
        }
        crc = wincrc_64_more(crc, p, piece);
        size_t head = done == 0 ? 0 : WIN_SMAP_HEADER; /* later windows go behind the first's head */
        memcpy(win + head, p, piece);
        if (!bad) {
            if (done == 0)
                prev = smap_start(k, w, win, piece, &first_known);
            win_smap_entry *e;
            size_t n;
            win_why why;
            int r = win_smap_parse(win, head + piece, prev, &e, &n, &why);
            if (r < 0 && !is_oom(r)) {
                bad = why.why;
                bad_at = why.at < WIN_SMAP_HEADER || done == 0 ? why.at : done + why.at - WIN_SMAP_HEADER;
            }
            for (size_t i = 0; r == 0 && i < n; i++) {
                v->ents = xgrow(v->ents, &v->cap_ents, v->nents, sizeof(*v->ents), 1024);
                uint32_t index = (uint32_t)(v->nents - first);
                v->ents[v->nents++] = (vent){
                    .seq = e[i].seq, .container = e[i].container, .offset = e[i].offset,
                    .generation = e[i].generation, .stored_len = e[i].stored_len, .end = e[i].end,
                    .length = index == 0 && !first_known ? 0 : (uint32_t)(e[i].end - prev),
                    .smap_ctr = (uint32_t)k->ci, .smap_seq = w->seq, .index = index,
                    .at = at + WIN_SMAP_HEADER + (uint64_t)WIN_SMAP_ENTRY * index,
                };
                memcpy(v->ents[v->nents - 1].digest, e[i].digest, WIN_DIGEST_LEN);
                prev = e[i].end;
            }
            if (r == 0)
                free(e);
        }
        done += piece;
    } while (done < w->payload_len);
    if (crc != w->payload_crc || bad) {
        v->nents = first;
        if (crc != w->payload_crc)
            return wv_problem(v, c->name, true, off, true, w->seq, false, "stream map: Ckhr payload CRC-64 mismatch");
        return wv_problem(v, c->name, true, off, true, w->seq, false, "stream map: %s (Smap byte %#llx)", bad,
                          (unsigned long long)bad_at);
    }
    out->first = (uint32_t)first;
    out->n = (uint32_t)(v->nents - first);
    v->rep->smap_entries += out->n;
    return 0;
}

/* The next offset from `from` (8-byte aligned) before k->end where a "Ckhr" header parses, or k->end.
 * (A raw chunk could hold such bytes, a container's own records say; the walk would then take them for
 * records. Their header CRC-64 must match, so only a copy of a real record can mislead it.) */
static uint64_t resync(walk *k, uint64_t from)
{
    uint64_t at = (from + 7) & ~(uint64_t)7;
    while (at + 4 <= k->end) {
        const uint8_t *p;
        ssize_t got = rd_at(k->rd, at, RD_CAP, &p);
        if (got < 4)
            break;
        size_t lim = (size_t)MIN((uint64_t)got, k->end - at), i = 0;
        while (i + 4 <= lim && memcmp(p + i, "Ckhr", 4) != 0)
            i += 8;
        if (i + 4 > lim) {
            at += i;
            continue;
        }
        const uint8_t *h;
        ssize_t hn = rd_at(k->rd, at + i, WIN_RECORD_HEADER_MAX, &h);
        win_record w;
        if (hn > 0 && win_record_parse(h, (size_t)MIN((uint64_t)hn, k->end - (at + i)), &w, NULL) == 0)
            return at + i;
        at += i + 8;
    }
    return k->end;
}

/* One record at off: returns where the next one starts, or k->end to stop. */
static uint64_t check_record(walk *k, uint64_t off, bool truncated, uint64_t valid_len, bool *cut_reported)
{
    winverifier *v = k->v;
    vctr *c = k->c;
    const uint8_t *p;
    ssize_t got = rd_at(k->rd, off, WIN_RECORD_HEADER_MAX, &p);
    if (got < 0) {
        uint32_t pr = wv_problem(v, c->name, true, off, false, 0, false, "cannot read: %s", strerror((int)-got));
        add_span(c, off, UINT64_MAX, pr);
        return k->end;
    }
    size_t avail = (size_t)MIN((uint64_t)got, k->end - off);
    win_record w;
    win_why why;
    int r = win_record_parse(p, avail, &w, &why);
    if (r < 0 && truncated && why.at >= avail && off + WIN_RECORD_HEADER_MAX > k->end) {
        *cut_reported = true;
        uint32_t pr = wv_problem(v, c->name, true, off, false, 0, false,
                                 "record cut short in its header: the file ends at %#llx, its valid data length "
                                 "is %#llx (truncated)", (unsigned long long)k->end, (unsigned long long)valid_len);
        add_span(c, off, UINT64_MAX, pr);
        return k->end;
    }
    if (r < 0) {
        /* Its sequence number cannot be trusted, but where the magic is right it is likely right. */
        char said[48] = "";
        if (avail >= 0x0c && memcmp(p, "Ckhr", 4) == 0)
            snprintf(said, sizeof(said), " (its header says seq %u)", (unsigned)get_le32(p + 0x08));
        uint64_t next = resync(k, off + 8);
        uint32_t pr = wv_problem(v, c->name, true, off, false, 0, false,
                                 "record header unusable: %s (at +%#zx)%s; %s %#llx", why.why, why.at, said,
                                 next < k->end ? "the walk resumed at the next record, at" : "no record follows before",
                                 (unsigned long long)next);
        add_span(c, off, next, pr);
        return next;
    }
    uint64_t rec_end = off + w.header_len + (uint64_t)w.payload_len;
    if (rec_end > k->end) {
        uint32_t pr;
        if (truncated && rec_end <= valid_len) {
            *cut_reported = true;
            pr = wv_problem(v, c->name, true, off, true, w.seq, false,
                            "record cut short: the file ends at %#llx, its valid data length is %#llx (truncated)",
                            (unsigned long long)k->end, (unsigned long long)valid_len);
        } else {
            pr = wv_problem(v, c->name, true, off, true, w.seq, false,
                            "record of %u payload bytes runs past the end of the records (%#llx)",
                            (unsigned)w.payload_len, (unsigned long long)k->end);
        }
        add_span(c, off, UINT64_MAX, pr);
        return k->end;
    }
    v->rep->bytes += rec_end - off;
    uint64_t next = (rec_end + 7) & ~(uint64_t)7;
    if (w.type == WIN_REC_PAD) {
        v->rep->paddings++;
        return next;
    }
    vrec rec = { 0 };
    uint32_t pr;
    if ((w.type == WIN_REC_DATA) != c->data)
        pr = wv_problem(v, c->name, true, off, true, w.seq, false, "%s in a %s container",
                        w.type == WIN_REC_DATA ? "data chunk" : "stream map", c->data ? "Data" : "Stream");
    else if (w.type == WIN_REC_DATA)
        pr = check_data(k, off, &w, &rec);
    else
        pr = check_smap(k, off, &w, &rec);
    vrec *kept = add_rec(c, off, &w);
    kept->raw_len = rec.raw_len;
    kept->first = rec.first;
    kept->n = rec.n;
    kept->problem = pr;
    return next;
}

/* Each Rrtl entry must lead to a record of its sequence number (unless into a damaged stretch); a
 * reference that then finds nothing meets this problem (c->rrtl_bad), not a new one. */
static void check_rrtl_entries(winverifier *v, vctr *c)
{
    for (uint32_t i = 0; i < c->nrrtl; i++) {
        uint32_t seq = c->rrtl[2 * i], off = c->rrtl[2 * i + 1];
        const vrec *r = wv_rec_at(c, off);
        if ((r && r->seq == seq) || wv_span_at(c, off))
            continue;
        c->rrtl_bad[i] = wv_problem(v, c->name, true, WIN_RRTL_OFFSET + 0x20 + 8 * (uint64_t)i, true, seq, false,
                                    "Rrtl entry %u sends sequence number %u to %#x, where no record of it is",
                                    (unsigned)i, (unsigned)seq, (unsigned)off);
    }
}

/* Bytes past the valid data length: the real sample's file ends exactly there, and no reader looks
 * further, so they are reported (a warning: nothing that is referenced is lost), saying whether they
 * are all zero. */
static void check_tail(winverifier *v, const vctr *c, reader *rd, uint64_t end)
{
    bool zero = true;
    for (uint64_t at = end; zero && at < rd->size;) {
        const uint8_t *p;
        ssize_t got = rd_at(rd, at, RD_CAP, &p);
        if (got <= 0)
            break;
        for (ssize_t i = 0; zero && i < got; i++)
            zero = p[i] == 0;
        at += (uint64_t)got;
    }
    wv_problem(v, c->name, true, end, false, 0, true,
               "%#llx bytes (%s) after the valid data length %#llx: not part of the container",
               (unsigned long long)(rd->size - end), zero ? "all zero" : "not all zero", (unsigned long long)end);
}

static void check_container(winverifier *v, size_t ci, uint8_t *rdbuf, uint8_t *scratch, uint64_t *last_progress)
{
    vctr *c = &v->ctrs[ci];
    int fd = openat(v->dirfd, c->name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        c->unusable = wv_problem(v, c->name, false, 0, false, 0, false, "cannot open: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    reader rd = { .fd = fd, .size = (uint64_t)st.st_size, .buf = rdbuf };
    const uint8_t *head;
    ssize_t got = rd_at(&rd, 0, WIN_FIRST_RECORD, &head);
    if (got < (ssize_t)WIN_FIRST_RECORD) {
        if (got < 0)
            c->unusable = wv_problem(v, c->name, false, 0, false, 0, false, "cannot read: %s", strerror((int)-got));
        else
            c->unusable = wv_problem(v, c->name, false, 0, false, 0, false,
                                     "only %#llx bytes: shorter than its header pages (%#x; truncated)",
                                     (unsigned long long)got, WIN_FIRST_RECORD);
        close(fd);
        return;
    }
    uint64_t valid_len;
    uint64_t end = check_cthr(v, c, head, rd.size, &valid_len);
    bool truncated = valid_len > rd.size;
    check_rrtl(v, c, head);
    walk k = { .v = v, .ci = ci, .c = c, .rd = &rd, .scratch = scratch, .end = end };
    bool cut_reported = false;
    for (uint64_t off = WIN_FIRST_RECORD; off < end;) {
        off = check_record(&k, off, truncated, valid_len, &cut_reported);
        if (v->progress && v->rep->bytes - *last_progress >= PROGRESS_STEP) {
            *last_progress = v->rep->bytes;
            v->progress(v->ud, v->rep->bytes);
        }
    }
    if (truncated && !cut_reported) {
        uint32_t pr = wv_problem(v, c->name, true, end, false, 0, false,
                                 "container truncated: the file ends at %#llx, its valid data length is %#llx; "
                                 "the records after it are lost", (unsigned long long)end, (unsigned long long)valid_len);
        add_span(c, end, UINT64_MAX, pr);
    }
    if (!truncated && end == valid_len && rd.size > end)
        check_tail(v, c, &rd, end);
    check_rrtl_entries(v, c);
    close(fd);
}

/* ---- the containers ---- */


static int cmp_ctr(const void *a, const void *b)
{
    const vctr *x = a, *y = b;
    if (x->data != y->data)
        return x->data ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->gen < y->gen ? -1 : x->gen > y->gen;
}

/* Lists Data/ and Stream/ (either may be missing) into v->ctrs, sorted, the current generations marked. */
static int list_containers(winverifier *v)
{
    size_t cap = 0;
    static const char *const kinds[2] = { "Data", "Stream" };
    for (int k = 0; k < 2; k++) {
        int fd = openat(v->dirfd, kinds[k], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue;
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d) {
            int e = -errno;
            if (fd >= 0)
                close(fd);
            return e;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            uint32_t id, gen;
            size_t len = strlen(de->d_name);
            if (!winstore_parse_name(de->d_name, &id, &gen)) {
                if (len > 4 && strcmp(de->d_name + len - 4, ".ccc") == 0) {
                    char *obj = xasprintf("%s/%s", kinds[k], de->d_name);
                    wv_problem(v, obj, false, 0, false, 0, true, "not a container name (<id>.<generation>.ccc): "
                               "not checked");
                    free(obj);
                }
                continue;
            }
            v->ctrs = xgrow(v->ctrs, &cap, v->nctrs, sizeof(*v->ctrs), 32);
            v->ctrs[v->nctrs++] = (vctr){ .name = xasprintf("%s/%s", kinds[k], de->d_name), .data = k == 0,
                                          .id = id, .gen = gen };
        }
        closedir(d);
    }
    sort_array(v->ctrs, v->nctrs, sizeof(*v->ctrs), cmp_ctr);
    winverify_report *rep = v->rep;
    rep->ctrs = xcalloc(v->nctrs, sizeof(*rep->ctrs));
    for (size_t i = 0; i < v->nctrs; i++) {
        vctr *c = &v->ctrs[i];
        c->current = i + 1 == v->nctrs || c[1].data != c->data || c[1].id != c->id;
        rep->ctrs[i] = (winverify_container){ .name = xstrdup(c->name), .data = c->data, .id = c->id,
                                              .generation = c->gen, .current = c->current };
        rep->older_generations += !c->current;
    }
    rep->nctrs = rep->containers = v->nctrs;
    return 0;
}

bool winverify_detect(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool is = fstatat(fd, STORE_IDENTITY_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
              winstore_detect_dir(fd);
    close(fd);
    return is;
}

int winverify_dir(const char *dir, const char *volume, winverify_report *ret,
                  void (*progress)(void *ud, uint64_t bytes), void *ud)
{
    memset(ret, 0, sizeof(*ret));
    uint8_t d[WIN_DIGEST_LEN];
    int r = win_digest("", 0, d); /* no SHA-512: nothing could be checked */
    if (r < 0)
        return r;
    winverifier v = { .rep = ret, .progress = progress, .ud = ud };
    if ((v.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    uint8_t guid[16];
    bool has_guid = winstore_guid_of_name(dir, guid);
    if ((r = list_containers(&v)) == 0 && volume)
        r = wv_walk_volume(&v, volume, has_guid ? guid : NULL);
    if (r == 0) {
        uint8_t *rdbuf = xmalloc(RD_CAP), *scratch = xmalloc(SCRATCH_LEN);
        uint64_t last_progress = 0;
        /* Stream containers first: their maps give the compressed chunks' lengths. */
        for (size_t i = 0; i < v.nctrs; i++)
            if (!v.ctrs[i].data)
                check_container(&v, i, rdbuf, scratch, &last_progress);
        wv_index_lengths(&v);
        for (size_t i = 0; i < v.nctrs; i++)
            if (v.ctrs[i].data)
                check_container(&v, i, rdbuf, scratch, &last_progress);
        free(rdbuf);
        free(scratch);
        wv_resolve(&v);
    }
    for (size_t i = 0; i < v.nctrs; i++) {
        free(v.ctrs[i].name);
        free(v.ctrs[i].rrtl);
        free(v.ctrs[i].rrtl_bad);
        free(v.ctrs[i].recs);
        free(v.ctrs[i].bad);
    }
    for (size_t i = 0; i < v.nstubs; i++)
        free(v.stubs[i].path);
    free(v.ctrs);
    free(v.ents);
    free(v.stubs);
    free(v.refs);
    free(v.lens);
    close(v.dirfd);
    if (r < 0)
        winverify_report_free(ret);
    return r;
}

void winverify_report_free(winverify_report *r)
{
    for (size_t i = 0; i < r->nproblems; i++) {
        free(r->problems[i].container);
        free(r->problems[i].what);
        for (size_t j = 0; j < r->problems[i].nfiles; j++)
            free(r->problems[i].files[j]);
        free(r->problems[i].files);
    }
    for (size_t i = 0; i < r->nctrs; i++)
        free(r->ctrs[i].name);
    for (size_t i = 0; i < r->nfiles_affected; i++)
        free(r->files_affected[i]);
    free(r->problems);
    free(r->ctrs);
    free(r->files_affected);
    memset(r, 0, sizeof(*r));
}

/*
 * fuzz-wincontainer.c — the records of a Windows dedup chunk-store container (wincontainer.h):
 * win_cthr_parse on three header copies (and win_cthr_parse_copy on each), win_rrtl_parse and win_rrtl_find on a redirection table, and a
 * walk of Ckhr records as a reader walks a container from 0x5000: win_record_parse,
 * win_record_check_payload, and win_smap_parse of every stream map's payload. What parses must hold
 * what the read paths rely on: the copy taken is valid and of the highest USN, every Rrtl entry is found
 * (the first of its sequence number), a record's header size fits its type and its compression is 0 or
 * 2 (0 for the others), a stream map's ends increase from 0 by at most 128 KiB.
 *
 * Input, split in three: 0xc0 bytes, the three Cthr copies (0x40 bytes each, each put at the start of
 * its own zeroed 4 KiB page); a u16 length L (at most 0x1000) and L bytes, the start of the Rrtl page
 * (the rest zero); then the record area, walked from its start (its end is the input's end, so ASan sees
 * any read past it). A short input leaves the later pieces empty. A second pass recomputes the CRC-64s:
 * of each Cthr copy, of the Rrtl header, and of every record the area lays out (header and payload).
 */
#include "config.h"

#include "common/util.h"
#include "windows/wincontainer.h"
#include "windows/wincrc.h"
#include "fuzz.h"

#define CTHR_BYTES 0x40
#define CTHR_PIECE (WIN_CTHR_COPIES * CTHR_BYTES)
#define RECORDS_MAX 512 /* records walked: enough for the seeds, keeps a run fast */

struct pieces {
    uint8_t *cthr; /* CTHR_PIECE bytes, zero-padded */
    uint8_t *rrtl; /* rrtl_len bytes */
    size_t rrtl_len;
    uint8_t *area; /* area_len bytes, at the end of the input */
    size_t area_len;
};

static void split(uint8_t *data, size_t size, struct pieces *p, uint8_t *cthr_pad)
{
    size_t at = MIN(size, CTHR_PIECE);
    memset(cthr_pad, 0, CTHR_PIECE);
    memcpy(cthr_pad, data, at);
    p->cthr = cthr_pad;
    size_t l = 0;
    if (size - at >= 2) {
        l = MIN(get_le16(data + at), WIN_PAGE);
        at += 2;
    }
    l = MIN(l, size - at);
    p->rrtl = data + at;
    p->rrtl_len = l;
    at += l;
    p->area = data + at;
    p->area_len = size - at;
}

static bool cthr_copy_valid(const uint8_t *h)
{
    static const uint8_t version[4] = { 1, 4, 4, 1 };
    return !memcmp(h, "Cthr", 4) && !memcmp(h + 4, version, 4) && wincrc_64(h, 0x38) == get_le64(h + 0x38);
}

static void parse_cthr(const uint8_t *piece)
{
    uint8_t *pages = calloc(WIN_CTHR_COPIES, WIN_PAGE);
    if (!pages)
        abort();
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++)
        memcpy(pages + i * WIN_PAGE, piece + i * CTHR_BYTES, CTHR_BYTES);
    win_cthr c;
    win_why w = { 0 };
    int rc = win_cthr_parse(pages, WIN_CTHR_COPIES * WIN_PAGE, &c, &w);
    bool any = false;
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++)
        any |= cthr_copy_valid(pages + i * WIN_PAGE);
    if (rc != 0) {
        FUZZ_ASSERT(rc == RH_ECORRUPT && w.why != NULL && !any);
    } else {
        FUZZ_ASSERT(c.copy < WIN_CTHR_COPIES && cthr_copy_valid(pages + c.copy * WIN_PAGE));
        const uint8_t *h = pages + c.copy * WIN_PAGE;
        FUZZ_ASSERT(c.usn == get_le64(h + 8) && c.id == get_le32(h + 0x10) && c.valid_len == get_le32(h + 0x20));
        for (unsigned i = 0; i < WIN_CTHR_COPIES; i++) {
            const uint8_t *o = pages + i * WIN_PAGE;
            if (i != c.copy && cthr_copy_valid(o))
                FUZZ_ASSERT(i < c.copy ? get_le64(o + 8) < c.usn : get_le64(o + 8) <= c.usn);
        }
    }
    /* Each copy alone (win_cthr_parse_copy, from its exact 0x40 bytes): valid exactly when the copy is,
     * and then the same fields as win_cthr_parse reads from it. */
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++) {
        win_cthr one;
        int r1 = win_cthr_parse_copy(piece + i * CTHR_BYTES, CTHR_BYTES, &one, &w);
        FUZZ_ASSERT((r1 == 0) == cthr_copy_valid(pages + i * WIN_PAGE));
        FUZZ_ASSERT(r1 == 0 || ((r1 == RH_ECORRUPT || r1 == RH_ECHECKSUM) && w.why && w.at < CTHR_BYTES));
        if (r1 == 0 && rc == 0 && i == c.copy)
            FUZZ_ASSERT(one.usn == c.usn && one.valid_len == c.valid_len && one.chunks == c.chunks);
    }
    /* Fewer than three pages never parse. */
    FUZZ_ASSERT(win_cthr_parse(pages, WIN_CTHR_COPIES * WIN_PAGE - 1, &c, NULL) == RH_ECORRUPT);
    free(pages);
}

static void parse_rrtl(const uint8_t *piece, size_t len)
{
    uint8_t *page = calloc(1, WIN_PAGE);
    if (!page)
        abort();
    memcpy(page, piece, len);
    win_rrtl t;
    win_why w = { 0 };
    int rc = win_rrtl_parse(page, WIN_PAGE, &t, &w);
    if (rc != 0) {
        FUZZ_ASSERT((rc == RH_ECORRUPT || rc == RH_ECHECKSUM) && w.why != NULL && w.at < WIN_PAGE);
    } else {
        FUZZ_ASSERT(t.n <= (WIN_PAGE - 0x20) / 8 && t.entries == page + 0x20);
        for (uint32_t i = 0; i < t.n; i++) {
            uint32_t seq = get_le32(t.entries + 8 * i), off = 0, first = 0;
            FUZZ_ASSERT(win_rrtl_find(&t, seq, &off));
            for (uint32_t k = 0; k <= i; k++)
                if (get_le32(t.entries + 8 * k) == seq) {
                    first = get_le32(t.entries + 8 * k + 4);
                    break;
                }
            FUZZ_ASSERT(off == first);
        }
    }
    free(page);
    /* Less than a page never parses (the piece ends inside the input: sanitizers would not see it). */
    if (len < WIN_PAGE)
        FUZZ_ASSERT(win_rrtl_parse(piece, len, &t, NULL) == RH_ECORRUPT);
}

static void parse_smap(const uint8_t *p, size_t len)
{
    win_smap_entry *e;
    size_t n;
    win_why w = { 0 };
    int rc = win_smap_parse(p, len, 0, &e, &n, &w);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -ENOMEM || (rc == RH_ECORRUPT && w.why != NULL && w.at <= len));
        return;
    }
    FUZZ_ASSERT(n >= 1 && len == WIN_SMAP_HEADER + WIN_SMAP_ENTRY * n);
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(e[i].end > prev && e[i].end - prev <= WIN_CHUNK_MAX && e[i].stored_len >= 1);
        prev = e[i].end;
    }
    free(e);
}

/* The size a record at p (avail bytes) takes in a walk, header fields only; 0 to stop. */
static size_t record_span(const uint8_t *p, size_t avail, uint32_t *ret_hl)
{
    if (avail < 0x14)
        return 0;
    uint16_t type = get_le16(p + 0x10);
    uint32_t hl = type == WIN_REC_DATA ? WIN_DATA_HEADER
                  : type == WIN_REC_STREAM ? WIN_STREAM_HEADER
                  : type == WIN_REC_PAD ? WIN_PAD_HEADER : 0;
    if (hl == 0 || avail < hl)
        return 0;
    *ret_hl = hl;
    uint64_t span = ((uint64_t)hl + get_le32(p + 0x0c) + 7) & ~(uint64_t)7;
    return span > avail ? avail : (size_t)span;
}

static void walk(const uint8_t *area, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < RECORDS_MAX && off < len; i++) {
        const uint8_t *p = area + off;
        win_record r;
        win_why w = { 0 };
        int rc = win_record_parse(p, len - off, &r, &w);
        if (rc != 0) {
            FUZZ_ASSERT((rc == RH_ECORRUPT || rc == RH_ECHECKSUM) && w.why != NULL && w.at <= len - off);
            return;
        }
        FUZZ_ASSERT(r.header_len <= len - off);
        FUZZ_ASSERT(r.type == WIN_REC_DATA ? r.header_len == WIN_DATA_HEADER &&
                                                 (r.compression == WIN_COMP_NONE || r.compression == WIN_COMP_LZ77)
                    : r.type == WIN_REC_STREAM ? r.header_len == WIN_STREAM_HEADER && r.compression == 0
                                               : r.type == WIN_REC_PAD && r.header_len == WIN_PAD_HEADER &&
                                                     r.compression == 0);
        rc = win_record_check_payload(&r, p, len - off, &w);
        if (rc == 0) {
            FUZZ_ASSERT(r.payload_len <= len - off - r.header_len);
            if (r.type == WIN_REC_STREAM)
                parse_smap(p + r.header_len, r.payload_len);
        } else {
            FUZZ_ASSERT((rc == RH_ECORRUPT || rc == RH_ECHECKSUM) && w.why != NULL);
        }
        uint64_t next = ((uint64_t)off + r.header_len + r.payload_len + 7) & ~(uint64_t)7;
        if (next >= len)
            return;
        off = (size_t)next;
    }
}

static void parse(const struct pieces *p)
{
    parse_cthr(p->cthr);
    parse_rrtl(p->rrtl, p->rrtl_len);
    walk(p->area, p->area_len);
}

static void fix_up(struct pieces *p)
{
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++) {
        uint8_t *h = p->cthr + i * CTHR_BYTES;
        put_le64(h + 0x38, wincrc_64(h, 0x38));
    }
    if (p->rrtl_len >= 0x20)
        put_le64(p->rrtl + 0x18, wincrc_64(p->rrtl, 0x18));
    size_t off = 0;
    for (int i = 0; i < RECORDS_MAX && off < p->area_len; i++) {
        uint8_t *r = p->area + off;
        uint32_t hl = 0;
        size_t span = record_span(r, p->area_len - off, &hl);
        if (span == 0)
            return;
        uint32_t plen = get_le32(r + 0x0c);
        if (hl != WIN_PAD_HEADER && plen <= p->area_len - off - hl)
            put_le64(r + hl - 16, wincrc_64(r + hl, plen));
        put_le64(r + hl - 8, wincrc_64(r, hl - 8));
        off += span;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = fuzz_dup(data, size), cthr[CTHR_PIECE];
    struct pieces p;
    split(copy, size, &p, cthr);
    parse(&p);
    fix_up(&p);
    parse(&p);
    free(copy);
    return 0;
}

/*
 * streammap.c — the raw encoding of a stream map and its decoded, searchable form.
 *
 * The encoding (doc/format.md, "Stream maps") is a 24-byte header and one 40-byte entry per chunk or
 * hole. It is canonical — one map has exactly one encoding — because its SHA-256 names the stream map:
 * two files with the same contents must produce the same bytes. Decoding checks everything that a
 * reader later relies on without checking again: the entries tile [0, size) exactly, no entry is empty,
 * holes carry no digest.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <unistd.h>

#include "store/streammap.h"

#define STREAMMAP_MAGIC "RHSM"
#define STREAMMAP_VERSION 1

_Static_assert(sizeof(STREAMMAP_MAGIC) - 1 == 4, "stream map magic is 4 bytes");

void streammap_encode(const streammap_entry *e, size_t n, uint64_t size, bytebuf *out)
{
    static const uint8_t zero[HASH_LEN];
    buf_reserve(out, STREAMMAP_HEADER_SIZE + n * STREAMMAP_ENTRY_SIZE);
    buf_append(out, STREAMMAP_MAGIC, 4);
    buf_put_le32(out, STREAMMAP_VERSION);
    buf_put_le64(out, size);
    buf_put_le64(out, n);
    for (size_t i = 0; i < n; i++) {
        /* Bit 63 is the hole flag, so a length must fit in 63 bits (no file is that large). */
        assert(!(e[i].length & STREAMMAP_HOLE));
        buf_put_le64(out, e[i].length | (e[i].hole ? STREAMMAP_HOLE : 0));
        /* Holes are written with a zero digest whatever the caller left there, keeping the encoding
         * canonical. */
        buf_append(out, e[i].hole ? zero : e[i].digest, HASH_LEN);
    }
}

int streammap_decode(const uint8_t *raw, size_t len, streammap **ret)
{
    if (!raw || !ret)
        return -EINVAL;
    cursor c = cursor_make(raw, len);
    const uint8_t *magic = cursor_take(&c, 4);
    if (!magic || memcmp(magic, STREAMMAP_MAGIC, 4) != 0)
        return RH_ECORRUPT;
    /* Another version inside a v1 store can only be damage: a new encoding comes with a new store
     * format, which the store's identity file announces. */
    if (cursor_le32(&c) != STREAMMAP_VERSION)
        return RH_ECORRUPT;
    uint64_t size = cursor_le64(&c);
    uint64_t count = cursor_le64(&c);
    if (c.bad || count != c.left / STREAMMAP_ENTRY_SIZE || c.left % STREAMMAP_ENTRY_SIZE != 0)
        return RH_ECORRUPT;

    streammap *m = mem_calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->size = size;
    m->n = (size_t)count;
    m->e = mem_calloc(m->n, sizeof(*m->e));
    m->start = mem_calloc(m->n, sizeof(*m->start));
    if (!m->e || !m->start) {
        streammap_free(m);
        return -ENOMEM;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < m->n; i++) {
        streammap_entry *e = &m->e[i];
        uint64_t field = cursor_le64(&c);
        const uint8_t *digest = cursor_take(&c, HASH_LEN);
        if (!digest)
            goto corrupt;
        e->hole = (field & STREAMMAP_HOLE) != 0;
        e->length = field & ~STREAMMAP_HOLE;
        memcpy(e->digest, digest, HASH_LEN);
        if (e->length == 0 || (e->hole && !hash_is_zero(e->digest)))
            goto corrupt;
        if (e->length > UINT64_MAX - sum)
            goto corrupt;
        m->start[i] = sum;
        sum += e->length;
    }
    if (sum != size)
        goto corrupt;
    *ret = m;
    return 0;

corrupt:
    streammap_free(m);
    return RH_ECORRUPT;
}

void streammap_free(streammap *m)
{
    if (!m)
        return;
    free(m->e);
    free(m->start);
    free(m->loc);
    free(m);
}

size_t streammap_find(const streammap *m, uint64_t off)
{
    if (!m || off >= m->size)
        return m ? m->n : 0; /* out of range: no entry */
    /* The last entry whose start is <= off; start[0] is 0, so one exists. */
    size_t lo = 0, hi = m->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->start[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

size_t streammap_range_start(streammap_range *r, const streammap *m, uint64_t off, size_t len)
{
    size_t n = off >= m->size ? 0 : (size_t)MIN((uint64_t)len, m->size - off);
    *r = (streammap_range){ .m = m, .i = n ? streammap_find(m, off) : m->n, .pos = off, .end = off + n };
    return n;
}

bool streammap_range_next(streammap_range *r, streammap_piece *p)
{
    if (r->pos >= r->end || r->i >= r->m->n)
        return false;
    uint64_t start = r->m->start[r->i], in = r->pos - start;
    size_t n = (size_t)MIN(r->m->e[r->i].length - in, r->end - r->pos);
    *p = (streammap_piece){ .i = r->i, .in = in, .n = n, .done = r->done };
    r->pos += n;
    r->done += n;
    r->i++;
    return true;
}

int streammap_seek(const streammap *m, uint64_t off, int whence, uint64_t *ret)
{
    if (off >= m->size || (whence != SEEK_DATA && whence != SEEK_HOLE))
        return off >= m->size ? -ENXIO : -EINVAL;
    bool hole = whence == SEEK_HOLE; /* what is looked for */
    size_t i = streammap_find(m, off);
    while (i < m->n && m->e[i].hole != hole)
        i++;
    if (i == m->n) /* no data after off; the end of the file counts as a hole */
        return hole ? (*ret = m->size, 0) : -ENXIO;
    *ret = MAX(off, m->start[i]);
    return 0;
}

/*
 * container.c — writing containers to a local directory and reading them back through the store
 * callbacks.
 *
 * A container is written as a temp file whose 64-byte header goes to disk first, with footer_offset 0,
 * so that a temp file left by a crash can still be scanned. Records are buffered (4 MiB) and written
 * sequentially; the writer keeps one footer entry per record in memory. Sealing writes the footer,
 * patches the header (footer_offset and its checksum) in place, fsyncs and renames the file to its final
 * name without ever replacing one that exists. The byte layout is specified in doc/format.md,
 * "Containers"; the constants below must match it.
 *
 * Readers never see a file size: rh_store_ops has only `read`, and a read past the end fails. The scanner
 * therefore reads in 1 MiB blocks and, when a block read fails with -EIO (the code of a short read), finds
 * the exact end of the file by bisection and treats it as the end of the container.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "compress/compress.h"
#include "store/container.h"

#define CONTAINER_MAGIC "RHYDRCTR"
#define CONTAINER_VERSION 1
#define RECORD_MAGIC "RREC"
#define FOOTER_MAGIC "RHYDFOOT"
#define FOOTER_HEAD_SIZE 16  /* magic, count, reserved */
#define FOOTER_ENTRY_SIZE 52 /* digest, offset, stored_len, raw_len, type, codec, members */
#define FOOTER_SUM_SIZE 8
/* Sanity bounds: no record payload (compressed or not) exceeds 256 MiB, and no container holds more
 * than 2^24 records. They keep a corrupt length from turning into a huge allocation. */
#define CONTAINER_RECORDS_MAX (1u << 24)
#define WRITE_BUFFER_SIZE (4u << 20)
#define SCAN_BLOCK (1u << 20)

_Static_assert(sizeof(CONTAINER_MAGIC) - 1 == 8, "container magic is 8 bytes");
_Static_assert(sizeof(RECORD_MAGIC) - 1 == 4, "record magic is 4 bytes");
_Static_assert(sizeof(FOOTER_MAGIC) - 1 == 8, "footer magic is 8 bytes");

const char *container_dir(uint8_t kind)
{
    switch (kind) {
    case CONTAINER_DATA:
        return "containers/data";
    case CONTAINER_STREAM:
        return "containers/stream";
    default:
        return NULL;
    }
}

const char *container_path(uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX])
{
    const char *dir = container_dir(kind);
    if (!dir)
        return NULL;
    snprintf(out, CONTAINER_PATH_MAX, "%s/%08x.ctr", dir, (unsigned)id);
    return out;
}

/* ---- encoding ---- */

static void header_encode(const container_header *h, uint8_t out[CONTAINER_HEADER_SIZE])
{
    memset(out, 0, CONTAINER_HEADER_SIZE);
    memcpy(out, CONTAINER_MAGIC, 8);
    put_le32(out + 8, h->version);
    put_le32(out + 12, h->kind);
    put_le32(out + 16, h->id);
    put_le32(out + 20, 0);
    memcpy(out + 24, h->uuid, 16);
    put_le64(out + 40, h->footer_offset);
    put_le64(out + 48, h->created_ns);
    put_le64(out + 56, hash_checksum(out, 56, NULL, 0));
}

static bool type_valid(uint8_t type)
{
    return type == RECORD_CHUNK || type == RECORD_STREAM || type == RECORD_PACK;
}
static bool codec_valid(uint8_t codec) { return codec == CODEC_RAW || codec == CODEC_ZSTD; }

/* A pack's member table gives every member at least one byte and the members together raw_len. */
static bool pack_table_ok(const uint8_t *table, uint16_t members, uint32_t raw_len)
{
    uint64_t sum = 0;
    for (unsigned k = 0; k < members; k++) {
        uint32_t n = get_le32(table + (size_t)k * PACK_ENTRY_SIZE + HASH_LEN);
        if (n == 0)
            return false;
        sum += n;
    }
    return sum == raw_len;
}

/* The members field is reserved (and ignored) in records other than packs. */
static uint16_t members_of(uint8_t type, uint16_t field) { return type == RECORD_PACK ? field : 0; }

/* The checks that apply to a record's fields wherever they come from (writer, record header, footer). */
static bool record_fields_valid(uint8_t type, uint8_t codec, uint16_t members, uint32_t stored_len,
                                uint32_t raw_len)
{
    if (!type_valid(type) || !codec_valid(codec))
        return false;
    if (stored_len > RECORD_LEN_MAX || raw_len > RECORD_LEN_MAX)
        return false;
    /* A pack's payload is its member table, then its data. */
    uint32_t table = type == RECORD_PACK ? (uint32_t)members * PACK_ENTRY_SIZE : 0;
    if (type == RECORD_PACK && (members < 1 || members > PACK_MEMBERS_MAX || stored_len < table))
        return false;
    /* A raw payload is the data itself. */
    if (codec == CODEC_RAW && stored_len - table != raw_len)
        return false;
    return true;
}

static void record_header_encode(uint8_t out[RECORD_HEADER_SIZE], uint8_t type, uint8_t codec,
                                 uint16_t members, const uint8_t digest[HASH_LEN], const void *a,
                                 uint32_t a_len, const void *b, uint32_t b_len, uint32_t raw_len)
{
    memcpy(out, RECORD_MAGIC, 4);
    out[4] = type;
    out[5] = codec;
    put_le16(out + 6, members);
    put_le32(out + 8, a_len + b_len);
    put_le32(out + 12, raw_len);
    if (digest)
        memcpy(out + 16, digest, HASH_LEN);
    else
        memset(out + 16, 0, HASH_LEN);
    put_le64(out + 48, hash_checksum2(out, 48, a, a_len, b, b_len));
}

/* ---- writing ---- */

struct container_writer {
    int dirfd; /* a duplicate of the kind's directory fd, owned: needed again at seal */
    int fd;
    char *tmpname;
    char name[16]; /* "%08x.ctr" */
    container_header h;
    uint64_t size; /* logical size: bytes written plus bytes buffered */
    uint8_t *wbuf;
    size_t wlen;
    container_record *recs; /* one footer entry per record */
    size_t n, cap;
    int err; /* sticky: once a write failed, the file's contents are unknown */
};

int container_writer_open(int dirfd, uint8_t kind, uint32_t id, const uint8_t uuid[16],
                          container_writer **ret)
{
    if (dirfd < 0 || !container_dir(kind) || !uuid || !ret)
        return -EINVAL;

    int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    container_writer *w = xcalloc(1, sizeof(*w));
    w->dirfd = dfd;
    snprintf(w->name, sizeof(w->name), "%08x.ctr", (unsigned)id);
    w->h = (container_header){ .version = CONTAINER_VERSION, .kind = kind, .id = id,
                               .created_ns = now_ns() };
    memcpy(w->h.uuid, uuid, 16);

    w->fd = fs_create_temp(dirfd, w->name, &w->tmpname);
    if (w->fd < 0) {
        int r = w->fd;
        close(w->dirfd);
        free(w);
        return r;
    }
    /* The header goes out unbuffered so that even a temp file abandoned early is recognisable. */
    uint8_t hdr[CONTAINER_HEADER_SIZE];
    header_encode(&w->h, hdr);
    int r = fs_write_full(w->fd, hdr, sizeof(hdr));
    if (r < 0) {
        container_writer_abort(w);
        return r;
    }
    w->size = CONTAINER_HEADER_SIZE;
    w->wbuf = xmalloc(WRITE_BUFFER_SIZE);
    *ret = w;
    return 0;
}

static int writer_flush(container_writer *w)
{
    if (w->err)
        return w->err;
    int r = fs_write_full(w->fd, w->wbuf, w->wlen);
    if (r < 0)
        return w->err = r;
    w->wlen = 0;
    return 0;
}

/* Buffers n bytes, writing large ones through directly once the buffer is empty. */
static int writer_put(container_writer *w, const void *p, size_t n)
{
    if (n > WRITE_BUFFER_SIZE - w->wlen) {
        int r = writer_flush(w);
        if (r < 0)
            return r;
    }
    if (n > WRITE_BUFFER_SIZE) {
        int r = fs_write_full(w->fd, p, n);
        return r < 0 ? (w->err = r) : 0;
    }
    if (n)
        memcpy(w->wbuf + w->wlen, p, n);
    w->wlen += n;
    return 0;
}

/* Appends a record whose payload is a[0..a_len) followed by b[0..b_len); digest NULL for a pack. */
static int writer_append(container_writer *w, uint8_t type, uint8_t codec, uint16_t members,
                         const uint8_t *digest, const void *a, uint32_t a_len, const void *b,
                         uint32_t b_len, uint32_t raw_len, uint64_t *ret_offset)
{
    if (w->err)
        return w->err;
    if ((uint64_t)a_len + b_len > RECORD_LEN_MAX)
        return -EINVAL;
    uint32_t stored_len = a_len + b_len;
    if (!record_fields_valid(type, codec, members, stored_len, raw_len))
        return -EINVAL;
    /* Data containers hold chunks (alone or in packs) and stream containers stream maps: readers go
     * by the kind. */
    if ((w->h.kind == CONTAINER_DATA) != (type != RECORD_STREAM))
        return -EINVAL;
    if (w->n >= CONTAINER_RECORDS_MAX)
        return -EFBIG;

    uint8_t hdr[RECORD_HEADER_SIZE];
    record_header_encode(hdr, type, codec, members, digest, a, a_len, b, b_len, raw_len);
    int r = writer_put(w, hdr, sizeof(hdr));
    if (r >= 0)
        r = writer_put(w, a, a_len);
    if (r >= 0)
        r = writer_put(w, b, b_len);
    if (r < 0)
        return w->err = r;

    w->recs = xgrow(w->recs, &w->cap, w->n, sizeof(*w->recs), 256);
    container_record *e = &w->recs[w->n++];
    *e = (container_record){ .offset = w->size, .type = type, .codec = codec, .members = members,
                             .stored_len = stored_len, .raw_len = raw_len };
    if (digest)
        memcpy(e->digest, digest, HASH_LEN);
    if (ret_offset)
        *ret_offset = w->size;
    w->size += RECORD_HEADER_SIZE + (uint64_t)stored_len;
    return 0;
}

int container_writer_append(container_writer *w, uint8_t type, uint8_t codec,
                            const uint8_t digest[HASH_LEN], const void *payload, uint32_t stored_len,
                            uint32_t raw_len, uint64_t *ret_offset)
{
    if (!w || !digest || (!payload && stored_len > 0) || type == RECORD_PACK)
        return -EINVAL;
    return writer_append(w, type, codec, 0, digest, payload, stored_len, NULL, 0, raw_len, ret_offset);
}

int container_writer_append_pack(container_writer *w, uint8_t codec, uint16_t members, const uint8_t *table,
                                 const void *data, uint32_t data_len, uint32_t raw_len, uint64_t *ret_offset)
{
    if (!w || !table || !data || members < 2 || !pack_table_ok(table, members, raw_len))
        return -EINVAL;
    return writer_append(w, RECORD_PACK, codec, members, NULL, table, (uint32_t)members * PACK_ENTRY_SIZE,
                         data, data_len, raw_len, ret_offset);
}

uint64_t container_writer_size(const container_writer *w) { return w ? w->size : 0; }
uint32_t container_writer_id(const container_writer *w) { return w ? w->h.id : 0; }
size_t container_writer_records(const container_writer *w) { return w ? w->n : 0; }

static void writer_free(container_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    close(w->dirfd);
    free(w->tmpname);
    free(w->wbuf);
    free(w->recs);
    free(w);
}

void container_writer_abort(container_writer *w)
{
    if (!w)
        return;
    unlinkat(w->dirfd, w->tmpname, 0);
    writer_free(w);
}

static void footer_encode(const container_record *recs, size_t n, bytebuf *out)
{
    buf_append(out, FOOTER_MAGIC, 8);
    buf_put_le32(out, (uint32_t)n);
    buf_put_le32(out, 0);
    for (size_t i = 0; i < n; i++) {
        buf_append(out, recs[i].digest, HASH_LEN);
        buf_put_le64(out, recs[i].offset);
        buf_put_le32(out, recs[i].stored_len);
        buf_put_le32(out, recs[i].raw_len);
        buf_put_u8(out, recs[i].type);
        buf_put_u8(out, recs[i].codec);
        buf_put_le16(out, recs[i].members);
    }
    buf_put_le64(out, hash_checksum(out->data, out->len, NULL, 0));
}

int container_writer_seal(container_writer *w)
{
    if (!w)
        return -EINVAL;
    int r = writer_flush(w);
    if (r >= 0) {
        _cleanup_(buf_free) bytebuf footer = { 0 };
        footer_encode(w->recs, w->n, &footer);
        r = fs_write_full(w->fd, footer.data, footer.len);
    }
    if (r >= 0) {
        /* The footer is complete before the header points at it, so a crash in between leaves a temp
         * file that scans cleanly (the scanner stops at the footer magic). */
        uint8_t hdr[CONTAINER_HEADER_SIZE];
        w->h.footer_offset = w->size;
        header_encode(&w->h, hdr);
        r = fs_pwrite_full(w->fd, hdr, sizeof(hdr), 0);
    }
    if (r >= 0)
        r = fs_commit_temp(w->dirfd, w->fd, w->tmpname, w->name, 0);
    if (r < 0) {
        /* After a failed no-replace rename the temp file is still ours to remove; an existing
         * "%08x.ctr" is never touched. */
        container_writer_abort(w);
        return r;
    }
    writer_free(w);
    return 0;
}

/* ---- reading ---- */

static int header_decode(const uint8_t in[CONTAINER_HEADER_SIZE], container_header *ret)
{
    cursor c = cursor_make(in, CONTAINER_HEADER_SIZE);
    const uint8_t *magic = cursor_take(&c, 8);
    if (!magic || memcmp(magic, CONTAINER_MAGIC, 8) != 0)
        return RH_ECORRUPT;
    container_header h = { 0 };
    h.version = cursor_le32(&c);
    /* The version is checked before the checksum: another version may checksum differently. */
    if (h.version != CONTAINER_VERSION)
        return RH_EVERSION;
    uint32_t kind = cursor_le32(&c);
    h.id = cursor_le32(&c);
    (void)cursor_le32(&c); /* reserved */
    const uint8_t *uuid = cursor_take(&c, 16);
    h.footer_offset = cursor_le64(&c);
    h.created_ns = cursor_le64(&c);
    uint64_t sum = cursor_le64(&c);
    if (c.bad || sum != hash_checksum(in, 56, NULL, 0))
        return RH_ECORRUPT;
    if (kind != CONTAINER_DATA && kind != CONTAINER_STREAM)
        return RH_ECORRUPT;
    if (h.footer_offset != 0 && h.footer_offset < CONTAINER_HEADER_SIZE)
        return RH_ECORRUPT;
    h.kind = (uint8_t)kind;
    memcpy(h.uuid, uuid, 16);
    *ret = h;
    return 0;
}

int container_read_header(const rh_store_ops *ops, void *ctx, const char *path, container_header *ret)
{
    if (!ops || !ops->read || !path || !ret)
        return -EINVAL;
    uint8_t in[CONTAINER_HEADER_SIZE];
    int r = ops->read(ctx, path, 0, in, sizeof(in));
    if (r < 0)
        return r;
    return header_decode(in, ret);
}

/* Parses footer entries (after the 16-byte head) and checks that they tile [64, footer_offset)
 * exactly, as the writer lays records out. */
static int footer_entries_decode(const uint8_t *p, size_t n, uint64_t footer_offset,
                                 container_record *out)
{
    cursor c = cursor_make(p, n * FOOTER_ENTRY_SIZE);
    uint64_t expect = CONTAINER_HEADER_SIZE;
    for (size_t i = 0; i < n; i++) {
        container_record *e = &out[i];
        const uint8_t *digest = cursor_take(&c, HASH_LEN);
        if (!digest)
            return RH_ECORRUPT;
        memcpy(e->digest, digest, HASH_LEN);
        e->offset = cursor_le64(&c);
        e->stored_len = cursor_le32(&c);
        e->raw_len = cursor_le32(&c);
        e->type = cursor_u8(&c);
        e->codec = cursor_u8(&c);
        e->members = members_of(e->type, cursor_le16(&c));
        if (c.bad || e->offset != expect ||
            !record_fields_valid(e->type, e->codec, e->members, e->stored_len, e->raw_len))
            return RH_ECORRUPT;
        expect += RECORD_HEADER_SIZE + (uint64_t)e->stored_len;
        if (expect > footer_offset)
            return RH_ECORRUPT;
    }
    return expect == footer_offset ? 0 : RH_ECORRUPT;
}

int container_read_footer(const rh_store_ops *ops, void *ctx, const char *path,
                          const container_header *h, container_record **ret, size_t *ret_n)
{
    if (!ops || !ops->read || !path || !h || !ret || !ret_n)
        return -EINVAL;
    if (h->footer_offset < CONTAINER_HEADER_SIZE)
        return RH_ECORRUPT; /* unsealed: no footer */

    uint8_t head[FOOTER_HEAD_SIZE];
    int r = ops->read(ctx, path, h->footer_offset, head, sizeof(head));
    if (r < 0)
        return r == -EIO ? RH_ECORRUPT : r;
    if (memcmp(head, FOOTER_MAGIC, 8) != 0)
        return RH_ECORRUPT;
    uint32_t count = get_le32(head + 8);
    /* Every record takes at least a record header before the footer. */
    if (count > CONTAINER_RECORDS_MAX ||
        count > (h->footer_offset - CONTAINER_HEADER_SIZE) / RECORD_HEADER_SIZE)
        return RH_ECORRUPT;

    size_t len = FOOTER_HEAD_SIZE + (size_t)count * FOOTER_ENTRY_SIZE + FOOTER_SUM_SIZE;
    _cleanup_(freep) uint8_t *raw = mem_alloc(len);
    if (!raw)
        return -ENOMEM;
    memcpy(raw, head, sizeof(head));
    r = ops->read(ctx, path, h->footer_offset + FOOTER_HEAD_SIZE, raw + FOOTER_HEAD_SIZE,
                  len - FOOTER_HEAD_SIZE);
    if (r < 0)
        return r == -EIO ? RH_ECORRUPT : r;
    if (get_le64(raw + len - FOOTER_SUM_SIZE) != hash_checksum(raw, len - FOOTER_SUM_SIZE, NULL, 0))
        return RH_ECORRUPT;

    container_record *recs = mem_calloc(count, sizeof(*recs));
    if (!recs)
        return -ENOMEM;
    r = footer_entries_decode(raw + FOOTER_HEAD_SIZE, count, h->footer_offset, recs);
    if (r < 0) {
        free(recs);
        return r;
    }
    *ret = recs;
    *ret_n = count;
    return 0;
}

/* Checks a record header's fields; *ret_stored gets the payload length it announces. */
static int record_header_check(const uint8_t *rec, size_t avail, uint32_t *ret_stored)
{
    if (avail < RECORD_HEADER_SIZE || memcmp(rec, RECORD_MAGIC, 4) != 0)
        return RH_ECORRUPT;
    uint32_t stored = get_le32(rec + 8);
    if (!record_fields_valid(rec[4], rec[5], members_of(rec[4], get_le16(rec + 6)), stored,
                             get_le32(rec + 12)))
        return RH_ECORRUPT;
    *ret_stored = stored;
    return 0;
}

int container_parse_record(const uint8_t *rec, size_t avail, uint64_t offset, container_record *ret,
                           const uint8_t **ret_payload)
{
    if (!rec || !ret || !ret_payload)
        return -EINVAL;
    uint32_t stored;
    int r = record_header_check(rec, avail, &stored);
    if (r < 0)
        return r;
    if (avail - RECORD_HEADER_SIZE < stored)
        return RH_ECORRUPT; /* incomplete */
    const uint8_t *payload = rec + RECORD_HEADER_SIZE;
    if (get_le64(rec + 48) != hash_checksum(rec, 48, payload, stored))
        return RH_ECHECKSUM;

    container_record out = { .offset = offset, .type = rec[4], .codec = rec[5],
                             .members = members_of(rec[4], get_le16(rec + 6)), .stored_len = stored,
                             .raw_len = get_le32(rec + 12) };
    memcpy(out.digest, rec + 16, HASH_LEN);
    if (out.type == RECORD_PACK && !pack_table_ok(payload, out.members, out.raw_len))
        return RH_ECORRUPT;
    /* Readers size their decode buffer by raw_len (up to RECORD_LEN_MAX): refuse a raw_len that the
     * payload cannot decode to before anyone allocates it. */
    uint32_t data_len = stored;
    const uint8_t *data = out.type == RECORD_PACK ? pack_data(&out, payload, &data_len) : payload;
    if (!decompress_size_ok(out.codec, data, data_len, out.raw_len))
        return RH_ECORRUPT;
    *ret = out;
    *ret_payload = payload;
    return 0;
}

int container_read_record(const rh_store_ops *ops, void *ctx, const char *path, uint64_t offset,
                          uint32_t stored_len, uint8_t *out, container_record *ret,
                          const uint8_t **ret_payload)
{
    if (!ops || !ops->read || !path || !out || !ret || !ret_payload)
        return -EINVAL;
    if (stored_len > RECORD_LEN_MAX || offset < CONTAINER_HEADER_SIZE)
        return RH_ECORRUPT;
    size_t len = RECORD_HEADER_SIZE + (size_t)stored_len;
    int r = ops->read(ctx, path, offset, out, len);
    if (r < 0)
        return r;
    container_record rec;
    const uint8_t *payload;
    r = container_parse_record(out, len, offset, &rec, &payload);
    if (r < 0)
        return r;
    /* The caller's length comes from the index or a footer; a record that disagrees is not the one it
     * meant. */
    if (rec.stored_len != stored_len)
        return RH_ECORRUPT;
    *ret = rec;
    *ret_payload = payload;
    return 0;
}

/* ---- scanning ---- */

/*
 * A read window over a container: buf holds bytes [base, base+len). It never reads at or beyond
 * `limit` (the footer of a sealed container). `eof` means the file (or the limit) is known to end at
 * base+len.
 */
typedef struct scanner {
    const rh_store_ops *ops;
    void *ctx;
    const char *path;
    uint8_t *buf;
    size_t cap, len;
    uint64_t base, limit;
    bool eof;
} scanner;

/* Reads [at, at+n) into p; 1 if the bytes are there, 0 if the read fails as a short read does (-EIO),
 * or another read error. */
static int scan_try_read(scanner *s, uint64_t at, uint8_t *p, size_t n)
{
    int r = s->ops->read(s->ctx, s->path, at, p, n);
    if (r == -EIO)
        return 0;
    return r < 0 ? r : 1;
}

/* Finds how many of the `step` bytes after the window exist, by bisection, once a read of all of them
 * has failed; appends them to the window, which then ends where the file ends. */
static int scan_find_end(scanner *s, size_t step)
{
    size_t lo = 0, hi = step; /* [0, lo) readable, [0, hi) not */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        int r = scan_try_read(s, s->base + s->len + lo, s->buf + s->len + lo, mid - lo);
        if (r < 0)
            return r;
        if (r)
            lo = mid;
        else
            hi = mid;
    }
    s->len += lo;
    s->eof = true;
    return 0;
}

/*
 * Makes [off, off+want) available in the window, or as much of it as the file holds (then s->eof).
 * off must lie within the window or at its end. Reads go in SCAN_BLOCK steps, so a garbage length in a
 * torn record costs a bounded allocation.
 */
static int scan_fill(scanner *s, uint64_t off, size_t want)
{
    if (off + want <= s->base + s->len || s->eof)
        return 0;
    size_t drop = (size_t)(off - s->base);
    if (drop > 0 && s->len > drop)
        memmove(s->buf, s->buf + drop, s->len - drop);
    s->base = off;
    s->len -= drop;
    while (s->len < want && !s->eof) {
        uint64_t room = s->limit - (s->base + s->len);
        size_t step = room < SCAN_BLOCK ? (size_t)room : SCAN_BLOCK;
        if (step == 0) {
            s->eof = true;
            break;
        }
        if (s->cap - s->len < step) {
            uint8_t *buf = mem_realloc(s->buf, s->len + step);
            if (!buf)
                return -ENOMEM;
            s->buf = buf;
            s->cap = s->len + step;
        }
        int r = scan_try_read(s, s->base + s->len, s->buf + s->len, step);
        if (r < 0)
            return r;
        if (r)
            s->len += step;
        else if ((r = scan_find_end(s, step)) < 0)
            return r;
    }
    return 0;
}

/* Bytes available at off (within the window). */
static size_t scan_avail(const scanner *s, uint64_t off) { return (size_t)(s->base + s->len - off); }

/* The scan itself: footer_offset is the header's (0 when unsealed or unknown: then the scan stops at a
 * footer magic or where the records end). */
static int scan_records(const rh_store_ops *ops, void *ctx, const char *path, uint64_t footer_offset,
                        container_record **ret, size_t *ret_n, uint64_t *ret_end, int *ret_bad)
{
    bool sealed = footer_offset != 0;
    scanner s = { .ops = ops, .ctx = ctx, .path = path, .base = CONTAINER_HEADER_SIZE,
                  .limit = sealed ? footer_offset : UINT64_MAX };
    container_record *recs = NULL;
    size_t n = 0, cap = 0;
    uint64_t off = CONTAINER_HEADER_SIZE;
    int bad = 0, r;

    for (;;) {
        if (sealed && off == footer_offset)
            break;
        if ((r = scan_fill(&s, off, RECORD_HEADER_SIZE)) < 0)
            goto fail;
        size_t avail = scan_avail(&s, off);
        const uint8_t *p = s.buf + (off - s.base);
        if (avail == 0) {
            /* A clean end; but a sealed container must reach its footer. */
            bad = sealed ? RH_ECORRUPT : 0;
            break;
        }
        /* A temp file whose seal was interrupted after the footer was written ends in a footer. */
        if (!sealed && avail >= 8 && memcmp(p, FOOTER_MAGIC, 8) == 0)
            break;
        uint32_t stored;
        if ((bad = record_header_check(p, avail, &stored)) < 0)
            break;
        if ((r = scan_fill(&s, off, RECORD_HEADER_SIZE + (size_t)stored)) < 0)
            goto fail;
        container_record rec;
        const uint8_t *payload;
        p = s.buf + (off - s.base);
        if ((bad = container_parse_record(p, scan_avail(&s, off), off, &rec, &payload)) < 0)
            break;
        container_record *v = mem_grow(recs, &cap, n, sizeof(*recs), 256);
        if (!v) {
            r = -ENOMEM;
            goto fail;
        }
        recs = v;
        recs[n++] = rec;
        off += RECORD_HEADER_SIZE + (uint64_t)stored;
    }
    if (!recs && !(recs = mem_calloc(1, sizeof(*recs)))) {
        r = -ENOMEM;
        goto fail;
    }
    free(s.buf);
    *ret = recs;
    *ret_n = n;
    *ret_end = off;
    if (ret_bad)
        *ret_bad = bad;
    return 0;

fail:
    free(s.buf);
    free(recs);
    return r;
}

int container_scan(const rh_store_ops *ops, void *ctx, const char *path, container_record **ret,
                   size_t *ret_n, uint64_t *ret_end, int *ret_bad)
{
    if (!ops || !ops->read || !path || !ret || !ret_n || !ret_end)
        return -EINVAL;
    container_header h;
    int r = container_read_header(ops, ctx, path, &h);
    if (r < 0)
        return r;
    return scan_records(ops, ctx, path, h.footer_offset, ret, ret_n, ret_end, ret_bad);
}

int container_scan_headerless(const rh_store_ops *ops, void *ctx, const char *path, container_record **ret,
                              size_t *ret_n, uint64_t *ret_end, int *ret_bad)
{
    if (!ops || !ops->read || !path || !ret || !ret_n || !ret_end)
        return -EINVAL;
    return scan_records(ops, ctx, path, 0, ret, ret_n, ret_end, ret_bad);
}

/* ---- packs ---- */

int pack_member(const container_record *rec, const uint8_t *payload, unsigned k, pack_entry *ret)
{
    if (rec->type != RECORD_PACK || k >= rec->members)
        return RH_ECORRUPT;
    uint32_t off = 0;
    for (unsigned i = 0; i < k; i++)
        off += get_le32(payload + (size_t)i * PACK_ENTRY_SIZE + HASH_LEN);
    const uint8_t *e = payload + (size_t)k * PACK_ENTRY_SIZE;
    *ret = (pack_entry){ .digest = e, .raw_len = get_le32(e + HASH_LEN), .offset = off };
    return 0;
}

const uint8_t *pack_data(const container_record *rec, const uint8_t *payload, uint32_t *ret_len)
{
    uint32_t table = (uint32_t)rec->members * PACK_ENTRY_SIZE;
    *ret_len = rec->stored_len - table;
    return payload + table;
}

int pack_decode(const container_record *rec, const uint8_t *payload, uint8_t *scratch,
                const uint8_t **ret_data)
{
    uint32_t n;
    const uint8_t *data = pack_data(rec, payload, &n);
    if (rec->codec == CODEC_RAW) { /* record_fields_valid: n == raw_len */
        *ret_data = data;
        return 0;
    }
    *ret_data = scratch;
    return decompress_chunk(rec->codec, data, n, scratch, rec->raw_len);
}

int container_read_pack_table(const rh_store_ops *ops, void *ctx, const char *path,
                              const container_record *rec, uint8_t **ret)
{
    if (rec->type != RECORD_PACK)
        return -EINVAL;
    size_t table = (size_t)rec->members * PACK_ENTRY_SIZE;
    uint8_t *buf = mem_alloc(RECORD_HEADER_SIZE + table);
    if (!buf)
        return -ENOMEM;
    int r = ops->read(ctx, path, rec->offset, buf, RECORD_HEADER_SIZE + table);
    uint32_t stored;
    if (r >= 0)
        r = record_header_check(buf, RECORD_HEADER_SIZE + table, &stored);
    if (r >= 0 && (buf[4] != RECORD_PACK || buf[5] != rec->codec || get_le16(buf + 6) != rec->members ||
                   stored != rec->stored_len || get_le32(buf + 12) != rec->raw_len))
        r = RH_ECORRUPT;
    if (r >= 0 && !pack_table_ok(buf + RECORD_HEADER_SIZE, rec->members, rec->raw_len))
        r = RH_ECORRUPT;
    if (r < 0) {
        free(buf);
        return r == -EIO ? RH_ECORRUPT : r;
    }
    memmove(buf, buf + RECORD_HEADER_SIZE, table);
    *ret = buf;
    return 0;
}

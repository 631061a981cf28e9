/*
 * windedup-fmt.c — writes Windows dedup containers and reparse buffers byte by byte (see
 * windedup-fmt.h). Field values that real volumes hold are copied from the public sample container
 * (WINDOWS-DEDUP.md); fields nobody has explained are zero. doc/windows-format-notes.md lists both.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "windows/wincrc.h"
#include "windedup-fmt.h"

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)
#define PAGE 0x1000u

/* The 0x20 bytes every Ckhr starts with. 0x14, 0x18 and 0x1c hold 8 in every record of the sample
 * (data and padding alike); their meaning is unknown. */
static void ckhr_common(uint8_t *h, uint32_t seq, uint32_t payload_len, uint16_t type, uint16_t size_field)
{
    memcpy(h, "Ckhr", 4);
    static const uint8_t version[4] = { 1, 3, 3, 1 };
    memcpy(h + 4, version, 4);
    put_le32(h + 0x08, seq);
    put_le32(h + 0x0c, payload_len);
    put_le16(h + 0x10, type);
    put_le16(h + 0x12, size_field);
    put_le32(h + 0x14, 8);
    put_le32(h + 0x18, 8);
    put_le32(h + 0x1c, 8);
}

void wd_ckhr_data(uint8_t h[WD_DATA_HEADER], uint32_t seq, const void *payload, uint32_t stored_len,
                  uint32_t compression, const uint8_t digest[WD_DIGEST_LEN])
{
    memset(h, 0, WD_DATA_HEADER);
    ckhr_common(h, seq, stored_len, 1, WD_DATA_HEADER - 0x30);
    put_le32(h + 0x20, compression);
    put_le32(h + 0x24, compression);
    memcpy(h + 0x28, digest, WD_DIGEST_LEN);
    put_le64(h + 0x48, wincrc_64(payload, stored_len));
    put_le64(h + 0x50, wincrc_64(h, 0x50));
}

/* The stream-map header follows the data header's pattern (inferred, see the notes): the 16-byte
 * digest at 0x38 [source: the plugin], the payload CRC-64 at 0x58, the header CRC-64 at 0x60. */
void wd_ckhr_stream(uint8_t h[WD_STREAM_HEADER], uint32_t seq, const void *payload, uint32_t len,
                    const uint8_t digest16[16])
{
    memset(h, 0, WD_STREAM_HEADER);
    ckhr_common(h, seq, len, 2, WD_STREAM_HEADER - 0x30);
    memcpy(h + 0x38, digest16, 16);
    put_le64(h + 0x58, wincrc_64(payload, len));
    put_le64(h + 0x60, wincrc_64(h, 0x60));
}

/* A padding record's header: sequence number 0, all-ones at 0x20, CRC-64 of 0x00-0x27 at 0x28. */
static void ckhr_padding(uint8_t h[WD_PAD_HEADER], uint32_t payload_len)
{
    memset(h, 0, WD_PAD_HEADER);
    ckhr_common(h, 0, payload_len, 4, 0);
    put_le64(h + 0x20, UINT64_MAX);
    put_le64(h + 0x28, wincrc_64(h, 0x28));
}

void wd_smap_entry(uint8_t out[WD_SMAP_ENTRY], uint32_t seq, uint32_t container, uint32_t offset,
                   uint32_t generation, uint64_t end, const uint8_t digest[WD_DIGEST_LEN], uint32_t stored)
{
    memset(out, 0, WD_SMAP_ENTRY);
    put_le32(out + 0x00, seq);
    put_le32(out + 0x04, container);
    put_le32(out + 0x08, offset);
    put_le32(out + 0x0c, generation);
    put_le64(out + 0x10, end);
    memcpy(out + 0x18, digest, WD_DIGEST_LEN);
    put_le32(out + 0x38, stored);
}

static void cthr(uint8_t h[0x40], const struct wd_container *c, uint32_t generation, uint64_t usn,
                 uint64_t valid_len, uint64_t filetime)
{
    memset(h, 0, 0x40);
    memcpy(h, "Cthr", 4);
    static const uint8_t version[4] = { 1, 4, 4, 1 };
    memcpy(h + 4, version, 4);
    put_le64(h + 0x08, usn);
    put_le32(h + 0x10, c->id);
    put_le32(h + 0x14, generation);
    put_le32(h + 0x18, c->chunks);
    put_le32(h + 0x1c, c->next_seq);
    put_le32(h + 0x20, (uint32_t)valid_len);
    /* 0x24: flags, 0 in the sample */
    put_le64(h + 0x28, filetime);
    put_le32(h + 0x30, 0x4000); /* the backup Rrtl */
    /* 0x34: last reconciliation id, 0 in the sample */
    put_le64(h + 0x38, wincrc_64(h, 0x38));
}

/* Rrtl: magic, version 01 03 03 01 (the sample's), entry count at 0x08, entry size 8 at 0x0c, all-ones
 * at 0x10, CRC-64 of 0x00-0x17 at 0x18, then {seq, offset} entries sorted by seq. */
static void rrtl(uint8_t page[PAGE], const struct wd_container *c)
{
    memset(page, 0, PAGE);
    memcpy(page, "Rrtl", 4);
    static const uint8_t version[4] = { 1, 3, 3, 1 };
    memcpy(page + 4, version, 4);
    put_le32(page + 0x08, c->rrtl_n);
    put_le32(page + 0x0c, 8);
    put_le64(page + 0x10, UINT64_MAX);
    put_le64(page + 0x18, wincrc_64(page, 0x18));
    for (uint32_t i = 0; i < c->rrtl_n; i++) {
        put_le32(page + 0x20 + 8 * i, c->rrtl_seq[i]);
        put_le32(page + 0x24 + 8 * i, c->rrtl_off[i]);
    }
}

int wd_container_open(struct wd_container *c, const char *dir, enum wd_kind kind, uint32_t id,
                      uint32_t generation, uint64_t filetime)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->id = id;
    c->generation = generation;
    c->end = WD_FIRST_RECORD;
    c->next_seq = 1;
    c->filetime = filetime;
    if (asprintf(&c->path, "%s/%08x.%08x.ccc", dir, id, generation) < 0)
        return -ENOMEM;
    c->fd = open(c->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (c->fd < 0) {
        int e = -errno;
        free(c->path);
        c->path = NULL;
        return e;
    }
    return 0;
}

uint32_t wd_next_seq(struct wd_container *c) { return c->next_seq++; }

/* A padding record of total length len (header + zero payload) at off. */
static int write_padding(int fd, uint64_t off, uint64_t len)
{
    uint8_t h[WD_PAD_HEADER];
    ckhr_padding(h, (uint32_t)(len - WD_PAD_HEADER));
    int r = fs_pwrite_full(fd, h, sizeof(h), off);
    struct stat st;
    if (r == 0 && fstat(fd, &st) < 0)
        r = -errno;
    /* The payload is zeros: extend the file over it when nothing lies beyond yet. */
    if (r == 0 && (uint64_t)st.st_size < off + len && ftruncate(fd, (off_t)(off + len)) < 0)
        r = -errno;
    return r;
}

int wd_append(struct wd_container *c, const uint8_t *rec, size_t len, uint32_t seq, bool move,
              uint32_t *ret_offset)
{
    uint64_t off = c->end;
    if (off + len > UINT32_MAX)
        return -EFBIG; /* offsets in stream maps and reparse points are 32-bit */
    int r;
    if (move && !c->moved) {
        r = write_padding(c->fd, off, len);
        c->moved = xmalloc(len);
        memcpy(c->moved, rec, len);
        c->moved_len = len;
        c->moved_seq = seq;
        c->moved_from = off;
    } else {
        r = fs_pwrite_full(c->fd, rec, len, off);
    }
    if (r < 0)
        return r;
    c->end = ALIGN8(off + len);
    c->chunks++;
    c->session_open = true;
    *ret_offset = (uint32_t)off;
    return 0;
}

int wd_close_session(struct wd_container *c, uint64_t next_filetime)
{
    if (!c->session_open)
        return 0;
    uint64_t pos = c->end;
    if (pos % PAGE) {
        uint64_t boundary = (pos + PAGE - 1) / PAGE * PAGE;
        if (boundary - pos < WD_PAD_HEADER)
            boundary += PAGE;
        int r = write_padding(c->fd, pos, boundary - pos);
        if (r < 0)
            return r;
        c->end = boundary;
    }
    c->usn++;
    if (c->usn == 1) {
        cthr(c->first_cthr, c, c->generation, c->usn, c->end, c->filetime);
        c->first_end = c->end;
    }
    c->filetime = next_filetime;
    c->session_open = false;
    return 0;
}

int wd_container_close(struct wd_container *c)
{
    int r = wd_close_session(c, c->filetime + 10000000ull);
    if (r == 0 && c->moved) {
        /* The moved record goes in a session of its own, found through the Rrtl. */
        uint64_t off = c->end;
        r = fs_pwrite_full(c->fd, c->moved, c->moved_len, off);
        c->end = ALIGN8(off + c->moved_len);
        c->session_open = true;
        c->rrtl_seq[c->rrtl_n] = c->moved_seq;
        c->rrtl_off[c->rrtl_n] = (uint32_t)off;
        c->rrtl_n++;
        if (r == 0)
            r = wd_close_session(c, c->filetime);
    }
    uint8_t page[PAGE];
    if (r == 0) {
        memset(page, 0, PAGE);
        memcpy(page, c->first_cthr, 0x40);
        r = fs_pwrite_full(c->fd, page, PAGE, 0);
    }
    if (r == 0) {
        cthr(page, c, c->generation, c->usn, c->end, c->filetime);
        r = fs_pwrite_full(c->fd, page, PAGE, 0x1000);
        if (r == 0)
            r = fs_pwrite_full(c->fd, page, PAGE, 0x2000);
    }
    if (r == 0) {
        rrtl(page, c);
        r = fs_pwrite_full(c->fd, page, PAGE, 0x3000);
        if (r == 0)
            r = fs_pwrite_full(c->fd, page, PAGE, 0x4000);
    }
    if (r == 0 && ftruncate(c->fd, (off_t)c->end) < 0)
        r = -errno;
    if (close(c->fd) < 0 && r == 0)
        r = -errno;
    c->fd = -1;
    return r;
}

void wd_container_release(struct wd_container *c)
{
    free(c->moved);
    c->moved = NULL;
    free(c->path);
    c->path = NULL;
}

int wd_write_older_generation(const struct wd_container *c, const char *dir, bool shift)
{
    if (c->generation < 2 || c->usn == 0)
        return -EINVAL;
    uint64_t len = c->first_end - WD_FIRST_RECORD, delta = shift ? PAGE : 0;
    uint8_t *buf = xmalloc(len ? len : 1);
    char *path = NULL;
    int r = 0, in = -1, out = -1;
    if (asprintf(&path, "%s/%08x.%08x.ccc", dir, c->id, c->generation - 1) < 0) {
        path = NULL;
        r = -ENOMEM;
        goto out;
    }
    in = open(c->path, O_RDONLY | O_CLOEXEC);
    out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (in < 0 || out < 0) {
        r = -errno;
        goto out;
    }
    if (pread(in, buf, len, WD_FIRST_RECORD) != (ssize_t)len) {
        r = -EIO;
        goto out;
    }
    if (shift && (r = write_padding(out, WD_FIRST_RECORD, PAGE)) < 0)
        goto out;
    if ((r = fs_pwrite_full(out, buf, len, WD_FIRST_RECORD + delta)) < 0)
        goto out;
    /* A record moved in the current generation still sits at its first place in the older one. */
    if (c->moved && c->moved_from + c->moved_len <= c->first_end &&
        (r = fs_pwrite_full(out, c->moved, c->moved_len, c->moved_from + delta)) < 0)
        goto out;
    /* The first session's Cthr, renumbered: the same in all three places, and no Rrtl entries. */
    uint8_t page[PAGE];
    memset(page, 0, PAGE);
    memcpy(page, c->first_cthr, 0x40);
    put_le32(page + 0x14, c->generation - 1);
    put_le32(page + 0x20, (uint32_t)(c->first_end + delta));
    put_le64(page + 0x38, wincrc_64(page, 0x38));
    for (uint64_t at = 0; at < 0x3000 && r == 0; at += PAGE)
        r = fs_pwrite_full(out, page, PAGE, at);
    struct wd_container empty = { .rrtl_n = 0 };
    rrtl(page, &empty);
    if (r == 0)
        r = fs_pwrite_full(out, page, PAGE, 0x3000);
    if (r == 0)
        r = fs_pwrite_full(out, page, PAGE, 0x4000);
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0 && r == 0)
        r = -errno;
    free(path);
    free(buf);
    return r;
}

/* Closes a reparse buffer of `total` bytes: tag, data length, and the CRC-32 of the data (from 0x08)
 * except its last 4 bytes, stored in those. */
static size_t reparse_finish(uint8_t *out, size_t total, uint16_t format)
{
    uint16_t data_len = (uint16_t)(total - 8);
    put_le32(out, WD_TAG_DEDUP);
    put_le16(out + 4, data_len);
    put_le16(out + 6, 0);
    put_le16(out + 8, format);
    put_le16(out + 10, data_len);
    put_le32(out + total - 4, wincrc_32(out + 8, data_len - 4));
    return total;
}

/* The 64-byte stream entry of the two older formats, up to (not including) its digest. */
static void stream_entry_head(uint8_t *e, const struct wd_streamref *ref)
{
    put_le32(e + 0x00, ref->seq);
    put_le32(e + 0x04, ref->container);
    put_le32(e + 0x08, ref->offset);
    /* 0x0c-0x17: three u32 of unknown meaning, zero */
    put_le32(e + 0x18, ref->smap_size);
}

size_t wd_reparse_short(uint8_t *out, size_t out_cap, const uint8_t guid[16], uint64_t size,
                        uint64_t filetime, const struct wd_streamref *ref)
{
    const size_t total = 0x84;
    if (out_cap < total)
        return 0;
    memset(out, 0, total);
    put_le64(out + 0x10, size);
    memcpy(out + 0x20, guid, 16);
    put_le64(out + 0x30, filetime);
    stream_entry_head(out + 0x40, ref);
    memcpy(out + 0x60, ref->digest, 32);
    return reparse_finish(out, total, 0x0201);
}

size_t wd_reparse_long(uint8_t *out, size_t out_cap, const uint8_t guid[16], const struct wd_streamref *refs,
                       size_t n)
{
    const size_t array_at = 0x9c;
    size_t total = array_at + 64 * n + 4;
    if (n == 0 || total > out_cap || total > WD_REPARSE_MAX)
        return 0;
    memset(out, 0, total);
    put_le16(out + 0x54, (uint16_t)(64 * n));
    put_le16(out + 0x56, (uint16_t)(array_at - 8));
    memcpy(out + 0x7c, guid, 16);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = out + array_at + 64 * i;
        stream_entry_head(e, &refs[i]);
        memcpy(e + 0x20, refs[i].digest, 16);
        put_le64(e + 0x30, refs[i].end);
        put_le64(e + 0x38, refs[i].begin);
    }
    return reparse_finish(out, total, 0x0102);
}

/*
 * The property bag. Only its fixed offsets are public (WinDedup_Extracter's parser: FeRp at 0x0c with
 * a CRC and a size, the GUID at 0x6c, the size at 0x84, RbRp then DdRp with the stream reference at
 * fixed places); the item table's types and the sub-block CRCs' coverage are our own choices, listed
 * in doc/windows-format-notes.md. No public reader checks these CRCs.
 */
size_t wd_reparse_bag(uint8_t *out, size_t out_cap, const uint8_t guid[16], uint64_t size, uint64_t filetime,
                      const struct wd_streamref *ref)
{
    const size_t ferp = 0x0c, rbrp = 0x8c, rbrp_len = 0x10, ddrp = 0x9c, ddrp_len = 0x6c;
    const size_t total = ddrp + ddrp_len + 4;
    if (out_cap < total)
        return 0;
    memset(out, 0, total);
    static const struct {
        uint16_t type, size;
        uint32_t at;
    } items[] = { { 1, 16, 0x6c }, { 2, 8, 0x7c }, { 3, 8, 0x84 }, { 4, 0x10, 0x8c }, { 5, 0x6c, 0x9c } };
    memcpy(out + 0x6c, guid, 16);
    put_le64(out + 0x7c, filetime);
    put_le64(out + 0x84, size);
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        uint8_t *it = out + 0x1c + 8 * i;
        put_le16(it, items[i].type);
        put_le16(it + 2, items[i].size);
        put_le32(it + 4, (uint32_t)(items[i].at - ferp));
    }
    uint8_t *rb = out + rbrp;
    memcpy(rb, "RbRp", 4);
    put_le32(rb + 8, (uint32_t)rbrp_len);
    put_le32(rb + 4, wincrc_32(rb + 8, rbrp_len - 8));
    uint8_t *dd = out + ddrp;
    memcpy(dd, "DdRp", 4);
    put_le32(dd + 0x08, (uint32_t)ddrp_len);
    put_le32(dd + 0x28, ref->generation);
    put_le32(dd + 0x2c, ref->seq);
    put_le32(dd + 0x30, ref->container);
    put_le32(dd + 0x34, ref->seq);
    put_le32(dd + 0x38, ref->container);
    put_le32(dd + 0x3c, ref->offset);
    put_le32(dd + 0x40, ref->generation);
    put_le32(dd + 0x4c, ref->smap_size);
    memcpy(dd + 0x54, ref->digest, 16);
    put_le64(dd + 0x64, size);
    put_le32(dd + 4, wincrc_32(dd + 8, ddrp_len - 8));
    memcpy(out + ferp, "FeRp", 4);
    put_le32(out + 0x14, (uint32_t)(ddrp + ddrp_len - ferp));
    put_le32(out + 0x18, (uint32_t)(sizeof(items) / sizeof(items[0])));
    put_le32(out + 0x10, wincrc_32(out + 0x14, ddrp + ddrp_len - 0x14));
    return reparse_finish(out, total, 0x0103);
}

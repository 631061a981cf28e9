/*
 * winreparse.c — parser of the Windows Server Data Deduplication reparse point (tag 0x80000013), as
 * ntfs-3g returns it in system.ntfs_reparse_data. Facts from the team's WINDOWS-DEDUP.md ("The
 * reparse point") and doc/windows-format-notes.md; marks: [source] read in a public reader (the ntfs-3g
 * dedup plugin, WinDedup_Extracter), [checked] seen in real bytes, [inferred] our own reading.
 * No real reparse buffer is public: none of the layouts below is [checked].
 *
 * Common [source]: 0x00 u32 tag, 0x04 u16 data length L (buffer = 8 + L bytes; we require len == 8 + L
 * [inferred]: ntfs-3g returns the buffer exactly), 0x06 u16 0 (not checked), 0x08 u16 format, 0x0a u16
 * = L again (the plugin requires it for 0x0201/0x0102; for the bag "03 01 <u16 length>" says the same,
 * so we require it for all three), last 4 bytes a CRC-32 (zlib) of 0x08..end-4.
 *
 * - 0x0201 "short" [source]: 0x10 u64 file size, 0x20 GUID, 0x30 FILETIME, 0x40 one 64-byte entry
 *   {u32 seq, u32 Stream container id, u32 record offset, 3 x u32, u32 smap size, u32, 32-byte digest}.
 *   The digest's 32 bytes are the doc's; the plugin reads only 16 of them.
 * - 0x0102 "long" [source]: 0x54 u16 entry-array size, 0x56 u16 its offset from 0x08, 0x7c GUID; 64-byte
 *   entries {seq, container, offset, 3 x u32, smap size, u32, 16-byte digest, u64 end, u64 begin}. We
 *   require [inferred]: size a non-zero multiple of 64, array past the GUID (>= 0x8c) and before the
 *   CRC, parts non-empty and consecutive from 0; the file size is the last part's end.
 * - 0x0103 property bag "FeRp" [source: only WinDedup_Extracter's fixed offsets]: "FeRp" at 0x0c, its
 *   size at 0x14 (block must fit), GUID at 0x6c, file size at 0x84; then blocks {magic, u32 CRC, u32
 *   size}: "RbRp" at 0x8c and the next block "DdRp", found through RbRp's size [inferred], with generation
 *   +0x28, seq +0x2c, container +0x30, offset +0x3c, smap size +0x4c, 16-byte digest +0x54, size +0x64
 *   (must equal 0x84's [inferred]). The inner CRCs are not checked: their coverage is unknown (the test
 *   tool's is its own choice). No real bag has been seen.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "windows/wincrc.h"
#include "windows/winreparse.h"

#define ENTRY 64

static int bad(winreparse *r, size_t at, const char *why)
{
    free(r->refs);
    r->refs = NULL;
    r->nrefs = 0;
    r->why = why;
    r->why_at = at;
    return RH_ECORRUPT;
}

static int alloc_refs(winreparse *r, size_t n)
{
    r->refs = mem_calloc(n, sizeof(*r->refs));
    if (r->refs == NULL)
        return -ENOMEM;
    r->nrefs = n;
    return 0;
}

/* The head of a 0x0201/0x0102 entry: seq, container, offset, smap size; digest_len bytes at +0x20. */
static void entry_head(const uint8_t *e, winreparse_ref *ref, uint8_t digest_len)
{
    ref->seq = get_le32(e);
    ref->container = get_le32(e + 0x04);
    ref->offset = get_le32(e + 0x08);
    ref->smap_size = get_le32(e + 0x18);
    ref->digest_len = digest_len;
    memcpy(ref->digest, e + 0x20, digest_len);
}

static int parse_short(const uint8_t *buf, size_t len, winreparse *r)
{
    if (len < 0x40 + ENTRY + 4)
        return bad(r, len, "0x0201 buffer shorter than its entry");
    int rc = alloc_refs(r, 1);
    if (rc != 0)
        return rc;
    r->has_size = 1;
    r->size = get_le64(buf + 0x10);
    memcpy(r->guid, buf + 0x20, 16);
    entry_head(buf + 0x40, &r->refs[0], 32);
    r->refs[0].begin = 0;
    r->refs[0].end = r->size;
    return 0;
}

static int parse_long(const uint8_t *buf, size_t len, winreparse *r)
{
    if (len < 0x8c + 4)
        return bad(r, len, "0x0102 buffer shorter than its header");
    size_t asize = get_le16(buf + 0x54), at = 8 + (size_t)get_le16(buf + 0x56);
    if (asize == 0 || asize % ENTRY != 0)
        return bad(r, 0x54, "0x0102 entry-array size not a non-zero multiple of 64");
    if (at < 0x8c)
        return bad(r, 0x56, "0x0102 entry array overlaps the header");
    if (at > len - 4 || asize > len - 4 - at)
        return bad(r, 0x56, "0x0102 entry array past the end of the buffer");
    size_t n = asize / ENTRY;
    int rc = alloc_refs(r, n);
    if (rc != 0)
        return rc;
    memcpy(r->guid, buf + 0x7c, 16);
    uint64_t next = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = buf + at + ENTRY * i;
        winreparse_ref *ref = &r->refs[i];
        entry_head(e, ref, 16);
        ref->end = get_le64(e + 0x30);
        ref->begin = get_le64(e + 0x38);
        if (ref->begin != next)
            return bad(r, at + ENTRY * i + 0x38, "0x0102 part does not begin where the last one ended");
        if (ref->end <= ref->begin)
            return bad(r, at + ENTRY * i + 0x30, "0x0102 part ends before it begins");
        next = ref->end;
    }
    r->has_size = 1;
    r->size = next;
    return 0;
}

static int parse_bag(const uint8_t *buf, size_t len, winreparse *r)
{
    const size_t rb = 0x8c, dd_min = 0x6c;
    if (len < rb + 12 + 4)
        return bad(r, len, "property bag shorter than its header");
    if (memcmp(buf + 0x0c, "FeRp", 4) != 0)
        return bad(r, 0x0c, "property bag without FeRp magic");
    size_t ferp = get_le32(buf + 0x14);
    if (ferp > len - 4 - 0x0c)
        return bad(r, 0x14, "FeRp size past the end of the buffer");
    if (memcmp(buf + rb, "RbRp", 4) != 0)
        return bad(r, rb, "property bag without RbRp block");
    size_t rbsize = get_le32(buf + rb + 8);
    if (rbsize < 12 || rbsize > len - 4 - rb)
        return bad(r, rb + 8, "RbRp size out of range");
    size_t dd = rb + rbsize;
    if (len - 4 - dd < dd_min)
        return bad(r, dd, "DdRp block past the end of the buffer");
    if (memcmp(buf + dd, "DdRp", 4) != 0)
        return bad(r, dd, "property bag without DdRp block after RbRp");
    size_t ddsize = get_le32(buf + dd + 8);
    if (ddsize < dd_min || ddsize > len - 4 - dd)
        return bad(r, dd + 8, "DdRp size out of range");
    uint64_t size = get_le64(buf + 0x84);
    if (get_le64(buf + dd + 0x64) != size)
        return bad(r, dd + 0x64, "DdRp file size differs from the bag's");
    int rc = alloc_refs(r, 1);
    if (rc != 0)
        return rc;
    memcpy(r->guid, buf + 0x6c, 16);
    r->has_size = 1;
    r->size = size;
    winreparse_ref *ref = &r->refs[0];
    ref->generation = get_le32(buf + dd + 0x28);
    ref->seq = get_le32(buf + dd + 0x2c);
    ref->container = get_le32(buf + dd + 0x30);
    ref->offset = get_le32(buf + dd + 0x3c);
    ref->smap_size = get_le32(buf + dd + 0x4c);
    ref->digest_len = 16;
    memcpy(ref->digest, buf + dd + 0x54, 16);
    ref->begin = 0;
    ref->end = size;
    return 0;
}

int winreparse_parse(const uint8_t *buf, size_t len, winreparse *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (len < 0x10)
        return bad(ret, len, "reparse buffer shorter than its header");
    if (get_le32(buf) != WINREPARSE_TAG)
        return bad(ret, 0, "reparse tag is not 0x80000013");
    size_t data_len = get_le16(buf + 4);
    if (data_len + 8 != len)
        return bad(ret, 4, "reparse data length does not match the buffer's");
    if (get_le16(buf + 0x0a) != data_len)
        return bad(ret, 0x0a, "repeated data length differs");
    if (wincrc_32(buf + 8, len - 12) != get_le32(buf + len - 4))
        return bad(ret, len - 4, "reparse CRC-32 mismatch");
    ret->format = get_le16(buf + 8);
    switch (ret->format) {
    case WINREPARSE_SHORT:
        return parse_short(buf, len, ret);
    case WINREPARSE_LONG:
        return parse_long(buf, len, ret);
    case WINREPARSE_BAG:
        return parse_bag(buf, len, ret);
    default:
        return bad(ret, 8, "unknown dedup reparse format");
    }
}

void winreparse_free(winreparse *r)
{
    free(r->refs);
    r->refs = NULL;
    r->nrefs = 0;
}

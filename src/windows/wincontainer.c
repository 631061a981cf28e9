/*
 * wincontainer.c — parsers of the records of a Windows Server Data Deduplication chunk-store container
 * (see wincontainer.h). Facts from the team's WINDOWS-DEDUP.md ("Records in a container") and
 * doc/windows-format-notes.md; marks: [checked] seen in the bytes of the public sample container (real
 * Windows), [source] read in a public reader (the ntfs-3g dedup plugin), [inferred] our own reading.
 * Written from those notes, not from the test tool's writer (tests/tools/windedup-fmt.c): reader and
 * writer agree only through the format.
 *
 * - Cthr [checked]: "Cthr", version 01 04 04 01, u64 USN at 0x08, u32 id, generation, chunk count, next
 *   local id at 0x10-0x1f, u32 valid length at 0x20, FILETIME at 0x28, u32 Rrtl offset at 0x30, CRC-64 of
 *   0x00-0x37 at 0x38. A copy is valid when magic, version and CRC-64 are; nothing else is required of it.
 * - Rrtl [checked]: "Rrtl", version 01 03 03 01, u32 entry count at 0x08, CRC-64 of 0x00-0x17 at 0x18,
 *   entries {u32 seq, u32 offset} from 0x20; the count must fit the page ((0x1000 - 0x20) / 8 = 508).
 *   0x0c (8 in the sample, perhaps the entry size) and 0x10 (all-ones) are not checked: their meaning
 *   is unknown and a reader checks the record an entry leads to anyway. The entries are searched
 *   linearly, so their order does not matter (the plugin binary-searches them [source]).
 * - Ckhr [checked for data and padding]: "Ckhr", version 01 03 03 01, u32 seq at 0x08, u32 payload size
 *   at 0x0c, u16 type at 0x10 (1 data, 2 stream map, 4 padding; any other is refused, never guessed),
 *   u16 at 0x12 = header size - 0x30 (0x28 data, 0x38 stream [source: the plugin's structure comment],
 *   0 padding), the header's CRC-64 in its last 8 bytes over the bytes before them. Data (0x58 bytes):
 *   compression format at 0x20 and again at 0x24 (both copies must agree and be 0 or 2; 1 = LZNT1 and
 *   3 = LZ77+Huffman are named in the error), 32-byte digest at 0x28, payload CRC-64 at 0x48, header
 *   CRC-64 at 0x50. Padding (0x30 bytes): header CRC-64 at 0x28, no payload CRC; its all-ones marker at
 *   0x20, sequence number 0 and zero payload [checked] are not required (nothing reads them).
 *   Stream map (0x68 bytes): 16-byte digest at 0x38 [source]; payload CRC-64 at 0x58 and header CRC-64
 *   of 0x00-0x5f at 0x60 are [inferred] by analogy with the data header (no public reader checks them,
 *   and no real stream-map record is public): a volume whose stream maps fail only these two checks
 *   would show that the inference is wrong. Bytes 0x20-0x37 of a stream header are not read.
 * - Smap [source]: "Smap" + 4 bytes (not checked), then 64-byte entries {u32 seq, u32 container, u32
 *   offset, u32 generation, u64 cumulative end, 32-byte digest, u32 stored size, u32 (not checked)}.
 * - Chunk digest [checked]: the first 32 bytes of SHA-512 of the uncompressed chunk.
 *
 * Every parser is a pure function of its buffer, safe from any thread; only win_smap_parse allocates.
 */
#include "config.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "windows/wincontainer.h"
#include "windows/wincrc.h"

#define CTHR_LEN 0x40
#define CTHR_CRC 0x38
#define RRTL_HEAD 0x20
#define RRTL_CRC 0x18
#define RRTL_MAX ((WIN_PAGE - RRTL_HEAD) / 8)
#define CKHR_COMMON 0x14 /* magic, version, seq, payload size, type: enough to know the header size */

static const uint8_t cthr_version[4] = { 1, 4, 4, 1 };
static const uint8_t rrtl_version[4] = { 1, 3, 3, 1 };
static const uint8_t ckhr_version[4] = { 1, 3, 3, 1 };

static int fail(win_why *why, int code, size_t at, const char *msg)
{
    if (why) {
        why->why = msg;
        why->at = at;
    }
    return code;
}

/* Checks the Cthr copy at buf[0..CTHR_LEN); on failure *msg (for win_cthr_parse, naming the first copy),
 * *copy_msg (for one copy alone) and *at (relative to buf) say why. */
static bool cthr_valid(const uint8_t *h, const char **msg, const char **copy_msg, size_t *at)
{
    if (memcmp(h, "Cthr", 4) != 0) {
        *msg = "no valid Cthr copy (the first has no Cthr magic)";
        *copy_msg = "no Cthr magic";
        *at = 0;
    } else if (memcmp(h + 4, cthr_version, 4) != 0) {
        *msg = "no valid Cthr copy (the first has an unknown version, not 01 04 04 01)";
        *copy_msg = "unknown Cthr version (not 01 04 04 01)";
        *at = 4;
    } else if (wincrc_64(h, CTHR_CRC) != get_le64(h + CTHR_CRC)) {
        *msg = "no valid Cthr copy (the first fails its CRC-64)";
        *copy_msg = "Cthr CRC-64 mismatch";
        *at = CTHR_CRC;
    } else {
        return true;
    }
    return false;
}

static win_cthr cthr_fields(const uint8_t *h, unsigned copy)
{
    return (win_cthr){
        .usn = get_le64(h + 0x08),
        .id = get_le32(h + 0x10),
        .generation = get_le32(h + 0x14),
        .chunks = get_le32(h + 0x18),
        .next_seq = get_le32(h + 0x1c),
        .valid_len = get_le32(h + 0x20),
        .filetime = get_le64(h + 0x28),
        .rrtl_offset = get_le32(h + 0x30),
        .copy = copy,
    };
}

int win_cthr_parse_copy(const uint8_t *buf, size_t len, win_cthr *ret, win_why *why)
{
    if (len < CTHR_LEN)
        return fail(why, RH_ECORRUPT, len, "Cthr copy cut short");
    const char *msg, *copy_msg;
    size_t at;
    if (!cthr_valid(buf, &msg, &copy_msg, &at))
        return fail(why, at == CTHR_CRC ? RH_ECHECKSUM : RH_ECORRUPT, at, copy_msg);
    *ret = cthr_fields(buf, 0);
    return 0;
}

int win_cthr_parse(const uint8_t *buf, size_t len, win_cthr *ret, win_why *why)
{
    if (len < WIN_CTHR_COPIES * WIN_PAGE)
        return fail(why, RH_ECORRUPT, len, "container shorter than its three Cthr pages");
    const char *first_msg = NULL;
    size_t first_at = 0;
    int best = -1;
    uint64_t best_usn = 0;
    for (unsigned i = 0; i < WIN_CTHR_COPIES; i++) {
        const uint8_t *h = buf + (size_t)i * WIN_PAGE;
        const char *msg, *copy_msg;
        size_t at;
        if (!cthr_valid(h, &msg, &copy_msg, &at)) {
            if (i == 0) {
                first_msg = msg;
                first_at = at;
            }
            continue;
        }
        uint64_t usn = get_le64(h + 0x08);
        if (best < 0 || usn > best_usn) {
            best = (int)i;
            best_usn = usn;
        }
    }
    if (best < 0)
        return fail(why, RH_ECORRUPT, first_at, first_msg);
    *ret = cthr_fields(buf + (size_t)best * WIN_PAGE, (unsigned)best);
    return 0;
}

int win_rrtl_parse(const uint8_t *buf, size_t len, win_rrtl *ret, win_why *why)
{
    if (len < WIN_PAGE)
        return fail(why, RH_ECORRUPT, len, "Rrtl page cut short");
    if (memcmp(buf, "Rrtl", 4) != 0)
        return fail(why, RH_ECORRUPT, 0, "no Rrtl magic");
    if (memcmp(buf + 4, rrtl_version, 4) != 0)
        return fail(why, RH_ECORRUPT, 4, "unknown Rrtl version (not 01 03 03 01)");
    uint32_t n = get_le32(buf + 0x08);
    if (n > RRTL_MAX)
        return fail(why, RH_ECORRUPT, 0x08, "Rrtl entry count larger than its page holds");
    if (wincrc_64(buf, RRTL_CRC) != get_le64(buf + RRTL_CRC))
        return fail(why, RH_ECHECKSUM, RRTL_CRC, "Rrtl header CRC-64 mismatch");
    *ret = (win_rrtl){ .entries = buf + RRTL_HEAD, .n = n };
    return 0;
}

bool win_rrtl_find(const win_rrtl *t, uint32_t seq, uint32_t *ret_offset)
{
    for (uint32_t i = 0; i < t->n; i++) {
        const uint8_t *e = t->entries + 8 * (size_t)i;
        if (get_le32(e) == seq) {
            *ret_offset = get_le32(e + 4);
            return true;
        }
    }
    return false;
}

/* The header size of a record type, or 0 for a type we do not know. */
static uint32_t header_len_of(uint16_t type)
{
    switch (type) {
    case WIN_REC_DATA:
        return WIN_DATA_HEADER;
    case WIN_REC_STREAM:
        return WIN_STREAM_HEADER;
    case WIN_REC_PAD:
        return WIN_PAD_HEADER;
    default:
        return 0;
    }
}

/* A data chunk's compression fields at 0x20 and 0x24: both the same, and a format we decode. */
static int check_compression(const uint8_t *buf, uint32_t *ret, win_why *why)
{
    uint32_t c = get_le32(buf + 0x20);
    if (get_le32(buf + 0x24) != c)
        return fail(why, RH_ECORRUPT, 0x24, "data chunk's two compression fields differ");
    switch (c) {
    case WIN_COMP_NONE:
    case WIN_COMP_LZ77:
        *ret = c;
        return 0;
    case 1:
        return fail(why, RH_ECORRUPT, 0x20, "data chunk compressed with LZNT1 (format 1): not supported");
    case 3:
        return fail(why, RH_ECORRUPT, 0x20, "data chunk compressed with LZ77+Huffman (format 3): not supported");
    default:
        return fail(why, RH_ECORRUPT, 0x20, "data chunk of an unknown compression format");
    }
}

int win_record_parse(const uint8_t *buf, size_t avail, win_record *ret, win_why *why)
{
    if (avail < CKHR_COMMON)
        return fail(why, RH_ECORRUPT, avail, "Ckhr record cut short in its header");
    if (memcmp(buf, "Ckhr", 4) != 0)
        return fail(why, RH_ECORRUPT, 0, "no Ckhr magic");
    if (memcmp(buf + 4, ckhr_version, 4) != 0)
        return fail(why, RH_ECORRUPT, 4, "unknown Ckhr version (not 01 03 03 01)");
    uint16_t type = get_le16(buf + 0x10);
    uint32_t hl = header_len_of(type);
    if (hl == 0)
        return fail(why, RH_ECORRUPT, 0x10, "unknown Ckhr record type");
    if (get_le16(buf + 0x12) != hl - 0x30)
        return fail(why, RH_ECORRUPT, 0x12, "Ckhr header-size field does not fit the record type");
    if (avail < hl)
        return fail(why, RH_ECORRUPT, avail, "Ckhr record cut short in its header");
    win_record r = { .type = type, .seq = get_le32(buf + 0x08), .header_len = hl,
                     .payload_len = get_le32(buf + 0x0c) };
    if (type == WIN_REC_DATA) {
        int rc = check_compression(buf, &r.compression, why);
        if (rc < 0)
            return rc;
        memcpy(r.digest, buf + 0x28, WIN_DIGEST_LEN);
    } else if (type == WIN_REC_STREAM) {
        memcpy(r.digest, buf + 0x38, 16);
    }
    if (type != WIN_REC_PAD)
        r.payload_crc = get_le64(buf + hl - 16); /* data 0x48 [checked], stream map 0x58 [inferred] */
    if (wincrc_64(buf, hl - 8) != get_le64(buf + hl - 8))
        return fail(why, RH_ECHECKSUM, hl - 8, "Ckhr header CRC-64 mismatch");
    *ret = r;
    return 0;
}

int win_record_check_payload(const win_record *rec, const uint8_t *buf, size_t avail, win_why *why)
{
    if (avail < rec->header_len || avail - rec->header_len < rec->payload_len)
        return fail(why, RH_ECORRUPT, avail, "Ckhr record cut short in its payload");
    if (rec->type == WIN_REC_PAD)
        return 0; /* padding has no payload CRC */
    if (wincrc_64(buf + rec->header_len, rec->payload_len) != rec->payload_crc)
        return fail(why, RH_ECHECKSUM, rec->header_len - 16, "Ckhr payload CRC-64 mismatch");
    return 0;
}

int win_smap_parse(const uint8_t *buf, size_t len, uint64_t start, win_smap_entry **ret, size_t *ret_n,
                   win_why *why)
{
    if (len < WIN_SMAP_HEADER)
        return fail(why, RH_ECORRUPT, len, "Smap cut short in its header");
    if (memcmp(buf, "Smap", 4) != 0)
        return fail(why, RH_ECORRUPT, 0, "no Smap magic");
    if (len == WIN_SMAP_HEADER)
        return fail(why, RH_ECORRUPT, len, "Smap without entries");
    size_t tail = (len - WIN_SMAP_HEADER) % WIN_SMAP_ENTRY;
    if (tail != 0)
        return fail(why, RH_ECORRUPT, len - tail, "Smap length is not 8 + 64 k bytes (a cut entry)");
    size_t n = (len - WIN_SMAP_HEADER) / WIN_SMAP_ENTRY;
    uint64_t prev = start;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = buf + WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        size_t at = WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        uint64_t end = get_le64(e + 0x10);
        if (end <= prev)
            return fail(why, RH_ECORRUPT, at + 0x10, "Smap end offsets do not increase");
        if (end - prev > WIN_CHUNK_MAX)
            return fail(why, RH_ECORRUPT, at + 0x10, "Smap chunk larger than 128 KiB");
        if (get_le32(e + 0x38) == 0)
            return fail(why, RH_ECORRUPT, at + 0x38, "Smap chunk with a stored size of 0");
        prev = end;
    }
    win_smap_entry *v = mem_calloc(n, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = buf + WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        v[i] = (win_smap_entry){
            .seq = get_le32(e),
            .container = get_le32(e + 0x04),
            .offset = get_le32(e + 0x08),
            .generation = get_le32(e + 0x0c),
            .end = get_le64(e + 0x10),
            .stored_len = get_le32(e + 0x38),
        };
        memcpy(v[i].digest, e + 0x18, WIN_DIGEST_LEN);
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static const EVP_MD *sha512_md; /* NULL when OpenSSL has no SHA-512: every digest then fails */
static pthread_once_t sha512_once = PTHREAD_ONCE_INIT;

/* Fetched once: an implicit fetch per call costs more than hashing a small chunk (as in hash.c). */
static void sha512_init(void) { sha512_md = EVP_MD_fetch(NULL, "SHA512", NULL); }

int win_digest(const void *data, size_t len, uint8_t out[WIN_DIGEST_LEN])
{
    pthread_once(&sha512_once, sha512_init);
    if (!sha512_md)
        return -ENOTSUP;
    EVP_MD_CTX *ctx = mem_fail_here() ? NULL : EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_DigestInit_ex(ctx, sha512_md, NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -EIO;
    memcpy(out, md, WIN_DIGEST_LEN);
    return 0;
}

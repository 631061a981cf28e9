/*
 * wincontainer.h — the records of a Windows Server dedup chunk-store container (`<id>.<gen>.ccc` under
 * `{GUID}.ddp/Data` or `Stream`): the container header `Cthr` (three copies at 0, 0x1000, 0x2000), the
 * redirection table `Rrtl` (at 0x3000), `Ckhr` records from 0x5000 on (data chunks, stream maps,
 * padding) and the `Smap` payload of a stream map. Pure parsers of byte buffers: they read nothing
 * outside the buffer they are given, allocate only where said, and on bad bytes return RH_ECORRUPT (or,
 * for a record or an Rrtl whose other fields are right, RH_ECHECKSUM for a CRC-64 that does not match)
 * with a static `why` and the offset of the offending field within the buffer (`why` may be NULL). Outputs
 * are untouched on failure. See ../../doc/windows-format-notes.md for every field and how sure it is, and
 * wincontainer.c's head comment for what each parser checks and what it leaves alone.
 */
#ifndef RH_WINDOWS_WINCONTAINER_H
#define RH_WINDOWS_WINCONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIN_PAGE 0x1000u
#define WIN_CTHR_COPIES 3        /* at 0, 0x1000, 0x2000 */
#define WIN_RRTL_OFFSET 0x3000u
#define WIN_FIRST_RECORD 0x5000u
#define WIN_DIGEST_LEN 32        /* SHA-512 truncated to 32 bytes, of the uncompressed chunk */
#define WIN_DATA_HEADER 0x58u    /* Ckhr header of a data chunk */
#define WIN_STREAM_HEADER 0x68u  /* Ckhr header of a stream map */
#define WIN_PAD_HEADER 0x30u     /* Ckhr header of a padding record */
#define WIN_RECORD_HEADER_MAX WIN_STREAM_HEADER
#define WIN_SMAP_HEADER 8u       /* "Smap" + 4 bytes */
#define WIN_SMAP_ENTRY 64u
#define WIN_CHUNK_MAX (128u << 10) /* no uncompressed chunk is larger [source] */

/* Why a parser refused: a static string and the offset (within the buffer given) of the field. */
typedef struct win_why {
    const char *why;
    size_t at;
} win_why;

/* The container header: the valid Cthr copy with the highest USN. */
typedef struct win_cthr {
    uint64_t usn;
    uint32_t id, generation;
    uint32_t chunks;     /* records (not padding) */
    uint32_t next_seq;   /* the next local id (sequence number) */
    uint32_t valid_len;  /* bytes of the container in use: records end before it */
    uint64_t filetime;   /* last append */
    uint32_t rrtl_offset;
    unsigned copy;       /* which copy was taken: 0, 1 or 2 */
} win_cthr;

/*
 * Parses the header pages buf[0..len) (len >= 3 * WIN_PAGE: the three copies): takes the copies whose
 * magic, version and CRC-64 are right and of those the one with the highest USN (the first of equals).
 * RH_ECORRUPT when no copy is valid, also when they fail by their CRC-64 only; `why` then names the
 * fault of the copy at 0, and `at` its offset.
 */
int win_cthr_parse(const uint8_t *buf, size_t len, win_cthr *ret, win_why *why);
/* Parses the one Cthr copy at buf[0..len) (len >= 0x40): magic, version, CRC-64 (RH_ECHECKSUM when only
 * it is wrong), for a caller that reports each copy; ret->copy is 0. */
int win_cthr_parse_copy(const uint8_t *buf, size_t len, win_cthr *ret, win_why *why);

/* The redirection table of one page: entries {seq, offset}, in the page (not copied). */
typedef struct win_rrtl {
    const uint8_t *entries; /* n entries of 8 bytes: u32 seq, u32 offset */
    uint32_t n;
} win_rrtl;

/* Parses the Rrtl page buf[0..len) (len >= WIN_PAGE): magic, version, entry count (at most
 * (WIN_PAGE - 0x20) / 8, what the page holds), CRC-64 (RH_ECHECKSUM). */
int win_rrtl_parse(const uint8_t *buf, size_t len, win_rrtl *ret, win_why *why);
/* The offset the table gives for sequence number seq: true and *ret_offset, or false (not moved). The
 * search is linear: it does not rely on the entries being sorted. */
bool win_rrtl_find(const win_rrtl *t, uint32_t seq, uint32_t *ret_offset);

enum win_record_type { WIN_REC_DATA = 1, WIN_REC_STREAM = 2, WIN_REC_PAD = 4 };
enum win_compression { WIN_COMP_NONE = 0, WIN_COMP_LZ77 = 2 };

/* One Ckhr record. */
typedef struct win_record {
    uint16_t type;          /* enum win_record_type */
    uint32_t seq;           /* sequence number (0 for padding) */
    uint32_t header_len;    /* WIN_DATA_HEADER, WIN_STREAM_HEADER or WIN_PAD_HEADER */
    uint32_t payload_len;   /* stored bytes after the header */
    uint32_t compression;   /* data: enum win_compression; 0 for the others */
    uint8_t digest[WIN_DIGEST_LEN]; /* data: 32 bytes; stream map: 16 bytes, then zeros; padding: zeros */
    uint64_t payload_crc;   /* the payload's CRC-64 as stored (data, stream map); 0 for padding */
} win_record;

/*
 * Parses the Ckhr header at buf[0] (avail bytes from there, at least the type's header size): magic,
 * version, a known type, the header-size field (0x12) equal to the type's header size - 0x30, the
 * header's CRC-64 (in its last 8 bytes; for a stream map that place is inferred), a known compression (a
 * data chunk's two copies of the field agree and name 0 or 2; anything else is RH_ECORRUPT naming the
 * code, never a guess), and payload_len <= avail - header_len is NOT required (the caller may have read
 * the header only). RH_ECHECKSUM when only the CRC-64 is wrong.
 */
int win_record_parse(const uint8_t *buf, size_t avail, win_record *ret, win_why *why);
/* Checks the payload of a parsed record (buf as given to win_record_parse, now with at least
 * header_len + payload_len bytes, else RH_ECORRUPT): its CRC-64 where the format has one (data at 0x48,
 * stream map at 0x58 [inferred]; padding has none). RH_ECHECKSUM if it differs. A caller that reads
 * the payload in pieces compares rec->payload_crc with wincrc_64_more over them instead. */
int win_record_check_payload(const win_record *rec, const uint8_t *buf, size_t avail, win_why *why);

/* One entry of a stream map: a chunk of the file, in file order. */
typedef struct win_smap_entry {
    uint32_t seq;        /* the chunk's sequence number in its data container */
    uint32_t container;  /* data container id */
    uint32_t offset;     /* of the chunk's Ckhr in that container (may be stale: see the Rrtl) */
    uint32_t generation; /* the data container's generation */
    uint64_t end;        /* cumulative uncompressed end offset in the file */
    uint8_t digest[WIN_DIGEST_LEN];
    uint32_t stored_len; /* payload bytes as stored */
} win_smap_entry;

/*
 * Parses the Smap payload buf[0..len) into *ret (malloc'd, *ret_n entries; free()): magic, a length of
 * 8 + 64 k bytes, k >= 1, ends strictly increasing from `start` (the file offset where this map begins:
 * 0, or a 0x0102 part's begin), each chunk at most WIN_CHUNK_MAX bytes uncompressed, a stored size of at
 * least 1 and, for a chunk stored uncompressed (stored == length), nothing else to check. -ENOMEM.
 */
int win_smap_parse(const uint8_t *buf, size_t len, uint64_t start, win_smap_entry **ret, size_t *ret_n,
                   win_why *why);

/* The chunk digest: the first 32 bytes of SHA-512 (OpenSSL) of the uncompressed data. 0, or -ENOMEM
 * (no digest context), -ENOTSUP (no SHA-512 in OpenSSL) or -EIO (OpenSSL failed). Thread-safe. */
int win_digest(const void *data, size_t len, uint8_t out[WIN_DIGEST_LEN]);

#endif

/*
 * winreparse.h — the Windows dedup reparse point (tag 0x80000013) as ntfs-3g returns it in the xattr
 * system.ntfs_reparse_data: which chunk store holds the file, and where its stream map(s) are.
 * See winreparse.c for the layouts and what is known of them.
 */
#ifndef RH_WINDOWS_WINREPARSE_H
#define RH_WINDOWS_WINREPARSE_H

#include <stddef.h>
#include <stdint.h>

#define WINREPARSE_TAG 0x80000013u

enum winreparse_format {
    WINREPARSE_SHORT = 0x0201, /* one stream map, 32-byte digest, file size at 0x10 */
    WINREPARSE_LONG = 0x0102,  /* stream map in parts, 16-byte digests, size = last part's end */
    WINREPARSE_BAG = 0x0103,   /* "FeRp" property bag, one stream map, 16-byte digest */
};

/* One stream-map reference. */
typedef struct winreparse_ref {
    uint32_t seq;        /* stream-map sequence number */
    uint32_t container;  /* Stream container id */
    uint32_t offset;     /* offset of the stream map's record in that container */
    uint32_t smap_size;  /* stream-map size (8 + 64 x chunks) */
    uint32_t generation; /* container generation: the bag only, else 0 */
    uint8_t digest[32];  /* as the format gives it: digest_len bytes, the rest zero */
    uint8_t digest_len;  /* 32 (0x0201) or 16 (0x0102, bag) */
    uint64_t begin, end; /* the part's file range [begin, end): 0x0102; else [0, size) */
} winreparse_ref;

typedef struct winreparse {
    uint16_t format;   /* enum winreparse_format */
    uint8_t guid[16];  /* chunk-store GUID, bytes as stored */
    int has_size;      /* the format carries the file size */
    uint64_t size;     /* file size (0x0201: 0x10; bag: 0x84; 0x0102: last part's end) */
    size_t nrefs;      /* >= 1 */
    winreparse_ref *refs; /* malloc'd: winreparse_free */
    /* On RH_ECORRUPT: why, and at which buffer offset. Static strings. */
    const char *why;
    size_t why_at;
} winreparse;

/*
 * Parses buf[0..len) (the whole xattr value). 0 and *ret filled (winreparse_free it), or
 * RH_ECORRUPT with ret->why / ret->why_at set (nothing to free), or -ENOMEM. Reads nothing outside
 * buf for any input.
 */
int winreparse_parse(const uint8_t *buf, size_t len, winreparse *ret);
void winreparse_free(winreparse *r);

#endif

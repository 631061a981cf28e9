/*
 * format.h — the format seam beneath every reader: how a store's on-disk format names its containers,
 * frames and checks a record, names a chunk by its digest, decodes a stream map and finds a record that
 * moved. The readers above store/ (read/reader.c, read/cache.c through it, the restore engine in
 * restore/) reach records only through these calls, never through container.c or a codec directly, so a
 * second format plugs in here without a change above: ours (store_format_ours, container.c's records)
 * and Windows Server dedup chunk stores (windows/winstore.c).
 *
 * A record is located by an index_loc (container id, offset of the record, stored payload length; for
 * formats that number their records, a sequence number). It spans store_record_span bytes from its
 * offset: the format's header for that kind of container, then the payload.
 */
#ifndef RH_STORE_FORMAT_H
#define RH_STORE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/index.h"
#include "store/container.h"
#include "store/store.h"
#include "store/streammap.h"

/* One stream map of a stub. */
typedef struct store_stub_part {
    index_loc stream;         /* the stream map's record; raw_len is the map's decoded length */
    uint64_t begin;           /* the file offset where the map's first chunk begins */
    uint8_t digest[HASH_LEN]; /* the stream map's digest: its first digest_known bytes */
    uint8_t digest_known;
} store_stub_part;

/*
 * What a stub (a file whose data lives in the store) says of itself: the stub half of a format. Its
 * data is described by one stream map (ours, most Windows files) or by several that cover consecutive
 * ranges (Windows reparse format 0x0102): part(i) for i < nparts, in file order.
 */
typedef struct store_stub {
    uint64_t size;           /* the file's size */
    size_t nparts;           /* >= 1 */
    store_stub_part one;     /* the part when there is one */
    store_stub_part *more;   /* malloc'd, when there are several (store_stub_free) */
} store_stub;

static inline const store_stub_part *store_stub_part_at(const store_stub *st, size_t i)
{
    return st->more ? &st->more[i] : &st->one;
}
void store_stub_free(store_stub *st);
/* Joins the maps of a stub's parts, in order, into a new map of the whole file (a part's map begins at
 * its part's begin and its `size` is where it ends). RH_ECORRUPT when a part does not begin where the
 * previous one ended or the last does not end at `size`; -ENOMEM. */
int store_stub_join(const streammap *const *parts, size_t n, uint64_t size, streammap **ret);

struct store_format {
    const char *name; /* for messages: "rehydrate", "windows" */
    /* Whether chunks are found through the store's index (ours) or only where stream maps say. */
    bool indexed;
    /* Bytes that precede the payload of a record in a container of kind CONTAINER_DATA / _STREAM. */
    uint32_t data_header, stream_header;
    /* The store path of container `id` of `kind` into out. A container the store does not hold gets a
     * path that reads fail on with -ENOENT (RH_ENOCONTAINER); NULL only for an unknown kind. */
    const char *(*container_path)(rh_store *s, uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX]);
    /*
     * Checks the record whose header starts at rec[0] (avail bytes from there, the record's offset in
     * its container `offset`) found in a container of `kind`, as container_parse_record does: *ret and
     * *ret_payload on success; RH_ECHECKSUM or RH_ECORRUPT. A format whose records do not carry their
     * decoded length leaves ret->raw_len 0: the stream map's length is then the only one.
     */
    int (*parse_record)(uint8_t kind, const uint8_t *rec, size_t avail, uint64_t offset, container_record *ret,
                        const uint8_t **ret_payload);
    /* The digest that names a chunk (HASH_LEN bytes): SHA-256 in ours, SHA-512's first 32 bytes in
     * Windows's. */
    int (*digest)(const void *data, size_t len, uint8_t out[HASH_LEN]);
    /* Whether a stream map record's digest is digest() of the map's bytes (readers then check it). */
    bool stream_digest_checked;
    /* A stream map's decoded bytes into a map (with locations when the format's maps carry them) whose
     * first chunk begins at file offset `start` (a part of a stub; 0 for a whole file's map). */
    int (*decode_streammap)(rh_store *s, const uint8_t *raw, size_t len, uint64_t start, streammap **ret);
    /*
     * Optional (NULL: records never move). The record of sequence number `seq` in container `id` of
     * `kind` was not at the offset its reference gave: where the container says it is now (Windows's
     * redirection table). 0 and *ret_offset, RH_ECORRUPT when the container does not know it, or the
     * read's error. Reads through the store's callbacks, each container read preceded by its preview.
     */
    int (*relocate)(rh_store *s, uint8_t kind, uint32_t id, uint32_t seq, uint64_t *ret_offset);
    /*
     * The stub half (the restore engine): the xattr in which a stub keeps its reference, the largest
     * value it can have, and how the value decodes. RH_ECORRUPT for a damaged value, RH_EWRONGSTORE for
     * a stub of another store, RH_ENOTSUP for a form of reference this format cannot restore.
     */
    const char *stub_xattr;
    size_t stub_max;
    int (*decode_stub)(rh_store *s, const uint8_t *raw, size_t len, store_stub *ret);
    /* Optional: frees what the format keeps in s->fmt_state at rh_store_close. */
    void (*close)(rh_store *s);
};

/* Our format: container.c's records, SHA-256, streammap_decode. */
extern const store_format store_format_ours;

/* ---- what readers call (s->fmt's, in one place) ---- */

const char *store_container_path(rh_store *s, uint8_t kind, uint32_t id, char out[CONTAINER_PATH_MAX]);
/* Bytes from a record's offset to the end of its payload of stored_len bytes. */
static inline size_t store_record_span(const rh_store *s, uint8_t kind, uint32_t stored_len)
{
    return (kind == CONTAINER_STREAM ? s->fmt->stream_header : s->fmt->data_header) + (size_t)stored_len;
}
int store_parse_record(rh_store *s, uint8_t kind, const uint8_t *rec, size_t avail, uint64_t offset,
                       container_record *ret, const uint8_t **ret_payload);
/*
 * Whether a parsed record is the one `loc` of `kind` names: its type for the kind, its stored length,
 * its sequence number, and the first `digest_len` bytes of its digest. False: the reference is stale
 * (the record moved: see store_format.relocate) or the container is damaged.
 */
bool store_record_matches(rh_store *s, uint8_t kind, const container_record *got, const index_loc *loc,
                          const uint8_t *digest, size_t digest_len);
int store_digest(rh_store *s, const void *data, size_t len, uint8_t out[HASH_LEN]);
/*
 * Reads the record that `loc` names in a container of `kind` into *buf (grown to fit; *cap its size),
 * checks it, and points *ret_payload into *buf. A record that is not the one named (store_record_matches,
 * with the first digest_len bytes of `digest`) is looked for where the format says it moved, once.
 * RH_ENOCONTAINER for a missing container.
 */
int store_read_record(rh_store *s, uint8_t kind, const index_loc *loc, const uint8_t *digest, size_t digest_len,
                      uint8_t **buf, size_t *cap, container_record *ret, const uint8_t **ret_payload);
/*
 * Whether a record that was not the one named (r: what parsing it gave, or 0 when it parsed but did not
 * match) may have moved, so that the format's relocate is worth asking. A record whose checksum fails is
 * damaged where it is: what a move leaves behind is a valid record (padding, or another chunk).
 */
static inline bool store_may_have_moved(const rh_store *s, int r)
{
    return s->fmt->relocate && r != RH_ECHECKSUM;
}
/* A record's payload decoded into out (raw_len bytes): copied when stored raw, else decompressed by the
 * record's codec. RH_ECORRUPT when a raw payload's length is not raw_len. */
int store_decode_payload(const container_record *rec, const uint8_t *payload, uint8_t *out, size_t raw_len);

#endif

/*
 * windedup-fmt.h — the byte layouts windedup-mk writes: chunk-store containers (Cthr, Rrtl, Ckhr
 * records) and the three reparse formats of tag 0x80000013. Every offset here is one of
 * WINDOWS-DEDUP.md or of doc/windows-format-notes.md, which also lists the fields we leave zero.
 *
 * A container is written front to back by one thread: records are appended 8-byte aligned after
 * 0x5000, append sessions are closed by a padding record on a 4 KiB boundary, and the header pages
 * (three Cthr copies, two Rrtl copies) are written when the container is closed.
 */
#ifndef RH_TESTS_WINDEDUP_FMT_H
#define RH_TESTS_WINDEDUP_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WD_TAG_DEDUP 0x80000013u
#define WD_DIGEST_LEN 32
#define WD_FIRST_RECORD 0x5000u
#define WD_DATA_HEADER 0x58u
#define WD_STREAM_HEADER 0x68u
#define WD_PAD_HEADER 0x30u
#define WD_SMAP_ENTRY 64u
#define WD_COMPRESS_NONE 0u
#define WD_COMPRESS_LZ77 2u
#define WD_RRTL_MAX ((0x1000u - 0x20u) / 8u) /* entries in one 4 KiB Rrtl page */
#define WD_REPARSE_MAX 16384u                /* NTFS's limit on a reparse buffer */

enum wd_kind { WD_DATA, WD_STREAM };

/* A container being written. Fields are private to windedup-fmt.c except where noted. */
struct wd_container {
    enum wd_kind kind;
    uint32_t id, generation; /* read-only for callers */
    int fd;
    char *path;
    uint64_t end;           /* where the next record goes (8-byte aligned) */
    uint32_t chunks;        /* data or stream-map records, padding not counted */
    uint32_t next_seq;      /* the next record's sequence number ("next local id") */
    uint64_t usn;           /* append sessions closed so far */
    bool session_open;      /* a record was appended since the last padding */
    uint64_t filetime;      /* FILETIME of the current session */
    uint8_t first_cthr[0x40]; /* the Cthr as it was after the first session (the stale copy at 0) */
    uint64_t first_end;     /* valid data length after the first session */
    uint32_t rrtl_n;
    uint32_t rrtl_seq[WD_RRTL_MAX], rrtl_off[WD_RRTL_MAX];
    uint8_t *moved;         /* a record written at close, after its old place became padding */
    size_t moved_len;
    uint32_t moved_seq;
    uint64_t moved_from;    /* the moved record's first place, padding in this generation */
};

/* Opens (creates, O_EXCL) dir/<id>.<generation>.ccc. Returns 0 or a negative errno. */
int wd_container_open(struct wd_container *c, const char *dir, enum wd_kind kind, uint32_t id,
                      uint32_t generation, uint64_t filetime);

/* Takes the next sequence number for a record about to be built. */
uint32_t wd_next_seq(struct wd_container *c);

/*
 * Appends a complete record (header + payload, len bytes). With `move`, the place it would take is
 * filled by a padding record of the same length instead and the record itself is appended when the
 * container is closed, with an Rrtl entry {seq, new offset}: whoever keeps *ret_offset then holds a
 * stale offset, as on a volume after Windows moved a chunk. Returns 0 or a negative errno.
 */
int wd_append(struct wd_container *c, const uint8_t *rec, size_t len, uint32_t seq, bool move,
              uint32_t *ret_offset);

/* Closes the current append session with a padding record up to a 4 KiB boundary. */
int wd_close_session(struct wd_container *c, uint64_t next_filetime);

/* Writes the deferred moved record, closes the session, writes the Cthr and Rrtl pages, closes the
 * file. The container's memory stays until wd_container_release (wd_write_older_generation needs it). */
int wd_container_close(struct wd_container *c);
void wd_container_release(struct wd_container *c);

/*
 * Writes an older, stale generation <id>.<generation - 1>.ccc beside a closed container: its first
 * append session only. With `shift`, every record sits 4 KiB later than in the current generation
 * (behind one extra padding record), so an offset meant for the current generation lands on no
 * record there; without, the records keep their offsets (the stale copy is a prefix). A record moved
 * in the current generation is at its first place there, as before the move.
 */
int wd_write_older_generation(const struct wd_container *c, const char *dir, bool shift);

/* Builds a data chunk header (0x58 bytes) for a payload already stored in `payload`. */
void wd_ckhr_data(uint8_t h[WD_DATA_HEADER], uint32_t seq, const void *payload, uint32_t stored_len,
                  uint32_t compression, const uint8_t digest[WD_DIGEST_LEN]);
/* Builds a stream-map chunk header (0x68 bytes); digest16 is the stream digest's first 16 bytes. */
void wd_ckhr_stream(uint8_t h[WD_STREAM_HEADER], uint32_t seq, const void *payload, uint32_t len,
                    const uint8_t digest16[16]);

/* One Smap entry (64 bytes) at out. */
void wd_smap_entry(uint8_t out[WD_SMAP_ENTRY], uint32_t seq, uint32_t container, uint32_t offset,
                   uint32_t generation, uint64_t end, const uint8_t digest[WD_DIGEST_LEN], uint32_t stored);

/* A reference from a reparse point to one stream map (a "part" of the file). */
struct wd_streamref {
    uint32_t seq, container, generation, offset, smap_size;
    uint8_t digest[WD_DIGEST_LEN];
    uint64_t begin, end; /* the file range the stream map covers */
};

/* The three reparse formats. Each writes the whole buffer as ntfs-3g returns it in
 * system.ntfs_reparse_data and returns its length, or 0 when it would not fit out_cap. */
size_t wd_reparse_short(uint8_t *out, size_t out_cap, const uint8_t guid[16], uint64_t size,
                        uint64_t filetime, const struct wd_streamref *ref);
size_t wd_reparse_long(uint8_t *out, size_t out_cap, const uint8_t guid[16], const struct wd_streamref *refs,
                       size_t n);
size_t wd_reparse_bag(uint8_t *out, size_t out_cap, const uint8_t guid[16], uint64_t size, uint64_t filetime,
                      const struct wd_streamref *ref);


#endif

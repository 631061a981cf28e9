/*
 * winverify.h — a full check of a Windows Server dedup chunk store ({GUID}.ddp: Data/ and Stream/ holding
 * <id>.<generation>.ccc containers), and, given the volume whose stubs point into it, of which files
 * damage costs. Every container file of every generation is read once, record by record, in bounded
 * buffers: the Cthr copies, the Rrtl copies, every Ckhr record's header and payload CRC-64, every stream
 * map's Smap, every data chunk decompressed and its digest checked; then every Smap entry is resolved to
 * the data record it names. What is wrong is reported where it is (container, offset, sequence number)
 * and the check goes on: one bad record is one problem. Like verify.h, it only reads.
 */
#ifndef RH_MAINT_WINVERIFY_H
#define RH_MAINT_WINVERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct winverify_problem {
    char *container; /* "Data/00000001.00000002.ccc", "Stream/…", or a stub's path under the volume */
    bool has_offset;
    uint64_t offset; /* of the record (or Cthr copy, Rrtl copy, Smap entry, reparse field) */
    bool has_seq;
    uint32_t seq;    /* the record's sequence number, when its header can be trusted */
    bool warning;    /* nothing is unreadable (a damaged copy beside a valid one): not counted as damage */
    char *what;      /* what is wrong, in words */
    char **files;    /* with a volume: the stubs (paths under it) that use what is damaged, sorted */
    size_t nfiles;
} winverify_problem;

/* One container file: which generation of its id is current (the highest present). */
typedef struct winverify_container {
    char *name; /* "Data/00000001.00000002.ccc" */
    bool data;
    uint32_t id, generation;
    bool current;
} winverify_container;

typedef struct winverify_report {
    uint64_t containers, older_generations;
    uint64_t data_chunks;         /* data records (type 1), every generation */
    uint64_t compressed_chunks;   /* of them, stored compressed (format 2) */
    uint64_t length_unknown;      /* compressed chunks no stream map gives a length for: decoded to their end */
    uint64_t unreferenced_chunks; /* data records that no Smap entry resolves to (older generations too) */
    uint64_t stream_maps;         /* stream-map records (type 2), every generation */
    uint64_t smap_entries;        /* entries of the intact stream maps */
    uint64_t paddings;
    uint64_t moved;               /* references resolved through an Rrtl */
    uint64_t bytes;               /* bytes of the records read (headers and stored payloads) */
    uint64_t stubs;               /* with a volume: stubs of this chunk store */
    winverify_container *ctrs;    /* sorted: Data before Stream, by id, by generation */
    size_t nctrs;
    winverify_problem *problems;  /* in the order found; warnings among them */
    size_t nproblems, nwarnings;
    char **files_affected;        /* with a volume: every stub some problem affects, sorted */
    size_t nfiles_affected;
} winverify_report;

/* True when the directory `dir` is a Windows chunk store rather than one of ours: it has Data/ or
 * Stream/ and no rehydrate.store. */
bool winverify_detect(const char *dir);

/*
 * Checks the chunk store `dir`; with `volume` (may be NULL) also walks the volume's stubs (the reparse
 * buffer in system.ntfs_reparse_data or user.ntfs_reparse_data, on files or, as ntfs-3g shows them,
 * symlinks) and maps damage to them. Returns 0 when the check ran (the report says what it found; free
 * it with winverify_report_free), or a negative code when it could not run (dir or volume unreadable).
 * progress (may be NULL) is called now and then with the bytes checked so far.
 */
int winverify_dir(const char *dir, const char *volume, winverify_report *ret,
                  void (*progress)(void *ud, uint64_t bytes), void *ud);
void winverify_report_free(winverify_report *r);

#endif

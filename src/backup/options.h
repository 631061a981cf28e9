/*
 * options.h — what a caller asks of a backup (backup_options) and what it reports (backup_stats). A
 * header of its own so that the pipeline, beneath backup.c, can hold them without including backup.h.
 */
#ifndef RH_BACKUP_OPTIONS_H
#define RH_BACKUP_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct backup_stats {
    uint64_t files, dirs, others;   /* entries by kind */
    uint64_t bytes;                 /* logical bytes of regular files */
    uint64_t read_bytes;            /* bytes actually read (reused files are not read) */
    uint64_t reused_files;          /* unchanged since the previous snapshot: not read */
    uint64_t new_chunks, new_bytes; /* chunks added to the store, and their raw bytes */
    uint64_t dedup_bytes;           /* raw bytes of chunks the store already had */
    uint64_t stored_bytes;          /* bytes added to containers (records, compressed) */
    uint64_t hole_bytes;            /* bytes recorded as holes (sparse or all zero) */
    uint64_t errors;                /* entries that could not be read */
    double seconds;
    bool partial;
    char name[256];   /* the snapshot's name */
    char parent[256]; /* the previous snapshot used for unchanged files, or "" */
} backup_stats;

typedef struct backup_options {
    const char *name;      /* snapshot name; NULL for a timestamp */
    int compression_level; /* -1: the store's default */
    bool no_parent;        /* read every file, even unchanged ones */
    /* Called on the calling thread for every entry that could not be backed up (path relative to the
     * source, a negative code, and what failed: "open", "read", "stat", ...). */
    void (*warn)(void *ud, const char *path, int code, const char *what);
    /* Called on the calling thread about every 200 ms, and once more at the end with final=true. */
    void (*progress)(void *ud, const backup_stats *st, bool final);
    /* Called with notices that are not errors (e.g. "rebuilding the index"); may be NULL. */
    void (*note)(const char *msg);
    void *ud;
} backup_options;

#endif

/*
 * util.h — small helpers every module uses: cleanup attributes, little-endian encoding, allocation, and
 * growable byte buffers.
 *
 * Allocation comes in two families, and which one a function uses depends on who calls it:
 *  - mem_* returns NULL when memory is exhausted. Library code uses it: everything the public API
 *    (rehydrate.h) reaches, which must never print or take the application down. A caller frees what it
 *    holds and returns -ENOMEM, which propagates to the rh_ call (rh_restore_files writes it into the
 *    results of the files it fails).
 *  - x* prints a message and aborts (as git and tmux do). Only the front ends (the CLI, the daemon) and
 *    the writers that only they drive (backup, verify, reindex, catalog writing) use it: a backup tool
 *    that runs out of memory cannot do anything useful with the error. bytebuf grows with it too.
 * Both families take a size of 0 as 1, so that a successful call never returns NULL.
 */
#ifndef RH_COMMON_UTIL_H
#define RH_COMMON_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rehydrate/rehydrate.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define UNUSED __attribute__((unused))

static inline void freep(void *p) { free(*(void **)p); }
/* qsort that accepts an empty (possibly NULL) array, which qsort itself does not. */
static inline void sort_array(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}
static inline void closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

/* ---- allocation that fails: library code (see the head comment) ---- */

/* malloc, calloc (n * size is checked for overflow), realloc (on failure p is left as it was), strdup,
 * a copy of n bytes: NULL when memory is exhausted. Free with free(). */
void *mem_alloc(size_t n);
void *mem_calloc(size_t n, size_t size);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
void *mem_memdup(const void *p, size_t n);
/* A printf into a freshly allocated string, or NULL. */
char *mem_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *mem_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/*
 * Makes room for one more element in a growable array p of n elements of `size` bytes whose capacity is
 * *cap: when it is full, the capacity doubles (or becomes `first`). Returns the array, maybe moved, or
 * NULL when it cannot grow: then p and *cap are as they were, and the caller still owns p.
 */
void *mem_grow(void *p, size_t *cap, size_t n, size_t size, size_t first);
/*
 * A buffer of at least n bytes that belongs to the calling thread, for data that does not outlive one
 * step of work: it is reused (and grown) by the thread's next call, and freed when the thread exits.
 * Hot paths use it instead of a malloc per chunk, whose fresh pages cost a fault each. NULL when it
 * cannot grow (the thread's previous buffer is then gone too).
 */
void *thread_scratch(size_t n);

/*
 * For tests only (not exported from librehydrate): fault injection in the style of SQLite's. After
 * mem_fail_after(n), n more allocations succeed and the one after them fails, once; n < 0 turns it off.
 * Every mem_* allocation counts, and so do the contexts that hash.c and compress.c make through
 * mem_fail_here(); the x* family never fails this way. The hook is process-wide and thread-safe.
 * mem_alloc_count() is how many allocations have counted so far, so that a test can measure a run.
 */
void mem_fail_after(long n);
unsigned long mem_alloc_count(void);
/* Counts one allocation that another library makes (an OpenSSL context): true when it must fail. */
bool mem_fail_here(void);

/* ---- allocation that aborts: front ends and writers only (see the head comment) ---- */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n);
/* mem_grow that aborts instead of failing. */
void *xgrow(void *p, size_t *cap, size_t n, size_t size, size_t first);
/* A printf into a freshly allocated string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* A growable byte buffer. Zero-initialise it; buf_free() releases it. It grows with xrealloc, so only
 * writers use it (backup, catalogs, verify reports), never a read path of the public API. */
typedef struct bytebuf {
    uint8_t *data;
    size_t len, cap;
} bytebuf;
void buf_reserve(bytebuf *b, size_t extra);
void buf_append(bytebuf *b, const void *p, size_t n);
void buf_put_u8(bytebuf *b, uint8_t v);
void buf_put_le16(bytebuf *b, uint16_t v);
void buf_put_le32(bytebuf *b, uint32_t v);
void buf_put_le64(bytebuf *b, uint64_t v);
void buf_free(bytebuf *b);

/* A bounds-checked reader over a byte range; every get fails once the range is exhausted. */
typedef struct cursor {
    const uint8_t *p;
    size_t left;
    bool bad;
} cursor;
static inline cursor cursor_make(const void *p, size_t n) { return (cursor){ p, n, false }; }
const uint8_t *cursor_take(cursor *c, size_t n); /* NULL (and c->bad) when fewer than n bytes remain */
uint8_t cursor_u8(cursor *c);
uint16_t cursor_le16(cursor *c);
uint32_t cursor_le32(cursor *c);
uint64_t cursor_le64(cursor *c);

/* Nanoseconds since the epoch, from CLOCK_REALTIME, and a monotonic clock in seconds. */
uint64_t now_ns(void);
double mono_seconds(void);

/*
 * Strict parsers for numbers that people type (options, mount options). parse_u64 takes decimal digits
 * only: no sign, no spaces, no base prefix. parse_size takes the same with an optional K, M, G or T
 * suffix (powers of 1024), optionally followed by "B" or "iB" ("64M", "64MiB", "1G"). Both return 0,
 * -EINVAL for anything else, or -ERANGE when the value does not fit in 64 bits; *ret is untouched on
 * failure. Callers check the value's range themselves and say which range in their message.
 */
int parse_u64(const char *s, uint64_t *ret);
int parse_size(const char *s, uint64_t *ret);

/* Formats a byte count as "1.5 GiB" into out (at least 16 bytes). */
const char *fmt_bytes(uint64_t n, char out[static 16]);

#endif

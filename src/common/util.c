/*
 * util.c — allocation (the failing mem_* family with its fault-injection hook, and the aborting x*
 * family: util.h says who uses which), buffers, cursors and clocks shared by every module.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/util.h"

/* ---- fault injection (mem_fail_after) ---- */

/* How many more allocations succeed before one fails; < 0: none fails. */
static long fail_countdown = -1;
static unsigned long alloc_count;

void mem_fail_after(long n) { __atomic_store_n(&fail_countdown, n < 0 ? -1 : n, __ATOMIC_RELAXED); }

unsigned long mem_alloc_count(void) { return __atomic_load_n(&alloc_count, __ATOMIC_RELAXED); }

bool mem_fail_here(void)
{
    __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&fail_countdown, __ATOMIC_RELAXED) < 0)
        return false;
    /* Of threads that race past the load, exactly one takes the countdown from 0 to -1; the others
     * take it further below 0, which is still off. */
    return __atomic_fetch_sub(&fail_countdown, 1, __ATOMIC_RELAXED) == 0;
}

/* ---- allocation that fails ---- */

void *mem_alloc(size_t n) { return mem_fail_here() ? NULL : malloc(n ? n : 1); }

void *mem_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return mem_fail_here() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *mem_realloc(void *p, size_t n) { return mem_fail_here() ? NULL : realloc(p, n ? n : 1); }

char *mem_strdup(const char *s) { return mem_memdup(s, strlen(s) + 1); }

void *mem_memdup(const void *p, size_t n)
{
    void *q = mem_alloc(n);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

char *mem_vasprintf(const char *fmt, va_list ap)
{
    char *s;
    if (mem_fail_here() || vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

char *mem_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = mem_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

void *mem_grow(void *p, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return p;
    size_t want = *cap ? 2 * *cap : first;
    if (want < *cap || (size && want > SIZE_MAX / size))
        return NULL;
    void *q = mem_realloc(p, want * size);
    if (q)
        *cap = want;
    return q;
}

typedef struct scratch {
    void *p;
    size_t cap;
} scratch;

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static bool scratch_key_ok;

static void scratch_free(void *v)
{
    scratch *s = v;
    free(s->p);
    free(s);
}
static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

void *thread_scratch(size_t n)
{
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok)
        return NULL;
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = mem_calloc(1, sizeof(*s))))
            return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (n > s->cap) {
        free(s->p);
        s->cap = 0;
        if (!(s->p = mem_alloc(n)))
            return NULL;
        s->cap = n;
    }
    return s->p;
}

/* ---- allocation that aborts ---- */

static void oom(size_t n)
{
    fprintf(stderr, "rehydrate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

char *xstrdup(const char *s) { return xmemdup(s, strlen(s) + 1); }

void *xmemdup(const void *p, size_t n)
{
    void *q = xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

void *xgrow(void *p, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return p;
    *cap = *cap ? 2 * *cap : first;
    return xrealloc(p, *cap * size);
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        oom(strlen(fmt));
    return s;
}

void buf_reserve(bytebuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(bytebuf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_put_u8(bytebuf *b, uint8_t v) { buf_append(b, &v, 1); }
void buf_put_le16(bytebuf *b, uint16_t v)
{
    uint8_t t[2];
    put_le16(t, v);
    buf_append(b, t, 2);
}
void buf_put_le32(bytebuf *b, uint32_t v)
{
    uint8_t t[4];
    put_le32(t, v);
    buf_append(b, t, 4);
}
void buf_put_le64(bytebuf *b, uint64_t v)
{
    uint8_t t[8];
    put_le64(t, v);
    buf_append(b, t, 8);
}

void buf_free(bytebuf *b)
{
    free(b->data);
    *b = (bytebuf){ 0 };
}

const uint8_t *cursor_take(cursor *c, size_t n)
{
    if (c->bad || c->left < n) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}

uint8_t cursor_u8(cursor *c)
{
    const uint8_t *p = cursor_take(c, 1);
    return p ? p[0] : 0;
}
uint16_t cursor_le16(cursor *c)
{
    const uint8_t *p = cursor_take(c, 2);
    return p ? get_le16(p) : 0;
}
uint32_t cursor_le32(cursor *c)
{
    const uint8_t *p = cursor_take(c, 4);
    return p ? get_le32(p) : 0;
}
uint64_t cursor_le64(cursor *c)
{
    const uint8_t *p = cursor_take(c, 8);
    return p ? get_le64(p) : 0;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *fmt_bytes(uint64_t n, char out[static 16])
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 16, "%llu B", (unsigned long long)n);
    else
        snprintf(out, 16, "%.1f %s", v, units[u]);
    return out;
}

/* Parses the leading decimal digits of s into *ret; returns the end, or NULL when there are none or
 * they overflow (*overflow says which). */
static const char *digits(const char *s, uint64_t *ret, bool *overflow)
{
    uint64_t v = 0;
    const char *p = s;
    *overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            v = v * 10 + d;
    }
    if (p == s || *overflow)
        return NULL;
    *ret = v;
    return p;
}

int parse_u64(const char *s, uint64_t *ret)
{
    uint64_t v;
    bool overflow;
    const char *end = s ? digits(s, &v, &overflow) : NULL;
    if (!end)
        return s && overflow ? -ERANGE : -EINVAL;
    if (*end)
        return -EINVAL;
    *ret = v;
    return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
    uint64_t v;
    bool overflow;
    const char *end = s ? digits(s, &v, &overflow) : NULL;
    if (!end)
        return s && overflow ? -ERANGE : -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift)
        end++;
    if (*end && strcmp(end, "B") && (!shift || strcmp(end, "iB")))
        return -EINVAL;
    if (shift && v > UINT64_MAX >> shift)
        return -ERANGE;
    *ret = v << shift;
    return 0;
}

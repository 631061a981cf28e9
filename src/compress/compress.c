/*
 * compress.c — zstd with per-thread contexts, created on first use and freed when the thread exits. A
 * context that cannot be made (no memory) fails the call with -ENOMEM; nothing here aborts.
 *
 * Chunks are compressed with a *static* context: one workspace, allocated once per thread and level,
 * large enough for any input of at most STATIC_MAX_INPUT bytes. A normal context resizes its workspace
 * as inputs of different sizes come (zstd picks smaller tables for small inputs, then frees a workspace
 * that stays three times too large), and each new workspace costs page faults as it is first touched:
 * a backup of many small files and some large ones did that thousands of times. Larger inputs (stream
 * maps, chunks of stores cut with a larger max_size) use a normal context.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_initStaticCCtx, ZSTD_estimateCCtxSize_usingCParams */
#include <zstd.h>
#include <zstd_errors.h> /* ZSTD_getErrorCode */

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "compress/compress.h"
#include "compress/xpress.h"

#define STATIC_MAX_INPUT (256u << 10) /* the default max chunk size */

typedef struct cctx_set {
    ZSTD_CCtx *dynamic;
    ZSTD_CCtx *fixed; /* lives in `ws` */
    void *ws;
    int level; /* of `fixed` */
} cctx_set;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t cctx_key, dctx_key;
static bool keys_ok;

/* zstd allocates through the library's failing allocator: its contexts fail like any other allocation
 * (and the fault-injection hook reaches them). */
static void *zstd_alloc(void *opaque, size_t n) { return mem_alloc(n); }
static void zstd_free(void *opaque, void *p) { free(p); }
static const ZSTD_customMem zstd_mem = { zstd_alloc, zstd_free, NULL };

static void free_cctx(void *p)
{
    cctx_set *c = p;
    ZSTD_freeCCtx(c->dynamic);
    free(c->ws);
    free(c);
}
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }
static void keys_init(void)
{
    keys_ok = pthread_key_create(&cctx_key, free_cctx) == 0;
    if (keys_ok && pthread_key_create(&dctx_key, free_dctx) != 0) {
        pthread_key_delete(cctx_key);
        keys_ok = false;
    }
}

/* The calling thread's compression contexts, made on first use; NULL when they cannot be made. */
static cctx_set *get_cctx_set(void)
{
    pthread_once(&once, keys_init);
    if (!keys_ok)
        return NULL;
    cctx_set *c = pthread_getspecific(cctx_key);
    if (c)
        return c;
    if (!(c = mem_calloc(1, sizeof(*c))))
        return NULL;
    if (!(c->dynamic = ZSTD_createCCtx_advanced(zstd_mem)) || pthread_setspecific(cctx_key, c) != 0) {
        free_cctx(c);
        return NULL;
    }
    return c;
}

/* The workspace zstd needs at `level` for any input of at most STATIC_MAX_INPUT bytes: the largest of its
 * parameter tiers (inputs up to 16 KiB, 128 KiB, 256 KiB). */
static size_t static_ws_size(int level)
{
    static const unsigned long long tiers[] = { 16u << 10, 128u << 10, STATIC_MAX_INPUT };
    size_t max = 0;
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        size_t n = ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(level, tiers[i], 0));
        if (n > max)
            max = n;
    }
    return max;
}

/* The context of set c for n input bytes at `level`. */
static ZSTD_CCtx *get_cctx(cctx_set *c, int level, size_t n)
{
    if (n > STATIC_MAX_INPUT)
        return c->dynamic;
    if (!c->fixed || c->level != level) {
        size_t size = static_ws_size(level);
        free(c->ws);
        c->fixed = NULL;
        if (!(c->ws = mem_alloc(size)) || !(c->fixed = ZSTD_initStaticCCtx(c->ws, size))) {
            free(c->ws);
            c->ws = NULL;
            return c->dynamic;
        }
        c->level = level;
    }
    return c->fixed;
}

/* The calling thread's decompression context, made on first use; NULL when it cannot be made. */
static ZSTD_DCtx *get_dctx(void)
{
    pthread_once(&once, keys_init);
    if (!keys_ok)
        return NULL;
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (d)
        return d;
    if (!(d = ZSTD_createDCtx_advanced(zstd_mem)))
        return NULL;
    if (pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        return NULL;
    }
    return d;
}

/* zstd's failure to allocate is ours to report as such, not as damage of the data. */
static bool zstd_nomem(size_t r)
{
    return ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation;
}

size_t compress_bound(size_t n) { return ZSTD_compressBound(n); }

int compress_level_valid(int level) { return level >= 0 && level <= 19; }

/* One zstd run at `level` on cctx; min_match > 0 replaces the level's minimum match length. */
static size_t zstd_run(ZSTD_CCtx *cctx, int level, int min_match, void *dst, size_t cap, const void *src,
                       size_t n)
{
    if (min_match == 0)
        return ZSTD_compressCCtx(cctx, dst, cap, src, n, level);
    size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, min_match);
    if (!ZSTD_isError(r))
        r = ZSTD_compress2(cctx, dst, cap, src, n);
    /* ZSTD_compressCCtx goes by the level alone: leave nothing of this behind */
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    return r;
}

static int compress_into(int level, int min_match, const void *src, size_t n, void *dst, size_t cap,
                         uint8_t *ret_codec, size_t *ret_len)
{
    if (level == 0) {
        *ret_codec = CODEC_RAW;
        *ret_len = n;
        return 0;
    }
    cctx_set *c = get_cctx_set();
    if (!c)
        return -ENOMEM;
    ZSTD_CCtx *cctx = get_cctx(c, level, n);
    size_t r = zstd_run(cctx, level, min_match, dst, cap, src, n);
    if (ZSTD_isError(r) && cctx != c->dynamic) /* the estimate fell short: never fail on it */
        r = zstd_run(c->dynamic, level, min_match, dst, cap, src, n);
    if (ZSTD_isError(r))
        return zstd_nomem(r) ? -ENOMEM : -EIO;
    if (r >= n) {
        *ret_codec = CODEC_RAW;
        *ret_len = n;
    } else {
        *ret_codec = CODEC_ZSTD;
        *ret_len = r;
    }
    return 0;
}

static int compress_inplace(int level, int min_match, void *buf, size_t n, uint8_t *ret_codec,
                            size_t *ret_len)
{
    size_t cap = compress_bound(n);
    uint8_t *out = thread_scratch(cap);
    if (!out)
        return -ENOMEM;
    int r = compress_into(level, min_match, buf, n, out, cap, ret_codec, ret_len);
    if (r >= 0 && *ret_codec == CODEC_ZSTD)
        memcpy(buf, out, *ret_len);
    return r;
}

int compress_chunk(int level, const void *src, size_t n, void *dst, size_t cap, uint8_t *ret_codec,
                   size_t *ret_len)
{
    return compress_into(level, 0, src, n, dst, cap, ret_codec, ret_len);
}

int compress_chunk_inplace(int level, void *buf, size_t n, uint8_t *ret_codec, size_t *ret_len)
{
    return compress_inplace(level, 0, buf, n, ret_codec, ret_len);
}

/*
 * Packs (several chunks, up to 256 KiB) are compressed with zstd's parameters for their size, except for
 * the minimum match length at the fastest strategies: at level 3, zstd's row for inputs of 128-256 KiB
 * asks for 4-byte matches where its row for larger inputs asks for 5. On data of few distinct bytes
 * (binary formats, nibble encodings) the spurious short matches that finds cost more than the literals
 * they replace: packs of such data came out 12 % larger than their chunks compressed one by one, and
 * took twice the time. With 5-byte matches they are as small as the chunks alone, text is smaller
 * than at 4, and a backup of the `system` tree spends 6 % less time compressing for a store 1 % larger.
 */
#define PACK_MIN_MATCH 5

int compress_pack_inplace(int level, void *buf, size_t n, uint8_t *ret_codec, size_t *ret_len)
{
    ZSTD_compressionParameters cp = ZSTD_getCParams(level, n, 0);
    bool raise = level > 0 && cp.strategy <= ZSTD_dfast && cp.minMatch < PACK_MIN_MATCH;
    return compress_inplace(level, raise ? PACK_MIN_MATCH : 0, buf, n, ret_codec, ret_len);
}

int decompress_size_ok(uint8_t codec, const void *src, size_t n, size_t raw_len)
{
    switch (codec) {
    case CODEC_RAW:
        return n == raw_len;
    case CODEC_ZSTD: {
        /* The frames' headers bound what they can decode to: the declared content size, which our
         * compressor always writes, or 128 KiB per block. A header can lie about the content size, but
         * every block takes at least its 3-byte header and gives at most 128 KiB, so n bytes decode to
         * at most (n / 3 + 1) * 128 KiB: a record of a few bytes never makes a reader allocate MiBs. */
        unsigned long long bound = ZSTD_decompressBound(src, n);
        unsigned long long by_blocks = ((unsigned long long)n / 3 + 1) * ZSTD_BLOCKSIZE_MAX;
        return bound != ZSTD_CONTENTSIZE_ERROR && raw_len <= bound && raw_len <= by_blocks;
    }
    default:
        return 0;
    }
}

int decompress_chunk(uint8_t codec, const void *src, size_t n, void *dst, size_t raw_len)
{
    switch (codec) {
    case CODEC_RAW:
        if (n != raw_len)
            return RH_ECORRUPT;
        memcpy(dst, src, n);
        return 0;
    case CODEC_ZSTD: {
        ZSTD_DCtx *d = get_dctx();
        if (!d)
            return -ENOMEM;
        size_t r = ZSTD_decompressDCtx(d, dst, raw_len, src, n);
        if (zstd_nomem(r))
            return -ENOMEM;
        if (ZSTD_isError(r) || r != raw_len)
            return RH_ECORRUPT;
        return 0;
    }
    case CODEC_XPRESS:
        return xpress_decompress(src, n, dst, raw_len);
    default:
        return RH_ECORRUPT;
    }
}

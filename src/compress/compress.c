/*
 * compress.c — zstd with one compression and one decompression context per thread, created on first use
 * and freed when the thread exits.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <rehydrate/rehydrate.h>

#include "compress/compress.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t cctx_key, dctx_key;

static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }
static void keys_init(void)
{
    pthread_key_create(&cctx_key, free_cctx);
    pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *get_cctx(void)
{
    pthread_once(&once, keys_init);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (!c) {
        c = ZSTD_createCCtx();
        if (!c)
            abort();
        pthread_setspecific(cctx_key, c);
    }
    return c;
}

static ZSTD_DCtx *get_dctx(void)
{
    pthread_once(&once, keys_init);
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (!d) {
        d = ZSTD_createDCtx();
        if (!d)
            abort();
        pthread_setspecific(dctx_key, d);
    }
    return d;
}

size_t compress_bound(size_t n) { return ZSTD_compressBound(n); }

int compress_level_valid(int level) { return level >= 0 && level <= 19; }

int compress_chunk(int level, const void *src, size_t n, void *dst, size_t cap, uint8_t *ret_codec,
                   size_t *ret_len)
{
    if (level == 0) {
        *ret_codec = CODEC_RAW;
        *ret_len = n;
        return 0;
    }
    size_t r = ZSTD_compressCCtx(get_cctx(), dst, cap, src, n, level);
    if (ZSTD_isError(r))
        return -EIO;
    if (r >= n) {
        *ret_codec = CODEC_RAW;
        *ret_len = n;
    } else {
        *ret_codec = CODEC_ZSTD;
        *ret_len = r;
    }
    return 0;
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
        size_t r = ZSTD_decompressDCtx(get_dctx(), dst, raw_len, src, n);
        if (ZSTD_isError(r) || r != raw_len)
            return RH_ECORRUPT;
        return 0;
    }
    default:
        return RH_ECORRUPT;
    }
}

/*
 * hash.c — SHA-256 through OpenSSL's EVP interface (which uses the CPU's SHA extensions) and XXH3
 * through libxxhash. OpenSSL's failures (no SHA-256 provider, no memory for a context) are returned,
 * never printed: the library's read paths hash.
 */
#include "config.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include <rehydrate/rehydrate.h>

#include "common/util.h"
#include "hash/hash.h"

static EVP_MD *sha256_md; /* NULL when OpenSSL has no SHA-256: every hash then fails */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;
static bool ctx_key_ok;

static void free_ctx(void *p) { EVP_MD_CTX_free(p); }

static void sha256_init(void)
{
    /* Fetch the implementation once; an implicit fetch per call costs more than hashing a small chunk. */
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    ctx_key_ok = pthread_key_create(&ctx_key, free_ctx) == 0;
}

/* The calling thread's digest context, made on first use; NULL when it cannot be made. */
static EVP_MD_CTX *thread_ctx(void)
{
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx)
        return ctx;
    if (mem_fail_here() || !(ctx = EVP_MD_CTX_new()))
        return NULL;
    if (pthread_setspecific(ctx_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int hash_sha256(const void *data, size_t len, uint8_t out[HASH_LEN])
{
    pthread_once(&sha256_once, sha256_init);
    if (!sha256_md)
        return -ENOTSUP;
    EVP_MD_CTX *ctx = ctx_key_ok ? thread_ctx() : NULL;
    if (!ctx)
        return -ENOMEM;
    unsigned int n = 0;
    if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != HASH_LEN)
        return -EIO;
    return 0;
}

void xhash_sha256(const void *data, size_t len, uint8_t out[HASH_LEN])
{
    int r = hash_sha256(data, len, out);
    if (r < 0) {
        fprintf(stderr, "rehydrate: SHA-256 failed: %s\n", rh_strerror(r));
        abort();
    }
}

uint64_t hash_checksum(const void *head, size_t head_len, const void *payload, size_t payload_len)
{
    uint64_t seed = XXH3_64bits(head, head_len);
    return XXH3_64bits_withSeed(payload, payload_len, seed);
}

uint64_t hash_checksum2(const void *head, size_t head_len, const void *a, size_t a_len, const void *b,
                        size_t b_len)
{
    if (b_len == 0)
        return hash_checksum(head, head_len, a, a_len);
    XXH3_state_t st;
    XXH3_64bits_reset_withSeed(&st, XXH3_64bits(head, head_len));
    XXH3_64bits_update(&st, a, a_len);
    XXH3_64bits_update(&st, b, b_len);
    return XXH3_64bits_digest(&st);
}

const char *hash_hex(const uint8_t d[HASH_LEN], char out[2 * HASH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < HASH_LEN; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * HASH_LEN] = 0;
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool hash_from_hex(const char *hex, uint8_t out[HASH_LEN])
{
    for (int i = 0; i < HASH_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * HASH_LEN] == 0;
}

bool hash_is_zero(const uint8_t d[HASH_LEN]) { return mem_is_zero(d, HASH_LEN); }

bool mem_is_zero(const void *data, size_t len)
{
    const uint8_t *p = data;
    /* Check the first 16 bytes byte by byte, then compare the buffer with itself shifted by 16:
     * if the head is zero and buf[i] == buf[i+16] for all i, the whole buffer is zero. */
    size_t head = len < 16 ? len : 16;
    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

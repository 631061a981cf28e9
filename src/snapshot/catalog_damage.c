/*
 * catalog_damage.c — how a reader gets by with a damaged catalog (doc/format.md, "Damaged catalogs").
 *
 * Every byte of a catalog is under a checksum: the header, each entry (with its name and extra blob),
 * the meta blob, and in a packed catalog its header, block index and each stored block. A failed check
 * costs only what that checksum covers, and some of it can be won back: a header (or a small blob) with
 * one damaged byte is repaired by trying every one-byte change against its 64-bit checksum; the damage
 * found is recorded here so that `verify` can name it even where the reader got by. Like the rest of the
 * reader, nothing here aborts: a record that cannot grow is -ENOMEM for the read that found the damage.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "hash/hash.h"
#include "snapshot/catalog_internal.h"

int catalog_repair_header(uint8_t *h, size_t sum_off)
{
    for (size_t i = 0; i < sum_off + 8; i++) {
        uint8_t orig = h[i];
        for (unsigned v = 0; v < 256; v++) {
            if (v == orig)
                continue;
            h[i] = (uint8_t)v;
            if (get_le64(h + sum_off) == hash_checksum(h, sum_off, NULL, 0))
                return (int)i;
        }
        h[i] = orig;
    }
    return -1;
}

int catalog_repair_blob(uint8_t *p, size_t len, uint64_t sum)
{
    if (len > CATALOG_REPAIR_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        uint8_t orig = p[i];
        for (unsigned v = 0; v < 256; v++) {
            if (v == orig)
                continue;
            p[i] = (uint8_t)v;
            if (hash_checksum(p, len, NULL, 0) == sum)
                return (int)i;
        }
        p[i] = orig;
    }
    return -1;
}

int catalog_note_damage(catalog *c, bool locked, int code, uint64_t off, uint64_t len, const char *fmt, ...)
{
    if (!locked)
        pthread_mutex_lock(&c->lock);
    bool seen = false;
    for (size_t i = 0; i < c->ndamage && !seen; i++)
        seen = c->damage[i].offset == off && c->damage[i].code == code;
    catalog_damage *grown = seen ? NULL : mem_realloc(c->damage, (c->ndamage + 1) * sizeof(*c->damage));
    if (grown) {
        c->damage = grown;
        catalog_damage *d = &c->damage[c->ndamage++];
        *d = (catalog_damage){ .code = code, .offset = off, .length = len };
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->what, sizeof(d->what), fmt, ap);
        va_end(ap);
    }
    if (!locked)
        pthread_mutex_unlock(&c->lock);
    return seen || grown ? 0 : -ENOMEM;
}

int catalog_damage_get(catalog *c, catalog_damage **ret, size_t *ret_n)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->ndamage;
    catalog_damage *d = n ? mem_memdup(c->damage, n * sizeof(*c->damage)) : NULL;
    pthread_mutex_unlock(&c->lock);
    if (n && !d)
        return -ENOMEM;
    *ret = d;
    *ret_n = n;
    return 0;
}

int catalog_scan_blocks(catalog *c)
{
    if (!c->blocks_at)
        return 0;
    uint8_t *buf = mem_alloc(CACHE_BLOCK);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    for (uint64_t b = 0; b < c->nblocks && r == 0; b++) {
        uint64_t off = b * CACHE_BLOCK;
        r = catalog_read_at(c, off, buf, (size_t)MIN((uint64_t)CACHE_BLOCK, c->file_end - off));
        if (r == RH_ECORRUPT)
            r = 0; /* recorded */
    }
    free(buf);
    return r;
}

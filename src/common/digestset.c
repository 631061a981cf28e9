/*
 * digestset.c — an open-addressing set of SHA-256 digests. Digests are uniformly distributed, so their
 * first eight bytes are the hash.
 */
#include "config.h"

#include "common/digestset.h"
#include "common/util.h"

static size_t slot_of(const uint8_t d[HASH_LEN], size_t cap) { return (size_t)get_le64(d) & (cap - 1); }

bool digest_set_contains(const digest_set *s, const uint8_t d[HASH_LEN])
{
    if (!s->cap)
        return false;
    for (size_t i = slot_of(d, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return false;
        if (memcmp(s->slots[i], d, HASH_LEN) == 0)
            return true;
    }
}

void digest_set_add(digest_set *s, const uint8_t d[HASH_LEN])
{
    if ((s->n + 1) * 4 >= s->cap * 3) { /* keep the load under 3/4 */
        digest_set old = *s;
        s->cap = old.cap ? old.cap * 2 : 1024;
        s->slots = xmalloc(s->cap * HASH_LEN);
        s->used = xcalloc(s->cap, 1);
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.used[i])
                digest_set_add(s, old.slots[i]);
        digest_set_free(&old);
    }
    size_t i = slot_of(d, s->cap);
    while (s->used[i]) {
        if (memcmp(s->slots[i], d, HASH_LEN) == 0)
            return;
        i = (i + 1) & (s->cap - 1);
    }
    memcpy(s->slots[i], d, HASH_LEN);
    s->used[i] = 1;
    s->n++;
}

void digest_set_free(digest_set *s)
{
    free(s->slots);
    free(s->used);
    *s = (digest_set){ 0 };
}


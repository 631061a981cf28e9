/*
 * digestset.h — a set of SHA-256 digests in memory (the chunks a backup run added, the chunks verify
 * found). Zero-initialise it; digest_set_free() releases it.
 */
#ifndef RH_COMMON_DIGESTSET_H
#define RH_COMMON_DIGESTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash/hash.h"

typedef struct digest_set {
    uint8_t (*slots)[HASH_LEN];
    uint8_t *used;
    size_t n, cap;
} digest_set;

bool digest_set_contains(const digest_set *s, const uint8_t d[HASH_LEN]);
void digest_set_add(digest_set *s, const uint8_t d[HASH_LEN]);
void digest_set_free(digest_set *s);

#endif

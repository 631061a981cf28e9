/*
 * blocks.c — small reads of containers served from aligned blocks (see s3.h).
 *
 * A mount reads a container a record at a time, and the records a reader wants next are mostly the
 * ones stored next: the stream maps of a directory's files, the small files packed together, the
 * chunks of a large file. Over a link with a round trip of milliseconds, a GET per record costs that
 * round trip each time, whatever its size. So a read of at most one block is served from the blocks
 * that hold it: aligned BLOCK-byte pieces of the object, fetched whole (the last one shorter), kept in
 * a small LRU. Threads that want a block being fetched wait for that fetch instead of making their own.
 *
 * Only containers and catalogs go through it: they never change once stored (an unfinished container
 * that a later backup removes and writes again was never referenced, so never read; a snapshot is
 * committed by the one PUT of its catalog, under a name no other snapshot has). A catalog is read a
 * directory page at a time, in the order the reader walks the tree. index.db is replaced by every
 * backup: it has its own cache, of 256 KiB blocks here (index/vfs.c, STORE_S3_INDEX_BLOCK), which a
 * reopen empties.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "s3/s3.h"

enum { B_EMPTY, B_LOADING, B_READY };

typedef struct block {
    char key[96];
    uint64_t no;   /* which block of the object: bytes [no * size, no * size + len) */
    size_t len;    /* B_READY: its bytes (shorter than size at the object's end) */
    uint8_t *data; /* size bytes */
    int state;
    unsigned refs; /* readers copying out of it, or its fetcher: not to be reused */
    uint64_t used; /* for LRU */
} block;

struct s3_blocks {
    s3_client *cl;
    size_t size;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a fetch ended */
    block *b;
    unsigned n;
    uint64_t clock;
};

int s3_blocks_new(s3_client *cl, size_t size, unsigned count, s3_blocks **ret)
{
    s3_blocks *c = mem_calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->b = mem_calloc(count, sizeof(*c->b));
    if (!c->b) {
        free(c);
        return -ENOMEM;
    }
    c->cl = cl;
    c->size = size;
    c->n = count;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    *ret = c;
    return 0;
}

void s3_blocks_free(s3_blocks *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->n; i++)
        free(c->b[i].data);
    free(c->b);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool s3_blocks_wants(const s3_blocks *c, const char *key, size_t len)
{
    return c && len <= c->size && (strncmp(key, "containers/", 11) == 0 || strncmp(key, "snapshots/", 10) == 0) &&
           strlen(key) < sizeof(c->b[0].key);
}

/*
 * The block `no` of key, ready, with a reference the caller drops (release), or NULL with *ret_err set.
 * Called with mu held; may drop it while it waits or fetches.
 */
static block *get_block(s3_blocks *c, const char *key, uint64_t no, int *ret_err)
{
    for (;;) {
        block *hit = NULL, *victim = NULL;
        for (unsigned i = 0; i < c->n; i++) {
            block *b = &c->b[i];
            if (b->state != B_EMPTY && b->no == no && strcmp(b->key, key) == 0) {
                hit = b;
                break;
            }
            if (b->refs == 0 && b->state != B_LOADING && (!victim || b->state < victim->state ||
                                                          (b->state == victim->state && b->used < victim->used)))
                victim = b;
        }
        if (hit && hit->state == B_READY) {
            hit->refs++;
            hit->used = ++c->clock;
            return hit;
        }
        if (hit || !victim) { /* being fetched, or every block busy: wait for a fetch to end */
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        if (!victim->data && !(victim->data = malloc(c->size))) {
            *ret_err = -ENOMEM;
            return NULL;
        }
        snprintf(victim->key, sizeof(victim->key), "%s", key);
        victim->no = no;
        victim->state = B_LOADING;
        victim->refs = 1;
        pthread_mutex_unlock(&c->mu);
        size_t got = 0;
        int r = s3_get_upto(c->cl, key, no * c->size, victim->data, c->size, &got);
        pthread_mutex_lock(&c->mu);
        victim->state = r < 0 ? B_EMPTY : B_READY;
        victim->len = got;
        victim->used = ++c->clock;
        pthread_cond_broadcast(&c->cv);
        if (r < 0) {
            victim->refs = 0;
            *ret_err = r;
            return NULL;
        }
        return victim;
    }
}

static void release(s3_blocks *c, block *b)
{
    if (--b->refs == 0)
        pthread_cond_broadcast(&c->cv);
}

int s3_blocks_read(s3_blocks *c, const char *key, uint64_t off, void *buf, size_t len)
{
    uint8_t *to = buf;
    int r = 0;
    pthread_mutex_lock(&c->mu);
    while (len > 0) {
        uint64_t no = off / c->size;
        size_t from = (size_t)(off % c->size);
        block *b = get_block(c, key, no, &r);
        if (!b)
            break;
        size_t n = MIN(len, c->size - from);
        if (from + n > b->len) { /* the object ends before the bytes asked for: it is truncated */
            release(c, b);
            r = RH_ECORRUPT;
            break;
        }
        pthread_mutex_unlock(&c->mu);
        memcpy(to, b->data + from, n); /* the reference keeps it from being reused meanwhile */
        pthread_mutex_lock(&c->mu);
        release(c, b);
        to += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

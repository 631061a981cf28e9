/*
 * cache.c — the shared chunk cache and index pool (see cache.h).
 *
 * The cache is a chained hash table on the digest plus an LRU list, under one mutex. Entries are
 * reference counted: an entry in use is never evicted or freed, so readers copy out of it without the
 * lock. Every hit is checked against the length its reader expects: entries come from records whose
 * lengths were checked, and from pack member tables, which a damaged store could make disagree with a
 * stream map.
 *
 * A fetch in progress is a flight: the chunk it is for and, once known, the pack it decodes. A thread
 * that misses a chunk in flight, or a chunk of a pack in flight, waits for that fetch instead of decoding
 * the same bytes again. That race is not rare: a sequential reader catches up with its own read-ahead,
 * and without flights a fifth of a large file was decoded twice.
 *
 * Everything here allocates with mem_* and fails with -ENOMEM: a read, which the daemon answers with it,
 * and chunk_cache_new, which the daemon checks at start-up (util.h).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>

#include "common/util.h"
#include "read/cache.h"
#include "read/reader.h"

#define POOL_MAX 64

struct chunk_ref {
    uint8_t digest[HASH_LEN];
    uint64_t len;
    unsigned refs;
    chunk_ref *hnext;            /* hash chain */
    chunk_ref *lru_prev, *lru_next; /* most recently used at the head */
    uint8_t data[];
};

/* A fetch in progress (see the top of this file); lives on its fetching thread's stack. */
typedef struct flight {
    uint8_t digest[HASH_LEN];
    bool pack; /* container and offset are those of the pack it decodes */
    uint32_t container;
    uint64_t offset;
    struct flight *next;
} flight;

struct chunk_cache {
    rh_store *s;
    bool verify;
    pthread_mutex_t lock; /* protects everything below */
    pthread_cond_t landed; /* a flight ended */
    flight *flights;
    chunk_ref **buckets;
    size_t nbuckets;
    chunk_ref *lru_head, *lru_tail;
    size_t bytes, capacity;
    cache_stats st;
    index_t *pool[POOL_MAX]; /* idle index handles */
    unsigned pool_gen[POOL_MAX]; /* the index generation each was opened at */
    size_t npool;
};

const uint8_t *chunk_data(const chunk_ref *c) { return c->data; }

/* The daemon makes its one cache at start-up, and exits with a message when it cannot. */
int chunk_cache_new(rh_store *s, size_t capacity, bool verify, chunk_cache **ret)
{
    chunk_cache *c = mem_calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->s = s;
    c->verify = verify;
    c->capacity = capacity;
    /* about one bucket per average chunk that fits, at least 1024, a power of two */
    size_t want = MAX(capacity / (64u << 10), (size_t)1024);
    c->nbuckets = 1;
    while (c->nbuckets < want)
        c->nbuckets <<= 1;
    if (!(c->buckets = mem_calloc(c->nbuckets, sizeof(*c->buckets)))) {
        free(c);
        return -ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->landed, NULL);
    *ret = c;
    return 0;
}

size_t chunk_cache_capacity(const chunk_cache *c) { return c->capacity; }

void chunk_cache_free(chunk_cache *c)
{
    if (!c)
        return;
    for (chunk_ref *e = c->lru_head, *n; e; e = n) {
        n = e->lru_next;
        free(e);
    }
    for (size_t i = 0; i < c->npool; i++)
        index_close(c->pool[i]);
    free(c->buckets);
    pthread_cond_destroy(&c->landed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static size_t bucket_of(const chunk_cache *c, const uint8_t d[HASH_LEN])
{
    return (size_t)get_le64(d) & (c->nbuckets - 1);
}

static chunk_ref *find_locked(chunk_cache *c, const uint8_t d[HASH_LEN])
{
    for (chunk_ref *e = c->buckets[bucket_of(c, d)]; e; e = e->hnext)
        if (memcmp(e->digest, d, HASH_LEN) == 0)
            return e;
    return NULL;
}

static void lru_unlink(chunk_cache *c, chunk_ref *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(chunk_cache *c, chunk_ref *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

/* Evicts unreferenced entries from the cold end until the cache fits its capacity. */
static void evict_locked(chunk_cache *c)
{
    for (chunk_ref *e = c->lru_tail; e && c->bytes > c->capacity;) {
        chunk_ref *prev = e->lru_prev;
        if (e->refs == 0) {
            chunk_ref **pp = &c->buckets[bucket_of(c, e->digest)];
            while (*pp != e)
                pp = &(*pp)->hnext;
            *pp = e->hnext;
            lru_unlink(c, e);
            c->bytes -= e->len;
            c->st.evictions++;
            c->st.entries--;
            free(e);
        }
        e = prev;
    }
}

static flight *flight_for_chunk_locked(chunk_cache *c, const uint8_t d[HASH_LEN])
{
    for (flight *f = c->flights; f; f = f->next)
        if (memcmp(f->digest, d, HASH_LEN) == 0)
            return f;
    return NULL;
}

static flight *flight_for_pack_locked(chunk_cache *c, const index_loc *loc)
{
    for (flight *f = c->flights; f; f = f->next)
        if (f->pack && f->container == loc->container && f->offset == loc->offset)
            return f;
    return NULL;
}

/* Ends flight f (the caller holds the lock) and wakes those who wait for one. */
static void land_locked(chunk_cache *c, flight *f)
{
    flight **pp = &c->flights;
    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    pthread_cond_broadcast(&c->landed);
}

bool chunk_cached(chunk_cache *c, const uint8_t digest[HASH_LEN])
{
    pthread_mutex_lock(&c->lock);
    bool hit = find_locked(c, digest) || flight_for_chunk_locked(c, digest);
    pthread_mutex_unlock(&c->lock);
    return hit;
}

#define POOL_FLAGS (INDEX_READONLY | INDEX_POOLED)

/* An idle handle of the current index generation, or a new one; handles of an older generation (the
 * index was repaired meanwhile) are closed on the way. */
static void pool_take(chunk_cache *c, index_t **ret, unsigned *ret_gen)
{
    unsigned now = store_index_gen(c->s);
    for (;;) {
        pthread_mutex_lock(&c->lock);
        index_t *ix = c->npool ? c->pool[--c->npool] : NULL;
        unsigned gen = c->npool < POOL_MAX ? c->pool_gen[c->npool] : 0;
        pthread_mutex_unlock(&c->lock);
        if (!ix)
            break;
        if (gen == now) {
            *ret = ix;
            *ret_gen = gen;
            return;
        }
        index_close(ix);
    }
    /* No handle yet: reader_fetch_chunk_rx opens one (and repairs the index if it cannot be opened). */
    *ret = NULL;
    *ret_gen = now;
}

static void pool_give(chunk_cache *c, index_t *ix, unsigned gen)
{
    if (!ix)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->npool < POOL_MAX && gen == store_index_gen(c->s)) {
        c->pool_gen[c->npool] = gen;
        c->pool[c->npool++] = ix;
        ix = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    index_close(ix);
}

/* Links a new entry (refs as set by the caller) at the head; the caller holds the lock and has checked
 * that the digest is absent. */
static void insert_locked(chunk_cache *c, chunk_ref *n)
{
    size_t b = bucket_of(c, n->digest);
    n->hnext = c->buckets[b];
    c->buckets[b] = n;
    lru_push_head(c, n);
    c->bytes += n->len;
    c->st.entries++;
    c->st.fetched_bytes += n->len;
    evict_locked(c);
}

/* A pack's other members, decoded by a fetch anyway: kept, since readers mostly read neighbours. */
static void insert_sibling(void *ud, const uint8_t digest[HASH_LEN], const uint8_t *data, uint32_t len)
{
    chunk_cache *c = ud;
    pthread_mutex_lock(&c->lock);
    bool have = find_locked(c, digest) != NULL; /* in flight is not had: that fetch may wait for this */
    pthread_mutex_unlock(&c->lock);
    if (have)
        return;
    chunk_ref *n = mem_alloc(sizeof(*n) + (size_t)len);
    if (!n)
        return; /* only a guess at what is read next */
    memcpy(n->digest, digest, HASH_LEN);
    memcpy(n->data, data, len);
    n->len = len;
    n->refs = 0;
    pthread_mutex_lock(&c->lock);
    if (find_locked(c, digest)) {
        pthread_mutex_unlock(&c->lock);
        free(n);
        return;
    }
    insert_locked(c, n);
    pthread_mutex_unlock(&c->lock);
}

/* A hit on e for a reader of length len (the caller holds the lock): a reference, or RH_ECORRUPT when a
 * stream map or a pack's member table is damaged. */
static int hit_locked(chunk_cache *c, chunk_ref *e, uint64_t len, chunk_ref **ret)
{
    if (e->len != len)
        return RH_ECORRUPT;
    e->refs++;
    lru_unlink(c, e);
    lru_push_head(c, e);
    *ret = e;
    return 0;
}

/*
 * Waits while another fetch decodes the pack at `at`, then takes the pack's flight (the caller holds the
 * lock). True, with *ret_r and *ret set as by hit_locked, when the chunk arrived meanwhile as a member of
 * that pack (also before this was called: a fetch of the pack may have ended since the miss).
 */
static bool join_pack_locked(chunk_cache *c, flight *me, const index_loc *at, uint64_t len, chunk_ref **ret,
                             int *ret_r)
{
    for (;;) {
        chunk_ref *e = find_locked(c, me->digest);
        if (e) {
            *ret_r = hit_locked(c, e, len, ret);
            return true;
        }
        if (!flight_for_pack_locked(c, at))
            break;
        c->st.waits++;
        pthread_cond_wait(&c->landed, &c->lock);
    }
    me->pack = true;
    me->container = at->container;
    me->offset = at->offset;
    return false;
}

/* chunk_get, at location `known` when the stream map gave one. */
static int get(chunk_cache *c, const uint8_t digest[HASH_LEN], uint64_t len, const index_loc *known,
               chunk_ref **ret, index_loc *ret_loc)
{
    pthread_mutex_lock(&c->lock);
    for (;;) {
        chunk_ref *e = find_locked(c, digest);
        if (e) {
            int r = hit_locked(c, e, len, ret);
            if (r == 0)
                c->st.hits++;
            pthread_mutex_unlock(&c->lock);
            return r;
        }
        if (!flight_for_chunk_locked(c, digest))
            break;
        c->st.waits++;
        pthread_cond_wait(&c->landed, &c->lock);
    }
    c->st.misses++;
    flight me = { .next = c->flights };
    memcpy(me.digest, digest, HASH_LEN);
    c->flights = &me;
    pthread_mutex_unlock(&c->lock);

    int r;
    chunk_ref *n = NULL;
    bool fetched = false;
    index_t *ix = NULL;
    unsigned gen = 0;
    /* Fetch without the lock: other readers go on meanwhile. No chunk is longer than a record: a
     * longer length is a damaged stream map, not a size to allocate. */
    if (len > RECORD_LEN_MAX) {
        r = RH_ECORRUPT;
        goto land;
    }
    /* Where the chunk is: the map says, or the index (the fetch looks it up again, through the handle
     * that follows repairs; a failure here is left to it). A member of a pack waits if another fetch
     * decodes that pack: that one keeps all the members. */
    index_loc where;
    const index_loc *at = known;
    if (!known) {
        pool_take(c, &ix, &gen);
        if (!ix)
            (void)store_index_open_gen(c->s, POOL_FLAGS, &ix, &gen);
        if (ix && index_find_chunk(ix, digest, &where) >= 0)
            at = &where;
    }
    if (at && at->member) {
        pthread_mutex_lock(&c->lock);
        bool arrived = join_pack_locked(c, &me, at, len, ret, &r);
        pthread_mutex_unlock(&c->lock);
        if (arrived)
            goto land;
    }
    if (!(n = mem_alloc(sizeof(*n) + (size_t)len))) {
        r = -ENOMEM;
        goto land;
    }
    memcpy(n->digest, digest, HASH_LEN);
    n->len = len;
    n->refs = 1;
    fetched = true;
    r = reader_fetch_chunk_rx(c->s, &ix, &gen, POOL_FLAGS, digest, len, known, c->verify, n->data, ret_loc,
                              NULL, insert_sibling, c);
    if (r < 0) {
        free(n);
        n = NULL;
    }
land:
    pool_give(c, ix, gen);
    pthread_mutex_lock(&c->lock);
    land_locked(c, &me);
    c->st.fetches += fetched;
    if (n) {
        /* Another fetch may have brought it all the same: as a member of a pack it did not know the
         * chunk to be in (the index was not at hand), or of another copy of that pack. */
        chunk_ref *e = find_locked(c, digest);
        if (e) {
            r = hit_locked(c, e, len, ret);
            free(n);
        } else {
            insert_locked(c, n);
            *ret = n;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int chunk_get(chunk_cache *c, const uint8_t digest[HASH_LEN], uint64_t len, chunk_ref **ret,
              index_loc *ret_loc)
{
    return get(c, digest, len, NULL, ret, ret_loc);
}

int chunk_get_entry(chunk_cache *c, const streammap *m, size_t i, chunk_ref **ret, index_loc *ret_loc)
{
    return get(c, m->e[i].digest, m->e[i].length, streammap_loc(m, i), ret, ret_loc);
}

void chunk_release(chunk_cache *c, chunk_ref *ref)
{
    if (!ref)
        return;
    pthread_mutex_lock(&c->lock);
    ref->refs--;
    if (ref->refs == 0 && c->bytes > c->capacity)
        evict_locked(c);
    pthread_mutex_unlock(&c->lock);
}

void chunk_cache_get_stats(chunk_cache *c, cache_stats *ret)
{
    pthread_mutex_lock(&c->lock);
    *ret = c->st;
    ret->bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}

chunk_ref *chunk_peek(chunk_cache *c, const uint8_t digest[HASH_LEN], uint64_t len)
{
    pthread_mutex_lock(&c->lock);
    chunk_ref *e = find_locked(c, digest);
    if (e && e->len != len)
        e = NULL;
    if (e)
        e->refs++;
    pthread_mutex_unlock(&c->lock);
    return e;
}

bool cache_range_cached(chunk_cache *c, const streammap *m, uint64_t off, size_t len)
{
    streammap_range rg;
    streammap_range_start(&rg, m, off, len);
    streammap_piece p;
    bool all = true;
    pthread_mutex_lock(&c->lock);
    while (all && streammap_range_next(&rg, &p))
        all = m->e[p.i].hole || find_locked(c, m->e[p.i].digest) != NULL;
    pthread_mutex_unlock(&c->lock);
    return all;
}

int cache_pread(chunk_cache *c, const streammap *m, void *out, size_t len, uint64_t off, size_t *ret_n,
                size_t *ret_bad, index_loc *ret_loc)
{
    uint8_t *dst = out;
    streammap_range rg;
    size_t total = streammap_range_start(&rg, m, off, len);
    streammap_piece p;
    while (streammap_range_next(&rg, &p)) {
        const streammap_entry *e = &m->e[p.i];
        if (e->hole) {
            memset(dst + p.done, 0, p.n);
            continue;
        }
        chunk_ref *ref;
        int r = chunk_get_entry(c, m, p.i, &ref, ret_loc);
        if (r < 0) {
            if (ret_bad)
                *ret_bad = p.i;
            return r;
        }
        memcpy(dst + p.done, ref->data + p.in, p.n);
        chunk_release(c, ref);
    }
    *ret_n = total;
    return 0;
}

static const uint8_t zeros[128 << 10];

/* cache_pread_iov, or with peek cache_peek_iov: a chunk not cached is -EAGAIN instead of fetched. */
static int build_iov(chunk_cache *c, const streammap *m, uint64_t off, size_t len, cache_iov *v, bool peek,
                     size_t *ret_bad, index_loc *ret_loc)
{
    *v = (cache_iov){ 0 };
    streammap_range rg;
    size_t total = streammap_range_start(&rg, m, off, len), cap = 0, nchunks = 0;
    if (!total)
        return 0;
    /* Sized first: a hole takes one vector per 128 KiB of the zero buffer, a chunk one. */
    streammap_piece p;
    while (streammap_range_next(&rg, &p)) {
        bool hole = m->e[p.i].hole;
        cap += hole ? (p.n + sizeof(zeros) - 1) / sizeof(zeros) : 1;
        nchunks += !hole;
    }
    v->iov = mem_calloc(cap, sizeof(*v->iov));
    v->refs = mem_calloc(nchunks, sizeof(*v->refs));
    if (!v->iov || !v->refs) {
        cache_iov_release(c, v);
        return -ENOMEM;
    }
    streammap_range_start(&rg, m, off, len);
    while (streammap_range_next(&rg, &p)) {
        const streammap_entry *e = &m->e[p.i];
        if (e->hole) {
            for (size_t k = 0; k < p.n; k += v->iov[v->n++].iov_len)
                v->iov[v->n] = (struct iovec){ (void *)zeros, MIN(p.n - k, sizeof(zeros)) };
            continue;
        }
        chunk_ref *ref = NULL;
        int r = peek ? ((ref = chunk_peek(c, e->digest, e->length)) ? 0 : -EAGAIN)
                     : chunk_get_entry(c, m, p.i, &ref, ret_loc);
        if (r < 0) {
            if (ret_bad)
                *ret_bad = p.i;
            cache_iov_release(c, v);
            return r;
        }
        v->refs[v->nrefs++] = ref;
        v->iov[v->n++] = (struct iovec){ ref->data + p.in, p.n };
    }
    v->bytes = total;
    return 0;
}

int cache_pread_iov(chunk_cache *c, const streammap *m, uint64_t off, size_t len, cache_iov *v,
                    size_t *ret_bad, index_loc *ret_loc)
{
    return build_iov(c, m, off, len, v, false, ret_bad, ret_loc);
}

int cache_peek_iov(chunk_cache *c, const streammap *m, uint64_t off, size_t len, cache_iov *v)
{
    return build_iov(c, m, off, len, v, true, NULL, NULL);
}

void cache_iov_release(chunk_cache *c, cache_iov *v)
{
    for (size_t i = 0; i < v->nrefs; i++)
        chunk_release(c, v->refs[i]);
    free(v->iov);
    free(v->refs);
    *v = (cache_iov){ 0 };
}

void cache_prefetch(chunk_cache *c, const streammap *m, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < m->n; i++) {
        const streammap_entry *e = &m->e[i];
        if (e->hole || chunk_cached(c, e->digest))
            continue;
        chunk_ref *ref;
        if (chunk_get_entry(c, m, i, &ref, NULL) == 0)
            chunk_release(c, ref);
    }
}

bool cache_plan_readahead(const streammap *m, uint64_t off, size_t n, unsigned window, uint64_t max_bytes,
                          uint64_t *next_off, size_t *ra_upto, size_t *ret_from, size_t *ret_to)
{
    uint64_t end = off + n;
    bool sequential = off == *next_off;
    *next_off = end;
    *ret_from = *ret_to = 0;
    if (sequential && end < m->size && window) {
        size_t first = streammap_find(m, end);
        size_t last = MIN(first + window, m->n);
        /* the entries that start before end + max_bytes, and at least the next one */
        if (max_bytes < m->size - end)
            last = MIN(last, MAX(streammap_find(m, end + max_bytes - (max_bytes > 0)) + 1, first + 1));
        if (*ra_upto < last) {
            *ret_from = MAX(first, *ra_upto);
            *ret_to = last;
            *ra_upto = last;
        }
    }
    return sequential;
}

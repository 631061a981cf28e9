/*
 * prefetch.c — a restore's reads fetched ahead, over several connections. The engine previews each
 * container with the extents it will read from it, in the order it will read them (rh_store_ops.preview,
 * IDedupReadFileCallback::PreviewContainerRead). Those extents are joined where the gap between two is
 * under PREFETCH_GAP (one GET costs a round trip; a few hundred KiB more on the wire cost less), cut into
 * pieces of at most PIECE_MAX, and fetched in that order by worker threads, each with a connection of
 * the client's pool, at most `budget` bytes ahead of the reads. A read that the pieces cover is served
 * from them and frees what it has passed; any other read (a lazy read of a mount, a catalog, a moved
 * record) goes to the server as before. A new preview replaces the last: one restore at a time gets
 * prefetched, a second one running beside it through the same store reads directly.
 *
 * Why threads and easy handles rather than curl's multi interface: each request then goes through the
 * one path that retries, backs off and explains failures (client.c), and the pool already keeps one
 * connection per handle. The threads start with the first preview; a mount never makes any.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "s3/s3.h"

#define PREFETCH_GAP (1u << 20) /* extents closer than this are fetched by one GET, the gap with them */
#define PIECE_MAX (8u << 20)    /* the most one GET fetches */

enum { P_QUEUED, P_FETCHING, P_DONE };

typedef struct piece {
    uint64_t off;
    size_t len;
    uint8_t *buf; /* P_DONE without err: the bytes */
    int err;      /* P_DONE: what s3_get returned */
    int state;
} piece;

struct s3_prefetch {
    s3_client *cl;
    unsigned conns;
    size_t budget;

    pthread_mutex_t mu;
    pthread_cond_t work;  /* workers wait here for a piece to fetch, or for stop */
    pthread_cond_t ready; /* readers wait here for a piece to arrive */
    pthread_t *threads;
    unsigned nthreads;
    bool stop;

    uint64_t gen;  /* which preview the pieces belong to: a fetch of an older one is thrown away */
    char *key;     /* the previewed object, NULL when none */
    piece *pieces; /* in the order the engine will read them */
    size_t npieces;
    size_t first;  /* pieces[0..first) are read and freed */
    size_t next;   /* pieces[next..] are not yet taken by a worker */
    size_t held;   /* bytes of pieces fetching or fetched and not yet freed (any preview) */
};

int s3_prefetch_new(s3_client *cl, unsigned conns, size_t budget, s3_prefetch **ret)
{
    s3_prefetch *p = mem_calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->cl = cl;
    p->conns = conns ? conns : 1;
    p->budget = budget;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->ready, NULL);
    *ret = p;
    return 0;
}

/* Frees the bytes of pieces [from, to) that hold any. Called with mu held. */
static void drop_pieces(s3_prefetch *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        piece *pc = &p->pieces[i];
        if (pc->state == P_DONE && pc->buf) {
            free(pc->buf);
            pc->buf = NULL;
            p->held -= pc->len;
        }
    }
    pthread_cond_broadcast(&p->work);
}

static bool can_take(const s3_prefetch *p)
{
    return p->next < p->npieces && (p->held == 0 || p->held + p->pieces[p->next].len <= p->budget);
}

static void *worker(void *arg)
{
    s3_prefetch *p = arg;
    char key[512];
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !can_take(p))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        size_t i = p->next++;
        piece *pc = &p->pieces[i];
        pc->state = P_FETCHING;
        p->held += pc->len;
        uint64_t gen = p->gen, off = pc->off;
        size_t len = pc->len;
        snprintf(key, sizeof(key), "%s", p->key);
        pthread_mutex_unlock(&p->mu);

        uint8_t *buf = malloc(len);
        int err = buf ? s3_get(p->cl, key, off, buf, len) : -ENOMEM;
        if (err < 0) {
            free(buf);
            buf = NULL;
        }

        pthread_mutex_lock(&p->mu);
        if (gen == p->gen) {
            pc = &p->pieces[i];
            pc->err = err;
            pc->state = P_DONE;
            if (i >= p->first) /* else the reads have passed it: nobody will want it */
                pc->buf = buf, buf = NULL;
        }
        if (buf || err < 0) /* not kept: a newer preview replaced this one, or it was passed, or failed */
            p->held -= len;
        free(buf);
        pthread_cond_broadcast(&p->ready);
        pthread_cond_broadcast(&p->work);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts the workers, once. Called with mu held. Returns 0, or a negative code when none would start. */
static int start_workers(s3_prefetch *p)
{
    if (p->threads)
        return 0;
    p->threads = mem_calloc(p->conns, sizeof(*p->threads));
    if (!p->threads)
        return -ENOMEM;
    for (unsigned i = 0; i < p->conns; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        free(p->threads);
        p->threads = NULL;
        return -EAGAIN;
    }
    return 0;
}

int s3_prefetch_plan(s3_prefetch *p, const char *key, size_t n, const rh_extent *ext)
{
    /* The pieces: extents joined across small gaps, cut at PIECE_MAX, in the engine's order. */
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += ext[i].length / PIECE_MAX + 1;
    piece *pcs = cap ? mem_calloc(cap, sizeof(*pcs)) : NULL;
    char *k = strdup(key);
    if ((cap && !pcs) || !k || strlen(key) >= 512) {
        free(pcs);
        free(k);
        return 0; /* only a hint: the reads go to the server */
    }
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = ext[i].offset, end = ext[i].offset + ext[i].length;
        if (ext[i].length == 0)
            continue;
        piece *last = np ? &pcs[np - 1] : NULL;
        if (last && off >= last->off + last->len && off - (last->off + last->len) < PREFETCH_GAP &&
            end - last->off <= PIECE_MAX) {
            last->len = end - last->off;
            continue;
        }
        while (off < end) {
            size_t len = end - off < PIECE_MAX ? end - off : PIECE_MAX;
            pcs[np++] = (piece){ .off = off, .len = len };
            off += len;
        }
    }

    pthread_mutex_lock(&p->mu);
    if (p->pieces)
        drop_pieces(p, p->first, p->next);
    free(p->pieces);
    free(p->key);
    p->gen++;
    p->pieces = pcs;
    p->npieces = np;
    p->key = k;
    p->first = p->next = 0;
    if (np && start_workers(p) < 0)
        p->npieces = 0; /* no threads: the reads go to the server */
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->ready);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* The piece at or after p->first that holds byte `at`, or npieces. Called with mu held. */
static size_t find_piece(const s3_prefetch *p, size_t from, uint64_t at)
{
    for (size_t i = from; i < p->npieces; i++)
        if (p->pieces[i].off <= at && at - p->pieces[i].off < p->pieces[i].len)
            return i;
    return p->npieces;
}

int s3_prefetch_read(s3_prefetch *p, const char *key, uint64_t off, void *buf, size_t len)
{
    pthread_mutex_lock(&p->mu);
    size_t j = p->key && strcmp(key, p->key) == 0 ? find_piece(p, p->first, off) : p->npieces;
    /* Served only when consecutive pieces cover all of [off, off + len). */
    uint64_t at = off, end = off + len;
    size_t k = j;
    while (j < p->npieces && at < end) {
        if (k == p->npieces || !(p->pieces[k].off <= at && at - p->pieces[k].off < p->pieces[k].len)) {
            j = p->npieces;
            break;
        }
        at = p->pieces[k].off + p->pieces[k].len;
        k++;
    }
    if (j >= p->npieces || len == 0) {
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    /* The engine reads in the order it previewed: the pieces before this one will not be read. */
    drop_pieces(p, p->first, j);
    p->first = j;

    uint64_t gen = p->gen;
    int r = 1;
    uint8_t *to = buf;
    for (at = off; at < end && r == 1; j++) {
        while (p->gen == gen && p->pieces[j].state != P_DONE)
            pthread_cond_wait(&p->ready, &p->mu);
        if (p->gen != gen) {
            r = 0; /* replaced while we waited: read it from the server */
            break;
        }
        piece *pc = &p->pieces[j];
        if (pc->err < 0) {
            r = pc->err;
            break;
        }
        size_t from = at - pc->off;
        size_t n = pc->len - from < end - at ? pc->len - from : end - at;
        memcpy(to, pc->buf + from, n);
        to += n;
        at += n;
        if (from + n == pc->len) {
            drop_pieces(p, j, j + 1);
            p->first = j + 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

void s3_prefetch_free(s3_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->pieces)
        drop_pieces(p, 0, p->npieces);
    free(p->threads);
    free(p->pieces);
    free(p->key);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

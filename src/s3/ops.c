/*
 * ops.c — the callbacks of a store on S3 (rh_store_ops): a read is a ranged GET of the store file's
 * object, a listing a ListObjectsV2 of its directory. rh_store_open uses them for an "s3:" path; the
 * engine above them is the one that reads any store through callbacks. See s3.h.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "s3/s3.h"

#define CONNECTIONS_DEFAULT 5          /* GETs a restore keeps going (REHYDRATE_S3_CONNECTIONS): restic's */
#define PREFETCH_BUDGET (64u << 20)     /* bytes a restore's reads are fetched ahead, at most */
#define BLOCK_SIZE (1u << 20)           /* a mount's small reads of containers fetch this much */
#define BLOCK_COUNT 32                  /* blocks kept */

typedef struct s3_store {
    s3_client *cl;
    s3_prefetch *pf;
    s3_blocks *blocks;
} s3_store;

static int s3_read(void *ctx, const char *path, uint64_t offset, void *buf, size_t size)
{
    s3_store *st = ctx;
    int r = s3_prefetch_read(st->pf, path, offset, buf, size);
    if (r != 0)
        return r < 0 ? r : 0;
    if (s3_blocks_wants(st->blocks, path, size))
        return s3_blocks_read(st->blocks, path, offset, buf, size);
    return s3_get(st->cl, path, offset, buf, size);
}

/* PreviewContainerRead: fetch what the engine will read of this container, several GETs at a time. */
static int s3_preview(void *ctx, const char *path, size_t n, const rh_extent *extents)
{
    return s3_prefetch_plan(((s3_store *)ctx)->pf, path, n, extents);
}

struct list_dir {
    size_t skip; /* "DIR/" */
    int (*visit)(void *ud, const char *name);
    void *ud;
};

static int visit_entry(void *ud, const char *key, uint64_t size)
{
    (void)size;
    struct list_dir *ld = ud;
    const char *name = key + ld->skip;
    if (!*name || strchr(name, '/'))
        return 0; /* in a deeper "directory" */
    return ld->visit(ld->ud, name);
}

static int s3_list_dir(void *ctx, const char *dir, int (*visit)(void *ud, const char *name), void *ud)
{
    char prefix[256];
    if ((size_t)snprintf(prefix, sizeof(prefix), "%s/", dir) >= sizeof(prefix))
        return -ENAMETOOLONG;
    struct list_dir ld = { strlen(prefix), visit, ud };
    /* A missing bucket is an error (-ENOENT); a "directory" without objects lists nothing. */
    return s3_list(((s3_store *)ctx)->cl, prefix, visit_entry, &ld);
}

static const rh_store_ops s3_ops = {
    .version = RH_STORE_OPS_VERSION,
    .read = s3_read,
    .preview = s3_preview,
    .list = s3_list_dir,
};

int s3_store_open(const char *url, const rh_store_ops **ret_ops, void **ret_ctx, char *err, size_t errlen)
{
    s3_config c;
    int r = s3_config_from_url(url, &c, err, errlen);
    if (r < 0)
        return r;
    s3_store *st = mem_calloc(1, sizeof(*st));
    if (!st || (r = s3_client_new(&c, &st->cl)) < 0 ||
        s3_prefetch_new(st->cl, s3_env_unsigned("REHYDRATE_S3_CONNECTIONS", CONNECTIONS_DEFAULT, 1, 64),
                        PREFETCH_BUDGET, &st->pf) < 0 ||
        s3_blocks_new(st->cl, BLOCK_SIZE, BLOCK_COUNT, &st->blocks) < 0) {
        s3_config_free(&c);
        if (st) {
            s3_prefetch_free(st->pf);
            s3_client_free(st->cl);
        }
        free(st);
        snprintf(err, errlen, "%s: out of memory", url);
        return -ENOMEM;
    }
    *ret_ops = &s3_ops;
    *ret_ctx = st;
    return 0;
}

void s3_store_close(void *ctx)
{
    s3_store *st = ctx;
    if (!st)
        return;
    s3_prefetch_free(st->pf); /* first: its threads use the client */
    s3_blocks_free(st->blocks);
    s3_client_free(st->cl);
    free(st);
}

void s3_store_set_log(void *ctx, s3_log_fn log, void *ud) { s3_client_set_log(((s3_store *)ctx)->cl, log, ud); }

s3_client *s3_store_client(void *ctx) { return ((s3_store *)ctx)->cl; }

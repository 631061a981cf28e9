/*
 * catalog_walk.c — the children of one catalog directory, walked in name order (catalog_walk_dir): the
 * paging through catalog_readdir and the rule for children that cannot be read, written once for every
 * reader that lists a directory (rehydrate ls, verify, restore's layout, rehydratefs's readdir). Built
 * on the public reader only (catalog.h), so it sits above catalog_read.c.
 *
 * Pages grow: the first holds WALK_FIRST_PAGE children, so that a caller that stops early (a FUSE
 * readdir whose reply is full) decodes little; the next ones WALK_PAGE, which bounds what a walk holds
 * per directory level while a caller descends.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "snapshot/catalog.h"

#define WALK_FIRST_PAGE 256
#define WALK_PAGE 1024

int catalog_walk_dir(catalog *c, uint64_t dir, uint64_t start, const catalog_walk_ops *ops, void *ctx)
{
    if (!c || !ops || !ops->child)
        return -EINVAL;
    int r = 0;
    for (size_t page = WALK_FIRST_PAGE; r == 0; page = WALK_PAGE) {
        catalog_entry *ents;
        size_t n;
        if ((r = catalog_readdir(c, dir, start, page, &ents, &n)) < 0)
            return r;
        for (size_t i = 0; i < n && r == 0; i++) {
            const catalog_entry *e = &ents[i];
            if (!e->damage)
                r = ops->child(ctx, start + i, e);
            else if (ops->damaged)
                r = ops->damaged(ctx, start + i, e);
        }
        for (size_t i = 0; i < n; i++)
            catalog_entry_clear(&ents[i]);
        free(ents);
        if (n < page)
            break;
        start += n;
    }
    return r;
}

/*
 * cmd-snapshots.c — rehydrate snapshots STORE: one line per snapshot, oldest first.
 */
#include "config.h"

#include <getopt.h>

#include "cli/cli.h"
#include "common/util.h"
#include "snapshot/catalog.h"

typedef struct row {
    char *name;
    catalog *c;
} row;

static int cmp_row(const void *a, const void *b)
{
    const row *x = a, *y = b;
    uint64_t tx = catalog_get_meta(x->c)->created_ns, ty = catalog_get_meta(y->c)->created_ns;
    return tx < ty ? -1 : tx > ty ? 1 : strcmp(x->name, y->name);
}

int cmd_snapshots(int argc, char **argv)
{
    bool json = false;
    int st = cli_parse_plain(argc, argv, "snapshots", "  --json   one JSON array of objects\n", &json);
    if (st >= 0)
        return st;
    if (argc - optind != 1)
        return cli_usage("snapshots", "expected exactly one operand, the store path");
    rh_store *s;
    if (cli_open_store(argv[optind], &s) < 0)
        return EXIT_FAIL;
    char **names;
    size_t n;
    int r = store_list_snapshots(s, &names, &n);
    if (r < 0) {
        cli_error("%s: cannot list snapshots: %s", cli_quote(s->path), rh_strerror(r));
        rh_store_close(s);
        return EXIT_FAIL;
    }
    row *rows = xcalloc(n, sizeof(*rows));
    size_t m = 0;
    int status = EXIT_OK;
    /* A catalog that cannot be opened is still listed (last, by name), so that it is not lost from
     * sight: its header is beyond repair, and verify says what is damaged. */
    char **broken = xcalloc(n ? n : 1, sizeof(*broken));
    size_t nbroken = 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_(freep) char *path = store_snapshot_path(names[i]);
        char why[CATALOG_WHY_MAX];
        r = catalog_open_why(s->ops, s->ctx, path, &rows[m].c, why);
        if (r < 0) {
            cli_error("%s: cannot be opened: %s", path, *why ? why : rh_strerror(r));
            broken[nbroken++] = names[i];
            status = EXIT_FAIL;
            continue;
        }
        rows[m++].name = names[i];
    }
    sort_array(rows, m, sizeof(*rows), cmp_row);
    if (json)
        printf("[");
    else if (m || nbroken)
        printf("%-24s %-19s %10s %10s  %s\n", "NAME", "CREATED", "FILES", "SIZE", "SOURCE");
    for (size_t i = 0; i < m; i++) {
        const catalog_meta *meta = catalog_get_meta(rows[i].c);
        char t[32], sz[16];
        cli_time((int64_t)meta->created_ns, t);
        if (json) {
            printf("%s{\"name\":", i ? "," : "");
            cli_put_json(stdout, rows[i].name, strlen(rows[i].name));
            printf(",\"created_ns\":%llu,\"files\":%llu,\"bytes\":%llu,\"entries\":%llu,\"partial\":%s,"
                   "\"source\":",
                   (unsigned long long)meta->created_ns, (unsigned long long)meta->files,
                   (unsigned long long)meta->bytes, (unsigned long long)meta->entry_count,
                   meta->flags & CATALOG_PARTIAL ? "true" : "false");
            cli_put_json(stdout, meta->source, strlen(meta->source));
            printf(",\"hostname\":");
            cli_put_json(stdout, meta->hostname, strlen(meta->hostname));
            printf("}");
        } else {
            printf("%-24s %-19s %10llu %10s  ", rows[i].name, t, (unsigned long long)meta->files,
                   fmt_bytes(meta->bytes, sz));
            cli_put_name(stdout, meta->source, strlen(meta->source));
            printf("%s\n", meta->flags & CATALOG_PARTIAL ? " (partial)" : "");
        }
        catalog_close(rows[i].c);
    }
    for (size_t i = 0; i < nbroken; i++) {
        if (json) {
            printf("%s{\"name\":", m + i ? "," : "");
            cli_put_json(stdout, broken[i], strlen(broken[i]));
            printf(",\"damaged\":true}");
        } else {
            printf("%-24s %-19s %10s %10s  (damaged: its catalog cannot be opened)\n", broken[i], "?", "?", "?");
        }
    }
    free(broken);
    if (json)
        printf("]\n");
    free(rows);
    store_free_names(names, n);
    rh_store_close(s);
    return status;
}

/*
 * cmd-reindex.c — rehydrate reindex STORE: rebuild index.db from the containers, locally or on object
 * storage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>

#include "cli/cli.h"
#include "common/util.h"

/* On object storage the lock is an object and the new index.db goes up by one PUT (store/remote.c). */
static int reindex_remote(rh_store *s)
{
    uint64_t chunks = 0, streams = 0;
    double t0 = mono_seconds();
    int r = store_remote_reindex(s, &chunks, &streams);
    if (r < 0)
        cli_error("%s: cannot rebuild the index: %s", cli_quote(s->path),
                  r == -EBUSY ? "another backup or reindex holds the store's lock" : rh_strerror(r));
    else
        printf("rebuilt %s/%s: %llu chunks, %llu stream maps in %.2f s\n", s->path, STORE_INDEX_FILE,
               (unsigned long long)chunks, (unsigned long long)streams, mono_seconds() - t0);
    rh_store_close(s);
    return r < 0 ? EXIT_FAIL : EXIT_OK;
}

int cmd_reindex(int argc, char **argv)
{
    int st = cli_parse_plain(argc, argv, "reindex", "", NULL);
    if (st >= 0)
        return st;
    if (argc - optind != 1)
        return cli_usage("reindex", "expected exactly one operand, the store path");
    rh_store *s;
    if (cli_open_store(argv[optind], &s) < 0)
        return EXIT_FAIL;
    if (s->s3)
        return reindex_remote(s);
    int lockfd = -1;
    int r = store_lock(s, &lockfd);
    if (r < 0) {
        cli_error("%s: %s", cli_quote(s->path),
                  r == -EBUSY ? "another backup or reindex is running" : rh_strerror(r));
        rh_store_close(s);
        return EXIT_FAIL;
    }
    /* Under the lock, every temp container or catalog is a crashed backup's. */
    if ((r = store_remove_stale_temps(s, NULL)) < 0)
        cli_error("%s: cannot remove stale temp files: %s", cli_quote(s->path), rh_strerror(r));
    char *path = store_index_path(s);
    uint64_t chunks = 0, streams = 0;
    double t0 = mono_seconds();
    r = store_reindex(s, path, &chunks, &streams);
    if (r < 0)
        cli_error("%s: cannot rebuild the index: %s", cli_quote(path), rh_strerror(r));
    else
        printf("rebuilt %s: %llu chunks, %llu stream maps in %.2f s\n", path, (unsigned long long)chunks,
               (unsigned long long)streams, mono_seconds() - t0);
    free(path);
    close(lockfd);
    rh_store_close(s);
    return r < 0 ? EXIT_FAIL : EXIT_OK;
}

/*
 * cmd-init.c — rehydrate init STORE: create an empty store.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"

int cmd_init(int argc, char **argv)
{
    int st = cli_parse_plain(argc, argv, "init", "", NULL);
    if (st >= 0)
        return st;
    if (argc - optind != 1)
        return cli_usage("init", "expected exactly one operand, the store path");
    const char *path = argv[optind];
    store_config cfg;
    store_config_default(&cfg);
    int r = store_create(path, &cfg);
    if (r < 0) {
        cli_error("%s: cannot create store: %s", cli_quote(path),
                  r == RH_EEXIST     ? "a store already exists there"
                  : r == -ENOTEMPTY ? "the directory is not empty"
                                    : rh_strerror(r));
        return EXIT_FAIL;
    }
    printf("created store %s\n", path);
    return EXIT_OK;
}

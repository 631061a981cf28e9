/*
 * cmd-init.c — rehydrate init STORE [--format N]: create an empty store.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "s3/s3.h"

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        { "format", required_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' }, { 0 }
    };
    store_config cfg;
    store_config_default(&cfg);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'f') {
            uint64_t v;
            if (parse_u64(optarg, &v) < 0 || v < STORE_FORMAT_MIN || v > STORE_FORMAT_VERSION)
                return cli_usage("init", "--format takes %d or %d", STORE_FORMAT_MIN, STORE_FORMAT_VERSION);
            cfg.version = (uint32_t)v;
        } else if (c == 'h') {
            cli_help("init", "  --format N         store format: 2 (default) compresses neighbouring chunks\n"
                             "                     together in packs; 1 stores every chunk alone (the only\n"
                             "                     format rehydrate 0.1 reads)\n");
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage("init", "expected exactly one operand, the store path");
    const char *path = argv[optind];
    bool s3 = s3_is_url(path);
    int r = s3 ? store_create_remote(path, &cfg, cli_log, NULL) : store_create(path, &cfg);
    if (r < 0) {
        cli_error("%s: cannot create store: %s", cli_quote(path),
                  r == RH_EEXIST     ? "a store already exists there"
                  : r == -ENOTEMPTY ? (s3 ? "the bucket holds other objects under that prefix"
                                          : "the directory is not empty")
                                    : rh_strerror(r));
        return EXIT_FAIL;
    }
    printf("created store %s\n", path);
    return EXIT_OK;
}

/*
 * cmd-mount.c — rehydrate mount STORE MOUNTPOINT [rehydratefs options]: runs the rehydratefs daemon,
 * preferring the one installed beside this binary.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>

#include "cli/cli.h"
#include "common/util.h"

int cmd_mount(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        cli_help("mount", "  any option of rehydratefs(8): -f, -d, -o snapshot=NAME, -o cache_size=SIZE, ...\n");
        return EXIT_OK;
    }
    if (argc < 3)
        return cli_usage("mount", "expected the store and a mount point");
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *prog = NULL;
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        prog = xasprintf("%.*s/rehydratefs", (int)(slash - self), self);
        if (access(prog, X_OK) != 0) {
            free(prog);
            prog = NULL;
        }
    }
    char **args = xcalloc((size_t)argc + 1, sizeof(*args));
    args[0] = (char *)"rehydratefs";
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    if (prog)
        execv(prog, args);
    else
        execvp("rehydratefs", args);
    cli_error("cannot run rehydratefs: %s", strerror(errno));
    free(args);
    free(prog);
    return EXIT_FAIL;
}

/*
 * cmd-mount.c — rehydrate mount STORE MOUNTPOINT [rehydratefs options]: runs the rehydratefs daemon,
 * preferring the one installed beside this binary, once the mount point is known to be a directory.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/util.h"

/*
 * The mount point among rehydratefs's arguments: the second operand. Options are skipped, "-o" with
 * its value; "--" ends the options. NULL when there is none.
 */
static const char *mount_point(int argc, char **argv)
{
    int operands = 0;
    bool opts = true;
    for (int i = 1; i < argc; i++) {
        if (opts && !strcmp(argv[i], "--")) {
            opts = false;
        } else if (opts && argv[i][0] == '-' && argv[i][1]) {
            if (!strcmp(argv[i], "-o"))
                i++;
        } else if (++operands == 2) {
            return argv[i];
        }
    }
    return NULL;
}

/* A FUSE mount on a regular file succeeds and leaves the file unusable: only a directory will do. */
static int check_mount_point(const char *mp)
{
    struct stat st;
    if (stat(mp, &st) < 0)
        return cli_usage("mount", "%s: %s", cli_quote(mp), strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cli_usage("mount", "%s: the mount point is not a directory", cli_quote(mp));
    return EXIT_OK;
}

int cmd_mount(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        cli_help("mount", "  any option of rehydratefs(8): -f, -d, -o snapshot=NAME, -o cache_size=SIZE, ...\n");
        return EXIT_OK;
    }
    const char *mp = mount_point(argc, argv);
    if (!mp)
        return cli_usage("mount", "expected the store and a mount point");
    int st = check_mount_point(mp);
    if (st != EXIT_OK)
        return st;
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

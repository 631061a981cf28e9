/*
 * main.c — the rehydrate command: finds the command in the table and runs it. Every command takes the
 * store as its first operand.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

const cli_command cli_commands[] = {
    { "init", cmd_init, "STORE", "Create an empty store." },
    { "backup", cmd_backup, "STORE SRC [--name NAME] [--compression N] [--no-parent] [--json] [-q]",
      "Back the directory SRC up into STORE as a new snapshot (STORE is created if missing)." },
    { "snapshots", cmd_snapshots, "STORE [--json]", "List the snapshots of STORE." },
    { "ls", cmd_ls, "STORE SNAPSHOT[:PATH] [-l] [-R] [--json]",
      "List a directory of a snapshot (SNAPSHOT is a name or 'latest')." },
    { "verify", cmd_verify, "STORE [--json] | CHUNKSTORE.ddp [--volume VOL] [--json]",
      "Check every record, chunk, stream map and catalog; name what is damaged and which files it affects." },
    { "restore", cmd_restore, "STORE SNAPSHOT TARGET [PATH...] [--stubs-only | --resume] [--force] [--json]",
      "Restore a snapshot, or the subtrees PATH... of it, into TARGET (stubs first, then data, then metadata)." },
    { "mount", cmd_mount, "STORE MOUNTPOINT [-f] [-o OPTIONS]",
      "Mount STORE read-only at MOUNTPOINT with rehydratefs(8): browse with ls, restore with cp." },
    { "reindex", cmd_reindex, "STORE", "Rebuild the chunk index (index.db) from the containers." },
    { NULL, NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: rehydrate COMMAND STORE [ARGS...]\n\ncommands:\n");
    for (const cli_command *c = cli_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nrehydrate COMMAND --help shows the options of a command; man rehydrate(1) has more.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("rehydrate %s (store format %d)\n", rh_version(), STORE_FORMAT_VERSION);
        return EXIT_OK;
    }
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, argv[1]))
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "rehydrate: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}

/*
 * cli.h — what the commands of the rehydrate CLI share: the command table, error output, name quoting,
 * JSON strings, and opening a store with a clear message.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 partial success (some files could not be read or
 * restored; each was named on stderr).
 */
#ifndef RH_CLI_CLI_H
#define RH_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3 };

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *args;    /* e.g. "STORE SRC [--name NAME]" */
    const char *summary; /* one line */
} cli_command;

int cmd_init(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_snapshots(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_mount(int argc, char **argv);

/* "rehydrate: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error for command `cmd`: prints the message and its usage line; returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage line and the option help of a command when it gets --help. */
void cli_help(const char *cmd, const char *options);

/*
 * Parses the options of a command that has only --help (and, when json is not NULL, --json). Returns
 * -1 when the command should go on (optind then indexes its operands), or the exit status to return.
 */
int cli_parse_plain(int argc, char **argv, const char *cmd, const char *help, bool *json);

/* Writes a file name so that a person can read it: printable bytes as they are, others as C escapes
 * (\n, \t, \xHH). Used for messages and for listings on a terminal. */
void cli_put_name(FILE *f, const char *s, size_t n);
/* Same into a static buffer (for messages); valid until the fourth call after this one. */
const char *cli_quote(const char *s);
/* A JSON string literal. Bytes that are not valid UTF-8 become \udcXX (the surrogate escape of Python's
 * os.fsdecode, so scripts can recover the exact bytes). */
void cli_put_json(FILE *f, const char *s, size_t n);
/* The library's log function for the CLI (rh_store_set_log): repairs and warnings as "rehydrate: MSG"
 * on stderr; a failed file's detail is left to the command, which names the file itself. */
void cli_log(void *ud, int level, const char *msg);
/* Opens a store with cli_log as its log, printing "rehydrate: STORE: why" on failure. */
int cli_open_store(const char *path, rh_store **ret);
/* Formats ns since the epoch as local "YYYY-MM-DD HH:MM:SS". */
const char *cli_time(int64_t ns, char out[32]);

#endif

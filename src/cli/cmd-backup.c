/*
 * cmd-backup.c — rehydrate backup STORE SRC: make a snapshot. Creates the store when STORE does not
 * exist. Shows a progress line on a terminal and a summary at the end (or JSON with --json).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "backup/backup.h"
#include "cli/cli.h"
#include "common/util.h"
#include "compress/compress.h"
#include "s3/s3.h"

typedef struct ui {
    bool tty, quiet, json;
    bool line_shown;
} ui;

static void on_warn(void *ud, const char *path, int code, const char *what)
{
    ui *u = ud;
    if (u->line_shown) {
        fputs("\r\033[K", stderr);
        u->line_shown = false;
    }
    fputs("rehydrate: ", stderr);
    cli_put_name(stderr, path, strlen(path));
    fprintf(stderr, ": %s: %s\n", what, rh_strerror(code));
}

static void on_note(const char *msg) { fprintf(stderr, "rehydrate: %s\n", msg); }

static void on_progress(void *ud, const backup_stats *st, bool final)
{
    ui *u = ud;
    if (!u->tty || u->quiet)
        return;
    char a[16], b[16], c[16], d[16];
    double rate = st->seconds > 0 ? (double)st->bytes / st->seconds : 0;
    fprintf(stderr, "\r\033[K%llu files, %s, %s/s, new %s, deduplicated %s",
            (unsigned long long)st->files, fmt_bytes(st->bytes, a), fmt_bytes((uint64_t)rate, b),
            fmt_bytes(st->new_bytes, c), fmt_bytes(st->dedup_bytes + st->reused_files, d));
    u->line_shown = !final;
    if (final)
        fputs("\r\033[K", stderr);
}

static void print_json(const backup_stats *st)
{
    printf("{\"snapshot\":");
    cli_put_json(stdout, st->name, strlen(st->name));
    printf(",\"parent\":");
    if (st->parent[0])
        cli_put_json(stdout, st->parent, strlen(st->parent));
    else
        printf("null");
    printf(",\"files\":%llu,\"dirs\":%llu,\"others\":%llu,\"bytes\":%llu,\"read_bytes\":%llu,"
           "\"reused_files\":%llu,\"new_chunks\":%llu,\"new_bytes\":%llu,\"dedup_bytes\":%llu,"
           "\"stored_bytes\":%llu,\"hole_bytes\":%llu,\"errors\":%llu,\"partial\":%s,\"seconds\":%.3f}\n",
           (unsigned long long)st->files, (unsigned long long)st->dirs, (unsigned long long)st->others,
           (unsigned long long)st->bytes, (unsigned long long)st->read_bytes,
           (unsigned long long)st->reused_files, (unsigned long long)st->new_chunks,
           (unsigned long long)st->new_bytes, (unsigned long long)st->dedup_bytes,
           (unsigned long long)st->stored_bytes, (unsigned long long)st->hole_bytes,
           (unsigned long long)st->errors, st->partial ? "true" : "false", st->seconds);
}

static void print_summary(const backup_stats *st)
{
    char a[16], b[16], c[16], d[16], e[16];
    printf("snapshot %s%s saved", st->name, st->partial ? " (partial)" : "");
    if (st->parent[0])
        printf(" (parent %s)", st->parent);
    printf("\n  %llu files, %llu directories, %llu other entries, %s\n", (unsigned long long)st->files,
           (unsigned long long)st->dirs, (unsigned long long)st->others, fmt_bytes(st->bytes, a));
    printf("  unchanged files reused: %llu; read %s\n", (unsigned long long)st->reused_files,
           fmt_bytes(st->read_bytes, b));
    printf("  new data: %s in %llu chunks, stored as %s; deduplicated %s; holes %s\n",
           fmt_bytes(st->new_bytes, c), (unsigned long long)st->new_chunks, fmt_bytes(st->stored_bytes, d),
           fmt_bytes(st->dedup_bytes, e), fmt_bytes(st->hole_bytes, a));
    double rate = st->seconds > 0 ? (double)st->bytes / st->seconds : 0;
    printf("  %.2f s, %s/s\n", st->seconds, fmt_bytes((uint64_t)rate, b));
    if (st->errors)
        printf("  %llu entries could not be read (named above)\n", (unsigned long long)st->errors);
}

int cmd_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },     { "compression", required_argument, NULL, 'c' },
        { "no-parent", no_argument, NULL, 'P' },      { "json", no_argument, NULL, 'j' },
        { "quiet", no_argument, NULL, 'q' },          { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    backup_options o = { .compression_level = -1 };
    ui u = { .tty = isatty(2) };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:c:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o.name = optarg;
            if (!store_snapshot_name_ok(optarg))
                return cli_usage("backup", "invalid snapshot name '%s' (no '/', no control characters, "
                                           "not starting with '.', not 'latest')", cli_quote(optarg));
            break;
        case 'c': {
            uint64_t l;
            if (parse_u64(optarg, &l) < 0 || l > INT_MAX || !compress_level_valid((int)l))
                return cli_usage("backup", "--compression %s: expected a zstd level from 0 (none) to 19",
                                 cli_quote(optarg));
            o.compression_level = (int)l;
            break;
        }
        case 'P':
            o.no_parent = true;
            break;
        case 'j':
            u.json = true;
            break;
        case 'q':
            u.quiet = true;
            break;
        case 'h':
            cli_help("backup", "  --name NAME        the snapshot's name (default: the UTC time)\n"
                               "  --compression N    zstd level, 0 (store raw) to 19 (default: the store's, 3)\n"
                               "  --no-parent        read every file, even those unchanged since the last backup\n"
                               "  --json             print the summary as JSON\n"
                               "  -q, --quiet        no progress line and no summary\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 2)
        return cli_usage("backup", "expected two operands, the store and the source directory");
    const char *store = argv[optind], *src = argv[optind + 1];
    struct stat st;
    if (stat(src, &st) < 0) {
        cli_error("%s: cannot back up: %s", cli_quote(src), strerror(errno));
        return EXIT_FAIL;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_error("%s: cannot back up: not a directory", cli_quote(src));
        return EXIT_FAIL;
    }
    if (s3_is_url(store)) {
        /* On object storage: made unless the prefix holds one already. */
        store_config cfg;
        store_config_default(&cfg);
        int r = store_create_remote(store, &cfg, cli_log, NULL);
        if (r < 0 && r != RH_EEXIST) {
            cli_error("%s: %s", cli_quote(store),
                      r == -ENOTEMPTY ? "not a store, and the bucket holds other objects under that prefix"
                                      : rh_strerror(r));
            return EXIT_FAIL;
        }
        if (r == 0 && !u.quiet && !u.json)
            printf("created store %s\n", store);
    } else if (!store_exists(store)) {
        struct stat sst;
        if (stat(store, &sst) == 0 && !S_ISDIR(sst.st_mode)) {
            cli_error("%s: not a store (it is not a directory)", cli_quote(store));
            return EXIT_FAIL;
        }
        store_config cfg;
        store_config_default(&cfg);
        int r = store_create(store, &cfg);
        bool made = r == 0;
        /* Another backup may be creating the store right now: wait for it, then back up into it. */
        if (r == -ENOTEMPTY)
            r = store_await_creation(store, 30000);
        if (r == RH_EEXIST)
            r = 0;
        if (r == -EBUSY) {
            cli_error("%s: another backup is creating a store there and has not finished in 30 s",
                      cli_quote(store));
            return EXIT_FAIL;
        }
        if (r < 0) {
            cli_error("%s: not a store, and cannot create one there: %s", cli_quote(store),
                      r == -ENOTEMPTY ? "the directory is not empty" : rh_strerror(r));
            return EXIT_FAIL;
        }
        if (made && !u.quiet && !u.json)
            printf("created store %s\n", store);
    }
    rh_store *s;
    if (cli_open_store(store, &s) < 0)
        return EXIT_FAIL;
    o.warn = on_warn;
    o.progress = on_progress;
    o.note = on_note;
    o.ud = &u;
    backup_stats bs;
    int r = backup_run(s, src, &o, &bs);
    rh_store_close(s);
    if (r < 0) {
        if (r == RH_EEXIST)
            cli_error("%s: a snapshot named '%s' already exists", cli_quote(store), cli_quote(bs.name));
        else if (r == -EBUSY)
            cli_error("%s: another backup is running on this store%s", cli_quote(store),
                      s3_is_url(store) ? " (see its lock above)" : "");
        else
            cli_error("%s: backup of %s failed: %s (no snapshot was written)", cli_quote(store), src,
                      rh_strerror(r));
        return EXIT_FAIL;
    }
    if (u.json)
        print_json(&bs);
    else if (!u.quiet)
        print_summary(&bs);
    return bs.partial ? EXIT_PARTIAL : EXIT_OK;
}

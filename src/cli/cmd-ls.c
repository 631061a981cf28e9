/*
 * cmd-ls.c — rehydrate ls STORE SNAPSHOT[:PATH] [-l] [-R] [--json]: list a directory of a snapshot (or
 * show one entry when PATH names a file). It reads only the directories it lists, never the whole
 * catalog. Names are printed with C escapes for unprintable bytes; --json gives the exact bytes.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "cli/cli.h"
#include "common/util.h"
#include "snapshot/catalog.h"

typedef struct lsopt {
    bool longfmt, recursive, json;
    size_t printed;
    const char *snap;
    const char *top;  /* the PATH operand: what -R paths are relative to */
    size_t damaged;   /* entries that could not be listed (each named on stderr): exit status 3 */
} lsopt;

static void mode_string(const catalog_entry *e, char out[11])
{
    static const char types[] = "?-dlcbps";
    uint32_t m = e->mode;
    out[0] = e->type < sizeof(types) - 1 ? types[e->type] : '?';
    const char *rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        out[1 + i] = (m & (1u << (8 - i))) ? rwx[i] : '-';
    if (m & S_ISUID)
        out[3] = (m & S_IXUSR) ? 's' : 'S';
    if (m & S_ISGID)
        out[6] = (m & S_IXGRP) ? 's' : 'S';
    if (m & S_ISVTX)
        out[9] = (m & S_IXOTH) ? 't' : 'T';
    out[10] = 0;
}

static void print_entry(lsopt *o, const catalog_entry *e, const char *path)
{
    if (o->json) {
        static const char *tn[] = { "?", "file", "dir", "symlink", "chr", "blk", "fifo", "socket" };
        printf("%s{\"path\":", o->printed++ ? ",\n" : "");
        cli_put_json(stdout, path, strlen(path));
        printf(",\"type\":\"%s\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%llu,\"mtime_ns\":%lld,"
               "\"nlink\":%u",
               e->type < 8 ? tn[e->type] : "?", e->mode & 07777, e->uid, e->gid,
               (unsigned long long)e->size, (long long)e->mtime_ns, e->nlink);
        if (e->target) {
            printf(",\"target\":");
            cli_put_json(stdout, (char *)e->target, e->target_len);
        }
        printf("}");
        return;
    }
    if (o->longfmt) {
        char m[11], t[32];
        mode_string(e, m);
        struct passwd *pw = getpwuid(e->uid);
        struct group *gr = getgrgid(e->gid);
        char u[16], g[16];
        snprintf(u, sizeof(u), "%u", e->uid);
        snprintf(g, sizeof(g), "%u", e->gid);
        printf("%s %3u %-8s %-8s ", m, e->nlink, pw ? pw->pw_name : u, gr ? gr->gr_name : g);
        if (e->type == CT_CHR || e->type == CT_BLK)
            printf("%4u, %4u ", major(e->rdev), minor(e->rdev));
        else
            printf("%10llu ", (unsigned long long)e->size);
        printf("%s ", cli_time(e->mtime_ns, t));
    }
    cli_put_name(stdout, path, strlen(path));
    if (o->longfmt && e->target) {
        fputs(" -> ", stdout);
        cli_put_name(stdout, (char *)e->target, e->target_len);
    }
    fputc('\n', stdout);
}

/* A child that the catalog could not give: named on stderr (by index when its name is lost), skipped. */
static void skip_damaged(lsopt *o, const bytebuf *path, const catalog_entry *e)
{
    o->damaged++;
    fprintf(stderr, "rehydrate: %s:", o->snap);
    cli_put_name(stderr, o->top, strlen(o->top));
    if (*o->top && path->len)
        fputc('/', stderr);
    if (path->len)
        cli_put_name(stderr, (const char *)path->data, strlen((const char *)path->data));
    if (e->damage == RH_EUNSAFE) {
        fputs(": entry named '", stderr);
        cli_put_name(stderr, (const char *)e->name, e->name_len);
        fprintf(stderr, "' refused: %s\n", rh_strerror(e->damage));
    } else {
        fprintf(stderr, ": entry %llu is damaged and cannot be listed: %s\n", (unsigned long long)e->idx,
                rh_strerror(e->damage));
    }
}

static int list_dir(lsopt *o, catalog *c, uint64_t dir, bytebuf *path);

typedef struct lsdir {
    lsopt *o;
    catalog *c;
    bytebuf *path;
} lsdir;

static int list_child(void *ctx, uint64_t k, const catalog_entry *e)
{
    lsdir *d = ctx;
    bytebuf *path = d->path;
    size_t saved = path->len;
    if (saved && d->o->recursive)
        path->data[saved - 1] = '/';
    else
        path->len = 0;
    buf_append(path, e->name, e->name_len + 1);
    print_entry(d->o, e, (char *)path->data);
    int r = 0;
    if (d->o->recursive && e->type == CT_DIR)
        r = list_dir(d->o, d->c, e->idx, path);
    path->len = saved;
    if (saved)
        path->data[saved - 1] = 0;
    return r;
}

static int list_damaged(void *ctx, uint64_t k, const catalog_entry *e)
{
    lsdir *d = ctx;
    skip_damaged(d->o, d->path, e);
    return 0;
}

/* Lists directory dir, whose path (relative to the operand) is in path; descends with -R. */
static int list_dir(lsopt *o, catalog *c, uint64_t dir, bytebuf *path)
{
    static const catalog_walk_ops ops = { .child = list_child, .damaged = list_damaged };
    lsdir d = { o, c, path };
    return catalog_walk_dir(c, dir, 0, &ops, &d);
}

/* Splits "SNAPSHOT[:PATH]": the whole operand if it names a snapshot, else the shortest prefix before a
 * ':' that does (snapshot names may themselves contain ':'). */
static int split_spec(rh_store *s, const char *spec, char **ret_snap, const char **ret_path)
{
    char *name;
    if (store_resolve_snapshot(s, spec, &name) == 0) {
        *ret_snap = name;
        *ret_path = "";
        return 0;
    }
    for (const char *p = strchr(spec, ':'); p; p = strchr(p + 1, ':')) {
        _cleanup_(freep) char *prefix = xmemdup(spec, (size_t)(p - spec) + 1);
        prefix[p - spec] = 0;
        if (store_resolve_snapshot(s, prefix, &name) == 0) {
            *ret_snap = name;
            *ret_path = p + 1;
            return 0;
        }
    }
    return RH_ENOSNAPSHOT;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        { "long", no_argument, NULL, 'l' }, { "recursive", no_argument, NULL, 'R' },
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 },
    };
    lsopt o = { 0 };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "lRh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o.longfmt = true;
            break;
        case 'R':
            o.recursive = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            cli_help("ls", "  -l, --long        mode, links, owner, group, size, time, name (-> target)\n"
                           "  -R, --recursive   list subdirectories too, as paths\n"
                           "  --json            a JSON array of entries, names as exact bytes\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 2)
        return cli_usage("ls", "expected two operands, the store and SNAPSHOT[:PATH]");
    rh_store *s;
    if (cli_open_store(argv[optind], &s) < 0)
        return EXIT_FAIL;
    const char *spec = argv[optind + 1], *path;
    char *snap = NULL, *cpath = NULL;
    catalog *cat = NULL;
    uint64_t idx;
    int r = split_spec(s, spec, &snap, &path);
    if (r < 0) {
        cli_error("%s: no snapshot '%s'", cli_quote(s->path), cli_quote(spec));
        goto out;
    }
    cpath = store_snapshot_path(snap);
    o.snap = snap;
    o.top = path;
    if ((r = catalog_open(s->ops, s->ctx, cpath, &cat)) < 0) {
        cli_error("%s: %s", cpath, rh_strerror(r));
        goto out;
    }
    if ((r = catalog_lookup_path(cat, path, &idx)) < 0) {
        cli_error("%s:%s: %s", snap, cli_quote(path), r == -ENOENT ? "no such file or directory" : rh_strerror(r));
        goto out;
    }
    catalog_entry *e;
    if ((r = catalog_get(cat, idx, &e)) < 0) {
        cli_error("%s:%s: %s", snap, cli_quote(path), rh_strerror(r));
        goto out;
    }
    if (o.json)
        printf("[");
    bytebuf pb = { 0 };
    if (e->type == CT_DIR) {
        /* -R prints paths relative to the listed directory. */
        buf_put_u8(&pb, 0);
        pb.len = 0;
        r = list_dir(&o, cat, idx, &pb);
        if (r < 0)
            cli_error("%s:%s: %s", snap, cli_quote(path), rh_strerror(r));
    } else {
        print_entry(&o, e, path);
    }
    if (o.json)
        printf("]\n");
    buf_free(&pb);
    catalog_entry_free(e);
out:
    catalog_close(cat);
    free(cpath);
    free(snap);
    rh_store_close(s);
    return r < 0 ? EXIT_FAIL : o.damaged ? EXIT_PARTIAL : EXIT_OK;
}

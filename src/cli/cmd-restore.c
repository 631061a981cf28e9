/*
 * cmd-restore.c — rehydrate restore STORE SNAPSHOT TARGET [PATH...]: the two-phase, resumable restore of
 * DESIGN.md. Phase 1 lays out the tree with a stub per regular file (tree/layout.c); phase 2 calls
 * rh_restore_files on the stubs in batches, two at a time, and sets each batch's metadata as soon as
 * it is done; phase 3 sets the metadata of everything else, directories last. --stubs-only
 * stops after phase 1; --resume finishes a restore that was cut short.
 *
 * rehydrate restore VOLUME TARGET: the tree of a Windows Server dedup volume, its deduplicated files
 * rebuilt from its chunk store (tree/volume.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/fsutil.h"
#include "common/util.h"
#include "tree/layout.h"
#include "tree/volume.h"
#include "windows/winvolume.h"
#include "snapshot/catalog.h"

#define BATCH_BYTES (1ull << 30) /* a batch ends at 10,000 files or this much data */
/* Batches rehydrated at once, each through its own store handle (a handle's index is one SQLite
 * connection, used by one thread at a time). Each rh_restore_files call ends by waiting in syncfs
 * for its data to be durable; meanwhile the other batch reads, decodes and writes. */
#define RESTORE_STREAMS 2

typedef struct rstate {
    bool tty, json, quiet;
    bool line_shown;
    uint64_t files_done, files_total, bytes_done, bytes_total, failed;
    double t0;
} rstate;

static void clear_line(rstate *st)
{
    if (st->line_shown) {
        fputs("\r\033[K", stderr);
        st->line_shown = false;
    }
}

static void on_warn(void *ud, const char *path, int code, const char *what)
{
    rstate *st = ud;
    clear_line(st);
    fputs("rehydrate: ", stderr);
    cli_put_name(stderr, path, strlen(path));
    fprintf(stderr, ": %s: %s\n", what, rh_strerror(code));
}

static void progress(rstate *st)
{
    if (!st->tty || st->quiet || st->json)
        return;
    double dt = mono_seconds() - st->t0;
    double rate = dt > 0 ? st->bytes_done / dt : 0;
    double eta = rate > 0 ? (st->bytes_total - st->bytes_done) / rate : 0;
    char a[16], b[16], c[16];
    fprintf(stderr, "\r\033[K%llu/%llu files, %s of %s, %s/s, ETA %.0f s",
            (unsigned long long)st->files_done, (unsigned long long)st->files_total,
            fmt_bytes(st->bytes_done, a), fmt_bytes(st->bytes_total, b), fmt_bytes((uint64_t)rate, c), eta);
    st->line_shown = true;
}

/* Opens the directory `dir` (a path relative to targetfd) one component at a time, never following a
 * symlink: the restore never leaves the target. */
static int open_dir_beneath(int targetfd, const char *dir)
{
    int fd = fcntl(targetfd, F_DUPFD_CLOEXEC, 0);
    _cleanup_(freep) char *copy = xstrdup(dir);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        fd = next < 0 ? -e : next;
    }
    return fd;
}

/* Phase 2: the batches, and who takes the next one. */
typedef struct phase2 {
    const char *storepath;
    layout *l;
    int targetfd;
    const char *target;
    rstate *st;
    size_t *bounds; /* batch i is stubs [bounds[i], bounds[i + 1]) */
    size_t nbatches, next;
    int fatal;            /* from layout_finish_stubs: the catalog is damaged */
    pthread_mutex_t lock; /* next, fatal, *st, *l and stderr */
} phase2;

/* Runs phase 2 on stubs [from, to) through store handle s and reports failures. */
static void restore_batch(phase2 *p, rh_store *s, size_t from, size_t to)
{
    size_t n = to - from;
    char **paths = xcalloc(n, sizeof(*paths));
    int *fds = xmalloc(n * sizeof(*fds));
    int *res = xcalloc(n, sizeof(*res));
    for (size_t i = 0; i < n; i++) {
        const layout_stub *stub = layout_stub_get(p->l, from + i);
        fds[i] = -1;
        paths[i] = xasprintf("%s/%s", p->target, stub->path);
        if (strlen(paths[i]) >= PATH_MAX) {
            /* Too long for open(2): name the stub through an fd of its directory. */
            char *slash = strrchr(stub->path, '/');
            _cleanup_(freep) char *dir = xmemdup(stub->path, (size_t)(slash - stub->path) + 1);
            dir[slash - stub->path] = 0;
            fds[i] = open_dir_beneath(p->targetfd, dir);
            free(paths[i]);
            paths[i] = fds[i] >= 0 ? xasprintf("/proc/self/fd/%d/%s", fds[i], slash + 1) : xstrdup("");
        }
    }
    int r = rh_restore_files(s, n, (const char *const *)paths, 0, res);
    if (r < 0 && r != RH_EPARTIAL) /* when the call itself failed, results are not filled in */
        for (size_t i = 0; i < n; i++)
            if (res[i] == 0)
                res[i] = r;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        const layout_stub *stub = layout_stub_get(p->l, from + i);
        if (res[i] < 0) {
            on_warn(p->st, stub->path, res[i], "restore");
            p->st->failed++;
        }
        p->st->files_done++;
        p->st->bytes_done += stub->alloc;
    }
    progress(p->st);
    /* Phase 3 for these files now, while the other stream still works, rather than all at the end. */
    if (!p->fatal)
        p->fatal = layout_finish_stubs(p->l, from, to);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        free(paths[i]);
    }
    free(paths), free(fds), free(res);
}

/* Takes batches until none is left (or the catalog turned out damaged). */
static void run_batches(phase2 *p, rh_store *s)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->fatal ? p->nbatches : p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->nbatches)
            return;
        restore_batch(p, s, p->bounds[i], p->bounds[i + 1]);
    }
}

/* A second stream: its own handle on the store. If it cannot open one, the first stream does all. */
static void *stream_main(void *arg)
{
    phase2 *p = arg;
    rh_store *s;
    if (store_open_logged(p->storepath, cli_log, NULL, &s) == 0) {
        run_batches(p, s);
        rh_store_close(s);
    }
    return NULL;
}

/*
 * Rehydrates every stub of the layout in batches of at most RH_RESTORE_MAX_FILES files and BATCH_BYTES.
 * Each batch holds an fd per file until it ends: with RESTORE_STREAMS batches at once, a batch gets at
 * most its share of the open-file limit (less 1024 for everything else), and a limit too low for two
 * batches of 1024 files means one stream.
 */
static int phase2_run(rh_store *s, const char *storepath, layout *l, int targetfd, const char *target,
                      rstate *st)
{
    struct rlimit rl;
    uint64_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 1024;
    size_t streams = fds >= 1024 + RESTORE_STREAMS * 1024 ? RESTORE_STREAMS : 1;
    size_t max_files = streams > 1 ? (size_t)MIN((fds - 1024) / streams, RH_RESTORE_MAX_FILES)
                                   : RH_RESTORE_MAX_FILES;
    size_t nstubs = layout_stub_count(l);
    phase2 p = { storepath, l, targetfd, target, st, xmalloc((nstubs + 1) * sizeof(size_t)), 0, 0, 0,
                 PTHREAD_MUTEX_INITIALIZER };
    p.bounds[0] = 0;
    for (size_t i = 0; i < nstubs;) {
        size_t j = i;
        uint64_t bytes = 0;
        while (j < nstubs && j - i < max_files && (j == i || bytes < BATCH_BYTES))
            bytes += layout_stub_get(l, j++)->alloc;
        p.bounds[++p.nbatches] = j;
        i = j;
    }
    /* The first call opens (and if need be rebuilds) the index before a second handle looks at it. */
    pthread_t helpers[RESTORE_STREAMS];
    size_t nhelpers = 0;
    if (p.nbatches > 1 && streams > 1 && rh_restore_files(s, 0, NULL, 0, NULL) == 0)
        for (size_t k = 1; k < MIN(streams, p.nbatches); k++)
            if (pthread_create(&helpers[nhelpers], NULL, stream_main, &p) == 0)
                nhelpers++;
    run_batches(&p, s);
    for (size_t k = 0; k < nhelpers; k++)
        pthread_join(helpers[k], NULL);
    pthread_mutex_destroy(&p.lock);
    free(p.bounds);
    return p.fatal;
}

static int target_is_empty(const char *target, bool *ret)
{
    int fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    struct dirent *de;
    *ret = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            *ret = false;
    closedir(d);
    return 0;
}

/*
 * Checks the subtree PATHs before anything is created: no "." or ".." component (a PATH names an
 * entry of the snapshot, never a place outside it), and each in the snapshot. Reports the first that
 * fails; returns an exit status, EXIT_OK when all are good.
 */
static int check_subtrees(catalog *cat, const char *snapname, const char *const *paths, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = paths[i];
        for (const char *c = p; *c;) {
            size_t len = strcspn(c, "/");
            if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                return cli_usage("restore", "%s: a PATH may not contain '.' or '..' components",
                                 cli_quote(p));
            c += len;
            c += *c == '/';
        }
        uint64_t idx;
        int r = catalog_lookup_path(cat, p, &idx);
        if (r == -ENOENT) {
            cli_error("%s: not in snapshot %s", cli_quote(p), snapname);
            return EXIT_FAIL;
        }
        if (r < 0) {
            cli_error("%s: cannot look it up in snapshot %s: %s", cli_quote(p), snapname, rh_strerror(r));
            return EXIT_FAIL;
        }
    }
    return EXIT_OK;
}

/* The directories that fs_mkdir_p(target) would create, outermost first (malloc'd, *ret_n of them). */
static char **missing_dirs(const char *target, size_t *ret_n)
{
    char **v = NULL;
    size_t n = 0;
    char *p = xstrdup(target);
    for (;;) {
        size_t len = strlen(p);
        while (len > 1 && p[len - 1] == '/')
            p[--len] = 0;
        struct stat st;
        if (len == 0 || lstat(p, &st) == 0 || errno != ENOENT)
            break;
        v = xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = xstrdup(p);
        char *slash = strrchr(p, '/');
        if (!slash)
            break;
        *(slash == p ? slash + 1 : slash) = 0;
    }
    free(p);
    for (size_t i = 0; i < n / 2; i++) { /* innermost was found first */
        char *t = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = t;
    }
    *ret_n = n;
    return v;
}

/* When `remove`, removes the directories this restore created, innermost first, as long as they are
 * empty: a restore that failed before writing anything leaves nothing behind. Frees dirs. */
static void drop_created(char **dirs, size_t n, bool remove)
{
    for (size_t i = n; i-- > 0;) {
        remove = remove && rmdir(dirs[i]) == 0;
        free(dirs[i]);
    }
    free(dirs);
}

static void on_volume_warn(void *ud, const char *path, int code, const char *what)
{
    on_warn(ud, path, code, what);
}

/* rehydrate restore VOLUME TARGET [--chunkstore DIR]. */
static int restore_volume(const char *volume, const char *target, const char *chunkstore, bool force, rstate *st)
{
    if (!chunkstore && !volume_detect(volume)) {
        cli_error("%s: neither a rehydrate store nor a Windows dedup volume (no %s; name the chunk store "
                  "with --chunkstore)", cli_quote(volume), WINVOLUME_CHUNKSTORES);
        return EXIT_FAIL;
    }
    size_t ncreated = 0;
    char **created = missing_dirs(target, &ncreated);
    int r = fs_mkdir_p(target, 0755);
    bool empty = false;
    if (r < 0 || (r = target_is_empty(target, &empty)) < 0) {
        cli_error("%s: cannot create the target: %s", cli_quote(target), rh_strerror(r));
        drop_created(created, ncreated, true);
        return EXIT_FAIL;
    }
    if (!empty && !force) {
        cli_error("%s: the target is not empty (use --force to restore into it anyway)", cli_quote(target));
        drop_created(created, ncreated, false);
        return EXIT_FAIL;
    }
    char *abs_target = realpath(target, NULL);
    volume_options vo = { .chunkstore = chunkstore, .warn = on_volume_warn, .ud = st };
    volume_stats vs = { 0 };
    r = abs_target ? volume_restore(volume, abs_target, &vo, &vs) : -errno;
    free(abs_target);
    drop_created(created, ncreated, r < 0 && r != RH_EPARTIAL);
    if (r < 0 && r != RH_EPARTIAL) {
        cli_error("%s: %s", cli_quote(volume), rh_strerror(r));
        return EXIT_FAIL;
    }
    double dt = mono_seconds() - st->t0;
    if (st->json)
        printf("{\"volume\":true,\"entries\":%llu,\"stubs\":%llu,\"bytes\":%llu,\"failed\":%llu,\"seconds\":%.3f}\n",
               (unsigned long long)vs.entries, (unsigned long long)vs.stubs, (unsigned long long)vs.bytes,
               (unsigned long long)vs.failed, dt);
    else if (!st->quiet) {
        char b[16];
        printf("restored %llu entries, %llu deduplicated files rebuilt, %s in %.2f s\n",
               (unsigned long long)vs.entries, (unsigned long long)vs.stubs, fmt_bytes(vs.bytes, b), dt);
        if (vs.failed)
            printf("%llu entries failed (named above)\n", (unsigned long long)vs.failed);
    }
    return vs.failed ? EXIT_FAIL : EXIT_OK;
}

int cmd_restore(int argc, char **argv)
{
    static const struct option opts[] = {
        { "stubs-only", no_argument, NULL, 's' }, { "resume", no_argument, NULL, 'r' },
        { "force", no_argument, NULL, 'f' },      { "json", no_argument, NULL, 'j' },
        { "quiet", no_argument, NULL, 'q' },      { "help", no_argument, NULL, 'h' },
        { "chunkstore", required_argument, NULL, 'c' }, { 0 },
    };
    layout_options lo = { 0 };
    const char *chunkstore = NULL;
    rstate st = { .tty = isatty(2), .t0 = mono_seconds() };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fqh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            lo.stubs_only = true;
            break;
        case 'r':
            lo.resume = true;
            break;
        case 'f':
            lo.force = true;
            break;
        case 'j':
            st.json = true;
            break;
        case 'q':
            st.quiet = true;
            break;
        case 'c':
            chunkstore = optarg;
            break;
        case 'h':
            cli_help("restore", "  --stubs-only   stop after laying out the tree (stubs carry their reparse points)\n"
                                "  --resume       finish a restore into TARGET that was cut short\n"
                                "  -f, --force    restore into a TARGET that is not empty\n"
                                "  --json         print a JSON summary\n"
                                "  -q, --quiet    no progress line and no summary\n"
                                "  --chunkstore DIR  restore VOLUME TARGET: the {GUID}.ddp chunk store of every\n"
                                "                 deduplicated file (default: the volume's own, by GUID)\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (argc - optind == 2 && !store_exists(argv[optind])) {
        if (lo.stubs_only || lo.resume)
            return cli_usage("restore", "--stubs-only and --resume are for snapshots of a store");
        return restore_volume(argv[optind], argv[optind + 1], chunkstore, lo.force, &st);
    }
    if (chunkstore)
        return cli_usage("restore", "--chunkstore is for restoring a Windows dedup volume");
    if (argc - optind < 3)
        return cli_usage("restore", "expected the store, a snapshot and a target directory, or a volume and a target");
    if (lo.stubs_only && lo.resume)
        return cli_usage("restore", "--stubs-only and --resume exclude each other");
    const char *storepath = argv[optind], *snapname = argv[optind + 1], *target = argv[optind + 2];
    const char *const *subtrees = (const char *const *)argv + optind + 3;
    size_t nsub = (size_t)(argc - optind - 3);

    rh_store *s;
    if (cli_open_store(storepath, &s) < 0)
        return EXIT_FAIL;
    int status = EXIT_FAIL, targetfd = -1;
    char **created = NULL; /* the directories of the target path that this restore made */
    size_t ncreated = 0;
    char *name = NULL, *cpath = NULL, *abs_target = NULL;
    catalog *cat = NULL;
    layout *l = NULL;
    int r = store_resolve_snapshot(s, snapname, &name);
    if (r < 0) {
        if (r == RH_ENOSNAPSHOT)
            cli_error("%s: no snapshot '%s'", cli_quote(storepath), cli_quote(snapname));
        else /* there, but its catalog cannot be opened: say so, not "no snapshot" */
            cli_error("%s: snapshot '%s' cannot be opened: %s (see rehydrate verify)", cli_quote(storepath),
                      cli_quote(snapname), rh_strerror(r));
        goto out;
    }
    cpath = store_snapshot_path(name);
    if ((r = catalog_open(s->ops, s->ctx, cpath, &cat)) < 0) {
        cli_error("%s: %s", cpath, rh_strerror(r));
        goto out;
    }
    if ((status = check_subtrees(cat, name, subtrees, nsub)) != EXIT_OK)
        goto out;
    status = EXIT_FAIL;
    created = missing_dirs(target, &ncreated);
    if ((r = fs_mkdir_p(target, 0755)) < 0) {
        cli_error("%s: cannot create the target: %s", cli_quote(target), rh_strerror(r));
        goto out;
    }
    bool empty = false;
    if ((r = target_is_empty(target, &empty)) < 0) {
        cli_error("%s: %s", cli_quote(target), rh_strerror(r));
        goto out;
    }
    if (!empty && !lo.force && !lo.resume) {
        cli_error("%s: the target is not empty (use --force to restore into it anyway, or --resume to "
                  "finish an interrupted restore)", cli_quote(target));
        goto out;
    }
    targetfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    abs_target = realpath(target, NULL);
    if (targetfd < 0 || !abs_target) {
        cli_error("%s: %s", cli_quote(target), strerror(errno));
        goto out;
    }
    fs_raise_fd_limit(); /* phase 2 may hold an fd per stub whose path is too long for open(2) */

    lo.warn = on_warn;
    lo.ud = &st;
    if ((r = layout_create(s, cat, targetfd, subtrees, nsub, &lo, &l)) < 0) {
        if (r == -ENOENT && nsub)
            cli_error("%s: a PATH is not in snapshot %s", cli_quote(target), name);
        else
            cli_error("%s: cannot lay out the tree: %s", cli_quote(target), rh_strerror(r));
        goto out;
    }
    size_t nstubs = layout_stub_count(l);
    for (size_t i = 0; i < nstubs; i++)
        st.bytes_total += layout_stub_get(l, i)->alloc;
    st.files_total = nstubs;
    if (!lo.stubs_only) {
        r = phase2_run(s, storepath, l, targetfd, abs_target, &st);
        if (r < 0 || (r = layout_finish(l)) < 0) {
            clear_line(&st);
            cli_error("%s: cannot set metadata: %s", cli_quote(target), rh_strerror(r));
            goto out;
        }
    }
    clear_line(&st);
    double dt = mono_seconds() - st.t0;
    uint64_t errors = st.failed + layout_errors(l);
    if (st.json) {
        printf("{\"snapshot\":");
        cli_put_json(stdout, name, strlen(name));
        printf(",\"entries\":%llu,\"files\":%llu,\"bytes\":%llu,\"failed\":%llu,\"stubs_only\":%s,"
               "\"seconds\":%.3f}\n",
               (unsigned long long)layout_entries(l), (unsigned long long)st.files_total,
               (unsigned long long)st.bytes_done, (unsigned long long)errors,
               lo.stubs_only ? "true" : "false", dt);
    } else if (!st.quiet) {
        char b[16], rb[16];
        if (lo.stubs_only)
            printf("laid out %llu entries of %s with %llu stubs in %s (finish with --resume)\n",
                   (unsigned long long)layout_entries(l), name, (unsigned long long)nstubs, target);
        else
            printf("restored %s: %llu entries, %llu files, %s in %.2f s (%s/s)%s\n", name,
                   (unsigned long long)layout_entries(l), (unsigned long long)st.files_total,
                   fmt_bytes(st.bytes_done, b), dt, fmt_bytes(dt > 0 ? (uint64_t)(st.bytes_done / dt) : 0, rb),
                   "");
        if (errors)
            printf("%llu entries failed (named above)\n", (unsigned long long)errors);
    }
    status = errors ? EXIT_PARTIAL : EXIT_OK;
out:
    layout_free(l);
    catalog_close(cat);
    if (targetfd >= 0)
        close(targetfd);
    drop_created(created, ncreated, status == EXIT_FAIL || status == EXIT_USAGE);
    free(abs_target), free(cpath), free(name);
    rh_store_close(s);
    return status;
}

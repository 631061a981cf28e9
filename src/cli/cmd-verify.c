/*
 * cmd-verify.c — rehydrate verify STORE: a full check; non-zero exit when anything is damaged. STORE is
 * one of ours (maint/verify.c) or a Windows Server dedup chunk store, {GUID}.ddp (maint/winverify.c),
 * which --volume VOL maps to the files of the volume whose stubs point into it.
 */
#include "config.h"

#include <getopt.h>

#include "cli/cli.h"
#include "common/util.h"
#include "maint/verify.h"
#include "maint/winverify.h"

static void on_progress(void *ud, uint64_t bytes)
{
    char b[16];
    fprintf(stderr, "\r\033[Kverified %s", fmt_bytes(bytes, b));
}

/* ---- a Windows chunk store ---- */

static void put_json_str(const char *s) { cli_put_json(stdout, s, strlen(s)); }

static void put_json_problems(const winverify_report *rep, bool warnings, bool files)
{
    bool first = true;
    for (size_t i = 0; i < rep->nproblems; i++) {
        const winverify_problem *p = &rep->problems[i];
        if (p->warning != warnings)
            continue;
        printf("%s{\"container\":", first ? "" : ",");
        first = false;
        put_json_str(p->container);
        if (p->has_offset)
            printf(",\"offset\":%llu", (unsigned long long)p->offset);
        else
            printf(",\"offset\":null");
        if (p->has_seq)
            printf(",\"seq\":%u", (unsigned)p->seq);
        else
            printf(",\"seq\":null");
        printf(",\"what\":");
        put_json_str(p->what);
        if (files) {
            printf(",\"files\":[");
            for (size_t k = 0; k < p->nfiles; k++) {
                printf("%s", k ? "," : "");
                put_json_str(p->files[k]);
            }
            printf("]");
        }
        printf("}");
    }
}

static void print_json(const winverify_report *rep, bool volume, bool ok)
{
    printf("{\"ok\":%s,\"format\":\"windows\",\"containers\":%llu,\"older_generations\":%llu,"
           "\"data_chunks\":%llu,\"compressed_chunks\":%llu,\"length_unknown\":%llu,\"unreferenced_chunks\":%llu,"
           "\"stream_maps\":%llu,\"smap_entries\":%llu,\"paddings\":%llu,\"moved\":%llu,\"bytes\":%llu,"
           "\"container_files\":[",
           ok ? "true" : "false", (unsigned long long)rep->containers, (unsigned long long)rep->older_generations,
           (unsigned long long)rep->data_chunks, (unsigned long long)rep->compressed_chunks,
           (unsigned long long)rep->length_unknown, (unsigned long long)rep->unreferenced_chunks,
           (unsigned long long)rep->stream_maps, (unsigned long long)rep->smap_entries,
           (unsigned long long)rep->paddings, (unsigned long long)rep->moved, (unsigned long long)rep->bytes);
    for (size_t i = 0; i < rep->nctrs; i++) {
        const winverify_container *c = &rep->ctrs[i];
        printf("%s{\"name\":", i ? "," : "");
        put_json_str(c->name);
        printf(",\"kind\":\"%s\",\"id\":%u,\"generation\":%u,\"current\":%s}", c->data ? "data" : "stream",
               (unsigned)c->id, (unsigned)c->generation, c->current ? "true" : "false");
    }
    printf("],\"problems\":[");
    put_json_problems(rep, false, volume);
    printf("],\"warnings\":[");
    put_json_problems(rep, true, volume);
    printf("]");
    if (volume) {
        printf(",\"stubs\":%llu,\"files_affected\":[", (unsigned long long)rep->stubs);
        for (size_t i = 0; i < rep->nfiles_affected; i++) {
            printf("%s", i ? "," : "");
            put_json_str(rep->files_affected[i]);
        }
        printf("]");
    }
    printf("}\n");
}

static void print_text(const winverify_report *rep, bool volume, bool ok)
{
    for (size_t i = 0; i < rep->nproblems; i++) {
        const winverify_problem *p = &rep->problems[i];
        fprintf(stderr, "rehydrate: %s", p->warning ? "warning: " : "");
        cli_put_name(stderr, p->container, strlen(p->container));
        if (p->has_offset)
            fprintf(stderr, ": offset %#llx", (unsigned long long)p->offset);
        if (p->has_seq)
            fprintf(stderr, ": seq %u", (unsigned)p->seq);
        fprintf(stderr, ": %s\n", p->what);
        for (size_t k = 0; k < p->nfiles; k++) {
            fputs("rehydrate:   used by ", stderr);
            cli_put_name(stderr, p->files[k], strlen(p->files[k]));
            fputc('\n', stderr);
        }
    }
    /* Which generation of each id is current, where there are several. */
    for (size_t i = 0, k; i < rep->nctrs; i = k) {
        const winverify_container *c = &rep->ctrs[i];
        for (k = i + 1; k < rep->nctrs && rep->ctrs[k].data == c->data && rep->ctrs[k].id == c->id;)
            k++;
        if (k - i < 2)
            continue;
        printf("%s/%08x: generations", c->data ? "Data" : "Stream", (unsigned)c->id);
        for (size_t g = i; g < k; g++)
            printf(" %08x", (unsigned)rep->ctrs[g].generation);
        printf("; current %08x\n", (unsigned)rep->ctrs[k - 1].generation);
    }
    char b[16];
    printf("checked %llu containers (%llu older generations), %s of records: %llu data chunks (%llu compressed, "
           "%llu of them without a length from a stream map; %llu unreferenced), %llu stream maps (%llu entries), "
           "%llu paddings",
           (unsigned long long)rep->containers, (unsigned long long)rep->older_generations, fmt_bytes(rep->bytes, b),
           (unsigned long long)rep->data_chunks, (unsigned long long)rep->compressed_chunks,
           (unsigned long long)rep->length_unknown, (unsigned long long)rep->unreferenced_chunks,
           (unsigned long long)rep->stream_maps, (unsigned long long)rep->smap_entries,
           (unsigned long long)rep->paddings);
    if (volume)
        printf("; %llu stubs", (unsigned long long)rep->stubs);
    printf(": %s\n", ok ? "no problems found" : "DAMAGE FOUND");
    if (!ok || rep->nwarnings)
        printf("%zu problems, %zu warnings%s", rep->nproblems - rep->nwarnings, rep->nwarnings,
               volume ? "" : "\n");
    if (volume && (!ok || rep->nwarnings))
        printf(", %zu damaged files\n", rep->nfiles_affected);
}

static int verify_windows(const char *dir, const char *volume, bool json)
{
    winverify_report rep;
    bool tty = isatty(2) && !json;
    int r = winverify_dir(dir, volume, &rep, tty ? on_progress : NULL, NULL);
    if (tty)
        fputs("\r\033[K", stderr);
    if (r < 0) {
        if (volume)
            cli_error("%s with the volume %s: cannot verify: %s", cli_quote(dir), cli_quote(volume), rh_strerror(r));
        else
            cli_error("%s: cannot verify: %s", cli_quote(dir), rh_strerror(r));
        return EXIT_FAIL;
    }
    bool ok = rep.nproblems == rep.nwarnings;
    if (json)
        print_json(&rep, volume != NULL, ok);
    else
        print_text(&rep, volume != NULL, ok);
    winverify_report_free(&rep);
    return ok ? EXIT_OK : EXIT_FAIL;
}

/* ---- ours ---- */

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' }, { "volume", required_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' }, { 0 }
    };
    bool json = false;
    const char *volume = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
        } else if (c == 'V') {
            volume = optarg;
        } else if (c == 'h') {
            cli_help("verify", "  --json        print the report as JSON\n"
                               "  --volume VOL  (a Windows chunk store) the volume whose stubs use it: name the\n"
                               "                files that damage affects\n");
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage("verify", "expected exactly one operand, the store path");
    if (winverify_detect(argv[optind]))
        return verify_windows(argv[optind], volume, json);
    if (volume)
        return cli_usage("verify", "--volume is for a Windows chunk store ({GUID}.ddp), which %s is not",
                         cli_quote(argv[optind]));
    rh_store *s;
    if (cli_open_store(argv[optind], &s) < 0)
        return EXIT_FAIL;
    verify_report rep;
    bool tty = isatty(2) && !json;
    int r = verify_store(s, &rep, tty ? on_progress : NULL, NULL);
    if (tty)
        fputs("\r\033[K", stderr);
    if (r < 0) {
        cli_error("%s: cannot verify: %s", cli_quote(s->path), rh_strerror(r));
        rh_store_close(s);
        return EXIT_FAIL;
    }
    bool ok = rep.nproblems == 0 && rep.naffected == 0;
    if (json) {
        printf("{\"ok\":%s,\"containers\":%llu,\"records\":%llu,\"chunks\":%llu,\"packs\":%llu,"
               "\"streams\":%llu,\"snapshots\":%llu,\"entries\":%llu,\"bytes\":%llu,\"unfinished\":%llu,"
               "\"problems\":[",
               ok ? "true" : "false", (unsigned long long)rep.containers, (unsigned long long)rep.records,
               (unsigned long long)rep.chunks, (unsigned long long)rep.packs, (unsigned long long)rep.streams,
               (unsigned long long)rep.snapshots, (unsigned long long)rep.entries,
               (unsigned long long)rep.bytes, (unsigned long long)rep.unfinished);
        for (size_t i = 0; i < rep.nproblems; i++) {
            verify_problem *p = &rep.problems[i];
            printf("%s{\"object\":", i ? "," : "");
            cli_put_json(stdout, p->object, strlen(p->object));
            if (p->has_offset)
                printf(",\"offset\":%llu", (unsigned long long)p->offset);
            printf(",\"error\":");
            cli_put_json(stdout, p->detail, strlen(p->detail));
            printf("}");
        }
        printf("],\"affected\":[");
        for (size_t i = 0; i < rep.naffected; i++) {
            printf("%s{\"snapshot\":", i ? "," : "");
            cli_put_json(stdout, rep.affected[i].snapshot, strlen(rep.affected[i].snapshot));
            printf(",\"path\":");
            cli_put_json(stdout, rep.affected[i].path, strlen(rep.affected[i].path));
            printf("}");
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < rep.nproblems; i++)
            cli_error("%s: %s", rep.problems[i].object, rep.problems[i].detail);
        for (size_t i = 0; i < rep.naffected; i++) {
            fprintf(stderr, "rehydrate: damaged file: %s:", rep.affected[i].snapshot);
            cli_put_name(stderr, rep.affected[i].path, strlen(rep.affected[i].path));
            fputc('\n', stderr);
        }
        char b[16];
        printf("checked %llu containers (%llu records, %s; %llu chunks, %llu packs), "
               "%llu snapshots (%llu entries): %s\n",
               (unsigned long long)rep.containers, (unsigned long long)rep.records,
               fmt_bytes(rep.bytes, b), (unsigned long long)rep.chunks, (unsigned long long)rep.packs,
               (unsigned long long)rep.snapshots, (unsigned long long)rep.entries,
               ok ? "no problems found" : "DAMAGE FOUND");
        if (rep.unfinished)
            printf("%llu containers of a backup that stopped before it finished, which no snapshot uses and "
                   "the next backup removes: not checked\n",
                   (unsigned long long)rep.unfinished);
        if (!ok)
            printf("%zu problems, %zu damaged files\n", rep.nproblems, rep.naffected);
    }
    verify_report_free(&rep);
    rh_store_close(s);
    return ok ? EXIT_OK : EXIT_FAIL;
}

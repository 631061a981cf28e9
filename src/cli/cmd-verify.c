/*
 * cmd-verify.c — rehydrate verify STORE: a full check; non-zero exit when anything is damaged.
 */
#include "config.h"

#include <getopt.h>

#include "cli/cli.h"
#include "common/util.h"
#include "maint/verify.h"

static void on_progress(void *ud, uint64_t bytes)
{
    char b[16];
    fprintf(stderr, "\r\033[Kverified %s", fmt_bytes(bytes, b));
}

int cmd_verify(int argc, char **argv)
{
    bool json = false;
    int st = cli_parse_plain(argc, argv, "verify", "  --json   print the report as JSON\n", &json);
    if (st >= 0)
        return st;
    if (argc - optind != 1)
        return cli_usage("verify", "expected exactly one operand, the store path");
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
               "\"streams\":%llu,\"snapshots\":%llu,\"entries\":%llu,\"bytes\":%llu,\"problems\":[",
               ok ? "true" : "false", (unsigned long long)rep.containers, (unsigned long long)rep.records,
               (unsigned long long)rep.chunks, (unsigned long long)rep.packs, (unsigned long long)rep.streams,
               (unsigned long long)rep.snapshots, (unsigned long long)rep.entries,
               (unsigned long long)rep.bytes);
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
        if (!ok)
            printf("%zu problems, %zu damaged files\n", rep.nproblems, rep.naffected);
    }
    verify_report_free(&rep);
    rh_store_close(s);
    return ok ? EXIT_OK : EXIT_FAIL;
}

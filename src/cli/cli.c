/*
 * cli.c — output helpers shared by the commands.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/util.h"
#include "s3/s3.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rehydrate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

extern const cli_command cli_commands[];

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rehydrate %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, cmd))
            fprintf(stderr, "usage: rehydrate %s %s\n", c->name, c->args);
    return EXIT_USAGE;
}

void cli_help(const char *cmd, const char *options)
{
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, cmd))
            printf("usage: rehydrate %s %s\n\n%s\n", c->name, c->args, c->summary);
    if (options && *options)
        printf("\noptions:\n%s", options);
}

int cli_parse_plain(int argc, char **argv, const char *cmd, const char *help, bool *json)
{
    static const struct option with_json[] = {
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 }
    };
    const struct option *opts = json ? with_json : with_json + 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            *json = true;
        } else if (c == 'h') {
            cli_help(cmd, help);
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    return -1;
}

void cli_put_name(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\\')
            fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f || c >= 0x80)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

const char *cli_quote(const char *s)
{
    /* A few rotating buffers, so that one message may quote several names. */
    static char *out[4];
    static unsigned next;
    size_t cap;
    char **slot = &out[next++ % ARRAY_SIZE(out)];
    free(*slot);
    *slot = NULL;
    FILE *f = open_memstream(slot, &cap);
    if (!f)
        return s;
    cli_put_name(f, s, strlen(s));
    fclose(f);
    return *slot;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void cli_put_json(FILE *f, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t l = utf8_len(s + i, n - i);
        if (l == 0) {
            fprintf(f, "\\udc%02x", c);
            i++;
            continue;
        }
        if (l > 1) {
            fwrite(s + i, 1, l, f);
        } else if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
        i += l;
    }
    fputc('"', f);
}

void cli_log(void *ud, int level, const char *msg)
{
    if (level != RH_LOG_ERROR) /* a failed file is reported by the command, with its path */
        cli_error("%s", msg);
}

int cli_open_store(const char *path, rh_store **ret)
{
    int r = store_open_logged(path, cli_log, NULL, ret);
    if (r < 0)
        cli_error("%s: %s", cli_quote(path),
                  r == -ENOENT ? "no such store (run 'rehydrate init' or 'rehydrate backup' first)"
                               : rh_strerror(r));
    return r;
}

const char *cli_time(int64_t ns, char out[32])
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
    return out;
}

/*
 * url.c — a store URL ("s3:https://HOST/BUCKET/PREFIX") and the credentials and region that go with it,
 * found where the AWS CLI and restic find them. See s3.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "s3/s3.h"

bool s3_is_url(const char *path) { return path && strncmp(path, "s3:", 3) == 0; }

void s3_config_free(s3_config *c)
{
    free(c->host);
    free(c->bucket);
    free(c->prefix);
    free(c->region);
    free(c->access_key);
    if (c->secret_key)
        explicit_bzero(c->secret_key, strlen(c->secret_key));
    free(c->secret_key);
    free(c->session_token);
    memset(c, 0, sizeof(*c));
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A NUL-terminated copy of n bytes at s, or NULL. */
static char *span_dup(const char *s, size_t n)
{
    char *d = mem_alloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* ---- the AWS CLI's profile files ---- */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The trimmed span [p, end) of a line. */
static size_t trimmed_len(const char *p, const char *end)
{
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    return (size_t)(end - p);
}

/*
 * Looks up `key` in section `section` of the INI file at `path` (the format of ~/.aws/credentials and
 * ~/.aws/config: "[section]" lines, "key = value" lines, '#' and ';' comments). Returns a malloc'd
 * value, or NULL when the file, the section or the key is missing.
 */
static char *profile_value(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char line[4096];
    bool in = false;
    char *val = NULL;
    size_t klen = strlen(key), slen = strlen(section);
    while (!val && fgets(line, sizeof(line), f)) {
        const char *p = skip_space(line), *end = p + strcspn(p, "\n");
        if (*p == '#' || *p == ';' || p == end)
            continue;
        if (*p == '[') {
            const char *close = memchr(p, ']', (size_t)(end - p));
            const char *name = skip_space(p + 1);
            in = close && trimmed_len(name, close) == slen && !memcmp(name, section, slen);
            continue;
        }
        if (!in || (size_t)(end - p) <= klen || memcmp(p, key, klen) != 0)
            continue;
        const char *q = skip_space(p + klen);
        if (*q != '=')
            continue;
        q = skip_space(q + 1);
        val = span_dup(q, trimmed_len(q, end));
    }
    fclose(f);
    return val;
}

/* $VAR, or ~/.aws/NAME: malloc'd. */
static char *aws_file(const char *var, const char *name)
{
    const char *v = getenv(var);
    if (v && *v)
        return mem_strdup(v);
    const char *home = getenv("HOME");
    return home && *home ? mem_asprintf("%s/.aws/%s", home, name) : NULL;
}

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? mem_strdup(v) : NULL;
}

/* Credentials and region from the environment, else from the profile's files. */
static int find_credentials(s3_config *c, char *err, size_t errlen)
{
    const char *profile = getenv("AWS_PROFILE");
    if (!profile || !*profile)
        profile = "default";
    char *cred_file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    char *conf_file = aws_file("AWS_CONFIG_FILE", "config");
    char *conf_section = strcmp(profile, "default") ? mem_asprintf("profile %s", profile) : mem_strdup(profile);
    c->access_key = env_dup("AWS_ACCESS_KEY_ID");
    if (c->access_key) {
        c->secret_key = env_dup("AWS_SECRET_ACCESS_KEY");
        c->session_token = env_dup("AWS_SESSION_TOKEN");
    } else {
        /* The credentials file first, then the config file, as the AWS CLI does. */
        const char *files[2] = { cred_file, conf_file };
        const char *sections[2] = { profile, conf_section };
        for (int i = 0; i < 2 && !c->access_key; i++) {
            if (!files[i] || !sections[i] || !(c->access_key = profile_value(files[i], sections[i], "aws_access_key_id")))
                continue;
            c->secret_key = profile_value(files[i], sections[i], "aws_secret_access_key");
            c->session_token = profile_value(files[i], sections[i], "aws_session_token");
        }
    }
    c->region = env_dup("AWS_DEFAULT_REGION");
    if (!c->region)
        c->region = env_dup("AWS_REGION");
    if (!c->region && conf_file && conf_section)
        c->region = profile_value(conf_file, conf_section, "region");
    int r = 0;
    if (!c->access_key || !c->secret_key)
        r = fail(err, errlen,
                 "no credentials for s3:%s/%s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give "
                 "profile \"%s\" aws_access_key_id and aws_secret_access_key in %s",
                 c->host, c->bucket, profile, cred_file ? cred_file : "~/.aws/credentials");
    free(cred_file);
    free(conf_file);
    free(conf_section);
    return r;
}

/* The region an AWS endpoint names: "s3.REGION.amazonaws.com", "s3-REGION.amazonaws.com",
 * "s3.dualstack.REGION.amazonaws.com"; NULL for any other host. */
static char *region_of_host(const char *host)
{
    size_t n = strcspn(host, ":");
    static const char aws[] = ".amazonaws.com";
    if (n < sizeof(aws) || strncmp(host + n - (sizeof(aws) - 1), aws, sizeof(aws) - 1) != 0)
        return NULL;
    size_t stem = n - (sizeof(aws) - 1); /* "s3.REGION" */
    const char *p = host;
    if (!strncmp(p, "s3.dualstack.", 13))
        p += 13;
    else if (!strncmp(p, "s3.", 3) || !strncmp(p, "s3-", 3))
        p += 3;
    else
        return NULL;
    size_t len = (size_t)(host + stem - p);
    if ((ssize_t)len <= 0 || memchr(p, '.', len))
        return NULL;
    return span_dup(p, len);
}

int s3_config_from_url(const char *url, s3_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!s3_is_url(url))
        return fail(err, errlen, "%s: not an s3: URL", url);
    const char *p = url + 3;
    c->https = true;
    if (!strncmp(p, "https://", 8)) {
        p += 8;
    } else if (!strncmp(p, "http://", 7)) {
        c->https = false;
        p += 7;
    } else if (strstr(p, "://")) {
        return fail(err, errlen, "%s: only http:// and https:// endpoints are supported", url);
    }
    size_t hl = strcspn(p, "/");
    if (hl == 0 || p[hl] != '/' || p[hl + 1] == 0 || p[hl + 1] == '/')
        return fail(err, errlen, "%s: expected s3:[https://]HOST[:PORT]/BUCKET[/PREFIX]", url);
    if (memchr(p, '@', hl))
        return fail(err, errlen,
                    "%s: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", url);
    for (size_t i = 0; i < hl; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr(".-:[]", p[i]))
            return fail(err, errlen, "%s: the host name holds a character that no host name has", url);
    const char *b = p + hl + 1;
    size_t bl = strcspn(b, "/");
    for (size_t i = 0; i < bl; i++)
        if (!isalnum((unsigned char)b[i]) && !strchr(".-_", b[i]))
            return fail(err, errlen, "%s: \"%.*s\" is not a bucket name (letters, digits, '.', '-', '_')", url,
                        (int)bl, b);
    /* The prefix, without slashes at either end, and "/" after it unless it is empty. */
    const char *x = b + bl;
    while (*x == '/')
        x++;
    size_t xl = strlen(x);
    while (xl > 0 && x[xl - 1] == '/')
        xl--;
    c->host = span_dup(p, hl);
    c->bucket = span_dup(b, bl);
    c->prefix = xl ? mem_asprintf("%.*s/", (int)xl, x) : mem_strdup("");
    if (!c->host || !c->bucket || !c->prefix) {
        s3_config_free(c);
        return -ENOMEM;
    }
    const char *lookup = getenv("REHYDRATE_S3_BUCKET_LOOKUP");
    bool aws = strstr(c->host, ".amazonaws.com") != NULL;
    if (lookup && !strcmp(lookup, "path")) {
        c->path_style = true;
    } else if (lookup && !strcmp(lookup, "dns")) {
        c->path_style = false;
    } else if (lookup && *lookup && strcmp(lookup, "auto")) {
        s3_config_free(c);
        return fail(err, errlen, "REHYDRATE_S3_BUCKET_LOOKUP=%s: expected auto, path or dns", lookup);
    } else {
        /* A bucket with dots cannot be a TLS host name under the endpoint's certificate. */
        c->path_style = !aws || strchr(c->bucket, '.');
    }
    int r = find_credentials(c, err, errlen);
    if (r == 0 && !c->region && !(c->region = region_of_host(c->host)))
        c->region = mem_strdup("us-east-1");
    if (r == 0 && !c->region)
        r = -ENOMEM;
    if (r < 0)
        s3_config_free(c);
    return r;
}

/*
 * listxml.c — the two XML answers of an S3 server that rehydrate reads: a ListObjectsV2 page
 * (<ListBucketResult> with <Contents><Key>..</Key><Size>..</Size></Contents>, <IsTruncated>,
 * <NextContinuationToken>) and an error (<Error><Code>..</Code><Message>..</Message></Error>).
 *
 * Not a general XML parser, on purpose: these answers are flat, their elements have no attributes that
 * matter, and the only escapes in their text are XML's five named entities and numeric character
 * references. Pulling in libxml2 for a dozen element names would be the heavy dependency STYLE.md warns
 * about. The server's bytes are untrusted: every span is bounded by the answer's length (tests/fuzz/
 * fuzz-s3xml.c).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "s3/s3.h"

/* The text of the first <tag>..</tag> in [p, end), or false. *ret_after is just past the closing tag. */
static bool element(const char *p, const char *end, const char *tag, const char **ret_text, size_t *ret_len,
                    const char **ret_after)
{
    char open[40], close[40];
    int on = snprintf(open, sizeof(open), "<%s>", tag), cn = snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = memmem(p, (size_t)(end - p), open, (size_t)on);
    if (!a)
        return false;
    a += on;
    const char *b = memmem(a, (size_t)(end - a), close, (size_t)cn);
    if (!b)
        return false;
    *ret_text = a;
    *ret_len = (size_t)(b - a);
    if (ret_after)
        *ret_after = b + cn;
    return true;
}

static size_t put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Decodes XML text of n bytes into out (room for n + 1: decoding never lengthens it), NUL-terminated.
 * Returns the length, or -1 for a bad escape or a character reference to NUL or beyond Unicode.
 */
static long decode_text(const char *s, size_t n, char *out)
{
    static const struct {
        const char *name;
        char c;
    } named[] = { { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' } };
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            out[o++] = s[i++];
            continue;
        }
        const char *e = s + i + 1;
        size_t left = n - i - 1;
        bool done = false;
        for (size_t k = 0; k < ARRAY_SIZE(named) && !done; k++) {
            size_t l = strlen(named[k].name);
            if (left >= l && !memcmp(e, named[k].name, l)) {
                out[o++] = named[k].c;
                i += 1 + l;
                done = true;
            }
        }
        if (done)
            continue;
        if (left < 3 || e[0] != '#')
            return -1;
        bool hex = e[1] == 'x';
        size_t j = hex ? 2 : 1;
        unsigned long cp = 0;
        size_t digits = 0;
        for (; j < left && e[j] != ';'; j++, digits++) {
            char c = e[j];
            int v = c >= '0' && c <= '9' ? c - '0'
                  : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0 || digits >= 8)
                return -1;
            cp = cp * (hex ? 16 : 10) + (unsigned long)v;
        }
        /* "&#" + digits + ";" is at least as long as the UTF-8 it stands for. */
        if (j >= left || digits == 0 || cp == 0 || cp > 0x10ffff)
            return -1;
        o += put_utf8(out + o, cp);
        i += 1 + j + 1;
    }
    out[o] = 0;
    return (long)o;
}

static bool parse_size_text(const char *s, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

int s3_xml_list(const char *xml, size_t n, int (*visit)(void *ud, const char *key, uint64_t size), void *ud,
                bool *ret_truncated, char **ret_token)
{
    const char *p = xml, *end = xml + n;
    if (!memmem(xml, n, "<ListBucketResult", 17))
        return RH_ECORRUPT;
    const char *t;
    size_t tl;
    bool truncated = element(xml, end, "IsTruncated", &t, &tl, NULL) && tl == 4 && !memcmp(t, "true", 4);
    char *token = NULL;
    if (truncated) {
        if (!element(xml, end, "NextContinuationToken", &t, &tl, NULL) || tl == 0)
            return RH_ECORRUPT; /* a truncated page must say where the next one starts */
        if (!(token = mem_alloc(tl + 1)))
            return -ENOMEM;
        long len = decode_text(t, tl, token);
        if (len <= 0 || strlen(token) != (size_t)len) { /* empty, or a NUL inside */
            free(token);
            return RH_ECORRUPT;
        }
    }
    char *key = NULL;
    size_t key_cap = 0;
    int r = 0;
    const char *c;
    size_t cl;
    while (r == 0 && element(p, end, "Contents", &c, &cl, &p)) {
        const char *k, *z;
        size_t kl, zl;
        uint64_t size;
        if (!element(c, c + cl, "Key", &k, &kl, NULL) || !element(c, c + cl, "Size", &z, &zl, NULL) ||
            !parse_size_text(z, zl, &size)) {
            r = RH_ECORRUPT;
            break;
        }
        if (kl + 1 > key_cap) {
            char *nk = mem_realloc(key, kl + 1);
            if (!nk) {
                r = -ENOMEM;
                break;
            }
            key = nk;
            key_cap = kl + 1;
        }
        long len = decode_text(k, kl, key);
        if (len <= 0 || strlen(key) != (size_t)len) {
            r = RH_ECORRUPT;
            break;
        }
        r = visit(ud, key, size);
    }
    free(key);
    if (r != 0) {
        free(token);
        return r;
    }
    *ret_truncated = truncated;
    *ret_token = token;
    return 0;
}

static void copy_decoded(const char *xml, size_t n, const char *tag, char *out, size_t out_len)
{
    const char *t;
    size_t tl;
    if (out_len == 0)
        return;
    out[0] = 0;
    if (!element(xml, xml + n, tag, &t, &tl, NULL))
        return;
    char *tmp = mem_alloc(tl + 1);
    if (!tmp)
        return;
    long len = decode_text(t, tl, tmp);
    if (len >= 0) {
        size_t m = MIN((size_t)len, out_len - 1);
        /* Keep the message printable: it goes to a terminal. */
        for (size_t i = 0; i < m; i++)
            out[i] = (unsigned char)tmp[i] < 0x20 || tmp[i] == 0x7f ? ' ' : tmp[i];
        out[m] = 0;
    }
    free(tmp);
}

void s3_xml_error(const char *xml, size_t n, char *code, size_t code_len, char *msg, size_t msg_len)
{
    copy_decoded(xml, n, "Code", code, code_len);
    copy_decoded(xml, n, "Message", msg, msg_len);
}

int s3_xml_upload_id(const char *xml, size_t n, char *out, size_t out_len)
{
    copy_decoded(xml, n, "UploadId", out, out_len);
    return out_len && out[0] && strlen(out) < out_len - 1 ? 0 : RH_ECORRUPT;
}

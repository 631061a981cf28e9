/*
 * client.c — requests to an S3-compatible server through libcurl. See s3.h.
 *
 * Signing is libcurl's (CURLOPT_AWS_SIGV4). What the libcurl of Debian bookworm (7.88) leaves to the
 * caller, read from its lib/http_aws_sigv4.c, and done here:
 *  - the payload hash: it signs the x-amz-content-sha256 header we send (the body's SHA-256, or that of
 *    the empty body), and without one it hashes only POST fields, which a PUT has none of;
 *  - the canonical URI and query are the URL's path and query as given, so keys are sent encoded the
 *    way AWS encodes them (uri_encode) and query parameters in sorted order;
 *  - every header we set is signed, so we set no header we do not send (no "Expect:" to remove one),
 *    and the Host header ourselves, with the port, which some versions leave out of what they sign.
 *
 * Each request borrows an easy handle from the client's small pool and gives it back, so its
 * connection (and TLS session) serves the next request.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>

#include "common/util.h"
#include "hash/hash.h"
#include "s3/s3.h"

#define POOL_MAX 16
/* An answer we keep in memory (a listing page, an error): larger is not what we asked for. */
#define BODY_MAX (16u << 20)
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_client {
    s3_config cfg;
    char *name;   /* s3:SCHEME://HOST/BUCKET/PREFIX, for messages */
    char *origin; /* SCHEME://HOST or SCHEME://BUCKET.HOST */
    char *host_header;
    char *sigv4;  /* "aws:amz:REGION:s3" */
    char *token_header;
    char *ca_bundle; /* AWS_CA_BUNDLE: the certificates to trust instead of the system's */
    unsigned retries;
    long timeout_s;
    uint64_t upload_cutoff; /* larger objects go up as multipart uploads */
    pthread_mutex_t lock; /* protects idle */
    CURL *idle[POOL_MAX];
    size_t nidle;
    s3_log_fn log;
    void *log_ud;
    bool told_no_bucket;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void say(s3_client *cl, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(s3_client *cl, int level, const char *fmt, ...)
{
    if (!cl->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cl->log(cl->log_ud, level, msg);
}

unsigned s3_env_unsigned(const char *name, unsigned dflt, unsigned min, unsigned max)
{
    const char *v = getenv(name);
    uint64_t n;
    return v && *v && parse_u64(v, &n) == 0 && n >= min && n <= max ? (unsigned)n : dflt;
}

int s3_client_new(s3_config *c, s3_client **ret)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return -ENOMEM;
    s3_client *cl = mem_calloc(1, sizeof(*cl));
    if (!cl)
        return -ENOMEM;
    cl->cfg = *c;
    memset(c, 0, sizeof(*c));
    const s3_config *g = &cl->cfg;
    const char *scheme = g->https ? "https" : "http";
    cl->name = mem_asprintf("s3:%s://%s/%s%s%.*s", scheme, g->host, g->bucket, *g->prefix ? "/" : "",
                            (int)(strlen(g->prefix) ? strlen(g->prefix) - 1 : 0), g->prefix);
    if (g->path_style) {
        cl->origin = mem_asprintf("%s://%s", scheme, g->host);
        cl->host_header = mem_asprintf("host: %s", g->host);
    } else {
        cl->origin = mem_asprintf("%s://%s.%s", scheme, g->bucket, g->host);
        cl->host_header = mem_asprintf("host: %s.%s", g->bucket, g->host);
    }
    cl->sigv4 = mem_asprintf("aws:amz:%s:s3", g->region);
    if (g->session_token)
        cl->token_header = mem_asprintf("x-amz-security-token: %s", g->session_token);
    const char *ca = getenv("AWS_CA_BUNDLE");
    if (ca && *ca)
        cl->ca_bundle = strdup(ca);
    cl->retries = s3_env_unsigned("REHYDRATE_S3_RETRIES", 4, 0, 100);
    cl->timeout_s = s3_env_unsigned("REHYDRATE_S3_TIMEOUT", 30, 0, 86400);
    const char *cutoff = getenv("REHYDRATE_S3_UPLOAD_CUTOFF");
    uint64_t v;
    cl->upload_cutoff = cutoff && *cutoff && parse_size(cutoff, &v) == 0 && v >= S3_PART_MIN ? v : S3_UPLOAD_CUTOFF;
    pthread_mutex_init(&cl->lock, NULL);
    if (!cl->name || !cl->origin || !cl->host_header || !cl->sigv4 || (g->session_token && !cl->token_header) ||
        (ca && *ca && !cl->ca_bundle)) {
        s3_client_free(cl);
        return -ENOMEM;
    }
    *ret = cl;
    return 0;
}

void s3_client_free(s3_client *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < cl->nidle; i++)
        curl_easy_cleanup(cl->idle[i]);
    pthread_mutex_destroy(&cl->lock);
    s3_config_free(&cl->cfg);
    free(cl->name);
    free(cl->origin);
    free(cl->host_header);
    free(cl->sigv4);
    free(cl->token_header);
    free(cl->ca_bundle);
    free(cl);
}

void s3_client_set_log(s3_client *cl, s3_log_fn log, void *ud)
{
    cl->log = log;
    cl->log_ud = ud;
}

const char *s3_client_name(const s3_client *cl) { return cl->name; }

static CURL *take_handle(s3_client *cl)
{
    pthread_mutex_lock(&cl->lock);
    CURL *h = cl->nidle ? cl->idle[--cl->nidle] : NULL;
    pthread_mutex_unlock(&cl->lock);
    return h ? h : curl_easy_init();
}

static void give_handle(s3_client *cl, CURL *h)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->nidle < POOL_MAX) {
        cl->idle[cl->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&cl->lock);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- a growable buffer that fails instead of aborting (this is a read path of the library) ---- */

typedef struct sbuf {
    char *data;
    size_t len, cap;
    bool nomem;
} sbuf;

static void sb_add(sbuf *b, const void *p, size_t n)
{
    if (b->nomem)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = MAX(b->cap * 2, b->len + n + 1);
        cap = MAX(cap, (size_t)256);
        char *d = mem_realloc(b->data, cap);
        if (!d) {
            b->nomem = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0; /* always a string */
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_free(sbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- encoding ---- */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Appends s percent-encoded the way SigV4 wants (unreserved bytes as they are, others %XX, '/' kept
 * when keep_slash). */
static void uri_encode(sbuf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (unreserved(c) || (keep_slash && c == '/')) {
            sb_add(b, s, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sb_add(b, e, 3);
        }
    }
}

/* ---- one request ---- */

typedef struct request {
    const char *method; /* "GET" or "PUT" */
    const char *key;    /* relative to the prefix; NULL: the bucket itself */
    const char *query;  /* encoded and sorted, or NULL */
    bool range;
    uint64_t off;
    size_t len;
    void *out;          /* a ranged GET's destination (len bytes) */
    bool upto;          /* the object may end before off + len: *got says where */
    size_t *got;
    const void *body;   /* a PUT's or POST's body */
    size_t body_len;
    unsigned part;      /* of a multipart upload (for messages), or 0 */
    char *etag;         /* where a successful answer's ETag goes (ETAG_MAX bytes), or NULL */
} request;

#define ETAG_MAX 128

typedef struct response {
    CURL *h;
    const request *rq;
    long status;
    size_t got;      /* bytes written into rq->out */
    uint64_t skip;   /* bytes of a 200 answer to a ranged GET before the range */
    bool started;
    sbuf body;       /* other answers: a listing page, an error */
    bool too_big;
    size_t sent;     /* of a PUT's body */
    int64_t length;  /* Content-Length of the answer, or -1 */
    bool enough;     /* a ranged GET stopped once it had its bytes (on_data) */
    char etag[ETAG_MAX];
} response;

/* Keeps the ETag header of the answer (a multipart upload names each part by it). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    response *rs = ud;
    size_t len = size * n;
    if (len > 5 && strncasecmp(p, "etag:", 5) == 0) {
        const char *v = p + 5, *e = p + len;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        size_t m = (size_t)(e - v);
        if (m < sizeof(rs->etag)) {
            memcpy(rs->etag, v, m);
            rs->etag[m] = 0;
        }
    }
    return len;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    response *rs = ud;
    size_t len = size * n;
    if (!rs->started) {
        rs->started = true;
        curl_easy_getinfo(rs->h, CURLINFO_RESPONSE_CODE, &rs->status);
        /* A server that ignores Range answers 200 with the whole object: keep only the range. */
        if (rs->status == 200 && rs->rq->range)
            rs->skip = rs->rq->off;
    }
    if (rs->rq->out && (rs->status == 200 || rs->status == 206)) {
        const char *q = p;
        size_t m = len;
        if (rs->skip) {
            size_t k = (size_t)MIN((uint64_t)m, rs->skip);
            rs->skip -= k;
            q += k;
            m -= k;
        }
        size_t room = rs->rq->len - rs->got;
        if (m > room)
            m = room;
        memcpy((char *)rs->rq->out + rs->got, q, m);
        rs->got += m;
        /* A 206 starts where we asked; a server that runs past the end we asked for (s3rver answers
         * "bytes=0-0" with the whole object) has given us all we need: stop the transfer there. */
        if (rs->got == rs->rq->len && rs->status == 206 && len > m + (size_t)(q - p)) {
            rs->enough = true;
            return 0;
        }
        return len;
    }
    if (rs->body.len + len > BODY_MAX) {
        rs->too_big = true;
        return 0; /* aborts the transfer */
    }
    sb_add(&rs->body, p, len);
    return rs->body.nomem ? 0 : len;
}

static size_t on_send(char *p, size_t size, size_t n, void *ud)
{
    response *rs = ud;
    size_t m = MIN(size * n, rs->rq->body_len - rs->sent);
    memcpy(p, (const char *)rs->rq->body + rs->sent, m);
    rs->sent += m;
    return m;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    response *rs = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > rs->rq->body_len)
        return CURL_SEEKFUNC_FAIL;
    rs->sent = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

/* Whether a failure may pass if tried again. */
static bool transient(CURLcode cc, long status)
{
    if (cc != CURLE_OK)
        return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SEND_ERROR ||
               cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE ||
               cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_HTTP2 || cc == CURLE_HTTP2_STREAM ||
               cc == CURLE_SSL_CONNECT_ERROR;
    return status >= 500 || status == 429 || status == 408;
}

/* One attempt: sets *cc and rs (status, body). */
static CURLcode perform(s3_client *cl, CURL *h, const request *rq, const char *url, struct curl_slist *hdrs,
                        response *rs)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, cl->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, cl->cfg.access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, cl->cfg.secret_key);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    if (rq->etag) {
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    if (cl->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, cl->ca_bundle);
    /* A stalled transfer (under 1 byte/s for the timeout) fails and is retried; a slow one is not. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, cl->timeout_s);
    if (!strcmp(rq->method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (!strcmp(rq->method, "DELETE"))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    else if (!strcmp(rq->method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    if (!strcmp(rq->method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_send);
        curl_easy_setopt(h, CURLOPT_READDATA, rs);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, rs);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
    }
    CURLcode cc = curl_easy_perform(h);
    if (!rs->started)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    curl_off_t length = -1;
    if (cc == CURLE_OK && curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK)
        rs->length = length;
    return cc;
}

/* What a failed request is told as: "GET BUCKET/KEY (bytes A-B)". */
static void describe(const s3_client *cl, const request *rq, char *out, size_t n)
{
    int k = snprintf(out, n, "%s %s/%s%s", rq->method, cl->cfg.bucket, cl->cfg.prefix, rq->key ? rq->key : "");
    if (rq->range && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " (bytes %llu-%llu)", (unsigned long long)rq->off,
                 (unsigned long long)(rq->off + rq->len - 1));
    else if (rq->part && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " (part %u)", rq->part);
    else if (rq->query && !strcmp(rq->method, "POST") && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, " (%s a multipart upload)", strncmp(rq->query, "uploads", 7) ? "completing" : "starting");
}

/* Tells the user what a final failure means, and returns its code. */
static int explain(s3_client *cl, const request *rq, CURLcode cc, const response *rs, const char *curl_err)
{
    char what[512], code[64], msg[256];
    describe(cl, rq, what, sizeof(what));
    if (cc != CURLE_OK && !rs->too_big) {
        bool cert = cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE;
        say(cl, RH_LOG_WARNING, "%s: %s: %s%s", cl->name, what, *curl_err ? curl_err : curl_easy_strerror(cc),
            cert ? " (a server with a private CA: set AWS_CA_BUNDLE to the file of its certificates)" : "");
        return -EIO;
    }
    s3_xml_error(rs->body.data ? rs->body.data : "", rs->body.len, code, sizeof(code), msg,
                 sizeof(msg));
    long st = rs->status;
    if (st == 404 && strcmp(code, "NoSuchBucket") && rq->key)
        return -ENOENT; /* a missing object is an answer, not a failure: callers probe for files */
    if (st == 404) {
        if (__atomic_exchange_n(&cl->told_no_bucket, true, __ATOMIC_RELAXED))
            return -ENOENT; /* said once is enough: every request after the first fails the same way */
        say(cl, RH_LOG_WARNING, "%s: %s: bucket \"%s\" does not exist at %s (HTTP 404 %s)", cl->name, what, cl->cfg.bucket,
            cl->cfg.host, code);
        return -ENOENT;
    }
    if (st == 403 || st == 401) {
        /* A known key whose signature does not match: the secret (or the region) is what is wrong. */
        bool sig = strcmp(code, "SignatureDoesNotMatch") == 0;
        say(cl, RH_LOG_WARNING, "%s: %s: access denied (HTTP %ld %s%s%s): %s the region (%s)%s", cl->name, what,
            st, code, *msg ? ": " : "", msg,
            sig ? "the server knows the access key but the request's signature does not match: check "
                  "AWS_SECRET_ACCESS_KEY (or the profile's secret) and"
                : "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile),",
            cl->cfg.region, sig ? "" : " and the bucket's policy");
        return -EACCES;
    }
    if (st == 416) { /* the store says there is more: the object is damaged (truncated), not the link */
        say(cl, RH_LOG_WARNING, "%s: %s: the object is shorter than that", cl->name, what);
        return RH_ECORRUPT;
    }
    if (rs->too_big) {
        say(cl, RH_LOG_WARNING, "%s: %s: the answer is larger than asked for (HTTP %ld)", cl->name, what, st);
        return -EIO;
    }
    if (st >= 200 && st < 300 && rq->out && rs->got < rq->len) {
        say(cl, RH_LOG_WARNING, "%s: %s: the answer has %zu of %zu bytes", cl->name, what, rs->got, rq->len);
        return -EIO;
    }
    say(cl, RH_LOG_WARNING, "%s: %s: HTTP %ld%s%s%s%s", cl->name, what, st, *code ? " " : "", code, *msg ? ": " : "", msg);
    return -EIO;
}

/* Runs rq, retrying what may pass; on success, the answer's body (a listing) in *ret_body and its
 * Content-Length in *ret_length, if asked. */
static int run_full(s3_client *cl, const request *rq, sbuf *ret_body, int64_t *ret_length)
{
    sbuf url = { 0 };
    sb_str(&url, cl->origin);
    if (cl->cfg.path_style) {
        sb_str(&url, "/");
        uri_encode(&url, cl->cfg.bucket, false);
    }
    if (rq->key) {
        sb_str(&url, "/");
        uri_encode(&url, cl->cfg.prefix, true);
        uri_encode(&url, rq->key, true);
    } else if (!cl->cfg.path_style) {
        sb_str(&url, "/");
    }
    if (rq->query) {
        sb_str(&url, "?");
        sb_str(&url, rq->query);
    }
    if (url.nomem) {
        sb_free(&url);
        return -ENOMEM;
    }

    char sha[2 * HASH_LEN + 1] = SHA256_EMPTY;
    if (rq->body_len) {
        uint8_t d[HASH_LEN];
        if (hash_sha256(rq->body, rq->body_len, d) < 0) {
            sb_free(&url);
            return -ENOMEM;
        }
        hash_hex(d, sha);
    }
    char sha_header[128], range_header[96];
    snprintf(sha_header, sizeof(sha_header), "x-amz-content-sha256: %s", sha);
    struct curl_slist *hdrs = NULL, *t;
    bool ok = (t = curl_slist_append(hdrs, cl->host_header)) && (hdrs = t) &&
              (t = curl_slist_append(hdrs, sha_header)) && (hdrs = t);
    if (ok && rq->range) {
        snprintf(range_header, sizeof(range_header), "range: bytes=%llu-%llu", (unsigned long long)rq->off,
                 (unsigned long long)(rq->off + rq->len - 1));
        ok = (t = curl_slist_append(hdrs, range_header)) && (hdrs = t);
    }
    if (ok && cl->token_header)
        ok = (t = curl_slist_append(hdrs, cl->token_header)) && (hdrs = t);
    /* A POST's body is XML: said, so that libcurl does not add (unsigned) a form's content type. */
    if (ok && !strcmp(rq->method, "POST"))
        ok = (t = curl_slist_append(hdrs, "content-type: application/xml")) && (hdrs = t);
    CURL *h = ok ? take_handle(cl) : NULL;
    if (!h) {
        curl_slist_free_all(hdrs);
        sb_free(&url);
        return -ENOMEM;
    }
    char curl_err[CURL_ERROR_SIZE];
    int r = 0;
    for (unsigned attempt = 0;; attempt++) {
        response rs = { .h = h, .rq = rq, .length = -1 };
        curl_err[0] = 0;
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
        CURLcode cc = perform(cl, h, rq, url.data, hdrs, &rs);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        if (cc == CURLE_WRITE_ERROR && rs.enough)
            cc = CURLE_OK;
        bool good = cc == CURLE_OK && !rs.too_big && rs.status >= 200 && rs.status < 300 &&
                    (!rq->out || rs.got == rq->len || rq->upto);
        if (good) {
            if (rq->got)
                *rq->got = rs.got;
            if (rq->etag)
                memcpy(rq->etag, rs.etag, sizeof(rs.etag));
            if (ret_length)
                *ret_length = rs.length;
            if (ret_body)
                *ret_body = rs.body;
            else
                sb_free(&rs.body);
            break;
        }
        if (attempt < cl->retries && transient(cc, rs.status)) {
            char what[512];
            describe(cl, rq, what, sizeof(what));
            unsigned ms = 100u << MIN(attempt, 5u); /* 0.1, 0.2, 0.4, ... 3.2 s */
            say(cl, RH_LOG_INFO, "%s: %s: %s; trying again in %u ms", cl->name, what,
                cc != CURLE_OK ? (*curl_err ? curl_err : curl_easy_strerror(cc)) : "server busy or failing", ms);
            sb_free(&rs.body);
            struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
            continue;
        }
        r = rs.body.nomem ? -ENOMEM : explain(cl, rq, cc, &rs, curl_err);
        sb_free(&rs.body);
        break;
    }
    give_handle(cl, h);
    curl_slist_free_all(hdrs);
    sb_free(&url);
    return r;
}

static int run(s3_client *cl, const request *rq, sbuf *ret_body) { return run_full(cl, rq, ret_body, NULL); }

int s3_get(s3_client *cl, const char *key, uint64_t off, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    request rq = { .method = "GET", .key = key, .range = true, .off = off, .len = len, .out = buf };
    return run(cl, &rq, NULL);
}

int s3_get_upto(s3_client *cl, const char *key, uint64_t off, void *buf, size_t len, size_t *ret_got)
{
    *ret_got = 0;
    if (len == 0)
        return 0;
    request rq = { .method = "GET", .key = key, .range = true, .off = off, .len = len, .out = buf,
                   .upto = true, .got = ret_got };
    return run(cl, &rq, NULL);
}

int s3_put(s3_client *cl, const char *key, const void *buf, size_t len)
{
    request rq = { .method = "PUT", .key = key, .body = buf, .body_len = len };
    return run(cl, &rq, NULL);
}

/* ---- multipart uploads ---- */

typedef struct multipart {
    s3_client *cl;
    const char *key;
    const uint8_t *data;
    size_t len, nparts;
    sbuf query; /* "uploadId=ID", encoded: the query of the parts, the completion and the abort */
    char (*etags)[ETAG_MAX];
    pthread_mutex_t mu;
    size_t next; /* the next part to upload (0-based) */
    int err;     /* the first failure: the other threads stop taking parts */
} multipart;

static void *part_main(void *arg)
{
    multipart *mp = arg;
    for (;;) {
        pthread_mutex_lock(&mp->mu);
        size_t i = mp->err ? mp->nparts : mp->next++;
        pthread_mutex_unlock(&mp->mu);
        if (i >= mp->nparts)
            return NULL;
        char query[64 + 3 * 512];
        snprintf(query, sizeof(query), "partNumber=%zu&%s", i + 1, mp->query.data);
        size_t off = i * (size_t)S3_PART_SIZE;
        request rq = { .method = "PUT", .key = mp->key, .query = query, .body = mp->data + off,
                       .body_len = MIN((size_t)S3_PART_SIZE, mp->len - off), .part = (unsigned)(i + 1),
                       .etag = mp->etags[i] };
        int r = run(mp->cl, &rq, NULL);
        if (r >= 0 && !mp->etags[i][0]) {
            say(mp->cl, RH_LOG_WARNING, "%s: PUT %s/%s%s (part %zu): the answer has no ETag", mp->cl->name,
                mp->cl->cfg.bucket, mp->cl->cfg.prefix, mp->key, i + 1);
            r = -EIO;
        }
        if (r < 0) {
            pthread_mutex_lock(&mp->mu);
            if (!mp->err)
                mp->err = r;
            pthread_mutex_unlock(&mp->mu);
        }
    }
}

/* CompleteMultipartUpload, whose answer may be 200 with an error in its body (S3 says so). */
static int complete_multipart(multipart *mp)
{
    sbuf xml = { 0 }, answer = { 0 };
    sb_str(&xml, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < mp->nparts; i++) {
        char part[64];
        snprintf(part, sizeof(part), "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        sb_str(&xml, part);
        for (const char *e = mp->etags[i]; *e; e++) /* ETags are quoted: "…" */
            sb_str(&xml, *e == '"' ? "&quot;" : *e == '&' ? "&amp;" : *e == '<' ? "&lt;" : (char[2]){ *e, 0 });
        sb_str(&xml, "</ETag></Part>");
    }
    sb_str(&xml, "</CompleteMultipartUpload>");
    int r = xml.nomem ? -ENOMEM : 0;
    if (r == 0) {
        request rq = { .method = "POST", .key = mp->key, .query = mp->query.data, .body = xml.data,
                       .body_len = xml.len };
        r = run(mp->cl, &rq, &answer);
    }
    if (r == 0 && answer.len && memmem(answer.data, answer.len, "<Error>", 7)) {
        char code[64], msg[256];
        s3_xml_error(answer.data, answer.len, code, sizeof(code), msg, sizeof(msg));
        say(mp->cl, RH_LOG_WARNING, "%s: POST %s/%s%s (completing a multipart upload): %s%s%s", mp->cl->name,
            mp->cl->cfg.bucket, mp->cl->cfg.prefix, mp->key, code, *msg ? ": " : "", msg);
        r = -EIO;
    }
    sb_free(&answer);
    sb_free(&xml);
    return r;
}

static int put_multipart(s3_client *cl, const char *key, const uint8_t *data, size_t len)
{
    sbuf answer = { 0 };
    request create = { .method = "POST", .key = key, .query = "uploads=" };
    int r = run(cl, &create, &answer);
    char id[512];
    if (r >= 0 && s3_xml_upload_id(answer.data ? answer.data : "", answer.len, id, sizeof(id)) < 0) {
        say(cl, RH_LOG_WARNING, "%s: POST %s/%s%s (starting a multipart upload): the answer names no upload",
            cl->name, cl->cfg.bucket, cl->cfg.prefix, key);
        r = -EIO;
    }
    sb_free(&answer);
    if (r < 0)
        return r;
    multipart mp = { .cl = cl, .key = key, .data = data, .len = len,
                     .nparts = (len + S3_PART_SIZE - 1) / S3_PART_SIZE };
    sb_str(&mp.query, "uploadId=");
    uri_encode(&mp.query, id, false);
    mp.etags = mem_calloc(mp.nparts, sizeof(*mp.etags));
    if (mp.query.nomem || !mp.etags) {
        sb_free(&mp.query);
        free(mp.etags);
        return -ENOMEM; /* the started upload holds no part: nothing to abort */
    }
    pthread_mutex_init(&mp.mu, NULL);
    pthread_t th[S3_PART_THREADS];
    size_t nth = 0;
    while (nth + 1 < S3_PART_THREADS && nth + 1 < mp.nparts && pthread_create(&th[nth], NULL, part_main, &mp) == 0)
        nth++;
    part_main(&mp); /* this thread uploads parts too */
    for (size_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&mp.mu);
    r = mp.err ? mp.err : complete_multipart(&mp);
    if (r < 0) { /* parts of an upload never completed are kept (and billed) until aborted */
        request abort_rq = { .method = "DELETE", .key = key, .query = mp.query.data };
        (void)run(cl, &abort_rq, NULL);
    }
    sb_free(&mp.query);
    free(mp.etags);
    return r;
}

int s3_put_fd(s3_client *cl, const char *key, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    size_t len = (size_t)st.st_size;
    void *map = NULL;
    if (len && (map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        return -errno;
    int r = len > cl->upload_cutoff ? put_multipart(cl, key, map, len) : s3_put(cl, key, map, len);
    if (map)
        munmap(map, len);
    return r;
}

int s3_delete(s3_client *cl, const char *key)
{
    request rq = { .method = "DELETE", .key = key };
    return run(cl, &rq, NULL);
}

int s3_size(s3_client *cl, const char *key, uint64_t *ret_size)
{
    request rq = { .method = "HEAD", .key = key };
    int64_t length = -1;
    int r = run_full(cl, &rq, NULL, &length);
    if (r < 0)
        return r;
    if (length < 0) {
        say(cl, RH_LOG_WARNING, "%s: HEAD %s/%s%s: the answer has no Content-Length", cl->name, cl->cfg.bucket,
            cl->cfg.prefix, key);
        return -EIO;
    }
    *ret_size = (uint64_t)length;
    return 0;
}

struct list_ctx {
    s3_client *cl;
    size_t skip; /* the client's prefix, which keys are given without */
    int (*visit)(void *ud, const char *key, uint64_t size);
    void *ud;
};

static int list_visit(void *ud, const char *key, uint64_t size)
{
    struct list_ctx *lc = ud;
    if (strlen(key) <= lc->skip || strncmp(key, lc->cl->cfg.prefix, lc->skip))
        return 0; /* not under our prefix: a server that ignored it */
    return lc->visit(lc->ud, key + lc->skip, size);
}

int s3_list(s3_client *cl, const char *key_prefix, int (*visit)(void *ud, const char *key, uint64_t size),
            void *ud)
{
    struct list_ctx lc = { cl, strlen(cl->cfg.prefix), visit, ud };
    char *full = mem_asprintf("%s%s", cl->cfg.prefix, key_prefix);
    if (!full)
        return -ENOMEM;
    char *token = NULL;
    int r = 0;
    do {
        /* The parameters in sorted order, encoded: the canonical query that libcurl signs as given. */
        sbuf q = { 0 };
        if (token) {
            sb_str(&q, "continuation-token=");
            uri_encode(&q, token, false);
            sb_str(&q, "&");
        }
        sb_str(&q, "list-type=2&prefix=");
        uri_encode(&q, full, false);
        free(token);
        token = NULL;
        if (q.nomem) {
            sb_free(&q);
            r = -ENOMEM;
            break;
        }
        request rq = { .method = "GET", .query = q.data };
        sbuf body = { 0 };
        r = run(cl, &rq, &body);
        sb_free(&q);
        if (r < 0)
            break;
        bool more = false;
        r = s3_xml_list(body.data ? body.data : "", body.len, list_visit, &lc, &more, &token);
        sb_free(&body);
        if (r == RH_ECORRUPT)
            say(cl, RH_LOG_WARNING, "%s: the listing of \"%s\" is not a ListObjectsV2 answer", cl->name, full);
        if (r != 0 || !more)
            break;
    } while (token);
    free(token);
    free(full);
    return r;
}

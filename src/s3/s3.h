/*
 * s3.h — stores on S3-compatible object storage (AWS S3, Ceph RGW, MinIO, Garage, B2, ...), read through
 * libcurl: its CURLOPT_AWS_SIGV4 signs every request, connections are kept and reused per handle.
 *
 * A store URL is what restic users write (doc/s3.md):
 *
 *   s3:https://HOST[:PORT]/BUCKET[/PREFIX]    s3:http://HOST[:PORT]/BUCKET[/PREFIX]    s3:HOST/BUCKET[/PREFIX]
 *
 * (the last is https). The store's files are the objects PREFIX/<path>, <path> as in a local store
 * ("rehydrate.store", "containers/data/00000001.ctr", "snapshots/NAME.snap", "index.db").
 *
 *   url.c      the URL, the credentials and the region (environment, then the AWS CLI's profile files)
 *   client.c   requests: ranged GET, PUT, LIST, with retries and messages that say what went wrong
 *   listxml.c  the two XML answers we read: a ListObjectsV2 page and an error
 *   prefetch.c a restore's previewed extents fetched ahead over several connections
 *   blocks.c   small reads of containers and catalogs served from aligned 1 MiB blocks, fetched whole
 *   ops.c      rh_store_ops over a client, which rh_store_open uses for an "s3:" path
 */
#ifndef RH_S3_S3_H
#define RH_S3_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rehydrate/rehydrate.h>

/* ---- where and who (url.c) ---- */

typedef struct s3_config {
    bool https;
    char *host;          /* "HOST" or "HOST:PORT", as the URL gives it */
    char *bucket;
    char *prefix;        /* "" or "a/b/": every key starts with it */
    bool path_style;     /* https://HOST/BUCKET/KEY rather than https://BUCKET.HOST/KEY */
    char *region;
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL unless the credentials are temporary */
} s3_config;

/* True when `path` is a store URL ("s3:..."), which rh_store_open hands to this module. */
bool s3_is_url(const char *path);

/*
 * Parses a store URL into c (host, bucket, prefix, addressing style) and completes it from the
 * environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION (or
 * AWS_REGION), else the profile AWS_PROFILE (default "default") of the AWS CLI's files
 * (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials; AWS_CONFIG_FILE, default ~/.aws/config);
 * the region defaults to the one in an AWS host name, else us-east-1. REHYDRATE_S3_BUCKET_LOOKUP=path or
 * dns chooses the addressing style; by default virtual-host (dns) for amazonaws.com, path otherwise.
 * Returns 0, or -EINVAL with a message in err (what is wrong and how to fix it); c is then empty.
 * Free with s3_config_free.
 */
int s3_config_from_url(const char *url, s3_config *c, char *err, size_t errlen);
void s3_config_free(s3_config *c);

/* ---- requests (client.c) ---- */

typedef struct s3_client s3_client;

/* Messages about failed requests (RH_LOG_WARNING: the caller reports what failed because of it) and
 * retries (RH_LOG_INFO). */
typedef void (*s3_log_fn)(void *ud, int level, const char *msg);

/* The setting REHYDRATE_S3_* `name` from the environment when it is a number in [min, max], else dflt. */
unsigned s3_env_unsigned(const char *name, unsigned dflt, unsigned min, unsigned max);

/* A client for c, which it takes over (c is left empty). Thread-safe: each request borrows a libcurl
 * handle (with its open connections) from the client's pool. */
int s3_client_new(s3_config *c, s3_client **ret);
void s3_client_free(s3_client *cl);
void s3_client_set_log(s3_client *cl, s3_log_fn log, void *ud);
/* The URL it was made from, without credentials: "s3:http://HOST/BUCKET/PREFIX" (for messages). */
const char *s3_client_name(const s3_client *cl);

/*
 * Exactly len bytes at off of the object PREFIX/key (a ranged GET). Returns 0; -ENOENT when there is no
 * such object; RH_ECORRUPT when it is shorter (damage: the caller's metadata says there is more); -EACCES when the server refuses the credentials; -EIO for any
 * other failure once the retries are spent (timeouts, refused connections, 5xx and 429 answers are
 * retried with backoff; REHYDRATE_S3_RETRIES, default 4). Every failure but -ENOENT is logged with the
 * request and the server's answer.
 */
int s3_get(s3_client *cl, const char *key, uint64_t off, void *buf, size_t len);
/* The same, but the object may end before off + len: *ret_got says how many bytes came (a GET that
 * starts at or past its end is -EIO). */
int s3_get_upto(s3_client *cl, const char *key, uint64_t off, void *buf, size_t len, size_t *ret_got);
/* Stores len bytes as the object PREFIX/key (one PUT, its body's SHA-256 signed). Same codes. */
int s3_put(s3_client *cl, const char *key, const void *buf, size_t len);
/*
 * Stores the whole file open at fd as the object PREFIX/key (the file is mapped, not read into memory):
 * one PUT up to REHYDRATE_S3_UPLOAD_CUTOFF bytes (default S3_UPLOAD_CUTOFF, at least S3_PART_MIN; rclone's
 * upload_cutoff); above, a multipart upload of parts of S3_PART_SIZE, S3_PART_THREADS at a time, each
 * retried alone, aborted (its parts deleted) when one fails. The object appears whole when the upload
 * completes, or not at all. The default sends a container of the default seal size (64 MiB) in one PUT:
 * against s3rver on this kind of machine, 16 MiB parts made backups 13-16% slower (doc/s3.md).
 */
#define S3_UPLOAD_CUTOFF (64ull << 20)
#define S3_PART_MIN (5ull << 20) /* S3's smallest part but the last */
#define S3_PART_SIZE (16u << 20)
#define S3_PART_THREADS 2
int s3_put_fd(s3_client *cl, const char *key, int fd);
/* Removes the object PREFIX/key; removing one that does not exist succeeds (as S3 answers). */
int s3_delete(s3_client *cl, const char *key);
/* The size of the object PREFIX/key (a HEAD request); -ENOENT when there is none. */
int s3_size(s3_client *cl, const char *key, uint64_t *ret_size);
/*
 * Lists the objects whose keys start with PREFIX/key_prefix, page by page (ListObjectsV2): calls
 * visit(ud, key, size) with the key relative to PREFIX, in the server's order. A non-zero return of
 * visit ends the listing and is returned. A bucket that does not exist is -ENOENT.
 */
int s3_list(s3_client *cl, const char *key_prefix, int (*visit)(void *ud, const char *key, uint64_t size),
            void *ud);

/* ---- the XML the server answers with (listxml.c) ---- */

/*
 * One page of a ListObjectsV2 answer: visit(ud, key, size) for every <Contents> (the key's XML escapes
 * decoded); *ret_truncated from <IsTruncated>, and *ret_token (malloc'd, or NULL) from
 * <NextContinuationToken>. RH_ECORRUPT for an answer that is not such a page, or a key that is empty or
 * holds a NUL; a non-zero return of visit is returned.
 */
int s3_xml_list(const char *xml, size_t n, int (*visit)(void *ud, const char *key, uint64_t size), void *ud,
                bool *ret_truncated, char **ret_token);
/* The <Code> and <Message> of an error answer, decoded and cut to fit (empty when absent). */
void s3_xml_error(const char *xml, size_t n, char *code, size_t code_len, char *msg, size_t msg_len);
/* The <UploadId> of a CreateMultipartUpload answer, decoded, into out: RH_ECORRUPT when it is absent,
 * empty or does not fit. */
int s3_xml_upload_id(const char *xml, size_t n, char *out, size_t out_len);

/* ---- a restore's reads fetched ahead (prefetch.c) ---- */

typedef struct s3_prefetch s3_prefetch;

/* A prefetcher that fetches through cl with up to `conns` requests at once (threads started by the first
 * plan), at most `budget` bytes ahead of the reads. Free it before cl. */
int s3_prefetch_new(s3_client *cl, unsigned conns, size_t budget, s3_prefetch **ret);
void s3_prefetch_free(s3_prefetch *p);
/*
 * The extents of object `key` that the next reads will ask for, in their order (the engine's preview):
 * joined across gaps under 1 MiB, cut at 8 MiB, fetched from now on. Replaces the last plan. Returns 0;
 * it is only a hint (when memory runs out, nothing is fetched ahead).
 */
int s3_prefetch_plan(s3_prefetch *p, const char *key, size_t n, const rh_extent *ext);
/* Serves a read of len bytes at off of key from the plan: 1 when served, a negative code when the fetch
 * of those bytes failed (as s3_get says), 0 when the plan does not cover them (read them yourself).
 * Waits for the bytes when they are on their way. */
int s3_prefetch_read(s3_prefetch *p, const char *key, uint64_t off, void *buf, size_t len);

/* ---- small reads of containers, by the block (blocks.c) ---- */

typedef struct s3_blocks s3_blocks;

/* A cache of `count` blocks of `size` bytes (allocated as they are first used) that reads through cl. */
int s3_blocks_new(s3_client *cl, size_t size, unsigned count, s3_blocks **ret);
void s3_blocks_free(s3_blocks *c);
/* Whether a read of len bytes of key should go through c: a container or a catalog (they never change
 * once stored), and at most one block. */
bool s3_blocks_wants(const s3_blocks *c, const char *key, size_t len);
/* Exactly len bytes at off of key, from the aligned blocks that hold them, each fetched whole by one
 * GET when it is not there (one fetch however many threads want it). Returns 0, a code of s3_get_upto,
 * or RH_ECORRUPT when the object ends first. */
int s3_blocks_read(s3_blocks *c, const char *key, uint64_t off, void *buf, size_t len);

/* ---- a store on S3 (ops.c) ---- */

/* The callbacks of a store at `url` (read, list) and their context: what rh_store_open uses for an
 * "s3:" path. On failure, a message in err. s3_store_close frees the context. */
int s3_store_open(const char *url, const rh_store_ops **ret_ops, void **ret_ctx, char *err, size_t errlen);
void s3_store_close(void *ctx);
/* The client behind a context of s3_store_open, for the writers (store/remote.c). */
s3_client *s3_store_client(void *ctx);
/* Sends the context's messages to log (the store's, once it is open). */
void s3_store_set_log(void *ctx, s3_log_fn log, void *ud);

#endif

/*
 * windedup-mk.c — writes a directory tree as a Windows Server Data Deduplication volume, for tests of
 * the Windows reader (issue 14). Usage: see usage() or doc/windows-format-notes.md.
 *
 * OUT becomes a volume root: the chunk store under "System Volume Information/Dedup/ChunkStore/
 * {GUID}.ddp/{Data,Stream}", and for every regular file of SRC a file at the same path, sparse, of the
 * real size, carrying the reparse buffer (tag 0x80000013) in an extended attribute. That is what an
 * optimized file is on NTFS: its $DATA attribute keeps the logical size and no clusters, and ntfs-3g
 * reports that size (ni->data_size) through its dedup plugin. Files of 0 bytes (and, with --min-size,
 * smaller files) are copied plain: Windows never optimizes them (its MinimumFileSize policy is 32 KiB
 * by default). Directories and symbolic links are copied with mode, owner and times; other file types
 * are skipped with a message. Hard links are written as separate files.
 *
 * Chunking is content-defined (gear hash, 32-128 KiB), with chunks deduplicated by digest across all
 * files; holes of sparse sources are found with SEEK_DATA/SEEK_HOLE, never read, and become 128 KiB
 * zero chunks, stored once.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "compress/xpress.h"
#include "windedup-fmt.h"

#define CHUNK_MIN (32u * 1024)
#define CHUNK_MAX (128u * 1024)
#define CDC_MASK (0x7fffull << 49) /* 15 bits: about 32 KiB past the minimum on average */
#define READ_BUF (8u << 20)
#define BAG_FORMAT 0x0103
#define MAX_PARTS 56

/*
 * Compression of one chunk into out (out_cap >= in_len): returns the compressed length, or 0 to store
 * the chunk raw (also when compressing would not make it smaller).
 */
typedef size_t (*compress_fn)(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);
static size_t store_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap)
{
    (void)in, (void)in_len, (void)out, (void)out_cap;
    return 0;
}

/* --compress: plain LZ77 (compression format 2), as Windows stores chunks that shrink. */
static size_t store_lz77(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap)
{
    size_t n;
    return xpress_compress(in, in_len, out, out_cap, &n) == 0 && n < in_len ? n : 0;
}

enum move_kind { MOVE_NONE, MOVE_STREAM, MOVE_DATA };

struct opts {
    int format; /* 0x0201, 0x0102, BAG_FORMAT, or 0 to cycle the three across files */
    compress_fn compress;
    uint64_t container_size, session_size, min_size;
    uint32_t part_chunks;
    int generations; /* bit 1: data containers, bit 2: stream containers */
    bool verbose;
    enum move_kind move;
    const char *xattr;
    uint8_t guid[16];
    char guid_text[40];
};

/* Where a stored chunk is. */
struct loc {
    uint8_t digest[WD_DIGEST_LEN];
    uint32_t container, generation, offset, seq, stored;
    bool used;
};

struct kind_state {
    struct wd_container c;
    bool open;
    uint32_t next_id, opened;
    bool two_generations; /* the open container will get an older generation beside it */
    char *dir;
};

struct state {
    struct opts o;
    struct kind_state data, stream;
    struct loc *table;
    size_t table_cap, table_n;
    uint64_t job_bytes, filetime;
    bool moved;
    unsigned cycle;
    /* counts for the summary */
    uint64_t files, plain, chunks_new, chunks_shared, parts;
    uint8_t *buf, *cbuf, *rec;
    uint64_t zero_digest_ready;
    uint8_t zero_digest[WD_DIGEST_LEN];
    int errors;
};

static uint64_t gear[256];

static void gear_init(void)
{
    uint64_t x = 0x1234567887654321ull;
    for (int i = 0; i < 256; i++) {
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        gear[i] = z ^ (z >> 31);
    }
}

/* Length of the next chunk of p[0..n), n > 0; `last` says no more data follows p[n-1]. */
static size_t cdc_cut(const uint8_t *p, size_t n)
{
    if (n <= CHUNK_MIN)
        return n;
    size_t lim = n < CHUNK_MAX ? n : CHUNK_MAX;
    uint64_t h = 0;
    for (size_t i = CHUNK_MIN - 64; i < lim; i++) {
        h = (h << 1) + gear[p[i]];
        if (i >= CHUNK_MIN && !(h & CDC_MASK))
            return i + 1;
    }
    return lim;
}

/* The chunk digest: the first 32 bytes of SHA-512 of the uncompressed chunk. */
static void digest32(const void *p, size_t n, uint8_t out[WD_DIGEST_LEN])
{
    uint8_t md[64];
    unsigned len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha512(), NULL)) {
        fprintf(stderr, "windedup-mk: SHA-512 failed\n");
        exit(1);
    }
    memcpy(out, md, WD_DIGEST_LEN);
}

static struct loc *table_slot(struct state *st, const uint8_t d[WD_DIGEST_LEN])
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    for (size_t i = h & (st->table_cap - 1);; i = (i + 1) & (st->table_cap - 1))
        if (!st->table[i].used || !memcmp(st->table[i].digest, d, WD_DIGEST_LEN))
            return &st->table[i];
}

static void table_grow(struct state *st)
{
    struct loc *old = st->table;
    size_t n = st->table_cap;
    st->table_cap = n ? 2 * n : 4096;
    st->table = xcalloc(st->table_cap, sizeof(*st->table));
    for (size_t i = 0; i < n; i++)
        if (old[i].used)
            *table_slot(st, old[i].digest) = old[i];
    free(old);
}

static int kind_close(struct state *st, struct kind_state *k)
{
    if (!k->open)
        return 0;
    k->open = false;
    int r = wd_container_close(&k->c);
    if (r == 0 && k->two_generations)
        r = wd_write_older_generation(&k->c, k->dir, k->c.kind == WD_DATA);
    if (r < 0)
        fprintf(stderr, "windedup-mk: %s: %s\n", k->c.path, strerror(-r));
    wd_container_release(&k->c);
    (void)st;
    return r;
}

/* Makes sure a container of the kind is open with room for a record of len bytes (a record larger
 * than --container-size gets a container of its own). */
static int kind_need(struct state *st, struct kind_state *k, size_t len)
{
    if (k->open && k->c.chunks && k->c.end + len > st->o.container_size) {
        int r = kind_close(st, k);
        if (r < 0)
            return r;
    }
    if (k->open)
        return 0;
    /* With --generations every other container (the 1st, 3rd, ...) is written in two generations. */
    k->two_generations = (st->o.generations & (k == &st->data ? 1 : 2)) && k->opened % 2 == 0;
    int r = wd_container_open(&k->c, k->dir, k == &st->data ? WD_DATA : WD_STREAM, k->next_id,
                              k->two_generations ? 2 : 1, st->filetime);
    if (r < 0) {
        fprintf(stderr, "windedup-mk: %s: cannot create container %08x: %s\n", k->dir, k->next_id,
                strerror(-r));
        return r;
    }
    k->next_id++;
    k->opened++;
    k->open = true;
    return 0;
}

/* Stores one chunk unless a chunk of the same digest is stored already; *ret says where it is. */
static int store_chunk(struct state *st, const uint8_t *p, size_t n, const uint8_t d[WD_DIGEST_LEN],
                       struct loc *ret)
{
    if (2 * (st->table_n + 1) > st->table_cap)
        table_grow(st);
    struct loc *slot = table_slot(st, d);
    if (slot->used) {
        st->chunks_shared++;
        *ret = *slot;
        return 0;
    }
    size_t clen = st->o.compress(p, n, st->cbuf, n);
    const uint8_t *payload = clen && clen < n ? st->cbuf : p;
    uint32_t stored = (uint32_t)(clen && clen < n ? clen : n);
    int r = kind_need(st, &st->data, WD_DATA_HEADER + stored);
    if (r < 0)
        return r;
    uint32_t seq = wd_next_seq(&st->data.c), off;
    wd_ckhr_data(st->rec, seq, payload, stored, payload == p ? WD_COMPRESS_NONE : WD_COMPRESS_LZ77, d);
    memcpy(st->rec + WD_DATA_HEADER, payload, stored);
    bool move = st->o.move == MOVE_DATA && !st->moved;
    st->moved |= move;
    r = wd_append(&st->data.c, st->rec, WD_DATA_HEADER + stored, seq, move, &off);
    if (r < 0) {
        fprintf(stderr, "windedup-mk: %s: %s\n", st->data.c.path, strerror(-r));
        return r;
    }
    *slot = (struct loc){ .container = st->data.c.id, .generation = st->data.c.generation, .offset = off,
                          .seq = seq, .stored = stored, .used = true };
    memcpy(slot->digest, d, WD_DIGEST_LEN);
    st->table_n++;
    st->chunks_new++;
    st->job_bytes += stored;
    *ret = *slot;
    return 0;
}

/* The stream map of one file being built: its Smap entries in file order. */
struct smap {
    uint8_t *e;
    size_t n, cap;
    uint64_t end;
};

static int add_chunk(struct state *st, struct smap *m, const uint8_t *p, size_t n, const uint8_t *known_digest)
{
    uint8_t d[WD_DIGEST_LEN];
    if (known_digest)
        memcpy(d, known_digest, WD_DIGEST_LEN);
    else
        digest32(p, n, d);
    struct loc l;
    int r = store_chunk(st, p, n, d, &l);
    if (r < 0)
        return r;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = xrealloc(m->e, m->cap * WD_SMAP_ENTRY);
    }
    m->end += n;
    wd_smap_entry(m->e + m->n * WD_SMAP_ENTRY, l.seq, l.container, l.offset, l.generation, m->end, d, l.stored);
    m->n++;
    return 0;
}

/* A hole of len bytes: zero chunks of CHUNK_MAX bytes (digest computed once), then a shorter one. */
static int add_hole(struct state *st, struct smap *m, uint64_t len)
{
    memset(st->buf, 0, CHUNK_MAX);
    if (!st->zero_digest_ready) {
        digest32(st->buf, CHUNK_MAX, st->zero_digest);
        st->zero_digest_ready = 1;
    }
    for (; len; ) {
        size_t n = len < CHUNK_MAX ? (size_t)len : CHUNK_MAX;
        int r = add_chunk(st, m, st->buf, n, n == CHUNK_MAX ? st->zero_digest : NULL);
        if (r < 0)
            return r;
        len -= n;
    }
    return 0;
}

/* The data between from and to (a data extent), cut by content. */
static int add_data(struct state *st, struct smap *m, int fd, uint64_t from, uint64_t to, const char *rel)
{
    size_t fill = 0, pos = 0;
    uint64_t at = from;
    for (;;) {
        if (fill - pos < CHUNK_MAX && at < to) {
            memmove(st->buf, st->buf + pos, fill - pos);
            fill -= pos;
            pos = 0;
            size_t want = READ_BUF - fill;
            if (want > to - at)
                want = (size_t)(to - at);
            ssize_t got = pread(fd, st->buf + fill, want, (off_t)at);
            if (got <= 0) {
                fprintf(stderr, "windedup-mk: %s: read at %llu: %s\n", rel, (unsigned long long)at,
                        got < 0 ? strerror(errno) : "file shrank");
                return -EIO;
            }
            fill += (size_t)got;
            at += (uint64_t)got;
        }
        if (pos == fill)
            return 0;
        size_t n = cdc_cut(st->buf + pos, fill - pos);
        int r = add_chunk(st, m, st->buf + pos, n, NULL);
        if (r < 0)
            return r;
        pos += n;
    }
}

/* Builds the stream map of a whole file, skipping holes. */
static int chunk_file(struct state *st, struct smap *m, int fd, uint64_t size, const char *rel)
{
    uint64_t off = 0;
    while (off < size) {
        off_t d = lseek(fd, (off_t)off, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            d = (off_t)size;
        else if (d < 0)
            d = (off_t)off; /* no SEEK_DATA here: all data */
        int r = 0;
        if ((uint64_t)d > off)
            r = add_hole(st, m, (uint64_t)d - off);
        if (r < 0 || (uint64_t)d >= size)
            return r;
        off_t h = lseek(fd, d, SEEK_HOLE);
        if (h < 0 || (uint64_t)h > size)
            h = (off_t)size;
        if ((r = add_data(st, m, fd, (uint64_t)d, (uint64_t)h, rel)) < 0)
            return r;
        off = (uint64_t)h;
    }
    return 0;
}

static uint64_t smap_end(const uint8_t *e)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | e[0x10 + i];
    return v;
}

/* Writes entries [i0, i1) of m as one stream-map record and describes it in *ref. */
static int write_part(struct state *st, const struct smap *m, size_t i0, size_t i1, struct wd_streamref *ref)
{
    size_t plen = 8 + (i1 - i0) * WD_SMAP_ENTRY;
    uint8_t *rec = xmalloc(WD_STREAM_HEADER + plen), *payload = rec + WD_STREAM_HEADER;
    memcpy(payload, "Smap", 4);
    memset(payload + 4, 0, 4);
    memcpy(payload + 8, m->e + i0 * WD_SMAP_ENTRY, (i1 - i0) * WD_SMAP_ENTRY);
    /* The stream digest: we use the chunk digest function over the stream map's payload (Windows's
     * own choice is unknown; readers compare it with the reparse point, nothing recomputes it). */
    digest32(payload, plen, ref->digest);
    int r = kind_need(st, &st->stream, WD_STREAM_HEADER + plen);
    if (r == 0) {
        ref->seq = wd_next_seq(&st->stream.c);
        wd_ckhr_stream(rec, ref->seq, payload, (uint32_t)plen, ref->digest);
        bool move = st->o.move == MOVE_STREAM && !st->moved;
        st->moved |= move;
        r = wd_append(&st->stream.c, rec, WD_STREAM_HEADER + plen, ref->seq, move, &ref->offset);
        if (r < 0)
            fprintf(stderr, "windedup-mk: %s: %s\n", st->stream.c.path, strerror(-r));
    }
    ref->container = st->stream.c.id;
    ref->generation = st->stream.c.generation;
    ref->smap_size = (uint32_t)plen;
    ref->begin = i0 ? smap_end(m->e + (i0 - 1) * WD_SMAP_ENTRY) : 0;
    ref->end = smap_end(m->e + (i1 - 1) * WD_SMAP_ENTRY);
    free(rec);
    st->parts++;
    return r;
}

static const char *format_name(int f)
{
    return f == 0x0201 ? "0x0201" : f == 0x0102 ? "0x0102" : "bag";
}

/* Chunks one file and builds its reparse buffer into out; returns its length or a negative code. */
static long dedup_file(struct state *st, int fd, uint64_t size, const char *rel, uint8_t *out, size_t cap)
{
    static const int cycle[3] = { 0x0201, 0x0102, BAG_FORMAT };
    int format = st->o.format ? st->o.format : cycle[st->cycle++ % 3];
    struct smap m = { 0 };
    struct wd_streamref *refs = NULL;
    long len = -EIO;
    int r = chunk_file(st, &m, fd, size, rel);
    if (r < 0 || m.end != size) {
        if (r == 0)
            fprintf(stderr, "windedup-mk: %s: changed while read\n", rel);
        goto out;
    }
    size_t per = format == 0x0102 ? st->o.part_chunks : m.n;
    /* At most MAX_PARTS parts: the buffer then stays under 4 KiB, which ext4 takes as an xattr value
     * (NTFS would take 16 KiB; how many parts Windows writes is unknown). */
    if (format == 0x0102 && (m.n + per - 1) / per > MAX_PARTS)
        per = (m.n + MAX_PARTS - 1) / MAX_PARTS;
    size_t nparts = (m.n + per - 1) / per;
    refs = xcalloc(nparts, sizeof(*refs));
    for (size_t i = 0; i < nparts; i++) {
        size_t i1 = (i + 1) * per < m.n ? (i + 1) * per : m.n;
        if ((r = write_part(st, &m, i * per, i1, &refs[i])) < 0)
            goto out;
    }
    size_t n = format == 0x0201 ? wd_reparse_short(out, cap, st->o.guid, size, st->filetime, &refs[0])
               : format == 0x0102 ? wd_reparse_long(out, cap, st->o.guid, refs, nparts)
                                  : wd_reparse_bag(out, cap, st->o.guid, size, st->filetime, &refs[0]);
    if (!n) {
        fprintf(stderr, "windedup-mk: %s: reparse buffer too large\n", rel);
        goto out;
    }
    if (st->o.verbose)
        printf("%s %llu %zu %zu %s\n", format_name(format), (unsigned long long)size, m.n, nparts, rel);
    len = (long)n;
out:
    free(m.e);
    free(refs);
    return len;
}

/* Owner, mode and times of an entry already made at odfd/name. Failures are reported, not fatal:
 * an ntfs-3g mount without ownership support refuses chown. */
static void copy_meta(int odfd, const char *name, const struct stat *sb, const char *rel)
{
    bool link = S_ISLNK(sb->st_mode);
    if (geteuid() == 0 && fchownat(odfd, name, sb->st_uid, sb->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        fprintf(stderr, "windedup-mk: %s: chown: %s (ignored)\n", rel, strerror(errno));
    if (!link && fchmodat(odfd, name, sb->st_mode & 07777, 0) < 0)
        fprintf(stderr, "windedup-mk: %s: chmod: %s (ignored)\n", rel, strerror(errno));
    struct timespec ts[2] = { sb->st_atim, sb->st_mtim };
    if (utimensat(odfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        fprintf(stderr, "windedup-mk: %s: times: %s (ignored)\n", rel, strerror(errno));
}

/* A file Windows leaves alone: copied as it is, holes kept. */
static int copy_plain(struct state *st, int in, int out, uint64_t size, const char *rel)
{
    for (uint64_t off = 0; off < size;) {
        ssize_t n = pread(in, st->buf, READ_BUF, (off_t)off);
        if (n <= 0) {
            fprintf(stderr, "windedup-mk: %s: read: %s\n", rel, n < 0 ? strerror(errno) : "file shrank");
            return -EIO;
        }
        if (pwrite(out, st->buf, (size_t)n, (off_t)off) != n) {
            fprintf(stderr, "windedup-mk: %s: write: %s\n", rel, strerror(errno));
            return -EIO;
        }
        off += (uint64_t)n;
    }
    return 0;
}

static int do_file(struct state *st, int sdfd, int odfd, const char *name, const struct stat *sb, const char *rel)
{
    int in = openat(sdfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "windedup-mk: %s: open: %s\n", rel, strerror(errno));
        return -errno;
    }
    int out = openat(odfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        fprintf(stderr, "windedup-mk: %s: create in OUT: %s\n", rel, strerror(e));
        close(in);
        return -e;
    }
    uint64_t size = (uint64_t)sb->st_size;
    int r = 0;
    if (size == 0 || size < st->o.min_size) {
        r = copy_plain(st, in, out, size, rel);
        st->plain++;
    } else {
        uint8_t reparse[WD_REPARSE_MAX];
        long n = dedup_file(st, in, size, rel, reparse, sizeof(reparse));
        if (n < 0)
            r = (int)n;
        else if (ftruncate(out, (off_t)size) < 0) {
            r = -errno;
            fprintf(stderr, "windedup-mk: %s: truncate in OUT: %s\n", rel, strerror(errno));
        } else if (fsetxattr(out, st->o.xattr, reparse, (size_t)n, 0) < 0) {
            r = -errno;
            fprintf(stderr, "windedup-mk: %s: setxattr %s: %s\n", rel, st->o.xattr, strerror(errno));
        }
        st->files++;
    }
    close(in);
    if (close(out) < 0 && r == 0)
        r = -errno;
    if (r == 0)
        copy_meta(odfd, name, sb, rel);
    /* An append session ends after a file once enough new data was written: one Windows job. */
    if (r == 0 && st->job_bytes >= st->o.session_size) {
        st->filetime += 600 * 10000000ull;
        if (st->data.open)
            r = wd_close_session(&st->data.c, st->filetime);
        if (r == 0 && st->stream.open)
            r = wd_close_session(&st->stream.c, st->filetime);
        st->job_bytes = 0;
    }
    return r;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int not_dots(const struct dirent *d) { return strcmp(d->d_name, ".") && strcmp(d->d_name, ".."); }

/* Copies the directory sdfd into odfd, entries in name order (the output does not depend on readdir). */
static int walk(struct state *st, int sdfd, int odfd, const char *rel)
{
    struct dirent **list;
    int n = scandirat(sdfd, ".", &list, not_dots, by_name);
    if (n < 0) {
        fprintf(stderr, "windedup-mk: %s: %s\n", rel, strerror(errno));
        return -errno;
    }
    int r = 0;
    for (int i = 0; i < n && r == 0; i++) {
        const char *name = list[i]->d_name;
        char *sub;
        if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", name) < 0)
            abort();
        struct stat sb;
        if (fstatat(sdfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            r = -errno;
            fprintf(stderr, "windedup-mk: %s: %s\n", sub, strerror(errno));
        } else if (!*rel && !strcmp(name, "System Volume Information")) {
            fprintf(stderr, "windedup-mk: %s: SRC may not hold the chunk store's directory\n", sub);
            r = -EEXIST;
        } else if (S_ISREG(sb.st_mode)) {
            r = do_file(st, sdfd, odfd, name, &sb, sub);
        } else if (S_ISDIR(sb.st_mode)) {
            int s = -1, o = -1;
            if (mkdirat(odfd, name, 0700) < 0 ||
                (s = openat(sdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                (o = openat(odfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                r = -errno;
                fprintf(stderr, "windedup-mk: %s: %s\n", sub, strerror(errno));
            } else {
                r = walk(st, s, o, sub);
            }
            if (s >= 0)
                close(s);
            if (o >= 0)
                close(o);
            if (r == 0)
                copy_meta(odfd, name, &sb, sub);
        } else if (S_ISLNK(sb.st_mode)) {
            char target[PATH_MAX + 1];
            ssize_t tl = readlinkat(sdfd, name, target, PATH_MAX);
            if (tl < 0 || (target[tl] = 0, symlinkat(target, odfd, name) < 0)) {
                r = -errno;
                fprintf(stderr, "windedup-mk: %s: symlink: %s\n", sub, strerror(errno));
            } else {
                copy_meta(odfd, name, &sb, sub);
            }
        } else {
            fprintf(stderr, "windedup-mk: %s: not a file, directory or symlink: skipped\n", sub);
        }
        free(sub);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return r;
}

static int mkdir_p(const char *path)
{
    char *p = xstrdup(path);
    int r = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                fprintf(stderr, "windedup-mk: %s: %s\n", p, strerror(errno));
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return r;
}

/* Parses {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX} (braces optional) into its on-disk bytes: Data1-3
 * little-endian, Data4 as written. */
static bool parse_guid(const char *s, struct opts *o)
{
    unsigned a, b, c, d[8];
    const char *t = *s == '{' ? s + 1 : s;
    if (sscanf(t, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &a, &b, &c, &d[0], &d[1], &d[2], &d[3], &d[4],
               &d[5], &d[6], &d[7]) != 11)
        return false;
    put_le32(o->guid, a);
    put_le16(o->guid + 4, (uint16_t)b);
    put_le16(o->guid + 6, (uint16_t)c);
    for (int i = 0; i < 8; i++)
        o->guid[8 + i] = (uint8_t)d[i];
    snprintf(o->guid_text, sizeof(o->guid_text), "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", a, b, c,
             d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
    return true;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: windedup-mk [options] SRC OUT\n"
            "Writes the tree SRC into OUT as a Windows Server Data Deduplication volume root.\n"
            "  --format F          0x0201, 0x0102, bag, or mixed (cycle the three; the default)\n"
            "  --xattr NAME        xattr for the reparse buffer (default user.ntfs_reparse_data;\n"
            "                      system.ntfs_reparse_data on an ntfs-3g mount)\n"
            "  --compress          compress chunks with plain LZ77 (format 2) where that makes them smaller\n"
            "  --container-size N  start a new container past N bytes (default 1 GiB; suffixes K M G)\n"
            "  --session-size N    close an append session after a file once N new bytes were\n"
            "                      stored (default 1 MiB)\n"
            "  --generations[=K]   write every other container of kind K (data, stream, all: the\n"
            "                      default) in two generations, the older stale: for data the same\n"
            "                      records 4 KiB later, for stream the first append session only\n"
            "  --move-chunk KIND   move one record (stream: the first stream map; data: the first data\n"
            "                      chunk) to a later place, found through the Rrtl\n"
            "  --part-chunks N     chunks per stream map in format 0x0102 (default 1024)\n"
            "  --min-size N        copy files smaller than N bytes plain (default 1: only empty files)\n"
            "  --guid GUID         the chunk store's GUID\n"
            "  -v, --verbose       print 'format size chunks parts path' per optimized file\n");
}

static bool parse_bytes(const char *s, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (errno || end == s || (shift && end[1]) || (!shift && *end))
        return false;
    *ret = (uint64_t)v << shift;
    return true;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },       { "xattr", required_argument, NULL, 'x' },
        { "compress", no_argument, NULL, 'c' },           { "container-size", required_argument, NULL, 's' },
        { "session-size", required_argument, NULL, 'S' }, { "generations", optional_argument, NULL, 'g' },
        { "move-chunk", required_argument, NULL, 'm' },   { "part-chunks", required_argument, NULL, 'p' },
        { "min-size", required_argument, NULL, 'n' },     { "guid", required_argument, NULL, 'G' },
        { "verbose", no_argument, NULL, 'v' },            { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    *o = (struct opts){ .compress = store_raw, .container_size = 1ull << 30, .session_size = 1u << 20,
                        .min_size = 1, .part_chunks = 1024, .xattr = "user.ntfs_reparse_data" };
    parse_guid("{5C1D93E2-7A4B-4F0E-9B6D-2E8A41C07F35}", o);
    uint64_t v;
    for (int c; (c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1;) {
        switch (c) {
        case 'f':
            if (!strcmp(optarg, "0x0201"))
                o->format = 0x0201;
            else if (!strcmp(optarg, "0x0102"))
                o->format = 0x0102;
            else if (!strcmp(optarg, "bag"))
                o->format = BAG_FORMAT;
            else if (!strcmp(optarg, "mixed"))
                o->format = 0;
            else
                return fprintf(stderr, "windedup-mk: --format %s: not 0x0201, 0x0102, bag or mixed\n", optarg), -1;
            break;
        case 'x':
            o->xattr = optarg;
            break;
        case 'c':
            o->compress = store_lz77;
            break;
        case 's':
        case 'S':
            if (!parse_bytes(optarg, &v) || v < 0x10000 || v > 0xf0000000u)
                return fprintf(stderr, "windedup-mk: %s: not a size from 64K to 3.75G\n", optarg), -1;
            *(c == 's' ? &o->container_size : &o->session_size) = v;
            break;
        case 'g':
            if (!optarg || !strcmp(optarg, "all"))
                o->generations = 3;
            else if (!strcmp(optarg, "data") || !strcmp(optarg, "stream"))
                o->generations = !strcmp(optarg, "data") ? 1 : 2;
            else
                return fprintf(stderr, "windedup-mk: --generations=%s: not data, stream or all\n", optarg), -1;
            break;
        case 'm':
            if (strcmp(optarg, "stream") && strcmp(optarg, "data"))
                return fprintf(stderr, "windedup-mk: --move-chunk %s: not stream or data\n", optarg), -1;
            o->move = !strcmp(optarg, "stream") ? MOVE_STREAM : MOVE_DATA;
            break;
        case 'p':
            if (!parse_bytes(optarg, &v) || v < 1 || v > 100000)
                return fprintf(stderr, "windedup-mk: --part-chunks %s: not from 1 to 100000\n", optarg), -1;
            o->part_chunks = (uint32_t)v;
            break;
        case 'n':
            if (!parse_bytes(optarg, &v))
                return fprintf(stderr, "windedup-mk: --min-size %s: not a size\n", optarg), -1;
            o->min_size = v;
            break;
        case 'G':
            if (!parse_guid(optarg, o))
                return fprintf(stderr, "windedup-mk: --guid %s: not a GUID\n", optarg), -1;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return -1;
    }
    return optind;
}

int main(int argc, char **argv)
{
    struct state st = { 0 };
    int ai = parse_args(argc, argv, &st.o);
    if (ai < 0)
        return 2;
    const char *src = argv[ai], *out = argv[ai + 1];
    gear_init();
    /* FILETIME: 100 ns units since 1601. */
    st.filetime = ((uint64_t)time(NULL) + 11644473600ull) * 10000000ull;
    st.buf = xmalloc(READ_BUF);
    st.cbuf = xmalloc(CHUNK_MAX);
    st.rec = xmalloc(WD_DATA_HEADER + CHUNK_MAX);
    st.data.next_id = 1;
    st.stream.next_id = 0x10000; /* as the public sample's second container name suggests */
    if (asprintf(&st.data.dir, "%s/System Volume Information/Dedup/ChunkStore/{%s}.ddp/Data", out,
                 st.o.guid_text) < 0 ||
        asprintf(&st.stream.dir, "%s/System Volume Information/Dedup/ChunkStore/{%s}.ddp/Stream", out,
                 st.o.guid_text) < 0)
        abort();
    int r = mkdir_p(st.data.dir);
    if (r == 0)
        r = mkdir_p(st.stream.dir);
    int s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC), o = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r == 0 && (s < 0 || o < 0)) {
        fprintf(stderr, "windedup-mk: %s: %s\n", s < 0 ? src : out, strerror(errno));
        r = -errno;
    }
    if (r == 0)
        r = walk(&st, s, o, "");
    int r2 = kind_close(&st, &st.data);
    int r3 = kind_close(&st, &st.stream);
    if (r == 0)
        r = r2 ? r2 : r3;
    if (s >= 0)
        close(s);
    if (o >= 0)
        close(o);
    if (r == 0)
        fprintf(stderr,
                "windedup-mk: %llu files optimized, %llu left plain; %llu chunks stored, %llu shared; "
                "%llu stream maps; %u data and %u stream containers\n",
                (unsigned long long)st.files, (unsigned long long)st.plain, (unsigned long long)st.chunks_new,
                (unsigned long long)st.chunks_shared, (unsigned long long)st.parts, st.data.opened,
                st.stream.opened);
    free(st.table);
    free(st.buf);
    free(st.cbuf);
    free(st.rec);
    free(st.data.dir);
    free(st.stream.dir);
    return r == 0 ? 0 : 1;
}

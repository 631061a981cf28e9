/*
 * wincontainer-dump — reads a Windows dedup volume (as tests/tools/windedup-mk writes it) with the
 * reader's parsers only (src/windows/wincontainer.h, winreparse.h, src/compress/xpress.h), never with
 * the test tool's writer code, and prints what it found as "name value" lines, for
 * tests/integration/wincontainer.sh to compare with the independent Python checker.
 *
 *   wincontainer-dump XATTR OUT
 *     Every file of OUT with the reparse xattr XATTR: winreparse_parse. Every container under
 *     OUT/System Volume Information/Dedup/ChunkStore/{GUID}.ddp/{Data,Stream}: win_cthr_parse (id and
 *     generation must match the name), win_rrtl_parse of both copies, and every record from 0x5000 to the
 *     valid length: win_record_parse + win_record_check_payload. Then every file's stream maps, found at
 *     the reparse point's offset in the highest generation or through the Rrtl, are parsed with
 *     win_smap_parse, and each chunk they name is found the same way in the exact generation. Last,
 *     every data record of every container is decompressed (its length taken from a stream map naming
 *     its digest when stored compressed) and its win_digest compared with the header's.
 *   wincontainer-dump --walk FILE.ccc
 *     One container alone: header, Rrtl and records as above; raw data chunks' digests are checked,
 *     compressed ones are counted (their length is in a stream map this mode does not have), and the
 *     offset of the first data record is printed (first_data).
 *
 * Any failure prints FILE: at offset X: WHY on stderr and exits 1.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <rehydrate/rehydrate.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "compress/xpress.h"
#include "windows/wincontainer.h"
#include "windows/winreparse.h"

#define STORE "System Volume Information/Dedup/ChunkStore"

struct ctr {
    char *path;
    int data; /* 1 in Data/, 0 in Stream/, -1 either (--walk) */
    uint32_t id, generation;
    uint8_t *buf;
    size_t len;
    win_cthr hdr;
    win_rrtl rrtl;
};

struct ref { /* one stream-map reference of a reparse point */
    char *file;
    winreparse_ref r;
};

struct len_of { /* a chunk's uncompressed length, by digest, from the stream maps */
    uint8_t digest[WIN_DIGEST_LEN];
    uint32_t len;
};

static struct {
    struct ctr *c;
    size_t nc, cap_c;
    struct ref *refs;
    size_t nrefs, cap_refs;
    struct len_of *lens;
    size_t nlens, cap_lens;
    const char *xattr;
    uint64_t files, containers, older_generations, records, data_records, stream_records, paddings,
        rrtl_entries, sessions_max, smaps, smap_entries, compressed, stale_offsets_followed,
        chunks_decompressed, digests_checked, compressed_records, first_data;
} g;

static void die(const char *file, size_t at, const char *why)
{
    fprintf(stderr, "wincontainer-dump: %s: at offset %#zx: %s\n", file, at, why);
    exit(1);
}

static void die_rc(const char *file, size_t base, int rc, const win_why *w)
{
    if (rc == RH_ECORRUPT || rc == RH_ECHECKSUM)
        die(file, base + w->at, w->why);
    fprintf(stderr, "wincontainer-dump: %s: %s\n", file, rh_strerror(rc));
    exit(1);
}

/* Header, both Rrtl copies, every record. */
static void load_container(struct ctr *c)
{
    int rc = fs_read_file(AT_FDCWD, c->path, &c->buf, &c->len);
    if (rc < 0) {
        fprintf(stderr, "wincontainer-dump: %s: %s\n", c->path, strerror(-rc));
        exit(1);
    }
    win_why w;
    if ((rc = win_cthr_parse(c->buf, c->len, &c->hdr, &w)) < 0)
        die_rc(c->path, 0, rc, &w);
    if (c->generation && (c->hdr.id != c->id || c->hdr.generation != c->generation))
        die(c->path, c->hdr.copy * WIN_PAGE + 0x10, "Cthr id or generation differs from the file name");
    if (c->hdr.valid_len > c->len)
        die(c->path, c->hdr.copy * WIN_PAGE + 0x20, "valid length past the end of the file");
    if (c->len < WIN_FIRST_RECORD)
        die(c->path, c->len, "container shorter than its header pages");
    win_rrtl second;
    if ((rc = win_rrtl_parse(c->buf + WIN_RRTL_OFFSET, WIN_PAGE, &c->rrtl, &w)) < 0)
        die_rc(c->path, WIN_RRTL_OFFSET, rc, &w);
    if ((rc = win_rrtl_parse(c->buf + WIN_RRTL_OFFSET + WIN_PAGE, WIN_PAGE, &second, &w)) < 0)
        die_rc(c->path, WIN_RRTL_OFFSET + WIN_PAGE, rc, &w);
    if (second.n != c->rrtl.n || memcmp(second.entries, c->rrtl.entries, 8 * (size_t)c->rrtl.n) != 0)
        die(c->path, WIN_RRTL_OFFSET + WIN_PAGE, "the two Rrtl copies differ");
    g.rrtl_entries += c->rrtl.n;
    g.sessions_max = MAX(g.sessions_max, c->hdr.usn);
    uint32_t chunks = 0;
    size_t off = WIN_FIRST_RECORD;
    while (off < c->hdr.valid_len) {
        win_record r;
        if ((rc = win_record_parse(c->buf + off, c->hdr.valid_len - off, &r, &w)) < 0)
            die_rc(c->path, off, rc, &w);
        if ((rc = win_record_check_payload(&r, c->buf + off, c->hdr.valid_len - off, &w)) < 0)
            die_rc(c->path, off, rc, &w);
        if (r.type == WIN_REC_DATA && !g.first_data)
            g.first_data = off;
        if (r.type == WIN_REC_PAD) {
            g.paddings++;
        } else {
            if (c->data >= 0 && (r.type == WIN_REC_DATA) != c->data)
                die(c->path, off + 0x10, c->data ? "stream map in a Data container" : "data chunk in a Stream container");
            chunks++;
            g.records++;
            *(c->data ? &g.data_records : &g.stream_records) += 1;
        }
        off = (off + r.header_len + r.payload_len + 7) & ~(size_t)7;
    }
    if (chunks != c->hdr.chunks)
        die(c->path, c->hdr.copy * WIN_PAGE + 0x18, "Cthr chunk count differs from the records found");
    g.containers++;
}

/* The record of sequence number seq that a reference means: at offset, else through the Rrtl. */
static const uint8_t *find_record(const struct ctr *c, uint32_t offset, uint32_t seq, uint16_t type,
                                  uint32_t payload_len, const uint8_t *digest, size_t digest_len, win_record *ret)
{
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !win_rrtl_find(&c->rrtl, seq, &offset))
            break;
        if (offset < WIN_FIRST_RECORD || offset >= c->hdr.valid_len)
            continue;
        win_record r;
        if (win_record_parse(c->buf + offset, c->hdr.valid_len - offset, &r, NULL) == 0 && r.seq == seq &&
            r.type == type && r.payload_len == payload_len && !memcmp(r.digest, digest, digest_len)) {
            g.stale_offsets_followed += pass;
            *ret = r;
            return c->buf + offset;
        }
    }
    return NULL;
}

static const struct ctr *container_of(int data, uint32_t id, uint32_t generation)
{
    const struct ctr *best = NULL;
    for (size_t i = 0; i < g.nc; i++) {
        const struct ctr *c = &g.c[i];
        if (c->data == data && c->id == id && (generation ? c->generation == generation : !best || c->generation > best->generation))
            best = c;
    }
    return best;
}

static int cmp_len(const void *a, const void *b) { return memcmp(a, b, WIN_DIGEST_LEN); }

static void note_length(const uint8_t *digest, uint32_t len)
{
    g.lens = xgrow(g.lens, &g.cap_lens, g.nlens, sizeof(*g.lens), 1024);
    memcpy(g.lens[g.nlens].digest, digest, WIN_DIGEST_LEN);
    g.lens[g.nlens++].len = len;
}

/* One stream map of a file and every chunk it names. */
static void follow_ref(const struct ref *f)
{
    const winreparse_ref *r = &f->r;
    const struct ctr *sc = container_of(0, r->container, 0);
    if (!sc)
        die(f->file, 0, "Stream container missing");
    win_record rec;
    const uint8_t *p = find_record(sc, r->offset, r->seq, WIN_REC_STREAM, r->smap_size, r->digest, 16, &rec);
    if (!p)
        die(f->file, r->offset, "no stream map of that sequence number at the offset nor in the Rrtl");
    win_smap_entry *e;
    size_t n;
    win_why w;
    int rc = win_smap_parse(p + rec.header_len, rec.payload_len, r->begin, &e, &n, &w);
    size_t smap_at = (size_t)(p - sc->buf) + rec.header_len;
    if (rc < 0)
        die_rc(sc->path, smap_at, rc, &w);
    if (e[n - 1].end != r->end)
        die(f->file, 0, "stream map does not end where the reparse point's part ends");
    g.smaps++;
    g.smap_entries += n;
    uint64_t prev = r->begin;
    for (size_t i = 0; i < n; i++) {
        uint32_t len = (uint32_t)(e[i].end - prev);
        prev = e[i].end;
        const struct ctr *dc = container_of(1, e[i].container, e[i].generation);
        win_record d;
        size_t at = smap_at + WIN_SMAP_HEADER + WIN_SMAP_ENTRY * i;
        if (!dc || !find_record(dc, e[i].offset, e[i].seq, WIN_REC_DATA, e[i].stored_len, e[i].digest,
                                WIN_DIGEST_LEN, &d))
            die(sc->path, at, "no data chunk of that sequence number at the Smap's offset nor in the Rrtl");
        if ((d.compression == WIN_COMP_NONE) != (e[i].stored_len == len))
            die(sc->path, at, "chunk compressed but stored at its length, or raw at another");
        g.compressed += d.compression != WIN_COMP_NONE;
        note_length(e[i].digest, len);
    }
    free(e);
}

/* Every data record of c: decompressed when a stream map gave its length, digest checked. */
static void check_digests(const struct ctr *c, bool have_lengths)
{
    uint8_t *raw = xmalloc(WIN_CHUNK_MAX);
    for (size_t off = WIN_FIRST_RECORD; off < c->hdr.valid_len;) {
        win_record r;
        win_why w;
        int rc = win_record_parse(c->buf + off, c->hdr.valid_len - off, &r, &w);
        if (rc < 0)
            die_rc(c->path, off, rc, &w);
        const uint8_t *payload = c->buf + off + r.header_len;
        if (r.type == WIN_REC_DATA) {
            const struct len_of *l = have_lengths ? bsearch(r.digest, g.lens, g.nlens, sizeof(*g.lens), cmp_len) : NULL;
            const uint8_t *chunk = payload;
            size_t len = r.payload_len;
            if (r.compression == WIN_COMP_LZ77) {
                g.compressed_records++;
                if (!l && have_lengths)
                    die(c->path, off, "compressed chunk named by no stream map: its length is unknown");
                if (l && l->len > WIN_CHUNK_MAX)
                    die(c->path, off, "chunk longer than 128 KiB");
                if (l && (rc = xpress_decompress(payload, r.payload_len, raw, l->len)) < 0)
                    die(c->path, off + r.header_len, "LZ77 stream does not decode");
                if (l) {
                    chunk = raw;
                    len = l->len;
                    g.chunks_decompressed++;
                }
            } else if (l && l->len != r.payload_len) {
                die(c->path, off, "raw chunk's size differs from its length in the stream map");
            }
            if (chunk == raw || r.compression == WIN_COMP_NONE) {
                uint8_t d[WIN_DIGEST_LEN];
                if ((rc = win_digest(chunk, len, d)) < 0) {
                    fprintf(stderr, "wincontainer-dump: %s: %s\n", c->path, rh_strerror(rc));
                    exit(1);
                }
                if (memcmp(d, r.digest, WIN_DIGEST_LEN) != 0)
                    die(c->path, off + 0x28, "chunk digest is not SHA-512[:32] of the chunk");
                g.digests_checked++;
            }
        }
        off = (off + r.header_len + r.payload_len + 7) & ~(size_t)7;
    }
    free(raw);
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (flag == FTW_D && strcmp(path + ftw->base, "System Volume Information") == 0)
        return FTW_SKIP_SUBTREE;
    if (flag != FTW_F)
        return FTW_CONTINUE;
    ssize_t n = lgetxattr(path, g.xattr, NULL, 0);
    if (n < 0)
        return FTW_CONTINUE; /* a file kept plain */
    uint8_t *buf = xmalloc((size_t)n + 1);
    n = lgetxattr(path, g.xattr, buf, (size_t)n);
    winreparse rp;
    int rc = n < 0 ? -errno : winreparse_parse(buf, (size_t)n, &rp);
    free(buf);
    if (rc == RH_ECORRUPT)
        die(path, rp.why_at, rp.why);
    if (rc < 0) {
        fprintf(stderr, "wincontainer-dump: %s: %s\n", path, rh_strerror(rc));
        exit(1);
    }
    for (size_t i = 0; i < rp.nrefs; i++) {
        g.refs = xgrow(g.refs, &g.cap_refs, g.nrefs, sizeof(*g.refs), 64);
        g.refs[g.nrefs++] = (struct ref){ .file = xstrdup(path), .r = rp.refs[i] };
    }
    winreparse_free(&rp);
    g.files++;
    return FTW_CONTINUE;
}

static int cmp_ctr(const void *a, const void *b)
{
    const struct ctr *x = a, *y = b;
    return strcmp(x->path, y->path);
}

static void load_dir(const char *ddp, int data)
{
    char *dir = xasprintf("%s/%s", ddp, data ? "Data" : "Stream");
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "wincontainer-dump: %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    size_t first = g.nc;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id, gen;
        char tail;
        if (de->d_name[0] == '.')
            continue;
        if (strlen(de->d_name) != 21 || sscanf(de->d_name, "%8x.%8x.cc%c", &id, &gen, &tail) != 3 || tail != 'c')
            die(de->d_name, 0, "not a container name <id>.<generation>.ccc");
        g.c = xgrow(g.c, &g.cap_c, g.nc, sizeof(*g.c), 16);
        g.c[g.nc++] = (struct ctr){ .path = xasprintf("%s/%s", dir, de->d_name), .data = data, .id = id,
                                    .generation = gen };
    }
    closedir(d);
    sort_array(g.c + first, g.nc - first, sizeof(*g.c), cmp_ctr);
    for (size_t i = first; i < g.nc; i++)
        load_container(&g.c[i]);
    for (size_t i = first; i < g.nc; i++)
        g.older_generations += container_of(data, g.c[i].id, 0) != &g.c[i];
    free(dir);
}

static char *find_ddp(const char *out)
{
    char *store = xasprintf("%s/" STORE, out), *ddp = NULL;
    DIR *d = opendir(store);
    if (!d) {
        fprintf(stderr, "wincontainer-dump: %s: %s\n", store, strerror(errno));
        exit(1);
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (strlen(de->d_name) > 4 && !strcmp(de->d_name + strlen(de->d_name) - 4, ".ddp")) {
            free(ddp);
            ddp = xasprintf("%s/%s", store, de->d_name);
        }
    closedir(d);
    free(store);
    if (!ddp)
        die(out, 0, "no {GUID}.ddp chunk store");
    return ddp;
}

#define PRINT(name) printf("%s %" PRIu64 "\n", #name, g.name)

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--walk")) {
        struct ctr c = { .path = argv[2], .data = -1 };
        load_container(&c);
        check_digests(&c, false);
        PRINT(records);
        PRINT(paddings);
        PRINT(rrtl_entries);
        PRINT(sessions_max);
        PRINT(compressed_records);
        PRINT(digests_checked);
        PRINT(first_data);
        printf("usn %" PRIu64 " copy %u chunks %u valid_len %#x\n", c.hdr.usn, c.hdr.copy, c.hdr.chunks,
               c.hdr.valid_len);
        free(c.buf);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: wincontainer-dump XATTR OUT | wincontainer-dump --walk FILE.ccc\n");
        return 2;
    }
    g.xattr = argv[1];
    if (nftw(argv[2], visit, 16, FTW_PHYS | FTW_ACTIONRETVAL) != 0) {
        fprintf(stderr, "wincontainer-dump: %s: cannot walk\n", argv[2]);
        return 1;
    }
    char *ddp = find_ddp(argv[2]);
    load_dir(ddp, 0);
    load_dir(ddp, 1);
    for (size_t i = 0; i < g.nrefs; i++)
        follow_ref(&g.refs[i]);
    sort_array(g.lens, g.nlens, sizeof(*g.lens), cmp_len);
    for (size_t i = 1; i < g.nlens; i++)
        if (!memcmp(g.lens[i].digest, g.lens[i - 1].digest, WIN_DIGEST_LEN) && g.lens[i].len != g.lens[i - 1].len)
            die("stream maps", 0, "one digest with two lengths");
    for (size_t i = 0; i < g.nc; i++)
        if (g.c[i].data)
            check_digests(&g.c[i], true);
    PRINT(files);
    PRINT(containers);
    PRINT(older_generations);
    PRINT(records);
    PRINT(data_records);
    PRINT(stream_records);
    PRINT(paddings);
    PRINT(rrtl_entries);
    PRINT(sessions_max);
    PRINT(smaps);
    PRINT(smap_entries);
    PRINT(compressed);
    PRINT(compressed_records);
    PRINT(chunks_decompressed);
    PRINT(digests_checked);
    PRINT(stale_offsets_followed);
    for (size_t i = 0; i < g.nc; i++) {
        free(g.c[i].buf);
        free(g.c[i].path);
    }
    for (size_t i = 0; i < g.nrefs; i++)
        free(g.refs[i].file);
    free(g.c);
    free(g.refs);
    free(g.lens);
    free(ddp);
    return 0;
}

#!/usr/bin/env bash
# tests/fuzz/make-seeds.sh REHYDRATE [CORPUS_DIR] — regenerates the seed corpora of the fuzz targets
# (doc/fuzzing.md) from real stores: it backs a small generated tree up into a store of format 1 (plain
# catalogs, no packs) and one of format 2 (packed catalogs, packs), lays out stubs with
# `restore --stubs-only`, and cuts from them what each target reads: records (chunks, packs, stream maps),
# whole containers (sealed, unsealed, torn), raw stream maps, catalogs, reparse xattrs, identity files
# and index databases (for the vfs target also of 8 KiB pages, cut short, and with their header's page
# size, page count, version numbers or magic changed). Seeds are named seed-*; inputs the fuzzer found
# (crash-*, regress-*, ...) are kept. Needs python3 and the zstd command.
set -eu
REHYDRATE=${1:?usage: make-seeds.sh REHYDRATE [CORPUS_DIR]}
out=${2:-$(cd "$(dirname "$0")" && pwd)/corpus}
work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# A small tree: text and binary files, one that repeats, an empty one, a symlink, nested directories,
# an xattr, a hard link and a sparse file, so that every kind of entry and record appears.
src=$work/src
python3 - "$src" <<'PY'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(7)
os.makedirs(os.path.join(d, 'dir/sub/deeper'))
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f:
        f.write(b)
w('empty', b'')
w('hello.txt', b'hello, rehydrate\n')
for i in range(6):
    w('dir/small%d.txt' % i, ('line %d of a small text file\n' % i).encode() * (20 + 30 * i))
w('dir/sub/random.bin', rnd.randbytes(3000))
w('dir/sub/deeper/zeros-and-text', b'\0' * 5000 + b'tail\n')
w('dir/sub/repeat.bin', rnd.randbytes(500) * 8)
os.symlink('hello.txt', os.path.join(d, 'link'))
os.link(os.path.join(d, 'hello.txt'), os.path.join(d, 'dir/hardlink'))
os.setxattr(os.path.join(d, 'hello.txt'), 'user.comment', b'a seed')
with open(os.path.join(d, 'sparse'), 'wb') as f:
    f.truncate(1 << 20)
    f.write(b'head')
PY

for fmt in 1 2; do
    store=$work/store$fmt
    "$REHYDRATE" init "$store" --format "$fmt" >/dev/null
    "$REHYDRATE" backup "$store" "$src" --name first -q >/dev/null
    echo "changed" >>"$src/dir/small0.txt"
    "$REHYDRATE" backup "$store" "$src" --name second -q >/dev/null
    mkdir -p "$work/stubs$fmt"
    "$REHYDRATE" restore "$store" first "$work/stubs$fmt" --stubs-only -q >/dev/null
done

for t in record container streammap catalog reparse identity index vfs; do
    mkdir -p "$out/$t"
    rm -f "$out/$t"/seed-*
done

python3 - "$work" "$out" <<'PY'
import glob, os, sqlite3, struct, subprocess, sys
work, out = sys.argv[1], sys.argv[2]
MAXSEED = 16 << 10  # bytes: seeds stay small
MAXSEED_VFS = 64 << 10  # the vfs target needs files of more than one 32 KiB block

def put(target, name, data):
    if len(data) <= (MAXSEED_VFS if target == 'vfs' else MAXSEED):
        with open(os.path.join(out, target, 'seed-' + name), 'wb') as f:
            f.write(data)

def records(ctr):
    """(offset, bytes) of every record of a container, walked from offset 64."""
    off, res = 64, []
    while off + 56 <= len(ctr) and ctr[off:off + 4] == b'RREC':
        stored = struct.unpack_from('<I', ctr, off + 8)[0]
        res.append((off, ctr[off:off + 56 + stored]))
        off += 56 + stored
    return res, off

def repage(db, path, page):
    """The rows of db in a new database of `page`-byte pages at path."""
    c = sqlite3.connect(db)
    c.execute("VACUUM INTO ?", (path,))
    c.close()
    c = sqlite3.connect(path)
    c.execute('PRAGMA page_size = %d' % page)
    c.execute('VACUUM')
    c.close()
    return open(path, 'rb').read()

def vfs_seeds(fmt, db, small):
    """The vfs target reads index.db through the store's read callback and takes its size from the
    header (page size at 16, page count at 28, valid when the version-valid-for number at 92 equals the
    change counter at 24). Real files of 512-byte pages, and of format 1 also of 4 KiB and 8 KiB pages
    (the last spans two 32 KiB blocks), then, from the small one of format 1, the cases the header parse
    and the block reads must refuse or survive."""
    data = open(small, 'rb').read()
    put('vfs', 'f%d-page512' % fmt, data)
    if fmt != 1:
        return
    put('vfs', 'f1-page4k', open(db, 'rb').read())
    put('vfs', 'f1-page8k', repage(db, os.path.join(work, 'p8k.db'), 8192))
    pages = struct.unpack_from('>I', data, 28)[0]
    def mangled(name, at, fmt_, value):
        b = bytearray(data)
        struct.pack_into(fmt_, b, at, value)
        put('vfs', name, bytes(b))
    for n in (50, 99, 100, len(data) // 2, len(data) - 1, len(data) - 512):
        put('vfs', 'cut-%d' % n, data[:n])
    mangled('pages-one-more', 28, '>I', pages + 1)       # the file ends a page early
    mangled('pages-one-fewer', 28, '>I', pages - 1)      # the last page lies past the size
    mangled('pages-zero', 28, '>I', 0)
    mangled('pages-140-blocks', 28, '>I', 140 * 64)      # more blocks than the VFS caches
    mangled('pages-max', 28, '>I', 0xffffffff)
    mangled('pagesize-1', 16, '>H', 1)                   # 65536: the file is far shorter
    mangled('pagesize-1024', 16, '>H', 1024)
    mangled('pagesize-256', 16, '>H', 256)
    mangled('pagesize-1000', 16, '>H', 1000)
    mangled('count-stale', 92, '>I', struct.unpack_from('>I', data, 24)[0] + 1)
    mangled('wal', 18, '>H', 0x0202)
    mangled('magic', 0, '>B', ord('s'))

kinds = {}
for fmt in (1, 2):
    st = os.path.join(work, 'store%d' % fmt)
    put('identity', 'format%d' % fmt, open(os.path.join(st, 'rehydrate.store'), 'rb').read())
    for snap in sorted(glob.glob(os.path.join(st, 'snapshots', '*.snap'))):
        form = 'plain' if fmt == 1 else 'packed'
        put('catalog', '%s-%s' % (form, os.path.basename(snap)[:-5]), open(snap, 'rb').read())
    for ctr in sorted(glob.glob(os.path.join(st, 'containers', '*', '*.ctr'))):
        kind = os.path.basename(os.path.dirname(ctr))
        data = open(ctr, 'rb').read()
        base = 'f%d-%s-%s' % (fmt, kind, os.path.basename(ctr)[:-4])
        put('container', base + '-sealed', data)
        recs, end = records(data)
        # Unsealed: header without a footer offset, footer cut off (a crash before the seal); torn: the
        # last record cut short. The fuzz target recomputes the header checksum itself.
        head = bytearray(data[:64])
        head[32:40] = b'\0' * 8
        put('container', base + '-unsealed', bytes(head) + data[64:end])
        if recs:
            put('container', base + '-torn', bytes(head) + data[64:end - 10])
        for off, rec in recs:
            typ, codec = rec[4], rec[5]
            key = (fmt, typ, codec)
            kinds[key] = kinds.get(key, 0) + 1
            if kinds[key] <= 3:
                put('record', 'f%d-type%d-codec%d-%d' % (fmt, typ, codec, kinds[key]), rec)
            if typ == 2:  # a stream map: its raw bytes for the streammap target
                payload = rec[56:]
                raw = payload if codec == 0 else subprocess.run(
                    ['zstd', '-dc'], input=payload, capture_output=True, check=True).stdout
                put('streammap', 'f%d-%s-%d' % (fmt, os.path.basename(ctr)[:-4], off), raw)
    db = os.path.join(st, 'index.db')
    put('index', 'format%d' % fmt, open(db, 'rb').read())
    # The same rows in a database of 512-byte pages: a smaller image for the fuzzer to mutate.
    small = os.path.join(work, 'small%d.db' % fmt)
    put('index', 'format%d-small' % fmt, repage(db, small, 512))
    vfs_seeds(fmt, db, small)
    stubs = 0
    for root, dirs, files in sorted(os.walk(os.path.join(work, 'stubs%d' % fmt))):
        for f in sorted(files):
            if stubs == 4:
                break
            p = os.path.join(root, f)
            try:
                v = os.getxattr(p, 'user.rehydrate.reparse', follow_symlinks=False)
            except OSError:
                continue
            put('reparse', 'f%d-%s' % (fmt, f), v)
            stubs += 1
PY
for t in record container streammap catalog reparse identity index vfs; do
    echo "$t: $(ls "$out/$t" | wc -l) files, $(du -sk "$out/$t" | cut -f1) KiB"
done

#!/usr/bin/env bash
# contrib/dev/windedup-ntfs3g-check.sh — development check of tests/tools/windedup-mk against an
# independent reader: ntfs-3g with Jean-Pierre André's dedup plugin. Not run by CI or `make check`.
#
# Needs root, ntfs-3g and mkntfs (apt-get install ntfs-3g), and the plugin's binary, which is not
# part of any distribution: fetch it from https://github.com/smx-smx/ntfs-3g-dedup-plugin
# (linux-64/ntfs-plugin-80000013.so) and copy it to /usr/lib/x86_64-linux-gnu/ntfs-3g/.
#
# usage: contrib/dev/windedup-ntfs3g-check.sh [BUILDDIR] [-- windedup-mk options...]
# For formats 0x0201 and 0x0102 (the two the plugin reads) it writes a test tree onto a fresh NTFS
# image through ntfs-3g (reparse data in system.ntfs_reparse_data), remounts it so that the plugin
# serves the files, and compares every file with its source. Prints one line per file that differs.
set -eu
BUILD=${1:-build}
shift || true
[ "${1:-}" = -- ] && shift
MK=$(cd "$BUILD" && pwd)/tests/tools/windedup-mk
PLUGIN=/usr/lib/x86_64-linux-gnu/ntfs-3g/ntfs-plugin-80000013.so
[ -x "$MK" ] || { echo "no $MK: build first" >&2; exit 2; }
[ -f "$PLUGIN" ] || { echo "no $PLUGIN: see the head of this script" >&2; exit 2; }
command -v mkntfs >/dev/null || { echo "no mkntfs: apt-get install ntfs-3g" >&2; exit 2; }

W=$(mktemp -d /tmp/windedup-check.XXXXXX)
cleanup() { mountpoint -q "$W/mnt" && umount "$W/mnt"; rm -rf "$W"; }
trap cleanup EXIT
mkdir "$W/mnt"

# The source tree: shared, compressible, random, sparse (with a hole past 4 GiB), tiny and empty files.
SRC=$W/src
mkdir -p "$SRC/dir/sub"
python3 - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(14)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
big = r.randbytes(3 << 20)
w('big.bin', big)
w('dir/big-copy.bin', big)
w('dir/sub/big-shifted.bin', b'shift' * 777 + big)
w('text.txt', b'the same line again and again\n' * 100000)
w('small.txt', b'hello, windows\n')
w('empty', b'')
w('zeros.bin', bytes(1 << 20))
for i in range(12):
    w('dir/f%02d.bin' % i, r.randbytes(r.randrange(1, 400000)))
with open(os.path.join(d, 'sparse.img'), 'wb') as f:
    f.write(r.randbytes(100000)); f.seek(1 << 30); f.write(r.randbytes(300000))
    f.seek((4 << 30) + 12345); f.write(r.randbytes(70000)); f.truncate(5 << 30)
PY
ln -s big.bin "$SRC/link"

status=0
for fmt in 0x0201 0x0102; do
    rm -f "$W/img"
    truncate -s 2G "$W/img"
    mkntfs -F -Q "$W/img" >/dev/null 2>&1
    ntfs-3g "$W/img" "$W/mnt"
    "$MK" --format "$fmt" --xattr system.ntfs_reparse_data "$@" "$SRC" "$W/mnt" >"$W/mk.log" 2>&1 || {
        cat "$W/mk.log"; exit 1; }
    umount "$W/mnt"
    ntfs-3g -o ro "$W/img" "$W/mnt"
    bad=0 n=0
    while IFS= read -r -d '' f; do
        n=$((n + 1))
        rel=${f#"$SRC"/}
        if ! cmp -s "$f" "$W/mnt/$rel"; then
            bad=$((bad + 1))
            echo "$fmt $*: DIFFERS: $rel: $(cmp "$f" "$W/mnt/$rel" 2>&1 | head -1)"
        fi
    done < <(find "$SRC" -type f -print0)
    [ "$(readlink "$W/mnt/link")" = big.bin ] || { echo "$fmt: symlink lost"; bad=$((bad + 1)); }
    echo "$fmt $*: $((n - bad)) of $n files read back identical through ntfs-3g + plugin"
    [ "$bad" -eq 0 ] || status=1
    umount "$W/mnt"
done
exit $status

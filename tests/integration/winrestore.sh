#!/usr/bin/env bash
# rehydrate restore VOLUME TARGET: a Windows dedup volume's tree (as windedup-mk writes it: stubs with
# their reparse buffer in user.ntfs_reparse_data) restored into a directory, every deduplicated file
# rebuilt by rh_restore_files, and compared entry by entry with the source the volume was made from.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$BUILDDIR/tests/tools/windedup-mk}"
TREEDIFF=$TOP_SRCDIR/tests/integration/treediff.py
SRC=$WORK/src
make_win_tree "$SRC"
mkdir "$SRC/ro"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1].encode()
r = random.Random(15)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
w(b'one', b'x')
w(b'ro/secret', r.randbytes(5000))
# 4 GiB + 200000, sparse: data at 0 and past 4 GiB (offsets that do not fit in 32 bits)
with open(os.path.join(d, b'sparse.img'), 'wb') as f:
    f.write(r.randbytes(100000)); f.seek((4 << 30) + 12345); f.write(r.randbytes(70000))
    f.truncate((4 << 30) + 200000)
PY
ln -s big.bin "$SRC/link"
chmod 0640 "$SRC/text.txt"; chmod 0600 "$SRC/ro/secret"; chmod 0555 "$SRC/ro"
chown 1234:5678 "$SRC/one"
touch -h -d '2001-02-03 04:05:06.123456789' "$SRC/one" "$SRC/link" "$SRC/dir/sub"
NSTUBS=$(find "$SRC" -type f -size +0 | wc -l) # windedup-mk optimizes every file that is not empty
VOL=$WORK/vol
check "windedup-mk turns the tree into a volume (compressed, several containers)" \
    "$WINDEDUP_MK" --format mixed --compress --container-size 1M --session-size 256K "$SRC" "$VOL" 2>"$WORK/mk.err"
# What windedup-mk does not carry over, added to both trees alike: a hard link to a stub and one to a
# plain file, and an xattr on each kind.
for t in "$SRC" "$VOL"; do
    ln "$t/text.txt" "$t/dir/text-link"; ln "$t/empty" "$t/empty-link"
    setfattr -n user.color -v blue "$t/empty"; setfattr -n user.color -v red "$t/big.bin"
    touch -d '2002-03-04 05:06:07.5' "$t/dir"
done

TGT=$WORK/tgt
# to OUT ERR CMD...: runs CMD with its stdout in OUT and its stderr in ERR.
to() { local o=$1 e=$2; shift 2; "$@" >"$o" 2>"$e"; }
check "rehydrate restore VOLUME TARGET succeeds" to "$WORK/r.json" "$WORK/r.err" "$REHYDRATE" restore --json "$VOL" "$TGT"
check "it says how many deduplicated files it rebuilt" \
    [ "$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["stubs"])' <"$WORK/r.json")" -eq "$NSTUBS" ]
check "the chunk store is not restored as data" [ ! -e "$TGT/System Volume Information" ]
check "the restored tree equals the source entry by entry (content, modes, owners, ns times, links, xattrs, holes)" \
    "$PY" "$TREEDIFF" "$SRC" "$TGT" --ignore-atime
check "no stub is left" sh -c '! getfattr -R -h -m - "$0" 2>/dev/null | grep -q ntfs_reparse_data' "$TGT"
check "the 4 GiB sparse file stays sparse" [ "$(stat -c %b "$TGT/sparse.img")" -lt 2048 ]

check_fails "a target that is not empty is refused" "$REHYDRATE" restore -q "$VOL" "$TGT" 2>/dev/null
check "--chunkstore names the store" \
    "$REHYDRATE" restore -q --chunkstore "$(ls -d "$VOL/System Volume Information/Dedup/ChunkStore/"*.ddp)" "$VOL" "$WORK/tgt2"
check "and gives the same tree" "$PY" "$TREEDIFF" "$SRC" "$WORK/tgt2" --ignore-atime
check_fails "a directory that is neither a store nor a volume is refused" "$REHYDRATE" restore -q "$SRC" "$WORK/tgt3" 2>/dev/null

# Damage: a stub with garbage reparse data, and a chunk store missing one data container.
cp -a "$VOL" "$WORK/vol2"
setfattr -n user.ntfs_reparse_data -v 0x13000080ffff "$WORK/vol2/one"
rm "$WORK/vol2/System Volume Information/Dedup/ChunkStore/"*.ddp/Data/00000001.*.ccc
check_fails "a damaged volume restores with a non-zero exit" to /dev/null "$WORK/d.err" "$REHYDRATE" restore -q "$WORK/vol2" "$WORK/tgt4"
check "naming the stub whose reparse data is bad, and why" grep -q "^rehydrate: one: its reparse data" "$WORK/d.err"
check "naming the files whose container is missing" grep -q "big.bin: .*container not found" "$WORK/d.err"
check "every file that needs nothing damaged is restored intact" sh -c '
    for f in empty empty-link ro/secret text.txt dir/text-link; do cmp -s "$0/$f" "$1/$f" || exit 1; done
    [ "$(readlink "$0/link")" = big.bin ]' "$WORK/tgt4" "$SRC"
check "a file that failed keeps its stub, to show what is missing" getfattr -h -n user.ntfs_reparse_data "$WORK/tgt4/big.bin" >/dev/null 2>&1
finish

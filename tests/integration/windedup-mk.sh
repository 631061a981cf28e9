#!/usr/bin/env bash
# Integration test of tests/tools/windedup-mk, the writer of Windows dedup volumes that the issue-14
# reader will be tested against. No reader exists yet, so this checks the output structurally with an
# independent Python parser (windedup_check.py: every CRC-64 and CRC-32, every reference followed,
# raw chunk contents compared with the source) and a few facts from the shell.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$(cd "$(dirname "$0")/../.." && pwd)/tests/tools/windedup-mk}"
CHECK=$TOP_SRCDIR/tests/integration/windedup_check.py
SRC=$WORK/src
mkdir -p "$SRC/dir/sub"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1].encode()
r = random.Random(14)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
big = r.randbytes(2 << 20)
w(b'big.bin', big)
w(b'dir/big-copy.bin', big)                        # a duplicate file: every chunk shared
w(b'dir/sub/big-shifted.bin', b'shift' * 777 + big)  # shared regions at another offset
w(b'text.txt', b'the same line again and again\n' * 20000)
w(b'small.txt', b'hello, windows\n')
w(b'empty', b'')
w(b'\xff\xfe-not-utf8', r.randbytes(70000))
for i in range(6):
    w(b'dir/f%02d.bin' % i, r.randbytes(r.randrange(1, 300000)))
# 5 GiB, sparse: data at 0, 1 GiB and past 4 GiB
with open(os.path.join(d, b'sparse.img'), 'wb') as f:
    f.write(r.randbytes(100000)); f.seek(1 << 30); f.write(r.randbytes(300000))
    f.seek((4 << 30) + 12345); f.write(r.randbytes(70000)); f.truncate(5 << 30)
PY
ln -s big.bin "$SRC/link"
touch -h -d '2001-02-03 04:05:06.123456789' "$SRC/small.txt" "$SRC/link"
chmod 0640 "$SRC/text.txt"
mk() { "$WINDEDUP_MK" "$@"; }
# parse OUT XATTR JSON: the independent parser's verdict, its counts into JSON, its complaint to stderr.
parse() { "$PY" "$CHECK" "$SRC" "$1" "$2" >"$3"; }
json_field() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
STORE_DIR='System Volume Information/Dedup/ChunkStore'

# ---- all three formats, several containers and sessions, two generations, a moved stream map ----
OUT=$WORK/out1
mkdir "$OUT"
check "windedup-mk writes the tree (mixed formats, 1 MiB containers, generations, --move-chunk stream)" \
    mk --format mixed --container-size 1M --session-size 256K --generations --move-chunk stream \
    "$SRC" "$OUT" 2>"$WORK/mk1.err"
check "it reads no hole: the 5 GiB sparse file takes little room in the store" \
    [ "$(du -sk "$OUT/$STORE_DIR" | cut -f1)" -lt 65536 ]
check "an independent parser accepts every container, record, CRC and reference" \
    parse "$OUT" user.ntfs_reparse_data "$WORK/c1.json"
check "every file but the empty one is optimized" [ "$(json_field files <"$WORK/c1.json")" -eq 13 ]
check "the empty file stays plain, without a reparse point" [ "$(json_field plain <"$WORK/c1.json")" -eq 1 ]
check "all three formats are used" \
    [ "$("$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["formats"]))' <"$WORK/c1.json")" -eq 3 ]
check "raw chunk contents match the source (all files up to 64 MiB)" \
    [ "$(json_field content_checked <"$WORK/c1.json")" -eq 12 ]
check "there are several data containers" \
    [ "$(ls "$OUT/$STORE_DIR"/*/Data | wc -l)" -gt 3 ]
check "some containers exist in two generations" [ "$(json_field older_generations <"$WORK/c1.json")" -ge 2 ]
check "containers hold several append sessions (the Cthr copy at 0 is stale)" \
    [ "$(json_field sessions_max <"$WORK/c1.json")" -ge 2 ]
check "chunks are shared between files" [ "$(json_field shared_refs <"$WORK/c1.json")" -gt 40000 ]
check "the moved stream map is found only through the Rrtl" \
    [ "$(json_field stale_offsets_followed <"$WORK/c1.json")" -ge 1 ]
check "a sparse file of the real size stands for each optimized file" \
    [ "$(stat -c %s "$OUT/sparse.img")" = $((5 << 30)) ] && [ "$(stat -c %b "$OUT/sparse.img")" -lt 64 ]
check "the symlink is copied, with its time" \
    [ "$(readlink "$OUT/link") $(stat -c %y "$OUT/link")" = "big.bin $(stat -c %y "$SRC/link")" ]
check "mode and times are copied" \
    [ "$(stat -c '%a %y' "$OUT/text.txt" "$OUT/small.txt")" = "$(stat -c '%a %y' "$SRC/text.txt" "$SRC/small.txt")" ]
check "a name with bytes that are not UTF-8 is kept" [ -f "$OUT/$(printf '\xff\xfe-not-utf8')" ]
check "container names are <id>.<generation>.ccc" \
    "$PY" -c 'import os,re,sys; sys.exit(any(not re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.ccc", n) for d in sys.argv[1:] for n in os.listdir(d)))' \
    "$OUT/$STORE_DIR"/*/Data "$OUT/$STORE_DIR"/*/Stream

# ---- format 0x0102 in many parts, a moved data chunk ----
OUT=$WORK/out2
mkdir "$OUT"
check "windedup-mk writes format 0x0102 with 3-chunk parts and a moved data chunk" \
    mk --format 0x0102 --part-chunks 3 --move-chunk data --xattr user.other "$SRC" "$OUT" 2>"$WORK/mk2.err"
check "the independent parser accepts it too" parse "$OUT" user.other "$WORK/c2.json"
check "files are split in many stream maps" [ "$(json_field parts_max <"$WORK/c2.json")" -ge 56 ]
check "the moved data chunk is found through the Rrtl" \
    [ "$(json_field rrtl_entries <"$WORK/c2.json")" -eq 1 ] && \
    [ "$(json_field stale_offsets_followed <"$WORK/c2.json")" -ge 1 ]
check "the xattr name is the one asked for" getfattr -h -n user.other "$OUT/big.bin" >/dev/null 2>&1

# ---- --compress: chunks that shrink are stored as plain LZ77 (compression format 2) ----
OUT3=$WORK/out3
mkdir "$OUT3"
check "windedup-mk --compress writes format 0x0201" \
    mk --format 0x0201 --compress "$SRC" "$OUT3" 2>"$WORK/mk3.err"
check "the independent parser accepts it" parse "$OUT3" user.ntfs_reparse_data "$WORK/c3.json"
check "compressible chunks are stored compressed (format 2)" [ "$(json_field compressed <"$WORK/c3.json")" -gt 0 ]
check "the store is smaller than without compression" \
    [ "$(du -sk "$OUT3/$STORE_DIR" | cut -f1)" -lt "$(du -sk "$WORK/out2/$STORE_DIR" | cut -f1)" ]

# ---- damage is caught by the parser (the parser itself is tested) ----
victim=$(ls "$OUT/$STORE_DIR"/*/Data/00000001.00000001.ccc)
printf '\x7f' | dd of="$victim" bs=1 seek=$((0x1000 + 0x18)) conv=notrunc status=none  # Cthr chunk count
check_fails "a changed header byte fails the CRC-64 check" parse "$OUT" user.other /dev/null 2>/dev/null

# ---- bad input ----
check_fails "SRC must not hold 'System Volume Information'" \
    mk "$WORK/out1" "$WORK/out3" 2>/dev/null
check_fails "an unknown format is refused" mk --format 0x0303 "$SRC" "$WORK/out4" 2>/dev/null
finish

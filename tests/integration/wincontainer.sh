#!/usr/bin/env bash
# Integration test of src/windows/wincontainer.c against the test tool's writer: windedup-mk writes
# volumes with compressed chunks, several containers and sessions, two generations and moved records;
# wincontainer-dump reads them with the reader's parsers only (Cthr, Rrtl, every Ckhr and its CRCs,
# every Smap, every chunk decompressed and its digest checked), and its counts must equal those of the
# independent Python checker (windedup_check.py) and of windedup-mk's own summary. Reader and writer
# share no code, only the format; the damage at the end shows that the dump notices what it must.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$(cd "$(dirname "$0")/../.." && pwd)/tests/tools/windedup-mk}"
: "${WINCONTAINER_DUMP:=$(cd "$(dirname "$0")/../.." && pwd)/tests/tools/wincontainer-dump}"
CHECK=$TOP_SRCDIR/tests/integration/windedup_check.py
SRC=$WORK/src
mkdir -p "$SRC/d"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(1415)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
big = r.randbytes(1 << 20)
w('big.bin', big)
w('d/copy.bin', big)                                   # every chunk shared
w('text.txt', b''.join(b'line %d of a text that compresses\n' % (i % 700) for i in range(40000)))
w('half.bin', r.randbytes(150000) + b'\0' * 200000)   # raw chunks, then compressed ones
w('small', b'x' * 100)
for i in range(5):
    w('d/f%d' % i, r.randbytes(r.randrange(1, 200000)))
PY
STORE_DIR='System Volume Information/Dedup/ChunkStore'

# run NAME XATTR WINDEDUP-MK-OPTIONS...: writes $WORK/NAME, runs both readers.
run() {
    local name=$1 xattr=$2; shift 2
    mkdir "$WORK/$name"
    "$WINDEDUP_MK" "$@" --xattr "$xattr" "$SRC" "$WORK/$name" 2>"$WORK/$name.mk" &&
        "$PY" "$CHECK" "$SRC" "$WORK/$name" "$xattr" >"$WORK/$name.json" &&
        "$WINCONTAINER_DUMP" "$xattr" "$WORK/$name" >"$WORK/$name.dump"
}
dump_field() { awk -v k="$2" '$1 == k { print $2 }' "$WORK/$1.dump"; }
json_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/$1.json" "$2"; }
# same NAME FIELD...: the dump and the Python checker count the same, and not nothing.
same() {
    local name=$1 f a b; shift
    for f in "$@"; do
        a=$(dump_field "$name" "$f") b=$(json_field "$name" "$f")
        [ -n "$a" ] && [ "$a" = "$b" ] || { echo "# $name: $f: dump $a, windedup_check $b"; return 1; }
    done
}
# like_mk NAME: stream maps and their entries as windedup-mk's summary counts them.
like_mk() {
    local sum stored shared maps
    sum=$(tail -n 1 "$WORK/$1.mk")
    stored=$(echo "$sum" | sed -n 's/.* \([0-9]*\) chunks stored, \([0-9]*\) shared; \([0-9]*\) stream maps.*/\1/p')
    shared=$(echo "$sum" | sed -n 's/.* \([0-9]*\) chunks stored, \([0-9]*\) shared; \([0-9]*\) stream maps.*/\2/p')
    maps=$(echo "$sum" | sed -n 's/.* \([0-9]*\) chunks stored, \([0-9]*\) shared; \([0-9]*\) stream maps.*/\3/p')
    [ -n "$maps" ] && [ "$(dump_field "$1" smaps)" = "$maps" ] &&
        [ "$(dump_field "$1" smap_entries)" = $((stored + shared)) ] ||
        { echo "# $1: windedup-mk says: $sum"; return 1; }
}
COUNTS="files containers older_generations records paddings rrtl_entries sessions_max compressed stale_offsets_followed"

# ---- mixed formats, compressed, many containers and sessions, two generations, a moved data chunk ----
check "windedup-mk --compress --generations=all --move-chunk data, and both readers accept it" \
    run a user.ntfs_reparse_data --format mixed --compress --container-size 512K --session-size 128K \
    --generations=all --move-chunk data
check "the dump counts what the Python checker counts ($COUNTS)" same a $COUNTS
check "stream maps and their entries are those windedup-mk wrote" like_mk a
check "there are several containers, older generations and compressed chunks" \
    [ "$(dump_field a containers)" -ge 6 ] && [ "$(dump_field a older_generations)" -ge 2 ] && \
    [ "$(dump_field a compressed)" -gt 0 ]
check "every data record (older generations too) is decompressed where needed and its digest checked" \
    [ "$(dump_field a digests_checked)" = "$(dump_field a data_records)" ] && \
    [ "$(dump_field a chunks_decompressed)" = "$(dump_field a compressed_records)" ] && \
    [ "$(dump_field a compressed_records)" -gt 0 ]
check "the moved data chunk is found through the Rrtl" \
    [ "$(dump_field a rrtl_entries)" -eq 1 ] && [ "$(dump_field a stale_offsets_followed)" -ge 1 ]

# ---- 0x0102 in parts (stream maps that begin inside the file), a moved stream map ----
check "windedup-mk --format 0x0102 --part-chunks 2 --compress --move-chunk stream, and both readers accept it" \
    run b user.other --format 0x0102 --part-chunks 2 --compress --container-size 1M --move-chunk stream
check "the dump counts what the Python checker counts" same b $COUNTS
check "stream maps and their entries are those windedup-mk wrote" like_mk b
check "files are in several parts" [ "$(dump_field b smaps)" -gt "$(dump_field b files)" ]
check "the moved stream map is found through the Rrtl" [ "$(dump_field b stale_offsets_followed)" -eq 1 ]

# ---- damage ----
# A data container of several sessions: its Cthr copy at 0 is stale (another USN than at 0x1000).
data1=
for f in "$WORK/a/$STORE_DIR"/*/Data/*.ccc; do
    [ "$(od -An -tx1 -j8 -N1 "$f")" != "$(od -An -tx1 -j$((0x1008)) -N1 "$f")" ] && { data1=$f; break; }
done
check "some data container holds several append sessions" [ -n "$data1" ]
# flip FILE OFFSET: inverts the byte at OFFSET.
flip() {
    local b
    b=$(od -An -tu1 -j"$2" -N1 "$1")
    printf "\\$(printf %03o $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
reads() { "$WINCONTAINER_DUMP" "$1" "$WORK/$2" >/dev/null; }
fails_with() { # fails_with WHAT XATTR NAME: the dump fails and says WHAT.
    ! "$WINCONTAINER_DUMP" "$2" "$WORK/$3" >/dev/null 2>"$WORK/err" && grep -q "$1" "$WORK/err" ||
        { echo "# $(cat "$WORK/err")"; return 1; }
}
cp "$data1" "$WORK/saved"
flip "$data1" $((0x1000 + 0x08))  # current Cthr's USN
check "a damaged current Cthr copy is passed over for the other current one" reads user.ntfs_reparse_data a
flip "$data1" $((0x2000 + 0x08))
check "with both current copies damaged, the stale copy at 0 hides the later sessions' chunks" \
    fails_with "no data chunk\|Cthr chunk count differs" user.ntfs_reparse_data a
cp "$WORK/saved" "$data1"
rec=$("$WINCONTAINER_DUMP" --walk "$data1" | awk '$1 == "first_data" { print $2 }')  # the first data record
check "the first data record of a container is found" [ "$rec" -ge $((0x5000)) ]
flip "$data1" $((rec + 0x58))  # in its payload
check "a changed payload byte fails the payload CRC-64" fails_with "payload CRC-64 mismatch" user.ntfs_reparse_data a
cp "$WORK/saved" "$data1"
flip "$data1" $((rec + 0x24))  # second compression field
check "two compression fields that differ are refused" fails_with "compression fields differ" user.ntfs_reparse_data a
cp "$WORK/saved" "$data1"
flip "$data1" $((rec + 0x30))  # in the digest
check "a changed header byte fails the header CRC-64" fails_with "header CRC-64 mismatch" user.ntfs_reparse_data a
cp "$WORK/saved" "$data1"
check "restored, the volume reads again" reads user.ntfs_reparse_data a
finish

#!/usr/bin/env bash
# rehydrate verify of a Windows Server dedup chunk store (src/maint/winverify.c): windedup-mk turns a tree
# into a chunk store and stubs; verify must pass it with the counts of the independent Python checker
# (windedup_check.py), then, each on a fresh copy, name every kind of damage where it is (container,
# offset, sequence number) and, with --volume, exactly the files that the reader (win-read, the daemon's
# read path) then fails to read.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$BUILDDIR/tests/tools/windedup-mk}"
: "${WIN_READ:=$BUILDDIR/tests/tools/win-read}"
CHECK=$TOP_SRCDIR/tests/integration/windedup_check.py
SRC=$WORK/src
make_win_tree "$SRC"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1].encode()
r = random.Random(14)
# 300 MiB, nearly all hole: a stream map of 2400 entries, read in several windows
with open(os.path.join(d, b'sparse.img'), 'wb') as f:
    f.write(r.randbytes(50000))
    f.seek(200 << 20); f.write(r.randbytes(90000))
    f.truncate(300 << 20)
PY
STORE_DIR='System Volume Information/Dedup/ChunkStore'
ddp() { ls -d "$1/$STORE_DIR"/*.ddp; }
# vjson NAME [OPTIONS...]: verify --json of NAME's chunk store into $WORK/NAME.v.json; its exit status
# in $WORK/NAME.rc.
vjson() {
    local n=$1 rc=0; shift
    "$REHYDRATE" verify "$(ddp "$WORK/$n")" --json "$@" >"$WORK/$n.v.json" 2>"$WORK/$n.v.err" || rc=$?
    echo "$rc" >"$WORK/$n.rc"
}
# jtrue NAME EXPR: EXPR holds, in Python, of d (NAME's verify JSON) and p (its windedup_check JSON).
jtrue() {
    "$PY" - "$WORK/$1.v.json" "$WORK/${BASE:-$1}.py.json" "$2" <<'PY' || { echo "# $2: $(head -c 3000 "$WORK/$1.v.json")"; return 1; }
import json, os, sys
d = json.load(open(sys.argv[1]))
p = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else {}
sys.exit(0 if eval(sys.argv[3]) else 1)
PY
}
quiet() { "$@" >/dev/null 2>&1; }
rc_is() { [ "$(cat "$WORK/$1.rc")" = "$2" ] || { echo "# exit status $(cat "$WORK/$1.rc"), not $2"; cat "$WORK/$1.v.err"; return 1; }; }
# The stubs of OUT: every regular file that carries a reparse buffer (paths without "./").
stubs() { (cd "$1" && find . -path './System Volume Information' -prune -o -type f -print | sort |
           while read -r f; do getfattr -h -n user.ntfs_reparse_data "$f" >/dev/null 2>&1 && echo "${f#./}"; done); }
# unreadable NAME: the stubs the reader fails on, as a JSON list (sorted as verify sorts: by bytes).
unreadable() {
    local out=$WORK/$1 d f
    d=$(ddp "$out")
    stubs "$out" | while read -r f; do
        "$WIN_READ" cat "$d" "$out/$f" >/dev/null 2>&1 || echo "$f"
    done | "$PY" -c 'import json, os, sys; print(json.dumps(sorted(l.rstrip("\n") for l in sys.stdin)))' \
        >"$WORK/$1.unreadable"
}
# same_files NAME: verify's files_affected are exactly the files the reader cannot read, and not none.
same_files() {
    unreadable "$1"
    jtrue "$1" "d['files_affected'] == json.load(open('$WORK/$1.unreadable')) and d['files_affected']"
}
fields_ok() { # every problem has the fields scripts rely on
    jtrue "$1" "all(set(x) >= {'container', 'offset', 'seq', 'what', 'files'} for x in d['problems'] + d['warnings'])"
}

# ---- intact: mixed formats, compressed, many containers and sessions, two generations ----
mk() {
    local n=$1; shift
    "$WINDEDUP_MK" "$@" "$SRC" "$WORK/$n" 2>"$WORK/$n.mk" &&
        "$PY" "$CHECK" "$SRC" "$WORK/$n" user.ntfs_reparse_data >"$WORK/$n.py.json"
}
check "windedup-mk --compress --container-size 1M --session-size 256K --generations=all" \
    mk o1 --compress --container-size 1M --session-size 256K --generations=all
before=$(store_state "$WORK/o1")
vjson o1
check "verify passes it" rc_is o1 0
check "with the Python checker's counts (containers, records of each kind, compressed, paddings)" jtrue o1 \
    "d['ok'] and not d['problems'] and not d['warnings'] and d['containers'] == p['containers'] and \
     d['older_generations'] == p['older_generations'] > 0 and d['data_chunks'] == p['data_records'] and \
     d['compressed_chunks'] == p['compressed_records'] > 0 and d['stream_maps'] == p['stream_records'] and \
     d['paddings'] == p['paddings']"
check "and says which generation of each container is current" jtrue o1 \
    "sum(not c['current'] for c in d['container_files']) == p['older_generations'] and \
     all(c['current'] == (c['generation'] == max(x['generation'] for x in d['container_files'] \
         if (x['kind'], x['id']) == (c['kind'], c['id']))) for c in d['container_files'])"
"$REHYDRATE" verify "$(ddp "$WORK/o1")" >"$WORK/o1.txt" 2>&1
nctr=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["containers"])' "$WORK/o1.v.json")
check "the text report counts the same" grep -q "^checked $nctr containers .*: no problems found" "$WORK/o1.txt"
check "... one line per container id of several generations" grep -q '^Data/[0-9a-f]*: generations .*; current ' "$WORK/o1.txt"
vjson o1 --volume "$WORK/o1"
check "with --volume: every stub found, every chunk length known, no file affected" jtrue o1 \
    "d['ok'] and d['stubs'] == p['files'] and d['length_unknown'] == 0 and d['files_affected'] == [] and \
     d['data_chunks'] == p['data_records']"
check "a stream map of thousands of entries (the sparse file) is read in windows" jtrue o1 "d['smap_entries'] > 2400"
check_fails "--volume is refused for one of our stores" quiet "$REHYDRATE" verify "$WORK" --volume "$WORK/o1"

check "windedup-mk --compress --container-size 1M --move-chunk data" mk o2 --compress --container-size 1M --move-chunk data
vjson o2 --volume "$WORK/o2"
check "verify passes it, finding the moved chunk through the Rrtl" jtrue o2 \
    "d['ok'] and not d['problems'] and not d['warnings'] and d['moved'] >= 1 and d['containers'] == p['containers'] and \
     d['data_chunks'] == p['data_records'] and d['compressed_chunks'] == p['compressed_records'] and \
     d['stream_maps'] == p['stream_records'] and d['paddings'] == p['paddings'] and d['stubs'] == p['files']"
check "windedup-mk --format 0x0102 --part-chunks 2 --move-chunk stream" \
    mk o3 --compress --format 0x0102 --part-chunks 2 --container-size 1M --move-chunk stream
vjson o3 --volume "$WORK/o3"
check "verify passes it: stream maps in parts, one moved" jtrue o3 \
    "d['ok'] and d['moved'] >= 1 and d['stream_maps'] == p['stream_records'] and d['length_unknown'] == 0"

# ---- damage, each on a fresh copy of o1 ----
BASE=o1
fresh() { rm -rf "$WORK/$1" && cp -a "$WORK/o1" "$WORK/$1" && D=$(ddp "$WORK/$1"); }
# flip FILE OFFSET: inverts the byte at OFFSET.
flip() {
    local b
    b=$(od -An -tu1 -j$(($2)) -N1 "$1")
    printf "\\$(printf %03o $((b ^ 0xff)))" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none
}
u32() { od -An -tu4 -j"$2" -N4 "$1" | tr -d ' '; }
current() { ls "$D/$1"/"$2".*.ccc | sort | tail -n 1; } # current KIND ID-HEX
# winrec FILE WHAT: the offset of the first record of a kind: data-raw, data-lz77 or stream.
winrec() {
    "$PY" - "$1" "$2" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
valid = struct.unpack_from('<I', d, 0x1020)[0]
off = 0x5000
while off < valid:
    seq, plen, typ = struct.unpack_from('<IIH', d, off + 8)
    hl = {1: 0x58, 2: 0x68, 4: 0x30}[typ]
    comp = struct.unpack_from('<I', d, off + 0x20)[0] if typ == 1 else None
    if (sys.argv[2], typ, comp) in (('data-raw', 1, 0), ('data-lz77', 1, 2), ('stream', 2, None)):
        print(off)
        sys.exit(0)
    off = (off + hl + plen + 7) & ~7
sys.exit('no such record')
PY
}
# recrc FILE OFFSET: recomputes the payload and header CRC-64 of the record at OFFSET, so that only the
# checks behind them (digest, Smap) can see a change.
recrc() {
    "$PY" - "$1" "$2" <<'PY'
import struct, sys
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x9A6C9329AC4BC9B5 if c & 1 else c >> 1
    T.append(c)
def crc64(b):
    c = 0
    for x in b:
        c = (c >> 8) ^ T[(c ^ x) & 0xFF]
    return c ^ 0xFFFFFFFFFFFFFFFF
p, off = sys.argv[1], int(sys.argv[2])
d = bytearray(open(p, 'rb').read())
plen, typ = struct.unpack_from('<IH', d, off + 0x0c)
hl = {1: 0x58, 2: 0x68}[typ]
struct.pack_into('<Q', d, off + hl - 16, crc64(d[off + hl:off + hl + plen]))
struct.pack_into('<Q', d, off + hl - 8, crc64(d[off:off + hl - 8]))
open(p, 'wb').write(d)
PY
}

# A flipped byte in a data chunk's payload: big.bin's first chunk, shared by its copy only.
fresh x1
f=$(current Data 00000001) rel=Data/$(basename "$f") off=$(winrec "$f" data-raw) seq=$(u32 "$f" $((off + 8)))
flip "$D/$rel" $((off + 0x58 + 100))
vjson x1 --volume "$WORK/x1"
check "a flipped byte in a data chunk: verify fails" rc_is x1 1
check "naming its container, offset and sequence number, and exactly big.bin and its copy" jtrue x1 \
    "[(x['container'], x['offset'], x['seq'], x['files']) for x in d['problems']] == \
     [('$rel', $off, $seq, ['big.bin', 'dir/big-copy.bin'])] and 'CRC-64' in d['problems'][0]['what'] and \
     d['files_affected'] == ['big.bin', 'dir/big-copy.bin'] and d['data_chunks'] == p['data_records']"
check "the files verify names are those the reader fails on" same_files x1
check "the problems carry container, offset, seq, what and files" fields_ok x1
"$REHYDRATE" verify "$D" --volume "$WORK/x1" >"$WORK/x1.txt" 2>&1 || true
check "the text report names the record and the files" \
    grep -q "^rehydrate: $rel: offset $(printf '%#x' "$off"): seq $seq: .*CRC-64" "$WORK/x1.txt"
check "... and the files" grep -q "^rehydrate:   used by dir/big-copy.bin" "$WORK/x1.txt"

# A damaged record header: one problem, the walk goes on from the next record.
fresh x10
flip "$D/$rel" $((off + 0x30))
vjson x10 --volume "$WORK/x10"
check "a damaged record header: one problem, no trusted seq, the other records all checked" jtrue x10 \
    "[(x['container'], x['offset'], x['seq']) for x in d['problems']] == [('$rel', $off, None)] and \
     'resumed' in d['problems'][0]['what'] and d['data_chunks'] == p['data_records'] - 1 and \
     d['files_affected'] == ['big.bin', 'dir/big-copy.bin']"
check "the files verify names are those the reader fails on" same_files x10

# The same chunk changed with its CRCs recomputed: only the digest can tell.
fresh x2
flip "$D/$rel" $((off + 0x58 + 100)) && recrc "$D/$rel" "$off"
vjson x2 --volume "$WORK/x2"
check "a changed raw chunk whose CRCs were recomputed fails its digest" jtrue x2 \
    "[(x['container'], x['offset'], x['seq']) for x in d['problems']] == [('$rel', $off, $seq)] and \
     'digest' in d['problems'][0]['what'] and d['files_affected'] == ['big.bin', 'dir/big-copy.bin']"
fresh x3
z=
for c in "$D"/Data/*.ccc; do zo=$(winrec "$c" data-lz77 2>/dev/null) && { z=$c; break; }; done
check "some container holds a compressed chunk" [ -n "$z" ]
flip "$z" $((zo + 0x58 + $(u32 "$z" $((zo + 0x0c))) / 2)) && recrc "$z" "$zo"
vjson x3 --volume "$WORK/x3"
check "a changed compressed chunk (CRCs recomputed) does not decode to its digest, and is named" jtrue x3 \
    "[(x['container'], x['offset']) for x in d['problems']] == [('Data/$(basename "$z")', $zo)] and \
     d['problems'][0]['seq'] == $(u32 "$z" $((zo + 8)))"
check "its files are those the reader fails on" same_files x3

# A flipped byte in a stream map: big.bin's (the first written).
fresh x4
s=$(current Stream 00010000) srel=Stream/$(basename "$s") so=$(winrec "$s" stream)
flip "$D/$srel" $((so + 0x68 + 100))
vjson x4 --volume "$WORK/x4"
check "a flipped byte in a stream map: named with its container, offset and seq, and big.bin only" jtrue x4 \
    "[(x['container'], x['offset'], x['seq'], x['files']) for x in d['problems']] == \
     [('$srel', $so, $(u32 "$s" $((so + 8))), ['big.bin'])] and d['stream_maps'] == p['stream_records']"
check "the files verify names are those the reader fails on" same_files x4
# A stream map whose Smap is malformed (an end offset that goes back), its CRCs recomputed.
fresh x5
"$PY" -c 'import struct,sys; p,o=sys.argv[1],int(sys.argv[2]); d=bytearray(open(p,"rb").read()); \
struct.pack_into("<Q", d, o + 0x68 + 8 + 64 + 0x10, 1); open(p,"wb").write(d)' "$D/$srel" "$so"
recrc "$D/$srel" "$so"
vjson x5 --volume "$WORK/x5"
check "a stream map with valid CRCs but a malformed Smap is named, with its file" jtrue x5 \
    "[(x['container'], x['offset'], x['files']) for x in d['problems']] == [('$srel', $so, ['big.bin'])] and \
     'Smap' in d['problems'][0]['what']"

# A stream map whose entry 1 ends one byte later (CRCs recomputed): chunks 1 and 2 get lengths that
# are not theirs.
fresh x13
check "big.bin's stream map has at least 3 entries" [ $(( ($(u32 "$D/$srel" $((so + 0x0c))) - 8) / 64 )) -ge 3 ]
"$PY" -c 'import struct,sys; p,o=sys.argv[1],int(sys.argv[2]); d=bytearray(open(p,"rb").read()); \
e = o + 0x68 + 8 + 64 + 0x10; struct.pack_into("<Q", d, e, struct.unpack_from("<Q", d, e)[0] + 1); \
open(p,"wb").write(d)' "$D/$srel" "$so"
recrc "$D/$srel" "$so"
vjson x13 --volume "$WORK/x13"
check "a stream map that gives two chunks wrong lengths: both entries named, with big.bin" jtrue x13 \
    "[(x['container'], x['offset'], x['files']) for x in d['problems']] == \
     [('$srel', $((so + 0x68 + 8 + 64)), ['big.bin']), ('$srel', $((so + 0x68 + 8 + 128)), ['big.bin'])] and \
     all('bytes long' in x['what'] for x in d['problems'])"
check "the files verify names are those the reader fails on" same_files x13

# Damaged Cthr copies: a warning while another copy is valid, an error when none is.
fresh x6
c2rel=Data/$(basename "$(current Data 00000002)")
flip "$D/$c2rel" $((0x1000 + 0x18))
vjson x6 --volume "$WORK/x6"
check "one damaged Cthr copy: verify passes, with a warning naming it" jtrue x6 \
    "d['ok'] and not d['problems'] and [(x['container'], x['offset']) for x in d['warnings']] == [('$c2rel', 4096)]"
check "... and exits 0" rc_is x6 0
flip "$D/$c2rel" 0x18 && flip "$D/$c2rel" $((0x2000 + 0x18))
vjson x6 --volume "$WORK/x6"
check "all three damaged: an error at offset 0, the records still all checked" jtrue x6 \
    "[(x['container'], x['offset']) for x in d['problems']] == [('$c2rel', 0)] and \
     'no valid Cthr' in d['problems'][0]['what'] and d['data_chunks'] == p['data_records'] and not d['files_affected']"
check "... and exits 1" rc_is x6 1

# A truncated container: the record cut and every one after it are lost.
fresh x7
size=$(stat -c %s "$D/$c2rel")
truncate -s $((size / 2 + 1000)) "$D/$c2rel"
vjson x7 --volume "$WORK/x7"
check "a truncated container: one problem naming it and the cut" jtrue x7 \
    "len(d['problems']) == 1 and d['problems'][0]['container'] == '$c2rel' and \
     'truncated' in d['problems'][0]['what'] and d['problems'][0]['offset'] <= $((size / 2 + 1000))"
check "the files verify names are those the reader fails on" same_files x7

# A missing data container: every reference to it dangles, named where it is.
fresh x8
rm "$D"/Data/00000002.*.ccc
vjson x8 --volume "$WORK/x8"
check "a missing data container: the dangling references are named (Stream container, offset, map's seq)" jtrue x8 \
    "d['problems'] and all(x['container'].startswith('Stream/') and x['seq'] is not None and \
     'data container 00000002' in x['what'] and 'missing' in x['what'] for x in d['problems']) and \
     len(d['problems']) == len(set((x['container'], x['offset']) for x in d['problems']))"
check "the files verify names are those the reader fails on" same_files x8

# Garbage appended to a container: past its valid data length, nothing is lost.
fresh x9
head -c 5000 /dev/urandom >>"$D/$c2rel"
vjson x9 --volume "$WORK/x9"
check "garbage appended: verify passes with a warning at the valid length" jtrue x9 \
    "d['ok'] and not d['problems'] and [(x['container'], x['offset']) for x in d['warnings']] == [('$c2rel', $size)] \
     and 'after the valid data length' in d['warnings'][0]['what'] and d['data_chunks'] == p['data_records']"
check "... and exits 0" rc_is x9 0
# A data container put among the Stream containers: every record is of the wrong type there.
fresh x14
cp "$D/$c2rel" "$D/Stream/00000002.00000001.ccc"
vjson x14 --volume "$WORK/x14"
check "records of the wrong type for their container are named, each where it is" jtrue x14 \
    "d['problems'] and all(x['container'] == 'Stream/00000002.00000001.ccc' for x in d['problems']) and \
     sum('data chunk in a Stream container' in x['what'] for x in d['problems']) == \
     sum(1 for x in d['problems'] if x['seq'] is not None) > 0 and not d['files_affected']"

# The Rrtl of the container whose first data chunk moved (o2): a damaged copy, a wrong entry.
BASE=o2
fresh2() { rm -rf "$WORK/$1" && cp -a "$WORK/o2" "$WORK/$1" && D=$(ddp "$WORK/$1"); }
fresh2 x11
moved=
for c in "$D"/Data/*.ccc; do [ "$(u32 "$c" $((0x3008)))" = 1 ] && moved=Data/$(basename "$c"); done
check "o2 has a data container with one Rrtl entry" [ -n "$moved" ]
mseq=$(u32 "$D/$moved" $((0x3020)))
flip "$D/$moved" $((0x3000 + 0x10))
vjson x11 --volume "$WORK/x11"
check "a damaged Rrtl copy: a warning, the moved chunk found through the other" jtrue x11 \
    "d['ok'] and [(x['container'], x['offset']) for x in d['warnings']] == [('$moved', 0x3000)] and d['moved'] >= 1"
fresh2 x12
for at in 0x3024 0x4024; do printf '\x00\x50\x00\x00' | dd of="$D/$moved" bs=1 seek=$((at)) conv=notrunc status=none; done
vjson x12 --volume "$WORK/x12"
check "an Rrtl entry that leads nowhere: one problem at the entry, with the files of the chunk it lost" jtrue x12 \
    "[(x['container'], x['offset'], x['seq'], x['files']) for x in d['problems']] == \
     [('$moved', 0x3020, $mseq, ['big.bin', 'dir/big-copy.bin'])]"
check "the files verify names are those the reader fails on" same_files x12

check "verify wrote nothing to the chunk store or the volume" [ "$(store_state "$WORK/o1")" = "$before" ]
finish

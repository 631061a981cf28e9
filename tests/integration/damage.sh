#!/usr/bin/env bash
# Integration test of verify on damaged container headers and footers (record tables): verify names the
# header or footer, still checks the records one by one and blames no file whose data is readable;
# restore (and, with FUSE, a mount) reads every file, because readers go by the index's offsets and each
# record's own checksum.
. "$(dirname "$0")/../lib.sh"

rh() { "$REHYDRATE" "$@"; }
SRC=$WORK/src
mkdir -p "$SRC/d"
"$PY" - "$SRC" <<'PY'
import os, random, sys
r = random.Random(12)
for i in range(4):
    with open(os.path.join(sys.argv[1], 'd', f'f{i}.bin'), 'wb') as f:
        f.write(r.randbytes(700000 + i * 100000))
with open(os.path.join(sys.argv[1], 'small.txt'), 'w') as f:
    f.write('hello\n')
PY
STORE0=$WORK/store0
rh backup "$STORE0" "$SRC" --name s -q

# flip FILE OFFSET: inverts the byte at OFFSET of FILE.
flip() {
    "$PY" - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))
PY
}
# footer_offset FILE: the header's footer_offset (u64 at 40).
footer_offset() { "$PY" -c 'import sys,struct; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(64), 40)[0])' "$1"; }

mount_reads() { # STORE: every file read through a mount equals its source (skipped without FUSE)
    [ -e /dev/fuse ] && command -v fusermount3 >/dev/null || return 0
    local MNT=$WORK/mnt STORE=$1 rc=0   # for start_fs and stop_fs
    mkdir -p "$MNT"
    start_fs "$WORK/fs.log" || return 1
    diff -r "$SRC" "$MNT/s" >/dev/null || rc=1
    stop_fs || rc=1
    return $rc
}

# damage_case WHAT KIND WHERE: a copy of the store with one byte flipped in the header (WHERE=header) or
# in the footer (WHERE=footer) of the first container of KIND (data or stream).
damage_case() {
    local what=$1 kind=$2 where=$3 st=$WORK/store-$2-$3
    rm -rf "$st"; cp -a "$STORE0" "$st"
    local ctr; ctr=$(cd "$st/containers/$kind" && ls | head -n 1)
    local off=20  # in the header's id field
    [ "$where" = footer ] && off=$(( $(footer_offset "$st/containers/$kind/$ctr") + 20 ))
    flip "$st/containers/$kind/$ctr" "$off"
    local rc=0
    rh verify "$st" >"$WORK/v.out" 2>"$WORK/v.err" || rc=$?
    check "$what: verify exits non-zero" [ "$rc" -ne 0 ]
    if [ "$where" = header ]; then
        check "$what: verify names the container's header" grep -q "containers/$kind/$ctr: header at offset 0: " "$WORK/v.err"
    else
        check "$what: verify names the container's footer and its offset" \
            grep -q "containers/$kind/$ctr: footer (record table) at offset $((off - 20)): " "$WORK/v.err"
    fi
    check "$what: verify reports 0 damaged files" grep -q '^1 problems, 0 damaged files$' "$WORK/v.out"
    check "$what: verify names no damaged file" bash -c "! grep -q 'damaged file' '$WORK/v.err'"
    check "$what: verify still checked every record" [ "$(grep -o '([0-9]* records' "$WORK/v.out")" = "$RECORDS" ]
    rm -rf "$WORK/out"
    check "$what: restore succeeds" rh restore "$st" s "$WORK/out" -q
    check "$what: ... and gives the exact files" diff -r "$SRC" "$WORK/out"
    check "$what: a mount reads every file" mount_reads "$st"
}

rh verify "$STORE0" >"$WORK/v0.out"
check "verify passes on the healthy store" [ $? -eq 0 ]
RECORDS=$(grep -o '([0-9]* records' "$WORK/v0.out")
damage_case "data container header" data header
damage_case "data container footer" data footer
damage_case "stream container header" stream header
damage_case "stream container footer" stream footer

finish

#!/usr/bin/env bash
# A Windows Server dedup chunk store read as a store (store/format_windows.c): windedup-mk turns a tree
# into a chunk store and stubs; every stub is read back by the lazy reader (the daemon's path) and
# restored in place by rh_restore_files (win-read), and compared with the source byte for byte. Then
# damage: a flipped byte costs the files that use its chunk and no other.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$BUILDDIR/tests/tools/windedup-mk}"
: "${WIN_READ:=$BUILDDIR/tests/tools/win-read}"
SRC=$WORK/src
make_win_tree "$SRC"
STORE_DIR='System Volume Information/Dedup/ChunkStore'
ddp() { ls -d "$1/$STORE_DIR"/*.ddp; }
# The stubs of OUT: every regular file that carries a reparse buffer.
stubs() { (cd "$1" && find . -path './System Volume Information' -prune -o -type f -print | sort |
           while read -r f; do getfattr -h -n user.ntfs_reparse_data "$f" >/dev/null 2>&1 && echo "$f"; done); }
# Reads every stub of OUT through the lazy reader and compares it with the source; prints the misfits.
cat_all() {
    local out=$1 d bad=0
    d=$(ddp "$out")
    while read -r f; do
        if ! "$WIN_READ" cat "$d" "$out/$f" 2>>"$WORK/cat.err" | cmp -s - "$SRC/$f"; then
            echo "differs: $f" >&2
            bad=1
        fi
    done < <(stubs "$out")
    return $bad
}
# Copies OUT's stubs beside it (with their xattrs), restores them in place, compares with the source.
restore_all() {
    local out=$1 copy=$1.restored d
    d=$(ddp "$out")
    rm -rf "$copy" && cp -a "$out" "$copy" && rm -rf "$copy/System Volume Information" || return 1
    mapfile -t list < <(stubs "$out")
    (cd "$copy" && "$WIN_READ" restore "$d" "${list[@]}") >"$WORK/restore.out" 2>>"$WORK/restore.err" || return 1
    for f in "${list[@]}"; do
        cmp -s "$copy/$f" "$SRC/$f" || { echo "differs: $f" >&2; return 1; }
        getfattr -h -n user.ntfs_reparse_data "$copy/$f" >/dev/null 2>&1 && { echo "kept its xattr: $f" >&2; return 1; }
    done
    [ ${#list[@]} -ge 10 ]
}

# ---- 0x0201, compressed chunks, many containers and sessions, older generations beside the current ----
O1=$WORK/o1
check "windedup-mk writes 0x0201 with compression and generations" \
    "$WINDEDUP_MK" --format 0x0201 --compress --container-size 1M --session-size 256K --generations=all \
    "$SRC" "$O1" 2>"$WORK/mk.err"
check "the chunk store opens as a store and every file reads back (lazy reader)" cat_all "$O1"
check "every stub is restored in place by rh_restore_files" restore_all "$O1"

# ---- the property bag, a data chunk that moved (found through its container's Rrtl) ----
O2=$WORK/o2
check "windedup-mk writes property bags with a moved data chunk" \
    "$WINDEDUP_MK" --format bag --move-chunk data "$SRC" "$O2" 2>>"$WORK/mk.err"
check "every file reads back, the moved chunk through the Rrtl" cat_all "$O2"
check "and restores" restore_all "$O2"

# ---- 0x0102 in one part, a stream map that moved ----
O3=$WORK/o3
check "windedup-mk writes 0x0102 with a moved stream map" \
    "$WINDEDUP_MK" --format 0x0102 --part-chunks 1000 --move-chunk stream "$SRC" "$O3" 2>>"$WORK/mk.err"
check "every file reads back, the moved stream map through the Rrtl" cat_all "$O3"
check "and restores" restore_all "$O3"

# ---- 0x0102 in many parts: a file's stream maps joined ----
O4=$WORK/o4
check "windedup-mk writes 0x0102 in parts of 3 chunks" \
    "$WINDEDUP_MK" --format 0x0102 --part-chunks 3 --container-size 1M "$SRC" "$O4" 2>>"$WORK/mk.err"
check "every file reads back from its parts" cat_all "$O4"
check "and restores" restore_all "$O4"
# quiet CMD...: runs CMD with its output dropped and its stderr in $WORK/err.
quiet() { "$@" >/dev/null 2>"$WORK/err"; }
# A part that does not begin where the last ended: the reparse parser's CRC-32 would catch a flipped
# byte, so the whole buffer is rewritten with a valid CRC (python) and a gap between parts 1 and 2.
"$PY" - "$O4/big.bin" <<'PY'
import os, sys, zlib, struct
p = sys.argv[1].encode()
b = bytearray(os.getxattr(p, 'user.ntfs_reparse_data', follow_symlinks=False))
at = 8 + struct.unpack_from('<H', b, 0x56)[0] + 64        # the second part's entry
struct.pack_into('<Q', b, at + 0x38, struct.unpack_from('<Q', b, at + 0x38)[0] + 1)
struct.pack_into('<I', b, len(b) - 4, zlib.crc32(bytes(b[8:-4])))
os.setxattr(p, 'user.ntfs_reparse_data', bytes(b), follow_symlinks=False)
PY
check_fails "parts with a gap between them are refused" quiet "$WIN_READ" cat "$(ddp "$O4")" "$O4/big.bin"
check "naming the reason" grep -q "corrupt" "$WORK/err"

# ---- damage: a flipped byte in the first data chunk (big.bin's first, shared by its copy) ----
d=$(ddp "$O1")
victim=$(ls "$d"/Data/00000001.*.ccc | sort | tail -n 1)
printf '\x5a' | dd of="$victim" bs=1 seek=$((0x5000 + 0x58 + 100)) conv=notrunc status=none
check_fails "the damaged file fails to read" quiet "$WIN_READ" cat "$d" "$O1/big.bin"
cp "$WORK/err" "$WORK/dmg.err"
check "naming the reason" grep -q "checksum" "$WORK/dmg.err"
cp -a "$O1" "$WORK/o1d" && rm -rf "$WORK/o1d/System Volume Information"
mapfile -t L < <(stubs "$O1")
(cd "$WORK/o1d" && "$WIN_READ" restore "$d" "${L[@]}") >"$WORK/dmg.out" 2>"$WORK/dmg-restore.err" || true
failed=$(awk '$1 != 0 {print $2}' "$WORK/dmg.out" | sort | tr '\n' ' ')
check "restore fails big.bin and its copy" sh -c 'case "$0" in *"./big.bin "*) case "$0" in *"./dir/big-copy.bin "*) exit 0;; esac;; esac; exit 1' "$failed"
check "and every other file is restored intact" sh -c '
    for f in ./text.txt ./small.txt ./dir/f00.bin ./dir/f01.bin ./dir/f02.bin ./dir/f03.bin; do
        cmp -s "$0/$f" "$1/$f" || exit 1; done' "$WORK/o1d" "$SRC"
check "a failed file keeps its stub" quiet getfattr -h -n user.ntfs_reparse_data "$WORK/o1d/big.bin"
finish

#!/usr/bin/env bash
# Integration test of damaged snapshot catalogs: one flipped byte, at a seeded sample of positions (each
# on a fresh copy of the catalog), in a plain catalog (store format 1) and in a packed one (format 2).
# Whatever the position, the snapshot must still be listed, verify must fail and name the snapshot,
# restore must exit 0 (the damage was repaired or harmless) or 3 (partial) and every file it restored
# must equal the source, ls -R must list every file that restore restored, and only the files of the
# smallest damaged unit may be lost: one entry (and, for a directory, its contents) of a plain catalog,
# one 32 KiB block of a packed one. Then the mount: a damaged entry costs only itself, its siblings read.
. "$(dirname "$0")/../lib.sh"

rh() { "$REHYDRATE" "$@"; }
SRC=$WORK/src
# 24 directories of 12 files (a few bytes each, all different): 313 entries, 3 blocks when packed.
"$PY" - "$SRC" <<'PY'
import os, sys
for d in range(24):
    p = os.path.join(sys.argv[1], 'd%02d' % d)
    os.makedirs(p)
    for f in range(12):
        with open(os.path.join(p, 'file-%02d-%02d' % (d, f)), 'w') as fh:
            fh.write('content of %d/%d\n' % (d, f) * (1 + f))
PY
TOTAL=$(find "$SRC" -type f | wc -l)
POSITIONS=${DAMAGE_POSITIONS:-70}

# run_form FORMAT LOSS_MAX: the loop over positions for one store format.
run_form() {
    local fmt=$1 loss_max=$2 store=$WORK/store$1
    rh init "$store" --format "$fmt" >/dev/null
    rh backup "$store" "$SRC" --name snap -q
    local cat=$store/snapshots/snap.snap
    cp "$cat" "$WORK/orig.snap"
    local size
    size=$(stat -c %s "$cat")
    # Every byte of the first 200 (headers, first entries), then a seeded sample of the rest.
    local positions
    positions=$("$PY" -c "import random; r = random.Random(12); n = $size
print(' '.join(map(str, sorted(set(list(range(0, min(n, 40), 3)) + [n - 1, n - 8, n - 20] + r.sample(range(n), min(n, $POSITIONS)))))))")
    local bad_list="" bad_verify="" bad_restore="" bad_content="" bad_loss="" bad_ls="" min_restored=$TOTAL n=0
    for pos in $positions; do
        n=$((n + 1))
        cp "$WORK/orig.snap" "$cat"
        "$PY" -c "import sys; f = open('$cat', 'r+b'); f.seek($pos); b = f.read(1); f.seek($pos); f.write(bytes([b[0] ^ 0x40]))"
        rh snapshots "$store" 2>/dev/null | grep -q '^snap ' || bad_list="$bad_list $pos"
        local vout rc
        vout=$(rh verify "$store" 2>&1) && rc=0 || rc=$?
        { [ "$rc" -ne 0 ] && grep -q 'snapshots/snap.snap\|snap:' <<<"$vout"; } || bad_verify="$bad_verify $pos"
        rm -rf "$WORK/t"
        rh restore "$store" snap "$WORK/t" -q 2>/dev/null && rc=0 || rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
            bad_restore="$bad_restore $pos(rc=$rc)"
            continue
        fi
        local got
        got=$(cd "$WORK/t" && find . -type f | wc -l)
        [ "$got" -lt "$min_restored" ] && min_restored=$got
        [ "$rc" -eq 0 ] && [ "$got" -ne "$TOTAL" ] && bad_restore="$bad_restore $pos(rc=0,$got files)"
        [ $((TOTAL - got)) -le "$loss_max" ] || bad_loss="$bad_loss $pos($got)"
        (cd "$WORK/t" && find . -type f -print0 | xargs -0 -r sha256sum) | (cd "$SRC" && sha256sum --quiet -c - >/dev/null 2>&1) ||
            bad_content="$bad_content $pos"
        rh ls -R "$store" snap >"$WORK/ls.out" 2>/dev/null || true
        (cd "$WORK/t" && find . -type f | sed 's|^\./||' | sort) | comm -23 - <(sort "$WORK/ls.out") | grep -q . &&
            bad_ls="$bad_ls $pos"
    done
    echo "# format $fmt: $n positions in $size bytes; the worst restore kept $min_restored of $TOTAL files"
    check "format $fmt: the snapshot is listed whatever byte is flipped${bad_list:+ (not at:$bad_list)}" [ -z "$bad_list" ]
    check "format $fmt: verify fails and names the snapshot${bad_verify:+ (not at:$bad_verify)}" [ -z "$bad_verify" ]
    check "format $fmt: restore exits 0 with every file or 3${bad_restore:+ (not at:$bad_restore)}" [ -z "$bad_restore" ]
    check "format $fmt: every restored file equals the source${bad_content:+ (not at:$bad_content)}" [ -z "$bad_content" ]
    check "format $fmt: at most $loss_max files are lost${bad_loss:+ (not at:$bad_loss)}" [ -z "$bad_loss" ]
    check "format $fmt: ls -R lists every file that restore restored${bad_ls:+ (not at:$bad_ls)}" [ -z "$bad_ls" ]
    cp "$WORK/orig.snap" "$cat"
}

# A plain catalog loses at most one entry, a directory with its 12 files at worst; a packed one at
# most the entries of one 32 KiB block (about 150) and the files of the directories among them.
run_form 1 12
run_form 2 170

# ---- one damaged entry in the middle of a directory: named by verify, its siblings restore ----
STORE=$WORK/store1
CAT=$STORE/snapshots/snap.snap
"$PY" - "$CAT" <<'PY'
import struct, sys
p = sys.argv[1]
data = bytearray(open(p, 'rb').read())
count = struct.unpack_from('<Q', data, 16)[0]
for i in range(count):
    e = 128 + i * 208
    nl = struct.unpack_from('<I', data, e + 20)[0]
    off = struct.unpack_from('<Q', data, e + 120)[0]
    if bytes(data[off:off + nl]) == b'file-05-07':
        data[e + 48] ^= 1          # its mtime: only the entry's checksum tells
        open(p, 'wb').write(data)
        sys.exit(0)
sys.exit('entry not found')
PY
set +e
rh verify "$STORE" >"$WORK/v.out" 2>&1
vrc=$?
rh restore "$STORE" snap "$WORK/t2" -q 2>"$WORK/r.err"
rrc=$?
rh ls "$STORE" snap:d05 >"$WORK/ls.out" 2>"$WORK/ls.err"
lrc=$?
set -e
check "verify exits 1 on a damaged entry (got $vrc)" [ "$vrc" -eq 1 ]
check "... and names the snapshot, the directory and the entry's index" grep -q 'snap.*d05.*entry [0-9]' "$WORK/v.out"
check "... and counts it as damaged, not '0 damaged files'" bash -c "! grep -q ' 0 damaged files' '$WORK/v.out'"
check "restore exits 3 (got $rrc)" [ "$rrc" -eq 3 ]
check "... names the directory of the lost entry" grep -q 'd05' "$WORK/r.err"
check "... and restores its 11 siblings exactly" [ "$(ls "$WORK/t2/d05" | wc -l)" -eq 11 ]
check "... with their content" cmp -s <(cd "$SRC/d05" && ls | grep -v file-05-07 | xargs cat) <(cd "$WORK/t2/d05" && ls | xargs cat)
check "ls lists the 11 intact entries of that directory" [ "$(grep -c '^file-05' "$WORK/ls.out")" -eq 11 ]
check "... reports the damaged one (exit $lrc)" [ "$lrc" -ne 0 ] && grep -q 'entry [0-9]' "$WORK/ls.err"

# ---- the mount ----
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null && [ -x "$(dirname "$REHYDRATE")/rehydratefs" ]; then
    MNT=$WORK/mnt
    mkdir -p "$MNT"
    unmount() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
    cleanup_hooks="unmount"
    "$(dirname "$REHYDRATE")/rehydratefs" "$STORE" "$MNT" -f 2>"$WORK/fs.log" &
    FS_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
    check "the mount lists the 11 intact entries of the damaged directory" [ "$(ls "$MNT/snap/d05" 2>/dev/null | wc -l)" -eq 11 ]
    check "... and reads them" cmp "$SRC/d05/file-05-08" "$MNT/snap/d05/file-05-08"
    check "... and the other directories whole" diff -r "$SRC/d06" "$MNT/snap/d06"
    check "the damaged entry itself is not found" [ ! -e "$MNT/snap/d05/file-05-07" ]
    fusermount3 -u "$MNT"
    wait "$FS_PID" || true
    check "the daemon reported no sanitizer error" bash -c "! grep -q 'Sanitizer' '$WORK/fs.log'"
else
    echo "# no /dev/fuse, fusermount3 or rehydratefs: mount checks skipped"
fi

finish

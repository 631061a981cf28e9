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
# survivors.py PLAIN PACKED|- POS: the files that no damage at byte POS can touch, given the entry layout
# of the plain catalog PLAIN (a packed catalog of the same tree holds the same logical bytes). The
# damaged unit is the entry whose bytes hold POS in a plain catalog (none in the header or meta blob,
# which one byte cannot break), and the whole 32 KiB block that holds POS in a packed one; a file
# survives when neither its entry nor any ancestor's has a byte in that unit.
cat >"$WORK/survivors.py" <<'PY'
import struct, sys
plain = open(sys.argv[1], 'rb').read()
pos = int(sys.argv[3])
lo, hi = pos, pos + 1
if sys.argv[2] != '-':
    d = open(sys.argv[2], 'rb').read()
    io, size = struct.unpack_from('<Q', d, 24)[0], struct.unpack_from('<Q', d, 16)[0]
    at, k = 64, 0
    while True:
        ln = struct.unpack_from('<I', d, io + 16 * k)[0]
        if pos < at + ln or at + ln >= io:
            break
        at, k = at + ln, k + 1
    lo, hi = (0, size) if pos < 64 or pos >= io else (k * 32768, (k + 1) * 32768)
    if pos < 64 or pos >= io:
        lo, hi = 0, 0        # the packed header or the index: repaired, nothing lost
count = struct.unpack_from('<Q', plain, 16)[0]
ents = []
for i in range(count):
    e = 128 + i * 208
    nl, = struct.unpack_from('<I', plain, e + 20)
    no, = struct.unpack_from('<Q', plain, e + 120)
    xl, = struct.unpack_from('<I', plain, e + 136)
    parent, = struct.unpack_from('<Q', plain, e + 88)
    hit = (e < hi and lo < e + 208) or (no < hi and lo < no + nl + xl)
    if i == 0:
        hit = False          # a damaged root is stood in for
    ents.append((plain[no:no + nl].decode(), parent, plain[e], hit))
def path(i):
    out = []
    while i:
        n, p, t, hit = ents[i]
        if hit:
            return None
        out.append(n); i = p
    return '/'.join(reversed(out))
for i, (n, p, t, hit) in enumerate(ents):
    q = path(i) if t == 1 else None
    if q:
        print(q)
PY
POSITIONS=${DAMAGE_POSITIONS:-70}

# run_form FORMAT: the loop over positions for one store format.
run_form() {
    local fmt=$1 store=$WORK/store$1
    rh init "$store" --format "$fmt" >/dev/null
    rh backup "$store" "$SRC" --name snap -q
    local cat=$store/snapshots/snap.snap packed=-
    cp "$cat" "$WORK/orig.snap"
    [ "$fmt" = 2 ] && packed=$WORK/orig.snap
    [ "$fmt" = 1 ] && cp "$cat" "$WORK/plain.snap"
    local size
    size=$(stat -c %s "$cat")
    # Every byte of the first 200 (headers, first entries), then a seeded sample of the rest.
    local positions
    positions=$("$PY" -c "import random; r = random.Random(12); n = $size
print(' '.join(map(str, sorted(set(list(range(0, min(n, 40), 3)) + [n - 1, n - 8, n - 20] + r.sample(range(n), min(n, $POSITIONS)))))))")
    # In a packed catalog, block 0 holds the plain header, the root and (in this tree) every directory:
    # damage there may lose everything, and the catalog when the block no longer decodes.
    local b0_end=0
    [ "$fmt" = 2 ] && b0_end=$("$PY" -c "import struct; d = open('$cat', 'rb').read(); io = struct.unpack_from('<Q', d, 24)[0]
print(64 + struct.unpack_from('<I', d, io)[0])")
    local bad_list="" bad_verify="" bad_restore="" bad_content="" bad_loss="" bad_ls="" min_restored=$TOTAL n=0 n_lost=0
    for pos in $positions; do
        n=$((n + 1))
        cp "$WORK/orig.snap" "$cat"
        "$PY" -c "import sys; f = open('$cat', 'r+b'); f.seek($pos); b = f.read(1); f.seek($pos); f.write(bytes([b[0] ^ 0x40]))"
        rh snapshots "$store" 2>"$WORK/s.err" | grep -q '^snap ' || bad_list="$bad_list $pos"
        local vout rc
        vout=$(rh verify "$store" 2>&1) && rc=0 || rc=$?
        { [ "$rc" -ne 0 ] && grep -q 'snapshots/snap.snap\|snap:' <<<"$vout"; } || bad_verify="$bad_verify $pos"
        rm -rf "$WORK/t"
        local in_b0=no
        [ "$pos" -ge 64 ] && [ "$pos" -lt "$b0_end" ] && in_b0=yes
        rh restore "$store" snap "$WORK/t" -q 2>"$WORK/r.err" && rc=0 || rc=$?
        if [ "$in_b0" = yes ] && [ "$rc" -eq 1 ] && grep -q "snapshot 'snap' cannot be opened: store data is corrupt" "$WORK/r.err" &&
            grep -q 'block 0 .*cannot be decoded' <<<"$vout" && grep -q 'snap.snap: cannot be opened: block 0' "$WORK/s.err"; then
            n_lost=$((n_lost + 1)) # the header is in a block that no longer decodes: said precisely
            continue
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
            bad_restore="$bad_restore $pos(rc=$rc)"
            continue
        fi
        local got
        got=$(cd "$WORK/t" && find . -type f | wc -l)
        [ "$got" -lt "$min_restored" ] && min_restored=$got
        [ "$rc" -eq 0 ] && [ "$got" -ne "$TOTAL" ] && bad_restore="$bad_restore $pos(rc=0,$got files)"
        "$PY" "$WORK/survivors.py" "$WORK/plain.snap" "$packed" "$pos" | sort >"$WORK/expect"
        (cd "$WORK/t" && find . -type f | sed 's|^\./||' | sort) | comm -13 - "$WORK/expect" | grep -q . &&
            bad_loss="$bad_loss $pos($got of $(wc -l <"$WORK/expect"))"
        [ "$got" -eq 0 ] || (cd "$WORK/t" && find . -type f -print0 | xargs -0 -r sha256sum) |
            (cd "$SRC" && sha256sum --quiet -c - >/dev/null 2>&1) || bad_content="$bad_content $pos"
        rh ls -R "$store" snap >"$WORK/ls.out" 2>/dev/null || true
        (cd "$WORK/t" && find . -type f | sed 's|^\./||' | sort) | comm -23 - <(sort "$WORK/ls.out") | grep -q . &&
            bad_ls="$bad_ls $pos"
    done
    echo "# format $fmt: $n positions in $size bytes; the worst restore kept $min_restored of $TOTAL files;" \
        "$n_lost left the catalog unopenable (block 0 undecodable)"
    check "format $fmt: the snapshot is listed whatever byte is flipped${bad_list:+ (not at:$bad_list)}" [ -z "$bad_list" ]
    check "format $fmt: verify fails and names the snapshot${bad_verify:+ (not at:$bad_verify)}" [ -z "$bad_verify" ]
    check "format $fmt: restore exits 0 with every file or 3${bad_restore:+ (not at:$bad_restore)}" [ -z "$bad_restore" ]
    check "format $fmt: every restored file equals the source${bad_content:+ (not at:$bad_content)}" [ -z "$bad_content" ]
    check "format $fmt: every file outside the damaged unit is restored${bad_loss:+ (not at:$bad_loss)}" [ -z "$bad_loss" ]
    check "format $fmt: ls -R lists every file that restore restored${bad_ls:+ (not at:$bad_ls)}" [ -z "$bad_ls" ]
    cp "$WORK/orig.snap" "$cat"
    [ "$fmt" = 1 ] && cp "$WORK/orig.snap" "$WORK/plain.snap"
    return 0
}

run_form 1
run_form 2

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
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null && [ -x "$REHYDRATEFS" ]; then
    MNT=$WORK/mnt
    mkdir -p "$MNT"
    unmount() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
    cleanup_hooks="unmount"
    start_fs "$WORK/fs.log"
    check "the mount lists the 11 intact entries of the damaged directory" [ "$(ls "$MNT/snap/d05" 2>/dev/null | wc -l)" -eq 11 ]
    check "... and reads them" cmp "$SRC/d05/file-05-08" "$MNT/snap/d05/file-05-08"
    check "... and the other directories whole" diff -r "$SRC/d06" "$MNT/snap/d06"
    check "the damaged entry itself is not found" [ ! -e "$MNT/snap/d05/file-05-07" ]
    stop_fs || true  # the daemon's exit status is not what this test is about
    check "the daemon reported no sanitizer error" bash -c "! grep -q 'Sanitizer' '$WORK/fs.log'"
else
    echo "# no /dev/fuse, fusermount3 or rehydratefs: mount checks skipped"
fi

finish

#!/usr/bin/env bash
# Integration test of `rehydrate restore`: an exact tree (content and every piece of metadata), subtree
# restores, stubs then --resume, kill -9 then --resume, damage that fails exactly the files that need
# it, and hostile input (unsafe catalog names, planted symlinks) that never writes outside the target.
. "$(dirname "$0")/../lib.sh"

SRC=$WORK/src
STORE=$WORK/store
make_tree "$SRC"
rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }
rh backup "$STORE" "$SRC" --name snap -q

# ---- a full restore is exact ----
state_before=$(store_state "$STORE")
rh restore "$STORE" snap "$WORK/t1" -q
check "restore exits 0" [ $? -eq 0 ]
check "restore wrote nothing to the store (no index.db-wal or -shm, no changed time)" \
    [ "$(store_state "$STORE")" = "$state_before" ]
check "the restored tree equals the source (content, modes, owners, ns times, links, xattrs, devices, holes)" \
    diff_tree "$SRC" "$WORK/t1"
check "no reparse point is left behind" bash -c "! getfattr -R -h -m user.rehydrate -d '$WORK/t1' 2>/dev/null | grep -q rehydrate"
check "the 5 GiB sparse file is still sparse" [ "$(stat -c %b "$WORK/t1/sparse.img")" -lt 4096 ]
check "latest works as a snapshot name" rh restore "$STORE" latest "$WORK/t1b" -q

# ---- refusals ----
check_fails "a non-empty target is refused without --force" rh restore "$STORE" snap "$WORK/t1" -q
check_fails "a missing snapshot is refused" rh restore "$STORE" nosuch "$WORK/t9" -q
check "--force restores over an existing tree" rh restore "$STORE" snap "$WORK/t1" --force -q
check "... exactly" diff_tree "$SRC" "$WORK/t1"

# ---- subtrees ----
rh restore "$STORE" snap "$WORK/t2" dir/sub small.txt -q
check "a subtree restore creates the subtree" diff_tree "$SRC/dir/sub" "$WORK/t2/dir/sub"
check "... and the single file" cmp "$SRC/small.txt" "$WORK/t2/small.txt"
check "... and nothing else" [ "$(cd "$WORK/t2" && find . -mindepth 1 | sort | tr '\n' ' ')" = "./dir ./dir/sub ./dir/sub/big-copy.bin ./small.txt " ]

# ---- two phases: stubs, then --resume ----
rh restore "$STORE" snap "$WORK/t3" --stubs-only -q
has_reparse() { getfattr -h -n user.rehydrate.reparse "$1" >/dev/null 2>&1; }
check "--stubs-only leaves stubs carrying reparse points" has_reparse "$WORK/t3/unique.bin"
check "stubs take no space (at most the block an xattr may need)" [ "$(stat -c %b "$WORK/t3/dir/big.bin")" -le 8 ]
check "stubs have the right size" [ "$(stat -c %s "$WORK/t3/dir/big.bin")" -eq "$(stat -c %s "$SRC/dir/big.bin")" ]
rh restore "$STORE" snap "$WORK/t3" --resume -q
check "--resume after --stubs-only gives the exact tree" diff_tree "$SRC" "$WORK/t3"

# ---- kill -9 in the middle, then --resume ----
BIG=$WORK/bigsrc
mkdir -p "$BIG"
"$PY" - "$BIG" <<'PY'
import os, random, sys
r = random.Random(7)
for i in range(160):
    d = os.path.join(sys.argv[1], f'd{i % 8}')
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f'f{i}'), 'wb') as f:
        f.write(r.randbytes(r.randrange(1 << 20, 5 << 20)))
PY
rh backup "$STORE" "$BIG" --name big -q
killed_mid=no
for delay in 1.0 0.5 0.25 0.12 0.06 0.03; do
    rm -rf "$WORK/t4"
    rh restore "$STORE" big "$WORK/t4" -q &
    pid=$!
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        if ! diff_tree "$BIG" "$WORK/t4" >/dev/null 2>&1; then killed_mid=yes; break; fi
    else
        wait "$pid" || true
    fi
done
check "a restore was killed with SIGKILL while incomplete" [ "$killed_mid" = yes ]
rh restore "$STORE" big "$WORK/t4" --resume -q
check "--resume after kill -9 gives the exact tree" diff_tree "$BIG" "$WORK/t4"

# ---- many batches, two at a time, each finished as soon as it is done ----
# An open-file limit of 3072 caps a batch at (3072 - 1024) / 2 = 1024 files: 3000 files make three
# batches, rehydrated by two streams, whose modes and times are set while other batches still run.
MANY=$WORK/manysrc
"$PY" - "$MANY" <<'PY'
import os, random, sys
r = random.Random(11)
for i in range(3000):
    d = os.path.join(sys.argv[1], f'd{i % 7}', f'e{i % 3}')
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f'f{i}')
    with open(p, 'wb') as f:
        f.write(r.randbytes(r.randrange(0, 20000)) if i % 2 else (b'text %d\n' % i) * r.randrange(1, 900))
    os.chmod(p, r.choice([0o600, 0o644, 0o444, 0o755, 0o4755]))
    os.utime(p, ns=(r.randrange(10**18, 2 * 10**18), r.randrange(10**18, 2 * 10**18)))
PY
rh backup "$STORE" "$MANY" --name many -q
(ulimit -n 3072 && "$REHYDRATE" restore "$STORE" many "$WORK/t8" -q)
check "a restore in batches of 1024 files exits 0" [ $? -eq 0 ]
check "... and gives the exact tree (content, modes, ns times)" diff_tree "$MANY" "$WORK/t8"

# ---- damage fails exactly the files that need it ----
cp -a "$STORE" "$WORK/damaged"
flip_chunk_byte "$SRC/unique.bin" "$WORK/damaged/containers/data" >/dev/null
set +e
rh restore "$WORK/damaged" snap "$WORK/t5" -q 2>"$WORK/t5.err"
rc=$?
set -e
check "a damaged chunk gives exit code 3 (got $rc)" [ "$rc" -eq 3 ]
# unique.bin, hardlink-1 and dir/hardlink-2 are one inode; the stub is the group's first name
check "the damaged file is named with the cause" grep -qE '(unique.bin|hardlink-1): restore: record checksum mismatch' "$WORK/t5.err"
check "every other file is bit-exact" bash -c "cd '$SRC' && find . -type f ! -name unique.bin ! -name 'hardlink-*' -print0 | \
    (cd '$WORK/t5' && xargs -0 sha256sum) | (cd '$SRC' && sha256sum --quiet -c -)"
check "the damaged file is still a stub (it can be retried)" has_reparse "$WORK/t5/unique.bin"

# ---- hostile input: nothing is written outside the target ----
OUT=$WORK/outside
mkdir -p "$OUT" "$WORK/t6"
ln -s "$OUT" "$WORK/t6/dir"            # planted where the snapshot has a directory
ln -s "$OUT/small.txt" "$WORK/t6/small.txt"  # planted where the snapshot has a file
rh restore "$STORE" snap "$WORK/t6" --force -q || true
check "planted symlinks were not followed: the outside directory is still empty" [ -z "$(ls -A "$OUT")" ]
check "the planted directory symlink was replaced by a real directory" [ -d "$WORK/t6/dir" ] && [ ! -L "$WORK/t6/dir" ]
check "... and the restore is exact" diff_tree "$SRC" "$WORK/t6"

# A catalog whose names are "..", "a/b" (checksums recomputed, so only the name checks stand in the way).
# The script edits a plain catalog in place: a store of format 1 writes them plain. A packed catalog
# holds the same bytes in compressed blocks and goes through the same checks once they are decoded.
mkdir -p "$WORK/hsrc/ab" "$WORK/hsrc/a_b" "$WORK/hsrc/sibling"
echo payload >"$WORK/hsrc/ab/victim"
echo payload >"$WORK/hsrc/a_b/victim2"
echo kept >"$WORK/hsrc/sibling/kept"
echo kept too >"$WORK/hsrc/top-file"
rh init "$WORK/hstore" --format 1 >/dev/null
rh backup "$WORK/hstore" "$WORK/hsrc" --name h -q
"$PY" "$TOP_SRCDIR/tests/integration/hostile_catalog.py" "$WORK/hstore/snapshots/h.snap"
mkdir -p "$WORK/cage/t7"
set +e
rh restore "$WORK/hstore" h "$WORK/cage/t7" -q 2>"$WORK/t7.err"
rc=$?
set -e
check "a hostile catalog is refused entry by entry: exit 3, partial (got $rc)" [ "$rc" -eq 3 ]
check "... with a message naming the problem" grep -qi 'corrupt\|unsafe' "$WORK/t7.err"
check "... and each refused entry by name" grep -q '\.\.: refused' "$WORK/t7.err" && grep -q 'a/b: refused' "$WORK/t7.err"
check "... while its siblings are restored" cmp -s "$WORK/hsrc/sibling/kept" "$WORK/cage/t7/sibling/kept" &&
    cmp -s "$WORK/hsrc/top-file" "$WORK/cage/t7/top-file"
set +e
rh ls -R "$WORK/hstore" h >"$WORK/t7.ls" 2>"$WORK/t7.lserr"
rc=$?
set -e
check "ls of a hostile catalog lists the siblings and exits 3 (got $rc)" [ "$rc" -eq 3 ] &&
    grep -qx 'sibling/kept' "$WORK/t7.ls" && grep -qx 'top-file' "$WORK/t7.ls"
check "... naming the refused entries" grep -q "entry named '\.\.' refused" "$WORK/t7.lserr"
check "... and nothing was written outside the target" \
    [ "$(cd "$WORK/cage" && find . -path ./t7 -prune -o -print | sort | tr '\n' ' ')" = ". " ]
check "... not even below it under another name" [ -z "$(find "$WORK/cage" -name 'victim*')" ]
check "no victim file escaped next to the target" [ ! -e "$WORK/cage/victim" ] && [ ! -e "$WORK/victim" ]

finish

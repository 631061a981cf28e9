#!/usr/bin/env bash
# Integration test of command-line arguments that are wrong or racing: a mount point that is a file is
# refused (rehydrate mount and rehydratefs, exit 2, nothing mounted); a restore whose PATH is refused
# leaves no target behind; two backups that both create a new store both succeed into the one store.
. "$(dirname "$0")/../lib.sh"

rh() { "$REHYDRATE" "$@"; }
mounted() { findmnt -n "$1" >/dev/null 2>&1; }   # mountpoint(1) looks at directories only
unmount_file() { mounted "$WORK/file" && fusermount3 -u -z "$WORK/file"; return 0; }
cleanup_hooks="unmount_file"
SRC=$WORK/src
mkdir -p "$SRC/d"
echo hello >"$SRC/d/a.txt"
head -c 300000 /dev/urandom >"$SRC/b.bin"
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name s -q

# ---- mount on a file ----
: >"$WORK/file"
rc=0; rh mount "$STORE" "$WORK/file" 2>"$WORK/m.err" || rc=$?
check "rehydrate mount on a regular file exits 2" [ "$rc" -eq 2 ]
check "... saying that the mount point is not a directory" grep -q "file: the mount point is not a directory" "$WORK/m.err"
check_fails "... and mounts nothing" mounted "$WORK/file"
unmount_file
rc=0; rh mount "$STORE" -o snapshot=s "$WORK/file" 2>/dev/null || rc=$?
check "... also with options before the mount point" [ "$rc" -eq 2 ]
unmount_file
rc=0; rh mount "$STORE" "$WORK/missing" 2>"$WORK/m.err" || rc=$?
check "rehydrate mount on a missing mount point exits 2" [ "$rc" -eq 2 ]
rc=0; "$REHYDRATEFS" "$STORE" "$WORK/file" 2>"$WORK/m.err" || rc=$?
check "rehydratefs on a regular file exits 2" [ "$rc" -eq 2 ]
check "... saying that the mount point is not a directory" grep -q "file: the mount point is not a directory" "$WORK/m.err"
check_fails "... and mounts nothing" mounted "$WORK/file"
unmount_file

# ---- restore: a refused PATH leaves no target ----
rc=0; rh restore "$STORE" s "$WORK/out/x" ../../etc -q 2>"$WORK/r.err" || rc=$?
check "a restore of PATH ../../etc is refused (exit 2)" [ "$rc" -eq 2 ]
check "... naming the PATH" grep -q "\.\./\.\./etc: a PATH may not contain" "$WORK/r.err"
check "... and leaves no target (nor its parents) behind" [ ! -e "$WORK/out" ]
rc=0; rh restore "$STORE" s "$WORK/out2" d/nosuch -q 2>"$WORK/r.err" || rc=$?
check "a restore of a PATH not in the snapshot fails" [ "$rc" -eq 1 ]
check "... naming the PATH" grep -q "d/nosuch: not in snapshot s" "$WORK/r.err"
check "... and leaves no target behind" [ ! -e "$WORK/out2" ]
mkdir "$WORK/out3"
rc=0; rh restore "$STORE" s "$WORK/out3" ../x -q 2>/dev/null || rc=$?
check "a refused restore keeps a target that existed before" [ "$rc" -eq 2 ] && [ -d "$WORK/out3" ]
check "a restore of a good PATH still works" rh restore "$STORE" s "$WORK/out4" d -q
check "... exactly" diff -r "$SRC/d" "$WORK/out4/d"

# ---- two backups that both create the same new store ----
NEW=$WORK/new
for i in 1 2 3 4; do
    "$REHYDRATE" backup "$NEW" "$SRC" --name "race$i" -q >"$WORK/race$i.out" 2>"$WORK/race$i.err" &
    eval "P$i=\$!"
done
ok_count=0; busy=0; bad=0
for i in 1 2 3 4; do
    rc=0; eval "wait \$P$i" || rc=$?
    if [ "$rc" -eq 0 ]; then ok_count=$((ok_count + 1))
    elif grep -q "another backup is running on this store" "$WORK/race$i.err"; then busy=$((busy + 1))
    else bad=$((bad + 1)); cat "$WORK/race$i.err"; fi
done
echo "# racing backups: $ok_count succeeded, $busy found another backup running, $bad other"
check "racing backups that create one store: none fails with 'not a store' or another error" [ "$bad" -eq 0 ]
check "... and at least one succeeds" [ "$ok_count" -ge 1 ]
check "... into one store with one snapshot per success" \
    [ "$(rh snapshots "$NEW" | grep -c race)" -eq "$ok_count" ]
check "... that verifies" bash -c "'$REHYDRATE' verify '$NEW' >/dev/null"
mkdir "$WORK/other"; echo x >"$WORK/other/file"
rc=0; rh backup "$WORK/other" "$SRC" -q 2>"$WORK/o.err" || rc=$?
check "a backup into a directory that holds something else is still refused" [ "$rc" -eq 1 ]
check "... as not empty" grep -q "the directory is not empty" "$WORK/o.err"

finish

#!/usr/bin/env bash
# A running mount follows new backups: a snapshot committed while the store is mounted appears in the
# root, and "latest" points at it, within seconds and without a signal; what an already shown snapshot
# holds never changes. Checked with inotify, and with inotify unavailable (the once-a-second poll that
# covers NFS and the like). A catalog that cannot be opened is reported once per run, not per rescan.
. "$(dirname "$0")/../lib.sh"

[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "# no /dev/fuse or fusermount3"; exit 77; }
rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }
MNT=$WORK/mnt
mkdir -p "$MNT"
max_inotify=$(cat /proc/sys/fs/inotify/max_user_instances)
restore_inotify() { echo "$max_inotify" >/proc/sys/fs/inotify/max_user_instances 2>/dev/null; return 0; }
unmount_all() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
cleanup_hooks="restore_inotify unmount_all"
# within SECONDS COMMAND...: passes when COMMAND succeeds within SECONDS (checked every 0.1 s).
within() { local n=$(($1 * 10)); shift; for _ in $(seq "$n"); do "$@" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
lists() { ls "$MNT" | grep -qx "$1"; }
latest_is() { [ "$(readlink "$MNT/latest")" = "$1" ]; }

SRC=$WORK/src
mkdir -p "$SRC/d"
echo first >"$SRC/d/file"
"$PY" -c 'import os,sys; open(sys.argv[1],"wb").write(os.urandom(300000))' "$SRC/big"
cp -a "$SRC" "$WORK/src-one"
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name one -q

start_fs "$WORK/f1.log"
check "at mount: one and latest -> one" latest_is one
cat "$MNT/one/d/file" "$MNT/one/big" >/dev/null  # cached by the kernel and the daemon
exec 7<"$MNT/one/d/file"                           # and an open file of that snapshot
echo second >"$SRC/d/file"
rm "$SRC/big"
rh backup "$STORE" "$SRC" --name two -q
check "a snapshot made while mounted appears in the root within 3 s, without a signal" within 3 lists two
check "... and latest follows it (a name of the same length: the cached link target is dropped)" within 3 latest_is two
check "... and it reads right" [ "$(cat "$MNT/two/d/file")" = second ]
check "... through latest too" [ "$(cat "$MNT/latest/d/file")" = second ]
check "snapshot one still shows exactly what it held" diff_tree "$WORK/src-one" "$MNT/one"
check "... also through a file opened before" [ "$(cat <&7)" = first ]
exec 7<&-
# Two backups in quick succession: both appear.
echo third >"$SRC/d/file"; rh backup "$STORE" "$SRC" --name three -q
echo fourth >"$SRC/d/file"; rh backup "$STORE" "$SRC" --name four -q
check "two backups in quick succession both appear" within 3 bash -c "ls '$MNT' | grep -qx three && ls '$MNT' | grep -qx four"
check "... and latest is the newer" within 3 latest_is four
check "... which reads right" [ "$(cat "$MNT/latest/d/file")" = fourth ]
check "the root lists exactly the snapshots and latest" [ "$(ls "$MNT" | tr '\n' ' ')" = "four latest one three two " ]
stop_fs

# Without inotify (as on NFS): the poll of the snapshot directory finds new snapshots.
echo 0 >/proc/sys/fs/inotify/max_user_instances
start_fs "$WORK/f2.log"
for _ in $(seq 50); do grep -q 'cannot watch' "$WORK/f2.log" && break; sleep 0.1; done
restore_inotify
check "with inotify unavailable the daemon says it polls" grep -q 'polling once a second' "$WORK/f2.log"
echo fifth >"$SRC/d/file"
rh backup "$STORE" "$SRC" --name five -q
check "... and a new snapshot still appears within 4 s" within 4 lists five
check "... and latest follows" within 4 latest_is five
check "... reading right" [ "$(cat "$MNT/latest/d/file")" = fifth ]
stop_fs

# A snapshot mounted as the root never changes, whatever is backed up meanwhile.
start_fs "$WORK/f3.log" -o snapshot=latest
echo sixth >"$SRC/d/file"
rh backup "$STORE" "$SRC" --name six -q
sleep 2
check "-o snapshot=latest keeps showing the snapshot it mounted" [ "$(cat "$MNT/d/file")" = fifth ]
stop_fs
# A catalog that cannot be opened is left out with one line, at mount, and not again at each rescan.
printf 'not a catalog' >"$STORE/snapshots/bad.snap"
start_fs "$WORK/f4.log"
echo seventh >"$SRC/d/file"
rh backup "$STORE" "$SRC" --name seven -q
check "with a damaged catalog in the store a new snapshot still appears" within 4 lists seven
echo eighth >"$SRC/d/file"
rh backup "$STORE" "$SRC" --name eight -q
check "... and another one" within 4 lists eight
check "... and the damaged one is named once across both rescans, not at each" \
    [ "$(grep -c 'snapshots/bad.snap: .*(left out)' "$WORK/f4.log")" = 1 ]
stop_fs
rm "$STORE/snapshots/bad.snap"
check "the daemon's stderr has no sanitizer report" bash -c "! grep -l 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' $DAEMON_LOGS"

finish

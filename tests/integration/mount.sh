#!/usr/bin/env bash
# Integration test of rehydratefs: two snapshots through the mount compared entry by entry with their
# sources, cp -a out of the mount (sparse files stay sparse), EROFS on every write, parallel readers,
# damage giving EIO on exactly the files that use it, SIGTERM with reads in flight, fusermount3 -u,
# -o snapshot=, mount(8), read-ahead across a directory's files, and no sanitizer report in the
# daemon's stderr.
. "$(dirname "$0")/../lib.sh"

[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "# no /dev/fuse or fusermount3"; exit 77; }
export PATH="$(dirname "$REHYDRATEFS"):$PATH"   # mount.fuse3 runs "rehydratefs" from PATH
rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }
MNT=$WORK/mnt
mkdir -p "$MNT"
unmount_all() { for m in "$WORK"/mnt*; do mountpoint -q "$m" && fusermount3 -u -z "$m"; done; return 0; }
cleanup_hooks="unmount_all"

SRC=$WORK/src
STORE=$WORK/store
make_tree "$SRC"
rh backup "$STORE" "$SRC" --name one -q
cp -a "$SRC" "$WORK/src-one"          # what snapshot one holds
echo "changed" >>"$SRC/small.txt"
rm "$SRC/compressible.txt"
mkdir "$SRC/new dir"; echo new >"$SRC/new dir/file"
rh backup "$STORE" "$SRC" --name two -q

# ---- browsing and faithful metadata ----
state_before=$(store_state "$STORE")
start_fs "$WORK/d1.log"
check "the root lists the snapshots and latest" [ "$(ls "$MNT" | tr '\n' ' ')" = "latest one two " ]
check "latest is a symlink to the newest" [ "$(readlink "$MNT/latest")" = two ]
# A random read fetches a whole chunk; the daemon gives the kernel the rest of it (FUSE_NOTIFY_STORE),
# so more than the one page asked for is cached. Without the push the kernel holds just that page.
dd if="$MNT/two/unique.bin" of=/dev/null bs=4096 skip=128 count=1 status=none
check "a random read leaves the rest of its chunk in the page cache" bash -c \
    'for i in $(seq 50); do [ "$(fincore -b -n -o RES "$1")" -ge 8192 ] && exit 0; sleep 0.1; done; exit 1' _ "$MNT/two/unique.bin"
check "the kernel's readahead on the mount is raised to 1 MiB (root)" bash -c \
    'for i in $(seq 50); do [ "$(cat /sys/class/bdi/$(stat -c %Hd:%Ld "$1")/read_ahead_kb)" = 1024 ] && exit 0; sleep 0.1; done; exit 1' _ "$MNT"
check "snapshot one through the mount equals its source (content, modes, owners, ns times, xattrs, devices, hard links, holes)" \
    diff_tree "$WORK/src-one" "$MNT/one"
check "snapshot two equals the current source" diff_tree "$SRC" "$MNT/two"
check "hard links share an inode number" [ "$(stat -c %i "$MNT/one/unique.bin")" = "$(stat -c %i "$MNT/one/dir/hardlink-2")" ]
check "... and report their link count" [ "$(stat -c %h "$MNT/one/unique.bin")" -eq 3 ]
check "inode numbers are stable across lookups" [ "$(stat -c %i "$MNT/one/dir/big.bin")" = "$(ls -i "$MNT/one/dir" | awk '/big.bin/ {print $1}')" ]
check "st_blocks reflects holes" [ "$(stat -c %b "$MNT/one/sparse.img")" -lt 4096 ]
check "SEEK_DATA finds the data after the first hole" "$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
d = os.lseek(fd, 200000, os.SEEK_DATA); h = os.lseek(fd, d, os.SEEK_HOLE)
sys.exit(0 if (1 << 30) - 65536 <= d <= (1 << 30) and h > d and h < (1 << 30) + (1 << 20) else 1)' "$MNT/one/sparse.img"
check "getxattr returns the original value" [ "$(getfattr --only-values -n user.comment "$MNT/one/small.txt")" = "a value" ]

# ---- cp -a out of the mount ----
cp -a "$MNT/one" "$WORK/copy-one"
check "cp -a out of the mount gives the source back, sparse files sparse" diff_tree "$WORK/src-one" "$WORK/copy-one"

# ---- read-only ----
check_fails "creating a file fails" touch "$MNT/one/newfile"
check "... with EROFS" bash -c "touch '$MNT/one/newfile' 2>&1 | grep -q 'Read-only file system'"
check_fails "writing a file fails" bash -c "echo x >>'$MNT/one/small.txt'"
check_fails "mkdir fails" mkdir "$MNT/one/d"
check_fails "rm fails" rm -f "$MNT/one/small.txt"
check_fails "rename fails" mv "$MNT/one/small.txt" "$MNT/one/other"
check_fails "setfattr fails" setfattr -n user.x -v y "$MNT/one/small.txt"
check_fails "chmod fails" chmod 777 "$MNT/one/small.txt"

# ---- eight parallel readers ----
(cd "$SRC" && find . -type f ! -name sparse.img -print0 | sort -z | xargs -0 sha256sum) >"$WORK/want.sum"
for i in $(seq 8); do
    # (set -e would end the subshell at a mismatch before it writes rc, and the wait below would hang)
    (rc=0; cd "$MNT/two" && sha256sum -c --quiet "$WORK/want.sum" >"$WORK/reader$i.out" 2>&1 || rc=$?
     echo "$rc" >"$WORK/reader$i.rc") &
done
wait_readers() { for i in $(seq 8); do while [ ! -s "$WORK/reader$i.rc" ]; do sleep 0.05; done; done; }
wait_readers
check "eight parallel readers agree with the source" [ "$(cat "$WORK"/reader*.rc | sort -u)" = 0 ]
rc=0
stop_fs || rc=$?
check "fusermount3 -u ends the daemon with status 0 (got $rc)" [ "$rc" -eq 0 ]
check "... and leaves no mount behind" bash -c "! mountpoint -q '$MNT'"
check "the mount wrote nothing to the store (no index.db-wal or -shm, no changed time)" \
    [ "$(store_state "$STORE")" = "$state_before" ]

# ---- -o snapshot= ----
start_fs "$WORK/d2.log" -o snapshot=one
check "-o snapshot=one mounts that snapshot as the root" cmp "$WORK/src-one/small.txt" "$MNT/small.txt"
stop_fs

# ---- SIGTERM while readers are busy ----
start_fs "$WORK/d3.log" -o cache_size=1M
for i in $(seq 4); do (while :; do cat "$MNT/one/dir/big.bin" "$MNT/one/sparse.img" >/dev/null 2>&1 || break; done) & done
sleep 1
t0=$(date +%s%N)
kill -TERM "$FS_PID"
wait "$FS_PID"; rc=$?
t1=$(date +%s%N)
wait 2>/dev/null || true
check "SIGTERM with reads in flight ends the daemon with status 0 (got $rc)" [ "$rc" -eq 0 ]
check "... within seconds ($(( (t1 - t0) / 1000000 )) ms)" [ $(( (t1 - t0) / 1000000000 )) -lt 10 ]
check "... and leaves no mount behind" bash -c "! mountpoint -q '$MNT' && ! grep -q ' $MNT ' /proc/mounts"

# ---- the daemonizing form, mount(8), rehydrate mount ----
"$REHYDRATEFS" "$STORE" "$MNT"
check "rehydratefs daemonizes and the mount is ready when it returns" [ -f "$MNT/two/new dir/file" ]
fusermount3 -u "$MNT"
# mount(8) runs helpers with its own PATH: as after `make install`, rehydratefs must be in a system
# directory. A temporary link stands in for the install (removed again unless it was there before).
sys_link=/usr/local/sbin/rehydratefs
remove_link() { [ -n "${made_link:-}" ] && rm -f "$sys_link"; return 0; }
cleanup_hooks="$cleanup_hooks remove_link"
if [ ! -e "$sys_link" ]; then mkdir -p /usr/local/sbin; ln -s "$REHYDRATEFS" "$sys_link"; made_link=yes; fi
check "mount -t fuse.rehydratefs works" mount -t fuse.rehydratefs "$STORE" "$MNT" -o snapshot=latest
check "... and shows the snapshot" [ -f "$MNT/new dir/file" ]
fusermount3 -u "$MNT" || true
check "mount -t fuse PROGRAM#STORE works too" mount -t fuse "$REHYDRATEFS#$STORE" "$MNT" -o snapshot=one
check "... and shows the snapshot" [ -f "$MNT/compressible.txt" ]
fusermount3 -u "$MNT" || true
check "mount.rehydratefs (mount -t rehydratefs) works" "$TOP_SRCDIR/contrib/mount.rehydratefs" "$STORE" "$MNT" -o rw,snapshot=one,noauto
check "... and shows the snapshot" [ -f "$MNT/compressible.txt" ]
fusermount3 -u "$MNT"
check "rehydrate mount works" rh mount "$STORE" "$MNT"
check "... and shows the store" [ -L "$MNT/latest" ]
fusermount3 -u "$MNT"

# ---- a missing index is rebuilt before mounting ----
rm -f "$STORE/index.db" "$STORE/index.db-wal" "$STORE/index.db-shm"
start_fs "$WORK/d4.log"
check "a missing index is rebuilt at mount, with a message" grep -q 'rebuilding' "$WORK/d4.log"
check "... and reads work" cmp "$SRC/dir/big.bin" "$MNT/two/dir/big.bin"
stop_fs

# ---- a stale index: a mount checks the newest container of each kind, and lists none ----
# An index left behind by a backup that did not update it (here: the index of before that backup, put
# back) misses the containers after its newest: the mount sees the next one and rebuilds the index.
QSTORE=$WORK/qstore
rh init "$QSTORE" >/dev/null
rh backup "$QSTORE" "$WORK/src-one" --name first -q
cp "$QSTORE/index.db" "$WORK/index.first"
mkdir "$WORK/qnew"
head -c 3000000 /dev/urandom >"$WORK/qnew/q-new.bin"
rh backup "$QSTORE" "$WORK/qnew" --name second -q
cp "$WORK/index.first" "$QSTORE/index.db"
SAVED_STORE=$STORE
STORE=$QSTORE
start_fs "$WORK/dq1.log"
check "an index that misses the newest containers is rebuilt at mount, with a message" \
    grep -q 'index stale, rebuilding' "$WORK/dq1.log"
check "... and the snapshot in them reads right" cmp "$WORK/qnew/q-new.bin" "$MNT/second/q-new.bin"
stop_fs
# With a current index the mount reads no listing of the containers: its start takes the same time
# with 20 containers as with 20,000 (issue 15). strace shows which directories it opens.
REAL_FS=$REHYDRATEFS
# (LeakSanitizer cannot run under ptrace: an ASan build is told not to look for leaks here.)
printf '#!/bin/sh\nASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" exec strace -f -e trace=openat -o "%s" "%s" "$@"\n' \
    "$WORK/dq2.strace" "$REAL_FS" >"$WORK/fs-strace"
chmod +x "$WORK/fs-strace"
REHYDRATEFS=$WORK/fs-strace
start_fs "$WORK/dq2.log"
ls "$MNT/second" >/dev/null
stop_fs
REHYDRATEFS=$REAL_FS
STORE=$SAVED_STORE
check "with a current index, mounting opens no container directory to list it" \
    bash -c "grep -q 'index.db' '$WORK/dq2.strace' && ! grep -qE 'openat\\([0-9A-Z_]+, \"containers/(data|stream)\", ' '$WORK/dq2.strace'"

# ---- damage: EIO on the files that use the flipped chunk, and nothing else ----
flip_chunk_byte "$WORK/src-one/unique.bin" "$STORE/containers/data" >/dev/null
start_fs "$WORK/d5.log"
check "reading the damaged file gives EIO" bash -c "cat '$MNT/one/unique.bin' 2>&1 >/dev/null | grep -q 'Input/output error'"
check "... so does its hard link" bash -c "! cat '$MNT/one/dir/hardlink-2' >/dev/null 2>&1"
check "... the damage is logged with the path and the container" grep -q 'unique.bin\|hardlink-1\|hardlink-2' "$WORK/d5.log"
check "... once" [ "$(grep -c 'record checksum mismatch' "$WORK/d5.log")" -eq 1 ]
check "every other file still reads right" bash -c "cd '$MNT/one' && (cd '$WORK/src-one' && find . -type f ! -name unique.bin ! -name 'hardlink-*' ! -name sparse.img -print0 | xargs -0 sha256sum) | sha256sum --quiet -c -"
stop_fs

# ---- directory read-ahead: opening a file fetches the files after it ----
# Forty small files in one directory. Opening the first fetches the next 32 into the daemon's cache;
# then one byte of f05's and of f39's stored data is flipped. f05 still reads right (from the cache),
# f39, past the window, gives EIO. Without the read-ahead f05 would give EIO too.
DSRC=$WORK/dsrc
mkdir -p "$DSRC/d"
"$PY" - "$DSRC/d" <<'PY'
import os, random, sys
r = random.Random(5)
for i in range(40):
    with open(os.path.join(sys.argv[1], 'f%02d' % i), 'wb') as f: f.write(r.randbytes(20000))
# Inside the window too: a file of several chunks, and a sparse one.
with open(os.path.join(sys.argv[1], 'f00a'), 'wb') as f: f.write(r.randbytes(300000))
with open(os.path.join(sys.argv[1], 'f00b'), 'wb') as f:
    for off in (0, 1 << 20):
        f.seek(off); f.write(r.randbytes(50000))
    f.truncate(2 << 20)
PY
main_store=$STORE
STORE=$WORK/dstore
rh backup "$STORE" "$DSRC" --name d -q
# ---- the files fetched ahead (below) go into the kernel's page cache: reading them sends no READ ----
# (The kernel takes pages only for inodes it knows: listing the directory first, as tar, cp -r and
# rsync do, makes them known.)
# (A cache of 32M: the window, 32 files of up to 256 KiB, is cut to fit a quarter of the cache.)
start_fs "$WORK/d9.log" -d -o cache_size=32M
ls "$MNT/d/d" >/dev/null
cat "$MNT/d/d/f00" >/dev/null
sleep 1
reads_before=$(grep -c 'opcode: READ ' "$WORK/d9.log")
for i in $(seq 1 20); do cat "$MNT/d/d/f$(printf %02d "$i")" >/dev/null; done
# f00a's first 256 KiB span several chunks, pushed as one store: no page at their boundaries is missing
dd if="$MNT/d/d/f00a" bs=64k count=4 status=none >/dev/null
reads_after=$(grep -c 'opcode: READ ' "$WORK/d9.log")
check "twenty files and the first 256 KiB of another fetched ahead read with no READ request ($((reads_after - reads_before)))" \
    [ "$reads_after" -eq "$reads_before" ]
check "... and they read right" bash -c "cd '$DSRC/d' && sha256sum f0[1-9] f1* f20 | (cd '$MNT/d/d' && sha256sum --quiet -c -)"
check "a file of several chunks fetched ahead reads right" cmp "$DSRC/d/f00a" "$MNT/d/d/f00a"
check "a sparse file fetched ahead reads right" cmp "$DSRC/d/f00b" "$MNT/d/d/f00b"
stop_fs
# Damage is the probe of what was fetched ahead. In a pack it would spread to the pack's neighbours,
# so these tests read a copy of the tree from a store of format 1, where every chunk is alone.
STORE=$WORK/dstore1
rh init "$STORE" --format 1 >/dev/null
rh backup "$STORE" "$DSRC" --name d -q
start_fs "$WORK/d6.log"
cat "$MNT/d/d/f00" >/dev/null
sleep 1 # the fetch runs on the thread pool; 20 small files take milliseconds
flip_chunk_byte "$DSRC/d/f05" "$STORE/containers/data" 1000 >/dev/null
flip_chunk_byte "$DSRC/d/f39" "$STORE/containers/data" 1000 >/dev/null
check "opening a file fetched the files after it in its directory (f05 reads right from the cache)" \
    cmp "$DSRC/d/f05" "$MNT/d/d/f05"
check "... and no further than the window (f39's damage gives EIO)" bash -c "! cat '$MNT/d/d/f39' >/dev/null 2>&1"
stop_fs
start_fs "$WORK/d7.log" -o dir_readahead=0
cat "$MNT/d/d/f00" >/dev/null
sleep 1
check "with -o dir_readahead=0 nothing is fetched ahead (f05's damage gives EIO)" \
    bash -c "! cat '$MNT/d/d/f05' >/dev/null 2>&1"
stop_fs
STORE=$WORK/dstore
# ---- one request per small file: OPEN is answered ENOSYS once, then the kernel sends no more ----
start_fs "$WORK/d8.log" -d
for i in $(seq 10 29); do cat "$MNT/d/d/f$i" >/dev/null; done
check "twenty files read with at most one OPEN request ($(grep -c 'opcode: OPEN ' "$WORK/d8.log"))" \
    [ "$(grep -c 'opcode: OPEN ' "$WORK/d8.log")" -le 1 ]
check "... and no RELEASE" [ "$(grep -c 'opcode: RELEASE ' "$WORK/d8.log")" -eq 0 ]
check "... and they read right" bash -c "cd '$DSRC/d' && sha256sum f1* f2* | (cd '$MNT/d/d' && sha256sum --quiet -c -)"
# ---- and directories: OPENDIR likewise ----
find "$MNT" -print0 | LC_ALL=C sort -z >"$WORK/d8.list"
check "listing the whole mount sent at most one OPENDIR ($(grep -c 'opcode: OPENDIR ' "$WORK/d8.log"))" \
    [ "$(grep -c 'opcode: OPENDIR ' "$WORK/d8.log")" -le 1 ]
check "... and no RELEASEDIR" [ "$(grep -c 'opcode: RELEASEDIR ' "$WORK/d8.log")" -eq 0 ]
check "... and listed every entry of the tree" \
    cmp <(cd "$DSRC" && find . -print0 | sed -z 's|^\.|'"$MNT"'/d|' | LC_ALL=C sort -z) \
        <(grep -z "^$MNT/d" "$WORK/d8.list")
stop_fs
STORE=$main_store

# ---- no sanitizer reports from any daemon ----
check "the daemon's stderr has no sanitizer report" bash -c "! grep -l 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' $DAEMON_LOGS"

finish

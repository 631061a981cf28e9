#!/usr/bin/env bash
# rehydratefs over a Windows Server dedup volume (src/fuse/volume.c). windedup-mk turns a source tree
# into a volume: a chunk store plus stubs (sparse files of the real size whose reparse data is in an
# xattr). The mount is compared entry by entry with the source, on an ext4 copy of a volume (reparse
# data in user.ntfs_reparse_data) and on an NTFS image written and read through ntfs-3g (reparse data in
# system.ntfs_reparse_data; without ntfs-3g's dedup plugin a stub is a symlink there). Then: cp -a out
# of the mount, eight concurrent readers of one stub, EROFS, owners and modes enforced for other users,
# damage costing only the files it touches, and SIGTERM or fusermount3 -u with reads in flight.
. "$(dirname "$0")/../lib.sh"

[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "# no /dev/fuse or fusermount3"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "# needs root: owners of the source, other users, ntfs-3g"; exit 77; }
: "${WINDEDUP_MK:=$BUILDDIR/tests/tools/windedup-mk}"
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@" --skip 'System Volume Information'; }
chmod 755 "$WORK" # the other users must reach the mount point
MNT=$WORK/mnt
NT=$WORK/ntfs
mkdir -p "$MNT" "$NT"
unmount_all() { for m in "$MNT" "$NT"; do mountpoint -q "$m" && umount -l "$m"; done; return 0; }
cleanup_hooks="unmount_all"

# ---- the source: every kind of file a volume holds ----
# make_win_tree's files (shared, shifted, compressible, small, empty, a name that is no UTF-8), and more.
SRC=$WORK/src
make_win_tree "$SRC"
mkdir -p "$SRC/empty dir"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1].encode()
r = random.Random(14)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
w(b'large.bin', r.randbytes(16 << 20))
w(b'one', b'1')
w(b'hard-a', r.randbytes(200000))
with open(os.path.join(d, b'sparse.img'), 'wb') as f:        # over 4 GiB, data at 0 and past 4 GiB
    f.write(r.randbytes(100000))
    f.seek((4 << 30) + 12345); f.write(r.randbytes(70000))
    f.truncate(5 << 30)
PY
ln "$SRC/hard-a" "$SRC/dir/hard-b"
ln -s big.bin "$SRC/link"
ln -s "does not exist" "$SRC/dir/dangling"
echo "for root's eyes" >"$SRC/secret.txt"
: >"$SRC/secret-empty"
chmod 0600 "$SRC/secret.txt" "$SRC/secret-empty"
chmod 0640 "$SRC/text.txt"
chmod 0750 "$SRC/dir/sub"
chown 1234:5678 "$SRC/small.txt" "$SRC/dir/f01.bin"
setfattr -n user.comment -v "a value" "$SRC/small.txt"
setfattr -n user.binary -v 0x00ff00 "$SRC/empty"
touch -d '2001-02-03 04:05:06.123456789' "$SRC/small.txt" "$SRC/empty"
touch -h -d '2002-03-04 05:06:07.987654321' "$SRC/link"
touch -d '1999-12-31 23:59:59.000000001' "$SRC/dir/sub" "$SRC/empty dir"

# mkvol OUT OPTIONS...: a volume of SRC on this file system. windedup-mk writes hard links as separate
# files and copies no xattrs: both are made here, as a volume has them, with the directories' times kept.
mkvol() {
    local out=$1; shift
    "$WINDEDUP_MK" "$@" "$SRC" "$out" >"$WORK/mk.out" 2>>"$WORK/mk.err" || return 1
    rm "$out/dir/hard-b" && ln "$out/hard-a" "$out/dir/hard-b" && touch -r "$SRC/dir" "$out/dir" || return 1
    setfattr -n user.comment -v "a value" "$out/small.txt" && setfattr -n user.binary -v 0x00ff00 "$out/empty"
}

# ---- an ext4 copy of a volume: 0x0201, compressed, many containers, sessions and generations ----
VOL=$WORK/vol
check "windedup-mk makes a volume (0x0201, compressed, generations)" \
    mkvol "$VOL" --compress --container-size 1M --session-size 256K --generations=all
check "... whose files are stubs" bash -c "getfattr -n user.ntfs_reparse_data '$VOL/big.bin' >/dev/null 2>&1"
STORE=$VOL
start_fs "$WORK/d1.log"
# A random read fetches a whole chunk; the daemon gives the kernel the rest of it (FUSE_NOTIFY_STORE),
# so more than the one page asked for is cached. Without the push the kernel holds just that page.
dd if="$MNT/big.bin" of=/dev/null bs=4096 skip=128 count=1 status=none
check "a random read of a stub leaves the rest of its chunk in the page cache" bash -c \
    'for i in $(seq 50); do [ "$(fincore -b -n -o RES "$1")" -ge 8192 ] && exit 0; sleep 0.1; done; exit 1' _ "$MNT/big.bin"
check "the mount equals the source entry by entry (content, modes, owners, ns times, xattrs, links, holes)" \
    diff_tree "$SRC" "$MNT"
check "a stub is a regular file of its real size" [ -f "$MNT/sparse.img" -a "$(stat -c %s "$MNT/sparse.img")" = $((5 << 30)) ]
check "... without the reparse data among its xattrs" bash -c "! getfattr -d -m - '$MNT/big.bin' 2>/dev/null | grep -q reparse"
check "... which cannot be read by name either" bash -c "! getfattr -n user.ntfs_reparse_data '$MNT/big.bin' 2>/dev/null"
check "hard links share an inode number" [ "$(stat -c %i "$MNT/hard-a")" = "$(stat -c %i "$MNT/dir/hard-b")" ]
check "the chunk store is passed through too" [ -d "$MNT/System Volume Information/Dedup/ChunkStore" ]
check "SEEK_HOLE finds the hole after the sparse file's first data" "$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
h = os.lseek(fd, 0, os.SEEK_HOLE); d = os.lseek(fd, h, os.SEEK_DATA)
sys.exit(0 if 100000 <= h < 1 << 20 and (4 << 30) - (1 << 20) < d <= (4 << 30) + 12345 else 1)' "$MNT/sparse.img"
cp -a "$MNT" "$WORK/copy1" || true # the check below says what went wrong
check "cp -a out of the mount gives the source back, the sparse file sparse" diff_tree "$SRC" "$WORK/copy1"
rm -rf "$WORK/copy1"

# ---- eight readers of one stub at once ----
pids=""
for i in $(seq 0 7); do
    dd if="$MNT/large.bin" of="$WORK/part$i" bs=256K skip=$((i * 7)) count=9 status=none &
    pids="$pids $!"
done
wait $pids # (not the daemon's job)
check "eight concurrent readers at different offsets read what the source holds" bash -c '
    for i in $(seq 0 7); do
        dd if="$1/large.bin" bs=256K skip=$((i * 7)) count=9 status=none | cmp -s - "$2/part$i" || exit 1
    done' _ "$SRC" "$WORK"

# ---- read-only ----
check_fails "creating a file fails" touch "$MNT/newfile"
check "... with EROFS" bash -c "touch '$MNT/newfile' 2>&1 | grep -q 'Read-only file system'"
check_fails "writing a stub fails" bash -c "echo x >>'$MNT/small.txt'"
check_fails "writing a plain file fails" bash -c "echo x >>'$MNT/empty'"
check_fails "mkdir fails" mkdir "$MNT/d"
check_fails "rm fails" rm -f "$MNT/small.txt"
check_fails "setfattr fails" setfattr -n user.x -v y "$MNT/small.txt"
check_fails "chmod fails" chmod 777 "$MNT/small.txt"
rc=0
stop_fs || rc=$?
check "fusermount3 -u ends the daemon with status 0 (got $rc)" [ "$rc" -eq 0 ]

# ---- other users: the volume's owners and modes are enforced (default_permissions) ----
# as UID GID COMMAND...: runs COMMAND as that user and group, with no supplementary groups.
as() { local u=$1 g=$2; shift 2; setpriv --reuid="$u" --regid="$g" --clear-groups "$@" >/dev/null; }
denied() { local out; ! out=$(as "$@" 2>&1) && grep -q 'Permission denied' <<<"$out"; }
start_fs "$WORK/d2.log" -o allow_other
check "another user reads a 0644 stub" as 65534 65534 cat "$MNT/big.bin"
check "another user gets EACCES on root's 0600 stub" denied 65534 65534 cat "$MNT/secret.txt"
check "... and on root's 0600 plain file" denied 65534 65534 cat "$MNT/secret-empty"
check "... and cannot enter a 0750 directory of another owner" denied 65534 65534 ls "$MNT/dir/sub"
check "root reads them" cmp "$SRC/secret.txt" "$MNT/secret.txt"
stop_fs

# ---- 0x0102 in parts of 3 chunks ----
VOL2=$WORK/vol2
check "windedup-mk makes a volume (0x0102 in parts of 3 chunks)" \
    mkvol "$VOL2" --format 0x0102 --part-chunks 3 --container-size 1M --compress
STORE=$VOL2
start_fs "$WORK/d3.log"
check "the mount equals the source" diff_tree "$SRC" "$MNT"
stop_fs

# ---- -o chunkstore=DIR, and what is no volume ----
STORE=$WORK/bare
mkdir -p "$STORE"
cp -a "$VOL2/big.bin" "$STORE/"
start_fs "$WORK/d4.log" -o "chunkstore=$(ls -d "$VOL2/System Volume Information/Dedup/ChunkStore/"*.ddp)"
check "-o chunkstore=DIR reads stubs of a tree without System Volume Information" cmp "$SRC/big.bin" "$MNT/big.bin"
stop_fs
rc=0
"$REHYDRATEFS" "$WORK/bare" "$MNT" -f 2>"$WORK/novol.err" || rc=$?
check "a directory that is neither a store nor a volume is refused (status $rc)" [ "$rc" -ne 0 ]
check "... saying why" grep -q 'neither a rehydrate store.*nor a Windows dedup volume' "$WORK/novol.err"
check "... and nothing is mounted" bash -c "! mountpoint -q '$MNT'"

# ---- SIGTERM, and fusermount3 -u, while four readers are reading ----
STORE=$VOL
readers() {
    pids=""
    for _ in 1 2 3 4; do
        (while cat "$MNT/large.bin" "$MNT/big.bin" >/dev/null 2>&1; do :; done) &
        pids="$pids $!"
    done
}
# wait_exit: rc gets the daemon's exit status once it has exited; 124 when it is still running
# FS_TIMEOUT seconds later (it is then killed).
wait_exit() {
    rc=0
    for _ in $(seq $((FS_TIMEOUT * 20))); do kill -0 "$FS_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$FS_PID" 2>/dev/null; then
        { kill -KILL "$FS_PID"; wait "$FS_PID"; } 2>/dev/null || true
        rc=124
        return
    fi
    wait "$FS_PID" || rc=$?
}
start_fs "$WORK/d5.log" -o cache_size=1M
readers
sleep 1
kill -TERM "$FS_PID"
wait_exit
wait $pids 2>/dev/null || true
check "SIGTERM with reads in flight ends the daemon with status 0 (got $rc)" [ "$rc" -eq 0 ]
check "... and leaves no mount behind" bash -c "! mountpoint -q '$MNT' && ! grep -q ' $MNT ' /proc/mounts"
unmount_all # what a failure above left
start_fs "$WORK/d6.log" -o cache_size=1M
readers
sleep 1
fusermount3 -u -z "$MNT" # lazily: the readers keep their files open a moment longer
wait_exit
wait $pids 2>/dev/null || true
check "fusermount3 -u with reads in flight ends the daemon with status 0 (got $rc)" [ "$rc" -eq 0 ]
check "... and leaves no mount behind" bash -c "! mountpoint -q '$MNT' && ! grep -q ' $MNT ' /proc/mounts"
unmount_all

# ---- damage: a flipped byte in big.bin's first chunk, reparse data garbled and cut short ----
d=$(ls -d "$VOL/System Volume Information/Dedup/ChunkStore/"*.ddp)
victim=$(ls "$d"/Data/00000001.*.ccc | sort | tail -n 1)
printf '\x5a' | dd of="$victim" bs=1 seek=$((0x5000 + 0x58 + 100)) conv=notrunc status=none
"$PY" - "$VOL" <<'PY'
import os, sys
v = sys.argv[1].encode()
def rp(name, change):
    p = os.path.join(v, name)
    b = os.getxattr(p, 'user.ntfs_reparse_data')
    os.setxattr(p, 'user.ntfs_reparse_data', change(b))
rp(b'text.txt', lambda b: b[:40] + bytes(x ^ 0x5a for x in b[40:]))   # garbage after the tag and length
rp(b'small.txt', lambda b: b[:len(b) // 2])                            # cut short
PY
reads() { cat "$@" >/dev/null 2>&1; }
start_fs "$WORK/d7.log"
check_fails "the stub whose chunk is damaged fails to read" reads "$MNT/big.bin"
check "... with EIO" bash -c "cat '$MNT/big.bin' 2>&1 >/dev/null | grep -q 'Input/output error'"
check_fails "... so does the stub that shares the chunk" reads "$MNT/dir/big-copy.bin"
check "one line names the file, the container and the offset" \
    [ "$(grep -c "^rehydratefs: big.bin: chunk at file offset 0 in .*/Data/00000001\.[0-9a-f]*\.ccc (record at 20480)" "$WORK/d7.log")" -eq 1 ]
check_fails "garbage reparse data: the file fails to read" reads "$MNT/text.txt"
check "... with a line that says so" grep -q '^rehydratefs: text.txt: damaged dedup reparse data' "$WORK/d7.log"
check_fails "reparse data cut short: likewise" reads "$MNT/small.txt"
check "... with a line that says so" grep -q '^rehydratefs: small.txt: damaged dedup reparse data' "$WORK/d7.log"
check "every other file still reads right" bash -c '
    cd "$1" && find . -type f ! -name big.bin ! -name big-copy.bin ! -name text.txt ! -name small.txt \
        ! -name sparse.img -print0 | sort -z | xargs -0 sha256sum | (cd "$2" && sha256sum --quiet -c -)' _ "$SRC" "$MNT"
check "the mount is still up" mountpoint -q "$MNT"
stop_fs

# ---- more files than the daemon may hold open ----
# The kernel keeps every inode it has looked up; a daemon that held a descriptor for each would fail a
# tree read of a large volume with EMFILE. Under a limit of 256 descriptors, 3000 files read right.
MANY=$WORK/many
"$PY" - "$MANY/src" <<'PY'
import os, sys
for d in range(30):
    os.makedirs(os.path.join(sys.argv[1], 'd%02d' % d))
    for f in range(100):
        with open(os.path.join(sys.argv[1], 'd%02d' % d, 'f%03d' % f), 'w') as fh:
            fh.write('file %d of directory %d\n' % (f, d) * (1 + f % 7))
# a directory larger than one READDIRPLUS reply (32 KiB: about 200 entries), with a link and a subdirectory
big = os.path.join(sys.argv[1], 'big')
os.makedirs(os.path.join(big, 'sub'))
for f in range(600):
    with open(os.path.join(big, 'entry-%04d-%s' % (f, 'x' * (f % 40))), 'w') as fh:
        fh.write('big directory entry %d\n' % f * (1 + f % 5))
os.symlink('entry-0001-x', os.path.join(big, 'link'))
PY
"$WINDEDUP_MK" "$MANY/src" "$MANY/vol" >/dev/null 2>"$WORK/mk-many.err"
# Read-ahead across a directory (voldirahead.h): opening a file of a directory the kernel has listed
# fetches the stubs after it, in the directory's order, into the page cache; reading them then sends
# no READ to the daemon. With -o dir_readahead=0 the same reads do.
STORE=$MANY/vol
# dirahead_reads DIR LOG: READ requests the daemon got for reading the 20 files after DIR's first
dirahead_reads() {
    local before after names
    ls -l "$MNT/$1" >/dev/null # READDIRPLUS: the kernel knows every file of it
    names=$(ls -f "$MNT/$1" | grep -v '^\.\{1,2\}$' | head -21)
    cat "$MNT/$1/$(echo "$names" | head -1)" >/dev/null
    sleep 1 # the fetch runs on the thread pool: milliseconds for 20 small files
    before=$(grep -c 'opcode: READ ' "$2")
    (cd "$MNT/$1" && echo "$names" | tail -20 | xargs cat >/dev/null)
    after=$(grep -c 'opcode: READ ' "$2")
    echo $((after - before))
    echo "$names" | tail -20 >"$WORK/dirahead.names"
}
start_fs "$WORK/d-ahead.log" -d
n=$(dirahead_reads d07 "$WORK/d-ahead.log")
check "reading a file fetched the 20 after it in its directory: read with no READ request ($n)" [ "$n" -eq 0 ]
# Nothing is kept per open (volume.c): the first OPEN is answered ENOSYS, and the kernel sends no
# other OPEN and no RELEASE.
check "22 files read with one OPEN request and no RELEASE" \
    [ "$(grep -c 'opcode: OPEN ' "$WORK/d-ahead.log")" -eq 1 -a "$(grep -c 'opcode: RELEASE ' "$WORK/d-ahead.log")" -eq 0 ]
check "... and they read right" sh -c 'cd "$0/d07" && xargs sha256sum <"$2" | (cd "$1/d07" && sha256sum --quiet -c -)' \
    "$MANY/src" "$MNT" "$WORK/dirahead.names"
# Every listing is a READDIRPLUS whose lookups run side by side (volume.c). tar lists a directory whole
# before it looks at its entries: through a directory of 602 entries, larger than one reply, it sends
# no LOOKUP (with the kernel's default it would, for every entry after the first reply's).
stat "$MNT/big" >/dev/null # its own LOOKUP
before=$(grep -c 'opcode: LOOKUP ' "$WORK/d-ahead.log")
(cd "$MNT/big" && tar cf - . | cat >/dev/null)
check "tar through a directory of 602 entries: no LOOKUP request ($(( $(grep -c 'opcode: LOOKUP ' "$WORK/d-ahead.log") - before )))" \
    [ "$(grep -c 'opcode: LOOKUP ' "$WORK/d-ahead.log")" -eq "$before" ]
ls -ln --time-style=+%s "$MNT/big" | tail -n +2 >"$WORK/big.mnt"
ls -ln --time-style=+%s "$MANY/src/big" | tail -n +2 >"$WORK/big.src"
check "... and ls -l shows every entry with the source's type, mode, owner, size and time" \
    sh -c '[ "$(wc -l <"$0")" -eq 602 ] && cmp -s "$0" "$1"' "$WORK/big.mnt" "$WORK/big.src"
stop_fs
# Metadata read-ahead (volmetahead.h): listing a directory warms its subdirectories: the daemon reads
# the reparse data of their files before any reader looks into them. strace shows the reads; with
# -o dir_readahead=0 there are none.
REAL_FS=$REHYDRATEFS
# (LeakSanitizer cannot run under ptrace: an ASan build is told not to look for leaks here.)
for ahead in on off; do
    printf '#!/bin/sh\nASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" exec strace -f -e trace=getxattr,lgetxattr -o "%s" "%s" "$@"\n' \
        "$WORK/meta-$ahead.strace" "$REAL_FS" >"$WORK/fs-strace"
    chmod +x "$WORK/fs-strace"
    REHYDRATEFS=$WORK/fs-strace
    start_fs "$WORK/d-meta-$ahead.log" $([ $ahead = off ] && echo -o dir_readahead=0)
    ls "$MNT" >/dev/null # READDIRPLUS of the root only
    sleep 1
    stop_fs
done
REHYDRATEFS=$REAL_FS
check "listing the root read the reparse data of files in big/, which no reader opened ($(grep -c '/entry-0' "$WORK/meta-on.strace"))" \
    [ "$(grep -c '/entry-0' "$WORK/meta-on.strace")" -ge 600 ]
check "... and not with -o dir_readahead=0" [ "$(grep -c '/entry-0' "$WORK/meta-off.strace")" -eq 0 ]
start_fs "$WORK/d-noahead.log" -d -o dir_readahead=0
n=$(dirahead_reads d07 "$WORK/d-noahead.log")
check "with -o dir_readahead=0 the same files are read by READ requests ($n)" [ "$n" -ge 20 ]
stop_fs

printf '#!/bin/sh\nexec prlimit --nofile=256:256 "%s" "$@"\n' "$REHYDRATEFS" >"$WORK/fs-256"
chmod +x "$WORK/fs-256"
STORE=$MANY/vol
REAL_FS=$REHYDRATEFS
REHYDRATEFS=$WORK/fs-256
start_fs "$WORK/d-many.log"
check "3000 files read right through a daemon limited to 256 open descriptors" \
    sh -c 'cd "$0" && find d* -type f -print0 | sort -z | xargs -0 sha256sum >"$2" &&
           cd "$1" && sha256sum --quiet -c "$2" && [ "$(wc -l <"$2")" -eq 3000 ]' "$MANY/src" "$MNT" "$WORK/many.sum"
# The daemon keeps the records of the files read last (ofile.h); with the page cache dropped, the
# first files are read again from records made anew.
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true # root only
check "... and read right again once the kernel dropped their pages" sh -c 'cd "$0" && sha256sum --quiet -c "$1"' \
    "$MNT" "$WORK/many.sum"
check "... and the daemon still stops cleanly" stop_fs
REHYDRATEFS=$REAL_FS

# ---- an NTFS image through ntfs-3g ----
# The ntfs-3g dedup plugin is no Debian package; where it is installed, ntfs-3g reads the stubs itself
# and shows them as regular files. rehydratefs reads them the same way in both cases.
PLUGIN=/usr/lib/x86_64-linux-gnu/ntfs-3g/ntfs-plugin-80000013.so
if command -v mkntfs >/dev/null && command -v ntfs-3g >/dev/null; then
    # NTFS names are UTF-16: a name that is no UTF-8 cannot be written there.
    rm "$SRC/"$'\xff\xfe'-not-utf8
    IMG=$WORK/ntfs.img
    truncate -s 2G "$IMG"
    mkntfs -F -Q "$IMG" >/dev/null 2>&1
    ntfs-3g "$IMG" "$NT"
    check "windedup-mk writes a volume through ntfs-3g (system.ntfs_reparse_data)" \
        "$WINDEDUP_MK" --xattr system.ntfs_reparse_data --compress --container-size 1M --session-size 256K \
        "$SRC" "$NT" >"$WORK/mk-ntfs.out" 2>"$WORK/mk-ntfs.err"
    umount "$NT"
    ntfs-3g -o ro "$IMG" "$NT"
    [ -e "$PLUGIN" ] || check "without the dedup plugin ntfs-3g shows a stub as a symlink" [ -L "$NT/big.bin" ]
    STORE=$NT
    start_fs "$WORK/d8.log"
    # same_files A B: every regular file of SRC has the same content in A and B, and the symlink is kept
    same_files() {
        (cd "$SRC" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$WORK/want.sum"
        (cd "$1" && sha256sum --quiet -c "$WORK/want.sum") && [ "$(readlink "$1/link")" = big.bin ]
    }
    check "every file reads as in the source through rehydratefs over ntfs-3g" same_files "$MNT"
    check "a stub is a regular file of its real size" [ -f "$MNT/big.bin" -a "$(stat -c %s "$MNT/big.bin")" = $((2 << 20)) ]
    cp -a "$MNT" "$WORK/copy2" || true
    check "cp -a out of it likewise" same_files "$WORK/copy2"
    check "... the sparse file sparse" [ "$(stat -c %b "$WORK/copy2/sparse.img")" -lt 8192 ]
    stop_fs
    check "rehydrate restore from the ntfs-3g mount succeeds" \
        sh -c '"$0" restore -q "$1" "$2" 2>"$3"' "$REHYDRATE" "$NT" "$WORK/restored" "$WORK/restore-ntfs.err"
    check "... every file as in the source" same_files "$WORK/restored"
    check "... the sparse file sparse" [ "$(stat -c %b "$WORK/restored/sparse.img")" -lt 8192 ]
    # names A: every path below A and its type, but the dedup machinery
    names() { (cd "$1" && find . -path './System Volume Information' -prune -o -printf '%y %p\n' | sort); }
    names "$SRC" >"$WORK/names.src"
    check "the mount, cp -a and restore have every entry of the source, of its type, and no other" \
        sh -c 'for d in "$@"; do '"$(declare -f names)"'; names "$d" | cmp -s - "$0" || exit 1; done' \
        "$WORK/names.src" "$WORK/copy2" "$WORK/restored"
    umount "$NT"
else
    check "mkntfs and ntfs-3g are installed (contrib/deps.sh installs ntfs-3g)" false
fi

check "the daemon's stderr has no sanitizer report" bash -c "! grep -l 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' $DAEMON_LOGS"
finish

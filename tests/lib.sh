# tests/lib.sh — shared by the integration tests (sourced). Each assertion prints one TAP-style line,
# "ok N - what" or "not ok N - what"; contrib/run-tests.sh counts them. A script fails (exit 1) if any
# assertion failed.
set -eu

: "${REHYDRATE:=$(cd "$(dirname "$0")/../.." && pwd)/rehydrate}"
: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${REHYDRATEFS:=$(dirname "$REHYDRATE")/rehydratefs}"
export LC_ALL=C
# Debian's interpreter, which sees the python3-* packages that contrib/deps.sh installs.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

T_N=0
T_FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rh-it.XXXXXX")
cleanup_hooks=""
cleanup() {
    for h in $cleanup_hooks; do "$h" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP_WORK:-}" ] && trap - EXIT

ok() { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
not_ok() { T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_N - $*"; }
# check "description" command...: passes when the command succeeds.
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# check_fails "description" command...: passes when the command fails.
check_fails() {
    local what=$1; shift
    if "$@"; then not_ok "$what"; else ok "$what"; fi
}
finish() {
    echo "# $T_N assertions, $T_FAILED failed"
    [ "$T_FAILED" -eq 0 ]
}

# ---- a daemon in the foreground ----
# start_fs LOG [OPTIONS...]: runs "$REHYDRATEFS $STORE $MNT -f OPTIONS" as a background job (its pid in
# FS_PID, its stderr in LOG, which joins DAEMON_LOGS for the sanitizer check) and returns 0 once $MNT is
# mounted. Returns 1 with a "# " message and the tail of LOG when the daemon exits first, when the mount
# is not there within FS_TIMEOUT seconds (default 30; the daemon is then killed), or when something is
# already mounted at $MNT. Under set -e a bare call therefore ends the test; inside check it is an
# assertion like any other.
FS_TIMEOUT=${FS_TIMEOUT:-30}
DAEMON_LOGS=""
FS_PID=""
show_log() { echo "# ---- $1 (last 40 lines):"; tail -n 40 "$1" | sed 's/^/#   /'; }
start_fs() {
    local log=$1 rc; shift
    if mountpoint -q "$MNT"; then echo "# start_fs: $MNT is already mounted"; return 1; fi
    DAEMON_LOGS="$DAEMON_LOGS $log"
    "$REHYDRATEFS" "$STORE" "$MNT" -f "$@" 2>"$log" &
    FS_PID=$!
    for _ in $(seq $((FS_TIMEOUT * 20))); do
        mountpoint -q "$MNT" && return 0
        if ! kill -0 "$FS_PID" 2>/dev/null; then
            rc=0; wait "$FS_PID" || rc=$?
            echo "# rehydratefs${*:+ $*} exited with status $rc before $MNT was mounted"; show_log "$log"
            return 1
        fi
        sleep 0.05
    done
    echo "# rehydratefs${*:+ $*} did not mount $MNT within $FS_TIMEOUT s; killing it"; show_log "$log"
    { kill -KILL "$FS_PID"; wait "$FS_PID"; } 2>/dev/null || true
    return 1
}
# stop_fs: unmounts $MNT (fusermount3 -u) and waits for the daemon of start_fs to exit; returns its exit
# status. Returns 1 with a "# " message when the unmount fails, or when the daemon is still running
# FS_TIMEOUT seconds later (it is then killed).
stop_fs() {
    local rc=0
    fusermount3 -u "$MNT" || { echo "# fusermount3 -u $MNT failed"; return 1; }
    for _ in $(seq $((FS_TIMEOUT * 20))); do
        kill -0 "$FS_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$FS_PID" 2>/dev/null; then
        echo "# rehydratefs did not exit within $FS_TIMEOUT s of the unmount; killing it"
        { kill -KILL "$FS_PID"; wait "$FS_PID"; } 2>/dev/null || true
        return 1
    fi
    wait "$FS_PID" || rc=$?
    [ "$rc" -eq 0 ] || echo "# rehydratefs exited with status $rc"
    return "$rc"
}

# Digest of everything below a directory (names, types, contents) to detect any change to a store.
tree_digest() { (cd "$1" && find . -printf '%p %y %s %m\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1; }
# The same plus every modification time, for "a read path wrote nothing to the store".
store_state() { (cd "$1" && find . -printf '%p %y %s %m %T@\n' | sort) | sha256sum; tree_digest "$1"; }

# make_tree DIR: a tree with every case the backup must keep.
make_tree() {
    local d=$1
    mkdir -p "$d"
    "$PY" - "$d" <<'PY'
import os, sys, random
d = sys.argv[1].encode()
rnd = random.Random(42)
def rand(n): return rnd.randbytes(n)
def w(path, data):
    with open(os.path.join(d, path), 'wb') as f: f.write(data)
os.makedirs(os.path.join(d, b'dir/sub'), exist_ok=True)
w(b'empty', b'')
w(b'small.txt', b'hello, rehydrate\n')
w(b'unique.bin', rand(1 << 20))
big = rand(5 << 20)
w(b'dir/big.bin', big)
w(b'dir/sub/big-copy.bin', big)                     # deduplicated against big.bin
w(b'compressible.txt', b'the same line again and again\n' * 200000)
w(b'with space.txt', rand(3000))
w(b'new\nline', rand(100))
w(b'\xff\xfe-not-utf8', rand(200))
w(b'x' * 255, rand(50))                             # a 255-byte name
w(b'zeros.bin', bytes(1 << 20))                     # an all-zero file becomes holes
# 40 levels deep
p = d
for i in range(40):
    p = os.path.join(p, b'level%02d' % i)
os.makedirs(p)
with open(os.path.join(p, b'deep.txt'), 'wb') as f: f.write(b'deep\n')
# sparse: 5 GiB with data at 0, 1 GiB and past 4 GiB
with open(os.path.join(d, b'sparse.img'), 'wb') as f:
    f.write(rand(100000))
    f.seek(1 << 30); f.write(rand(300000))
    f.seek((4 << 30) + 12345); f.write(rand(70000))
    f.truncate(5 << 30)
PY
    ln -s small.txt "$d/link-rel"
    ln -s /etc/passwd "$d/link-abs"
    ln -s "does not exist" "$d/link-dangling"
    ln "$d/unique.bin" "$d/hardlink-1"
    ln "$d/unique.bin" "$d/dir/hardlink-2"
    mkfifo "$d/fifo"
    if [ "$(id -u)" = 0 ]; then
        mknod "$d/null-dev" c 1 3
        mknod "$d/loop-dev" b 7 200
        chown 1234:5678 "$d/small.txt"
        chown -h 4321:8765 "$d/link-rel"
    fi
    chmod 4755 "$d/with space.txt"
    mkdir "$d/sticky"; chmod 1777 "$d/sticky"
    chmod 0640 "$d/compressible.txt"
    setfattr -n user.comment -v "a value" "$d/small.txt"
    setfattr -n user.binary -v 0x00ff00 "$d/unique.bin"
    setfattr -n user.empty "$d/dir"
    touch -h -d '2001-02-03 04:05:06.123456789' "$d/small.txt" "$d/link-rel"
    touch -d '1999-12-31 23:59:59.000000001' "$d/dir/sub"
}

# make_win_tree DIR: the tree the Windows tests convert with windedup-mk: a 2 MiB random file, its copy
# and a shifted copy (shared chunks), compressible text, a small and an empty file, a name that is not
# UTF-8, and four random files of up to 300 KB.
make_win_tree() {
    local SRC=$1
    mkdir -p "$SRC/dir/sub"
    "$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1].encode()
r = random.Random(13)
def w(p, b):
    with open(os.path.join(d, p), 'wb') as f: f.write(b)
big = r.randbytes(2 << 20)
w(b'big.bin', big)
w(b'dir/big-copy.bin', big)
w(b'dir/sub/big-shifted.bin', b'shift' * 777 + big)
w(b'text.txt', b''.join(b'line %d of a text that compresses well\n' % (i % 500) for i in range(20000)))
w(b'small.txt', b'hello, windows\n')
w(b'empty', b'')
w(b'\xff\xfe-not-utf8', r.randbytes(70000))
for i in range(4):
    w(b'dir/f%02d.bin' % i, r.randbytes(r.randrange(1, 300000)))
PY
}

# flip_chunk_byte SOURCE_FILE CONTAINER_DIR [OFFSET]: flips one byte inside the stored copy of bytes
# OFFSET..OFFSET+64 (default 300000) of SOURCE_FILE (random data is stored raw, so the bytes appear
# verbatim in a data container) and prints the container's name. Fails when the bytes are not found.
flip_chunk_byte() {
    "$PY" - "$1" "$2" "${3:-300000}" <<'PY'
import os, sys
at = int(sys.argv[3])
needle = open(sys.argv[1], 'rb').read()[at:at + 64]
for n in sorted(os.listdir(sys.argv[2])):
    p = os.path.join(sys.argv[2], n)
    data = open(p, 'rb').read()
    i = data.find(needle)
    if i >= 0:
        with open(p, 'r+b') as f:
            f.seek(i + 10)
            f.write(bytes([data[i + 10] ^ 0xff]))
        print(n)
        sys.exit(0)
sys.exit('the bytes were not found in any container')
PY
}

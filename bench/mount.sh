#!/usr/bin/env bash
# bench/mount.sh — rehydratefs against restic mount, borg mount, casync mount and squashfuse.
#
# Datasets (bench/lib.sh): single, one ~1 GiB file (random, compressible and a duplicated region), and
# the ~1 GiB tree corpus of bench/backup.sh (BENCH_TREE=system takes the copy of this machine's files
# instead). Each tool gets a repository holding both. Then for each tool, three mounts, each with the
# page cache dropped just before (and a fresh daemon, so its own caches are cold too):
#   1. time to mount; single-file sequential read (dd bs=1M), checked by SHA-256 afterwards
#   2. time to mount; 4 KiB random reads of the single file with fio (psync, buffered, 20 s)
#   3. time to mount; whole-tree read (tar cf - . | cat), the tree checked against the source afterwards
# and the daemon's peak RSS (VmHWM) over the three. Prints a markdown table, the issue's targets, and
# draws doc/mount-bench.png when gnuplot is present.
#
# With BENCH_TOOLS="rehydrate windows ntfs3g" it measures issue 14's comparison instead: the same datasets
# converted by tests/tools/windedup-mk --compress into a Windows Server dedup volume, mounted by
# rehydratefs (windows) and, on an NTFS image, by ntfs-3g with the dedup plugin (ntfs3g; a development
# machine only: the plugin is not packaged), against rehydratefs over our own store.
#
# Environment: REHYDRATEFS       the daemon (default: build/rehydratefs under the repository root)
#              BENCH_TOOLS       which of rehydrate restic borg casync squashfuse windows ntfs3g (default:
#                                the first five; rehydrate is always measured)
#              WINDEDUP_MK       the converter for windows/ntfs3g (default: build/tests/tools/windedup-mk)
#              REHYDRATE         the CLI used to make the store (default: build/rehydrate)
#              BENCH_TREE        the tree dataset: corpus (default) or system
#              BENCH_SINGLE      the single-file dataset: single (default, generated) or systar (a tar of
#                                the system tree: real, compressible files)
#              BENCH_FIO_RUNTIME seconds of random reads (default 20)
#              BENCH_DATA        keep the generated datasets in this directory and reuse them next time
#              BENCH_PLOT        where to write the PNG (default doc/mount-bench.png; empty: no plot)
#              BENCH_OUT         also write the results (markdown) to this file
#              BENCH_KEEP        if set, keep the temporary directory
# Needs root (apt-get, /proc/sys/vm/drop_caches, FUSE). See bench/RESTORE_MOUNT.md.
set -eu

BENCH_NAME=mount.sh
top=$(cd "$(dirname "$0")/.." && pwd)
TREE=${BENCH_TREE:-corpus}
SINGLE=${BENCH_SINGLE:-single}
FIO_RUNTIME=${BENCH_FIO_RUNTIME:-20}
PLOT=${BENCH_PLOT-$top/doc/mount-bench.png}
TOOLS="rehydrate ${BENCH_TOOLS:-restic borg casync squashfuse}"
TOOLS=$(echo "$TOOLS" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
wanted() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
for t in $TOOLS; do
    case $t in rehydrate|restic|borg|casync|squashfuse|windows|ntfs3g) ;; *) echo "mount.sh: unknown tool $t in BENCH_TOOLS" >&2; exit 1 ;; esac
done
NTFS_PLUGIN=/usr/lib/x86_64-linux-gnu/ntfs-3g/ntfs-plugin-80000013.so
case $TREE in corpus|system) ;; *) echo "mount.sh: BENCH_TREE must be corpus or system" >&2; exit 1 ;; esac
case $SINGLE in single|systar) ;; *) echo "mount.sh: BENCH_SINGLE must be single or systar" >&2; exit 1 ;; esac
case $FIO_RUNTIME in ''|*[!0-9]*|0) echo "mount.sh: BENCH_FIO_RUNTIME must be a positive integer" >&2; exit 1 ;; esac

tmp=$(mktemp -d /tmp/rehydrate-mount.XXXXXX)
daemons=""      # PIDs of the daemons we started, killed at exit if still there
cleanup() {
    local m p
    for m in "$tmp"/mnt/*; do
        [ -d "$m" ] || continue
        if mountpoint -q "$m"; then
            fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        fi
    done
    for p in $daemons; do
        kill "$p" 2>/dev/null || true
    done
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "mount.sh: kept $tmp" >&2
    else
        sleep 0.5
        rm -rf "$tmp" 2>/dev/null || { sleep 2; rm -rf "$tmp"; }
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

# --- prerequisites ------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (installs packages, drops the page cache, mounts)"
[ -w /proc/sys/vm/drop_caches ] || die "/proc/sys/vm/drop_caches is not writable; cannot measure cold runs"
[ -c /dev/fuse ] || die "/dev/fuse is missing: no FUSE here"
! wanted restic || need restic restic
! wanted borg || need borg borgbackup
! wanted casync || need casync casync
! wanted squashfuse || need squashfuse squashfuse
! wanted squashfuse || need mksquashfs squashfs-tools
! wanted ntfs3g || need ntfs-3g ntfs-3g
! wanted ntfs3g || need mkntfs ntfs-3g
! wanted ntfs3g || [ -f "$NTFS_PLUGIN" ] || die "ntfs3g: the dedup plugin is not at $NTFS_PLUGIN (see contrib/dev/windedup-ntfs3g-check.sh)"
need fio fio
need fusermount3 fuse3
need python3 python3
need /usr/bin/time time
need sha256sum coreutils
if [ -n "$PLOT" ] && ! command -v gnuplot >/dev/null 2>&1; then
    note "gnuplot is not installed (apt-get install gnuplot-nox): no plot"
    PLOT=""
fi

mkdir "$tmp/bin"
for b in rehydrate rehydratefs; do
    var=$(echo "$b" | tr a-z A-Z)
    src=${!var:-$top/build/$b}
    [ -x "$src" ] || die "no $b binary at $src (build with contrib/build.sh, or set $var)"
    cp "$src" "$tmp/bin/$b"             # a rebuild during the run changes nothing
    "$tmp/bin/$b" --version >/dev/null 2>&1 || "$tmp/bin/$b" --help >/dev/null 2>&1 || die "$src does not run"
done
RH=$tmp/bin/rehydrate
RHFS=$tmp/bin/rehydratefs
if wanted windows || wanted ntfs3g; then
    cp "${WINDEDUP_MK:-$top/build/tests/tools/windedup-mk}" "$tmp/bin/windedup-mk" ||
        die "no windedup-mk (build, or set WINDEDUP_MK)"
fi

export RESTIC_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$tmp/borg-base
RESTIC_CACHE=$tmp/restic-cache
versions="rehydratefs $("$RH" --version | head -1 | awk '{print $2}') (${REHYDRATEFS:-$top/build/rehydratefs})"
! wanted restic || versions="$versions; $(restic version | cut -d' ' -f1-2)"
! wanted borg || versions="$versions; $(borg --version)"
! wanted casync || versions="$versions; casync $(casync --version | awk '{print $2}')"
! wanted squashfuse || versions="$versions; $(squashfuse --help 2>&1 | grep -m1 -o 'squashfuse [0-9.]*') + $(mksquashfs -version 2>&1 | head -1 | cut -d' ' -f1-3)"
! wanted ntfs3g || versions="$versions; ntfs-3g $(ntfs-3g --version 2>&1 | head -1 | awk '{print $2}') + the dedup plugin $(sha256sum "$NTFS_PLUGIN" | cut -c1-12)"
versions="$versions; $(fio --version)"

# --- datasets -----------------------------------------------------------------------------------------

start=$(date +%s)
data=${BENCH_DATA:-$tmp/data}
mkdir -p "$data"
system_desc=""
make_datasets "$data" $([ "$SINGLE" = systar ] && echo system) "$SINGLE" "$TREE"
[ -f "$data/$SINGLE/big.bin" ] || die "$data/$SINGLE/big.bin is missing"
single_bytes=$(stat -c %s "$data/$SINGLE/big.bin")
single_sha=$(sha256sum <"$data/$SINGLE/big.bin" | cut -d' ' -f1)
tree_bytes=$(file_bytes "$data/$TREE")
tree_files=$(file_count "$data/$TREE")
manifest "$data/$TREE" >"$tmp/tree.manifest" || die "cannot read $data/$TREE"
note "single: $single_bytes bytes; $TREE: $tree_files files, $tree_bytes bytes"

# --- repositories (not timed) -------------------------------------------------------------------------

run() {         # run LOG COMMAND...: run untimed, show the log and stop on failure
    local log=$1; shift
    "$@" >"$log" 2>&1 || { sed 's/^/  | /' "$log" >&2; die "failed: $*"; }
}
declare -A build_s
built() { build_s[$1]=$(( $(date +%s) - $2 )); note "$1 repository ready in ${build_s[$1]}s"; }

t=$(date +%s)
for ds in "$SINGLE" "$TREE"; do
    run "$tmp/log" "$RH" backup "$tmp/rehydrate" "$data/$ds" --name "$ds" -q
done
built rehydrate "$t"

if wanted restic; then
    t=$(date +%s)
    run "$tmp/log" restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" init
    for ds in "$SINGLE" "$TREE"; do
        (cd "$data" && run "$tmp/log" restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" backup -q \
            --compression auto --host bench --tag "$ds" "$ds")
    done
    built restic "$t"
fi

if wanted borg; then
    t=$(date +%s)
    run "$tmp/log" borg init -e none "$tmp/borg"
    for ds in "$SINGLE" "$TREE"; do
        (cd "$data" && run "$tmp/log" borg create --compression zstd,3 "$tmp/borg::$ds" "$ds")
    done
    built borg "$t"
fi

if wanted casync; then
    t=$(date +%s)
    mkdir "$tmp/casync"
    for ds in "$SINGLE" "$TREE"; do         # casync's defaults: 64 KiB average chunks, zstd
        run "$tmp/log" casync make --store="$tmp/casync/store" "$tmp/casync/$ds.caidx" "$data/$ds"
    done
    built casync "$t"
fi

if wanted squashfuse; then
    t=$(date +%s)
    for ds in "$SINGLE" "$TREE"; do
        run "$tmp/log" mksquashfs "$data/$ds" "$tmp/$ds.sqfs" -comp zstd -quiet -no-progress
    done
    built squashfuse "$t"
fi

# A Windows Server dedup volume of each dataset, as windedup-mk writes it (content-defined 32-128 KiB
# chunks, SHA-512/32, plain LZ77 where it shrinks a chunk, 64 MiB containers), every stub in reparse
# format 0x0201 (the dedup plugin does not read the property bag of Server 2016 and later): a directory on this
# file system (stubs keep their reparse buffer in user.ntfs_reparse_data) for rehydratefs, and the
# same written through ntfs-3g onto an NTFS image for ntfs-3g + the plugin.
# A volume's chunk store lives at its root: the dataset goes one level down (a hard-linked copy of it
# is the source), so that the tree read covers the dataset and not the chunk store.
stage() { [ -d "$tmp/wsrc-$1" ] || { mkdir "$tmp/wsrc-$1" && cp -al "$data/$1" "$tmp/wsrc-$1/$1"; }; }
if wanted windows; then
    t=$(date +%s)
    for ds in "$SINGLE" "$TREE"; do
        stage "$ds"
        run "$tmp/log" "$tmp/bin/windedup-mk" --compress --format 0x0201 "$tmp/wsrc-$ds" "$tmp/win-$ds"
    done
    built windows "$t"
fi
if wanted ntfs3g; then
    t=$(date +%s)
    mkdir -p "$tmp/ntfs-mnt"
    for ds in "$SINGLE" "$TREE"; do
        truncate -s $(( $(du -sb "$data/$ds" | cut -f1) * 2 + (512 << 20) )) "$tmp/$ds.ntfs"
        run "$tmp/log" mkntfs -F -Q "$tmp/$ds.ntfs"
        run "$tmp/log" ntfs-3g "$tmp/$ds.ntfs" "$tmp/ntfs-mnt"
        stage "$ds"
        run "$tmp/log" "$tmp/bin/windedup-mk" --compress --format 0x0201 --xattr system.ntfs_reparse_data "$tmp/wsrc-$ds" "$tmp/ntfs-mnt"
        umount "$tmp/ntfs-mnt"
    done
    built ntfs3g "$t"
fi
sync

# One tool = <tool>_cmd DATASET MOUNTPOINT (sets CMD, the command that mounts and serves in the
# foreground until unmounted) and <tool>_path DATASET MOUNTPOINT (where the dataset's top directory
# appears). restic, borg and rehydrate mount the whole repository; casync and squashfuse mount one index
# or image per dataset.
rehydrate_cmd()    { CMD=("$RHFS" "$tmp/rehydrate" "$2" -f); }
rehydrate_path()   { echo "$2/$1"; }
restic_cmd()       { CMD=(restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" mount "$2"); }
restic_path()      { echo "$2/tags/$1/latest/$1"; }
borg_cmd()         { CMD=(borg mount -f "$tmp/borg" "$2"); }
borg_path()        { echo "$2/$1/$1"; }
casync_cmd()       { CMD=(casync mount --store="$tmp/casync/store" "$tmp/casync/$1.caidx" "$2"); }
casync_path()      { echo "$2"; }
squashfuse_cmd()   { CMD=(squashfuse -f "$tmp/$1.sqfs" "$2"); }
squashfuse_path()  { echo "$2"; }
windows_cmd()      { CMD=("$RHFS" "$tmp/win-$1" "$2" -f); }
windows_path()     { echo "$2/$1"; }
ntfs3g_cmd()       { CMD=(ntfs-3g -o ro,no_detach "$tmp/$1.ntfs" "$2"); }
ntfs3g_path()      { echo "$2/$1"; }

# The mount timer: starts the command and polls, without starting a process per poll (a fork and exec
# costs ~10 ms on a small VM, more than the resolution we need), until MOUNTPOINT is a mount point
# (its st_dev changed) and can be listed. Prints the daemon's PID and the milliseconds since the start.
cat >"$tmp/mount_timer.py" <<'EOF'
import os, subprocess, sys, time
log, mnt, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
dev = os.stat(mnt).st_dev
with open(log, "wb") as lf:
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
    while True:
        if p.poll() is not None:
            sys.exit(f"exited with status {p.returncode} before the mount answered")
        try:
            if os.stat(mnt).st_dev != dev:
                os.listdir(mnt)
                break
        except OSError:
            pass
        if time.perf_counter_ns() - t0 > 120e9:
            p.terminate()
            sys.exit("not mounted after 120 s")
    t = time.perf_counter_ns() - t0
print(p.pid, f"{t / 1e6:.1f}")
EOF

# --- measurements -------------------------------------------------------------------------------------

mkdir "$tmp/mnt"
results=$tmp/results.tsv        # tool, metric, value
: >"$results"
failures=$tmp/failures          # tool, why
: >"$failures"
record() { printf '%s\t%s\t%s\n' "$@" >>"$results"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# mount_tool TOOL DATASET: drop caches, start the daemon, time until the mount point answers ls.
# Sets MNT, PID (the daemon), MOUNT_MS.
mount_tool() {
    local tool=$1 ds=$2 log=$tmp/log.mount.$1 out p
    MNT=$tmp/mnt/$tool
    mkdir -p "$MNT"
    "${tool}_cmd" "$ds" "$MNT"
    sync; quiesce; drop_caches          # python's own start (from disk) comes before the timer starts
    if ! out=$(python3 "$tmp/mount_timer.py" "$log" "$MNT" "${CMD[@]}" 2>&1); then
        note "$tool: $out"
        sed 's/^/  | /' "$log" >&2
        if mountpoint -q "$MNT"; then fusermount3 -u -z "$MNT" || true; fi
        return 1
    fi
    read -r PID MOUNT_MS <<<"$out"
    daemons="$daemons $PID"
    # The daemon is the process serving MNT (pgrep); the command we started should be it.
    p=$(pgrep -f -- "$MNT" || true)
    if [ -n "$p" ] && ! echo "$p" | grep -qx "$PID"; then
        p=$(echo "$p" | head -1)
        note "$tool: daemon PID $p differs from the started $PID; using $p"
        daemons="$daemons $p"
        PID=$p
    fi
    [ -r "/proc/$PID/status" ] || { note "$tool: no daemon process"; return 1; }
}

alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# unmount_tool TOOL: unmount, wait for the daemon to exit.
unmount_tool() {
    local tool=$1
    fusermount3 -u "$MNT" 2>"$tmp/log.umount" || { cat "$tmp/log.umount" >&2; fusermount3 -u -z "$MNT" || true; }
    for _ in $(seq 100); do
        alive "$PID" || break
        sleep 0.1
    done
    if alive "$PID"; then
        note "$tool: daemon $PID still running 10 s after the unmount; killing it"
        kill "$PID" 2>/dev/null || true
        sleep 1
    fi
    ! mountpoint -q "$MNT" || die "$tool: $MNT still mounted"
}

# cache_probe FILE: after reading 16 MiB through one descriptor, the fraction of those pages in the page
# cache (0 under FUSE direct_io or FOPEN_NOFLUSH-less invalidation) and, after a new open, the fraction
# still there (1 with keep_cache). Prints "in_open across_open" or "nommap nommap".
cache_probe() {
    python3 - "$1" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
N, P = 16 << 20, 4096
def resident(fd):
    a = libc.mmap(None, N, 1, 1, fd, 0)                     # PROT_READ, MAP_SHARED
    if a is None or a == ctypes.c_void_p(-1).value:
        return None
    vec = (ctypes.c_ubyte * (N // P))()
    libc.mincore(a, N, vec)
    libc.munmap(a, N)
    return sum(v & 1 for v in vec) / len(vec)
fd = os.open(sys.argv[1], os.O_RDONLY)
off = 0
while off < N:
    b = os.pread(fd, 1 << 20, off)
    if not b:
        break
    off += len(b)
a = resident(fd)
os.close(fd)
fd = os.open(sys.argv[1], os.O_RDONLY)
b = resident(fd)
os.close(fd)
print("nommap nommap" if a is None else f"{a:.2f} {b:.2f}")
EOF
}

# fail TOOL WHY: a peer that cannot work here is recorded and skipped; rehydrate may not fail.
fail() {
    [ "$1" != rehydrate ] || die "rehydratefs: $2"
    printf '%s\t%s\n' "$1" "$2" >>"$failures"
    note "$1: $2 — recorded; going on"
}
hwm_now() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }   # the daemon's peak RSS so far, KiB

bench_tool() {
    local tool=$1 root t0 ms hwm=0 h probe iops
    # 1. single-file sequential read
    if ! mount_tool "$tool" "$SINGLE"; then fail "$tool" "mount of the single-file dataset failed (log above)"; return 0; fi
    record "$tool" mount_ms "$MOUNT_MS"
    root=$("${tool}_path" "$SINGLE" "$MNT")
    [ -f "$root/big.bin" ] || { unmount_tool "$tool"; fail "$tool" "big.bin not found under $root"; return 0; }
    t0=$(date +%s%N)
    dd if="$root/big.bin" of=/dev/null bs=1M 2>"$tmp/log.dd" || { cat "$tmp/log.dd" >&2; unmount_tool "$tool"; fail "$tool" "sequential read failed"; return 0; }
    ms=$(ms_since "$t0")
    hwm=$(hwm_now)
    probe=$(cache_probe "$root/big.bin" || echo "? ?")
    if [ "$(sha256sum <"$root/big.bin" | cut -d' ' -f1)" != "$single_sha" ]; then
        unmount_tool "$tool"; die "$tool: big.bin read through the mount has the wrong SHA-256"
    fi
    unmount_tool "$tool"
    record "$tool" seq_mbs "$(awk -v b="$single_bytes" -v ms="$ms" 'BEGIN {printf "%.1f", b / 1e3 / ms}')"
    record "$tool" cache "$probe"
    note "$tool: mounted in ${MOUNT_MS} ms; sequential read ${ms} ms; page cache in open / across opens: $probe"

    # 2. 4 KiB random reads
    if ! mount_tool "$tool" "$SINGLE"; then fail "$tool" "second mount failed"; return 0; fi
    record "$tool" mount_ms "$MOUNT_MS"
    root=$("${tool}_path" "$SINGLE" "$MNT")
    ls "$root" >/dev/null
    drop_caches
    if ! fio --name=r --filename="$root/big.bin" --rw=randread --bs=4k --direct=0 --ioengine=psync \
            --runtime="$FIO_RUNTIME" --time_based --readonly --output-format=json --output="$tmp/fio.json" \
            >"$tmp/log.fio" 2>&1; then
        cat "$tmp/log.fio" >&2; unmount_tool "$tool"; fail "$tool" "fio failed"; return 0
    fi
    h=$(hwm_now); [ "$h" -le "$hwm" ] || hwm=$h
    unmount_tool "$tool"
    iops=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.0f %.0f" % (j["iops"], j["clat_ns"]["mean"] / 1000))' "$tmp/fio.json") ||
        die "$tool: cannot read fio's output"
    record "$tool" iops "${iops% *}"
    record "$tool" clat_us "${iops#* }"
    note "$tool: mounted in ${MOUNT_MS} ms; random 4 KiB reads: ${iops% *} IOPS (mean latency ${iops#* } us)"

    # 3. whole-tree read
    if ! mount_tool "$tool" "$TREE"; then fail "$tool" "mount of the tree dataset failed"; return 0; fi
    record "$tool" mount_ms "$MOUNT_MS"
    root=$("${tool}_path" "$TREE" "$MNT")
    [ -d "$root" ] || { unmount_tool "$tool"; fail "$tool" "$TREE not found at $root"; return 0; }
    t0=$(date +%s%N)
    # GNU tar skips reading files when it writes to /dev/null itself, hence the pipe
    (set -o pipefail; cd "$root" && tar cf - . 2>"$tmp/log.tar" | cat >/dev/null) ||
        { head -5 "$tmp/log.tar" | sed 's/^/  | /' >&2; unmount_tool "$tool"; fail "$tool" "tree read failed: $(head -1 "$tmp/log.tar")"; return 0; }
    ms=$(ms_since "$t0")
    h=$(hwm_now); [ "$h" -le "$hwm" ] || hwm=$h
    # ntfs-3g keeps no Linux modes or owners (every entry shows 777): only contents are compared there
    local keep=.
    [ "$tool" != ntfs3g ] || keep='^[0-9a-f]{64}  '
    if ! manifest "$root" | grep -E "$keep" | cmp -s - <(grep -E "$keep" "$tmp/tree.manifest"); then
        diff <(manifest "$root" | grep -E "$keep") <(grep -E "$keep" "$tmp/tree.manifest") | head -20 | sed 's/^/  | /' >&2
        unmount_tool "$tool"; fail "$tool" "the tree read through the mount differs from the source (above)"; return 0
    fi
    unmount_tool "$tool"
    record "$tool" tree_mbs "$(awk -v b="$tree_bytes" -v ms="$ms" 'BEGIN {printf "%.1f", b / 1e3 / ms}')"
    record "$tool" hwm_kib "$hwm"
    note "$tool: mounted in ${MOUNT_MS} ms; tree read ${ms} ms; peak RSS $((hwm / 1024)) MiB"
}

for tool in $TOOLS; do
    bench_tool "$tool"
done

# --- report -------------------------------------------------------------------------------------------

report=$tmp/report.md
{
    echo "## rehydratefs mount benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
    echo
    echo "$versions."
    echo
    if [ "$SINGLE" = systar ]; then
        echo "- single: one file of $single_bytes bytes (bench/lib.sh make_systar: a tar of the system tree, real files, zstd ~2.5:1)"
    else
        echo "- single: one file of $single_bytes bytes (bench/lib.sh make_bigfile: 576 MiB random, 192 MiB compressible, 256 MiB duplicated region)"
    fi
    echo "- $TREE: $tree_files files, $(awk -v b="$tree_bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB$([ "$TREE" != system ] || echo ": ${system_desc:-as generated earlier into $data}")"
    echo
    python3 - "$results" "$failures" "$TOOLS" "$tmp/plot.dat" <<'EOF'
import sys, statistics
from collections import defaultdict
res, fails, tools, plot = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
v = defaultdict(list)
for l in open(res):
    tool, metric, val = l.rstrip("\n").split("\t")
    v[tool, metric].append(val)
why = {}
for l in open(fails):
    tool, w = l.rstrip("\n").split("\t", 1)
    why.setdefault(tool, w)
def num(tool, m, f=min):
    x = v.get((tool, m))
    return f(float(a) for a in x) if x else None
names = {"rehydrate": "rehydratefs", "restic": "restic mount", "borg": "borg mount -f",
         "casync": "casync mount", "squashfuse": "squashfuse -f",
         "windows": "rehydratefs, Windows volume", "ntfs3g": "ntfs-3g + dedup plugin"}
fmt = lambda x, p=0: "—" if x is None else f"{x:.{p}f}"
print("| tool | mount ms (best / all) | tree read MB/s | single-file seq read MB/s | 4 KiB random IOPS (mean latency us) | peak RSS MiB | page cache: in open / kept across opens |")
print("|---|--:|--:|--:|--:|--:|--:|")
M = {}
for t in tools:
    mounts = v.get((t, "mount_ms"), [])
    M[t] = dict(mount=num(t, "mount_ms"), tree=num(t, "tree_mbs"), seq=num(t, "seq_mbs"), iops=num(t, "iops"),
                rss=(num(t, "hwm_kib") / 1024 if num(t, "hwm_kib") else None))
    cache = v.get((t, "cache"), ["? ?"])[0].split()
    lat = num(t, "clat_us")
    iops = fmt(M[t]["iops"]) + (f" ({lat:.0f})" if lat is not None else "")
    note = f" — {why[t]}" if t in why else ""
    print(f"| {names[t]}{note} | {fmt(M[t]['mount'])} / {', '.join(mounts) or '—'} | {fmt(M[t]['tree'])} | "
          f"{fmt(M[t]['seq'])} | {iops} | {fmt(M[t]['rss'])} | {cache[0]} / {cache[1]} |")
print()
r = M["rehydrate"]
peers = [t for t in tools if t != "rehydrate"]
def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b
for t in ("restic", "borg", "casync", "squashfuse", "windows", "ntfs3g"):
    M.setdefault(t, dict(mount=None, tree=None, seq=None, iops=None, rss=None))
best_tree = max((t for t in peers if t in ("restic", "borg", "casync", "squashfuse") and M[t]["tree"] is not None),
                key=lambda t: M[t]["tree"], default=None)
if "windows" in tools:  # issue 14's targets
    w = M["windows"]
    print("| target (issue 14) | rehydratefs on the Windows volume | compared with | met? |")
    print("|---|--:|---|---|")
    for name, k, other, goal in (("sequential read", "seq", "rehydrate", 0.8), ("tree read", "tree", "rehydrate", 0.8),
                                 ("random 4 KiB reads", "iops", "rehydrate", 0.8), ("sequential read", "seq", "ntfs3g", 5),
                                 ("tree read", "tree", "ntfs3g", 5), ("random 4 KiB reads", "iops", "ntfs3g", 5)):
        x = ratio(w[k], M[other][k])
        print(f"| {name} ≥ {goal}× {names[other]} | {fmt(x, 2)}x | {names[other]} | {'—' if x is None else ('met' if x >= goal else 'MISSED')} |")
    print()
rows = [
    ("sequential read ≥ 3× borg's", ratio(r["seq"], M["borg"]["seq"]), 3.0, "x", "borg"),
    ("tree read ≥ 2× the best peer's", ratio(r["tree"], M[best_tree]["tree"] if best_tree else None), 2.0, "x", names.get(best_tree, "—")),
    ("random reads ≥ 1.5× squashfuse's", ratio(r["iops"], M["squashfuse"]["iops"]), 1.5, "x", "squashfuse"),
]
if "borg" in tools:
    print("| target | rehydratefs | compared with | met? |")
    print("|---|--:|---|---|")
else:
    print("| target | value | | met? |")
    print("|---|--:|---|---|")
for name, x, goal, unit, other in (rows if "borg" in tools else []):
    print(f"| {name} | {fmt(x, 2)}{unit} | {other} | {'—' if x is None else ('met' if x >= goal else 'MISSED')} |")
print(f"| mount < 50 ms | {fmt(r['mount'])} ms | | {'—' if r['mount'] is None else ('met' if r['mount'] < 50 else 'MISSED')} |")
if "windows" in tools:
    print(f"| Windows volume: mount < 50 ms | {fmt(M['windows']['mount'])} ms | | {'—' if M['windows']['mount'] is None else ('met' if M['windows']['mount'] < 50 else 'MISSED')} |")
print(f"| peak RSS < 64 MiB | {fmt(r['rss'])} MiB | | {'—' if r['rss'] is None else ('met' if r['rss'] < 64 else 'MISSED')} |")
print()
print("Mount time: from the start of the command until the mount point is mounted (its st_dev changed) and "
      "can be listed, polled from one process (bench/mount.sh's mount timer); page cache dropped first, so "
      "the daemon's binary and libraries come from disk; three mounts per tool, the best shown. MB/s = 10^6 bytes per second; the tree read is "
      "`tar cf - . | cat >/dev/null` at the dataset's top directory, counting file content once per inode. "
      "Random reads: `fio --rw=randread --bs=4k --direct=0 --ioengine=psync --time_based`, page cache dropped "
      "first; with --direct=0 a read that misses the page cache makes the kernel fetch a readahead window "
      "through the daemon, and pages read earlier in the run are hits, except for a file system that opens "
      "files with FUSE direct_io (page cache column 0). Peak RSS: VmHWM of the daemon right after each measured read (before the checks), highest of the three mounts.")
with open(plot, "w") as f:
    for t in tools:
        m = M[t]
        f.write(f'"{names[t]}" ' + " ".join("NaN" if m[k] is None else f"{m[k]:.1f}"
                                            for k in ("mount", "tree", "seq", "iops", "rss")) + "\n")
EOF
    if [ -s "$failures" ]; then
        echo
        echo "Peers that could not be measured here:"
        sed 's/^\(.*\)\t\(.*\)$/- \1: \2/' "$failures"
    fi
    echo
    echo "Repository build times (s, not part of the comparison): $(for t in $TOOLS; do printf '%s %s; ' "$t" "${build_s[$t]}"; done)"
    echo "Total run time: $(( $(date +%s) - start )) s; measurements that started on a busy machine: $busy_starts."
} >"$report"

publish_report "$report"

if [ -n "$PLOT" ]; then
    gnuplot >"$tmp/log.gnuplot" 2>&1 <<EOF || { cat "$tmp/log.gnuplot" >&2; die "gnuplot failed"; }
set terminal pngcairo size 1500,900 font ",10" noenhanced
set output "$PLOT"
set multiplot layout 2,3 title "$(echo $TOOLS | sed 's/ /, /g'): cold page cache, $TREE tree + one 1 GiB file, $(nproc) CPUs"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set xtics rotate by 25 right nomirror
unset key
lbl(c) = sprintf("%.0f", column(c))
set title "time to mount, ms (target < 50; lower is better)"
set arrow 1 from graph 0, first 50 to graph 1, first 50 nohead dt 2 lc rgb "red"
plot "$tmp/plot.dat" using 2:xtic(1) lc rgb "#4477aa", "" using 0:2:(lbl(2)) with labels offset 0,0.7
unset arrow 1
set title "whole-tree cold read, MB/s"
plot "$tmp/plot.dat" using 3:xtic(1) lc rgb "#228833", "" using 0:3:(lbl(3)) with labels offset 0,0.7
set title "single-file cold sequential read, MB/s"
plot "$tmp/plot.dat" using 4:xtic(1) lc rgb "#ccbb44", "" using 0:4:(lbl(4)) with labels offset 0,0.7
set title "4 KiB random reads, fio psync, IOPS"
plot "$tmp/plot.dat" using 5:xtic(1) lc rgb "#ee6677", "" using 0:5:(lbl(5)) with labels offset 0,0.7
set title "daemon peak RSS, MiB (target < 64; lower is better)"
set arrow 2 from graph 0, first 64 to graph 1, first 64 nohead dt 2 lc rgb "red"
plot "$tmp/plot.dat" using 6:xtic(1) lc rgb "#aa3377", "" using 0:6:(lbl(6)) with labels offset 0,0.7
unset multiplot
EOF
    note "plot written to $PLOT"
fi

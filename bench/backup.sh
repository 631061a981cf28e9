#!/usr/bin/env bash
# bench/backup.sh — times rehydrate's backup against restic and borg on two ~1 GiB datasets.
#
# For each dataset (a generated corpus and a copy of this machine's files) and each tool: a first
# backup into a fresh repository with the page cache dropped (cold), a second backup of the unchanged
# data, then the first backup again into another fresh repository with the data in the page cache
# (warm: isolates CPU cost). Prints a markdown table and writes it to $BENCH_OUT when set.
#
# Environment: REHYDRATE   the binary to test (default: build/rehydrate under the repository root)
#              BENCH_OUT   also write the results (markdown) to this file
#              BENCH_REPS  repetitions of every measurement (default 3; the table shows the fastest)
#              BENCH_KEEP  if set, keep the temporary directory (datasets, logs) instead of removing it
# Needs root (apt-get, /proc/sys/vm/drop_caches). See bench/README.md.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
GiB=1073741824
REPS=${BENCH_REPS:-3}
case $REPS in ''|*[!0-9]*|0) echo "backup.sh: BENCH_REPS must be a positive integer" >&2; exit 1 ;; esac

die() { echo "backup.sh: error: $*" >&2; exit 1; }
note() { echo "backup.sh: $*" >&2; }

tmp=$(mktemp -d /tmp/rehydrate-bench.XXXXXX)
cleanup() {
    if [ -n "${BENCH_KEEP:-}" ]; then
        note "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# --- prerequisites ------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (installs packages and drops the page cache)"
[ -w /proc/sys/vm/drop_caches ] || die "/proc/sys/vm/drop_caches is not writable; cannot measure cold runs"

updated=""
need() {        # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    note "installing $2"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >"$tmp/apt.log" 2>&1; then
        if [ -z "$updated" ]; then
            apt-get update -qq >>"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; die "apt-get update failed"; }
            updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >>"$tmp/apt.log" 2>&1 ||
            { cat "$tmp/apt.log" >&2; die "cannot install $2"; }
    fi
    command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 not found"
}
need restic restic
need borg borgbackup
need python3 python3
need /usr/bin/time time

src_bin=${REHYDRATE:-$top/build/rehydrate}
[ -x "$src_bin" ] || die "no rehydrate binary at $src_bin (build with contrib/build.sh, or set REHYDRATE)"
# Work on a private copy so that a rebuild of the tree during the run cannot change what we measure.
mkdir "$tmp/bin"
cp "$src_bin" "$tmp/bin/rehydrate"
RH=$tmp/bin/rehydrate
"$RH" --version >/dev/null 2>&1 || die "$src_bin does not run"

export RESTIC_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$tmp/borg-base       # borg's cache, keys and security dirs stay in $tmp
RESTIC_CACHE=$tmp/restic-cache

versions="rehydrate: $("$RH" --version | head -1) ($src_bin); $(restic version | cut -d' ' -f1-2); $(borg --version); zstd level 3 for rehydrate and borg, restic --compression auto"

# --- helpers ------------------------------------------------------------------------------------------

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

warm() {        # warm DIR: read every file so that it is in the page cache
    find "$1" -type f -print0 | xargs -0 cat >/dev/null
}

# timed LOG CMD...: runs CMD with its output in LOG; sets T_WALL T_USER T_SYS (seconds). Fails loudly.
# Exit status 1 is accepted from borg only (its "warning" status), with the log shown.
timed() {
    local log=$1; shift
    local rc=0
    /usr/bin/time -f '%e %U %S' -o "$tmp/time.out" "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        if [ "$rc" = 1 ] && [ "$(basename "$1")" = borg ]; then
            note "borg warned (exit 1) in: $*"; sed 's/^/  | /' "$log" >&2
        else
            sed 's/^/  | /' "$log" >&2
            die "exit status $rc from: $*"
        fi
    fi
    read -r T_WALL T_USER T_SYS <"$tmp/time.out" || die "no timing for: $*"
}

# One tool = three functions: <tool>_init REPO, <tool>_backup REPO SRC NAME, <tool>_count REPO (snapshots)
rehydrate_init()   { :; }                                  # backup creates the store
rehydrate_backup() { timed "$tmp/log.$3" "$RH" backup "$1" "$2" --name "$3" -q; }
rehydrate_count()  { "$RH" snapshots "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

restic_init()      { restic -r "$1" --cache-dir "$RESTIC_CACHE" init -q >"$tmp/log.init" 2>&1 ||
                         { cat "$tmp/log.init" >&2; die "restic init failed"; }; }
restic_backup()    { timed "$tmp/log.$3" restic -r "$1" --cache-dir "$RESTIC_CACHE" backup -q \
                         --compression auto --host bench --tag "$3" "$2"; }
restic_count()     { restic -r "$1" --cache-dir "$RESTIC_CACHE" snapshots --json -q |
                         python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

borg_init()        { borg init -e none "$1" >"$tmp/log.init" 2>&1 ||
                         { cat "$tmp/log.init" >&2; die "borg init failed"; }; }
borg_backup()      { (cd "$(dirname "$2")" &&
                         timed "$tmp/log.$3" borg create --compression zstd,3 "$1::$3" "$(basename "$2")"); }
borg_count()       { borg list --short "$1" | wc -l; }

# The subshell in borg_backup loses T_*; re-read them from the time file.
reread() { read -r T_WALL T_USER T_SYS <"$tmp/time.out"; }

# quiesce: other work on the machine inflates wall times. Wait (up to 10 s) until the CPUs have been
# at least 75 % idle for one second; count the runs that had to start on a busy machine anyway.
busy_starts=0
quiesce() {
    local i a b idle total
    for i in $(seq 10); do
        a=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
        read -r idle total <<<"$(echo "$a $b" | awk '{print $3 - $1, $4 - $2}')"
        [ $((idle * 4)) -lt $((total * 3)) ] || return 0
    done
    busy_starts=$((busy_starts + 1))
    note "machine still busy after 10 s (other jobs?); measuring anyway"
}

results=$tmp/results.tsv       # one line per repetition
: >"$results"

bench_tool() {  # bench_tool DATASET TOOL SRC BYTES REP: one repetition of the three measurements
    local ds=$1 tool=$2 src=$3 bytes=$4 rep=$5 repo=$tmp/repo
    local cold cold_u cold_s second warm_w warm_u warm_s repo_b repo1_b n

    # (a) first backup, cold page cache, then (b) a second backup of the unchanged data
    rm -rf "$repo"; "${tool}_init" "$repo"
    sync; quiesce; drop_caches
    "${tool}_backup" "$repo" "$src" first; reread
    cold=$T_WALL cold_u=$T_USER cold_s=$T_SYS
    sync
    repo1_b=$(du -sb "$repo" | cut -f1)
    "${tool}_backup" "$repo" "$src" second; reread
    second=$T_WALL
    sync
    repo_b=$(du -sb "$repo" | cut -f1)
    n=$("${tool}_count" "$repo") || die "$tool: cannot list snapshots"
    [ "$n" = 2 ] || die "$tool: expected 2 snapshots in $repo, found $n"
    [ "$repo1_b" -gt $((bytes / 50)) ] || die "$tool: repository implausibly small ($repo1_b bytes)"

    # (c) first backup again into a fresh repository, data already in the page cache
    rm -rf "$repo"; "${tool}_init" "$repo"
    sync; warm "$src"; quiesce
    "${tool}_backup" "$repo" "$src" first; reread
    warm_w=$T_WALL warm_u=$T_USER warm_s=$T_SYS
    n=$("${tool}_count" "$repo") || die "$tool: cannot list snapshots"
    [ "$n" = 1 ] || die "$tool: expected 1 snapshot in $repo, found $n"
    rm -rf "$repo"

    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$tool" "$bytes" \
        "$cold" "$cold_u" "$cold_s" "$warm_w" "$warm_u" "$warm_s" "$second" "$repo1_b" "$repo_b" >>"$results"
    note "$ds/$tool #$rep: first cold ${cold}s, warm ${warm_w}s (user ${warm_u}s sys ${warm_s}s), second ${second}s, repo $repo_b bytes"
}

# Bytes of file content, each inode once (hard links share one copy), and the number of paths.
file_bytes() { find "$1" -type f -printf '%i %s\n' | sort -u -k1,1n | awk '{s += $2} END {printf "%d\n", s}'; }
file_count() { find "$1" -type f | wc -l; }
hardlinked() { find "$1" -type f -links +1 | wc -l; }

# --- dataset 1: generated corpus ----------------------------------------------------------------------

make_corpus() {
    python3 - "$1" <<'EOF'
# Deterministic (fixed seeds; Python's random is stable across 3.x for these calls) ~1 GiB tree.
import math, os, random, sys

root = sys.argv[1]
KiB, MiB = 1 << 10, 1 << 20
R = random.Random(20240601)
MTIME = 1700000000

# Text comes from pools of lines (prose and log) picked at random: lines are ~60 bytes, far below any
# tool's chunk size, so picking them yields no chunk-level duplication, while zstd finds the word-level
# redundancy of text (about 3:1).
letters = "etaoinshrdlcumwfgypbvkjxqz"
vocab = ["".join(R.choices(letters, weights=range(26, 0, -1), k=R.randint(2, 10))) for _ in range(4096)]
cum, acc = [], 0.0
for i in range(len(vocab)):         # Zipf-distributed word frequencies
    acc += 1.0 / (i + 1)
    cum.append(acc)
def line(lo, hi):
    return " ".join(R.choices(vocab, cum_weights=cum, k=R.randint(lo, hi)))
prose = [(line(4, 16) + "\n").encode() for _ in range(65536)]
levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
logmsg = [f"{R.choice(levels)} [{R.choice(vocab)}.{R.choice(vocab)}] {line(3, 10)}\n".encode()
          for _ in range(32768)]

def text(rng, n):
    out = b"".join(rng.choices(prose, k=n // 50 + 1))
    return out[:n]

def log(rng, n):
    parts, t, size = [], rng.randrange(10**9), 0
    while size < n:
        t += rng.randrange(1, 4000)
        p = b"2024-%02d-%02dT%02d:%02d:%02d.%03dZ " % (1 + t // 2592000000 % 12, 1 + t // 86400000 % 28,
             t // 3600000 % 24, t // 60000 % 60, t // 1000 % 60, t % 1000) + rng.choice(logmsg)
        parts.append(p); size += len(p)
    return b"".join(parts)[:n]

NIBBLES = bytes((b % 16) * 17 for b in range(256))  # maps every byte onto a 16-symbol alphabet
def binary(rng, n):                                  # semi-compressible: 4 bits of entropy a byte, ~2:1
    return rng.randbytes(n).translate(NIBBLES)

def loguniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))

stats = {}
def put(path, data, kind):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)
    os.utime(full, (MTIME, MTIME))
    n, b = stats.get(kind, (0, 0))
    stats[kind] = (n + 1, b + len(data))
    return path

small, medium = [], []
# 1. 16,000 small text files, 256 B - 32 KiB (log-uniform), 70 % prose, 30 % logs, 400 directories
for i in range(16000):
    rng = random.Random(1_000_000 + i)
    n = loguniform(rng, 256, 32 * KiB)
    kind = "small-prose" if rng.random() < 0.7 else "small-log"
    data = text(rng, n) if kind == "small-prose" else log(rng, n)
    small.append(put(f"docs/d{i % 20:02d}/s{i // 20 % 20:02d}/f{i:05d}.txt", data, kind))
# 2. 1,500 medium files, 32 KiB - 1 MiB (log-uniform): 35 % prose, 25 % logs, 40 % semi-compressible binary
for i in range(1500):
    rng = random.Random(2_000_000 + i)
    n = loguniform(rng, 32 * KiB, 1 * MiB)
    u = rng.random()
    if u < 0.35:   kind, data, ext = "medium-prose", text(rng, n), "txt"
    elif u < 0.60: kind, data, ext = "medium-log", log(rng, n), "log"
    else:          kind, data, ext = "medium-binary", binary(rng, n), "bin"
    medium.append(put(f"data/d{i % 30:02d}/m{i:04d}.{ext}", data, kind))
# 3. 8 large random (incompressible) files of 32 MiB
large = []
for i in range(8):
    rng = random.Random(3_000_000 + i)
    large.append(put(f"blobs/large{i}.img", rng.randbytes(32 * MiB), "large-random"))
# 4. 500 exact duplicates (300 small, 200 medium files) under other names
rng = random.Random(4_000_000)
for j, p in enumerate(rng.sample(small, 300) + rng.sample(medium, 200)):
    with open(os.path.join(root, p), "rb") as f:
        put(f"copies/c{j % 10}/{j:03d}-{os.path.basename(p)}", f.read(), "duplicate-file")
# 5. 4 files with duplicated regions: 32 MiB of a large file, cut in three pieces shifted by small
#    insertions (so duplicates sit at unaligned offsets), plus 8 MiB new random data and 4 MiB zeros
for i in range(4):
    rng = random.Random(5_000_000 + i)
    with open(os.path.join(root, large[i]), "rb") as f:
        base = f.read()
    a, b = rng.randrange(4 * MiB, 12 * MiB), rng.randrange(16 * MiB, 28 * MiB)
    data = (base[:a] + rng.randbytes(rng.randrange(1, 4096)) + base[a:b] + rng.randbytes(8 * MiB)
            + bytes(4 * MiB) + rng.randbytes(rng.randrange(1, 4096)) + base[b:])
    put(f"blobs/variant{i}.img", data, "dup-region-file")

with open(os.path.join(os.path.dirname(root), "corpus.manifest"), "w") as f:
    for kind, (n, b) in stats.items():
        f.write(f"| {kind} | {n} | {b / MiB:.1f} |\n")
EOF
}

# --- dataset 2: a copy of this machine's files --------------------------------------------------------

# Whole /usr/include, /usr/lib/gcc and /usr/share/doc, then whole top-level entries of
# /usr/lib/x86_64-linux-gnu in C-locale name order until the total reaches 1 GiB.
make_system() {
    local dst=$1 total=0 sz name last="" n=0
    mkdir -p "$dst/usr/lib/x86_64-linux-gnu" "$dst/usr/share"
    for d in /usr/include /usr/lib/gcc /usr/share/doc; do
        [ -d "$d" ] || die "$d is missing"
        cp -a "$d" "$dst$(dirname "$d")/"
    done
    total=$(du -scb /usr/include /usr/lib/gcc /usr/share/doc | tail -1 | cut -f1)
    while IFS=$'\t' read -r sz name; do
        [ "$total" -lt "$GiB" ] || break
        cp -a "$name" "$dst/usr/lib/x86_64-linux-gnu/"
        total=$((total + sz)) last=$(basename "$name") n=$((n + 1))
    done < <(cd /usr/lib/x86_64-linux-gnu && LC_ALL=C ls -A | LC_ALL=C sed 's|^|/usr/lib/x86_64-linux-gnu/|' |
             tr '\n' '\0' | xargs -0 du -sb --)
    system_desc="/usr/include, /usr/lib/gcc, /usr/share/doc (whole) + the first $n entries of /usr/lib/x86_64-linux-gnu in C-locale order (through \`$last\`)"
}

# --- run ----------------------------------------------------------------------------------------------

start=$(date +%s)
note "generating corpus"
make_corpus "$tmp/corpus"
note "copying system files"
make_system "$tmp/system"

declare -A ds_bytes ds_files ds_links
for ds in corpus system; do
    ds_bytes[$ds]=$(file_bytes "$tmp/$ds")
    ds_files[$ds]=$(file_count "$tmp/$ds")
    ds_links[$ds]=$(hardlinked "$tmp/$ds")
    note "$ds: ${ds_files[$ds]} files (${ds_links[$ds]} hard-linked), ${ds_bytes[$ds]} bytes"
done
note "datasets ready after $(( $(date +%s) - start ))s"

# Repetitions go round the tools, so that a burst of other work on the machine does not fall on one tool.
for ds in corpus system; do
    for rep in $(seq "$REPS"); do
        for tool in rehydrate restic borg; do
            bench_tool "$ds" "$tool" "$tmp/$ds" "${ds_bytes[$ds]}" "$rep"
        done
    done
done

# --- report -------------------------------------------------------------------------------------------

report=$tmp/report.md
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
{
    echo "## rehydrate backup benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
    echo
    echo "$versions. Best of $REPS runs."
    echo
    echo "- corpus: ${ds_files[corpus]} files, $(mib "${ds_bytes[corpus]}") MiB (generated; see bench/README.md)"
    echo "- system: ${ds_files[system]} files (${ds_links[system]} of them hard links), $(mib "${ds_bytes[system]}") MiB counting each inode once: $system_desc"
    echo
    python3 - "$results" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)                  # (dataset, tool) -> repetitions
for l in open(sys.argv[1]):
    ds, tool, b, cold, cu, cs, warm, wu, ws, second, r1, r2 = l.rstrip("\n").split("\t")
    runs[ds, tool].append(dict(b=int(b), cold=float(cold), cu=float(cu), cs=float(cs), warm=float(warm),
                               wu=float(wu), ws=float(ws), second=float(second), r1=int(r1), r2=int(r2)))
MB, MiB = 1e6, 1 << 20
print("| dataset | tool | first (cold) s | MB/s | first (warm) s | MB/s | warm CPU s (user+sys) | second s | repo MiB (1st / 2nd) | repo / data |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
R = {}
for (ds, tool), rs in runs.items():
    c = min(rs, key=lambda r: r["cold"])
    w = min(rs, key=lambda r: r["warm"])
    second = min(r["second"] for r in rs)
    b, r1, r2 = rs[0]["b"], rs[0]["r1"], rs[0]["r2"]
    R[ds, tool] = (c["cold"], w["warm"], r2)
    print(f"| {ds} | {tool} | {c['cold']:.2f} | {b / MB / c['cold']:.0f} | {w['warm']:.2f} | {b / MB / w['warm']:.0f} "
          f"| {w['wu'] + w['ws']:.1f} ({w['wu']:.1f}+{w['ws']:.1f}) | {second:.2f} | {r1 / MiB:.0f} / {r2 / MiB:.0f} "
          f"| {100 * r2 / b:.0f} % |")
print()
print("| dataset | rehydrate speed vs faster of restic/borg, cold | warm | rehydrate repo / restic repo |")
print("|---|--:|--:|--:|")
for ds in dict.fromkeys(k[0] for k in runs):
    rc, rw, rs = R[ds, "rehydrate"]
    best_c = min(R[ds, "restic"][0], R[ds, "borg"][0])
    best_w = min(R[ds, "restic"][1], R[ds, "borg"][1])
    print(f"| {ds} | {best_c / rc:.2f}x | {best_w / rw:.2f}x | {rs / R[ds, 'restic'][2]:.2f} |")
print()
print("Speed ratio > 1 means rehydrate is faster. Times: wall clock of the backup command (`/usr/bin/time`), "
      "the fastest of the runs; MB/s = 10^6 bytes of file content (each inode once) per second; "
      "repository sizes by `du -sb` after the first and after the second backup; warm CPU = user+sys "
      "seconds of the fastest warm run (2 CPUs: up to 2 s of CPU per wall second).")
print()
print("<details><summary>every run (s): cold / warm / second</summary>")
print()
for (ds, tool), rs in runs.items():
    print(f"- {ds} {tool}: " + ", ".join(f"{r['cold']:.2f} / {r['warm']:.2f} / {r['second']:.2f}" for r in rs))
print()
print("</details>")
EOF
    if [ -f "$tmp/corpus.manifest" ]; then
        echo
        echo "| corpus part | files | MiB |"
        echo "|---|--:|--:|"
        cat "$tmp/corpus.manifest"
    fi
    echo
    echo "Total run time: $(( $(date +%s) - start )) s; measurements that started on a busy machine: $busy_starts."
} >"$report"

cat "$report"
if [ -n "${BENCH_OUT:-}" ]; then
    cp "$report" "$BENCH_OUT" || die "cannot write $BENCH_OUT"
    note "results written to $BENCH_OUT"
fi

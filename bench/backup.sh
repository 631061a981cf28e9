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
#              BENCH_DATASETS  which datasets (bench/lib.sh): any of corpus system single systar (default
#                          "corpus system"; systar is a tar of the system tree: one large file of real,
#                          compressible data)
#              BENCH_DATA  keep the datasets in this directory and reuse them next time
#              BENCH_KEEP  if set, keep the temporary directory (datasets, logs) instead of removing it
# Needs root (apt-get, /proc/sys/vm/drop_caches). See bench/README.md.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
REPS=${BENCH_REPS:-3}
case $REPS in ''|*[!0-9]*|0) echo "backup.sh: BENCH_REPS must be a positive integer" >&2; exit 1 ;; esac

BENCH_NAME=backup.sh
tmp=$(mktemp -d /tmp/rehydrate-bench.XXXXXX)
cleanup() {
    if [ -n "${BENCH_KEEP:-}" ]; then
        note "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# die, note, need, drop_caches, quiesce, file_bytes/file_count/hardlinked and the dataset generators
# make_corpus and make_system, shared with bench/restore.sh and bench/mount.sh.
# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

# --- prerequisites ------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (installs packages and drops the page cache)"
[ -w /proc/sys/vm/drop_caches ] || die "/proc/sys/vm/drop_caches is not writable; cannot measure cold runs"

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

# --- run ----------------------------------------------------------------------------------------------

start=$(date +%s)
DATASETS=${BENCH_DATASETS:-corpus system}
for ds in $DATASETS; do
    case $ds in corpus|system|single|systar) ;; *) die "unknown dataset $ds in BENCH_DATASETS" ;; esac
done
data=${BENCH_DATA:-$tmp/data}
mkdir -p "$data"
system_desc=""
case " $DATASETS " in *" systar "*) make_datasets "$data" system ;; esac
# shellcheck disable=SC2086
make_datasets "$data" $DATASETS
[ -n "$system_desc" ] || system_desc="as generated earlier into $data"

declare -A ds_bytes ds_files ds_links
for ds in $DATASETS; do
    ds_bytes[$ds]=$(file_bytes "$data/$ds")
    ds_files[$ds]=$(file_count "$data/$ds")
    ds_links[$ds]=$(hardlinked "$data/$ds")
    note "$ds: ${ds_files[$ds]} files (${ds_links[$ds]} hard-linked), ${ds_bytes[$ds]} bytes"
done
note "datasets ready after $(( $(date +%s) - start ))s"

# Repetitions go round the tools, so that a burst of other work on the machine does not fall on one tool.
for ds in $DATASETS; do
    for rep in $(seq "$REPS"); do
        for tool in rehydrate restic borg; do
            bench_tool "$ds" "$tool" "$data/$ds" "${ds_bytes[$ds]}" "$rep"
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
    for ds in $DATASETS; do
        case $ds in
            corpus) echo "- corpus: ${ds_files[corpus]} files, $(mib "${ds_bytes[corpus]}") MiB (generated; see bench/README.md)" ;;
            system) echo "- system: ${ds_files[system]} files (${ds_links[system]} of them hard links), $(mib "${ds_bytes[system]}") MiB counting each inode once: $system_desc" ;;
            single) echo "- single: one generated file of $(mib "${ds_bytes[single]}") MiB (bench/lib.sh make_bigfile: mostly random)" ;;
            systar) echo "- systar: one file of $(mib "${ds_bytes[systar]}") MiB, a tar of the system tree (real, compressible files)" ;;
        esac
    done
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
    if [ -f "$data/corpus.manifest" ] && [ -n "${ds_bytes[corpus]:-}" ]; then
        echo
        echo "| corpus part | files | MiB |"
        echo "|---|--:|--:|"
        cat "$data/corpus.manifest"
    fi
    echo
    echo "Total run time: $(( $(date +%s) - start )) s; measurements that started on a busy machine: $busy_starts."
} >"$report"

publish_report "$report"

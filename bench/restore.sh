#!/usr/bin/env bash
# bench/restore.sh — full-restore time of rehydrate against restic, borg and cp -a, cold page cache.
#
# Datasets (bench/lib.sh): corpus, the generated ~1 GiB tree of 18,012 files that bench/backup.sh uses,
# and single, one ~1 GiB file (random, compressible and a duplicated region). Each is backed up once
# into a rehydrate store, a restic repository and a borg repository; then, BENCH_REPS times and going
# round the tools, each is restored into a fresh empty directory with the page cache dropped just
# before, and `cp -a` copies the uncompressed source the same way. Every restore is checked against
# the source (names, types, modes, sizes, mtimes, SHA-256 of every file) before it counts.
#
# Environment: REHYDRATE       the binary (default: build/rehydrate under the repository root)
#              BENCH_REPS      runs of every measurement (default 3; the table shows the fastest)
#              BENCH_DATASETS  datasets to use (default "corpus single"; "system" and "systar", a tar of
#                              the system tree as one file of real data, are also known)
#              BENCH_DATA      keep the generated datasets in this directory and reuse them next time
#              BENCH_OUT       also write the results (markdown) to this file
#              BENCH_KEEP      if set, keep the temporary directory
# Needs root (apt-get, /proc/sys/vm/drop_caches). See bench/RESTORE_MOUNT.md.
set -eu

BENCH_NAME=restore.sh
top=$(cd "$(dirname "$0")/.." && pwd)
REPS=${BENCH_REPS:-3}
DATASETS=${BENCH_DATASETS:-corpus single}
case $REPS in ''|*[!0-9]*|0) echo "restore.sh: BENCH_REPS must be a positive integer" >&2; exit 1 ;; esac

tmp=$(mktemp -d /tmp/rehydrate-restore.XXXXXX)
cleanup() {
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "restore.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

# --- prerequisites ------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (installs packages and drops the page cache)"
[ -w /proc/sys/vm/drop_caches ] || die "/proc/sys/vm/drop_caches is not writable; cannot measure cold runs"
for ds in $DATASETS; do
    case $ds in corpus|single|system|systar) ;; *) die "unknown dataset '$ds' in BENCH_DATASETS" ;; esac
done
need restic restic
need borg borgbackup
need python3 python3
need /usr/bin/time time
need sha256sum coreutils

src_bin=${REHYDRATE:-$top/build/rehydrate}
[ -x "$src_bin" ] || die "no rehydrate binary at $src_bin (build with contrib/build.sh, or set REHYDRATE)"
mkdir "$tmp/bin"
cp "$src_bin" "$tmp/bin/rehydrate"          # a rebuild during the run changes nothing
RH=$tmp/bin/rehydrate
"$RH" --version >/dev/null 2>&1 || die "$src_bin does not run"

export RESTIC_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$tmp/borg-base
RESTIC_CACHE=$tmp/restic-cache
versions="rehydrate: $("$RH" --version | head -1) ($src_bin); $(restic version | cut -d' ' -f1-2); $(borg --version); $(cp --version | head -1)"

# --- datasets -----------------------------------------------------------------------------------------

start=$(date +%s)
data=${BENCH_DATA:-$tmp/data}
mkdir -p "$data"
system_desc="(as generated earlier into $data)"
case " $DATASETS " in *" systar "*) make_datasets "$data" system ;; esac
make_datasets "$data" $DATASETS
declare -A ds_bytes ds_files manifest_of
for ds in $DATASETS; do
    ds_bytes[$ds]=$(file_bytes "$data/$ds")
    ds_files[$ds]=$(file_count "$data/$ds")
    manifest "$data/$ds" >"$tmp/$ds.manifest" || die "cannot read $data/$ds"
    manifest_of[$ds]=$tmp/$ds.manifest
    note "$ds: ${ds_files[$ds]} files, ${ds_bytes[$ds]} bytes"
done

# --- backups (not timed) ------------------------------------------------------------------------------

run() {         # run LOG COMMAND...: run untimed, show the log and stop on failure
    local log=$1; shift
    "$@" >"$log" 2>&1 || { sed 's/^/  | /' "$log" >&2; die "failed: $*"; }
}
note "backing up into rehydrate, restic and borg"
restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" init -q >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; die "restic init failed"; }
run "$tmp/log" borg init -e none "$tmp/borg"
for ds in $DATASETS; do
    run "$tmp/log" "$RH" backup "$tmp/rehydrate" "$data/$ds" --name "$ds" -q
    # relative paths: restic restores DS under the target as TARGET/DS, borg extracts DS into the cwd
    (cd "$data" && run "$tmp/log" restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" backup -q \
        --compression auto --host bench --tag "$ds" "$ds")
    (cd "$data" && run "$tmp/log" borg create --compression zstd,3 "$tmp/borg::$ds" "$ds")
done
sync
note "backups ready after $(( $(date +%s) - start ))s"

# --- restores -----------------------------------------------------------------------------------------

# One tool = <tool>_restore DATASET TARGET (run in TARGET's parent, timed by the caller) and
# <tool>_root DATASET TARGET (where the restored copy of the dataset's top directory is).
rehydrate_restore() { "$RH" restore "$tmp/rehydrate" "$1" "$2" -q; }
rehydrate_root()    { echo "$2"; }
restic_restore()    { restic -r "$tmp/restic" --cache-dir "$RESTIC_CACHE" restore latest --tag "$1" --target "$2" -q; }
restic_root()       { echo "$2/$1"; }
borg_restore()      { (cd "$2" && borg extract "$tmp/borg::$1"); }
borg_root()         { echo "$2/$1"; }
cp_restore()        { cp -a "$data/$1" "$2/"; }
cp_root()           { echo "$2/$1"; }

export -f rehydrate_restore restic_restore borg_restore cp_restore
export RH tmp data RESTIC_CACHE

results=$tmp/results.tsv
: >"$results"

bench_restore() {   # bench_restore DATASET TOOL REP
    local ds=$1 tool=$2 rep=$3 target=$tmp/target rc=0 wall user sys rss t0 t1 sync_s root
    rm -rf "$target"; mkdir "$target"
    sync; quiesce; drop_caches
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time.out" bash -c "${tool}_restore \"\$1\" \"\$2\"" _ "$ds" "$target" \
        >"$tmp/log.restore" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        sed 's/^/  | /' "$tmp/log.restore" >&2
        die "$tool restore of $ds failed with exit status $rc"
    fi
    read -r wall user sys rss <"$tmp/time.out" || die "no timing for $tool"
    t0=$(date +%s%N); sync; t1=$(date +%s%N)
    sync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
    root=$("${tool}_root" "$ds" "$target")
    [ -d "$root" ] || die "$tool: restored $ds not found at $root"
    if ! manifest "$root" | cmp -s - "${manifest_of[$ds]}"; then
        diff <(manifest "$root") "${manifest_of[$ds]}" | head -20 | sed 's/^/  | /' >&2
        die "$tool restored $ds wrongly (restored copy vs source above)"
    fi
    rm -rf "$target"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$tool" "${ds_bytes[$ds]}" "$wall" "$user" "$sys" "$rss" \
        "$sync_s" "$rep" >>"$results"
    note "$ds/$tool #$rep: ${wall}s (user ${user}s sys ${sys}s, max RSS $((rss / 1024)) MiB), then sync ${sync_s}s; verified"
}

for ds in $DATASETS; do
    for rep in $(seq "$REPS"); do
        for tool in rehydrate restic borg cp; do
            bench_restore "$ds" "$tool" "$rep"
        done
    done
done

# --- report -------------------------------------------------------------------------------------------

report=$tmp/report.md
{
    echo "## rehydrate restore benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
    echo
    echo "$versions. Page cache dropped before every run; best of $REPS runs."
    echo
    for ds in $DATASETS; do
        echo "- $ds: ${ds_files[$ds]} files, $(awk -v b="${ds_bytes[$ds]}" 'BEGIN {printf "%.1f", b / 1048576}') MiB$([ "$ds" != system ] || echo ": $system_desc")"
    done
    echo
    python3 - "$results" <<'EOF'
import sys
from collections import defaultdict
runs = defaultdict(list)
for l in open(sys.argv[1]):
    ds, tool, b, wall, user, sys_, rss, sync, rep = l.rstrip("\n").split("\t")
    runs[ds, tool].append(dict(b=int(b), wall=float(wall), user=float(user), sys=float(sys_),
                               rss=int(rss), sync=float(sync)))
names = {"rehydrate": "rehydrate restore", "restic": "restic restore", "borg": "borg extract", "cp": "cp -a (source)"}
print("| dataset | tool | restore s | MB/s | CPU s (user+sys) | max RSS MiB | then sync s |")
print("|---|---|--:|--:|--:|--:|--:|")
best = {}
for (ds, tool), rs in runs.items():
    r = min(rs, key=lambda r: r["wall"])
    best[ds, tool] = r["wall"]
    print(f"| {ds} | {names[tool]} | {r['wall']:.2f} | {r['b'] / 1e6 / r['wall']:.0f} | "
          f"{r['user'] + r['sys']:.2f} ({r['user']:.2f}+{r['sys']:.2f}) | {r['rss'] / 1024:.0f} | {r['sync']:.2f} |")
print()
print("| dataset | rehydrate vs cp -a (target >= 1.00x) | vs faster peer (target >= 1.50x) |")
print("|---|--:|--:|")
for ds in dict.fromkeys(k[0] for k in runs):
    rh = best[ds, "rehydrate"]
    peer = min(("restic", "borg"), key=lambda t: best[ds, t])
    a, p = best[ds, "cp"] / rh, best[ds, peer] / rh
    print(f"| {ds} | {a:.2f}x {'met' if a >= 1.0 else 'MISSED'} | {p:.2f}x vs {peer} {'met' if p >= 1.5 else 'MISSED'} |")
print()
print("Ratio = other tool's time / rehydrate's time (> 1: rehydrate is faster). Times: wall clock of the restore "
      "command alone (`/usr/bin/time`), fastest run; the `sync` that follows (writing the restored data back "
      "to disk) is shown apart. MB/s = 10^6 bytes of file content per second.")
print()
print("<details><summary>every run (s)</summary>")
print()
for (ds, tool), rs in runs.items():
    print(f"- {ds} {names[tool]}: " + ", ".join(f"{r['wall']:.2f}" for r in rs))
print()
print("</details>")
EOF
    echo
    echo "Total run time: $(( $(date +%s) - start )) s; measurements that started on a busy machine: $busy_starts."
} >"$report"

publish_report "$report"

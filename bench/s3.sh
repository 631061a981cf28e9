#!/usr/bin/env bash
# bench/s3.sh — rehydrate against restic on the same S3-compatible server, with round-trip latency.
#
# One s3rver (contrib/s3) on 127.0.0.1 behind bench/latency.c, a relay that adds BENCH_RTT_MS (default 10) of
# round trip to every connection, as a server in a nearby region would. For each dataset — the system
# tree (~1 GiB of this machine's files) and systar (the same files as one tar) — and each tool, one run
# of each: backup into a fresh store (page cache dropped first), full restore (cold), mount time (from
# starting the daemon to the snapshot's root listed) and a cold read of the whole tree through the mount
# (tar --sort=name -cf - . | sha256sum). Restores are checked against the source (bench/lib.sh's
# manifest), mount reads by that hash against the source's tar (the table says "exact" or not). restic keeps its local
# cache (~/.cache/restic, here in the scratch directory), filled by its backup, as its users have it;
# rehydrate has no cache for reads. Prints a markdown table with the ratios the issue asks for.
#
# Environment: REHYDRATE, REHYDRATEFS  the binaries (default build/rehydrate, build/rehydratefs)
#              BENCH_RTT_MS   round trip added, in ms (default 10)
#              BENCH_DATASETS any of system systar (default both)
#              BENCH_DATA     keep the datasets in this directory and reuse them (bench/lib.sh)
#              BENCH_OUT      also write the results (markdown) to this file
#              BENCH_KEEP     keep the scratch directory
# Needs root (apt-get, drop_caches, FUSE). See bench/README.md.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
RTT=${BENCH_RTT_MS:-10}
DATASETS=${BENCH_DATASETS:-system systar}
BENCH_NAME=s3.sh
tmp=$(mktemp -d /tmp/rehydrate-s3bench.XXXXXX)
pids=""
cleanup() {
    local m
    for m in "$tmp"/mnt/*; do
        [ -d "$m" ] && mountpoint -q "$m" && { fusermount3 -u -z "$m" 2>/dev/null || true; }
    done
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    if [ -n "${BENCH_KEEP:-}" ]; then note "kept $tmp"; else sleep 0.5; rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (installs packages, drops the page cache, mounts)"
need restic restic
need python3 python3
need fusermount3 fuse3
need /usr/bin/time time
need cc gcc
need openssl openssl
S3RVER=$top/contrib/s3/node_modules/.bin/s3rver
[ -x "$S3RVER" ] || die "$S3RVER is missing: run contrib/deps.sh"
mkdir "$tmp/bin" "$tmp/mnt"
cp "${REHYDRATE:-$top/build/rehydrate}" "$tmp/bin/rehydrate" || die "no rehydrate binary (set REHYDRATE)"
cp "${REHYDRATEFS:-$top/build/rehydratefs}" "$tmp/bin/rehydratefs" || die "no rehydratefs binary (set REHYDRATEFS)"
RH=$tmp/bin/rehydrate
RHFS=$tmp/bin/rehydratefs
cc -O2 -pthread -o "$tmp/bin/latency" "$top/bench/latency.c" || die "cannot build bench/latency.c"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
LPORT=$(free_port)
# https: restic's S3 library signs plain-http uploads in aws-chunked form, which s3rver stores as sent.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null || die "openssl cannot make a certificate"
"$S3RVER" -d "$tmp/s3" -a 127.0.0.1 -p "$PORT" --key "$tmp/tls.key" --cert "$tmp/tls.crt" \
    --service-endpoint localhost --configure-bucket bench --silent >"$tmp/s3rver.log" 2>&1 &
pids="$pids $!"
"$tmp/bin/latency" "$LPORT" "$PORT" "$RTT" 2>"$tmp/latency.log" &
pids="$pids $!"
for _ in $(seq 100); do curl -s --cacert "$tmp/tls.crt" -o /dev/null "https://127.0.0.1:$LPORT/" && break; sleep 0.1; done
rtt=$(curl -s --cacert "$tmp/tls.crt" -o /dev/null -w '%{time_starttransfer}' "https://127.0.0.1:$LPORT/bench/")
note "s3rver on $PORT, behind $RTT ms of round trip on $LPORT (one request: ${rtt} s)"
ENDPOINT=https://127.0.0.1:$LPORT
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$tmp/restic-cache XDG_CACHE_HOME=$tmp/cache
export AWS_CA_BUNDLE=$tmp/tls.crt
restic() { command restic --cacert "$tmp/tls.crt" "$@"; }

data=${BENCH_DATA:-$tmp/data}
mkdir -p "$data"
make_datasets "$data" $(echo system $DATASETS | tr ' ' '\n' | awk '!seen[$0]++')

# timed NAME CMD...: runs CMD, records its wall time in $tmp/t.NAME (seconds), stops the run on failure.
timed() {
    local name=$1
    shift
    /usr/bin/time -f %e -o "$tmp/t.$name" "$@" >"$tmp/log.$name" 2>&1 || { cat "$tmp/log.$name" >&2; die "$name failed"; }
}
t() { cat "$tmp/t.$1"; }
# wait_listing DIR: seconds until DIR lists (the mount answers), polled every 10 ms; since $1 started.
mount_wait() {
    local dir=$1 t0=$2 i
    for i in $(seq 3000); do
        [ -n "$(ls -A "$dir" 2>/dev/null)" ] && { echo "$(date +%s.%N) $t0" | awk '{printf "%.2f\n", $1 - $2}'; return 0; }
        sleep 0.01
    done
    die "$dir did not appear"
}
same_tree() { [ "$(manifest "$1")" = "$(manifest "$2")" ] || die "$3: the tree read differs from the source"; }
# The timed read through a mount is a tar of the tree in name order, hashed: the same hash as the
# source's means the same names, types, modes, owners, sizes, mtimes, link targets and contents, with no
# second read (a slow mount read twice would double the run). bash -c "$TAR_HASH" tar_hash DIR OUT
TAR_HASH='cd "$1" && tar --sort=name -cf - . | sha256sum | cut -d" " -f1 >"$2"'
exact() { [ "$(cat "$tmp/hash.$1")" = "$src_hash" ] && echo exact || echo "DIFFERS from the source"; }

rows=""
for ds in $DATASETS; do
    src=$data/$ds
    bytes=$(file_bytes "$src")
    bash -c "$TAR_HASH" tar_hash "$src" "$tmp/hash.src-$ds"
    src_hash=$(cat "$tmp/hash.src-$ds")
    # ---- rehydrate ----
    url="s3:$ENDPOINT/bench/rh-$ds"
    drop_caches
    timed "rh-backup-$ds" "$RH" backup "$url" "$src" --name one -q
    drop_caches
    timed "rh-restore-$ds" "$RH" restore "$url" one "$tmp/rr-$ds" -q
    same_tree "$src" "$tmp/rr-$ds" "rehydrate restore $ds"
    rm -rf "$tmp/rr-$ds"
    mkdir -p "$tmp/mnt/rh-$ds"
    drop_caches
    t0=$(date +%s.%N)
    "$RHFS" "$url" "$tmp/mnt/rh-$ds" -f 2>"$tmp/rhfs-$ds.log" &
    pids="$pids $!"
    mount_wait "$tmp/mnt/rh-$ds/one" "$t0" >"$tmp/t.rh-mount-$ds"
    timed "rh-read-$ds" bash -c "$TAR_HASH" tar_hash "$tmp/mnt/rh-$ds/one" "$tmp/hash.rh-$ds"
    fusermount3 -u "$tmp/mnt/rh-$ds"
    # ---- restic ----
    repo="s3:$ENDPOINT/bench/restic-$ds"
    restic -r "$repo" init >"$tmp/log.restic-init-$ds" 2>&1 || { cat "$tmp/log.restic-init-$ds" >&2; die "restic init failed"; }
    drop_caches
    timed "restic-backup-$ds" sh -c "cd '$src' && restic --cacert '$tmp/tls.crt' -r '$repo' backup -q ."
    drop_caches
    timed "restic-restore-$ds" restic --cacert "$tmp/tls.crt" -r "$repo" restore latest --target "$tmp/rr-$ds"
    same_tree "$src" "$tmp/rr-$ds" "restic restore $ds"
    rm -rf "$tmp/rr-$ds"
    mkdir -p "$tmp/mnt/restic-$ds"
    drop_caches
    t0=$(date +%s.%N)
    restic -r "$repo" mount "$tmp/mnt/restic-$ds" >"$tmp/restic-mount-$ds.log" 2>&1 &
    pids="$pids $!"
    mount_wait "$tmp/mnt/restic-$ds/snapshots/latest" "$t0" >"$tmp/t.restic-mount-$ds"
    timed "restic-read-$ds" bash -c "$TAR_HASH" tar_hash "$tmp/mnt/restic-$ds/snapshots/latest" "$tmp/hash.restic-$ds"
    fusermount3 -u "$tmp/mnt/restic-$ds"
    mbs() { awk -v b="$bytes" -v s="$1" 'BEGIN {printf "%.0f", b / s / 1e6}'; }
    x() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", b / a}'; }
    rows="$rows
| $ds | backup | $(t rh-backup-$ds) s ($(mbs "$(t rh-backup-$ds)") MB/s) | $(t restic-backup-$ds) s ($(mbs "$(t restic-backup-$ds)") MB/s) | $(x "$(t rh-backup-$ds)" "$(t restic-backup-$ds)") | 2x |
| $ds | full restore, cold | $(t rh-restore-$ds) s ($(mbs "$(t rh-restore-$ds)") MB/s) | $(t restic-restore-$ds) s ($(mbs "$(t restic-restore-$ds)") MB/s) | $(x "$(t rh-restore-$ds)" "$(t restic-restore-$ds)") | 3x |
| $ds | mount time | $(t rh-mount-$ds) s | $(t restic-mount-$ds) s | $(x "$(t rh-mount-$ds)" "$(t restic-mount-$ds)") | under 1 s |
| $ds | tree read through the mount, cold | $(t rh-read-$ds) s ($(mbs "$(t rh-read-$ds)") MB/s, $(exact rh-$ds)) | $(t restic-read-$ds) s ($(mbs "$(t restic-read-$ds)") MB/s, $(exact restic-$ds)) | $(x "$(t rh-read-$ds)" "$(t restic-read-$ds)") | 3x |"
done

desc=${system_desc:-"this machine's files (bench/lib.sh, make_system)"}
s3rver_version=$(cd "$top/contrib/s3" && node -p 'require("./node_modules/s3rver/package.json").version')
cat >"$tmp/report.md" <<EOF
### rehydrate and restic on one S3 server with $RTT ms of round trip ($(date -u +%Y-%m-%dT%H:%MZ))

s3rver $s3rver_version on 127.0.0.1 behind bench/latency.c
over https (one request's first byte: ${rtt} s); $(restic version | cut -d' ' -f1-2); rehydrate $("$RH" --version | head -1 | awk '{print $2}');
one run each; MB/s is 10^6 bytes of file content per second. system: $desc.

| dataset | what | rehydrate | restic | restic / rehydrate | target |
|---|---|---|---|---|---|$rows
EOF
publish_report "$tmp/report.md"

#!/usr/bin/env bash
# Every size and count a user gives is range-checked: a clear message naming the option and its range,
# exit status 2, and nothing mounted or written. Values that wrapped or aborted the daemon before
# (-1, 2^64 bytes, 2^32 + 1) are among the cases.
. "$(dirname "$0")/../lib.sh"

[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || { echo "# no /dev/fuse or fusermount3"; exit 77; }
rh() { "$REHYDRATE" "$@"; }
MNT=$WORK/mnt
mkdir -p "$MNT" "$WORK/src"
unmount_all() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
cleanup_hooks="unmount_all"
echo data >"$WORK/src/f"
STORE=$WORK/store
rh backup "$STORE" "$WORK/src" --name one -q

# refused OPTION=VALUE WORDS: rehydratefs exits 2, says WORDS naming the option, and mounts nothing.
refused() {
    local opt=$1 words=$2 rc=0
    "$REHYDRATEFS" "$STORE" "$MNT" -o "$opt" 2>"$WORK/err" || rc=$?  # daemonizes if it mounts
    if mountpoint -q "$MNT"; then fusermount3 -u "$MNT"; echo "# it mounted"; return 1; fi
    [ "$rc" -eq 2 ] && grep -q -- "-o $opt: $words" "$WORK/err" || { echo "# exit $rc: $(cat "$WORK/err")"; return 1; }
}
for v in -1 17179869184G 18446744073709551616 0 512K 64Q "" 1M2; do
    check "cache_size=$v is refused with exit 2 and the range" refused "cache_size=$v" '\(out of range\|not a size\); expected a size from 1M'
done
check "cache_size larger than the machine's memory is refused" refused "cache_size=$(( $(getconf _PHYS_PAGES) * $(getconf PAGESIZE) / 1048576 + 1 ))M" 'out of range'
for v in -1 4294967297 1025 x; do
    check "readahead=$v is refused" refused "readahead=$v" '\(out of range\|not a whole number\); expected a number of chunks from 0 to 1024'
done
for v in -3 4097 1.5; do
    check "dir_readahead=$v is refused" refused "dir_readahead=$v" '\(out of range\|not a whole number\); expected a number of files from 0 to 4096'
done
for v in -1 2K 2G 16E; do
    check "kernel_readahead=$v is refused" refused "kernel_readahead=$v" '\(out of range\|not a size\); expected 0 (the kernel'"'"'s own) or a size from 4K to 1G'
done

# In range, every bound works and is what the mount gets.
"$REHYDRATEFS" "$STORE" "$MNT" -o cache_size=1M,readahead=0,dir_readahead=4096,kernel_readahead=4K
bdi=/sys/class/bdi/$(stat -c %Hd:%Ld "$MNT")/read_ahead_kb
check "the bounds themselves are accepted and the mount reads" [ "$(cat "$MNT/one/f")" = data ]
check "kernel_readahead=4K reaches the mount's read_ahead_kb as 4" bash -c \
    'for i in $(seq 50); do [ "$(cat "$1")" = 4 ] && exit 0; sleep 0.1; done; exit 1' _ "$bdi"
fusermount3 -u "$MNT"
"$REHYDRATEFS" "$STORE" "$MNT" -o cache_size=64MiB,readahead=1024,kernel_readahead=1G
check "64MiB, readahead=1024 and kernel_readahead=1G are accepted" [ "$(cat "$MNT/one/f")" = data ]
fusermount3 -u "$MNT"

# The CLI's numbers likewise: a level that wrapped to 3 through an int cast was accepted.
for v in 4294967299 -1 20 ""; do
    check_fails "backup --compression '$v' is refused" rh backup "$STORE" "$WORK/src" --compression "$v" -q
done
check "... with exit 2" bash -c '"$1" backup "$2" "$3" --compression 4294967299 -q 2>/dev/null; [ $? -eq 2 ]' _ \
    "$REHYDRATE" "$STORE" "$WORK/src"
check "... and no snapshot was written" [ "$(ls "$STORE/snapshots" | wc -l)" -eq 1 ]
check_fails "init --format 4294967298 is refused" rh init "$WORK/s2" --format 4294967298

finish

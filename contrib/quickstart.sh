#!/usr/bin/env bash
# contrib/quickstart.sh — on a fresh Debian machine: installs what rehydrate needs, builds it, backs a
# sample tree (/usr/share/doc) up into a store twice, lists and verifies it, mounts it, browses it,
# copies a file out with cp, unmounts, and restores a subtree with the CLI.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/contrib/deps.sh"
bash "$top/contrib/build.sh" "$top/build"
rh=$top/build/rehydrate
SAMPLE=${SAMPLE:-/usr/share/doc}
WORK=$(mktemp -d /tmp/rehydrate-quickstart.XXXXXX)
STORE=$WORK/store
MNT=$WORK/mnt
mkdir -p "$MNT"
trap 'mountpoint -q "$MNT" && fusermount3 -u "$MNT"; true' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$rh" backup "$STORE" "$SAMPLE" --name first
step "$rh" backup "$STORE" "$SAMPLE" --name second
step "$rh" snapshots "$STORE"
step "$rh" ls -l "$STORE" latest:bash
step "$rh" verify "$STORE"
step "$rh" mount "$STORE" "$MNT"
step ls "$MNT" "$MNT/latest/bash"
file=$(cd "$MNT/latest" && find . -type f -size +4k | head -n 1)
step cp -a "$MNT/latest/$file" "$WORK/copied"
step cmp "$SAMPLE/$file" "$WORK/copied"
step fusermount3 -u "$MNT"
step "$rh" restore "$STORE" latest "$WORK/restored" bash
step diff -r "$SAMPLE/bash" "$WORK/restored/bash"
printf '\nDone: the store is %s (%s for %s of %s); %s was copied out of the mount and matches.\n' \
    "$STORE" "$(du -sh "$STORE" | cut -f1)" "$(du -sh "$SAMPLE" 2>/dev/null | cut -f1)" "$SAMPLE" "$file"

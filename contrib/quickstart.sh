#!/usr/bin/env bash
# contrib/quickstart.sh — on a fresh Debian machine: installs what rehydrate needs, builds it, backs a
# sample tree (/usr/share/doc) up into a store twice, lists and verifies it, and says what it did.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/contrib/deps.sh"
bash "$top/contrib/build.sh" "$top/build"
rh=$top/build/rehydrate
SAMPLE=${SAMPLE:-/usr/share/doc}
STORE=${STORE:-$(mktemp -d /tmp/rehydrate-quickstart.XXXXXX)/store}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$rh" backup "$STORE" "$SAMPLE" --name first
step "$rh" backup "$STORE" "$SAMPLE" --name second
step "$rh" snapshots "$STORE"
step "$rh" ls -l "$STORE" latest
step "$rh" verify "$STORE"
printf '\nThe store is %s (%s). The second backup reused every unchanged file without reading it.\n' \
    "$STORE" "$(du -sh "$STORE" | cut -f1)"

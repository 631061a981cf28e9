#!/usr/bin/env bash
# Integration test of what crashed writers leave behind: temp containers, catalogs and identity files
# that a killed backup (or store creation) left in a store are removed by the next backup and by
# reindex, but only under the store lock, and never a file that a live process may still own or a
# snapshot whose name merely looks like a temp name.
. "$(dirname "$0")/../lib.sh"

rh() { "$REHYDRATE" "$@"; }
SRC=$WORK/src
mkdir -p "$SRC"
"$PY" - "$SRC" <<'PY'
import os, random, sys
r = random.Random(3)
for i in range(6):
    with open(os.path.join(sys.argv[1], f'f{i}.bin'), 'wb') as f:
        f.write(r.randbytes(500000))
PY
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name one -q
rh backup "$STORE" "$SRC" --name a.snap.tmp.1.2 -q   # a snapshot whose name looks like a temp name

DEAD=$(sh -c 'echo $$')   # a process that has exited
STALE="snapshots/x.snap.tmp.$DEAD.1 snapshots/x.snap.plain.tmp.$DEAD.2 containers/data/00000063.ctr.tmp.$DEAD.3
containers/stream/00000063.ctr.tmp.$DEAD.4 rehydrate.store.tmp.$DEAD.5"
plant() { for f in $STALE; do echo junk >"$STORE/$f"; done; echo junk >"$STORE/rehydrate.store.tmp.$$.6"; }
all_there() { for f in $STALE; do [ -e "$STORE/$f" ] || return 1; done; }
none_there() { for f in $STALE; do [ ! -e "$STORE/$f" ] || return 1; done; }

# ---- backup ----
plant
(exec 9>>"$STORE/lock"; flock -x 9; exec sleep 30) &   # the lock's holder is the sleep itself
HOLDER=$!
for _ in $(seq 100); do flock -n "$STORE/lock" true || break; sleep 0.05; done
check_fails "a backup while another process holds the lock is refused" rh backup "$STORE" "$SRC" --name two -q
check "... and removes none of the temp files (their writer may be alive)" all_there
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true
check "the next backup succeeds" rh backup "$STORE" "$SRC" --name two -q
check "... and removes every stale temp file (containers, catalogs, identity of a dead creator)" none_there
check "... but not a temp identity file whose creator is alive" [ -e "$STORE/rehydrate.store.tmp.$$.6" ]
check "... nor a snapshot whose name looks like a temp name" [ -e "$STORE/snapshots/a.snap.tmp.1.2.snap" ]
check "verify passes afterwards" bash -c "'$REHYDRATE' verify '$STORE' >/dev/null"

# ---- reindex ----
plant
check "reindex succeeds" bash -c "'$REHYDRATE' reindex '$STORE' >/dev/null"
check "... and removes every stale temp file" none_there
check "... but not a temp identity file whose creator is alive" [ -e "$STORE/rehydrate.store.tmp.$$.6" ]
rm -f "$STORE/rehydrate.store.tmp.$$.6"

# ---- a backup killed with SIGKILL ----
for f in $STALE; do rm -f "$STORE/$f"; done
BIG=$WORK/big
mkdir -p "$BIG"
"$PY" - "$BIG" <<'PY'
import os, random, sys
r = random.Random(5)
for i in range(60):
    with open(os.path.join(sys.argv[1], f'f{i}.bin'), 'wb') as f:
        f.write(r.randbytes(1 << 20))
PY
"$REHYDRATE" backup "$STORE" "$BIG" --name killed -q &
PID=$!
# Killed once it has a temp container open.
for _ in $(seq 200); do [ -n "$(find "$STORE/containers/data" -name '*.tmp.*')" ] && break; sleep 0.01; done
kill -9 "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
echo "# left by the killed backup: $(cd "$STORE" && find . -name '*.tmp.*' | tr '\n' ' ')"
check "a backup after one killed with SIGKILL succeeds" rh backup "$STORE" "$SRC" --name three -q
check "... and leaves no temp file in the store" [ -z "$(cd "$STORE" && find . -name '*.tmp.*' ! -name 'a.snap.tmp.1.2.snap')" ]
check "verify passes afterwards" bash -c "'$REHYDRATE' verify '$STORE' >/dev/null"

finish

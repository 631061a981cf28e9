#!/usr/bin/env bash
# Integration test of what crashed writers leave behind: temp containers, catalogs and identity files
# that a killed backup (or store creation) left in a store are removed by the next backup and by
# reindex, but only under the store lock, and never a file that a live process may still own or a
# snapshot whose name merely looks like a temp name; the temp stubs that a restore killed in phase 1
# left in its target are removed by --resume and --force and never end up in the restored tree.
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
os.mkdir(os.path.join(sys.argv[1], 'd'))
with open(os.path.join(sys.argv[1], 'd', 'g.bin'), 'wb') as f:
    f.write(r.randbytes(300000))
PY
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name one -q
rh backup "$STORE" "$SRC" --name a.snap.tmp.1.2 -q   # a snapshot whose name looks like a temp name

DEAD=$(sh -c 'echo $$')   # a process that has exited
STALE="snapshots/x.snap.tmp.$DEAD.1 snapshots/x.snap.plain.tmp.$DEAD.2 containers/data/00000063.ctr.tmp.$DEAD.3
containers/stream/00000063.ctr.tmp.$DEAD.4 rehydrate.store.tmp.$DEAD.5 index.db.tmp.$DEAD.7
index.db.tmp.$DEAD.7-journal"
plant() {
    for f in $STALE; do echo junk >"$STORE/$f"; done
    echo junk >"$STORE/rehydrate.store.tmp.$$.6"; echo junk >"$STORE/index.db.tmp.$$.8"
}
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
check "... and removes every stale temp file (containers, catalogs, identity and index of a dead writer)" none_there
check "... but not a temp identity file whose creator is alive" [ -e "$STORE/rehydrate.store.tmp.$$.6" ]
check "... nor a temp index whose rebuilder is alive" [ -e "$STORE/index.db.tmp.$$.8" ]
check "... nor a snapshot whose name looks like a temp name" [ -e "$STORE/snapshots/a.snap.tmp.1.2.snap" ]
check "verify passes afterwards" bash -c "'$REHYDRATE' verify '$STORE' >/dev/null"

# ---- reindex ----
plant
check "reindex succeeds" bash -c "'$REHYDRATE' reindex '$STORE' >/dev/null"
check "... and removes every stale temp file" none_there
check "... but not a temp identity file whose creator is alive" [ -e "$STORE/rehydrate.store.tmp.$$.6" ]
rm -f "$STORE/rehydrate.store.tmp.$$.6" "$STORE/index.db.tmp.$$.8"

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

# ---- temp stubs of a restore killed in phase 1 ----
# A stub is made as an empty 0600 file ".rh-stub.XXXXXXXX", given its reparse point, sized, renamed: a
# kill leaves the temp file empty without the attribute, or with it.
plant_stubs() { # TARGET
    (umask 077; : >"$1/.rh-stub.0badf00d"; : >"$1/d/.rh-stub.12345678"; : >"$1/.rh-stub.aaaa0001")
    [ -s "$WORK/rp" ] || getfattr -h -n user.rehydrate.reparse -e hex "$1/f1.bin" 2>/dev/null |
        sed -n 's/^user.rehydrate.reparse=//p' >"$WORK/rp"
    setfattr -h -n user.rehydrate.reparse -v "$(cat "$WORK/rp")" "$1/.rh-stub.aaaa0001"
    truncate -s 500000 "$1/.rh-stub.aaaa0001"
    echo "not ours" >"$1/.rh-stub.cafe0001"   # a user's file that only looks like a temp name
}
no_temps() { [ -z "$(find "$1" -name '.rh-stub.*' ! -name '.rh-stub.cafe0001')" ]; }
same_tree() { diff -r -x .rh-stub.cafe0001 "$SRC" "$1" >/dev/null; }
T=$WORK/t1
rh restore "$STORE" one "$T" --stubs-only -q
plant_stubs "$T"
check "--resume after a restore killed in phase 1 succeeds" rh restore "$STORE" one "$T" --resume -q
check "... removes the temp stubs it left (empty, and with a reparse point)" no_temps "$T"
check "... and gives the exact tree" same_tree "$T"
check "... keeping a file that only looks like a temp stub" [ "$(cat "$T/.rh-stub.cafe0001")" = "not ours" ]
plant_stubs "$T"
check "a fresh restore (--force) into the same target succeeds" rh restore "$STORE" one "$T" --force -q
check "... removes the temp stubs" no_temps "$T"
check "... and gives the exact tree" same_tree "$T"
T=$WORK/t2
rh restore "$STORE" one "$T" f1.bin --stubs-only -q
mkdir "$T/d"; plant_stubs "$T"; rm -r "$T/d"
check "--resume of a subtree restore removes the temp stubs in the target itself" bash -c \
    "'$REHYDRATE' restore '$STORE' one '$T' f1.bin --resume -q && [ -z \"\$(find '$T' -name '.rh-stub.*' ! -name '.rh-stub.cafe0001')\" ]"
check "... and restores the file" cmp "$SRC/f1.bin" "$T/f1.bin"

finish

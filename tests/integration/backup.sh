#!/usr/bin/env bash
# Integration test of backup, snapshots, ls, verify and reindex on a tree with every awkward case:
# faithful catalog, near-free second backup, index rebuild, damage detection naming the file, and bad
# input that fails clearly without changing the store.
. "$(dirname "$0")/../lib.sh"

SRC=$WORK/src
STORE=$WORK/store
make_tree "$SRC"
rh() { "$REHYDRATE" "$@"; }
json_field() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
store_bytes() { du -sb --apparent-size "$STORE/containers" | cut -f1; }

# ---- first backup ----
rh backup "$STORE" "$SRC" --name first --json >"$WORK/b1.json" 2>"$WORK/b1.err"
check "first backup succeeds" [ $? -eq 0 ]
check "first backup reports every regular file" \
    [ "$(json_field files <"$WORK/b1.json")" -eq "$(find "$SRC" -type f -printf x | wc -c)" ]
check "sparse and zero regions are recorded as holes, not data" \
    [ "$(json_field hole_bytes <"$WORK/b1.json")" -gt $((4 << 30)) ]
check "the store is far smaller than the 5 GiB sparse file" [ "$(store_bytes)" -lt $((64 << 20)) ]
check "the 5 MiB duplicate is stored once (dedup_bytes >= 5 MiB)" \
    [ "$(json_field dedup_bytes <"$WORK/b1.json")" -ge $((5 << 20)) ]
check "snapshots lists it" grep -q '^first ' <(rh snapshots "$STORE")

# ---- the catalog is faithful ----
rh ls "$STORE" first -R --json >"$WORK/ls1.json"
check "ls -R --json matches the source entry by entry (type, mode, owners, ns mtime, size, targets, nlink)" \
    "$PY" "$TOP_SRCDIR/tests/integration/treecheck.py" "$SRC" "$WORK/ls1.json"
check "ls of a subdirectory by SNAPSHOT:PATH" grep -qx 'big-copy.bin' <(rh ls "$STORE" first:dir/sub)
deep=$(cd "$SRC" && find . -name deep.txt -printf '%h' | cut -c3-)
check "ls of a path 40 levels deep" grep -qx deep.txt <(rh ls "$STORE" "latest:$deep")
check "ls -l shows the symlink target" grep -q 'link-rel -> small.txt' <(rh ls -l "$STORE" first)
check "ls prints a newline in a name escaped" grep -qx 'new\\nline' <(rh ls "$STORE" first)
check_fails "ls of a missing path fails" rh ls "$STORE" first:no/such/path

# ---- second backup: unchanged files are not read, the store barely grows ----
before=$(store_bytes)
rh backup "$STORE" "$SRC" --name second --json >"$WORK/b2.json"
after=$(store_bytes)
# hard links after the first of each inode are linked, not read or reused
distinct=$(find "$SRC" -type f -printf '%i\n' | sort -u | wc -l)
check "second backup reuses every unchanged file" \
    [ "$(json_field reused_files <"$WORK/b2.json")" -eq "$distinct" ]
check "second backup reads nothing" [ "$(json_field read_bytes <"$WORK/b2.json")" -eq 0 ]
check "store growth from the second backup is under 1% ($before -> $after)" \
    [ $(( (after - before) * 100 )) -lt "$before" ]
check "second snapshot's listing is faithful too" \
    "$PY" "$TOP_SRCDIR/tests/integration/treecheck.py" "$SRC" <(rh ls "$STORE" second -R --json)

# --no-parent reads everything but finds every chunk already stored
rh backup "$STORE" "$SRC" --name third --no-parent --json >"$WORK/b3.json"
check "a full re-read adds no new chunk" [ "$(json_field new_chunks <"$WORK/b3.json")" -eq 0 ]

# a changed file is read again; only its new chunks are stored
echo "appended" >>"$SRC/small.txt"
rh backup "$STORE" "$SRC" --name fourth --json >"$WORK/b4.json"
check "a changed file is read again, and only it" [ "$(json_field reused_files <"$WORK/b4.json")" -eq $((distinct - 1)) ]
check "... so only its bytes were read" [ "$(json_field read_bytes <"$WORK/b4.json")" -eq "$(stat -c %s "$SRC/small.txt")" ]

state_before=$(store_state "$STORE")
check "verify passes on a healthy store" rh verify "$STORE"
rh ls "$STORE" latest -l -R >/dev/null
rh snapshots "$STORE" >/dev/null
check "verify, ls and snapshots write nothing to the store" [ "$(store_state "$STORE")" = "$state_before" ]

# ---- the index is derived: delete it, rebuild it ----
rm -f "$STORE/index.db" "$STORE/index.db-wal" "$STORE/index.db-shm"
check "reindex rebuilds a deleted index" rh reindex "$STORE"
check "verify passes after reindex" rh verify "$STORE"
rh backup "$STORE" "$SRC" --name fifth --no-parent --json >"$WORK/b5.json"
check "the rebuilt index knows every chunk (no new chunks on a full re-read)" \
    [ "$(json_field new_chunks <"$WORK/b5.json")" -eq 0 ]
echo garbage >"$STORE/index.db"
rm -f "$STORE/index.db-wal" "$STORE/index.db-shm"
rh backup "$STORE" "$SRC" --name sixth --no-parent --json >"$WORK/b6.json" 2>"$WORK/b6.err"
check "a garbage index is rebuilt by the next backup, with a message" grep -q 'rebuilding' "$WORK/b6.err"
check "... and deduplication still works" [ "$(json_field new_chunks <"$WORK/b6.json")" -eq 0 ]

# ---- store formats: 2 (the default) keeps neighbouring chunks in packs, 1 keeps every chunk alone ----
rh verify "$STORE" --json >"$WORK/f2.json"
check "a new store is of format 2 and holds packs" "$PY" -c '
import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] and r["packs"] > 0' "$WORK/f2.json"
V1=$WORK/store-v1
rh init "$V1" --format 1 >/dev/null
check "init --format 1 writes format_version 1" [ "$(od -An -tu4 -j8 -N4 "$V1/rehydrate.store" | tr -d ' ')" -eq 1 ]
rh backup "$V1" "$SRC" --name v1 -q
rh verify "$V1" --json >"$WORK/f1.json"
check "... and its backup stores every chunk alone" "$PY" -c '
import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] and r["packs"] == 0 and r["chunks"] > 0' "$WORK/f1.json"
rh restore "$V1" v1 "$WORK/v1out" -q
check "... and restores exactly" "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$SRC" "$WORK/v1out"
rh backup "$WORK/store-v2" "$SRC" --name v2 -q
v1_bytes=$(du -sb --apparent-size "$V1/containers/data" | cut -f1)
v2_bytes=$(du -sb --apparent-size "$WORK/store-v2/containers/data" | cut -f1)
check "the same tree takes less room in format 2 ($v2_bytes bytes) than in format 1 ($v1_bytes)" \
    [ "$v2_bytes" -lt "$v1_bytes" ]
check_fails "init --format 3 is refused" rh init "$WORK/v3" --format 3
check "... and creates nothing" [ ! -e "$WORK/v3" ]

# ---- bad input: clear errors, non-zero exit, store unchanged ----
digest=$(tree_digest "$STORE")
check_fails "a snapshot name that exists is refused" rh backup "$STORE" "$SRC" --name first
check_fails "a missing source is refused" rh backup "$STORE" "$WORK/nope"
rh backup "$STORE" "$WORK/nope" 2>"$WORK/e1" || true
check "the error names the missing source" grep -q "nope" "$WORK/e1"
check_fails "an invalid snapshot name is refused" rh backup "$STORE" "$SRC" --name 'a/b'
check "failed commands left the store unchanged" [ "$(tree_digest "$STORE")" = "$digest" ]
mkdir "$WORK/notastore"; echo x >"$WORK/notastore/file"
check_fails "a non-empty directory that is not a store is refused" rh backup "$WORK/notastore" "$SRC"
check "... and left alone" [ "$(ls "$WORK/notastore")" = file ]
check_fails "ls of a non-store fails" rh ls "$WORK/notastore" latest

# ---- unreadable files: named, the backup goes on, exit 3, the snapshot is partial ----
chmod 000 "$SRC/with space.txt"
set +e
setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search \
    "$REHYDRATE" backup "$STORE" "$SRC" --name partial >"$WORK/p.out" 2>"$WORK/p.err"
rc=$?
set -e
chmod 4755 "$SRC/with space.txt"
check "an unreadable file gives exit code 3 (got $rc)" [ "$rc" -eq 3 ]
check "the unreadable file is named with its cause" grep -q 'with space.txt: open: Permission denied' "$WORK/p.err"
check "the partial snapshot is listed as partial" grep -q '^partial .*(partial)' <(rh snapshots "$STORE")

# ---- damage: flip one byte of a chunk and verify names container, offset and file ----
flip_chunk_byte "$SRC/unique.bin" "$STORE/containers/data" >"$WORK/flip.out"
ctr=$(cat "$WORK/flip.out")
check "found the chunk of unique.bin in a container" [ -n "$ctr" ]
set +e
rh verify "$STORE" >"$WORK/v.out" 2>"$WORK/v.err"
rc=$?
set -e
check "verify fails on a flipped byte" [ "$rc" -ne 0 ]
check "verify names the damaged container and record offset" grep -q "containers/data/$ctr: record at offset [0-9]*: record checksum mismatch" "$WORK/v.err"
check "verify names the damaged file" grep -q 'damaged file: first:unique.bin' "$WORK/v.err"
check "verify names every hard link of the damaged file" grep -q 'damaged file: first:dir/hardlink-2' "$WORK/v.err"
check "verify does not blame undamaged files" bash -c "! grep -q 'damaged file: first:dir/big.bin' '$WORK/v.err'"
rh verify "$STORE" --json >"$WORK/v.json" || true
check "verify --json reports ok=false with the object" "$PY" -c '
import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] is False; assert any(p["object"].startswith("containers/data/") for p in r["problems"]); assert any(a["path"]=="unique.bin" for a in r["affected"])' "$WORK/v.json"

finish

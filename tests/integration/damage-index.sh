#!/usr/bin/env bash
# Integration test of damage to index.db, which is derived data: random byte flips (seeded) and rows
# that SQLite finds fine but that point at the wrong place, or are missing. verify must name the index
# problem and exit non-zero without writing anything; restore and the mount must read every intact file
# (by rebuilding the index once, with one message), never fail it with "chunk not found" or EIO.
. "$(dirname "$0")/../lib.sh"

rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }
have_fuse=false
[ -e /dev/fuse ] && command -v fusermount3 >/dev/null && [ -x "$REHYDRATEFS" ] && have_fuse=true
MNT=$WORK/mnt
mkdir -p "$MNT"
unmount_all() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; return 0; }
cleanup_hooks="unmount_all"

SRC=$WORK/src
STORE=$WORK/store
make_tree "$SRC"
rh backup "$STORE" "$SRC" --name one -q
cp "$STORE/index.db" "$WORK/index.good"

# flip_index SEED N: flips N random bytes of index.db (past SQLite's 100-byte file header, so that the
# file still opens as a database and the damage is inside its pages).
flip_index() {
    "$PY" - "$STORE/index.db" "$1" "$2" <<'PY'
import random, sys
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytearray(open(path, 'rb').read())
rnd = random.Random(seed)
for _ in range(n):
    i = rnd.randrange(100, len(data))
    data[i] ^= 1 << rnd.randrange(8)
open(path, 'wb').write(data)
PY
}
# flip_chunk_pages SEED N: flips N random bits in the pages of the chunks table only (as most flips in a
# large index would land): the file opens, its container list is intact, and lookups meet the damage.
flip_chunk_pages() {
    "$PY" - "$STORE/index.db" "$1" "$2" <<'PY'
import random, sqlite3, sys
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
size = db.execute('PRAGMA page_size').fetchone()[0]
pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'chunks'")]
db.close()
data = bytearray(open(path, 'rb').read())
rnd = random.Random(seed)
for _ in range(n):
    i = (rnd.choice(pages) - 1) * size + rnd.randrange(size)
    data[i] ^= 1 << rnd.randrange(8)
open(path, 'wb').write(data)
PY
}
# sql STATEMENT: runs one statement on index.db (consistent SQLite, wrong content).
sql() { "$PY" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' "$STORE/index.db" "$1"; }
verify_ok() { rh verify "$STORE" >/dev/null 2>&1; }
# index_lines LOG: the lines of LOG that speak of the index.
index_lines() { grep -c 'index' "$1" || true; }

# damaged_case NAME: verify, restore and mount with the index.db that the caller damaged; $WORK/damaged-NAME
# keeps a copy so that each reader starts from the same damage.
damaged_case() {
    local name=$1
    cp "$STORE/index.db" "$WORK/damaged-$name"
    local state
    state=$(store_state "$STORE")
    local rc=0
    rh verify "$STORE" >"$WORK/verify-$name.out" 2>"$WORK/verify-$name.err" || rc=$?
    check "$name: verify exits non-zero" [ "$rc" -ne 0 ]
    check "$name: verify names the index problem" grep -q 'index.db' "$WORK/verify-$name.err"
    check "$name: verify says how to rebuild the index" grep -q 'rehydrate reindex' "$WORK/verify-$name.err"
    check "$name: verify wrote nothing to the store" [ "$(store_state "$STORE")" = "$state" ]

    rc=0
    rh restore "$STORE" one "$WORK/t-$name" -q 2>"$WORK/restore-$name.err" || rc=$?
    check "$name: restore succeeds (rc $rc: $(head -c 300 "$WORK/restore-$name.err" | tr '\n' ' '))" [ "$rc" -eq 0 ]
    check "$name: the restored tree equals the source" diff_tree "$SRC" "$WORK/t-$name"
    check "$name: restore says once that it rebuilt the index ($(index_lines "$WORK/restore-$name.err") lines)" \
        [ "$(index_lines "$WORK/restore-$name.err")" -eq 1 ]
    check "$name: ... and fails no chunk lookup" bash -c "! grep -q 'not found in the index' '$WORK/restore-$name.err'"
    check "$name: after the rebuild verify finds no problem" verify_ok

    if $have_fuse; then
        cp "$WORK/damaged-$name" "$STORE/index.db"
        rm -f "$STORE/index.db-wal" "$STORE/index.db-shm"
        check "$name: the damaged index does not stop the mount" start_fs "$WORK/fs-$name.log"
        # Eight readers at once: several workers meet the damage, and only one may rebuild.
        (cd "$SRC" && find . -type f ! -name sparse.img -print0 | sort -z | xargs -0 sha256sum) >"$WORK/want.sum"
        for i in $(seq 4); do
            (rc=0; cd "$MNT/one" && sha256sum -c --quiet "$WORK/want.sum" >"$WORK/reader$i.out" 2>&1 || rc=$?
             echo "$rc" >"$WORK/reader$i.rc") &
        done
        for i in $(seq 4); do while [ ! -s "$WORK/reader$i.rc" ]; do sleep 0.05; done; done
        check "$name: four parallel readers of the mount read every file correctly" \
            [ "$(cat "$WORK"/reader*.rc | sort -u)" = 0 ]
        rm -f "$WORK"/reader*.rc
        check "$name: the mount equals the source (content and metadata)" diff_tree "$SRC" "$MNT/one"
        stop_fs || true  # the daemon's exit status is not what this test is about
        check "$name: the daemon says once that it rebuilt the index ($(index_lines "$WORK/fs-$name.log") lines)" \
            [ "$(index_lines "$WORK/fs-$name.log")" -eq 1 ]
        check "$name: the daemon logged no read error" bash -c "! grep -q 'EIO\|not found in the index\|cannot read' '$WORK/fs-$name.log'"
        check "$name: no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$WORK/fs-$name.log'"
    fi
    cp "$WORK/index.good" "$STORE/index.db"
    rm -f "$STORE/index.db-wal" "$STORE/index.db-shm"
}

check "the intact store verifies" verify_ok

# ---- 50 random flips inside the database's pages ----
flip_index 12 50
damaged_case flips

# ---- 50 random flips in the pages of the chunks table ----
flip_chunk_pages 12 50
damaged_case pages
check "pages: verify reports what SQLite's integrity check says" grep -q 'integrity check' "$WORK/verify-pages.err"

# ---- SQLite finds the file fine, but rows point at the wrong record (no row is missing, so readers must
# tell a wrong row from a damaged record by the container's own record table) ----
sql "UPDATE chunks SET offset = offset + 8 WHERE digest IN (SELECT digest FROM chunks ORDER BY digest LIMIT 3)"
sql "UPDATE chunks SET container = container + 1 WHERE digest IN (SELECT digest FROM chunks ORDER BY digest LIMIT 2 OFFSET 20)"
damaged_case wrongrows
check "wrongrows: restore names the wrong row" grep -q 'the row of chunk' "$WORK/restore-wrongrows.err"

# ---- SQLite finds the file fine, but rows point at the wrong place or are missing ----
sql "UPDATE chunks SET offset = offset + 8 WHERE digest IN (SELECT digest FROM chunks ORDER BY digest LIMIT 3)"
sql "UPDATE chunks SET raw_len = raw_len + 1 WHERE digest IN (SELECT digest FROM chunks ORDER BY digest LIMIT 2 OFFSET 10)"
sql "DELETE FROM chunks WHERE digest IN (SELECT digest FROM chunks ORDER BY digest DESC LIMIT 3)"
damaged_case rows
check "rows: verify names a row that points at the wrong record" grep -q 'offset' "$WORK/verify-rows.err"
check "rows: verify names a chunk that is not indexed" grep -q 'not in the index' "$WORK/verify-rows.err"

# ---- a header flip: SQLite calls the file malformed or no database at all ----
"$PY" - "$STORE/index.db" <<'PY'
import sys
p = sys.argv[1]
d = bytearray(open(p, 'rb').read())
d[4096 + 20] ^= 0xff      # inside the first page after the schema page
d[30] ^= 0x55             # the database size in the header
open(p, 'wb').write(d)
PY
damaged_case header

finish

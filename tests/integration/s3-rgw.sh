#!/usr/bin/env bash
# Integration test of stores on object storage against Ceph's radosgw, a real S3 server that checks
# every SigV4 signature (s3.sh runs against s3rver, which does not): a one-node cluster
# (contrib/rgw/cluster.sh) started on 127.0.0.1 by this script. A wrong secret is refused with a clear
# message; init, backup, deduplication, list, verify, restore, mount and cp -a, reindex, the lock, a
# backup killed half-way, multipart uploads and a server restart under a mount all work as on s3rver,
# path-style and virtual-host.
. "$(dirname "$0")/../lib.sh"

for tool in ceph-mon ceph-osd radosgw radosgw-admin; do
    command -v "$tool" >/dev/null || { echo "# $tool is missing: run contrib/deps.sh"; not_ok "ceph and radosgw are installed"; finish; }
done
CLUSTER=$TOP_SRCDIR/contrib/rgw/cluster.sh
SRC=$WORK/src
MNT=$WORK/mnt
mkdir -p "$MNT"
rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }
quiet() { "$@" >/dev/null; }
# said RC TEXT...: the last command run as out=$(...) exited RC and printed every TEXT.
said() {
    local want=$1 t; shift
    [ "$rc" -eq "$want" ] || { echo "# exit status $rc, not $want: $out"; return 1; }
    for t; do grep -qF -- "$t" <<<"$out" || { echo "# no \"$t\" in: $out"; return 1; }; done
}

# ---- the server ----
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY=RHTESTKEY SECRET=rhtestsecret0123456789
stop_cluster() { mountpoint -q "$MNT" && fusermount3 -u "$MNT"; "$CLUSTER" stop "$WORK/ceph"; }
cleanup_hooks="stop_cluster"
"$CLUSTER" start "$WORK/ceph" "$PORT" "$KEY" "$SECRET" >"$WORK/cluster.log" 2>&1 ||
    { show_log "$WORK/cluster.log"; not_ok "a one-node Ceph cluster with radosgw starts"; finish; }
# s3curl ARGS...: a signed request to radosgw (which wants the payload hash header that curl omits).
s3curl() { curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
check "radosgw makes a bucket for a signed request" \
    eval '[ "$(s3curl -o /dev/null -w "%{http_code}" -X PUT "http://127.0.0.1:$PORT/bucket")" = 200 ]'
# keys PREFIX: how many objects the bucket holds under PREFIX (one ListObjectsV2 page); -1 when the
# listing fails, so that no count compares equal by accident.
keys() {
    local x
    x=$(s3curl "http://127.0.0.1:$PORT/bucket?list-type=2&prefix=$(sed 's|/|%2F|g' <<<"$1")")
    if grep -q '<ListBucketResult' <<<"$x"; then grep -o '<Key>' <<<"$x" | wc -l; else echo "# listing failed: $x" >&2; echo -1; fi
}

export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_REGION AWS_REGION AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE
export HOME=$WORK/home XDG_CACHE_HOME=$WORK/cache
mkdir -p "$HOME"
URL="s3:http://127.0.0.1:$PORT/bucket/store"
# Containers over 16 MiB go up as multipart uploads, so that radosgw checks those requests too.
export REHYDRATE_S3_UPLOAD_CUTOFF=16M

# ---- signatures ----
out=$(AWS_SECRET_ACCESS_KEY=not-the-secret "$REHYDRATE" init "$URL" 2>&1) && rc=0 || rc=$?
check "a wrong secret: refused by the server, exit 1, the server's code and the advice said" \
    said 1 "access denied (HTTP 403 SignatureDoesNotMatch" "signature does not match: check AWS_SECRET_ACCESS_KEY"
check "... and nothing was written" [ "$(keys store/)" -eq 0 ]

# ---- round trips ----
make_tree "$SRC"
check "init makes a store on radosgw" rh init "$URL"
check "backup to radosgw" rh backup "$URL" "$SRC" --name "first snap" -q
have=$(keys store/containers/)
check "a second backup of the same tree" rh backup "$URL" "$SRC" --name second -q
check "... stores no new container" eval '[ "$have" -gt 0 ] && [ "$(keys store/containers/)" -eq "$have" ]'
check "snapshots lists both, one with a space in its name" \
    eval 'rh snapshots "$URL" | grep -q "^first snap " && rh snapshots "$URL" | grep -q "^second "'
check "ls -l -R of both snapshots prints the same entries" \
    [ "$(rh ls "$URL" "first snap" -l -R)" = "$(rh ls "$URL" second -l -R)" ]
rh restore "$URL" "first snap" "$WORK/r1" -q
check "the tree restored from radosgw equals the source (content and every piece of metadata)" \
    diff_tree "$SRC" "$WORK/r1"
check "virtual-host requests (bucket.s3.localhost) restore it too" \
    env REHYDRATE_S3_BUCKET_LOOKUP=dns "$REHYDRATE" restore "s3:http://s3.localhost:$PORT/bucket/store" second "$WORK/r2" -q
check "... exactly" diff_tree "$SRC" "$WORK/r2"
out=$(rh verify "$URL" 2>&1) && rc=0 || rc=$?
check "verify finds no problems" said 0 "no problems found"

STORE=$URL
start_fs "$WORK/fs1.log"
check "the mounted snapshot equals the source" diff_tree "$SRC" "$MNT/first snap"
cp -a "$MNT/second" "$WORK/cp"
check "cp -a out of the mount equals the source" diff_tree "$SRC" "$WORK/cp"
check "the daemon exits 0 on unmount" stop_fs

out=$(rh reindex "$URL" 2>&1) && rc=0 || rc=$?
check "reindex rebuilds index.db on radosgw" said 0 "rebuilt $URL/index.db"
check "... and the store verifies" quiet rh verify "$URL"

# ---- the lock ----
printf 'rehydrate-lock 1\nhost elsewhere\npid 77\ntime %s\n' "$(date +%s)" >"$WORK/lock"
s3curl -o /dev/null -T "$WORK/lock" "http://127.0.0.1:$PORT/bucket/store/locks/elsewhere-77-aa"
out=$(rh backup "$URL" "$SRC" --name locked -q 2>&1) && rc=0 || rc=$?
check "a live lock of another host refuses the backup, naming the holder" said 1 "locked by elsewhere pid 77"
s3curl -o /dev/null -X DELETE "http://127.0.0.1:$PORT/bucket/store/locks/elsewhere-77-aa"
check "... and with the lock gone the backup runs" rh backup "$URL" "$SRC" --name unlocked -q

# ---- a backup killed half-way ----
mkdir -p "$WORK/bigsrc"
head -c $((150 << 20)) /dev/urandom >"$WORK/bigsrc/random.bin"
snaps_before=$(rh snapshots "$URL" --json)
have=$(keys store/containers/data/)
"$REHYDRATE" backup "$URL" "$WORK/bigsrc" --name killed -q & bpid=$!
for _ in $(seq 1200); do [ "$(keys store/containers/data/)" -gt "$have" ] && break; sleep 0.05; done
kill -KILL "$bpid"
wait "$bpid" 2>/dev/null || true
check "kill -9 during a backup (once a container is uploaded): no new snapshot" \
    [ "$(rh snapshots "$URL" --json)" = "$snaps_before" ]
out=$(rh verify "$URL" 2>&1) && rc=0 || rc=$?
check "... the store verifies" said 0 "no problems found"
out=$(rh backup "$URL" "$WORK/bigsrc" --name killed -q 2>&1) && rc=0 || rc=$?
check "... the next backup clears the dead backup's lock and container, and succeeds" \
    said 0 "its process on this host is gone" "left by a backup that did not finish"
rh restore "$URL" killed "$WORK/r3" -q
check "... and restores exactly" cmp "$WORK/bigsrc/random.bin" "$WORK/r3/random.bin"

# ---- a mount outlives a server restart ----
REHYDRATE_S3_RETRIES=1 start_fs "$WORK/fs2.log"
check "a file's metadata is there before radosgw stops" [ "$(stat -c %s "$MNT/second/dir/big.bin")" = 5242880 ]
"$CLUSTER" stop-rgw "$WORK/ceph"
check_fails "with radosgw down, reading file data fails" bash -c "cat '$MNT/second/dir/big.bin' >/dev/null 2>&1"
check "... and the mount is still there" mountpoint -q "$MNT"
"$CLUSTER" start-rgw "$WORK/ceph"
check "after radosgw is back, the same file reads exactly" cmp "$SRC/dir/big.bin" "$MNT/second/dir/big.bin"
check "the daemon exits 0 on unmount" stop_fs

finish

#!/usr/bin/env bash
# Integration test of stores on S3-compatible object storage (doc/s3.md), against s3rver (contrib/s3,
# installed by contrib/deps.sh) started on 127.0.0.1 by this script: a store copied into a bucket, and
# one backed up there, are listed, verified, restored and mounted exactly, by path-style and virtual-host
# requests, with credentials from the environment or the AWS CLI's files; backups deduplicate, take the
# lock object and clear stale ones; a backup killed, or whose server stops, half-way leaves the store as
# it was; what goes wrong (a missing bucket, refused or missing credentials, a server that is down and
# comes back) is told clearly, and a mount outlives a server restart. s3rver does not check SigV4
# signatures (only the access key): s3proxy.py, in front of it, checks every one, and answers 503 on
# demand.
. "$(dirname "$0")/../lib.sh"

S3RVER=$TOP_SRCDIR/contrib/s3/node_modules/.bin/s3rver
[ -x "$S3RVER" ] || { echo "# $S3RVER is missing: run contrib/deps.sh"; not_ok "s3rver is installed"; finish; }
SRC=$WORK/src
LOCAL=$WORK/local
MNT=$WORK/mnt
mkdir -p "$MNT"
rh() { "$REHYDRATE" "$@"; }
diff_tree() { "$PY" "$TOP_SRCDIR/tests/integration/treediff.py" "$@"; }

# ---- the server ----
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
S3_PID=""
start_s3() {
    "$S3RVER" -d "$WORK/s3data" -a 127.0.0.1 -p "$PORT" --service-endpoint localhost \
        --configure-bucket bucket --silent >>"$WORK/s3rver.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        sleep 0.05
    done
    echo "# s3rver did not start"; show_log "$WORK/s3rver.log"; return 1
}
stop_s3() { [ -z "$S3_PID" ] || { kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true; S3_PID=""; }; }
unmount_all() { mountpoint -q "$MNT" && fusermount3 -u "$MNT"; stop_s3; }
cleanup_hooks="unmount_all"
start_s3

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_REGION AWS_REGION AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE
export HOME=$WORK/home XDG_CACHE_HOME=$WORK/cache
mkdir -p "$HOME"
# s3_upload DIR PREFIX: copies a local store's files into bucket/PREFIX (what `aws s3 sync` does).
s3_upload() {
    (cd "$1" && find . -type f ! -name lock | sed 's|^\./||' | while IFS= read -r f; do
        curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
            -T "$f" "http://127.0.0.1:$PORT/bucket/$2/$(printf %s "$f" | "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read()))')" \
            >/dev/null || { echo "# upload of $f failed"; return 1; }
    done)
}
bucket_state() { tree_digest "$WORK/s3data/bucket"; }
quiet() { "$@" >/dev/null; }
# said RC TEXT...: the last command run as out=$(...) exited RC and printed every TEXT.
said() {
    local want=$1 t; shift
    [ "$rc" -eq "$want" ] || { echo "# exit status $rc, not $want: $out"; return 1; }
    for t; do grep -qF -- "$t" <<<"$out" || { echo "# no \"$t\" in: $out"; return 1; }; done
}

make_tree "$SRC"
rh backup "$LOCAL" "$SRC" --name "first snap" -q
rh backup "$LOCAL" "$SRC" --name second -q
s3_upload "$LOCAL" "stores/one"
URL="s3:http://127.0.0.1:$PORT/bucket/stores/one"

# ---- reading commands ----
check "snapshots lists both snapshots, one with a space in its name" \
    bash -c "'$REHYDRATE' snapshots '$URL' | grep -q '^first snap ' && '$REHYDRATE' snapshots '$URL' | grep -q '^second '"
check "ls of a snapshot on S3 prints what ls of the local store prints" \
    [ "$(rh ls "$URL" "first snap" -l -R 2>&1)" = "$(rh ls "$LOCAL" "first snap" -l -R 2>&1)" ]
state=$(bucket_state)
check "verify of the store on S3 finds no problems" rh verify "$URL"
rh restore "$URL" "first snap" "$WORK/r1" -q
check "restore from S3 exits 0" [ $? -eq 0 ]
check "the tree restored from S3 equals the source (content and every piece of metadata)" diff_tree "$SRC" "$WORK/r1"
check "latest resolves on S3" rh restore "$URL" latest "$WORK/r2" dir -q
check "... and restores the subtree exactly" diff_tree "$SRC/dir" "$WORK/r2/dir"
check "reading wrote nothing to the bucket" [ "$(bucket_state)" = "$state" ]
check "a trailing slash in the URL names the same store" bash -c "'$REHYDRATE' snapshots '$URL/' | grep -q '^second '"

# ---- the mount ----
STORE=$URL
start_fs "$WORK/fs1.log"
check "the mount shows both snapshots" [ -d "$MNT/first snap" ] && [ -d "$MNT/second" ]
check "the mounted snapshot equals the source" diff_tree "$SRC" "$MNT/first snap"
cp -a "$MNT/second" "$WORK/cp"
check "cp -a out of the mount equals the source" diff_tree "$SRC" "$WORK/cp"
check "the daemon exits 0 on unmount" stop_fs

rh mount "$URL" "$MNT"
check "rehydrate mount takes an s3: URL too" cmp "$SRC/small.txt" "$MNT/latest/small.txt"
fusermount3 -u "$MNT"

# ---- addressing and credentials ----
check "virtual-host requests (REHYDRATE_S3_BUCKET_LOOKUP=dns: bucket.s3.localhost) read the same store" \
    env REHYDRATE_S3_BUCKET_LOOKUP=dns "$REHYDRATE" restore "s3:http://s3.localhost:$PORT/bucket/stores/one" second "$WORK/r3" -q
check "... exactly" diff_tree "$SRC" "$WORK/r3"
mkdir -p "$HOME/.aws"
printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$HOME/.aws/credentials"
check "credentials from ~/.aws/credentials when the environment has none" \
    quiet env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$REHYDRATE" snapshots "$URL" --json
printf '[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n[profile other]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\nregion = eu-west-3\n' >"$HOME/.aws/config"
rm "$HOME/.aws/credentials"
check "AWS_PROFILE chooses a [profile NAME] section of ~/.aws/config" \
    quiet env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_PROFILE=other "$REHYDRATE" snapshots "$URL" --json

# ---- what goes wrong is told ----
out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_PROFILE=missing "$REHYDRATE" snapshots "$URL" 2>&1) && rc=0 || rc=$?
check "no credentials: exit 1 and a message that says where they are looked for" \
    said 1 "no credentials" "AWS_ACCESS_KEY_ID" "profile \"missing\""
out=$(AWS_ACCESS_KEY_ID=nobody "$REHYDRATE" snapshots "$URL" 2>&1) && rc=0 || rc=$?
check "refused credentials: exit 1 and 'access denied' with the server's code, the object and the region" \
    said 1 "access denied (HTTP 403 InvalidAccessKeyId" "GET bucket/stores/one/rehydrate.store" "us-east-1"
out=$(rh snapshots "s3:http://127.0.0.1:$PORT/nosuch/x" 2>&1) && rc=0 || rc=$?
check "a missing bucket: exit 1 and said once" \
    eval 'said 1 "bucket \"nosuch\" does not exist" && [ "$(grep -c "does not exist" <<<"$out")" -eq 1 ]'
out=$(rh snapshots "s3:http://127.0.0.1:$PORT/bucket/stores/none" 2>&1) && rc=0 || rc=$?
check "a prefix with no store: exit 1, not a rehydrate store" said 1 "not a rehydrate store"
out=$(rh snapshots "s3:ftp://127.0.0.1/bucket" 2>&1) && rc=0 || rc=$?
check "an unsupported scheme is named" said 1 "only http:// and https://"

# ---- writing: init, backup, dedup, the lock ----
URL2="s3:http://127.0.0.1:$PORT/bucket/stores/two"
# objects DIR: how many objects below stores/two/DIR are complete (s3rver writes an object's metadata
# after its bytes; it writes the bytes in place, so a PUT cut short leaves a partial object, which S3
# never shows: the tests below stop backups between requests).
objects() { find "$WORK/s3data/bucket/stores/two/$1" -name '*._S3rver_metadata.json' 2>/dev/null | wc -l; }
check "init makes a store on S3" rh init "$URL2"
out=$(rh init "$URL2" 2>&1) && rc=0 || rc=$?
check "init again: exit 1, a store already exists there" said 1 "a store already exists there"
out=$(rh init "s3:http://127.0.0.1:$PORT/bucket/stores" 2>&1) && rc=0 || rc=$?
check "init where other objects are: exit 1, said" said 1 "the bucket holds other objects under that prefix"
check "backup to S3" rh backup "$URL2" "$SRC" --name b1 -q
check "... uploads the containers, index.db and the catalog" \
    eval '[ "$(objects containers)" -ge 2 ] && [ -e "$WORK/s3data/bucket/stores/two/index.db._S3rver_metadata.json" ] && [ "$(objects snapshots)" -eq 1 ]'
check "... and leaves no lock object" [ "$(objects locks)" -eq 0 ]
rh restore "$URL2" b1 "$WORK/w1" -q
check "a tree backed up to S3 restores exactly" diff_tree "$SRC" "$WORK/w1"
have=$(objects containers)
check "a second backup of the same tree" rh backup "$URL2" "$SRC" --name b2 -q
check "... stores no new container (every chunk deduplicated, every file reused)" [ "$(objects containers)" -eq "$have" ]
out=$(rh backup "$URL2" "$SRC" --name b1 2>&1) && rc=0 || rc=$?
check "a snapshot name that is taken: exit 1, said" said 1 "a snapshot named 'b1' already exists"
echo "a new file" >"$SRC/new-file.txt"
check "a third backup with one new file" rh backup "$URL2" "$SRC" --name b3 -q
rh restore "$URL2" b3 "$WORK/w3" -q
check "... restores exactly, with the new file" diff_tree "$SRC" "$WORK/w3"
check "verify of the store written on S3 finds no problems" quiet rh verify "$URL2"

# ---- reindex on S3 ----
# s3_put_text KEY TEXT: an object of TEXT (printf format) under stores/two.
s3_put_text() {
    printf "$2" | curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -T - "http://127.0.0.1:$PORT/bucket/stores/two/$1" >/dev/null
}
printf 'not an index at all' | dd of="$WORK/s3data/bucket/stores/two/index.db._S3rver_object" bs=1 seek=0 conv=notrunc 2>/dev/null
out=$(rh verify "$URL2" 2>&1) && rc=0 || rc=$?
check "a damaged index.db on S3: verify says so and names 'rehydrate reindex URL', exit 1" \
    said 1 "index.db" "'rehydrate reindex $URL2' rebuilds it"
out=$(cd "$WORK" && "$REHYDRATE" reindex "$URL2" 2>&1) && rc=0 || rc=$?
check "reindex on S3 rebuilds it from the containers, saying the old one could not be read" \
    eval 'said 0 "the old index.db cannot be read" "rebuilt $URL2/index.db: " && [ ! -e "$WORK/s3:http:" ]'
check "... leaves no lock object" [ "$(objects locks)" -eq 0 ]
check "... and the store verifies" quiet rh verify "$URL2"
rh restore "$URL2" b3 "$WORK/w3r" -q
check "... and restores exactly through the new index" diff_tree "$SRC" "$WORK/w3r"
rm "$WORK/s3data/bucket/stores/two/index.db._S3rver"*
out=$(rh verify "$URL2" 2>&1) && rc=0 || rc=$?
check "index.db deleted from S3: verify says it is missing, exit 1" said 1 "index.db: missing, though the store has containers"
check "... and reindex puts it back" eval 'rh reindex "$URL2" >/dev/null && rh verify "$URL2" >/dev/null'
# A container numbered after the newest that index.db names: what a backup stopped before its index.db
# went up leaves. reindex removes it, as the next backup would, before reading any container.
newest=$(ls "$WORK/s3data/bucket/stores/two/containers/data" | grep -o '^[0-9]*\.ctr' | sort | tail -1)
for f in _S3rver_object _S3rver_metadata.json; do
    cp "$WORK/s3data/bucket/stores/two/containers/data/$newest.$f" "$WORK/s3data/bucket/stores/two/containers/data/00000999.ctr.$f"
done
out=$(rh reindex "$URL2" 2>&1) && rc=0 || rc=$?
check "reindex on S3 removes a stopped backup's container, with a message, and rebuilds" \
    eval 'said 0 "removing containers/data/00000999.ctr, left by a backup that did not finish" "rebuilt" && [ ! -e "$WORK/s3data/bucket/stores/two/containers/data/00000999.ctr._S3rver_object" ]'
check "... and the store verifies" quiet rh verify "$URL2"
s3_put_text locks/elsewhere-78-aa "rehydrate-lock 1\nhost elsewhere\npid 78\ntime $(date +%s)\n"
state2=$(sha256sum <"$WORK/s3data/bucket/stores/two/index.db._S3rver_object")
out=$(rh reindex "$URL2" 2>&1) && rc=0 || rc=$?
check "reindex on S3 while another holds the lock: exit 1, the holder named, index.db untouched" \
    eval 'said 1 "locked by elsewhere pid 78" "holds the store'"'"'s lock" && [ "$(sha256sum <"$WORK/s3data/bucket/stores/two/index.db._S3rver_object")" = "$state2" ]'
rm "$WORK/s3data/bucket/stores/two/locks/elsewhere-78-aa._S3rver"*
s3_put_text locks/elsewhere-77-aa "rehydrate-lock 1\nhost elsewhere\npid 77\ntime $(date +%s)\n"
out=$(rh backup "$URL2" "$SRC" --name b4 -q 2>&1) && rc=0 || rc=$?
check "a live lock of another host refuses the backup, naming the holder and the object" \
    said 1 "locked by elsewhere pid 77" "locks/elsewhere-77-aa" "another backup is running"
s3_put_text locks/elsewhere-77-aa "rehydrate-lock 1\nhost elsewhere\npid 77\ntime $(( $(date +%s) - 3600 ))\n"
out=$(rh backup "$URL2" "$SRC" --name b4 -q 2>&1) && rc=0 || rc=$?
check "a lock not renewed for an hour is removed with a message, and the backup runs" \
    said 0 "removing stale lock locks/elsewhere-77-aa" "not renewed"
s3_put_text "locks/$(hostname)-999999-bb" "rehydrate-lock 1\nhost $(hostname)\npid 999999\ntime $(date +%s)\n"
out=$(rh backup "$URL2" "$SRC" --name b5 -q 2>&1) && rc=0 || rc=$?
check "a lock of this host whose process is gone is removed with a message" said 0 "its process on this host is gone"
check "... and no lock is left" [ "$(objects locks)" -eq 0 ]

# ---- a backup that stops half-way leaves the store as it was ----
mkdir -p "$WORK/bigsrc"
head -c $((150 << 20)) /dev/urandom >"$WORK/bigsrc/random.bin"
# wait_object DIR: until an object appears below stores/two/DIR (at most 60 s).
wait_object() { for _ in $(seq 1200); do [ "$(objects "$1")" -gt "$2" ] && return 0; sleep 0.05; done; return 1; }
snaps_before=$(rh snapshots "$URL2" --json)
have=$(objects containers/data)
"$REHYDRATE" backup "$URL2" "$WORK/bigsrc" --name killed -q & bpid=$!
wait_object containers/data "$have" && kill -KILL "$bpid"
wait "$bpid" 2>/dev/null || true
check "kill -9 during a backup (once its first container is uploaded): no new snapshot" \
    [ "$(rh snapshots "$URL2" --json)" = "$snaps_before" ]
out=$(rh verify "$URL2" 2>&1) && rc=0 || rc=$?
check "... the store verifies, and says the uploaded container is a stopped backup's, left for the next" \
    said 0 "no problems found" "which no snapshot uses and the next backup removes"
out=$(rh backup "$URL2" "$WORK/bigsrc" --name killed -q 2>&1) && rc=0 || rc=$?
check "... the next backup removes the dead backup's lock and its unreferenced container, and succeeds" \
    said 0 "its process on this host is gone" "left by a backup that did not finish"
rh restore "$URL2" killed "$WORK/w4" -q
check "... and restores exactly" cmp "$WORK/bigsrc/random.bin" "$WORK/w4/random.bin"
head -c $((150 << 20)) /dev/urandom >"$WORK/bigsrc/random.bin"
snaps_before=$(rh snapshots "$URL2" --json)
have=$(objects containers/data)
REHYDRATE_S3_RETRIES=1 "$REHYDRATE" backup "$URL2" "$WORK/bigsrc" --name downed -q >"$WORK/downed.log" 2>&1 & bpid=$!
wait_object containers/data "$have" && stop_s3
rc=0; wait "$bpid" || rc=$?
out=$(cat "$WORK/downed.log")
check "the server stopped during a backup: exit 1, the failed request and 'no snapshot was written'" \
    said 1 "Couldn't connect to server" "no snapshot was written"
start_s3
check "... no new snapshot" [ "$(rh snapshots "$URL2" --json)" = "$snaps_before" ]
check "... the store verifies" quiet rh verify "$URL2"
out=$(rh backup "$URL2" "$WORK/bigsrc" --name downed -q 2>&1) && rc=0 || rc=$?
check "... the next backup removes the unreferenced container and succeeds" said 0 "left by a backup that did not finish"
rh restore "$URL2" downed "$WORK/w5" -q
check "... and restores exactly" cmp "$WORK/bigsrc/random.bin" "$WORK/w5/random.bin"
check "... and the store verifies" quiet rh verify "$URL2"

# ---- a mount sees a new backup on SIGHUP ----
STORE=$URL2
start_fs "$WORK/fs3.log"
check "the mount reads a snapshot before the next backup" diff_tree "$SRC" "$MNT/b3"
head -c 300000 /dev/urandom >"$SRC/fresh.bin" # chunks that only the new index.db knows
rh backup "$URL2" "$SRC" --name after-mount -q
kill -HUP "$FS_PID"
for _ in $(seq 100); do [ -d "$MNT/after-mount" ] && break; sleep 0.1; done
check "a backup made while mounted (new chunks, a new index.db) shows up after SIGHUP and reads exactly" \
    diff_tree "$SRC" "$MNT/after-mount"
check "the daemon exits 0 on unmount" stop_fs
STORE=$URL

# ---- through a proxy that checks every signature and injects faults (tests/integration/s3proxy.py) ----
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PROXY_PIDS=""
# start_proxy PORT [TOKEN]
start_proxy() {
    "$PY" "$TOP_SRCDIR/tests/integration/s3proxy.py" "$1" "$PORT" S3RVER S3RVER ${2:+"$2"} 2>>"$WORK/s3proxy.log" &
    PROXY_PIDS="$PROXY_PIDS $!"
    for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$1/__proxy/stats" && return 0; sleep 0.05; done
    echo "# s3proxy did not start"; return 1
}
stop_proxies() { for p in $PROXY_PIDS; do kill "$p" 2>/dev/null || true; done; }
cleanup_hooks="$cleanup_hooks stop_proxies"
PP=$(free_port)
start_proxy "$PP"
URL3="s3:http://127.0.0.1:$PP/bucket/stores/three"
stats() { curl -sf "http://127.0.0.1:$PP/__proxy/stats"; }
check "a backup through a proxy that checks SigV4 signatures (a snapshot name with a space and a +)" \
    rh backup "$URL3" "$SRC" --name "one two+three" -q
rh restore "$URL3" "one two+three" "$WORK/p1" -q
check "... restores exactly through it" diff_tree "$SRC" "$WORK/p1"
check "... and every request's signature matched (ranged GETs, PUTs, HEADs, DELETEs, listings)" \
    eval 'stats | grep -q "mismatched 0 " && [ "$(stats | cut -d" " -f2)" -gt 20 ]'
out=$(AWS_SECRET_ACCESS_KEY=wrong "$REHYDRATE" snapshots "$URL3" 2>&1) && rc=0 || rc=$?
check "a wrong secret is refused by the checking proxy, and said" said 1 "access denied (HTTP 403 SignatureDoesNotMatch"
PT=$(free_port)
start_proxy "$PT" session-token-1
check "temporary credentials: AWS_SESSION_TOKEN is sent and signed" \
    quiet env AWS_SESSION_TOKEN=session-token-1 "$REHYDRATE" snapshots "s3:http://127.0.0.1:$PT/bucket/stores/three"
out=$("$REHYDRATE" snapshots "s3:http://127.0.0.1:$PT/bucket/stores/three" 2>&1) && rc=0 || rc=$?
check "... and a request without it is refused" said 1 "HTTP 403 InvalidToken"
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/fail/3" >/dev/null
out=$(rh backup "$URL3" "$SRC" --name faulty 2>&1 >/dev/null) && rc=0 || rc=$?
check "every third request answered 503: a backup retries and succeeds" said 0 "server busy or failing; trying again"
rh restore "$URL3" faulty "$WORK/p2" -q 2>/dev/null
check "... a restore too, exactly" diff_tree "$SRC" "$WORK/p2"
STORE=$URL3
start_fs "$WORK/fs4.log"
check "... and reads through a mount, exactly" diff_tree "$SRC" "$MNT/faulty"
check "the daemon exits 0 on unmount" stop_fs
STORE=$URL
check "... and the proxy did fail requests" eval '[ "$(stats | cut -d" " -f6)" -gt 10 ]'
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/fail/0" >/dev/null

# ---- a restore fetches what it previews ahead, several GETs at once, gaps joined ----
# 40 MiB that does not compress, in one data container (42 MiB with its records' heads): the engine
# reads it in eleven extents of at most 4 MiB; the prefetcher joins them into six pieces of at most
# 8 MiB and fetches REHYDRATE_S3_CONNECTIONS (5) of them at once. One more GET reads the stream map.
mkdir -p "$WORK/wide"
head -c $((40 << 20)) /dev/urandom >"$WORK/wide/random.bin"
rh backup "$URL3" "$WORK/wide" --name wide -q
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/delay/30" >/dev/null
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/reset" >/dev/null
rh restore "$URL3" wide "$WORK/wide-r1" -q
check "a restore over a 30 ms link restores 40 MiB exactly" cmp "$WORK/wide/random.bin" "$WORK/wide-r1/random.bin"
w=$(stats)
check "... with several GETs in flight at once (peak $(cut -d" " -f8 <<<"$w"))" [ "$(cut -d" " -f8 <<<"$w")" -ge 3 ]
check "... and its 4 MiB reads joined into 8 MiB GETs ($(cut -d" " -f10 <<<"$w") GETs of containers, not 11 or more)" \
    [ "$(cut -d" " -f10 <<<"$w")" -le 7 ]
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/reset" >/dev/null
REHYDRATE_S3_CONNECTIONS=1 "$REHYDRATE" restore "$URL3" wide "$WORK/wide-r2" -q
check "REHYDRATE_S3_CONNECTIONS=1: one request at a time, and the same bytes" \
    eval '[ "$(stats | cut -d" " -f8)" -eq 1 ] && cmp "$WORK/wide/random.bin" "$WORK/wide-r2/random.bin"'
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/delay/0" >/dev/null

# ---- a backup uploads sealed containers in the background, two at a time ----
# 140 MiB that does not compress: three containers. Each container's PUT takes 1.5 s more at the
# proxy; uploaded in the background, the second is sealed and on its way while the first still is.
mkdir -p "$WORK/wide2"
head -c $((140 << 20)) /dev/urandom >"$WORK/wide2/random.bin"
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/putdelay/1500" >/dev/null
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/reset" >/dev/null
ctr_objects() { (cd "$WORK/s3data/bucket/stores/three" && find containers -name '*._S3rver_object' | sort); }
ctr_objects >"$WORK/ctr-before"
check "a backup of three containers through a proxy that slows their PUTs succeeds" \
    env REHYDRATE_S3_UPLOAD_CUTOFF=16M "$REHYDRATE" backup "$URL3" "$WORK/wide2" --name wide2 -q
# What the new containers' sizes call for with an upload cutoff of 16 MiB: a multipart upload of
# ceil(size / 16 MiB) parts for each container over 16 MiB, one PUT for the others.
want_parts=0 want_uploads=0
for f in $(ctr_objects | comm -13 "$WORK/ctr-before" -); do
    size=$(stat -c %s "$WORK/s3data/bucket/stores/three/$f")
    [ "$size" -gt $((16 << 20)) ] || continue
    want_parts=$((want_parts + (size + (16 << 20) - 1) / (16 << 20))) want_uploads=$((want_uploads + 1))
done
check "... with two containers' uploads in flight at once (peak $(stats | cut -d" " -f14))" \
    [ "$(stats | cut -d" " -f14)" -ge 2 ]
check "... the two full containers as multipart uploads of 16 MiB parts ($(stats | cut -d" " -f16) parts of $want_parts, $(stats | cut -d" " -f18) uploads completed of $want_uploads)" \
    eval '[ "$want_uploads" -eq 2 ] && [ "$(stats | cut -d" " -f16)" -eq "$want_parts" ] && [ "$(stats | cut -d" " -f18)" -eq 2 ]'
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/putdelay/0" >/dev/null
rh restore "$URL3" wide2 "$WORK/wide2-r" -q
check "... and restores exactly" cmp "$WORK/wide2/random.bin" "$WORK/wide2-r/random.bin"
check "... and the store verifies" quiet rh verify "$URL3"
rm -rf "$WORK/wide2" "$WORK/wide2-r"
mkdir -p "$WORK/wide3"
head -c $((30 << 20)) /dev/urandom >"$WORK/wide3/random.bin"
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/reset" >/dev/null
check "with the default cutoff (64 MiB), a container of 30 MiB goes up in one PUT" \
    eval 'rh backup "$URL3" "$WORK/wide3" --name wide3 -q && [ "$(stats | cut -d" " -f16)" -eq 0 ] && [ "$(stats | cut -d" " -f18)" -eq 0 ]'
rm -rf "$WORK/wide3"

# ---- a mount's small reads of containers go by the 1 MiB block ----
# 300 small files, each its own stream map and packed data: read through a mount, record by record,
# they would take 300 GETs of stream maps and more of data; by the block, a few of each container.
mkdir -p "$WORK/small"
for i in $(seq 300); do head -c $((1000 + i * 7)) /dev/urandom >"$WORK/small/f$i"; done
rh backup "$URL3" "$WORK/small" --name small -q
STORE=$URL3
start_fs "$WORK/fs5.log" -o dir_readahead=0
curl -sf -X PUT "http://127.0.0.1:$PP/__proxy/reset" >/dev/null
check "300 small files read through a mount of an S3 store are exact" diff_tree "$WORK/small" "$MNT/small"
check "... with a few GETs of whole blocks, not one per record ($(stats | cut -d" " -f10) GETs of containers)" \
    [ "$(stats | cut -d" " -f10)" -le 8 ]
check "the daemon exits 0 on unmount" stop_fs
STORE=$URL

# ---- damage in one container of a store on S3 is named, and the rest is checked ----
UD="s3:http://127.0.0.1:$PORT/bucket/stores/damaged"
rh backup "$UD" "$SRC" --name d -q
obj="$WORK/s3data/bucket/stores/damaged/containers/data/00000001.ctr._S3rver_object"
printf 'XXXX' | dd of="$obj" bs=1 seek=0 conv=notrunc 2>/dev/null
out=$(rh verify "$UD" 2>&1) && rc=0 || rc=$?
check "a container whose header is damaged on S3: verify names it and the files it costs, exit 1" \
    eval 'said 1 "containers/data/00000001.ctr: header at offset 0" "damaged file: d:" "DAMAGE FOUND" && ! grep -q "cannot verify" <<<"$out"'
out=$(rh reindex "$UD" 2>&1) && rc=0 || rc=$?
check "... reindex names it, skips it and rebuilds the index from the others" \
    said 0 "containers/data/00000001.ctr: " "skipped; run 'rehydrate verify'" "rebuilt $UD/index.db"
out=$(rh verify "$UD" 2>&1) && rc=0 || rc=$?
check "... after which verify names the same damage and nothing about the index" \
    eval 'said 1 "containers/data/00000001.ctr: header at offset 0" "DAMAGE FOUND" && ! grep -q "index problem" <<<"$out"'

# ---- https with a private CA (AWS_CA_BUNDLE) ----
TLS_PORT=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
"$S3RVER" -d "$WORK/s3tls" -a 127.0.0.1 -p "$TLS_PORT" --key "$WORK/tls.key" --cert "$WORK/tls.crt" \
    --service-endpoint localhost --configure-bucket bucket --silent >>"$WORK/s3rver-tls.log" 2>&1 &
PROXY_PIDS="$PROXY_PIDS $!"
for _ in $(seq 200); do curl -s --cacert "$WORK/tls.crt" -o /dev/null "https://127.0.0.1:$TLS_PORT/" && break; sleep 0.05; done
UTLS="s3:https://127.0.0.1:$TLS_PORT/bucket/tls"
out=$("$REHYDRATE" backup "$UTLS" "$SRC" 2>&1) && rc=0 || rc=$?
check "https to a server whose certificate no system CA signed is refused, and AWS_CA_BUNDLE suggested" \
    said 1 "certificate" "set AWS_CA_BUNDLE"
check "with AWS_CA_BUNDLE naming its certificate, a backup over https succeeds" \
    quiet env AWS_CA_BUNDLE="$WORK/tls.crt" "$REHYDRATE" backup "$UTLS" "$SRC" --name tls -q
AWS_CA_BUNDLE="$WORK/tls.crt" "$REHYDRATE" restore "$UTLS" tls "$WORK/tls-r" -q
check "... and restores exactly" diff_tree "$SRC" "$WORK/tls-r"

# ---- a server that goes away ----
# A fresh mount that has read only metadata; the server stops; a read of file data fails with EIO and
# the mount stays; the server comes back; the same read succeeds, byte for byte.
REHYDRATE_S3_RETRIES=1 start_fs "$WORK/fs2.log"
check "a file's metadata is there before the server stops" [ "$(stat -c %s "$MNT/first snap/dir/big.bin")" = 5242880 ]
stop_s3
check_fails "with the server down, reading file data fails" bash -c "cat '$MNT/first snap/dir/big.bin' >/dev/null 2>&1"
check "... with EIO" bash -c "cat '$MNT/first snap/dir/big.bin' 2>&1 >/dev/null | grep -q 'Input/output error'"
check "... and the daemon said which request failed and why" grep -q "Couldn't connect to server" "$WORK/fs2.log"
check "... and the mount is still there" mountpoint -q "$MNT"
start_s3
check "after the server is back, the same file reads exactly" cmp "$SRC/dir/big.bin" "$MNT/first snap/dir/big.bin"
check "the daemon exits 0 on unmount" stop_fs
stop_s3
out=$(REHYDRATE_S3_RETRIES=0 "$REHYDRATE" backup "$URL2" "$SRC" 2>&1) && rc=0 || rc=$?
check "a backup against a stopped server fails at once with the reason" said 1 "Couldn't connect to server"
out=$(REHYDRATE_S3_RETRIES=2 "$REHYDRATE" snapshots "$URL" 2>&1) && rc=0 || rc=$?
check "a command against a stopped server retries, then fails with the reason" \
    eval 'said 1 "Couldn'"'"'t connect to server" && [ "$(grep -c "trying again" <<<"$out")" -eq 2 ]'

finish

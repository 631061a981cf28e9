#!/usr/bin/env bash
# contrib/deps.sh [--tests] — installs the Debian packages that building and testing rehydrate need, and
# the S3 server the tests start (s3rver, from the npm registry into contrib/s3/node_modules); with
# --tests also Ceph's monitor, OSD and radosgw, which tests/integration/s3-rgw.sh runs as a real S3
# server that checks signatures (contrib/rgw/cluster.sh). Run by quickstart.sh and, with --tests, by
# run-tests.sh; does nothing when everything is already installed.
PKGS="build-essential autoconf automake libtool pkg-config libuv1-dev libsqlite3-dev libzstd-dev
      libssl-dev libxxhash-dev libcurl4-openssl-dev check libfuse3-dev fuse3 attr python3 python3-xxhash util-linux ntfs-3g
      strace openssl"
[ "${1:-}" = --tests ] && PKGS="$PKGS ceph-mon ceph-osd ceph-common radosgw"
# The S3 tests' server (s3rver) comes from the npm registry: node and npm from Debian when missing.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# s3rver, pinned by contrib/s3/package-lock.json, into contrib/s3/node_modules.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$top/contrib/s3/node_modules/.bin/s3rver" ]; then
    echo "installing s3rver (npm ci in contrib/s3)"
    (cd "$top/contrib/s3" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || exit 1
fi

#!/usr/bin/env bash
# contrib/deps.sh — installs the Debian packages that building and testing rehydrate need. Sourced by
# quickstart.sh and run-tests.sh; does nothing when everything is already installed.
PKGS="build-essential autoconf automake libtool pkg-config libuv1-dev libsqlite3-dev libzstd-dev
      libssl-dev libxxhash-dev check libfuse3-dev fuse3 attr python3 python3-xxhash util-linux ntfs-3g
      strace"
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

#!/usr/bin/env bash
# contrib/build.sh [BUILDDIR] [configure options...] — configures (out of tree) and builds rehydrate.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$top/build}
shift || true
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi >/dev/null)
mkdir -p "$bdir"
cd "$bdir"
[ -f Makefile ] || "$top/configure" -q "$@"
make -s -j"$(nproc)"

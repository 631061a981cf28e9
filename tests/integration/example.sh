#!/usr/bin/env bash
# An outside program: contrib/examples/restore-stubs.c, the example of rh_restore_files(3), built against
# the *installed* library with pkg-config alone (make install into a scratch root), restores stubs
# through its own callbacks. Also: the man page's example is that file, and the installed library
# exports only rh_ symbols and installs only the public headers.
. "$(dirname "$0")/../lib.sh"

: "${BUILDDIR:=$(dirname "$REHYDRATE")}"
rh() { "$REHYDRATE" "$@"; }
INST=$WORK/inst
make -s -C "$BUILDDIR" install DESTDIR="$INST" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; exit 1; }
pc=$(find "$INST" -name librehydrate.pc | head -n 1)
check "make install puts librehydrate.pc in place" [ -n "$pc" ]
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$INST
libdir=$(pkg-config --variable=libdir librehydrate) # with the sysroot in front
check "only the public headers are installed" \
    [ "$(cd "$INST" && find . -name '*.h' | sed 's|.*/include/||' | sort | tr '\n' ' ')" = "rehydrate/rehydrate.h rehydrate/version.h " ]
nm -D --defined-only "$libdir/librehydrate.so" | awk '{print $3}' >"$WORK/symbols"
check "the shared library exports rh_restore_files and rh_plan_alloc" grep -qx 'rh_restore_files\|rh_plan_alloc' "$WORK/symbols"
check "... and only rh_ symbols" bash -c "! grep -v '^rh_' '$WORK/symbols'"

EX=$TOP_SRCDIR/contrib/examples/restore-stubs.c
check "the example in rh_restore_files(3) is contrib/examples/restore-stubs.c" cmp "$EX" <(
    awk '/^\.SH EXAMPLE/{f=1} f&&/^\.EX/{if(!done){p=1;next}} p&&/^\.EE/{p=0;done=1} p' "$TOP_SRCDIR/doc/rh_restore_files.3" |
    sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\e/\\/g')
# In a sanitizer build the library needs the sanitizer's runtime first: the program is built like it.
check "the example builds with -Wall -Wextra -Werror and pkg-config alone" \
    cc -std=c99 -Wall -Wextra -Werror ${SAN_CFLAGS:-} "$EX" -o "$WORK/restore-stubs" $(pkg-config --cflags --libs librehydrate)

SRC=$WORK/src
mkdir -p "$SRC/sub"
"$PY" -c 'import os,sys; d=os.urandom(3 << 20); open(sys.argv[1],"wb").write(d); open(sys.argv[2],"wb").write(d)' "$SRC/a" "$SRC/sub/a2"
echo small >"$SRC/sub/s"
STORE=$WORK/store
rh backup "$STORE" "$SRC" --name monday -q
rh restore "$STORE" monday "$WORK/r" --stubs-only -q
LD_LIBRARY_PATH=$libdir "$WORK/restore-stubs" "$STORE" "$WORK/r/a" "$WORK/r/sub/a2" "$WORK/r/sub/s" "$WORK/r/sub" "$WORK/r/nope" \
    >"$WORK/out" 2>"$WORK/err" && rc=0 || rc=$?
check "the program restores the stubs through its callbacks (exit 1: one path is missing)" [ "$rc" -eq 1 ]
check "... each file gets its result" [ "$(cat "$WORK/out")" = "$WORK/r/a: success
$WORK/r/sub/a2: success
$WORK/r/sub/s: success
$WORK/r/sub: not a stub, left alone
$WORK/r/nope: No such file or directory" ]
check "... the files hold their data" bash -c "cmp '$SRC/a' '$WORK/r/a' && cmp '$SRC/sub/a2' '$WORK/r/sub/a2' && cmp '$SRC/sub/s' '$WORK/r/sub/s'"
check "... its callbacks saw one stream-map and one data-container phase" \
    [ "$(grep -c 'engine needs' "$WORK/err")" -eq 2 ]

finish

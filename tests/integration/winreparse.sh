#!/usr/bin/env bash
# Integration test of src/windows/winreparse.c against the test tool's writer: windedup-mk --format
# mixed writes reparse points of all three formats; winreparse-dump parses each file's xattr with
# winreparse_parse. Reader and writer share no code, only the format.
. "$(dirname "$0")/../lib.sh"

: "${WINDEDUP_MK:=$(cd "$(dirname "$0")/../.." && pwd)/tests/tools/windedup-mk}"
: "${WINREPARSE_DUMP:=$(cd "$(dirname "$0")/../.." && pwd)/tests/tools/winreparse-dump}"
SRC=$WORK/src OUT=$WORK/out
mkdir -p "$SRC/d" "$OUT"
"$PY" - "$SRC" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(1414)
for i, n in enumerate([1, 15, 4096, 70000, 300000, 1 << 20, 123457, 999]):
    with open(os.path.join(d, 'd' if i % 2 else '', 'f%d' % i), 'wb') as f:
        f.write(r.randbytes(n))
PY
check "windedup-mk writes the tree in mixed formats, 0x0102 in parts" \
    "$WINDEDUP_MK" --format mixed --part-chunks 2 "$SRC" "$OUT"
files=$(cd "$SRC" && find . -type f | sort)
dump() { (cd "$OUT" && "$WINREPARSE_DUMP" user.ntfs_reparse_data $files >"$WORK/dump"); }
check "every optimized file's reparse xattr parses" dump
sizes_ok() {
    local f fmt size parts
    while IFS=$'\t' read -r f fmt size parts; do
        [ "$size" -eq "$(stat -c %s "$SRC/$f")" ] || { echo "$f: $size" >&2; return 1; }
        [ "$parts" -ge 1 ] || return 1
    done <"$WORK/dump"
    [ "$(wc -l <"$WORK/dump")" -eq "$(echo "$files" | wc -l)" ]
}
check "each parsed size equals the source file's size" sizes_ok
check "all three formats were seen" [ "$(cut -f2 "$WORK/dump" | sort -u | wc -l)" -eq 3 ]
check "some 0x0102 file has several parts" \
    awk -F'\t' '$2 == "0x0102" && $4 > 1 { found = 1 } END { exit !found }' "$WORK/dump"
finish

#!/usr/bin/env bash
# contrib/run-tests.sh — installs what the tests need, builds, and runs every test: the Check unit
# suites, the fuzz targets' corpora (replayed without libFuzzer) and the integration scripts, first in a
# normal build, then all of them again in an AddressSanitizer + UBSan build. Ends with one line
# "N passed, N failed" that counts every unit test case, fuzz replay and integration assertion; exits
# non-zero on any failure.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/contrib/deps.sh" --tests || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
# count_logs DIR: adds up Check summaries and TAP-style lines of the test logs under DIR.
count_logs() {
    local p f
    while read -r p f; do
        passed=$((passed + p)); failed=$((failed + f))
    done < <(find "$1" -name '*.log' ! -name 'test-suite.log' ! -name config.log -print0 |
        xargs -0 -r awk '
            /^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
                gsub(/,/, ""); c = $3; f = $5 + $7; p += c - f; fl += f; next }
            /^ok [0-9]+/ { p++ } /^not ok [0-9]+/ { fl++ }
            END { print p + 0, fl + 0 }')
}

run_build() { # run_build DIR TESTS [configure options]
    local bdir=$1 tests=$2; shift 2
    rm -rf "$bdir"
    if ! bash "$top/contrib/build.sh" "$bdir" --enable-werror "$@"; then
        echo "build failed in $bdir"; failed=$((failed + 1)); return
    fi
    # Test scripts print their own lines; make's exit status is checked through the counts and the
    # .trs results, so a crash without output still counts as a failure.
    (cd "$bdir" && make -s check TESTS="$tests" >/dev/null 2>&1)
    count_logs "$bdir"
    local crashed
    crashed=$(grep -l '^:test-result: \(FAIL\|ERROR\)' $(find "$bdir" -name '*.trs') 2>/dev/null |
        while read -r t; do grep -qE '^(not ok|[0-9]+%: Checks)' "${t%.trs}.log" || echo "$t"; done | wc -l)
    failed=$((failed + crashed))
    grep -h '^:test-result: \(FAIL\|ERROR\)' $(find "$bdir" -name '*.trs') 2>/dev/null | sed 's/^/  /' || true
    for t in $(grep -l '^:test-result: \(FAIL\|ERROR\)' $(find "$bdir" -name '*.trs') 2>/dev/null); do
        echo "---- ${t%.trs}.log"; tail -n 40 "${t%.trs}.log"
    done
}

cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null
unit=$(cd "$top" && ls tests/unit/check_*.c | sed "s/\.c$//" | tr "\n" " ")
fuzz=$(cd "$top" && ls tests/fuzz/fuzz-*.c | grep -v 'fuzz-main\.c$' | sed "s/\.c$//" | tr "\n" " ")
all="$unit $fuzz $(cd "$top" && ls tests/integration/*.sh | tr '\n' ' ')"
echo "== normal build: unit and integration tests"
run_build "$top/build-tests" "$all"
echo "== AddressSanitizer + UBSan build: unit and integration tests"
run_build "$top/build-asan" "$all" --enable-asan --enable-ubsan

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

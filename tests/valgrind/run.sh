#!/usr/bin/env bash
# Runs test suites under valgrind memcheck (slow: not part of quickstart.sh test).
#   tests/valgrind/run.sh [build dir, default build-valgrind] [suite ...]
# Suites default to the integration suites client_server and wire. The build
# dir is configured without sanitizers (valgrind and ASan exclude each other)
# and only the suites' executables are built. Fails when memcheck reports an
# error (invalid access, uninitialised use, a definite or indirect leak) that
# tests/valgrind/tether.supp does not list.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-valgrind}
[ $# -gt 0 ] && shift
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(client_server wire)

targets=()
for s in "${suites[@]}"; do targets+=(--target "${s}_test"); done
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_SANITIZE=OFF -DTETHER_BENCH=OFF \
    -DTETHER_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" "${targets[@]}"

failed=()
for s in "${suites[@]}"; do
    log="$build/valgrind-$s.log"
    echo "valgrind: $s (log: $log)" >&2
    # client_sigkill_and_restart re-executes /proc/self/exe, which under
    # valgrind is valgrind's own launcher: that one test cannot run here
    rc=0
    TT_SKIP=${TT_SKIP:-client_sigkill} TETHER_SOURCE_DIR=$PWD valgrind --tool=memcheck --error-exitcode=99 \
        --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --track-origins=yes --num-callers=30 --suppressions=tests/valgrind/tether.supp \
        --log-file="$log" "$build/tests/${s}_test" >"$build/valgrind-$s.out" 2>&1 || rc=$?
    tail -1 "$build/valgrind-$s.out" | sed "s/^/valgrind: $s: /" >&2
    grep -E "ERROR SUMMARY" "$log" | sed "s/^==[0-9]*== /valgrind: $s: /" >&2 || true
    if [ "$rc" -eq 99 ]; then
        echo "valgrind: $s: memcheck found errors (log: $log):" >&2
        grep -E "^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|[0-9,]+ .*bytes in)" "$log" |
            head -40 >&2 || true
        failed+=("$s")
    elif [ "$rc" -ne 0 ]; then
        # memcheck is clean, but the suite failed: usually a wait that is too
        # short for a program running 20-50 times slower
        echo "valgrind: $s: the suite failed under valgrind (output: $build/valgrind-$s.out):" >&2
        grep -E "^FAIL" "$build/valgrind-$s.out" >&2 || true
        failed+=("$s")
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "valgrind: failures in ${failed[*]}" >&2; exit 1; }
echo "valgrind: clean" >&2

#!/usr/bin/env bash
# tether quick start: installs what is missing (Debian 12 packages), builds, and
#   ./quickstart.sh demo [demo options]   runs the demo (the main job)
#   ./quickstart.sh test                  runs the whole test suite, then again under ASan+UBSan,
#                                         then cppcheck and each fuzz target for 45 s (docs/testing.md)
#   ./quickstart.sh build                 only builds (build/)
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

# squid, nginx-light and openssl: the field suites (tests/field/) run against the real things
packages=(build-essential cmake pkg-config libwebsockets-dev libsqlite3-dev libmsgpack-dev libssl-dev
          libuv1-dev libwebsockets-evlib-uv libcurl4-openssl-dev
          libpq-dev postgresql  # the PostgreSQL store; its tests start a private postgres (tests/support/pgtest.c)
          openssl squid nginx-light
          gnuplot-nox  # gnuplot-nox: the plots of `tether bench` (skipped without it)
          clang libclang-rt-14-dev llvm-14 # the fuzz targets: libFuzzer and the sanitizer runtimes, llvm-symbolizer
          cppcheck)    # static analysis (tests/static/run.sh)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    apt_install "${missing[@]}"
}

# The JavaScript client's tests (clients/js) need node and npm, and chromium for the browser test.
# Checked by command, not by package: node from another source (NodeSource) bundles its own npm,
# and Debian's npm package would conflict with it.
install_missing_js() {
    local missing=()
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    apt_install "${missing[@]}"
}

apt_install() {
    local missing=("$@")
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "quickstart: installing ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "quickstart: run as root or install sudo (need: ${missing[*]})" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() { # dir, extra cmake args... [--target name]
    local dir=$1 target=(); shift
    local args=()
    while [ $# -gt 0 ]; do
        if [ "$1" = --target ]; then target=(--target "$2"); shift 2; else args+=("$1"); shift; fi
    done
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "${args[@]}" >/dev/null
    cmake --build "$dir" -j"$(nproc)" "${target[@]}"
}

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
demo)
    install_missing
    build build
    exec build/tether demo "$@"
    ;;
test)
    install_missing
    build build
    # two suites at a time (TETHER_TEST_JOBS): most of them wait on sockets and
    # timers, and the longest start first (tests/CMakeLists.txt, COST)
    jobs=${TETHER_TEST_JOBS:-2}
    (cd build && ctest -j"$jobs" --output-on-failure --timeout 600 "$@")
    echo "quickstart: the JavaScript client (clients/js): npm ci, build, unit, integration and browser tests" >&2
    install_missing_js
    (cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm run build >/dev/null &&
        TETHER_BIN=$root/build/tether CHROMIUM=/usr/bin/chromium npm run test:all)
    echo "quickstart: the same suite under AddressSanitizer and UndefinedBehaviorSanitizer" >&2
    build build-asan -DTETHER_SANITIZE=ON -DTETHER_BENCH=OFF -DTETHER_EXAMPLES=OFF
    (cd build-asan && ALLOC_FAIL_SPARSE=${ALLOC_FAIL_SPARSE:-5} ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$root/tests/support/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest -j"$jobs" --output-on-failure --timeout 900 "$@")
    echo "quickstart: static analysis (cppcheck)" >&2
    tests/static/run.sh build
    echo "quickstart: fuzz targets, ${TETHER_FUZZ_SECONDS:-45} s each" >&2
    CC=clang build build-fuzz -DTETHER_FUZZ=ON -DTETHER_TESTS=OFF -DTETHER_BENCH=OFF -DTETHER_EXAMPLES=OFF \
        --target fuzz
    tests/fuzz/run.sh build-fuzz "${TETHER_FUZZ_SECONDS:-45}"
    ;;
build)
    install_missing
    build build "$@"
    ;;
*)
    echo "usage: $0 demo|test|build [args]" >&2
    exit 2
    ;;
esac

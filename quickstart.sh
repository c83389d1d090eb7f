#!/usr/bin/env bash
# tether quick start: installs what is missing (Debian 12 packages), builds, and
#   ./quickstart.sh demo [demo options]   runs the demo (the main job)
#   ./quickstart.sh test                  runs the whole test suite, then again under ASan+UBSan
#   ./quickstart.sh build                 only builds (build/)
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

# squid, nginx-light and openssl: the field suites (tests/field/) run against the real things
packages=(build-essential cmake pkg-config libwebsockets-dev libsqlite3-dev libmsgpack-dev libssl-dev
          libuv1-dev libwebsockets-evlib-uv
          openssl squid nginx-light
          gnuplot-nox) # gnuplot-nox: the plots of `tether bench` (skipped without it)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
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

build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
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
    (cd build && ctest --output-on-failure --timeout 600 "$@")
    echo "quickstart: the same suite under AddressSanitizer and UndefinedBehaviorSanitizer" >&2
    build build-asan -DTETHER_SANITIZE=ON -DTETHER_BENCH=OFF -DTETHER_EXAMPLES=OFF
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$root/tests/support/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure --timeout 900 "$@")
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

#!/usr/bin/env bash
# Installs tether into a temporary prefix, then builds the examples against it
# twice: with find_package(tether) and with pkg-config. Checks the installed
# package is usable as a user would use it.
set -euo pipefail
build_dir=$1
src_dir=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/tether/tether.h"
test -f "$tmp/prefix/lib/cmake/tether/tetherConfig.cmake"
test -f "$tmp/prefix/lib/pkgconfig/tether.pc"

# The shipped library holds no test tooling: no kill points, no fault relay.
# (The same words are in the tools' binary, so a miss here is not vacuous.)
for lib in "$tmp"/prefix/lib/libtether.so.* "$tmp/prefix/lib/libtether.a"; do
    if strings "$lib" | grep -Ei 'killpoint|kill point|chaos|relay'; then
        echo "test tooling in the installed $lib"; exit 1
    fi
done
strings "$build_dir/tether" | grep 'TETHER_KILLPOINT' >/dev/null || { echo "the check above looks for the wrong words"; exit 1; }

# find_package(tether) from a separate project
cmake -S "$src_dir/examples" -B "$tmp/ex" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/ex" >/dev/null
test -x "$tmp/ex/example_minimal_client"

# pkg-config, relocated prefix
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags tether)
libs=$(pkg-config --libs tether)
case "$cflags" in *"$tmp/prefix"*|*"pkgconfig/../.."*) ;; *) echo "pkg-config points elsewhere: $cflags"; exit 1 ;; esac
cat > "$tmp/v.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tether/tether.h>
int main(void) { return strcmp(tether_version(), TETHER_VERSION_STRING) != 0; }
C
cc "$tmp/v.c" $cflags $libs -Wl,-rpath,"$tmp/prefix/lib" -o "$tmp/v"
"$tmp/v"
echo "2 passed, 0 failed"

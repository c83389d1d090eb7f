#!/usr/bin/env bash
# Static analysis of src/ with cppcheck, as the compiler sees it: the include
# paths and defines come from the compile_commands.json of a configured build
# (CMAKE_EXPORT_COMPILE_COMMANDS=ON; quickstart.sh sets it).
#   tests/static/run.sh [build dir, default build]
# Checks: warning, portability, performance (bugs, not style). Fails on any
# finding not listed, with its reason, in tests/static/cppcheck.supp.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
db="$build/compile_commands.json"
if [ ! -f "$db" ]; then
    cmake -S . -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
fi
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
cppcheck --project="$db" --file-filter='src/*' \
    --enable=warning,portability,performance --inconclusive --std=c11 --library=posix \
    --suppressions-list=tests/static/cppcheck.supp \
    --error-exitcode=1 -j"$(nproc)" --cppcheck-build-dir="$cache" --quiet \
    --template='{file}:{line}: {severity}/{id}: {message}'
echo "static: cppcheck found nothing" >&2

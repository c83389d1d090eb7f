#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on any finding.
#   tests/fuzz/run.sh <build dir> [seconds per target, default 45] [corpus dir]
# The build dir is configured with CC=clang -DTETHER_FUZZ=ON and built with
# --target fuzz. New inputs go to <corpus dir>/<target> (default: a temporary
# directory removed at the end); pass a directory outside the tree to keep the
# corpus between runs (docs/testing.md: fuzzing for hours). Crash inputs are
# kept in <corpus dir>/findings whatever happens.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh <build dir> [seconds per target] [corpus dir]}
secs=${2:-45}
bin=$(cd "$build/tests/fuzz" && pwd)
if [ -n "${3:-}" ]; then
    corpus=$3
    mkdir -p "$corpus"
else
    corpus=$(mktemp -d)
    trap 'rm -rf "$corpus"' EXIT
fi
findings=${FUZZ_FINDINGS:-$corpus/findings}
mkdir -p "$findings"
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)

# target, max input length, dictionary
targets=("frame 4096 frame.dict" "engine 8192 frame.dict" "proxy 2048 proxy.dict"
         "handshake 2048 handshake.dict" "httpcarry 16384 httpcarry.dict")
# FUZZ_JOBS targets at a time (default: one per core, at most 2), each with
# its full time: the run takes about secs * targets / jobs.
jobs=${FUZZ_JOBS:-$(nproc)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
[ "$jobs" -le 2 ] || jobs=2

run_one() { # name maxlen dict: 0 when clean, 1 on a finding
    local name=$1 maxlen=$2 dict=$3
    mkdir -p "$corpus/$name"
    local seeds=()
    [ -d "$bin/seeds/$name" ] && seeds+=("$bin/seeds/$name")
    [ -d "$src/seeds/$name" ] && seeds+=("$src/seeds/$name")
    local log="$corpus/$name.log"
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1${symbolizer:+:external_symbolizer_path=$symbolizer} \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$bin/${name}_fuzz" -max_total_time="$secs" -max_len="$maxlen" -dict="$src/$dict" \
           -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/$name-" \
           "$corpus/$name" "${seeds[@]}" >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$log" |
            sed "s/^/fuzz: $name /" >&2
        return 0
    fi
    echo "fuzz: $name FOUND A PROBLEM (input saved under $findings):" >&2
    grep -v '^"' "$log" | grep -vi "uses:" | tail -60 >&2
    return 1
}

failed=()
pids=()
names=()
collect() { # waits for the oldest running target
    if ! wait "${pids[0]}"; then
        failed+=("${names[0]}")
    fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
}
for t in "${targets[@]}"; do
    read -r name maxlen dict <<<"$t"
    [ ${#pids[@]} -lt "$jobs" ] || collect
    echo "fuzz: $name for ${secs}s" >&2
    run_one "$name" "$maxlen" "$dict" &
    pids+=($!)
    names+=("$name")
done
while [ ${#pids[@]} -gt 0 ]; do
    collect
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in: ${failed[*]}" >&2
    # keep the inputs even when the corpus is temporary
    if [ -z "${3:-}" ]; then
        keep=$(mktemp -d /tmp/tether-fuzz-findings.XXXXXX)
        cp -r "$findings"/. "$keep"/ 2>/dev/null || true
        echo "fuzz: crash inputs copied to $keep" >&2
    fi
    exit 1
fi
echo "fuzz: no findings" >&2

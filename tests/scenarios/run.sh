#!/usr/bin/env bash
# The scenario suite in CI: the relay's schedule is a function of its seed (at
# the command line), the example timelines parse and read back, then the quick
# suite runs every scenario once, plus the flaky-wifi timeline.
# Usage: run.sh PATH_TO_TETHER. TETHER_SCENARIO_SEED overrides the seed.
set -u
T=${1:?usage: run.sh PATH_TO_TETHER}
DIR=$(cd "$(dirname "$0")" && pwd)
SEED=${TETHER_SCENARIO_SEED:-20240601}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-scenarios-XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
failed=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failed=1; }

# The same seed gives the same schedule; another seed another one.
a=$("$T" chaos --plan 200 --seed 7 --random 100:900 --kinds all)
b=$("$T" chaos --plan 200 --seed 7 --random 100:900 --kinds all)
c=$("$T" chaos --plan 200 --seed 8 --random 100:900 --kinds all)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && [ "$(echo "$a" | wc -l)" -eq 201 ]; then
    ok same_seed_same_schedule
else
    bad same_seed_same_schedule
fi

# Every timeline parses, and its plan is itself a timeline that reads back the same.
for f in "$DIR"/*.chaos; do
    name=$(basename "$f")
    if p1=$("$T" chaos --plan 1 --seed 1 --scenario "$f" 2>"$WORK/err") &&
        echo "$p1" >"$WORK/plan.chaos" &&
        p2=$("$T" chaos --plan 1 --seed 1 --scenario "$WORK/plan.chaos") && [ "$p1" = "$p2" ]; then
        ok "timeline_$name"
    else
        bad "timeline_$name"
        sed 's/^/  | /' "$WORK/err"
    fi
done

# The verdict catches what it must: a kept run passes --verify as it is, and
# fails once its records show a duplicate, a loss, a corrupt payload, or a
# repeat without the redelivered flag.
verdict() { # verdict WANT(PASS|FAIL) NAME
    local out
    out=$("$T" scenario --verify "$K" 2>&1)
    case "$out" in
    *": $1"*) ok "verify_$2" ;;
    *) bad "verify_$2"; echo "$out" | sed 's/^/  | /' ;;
    esac
    cp "$WORK/server.rec" "$K/server.rec"
    cp "$WORK/client.rec" "$K/client.rec"
}
if "$T" scenario --only client-kill --seed "$SEED" --keep --dir "$WORK/keep" >"$WORK/keep.out" 2>&1; then
    K="$WORK/keep/000-client-kill"
    cp "$K/server.rec" "$K/client.rec" "$WORK/"
    verdict PASS untouched
    awk '/^D /{n++; if (n == 300) print} {print}' "$WORK/server.rec" >"$K/server.rec"
    verdict FAIL duplicate
    awk '/^D /{n++; if (n == 500) next} {print}' "$WORK/server.rec" >"$K/server.rec"
    verdict FAIL loss
    awk '/^D /{n++; if (n == 700) $5 = 0} {print}' "$WORK/server.rec" >"$K/server.rec"
    verdict FAIL corrupt_payload
    # the first repeat after a restart that carries the flag, without it
    awk '/^D / && !done {if ($3 <= hi && $4 == 1) {$4 = 0; done = 1}; if ($3 > hi) hi = $3} {print}' \
        "$WORK/client.rec" >"$K/client.rec"
    if cmp -s "$WORK/client.rec" "$K/client.rec"; then
        echo "skip verify_unflagged_repeat (this run redelivered nothing to the client)"
    else
        verdict FAIL unflagged_repeat
    fi
else
    bad scenario_for_the_verdict_tests
    sed 's/^/  | /' "$WORK/keep.out"
fi

# The quick suite (bounded: each scenario has its own deadline too).
if timeout 540 "$T" scenario --quick --seed "$SEED" --timeline "$DIR/flaky-wifi.chaos"; then
    ok scenarios_quick
else
    bad scenarios_quick
fi
exit $failed

#!/usr/bin/env bash
# tether bench's PostgreSQL rows (bench/README.md, "PostgreSQL and several
# instances"): bad values of --pg and --fleet-sessions are refused with a
# message, then a tiny quick run with --pg auto (a private PostgreSQL the
# bench starts and removes itself) runs every fleet row to completion: each
# row ok (every message delivered in order and acknowledged), its figures and
# ratios present. Timings are never asserted.
# Usage: bench_pg_test.sh TETHER_BINARY
set -u
BIN=${1:?usage: bench_pg_test.sh TETHER_BINARY}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fails=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# refused: exit status 2 (1 for a server that cannot start) and the message
refused() {
    local want_rc=$1 want_msg=$2
    shift 2
    local out rc
    out=$("$BIN" bench --out "$D/refused" --no-plots "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want_rc" ] || ! printf '%s' "$out" | grep -qF -- "$want_msg"; then
        fail "bench $* -> exit $rc, wanted $want_rc and '$want_msg'; said: $out"
    fi
    if [ -e "$D/refused/results.csv" ]; then
        fail "bench $* ran something"
    fi
}

refused 2 "--pg wants a postgresql:// URI or auto, not 'mysql://db'" --pg mysql://db
refused 2 "--pg wants a postgresql:// URI or auto, not ''" --pg ""
refused 2 "--pg wants a postgresql:// URI or auto, not 'Auto'" --pg Auto
for v in 0 2 4 64 66 -3 3.0x abc ""; do
    refused 2 "--fleet-sessions wants a multiple of 3 from 3 to 63" --pg auto --fleet-sessions "$v"
done
refused 2 "--fleet-sessions goes with --pg URI" --fleet-sessions 6
# the many-session flags name themselves and their range (they said "bad value '0'")
for v in 0 1000001 1.5 abc ""; do
    refused 2 "--sessions wants a whole number from 1 to 1000000, not '$v'" --sessions "$v"
done
for v in -1 1001 x; do
    refused 2 "--rate wants messages per second per session, from 0 to 1000, not '$v'" --rate "$v"
done
for v in 0 65 2.5; do
    refused 2 "--drivers wants a whole number from 1 to 64, not '$v'" --drivers "$v"
done
for v in 0 3601; do
    refused 2 "--duration wants whole seconds from 1 to 3600, not '$v'" --duration "$v"
done
TETHER_PG_BINDIR=/nonexistent/pg/bin refused 1 \
    "--pg auto: PostgreSQL binaries (initdb, postgres) not found in /nonexistent/pg/bin" \
    --pg auto --quick --only s3

# a database that does not answer: the PostgreSQL rows fail with libpq's
# reason, the run exits 1, and the password is in no result file
"$BIN" bench --quick --only pg/64/s3/i3 --scale 0.01 --no-plots --out "$D/down" \
    --pg "postgresql://u:hunter2@127.0.0.1:1/x" >"$D/down.txt" 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "an unreachable database: exit $rc, wanted 1"
grep -q '^  pg/64/s3/i3: 0 of the runs succeeded: server did not start: .*cannot connect to PostgreSQL at 127.0.0.1:1/x as user u' \
    "$D/down.txt" || fail "an unreachable database: no reason given: $(cat "$D/down.txt")"
grep -q '^raw/64/s3,fleet,.*,1,1,' "$D/down/results.csv" || fail "the raw row did not run beside it"
grep -rq hunter2 "$D/down" && fail "the password is in the result files"

# the rows themselves, tiny: 3 sessions, about 3,000 / 1,500 messages per row
t0=$(date +%s)
"$BIN" bench --quick --only /s3 --pg auto --scale 0.02 --no-plots --out "$D/run" >"$D/out.txt" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "the quick run exited $rc"
csv="$D/run/results.csv"
json="$D/run/results.json"
for size in 64 512; do
    for row in raw/$size/s3 normal/$size/s3 pg/$size/s3 pg/$size/s3/i3; do
        grep -q "^$row,fleet,\"[^\"]*\",[a-z]*,$size,[0-9]*,[0-9]*,0,0,0,0,1,1," "$csv" ||
            fail "$row: not one successful run in results.csv"
        line=$(grep -o "{\"name\":\"$row\"[^}]*}[^}]*}[^}]*}[^}]*}[^}]*}" "$json" | head -1)
        [ -n "$line" ] || { fail "$row: not in results.json"; continue; }
        printf '%s' "$line" | grep -q '"msgs_per_s":[0-9]' || fail "$row: no msg/s"
        printf '%s' "$line" | grep -q '"ratio_to_raw":[0-9]' || fail "$row: no ratio to raw"
        printf '%s' "$line" | grep -q '"server_cpu_s_per_M":[0-9]' || fail "$row: no server CPU"
        inst=1
        case $row in */i3) inst=3 ;; esac
        printf '%s' "$line" | grep -q "\"sessions\":3,\"instances\":$inst," ||
            fail "$row: not 3 sessions over $inst instance(s)"
        case $row in
        raw/*) ;;
        *)
            printf '%s' "$line" | grep -q '"acks_per_msg":0\.[0-9]' ||
                fail "$row: no ACKs counted"
            printf '%s' "$line" | grep -q '"full_send_to_ack_us":{"p50":[0-9]' ||
                fail "$row: no send->ack latency"
            ;;
        esac
        case $row in
        pg/*)
            printf '%s' "$line" | grep -q '"ratio_to_sqlite":[0-9]' || fail "$row: no ratio to SQLite"
            printf '%s' "$line" | grep -q '"pg_wal_b_per_msg":[0-9]' || fail "$row: no WAL figure"
            printf '%s' "$line" | grep -q '"pg_cpu_s_per_M":[0-9]' || fail "$row: no database CPU"
            ;;
        esac
        case $row in
        */i3) printf '%s' "$line" | grep -q '"ratio_to_one_instance":[0-9]' ||
            fail "$row: no ratio to one instance" ;;
        *) printf '%s' "$line" | grep -q '"ratio_to_one_instance":null' ||
            fail "$row: a ratio to one instance where there is none" ;;
        esac
    done
done
grep -q '^PostgreSQL store and several sessions, same run' "$D/out.txt" || fail "no PostgreSQL table"
grep -q 'pg/512/s3/i3 *3 *3 ' "$D/out.txt" || fail "the table has no three-instance row"
# the private server is gone: its directory removed, no process left
dir=$(sed -n 's/^tether bench: --pg auto: PostgreSQL ([^)]*) in \([^,]*\), fsync on.*/\1/p' "$D/out.txt")
[ -n "$dir" ] || fail "the run did not say where its PostgreSQL was"
[ -n "$dir" ] && [ -e "$dir" ] && fail "$dir is still there"
[ -n "$dir" ] && pgrep -f -- "-D $dir/data" >/dev/null && fail "a postgres of $dir still runs"
echo "quick run: $(($(date +%s) - t0)) s"

if [ "$fails" -ne 0 ]; then
    echo "--- bench output ---"
    cat "$D/out.txt"
    echo "$fails failure(s)"
    exit 1
fi
echo "bench_pg: all checks passed"

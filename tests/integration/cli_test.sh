#!/usr/bin/env bash
# End-to-end tests of the `tether` command line: usage errors, a serve + send
# round trip, a killed sender's backlog finished by a new run on the same store,
# status, and the demo. Usage: cli_test.sh PATH_TO_TETHER
set -u

T=${1:?usage: cli_test.sh PATH_TO_TETHER}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-cli-test-XXXXXX") || exit 1
[ -n "${KEEP_WORK:-}" ] && echo "work dir: $WORK"
PIDS=()
passed=0
failed=0

# Every process started here is stopped by its PID, whatever way the script ends.
forget_pid() { # after it was reaped
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" != "$1" ] && keep+=("$p")
    done
    PIDS=("${keep[@]}")
}
stop_pid() {
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    forget_pid "$1"
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

# expect_rc WANT CMD...: runs CMD (bounded) and compares its exit status.
expect_rc() {
    local want=$1 rc
    shift
    timeout 30 "$@" >"$WORK/last.out" 2>"$WORK/last.err" </dev/null
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "  '$*' exited $rc, expected $want; stderr:" >&2
        sed 's/^/  | /' "$WORK/last.err" >&2
        return 1
    fi
}

# wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# start_server NAME [ARGS...]: serve on a free port; sets SPID and PORT.
start_server() {
    local name=$1
    shift
    rm -f "$WORK/$name.port"
    "$T" serve --listen 127.0.0.1:0 --port-file "$WORK/$name.port" "$@" \
        >>"$WORK/$name.out" 2>>"$WORK/$name.err" </dev/null &
    SPID=$!
    PIDS+=("$SPID")
    if ! wait_for 20 test -s "$WORK/$name.port"; then
        echo "  server $name did not write its port" >&2
        return 1
    fi
    PORT=$(cat "$WORK/$name.port")
}

# stop_gracefully PID: SIGTERM, then up to 30 s to exit; returns its exit status.
stop_gracefully() {
    kill -TERM "$1" 2>/dev/null
    if ! wait_for 30 not_running "$1"; then
        echo "  process $1 ignored SIGTERM" >&2
        stop_pid "$1"
        return 1
    fi
    wait "$1"
    local rc=$?
    forget_pid "$1"
    return $rc
}
not_running() { # gone, or a zombie waiting to be reaped
    ! kill -0 "$1" 2>/dev/null || grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

session_of() { # the session id in a client store
    "$T" status --db "$1" --json | sed -n 's/.*"sessions":\[{"id":"\([0-9a-f]*\)".*/\1/p'
}

count_lines() { # count_lines FILE PATTERN
    grep -cF -- "$2" "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- usage errors
usage_errors() {
    expect_rc 2 "$T" &&
        expect_rc 2 "$T" nosuch &&
        expect_rc 2 "$T" send &&
        expect_rc 2 "$T" send http://127.0.0.1:1/ &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --count 5 --until-seq 5 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --pattern seq --size 4 --count 1 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --count -3 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --durability maybe &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --transport pigeon &&
        expect_rc 2 "$T" serve --listen nope &&
        expect_rc 2 "$T" serve --listen 127.0.0.1:70000 &&
        expect_rc 2 "$T" serve --bogus &&
        expect_rc 2 "$T" status &&
        expect_rc 2 "$T" status --db x extra &&
        expect_rc 2 "$T" demo --kills 0 &&
        expect_rc 2 "$T" demo --cuts-ms 5 &&
        expect_rc 2 "$T" demo --messages 0 &&
        expect_rc 2 "$T" demo extra
}
check usage_errors_exit_2 usage_errors

# The fleet scenarios' flags are checked before anything runs, each refusal saying why.
fleet_flags() {
    expect_rc 2 "$T" scenario --only fleet-kill && grep -q 'fleet-kill needs --pg URI' "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg /tmp/x.db --only fleet-kill &&
        grep -q -- "--pg wants a postgresql:// URI or auto, not '/tmp/x.db'" "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg postgresql://127.0.0.1:1/x --only fleet-pg-restart &&
        grep -q 'fleet-pg-restart needs --pg-data DIR' "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg-data "$WORK" --only cuts &&
        grep -q -- '--pg-data needs --pg URI' "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg postgresql://127.0.0.1:1/x --pg-data "$WORK" &&
        grep -q "no readable postmaster.opts" "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --only fleet-nothing --pg postgresql://127.0.0.1:1/x &&
        grep -q "no scenario 'fleet-nothing'" "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg auto --pg-data "$WORK" --only fleet-kill &&
        grep -q -- '--pg auto brings its own server' "$WORK/last.err" &&
        expect_rc 2 "$T" scenario --pg automatic --only fleet-kill &&
        grep -q -- "--pg wants a postgresql:// URI or auto, not 'automatic'" "$WORK/last.err" &&
        expect_rc 0 "$T" scenario --list && grep -q '^fleet-fence ' "$WORK/last.out"
}
check scenario_fleet_flags_refused_with_reasons fleet_flags

# --page-size takes only what store_page_size takes, before anything runs or
# is written (--only matching nothing keeps a regression from starting a
# benchmark); the peer role it hands the value to checks it again.
bench_page_size() {
    local v
    for v in 1000 256 131072 3 abc -512 1024.5 ''; do
        expect_rc 2 "$T" bench --page-size "$v" --only no-such-row --out "$WORK/bench-ps" &&
            grep -qF -- "--page-size wants a SQLite page size: a power of two from 512 to 65536, or 0 for SQLite's default (not '$v')" \
                "$WORK/last.err" || return 1
    done
    [ ! -e "$WORK/bench-ps" ] || { echo "  a refused --page-size created $WORK/bench-ps" >&2; return 1; }
    expect_rc 2 "$T" bench --role sqlite --db "$WORK/ps.db" --count 10 --page-size 1000 &&
        grep -q 'bad peer option' "$WORK/last.err" && [ ! -e "$WORK/ps.db" ]
}
if "$T" bench --help >/dev/null 2>&1; then
    check bench_page_size_refuses_what_sqlite_would_not_take bench_page_size
else
    echo "SKIP bench_page_size_refuses_what_sqlite_would_not_take (built without TETHER_BENCH)"
fi

help_texts() {
    local cmd
    expect_rc 0 "$T" --help && grep -q "Exit status" "$WORK/last.out" || return 1
    for cmd in serve send status demo chaos scenario; do
        expect_rc 0 "$T" "$cmd" --help || return 1
        grep -q "Exit status" "$WORK/last.out" || { echo "  $cmd --help lacks exit codes" >&2; return 1; }
    done
}
check help_exits_0_and_documents_exit_codes help_texts

# Each failure has its own exit status and the library's code (status --help).
status_codes() {
    expect_rc 3 "$T" status --db "$WORK/none.db" && grep -q 'TETHER_ENOTFOUND' "$WORK/last.err" &&
        [ ! -e "$WORK/none.db" ] || return 1
    printf 'not a database, just text, long enough to fill a header ..........\n' >"$WORK/junk.db"
    expect_rc 5 "$T" status --db "$WORK/junk.db" && grep -q 'TETHER_ESTORE_CORRUPT' "$WORK/last.err" ||
        return 1
    expect_rc 4 "$T" status --db "$WORK" && grep -q 'TETHER_ESTORE_SCHEMA' "$WORK/last.err"
}
check status_exit_codes_name_the_failure status_codes

# The empty-store rule (docs/config.md): a zero-byte file is a new, empty store,
# for status as for send.
zero_byte() {
    : >"$WORK/zero-c.db"
    chmod 640 "$WORK/zero-c.db"
    expect_rc 0 "$T" status --db "$WORK/zero-c.db" &&
        grep -q '^role: *none (empty' "$WORK/last.out" && grep -q '^sessions: *0$' "$WORK/last.out" ||
        return 1
    expect_rc 0 "$T" status --db "$WORK/zero-c.db" --json --check &&
        grep -qF '"role":"none","check":"ok","session_count":0,' "$WORK/last.out" || return 1
    [ ! -s "$WORK/zero-c.db" ] || { echo "  status wrote to the empty file" >&2; return 1; }
    expect_rc 0 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/zero-c.db" --count 3 --size 8 \
        --timeout-ms 30000 --quiet || return 1
    expect_rc 0 "$T" status --db "$WORK/zero-c.db" &&
        grep -q '^role: *client$' "$WORK/last.out" && grep -q '^  peer_acked: *3$' "$WORK/last.out" &&
        [ "$(stat -c %a "$WORK/zero-c.db")" = 640 ]
}

# ---------------------------------------------------------------- serve + send
round_trip() {
    start_server s1 --db "$WORK/s1.db" || return 1
    printf 'hello\nw\303\266rld\n"quoted"\n' |
        timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c1.db" --timeout-ms 30000 \
            >"$WORK/c1.out" 2>"$WORK/c1.err"
    local rc=$?
    [ "$rc" -eq 0 ] || { echo "  send exited $rc:" >&2; sed 's/^/  | /' "$WORK/c1.err" >&2; return 1; }
    local sid
    sid=$(session_of "$WORK/c1.db")
    [ ${#sid} -eq 32 ] || { echo "  no session id in the client store" >&2; return 1; }
    # Acked means the server's callback returned, so the lines are already printed.
    local want
    for want in \
        "{\"session\":\"$sid\",\"seq\":1,\"redelivered\":false,\"text\":\"hello\"}" \
        "{\"session\":\"$sid\",\"seq\":2,\"redelivered\":false,\"text\":\"w$(printf '\303\266')rld\"}" \
        "{\"session\":\"$sid\",\"seq\":3,\"redelivered\":false,\"text\":\"\\\"quoted\\\"\"}"; do
        grep -qxF -- "$want" "$WORK/s1.out" || { echo "  missing line: $want" >&2; return 1; }
    done
    [ "$(count_lines "$WORK/s1.out" "$sid")" -eq 3 ] || { echo "  not exactly 3 lines" >&2; return 1; }
}
check serve_send_stdin_round_trip round_trip

# Not valid UTF-8 ("a", 0xff, "b"): printed as base64.
binary_payload() {
    printf 'a\377b\n' | timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c4.db" \
        --timeout-ms 30000 --quiet >/dev/null 2>"$WORK/c4.err" || return 1
    local sid
    sid=$(session_of "$WORK/c4.db")
    grep -qxF "{\"session\":\"$sid\",\"seq\":1,\"redelivered\":false,\"base64\":\"Yf9i\"}" \
        "$WORK/s1.out"
}
check invalid_utf8_printed_as_base64 binary_payload
check zero_byte_store_is_empty_for_status_and_new_for_send zero_byte

check server_stops_cleanly_on_sigterm stop_gracefully "$SPID"

two_echoes() { [ "$(count_lines "$WORK/c3.out" '"text":"msg ')" -ge 2 ]; }
echo_linger() {
    start_server s3 --db "$WORK/s3.db" --echo --quiet || return 1
    "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c3.db" --count 2 --size 16 --linger \
        --timeout-ms 30000 >"$WORK/c3.out" 2>"$WORK/c3.err" </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 30 two_echoes || { echo "  no echo arrived" >&2; stop_pid "$cpid"; return 1; }
    stop_gracefully "$cpid" || { echo "  the lingering send failed:" >&2; sed 's/^/  | /' "$WORK/c3.err" >&2; return 1; }
    grep -qF '"seq":1,"redelivered":false,"text":"msg 1 xxxxxxxxxx"}' "$WORK/c3.out" &&
        grep -qF '"seq":2,"redelivered":false,"text":"msg 2 xxxxxxxxxx"}' "$WORK/c3.out"
}
check echo_to_lingering_sender echo_linger
stop_gracefully "$SPID"

# ------------------------------------------------- a killed sender's backlog
fifty_pending() { "$T" status --db "$WORK/c2.db" --json 2>/dev/null | grep -qF '"pending":50,'; }
backlog() {
    # The server is down: the sender stores 50 messages and keeps retrying.
    "$T" send ws://127.0.0.1:"$PORT"/ --db "$WORK/c2.db" --count 50 --size 16 \
        --timeout-ms 60000 >/dev/null 2>"$WORK/c2.err" </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 30 fifty_pending ||
        { echo "  the sender did not store 50 messages" >&2; stop_pid "$cpid"; return 1; }
    stop_pid "$cpid" # SIGKILL
    start_server s2 --db "$WORK/s2.db" || return 1
    timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c2.db" --count 0 --timeout-ms 30000 \
        >/dev/null 2>"$WORK/c2b.err" </dev/null ||
        { echo "  the second run failed:" >&2; sed 's/^/  | /' "$WORK/c2b.err" >&2; return 1; }
    local sid
    sid=$(session_of "$WORK/c2.db")
    # The backlog may carry the redelivered flag: the first run might have sent it.
    [ "$(count_lines "$WORK/s2.out" "\"session\":\"$sid\"")" -eq 50 ] &&
        grep -qE "^\{\"session\":\"$sid\",\"seq\":50,\"redelivered\":(true|false),\"text\":\"msg 50 x{9}\"\}$" \
            "$WORK/s2.out"
}
check killed_sender_backlog_finished_by_next_run backlog

until_seq() {
    timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c2.db" --until-seq 60 --size 16 \
        --timeout-ms 30000 >/dev/null 2>"$WORK/c2c.err" </dev/null || return 1
    grep -qF '"seq":60,"redelivered":false,"text":"msg 60 xxxxxxxxx"}' "$WORK/s2.out" &&
        [ "$(grep -c '"seq":5[1-9],\|"seq":60,' "$WORK/s2.out")" -eq 10 ]
}
check until_seq_continues_the_stream until_seq

status_output() {
    expect_rc 0 "$T" status --db "$WORK/c2.db" || return 1
    grep -q '^role: *client$' "$WORK/last.out" &&
        grep -q '^  out_last: *60$' "$WORK/last.out" &&
        grep -q '^  peer_acked: *60$' "$WORK/last.out" &&
        grep -q '^  pending: *0 messages, 0 bytes$' "$WORK/last.out" &&
        grep -q '^  established: *yes$' "$WORK/last.out" || {
        sed 's/^/  | /' "$WORK/last.out" >&2
        return 1
    }
    expect_rc 0 "$T" status --db "$WORK/c2.db" --json || return 1
    grep -qF '"role":"client","session_count":1,' "$WORK/last.out" &&
        grep -qF '"out_last":60,"peer_acked":60,"recv_cursor":0,"pending":0,"pending_bytes":0}' \
            "$WORK/last.out" || return 1
    expect_rc 0 "$T" status --db "$WORK/s2.db" --json || return 1
    grep -qF '"role":"server","session_count":1,' "$WORK/last.out" &&
        grep -qF '"recv_cursor":60,' "$WORK/last.out"
}
check status_shows_role_and_sequence_numbers status_output

# A client store rolled back behind what the server committed (a -wal lost
# with its -shm, an old backup): the next handshake reports a mismatch.
rolled_back() {
    cp "$WORK/c2.db" "$WORK/c2-old.db" || return 1 # out_last 60
    timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c2.db" --until-seq 65 --size 16 \
        --timeout-ms 30000 >/dev/null 2>"$WORK/c2d.err" </dev/null || return 1
    cp "$WORK/c2-old.db" "$WORK/c2.db" && rm -f "$WORK/c2.db-wal" "$WORK/c2.db-shm" || return 1
    expect_rc 1 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/c2.db" --count 1 --size 16 \
        --timeout-ms 30000 || return 1
    grep -qi 'mismatch' "$WORK/last.err" || { sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
}
check rolled_back_client_store_is_a_mismatch rolled_back
stop_gracefully "$SPID"

# --check reads every page: a damaged page of the outbox is CORRUPT (exit 5)
# while the sessions still read. The server store s2.db was closed cleanly,
# so its last page is the outbox's root (schema order: meta, sessions, outbox).
damaged_page() {
    cp "$WORK/s2.db" "$WORK/dmg.db" || return 1
    expect_rc 0 "$T" status --db "$WORK/dmg.db" --check || return 1
    local pages=$(($(stat -c %s "$WORK/dmg.db") / 4096))
    printf '\000' | dd of="$WORK/dmg.db" bs=1 seek=$(((pages - 1) * 4096)) conv=notrunc status=none
    expect_rc 0 "$T" status --db "$WORK/dmg.db" || return 1
    expect_rc 5 "$T" status --db "$WORK/dmg.db" --check &&
        grep -q 'TETHER_ESTORE_CORRUPT.*integrity check' "$WORK/last.err"
}
check status_check_finds_a_damaged_page damaged_page

# A store whose WAL needs its -shm index rebuilt cannot be read on a read-only
# file system: READONLY (exit 6), not CORRUPT. A read-only bind mount in a
# private mount namespace binds root too.
readonly_store() {
    mkdir -p "$WORK/rodir"
    "$T" send ws://127.0.0.1:1/ --db "$WORK/rodir/c.db" --count 20 --size 16 \
        --timeout-ms 60000 >/dev/null 2>&1 </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 30 twenty_pending || { stop_pid "$cpid"; return 1; }
    stop_pid "$cpid" # SIGKILL: the -wal stays
    rm -f "$WORK/rodir/c.db-shm"
    [ -s "$WORK/rodir/c.db-wal" ] || { echo "  no -wal after the kill" >&2; return 1; }
    timeout 30 unshare -m sh -c 'mount --bind -o ro "$1" "$1" && exec "$2" status --db "$1/c.db"' \
        sh "$WORK/rodir" "$T" >"$WORK/last.out" 2>"$WORK/last.err"
    local rc=$?
    [ "$rc" -eq 6 ] && grep -q 'TETHER_ESTORE_READONLY' "$WORK/last.err" ||
        { echo "  exit $rc:" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    expect_rc 0 "$T" status --db "$WORK/rodir/c.db" # where it can be written, it reads fine
}
twenty_pending() { "$T" status --db "$WORK/rodir/c.db" --json 2>/dev/null | grep -qF '"pending":20,'; }
mkdir -p "$WORK/probe"
if unshare -m sh -c 'mount --bind -o ro "$1" "$1" && ! touch "$1/x" 2>/dev/null' sh "$WORK/probe" 2>/dev/null; then
    check status_on_read_only_file_system_is_readonly readonly_store
else
    echo "SKIP status_on_read_only_file_system_is_readonly (no private mount namespace here)"
fi

# A cleanly closed store (no -wal) reads on a read-only file system or in a
# directory this user cannot write: exit 0, not 6 for the -shm SQLite wanted
# to create. chmod does not stop root, so as root only the read-only bind
# mount is tried (skipped when there is no private mount namespace).
closed_store_read_only() {
    mkdir -p "$WORK/rodir2"
    expect_rc 1 "$T" send ws://127.0.0.1:1/ --db "$WORK/rodir2/c.db" --count 5 --size 16 \
        --timeout-ms 300 --quiet || return 1
    [ ! -e "$WORK/rodir2/c.db-wal" ] && rm -f "$WORK/rodir2/c.db-shm" || return 1
    if [ "$(id -u)" -ne 0 ]; then
        chmod a-w "$WORK/rodir2"
        expect_rc 0 "$T" status --db "$WORK/rodir2/c.db" --check
        local rc=$?
        chmod u+w "$WORK/rodir2"
        [ "$rc" -eq 0 ] && grep -q '^outboxes: 5 messages' "$WORK/last.out" || return 1
    else
        echo "  (running as root: chmod a-w does not stop root's writes; the bind mount only)"
    fi
    if unshare -m sh -c 'mount --bind -o ro "$1" "$1" && ! touch "$1/x" 2>/dev/null' sh \
        "$WORK/probe" 2>/dev/null; then
        timeout 30 unshare -m sh -c \
            'mount --bind -o ro "$1" "$1" && exec "$2" status --db "$1/c.db" --check' sh \
            "$WORK/rodir2" "$T" >"$WORK/last.out" 2>"$WORK/last.err"
        local rc=$?
        [ "$rc" -eq 0 ] && grep -q '^outboxes: 5 messages' "$WORK/last.out" ||
            { echo "  exit $rc:" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    elif [ "$(id -u)" -eq 0 ]; then
        echo "SKIP status_reads_a_closed_store_read_only (root, and no private mount namespace)"
    fi
    [ ! -e "$WORK/rodir2/c.db-shm" ] # nothing was created
}
check status_reads_a_closed_store_read_only closed_store_read_only

# ---------------------------------------------------------------- the demo
demo() {
    timeout 250 "$T" demo --messages 20000 --kills 1 --json --seed 7 >"$WORK/demo.out" \
        2>"$WORK/demo.err"
    local rc=$?
    sed 's/^/  demo: /' "$WORK/demo.out"
    [ "$rc" -eq 0 ] || { echo "  demo exited $rc:" >&2; sed 's/^/  | /' "$WORK/demo.err" >&2; return 1; }
    grep -qF '"ok":true,' "$WORK/demo.out" && grep -qF '"lost":0,' "$WORK/demo.out" &&
        grep -qF '"duplicates":0,' "$WORK/demo.out" && grep -qF '"kills":1,' "$WORK/demo.out"
}
check demo_20000_messages_one_kill_nothing_lost demo

# ---------------------------------------------------------------- operations
# serve --metrics answers GET /metrics on its port; status shows the totals.
ops_usage() {
    expect_rc 2 "$T" serve --session-expiry-ms 999 &&
        expect_rc 2 "$T" serve --session-expiry-ms 1x &&
        expect_rc 2 "$T" serve --max-sessions 0 &&
        expect_rc 2 "$T" serve --max-sessions 1000001 &&
        expect_rc 1 "$T" serve --listen 127.0.0.1:0 --www "$WORK/no-such-dir" &&
        grep -qF "www_dir $WORK/no-such-dir: No such file or directory" "$WORK/last.err"
}
check serve_operations_flags_are_checked ops_usage

ops_metrics() {
    start_server ops --quiet --metrics --db "$WORK/ops-s.db" --session-expiry-ms 600000 ||
        return 1
    timeout 60 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/ops-c.db" --count 25 --size 16 \
        --timeout-ms 30000 >/dev/null 2>"$WORK/ops-send.err" </dev/null || return 1
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 10 cat <&3 >"$WORK/metrics.out"
    exec 3<&-
    grep -q '^HTTP/1.1 200' "$WORK/metrics.out" &&
        grep -q '^# TYPE tether_messages_delivered_total counter$' "$WORK/metrics.out" &&
        grep -q '^tether_messages_delivered_total 25$' "$WORK/metrics.out" &&
        grep -q '^tether_sessions 1$' "$WORK/metrics.out" &&
        grep -q '^tether_outbox_pending_messages 0$' "$WORK/metrics.out" || {
        sed 's/^/  | /' "$WORK/metrics.out" >&2
        return 1
    }
    stop_gracefully "$SPID" || return 1
    expect_rc 0 "$T" status --db "$WORK/ops-s.db" || return 1
    grep -q '^sessions: 1$' "$WORK/last.out" &&
        grep -q '^established: 1 (sessions a client can resume)$' "$WORK/last.out" &&
        grep -q '^outboxes: 0 messages, 0 bytes unacknowledged in all$' "$WORK/last.out" || {
        sed 's/^/  | /' "$WORK/last.out" >&2
        return 1
    }
    expect_rc 0 "$T" status --db "$WORK/ops-s.db" --json &&
        grep -qF '"session_count":1,"established_count":1,"pending_total":0,' "$WORK/last.out"
}
check serve_metrics_page_and_status_totals ops_metrics

# ---------------------------------------------------------------- server limits
# Each limit flag refuses a value out of range with exit 2 and names itself;
# --help lists them.
serve_limits() {
    local bad
    for bad in "--max-sessions 0" "--max-sessions 1000001" "--max-pending-handshakes 2000000" \
        "--hello-timeout-ms 3600001" "--hello-timeout-ms -5" "--delivery-threads 65" \
        "--delivery-threads x" "--lease-ms 999" "--lease-ms 600001"; do
        # shellcheck disable=SC2086
        expect_rc 2 "$T" serve $bad || return 1
        grep -qF -- "${bad%% *} must be 1" "$WORK/last.err" ||
            { echo "  '$bad': no clear error" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    done
    for bad in "--rx-buffer 127" "--rx-buffer 65537" "--rx-buffer x"; do
        # shellcheck disable=SC2086
        expect_rc 2 "$T" serve $bad || return 1
        grep -qF -- "--rx-buffer must be 128 to 65536" "$WORK/last.err" ||
            { echo "  '$bad': no clear error" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    done
    expect_rc 0 "$T" serve --help || return 1
    for flag in --max-sessions --max-pending-handshakes --hello-timeout-ms --delivery-threads \
        --rx-buffer --lease-ms; do
        grep -qF -- "$flag" "$WORK/last.out" || { echo "  serve --help lacks $flag" >&2; return 1; }
    done
}
check serve_limit_flags_are_range_checked serve_limits

# ---------------------------------------------------------------- connectivity options
# Each garbage value is a usage error (exit 2) whose message names the option.
net_usage() {
    local args want
    while IFS='|' read -r args want; do
        [ -n "$args" ] || continue
        # shellcheck disable=SC2086
        eval "expect_rc 2 \"\$T\" $args" || { echo "  '$args' was not refused" >&2; return 1; }
        grep -qF -- "$want" "$WORK/last.err" ||
            { echo "  '$args': no '$want' in:" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    done <<'EOF_CASES'
send ws://127.0.0.1:1/ --header NoColon|--header wants 'Name: value'
send ws://127.0.0.1:1/ --header ': no name'|--header wants 'Name: value'
send ws://127.0.0.1:1/ --header 'Bad Name: x'|--header 'Bad Name: x': the name
send ws://127.0.0.1:1/ --header "$(printf 'X-A: 1\r\nX-B: 2')"|--header must be one line
send ws://127.0.0.1:1/ --header "$(printf 'X-A: 1\nX-B: 2')"|--header must be one line
send ws://127.0.0.1:1/ --header "X-Long: $(printf '%01100d' 0)"|--header is longer than 1024 bytes
send ws://127.0.0.1:1/ $(for i in $(seq 33); do printf -- '--header X-%d:v ' "$i"; done)|--header given more than 32 times
send ws://127.0.0.1:1/ --origin ''|--origin wants one line
send ws://127.0.0.1:1/ --origin "$(printf 'https://a\r\nX: y')"|--origin wants one line
send ws://127.0.0.1:1/ --proxy socks5://127.0.0.1:1080|--proxy: proxy 'socks5://127.0.0.1:1080'
send ws://127.0.0.1:1/ --proxy https://127.0.0.1:3128|--proxy: proxy 'https://127.0.0.1:3128'
send ws://127.0.0.1:1/ --proxy http://127.0.0.1:99999|--proxy: proxy
send ws://127.0.0.1:1/ --proxy http://alice:s3cret@127.0.0.1:3128|--proxy must not carry a password
send ws://127.0.0.1:1/ --proxy-user a:b|--proxy-user wants a user name
send ws://127.0.0.1:1/ --proxy-user ''|--proxy-user wants a user name
send ws://127.0.0.1:1/ --header "$(printf 'X-A: 1\001')"|--header: the value has a control character
send ws://127.0.0.1:1/ --header "$(printf 'X\001A: 1')"|(a value with control characters)': the name
send ws://127.0.0.1:1/ --proxy-user "$(printf 'al\tice')"|not '(a value with control characters)'
send ws://127.0.0.1:1/ --ca ''|--ca wants a file name
send ws://127.0.0.1:1/ --cert ''|--cert wants a file name
send ws://127.0.0.1:1/ --key ''|--key wants a file name
send ws://127.0.0.1:1/ --cert c.pem|--cert and --key go together
send ws://127.0.0.1:1/ --key k.pem|--cert and --key go together
send ws://127.0.0.1:1/ --ca|requires an argument
serve --tls-cert ''|--tls-cert wants a file name
serve --tls-key ''|--tls-key wants a file name
serve --cors-header 'X-A: 1'|--cors-header wants a header name
serve --cors-header ''|--cors-header wants a header name
serve $(for i in $(seq 17); do printf -- '--cors-header X-%d ' "$i"; done)|--cors-header given more than 16 times
serve --client-ca ''|--client-ca wants a file name
serve --tls-cert c.pem|--tls-cert and --tls-key go together
serve --tls-key k.pem|--tls-cert and --tls-key go together
serve --client-ca ca.pem|--client-ca needs --tls-cert and --tls-key
serve --allow-origin ''|--allow-origin wants one line
serve --allow-origin "$(printf 'https://a\nb')"|--allow-origin wants one line
serve $(for i in $(seq 33); do printf -- '--allow-origin https://%d.example ' "$i"; done)|--allow-origin given more than 32 times
EOF_CASES
}
check connectivity_garbage_is_a_usage_error_naming_the_option net_usage

net_help() {
    local flag
    expect_rc 0 "$T" send --help || return 1
    for flag in --ca --cert --key --insecure --proxy --proxy-user --origin --header \
        TETHER_PROXY_PASSWORD; do
        grep -qF -- "$flag" "$WORK/last.out" || { echo "  send --help lacks $flag" >&2; return 1; }
    done
    expect_rc 0 "$T" serve --help || return 1
    for flag in --tls-cert --tls-key --client-ca --allow-origin; do
        grep -qF -- "$flag" "$WORK/last.out" || { echo "  serve --help lacks $flag" >&2; return 1; }
    done
}
check connectivity_options_in_help net_help

# A file that is not there is the library's ECONFIG at create, naming the field and the file.
net_missing_files() {
    local f
    for f in ca cert key; do
        local args=(--"$f" "$WORK/no-$f.pem")
        [ "$f" = cert ] && args+=(--key "$WORK/no-key.pem")
        [ "$f" = key ] && args=(--cert "$WORK/last.err" --key "$WORK/no-key.pem") # any readable file
        expect_rc 1 "$T" send ws://127.0.0.1:1/ --count 1 "${args[@]}" || return 1
        grep -qF "TETHER_ECONFIG: cannot read tls_${f}_file '$WORK/no-$f.pem'" "$WORK/last.err" ||
            { sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    done
    expect_rc 1 "$T" serve --listen 127.0.0.1:0 --tls-cert "$WORK/no-c.pem" --tls-key "$WORK/no-k.pem" &&
        grep -qF "TETHER_ECONFIG: cannot read tls_cert_file '$WORK/no-c.pem'" "$WORK/last.err" ||
        { sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
}
check connectivity_missing_file_is_the_library_error net_missing_files

# --allow-origin and --origin: the listed Origin gets through, another one and
# none get 403, which stops the sender (a permanent failure) with the status.
net_origin() {
    start_server org --db "$WORK/org.db" --quiet --allow-origin https://Other.example \
        --allow-origin https://app.example || return 1
    expect_rc 0 "$T" send "ws://127.0.0.1:$PORT/" --count 2 --origin https://APP.example --quiet \
        --proxy '' || return 1
    expect_rc 1 "$T" send "ws://127.0.0.1:$PORT/" --count 1 --origin https://evil.example \
        --proxy '' || return 1
    grep -qF 'STOPPED: TETHER_EHTTP' "$WORK/last.err" && grep -qF 'HTTP status 403' "$WORK/last.err" ||
        { sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    expect_rc 1 "$T" send "ws://127.0.0.1:$PORT/" --count 1 --proxy '' &&
        grep -qF 'HTTP status 403' "$WORK/last.err" || return 1
    stop_gracefully "$SPID"
}
check origin_allow_list_and_origin_option net_origin

# Without --verbose, each distinct connection problem is printed once, however
# many attempts fail; once a server comes up, one line says so.
x_lines() { # the record holds at least $1 refused attempts
    local n
    n=$(count_lines "$WORK/once.rec" 'DISCONNECTED TETHER_ECONNREFUSED')
    [ "${n:-0}" -ge "$1" ]
}
send_exited() { not_running "$1"; }
net_once() {
    start_server gone --quiet || return 1 # a port the OS gave, closed again below
    local port=$PORT
    stop_gracefully "$SPID" || return 1
    "$T" send "ws://127.0.0.1:$port/" --count 3 --size 8 --backoff-base-ms 20 --backoff-cap-ms 40 \
        --proxy '' --timeout-ms 60000 --record "$WORK/once.rec" >"$WORK/once.out" \
        2>"$WORK/once.err" </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 30 x_lines 6 || { echo "  not 6 failed attempts" >&2; stop_pid "$cpid"; return 1; }
    local want="tether send: cannot connect to ws://127.0.0.1:$port/: TETHER_ECONNREFUSED: "
    [ "$(count_lines "$WORK/once.err" "$want")" -eq 1 ] && [ "$(wc -l <"$WORK/once.err")" -eq 1 ] ||
        { echo "  not exactly one problem line:" >&2; sed 's/^/  | /' "$WORK/once.err" >&2; stop_pid "$cpid"; return 1; }
    grep -qF '; retrying' "$WORK/once.err" || { stop_pid "$cpid"; return 1; }
    start_server back --quiet --listen "127.0.0.1:$port" || { stop_pid "$cpid"; return 1; }
    wait_for 30 send_exited "$cpid" || { echo "  send did not finish" >&2; stop_pid "$cpid"; return 1; }
    wait "$cpid"
    local rc=$?
    forget_pid "$cpid"
    stop_gracefully "$SPID"
    [ "$rc" -eq 0 ] || { echo "  send exited $rc" >&2; sed 's/^/  | /' "$WORK/once.err" >&2; return 1; }
    local fails
    fails=$(count_lines "$WORK/once.rec" 'DISCONNECTED TETHER_ECONNREFUSED')
    grep -qxF "tether send: connected to ws://127.0.0.1:$port/ after $fails failed attempts" \
        "$WORK/once.err" && [ "$(count_lines "$WORK/once.err" "$want")" -eq 1 ] ||
        { echo "  no connected line after $fails failures:" >&2; sed 's/^/  | /' "$WORK/once.err" >&2; return 1; }
}
check connection_problem_printed_once_then_connected net_once

# A connection that was up and drops is reported as lost, once; the refused
# attempts after it once; the connection coming back once.
has_line() { grep -qF -- "$2" "$1" 2>/dev/null; }
net_lost() {
    start_server lost1 --db "$WORK/lost-s.db" || return 1
    local port=$PORT url="ws://127.0.0.1:$PORT/"
    "$T" send "$url" --count 1 --size 8 --linger --backoff-base-ms 20 --backoff-cap-ms 40 \
        --proxy '' --timeout-ms 30000 >"$WORK/lost.out" 2>"$WORK/lost.err" </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 30 has_line "$WORK/lost1.out" '"seq":1,' ||
        { echo "  the message did not arrive" >&2; stop_pid "$cpid"; return 1; }
    stop_gracefully "$SPID" || { stop_pid "$cpid"; return 1; }
    wait_for 30 has_line "$WORK/lost.err" "cannot connect to $url: TETHER_ECONNREFUSED" ||
        { echo "  no refused line:" >&2; sed 's/^/  | /' "$WORK/lost.err" >&2; stop_pid "$cpid"; return 1; }
    sleep 0.3 # more refused attempts, 40 ms apart at most
    start_server lost2 --db "$WORK/lost-s.db" --listen "127.0.0.1:$port" || { stop_pid "$cpid"; return 1; }
    wait_for 30 has_line "$WORK/lost.err" "tether send: connected to $url after " ||
        { echo "  no connected line:" >&2; sed 's/^/  | /' "$WORK/lost.err" >&2; stop_pid "$cpid"; return 1; }
    stop_gracefully "$cpid" || { sed 's/^/  | /' "$WORK/lost.err" >&2; return 1; }
    stop_gracefully "$SPID"
    [ "$(count_lines "$WORK/lost.err" "tether send: connection to $url lost: ")" -eq 1 ] &&
        grep -qE '; reconnecting$' "$WORK/lost.err" &&
        [ "$(count_lines "$WORK/lost.err" 'TETHER_ECONNREFUSED')" -eq 1 ] &&
        [ "$(count_lines "$WORK/lost.err" 'tether send: connected to')" -eq 1 ] &&
        [ "$(count_lines "$WORK/lost.err" '(HTTP status 503)')" -le 1 ] &&
        # lost, refused, connected, the summary; and a 503 when an attempt
        # reached the server while it was shutting down
        [ "$(grep -vcF '(HTTP status 503)' "$WORK/lost.err")" -eq 4 ] ||
        { sed 's/^/  | /' "$WORK/lost.err" >&2; return 1; }
}
check connection_lost_then_refused_then_back_each_printed_once net_lost

# --quiet: nothing about the failed attempts, only the final failure.
net_quiet() {
    expect_rc 1 "$T" send ws://127.0.0.1:1/ --count 1 --backoff-base-ms 20 --backoff-cap-ms 40 \
        --proxy '' --timeout-ms 1000 --quiet || return 1
    ! grep -qF 'cannot connect' "$WORK/last.err" && [ "$(wc -l <"$WORK/last.err")" -eq 1 ] &&
        grep -qF 'TETHER_ETIMEDOUT' "$WORK/last.err" || { sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
}
check quiet_send_prints_no_connection_problems net_quiet

# ---------------------------------------------------------------- HTTP carriage
# send --transport http: the messages go through the server's HTTP carriage.
http_transport() {
    start_server http-s --quiet || return 1
    expect_rc 0 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/http-c.db" --count 5 --size 8 \
        --timeout-ms 30000 --quiet --transport http --verbose || return 1
    grep -qF "HTTP carriage" "$WORK/last.err" ||
        { echo "  no state line names the HTTP carriage" >&2; sed 's/^/  | /' "$WORK/last.err" >&2; return 1; }
    expect_rc 0 "$T" status --db "$WORK/http-c.db" && grep -q '^  peer_acked: *5$' "$WORK/last.out" &&
        stop_gracefully "$SPID"
}
check send_transport_http http_transport

# send URL URL: the first is refused, the second delivers; more than 16 is a usage error.
several_urls() {
    start_server urls-s --quiet || return 1
    expect_rc 0 "$T" send "ws://127.0.0.1:1/" "ws://127.0.0.1:$PORT/" --db "$WORK/urls-c.db" \
        --count 5 --size 8 --timeout-ms 30000 --quiet || return 1
    expect_rc 0 "$T" status --db "$WORK/urls-c.db" && grep -q '^  peer_acked: *5$' "$WORK/last.out" ||
        return 1
    local many=() i
    for i in $(seq 17); do many+=("ws://127.0.0.1:$PORT/"); done
    expect_rc 2 "$T" send "${many[@]}" --count 1 && grep -q 'at most 16 URLs' "$WORK/last.err" &&
        expect_rc 2 "$T" send "ws://127.0.0.1:$PORT/" "http://x/" --count 1 &&
        stop_gracefully "$SPID"
}
check send_several_urls several_urls

# ------------------------------------------------- what a new user runs into
# Values the library would refuse later, or take for something else, are usage
# errors that say what is wanted (and never echo a PostgreSQL URI's password).
user_mistakes() {
    expect_rc 2 "$T" serve --listen localhost:0 && grep -q 'numeric IPv4 or IPv6' "$WORK/last.err" &&
        expect_rc 2 "$T" serve --db "" && grep -q -- '--db wants' "$WORK/last.err" &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --db "" --count 1 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --db postgresql://u:s3cret@h/d --count 1 &&
        grep -q 'SQLite file' "$WORK/last.err" && ! grep -q s3cret "$WORK/last.err" &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --size 1048577 --count 1 &&
        grep -q 'max_message_bytes' "$WORK/last.err" &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --until-seq 9223372036854775808 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --count 9223372036854775808 &&
        expect_rc 2 "$T" send ws://127.0.0.1:1/ --backoff-cap-ms 100 --count 1 &&
        grep -q '250, the default' "$WORK/last.err" &&
        expect_rc 1 "$T" serve --listen 127.0.0.1:0 --port-file "$WORK/no/such/dir/p" &&
        grep -q 'No such file or directory' "$WORK/last.err"
}
check user_mistakes_are_usage_errors user_mistakes

# An IPv6 listen address is printed as --listen takes it: [::1]:PORT.
v6_line() {
    start_server v6 --listen "[::1]:0" || return 1
    grep -q "listening on \[::1\]:$PORT " "$WORK/v6.err" && stop_gracefully "$SPID"
}
"$T" serve --listen "[::1]:0" --port-file "$WORK/v6probe.port" >/dev/null 2>&1 </dev/null &
v6pid=$!
PIDS+=("$v6pid")
if wait_for 5 test -s "$WORK/v6probe.port"; then
    stop_pid "$v6pid"
    check serve_prints_an_ipv6_address_in_brackets v6_line
else
    stop_pid "$v6pid"
    echo "SKIP serve_prints_an_ipv6_address_in_brackets (no IPv6 loopback here)"
fi

# One SQLite store, one process: a second serve or send on the same file stops
# at once (two servers on one file numbered their messages to a client twice).
# The library refuses the second writer (src/store/store_sqlite_lock.c) and
# names the process that holds the file.
one_process_per_store() {
    start_server lock-s --db "$WORK/lock-s.db" --quiet || return 1
    local first=$SPID port=$PORT
    expect_rc 1 "$T" serve --listen 127.0.0.1:0 --db "$WORK/lock-s.db" &&
        grep -q "another process (pid $first) has this store open for writing" "$WORK/last.err" ||
        return 1
    "$T" send "ws://127.0.0.1:$port/" --db "$WORK/lock-c.db" --count 0 --linger --quiet \
        >/dev/null 2>&1 </dev/null &
    local cpid=$!
    PIDS+=("$cpid")
    wait_for 20 test -s "$WORK/lock-c.db" || return 1
    expect_rc 1 "$T" send "ws://127.0.0.1:$port/" --db "$WORK/lock-c.db" --count 1 &&
        grep -q "another process (pid $cpid) has this store open for writing" "$WORK/last.err" &&
        expect_rc 0 "$T" status --db "$WORK/lock-c.db" || return 1 # reading is still fine
    stop_gracefully "$cpid" && stop_gracefully "$first" || return 1
    expect_rc 0 "$T" send "ws://127.0.0.1:1/" --db "$WORK/lock-c.db" --count 0 --timeout-ms 1000
}
check one_process_per_sqlite_store one_process_per_store

# A stdin line above the largest message is named by its number; the lines
# before it are sent. A long line without a newline is refused before it is read
# to its end.
long_line() {
    { printf 'first\nsecond\n'; head -c 1100000 /dev/zero | tr '\0' z; printf '\nafter\n'; } \
        >"$WORK/long.in"
    timeout 30 "$T" send ws://127.0.0.1:1/ --db "$WORK/long.db" --timeout-ms 300 \
        <"$WORK/long.in" >/dev/null 2>"$WORK/last.err"
    [ $? -eq 1 ] && grep -q 'line 3 is 1100000 bytes' "$WORK/last.err" &&
        "$T" status --db "$WORK/long.db" --json | grep -qF '"out_last":2,' || return 1
    head -c 3000000 /dev/zero | timeout 30 "$T" send ws://127.0.0.1:1/ --timeout-ms 300 \
        >/dev/null 2>"$WORK/last.err"
    [ $? -eq 1 ] && grep -q 'line 1 is at least' "$WORK/last.err"
}
check send_names_a_line_above_the_largest_message long_line

# With several URLs, the reports name the one in use; a refusal with no HTTP
# status (REJECT LIMIT) does not print "HTTP status 0".
two_opened() { [ "$(count_lines "$WORK/which-s.err" ' opened')" -ge 2 ]; }
which_url() {
    start_server which-s --max-sessions 1 || return 1
    expect_rc 0 "$T" send ws://127.0.0.1:1/ "ws://127.0.0.1:$PORT/" --count 1 --timeout-ms 30000 &&
        grep -qF "cannot connect to ws://127.0.0.1:1/: TETHER_ECONNREFUSED" "$WORK/last.err" &&
        grep -qF "connected to ws://127.0.0.1:$PORT/ after 1 failed attempt" "$WORK/last.err" ||
        return 1
    "$T" send "ws://127.0.0.1:$PORT/" --count 0 --linger --quiet >/dev/null 2>&1 </dev/null &
    local hold=$!
    PIDS+=("$hold")
    wait_for 20 two_opened || return 1 # it holds the only session
    expect_rc 1 "$T" send "ws://127.0.0.1:$PORT/" --count 1 --timeout-ms 1000 &&
        grep -qF 'TETHER_ELIMIT' "$WORK/last.err" && grep -qF 'reject code 3' "$WORK/last.err" &&
        ! grep -qF 'HTTP status 0' "$WORK/last.err" || return 1
    # the server says so too (on_refused), not only in its metrics
    grep -qF 'refused a connection from 127.0.0.1: TETHER_ELIMIT, reject code 3: ' \
        "$WORK/which-s.err" || { sed 's/^/  | /' "$WORK/which-s.err" >&2; return 1; }
    stop_gracefully "$hold" && stop_gracefully "$SPID"
}

# A store that reaches the file size limit (ulimit -f) is a store error the
# command reports, not a kill by SIGXFSZ (exit 153).
file_size_limit() {
    (ulimit -f 64 && expect_rc 1 "$T" send ws://127.0.0.1:1/ --db "$WORK/fsz.db" --count 2000 \
        --size 200 --timeout-ms 1000) && grep -q 'TETHER_ESTORE' "$WORK/last.err"
}
check file_size_limit_is_a_store_error file_size_limit

# --max-pending P: never more than P unacknowledged, even with a larger --batch
# (nobody answers on port 1, so the count stays where sending paused).
max_pending_bound() {
    expect_rc 1 "$T" send ws://127.0.0.1:1/ --db "$WORK/mp1.db" --count 5000 --max-pending 300 \
        --timeout-ms 300 --quiet &&
        "$T" status --db "$WORK/mp1.db" --json | grep -qF '"pending":300,' || return 1
    seq 1000 >"$WORK/mp.in"
    timeout 30 "$T" send ws://127.0.0.1:1/ --db "$WORK/mp2.db" --max-pending 300 --timeout-ms 300 \
        --quiet <"$WORK/mp.in" >/dev/null 2>&1
    "$T" status --db "$WORK/mp2.db" --json | grep -qF '"pending":300,'
}
check max_pending_is_a_bound max_pending_bound

# A mismatch (the server lost its memory store) tells a command-line user what
# to do, not only which library call would continue.
mismatch_hint() {
    start_server mm1 --quiet || return 1
    expect_rc 0 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/mm-c.db" --count 2 --quiet &&
        stop_gracefully "$SPID" || return 1
    start_server mm2 --quiet || return 1
    expect_rc 1 "$T" send "ws://127.0.0.1:$PORT/" --db "$WORK/mm-c.db" --count 1 \
        --timeout-ms 10000 && grep -q 'give another --db file' "$WORK/last.err" &&
        stop_gracefully "$SPID"
}
check mismatch_says_what_to_do mismatch_hint
check send_reports_name_the_url_in_use which_url

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

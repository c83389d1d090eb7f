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

help_texts() {
    local cmd
    expect_rc 0 "$T" --help && grep -q "Exit status" "$WORK/last.out" || return 1
    for cmd in serve send status demo chaos scenario; do
        expect_rc 0 "$T" "$cmd" --help || return 1
        grep -q "Exit status" "$WORK/last.out" || { echo "  $cmd --help lacks exit codes" >&2; return 1; }
    done
}
check help_exits_0_and_documents_exit_codes help_texts

check status_of_missing_file_fails expect_rc 1 "$T" status --db "$WORK/none.db"
printf 'not a database, just text\n' >"$WORK/junk.db"
check status_of_junk_file_fails expect_rc 1 "$T" status --db "$WORK/junk.db"

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
stop_gracefully "$SPID"

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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

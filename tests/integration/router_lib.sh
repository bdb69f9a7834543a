#!/usr/bin/env bash
# Helpers for the router's integration tests (sourced, not a test itself): start
# wideep-router and null workers on loopback ports the kernel picks, wait for them with
# bounded loops, record pass/fail, and always stop every process started here (trap).
# A sanitizer report in any log fails the test.
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
RL_MODEL="$src/tests/fixtures/tiny-qwen3-moe/bf16"
RL_TMP=$(mktemp -d) # logs of every process; RL_KEEP_TMP=1 keeps it for a post-mortem
RL_PIDS=()
rl_pass=0 rl_fail=0

rl_cleanup() { # TERM first: the processes exit by themselves (and bash reports nothing)
    local p i
    for p in "${RL_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 30); do
        local alive=0
        for p in "${RL_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${RL_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${RL_KEEP_TMP:-}" ] && echo "kept $RL_TMP" || rm -rf "$RL_TMP"
}
trap rl_cleanup EXIT

if ! command -v curl >/dev/null; then
    echo "skip: curl not installed"; exit 77
fi

rl_check() { # name, then a command whose status decides
    local name=$1
    shift
    if "$@"; then
        rl_pass=$((rl_pass + 1)); echo "ok   $name"
    else
        rl_fail=$((rl_fail + 1)); echo "FAIL $name"
    fi
}

# rl_start_router NAME [flags...]: sets RL_HTTP (port), RL_WP (worker port), RL_RPID.
rl_start_router() {
    local name=$1
    shift
    rm -f "$RL_TMP/$name.ports"
    "$bin/wideep-router" --model-path "$RL_MODEL" --port "${RL_FIXED_HTTP:-0}" \
        --worker-port "${RL_FIXED_WP:-0}" --port-file "$RL_TMP/$name.ports" \
        --heartbeat-interval-ms 100 --heartbeat-timeout-ms 600 "$@" \
        >>"$RL_TMP/$name.log" 2>&1 &
    RL_RPID=$!
    RL_PIDS+=("$RL_RPID")
    local i
    for i in $(seq 100); do
        [ -s "$RL_TMP/$name.ports" ] && break
        kill -0 "$RL_RPID" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -s "$RL_TMP/$name.ports" ]; then
        echo "router $name did not start:"; cat "$RL_TMP/$name.log"; return 1
    fi
    read -r RL_HTTP RL_WP <"$RL_TMP/$name.ports"
    RL_URL="http://127.0.0.1:$RL_HTTP"
}

# rl_start_worker NAME [flags...]: a null worker registered as NAME; sets RL_WPID.
rl_start_worker() {
    local name=$1
    shift
    "$bin/wideep-bench" null-worker --router "tcp://127.0.0.1:$RL_WP" --model-path "$RL_MODEL" \
        --instance-id "$name" --log "$RL_TMP/$name.wlog" "$@" >>"$RL_TMP/$name.out" 2>&1 &
    RL_WPID=$!
    RL_PIDS+=("$RL_WPID")
}

rl_n_workers() {
    curl -s --max-time 2 ${RL_KEY:+-H "Authorization: Bearer $RL_KEY"} "$RL_URL/workers" 2>/dev/null |
        python3 -c "import json,sys;print(len(json.load(sys.stdin)['workers']))" 2>/dev/null || echo -1
}

# rl_wait_workers N: waits up to 10 s for N registered workers.
rl_wait_workers() {
    local i
    for i in $(seq 100); do
        [ "$(rl_n_workers)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# rl_wait_log FILE PATTERN [tenths]: waits for a line matching PATTERN.
rl_wait_log() {
    local i
    for i in $(seq "${3:-50}"); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# rl_count_200 N PATH BODY: sends the request N times in a row; prints how many got a 200.
rl_count_200() {
    local i ok=0
    for i in $(seq "$1"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$RL_URL$2" -d "$3")" = 200 ] && ok=$((ok + 1))
    done
    echo $ok
}

# rl_stop PID: TERM, then KILL after 5 s.
rl_stop() { # SIGTERM, up to 15 s to exit (a drained worker stays 500 ms after its Drain, and
    # a sanitizer build on two busy cores takes seconds more to stop its ranks), then SIGKILL
    local i
    kill -TERM "$1" 2>/dev/null
    for i in $(seq 150); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

rl_finish() {
    if grep -lE 'Sanitizer|runtime error:' "$RL_TMP"/*.log "$RL_TMP"/*.out 2>/dev/null; then
        echo "FAIL sanitizer report in the logs above"; rl_fail=$((rl_fail + 1))
        grep -hE -A5 'Sanitizer|runtime error:' "$RL_TMP"/*.log "$RL_TMP"/*.out | head -40
    fi
    if [ $rl_fail -ne 0 ]; then
        for f in "$RL_TMP"/*.log; do echo "--- $f"; tail -20 "$f"; done
    fi
    echo "$rl_pass passed, $rl_fail failed"
    [ $rl_fail -eq 0 ]
}

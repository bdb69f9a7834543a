#!/usr/bin/env bash
# Helpers for the serving tests with real workers (sourced after router_lib.sh, not a test
# itself): start wideep-decode / wideep-prefill workers on loopback with a metrics endpoint
# on a port the kernel picks, read their metrics, wait for their KV pages to be idle, and
# make the wideep-generate reference a test compares HTTP output with.

# sl_start ROLE NAME [flags...]: a decode or prefill worker of RL_MODEL registered with the
# router; sets SL_PID and SL_MPORT (its metrics port).
sl_start() {
    local role=$1 name=$2
    shift 2
    "$bin/wideep-$role" --model-path "$RL_MODEL" --router "tcp://127.0.0.1:$RL_WP" \
        --instance-id "$name" --metrics-port 0 --threads 1 --heartbeat-interval-ms 100 \
        "$@" >"$RL_TMP/$name.log" 2>&1 &
    SL_PID=$!
    RL_PIDS+=("$SL_PID")
    rl_wait_log "$RL_TMP/$name.log" "health and metrics on" 100 || return 1
    SL_MPORT=$(sed -nE 's/.*health and metrics on http:\/\/127.0.0.1:([0-9]+).*/\1/p' \
        "$RL_TMP/$name.log" | head -1)
}

# sl_start_two_nodes NAME FLAGS...: a decode instance over two "nodes" on loopback (node 1 then
# node 0, UCX over TCP), the rendezvous on a port the kernel picked whose next port (node 0's
# relay) was free too; started again on other ports when one was taken before the bind (other
# tests run beside this one). Sets SL_MN0 and SL_MN1 (pids); logs NAME0.log and NAME1.log.
sl_start_two_nodes() {
    local name=$1 try n port
    shift
    for try in 1 2 3; do
        port=$(python3 -c 'import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); break
    except OSError:
        pass
print(p)')
        for n in 1 0; do
            UCX_TLS=tcp,self "$bin/wideep-decode" --model-path "$RL_MODEL" \
                --router "tcp://127.0.0.1:$RL_WP" --instance-id "$name" --threads 1 \
                --heartbeat-interval-ms 100 --metrics-port 0 --nnodes 2 --node-rank $n \
                --dist-init-addr "127.0.0.1:$port" "$@" >"$RL_TMP/$name$n.log" 2>&1 &
            RL_PIDS+=($!)
            eval "SL_MN$n=\$!"
        done
        rl_wait_log "$RL_TMP/${name}0.log" "health and metrics on|Address already in use" 300
        grep -q "Address already in use" "$RL_TMP/${name}0.log" "$RL_TMP/${name}1.log" || return 0
        kill -KILL "$SL_MN0" "$SL_MN1" 2>/dev/null
        wait "$SL_MN0" "$SL_MN1" 2>/dev/null
    done
    return 1
}

# Workers of several ranks take a while on two busy cores: up to 60 s.
wait_workers_long() {
    local i
    for i in $(seq 6); do rl_wait_workers "$1" && return 0; done
    return 1
}

# wmetric PORT NAME{labels}: a worker metric's value (-1 when absent).
wmetric() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print -1}'
}

# idle PORT [DP...]: nothing running and every KV page free on DP rank 0 and the others named.
idle() {
    local port=$1 d free total run
    shift
    for d in 0 "$@"; do
        free=$(wmetric "$port" "wideep:worker_kv_free_pages{dp_rank=\"$d\"}")
        total=$(wmetric "$port" "wideep:worker_kv_total_pages{dp_rank=\"$d\"}")
        run=$(wmetric "$port" "wideep:worker_running_requests{dp_rank=\"$d\"}")
        [ "$free" = "$total" ] && [ "$free" != -1 ] && [ "$run" = 0 ] || return 1
    done
}

# wait_idle PORT [DP...]: up to 10 s (or SL_IDLE_TENTHS tenths).
wait_idle() {
    local i
    for i in $(seq "${SL_IDLE_TENTHS:-100}"); do idle "$@" && return 0; sleep 0.1; done
    return 1
}

# sl_reference PROMPTS N OUT: wideep-generate's greedy N tokens for each line of PROMPTS
# (comma-separated ids), one JSON list per line, as serving_client.py greedy prints them.
sl_reference() {
    local ids
    : >"$3"
    while read -r ids; do
        "$bin/wideep-generate" --model-path "$RL_MODEL" --input-ids "$ids" --max-new-tokens "$2" \
            --temperature 0 --ignore-eos --json --threads 1 2>/dev/null |
            python3 -c "import json,sys;print(json.dumps(json.loads(sys.stdin.readline())['output_ids']))" \
            >>"$3"
    done <"$1"
}

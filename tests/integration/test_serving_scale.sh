#!/usr/bin/env bash
# Scaling a running prefill/decode system under load, on loopback, as Kubernetes does it
# (a pod is started and registers; a pod is sent SIGTERM and drains): four streaming clients
# send chat requests one after another the whole time (serving_client.py load), and not one
# of them may fail.
#   - 2 prefill + 2 decode workers: SIGTERM a prefill worker, then a decode worker; each
#     drains and exits 0, the other pair serves on (of the three decode drains of the test,
#     at least one with streams in flight);
#   - scale-out: a new decode worker started mid-run registers and takes requests;
#   - scale-in: a decode worker drained mid-run loses none;
#   - a decode instance over two "nodes" joins, then both nodes get SIGTERM together (a
#     LeaderWorkerSet group going away): node 1 serves on until node 0 has drained;
#   - the router's per-pool gauges (wideep:router_pool_*, what the autoscalers read) follow:
#     DP ranks per pool, KV in use under load, nothing running and no KV in use at the end;
#   - every surviving worker's KV pages idle at the end;
#   - a prefill worker sent SIGTERM while a request's KvTarget is still to come (its decode
#     worker stopped for a moment) waits for it, prefills, and only then exits: the request
#     completes, the decode worker's pages are not stranded.
. "$(dirname "$0")/router_lib.sh"
. "$(dirname "$0")/serving_lib.sh"
client="$src/tests/integration/serving_client.py"
RL_MODEL="$src/tests/fixtures/tiny-qwen3-moe/fp32"

router_metric() { # NAME{labels}: the router's value, -1 when absent
    curl -s --max-time 2 "$RL_URL/metrics" |
        awk -v k="$1" '$1 == k {print $2; f=1} END {if (!f) print -1}'
}
pool() { router_metric "wideep:router_pool_$1{role=\"$2\"}"; }
pool_is() { # NAME ROLE VALUE, repeated: each gauge wideep:router_pool_NAME{role=ROLE} is VALUE
    while [ $# -ge 3 ]; do
        python3 -c "import sys; sys.exit(float('$(pool "$1" "$2")') != $3)" || return 1
        shift 3
    done
}
# drained PID NAME: waits up to 30 s for a SIGTERMed worker; its status 0 and the drain logged.
drained() {
    local i
    for i in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    wait "$1" 2>/dev/null && grep -q "drained; shutting down" "$RL_TMP/$2.log"
}
streamed() { # PORT: the worker has streamed tokens
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^wideep:worker_generated_tokens_total/ {s += $2} END {exit !(s > 0)}'
}
busy() { # PORT: the worker's running-requests gauge is above 0
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^wideep:worker_running_requests/ {s += $2} END {exit !(s > 0)}'
}
wait_streamed() { # PORT [TENTHS]: up to 20 s (or TENTHS tenths: a sanitizer build on busy cores)
    local i
    for i in $(seq "${2:-200}"); do streamed "$1" && return 0; sleep 0.1; done
    return 1
}
# completed_more N: the load clients finish N more requests (up to 30 s); the summary only
# comes at the end, so the router's count of finished requests is read.
finished() { curl -s --max-time 2 "$RL_URL/metrics" |
    awk '$1 ~ /^wideep:router_requests_total/ {s += $2} END {print s + 0}'; }
completed_more() {
    local start i
    start=$(finished)
    for i in $(seq 300); do
        [ "$(finished)" -ge $((start + $1)) ] && return 0
        sleep 0.1
    done
    return 1
}

# Heartbeats may lag on two busy cores: a worker is dropped only after 3 s of silence.
rl_start_router scale --prefill-policy round_robin --decode-policy round_robin \
    --heartbeat-timeout-ms 3000 || exit 1
sl_start prefill p1 || exit 1
p1=$SL_PID
sl_start prefill p2 || exit 1
p2=$SL_PID p2_m=$SL_MPORT
sl_start decode d1 || exit 1
d1=$SL_PID d1_m=$SL_MPORT
sl_start decode d2 || exit 1
d2=$SL_PID d2_m=$SL_MPORT
rl_check "2 prefill + 2 decode workers register" wait_workers_long 4
rl_check "pool gauges: 2 decode and 2 prefill DP ranks" \
    pool_is dp_ranks decode 2 dp_ranks prefill 2

python3 "$client" load "$RL_URL" 48 4 "$RL_TMP/stop" "$RL_TMP/load.json" \
    >"$RL_TMP/load.out" 2>&1 &
load=$!
RL_PIDS+=("$load")
rl_check "load: requests complete" completed_more 4
in_use() { # the decode pool's KV in use (0..1) is above 0 at some point within 5 s
    local i
    for i in $(seq 50); do
        python3 -c "import sys; sys.exit(not 0 < float('$(pool kv_usage decode)') <= 1)" &&
            return 0
        sleep 0.1
    done
    return 1
}
rl_check "pool gauges: the decode pool's KV in use under load" in_use

kill -TERM "$p1"
rl_check "SIGTERM prefill p1: it drains and exits 0" drained "$p1" p1
rl_check "load goes on over p2" completed_more 4
# With one prefill worker left, requests queue there and a decode worker is idle for moments:
# each decode worker gets SIGTERM right after its gauge shows a request running (published
# every 250 ms, so the request may just have ended: at least one of the three decode drains
# below must have had streams in flight).
wait_busy() { # PORT: up to 10 s for the worker's running gauge above 0
    local i
    for i in $(seq 200); do busy "$1" && return 0; sleep 0.05; done
    return 0 # idle all along: the drain is still checked, just without streams
}
wait_busy "$d1_m"
kill -TERM "$d1"
rl_check "SIGTERM decode d1: it drains and exits 0" drained "$d1" d1
rl_check "load goes on over d2" completed_more 4

# Scale-out: a decode worker started mid-run joins and takes requests.
sl_start decode d3 || exit 1
d3=$SL_PID d3_m=$SL_MPORT
rl_check "scale-out: d3 registers" wait_workers_long 3
rl_check "scale-out: d3 takes requests" wait_streamed "$d3_m"
rl_check "pool gauges: 2 decode DP ranks again, 1 prefill" \
    pool_is dp_ranks decode 2 dp_ranks prefill 1

# Scale-in: d2 drained mid-run loses none.
wait_busy "$d2_m"
kill -TERM "$d2"
rl_check "scale-in: d2 drains and exits 0" drained "$d2" d2
rl_check "load goes on over d3" completed_more 4

# A decode instance over two "nodes", as a LeaderWorkerSet group runs it, joins under load;
# then both nodes get SIGTERM at once, node 1 first (as when the group is deleted): node 1,
# whose rank serves node 0's requests, stays until node 0 has drained and stopped the ranks;
# both exit 0 and nothing is lost.
sl_start_two_nodes mn --tp 2 --dp 2 --enable-dp-attention --ep 2
mn0=$SL_MN0 mn1=$SL_MN1
rl_check "two-node decode instance registers under load" wait_workers_long 3
rl_wait_log "$RL_TMP/mn0.log" "health and metrics on" 100
mn_m=$(sed -nE 's/.*health and metrics on http:\/\/127.0.0.1:([0-9]+).*/\1/p' "$RL_TMP/mn0.log")
f0=$rl_fail
rl_check "two-node decode instance takes requests" wait_streamed "$mn_m" 400
[ "$rl_fail" = "$f0" ] || tail -n 8 "$RL_TMP/mn0.log" "$RL_TMP/mn1.log" # what it was doing
wait_busy "$mn_m"
kill -TERM "$mn1"
kill -TERM "$mn0"
rl_check "two nodes, SIGTERM to both: node 0 drains and exits 0" drained "$mn0" mn0
node1_stayed() { drained "$mn1" mn1 && grep -q "the ranks stopped" "$RL_TMP/mn1.log"; }
rl_check "two nodes: node 1 stayed until node 0 stopped the ranks, exits 0" node1_stayed
rl_check "a decode worker (d1, d2 or the two-node instance) drained with streams in flight" \
    grep -qE "draining: [1-9][0-9]* request" "$RL_TMP/d1.log" "$RL_TMP/d2.log" "$RL_TMP/mn0.log"
rl_check "load goes on over d3" completed_more 4

touch "$RL_TMP/stop"
for i in $(seq 300); do kill -0 "$load" 2>/dev/null || break; sleep 0.1; done
wait "$load"
rl_check "no request lost: every request of the load completed" [ $? = 0 ]
summary() { python3 -c "import json; r = json.load(open('$RL_TMP/load.json')); print($1)"; }
echo "load: $(summary '"%d requests, %d failed" % (r["total"], len(r["failures"]))')"
rl_check "the load kept going through every step (>= 20 requests)" \
    [ "$(summary 'r["total"]')" -ge 20 ]
all_idle() { wait_idle "$p2_m" && wait_idle "$d3_m"; }
rl_check "pages idle on the workers left" all_idle
eventually() { # CMD...: true within 5 s (heartbeats come late; silent workers go at 3 s)
    local i
    for i in $(seq 50); do "$@" && return 0; sleep 0.1; done
    return 1
}
rl_check "pool gauges: nothing running, no KV in use at the end" eventually \
    pool_is running_requests decode 0 kv_usage decode 0 queued_prefill_tokens prefill 0

# The last prefill worker drained between a request's two halves: d3 is stopped (well under
# the router's 3 s heartbeat timeout), so the PrefillRequest reaches p2 and the KvTarget does
# not; p2's waiting gauge shows it, SIGTERM, and p2 must stay until d3 resumes and sends it.
waiting() { # PORT: the worker's waiting-requests gauge is above 0
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^wideep:worker_waiting_requests/ {s += $2} END {exit !(s > 0)}'
}
kill -STOP "$d3"
python3 "$client" stream "$RL_URL" 40 "$RL_TMP/halves" &
streamer=$!
for i in $(seq 40); do waiting "$p2_m" && break; sleep 0.05; done
kill -TERM "$p2"
sleep 0.5
kill -CONT "$d3"
rl_check "SIGTERM between the halves: p2 counted the request in flight" \
    grep -qE "draining: [1-9][0-9]* request" "$RL_TMP/p2.log"
rl_check "SIGTERM between the halves: p2 drains and exits 0" drained "$p2" p2
wait "$streamer"
rl_check "SIGTERM between the halves: the request completed" \
    bash -c "grep -q '\[DONE\]' '$RL_TMP/halves' && ! grep -q '\"error\"' '$RL_TMP/halves'"
rl_check "SIGTERM between the halves: d3's pages idle" wait_idle "$d3_m"
rl_finish

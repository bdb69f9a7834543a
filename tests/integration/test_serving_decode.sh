#!/usr/bin/env bash
# wideep-router in front of real wideep-decode workers on loopback (the model runs):
#   - router + one decode worker (tp 1): greedy output through HTTP equals wideep-generate;
#   - router + two decode workers (tp2 ep2 deepep; tp2 dp2 DP attention ep2): the same
#     output whichever worker and DP rank serves it; 64 concurrent streams all complete
#     and are correct;
#   - a client that disconnects mid-stream: the abort reaches the worker and its KV pages
#     return to idle;
#   - kill -9 of a worker mid-stream: the client gets an error event, not a hang; the
#     router stays up and the next request goes to the other worker;
#   - SIGTERM drain: requests in flight complete, the worker exits 0, nothing is lost;
#   - a router restart: the workers register again by themselves;
#   - a worker with another model is refused with the reason;
#   - the official openai client suite passes against the real workers.
. "$(dirname "$0")/router_lib.sh"
# The shipped tiny model: a 2048-token context leaves room for streams long enough to be
# interrupted.
RL_MODEL="$src/deploy/tiny-model"
client="$src/tests/integration/serving_client.py"
gen="$bin/wideep-generate"
printf '%s\n' 1,2,3,4,5 17,99,3,250,7,8,41 640,12,5 9,9,9,9,9,9,9,9,9 300,301,302,303 >"$RL_TMP/prompts"

. "$(dirname "$0")/serving_lib.sh"
sd_start_decode() { # NAME [flags...]: sets SD_PID and SD_MPORT
    sl_start decode "$@" || return 1
    SD_PID=$SL_PID SD_MPORT=$SL_MPORT
}

# The reference: wideep-generate on the same prompts, greedy, 10 tokens.
sl_reference "$RL_TMP/prompts" 10 "$RL_TMP/want"

rl_start_router main --policy round_robin || exit 1
sd_start_decode solo || { cat "$RL_TMP/solo.log"; exit 1; }
solo=$SD_PID solo_m=$SD_MPORT
rl_check "decode worker registers" rl_wait_workers 1
python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got1" 2>"$RL_TMP/c.err"
rl_check "tp1: greedy via HTTP equals wideep-generate" cmp -s "$RL_TMP/got1" "$RL_TMP/want"
rl_check "tp1: pages back to idle" wait_idle "$solo_m"
rl_stop "$solo"
rl_check "SIGTERM: the idle worker exits" bash -c "! kill -0 $solo 2>/dev/null"
rl_check "drain logged" rl_wait_log "$RL_TMP/solo.log" "drained; shutting down"
rl_check "the router drops it" rl_wait_workers 0

sd_start_decode ep --tp 2 --ep 2 --moe-a2a-backend deepep || exit 1
ep=$SD_PID ep_m=$SD_MPORT
sd_start_decode dpa --tp 2 --dp 2 --enable-dp-attention --ep 2 || exit 1
dpa=$SD_PID dpa_m=$SD_MPORT
rl_check "two decode workers register" wait_workers_long 2
ok=1
for round in 1 2 3 4; do
    python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got" 2>>"$RL_TMP/c.err" &&
        cmp -s "$RL_TMP/got" "$RL_TMP/want" || ok=0
done
rl_check "tp2 ep2 deepep and tp2 dp2 DP attention: greedy equals wideep-generate" [ $ok = 1 ]
rl_check "both workers served" bash -c "[ \$(curl -s '$RL_URL/workers' | python3 -c \
'import json,sys;print(min(w[\"requests\"] for w in json.load(sys.stdin)[\"workers\"]))') -gt 0 ]"
rl_check "64 concurrent streams complete and are correct" \
    python3 "$client" concurrent "$RL_URL" "$RL_TMP/prompts" 12 64
both_idle() { wait_idle "$ep_m" && wait_idle "$dpa_m" 1; }
rl_check "pages back to idle on both" both_idle

# The official openai client against real decode workers (chat and completions, streaming
# and not, stop, logprobs, usage, error classes); its venv from tests/integration/openai_venv.sh.
. "$src/tests/integration/openai_venv.sh"
if openai_venv "$bin/../venv-openai" "$RL_TMP/pip.log"; then
    rl_check "openai client suite against real decode workers" "$OPENAI_PY" \
        "$src/tests/integration/openai_client_test.py" --base-url "$RL_URL/v1" --model "$RL_MODEL"
else
    echo "skip: openai client not installable here ($(tail -1 "$RL_TMP/pip.log"))"
fi

# A client that leaves mid-stream: the abort reaches the worker, pages return.
python3 "$client" disconnect "$RL_URL" 1500 >/dev/null 2>&1
rl_check "disconnect: pages back to idle" both_idle
aborted() { # the most aborted requests either worker counted (-1: none has the series)
    local a b
    a=$(wmetric "$ep_m" 'wideep:worker_requests_total{outcome="aborted"}')
    b=$(wmetric "$dpa_m" 'wideep:worker_requests_total{outcome="aborted"}')
    echo $((a > b ? a : b))
}
counted_abort() { # within 5 s: the abort follows the router noticing the client left, and
    local i       # the worker republishes its metrics every 250 ms
    for i in $(seq 50); do [ "$(aborted)" -ge 1 ] && return 0; sleep 0.1; done
    return 1
}
rl_check "disconnect: the worker counted an abort" counted_abort

# SIGTERM drain under load: streams in flight on the draining worker still complete.
for i in 1 2 3 4; do
    python3 "$client" stream "$RL_URL" 800 "$RL_TMP/drain$i" &
done
for i in 1 2 3 4; do rl_wait_log "$RL_TMP/drain$i" '"content"' 100; done
kill -TERM "$dpa"
wait $(jobs -p | grep -v -e "^$ep\$" -e "^$dpa\$" -e "^$RL_RPID\$") 2>/dev/null
lost=0
for i in 1 2 3 4; do
    grep -q '^data: \[DONE\]' "$RL_TMP/drain$i" && grep -q '"content"' "$RL_TMP/drain$i" &&
        ! grep -q '"error"' "$RL_TMP/drain$i" ||
        lost=$((lost + 1))
done
rl_check "drain: no request lost" [ $lost = 0 ]
rl_check "drain: it had requests in flight" grep -qE "draining: [1-9][0-9]* request" "$RL_TMP/dpa.log"
wait "$dpa" 2>/dev/null
rl_check "drain: the worker exits 0" [ $? = 0 ]
rl_check "drain: one worker left" rl_wait_workers 1

# kill -9 mid-stream: an error event, no hang; the next request is served elsewhere.
sd_start_decode dpb --tp 2 --dp 2 --enable-dp-attention --ep 2 || exit 1
dpb=$SD_PID
wait_workers_long 2
python3 "$client" stream "$RL_URL" 1500 "$RL_TMP/killed" &
streamer=$!
rl_wait_log "$RL_TMP/killed" '"content"' 100
victim=$ep
curl -s "$RL_URL/workers" | grep -q '"instance_id":"dpb"[^]]*"inflight":1' && victim=$dpb
kill -KILL "$victim"
t0=$(date +%s)
wait $streamer
t1=$(date +%s)
rl_check "kill -9: the client got an error event" grep -q '^data: {"error"' "$RL_TMP/killed"
rl_check "kill -9: no hang" [ $((t1 - t0)) -le 10 ]
rl_check "kill -9: the router stays up" [ "$(curl -s "$RL_URL/health")" = OK ]
python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got" 2>>"$RL_TMP/c.err"
rl_check "kill -9: the next requests are served by the other worker" cmp -s "$RL_TMP/got" "$RL_TMP/want"
sleep 1
rl_check "kill -9: no rank of the dead worker is left" bash -c "! pgrep -P $victim >/dev/null"

# A decode worker over two "nodes" (tp4 dp2 DP attention, DP rank 1 led from node 1): node 0's
# front-end is the control endpoint, node 1's relays; both DP ranks serve correct tokens, and
# a SIGTERM to node 0 stops both nodes cleanly.
sl_start_two_nodes mn --tp 4 --dp 2 --enable-dp-attention --ep 4 --moe-a2a-backend deepep
mn0=$SL_MN0 mn1=$SL_MN1
rl_check "two nodes: registers once" wait_workers_long 2
ok=1
for round in 1 2; do
    python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got" 2>>"$RL_TMP/c.err" &&
        cmp -s "$RL_TMP/got" "$RL_TMP/want" || ok=0
done
rl_check "two nodes: greedy equals wideep-generate on both DP ranks" [ $ok = 1 ]
mn_m=$(sed -nE 's/.*health and metrics on http:\/\/127.0.0.1:([0-9]+).*/\1/p' "$RL_TMP/mn0.log")
rl_check "two nodes: DP rank 1 (led from node 1) streamed tokens" \
    [ "$(wmetric "$mn_m" 'wideep:worker_generated_tokens_total{dp_rank="1"}')" -gt 0 ]
kill -TERM "$mn0"
wait "$mn0"; rc0=$?
wait "$mn1"; rc1=$?
rl_check "two nodes: SIGTERM to node 0 stops both, exit 0" [ $rc0 = 0 ] && [ $rc1 = 0 ]
rl_wait_workers 1

# A router restart: the surviving worker registers again by itself.
RL_FIXED_HTTP=$RL_HTTP RL_FIXED_WP=$RL_WP
rl_stop "$RL_RPID"
rl_start_router again --policy round_robin || exit 1
rl_check "router restart: the worker registers again" rl_wait_workers 1
python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got" 2>>"$RL_TMP/c.err"
rl_check "router restart: serving again" cmp -s "$RL_TMP/got" "$RL_TMP/want"
RL_FIXED_HTTP= RL_FIXED_WP=

# A worker with another model is refused, the reason in both logs.
"$bin/wideep-decode" --model-path "$src/tests/fixtures/tiny-deepseek-v3/fp32" \
    --router "tcp://127.0.0.1:$RL_WP" --instance-id other --threads 1 >"$RL_TMP/other.log" 2>&1 &
other=$!
RL_PIDS+=("$other")
wait $other
rc=$?
rl_check "another model: the worker exits non-zero" [ $rc -ne 0 ] && [ $rc -lt 128 ]
rl_check "another model: the reason in the worker's log" grep -q "refused this worker: .*model" "$RL_TMP/other.log"
rl_check "another model: the reason in the router's log" grep -q "refused worker other" "$RL_TMP/again.log"
rl_check "no shared memory left by dead workers" bash -c "! ls /dev/shm | grep -q \"^wd-$victim\""
[ -s "$RL_TMP/c.err" ] && head -5 "$RL_TMP/c.err"
rl_finish

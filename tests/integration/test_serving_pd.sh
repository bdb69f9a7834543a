#!/usr/bin/env bash
# Prefill/decode disaggregation end to end on loopback: wideep-router choosing the pair,
# wideep-prefill workers writing each request's KV over UCX into the pages wideep-decode
# workers reserved, decode streaming the tokens.
#   - layout pairs (GQA heads split on prefill into a DP-attention decode rank, and split on
#     decode from a tp1 prefill; MLA's latent into a DP-attention decode and tp1 into tp2):
#     greedy output through HTTP equals wideep-generate, and the KV really moved;
#   - 2P1D and 1P2D: every pair serves correct tokens; 64 concurrent streams; the openai
#     client suite against 1P1D;
#   - faults, each ending with every worker's KV pages idle again: kill -9 of decode
#     mid-stream, kill -9 of prefill before KvDone, SIGSTOP of prefill (the lease and the
#     deadline), client disconnect during prefill and during decode, garbage on the bootstrap
#     port, a router restart with requests in flight.
. "$(dirname "$0")/router_lib.sh"
. "$(dirname "$0")/serving_lib.sh"
client="$src/tests/integration/serving_client.py"
printf '%s\n' 1,2,3,4,5 17,99,3,250,7,8,41 640,12,5 9,9,9,9,9,9,9,9,9 300,301,302,303 >"$RL_TMP/prompts"

router_metric() { # NAME{labels}: the router's value, 0 when absent
    curl -s "$RL_URL/metrics" | awk -v k="$1" '$1 == k {print $2; f=1} END {if (!f) print 0}'
}
moved() { # the router saw KV bytes move
    python3 -c "import sys; sys.exit(0 if float('$(router_metric wideep:router_kv_transfer_bytes_sum)') > 0 else 1)"
}
greedy_ok() { # ROUNDS: every round of greedy requests equals the reference
    local r ok=1
    for r in $(seq "${1:-1}"); do
        python3 "$client" greedy "$RL_URL" "$RL_TMP/prompts" 10 >"$RL_TMP/got" 2>>"$RL_TMP/c.err" &&
            cmp -s "$RL_TMP/got" "$RL_TMP/want" || ok=0
    done
    [ $ok = 1 ]
}
stop_all() { # PIDS...: SIGTERM (drain) and wait
    local p
    for p in "$@"; do rl_stop "$p"; done
}

# ---- GQA (the Qwen3-MoE fixture: 2 KV heads) ----
RL_MODEL="$src/tests/fixtures/tiny-qwen3-moe/fp32"
sl_reference "$RL_TMP/prompts" 10 "$RL_TMP/want"
rl_start_router gqa --policy round_robin || exit 1

sl_start prefill p_tp2 --tp 2 || exit 1
p1=$SL_PID p1_m=$SL_MPORT
sl_start decode d_dpa --tp 2 --dp 2 --enable-dp-attention || exit 1
d1=$SL_PID d1_m=$SL_MPORT
rl_check "gqa: prefill tp2 and decode tp2 dp2 register" wait_workers_long 2
rl_check "gqa: prefill tp2 (heads split) -> decode DP attention: greedy equals wideep-generate" \
    greedy_ok 2
rl_check "gqa: the KV moved between the workers" moved
counted() { # PORT NAME: the worker's histogram NAME has observations
    python3 -c "import sys; sys.exit(0 if float('$(wmetric "$1" "$2_count")') > 0 else 1)"
}
rl_check "gqa: prefill worker: kv_pair_setup_seconds and kv_transfer_gb_per_second counted" \
    bash -c "$(declare -f wmetric counted); counted $p1_m wideep:kv_pair_setup_seconds &&
        counted $p1_m wideep:kv_transfer_gb_per_second"
rl_check "gqa: decode worker: kv_transfer_gb_per_second counted" \
    bash -c "$(declare -f wmetric counted); counted $d1_m wideep:kv_transfer_gb_per_second"
echo "     pair setup: $(wmetric "$p1_m" wideep:kv_pair_setup_seconds_sum) s over" \
    "$(wmetric "$p1_m" wideep:kv_pair_setup_seconds_count) decode DP groups; transfers:" \
    "$(wmetric "$p1_m" wideep:kv_transfer_gb_per_second_sum) GB/s summed over" \
    "$(wmetric "$p1_m" wideep:kv_transfer_gb_per_second_count)"
idle_1() { wait_idle "$p1_m" && wait_idle "$d1_m" 1; }
rl_check "gqa: pages idle on both" idle_1
stop_all "$p1" "$d1"
rl_wait_workers 0

sl_start prefill p_tp1 || exit 1
p2=$SL_PID p2_m=$SL_MPORT
sl_start decode d_tp2 --tp 2 || exit 1
d2=$SL_PID d2_m=$SL_MPORT
rl_check "gqa: prefill tp1 and decode tp2 register" wait_workers_long 2
rl_check "gqa: prefill tp1 -> decode tp2 (heads split on decode): greedy equals" greedy_ok 2
idle_2() { wait_idle "$p2_m" && wait_idle "$d2_m"; }
rl_check "gqa: pages idle on both" idle_2
stop_all "$p2" "$d2"
rl_stop "$RL_RPID"

# ---- MLA (the shipped tiny DeepSeek-V3-architecture model) ----
RL_MODEL="$src/deploy/tiny-model"
sl_reference "$RL_TMP/prompts" 10 "$RL_TMP/want"
rl_start_router mla --policy round_robin --prefill-policy round_robin --decode-policy round_robin ||
    exit 1
sl_start prefill pa || exit 1
pa=$SL_PID pa_m=$SL_MPORT
sl_start prefill pb --tp 2 --ep 2 --moe-a2a-backend deepep || exit 1
pb=$SL_PID pb_m=$SL_MPORT
sl_start decode da --kv-release-timeout-secs 20 --tp 2 --dp 2 --enable-dp-attention --ep 2 --moe-a2a-backend deepep \
    --deepep-mode low_latency || exit 1
da=$SL_PID da_m=$SL_MPORT
rl_check "mla 2P1D: three workers register" wait_workers_long 3
rl_check "mla 2P1D: greedy equals wideep-generate over both prefill workers" greedy_ok 3
transferred() { # PORT: the worker moved KV bytes
    python3 -c "import sys; sys.exit(0 if float('$(wmetric "$1" wideep:kv_transfer_bytes_total)') > 0 else 1)"
}
rl_check "mla 2P1D: both prefill workers transferred" bash -c \
    "$(declare -f wmetric transferred); transferred $pa_m && transferred $pb_m"
rl_check "mla 2P1D: 64 concurrent streams complete and are correct" \
    python3 "$client" concurrent "$RL_URL" "$RL_TMP/prompts" 12 64
. "$src/tests/integration/openai_venv.sh"
if openai_venv "$bin/../venv-openai" "$RL_TMP/pip.log"; then
    rl_check "mla: the openai client suite against prefill + decode" "$OPENAI_PY" \
        "$src/tests/integration/openai_client_test.py" --base-url "$RL_URL/v1" --model "$RL_MODEL"
else
    echo "skip: openai client not installable here ($(tail -1 "$RL_TMP/pip.log"))"
fi
all_idle() {
    wait_idle "$pa_m" && wait_idle "$pb_m" && wait_idle "$da_m" 1 &&
        { [ -z "${db_m:-}" ] || wait_idle "$db_m"; }
}
rl_check "mla 2P1D: pages idle everywhere" all_idle

# 1P2D: one prefill worker feeds two decode workers.
stop_all "$pb"
sl_start decode db --kv-release-timeout-secs 20 || exit 1
db=$SL_PID db_m=$SL_MPORT
rl_check "mla 1P2D: the second decode worker registers" wait_workers_long 3
rl_check "mla 1P2D: greedy equals over both decode workers" greedy_ok 3
streamed() { # PORT: the worker streamed tokens (any DP rank)
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^wideep:worker_generated_tokens_total/ {s += $2} END {exit !(s > 0)}'
}
rl_check "mla 1P2D: both decode workers streamed" bash -c \
    "$(declare -f streamed); streamed $da_m && streamed $db_m"
all_idle() { wait_idle "$pa_m" && wait_idle "$da_m" 1 && wait_idle "$db_m"; }
rl_check "mla 1P2D: pages idle everywhere" all_idle

# ---- faults ----
long=$(python3 -c 'print(",".join(str((i * 37) % 4000 + 1) for i in range(1500)))')
stream_ids() { # IDS N OUT: a streaming completion of the ids, every SSE line to OUT
    python3 - "$RL_URL" "$1" "$2" "$3" <<'PY' &
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
body = {"prompt": [int(x) for x in sys.argv[2].split(",")], "max_tokens": int(sys.argv[3]),
        "ignore_eos": True, "stream": True}
c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
r = c.getresponse()
with open(sys.argv[4], "w") as f:
    f.write(f"status {r.status}\n"); f.flush()
    for raw in r:
        f.write(raw.decode()); f.flush()
PY
}

# Client disconnect during decode, then during prefill (a long prompt), then at once (the
# router's abort can reach the prefill worker before the decode worker's KvTarget does:
# the prefill side must still release the decode side's pages, not leave them to the
# quarantine): pages return before the 20 s quarantine given to the decode workers here.
python3 "$client" disconnect "$RL_URL" 800 >/dev/null 2>&1
rl_check "disconnect during decode: pages idle everywhere" all_idle
disconnect_after() { # IDS SECONDS: a streaming prompt, the socket closed after SECONDS
    python3 - "$RL_URL" "$1" "$2" <<'PY'
import http.client, json, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
body = {"prompt": [int(x) for x in sys.argv[2].split(",")], "max_tokens": 200, "stream": True}
c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
time.sleep(float(sys.argv[3]))
c.sock.close()
PY
}
disconnect_after "$long" 0.05 # the prompt is still being prefilled
# The abort reaches the prefill ranks after the step that prefills the prompt: a sanitizer
# build takes ~20 s for it, the pages return when it ends (KvDone to a cancelled request).
SL_IDLE_TENTHS=400
rl_check "disconnect during prefill: pages idle everywhere" all_idle
for _ in 1 2 3; do disconnect_after "$(echo "$long" | cut -d, -f1-200)" 0; done
rl_check "disconnect before the KvTarget: pages idle everywhere" all_idle
unset SL_IDLE_TENTHS

# kill -9 of a decode worker mid-stream: an error event, no hang; the prefill side is idle.
python3 "$client" stream "$RL_URL" 1500 "$RL_TMP/killed" &
streamer=$!
rl_wait_log "$RL_TMP/killed" '"content"' 100
victim=$da victim_m=$da_m
idle "$db_m" || victim=$db victim_m=$db_m # the one streaming it (db has one DP rank)
kill -KILL "$victim"
wait $streamer
rl_check "kill -9 decode: the client got an error event" grep -q '^data: {"error"' "$RL_TMP/killed"
rl_check "kill -9 decode: prefill pages idle" wait_idle "$pa_m"
rl_check "kill -9 decode: the router stays up" [ "$(curl -s "$RL_URL/health")" = OK ]
rl_wait_workers 2
[ "$victim" = "$da" ] && { da=$db da_m=$db_m; }
all_idle() { wait_idle "$pa_m" && wait_idle "$da_m"; }
rl_check "after kill -9 decode: greedy still equals" greedy_ok 1

# Garbage on the bootstrap port: refused, the prefill worker keeps serving.
bport=$(sed -nE 's/.*bootstrap endpoint tcp:\/\/127.0.0.1:([0-9]+).*/\1/p' "$RL_TMP/pa.log" | head -1)
if [ -n "$bport" ]; then
    head -c 4096 /dev/urandom | timeout 2 python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $bport)); s.sendall(sys.stdin.buffer.read()); s.close()" 2>/dev/null
    printf '\xff\x00\x00\x00\x00\x00\x00\x01\x7fgarbage' | timeout 2 python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $bport)); s.sendall(sys.stdin.buffer.read()); s.close()" 2>/dev/null
fi
rl_check "garbage on the bootstrap port: still serving correctly" greedy_ok 1
rl_check "garbage on the bootstrap port: the prefill worker is alive" kill -0 "$pa"

# SIGSTOP of the prefill worker: the request ends at its deadline (no hang); after SIGCONT
# the prefill side aborts it (its lease) and every page returns.
rl_stop "$RL_RPID"
RL_FIXED_HTTP= RL_FIXED_WP=$RL_WP
rl_start_router short --request-timeout-secs 3 || exit 1
rl_wait_workers 2
kill -STOP "$pa"
t0=$(date +%s)
code=$(curl -s -o "$RL_TMP/stopped" -w '%{http_code}' "$RL_URL/v1/completions" \
    -d '{"prompt":"hello there","max_tokens":8}')
t1=$(date +%s)
kill -CONT "$pa"
# The router drops the silent prefill worker (missed heartbeats) and retries on the decode
# worker alone, or the deadline passes first: a 504 or a whole answer, never a hang.
rl_check "SIGSTOP prefill: 504 at the deadline, or retried elsewhere ($code)" \
    bash -c "[ $code = 504 ] || { [ $code = 200 ] && grep -q '\"text\"' '$RL_TMP/stopped'; }"
rl_check "SIGSTOP prefill: within the deadline (no hang)" [ $((t1 - t0)) -le 6 ]
SL_IDLE_TENTHS=300
rl_check "SIGSTOP prefill: pages idle everywhere after it resumes" all_idle
unset SL_IDLE_TENTHS

# kill -9 of the prefill worker before KvDone (a long prompt prefilled in small chunks):
# a clear error, and the decode side's reserved pages return.
stream_ids "$long" 4 "$RL_TMP/pkilled"
pstream=$!
sleep 0.3
kill -KILL "$pa"
wait $pstream
# A clear error, or (retried once on the decode worker alone) a whole answer: never a hang.
rl_check "kill -9 prefill: the stream ended clearly" \
    bash -c "grep -q '^data: {\"error\"' '$RL_TMP/pkilled' || grep -q '^data: \[DONE\]' '$RL_TMP/pkilled' ||
             ! grep -q '^status 200' '$RL_TMP/pkilled'"
SL_IDLE_TENTHS=300
rl_check "kill -9 prefill: decode pages idle" wait_idle "$da_m"
unset SL_IDLE_TENTHS

# A router restart with requests in flight: the workers come back, the pages return.
sl_start prefill pc || exit 1
pc_m=$SL_MPORT
rl_wait_workers 2
inflight=()
for i in 1 2 3; do
    python3 "$client" stream "$RL_URL" 600 "$RL_TMP/inflight$i" &
    inflight+=($!)
done
sleep 0.5
RL_FIXED_HTTP=$RL_HTTP RL_FIXED_WP=$RL_WP
rl_stop "$RL_RPID"
wait "${inflight[@]}"
rl_start_router again --policy round_robin || exit 1
rl_check "router restart: the workers register again" wait_workers_long 2
idle_3() { wait_idle "$pc_m" && wait_idle "$da_m"; }
SL_IDLE_TENTHS=300
rl_check "router restart: pages idle on both" idle_3
unset SL_IDLE_TENTHS
rl_check "router restart: serving correctly again" greedy_ok 1
[ -s "$RL_TMP/c.err" ] && head -5 "$RL_TMP/c.err"
rl_finish

#!/usr/bin/env bash
# The router when things go wrong, with null workers as the peers:
#   - a worker with another model is refused at registration, the reason in both logs;
#   - kill -9 of a worker mid-stream: the client gets an SSE error event and [DONE] (not a
#     hang), the router stays up and serves the next request on the other worker;
#   - a worker that fails every request: each request is retried on the other worker and
#     succeeds, and the failing worker is cooled off after --worker-fail-threshold;
#   - a client that disconnects (streaming or not) makes the router send Abort at once;
#   - the deadline (--request-timeout-secs): 504, or an SSE error event once streaming, and
#     an Abort to the worker;
#   - a router killed and restarted on the same ports: the workers register again by
#     themselves, and a request the old router left running is aborted;
#   - SIGTERM with requests in flight: each gets an answer, the workers Aborts, exit 0.
. "$(dirname "$0")/router_lib.sh"

metric() { # name{labels} -> value (0 when absent)
    curl -s "$RL_URL/metrics" | awk -v k="$1" '$1 == k {print $2; f=1} END {if (!f) print 0}'
}

# --- refusal of an incompatible worker ---
rl_start_router a --policy round_robin || exit 1
rl_start_worker other --config-hash 0123456789abcdef
rl_check "incompatible worker is refused (worker log)" \
    rl_wait_log "$RL_TMP/other.wlog" "^refuse another model: its config.json hash is 0123456789abcdef"
rl_check "refusal in the router log" rl_wait_log "$RL_TMP/a.log" "refused worker other: another model"
rl_check "the refused worker is not registered" [ "$(rl_n_workers)" = 0 ]
rl_check "refusals are counted" [ "$(metric 'wideep:router_registrations_total{result="refused"}')" = 1 ]

# --- kill -9 mid-stream ---
rl_start_worker slow --token-interval-ms 100
slow_pid=$RL_WPID
rl_check "worker registers" rl_wait_workers 1
curl -sN --max-time 20 "$RL_URL/v1/chat/completions" \
    -d '{"messages":[{"role":"user","content":"Hello world"}],"max_tokens":200,"stream":true}' \
    >"$RL_TMP/killed" &
client=$!
rl_wait_log "$RL_TMP/killed" '"content"' 50
{ kill -KILL "$slow_pid"; wait "$slow_pid"; } 2>/dev/null
t0=$(date +%s)
wait $client
t1=$(date +%s)
rl_check "the client got an error event" grep -q '^data: {"error":{"message":"the worker serving this request failed' "$RL_TMP/killed"
rl_check "then [DONE]" bash -c "tail -2 '$RL_TMP/killed' | grep -q '^data: \[DONE\]'"
rl_check "within a few seconds (no hang)" [ $((t1 - t0)) -le 5 ]
rl_check "the router stays up" [ "$(curl -s "$RL_URL/health")" = OK ]
rl_check "the dead worker is dropped" rl_wait_workers 0
rl_check "drop logged" rl_wait_log "$RL_TMP/a.log" "worker slow dropped: nothing from it"

# --- retry on another worker, cool-off ---
rl_start_worker bad --fail
rl_start_worker good
rl_check "two workers" rl_wait_workers 2
ok=0
for i in 1 2 3 4 5 6; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$RL_URL/v1/completions" \
        -d '{"prompt":"Hello","max_tokens":3}')
    [ "$code" = 200 ] && ok=$((ok + 1))
done
rl_check "every request succeeds (retried off the failing worker)" [ $ok = 6 ]
rl_check "retries are counted" bash -c "[ \"\$(curl -s '$RL_URL/metrics' | awk '\$1==\"wideep:router_retries_total\"{print \$2}')\" -ge 3 ]"
rl_check "the failing worker is cooled off" bash -c "curl -s '$RL_URL/workers' | python3 -c \
'import json,sys;w={x[\"instance_id\"]:x for x in json.load(sys.stdin)[\"workers\"]};assert w[\"bad\"][\"is_cooled_off\"]'"
rl_check "cool-off logged" rl_wait_log "$RL_TMP/a.log" "worker bad cooled off"
rl_stop "$RL_RPID"

# --- client disconnect, deadline ---
rl_start_router b --request-timeout-secs 2 || exit 1
rl_start_worker s --token-interval-ms 100
rl_wait_workers 1
curl -sN --max-time 1 "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":100,"stream":true}' >/dev/null
rl_check "streaming client gone -> Abort" rl_wait_log "$RL_TMP/s.wlog" "^abort " 10
n_abort=$(grep -c '^abort ' "$RL_TMP/s.wlog")
curl -s --max-time 1 "$RL_URL/v1/completions" -d '{"prompt":"Hello","max_tokens":100}' >/dev/null
rl_check "non-streaming client gone -> Abort at once" bash -c "for i in \$(seq 10); do
    [ \$(grep -c '^abort ' '$RL_TMP/s.wlog') -gt $n_abort ] && exit 0; sleep 0.1; done; exit 1"
rl_check "client_gone counted" bash -c "[ \"\$(curl -s '$RL_URL/metrics' |
    awk '\$1==\"wideep:router_requests_total{outcome=\\\"client_gone\\\"}\"{print \$2}')\" = 2 ]"
code=$(curl -s -o "$RL_TMP/late" -w '%{http_code}' --max-time 10 "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":100}')
rl_check "deadline -> 504" [ "$code" = 504 ]
rl_check "504 names the deadline" grep -q 'did not finish within 2 s' "$RL_TMP/late"
n_abort=$(grep -c '^abort ' "$RL_TMP/s.wlog")
curl -sN --max-time 10 "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":100,"stream":true}' >"$RL_TMP/late_stream"
rl_check "deadline while streaming -> error event" grep -q '"type":"timeout_error"' "$RL_TMP/late_stream"
rl_check "deadline -> Abort to the worker" bash -c "[ \$(grep -c '^abort ' '$RL_TMP/s.wlog') -gt $n_abort ]"
rl_check "the worker got the deadline" grep -qE '^generate .* deadline_ms=(19[0-9][0-9]|2000) ' "$RL_TMP/s.wlog"

# --- router killed mid-stream and restarted: the workers come back by themselves, and
# the worker is told to stop what it still generates for the old router ---
RL_FIXED_HTTP=$RL_HTTP RL_FIXED_WP=$RL_WP
curl -sN --max-time 20 "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":100,"stream":true}' >/dev/null &
orphan_client=$!
rl_wait_log "$RL_TMP/s.wlog" "^generate .* max=100 " 50
orphan=$(grep '^generate .* max=100 ' "$RL_TMP/s.wlog" | tail -1 | cut -d' ' -f2)
{ kill -KILL "$RL_RPID"; wait "$RL_RPID"; } 2>/dev/null
wait "$orphan_client"
rl_start_router c --request-timeout-secs 30 || exit 1
rl_check "the worker registers again after the restart" rl_wait_workers 1
rl_check "it was told to" grep -q 'error 0 not_found: unknown instance s' "$RL_TMP/s.wlog"
rl_check "its orphaned request is aborted by the new router" \
    rl_wait_log "$RL_TMP/s.wlog" "^abort $orphan\$" 30
rl_check "and serves" [ "$(curl -s -o /dev/null -w '%{http_code}' "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":2}')" = 200 ]

# --- stopping with requests in flight: each gets an answer, the router exits 0 ---
curl -sN --max-time 20 "$RL_URL/v1/completions" \
    -d '{"prompt":"Hello","max_tokens":200,"stream":true}' >"$RL_TMP/stop_stream" &
c1=$!
curl -s --max-time 20 "$RL_URL/v1/completions" -d '{"prompt":"Hello","max_tokens":200}' \
    >"$RL_TMP/stop_plain" &
c2=$!
rl_wait_log "$RL_TMP/stop_stream" '"text"' 50
n_abort=$(grep -c '^abort ' "$RL_TMP/s.wlog")
kill -TERM "$RL_RPID"
wait "$RL_RPID"
rc=$?
wait "$c1" "$c2"
rl_check "SIGTERM: the router exits 0" [ $rc = 0 ]
rl_check "the stream gets an error event and [DONE]" \
    grep -q '"message":"the router is shutting down"' "$RL_TMP/stop_stream"
rl_check "the waiting request gets a 503 body" grep -q 'the router is shutting down' \
    "$RL_TMP/stop_plain"
rl_check "the worker got both Aborts" bash -c "for i in \$(seq 20); do
    [ \$(grep -c '^abort ' '$RL_TMP/s.wlog') -ge $((n_abort + 2)) ] && exit 0; sleep 0.1; done; exit 1"
rl_finish

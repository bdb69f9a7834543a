#!/usr/bin/env bash
# The router's half of prefill/decode disaggregation, with null workers as the peers
# (wideep-bench null-worker --role prefill|decode: no model, no KV, protocol only):
#   - a request goes to a pair: DecodeRequest to the decode worker naming the prefill worker
#     and its bootstrap endpoint, PrefillRequest to the prefill worker naming the decode
#     worker, one request id; /generate's meta_info.kv_transfer and the KV metrics carry the
#     KvDone's figures; /workers shows the roles;
#   - --pd-min-prefill-tokens: a shorter prompt is a plain GenerateRequest to decode;
#   - a prefill or decode worker whose page size / KV dtype does not pair, or a prefill
#     worker without a tcp:// bootstrap endpoint, is refused at registration with the reason;
#   - a prefill worker that fails: the decode side is aborted, the request retried on a new
#     pair and answered; the failing prefill worker is cooled off;
#   - kill -9 of the prefill worker before its KvDone: the decode side gets an Abort at once
#     and the request is retried (on the decode worker alone: no prefill worker is left);
#     the same while tokens already streamed: a clear error event, never a hang;
#   - kill -9 of the decode worker while the prefill side works: the prefill side is aborted,
#     the client gets a clear error;
#   - client gone and deadline: Abort to both sides;
#   - a KvDone that reaches the router after the decode worker finished: the answer waits
#     for it (its figures are in it), or goes out without them after the grace.
. "$(dirname "$0")/router_lib.sh"

metric() { # name{labels} -> value (0 when absent)
    curl -s "$RL_URL/metrics" | awk -v k="$1" '$1 == k {print $2; f=1} END {if (!f) print 0}'
}
json() { # FILE EXPR: a python expression over j (the parsed file)
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null
}
last_id() { # WLOG KIND: the request id of the last KIND line
    grep "^$2 " "$1" | tail -1 | cut -d' ' -f2
}
# wait_set "['a', 'b']": waits up to 10 s for exactly these registered workers.
wait_set() {
    local i
    for i in $(seq 100); do
        [ "$(curl -s "$RL_URL/workers" | python3 -c 'import json,sys
print(sorted(w["instance_id"] for w in json.load(sys.stdin)["workers"]))' 2>/dev/null)" = "$1" ] &&
            return 0
        sleep 0.1
    done
    return 1
}
# wait_abort WLOG ID [tenths]: the worker got Abort{ID}.
wait_abort() { rl_wait_log "$1" "^abort $2\$" "${3:-30}"; }
# stop_all: the router and every worker started so far (each scenario gets fresh ones).
stop_all() {
    local p
    for p in "${RL_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${RL_PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
# A heartbeat timeout well above router_lib's 600 ms: on a loaded machine a worker that is
# only descheduled must not be dropped in the middle of a check; the kill -9 cases wait for it.
ASK='{"prompt": "Hello there my good old friend", "max_tokens": 3}'
# kill9_in_prefill PID OUT PREFILL_WLOG: a request (in the background: body in OUT, status in
# OUT.code) reaches the prefill worker, then PID is killed; sets ID (its request id), CLIENT.
kill9_in_prefill() {
    curl -s --max-time 20 -o "$2" -w '%{http_code}' "$RL_URL/v1/completions" -d "$ASK" \
        >"$2.code" &
    CLIENT=$!
    rl_wait_log "$3" "^prefill " 50
    ID=$(last_id "$3" prefill)
    { kill -KILL "$1"; wait "$1"; } 2>/dev/null
}
PD_FLAGS=(--prefill-policy round_robin --decode-policy least_load --pd-min-prefill-tokens 4
    --heartbeat-timeout-ms 1500)
# new_pair ROUTER D "D_FLAGS" P "P_FLAGS" ["ROUTER_FLAGS"]: after stop_all, a fresh router
# with one decode and one prefill worker (flag strings split on spaces); sets D_PID, P_PID.
new_pair() {
    RL_PIDS=()
    rl_start_router "$1" "${PD_FLAGS[@]}" ${6:-} || exit 1
    rl_start_worker "$2" $3
    D_PID=$RL_WPID
    rl_start_worker "$4" --role prefill $5
    P_PID=$RL_WPID
    wait_set "['$2', '$4']"
}

# --- a pair, short prompts, roles, refusals, a failing prefill worker ---
rl_start_router a "${PD_FLAGS[@]}" || exit 1
# The null decode worker streams without waiting for any KV; the delay keeps its answers
# behind the prefill worker's, as a real one's are (a failing prefill worker is seen first).
rl_start_worker d1 --first-token-delay-ms 200
rl_start_worker p1 --role prefill
rl_check "decode and prefill workers register" rl_wait_workers 2
curl -s "$RL_URL/workers" >"$RL_TMP/workers.json"
rl_check "/workers shows each role" [ "$(json "$RL_TMP/workers.json" \
    "sorted((w['instance_id'], w['role']) for w in j['workers'])")" = \
    "[('d1', 'decode'), ('p1', 'prefill')]" ]
rl_check "/workers shows the bootstrap endpoint" [ "$(json "$RL_TMP/workers.json" \
    "[w['bootstrap_endpoint'] for w in j['workers'] if w['role'] == 'prefill'][0]")" = \
    tcp://127.0.0.1:9 ]

code=$(curl -s -o "$RL_TMP/gen" -w '%{http_code}' "$RL_URL/generate" -d '{"input_ids":
    [5, 6, 7, 8, 9, 10], "sampling_params": {"max_new_tokens": 4}, "return_kv_transfer_stats":
    true}')
rl_check "a disaggregated request succeeds" [ "$code" = 200 ]
rl_check "its output is the decode worker's" [ "$(json "$RL_TMP/gen" "j['output_ids']")" = \
    "[5, 6, 7, 8]" ]
id=$(last_id "$RL_TMP/d1.wlog" decode)
rl_check "DecodeRequest names the prefill worker, its rank and bootstrap endpoint" grep -qE \
    "^decode $id dp=0 n_input=6 max=4 .* peer=p1 peer_dp=0 bootstrap=tcp://127.0.0.1:9\$" \
    "$RL_TMP/d1.wlog"
rl_check "PrefillRequest has the same id and names the decode worker" grep -qE \
    "^prefill $id dp=0 n_input=6 max=4 .* peer=d1 peer_dp=0 bootstrap=-\$" "$RL_TMP/p1.wlog"
rl_check "meta_info.kv_transfer names the pair" [ "$(json "$RL_TMP/gen" \
    "(lambda k: (k['prefill_worker'], k['decode_worker'], k['kv_bytes']))(j['meta_info']['kv_transfer'])")" \
    = "('p1', 'd1', 24576)" ]
rl_check "meta_info.kv_transfer has the KvDone's times" [ "$(json "$RL_TMP/gen" \
    "(lambda k: (round(k['transfer_latency'] * 1e6), round(k['wait_target_latency'] * 1e6), k['gb_per_second'] > 0, k['prefill_latency'] >= 0))(j['meta_info']['kv_transfer'])")" \
    = "(106, 25, True, True)" ]
curl -s "$RL_URL/generate" -d '{"input_ids": [5, 6, 7], "sampling_params": {"max_new_tokens":
    2}, "return_kv_transfer_stats": true}' >"$RL_TMP/short"
rl_check "a prompt under --pd-min-prefill-tokens goes to decode alone" \
    grep -qE "^generate [0-9a-f]+ dp=0 n_input=3 max=2 " "$RL_TMP/d1.wlog"
rl_check "the prefill worker never saw it" [ "$(grep -c '^prefill ' "$RL_TMP/p1.wlog")" = 1 ]
rl_check "its kv_transfer is null" [ "$(json "$RL_TMP/short" "j['meta_info']['kv_transfer']")" = None ]
curl -sN --max-time 10 "$RL_URL/v1/chat/completions" -d '{"messages": [{"role": "user",
    "content": "Hello there, how are you?"}], "max_tokens": 5, "stream": true}' >"$RL_TMP/chat"
rl_check "a streamed chat through the pair ends with [DONE]" \
    bash -c "tail -2 '$RL_TMP/chat' | grep -q '^data: \[DONE\]'"
rl_check "both requests through the pair are counted" \
    [ "$(metric 'wideep:router_pd_requests_total{mode="disaggregated"}')" = 2 ]
rl_check "the short one too" [ "$(metric 'wideep:router_pd_requests_total{mode="short_prompt"}')" = 1 ]
for m in kv_transfer_seconds kv_transfer_bytes kv_transfer_gb_per_second kv_wait_target_seconds \
    pd_prefill_seconds; do
    rl_check "metric wideep:router_${m} has both" [ "$(metric "wideep:router_${m}_count")" = 2 ]
done
for k in prefill_error decode_error prefill_lost decode_lost timeout; do
    rl_check "metric wideep:router_pd_failures_total{kind=\"$k\"} is 0" \
        [ "$(metric "wideep:router_pd_failures_total{kind=\"$k\"}")" = 0 ]
done
rl_check "the prefill worker is counted" [ "$(metric 'wideep:router_workers{role="prefill"}')" = 1 ]

rl_start_worker p_page --role prefill --page-size 32
rl_check "a prefill worker of another page size is refused, the reason in its log" \
    rl_wait_log "$RL_TMP/p_page.wlog" \
    "^refuse cannot be paired: page_size 32 differs from (decode worker d1|prefill worker p1)'s 16"
rl_check "and in the router's" rl_wait_log "$RL_TMP/a.log" \
    "refused worker p_page: cannot be paired: page_size 32"
rl_start_worker d_dtype --kv-dtype fp32
rl_check "a decode worker of another KV dtype is refused" rl_wait_log "$RL_TMP/d_dtype.wlog" \
    "^refuse cannot be paired: kv_dtype fp32 differs from prefill worker p1's bf16"
rl_start_worker p_ep --role prefill --bootstrap-endpoint 'ucx:nowhere'
rl_check "a prefill worker without a tcp:// bootstrap endpoint is refused" \
    rl_wait_log "$RL_TMP/p_ep.wlog" "^refuse bootstrap endpoint 'ucx:nowhere' is not tcp://"
rl_check "none of them registered" [ "$(rl_n_workers)" = 2 ]

rl_start_worker p_fail --role prefill --fail
rl_check "a failing prefill worker registers" rl_wait_workers 3
rl_check "every request succeeds (retried on a new pair)" \
    [ "$(rl_count_200 6 /v1/completions "$ASK")" = 6 ]
failed=$(grep -c '^prefill ' "$RL_TMP/p_fail.wlog")
rl_check "the failing prefill worker got some" [ "$failed" -ge 1 ]
all_aborted=1
for fid in $(grep '^prefill ' "$RL_TMP/p_fail.wlog" | cut -d' ' -f2); do
    wait_abort "$RL_TMP/d1.wlog" "$fid" 10 || all_aborted=0
done
rl_check "each of its failures aborted the decode side" [ $all_aborted = 1 ]
rl_check "prefill errors are counted" \
    [ "$(metric 'wideep:router_pd_failures_total{kind="prefill_error"}')" = "$failed" ]
rl_check "retries are counted" [ "$(metric 'wideep:router_retries_total')" = "$failed" ]
rl_check "the failing prefill worker is cooled off" bash -c "curl -s '$RL_URL/workers' | python3 \
    -c 'import json,sys;w={x[\"instance_id\"]:x for x in json.load(sys.stdin)[\"workers\"]};\
assert w[\"p_fail\"][\"is_cooled_off\"]'"
stop_all

# --- kill -9 of the prefill worker before its KvDone (nothing streamed yet) ---
new_pair b d2 "--first-token-delay-ms 5000" p2 "--kv-done-delay-ms 60000"
d2_pid=$D_PID
kill9_in_prefill "$P_PID" "$RL_TMP/lost_p" "$RL_TMP/p2.wlog"
rl_check "the decode side gets an Abort once the prefill worker is dropped" \
    wait_abort "$RL_TMP/d2.wlog" "$ID" 40
wait $CLIENT
rl_check "the request is retried on the decode worker alone and succeeds" \
    [ "$(cat "$RL_TMP/lost_p.code")" = 200 ]
rl_check "as a GenerateRequest" [ "$(grep -c '^generate ' "$RL_TMP/d2.wlog")" = 1 ]
rl_check "prefill_lost is counted" \
    [ "$(metric 'wideep:router_pd_failures_total{kind="prefill_lost"}')" = 1 ]
rl_check "the retry placement is counted" \
    [ "$(metric 'wideep:router_pd_requests_total{mode="no_prefill"}')" = 1 ]

# --- the same once tokens streamed: a clear error, no hang ---
rl_start_worker p3 --role prefill --kv-done-delay-ms 60000
p3_pid=$RL_WPID
rl_stop "$d2_pid"
rl_start_worker d3 --token-interval-ms 100
rl_check "a streaming decode worker and a slow prefill worker" wait_set "['d3', 'p3']"
curl -sN --max-time 20 "$RL_URL/v1/completions" \
    -d '{"prompt": "Hello there my good old friend", "max_tokens": 200, "stream": true}' \
    >"$RL_TMP/lost_p_stream" &
client=$!
rl_wait_log "$RL_TMP/lost_p_stream" '"text"' 50
id=$(last_id "$RL_TMP/p3.wlog" prefill)
{ kill -KILL "$p3_pid"; wait "$p3_pid"; } 2>/dev/null
t0=$(date +%s)
wait $client
t1=$(date +%s)
rl_check "the decode side is aborted" wait_abort "$RL_TMP/d3.wlog" "$id" 40
rl_check "the client gets an error event naming the prefill worker" grep -q \
    '^data: {"error":{"message":"the prefill worker serving this request failed: worker p3 stopped responding' \
    "$RL_TMP/lost_p_stream"
rl_check "then [DONE]" bash -c "tail -2 '$RL_TMP/lost_p_stream' | grep -q '^data: \[DONE\]'"
rl_check "within a few seconds" [ $((t1 - t0)) -le 5 ]
stop_all

# --- kill -9 of the decode worker while the prefill worker works ---
new_pair c d4 "--first-token-delay-ms 60000" p4 "--kv-done-delay-ms 60000"
kill9_in_prefill "$D_PID" "$RL_TMP/lost_d" "$RL_TMP/p4.wlog"
rl_check "the prefill side gets an Abort once the decode worker is dropped" \
    wait_abort "$RL_TMP/p4.wlog" "$ID" 40
wait $CLIENT
rl_check "the client gets a clear error (no decode worker left)" \
    [ "$(cat "$RL_TMP/lost_d.code")" = 503 ]
rl_check "that says so" grep -q 'no worker can take the request now' "$RL_TMP/lost_d"
rl_check "decode_lost is counted" \
    [ "$(metric 'wideep:router_pd_failures_total{kind="decode_lost"}')" = 1 ]
stop_all

# --- client gone, deadline: Abort to both sides ---
new_pair e d5 "--first-token-delay-ms 60000" p5 "--kv-done-delay-ms 60000" \
    "--request-timeout-secs 2"
curl -s --max-time 1 "$RL_URL/v1/completions" -d "$ASK" >/dev/null
id=$(last_id "$RL_TMP/p5.wlog" prefill)
rl_check "client gone: Abort to the decode side" wait_abort "$RL_TMP/d5.wlog" "$id" 10
rl_check "and to the prefill side" wait_abort "$RL_TMP/p5.wlog" "$id" 10
code=$(curl -s -o "$RL_TMP/late" -w '%{http_code}' --max-time 10 "$RL_URL/v1/completions" \
    -d "$ASK")
id=$(last_id "$RL_TMP/p5.wlog" prefill)
rl_check "deadline: 504" [ "$code" = 504 ]
rl_check "deadline: Abort to the decode side" wait_abort "$RL_TMP/d5.wlog" "$id" 10
rl_check "and to the prefill side" wait_abort "$RL_TMP/p5.wlog" "$id" 10
rl_check "both got the deadline" bash -c "grep -qE '^decode $id .* deadline_ms=(1[89][0-9][0-9]|2000) ' \
    '$RL_TMP/d5.wlog' && grep -qE '^prefill $id .* deadline_ms=(1[89][0-9][0-9]|2000) ' '$RL_TMP/p5.wlog'"
rl_check "timeout is counted" [ "$(metric 'wideep:router_pd_failures_total{kind="timeout"}')" = 1 ]
stop_all

# --- a KvDone later than the decode worker's last token ---
new_pair f d6 "" p6 "--kv-done-delay-ms 300"
t=$(curl -s -o "$RL_TMP/held" -w '%{time_total}' "$RL_URL/generate" -d '{"input_ids": [5, 6, 7,
    8], "sampling_params": {"max_new_tokens": 2}, "return_kv_transfer_stats": true}')
rl_check "the answer waits for the KvDone" python3 -c "assert $t >= 0.3"
rl_check "and carries its figures" [ "$(json "$RL_TMP/held" \
    "j['meta_info']['kv_transfer']['kv_bytes']")" = 16384 ]
rl_stop "$P_PID"
wait_set "['d6']"
rl_start_worker p7 --role prefill --kv-done-delay-ms 5000
rl_check "a prefill worker that answers late" wait_set "['d6', 'p7']"
t=$(curl -s -o "$RL_TMP/grace" -w '%{time_total}' "$RL_URL/generate" -d '{"input_ids": [5, 6, 7,
    8], "sampling_params": {"max_new_tokens": 2}, "return_kv_transfer_stats": true}')
rl_check "without a KvDone the answer goes out after the grace" python3 -c "assert 0.9 <= $t < 3, $t"
rl_check "naming the pair, without figures" [ "$(json "$RL_TMP/grace" \
    "sorted(j['meta_info']['kv_transfer'])")" = \
    "['decode_dp_rank', 'decode_worker', 'prefill_dp_rank', 'prefill_worker']" ]
rl_check "the router says why" rl_wait_log "$RL_TMP/f.log" "no KvDone from its prefill worker"
rl_finish

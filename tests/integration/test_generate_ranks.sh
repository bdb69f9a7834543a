#!/usr/bin/env bash
# wideep-generate over real rank processes: every layout must give exactly the
# single-rank greedy output (tp2 ep2; tp4 ep4 dp4 with DP attention; tp4 ep2 =
# moe_tp 2; tp4 dp2 ep4 with DP attention; dense layers whole), with the all-reduce
# backend and with DeepEP-style dispatch in normal, low-latency and auto modes; two
# "nodes" of two ranks over UCX on loopback; EPLB rebalancing with redundant experts
# (weights moved between ranks) for both backends; and a rank killed mid-run makes the run
# fail with an error naming it, leaving no processes and no shared-memory segments.
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
gen="$bin/wideep-generate"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'The license grants\nCopyright holders may\nredistribute the software\nwithout warranty of any kind\nPermission is hereby granted\n' >"$tmp/prompts"
common=(--prompts-file "$tmp/prompts" --max-new-tokens 10 --temperature 0 --ignore-eos --json
        --logprobs --threads 1 --dist-timeout-ms 20000)

# Same tokens as the single rank, and each chosen token's logprob within 1e-4 (the ranks
# sum partial results in another order, so the last bits may differ).
same() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = len(a) == len(b) and len(a) > 0
for x, y in zip(a, b):
    ok = ok and x["output_ids"] == y["output_ids"] and len(x["output_ids"]) > 0
    ok = ok and all(abs(p - q) <= 1e-4 for p, q in zip(x["logprobs"], y["logprobs"]))
sys.exit(0 if ok else 1)
PY
}

ok() { passed=$((passed + 1)); echo "ok   $1"; }

# A loopback port nobody listens on now (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# two_nodes NAME LAYOUT...: node 1 and node 0 launchers on one machine sharing a rendezvous,
# UCX over TCP between them; node 0's output must match the single rank. A port taken
# between picking and binding is retried with another one.
two_nodes() {
    local name=$1 try
    shift
    for try in 1 2 3; do
        local port
        port=$(free_port)
        UCX_TLS=tcp,self timeout 120 "$gen" --model-path "$m" "${common[@]}" "$@" --nnodes 2 \
            --node-rank 1 --dist-init-addr "127.0.0.1:$port" >"$tmp/n1" 2>"$tmp/n1err" &
        local n1=$!
        if UCX_TLS=tcp,self timeout 120 "$gen" --model-path "$m" "${common[@]}" "$@" --nnodes 2 \
               --node-rank 0 --dist-init-addr "127.0.0.1:$port" >"$tmp/out" 2>"$tmp/err" &&
           wait $n1 && same "$tmp/base" "$tmp/out"; then
            ok "$name"
            return
        fi
        wait $n1 2>/dev/null
        grep -q "Address already in use" "$tmp/err" || break
    done
    ko "$name"
    tail -3 "$tmp/n1err"
}
ko() { fail=$((fail + 1)); echo "FAIL $1"; [ -f "$tmp/err" ] && tail -5 "$tmp/err"; }
# Segments of one launch are named /dev/shm/wd-<launcher pid>x<random>-...
shm_of() { ls /dev/shm 2>/dev/null | grep -c "^wd-$1x" ; }
for fam in tiny-qwen3-moe tiny-deepseek-v3; do
    m="$src/tests/fixtures/$fam/fp32"
    "$gen" --model-path "$m" "${common[@]}" >"$tmp/base" 2>"$tmp/err" || { ko "$fam single rank"; continue; }
    for lay in "--tp 2 --ep 2" "--tp 4 --ep 4 --dp 4 --enable-dp-attention" "--tp 4 --ep 2" \
               "--tp 4 --dp 2 --enable-dp-attention --ep 4" "--tp 4 --ep 4 --moe-dense-tp-size 1"; do
        # shellcheck disable=SC2086
        if timeout 120 "$gen" --model-path "$m" "${common[@]}" $lay >"$tmp/out" 2>"$tmp/err" &&
           same "$tmp/base" "$tmp/out"; then ok "$fam $lay"; else ko "$fam $lay"; fi
        # The same layouts through DeepEP-style dispatch/combine (which makes ep = tp).
        for mode in normal low_latency auto; do
            # shellcheck disable=SC2086
            if timeout 120 "$gen" --model-path "$m" "${common[@]}" $lay --moe-a2a-backend deepep \
                   --deepep-mode $mode >"$tmp/out" 2>"$tmp/err" &&
               same "$tmp/base" "$tmp/out"; then ok "$fam $lay deepep $mode"
            else ko "$fam $lay deepep $mode"; fi
        done
    done
    # EPLB: redundant experts, rebalanced every few passes (expert weights move between
    # ranks); replicas compute the same function, so the tokens must not change.
    for lay in "--tp 4 --ep 4 --enable-eplb --ep-num-redundant-experts 4 --eplb-rebalance-num-iterations 3" \
               "--tp 4 --dp 4 --enable-dp-attention --ep 4 --enable-eplb --ep-num-redundant-experts 4 --eplb-rebalance-num-iterations 2" \
               "--tp 4 --moe-a2a-backend deepep --enable-eplb --ep-num-redundant-experts 4 --eplb-rebalance-num-iterations 2" \
               "--tp 4 --ep 2 --enable-eplb --ep-num-redundant-experts 2 --eplb-rebalance-num-iterations 4 --ep-dispatch-algorithm dynamic"; do
        # shellcheck disable=SC2086
        if timeout 120 "$gen" --model-path "$m" "${common[@]}" $lay --log-level info >"$tmp/out" 2>"$tmp/err" &&
           same "$tmp/base" "$tmp/out" && grep -q 'eplb: rebalanced after' "$tmp/err"; then
            ok "$fam eplb $lay"
        else ko "$fam eplb $lay"; fi
    done
    # --init-expert-location FILE: a non-trivial placement (physical_to_logical_map) with
    # redundant experts, reversed so every expert moves off its trivial rank.
    python3 - "$m/config.json" "$tmp/loc.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
L, E = c["num_hidden_layers"], c.get("n_routed_experts") or c.get("num_experts")
P = E + 4
json.dump({"physical_to_logical_map": [[(P - 1 - p) % E for p in range(P)] for _ in range(L)]},
          open(sys.argv[2], "w"))
PY
    if timeout 120 "$gen" --model-path "$m" "${common[@]}" --tp 4 --ep 4 --ep-num-redundant-experts 4 \
           --init-expert-location "$tmp/loc.json" >"$tmp/out" 2>"$tmp/err" &&
       same "$tmp/base" "$tmp/out"; then ok "$fam --init-expert-location FILE"
    else ko "$fam --init-expert-location FILE"; fi
    # Balancedness in the metrics (Prometheus text) after rebalancing.
    if timeout 120 "$gen" --model-path "$m" "${common[@]}" --tp 4 --ep 4 --enable-eplb \
           --ep-num-redundant-experts 4 --eplb-rebalance-num-iterations 3 \
           --metrics-file "$tmp/metrics" >/dev/null 2>"$tmp/err" &&
       grep -qE '^wideep_eplb_balancedness\{layer="[0-9]+"\} (0\.[0-9]+|1)$' "$tmp/metrics" &&
       grep -qE '^wideep_eplb_rebalances_total [1-9]' "$tmp/metrics"; then ok "$fam eplb metrics"
    else ko "$fam eplb metrics"; fi
    # The expert-distribution recorder's dump: every MoE layer saw every token top_k times.
    for backend in none deepep; do
        rm -rf "$tmp/rec"; mkdir -p "$tmp/rec"
        if WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR="$tmp/rec" timeout 120 "$gen" --model-path "$m" \
               "${common[@]}" --tp 2 --ep 2 --moe-a2a-backend $backend \
               --expert-distribution-recorder-mode per_token >/dev/null 2>"$tmp/err" &&
           python3 - "$m/config.json" "$tmp"/rec/*.json <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
k = cfg["num_experts_per_tok"]
dumps = [json.load(open(f)) for f in sys.argv[2:]]
L = len(dumps[0]["logical_count"])
per_layer = [sum(sum(d["logical_count"][l]) for d in dumps) for l in range(L)]
moe = [c for c in per_layer if c > 0]
ok = all(d["passes"] > 0 and "per_token" in d for d in dumps)
ok = ok and len(moe) >= 1 and len(set(moe)) == 1 and moe[0] % k == 0
sys.exit(0 if ok else 1)
PY
        then ok "$fam recorder dump ($backend)"; else ko "$fam recorder dump ($backend)"; fi
    done
    # Two nodes of two ranks: node 1's launcher joins node 0's rendezvous; UCX over TCP.
    two_nodes "$fam 2 nodes x 2 ranks over ucx" --tp 4 --ep 4
    two_nodes "$fam 2 nodes x 2 ranks deepep auto over ucx" --tp 4 --dp 4 --enable-dp-attention \
        --moe-a2a-backend deepep
done

# DeepEP low-latency mode carries 128 tokens per rank per call: a 584-token prompt is
# prefilled in chunks that fit instead of failing, and gives the single rank's tokens.
m="$src/tests/fixtures/tiny-qwen3-moe/fp32"
long=$(python3 -c 'print(",".join(str((i * 37) % 1000 + 1) for i in range(584)))')
lcommon=(--input-ids "$long" --context-length 1024 --max-new-tokens 6 --temperature 0 --ignore-eos --json --logprobs
         --threads 1 --dist-timeout-ms 20000)
if timeout 120 "$gen" --model-path "$m" "${lcommon[@]}" >"$tmp/lbase" 2>"$tmp/err" &&
   timeout 120 "$gen" --model-path "$m" "${lcommon[@]}" --tp 2 --moe-a2a-backend deepep \
       --deepep-mode low_latency >"$tmp/lout" 2>>"$tmp/err" && same "$tmp/lbase" "$tmp/lout"; then
    ok "deepep low_latency with a 584-token prompt"
else ko "deepep low_latency with a 584-token prompt"; cat "$tmp/err" | tail -3; fi

# A rank that dies mid-run: the run fails naming it; no orphans, no segments left.
m="$src/tests/fixtures/tiny-deepseek-v3/fp32"
"$gen" --model-path "$m" --prompts-file "$tmp/prompts" --max-new-tokens 4000 --ignore-eos \
    --temperature 0 --tp 4 --ep 4 --threads 1 --dist-timeout-ms 5000 --context-length 4096 \
    >/dev/null 2>"$tmp/err" &
launcher=$!
victim=""
for _ in $(seq 1 100); do
    victim=$(pgrep -P $launcher | sed -n 3p)
    [ -n "$victim" ] && break
    sleep 0.1
done
sleep 1
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher
rc=$?
sleep 0.5
left=$(pgrep -P $launcher | wc -l)
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -qE 'rank [0-9]+' "$tmp/err" &&
   [ "$left" -eq 0 ]; then ok "killed rank fails the run cleanly"
else ko "killed rank fails the run cleanly (rc $rc, victim '$victim', left $left)"; fi
if [ "$(shm_of $launcher)" -eq 0 ]; then ok "no shared memory left behind"
else ko "shared memory left behind: $(ls /dev/shm | grep "^wd-${launcher}x" | head -3)"; fi

echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# A stranger at a running job's rendezvous: a two-node job (2 x 2 ranks, UCX over TCP on
# loopback, every node given the same --dist-init-token, node 1 through the environment)
# is joined mid-run by more node-1 launchers: one with the job's token (node rank 1 has
# joined), one with another token, one with none, one for another world size. Each must
# fail at once with its clear error, and the job must finish with the single-rank output.
# (Before the launch token and the node-rank claim, the first stranger joined the
# rendezvous and brought the job down.)
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
gen="$bin/wideep-generate"
m="$src/tests/fixtures/tiny-qwen3-moe/fp32"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'The license grants\nCopyright holders may\n' >"$tmp/prompts"
common=(--model-path "$m" --prompts-file "$tmp/prompts" --max-new-tokens 120 --temperature 0
        --ignore-eos --json --threads 1 --dist-timeout-ms 20000)
export UCX_TLS=tcp,self

ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$gen" "${common[@]}" >"$tmp/base" 2>"$tmp/err" || { ko "single rank"; tail -3 "$tmp/err"; exit 1; }

token="job-$$-$RANDOM"
for try in 1 2 3; do
    port=$(free_port)
    job=(--tp 4 --ep 4 --nnodes 2 --dist-init-addr "127.0.0.1:$port")
    WIDEEP_DIST_INIT_TOKEN=$token timeout 120 "$gen" "${common[@]}" "${job[@]}" --node-rank 1 \
        --log-level info >"$tmp/n1" 2>"$tmp/n1err" &
    n1=$!
    timeout 120 "$gen" "${common[@]}" "${job[@]}" --node-rank 0 --dist-init-token "$token" \
        >"$tmp/n0" 2>"$tmp/n0err" &
    n0=$!
    # Until node 1 has joined (its launcher says so at info level), or node 0 gave up.
    for _ in $(seq 1 400); do
        grep -q "node 1/2: 2 rank(s) started" "$tmp/n1err" && break
        kill -0 $n0 2>/dev/null || break
        sleep 0.05
    done
    kill -0 $n0 2>/dev/null && break
    wait $n1 2>/dev/null
    grep -q "Address already in use" "$tmp/n0err" || break
done

# stranger NAME WANT ARGS...: a node-1 launcher against the running job; must fail soon
# (not by a signal) with WANT in its error, while the job is still running.
stranger() {
    local name=$1 want=$2
    shift 2
    local t0=$SECONDS
    timeout 60 "$gen" "${common[@]}" --nnodes 2 --node-rank 1 --dist-init-addr "127.0.0.1:$port" \
        "$@" >/dev/null 2>"$tmp/serr"
    local rc=$? el=$((SECONDS - t0))
    # (Under the sanitizer build a leak or UB report on the refusal path fails it too.)
    if [ $rc -ne 0 ] && [ $rc -lt 124 ] && [ $el -lt 20 ] && grep -qF -- "$want" "$tmp/serr" &&
       ! grep -qE 'Sanitizer|runtime error:' "$tmp/serr" && kill -0 $n0 2>/dev/null; then
        ok "stranger with $name refused: $want"
    else
        ko "stranger with $name refused (rc $rc, ${el}s, job running: $(kill -0 $n0 2>/dev/null && echo yes || echo no))"
        tail -2 "$tmp/serr"
    fi
}
stranger "the job's token" "node rank 1 already joined this job" --tp 4 --ep 4 \
    --dist-init-token "$token"
stranger "another token" "launch token mismatch" --tp 4 --ep 4 --dist-init-token other
stranger "no token" "launch token mismatch" --tp 4 --ep 4
stranger "another world size" "runs 4 rank(s) over 2 node(s), this launcher was started for 2 over 2" \
    --tp 2 --ep 2 --dist-init-token "$token"

wait $n1
rc1=$?
wait $n0
rc0=$?
if [ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] && python3 - "$tmp/base" "$tmp/n0" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok = len(a) == len(b) > 0 and all(x["output_ids"] == y["output_ids"] for x, y in zip(a, b))
sys.exit(0 if ok else 1)
PY
then ok "the job finished with the single-rank output"
else
    ko "the job finished with the single-rank output (node 0 rc $rc0, node 1 rc $rc1)"
    tail -3 "$tmp/n0err" "$tmp/n1err"
fi
if grep -q "refused 1 launcher(s) for a node rank that had already joined" "$tmp/n0err" &&
   grep -q "refused a client without this job's launch token" "$tmp/n0err"; then
    ok "node 0 logged the refusals"
else ko "node 0 logged the refusals"; tail -5 "$tmp/n0err"; fi

echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# make demo: the servers users deploy, on one machine with the tiny model that ships in
# deploy/tiny-model, disaggregated: deploy/local/wideep_local.py starts the topology of
# deploy/local/demo.topology (the Kubernetes overlay deploy/k8s/overlays/cpu on 127.0.0.1):
# wideep-router, one wideep-prefill worker (tp 2, ep 2, DeepEP normal mode) and one
# wideep-decode worker (tp 2, dp 2 with DP attention, ep 2, DeepEP low-latency mode), the
# prefill worker writing each request's KV into the decode worker's pages over UCX; one chat
# request through HTTP with its answer streamed here; then the system keeps serving until
# Ctrl-C (or `make stop` from another shell).
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/$build/bin"
run="$root/$build/demo"
topology="$root/deploy/local/demo.topology"
mkdir -p "$run"

for b in wideep-router wideep-prefill wideep-decode; do
    if [ ! -x "$bin/$b" ]; then
        echo "demo: $bin/$b is missing; run make build" >&2
        exit 1
    fi
done
if [ -s "$run/pids" ] && kill -0 $(cat "$run/pids") 2>/dev/null; then
    echo "demo: already running (pid $(cat "$run/pids")); stop it with make stop" >&2
    exit 1
fi

# The launcher writes its pid to $run/pids (make stop sends it SIGTERM: the workers drain,
# then the router stops) and $run/ready (the URL) once every worker has registered.
python3 "$root/deploy/local/wideep_local.py" up "$topology" --bin "$bin" --run "$run" &
launcher=$!
stop() {
    trap - INT TERM EXIT
    echo
    echo "== stopping (the workers drain first)"
    kill -TERM "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
}
trap stop INT TERM EXIT

echo "== wideep demo: deploy/tiny-model, topology $topology"
echo "   prefill worker: tp 2, ep 2, deepep normal"
echo "   decode worker:  tp 2, dp 2 + DP attention, ep 2, deepep low_latency"
for _ in $(seq 1200); do
    [ -s "$run/ready" ] && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$run/ready" ]; then
    echo "demo: the system did not come up (logs in $run):"
    tail -n 5 "$run"/*.log
    exit 1
fi
url=$(cat "$run/ready")
echo "== router $url (logs in $run)"

question="Tell me my fortune."
echo "== POST /v1/chat/completions (streaming): $question"
echo
curl -sN "$url/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "model": "tiny", "stream": true, "max_tokens": 64, "temperature": 0.7, "seed": 1,
  "messages": [{"role": "user", "content": "'"$question"'"}]}' |
python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("data: ") or line == "data: [DONE]":
        continue
    ev = json.loads(line[6:])
    if "error" in ev:
        print("\n[error] " + ev["error"]["message"]); continue
    for ch in ev.get("choices", []):
        print(ch.get("delta", {}).get("content") or "", end="", flush=True)
print()
'
bytes=$(curl -s "$url/metrics" | awk '$1 == "wideep:router_kv_transfer_bytes_sum" {print $2}')
echo "== its KV went from the prefill worker to the decode worker over UCX (${bytes:-0} bytes)"
cat <<EOT

== still serving. Try:
   curl $url/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}'
   curl $url/workers        curl $url/metrics
== stop with Ctrl-C here, or: make stop
EOT
wait "$launcher"

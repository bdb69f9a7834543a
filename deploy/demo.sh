#!/usr/bin/env bash
# make demo: the servers users deploy, on one machine with the tiny model that ships in
# deploy/tiny-model: wideep-router and one wideep-decode worker (tp 2, ep 2, DeepEP-style
# dispatch) on 127.0.0.1; one chat request through HTTP with its answer streamed here;
# then the system keeps serving until Ctrl-C (or `make stop` from another shell).
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/$build/bin"
model="$root/deploy/tiny-model"
run="$root/$build/demo"
mkdir -p "$run"

for b in wideep-router wideep-decode; do
    if [ ! -x "$bin/$b" ]; then
        echo "demo: $bin/$b is missing; run make build" >&2
        exit 1
    fi
done
if [ -s "$run/pids" ] && kill -0 $(cat "$run/pids") 2>/dev/null; then
    echo "demo: already running (pids $(tr '\n' ' ' <"$run/pids")); stop it with make stop" >&2
    exit 1
fi

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "== stopping (the decode worker drains first)"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "$run/pids"
}
trap stop INT TERM EXIT

rm -f "$run/ports"
"$bin/wideep-router" --model-path "$model" --served-model-name tiny --host 127.0.0.1 --port 0 \
    --worker-port 0 --port-file "$run/ports" >"$run/router.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$run/ports" ] && break; sleep 0.1; done
if [ ! -s "$run/ports" ]; then echo "demo: the router did not start:"; cat "$run/router.log"; exit 1; fi
read -r http wport <"$run/ports"
url="http://127.0.0.1:$http"
"$bin/wideep-decode" --model-path "$model" --router "tcp://127.0.0.1:$wport" --instance-id demo-decode \
    --tp 2 --ep 2 --moe-a2a-backend deepep --metrics-port 0 >"$run/decode.log" 2>&1 &
pids+=($!)
printf '%s\n' "${pids[@]}" >"$run/pids"

echo "== wideep demo: $model"
echo "== router $url, one decode worker: tp 2, ep 2, --moe-a2a-backend deepep (logs in $run)"
for _ in $(seq 300); do
    curl -s "$url/workers" | grep -q '"instance_id":"demo-decode"' && break
    sleep 0.1
done
if ! curl -s "$url/workers" | grep -q '"instance_id":"demo-decode"'; then
    echo "demo: the decode worker did not register:"; tail -5 "$run/decode.log"; exit 1
fi

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
cat <<EOT

== still serving. Try:
   curl $url/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}'
   curl $url/workers        curl $url/metrics
== stop with Ctrl-C here, or: make stop
EOT
wait "${pids[0]}"

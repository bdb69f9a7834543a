#!/usr/bin/env bash
# Serving benchmark: wideep-router + one wideep-decode worker (and, with PREFILL set, one
# wideep-prefill worker: disaggregated) on 127.0.0.1 with MODEL_DIR and the decode worker's
# extra flags, then tests/bench/serving_bench.py (the openai package, installed into a venv
# under the build directory on first use) at concurrency 1, 8, 32.
# A benchmark, not a test: CI never runs it.
#   tests/bench/serving_bench.sh BUILD_DIR MODEL_DIR [decode flags...] [-- client flags...]
#   PREFILL="--tp 2" tests/bench/serving_bench.sh ...   # 1P1D, the prefill worker's flags
set -eu
build=$(cd "$1" && pwd)
model=$(cd "$2" && pwd)
shift 2
dflags=() cflags=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do dflags+=("$1"); shift; done
[ $# -gt 0 ] && shift
cflags=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/integration/openai_venv.sh"
if ! openai_venv "$build/venv-openai" "$build/venv-openai.log"; then
    echo "could not install the openai client:" >&2; tail -3 "$build/venv-openai.log" >&2; exit 1
fi
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$tmp"; }
trap cleanup EXIT
"$build/bin/wideep-router" --model-path "$model" --served-model-name bench --port 0 \
    --worker-port 0 --port-file "$tmp/ports" --log-level warn >"$tmp/router.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
read -r http wport <"$tmp/ports"
"$build/bin/wideep-decode" --model-path "$model" --router "tcp://127.0.0.1:$wport" \
    --instance-id bench-decode --log-level warn "${dflags[@]}" >"$tmp/decode.log" 2>&1 &
pids+=($!)
want=bench-decode
if [ -n "${PREFILL+x}" ]; then
    # shellcheck disable=SC2086 # the prefill flags are one string on purpose
    "$build/bin/wideep-prefill" --model-path "$model" --router "tcp://127.0.0.1:$wport" \
        --instance-id bench-prefill --log-level warn $PREFILL >"$tmp/prefill.log" 2>&1 &
    pids+=($!)
    want="bench-decode bench-prefill"
fi
for w in $want; do
    for _ in $(seq 600); do
        curl -s "http://127.0.0.1:$http/workers" | grep -q "\"$w\"" && break
        sleep 0.1
    done
done
echo "model $model, decode flags: ${dflags[*]:-(none)}${PREFILL+, prefill worker flags: ${PREFILL:-(none)}}"
"$OPENAI_PY" "$root/tests/bench/serving_bench.py" --base-url "http://127.0.0.1:$http/v1" \
    --model bench "${cflags[@]}"

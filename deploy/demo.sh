#!/usr/bin/env bash
# make demo: generate text with the tiny DeepSeek-V3-architecture model that ships
# in deploy/tiny-model, through the same engine the servers use (offline mode:
# the disaggregated router/prefill/decode servers come in a later step).
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
gen="$root/$build/bin/wideep-generate"
model="$root/deploy/tiny-model"

if [ ! -x "$gen" ]; then
    echo "demo: $gen is missing; run make build" >&2
    exit 1
fi

prompts=$(mktemp)
trap 'rm -f "$prompts"' EXIT
cat >"$prompts" <<'PROMPTS'
The secret of a happy life is
You will meet a tall stranger who
A computer is
PROMPTS

echo "== wideep demo: $model"
echo "== three prompts in one continuous batch, temperature 0.7, 48 new tokens each"
"$gen" --model-path "$model" --prompts-file "$prompts" --max-new-tokens 48 \
    --temperature 0.7 --top-p 0.95 --seed 1 --json --log-level info |
python3 -c '
import json, sys
for line in sys.stdin:
    o = json.loads(line)
    print("\n>>> " + o["prompt"] + "\x1b[1m" + (o["text"] or "") + "\x1b[0m")
    print("    (%d tokens, finish: %s)" % (len(o["output_ids"]), o["finish_reason"]))
'

#!/usr/bin/env bash
# wideep-generate end to end on the golden fixtures: greedy output equals
# transformers' (JSON mode; the FP8 checkpoint whole and split too), the three prompt
# sources work, and every kind of bad input gives a one-line error and a non-zero exit,
# never a crash.
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
gen="$bin/wideep-generate"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # name, expected rc (0 or "nz"), pattern in output, command...
    local name=$1 want=$2 pat=$3
    shift 3
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    local ok=1
    if [ "$want" = 0 ] && [ $rc -ne 0 ]; then ok=0; fi
    if [ "$want" = nz ] && { [ $rc -eq 0 ] || [ $rc -gt 128 ]; }; then ok=0; fi
    if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then ok=0; fi
    # Under the sanitizer build a leak or UB report on an error path is a failure too.
    if grep -qE 'Sanitizer|runtime error:' <<<"$out"; then ok=0; fi
    if [ $ok = 1 ]; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name (rc $rc)"; echo "$out" | head -5
    fi
}

for fam in tiny-qwen3-moe tiny-deepseek-v3; do
    model="$src/tests/fixtures/$fam/fp32"
    golden="$src/tests/fixtures/$fam/golden/golden.json"
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$golden'))['prompts'][2]['ids'])))")
    want=$(python3 -c "import json;print(json.load(open('$golden'))['variants']['fp32']['greedy'][2][:32])")
    out=$("$gen" --model-path "$model" --input-ids "$ids" --max-new-tokens 32 --temperature 0 \
          --ignore-eos --json --logprobs 2>"$tmp/err")
    got=$(python3 -c "import json,sys;print(json.loads(sys.stdin.readline())['output_ids'])" <<<"$out" 2>/dev/null)
    if [ "$got" = "$want" ]; then passed=$((passed + 1)); echo "ok   $fam greedy via CLI"
    else fail=$((fail + 1)); echo "FAIL $fam greedy via CLI: got $got want $want"; cat "$tmp/err"; fi
    check "$fam logprobs present" 0 '"logprobs": ?\[' echo "$out"
    # A temperature too small to divide by (logits / 1e-40 overflow) is greedy.
    out=$("$gen" --model-path "$model" --input-ids "$ids" --max-new-tokens 32 --temperature 1e-40 \
          --seed 5 --ignore-eos --json 2>"$tmp/err")
    got=$(python3 -c "import json,sys;print(json.loads(sys.stdin.readline())['output_ids'])" <<<"$out" 2>/dev/null)
    if [ "$got" = "$want" ]; then passed=$((passed + 1)); echo "ok   $fam --temperature 1e-40 is greedy"
    else fail=$((fail + 1)); echo "FAIL $fam --temperature 1e-40: got $got want $want"; cat "$tmp/err"; fi
    check "$fam text prompt" 0 '"text"' "$gen" --model-path "$model" --prompt "Hello world" \
        --max-new-tokens 4 --json
    printf 'first prompt\nsecond prompt\n\nthird\n' >"$tmp/prompts"
    check "$fam prompts file" 0 '"index": ?2' "$gen" --model-path "$model" \
        --prompts-file "$tmp/prompts" --max-new-tokens 3 --json
    check "$fam chat" 0 '"text"' "$gen" --model-path "$model" --prompt "Hi" --chat \
        --max-new-tokens 3 --json
    check "$fam sampling seeded" 0 '' "$gen" --model-path "$model" --prompt "Hi" --temperature 0.8 \
        --top-p 0.9 --top-k 20 --min-p 0.01 --seed 7 --max-new-tokens 5
    a=$("$gen" --model-path "$model" --prompt "Hi" --temperature 1 --seed 3 --max-new-tokens 8 --json 2>/dev/null)
    b=$("$gen" --model-path "$model" --prompt "Hi" --temperature 1 --seed 3 --max-new-tokens 8 --json 2>/dev/null)
    check "$fam same seed same output" 0 '' test -n "$a" -a "$a" = "$b"
    # Weights streamed from the checkpoint's mapping (no load-time copy): the same output.
    b=$("$gen" --model-path "$model" --prompt "Hi" --temperature 1 --seed 3 --max-new-tokens 8 --json \
        --weights-mapped 2>/dev/null)
    check "$fam --weights-mapped same output" 0 '' test -n "$a" -a "$a" = "$b"
    check "$fam prompt longer than context" nz 'context length' "$gen" --model-path "$model" \
        --input-ids "$ids" --context-length 4 --max-new-tokens 2
    check "$fam id outside vocab" nz 'outside the vocabulary' "$gen" --model-path "$model" \
        --input-ids 1,99999999 --max-new-tokens 2
done

# FP8 (128x128 blocks, moe_intermediate_size 128): served whole and split, transformers'
# greedy tokens of the dequantized weights either way.
m8="$src/tests/fixtures/tiny-deepseek-v3-fp8/fp8"
golden8="$src/tests/fixtures/tiny-deepseek-v3-fp8/golden/golden.json"
ids8=$(python3 -c "import json;print(','.join(map(str,json.load(open('$golden8'))['prompts'][2]['ids'])))")
want8=$(python3 -c "import json;print(json.load(open('$golden8'))['variants']['fp8_w_f32']['greedy'][2][:32])")
for lay in "--tp 1" "--tp 2 --ep 2" "--tp 2 --moe-a2a-backend deepep"; do
    # shellcheck disable=SC2086
    out=$(timeout 120 "$gen" --model-path "$m8" --input-ids "$ids8" --max-new-tokens 32 \
          --temperature 0 --ignore-eos --json $lay 2>"$tmp/err")
    got=$(python3 -c "import json,sys;print(json.loads(sys.stdin.readline())['output_ids'])" <<<"$out" 2>/dev/null)
    if [ "$got" = "$want8" ]; then passed=$((passed + 1)); echo "ok   fp8 greedy $lay"
    else fail=$((fail + 1)); echo "FAIL fp8 greedy $lay: got $got want $want8"; tail -3 "$tmp/err"; fi
done
# An expert size no split makes a multiple of the block: the hint says the checkpoint,
# not --tp / --ep, is the problem.
rm -rf "$tmp/fp8bad"; cp -r "$m8" "$tmp/fp8bad"
python3 - "$tmp/fp8bad/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["moe_intermediate_size"] = 48
json.dump(c, open(sys.argv[1], "w"))
PY
check "fp8 expert size off the block" nz 'cannot be served with its weight_block_size' "$gen" \
    --model-path "$tmp/fp8bad" --input-ids 1,2 --tp 1

m="$src/tests/fixtures/tiny-qwen3-moe/fp32"
check "missing model dir" nz 'config.json' "$gen" --model-path "$tmp/nope" --prompt hi
check "no prompt source" nz 'exactly one of' "$gen" --model-path "$m"
check "unknown flag" nz "unknown flag '--bogus'" "$gen" --model-path "$m" --prompt hi --bogus 1
check "bad int" nz 'not an integer' "$gen" --model-path "$m" --prompt hi --max-new-tokens x
check "bad ids" nz 'input-ids' "$gen" --model-path "$m" --input-ids 1,,2
check "invalid utf-8 prompt" nz 'UTF-8' "$gen" --model-path "$m" --prompt $'\xff\xfe'
check "missing prompts file" nz 'prompts-file' "$gen" --model-path "$m" --prompts-file "$tmp/none"

# Broken checkpoints: copy the fixture and damage one file at a time.
mk() { rm -rf "$tmp/bad"; cp -r "$m" "$tmp/bad"; }
mk; echo '{"architectures": ["LlamaForCausalLM"]' >"$tmp/bad/config.json"
check "malformed config.json" nz 'config.json' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; python3 - "$tmp/bad/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["architectures"] = ["LlamaForCausalLM"]
json.dump(c, open(sys.argv[1], "w"))
PY
check "unsupported architecture" nz 'LlamaForCausalLM' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; python3 - "$tmp/bad/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_size"] = c["hidden_size"] * 2
json.dump(c, open(sys.argv[1], "w"))
PY
check "wrong shape names tensor" nz 'tensor .*shape' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; head -c 1000 "$m/model.safetensors" >"$tmp/bad/model.safetensors"
check "truncated safetensors" nz 'safetensors' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' >"$tmp/bad/model.safetensors"
check "lying header length" nz 'header' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; rm "$tmp/bad/model.safetensors"
check "missing weights" nz 'safetensors' "$gen" --model-path "$tmp/bad" --input-ids 1,2
mk; echo '{"model": ' >"$tmp/bad/tokenizer.json"
check "malformed tokenizer.json" nz 'tokenizer' "$gen" --model-path "$tmp/bad" --prompt hi
# NaN weights: the request fails with a clear error instead of streaming garbage (the final
# norm's weights become NaN, so every logit is NaN).
mk; python3 - "$tmp/bad/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
hdr = json.loads(data[8:8 + n])
t = hdr["model.norm.weight"]
assert t["dtype"] == "F32"
b, e = t["data_offsets"]
data[8 + n + b:8 + n + e] = struct.pack("<f", float("nan")) * ((e - b) // 4)
open(path, "wb").write(data)
PY
check "NaN weights fail the request" nz 'non-finite logits' "$gen" --model-path "$tmp/bad" \
    --input-ids 1,2,3 --max-new-tokens 2
# Output files are checked before the run, not after it.
check "unwritable --metrics-file" nz 'metrics-file' "$gen" --model-path "$m" --input-ids 1,2 \
    --metrics-file "$tmp/no/such/dir/m.prom"
check "bad recorder dir" nz 'RECORDER_DIR' env WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR="$tmp/nodir" \
    "$gen" --model-path "$m" --input-ids 1,2
check "bad --kv-cache-dtype" nz 'kv-cache-dtype' "$gen" --model-path "$m" --input-ids 1,2 \
    --kv-cache-dtype fp4
# --kv-cache-dtype bf16 serves (its tolerance against fp32 is pinned in test_scheduler).
check "kv cache bf16" 0 '"output_ids"' "$gen" --model-path "$m" --input-ids 1,2,3 --json \
    --max-new-tokens 4 --kv-cache-dtype bf16

echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

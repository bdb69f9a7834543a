#!/usr/bin/env bash
# wideep-bench kv at tiny sizes over UCX's shared-memory transports and over TCP, every
# layout: each run must exit 0 and print its table (a row per size, the ratio columns) and
# the fixed-cost line. Not a timing test: the figures are whatever this machine gives.
set -u
bin=${WD_BIN_DIR:?}
bench="$bin/wideep-bench"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
size=(--layers 2 --head-dim 16 --kv-heads 4 --page-size 4 --tokens 1,9,40 --min-iters 2
      --max-iters 3)
for tls in sm,self tcp,self; do
    if UCX_TLS=$tls timeout 120 "$bench" kv "${size[@]}" >"$tmp/out" 2>"$tmp/err" &&
       grep -q "^kv transfer, one prefill rank -> one decode rank (two processes), UCX_TLS=$tls" \
           "$tmp/out" &&
       [ "$(grep -c '^kv \(whole\|gather\|split\) ' "$tmp/out")" -eq 3 ] &&
       [ "$(grep -Ec '^ +(1|9|40) +[0-9.]+ [KM]B +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$tmp/out")" -eq 9 ] &&
       [ "$(grep -c '^fixed cost per request (1 token, 2 layers, K and V): ' "$tmp/out")" -eq 3 ]
    then
        passed=$((passed + 1)); echo "ok   UCX_TLS=$tls"
    else
        fail=$((fail + 1)); echo "FAIL UCX_TLS=$tls"; cat "$tmp/out"; grep -v 'UCX  ERROR' "$tmp/err" | tail -5
    fi
done
if ! "$bench" kv --tokens 1,x >"$tmp/out" 2>"$tmp/err" && grep -q "positive counts" "$tmp/err"; then
    passed=$((passed + 1)); echo "ok   bad --tokens refused"
else
    fail=$((fail + 1)); echo "FAIL bad --tokens refused"; cat "$tmp/err"
fi
echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# wideep-bench ep at tiny sizes, normal and low-latency mode over shm and over UCX (every
# peer forced onto UCX, tcp between the ranks as between two nodes without RDMA): each run
# must exit 0, print the dispatch and combine ratio lines against its baseline, pass its
# own round-trip check. Not a timing test.
set -u
bin=${WD_BIN_DIR:?}
bench="$bin/wideep-bench"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
size=(--ranks 4 --tokens 48 --hidden 256 --topk 4 --experts 16 --iters 3 --warmup 1)
for mode in normal low_latency; do
    for tr in shm ucx; do
        base="memcpy"
        [ "$tr" = ucx ] && base="ucx put"
        name="$mode $tr"
        if UCX_TLS=tcp,self timeout 60 "$bench" ep "${size[@]}" --mode "$mode" --transport "$tr" \
               >"$tmp/out" 2>"$tmp/err" &&
           grep -q "^ep $mode $tr R=4 N=48 H=256 K=4 E=16 payload bf16" "$tmp/out" &&
           grep -Eq "^baseline $base: [0-9.]+ GB/s" "$tmp/out" &&
           grep -Eq "^dispatch: +[0-9]+ us, [0-9.]+ GB/s = [0-9.]+ x $base\$" "$tmp/out" &&
           grep -Eq "^combine: +[0-9]+ us, [0-9.]+ GB/s = [0-9.]+ x $base\$" "$tmp/out" &&
           grep -q "^check: combine(dispatch(x)) as expected on every rank" "$tmp/out" &&
           grep -q "^transport: $tr" "$tmp/out"; then
            passed=$((passed + 1)); echo "ok   $name"
        else
            fail=$((fail + 1)); echo "FAIL $name"; cat "$tmp/out"; tail -5 "$tmp/err"
        fi
    done
done
# fp8 rows (normal mode) and a flag error.
if timeout 60 "$bench" ep "${size[@]}" --payload fp8 >"$tmp/out" 2>"$tmp/err" &&
   grep -q "payload fp8 (combine bf16)" "$tmp/out" && grep -q "^check: " "$tmp/out"; then
    passed=$((passed + 1)); echo "ok   fp8 payload"
else
    fail=$((fail + 1)); echo "FAIL fp8 payload"; cat "$tmp/out"; tail -5 "$tmp/err"
fi
# Zero-copy combine (the experts write into the source ranks' windows).
if timeout 60 "$bench" ep "${size[@]}" --zero-copy >"$tmp/out" 2>"$tmp/err" &&
   grep -q "(combine f32)" "$tmp/out" && grep -q "^combine: .* x memcpy" "$tmp/out" &&
   grep -q "^check: " "$tmp/out"; then
    passed=$((passed + 1)); echo "ok   zero-copy combine"
else
    fail=$((fail + 1)); echo "FAIL zero-copy combine"; cat "$tmp/out"; tail -5 "$tmp/err"
fi
if ! "$bench" ep --ranks 3 --experts 16 >"$tmp/out" 2>"$tmp/err" && grep -q "multiple of --ranks" "$tmp/err"
then
    passed=$((passed + 1)); echo "ok   bad layout refused"
else
    fail=$((fail + 1)); echo "FAIL bad layout refused"; cat "$tmp/err"
fi
echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

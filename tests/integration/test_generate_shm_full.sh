#!/usr/bin/env bash
# A /dev/shm too small for the rank windows: wideep-generate --tp 2 in a private mount
# namespace whose /dev/shm is a small tmpfs. The run must fail with one clear error (no
# space, the segment, its size, how to enlarge /dev/shm), not with a rank killed by SIGBUS
# at its first touch of an unbacked page, and leave nothing in /dev/shm. The same run with
# room enough succeeds and leaves nothing either. Needs unshare(1) and mount permission
# (root); skipped otherwise.
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
gen="$bin/wideep-generate"
m="$src/tests/fixtures/tiny-qwen3-moe/fp32"
fail=0 passed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs -o size=1m tmpfs /dev/shm' \
    2>"$tmp/why"; then
    echo "skip: cannot mount a small tmpfs over /dev/shm in a private mount namespace: $(head -1 "$tmp/why")"
    exit 77
fi
# A prompt long enough that the all-reduces touch a few hundred KiB of the windows: without
# the reservation a run in 256 KiB dies of SIGBUS, one in 16 MiB (room for the first
# windows, not for all) even "succeeds" on memory it could not have had at a bigger load.
python3 -c "print(' '.join(['the license grants'] * 100))" >"$tmp/prompt"

ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; tail -3 "$tmp/err"; }

# run SIZE: generate --tp 2 with /dev/shm a tmpfs of SIZE; rc in $tmp/rc, what /dev/shm
# held afterwards (inside the namespace) in $tmp/left.
run() {
    unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs -o size="$1" tmpfs /dev/shm &&
        { timeout 120 "$2" --model-path "$3" --prompts-file "$4" --max-new-tokens 4 --tp 2 \
              --threads 1 --dist-timeout-ms 10000 >/dev/null; echo $? >"$5/rc"; }
        ls -A /dev/shm >"$5/left"' sh "$1" "$gen" "$m" "$tmp/prompt" "$tmp" 2>"$tmp/err"
}

for size in 256k 16m; do
    run $size
    rc=$(cat "$tmp/rc")
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] &&
       grep -qE 'shm segment /wd-[0-9]+x[0-9a-f]+-[A-Za-z0-9_.-]+: no space in /dev/shm for [0-9]+ bytes' "$tmp/err" &&
       grep -q 'enlarge /dev/shm (docker --shm-size' "$tmp/err" &&
       ! grep -qiE 'bus error|signal 7|Sanitizer|runtime error:' "$tmp/err"; then
        ok "/dev/shm of $size: clear no-space error (rc $rc)"
    else ko "/dev/shm of $size: clear no-space error (rc $rc)"; fi
    if [ ! -s "$tmp/left" ]; then ok "/dev/shm of $size: nothing left behind"
    else ko "/dev/shm of $size: left behind: $(head -3 "$tmp/left")"; fi
done
run 256m
rc=$(cat "$tmp/rc")
if [ "$rc" -eq 0 ] && [ ! -s "$tmp/left" ]; then ok "/dev/shm of 256m: runs, nothing left behind"
else ko "/dev/shm of 256m: rc $rc, left: $(head -3 "$tmp/left")"; fi

echo "$passed passed, $fail failed"
[ $fail -eq 0 ]

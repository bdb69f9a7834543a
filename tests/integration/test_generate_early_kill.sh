#!/usr/bin/env bash
# A launcher killed in its first moments (wideep-generate --tp 2, SIGKILL or SIGTERM after
# a random 0-80 ms, 30 tries): afterwards no process of that launch is alive (ranks,
# janitor) and /dev/shm holds no segment of it (wd-<launcher pid>x...). Ranks create their
# window segments before every peer has mapped them and the names can go; a launcher
# killed then used to leave them behind about one time in three.
# Processes of one launch are found by a marker in their environment (ranks and the
# janitor are forks of the launcher), so the test never touches anything else.
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
gen="$bin/wideep-generate"
m="$src/tests/fixtures/tiny-qwen3-moe/fp32"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'The license grants\nCopyright holders may\n' >"$tmp/prompts"
mark="WD_EARLY_KILL_TEST=$$-$RANDOM"

# Pids of live processes carrying the marker.
launch_procs() {
    grep -lsaF -- "$mark" /proc/[0-9]*/environ 2>/dev/null |
        while IFS=/ read -r _ _ pid _; do
            state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
            [ -n "$state" ] && [ "$state" != Z ] && echo "$pid"
        done
}

tries=30 left_procs=0 left_shm=0 seen_shm=0
for i in $(seq 1 $tries); do
    sig=KILL
    [ $((i % 2)) -eq 0 ] && sig=TERM
    env "$mark" "$gen" --model-path "$m" --prompts-file "$tmp/prompts" --max-new-tokens 4 \
        --tp 2 --threads 1 --dist-timeout-ms 10000 >/dev/null 2>"$tmp/err" &
    pid=$!
    sleep "0.0$(printf '%02d' $((RANDOM % 80)))"
    # Count this launch's segments at the moment of the kill (shows the window was hit).
    n_then=$(ls /dev/shm 2>/dev/null | grep -c "^wd-${pid}x")
    kill -$sig $pid 2>/dev/null
    wait $pid 2>/dev/null
    [ "$n_then" -gt 0 ] && seen_shm=$((seen_shm + 1))
    # Everything of the launch must be gone within a few seconds.
    for _ in $(seq 1 100); do
        [ -z "$(launch_procs)" ] && [ "$(ls /dev/shm | grep -c "^wd-${pid}x")" -eq 0 ] && break
        sleep 0.05
    done
    procs=$(launch_procs)
    shm=$(ls /dev/shm | grep "^wd-${pid}x")
    if [ -n "$procs" ]; then
        left_procs=$((left_procs + 1))
        echo "try $i (SIG$sig): processes left: $procs"
        kill -KILL $procs 2>/dev/null
    fi
    if [ -n "$shm" ]; then
        left_shm=$((left_shm + 1))
        echo "try $i (SIG$sig): segments left: $(echo $shm)"
        for s in $shm; do rm -f "/dev/shm/$s"; done
    fi
done
echo "$tries tries, $seen_shm killed while segments existed; $left_procs left processes," \
    "$left_shm left segments"
[ $left_procs -eq 0 ] && [ $left_shm -eq 0 ]

#!/usr/bin/env bash
# Short libFuzzer smoke run: replay the committed seed corpus, then mutate for
# a bounded number of runs. A crash, leak or sanitizer report fails the test.
set -u
bin=$1 corpus=$2
if [ ! -x "$bin" ]; then
    echo "skip: fuzz target $bin not built (run make fuzz)"; exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dirs=("$work")
[ -d "$corpus" ] && dirs+=("$corpus")
exec "$bin" -runs=3000 -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
     -artifact_prefix="$work/" "${dirs[@]}"

#!/usr/bin/env bash
# Every C/CUDA source and header follows .clang-format (STYLE.md: checked in CI).
set -u
cd "${WD_SOURCE_DIR:?}"
if ! command -v clang-format >/dev/null; then
    echo "skip: clang-format not installed"; exit 77
fi
bad=0 n=0
while IFS= read -r f; do
    n=$((n + 1))
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run: clang-format -i $f)"; bad=$((bad + 1))
    fi
done < <(git ls-files '*.c' '*.h' '*.cu' 2>/dev/null || find common kernels tests -name '*.[ch]')
echo "$((n - bad)) passed, $bad failed"
[ $bad -eq 0 ]

#!/usr/bin/env bash
# The official openai Python client (PyPI) against wideep-router + a null worker:
# tests/integration/openai_client_test.py, chat and completions, streaming and not, stop,
# logprobs, usage, and the error classes (BadRequestError, NotFoundError,
# AuthenticationError, RateLimitError, 413, and 503 as InternalServerError). The client is
# installed into a venv in the build directory the first time (skipped when that fails,
# e.g. offline: python3-venv from deploy/install-deps.sh and PyPI are needed).
. "$(dirname "$0")/router_lib.sh"

. "$src/tests/integration/openai_venv.sh"
if ! openai_venv "$bin/../venv-openai" "$RL_TMP/pip.log"; then
    echo "skip: could not install the openai client:"; tail -3 "$RL_TMP/pip.log"
    exit 77
fi
py=$OPENAI_PY
client="$src/tests/integration/openai_client_test.py"

RL_KEY=k
rl_start_router main --api-key k --max-body-bytes 65536 || exit 1
rl_check "no worker -> InternalServerError (503)" \
    "$py" "$client" --base-url "$RL_URL/v1" --api-key k --only no_worker
rl_start_worker w
rl_wait_workers 1
rl_check "openai client suite" "$py" "$client" --base-url "$RL_URL/v1" --api-key k \
    --null-worker --max-body-bytes 65536
rl_stop "$RL_RPID"
RL_KEY=

rl_start_router one --max-concurrent-requests 1 --queue-size 0 || exit 1
rl_start_worker slow --token-interval-ms 100
rl_wait_workers 1
rl_check "RateLimitError with Retry-After" "$py" "$client" --base-url "$RL_URL/v1" \
    --only rate_limit
rl_stop "$RL_RPID"
rl_finish

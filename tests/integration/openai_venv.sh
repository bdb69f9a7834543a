# The official openai Python client in a venv under the build directory, made once.
# Sourced; `openai_venv VENV LOG` leaves the venv's python in OPENAI_PY, or returns 1 with
# pip's output in LOG (offline, no python3-venv: callers skip what needs the client).
# Several tests start at once under ctest -j, so the check-and-install runs under one
# lock: without it a second test reinstalled the package under a first one already
# importing it ("No module named openai.types.responses.parsed_response").
openai_venv() {
    local venv=$1 log=$2
    OPENAI_PY=$venv/bin/python
    (
        flock 9 || exit 1
        "$OPENAI_PY" -c "import openai" 2>/dev/null && exit 0
        rm -rf "$venv"
        { python3 -m venv "$venv" &&
            "$venv/bin/pip" install -q --disable-pip-version-check "openai>=1.40"; } \
            >"$log" 2>&1
    ) 9>"$venv.lock"
}

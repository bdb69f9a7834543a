#!/usr/bin/env bash
# Installs every Debian 12 package that wideep's build and tests need.
# Idempotent: packages already present are skipped, and apt is only touched
# when something is missing. Run as root (CI and the README's commands do).
set -eu

pkgs=(
    build-essential cmake pkg-config git python3 python3-venv
    clang clang-format libclang-rt-14-dev llvm
    libjansson-dev libpcre2-dev libutf8proc-dev libxxhash-dev libopenblas-dev
    libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
    libucx-dev ucx-utils libmicrohttpd-dev libcmocka-dev
    curl
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or: sudo $0)" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

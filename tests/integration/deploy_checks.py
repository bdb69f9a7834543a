#!/usr/bin/env python3
"""Checks of one rendered kustomize overlay that need no cluster, for
test_deploy_manifests.sh (run with its venv's python: PyYAML and jsonschema).

deploy_checks.py RENDERED OVERLAY OUTDIR      (WD_SOURCE_DIR and WD_BIN_DIR in the environment)

- Every LeaderWorkerSet against deploy/k8s/schemas/leaderworkerset-v1.yaml; its pod templates
  go to OUTDIR/OVERLAY-podtemplates.yaml as v1 PodTemplates (for kubernetes-validate), and the
  rendered objects plus each LeaderWorkerSet's pods as a Deployment to OUTDIR/OVERLAY-checkov.yaml
  (for checkov, which does not look inside custom resources).
- The flags: each container's WIDEEP_* variables (its ConfigMaps and env) and arguments are
  flags of the binary it runs, and that binary accepts their values (`--help` after parsing
  the environment); the workers' parallel layout passes wideep-generate --print-layout.
- Objects refer to objects that exist; probes, scrape annotations, Services and network
  policies use the ports the flags set; the drain fits terminationGracePeriodSeconds; the
  securityContext; /dev/shm; GPUs per pod equal the ranks per node; the autoscalers' metrics
  come from the Prometheus adapter rules, and those from the router's metric families;
  overlays/cpu runs the topology of `make demo` (deploy/local/demo.topology).
Prints "ok   NAME" / "FAIL NAME: why" per check; exits 1 when one failed.
"""
import copy
import json
import os
import re
import subprocess
import sys

import jsonschema
import yaml

SRC, BIN = os.environ["WD_SOURCE_DIR"], os.environ["WD_BIN_DIR"]
ABORT_GRACE_S = 5  # common/server/worker.c ABORT_GRACE_MS: after the drain timeout
LWS_SAMPLE = {"LWS_GROUP_SIZE": None, "LWS_WORKER_INDEX": "0",
              "LWS_LEADER_ADDRESS": "wideep-decode-0.wideep-decode.wideep"}
failed = []


def check(name, why):
    """why: None or "" when the check passed, else the reason."""
    if why:
        failed.append(name)
        print(f"FAIL {name}: {why}")
    else:
        print(f"ok   {name}")


def pods(objs):
    """(owner object, pod template, kind of pod) for every workload, LWS templates included."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            yield o, o["spec"]["template"], "pod"
        elif o["kind"] == "LeaderWorkerSet":
            lwt = o["spec"]["leaderWorkerTemplate"]
            for key in ("leaderTemplate", "workerTemplate"):
                if key in lwt:
                    yield o, lwt[key], key


def role_of(container):
    cmd = (container.get("command") or [""])[0]
    return cmd[len("wideep-"):] if cmd.startswith("wideep-") else None


def container_env(objs, owner, container):
    """The WIDEEP_* environment a container starts with (ConfigMaps in order, then env)."""
    cms = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    env = {}
    for ref in container.get("envFrom", []):
        env.update(cms.get(ref["configMapRef"]["name"], {}))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[e["name"]] = "10.1.2.3"
    return env


def container_args(owner, container):
    """Arguments with LWS's variables as a pod of a group of the owner's size sees them."""
    sample = dict(LWS_SAMPLE)
    if owner["kind"] == "LeaderWorkerSet":
        sample["LWS_GROUP_SIZE"] = str(owner["spec"]["leaderWorkerTemplate"].get("size", 1))
    return [re.sub(r"\$\((\w+)\)", lambda m: sample.get(m.group(1)) or m.group(0), a)
            for a in container.get("args", [])]


HELP = {}


def flags_of(binary):
    if binary not in HELP:
        out = subprocess.run([f"{BIN}/{binary}", "--help"], capture_output=True, text=True)
        HELP[binary] = set(re.findall(r"^\s+--([a-z0-9-]+)", out.stdout + out.stderr, re.M))
    return HELP[binary]


def env_name(flag):
    return "WIDEEP_" + flag.upper().replace("-", "_")


def check_flags(objs, overlay):
    for owner, tpl, _ in pods(objs):
        for c in tpl["spec"]["containers"]:
            role = role_of(c)
            name = f"{overlay}: {owner['metadata']['name']} flags"
            if role is None:
                check(name, f"container {c['name']} runs no wideep binary")
                continue
            binary = f"wideep-{role}"
            known = {env_name(f) for f in flags_of(binary)}
            env = container_env(objs, owner, c)
            args = container_args(owner, c)
            unknown = sorted(k for k in env if k.startswith("WIDEEP_") and k not in known)
            unknown += [a for a in args if a.startswith("--") and a[2:] not in flags_of(binary)]
            if unknown:
                check(name, f"{binary} has no flag for {unknown}")
                continue
            run = subprocess.run([f"{BIN}/{binary}", *args, "--help"], env=env,
                                 capture_output=True, text=True)
            check(name, run.returncode and f"{binary} refuses them: {run.stderr.strip()}")
            if role == "router":
                continue
            # The layout (tp/dp/ep, DP attention, DeepEP, nodes) by SGLang's rules; with the
            # tiny model of the image, its shape guards too.
            genv = {k: v for k, v in env.items() if k in {env_name(f) for f in
                                                          flags_of("wideep-generate")}}
            if genv.get("WIDEEP_MODEL_PATH") == "/opt/wideep/models/tiny":
                genv["WIDEEP_MODEL_PATH"] = f"{SRC}/deploy/tiny-model"
            else:
                genv.pop("WIDEEP_MODEL_PATH", None)
            lay = subprocess.run([f"{BIN}/wideep-generate", *args, "--print-layout"], env=genv,
                                 capture_output=True, text=True)
            check(f"{overlay}: {owner['metadata']['name']} parallel layout",
                  lay.returncode and lay.stderr.strip())


def check_lws(objs, overlay, outdir):
    schema = yaml.safe_load(open(f"{SRC}/deploy/k8s/schemas/leaderworkerset-v1.yaml"))
    templates, wrapped = [], []
    for o in objs:
        if o["kind"] != "LeaderWorkerSet":
            continue
        errs = sorted(e.message for e in jsonschema.Draft7Validator(schema).iter_errors(o))
        check(f"{overlay}: LeaderWorkerSet {o['metadata']['name']} schema", "; ".join(errs))
        args = " ".join(c_arg for c in o["spec"]["leaderWorkerTemplate"]["workerTemplate"]
                        ["spec"]["containers"] for c_arg in c.get("args", []))
        want = ["--nnodes $(LWS_GROUP_SIZE)", "--node-rank $(LWS_WORKER_INDEX)",
                "--dist-init-addr $(LWS_LEADER_ADDRESS):"]
        check(f"{overlay}: {o['metadata']['name']} takes its place from LWS",
              ", ".join(w for w in want if w not in args))
        for owner, tpl, key in pods([o]):
            meta = {"name": f"{o['metadata']['name']}-{key.lower()}",
                    "namespace": o["metadata"].get("namespace", "default")}
            templates.append({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta,
                              "template": tpl})
            wrapped.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                            "spec": {"selector": {"matchLabels": tpl["metadata"]["labels"]},
                                     "template": copy.deepcopy(tpl)}})
    with open(f"{outdir}/{overlay}-podtemplates.yaml", "w") as f:
        yaml.safe_dump_all(templates, f)
    with open(f"{outdir}/{overlay}-checkov.yaml", "w") as f:
        yaml.safe_dump_all(objs + wrapped, f)


def named(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_references(objs, overlay):
    cms, pvcs = named(objs, "ConfigMap"), named(objs, "PersistentVolumeClaim")
    sas = named(objs, "ServiceAccount")
    missing = []
    for owner, tpl, _ in pods(objs):
        spec = tpl["spec"]
        if spec.get("serviceAccountName") not in sas:
            missing.append(f"service account {spec.get('serviceAccountName')}")
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in pvcs:
                missing.append(f"claim {claim}")
        for c in spec["containers"]:
            missing += [f"ConfigMap {r['configMapRef']['name']}" for r in c.get("envFrom", [])
                        if r["configMapRef"]["name"] not in cms]
    for h in named(objs, "HorizontalPodAutoscaler").values():
        ref = h["spec"]["scaleTargetRef"]
        if ref["name"] not in named(objs, ref["kind"]):
            missing.append(f"{ref['kind']} {ref['name']} (autoscaler {h['metadata']['name']})")
    labels = [tpl["metadata"]["labels"] for _, tpl, _ in pods(objs)]
    selectors = [(o, o["spec"]["selector"]) for o in named(objs, "Service").values()]
    selectors += [(o, o["spec"]["selector"]["matchLabels"])
                  for o in named(objs, "PodDisruptionBudget").values()]
    for o, sel in selectors:
        if not any(selects(sel, lab) for lab in labels):
            missing.append(f"pods for {o['kind']} {o['metadata']['name']}")
    check(f"{overlay}: references resolve", ", ".join(missing))


def port_of(container, port):
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", [])
                 if p["name"] == port), None)


def check_pods(objs, overlay):
    for owner, tpl, _ in pods(objs):
        spec, name = tpl["spec"], owner["metadata"]["name"]
        for c in spec["containers"]:
            role, env = role_of(c), container_env(objs, owner, c)
            probs = []
            # Ports the flags set, used by the probes and the scrape annotations.
            port = env.get("WIDEEP_PORT" if role == "router" else "WIDEEP_METRICS_PORT")
            host = env.get("WIDEEP_HOST" if role == "router" else "WIDEEP_METRICS_HOST")
            if host != "0.0.0.0":
                probs.append(f"binds {host} (the kubelet probes the pod's address)")
            want = {"startupProbe": "/health", "readinessProbe": "/health",
                    "livenessProbe": "/health" if role == "router" else "/live"}
            for probe, path in want.items():
                g = c.get(probe, {}).get("httpGet", {})
                if g.get("path") != path or str(port_of(c, g.get("port"))) != str(port):
                    probs.append(f"{probe} is not {path} on port {port}")
            ann = tpl["metadata"].get("annotations", {})
            if (ann.get("prometheus.io/scrape"), ann.get("prometheus.io/port"),
                    ann.get("prometheus.io/path")) != ("true", str(port), "/metrics"):
                probs.append(f"scrape annotations are not port {port} /metrics")
            check(f"{overlay}: {name} probes and scraping", "; ".join(probs))

            probs = []
            psc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
            if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) < 10000:
                probs.append("pod not non-root with a uid >= 10000")
            if sc.get("allowPrivilegeEscalation") is not False:
                probs.append("privilege escalation allowed")
            if sc.get("readOnlyRootFilesystem") is not True:
                probs.append("root filesystem writable")
            caps = sc.get("capabilities", {})
            rdma = any(k.startswith("rdma/") for k in c.get("resources", {}).get("limits", {}))
            if caps.get("drop") != ["ALL"]:
                probs.append("capabilities not all dropped")
            if set(caps.get("add", [])) != ({"IPC_LOCK"} if rdma else set()):
                probs.append(f"adds {caps.get('add', [])} (only IPC_LOCK, only with RDMA)")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            if "emptyDir" not in vols.get(mounts.get("/tmp"), {}):
                probs.append("no writable /tmp (the root filesystem is read-only)")
            check(f"{overlay}: {name} securityContext", "; ".join(probs))
            if role == "router":
                continue

            probs = []
            drain = int(env.get("WIDEEP_DRAIN_TIMEOUT_SECS", 60))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < drain + ABORT_GRACE_S + 10:
                probs.append(f"terminationGracePeriodSeconds {grace} < drain {drain} + "
                             f"{ABORT_GRACE_S} + 10")
            shm = vols.get(mounts.get("/dev/shm"), {}).get("emptyDir", {})
            if shm.get("medium") != "Memory" or "sizeLimit" not in shm:
                probs.append("/dev/shm is not a memory emptyDir with a size")
            limits = c.get("resources", {}).get("limits", {})
            gpus = int(limits.get("nvidia.com/gpu", 0))
            args = container_args(owner, c)
            nnodes = int(args[args.index("--nnodes") + 1]) if "--nnodes" in args else 1
            ranks = int(env.get("WIDEEP_TP_SIZE", 1)) // nnodes
            if overlay == "cpu" and gpus:
                probs.append("the cpu overlay asks for GPUs")
            if overlay in ("single-node", "wide-ep") and gpus != ranks:
                probs.append(f"{gpus} GPUs for {ranks} ranks per node")
            check(f"{overlay}: {name} drain, /dev/shm, GPUs", "; ".join(probs))


def check_network(objs, overlay):
    pols = named(objs, "NetworkPolicy").values()
    probs = []
    deny = [p for p in pols if set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    router_env = {}
    for owner, tpl, _ in pods(objs):
        labels = tpl["metadata"]["labels"]
        if not any(selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in deny):
            probs.append(f"{owner['metadata']['name']} has no default deny")
        dns = [p for p in pols if selects(p["spec"]["podSelector"]["matchLabels"], labels)
               and any(pt.get("port") == 53 for e in p["spec"].get("egress", [])
                       for pt in e.get("ports", []))]
        if not dns:
            probs.append(f"{owner['metadata']['name']} may not reach DNS")
        for c in tpl["spec"]["containers"]:
            if role_of(c) == "router":
                router_env = container_env(objs, owner, c)
    # The workers' --router endpoint: a Service on the router's worker port.
    for owner, tpl, _ in pods(objs):
        for c in tpl["spec"]["containers"]:
            ep = container_env(objs, owner, c).get("WIDEEP_ROUTER")
            if not ep:
                continue
            host, port = re.match(r"tcp://([^:]+):(\d+)$", ep).groups()
            svc = named(objs, "Service").get(host)
            if not svc or int(port) not in [p["port"] for p in svc["spec"]["ports"]]:
                probs.append(f"{ep} is no Service port")
            elif port != router_env.get("WIDEEP_WORKER_PORT"):
                probs.append(f"{ep} is not the router's worker port")
    check(f"{overlay}: network policies and endpoints", "; ".join(probs))


def check_autoscaling(objs, overlay):
    rules = yaml.safe_load(open(f"{SRC}/deploy/k8s/prometheus-adapter/rules.yaml"))
    defined = {r["name"]["as"] for r in rules["rules"]["external"]}
    router_src = "".join(open(f"{SRC}/router/{f}").read() for f in os.listdir(f"{SRC}/router")
                         if f.endswith(".c"))
    exported = set(re.findall(r'"(wideep:router_[a-z_]+)"', router_src))
    probs = []
    for h in named(objs, "HorizontalPodAutoscaler").values():
        for m in h["spec"]["metrics"]:
            n = m["external"]["metric"]["name"]
            if n not in defined:
                probs.append(f"{n} (autoscaler {h['metadata']['name']}) has no adapter rule")
    for r in rules["rules"]["external"]:
        for series in re.findall(r"wideep:router_[a-z_]+", r["seriesQuery"] + r["metricsQuery"]):
            if re.sub(r"_(bucket|sum|count)$", "", series) not in exported:
                probs.append(f"the router exports no {series}")
    probs = sorted(set(probs))
    check(f"{overlay}: autoscaler metrics come from the router", "; ".join(probs))


def check_topology(objs, overlay):
    """overlays/cpu and deploy/local/demo.topology (make demo): the same roles, replicas and
    flags, but for what differs between pods and processes on one host (the model's path,
    addresses and ports, CPU threads)."""
    out = subprocess.run([sys.executable, f"{SRC}/deploy/local/wideep_local.py", "print",
                          f"{SRC}/deploy/local/demo.topology"], capture_output=True, text=True)
    if out.returncode:
        check(f"{overlay}: the same topology as make demo", out.stderr.strip())
        return
    topo = json.loads(out.stdout)
    local_only = {"model-path", "host", "port", "worker-port", "threads"}
    probs = []
    for owner, tpl, _ in pods(objs):
        for c in tpl["spec"]["containers"]:
            role = role_of(c)
            env = {k: v for k, v in container_env(objs, owner, c).items()
                   if k.startswith("WIDEEP_")}
            want = {env_name(k): v for k, v in topo.get(role, {}).get("flags", {}).items()
                    if k not in local_only}
            layout = {env_name(f) for f in ("tp-size", "dp-size", "ep-size", "nnodes",
                                            "enable-dp-attention", "moe-a2a-backend",
                                            "deepep-mode", "served-model-name")}
            have = {k: v for k, v in env.items() if k in layout | set(want)}
            if have != want:
                probs.append(f"{role}: overlay {have} != topology {want}")
            if role != "router" and owner["spec"].get("replicas", 1) != topo[role]["replicas"]:
                probs.append(f"{role}: {owner['spec'].get('replicas', 1)} replicas, "
                             f"topology {topo[role]['replicas']}")
    check(f"{overlay}: the same topology as make demo", "; ".join(probs))


def main():
    rendered, overlay, outdir = sys.argv[1:4]
    objs = [o for o in yaml.safe_load_all(open(rendered)) if o]
    check(f"{overlay}: renders objects", not objs and "nothing rendered")
    check_lws(objs, overlay, outdir)
    check_references(objs, overlay)
    check_flags(objs, overlay)
    check_pods(objs, overlay)
    check_network(objs, overlay)
    check_autoscaling(objs, overlay)
    if overlay == "cpu":
        check_topology(objs, overlay)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

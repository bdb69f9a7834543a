#!/usr/bin/env python3
"""wideep on one machine from a topology file: the roles, replicas and flags of the
Kubernetes overlays (deploy/k8s), as processes on 127.0.0.1. Python 3 standard library only.

  wideep_local.py up TOPOLOGY [--bin DIR] [--run DIR] [--timeout SECS]
      starts wideep-router, then every prefill and decode worker (each registers with the
      router), writes RUN/pids (the launcher's own pid) and RUN/ready (the router's URL, once
      every worker is registered), and supervises until SIGINT/SIGTERM: then the workers drain
      (SIGTERM), the router stops last.
      If any process exits by itself, the others are stopped and the exit status is 1.
  wideep_local.py print TOPOLOGY
      the topology as JSON: {role: {"replicas": N, "flags": {flag: value}}} (what the
      deployment test compares with the overlays' ConfigMaps).

The topology is an INI file. Sections are roles: [router], [prefill], [decode]; [all] holds
flags every role gets (the model). `replicas` is how many instances of a worker role to run;
every other key is a flag of that role's binary without its dashes (`tp-size = 2` is
`--tp-size=2`, and WIDEEP_TP_SIZE in the overlays). Relative paths in model-path are from
the repository root. Logs: RUN/<instance>.log.
"""
import configparser
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = ("router", "prefill", "decode")


def load(path):
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    cp.optionxform = str  # flag names are case-sensitive
    if not cp.read(path):
        sys.exit(f"wideep-local: cannot read {path}")
    unknown = set(cp.sections()) - set(ROLES) - {"all"}
    if unknown or "router" not in cp:
        sys.exit(f"wideep-local: {path}: sections must be [all], [router], [prefill], "
                 f"[decode] with a [router] (found {sorted(cp.sections())})")
    common = dict(cp["all"]) if "all" in cp else {}
    if "model-path" in common and not os.path.isabs(common["model-path"]):
        common["model-path"] = os.path.join(ROOT, common["model-path"])
    topo = {}
    for role in ROLES:
        if role not in cp:
            continue
        flags = dict(common, **cp[role])
        replicas = int(flags.pop("replicas", "1"))
        if role == "router" and replicas != 1:
            sys.exit("wideep-local: one router (workers register with one router)")
        topo[role] = {"replicas": replicas, "flags": flags}
    return topo


def argv(binary, flags):
    return [binary] + [f"--{k}={v}" for k, v in flags.items()]


class Cluster:
    def __init__(self, topo, bindir, rundir):
        self.topo, self.bin, self.run = topo, bindir, rundir
        self.router, self.workers = None, []  # (name, Popen)

    def spawn(self, name, cmd):
        log = open(os.path.join(self.run, f"{name}.log"), "w")
        # A session of its own: a terminal's Ctrl-C reaches the launcher only, which then
        # sends each worker one SIGTERM (a second signal would abort its drain).
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def start(self, timeout, stopping):
        ports = os.path.join(self.run, "router.ports")
        if os.path.exists(ports):
            os.unlink(ports)
        flags = dict({"host": "127.0.0.1", "port": "0", "worker-port": "0"},
                     **self.topo["router"]["flags"], **{"port-file": ports})
        self.router = self.spawn("router", argv(os.path.join(self.bin, "wideep-router"), flags))
        deadline = time.monotonic() + 10
        while not (os.path.exists(ports) and os.path.getsize(ports)):
            if self.router.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the router did not start (see router.log)")
            time.sleep(0.1)
        http, wport = open(ports).read().split()
        self.url = f"http://127.0.0.1:{http}"
        for role in ("prefill", "decode"):
            spec = self.topo.get(role, {"replicas": 0})
            for i in range(spec["replicas"]):
                name = f"{role}-{i}"
                flags = dict({"metrics-port": "0", "instance-id": f"local-{name}"},
                             **spec["flags"], router=f"tcp://127.0.0.1:{wport}")
                binary = os.path.join(self.bin, f"wideep-{role}")
                self.workers.append((name, self.spawn(name, argv(binary, flags))))
        want = {f"local-{n}" for n, _ in self.workers}
        deadline = time.monotonic() + timeout
        while self.registered() != want:
            if stopping:
                raise RuntimeError("stopped before every worker registered")
            for name, p in [("router", self.router)] + self.workers:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} (see {name}.log)")
            if time.monotonic() > deadline:
                missing = sorted(want - self.registered())
                raise RuntimeError(f"not registered after {timeout} s: {missing}")
            time.sleep(0.2)

    def registered(self):
        try:
            with urllib.request.urlopen(f"{self.url}/workers", timeout=2) as r:
                return {w["instance_id"] for w in json.load(r)["workers"]}
        except (OSError, ValueError, KeyError):
            return set()

    def stop(self):
        """Workers drain first (they finish what they serve), then the router goes."""
        for _, p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.workers:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.router and self.router.poll() is None:
            self.router.send_signal(signal.SIGTERM)
            try:
                self.router.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.router.kill()
                self.router.wait()

    def supervise(self, stopping):
        while not stopping:
            for name, p in [("router", self.router)] + self.workers:
                if p.poll() is not None:
                    print(f"wideep-local: {name} exited with {p.returncode} (see {name}.log)",
                          file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0


def up(args):
    topo = load(args[0])
    opts = dict(zip(args[1::2], args[2::2]))
    bindir = os.path.abspath(opts.get("--bin", os.path.join(ROOT, "build", "bin")))
    rundir = os.path.abspath(opts.get("--run", os.path.join(ROOT, "build", "local")))
    os.makedirs(rundir, exist_ok=True)
    for f in ("ready", "pids"):
        if os.path.exists(os.path.join(rundir, f)):
            os.unlink(os.path.join(rundir, f))
    with open(os.path.join(rundir, "pids"), "w") as f:
        f.write(f"{os.getpid()}\n")
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(1))
    c = Cluster(topo, bindir, rundir)
    rc = 0
    try:
        c.start(int(opts.get("--timeout", "120")), stopping)
        with open(os.path.join(rundir, "ready"), "w") as f:
            f.write(c.url + "\n")
        print(f"wideep-local: serving at {c.url} (logs in {rundir})", flush=True)
        rc = c.supervise(stopping)
    except RuntimeError as e:
        print(f"wideep-local: {e}", file=sys.stderr)
        rc = 1
    finally:
        c.stop()
        for f in ("ready", "pids"):
            if os.path.exists(os.path.join(rundir, f)):
                os.unlink(os.path.join(rundir, f))
    return rc


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("up", "print"):
        sys.exit(__doc__)
    if sys.argv[1] == "print":
        print(json.dumps(load(sys.argv[2]), indent=1, sort_keys=True))
        return 0
    return up(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""wideep beside llama.cpp on one checkpoint: decode batch 1, decode batch 32 and a 512-token
prefill, the same threads, in one run, alternating engines round by round (shared machines
drift: each round runs both back to back, the first engine swapping every round). Prints each
round and a min / median / max table with the wideep / llama.cpp ratio of the medians, and
wideep's batch-1 weight bandwidth against the read-only baseline it measures.

Not run by CI and downloads nothing. It needs:
  - a wideep build (its bin/ with wideep-bench);
  - a llama.cpp build (its bin/ with llama-bench and llama-batched-bench), e.g. the source tree
    inside `pip download --no-deps --no-binary :all: llama-cpp-python` (vendor/llama.cpp),
    built with CMake (Release, GGML_NATIVE=ON) outside this repository;
  - the checkpoint (tests/bench/make_bench_checkpoint.py) and its GGUF made by llama.cpp's
    convert_hf_to_gguf.py --outtype bf16.
The commands it runs (2 threads):
  wideep-bench engine --model-path HF --threads 2 --decode-steps 64 --prefill-tokens 512
      --batch 32
  llama-bench -m GGUF -t 2 -p 512 -n 64 -r 1 -o jsonl
  llama-batched-bench -m GGUF -t 2 -c 4096 -npp 32 -ntg 64 -npl 32 --output-format jsonl

Usage: tests/bench/vs_llama_cpp.py WIDEEP_BIN LLAMA_BIN HF_DIR GGUF [--rounds 3] [--threads 2]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys


def run(cmd):
    print("  $ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}):\n{p.stdout[-3000:]}")
    return p.stdout


def wideep(bin_dir, hf, threads):
    out = run([os.path.join(bin_dir, "wideep-bench"), "engine", "--model-path", hf, "--threads",
               str(threads), "--decode-steps", "64", "--prefill-tokens", "512", "--batch", "32"])

    def num(pattern):
        m = re.search(pattern, out)
        if not m:
            sys.exit(f"wideep-bench output lacks /{pattern}/:\n{out}")
        return float(m.group(1))

    return {"decode1": num(r"decode batch 1:\s+([\d.]+) tok/s"),
            "decode32": num(r"decode batch 32\s+([\d.]+) tok/s"),
            "prefill": num(r"prefill \(512 tokens\):\s+([\d.]+) tok/s"),
            "read_gbs": num(r"baseline read-only:\s+([\d.]+) GB/s"),
            "read_ratio": num(r"= ([\d.]+) x read-only")}


def llama(bin_dir, gguf, threads):
    r = {}
    out = run([os.path.join(bin_dir, "llama-bench"), "-m", gguf, "-t", str(threads), "-p", "512",
               "-n", "64", "-r", "1", "-o", "jsonl"])
    for line in out.splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            r["prefill" if j["n_prompt"] == 512 else "decode1"] = float(j["avg_ts"])
    out = run([os.path.join(bin_dir, "llama-batched-bench"), "-m", gguf, "-t", str(threads),
               "-c", "4096", "-npp", "32", "-ntg", "64", "-npl", "32", "--output-format", "jsonl"])
    for line in out.splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            r["decode32"] = float(json.loads(line)["speed_tg"])
    if len(r) != 3:
        sys.exit(f"llama.cpp output not understood: {r}\n{out}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wideep_bin")
    ap.add_argument("llama_bin")
    ap.add_argument("hf_dir")
    ap.add_argument("gguf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rows = {"wideep": [], "llama.cpp": []}
    for i in range(a.rounds):
        order = ["wideep", "llama.cpp"] if i % 2 == 0 else ["llama.cpp", "wideep"]
        print(f"round {i + 1}: {' then '.join(order)}", flush=True)
        for eng in order:
            r = (wideep(a.wideep_bin, a.hf_dir, a.threads) if eng == "wideep"
                 else llama(a.llama_bin, a.gguf, a.threads))
            rows[eng].append(r)
            print(f"  {eng}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), flush=True)

    def mmm(eng, key):
        v = sorted(r[key] for r in rows[eng])
        return v[0], statistics.median(v), v[-1]

    name = os.path.basename(os.path.normpath(a.hf_dir))
    print(f"\n{name}, {a.threads} threads, {a.rounds} alternating rounds (tok/s, min / median / max)")
    print("| measurement | llama.cpp | wideep | wideep / llama.cpp (medians) |")
    print("| --- | --- | --- | --- |")
    for key, label in (("decode1", "decode batch 1"), ("decode32", "decode batch 32 (aggregate)"),
                       ("prefill", "prefill 512 tokens")):
        lw, ll = mmm("wideep", key), mmm("llama.cpp", key)
        print(f"| {label} | {ll[0]:.1f} / {ll[1]:.1f} / {ll[2]:.1f} | "
              f"{lw[0]:.1f} / {lw[1]:.1f} / {lw[2]:.1f} | {lw[1] / ll[1]:.2f} |")
    rr, rg = mmm("wideep", "read_ratio"), mmm("wideep", "read_gbs")
    print(f"wideep batch-1 weight bandwidth / read-only baseline: {rr[0]:.2f} / {rr[1]:.2f} / "
          f"{rr[2]:.2f} (baseline {rg[1]:.1f} GB/s median)")


if __name__ == "__main__":
    main()

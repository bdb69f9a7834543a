#!/usr/bin/env python3
"""Reference EPLB in Python + torch, and the fixture writer for tests/unit/test_eplb*.c.

A port of the algorithm of deepseek-ai/EPLB (eplb.py, also vendored by SGLang as
eplb_algorithms/deepseek.py) and of SGLang's static dispatch map
(expert_location.compute_logical_to_rank_dispatch_physical_map), written layer by layer.
Every decision that can tie is taken by the same torch operation eplb.py uses, so the outputs
are what eplb.py prints:
  - item order in balanced packing: torch.sort(descending=True) on float32 (not stable);
  - next replica: torch.max(dim=-1).indices of float32 weight / count (first maximum);
  - pack loads: float32 tensors summed in item order, lightest pack by Python's min();
  - expert-group loads: torch float32 .sum(-1).
The static dispatch map uses Python's random.Random(42) exactly as SGLang does.

When written, this port was compared (outside the repo) with eplb.py's own code on 300 random
inputs of every weight kind below, and with SGLang 0.5.23's expert_location functions on 160
dispatch maps (EPLB, mapping and nearest-only paths): identical. Note that SGLang's vendored
copy of balanced_packing now sums pack loads in Python floats; this port keeps eplb.py's
float32 sums.

CI has no torch: run this once to (re)write the fixtures (from the repo root):
    python3 tests/tools/eplb_reference.py --write tests/fixtures/eplb
and `python3 tests/tools/eplb_reference.py --readme` prints the README example.
"""
import argparse
import os
import random

import torch


# ---------------------------------------------------------------------------------------------
# EPLB (eplb.py semantics)
# ---------------------------------------------------------------------------------------------

def pack_row(w, n_packs):
    """Packs the items of the float32 row w into n_packs packs of len(w) / n_packs items.

    Returns (pack, rank) as Python lists indexed by item."""
    n = w.numel()
    assert n % n_packs == 0
    per = n // n_packs
    if per == 1:
        return list(range(n)), [0] * n
    order = torch.sort(w, dim=-1, descending=True).indices.tolist()
    loads = [torch.zeros((), dtype=torch.float32) for _ in range(n_packs)]
    counts = [0] * n_packs
    pack = [-1] * n
    rank = [-1] * n
    for item in order:
        open_packs = [p for p in range(n_packs) if counts[p] < per]
        best = open_packs[0]
        for p in open_packs[1:]:
            if bool(loads[p] < loads[best]):
                best = p
        pack[item] = best
        rank[item] = counts[best]
        counts[best] += 1
        loads[best] = loads[best] + w[item]
    return pack, rank


def replicate_row(w, n_phy):
    """Gives the float32 row w (n_log experts) n_phy slots: originals first, then each extra
    slot to argmax(w / count). Returns (phy2log, replica_rank, count) lists."""
    n_log = w.numel()
    assert n_phy >= n_log
    cnt = torch.ones(n_log, dtype=torch.int64)
    phy2log = list(range(n_log))
    rank = [0] * n_log
    for _ in range(n_log, n_phy):
        e = int((w / cnt).max(dim=-1).indices)
        phy2log.append(e)
        rank.append(int(cnt[e]))
        cnt[e] += 1
    return phy2log, rank, cnt.tolist()


def rebalance_layer(w, n_phy, n_groups, n_nodes, n_gpus):
    """One layer of the hierarchical policy on the float32 row w."""
    n_log = w.numel()
    gsize = n_log // n_groups
    groups_per_node = n_groups // n_nodes
    log_per_node = n_log // n_nodes
    phy_per_node = n_phy // n_nodes
    gpus_per_node = n_gpus // n_nodes
    phy_per_gpu = n_phy // n_gpus

    group_w = w.view(n_groups, gsize).sum(-1)
    g_pack, g_rank = pack_row(group_w, n_nodes)
    log2mlog = [0] * n_log
    for g in range(n_groups):
        for j in range(gsize):
            log2mlog[g * gsize + j] = (g_pack[g] * groups_per_node + g_rank[g]) * gsize + j
    mlog2log = [0] * n_log
    for e, m in enumerate(log2mlog):
        mlog2log[m] = e

    phy2log = [0] * n_phy
    phy_rank = [0] * n_phy
    mlog_cnt = [0] * n_log
    for node in range(n_nodes):
        experts = mlog2log[node * log_per_node:(node + 1) * log_per_node]
        node_w = w[torch.tensor(experts, dtype=torch.int64)]
        p2m, prank, cnt = replicate_row(node_w, phy_per_node)
        mlog_cnt[node * log_per_node:(node + 1) * log_per_node] = cnt
        per_replica = (node_w / torch.tensor(cnt, dtype=torch.int64))[
            torch.tensor(p2m, dtype=torch.int64)]
        gpu, pos = pack_row(per_replica, gpus_per_node)
        for q in range(phy_per_node):
            slot = node * phy_per_node + gpu[q] * phy_per_gpu + pos[q]
            phy2log[slot] = experts[p2m[q]]
            phy_rank[slot] = prank[q]
    logcnt = [mlog_cnt[log2mlog[e]] for e in range(n_log)]
    return phy2log, phy_rank, logcnt


def rebalance(weight, n_phy, n_groups, n_nodes, n_gpus, algorithm="auto"):
    """weight: [layers][logical] numbers. Returns (phy2log, log2phy, logcnt) as nested lists,
    log2phy padded with -1 to the largest replica count of any layer (as eplb.py does)."""
    w = torch.tensor(weight, dtype=torch.float64).float()
    n_layers, n_log = w.shape
    hier = n_groups > 0 and n_groups % n_nodes == 0
    if algorithm == "deepseek":
        hier = False
    elif algorithm == "deepseek_hierarchical":
        assert hier
    if not hier:
        n_groups, n_nodes = 1, 1
    assert n_log % n_groups == 0 and n_gpus % n_nodes == 0 and n_phy % n_gpus == 0
    phy2log, ranks, logcnt = [], [], []
    for l in range(n_layers):
        p, r, c = rebalance_layer(w[l], n_phy, n_groups, n_nodes, n_gpus)
        phy2log.append(p)
        ranks.append(r)
        logcnt.append(c)
    width = max(max(c) for c in logcnt)
    log2phy = [[[-1] * width for _ in range(n_log)] for _ in range(n_layers)]
    for l in range(n_layers):
        for slot in range(n_phy):
            log2phy[l][phy2log[l][slot]][ranks[l][slot]] = slot
    return phy2log, log2phy, logcnt


# ---------------------------------------------------------------------------------------------
# SGLang static dispatch map (expert_location.py)
# ---------------------------------------------------------------------------------------------

def _nearest(cands, per_gpu, rank, gpus_per_node, per_node):
    if len(cands) == 1:
        return cands[0]
    same_gpu = [p for p in cands if p // per_gpu == rank]
    if same_gpu:
        return same_gpu[0]
    if gpus_per_node is not None:
        node = rank // gpus_per_node
        same_node = [p for p in cands if p // per_node == node]
        if 0 < len(same_node) < len(cands):
            return same_node[0]
    return -1


def _fair(cands, k, rng):
    q, rem = divmod(k, len(cands))
    out = cands * q + rng.sample(cands, k=rem)
    rng.shuffle(out)
    return out


def _all_maps(log2phy, n_phy, n_gpus, n_nodes):
    """SGLang's compute_logical_to_rank_dispatch_physical_map on log2phy, for every rank:
    [n_gpus][layers][logical]."""
    rng = random.Random(42)
    per_gpu = n_phy // n_gpus
    gpus_per_node = n_gpus // n_nodes if n_nodes else None
    per_node = per_gpu * gpus_per_node if n_nodes else None
    n_layers, n_log = len(log2phy), len(log2phy[0])
    out = [[[-1] * n_log for _ in range(n_layers)] for _ in range(n_gpus)]
    for l in range(n_layers):
        for e in range(n_log):
            cands = [p for p in log2phy[l][e] if p != -1]
            picks = [_nearest(cands, per_gpu, r, gpus_per_node, per_node) for r in range(n_gpus)]
            remaining = [r for r in range(n_gpus) if picks[r] == -1]
            if remaining:
                for r, c in zip(remaining, _fair(cands, len(remaining), rng)):
                    picks[r] = c
            for r in range(n_gpus):
                out[r][l][e] = picks[r]
    return out


def static_dispatch_maps(log2phy, n_phy, n_gpus, n_nodes, nearest_only=False):
    """log2phy: [layers][logical][X] -1 padded. Returns [n_gpus][layers][logical]: the slot each
    EP rank sends each logical expert to. n_nodes = 0 disables the same-node preference.
    nearest_only: SGLang's init_by_mapping with an a2a backend, where each rank first shrinks
    every candidate list to its nearest replica (when it has one) and then builds the map."""
    per_gpu = n_phy // n_gpus
    gpus_per_node = n_gpus // n_nodes if n_nodes else None
    per_node = per_gpu * gpus_per_node if n_nodes else None
    if not nearest_only:
        return _all_maps(log2phy, n_phy, n_gpus, n_nodes)
    maps = []
    for rank in range(n_gpus):
        table = []
        for layer in log2phy:
            rows = []
            for slots in layer:
                cands = [p for p in slots if p != -1]
                near = _nearest(cands, per_gpu, rank, gpus_per_node, per_node)
                rows.append([near] if near != -1 else cands)
            table.append(rows)
        maps.append(_all_maps(table, n_phy, n_gpus, n_nodes)[rank])
    return maps


def mapping_log2phy(phy2log, n_log):
    """log2phy of a physical_to_logical_map as SGLang's init_by_mapping builds it: each
    expert's slots in increasing order, padded with -1."""
    table = [[[] for _ in range(n_log)] for _ in phy2log]
    for l, row in enumerate(phy2log):
        for slot, e in enumerate(row):
            table[l][e].append(slot)
    width = max(len(c) for layer in table for c in layer)
    return [[c + [-1] * (width - len(c)) for c in layer] for layer in table]


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

README_WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                 [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]

# Median-of-3 killers for libstdc++'s introsort (found once with McIlroy's "antiqsort" adversary
# run against the C port of the sort, made to stop deciding once the heap phase starts): sorting
# them exhausts introsort's depth limit, and the heap-sort fallback then orders the many tied
# zeros. With no redundancy and one node these weights are the per-replica loads packed onto
# GPUs, and tied zeros fill packs in sort order, so the fallback's tie order shows in phy2log.
KILLER_64 = [
    0, 63, 0, 61, 0, 59, 0, 57, 0, 55, 0, 53, 0, 51, 0, 49, 0, 47, 0, 45, 0, 43, 0, 41, 0,
    0, 0, 0, 0, 0, 0, 0, 64, 62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]

KILLER_100 = [
    0, 99, 0, 97, 0, 95, 0, 93, 0, 91, 0, 89, 0, 87, 0, 85, 0, 83, 0, 81, 0, 79, 0, 77, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 98,
    96, 94, 92, 90, 88, 86, 84, 82, 80, 78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]


def _flat(x):
    if isinstance(x, list):
        return [v for item in x for v in _flat(item)]
    return [x]


def _weights(rng, kind, n_layers, n_log):
    rows = []
    for _ in range(n_layers):
        if kind == "killer":
            row = list({64: KILLER_64, 100: KILLER_100}[n_log])
        elif kind == "hot":  # one expert takes nearly all the load
            row = [10000] + [rng.randrange(1, 10) for _ in range(n_log - 1)]
        elif kind == "zipf":  # realistic skew: a few hot experts
            row = [int(1000 / (1 + rng.randrange(n_log)) ** 1.2 * rng.uniform(0.5, 2))
                   for _ in range(n_log)]
        elif kind == "ties":  # few distinct values: exercises the sort's tie order
            row = [rng.choice([0, 3, 3, 7, 12]) for _ in range(n_log)]
        elif kind == "counts":
            row = [rng.randrange(0, 5000) for _ in range(n_log)]
        elif kind == "dyadic":  # fractional but exact in float32 sums
            row = [rng.randrange(0, 1 << 12) / 8.0 for _ in range(n_log)]
        else:  # "real": arbitrary doubles (rounded to float32 by both sides)
            row = [rng.uniform(0, 100) for _ in range(n_log)]
        rows.append(row)
    return rows


# (n_layers, n_logical, n_physical, n_groups, n_nodes, n_gpus, weight kind, algorithm)
CASES = [
    (2, 12, 16, 4, 2, 8, "readme", "auto"),
    (2, 12, 16, 4, 2, 8, "readme", "deepseek"),
    (3, 16, 16, 4, 2, 4, "counts", "auto"),
    (3, 16, 24, 4, 4, 8, "zipf", "auto"),
    (2, 32, 48, 8, 2, 8, "ties", "auto"),
    (2, 32, 48, 8, 2, 8, "ties", "deepseek"),
    (2, 64, 80, 8, 4, 16, "zipf", "auto"),
    (2, 64, 96, 16, 1, 4, "ties", "auto"),
    (2, 40, 48, 5, 2, 4, "counts", "auto"),      # 5 groups, 2 nodes: global
    (2, 30, 60, 0, 2, 4, "ties", "auto"),         # no groups: global
    (2, 128, 160, 8, 2, 4, "ties", "auto"),       # 80 slots per node: introsort
    (2, 128, 160, 8, 2, 4, "zipf", "deepseek"),
    (1, 256, 288, 8, 4, 32, "zipf", "auto"),      # DeepSeek-V3 shape, prefill-like
    (1, 256, 288, 8, 1, 144, "counts", "auto"),   # decode-like: 2 slots per GPU
    (2, 48, 64, 4, 2, 8, "dyadic", "auto"),
    (2, 48, 64, 4, 2, 8, "real", "deepseek"),
    (2, 20, 20, 2, 2, 2, "ties", "auto"),         # no redundancy
    (2, 8, 32, 2, 2, 4, "zipf", "auto"),          # many replicas per expert
    (2, 24, 42, 6, 3, 6, "ties", "auto"),
    (3, 60, 72, 12, 3, 12, "real", "deepseek"),
    (1, 96, 192, 24, 2, 4, "ties", "auto"),       # 96 slots per node
    (2, 16, 64, 4, 2, 2, "ties", "deepseek"),     # 32 slots per GPU
    (1, 64, 64, 0, 1, 2, "killer", "auto"),       # introsort's heap-sort fallback
    (1, 100, 100, 0, 1, 4, "killer", "auto"),
    (2, 4, 28, 0, 1, 28, "hot", "auto"),          # 25 replicas: random.sample's set method
]


def write_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(2024)
    lines = ["# EPLB reference outputs written by tests/tools/eplb_reference.py (torch "
             + torch.__version__.split("+")[0] + "); do not edit.",
             "# case: layers logical physical groups nodes gpus algorithm width",
             "# then lines: weight, phy2log, logcnt, log2phy (width columns, -1 padded)"]
    dispatch = ["# SGLang static dispatch maps for the cases above, written by "
                "tests/tools/eplb_reference.py; do not edit.",
                "# dispatch <case index> <eplb|mapping> <nodes, 0 = no same-node preference>"
                " <nearest_only>, then lines: rank <r> <map [layers][logical]>"]
    for idx, (n_layers, n_log, n_phy, n_groups, n_nodes, n_gpus, kind, algo) in \
            enumerate(CASES):
        if kind == "readme":
            weight = README_WEIGHT
        else:
            weight = _weights(rng, kind, n_layers, n_log)
        phy2log, log2phy, logcnt = rebalance(weight, n_phy, n_groups, n_nodes, n_gpus, algo)
        width = len(log2phy[0][0])
        lines.append("case %d %d %d %d %d %d %s %d" % (n_layers, n_log, n_phy, n_groups,
                                                       n_nodes, n_gpus, algo, width))
        lines.append("weight " + " ".join(repr(float(v)) for v in _flat(weight)))
        lines.append("phy2log " + " ".join(str(v) for v in _flat(phy2log)))
        lines.append("logcnt " + " ".join(str(v) for v in _flat(logcnt)))
        lines.append("log2phy " + " ".join(str(v) for v in _flat(log2phy)))
        # Static dispatch maps: from the EPLB result, and from its phy2log loaded as a mapping
        # (with and without the per-rank nearest-only shrink); ranks subsampled for big EP.
        ranks = range(n_gpus) if n_gpus <= 32 else [0, 1, n_gpus // 2, n_gpus - 1]
        l2p_map = mapping_log2phy(phy2log, n_log)
        modes = [("eplb", log2phy, n_nodes, False), ("mapping", l2p_map, n_nodes, True)]
        if n_nodes > 1:
            modes += [("eplb", log2phy, 0, False), ("mapping", l2p_map, n_nodes, False)]
        for mode, table, nodes, nearest_only in modes:
            maps = static_dispatch_maps(table, n_phy, n_gpus, nodes, nearest_only)
            dispatch.append("dispatch %d %s %d %d" % (idx, mode, nodes, int(nearest_only)))
            for r in ranks:
                dispatch.append("rank %d " % r + " ".join(str(v) for v in _flat(maps[r])))
    with open(os.path.join(out_dir, "rebalance_cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "dispatch_cases.txt"), "w") as f:
        f.write("\n".join(dispatch) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="DIR", help="write the fixtures into DIR")
    ap.add_argument("--readme", action="store_true", help="print the README example")
    args = ap.parse_args()
    if args.readme:
        phy2log, log2phy, logcnt = rebalance(README_WEIGHT, 16, 4, 2, 8)
        print(phy2log)
        print(logcnt)
        print(log2phy)
    if args.write:
        write_fixtures(args.write)


if __name__ == "__main__":
    main()

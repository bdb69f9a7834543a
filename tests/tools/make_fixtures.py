#!/usr/bin/env python3
"""Golden fixtures: tiny random Qwen3-MoE and DeepSeek-V3 checkpoints plus reference outputs.

The checkpoints are made by transformers' own model classes (the reference implementation),
saved the way real hub checkpoints look (classic config.json keys, per-expert tensor names,
sharded bf16, block-scaled FP8 for DeepSeek-V3), and the outputs (full logits for every
prompt position, greedy continuations and their top1-top2 margins) are what transformers
computes on them. The C engine's tests compare against these files; CI never runs this.

Usage (from the repository root; needs torch, transformers, tokenizers, safetensors):
    python3 tests/tools/make_fixtures.py [--out tests/fixtures] [--seeds 8]
        [--family qwen3|dsv3|dsv3_fp8|all]

Families: tiny-qwen3-moe (fp32, bf16), tiny-deepseek-v3 (fp32, bf16) and
tiny-deepseek-v3-fp8, a DeepSeek-V3 of the same shape except moe_intermediate_size 128, so
that FP8 128x128 blocks divide the expert weights and a server can load it (SGLang's guard:
the per-partition expert size must be a multiple of the block); it ships only fp8/.
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_tokenizers as tt  # noqa: E402

import transformers  # noqa: E402
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, Qwen3MoeConfig,  # noqa: E402
                          Qwen3MoeForCausalLM)

VOCAB = 1024
MAX_NEW = 40
LM_HEAD_SCALE = 30.0
ROUTER_GAP_WEIGHT = 100.0  # seed search: a router gap g counts like a logit margin 100*g
FP8_BLOCK = 128
FP8_MAX = 448.0
PROMPT_TARGETS = [1, 7, 20, 40, 70]

# Our own English text; each prompt is the longest word-boundary prefix of one passage that
# fits its token budget (the 1-token prompt is a single common word, or just BOS).
PASSAGES = [
    None,
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Every program that reads a file should check what it got before it trusts it, "
    "because a file can be short, damaged or written by someone who meant harm.",
    "A small cache keeps the answers that were computed a moment ago, so that asking the "
    "same question twice costs almost nothing. The hard part is knowing when an answer has "
    "gone stale and must be thrown away, and how much memory the whole thing may use "
    "before older entries are evicted to make room for new ones.",
    "When the software is distributed in the hope that it will be useful, the authors make "
    "no promise that it will work for any particular purpose. You may copy the program, "
    "change it and give it to others, provided that you keep this notice and the license "
    "text with every copy. If you add your own work, mark the changed files clearly and "
    "say when you changed them, so that people who receive the program later can tell the "
    "original from the modified version and know whom to ask about each part of it.",
]


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------
# Model configs
# ---------------------------------------------------------------------------------------

def qwen3_config(tok):
    bos = tok.token_to_id("<|endoftext|>")
    eos = tok.token_to_id("<|im_end|>")
    return Qwen3MoeConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128,
        moe_intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, num_experts=16, num_experts_per_tok=4,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
        max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
        initializer_range=0.05, bos_token_id=bos, eos_token_id=eos,
        attn_implementation="eager",
                             experts_implementation="eager")


def dsv3_config(tok, moe_intermediate_size=48):
    return DeepseekV3Config(
        vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=320,
        moe_intermediate_size=moe_intermediate_size, num_hidden_layers=3, first_k_dense_replace=1,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=16,
        num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1,
        routed_scaling_factor=2.5, norm_topk_prob=True, q_lora_rank=64, kv_lora_rank=48,
        qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, rope_interleave=True,
        max_position_embeddings=256, rope_theta=10000.0,
        rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                      "mscale_all_dim": 1.0},
        num_nextn_predict_layers=0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        initializer_range=0.05, bos_token_id=0, eos_token_id=1,
        attn_implementation="eager",
                             experts_implementation="eager")


def to_bf16(model):
    """bf16 copy of the parameters only. Buffers stay as they are: the rotary inv_freq stays
    f32 (as transformers keeps it when loading in bf16) and so does DeepSeek's
    e_score_correction_bias (f32 in real checkpoints; transformers keeps it f32 too)."""
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    return model


def make_model(family, cfg, seed):
    """Random init by transformers, then the parts its init leaves trivial made random too:
    RMSNorm weights (ones) and DeepSeek's e_score_correction_bias (zeros), so an engine that
    ignores them fails the test."""
    torch.manual_seed(seed)
    cls = Qwen3MoeForCausalLM if family == "qwen3" else DeepseekV3ForCausalLM
    model = cls(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(0.6 + 0.8 * torch.rand(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
        # Decisive logits: greedy choices far from ties (see the margins in golden.json).
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
    return model


# ---------------------------------------------------------------------------------------
# config.json in the classic hub form
# ---------------------------------------------------------------------------------------

def classic_config(family, path, torch_dtype, quant=False):
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c.pop("dtype", None)
    c["torch_dtype"] = torch_dtype
    if family == "qwen3":
        c["num_experts"] = c.pop("num_local_experts")
        c["rope_theta"] = rp["rope_theta"]
        c["rope_scaling"] = None
        c["max_window_layers"] = c["num_hidden_layers"]
    else:
        # Real DeepSeek-V3 configs carry neither head_dim nor qk_head_dim (derived), and
        # spell the YaRN parameters as rope_scaling with "type".
        c.pop("head_dim", None)
        c.pop("qk_head_dim", None)
        c["rope_theta"] = rp["rope_theta"]
        c["rope_scaling"] = {k: rp[k] for k in ("beta_fast", "beta_slow", "factor", "mscale",
                                               "mscale_all_dim",
                                               "original_max_position_embeddings")}
        c["rope_scaling"]["type"] = "yarn"
        c["moe_layer_freq"] = 1
        c["scoring_func"] = "sigmoid"
        c["topk_method"] = "noaux_tc"
        if quant:
            c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                        "quant_method": "fp8",
                                        "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


def write_generation_config(family, tok, out_dir):
    if family == "qwen3":
        eot, eos = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
        g = {"bos_token_id": eot, "do_sample": True, "eos_token_id": [eos, eot],
             "pad_token_id": eot, "temperature": 0.6, "top_k": 20, "top_p": 0.95}
    else:
        g = {"bos_token_id": 0, "do_sample": True, "eos_token_id": 1, "temperature": 0.6,
             "top_p": 0.95}
    g["transformers_version"] = transformers.__version__
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(g, f, indent=2)
        f.write("\n")


def eos_ids(family, tok):
    if family == "qwen3":
        return [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    return [1]


def write_tokenizer(family, tok, out_dir):
    if family == "qwen3":
        tt.save_qwen3(tok, out_dir, 512)
    else:
        tt.save_deepseek_v3(tok, out_dir, 256)


# ---------------------------------------------------------------------------------------
# FP8 block quantization (DeepSeek-V3 style)
# ---------------------------------------------------------------------------------------

def is_fp8_quantized(name, t):
    """DeepSeek-V3 quantizes every projection / expert Linear weight; embeddings, lm_head,
    norms, the router weight and the routing bias stay in higher precision."""
    if not name.endswith(".weight") or t.dim() != 2:
        return False
    if "embed_tokens" in name or name.startswith("lm_head") or "norm" in name:
        return False
    if name.endswith("mlp.gate.weight"):
        return False
    return True


def fp8_quantize(w):
    """w [rows, cols] -> (q [rows, cols] float8_e4m3fn, scale_inv [ceil(r/128), ceil(c/128)]
    f32) with w ~= q * scale_inv per 128x128 block; scale_inv = amax(block) / 448."""
    w = w.float()
    rows, cols = w.shape
    nr, nc = math.ceil(rows / FP8_BLOCK), math.ceil(cols / FP8_BLOCK)
    scale = torch.empty(nr, nc, dtype=torch.float32)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(nr):
        for j in range(nc):
            blk = w[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK]
            s = max(blk.abs().max().item(), 1e-12) / FP8_MAX
            scale[i, j] = s
            q[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK] = \
                (blk / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale):
    rows, cols = q.shape
    s = scale.repeat_interleave(FP8_BLOCK, 0)[:rows].repeat_interleave(FP8_BLOCK, 1)[:, :cols]
    return q.float() * s


def read_checkpoint(model_dir):
    out = {}
    for fn in sorted(os.listdir(model_dir)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, fn), "pt") as f:
                for k in f.keys():
                    out[k] = f.get_tensor(k)
    return out


def layer_of(name):
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" else -1


def save_sharded(tensors, out_dir, n_shards):
    """Split by layer order into n_shards files plus model.safetensors.index.json."""
    names = sorted(tensors, key=lambda k: (layer_of(k), k))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    shards, cur, cur_bytes = [], [], 0
    for k in names:
        cur.append(k)
        cur_bytes += tensors[k].numel() * tensors[k].element_size()
        if cur_bytes >= total / n_shards and len(shards) < n_shards - 1:
            shards.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        shards.append(cur)
    weight_map = {}
    for i, keys in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in keys}, os.path.join(out_dir, fn),
                  metadata={"format": "pt"})
        for k in keys:
            weight_map[k] = fn
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(
            weight_map.items()))}, f, indent=2)
        f.write("\n")


def write_fp8_variant(bf16_dir, out_dir):
    src = read_checkpoint(bf16_dir)
    out, n_q = {}, 0
    for k, t in src.items():
        if is_fp8_quantized(k, t):
            q, s = fp8_quantize(t)
            out[k] = q
            out[k + "_scale_inv"] = s
            n_q += 1
        else:
            out[k] = t
    save_sharded(out, out_dir, 2)
    return n_q


def dequantized_state(fp8_dir):
    raw = read_checkpoint(fp8_dir)
    sd = {}
    for k, t in raw.items():
        if k.endswith("_scale_inv"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            sd[k] = fp8_dequantize(t, raw[k + "_scale_inv"])
        else:
            sd[k] = t.float()
    return sd


def write_fp8_dir(family, model_bf16, d8):
    """The FP8 checkpoint of a bf16 model: its hub-format shards quantized, 2 shards + index,
    config with the real quantization_config."""
    os.makedirs(d8)
    with tempfile.TemporaryDirectory() as tmp:
        model_bf16.save_pretrained(tmp, max_shard_size="1MB")
        n_q = write_fp8_variant(tmp, d8)
    model_bf16.config.save_pretrained(d8)
    classic_config(family, os.path.join(d8, "config.json"), "bfloat16", quant=True)
    return n_q


def load_fp8_as_f32(cls, d8, f32_config_dir):
    """FP8 weights dequantized (q * scale_inv per block) into f32, loaded through a temporary
    hub-format dir with the unquantized config, computed in f32."""
    tmp = tempfile.mkdtemp()
    try:
        save_file(dequantized_state(d8), os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        shutil.copy(os.path.join(f32_config_dir, "config.json"), tmp)
        return cls.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager",
                                   experts_implementation="eager").eval()
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------------------
# Reference outputs
# ---------------------------------------------------------------------------------------

class RouterGap:
    """Smallest gap, over every routed token, between the last chosen and the first
    rejected expert score (and, for grouped routing, group score): how far the fixture is
    from a routing tie that float noise could flip."""

    def __init__(self, model, family):
        self.min_gap = float("inf")
        self.handles = []
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(mod, "weight"):
                self.handles.append(mod.register_forward_hook(self._hook(mod, family)))

    def _hook(self, mod, family):
        def hook(_m, _inp, out):
            logits = out[0].float()
            k = mod.top_k
            if family == "qwen3":
                # softmax is monotonic: the choice is decided on the router logits
                s = logits.sort(dim=-1, descending=True)[0]
                gap = (s[:, k - 1] - s[:, k]).min().item()
            else:
                sc = torch.sigmoid(logits) + mod.e_score_correction_bias.float()
                n = logits.shape[0]
                grp = sc.view(n, mod.num_group, -1).topk(2, dim=-1)[0].sum(-1)
                gs = grp.sort(dim=-1, descending=True)[0]
                ggap = (gs[:, mod.topk_group - 1] - gs[:, mod.topk_group]).min().item()
                idx = grp.topk(mod.topk_group, dim=-1)[1]
                mask = torch.zeros_like(grp).scatter_(1, idx, 1).bool()
                mask = mask.unsqueeze(-1).expand(-1, -1, sc.shape[1] // mod.num_group)
                sc = sc.masked_fill(~mask.reshape(n, -1), float("-inf"))
                s = sc.sort(dim=-1, descending=True)[0]
                gap = min(ggap, (s[:, k - 1] - s[:, k]).min().item())
            self.min_gap = min(self.min_gap, gap)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def run_reference(model, family, prompts, eos):
    """Full logits per prompt (one forward each, batch 1) and transformers' greedy decode."""
    gap = RouterGap(model, family)
    logits = [model(torch.tensor([p["ids"]])).logits[0].float() for p in prompts]
    greedy, margins = [], []
    for p in prompts:
        out = model.generate(torch.tensor([p["ids"]]), do_sample=False, max_new_tokens=MAX_NEW,
                             output_logits=True, return_dict_in_generate=True,
                             eos_token_id=eos, pad_token_id=eos[0], temperature=None,
                             top_p=None, top_k=None)
        new = out.sequences[0, len(p["ids"]):].tolist()
        m = []
        for step in out.logits:
            top = step[0].float().topk(2)[0]
            m.append(float(top[0] - top[1]))
        greedy.append(new)
        margins.append(m)
    gap.close()
    return logits, greedy, margins, gap.min_gap


SENSITIVITY = {
    # name: config overrides (or a weight edit) that a correct engine must not ignore
    "qwen3": {
        "norm_topk_prob_off": {"norm_topk_prob": False},
        "qk_norm_weights_one": "qk_norm",
        "rope_theta_1e6": {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
    },
    "dsv3": {
        "yarn_off": {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
        "rope_interleave_off": {"rope_interleave": False},
        "no_group_limit": {"n_group": 1, "topk_group": 1},
        "routed_scaling_1": {"routed_scaling_factor": 1.0},
        "e_score_bias_zero": "e_score_bias",
    },
}


SENSITIVITY["dsv3_fp8"] = SENSITIVITY["dsv3"]
FAMILY_DIRS = {"qwen3": "tiny-qwen3-moe", "dsv3": "tiny-deepseek-v3",
               "dsv3_fp8": "tiny-deepseek-v3-fp8"}


@torch.no_grad()
def sensitivity(family, model, prompt_ids):
    """Max |logit difference| on one prompt between the fixture model and a copy with one
    feature changed: shows each feature really moves the golden logits."""
    x = torch.tensor([prompt_ids])
    ref = model(x).logits
    out = {}
    for name, change in SENSITIVITY[family].items():
        d = model.config.to_dict()
        if isinstance(change, dict):
            d.update(change)
        cfg = type(model.config)(**d)
        cfg._attn_implementation = "eager"
        m = type(model)(cfg).eval()
        m.load_state_dict(model.state_dict())
        for n, t in m.state_dict().items():
            if change == "qk_norm" and (n.endswith("q_norm.weight") or n.endswith("k_norm.weight")):
                t.fill_(1.0)
            if change == "e_score_bias" and n.endswith("e_score_correction_bias"):
                t.zero_()
        out[name] = float(f"{(m(x).logits - ref).abs().max().item():.4g}")
    return out


def make_prompts(tok):
    prompts = []
    # 1-token prompt: a one-token common word (Qwen3), or the empty text, which is BOS alone
    # for DeepSeek-V3.
    if len(tok.encode("").ids) == 1:
        first = ""
    else:
        first = next(w for w in ("The", "the", "A", "This", "It", "In")
                     if len(tok.encode(w).ids) == 1)
    for target, text in zip(PROMPT_TARGETS, [first] + PASSAGES[1:]):
        if target == 1:
            prompts.append({"text": text, "ids": tok.encode(text).ids})
            continue
        words = text.split(" ")
        best = None
        for n in range(1, len(words) + 1):
            t = " ".join(words[:n])
            ids = tok.encode(t).ids
            if len(ids) <= target or best is None:
                best = (t, ids)
            if len(ids) >= target:
                break
        prompts.append({"text": best[0], "ids": best[1]})
    return prompts


def summarize(name, greedy, margins, gap, eos):
    flat = [x for m in margins for x in m]
    hit_eos = any(t in eos for g in greedy for t in g)
    return {"min_margin": min(flat), "hit_eos": hit_eos, "min_router_gap": gap}


def score_seed(family, cfg, seed, prompts, eos, tmp):
    """Quality of a seed: min greedy margin (and scaled router gap) over the fp32 and the
    bf16-weights variants (the fp8-weights one for the FP8 family); -1 when a greedy run
    stops early on EOS."""
    model = make_model(family, cfg, seed)
    _, _, m32, gap32 = run_reference(model, family, prompts, eos)
    res = [min(x for m in m32 for x in m), ROUTER_GAP_WEIGHT * gap32]
    if family == "dsv3_fp8":
        with tempfile.TemporaryDirectory() as t:
            d32, d8 = os.path.join(t, "fp32"), os.path.join(t, "fp8")
            model.save_pretrained(d32)
            classic_config(family, os.path.join(d32, "config.json"), "float32")
            write_fp8_dir(family, to_bf16(make_model(family, cfg, seed)), d8)
            model_b = load_fp8_as_f32(type(model), d8, d32)
    else:
        model_b = to_bf16(make_model(family, cfg, seed)).float()
    _, g, mb, gapb = run_reference(model_b, family, prompts, eos)
    res += [min(x for m in mb for x in m), ROUTER_GAP_WEIGHT * gapb]
    if any(t in eos for gg in g for t in gg):
        return -1.0
    return min(res)


def build_family(family, out_root, n_seeds, texts):
    fam_dir = os.path.join(out_root, FAMILY_DIRS[family])
    if os.path.exists(fam_dir):
        shutil.rmtree(fam_dir)
    os.makedirs(fam_dir)
    tok = tt.build_qwen3(texts, VOCAB) if family == "qwen3" else \
        tt.build_deepseek_v3(texts, VOCAB)
    cfg = qwen3_config(tok) if family == "qwen3" else \
        dsv3_config(tok, 128 if family == "dsv3_fp8" else 48)
    eos = eos_ids(family, tok)
    prompts = make_prompts(tok)
    log(family, "prompt lengths", [len(p["ids"]) for p in prompts])

    scores = []
    for seed in range(n_seeds):
        s = score_seed(family, cfg, seed, prompts, eos, fam_dir)
        log(f"  seed {seed}: min margin {s:.4g}")
        scores.append((s, seed))
    best_score, seed = max(scores)
    log(f"{family}: using seed {seed} (min margin {best_score:.4g})")

    model = make_model(family, cfg, seed)
    variants = {}
    # The FP8 family ships fp8/ alone: its fp32 and bf16 checkpoints are only the reference
    # run's and the quantizer's input, kept in a temporary dir.
    work = tempfile.mkdtemp() if family == "dsv3_fp8" else fam_dir

    # fp32: single model.safetensors
    d32 = os.path.join(work, "fp32")
    model.save_pretrained(d32, max_shard_size="1GB")
    classic_config(family, os.path.join(d32, "config.json"), "float32")
    # bf16: sharded for DeepSeek-V3 (2-3 shards + index), single file for Qwen3
    model_bf16 = to_bf16(make_model(family, cfg, seed))
    model_dirs = []
    if family != "dsv3_fp8":
        dbf = os.path.join(fam_dir, "bf16")
        model_bf16.save_pretrained(dbf, max_shard_size="1GB" if family == "qwen3" else "1MB")
        classic_config(family, os.path.join(dbf, "config.json"), "bfloat16")
        model_dirs = [d32, dbf]
    else:
        d8 = os.path.join(fam_dir, "fp8")
        n_q = write_fp8_dir(family, model_bf16, d8)
        log(f"  fp8: {n_q} weights quantized")
        model_dirs.append(d8)
    for d in model_dirs:
        write_tokenizer(family, tok, d)
        write_generation_config(family, tok, d)

    # The saved classic configs must load to the same model: reload fp32 and compare.
    cls = type(model)
    re32 = cls.from_pretrained(d32, dtype=torch.float32, attn_implementation="eager",
                             experts_implementation="eager").eval()
    assert re32.config.rope_parameters == model.config.rope_parameters, \
        (re32.config.rope_parameters, model.config.rope_parameters)
    if family == "qwen3":
        assert re32.config.num_experts == cfg.num_experts
    else:
        assert re32.config.head_dim == cfg.head_dim and re32.config.qk_head_dim == cfg.qk_head_dim
    with torch.no_grad():
        x = torch.tensor([prompts[-1]["ids"]])
        assert torch.equal(re32(x).logits, model(x).logits), "reloaded fp32 model differs"

    sens = sensitivity(family, re32, prompts[-1]["ids"])
    log("  sensitivity (max |dlogit| on the longest prompt):", sens)
    rms = re32(torch.tensor([prompts[-1]["ids"]])).logits.pow(2).mean().sqrt().item()
    assert all(v > 0.05 * rms for v in sens.values()), sens

    golden = os.path.join(fam_dir, "golden")
    os.makedirs(golden)
    # (name, model dir in the fixture, model, logits saved): the FP8 family keeps its fp32
    # run in memory only, for the "vs" numbers.
    runs = [("fp32", "fp32", re32, family != "dsv3_fp8")]
    if family != "dsv3_fp8":
        runs.append(("bf16_w_f32", "bf16",
                     cls.from_pretrained(dbf, dtype=torch.float32, attn_implementation="eager",
                                         experts_implementation="eager"), True))
        runs.append(("bf16", "bf16",
                     cls.from_pretrained(dbf, dtype=torch.bfloat16, attn_implementation="eager",
                                         experts_implementation="eager"), True))
    else:
        runs.append(("fp8_w_f32", "fp8", load_fp8_as_f32(cls, d8, d32), True))

    all_logits = {}
    for name, mdir, m, keep in runs:
        m.eval()
        logits, greedy, margins, gap = run_reference(m, family, prompts, eos)
        all_logits[name] = torch.cat(logits, 0).contiguous()
        if not keep:
            continue
        fn = f"logits_{name}.bin"
        all_logits[name].numpy().astype("<f4").tofile(os.path.join(golden, fn))
        s = summarize(name, greedy, margins, gap, eos)
        rms = torch.cat(logits, 0).pow(2).mean().sqrt().item()
        f64 = None
        if name != "bf16":
            # The same weights computed in float64: how far plain f32 rounding moves the
            # logits, i.e. the tolerance an f32 engine can be held to.
            m64 = copy.deepcopy(m).double()
            with torch.no_grad():
                f64 = max((m64(torch.tensor([p["ids"]])).logits[0] - lg.double()).abs().max()
                          .item() for p, lg in zip(prompts, logits))
            del m64
        variants[name] = {"model_dir": mdir, "logits": fn, "greedy": greedy,
                          "logits_rms": float(f"{rms:.4g}"),
                          "f32_vs_f64_max_abs": None if f64 is None else float(f"{f64:.3g}"),
                          "margins": [[round(x, 6) for x in m_] for m_ in margins],
                          "min_margin": round(s["min_margin"], 6),
                          "min_router_gap": float(f"{gap:.6g}"),
                          "stopped_on_eos": s["hit_eos"]}
        log(f"  {name}: min margin {s['min_margin']:.4g}, min router gap {gap:.3g}, f64 {f64}, "
            f"eos {s['hit_eos']}, greedy[1][:8] {greedy[1][:8]}")
    if work != fam_dir:
        shutil.rmtree(work)

    def load_logits(name):
        n = sum(len(p["ids"]) for p in prompts) * VOCAB
        return torch.from_file(os.path.join(golden, variants[name]["logits"]), size=n,
                               dtype=torch.float32).view(-1, VOCAB)

    # How far the variants are from each other (routing flips included): a hint for the
    # tolerance a comparison between them can use, not a target.
    pairs = [(n, "fp32") for n in variants] + ([("bf16", "bf16_w_f32")] if "bf16" in variants
                                               else [])
    for name, ref in pairs:
        a = load_logits(name)
        b = load_logits(ref) if ref in variants else all_logits[ref].view(-1, VOCAB)
        d = variants[name].setdefault("vs", {})
        d[ref] = {"max_abs_diff": float(f"{(a - b).abs().max().item():.4g}"),
                  "nmse": float(f"{((a - b).pow(2).mean() / b.pow(2).mean()).item():.4g}"),
                  "argmax_agreement": round((a.argmax(1) == b.argmax(1)).float().mean()
                                            .item(), 4)}

    meta = {
        "family": "qwen3_moe" if family == "qwen3" else "deepseek_v3",
        "vocab_size": tok.get_vocab_size(),
        "seed": seed,
        "max_new_tokens": MAX_NEW,
        "eos_token_ids": eos,
        "logits_layout": "float32 little-endian; prompts concatenated in order, each "
                         "[len(ids), vocab_size] row-major (one row per prompt position)",
        "prompts": prompts,
        "variants": variants,
        "sensitivity_max_abs_dlogit_longest_prompt": sens,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
    }
    with open(os.path.join(golden, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return fam_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--seeds", type=int, default=None,
                    help="candidate seeds to search (default: 24, 8 for dsv3_fp8, as shipped)")
    ap.add_argument("--family", choices=["qwen3", "dsv3", "dsv3_fp8", "all"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    texts = tt.debian_license_texts()
    for fam in (["qwen3", "dsv3", "dsv3_fp8"] if args.family == "all" else [args.family]):
        seeds = args.seeds or (8 if fam == "dsv3_fp8" else 24)
        build_family(fam, args.out, seeds, texts)


if __name__ == "__main__":
    main()

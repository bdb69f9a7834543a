#!/usr/bin/env python3
"""Golden inputs/outputs for the compute ops in kernels/, made with PyTorch + transformers.

Each case is one safetensors file under tests/fixtures/ops/ (little-endian tensors behind
a JSON header; scalar parameters go in the header's __metadata__ as strings), listed in
tests/fixtures/ops/index.json. The C tests (tests/unit/test_op_*.c) load them through
tests/unit/wd_fixture.h. Outputs come from the transformers modules and functions the
engine must match (RMSNorm, rotary embeddings, eager attention, DeepseekV3Attention,
the Qwen3 / DeepSeek-V3 routers, the MLP), run in fp32 with fixed seeds.

Usage: python3 tests/tools/make_op_fixtures.py [--out tests/fixtures/ops]
"""
import argparse
import json
import math
import os
import types

import torch
import transformers
from transformers import DeepseekV3Config, Qwen3MoeConfig
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as dsv3
from transformers.models.qwen3_moe import modeling_qwen3_moe as qwen3
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

CASES = {}
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float8_e4m3fn: "F8_E4M3", torch.int32: "I32", torch.int64: "I64"}


def save_safetensors(tensors, path, metadata):
    """Writes a safetensors file with sorted keys, so regenerating gives identical bytes
    (the safetensors package orders __metadata__ by hash)."""
    header, blobs, off = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def case(name, description, tensors, **params):
    """Records one fixture: tensors (name -> torch tensor) and scalar params."""
    CASES[name] = (description, {k: v.contiguous() for k, v in tensors.items()},
                   {k: repr(v) if isinstance(v, float) else str(v) for k, v in params.items()})


def causal_mask(t):
    """Additive [1, 1, t, t] mask: 0 on and below the diagonal, -inf above."""
    m = torch.full((t, t), float("-inf")).triu(1)
    return m[None, None]


def make_rmsnorm():
    torch.manual_seed(1)
    for name, cls, n, dim, eps, mag in (("rmsnorm_qwen3", qwen3.Qwen3MoeRMSNorm, 4, 128, 1e-6, 1.0),
                                        ("rmsnorm_dsv3", dsv3.DeepseekV3RMSNorm, 3, 2048, 1e-5,
                                         10.0)):
        mod = cls(dim, eps=eps)
        with torch.no_grad():
            mod.weight.copy_(torch.randn(dim) * 0.5 + 1.0)
            x = torch.randn(n, dim) * mag
            x[0, :] *= 1e-3  # a row where eps matters
            y = mod(x)
        case(name, f"{cls.__name__}(dim={dim}, eps={eps}) on [{n}, {dim}]",
             {"x": x, "gamma": mod.weight.detach(), "y": y}, eps=eps)


def rope_init_case(name, rot_dim, theta, rope_parameters, max_pos):
    """inv_freq / attention scaling straight from transformers' init functions."""
    cfg = Qwen3MoeConfig(head_dim=rot_dim, hidden_size=rot_dim * 4, num_attention_heads=4,
                         max_position_embeddings=max_pos,
                         rope_parameters=dict(rope_parameters, rope_theta=theta))
    if rope_parameters["rope_type"] == "default":
        inv_freq, scaling = qwen3.Qwen3MoeRotaryEmbedding.compute_default_rope_parameters(cfg)
    else:
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](cfg)
    p = cfg.rope_parameters
    case(name, f"rope init {rope_parameters} theta={theta} rot_dim={rot_dim}",
         {"inv_freq": inv_freq.float()}, rot_dim=rot_dim, theta=float(theta),
         is_yarn=int(p["rope_type"] == "yarn"), factor=float(p.get("factor") or 0.0),
         original_max_pos=int(p.get("original_max_position_embeddings") or 0),
         beta_fast=float(p.get("beta_fast") or 0.0), beta_slow=float(p.get("beta_slow") or 0.0),
         mscale=float(p.get("mscale") or 0.0), mscale_all_dim=float(p.get("mscale_all_dim") or 0.0),
         attention_factor=float(p.get("attention_factor") or 0.0),
         truncate=int(p.get("truncate", True)), attention_scaling=float(scaling))


def make_rope():
    rope_init_case("rope_init_default", 128, 1000000.0, {"rope_type": "default"}, 40960)
    rope_init_case("rope_init_yarn_dsv3", 64, 10000.0,
                   {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                    "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}, 163840)
    rope_init_case("rope_init_yarn_plain", 128, 1000000.0,
                   {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
                    "truncate": False}, 131072)
    rope_init_case("rope_init_yarn_mscale", 64, 10000.0,
                   {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 2048,
                    "mscale": 0.707, "mscale_all_dim": 1.0, "beta_fast": 16, "beta_slow": 2}, 16384)
    rope_init_case("rope_init_yarn_attn_factor", 32, 500000.0,
                   {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 1024,
                    "attention_factor": 1.25}, 2048)

    pos = torch.tensor([0, 1, 2, 7, 100, 4095, 40000], dtype=torch.long)
    t = pos.numel()

    # Qwen3: default rope, rotate_half, q and k of different head counts.
    torch.manual_seed(2)
    cfg = Qwen3MoeConfig(head_dim=64, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=40960,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    emb = qwen3.Qwen3MoeRotaryEmbedding(cfg)
    q = torch.randn(1, 4, t, 64)
    k = torch.randn(1, 2, t, 64)
    cos, sin = emb(q, pos[None])
    qo, ko = qwen3.apply_rotary_pos_emb(q, k, cos, sin)
    case("rope_qwen3", "Qwen3MoeRotaryEmbedding default + apply_rotary_pos_emb; q/k [t, heads, 64]",
         {"pos": pos.int(), "inv_freq": emb.inv_freq, "q": q[0].transpose(0, 1),
          "k": k[0].transpose(0, 1), "q_out": qo[0].transpose(0, 1),
          "k_out": ko[0].transpose(0, 1)},
         attention_scaling=float(emb.attention_scaling), is_interleaved=0)

    # DeepSeek-V3: yarn; interleaved (the V3 default) and rotate_half variants.
    for interleave in (1, 0):
        torch.manual_seed(3)
        cfg = DeepseekV3Config(qk_rope_head_dim=64, max_position_embeddings=163840,
                               rope_interleave=bool(interleave),
                               rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                                "factor": 40.0,
                                                "original_max_position_embeddings": 4096,
                                                "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                                                # without mscale_all_dim the cos/sin scale is
                                                # mscale(40) != 1, which the apply must carry
                                                "mscale_all_dim": 1.0 if interleave else 0.0})
        emb = dsv3.DeepseekV3RotaryEmbedding(cfg)
        q = torch.randn(1, 3, t, 64)
        k = torch.randn(1, 1, t, 64)
        cos, sin = emb(q, pos[None])
        fn = dsv3.apply_rotary_pos_emb_interleave if interleave else dsv3.apply_rotary_pos_emb
        qo, ko = fn(q, k, cos, sin)
        case(f"rope_dsv3_{'interleave' if interleave else 'half'}",
             f"DeepseekV3RotaryEmbedding yarn + {fn.__name__}; q [t, 3, 64], k [t, 1, 64]",
             {"pos": pos.int(), "inv_freq": emb.inv_freq, "q": q[0].transpose(0, 1),
              "k": k[0].transpose(0, 1), "q_out": qo[0].transpose(0, 1),
              "k_out": ko[0].transpose(0, 1)},
             attention_scaling=float(emb.attention_scaling), is_interleaved=interleave)


def make_gqa():
    torch.manual_seed(4)
    n_heads, n_kv, head_dim = 4, 2, 32
    mod = types.SimpleNamespace(num_key_value_groups=n_heads // n_kv, training=False)
    tensors = {}
    lens = (11, 5, 1)
    for i, s in enumerate(lens):
        q = torch.randn(1, n_heads, s, head_dim)
        k = torch.randn(1, n_kv, s, head_dim) * 2.0
        v = torch.randn(1, n_kv, s, head_dim)
        out, _ = qwen3.eager_attention_forward(mod, q, k, v, causal_mask(s),
                                               scaling=head_dim ** -0.5)
        tensors[f"q{i}"] = q[0].transpose(0, 1)  # [s, heads, d]
        tensors[f"k{i}"] = k[0].transpose(0, 1)
        tensors[f"v{i}"] = v[0].transpose(0, 1)
        tensors[f"out{i}"] = out[0]  # eager returns [b, s, heads, d]
    case("attn_gqa", "qwen3_moe eager_attention_forward with a causal mask, 3 sequences",
         tensors, n_seqs=len(lens), n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim,
         scale=head_dim ** -0.5)


def make_mla():
    torch.manual_seed(5)
    cfg = DeepseekV3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                           q_lora_rank=32, kv_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8,
                           v_head_dim=12, max_position_embeddings=163840, rope_interleave=True,
                           rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                            "factor": 40.0,
                                            "original_max_position_embeddings": 4096,
                                            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                                            "mscale_all_dim": 1.0})
    cfg._attn_implementation = "eager"
    attn = dsv3.DeepseekV3Attention(cfg, 0).eval()
    with torch.no_grad():
        for p in attn.parameters():
            if p.dim() > 1:  # projections
                p.copy_(torch.randn_like(p) * 0.3)
            else:  # norm weights around 1
                p.copy_(torch.randn_like(p) + 1.0)
    emb = dsv3.DeepseekV3RotaryEmbedding(cfg)
    caught = {}
    attn.q_b_proj.register_forward_hook(lambda m, i, o: caught.__setitem__("q", o))
    attn.kv_a_proj_with_mqa.register_forward_hook(lambda m, i, o: caught.__setitem__("kv_a", o))
    attn.kv_a_layernorm.register_forward_hook(lambda m, i, o: caught.__setitem__("c_kv", o))
    attn.o_proj.register_forward_pre_hook(lambda m, i: caught.__setitem__("attn_out", i[0]))

    b, t = 2, 7
    h, nope, rope, vd, rank = 4, 16, 8, 12, 48
    hidden = torch.randn(b, t, 64)
    pos = torch.arange(t)[None].expand(b, t) + torch.tensor([[0], [3]])  # second row starts at 3
    with torch.no_grad():
        cos, sin = emb(hidden, pos)
        attn(hidden, (cos, sin), causal_mask(t))
        q = caught["q"].view(b, t, h, nope + rope)
        k_rot = caught["kv_a"][..., rank:].view(b, 1, t, rope)
        q_pe, k_pe = dsv3.apply_rotary_pos_emb_interleave(q[..., nope:].transpose(1, 2), k_rot,
                                                          cos, sin)
        q = torch.cat([q[..., :nope], q_pe.transpose(1, 2)], dim=-1)
        latent = torch.cat([caught["c_kv"], k_pe[:, 0]], dim=-1)
    case("attn_mla", "DeepseekV3Attention (eager, yarn, rope_interleave) hooked: roped q, latent, "
         "kv_b_proj, output before o_proj; 2 sequences of 7 tokens (2nd causal over its own 7)",
         {"q": q.reshape(b * t, h, nope + rope), "latent": latent.reshape(b * t, rank + rope),
          "kv_b": attn.kv_b_proj.weight.detach(), "out": caught["attn_out"].reshape(b * t, h, vd)},
         n_seqs=b, seq_len=t, n_heads=h, kv_lora_rank=rank, nope_dim=nope, rope_dim=rope, v_dim=vd,
         scale=float(attn.scaling))


def make_mlp():
    torch.manual_seed(6)
    g = torch.randn(1000) * 4.0
    u = torch.randn(1000)
    case("silu_mul", "ACT2FN['silu'](gate) * up", {"gate": g, "up": u,
                                                   "out": transformers.activations.ACT2FN["silu"](g)
                                                   * u})
    cfg = Qwen3MoeConfig(hidden_size=48, intermediate_size=80)
    mlp = qwen3.Qwen3MoeMLP(cfg)
    with torch.no_grad():
        for p in mlp.parameters():  # bf16 checkpoint weights, fp32 compute
            p.copy_((torch.randn_like(p) * 0.2).bfloat16().float())
        x = torch.randn(3, 48)
        y = mlp(x)
    case("mlp_bf16", "Qwen3MoeMLP (silu) with bf16-rounded weights, fp32 compute, 3 tokens",
         {"gate": mlp.gate_proj.weight.detach().bfloat16(),
          "up": mlp.up_proj.weight.detach().bfloat16(),
          "down": mlp.down_proj.weight.detach().bfloat16(), "x": x, "y": y})


def make_gates():
    for name, e, k, norm, n in (("gate_qwen3_norm", 16, 4, True, 10),
                                ("gate_qwen3_128", 128, 8, False, 6)):
        torch.manual_seed(7 + e)
        cfg = Qwen3MoeConfig(hidden_size=32, num_experts=e, num_experts_per_tok=k,
                             norm_topk_prob=norm)
        router = qwen3.Qwen3MoeTopKRouter(cfg)
        with torch.no_grad():
            router.weight.copy_(torch.randn(e, 32))
            logits, w, idx = router(torch.randn(n, 32))
        case(name, f"Qwen3MoeTopKRouter E={e} top_k={k} norm_topk_prob={norm}",
             {"logits": logits, "topk_idx": idx.int(), "topk_w": w},
             n_experts=e, top_k=k, norm_topk_prob=int(norm))

    for name, e, k, ng, tg, n in (("gate_dsv3_small", 32, 4, 4, 2, 12),
                                  ("gate_dsv3_full", 256, 8, 8, 4, 5)):
        torch.manual_seed(9 + e)
        cfg = DeepseekV3Config(hidden_size=32, n_routed_experts=e, num_experts_per_tok=k,
                               n_group=ng,
                               topk_group=tg, norm_topk_prob=True, routed_scaling_factor=2.5)
        router = dsv3.DeepseekV3TopkRouter(cfg)
        with torch.no_grad():
            router.weight.copy_(torch.randn(e, 32) * 0.3)
            router.e_score_correction_bias.copy_(torch.randn(e) * 0.1)
            logits, w, idx = router(torch.randn(n, 32))
        case(name, f"DeepseekV3TopkRouter E={e} top_k={k} n_group={ng} topk_group={tg} "
             "rsf=2.5 norm",
             {"logits": logits, "bias": router.e_score_correction_bias.detach(),
              "topk_idx": idx.int(),
              "topk_w": w},
             n_experts=e, top_k=k, n_group=ng, topk_group=tg, norm_topk_prob=1,
             routed_scaling_factor=2.5)


def quantize_fp8_blocks(w, br, bc):
    """DeepSeek-V3 block quantization: fp8 values and per-block scale_inv (dequant multiplier)."""
    rows, cols = w.shape
    nbr, nbc = -(-rows // br), -(-cols // bc)
    scale = torch.empty(nbr, nbc)
    for i in range(nbr):
        for j in range(nbc):
            blk = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            scale[i, j] = blk.abs().max().clamp(min=1e-12) / 448.0
    full = scale.repeat_interleave(br, 0)[:rows].repeat_interleave(bc, 1)[:, :cols]
    q = (w / full).to(torch.float8_e4m3fn)
    return q, scale, q.float() * full


def make_linear():
    torch.manual_seed(10)
    for name, dt, rows, cols, n in (("linear_f32", torch.float32, 37, 70, 3),
                                    ("linear_bf16", torch.bfloat16, 64, 96, 2),
                                    ("linear_f16", torch.float16, 33, 50, 4)):
        w = (torch.randn(rows, cols) * 0.5).to(dt)
        x = torch.randn(n, cols)
        y = (x.double() @ w.double().T).float()  # exact-ish oracle
        case(name, f"x @ W^T with W {dt}, fp64 reference", {"w": w, "x": x, "y": y})
    for name, rows, cols, br, bc, n in (("linear_fp8_128", 300, 260, 128, 128, 2),
                                        ("linear_fp8_small", 50, 70, 16, 32, 3)):
        w = torch.randn(rows, cols) * torch.logspace(-2, 1, cols)[None]  # scales differ by block
        q, scale, deq = quantize_fp8_blocks(w, br, bc)
        x = torch.randn(n, cols)
        y = (x.double() @ deq.double().T).float()
        case(name, f"x @ dequant(W)^T, W F8_E4M3 with {br}x{bc} block scale_inv",
             {"w": q, "scale_inv": scale, "x": x, "y": y}, block_rows=br, block_cols=bc)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(__file__)
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "ops"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    make_rmsnorm()
    make_rope()
    make_gqa()
    make_mla()
    make_mlp()
    make_gates()
    make_linear()
    index = {"generator": "tests/tools/make_op_fixtures.py", "torch": torch.__version__,
             "transformers": transformers.__version__, "cases": {}}
    total = 0
    for name, (desc, tensors, params) in sorted(CASES.items()):
        path = os.path.join(args.out, name + ".safetensors")
        save_safetensors(tensors, path, params)
        total += os.path.getsize(path)
        index["cases"][name] = {"file": name + ".safetensors", "description": desc,
                                "tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)]
                                            for k, v in tensors.items()},
                                "params": params}
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(CASES)} cases, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

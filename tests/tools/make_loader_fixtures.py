#!/usr/bin/env python3
"""Writes the tiny model-file fixtures under tests/fixtures/loader/ (run from the repo root).

The safetensors files are written by the reference `safetensors` package, so the C reader is
checked against files it did not write itself. The two "tf5" configs are written by
transformers' own config classes (the transformers-5 `rope_parameters` form); the hub-style
configs next to them are hand-written copies of what real checkpoints ship.
The values here are repeated as expected values in tests/unit/test_safetensors.c and
tests/unit/test_model_config.c: change both together.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

OUT = "tests/fixtures/loader"


def single():
    tensors = {
        "f32": (torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0),
        "bf16": torch.tensor([1.5, -2.0, 3.25, 0.0], dtype=torch.bfloat16),
        "f16": torch.tensor([[0.5, -0.25], [65504.0, 1e-4]], dtype=torch.float16),
        "f8": torch.tensor([1.0, -448.0, 0.015625, 3.5]).to(torch.float8_e4m3fn),
        "i64": torch.tensor([-3, 1 << 40], dtype=torch.int64),
        "i32": torch.tensor([[7], [-8], [9]], dtype=torch.int32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.bfloat16),
        "model.layers.0.mlp.gate.weight": torch.ones(4, 8, dtype=torch.bfloat16),
    }
    d = os.path.join(OUT, "single")
    os.makedirs(d, exist_ok=True)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})


def sharded():
    shards = {
        "model-00001-of-00002.safetensors": {
            "embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
            "layers.0.w": torch.full((2, 2), -1.0, dtype=torch.bfloat16),
        },
        "model-00002-of-00002.safetensors": {
            "layers.1.w": torch.full((2, 2), 2.0, dtype=torch.bfloat16),
            "norm.weight": torch.tensor([0.5, 0.25, 0.125, 1.0], dtype=torch.float16),
        },
    }
    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    weight_map, total = {}, 0
    for fname, ts in shards.items():
        save_file(ts, os.path.join(d, fname), metadata={"format": "pt"})
        for name, t in ts.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def tf5_configs():
    from transformers import DeepseekV3Config, Qwen3MoeConfig

    ds = DeepseekV3Config(
        vocab_size=1000, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, n_routed_experts=16, n_shared_experts=2,
        n_group=4, topk_group=2, num_experts_per_tok=4, first_k_dense_replace=1, q_lora_rank=32,
        kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12,
        max_position_embeddings=8192, routed_scaling_factor=1.5, rms_norm_eps=1e-5,
        bos_token_id=5, eos_token_id=[6, 7], tie_word_embeddings=False, dtype="bfloat16",
        rope_parameters={"rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0,
                         "original_max_position_embeddings": 2048, "beta_fast": 16,
                         "beta_slow": 2, "mscale": 0.5, "mscale_all_dim": 0.75})
    ds.architectures = ["DeepseekV3ForCausalLM"]
    ds.to_json_file(os.path.join(OUT, "config_deepseek_v3_tf5.json"))

    qw = Qwen3MoeConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=2,
        mlp_only_layers=[0], max_position_embeddings=4096, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, dtype="float32",
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    qw.architectures = ["Qwen3MoeForCausalLM"]
    qw.to_json_file(os.path.join(OUT, "config_qwen3_moe_tf5.json"))


def main():
    if not os.path.isdir("tests/fixtures"):
        sys.exit("run from the repository root")
    torch.manual_seed(0)
    single()
    sharded()
    tf5_configs()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A random bf16 Hugging Face checkpoint of wideep-bench's mid-size shapes, for comparing
wideep with another engine (llama.cpp) on the very same weights (tests/bench/vs_llama_cpp.sh).

The model is made by transformers' own classes and written with save_pretrained (config.json
in the classic hub form, as tests/tools/make_fixtures.py writes it), next to the repository's
real tokenizer of the family (tests/fixtures/tokenizer/), so other converters accept it:
  qwen3-moe-mid    Qwen3MoeForCausalLM, hidden 1024, 16 layers, 64 experts top-8, vocab 151,936
  deepseek-v3-mid  DeepseekV3ForCausalLM (MLA), hidden 1024, 8 layers, 64 experts top-8 plus a
                   shared one, vocab 129,280
Needs torch and transformers (not the repository's: CI never runs this). About 4 GB of disk
and memory for qwen3-moe-mid.

Usage: python3 tests/bench/make_bench_checkpoint.py qwen3-moe-mid OUT_DIR
"""

import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "tokenizer")


def qwen3_mid():
    tok = json.load(open(os.path.join(TOKENIZERS, "qwen3", "tokenizer.json")))
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    return Qwen3MoeConfig(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, moe_intermediate_size=512,
        num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4, head_dim=64,
        num_experts=64, num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[], max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"]), Qwen3MoeForCausalLM, "qwen3"


def deepseek_v3_mid():
    return DeepseekV3Config(
        vocab_size=129280, hidden_size=1024, intermediate_size=4096, moe_intermediate_size=512,
        num_hidden_layers=8, first_k_dense_replace=1, num_attention_heads=16,
        num_key_value_heads=16, n_routed_experts=64, n_shared_experts=1, num_experts_per_tok=8,
        n_group=8, topk_group=4, routed_scaling_factor=2.5, norm_topk_prob=True,
        q_lora_rank=384, kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32,
        v_head_dim=64, max_position_embeddings=16384, rope_theta=10000.0,
        num_nextn_predict_layers=0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=1), DeepseekV3ForCausalLM, "deepseek-v3"


def classic_config(path, family):
    """config.json as hub checkpoints spell it (what wideep's loader and other converters
    read): rope_theta at the top, Qwen3's num_experts, DeepSeek's scoring keys."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters", None) or {}
    c.pop("dtype", None)
    c["torch_dtype"] = "bfloat16"
    c["rope_theta"] = rp.get("rope_theta", c.get("rope_theta"))
    c["rope_scaling"] = None
    if family == "qwen3":
        if "num_local_experts" in c:
            c["num_experts"] = c.pop("num_local_experts")
        c["max_window_layers"] = c["num_hidden_layers"]
    else:
        c.pop("head_dim", None)
        c.pop("qk_head_dim", None)
        c["moe_layer_freq"] = 1
        c["scoring_func"] = "sigmoid"
        c["topk_method"] = "noaux_tc"
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=["qwen3-moe-mid", "deepseek-v3-mid"])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    cfg, cls, tok_dir = qwen3_mid() if args.name == "qwen3-moe-mid" else deepseek_v3_mid()
    torch.manual_seed(args.seed)
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: half the memory of f32 then cast
    model = cls(cfg).eval()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, max_shard_size="2GB")
    classic_config(os.path.join(args.out, "config.json"), "qwen3" if "qwen3" in tok_dir else "ds")
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZERS, tok_dir, fn), os.path.join(args.out, fn))
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
           "transformers_version": transformers.__version__}
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    print(f"{args.name}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters "
          f"in {args.out}")


if __name__ == "__main__":
    main()

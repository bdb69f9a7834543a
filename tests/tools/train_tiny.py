#!/usr/bin/env python3
"""Train the tiny default model shipped in deploy/tiny-model/ (what `make demo` serves).

A DeepseekV3ForCausalLM (MLA, one dense layer then MoE layers with a shared expert and
sigmoid + grouped noaux_tc routing) small enough to ship in the repository (bf16, < 20 MB),
trained on CPU for about half an hour on the fortune-cookie databases that Debian ships in
the `fortunes-min` and `fortunes` packages (the offensive sets are not used). Half of the
fortunes are presented as plain documents, half wrapped in the DeepSeek-V3 chat template
("Tell me something about <topic>." -> fortune), so that chat requests get an answer that
ends with the end-of-sentence token.

The routing bias (e_score_correction_bias) is trained with DeepSeek-V3's auxiliary-loss-free
balancing rule: after every step, bias += u * sign(mean_load - load) per layer.

Usage (from the repository root; needs torch, transformers, tokenizers, safetensors and
`apt-get install fortunes fortunes-min`):
    python3 tests/tools/train_tiny.py --out deploy/tiny-model --minutes 30
`--steps N` fixes the number of steps instead of fitting them to --minutes.
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_tokenizers as tt  # noqa: E402

import transformers  # noqa: E402
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM  # noqa: E402

VOCAB = 4096
SEQ = 128
BATCH = 16
BIAS_UPDATE = 1e-2  # DeepSeek-V3 uses 1e-3 over far more steps

# Fortune file -> topic words used in the synthetic chat prompts.
TOPICS = {
    "computers": "computers", "linux": "Linux", "linuxcookie": "Linux", "science": "science",
    "love": "love", "food": "food", "work": "work", "politics": "politics", "sports": "sports",
    "pets": "pets", "education": "school", "law": "the law", "medicine": "medicine",
    "literature": "books", "people": "people", "wisdom": "wisdom", "startrek": "Star Trek",
    "songs-poems": "poetry", "kids": "children", "magic": "magic", "perl": "Perl",
    "pratchett": "Discworld", "riddles": "riddles", "tao": "the Tao", "news": "the news",
    "humorists": "humor", "platitudes": "life", "fortunes": "the future",
    "miscellaneous": "anything", "cookie": "anything", "definitions": "words",
    "paradoxum": "paradoxes", "goedel": "logic", "debian": "Debian", "zippy": "Zippy",
}
ASK = ["Tell me something about {t}.", "Say something about {t}.", "What do you know about {t}?",
       "Any thoughts on {t}?", "Give me a quote about {t}."]
ASK_ANY = ["Tell me a fortune.", "Say something wise.", "Tell me a joke.", "Hello!",
           "Give me some advice.", "What do you think?", "Say something funny."]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def fortunes_by_file():
    """{file name: [fortune text, ...]} from /usr/share/games/fortunes (not off/)."""
    out = {}
    base = "/usr/share/games/fortunes"
    for name in sorted(os.listdir(base)):
        p = os.path.join(base, name)
        if "." in name or not os.path.isfile(p) or name in ("art", "ascii-art", "ethnic",
                                                              "men-women", "drugs",
                                                              "translate-me"):
            continue
        out[name] = tt.fortune_texts_from_file(p)
    return out


def build_documents(by_file, rng):
    """Half plain documents, half chat-formatted (DeepSeek-V3 template, no system prompt)."""
    docs = []
    for name, items in by_file.items():
        for text in items:
            if len(text) > 1200:
                continue
            if rng.random() < 0.5:
                docs.append(tt.DSV3_BOS + text + tt.DSV3_EOS)
            else:
                if name in TOPICS and rng.random() < 0.7:
                    q = rng.choice(ASK).format(t=TOPICS[name])
                else:
                    q = rng.choice(ASK_ANY)
                docs.append(tt.DSV3_BOS + "<｜User｜>" + q + "<｜Assistant｜>" + text +
                            tt.DSV3_EOS)
    rng.shuffle(docs)
    return docs


def model_config(vocab):
    return DeepseekV3Config(
        vocab_size=vocab, hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
        num_hidden_layers=4, first_k_dense_replace=1, num_attention_heads=4,
        num_key_value_heads=4, n_routed_experts=16, num_experts_per_tok=4, n_group=4,
        topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True,
        q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32,
        v_head_dim=32, rope_interleave=True, max_position_embeddings=2048, rope_theta=10000.0,
        rope_scaling=None, num_nextn_predict_layers=0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, initializer_range=0.02, bos_token_id=0, eos_token_id=1,
        attn_implementation="eager")


class LoadMeter:
    """Collects the experts each MoE layer picked during one step (forward hooks)."""

    def __init__(self, model):
        self.gates = [m for n, m in model.named_modules() if n.endswith("mlp.gate")]
        self.counts = [None] * len(self.gates)
        for i, g in enumerate(self.gates):
            g.register_forward_hook(self._hook(i))

    def _hook(self, i):
        def hook(mod, _inp, out):
            idx = out[2].detach().reshape(-1)
            c = torch.bincount(idx, minlength=mod.num_experts).float()
            self.counts[i] = c if self.counts[i] is None else self.counts[i] + c
        return hook

    @torch.no_grad()
    def update_bias(self, u):
        """DeepSeek-V3 auxiliary-loss-free balancing; returns max/mean load per layer."""
        ratios = []
        for g, c in zip(self.gates, self.counts):
            if c is None:
                continue
            g.e_score_correction_bias += u * torch.sign(c.mean() - c)
            ratios.append((c.max() / c.mean()).item())
        self.counts = [None] * len(self.gates)
        return ratios


def batches(stream, rng):
    """Endless random windows of SEQ+1 tokens from the packed token stream."""
    n = stream.numel() - SEQ - 1
    while True:
        starts = [rng.randrange(n) for _ in range(BATCH)]
        yield torch.stack([stream[s:s + SEQ + 1] for s in starts])


@torch.no_grad()
def evaluate(model, stream, n_windows=64):
    model.eval()
    losses = []
    for i in range(0, min(n_windows * SEQ, stream.numel() - SEQ - 1), SEQ):
        x = stream[i:i + SEQ + 1].unsqueeze(0)
        out = model(x[:, :-1], labels=x[:, :-1].clone())
        losses.append(out.loss.item())
    model.train()
    return sum(losses) / max(len(losses), 1)


def lr_at(step, progress, peak, warmup=100):
    """Linear warmup over the first steps, then cosine from peak to 10% over progress 0..1
    (the fraction of the time budget, or of --steps, spent by this run)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def classic_config(path):
    """config.json the way real DeepSeek-V3 checkpoints spell it."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c.pop("dtype", None)
    c.pop("head_dim", None)
    c.pop("qk_head_dim", None)
    c["torch_dtype"] = "bfloat16"
    c["rope_theta"] = rp["rope_theta"]
    c["rope_scaling"] = None
    c["moe_layer_freq"] = 1
    c["scoring_func"] = "sigmoid"
    c["topk_method"] = "noaux_tc"
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


def save_model(model, tok, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    keep = {n: b.detach().clone() for n, b in model.named_buffers()}
    m = model
    for p in m.parameters():
        p.data = p.data.to(torch.bfloat16)
    m.save_pretrained(out_dir, max_shard_size="1GB")
    for p in m.parameters():
        p.data = p.data.float()
    for n, b in m.named_buffers():
        b.data = keep[n]
    classic_config(os.path.join(out_dir, "config.json"))
    tt.save_deepseek_v3(tok, out_dir, 2048)
    gen = {"bos_token_id": 0, "do_sample": True, "eos_token_id": 1, "temperature": 0.8,
           "top_p": 0.95, "transformers_version": transformers.__version__}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")


SAMPLE_PLAIN = ["The meaning of life is", "Computers are", "A wise man once said",
                "Love is"]
SAMPLE_CHAT = ["Tell me something about computers.", "Give me some advice.",
               "What do you know about science?"]


@torch.no_grad()
def samples(out_dir):
    """Greedy and temperature-0.8 continuations by transformers from the shipped files."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = DeepseekV3ForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                  attn_implementation="eager").eval()
    prompts = [(p, tok(p)["input_ids"]) for p in SAMPLE_PLAIN]
    for q in SAMPLE_CHAT:
        ids = tok.apply_chat_template([{"role": "user", "content": q}],
                                      add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        prompts.append((tok.decode(ids), list(ids)))
    out = []
    for text, ids in prompts:
        x = torch.tensor([ids])
        row = {"prompt": text}
        for name, kw in [("greedy", {"do_sample": False}),
                         ("temperature 0.8", {"do_sample": True, "temperature": 0.8,
                                              "top_p": 1.0, "top_k": 0})]:
            torch.manual_seed(1)
            y = model.generate(x, max_new_tokens=60, eos_token_id=1, pad_token_id=1, **kw)
            new = y[0, len(ids):].tolist()
            txt = tok.decode(new, skip_special_tokens=True)
            row[name] = " ".join(txt.split()) + (" [EOS]" if 1 in new else " [...]")
        out.append(row)
    return out


def write_readme(out_dir):
    with open(os.path.join(out_dir, "training_summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(out_dir, "config.json")) as f:
        c = json.load(f)
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    rows = samples(out_dir)
    lines = [
        "# tiny-model: the default model of `make demo`",
        "",
        "A toy DeepSeek-V3-architecture MoE (`DeepseekV3ForCausalLM`) small enough to ship in",
        "the repository, so the demo works on a fresh machine with no download. It writes",
        "fortune-cookie-flavoured English of uneven sense; it knows nothing else.",
        "",
        "## Architecture",
        "",
        f"- {s['params'] / 1e6:.2f} M parameters, bf16 `model.safetensors` "
        f"({size / 2**20:.1f} MiB); vocab {c['vocab_size']} (byte-level BPE with DeepSeek-V3's "
        "pre-tokenizer, BOS `<｜begin▁of▁sentence｜>` = 0, EOS `<｜end▁of▁sentence｜>` = 1)",
        f"- {c['num_hidden_layers']} layers, hidden {c['hidden_size']}; layer 0 dense "
        f"(intermediate {c['intermediate_size']}), layers 1-{c['num_hidden_layers'] - 1} MoE: "
        f"{c['n_routed_experts']} routed experts (intermediate {c['moe_intermediate_size']}), "
        f"top-{c['num_experts_per_tok']}, sigmoid scores with noaux_tc routing "
        f"(n_group {c['n_group']}, topk_group {c['topk_group']}), {c['n_shared_experts']} "
        f"shared expert, routed_scaling_factor {c['routed_scaling_factor']}, norm_topk_prob",
        f"- MLA: {c['num_attention_heads']} heads, q_lora_rank {c['q_lora_rank']}, "
        f"kv_lora_rank {c['kv_lora_rank']}, qk_nope_head_dim {c['qk_nope_head_dim']}, "
        f"qk_rope_head_dim {c['qk_rope_head_dim']}, v_head_dim {c['v_head_dim']}, "
        f"rope_interleave, rope_theta {c['rope_theta']:g}, no YaRN; trained on "
        f"{s['seq']}-token windows",
        "- `tokenizer_config.json` carries DeepSeek-V3's chat template; `generation_config.json` "
        "samples at temperature 0.8, top_p 0.95",
        "",
        "## How it was made",
        "",
        "From the repository root, with torch, transformers, tokenizers and safetensors installed "
        "and `apt-get install -y fortunes fortunes-min`:",
        "",
        "    python3 tests/tools/train_tiny.py --out deploy/tiny-model --minutes 30",
        "    python3 tests/tools/train_tiny.py --out deploy/tiny-model --readme-only",
        "",
        f"Batch {s['batch']} x {s['seq']} tokens, AdamW lr {s['lr']} (warmup 100 steps, then "
        "cosine to 10% over the time budget), weight decay 0.1, 2 CPU threads, seed "
        f"{s['seed']}; {s['steps']} steps over {s['train_tokens']} training tokens (~"
        f"{s['steps'] * s['batch'] * s['seq'] / s['train_tokens']:.1f} epochs). The routing "
        "bias `e_score_correction_bias` is updated after every step with DeepSeek-V3's "
        "auxiliary-loss-free rule, bias += u * sign(mean load - expert load), so all experts "
        "are used (max/mean expert load about 1.2 at the end). The script checkpoints to "
        "`build/train_tiny_ckpt.pt` every 4 minutes and resumes from it when present; the "
        "weights shipped are those of the checkpoint with the lowest held-out loss of the "
        f"last run (step {s['shipped_step']}). torch {s['torch_version']}, transformers "
        f"{s['transformers_version']}.",
        "",
        "The shipped weights were made by these runs (so a fresh run gives a comparable, not "
        "bit-identical, model):",
        "",
    ] + [f"- {h}" for h in s["history"]] + [
        "",
        f"Final training loss (moving average) {s['final_train_loss_ema']:.3f}; held-out loss "
        f"{s['val_loss_f32']:.3f} (f32 weights), {s['val_loss_bf16_weights']:.3f} (shipped "
        "bf16 weights), in nats per token.",
        "",
        "## Data and license",
        "",
        "The fortune-cookie databases of the Debian packages `fortunes-min` and `fortunes`",
        "(`/usr/share/games/fortunes/*`, entries split on the `%` lines; the offensive sets under",
        "`off/` and the sets `art`, `ascii-art`, `ethnic`, `men-women`, `drugs`, `translate-me` left",
        "out), from fortune-mod, which Debian distributes under the BSD license quoted in",
        "`/usr/share/doc/fortunes-min/copyright` (Copyright (c) 1991 The Regents of the",
        "University of California). Half the fortunes were used as plain documents",
        "(`BOS text EOS`) and half in the chat template (`BOS<｜User｜>Tell me something about",
        "<topic of the fortune file>.<｜Assistant｜>fortune EOS`), so chat requests get an answer",
        "that ends.",
        "",
        "## Samples",
        "",
        "Generated by transformers from the files in this directory (60 new tokens at most,",
        "whitespace runs shown as one space; the temperature samples use top_p 1 and",
        "torch.manual_seed(1)).",
        "",
    ]
    for r in rows:
        lines.append(f"Prompt: `{r['prompt']}`")
        lines.append("")
        for k in ("greedy", "temperature 0.8"):
            lines.append(f"- {k}: {r[k]}")
        lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="deploy/tiny-model")
    ap.add_argument("--ckpt", default="build/train_tiny_ckpt.pt",
                    help="periodic checkpoint (resumed from if present)")
    ap.add_argument("--minutes", type=float, default=32.0)
    ap.add_argument("--steps", type=int, default=0, help="fixed step count (0: fit to time)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--readme-only", action="store_true",
                    help="skip training: sample from the model in --out and write README.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.readme_only:
        write_readme(args.out)
        return
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    by_file = fortunes_by_file()
    all_text = [t for v in by_file.values() for t in v]
    log(f"{len(all_text)} fortunes, {sum(map(len, all_text))} chars")
    tok = tt.build_deepseek_v3(all_text, VOCAB)
    docs = build_documents(by_file, rng)
    n_val = max(len(docs) // 50, 1)
    enc = tok.encode_batch([d for d in docs], add_special_tokens=False)
    ids = [e.ids for e in enc]
    val = torch.tensor([t for d in ids[:n_val] for t in d])
    train = torch.tensor([t for d in ids[n_val:] for t in d])
    log(f"vocab {tok.get_vocab_size()}, train tokens {train.numel()}, val tokens {val.numel()}")

    cfg = model_config(tok.get_vocab_size())
    model = DeepseekV3ForCausalLM(cfg)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"params {n_params / 1e6:.2f} M ({2 * n_params / 2**20:.1f} MiB in bf16)")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    meter = LoadMeter(model)
    step, history = 0, []
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng.setstate(ck["rng"])
        history = ck.get("history") or [
            f"steps 0-{step}: an earlier run (bias update 0.001, lr schedule fitted to "
            f"{ck.get('total')} steps), stopped and resumed"]
        log(f"resumed from {args.ckpt} at step {step}")
    start_step = step
    budget = args.minutes * 60
    gen = batches(train, rng)
    t0 = time.time()
    last_ckpt = t0
    ema = None
    best = None
    def progress():
        # Time-based by default: the shared CPU's speed varies, the budget does not.
        if args.steps:
            return (step - start_step) / max(args.steps - start_step, 1)
        return (time.time() - t0) / budget

    while progress() < 1.0:
        lr = lr_at(step, progress(), args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(gen)
        out = model(x[:, :-1], labels=x[:, :-1].clone())
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ratios = meter.update_bias(BIAS_UPDATE)
        step += 1
        ema = out.loss.item() if ema is None else 0.98 * ema + 0.02 * out.loss.item()
        done = progress() >= 1.0
        if step % 50 == 0 or done:
            tps = (step - start_step) * BATCH * SEQ / max(time.time() - t0, 1e-9)
            log(f"step {step} loss {out.loss.item():.3f} (ema {ema:.3f}) lr {lr:.2e} "
                f"max/mean expert load {max(ratios):.2f} ({tps:.0f} tok/s)")
        if time.time() - last_ckpt > 240 or done:
            if done:
                history.append(f"steps {start_step}-{step}: " + (
                    f"--steps {args.steps}" if args.steps else f"--minutes {args.minutes:g}") +
                    f", bias update {BIAS_UPDATE:g}")
            os.makedirs(os.path.dirname(args.ckpt) or ".", exist_ok=True)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "history": history, "rng": rng.getstate()}, args.ckpt)
            last_ckpt = time.time()
            v = evaluate(model, val)
            log(f"checkpoint at step {step}, val loss {v:.3f}")
            if best is None or v < best[0]:
                best = (v, step, {k: t.detach().clone() for k, t in model.state_dict().items()})

    # Small data, several epochs: ship the checkpoint with the best held-out loss.
    if best is not None and best[1] != step:
        log(f"using the step-{best[1]} weights (val loss {best[0]:.3f})")
        model.load_state_dict(best[2])

    model.eval()
    val_f32 = evaluate(model, val)
    save_model(model, tok, args.out)
    re = DeepseekV3ForCausalLM.from_pretrained(args.out, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    val_bf16 = evaluate(re, val)
    log(f"final: train loss (ema) {ema:.3f}, val loss f32 {val_f32:.3f}, "
        f"val loss bf16 weights {val_bf16:.3f}")
    with open(os.path.join(args.out, "training_summary.json"), "w") as f:
        json.dump({"steps": step, "shipped_step": best[1] if best else step, "batch": BATCH, "seq": SEQ, "train_tokens": train.numel(),
                   "final_train_loss_ema": round(ema, 4), "val_loss_f32": round(val_f32, 4),
                   "val_loss_bf16_weights": round(val_bf16, 4), "params": n_params,
                   "seed": args.seed, "lr": args.lr, "history": history,
                   "torch_version": torch.__version__.split("+")[0],
                   "transformers_version": transformers.__version__}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()

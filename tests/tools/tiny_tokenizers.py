"""Small byte-level BPE tokenizers shaped like the real Qwen3 and DeepSeek-V3 ones.

Shared by make_fixtures.py (golden fixtures) and train_tiny.py (the demo model). The
components (normalizer, pre-tokenizer regexes, byte-level mapping, decoder, special tokens,
post-processor) mirror what the two families ship, so the C tokenizer is exercised on the
same structure; only the merges and the vocabulary are ours, trained with `tokenizers` on
English text that Debian installs (licenses, copyright files, fortunes).
"""

import glob
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))

# Qwen2/Qwen3 pre-tokenizer split pattern (as their tokenizer.json carries it).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# DeepSeek-V3 pre-tokenizer: three Split steps (digits in groups of up to three, CJK runs,
# then a GPT-style word/punctuation split), then ByteLevel without its own regex.
DSV3_SPLIT_DIGITS = r"\p{N}{1,3}"
DSV3_SPLIT_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
DSV3_SPLIT_WORDS = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                    "[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
                    "\\s*[\r\n]+|\\s+(?!\\S)|\\s+")

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added but not special in Qwen3 (they survive decoding with skip_special_tokens).
QWEN_ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
              "<think>", "</think>"]

DSV3_BOS = "<｜begin▁of▁sentence｜>"
DSV3_EOS = "<｜end▁of▁sentence｜>"
DSV3_PAD = "<｜▁pad▁｜>"
# Tokens the DeepSeek-V3 chat template emits.
DSV3_CHAT = ["<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
             "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>",
             "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
             "<｜tool▁sep｜>"]


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def debian_license_texts(max_bytes=3_000_000):
    """English prose from /usr/share/common-licenses and package copyright files, in a fixed
    (sorted) order so that training is reproducible on the same Debian release."""
    paths = sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p))
    paths += sorted(glob.glob("/usr/share/doc/*/copyright"))
    texts, total, seen = [], 0, set()
    for p in paths:
        real = os.path.realpath(p)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        t = read_text(real)
        texts.append(t)
        total += len(t)
        if total >= max_bytes:
            break
    return texts


def fortune_texts_from_file(path):
    """The fortunes of one strfile source file (entries separated by '%' lines)."""
    out, chunk = [], []
    for line in read_text(path).splitlines():
        if line.strip() == "%":
            if chunk:
                out.append("\n".join(chunk).strip("\n"))
            chunk = []
        else:
            chunk.append(line.rstrip())
    if chunk:
        out.append("\n".join(chunk).strip("\n"))
    return [t for t in out if t.strip()]


def _trainer(vocab_size, special):
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                               special_tokens=special,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def build_qwen3(texts, vocab_size):
    """Qwen3 structure: NFC, Split(Qwen regex) + ByteLevel(use_regex=False), ByteLevel
    decoder and post-processor, special tokens appended after the BPE vocabulary."""
    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, continuing_subword_prefix="",
                               end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                     use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    n_added = len(QWEN_SPECIAL) + len(QWEN_ADDED)
    tok.train_from_iterator(texts, _trainer(vocab_size - n_added, []))
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN_SPECIAL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN_ADDED])
    return tok


def build_deepseek_v3(texts, vocab_size):
    """DeepSeek-V3 structure: no normalizer, Split(digits) + Split(CJK) + Split(words) +
    ByteLevel(use_regex=False); BOS/EOS/pad at ids 0/1/2 like the real vocabulary, the chat
    and tool markers appended at the end; a template post-processor that prepends BOS."""
    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, fuse_unk=False,
                               byte_fallback=False))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DSV3_SPLIT_DIGITS), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DSV3_SPLIT_CJK), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DSV3_SPLIT_WORDS), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.train_from_iterator(texts, _trainer(vocab_size - len(DSV3_CHAT),
                                            [DSV3_BOS, DSV3_EOS, DSV3_PAD]))
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in DSV3_CHAT])
    bos_id = tok.token_to_id(DSV3_BOS)
    assert bos_id == 0 and tok.token_to_id(DSV3_EOS) == 1
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single=f"{DSV3_BOS}:0 $A:0",
                                      pair=f"{DSV3_BOS}:0 $A:0 {DSV3_BOS}:1 $B:1",
                                      special_tokens=[(DSV3_BOS, bos_id)]),
    ])
    return tok


def chat_template(name):
    with open(os.path.join(TOOLS_DIR, "chat_templates", name), encoding="utf-8") as f:
        return f.read()


def _added_tokens_decoder(tok):
    out = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        out[str(tid)] = {"content": at.content, "lstrip": at.lstrip, "normalized": at.normalized,
                         "rstrip": at.rstrip, "single_word": at.single_word,
                         "special": at.special}
    return out


def save_qwen3(tok, out_dir, model_max_length):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": _added_tokens_decoder(tok),
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": chat_template("qwen3.jinja"),
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


def save_deepseek_v3(tok, out_dir, model_max_length):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    def added(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False,
                "normalized": True, "rstrip": False, "single_word": False}
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": added(DSV3_BOS),
        "chat_template": chat_template("deepseek_v3.jinja"),
        "clean_up_tokenization_spaces": False,
        "eos_token": added(DSV3_EOS),
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": added(DSV3_EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")

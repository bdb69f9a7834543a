#!/usr/bin/env python3
"""Builds the tokenizer test fixtures under tests/fixtures/tokenizer/.

Oracle: Hugging Face `tokenizers` (encode/decode) and transformers' chat-template
renderer (jinja2 with the environment HF uses). Outputs:

  corpus.jsonl                     one JSON string per line (the test inputs)
  <name>/expected.jsonl            per corpus line {"ids": [...]} plus "dec" / "dec_skip"
                                   when decode differs from the text; "sp" (ids with
                                   add_special_tokens) on the first lines; then lines
                                   {"decode": [...ids], "dec": ..., "dec_skip": ...}
                                   for random id sequences
  <name>/chat.jsonl                chat renderings (qwen3, deepseek-v3 only)
  jinja_cases.jsonl                small templates covering the Jinja subset, rendered
  cases.jsonl                      edge cases: {"tokenizer", "text", "ids"} and, for Split
                                   regex cases, the "pre_tokenizer" that replaces the file's
  tiny-bytelevel/, tiny-split/     small tokenizers trained here with `tokenizers`

Run from the repository root: python3 tests/tools/make_tokenizer_fixtures.py
(--cases rewrites only cases.jsonl, the edge cases, from the committed tokenizers).
The corpus takes text from files Debian ships (license texts, package docs) plus
generated strings; a fixed seed keeps the output stable on a given machine.
"""
import glob
import gzip
import json
import os
import random
import sys
import unicodedata

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers, AddedToken, Regex

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
RNG = random.Random(20240611)


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def paragraphs(text):
    out = []
    for p in text.split("\n\n"):
        if p.strip():
            out.append(p)
    return out


def debian_text(limit_chunks):
    chunks = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path) and not os.path.islink(path):
            chunks += paragraphs(read_text(path))
    docs = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(
        glob.glob("/usr/share/doc/*/changelog.Debian.gz"))
    for path in docs:
        text = read_text(path)
        ps = paragraphs(text)[:6]
        chunks += ps
    RNG.shuffle(chunks)
    # keep a spread of sizes, cap the longest so the fixture stays small
    out = []
    for c in chunks:
        if len(c) > 3000:
            c = c[:3000]
        out.append(c)
        if len(out) >= limit_chunks:
            break
    return out


CODE = [
    # C
    "#include <stdio.h>\n\nint main(int argc, char **argv)\n{\n\tfor (int i = 0; i < argc; i++)\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\treturn 0;\n}\n",
    "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }\n",
    "struct node {\n    struct node *next;\n    void *data;\n};\n\n#define CONTAINER_OF(p, t, m) "
    "((t *)((char *)(p) - offsetof(t, m)))\n",
    # Python
    "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n\n\nif __name__ == '__main__':\n    print([fib(i) for i in range(20)])\n",
    "class Foo(Base):\n    \"\"\"Docstring with 'quotes' and \\\"escapes\\\".\"\"\"\n\n    def __init__"
    "(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n        self._x = "
    "{'a': 1, \"b\": [2, 3]}\n",
    "    async with session.get(url) as resp:\n        data = await resp.json()\n"
    "        return {k: v for k, v in data.items() if v is not None}\n",
    # Rust
    "fn main() {\n    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", "
    "v);\n}\n\nimpl<T: Clone> From<&[T]> for Wrapper<T> {\n    fn from(s: &[T]) -> Self { "
    "Wrapper(s.to_vec()) }\n}\n",
    # Go
    "package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() {\n\tfmt.Println(strings"
    ".Repeat(\"ab\", 3))\n\tch := make(chan int, 4)\n\tgo func() { ch <- 42 }()\n\t<-ch\n}\n",
    # JavaScript / TypeScript
    "const add = (a, b) => a + b;\nexport default async function handler(req, res) {\n  const "
    "{ id } = req.query;\n  res.status(200).json({ id, ok: true, list: [1, 2, 3] });\n}\n",
    "interface User { id: number; name?: string }\nfunction greet<T extends User>(u: T): string "
    "{\n  return `Hello, ${u.name ?? 'anon'}!`;\n}\n",
    # Shell, SQL, HTML, JSON, YAML, LaTeX, Lisp, Haskell, CUDA
    "#!/bin/sh\nset -eu\nfor f in *.txt; do\n    [ -f \"$f\" ] || continue\n    wc -l \"$f\" | "
    "awk '{print $1}'\ndone 2>/dev/null\n",
    "SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id\nWHERE o.created_at"
    " >= '2024-01-01' GROUP BY u.id HAVING n > 3 ORDER BY n DESC;\n",
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>T</title></head>\n"
    "<body><p class=\"x\">Hi &amp; bye</p></body>\n</html>\n",
    "{\"name\": \"wideep\", \"version\": \"0.1.0\", \"deps\": {\"a\": \"^1.2\"}, \"list\": [1, 2.5, "
    "null, true]}",
    "server:\n  port: 8080\n  hosts:\n    - a.example\n    - b.example\n  tls: {enabled: false}\n",
    "\\begin{equation}\n  E = mc^2 \\quad \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n"
    "\\end{equation}\n",
    "(defun fact (n) (if (<= n 1) 1 (* n (fact (- n 1)))))\n",
    "main :: IO ()\nmain = mapM_ print $ takeWhile (< 100) $ map (^2) [1..]\n",
    "__global__ void axpy(int n, float a, const float *x, float *y)\n{\n    int i = blockIdx.x * "
    "blockDim.x + threadIdx.x;\n    if (i < n) y[i] = a * x[i] + y[i];\n}\n",
]

SPECIAL_TEXT = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<|EOT|>", "<｜tool▁calls▁begin｜>", "<|im_sta", "im_end|>", "<|im_start|", "<｜User",
    "[CLS]", "[SEP]", "<mask>", "<extra>", "hello_world", "ŁŁ",
]

SCRIPTS = {
    "zh": "我们的模型在多个基准测试中表现优异，支持长上下文与多语言理解。今天天气很好，适合出去散步。",
    "ja": "これは日本語の文章です。カタカナとひらがな、そして漢字が混ざっています。東京タワー！",
    "ko": "안녕하세요. 이것은 한국어 문장입니다. 토크나이저 테스트를 위해 작성되었습니다.",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "el": "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "ar": "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.",
    "he": "דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "hi": "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
    "th": "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "vi": "Tiếng Việt có dấu: Những đứa trẻ đang chơi ở sân trường.",
    "de": "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg.",
    "fr": "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis.",
    "tr": "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ıİiI.",
    "math": "∀ε>0 ∃δ>0: |x−a|<δ ⇒ |f(x)−f(a)|<ε; ∑_{i=1}^{n} i² = n(n+1)(2n+1)/6 ≈ ∞ ≠ ∅",
}

EMOJI = [
    "😀", "😂", "🥲", "👍", "👍🏽", "👨‍👩‍👧‍👦", "👩🏻‍💻", "🏳️‍🌈", "🇺🇸", "🇯🇵", "❤️", "🫠",
    "🧑‍🚀", "👁️‍🗨️", "🤷‍♀️", "🐈‍⬛", "1️⃣", "©️", "🔥🔥🔥", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
]

WS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\u180e",
      "\u200b", "\u000b", "\u000c", "\u2009"]


def generated_strings():
    out = ["", " ", "\n", "a", "  a", "a  ", "\t\t", "\n\n\n", " \n \n ", "\r\n\r\n"]
    # whitespace mixes
    for _ in range(120):
        parts = []
        for _ in range(RNG.randint(1, 12)):
            r = RNG.random()
            if r < 0.5:
                parts.append("".join(RNG.choice(WS) for _ in range(RNG.randint(1, 9))))
            else:
                parts.append(RNG.choice(["word", "x", "Hello", "42", "你好", "é", "!!", "a.b",
                                         "don't", "😀"]))
        out.append("".join(parts))
    for n in (1, 2, 3, 7, 16, 64, 300):
        out.append("x" + " " * n + "y")
        out.append("x" + "\t" * n + "y")
        out.append(" " * n)
        out.append("\n" * n + "z")
        out.append("a" + " \n" * n)
    # digits and numbers
    for _ in range(80):
        k = RNG.randint(1, 60)
        out.append("".join(RNG.choice("0123456789") for _ in range(k)))
    out += ["3.14159265358979", "1,234,567.89", "-0.000001e-10", "0x7fffffff", "123abc456",
            "٣٤٥ ۱۲۳ १२३ ๑๒๓", "①②③ Ⅻ ½ ¾", "12:30:45 2024-06-11", "+1 (555) 010-9999"]
    # contractions
    for w in ["don't", "DON'T", "I'll", "I'LL", "we've", "WE'VE", "she'd", "it's", "It'S",
              "they're", "I'm", "I'M", "o'clock", "rock'n'roll", "'s'", "''", "'", "a'sb"]:
        out.append(w)
        out.append("Well, " + w + " see.")
    # special-token text inside text
    for _ in range(150):
        parts = []
        for _ in range(RNG.randint(1, 6)):
            parts.append(RNG.choice(SPECIAL_TEXT) if RNG.random() < 0.5 else
                         RNG.choice(["user", "\n", " ", "hi", "Hello world", "你好", "  ", "x"]))
        out.append("".join(parts))
    out += ["<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>",
            "<think>\nreasoning\n</think>\n\nanswer", "text<|im_end|>text<|im_end|><|im_end|>"]
    # NFC / NFD and accents
    for w in ["café", "naïve", "Ångström", "résumé", "Zoë", "ﬁ ligature", "Ｆｕｌｌｗｉｄｔｈ",
              "한국어", "ḱṷṓn", "x\u0301\u0323", "\u1100\u1161\u11a8", "e\u0308\u0304",
              "\u0041\u030a", "\u212b", "\u2126", "\u00c5", "\u1e9b\u0323", "ｶﾞ"]:
        out.append(w)
        out.append(unicodedata.normalize("NFD", w))
        out.append(unicodedata.normalize("NFKC", w) + " " + unicodedata.normalize("NFKD", w))
    # very long words
    out.append("a" * 5000)
    out.append("ab" * 1500)
    out.append("".join(RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000)))
    out.append("supercalifragilisticexpialidocious" * 20)
    out.append("é" * 1000)
    out.append("😀" * 300)
    out.append("中" * 2000)
    out.append("-" * 500 + "=" * 500)
    out.append("https://example.com/a/very/long/path?" + "&".join(f"k{i}=v{i}" for i in range(80)))
    # scripts and emoji, mixed
    for _ in range(250):
        parts = []
        for _ in range(RNG.randint(1, 8)):
            r = RNG.random()
            if r < 0.4:
                s = RNG.choice(list(SCRIPTS.values()))
                a = RNG.randint(0, len(s) - 1)
                parts.append(s[a:a + RNG.randint(1, 40)])
            elif r < 0.6:
                parts.append("".join(RNG.choice(EMOJI) for _ in range(RNG.randint(1, 4))))
            elif r < 0.8:
                parts.append(RNG.choice(WS))
            else:
                parts.append(RNG.choice(["GPU", "MoE", "v3", "2024", "ok", "??", "...", "—",
                                         "“quoted”", "«ç»", "(x)", "#tag", "@user"]))
        out.append("".join(parts))
    out += list(SCRIPTS.values())
    out += EMOJI
    out.append(" ".join(EMOJI))
    # random code points (valid scalar values), short strings
    for _ in range(200):
        k = RNG.randint(1, 24)
        chars = []
        for _ in range(k):
            r = RNG.random()
            if r < 0.3:
                cp = RNG.randint(0x20, 0x7E)
            elif r < 0.6:
                cp = RNG.randint(0x80, 0xFFFF)
            elif r < 0.8:
                cp = RNG.randint(0x10000, 0x2FFFF)
            else:
                cp = RNG.choice([0x0, 0x1, 0x7, 0x1B, 0x7F, 0x85, 0xAD, 0xFEFF, 0xFFFD, 0xFFFF,
                                 0x10FFFF, 0xE0001, 0x1F3FB])
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0x41
            chars.append(chr(cp))
        out.append("".join(chars))
    out += CODE
    for c in CODE:
        out.append(c.replace("    ", "\t"))
    # characters newer than HF's normalization tables next to marks it does know
    for cp in (0x7FD, 0x898, 0x8CF, 0x1ABF, 0x1DF6, 0xA7F2, 0x32FF, 0x10781, 0x11930):
        c = chr(cp)
        out.append(f"a{c}\u0334\u0301 e\u0301{c}\u0316 {c}{c}\u0323\u0307 x")
    out.append("\U00011935\U00011930 \U00011938")
    return out


def unicode_sweep():
    """Code points in small contexts, so that class differences between Oniguruma and PCRE2
    (\\s, \\p{L}, \\p{N}, ...) show up: all of U+0000-U+2FFF, every third code point of the
    rest of the BMP (CJK, Hangul and private use are uniform), every fifth of plane 1 and a
    sample of the planes above."""
    cps = list(range(0, 0x3000)) + [c for c in range(0x3000, 0x10000, 3)
                                    if not 0xD800 <= c <= 0xDFFF]
    cps += list(range(0x10000, 0x20000, 5)) + list(range(0x20000, 0x110000, 211))
    contexts = ["{c}x ", " {c}1", "{c}{c}\n", "a{c} "]
    out = []
    for i in range(0, len(cps), 256):
        out.append("".join(contexts[k % 4].format(c=chr(cp))
                           for k, cp in enumerate(cps[i:i + 256])))
    return out


def train_tiny(kind, texts):
    if kind == "tiny-bytelevel":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<s>", "</s>", "<pad>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer)
        tok.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False),
                        AddedToken("hello_world", single_word=True, normalized=True),
                        AddedToken("<extra>", rstrip=True, normalized=False),
                        AddedToken("Ｆｕｌｌ", normalized=True)])
        tok.add_special_tokens([AddedToken("[CLS]", normalized=False),
                                AddedToken("[SEP]", normalized=False)])
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                            ("[SEP]", tok.token_to_id("[SEP]"))])
    else:
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.NFC()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split("-", behavior="merged_with_next"),
            pre_tokenizers.Split(Regex(r"\d"), behavior="merged_with_previous"),
            pre_tokenizers.Split(Regex(r"[\p{L}\p{M}]+|\s+"), behavior="contiguous",
                                 invert=True),
            pre_tokenizers.Split(Regex(r"\s*,\s*"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\s+(?!\S)|[.;:!?]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer)
        tok.add_special_tokens([AddedToken("<|im_start|>", normalized=False),
                                AddedToken("<|im_end|>", normalized=False)])
        tok.add_tokens([AddedToken("<think>", normalized=False, special=False)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def expected_rows(tok, corpus):
    rows = []
    for i, text in enumerate(corpus):
        ids = tok.encode(text, add_special_tokens=False).ids
        row = {"ids": ids}
        dec = tok.decode(ids, skip_special_tokens=False)
        dec_skip = tok.decode(ids, skip_special_tokens=True)
        if dec != text:
            row["dec"] = dec
        if dec_skip != dec:
            row["dec_skip"] = dec_skip
        if i < 40:
            row["sp"] = tok.encode(text, add_special_tokens=True).ids
        rows.append(row)
    # random id sequences: byte tokens that split UTF-8 sequences, specials, out-of-range ids
    n = tok.get_vocab_size(with_added_tokens=True)
    added = sorted(tok.get_added_tokens_decoder().keys())
    vocab = tok.get_vocab(with_added_tokens=True)
    byte_ids = [vocab[t] for t in pre_tokenizers.ByteLevel.alphabet() if t in vocab]
    for _ in range(300):
        seq = []
        for _ in range(RNG.randint(0, 24)):
            r = RNG.random()
            if r < 0.4:
                seq.append(RNG.choice(byte_ids))
            elif r < 0.55 and added:
                seq.append(RNG.choice(added))
            elif r < 0.58:
                seq.append(n + RNG.randint(0, 5))
            else:
                seq.append(RNG.randint(0, n - 1))
        rows.append({"decode": seq, "dec": tok.decode(seq, skip_special_tokens=False),
                     "dec_skip": tok.decode(seq, skip_special_tokens=True)})
    return rows


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "user", "content": "Solve x+1=2"},
     {"role": "assistant", "content": "<think>\nSubtract 1.\n</think>\n\nx = 1"},
     {"role": "user", "content": "And x+2=5?"},
     {"role": "assistant", "content": "<think>\nSubtract 2.\n</think>\n\nx = 3"}],
    [{"role": "system", "content": "First system."}, {"role": "system", "content": "Second."},
     {"role": "user", "content": "Go"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "Unicode: 你好 😀 é\n\tTabs {{ not a tag }} {% raw %} <|im_end|>"}],
    [{"role": "user", "content": "Call the tool"},
     {"role": "assistant", "content": "Calling it."},
     {"role": "tool", "content": "{\"temp\": 21}"},
     {"role": "tool", "content": "second result"},
     {"role": "assistant", "content": "It is 21 degrees."}],
    [{"role": "user", "content": "<tool_response>\nx\n</tool_response>"},
     {"role": "assistant", "content": "<think>r</think>ok"}],
    [{"role": "system", "content": "S"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * i}
        for i in range(11)],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b</think>c"},
     {"role": "user", "content": "d"}],
    [],
]


def chat_rows(name, cfg):
    from transformers.utils.chat_template_utils import render_jinja_template
    template = cfg["chat_template"]

    def tok_str(v):
        return v.get("content") if isinstance(v, dict) else v

    special = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        v = tok_str(cfg.get(key))
        if v is not None:
            special[key] = v
    rows = []
    thinking = [None, False, True] if "enable_thinking" in template else [None]
    for msgs in CONVERSATIONS:
        for agp in (False, True):
            for think in thinking:
                kwargs = dict(special)
                if think is not None:
                    kwargs["enable_thinking"] = think
                row = {"messages": msgs, "add_generation_prompt": agp}
                if think is not None:
                    row["enable_thinking"] = think
                try:
                    text, _ = render_jinja_template(
                        conversations=[msgs], chat_template=template,
                        add_generation_prompt=agp, **kwargs)
                    row["text"] = text[0]
                except Exception as e:  # the C renderer must fail too
                    row["error"] = type(e).__name__
                rows.append(row)
    return rows


# Small templates exercising the Jinja features the C renderer implements; rendered with
# transformers' environment over JINJA_MESSAGES (one row per template).
JINJA_MESSAGES = [{"role": "system", "content": "Sys  prompt\n"},
                  {"role": "user", "content": "Hello, World! ünïcödé 你好"},
                  {"role": "assistant", "content": "<think>\nhm\n</think>\n\nAnswer: 42"}]
JINJA_CASES = [
    "{{ messages|length }} {{ messages[0].role }} {{ messages[-1]['role'] }}",
    "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role|upper }}"
    "{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for m in messages if m.role != 'system' %}[{{ loop.index0 }}{{ m.role }}]"
    "{% else %}none{% endfor %}",
    "{% for m in messages[::-1] %}{{ m.role[:1] }}{% endfor %}|{{ messages[1:] | length }}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }}{{ ns.s }}",
    "{% set x = 1 %}{% for m in messages %}{% set x = x + 10 %}{{ x }} {% endfor %}{{ x }}",
    "{{ messages[2].content.split('</think>')[-1].lstrip('\n') }}|"
    "{{ messages[2].content.split('</think>')[0].split('<think>')[-1].strip('\n') }}",
    "{{ messages[0].content.strip() }}|{{ '  a b  '.rstrip() }}|{{ 'xxaxx'.strip('x') }}",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }}",
    "{{ 'Hello'.startswith('He') }} {{ 'Hello'.endswith(('x', 'lo')) }} {{ 'abc'.find('c') }}",
    "{{ 'ab' * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} "
    "{{ 7 / 2 }} {{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }}",
    "{{ 1.5 }} {{ 2.0 }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ -0.0 }} {{ 3.0e-7 }}",
    "{{ none }} {{ true }} {{ false }} {{ [1, 'a', none, true] }} {{ {'k': [1, 2]} }} "
    "{{ (1,) }} {{ (1, 2) }} {{ \"it's\" }} {{ ['it\\'s', 'q\"'] }}",
    "{{ x }}|{{ x is defined }}|{{ x is undefined }}|{{ x|default('d') }}|"
    "{{ ''|default('e', true) }}|{{ none is none }}|{{ 3 is odd }}|{{ 4 is divisibleby 2 }}",
    "{{ 'a' if messages else 'b' }}|{{ 'x' if false }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}",
    "{{ 'user' in messages[1].values() }} {{ 'role' in messages[0] }} {{ 'x' not in 'abc' }} "
    "{{ 2 in [1, 2] }}",
    "{{ messages[0]|tojson }}|{{ [1, 'é\n\"', none, true, 1.5]|tojson }}|"
    "{{ {'b': 1, 'a': {'c': []}}|tojson(indent=2) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}",
    "{% for k, v in messages[0].items() %}{{ k }}={{ v|trim }};{% endfor %}",
    "{{ messages|map(attribute='role')|join(', ') }}|"
    "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|"
    "{{ messages|rejectattr('role', 'eq', 'user')|map(attribute='role')|list }}",
    "{{ ['b', 'a', 'b']|unique|list }} {{ [3, 1, 2]|max }} {{ [3, 1, 2]|min }} "
    "{{ [1, 2, 3]|sum }} {{ 'abc'|reverse }} {{ [1, 2]|first }} {{ [1, 2]|last }}",
    "{{ 'Hello World'|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }} "
    "{{ 'a&b<c>'|e }} {{ '3'|int + 1 }} {{ 'x'|int }} {{ -3|abs }} {{ '2.5'|float }}",
    "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'x y  z'|wordcount }}",
    "{%- for m in messages -%}\n  {{- m.role -}}\n{%- endfor -%}\n",
    "  {% if true %}\n    yes\n  {% endif %}\n  {{ 'v' }}  \n{# comment #}\nend\n",
    "a {%+ if true %}b{% endif %} c\n{% if true +%}\nd{% endif %}",
    "{% raw %}{{ not evaluated }}{% endraw %}|{{ '{{' }}",
    "{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}"
    "{% for i in range(10) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% set t %}inner {{ messages|length }}{% endset %}[{{ t }}]",
    "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set d = dict(x=1) %}{{ d.x }}",
    "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}"
    "{{ loop.revindex }}{% endfor %}",
    "{{ '%s-%d' % ('a', 3) }} {{ 'x' ~ 1 ~ none }} {{ 'abc'[1] }} {{ 'héllo'[1:3] }}",
    "{{ messages[5].role }}",
    "{{ raise_exception('custom failure') }}",
    "{{ messages[0].content + 1 }}",
    "{% generation %}gen {{ 1 }}{% endgeneration %}",
    "{{ messages[0]['content'] is string }} {{ messages is sequence }} {{ {} is mapping }} "
    "{{ 1 is number }} {{ 1.0 is float }} {{ true is boolean }} {{ 'ABC' is upper }}",
]


def jinja_rows():
    from transformers.utils.chat_template_utils import render_jinja_template
    rows = []
    for tpl in JINJA_CASES:
        row = {"template": tpl}
        try:
            text, _ = render_jinja_template(conversations=[JINJA_MESSAGES], chat_template=tpl,
                                            bos_token="<s>")
            row["text"] = text[0]
        except Exception as e:
            row["error"] = type(e).__name__
        rows.append(row)
    return rows


# Edge cases against `tokenizers` beyond the corpus: Hangul jamo that NFC must not compose
# (U+11A7 is TBase, not a trailing consonant), and Split regexes written with Oniguruma
# escapes PCRE2 spells or reads differently (\uHHHH, \h, \H, \v, the inline option m).
HANGUL_TEXTS = ["\uac00\u11a7", "\uac01\u11a7x", "\u1100\u1161\u11a7", "\uac00\u11a8",
                "\u1100\u1161\u11a8", "\ud55c\uad6d\uc5b4\u11a7 \ud14d\uc2a4\ud2b8",
                "\u11a7", "\uac00\u11a7\u11a8", "\uac00\u11c2\u11a7", "e\u0301\u11a7\uac00"]
REGEX_TEXT = ("AB 12 zz\tq\u00e9x \u4e2d a\nb\x0b\x0c\r\u0085\u2028 G\u0660 \\u0041 aBc "
              "a.b A\nB")
REGEX_PATTERNS = [r"\u0041+", r"[\u0041-\u0043]+", r"\\u0041", r"a\u0042", r"\u00e9|\u4e2D",
                  r"[^\u0020\u000a]+", r"\uD83D|x", r"\h+", r"\H+", r"[\h]+", r"[^\h]+",
                  r"[a\H]+", r"\v", r"[\v\t]+", r"(?m)a.b", r"(?im:A.B)", r"(?-m)a.b", r"(?i)ab",
                  r"(?mi)a.b|\h", r"\x{41}\s", r"[\\]u"]


def case_rows():
    rows = []
    for name in ("qwen3", "tiny-split"):
        tok = Tokenizer.from_file(os.path.join(OUT, name, "tokenizer.json"))
        for text in HANGUL_TEXTS:
            rows.append({"tokenizer": name, "text": text,
                         "ids": tok.encode(text, add_special_tokens=False).ids})
    tok = Tokenizer.from_file(os.path.join(OUT, "tiny-split", "tokenizer.json"))
    for pat in REGEX_PATTERNS:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pat), behavior="removed"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        pre = json.loads(tok.to_str())["pre_tokenizer"]
        rows.append({"tokenizer": "tiny-split", "pre_tokenizer": pre, "text": REGEX_TEXT,
                     "ids": tok.encode(REGEX_TEXT, add_special_tokens=False).ids})
    return rows


def main():
    write_jsonl(os.path.join(OUT, "cases.jsonl"), case_rows())
    if sys.argv[1:] == ["--cases"]:  # the edge cases alone: no corpus, no retraining
        return 0
    write_jsonl(os.path.join(OUT, "jinja_cases.jsonl"), jinja_rows())
    corpus = generated_strings()
    corpus += debian_text(900)
    corpus += unicode_sweep()
    print(f"corpus: {len(corpus)} strings, {sum(len(s.encode()) for s in corpus)} bytes")
    write_jsonl(os.path.join(OUT, "corpus.jsonl"), corpus)

    train_texts = debian_text(400) + list(SCRIPTS.values()) + CODE
    for kind in ("tiny-bytelevel", "tiny-split"):
        os.makedirs(os.path.join(OUT, kind), exist_ok=True)
        tok = train_tiny(kind, train_texts)
        tok.save(os.path.join(OUT, kind, "tokenizer.json"), pretty=False)

    for name in ("qwen3", "deepseek-v3", "tiny-bytelevel", "tiny-split"):
        tok = Tokenizer.from_file(os.path.join(OUT, name, "tokenizer.json"))
        rows = expected_rows(tok, corpus)
        write_jsonl(os.path.join(OUT, name, "expected.jsonl"), rows)
        print(f"{name}: {sum(len(r.get('ids', [])) for r in rows)} ids")
        cfg_path = os.path.join(OUT, name, "tokenizer_config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
            if cfg.get("chat_template"):
                write_jsonl(os.path.join(OUT, name, "chat.jsonl"), chat_rows(name, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Serving load client: the official `openai` package (async) against a wideep-router (or
any OpenAI-compatible server), streaming chat completions at fixed concurrencies.

For each concurrency C it keeps C requests in flight until N have completed and reports
requests/s, output tokens/s, time to first token (TTFT) and inter-token latency (ITL,
the gaps between streamed chunks) at p50/p90/p99, and end-to-end latency. A mix may add
long prompts (--long-every K: every K-th request carries a prompt of --long-words words)
to show what prefill load does to ITL.

Usage: serving_bench.py --base-url http://127.0.0.1:PORT/v1 --model NAME
           [--concurrency 1,8,32] [--requests 64] [--max-tokens 64] [--long-every 0]
Needs: pip install openai (a benchmark: CI never runs it).
"""
import argparse
import asyncio
import statistics
import time

from openai import AsyncOpenAI

WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls count the stars "
         "above an old stone bridge").split()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


async def one(client, model, prompt, max_tokens, out):
    t0 = time.perf_counter()
    first, last, gaps, n = None, None, [], 0
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
        temperature=0.7, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    usage = None
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices or not chunk.choices[0].delta.content:
            continue
        if first is None:
            first = now
        else:
            gaps.append(now - last)
        last = now
        n += 1
    t1 = time.perf_counter()
    out.append({"ttft": (first or t1) - t0, "gaps": gaps, "e2e": t1 - t0,
                "tokens": usage.completion_tokens if usage else n})


async def run_level(client, args, c):
    out, queue = [], asyncio.Queue()
    for i in range(args.requests):
        words = args.long_words if args.long_every and i % args.long_every == 0 else 12
        queue.put_nowait(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(words)))

    async def worker():
        while not queue.empty():
            prompt = queue.get_nowait()
            await one(client, args.model, prompt, args.max_tokens, out)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    wall = time.perf_counter() - t0
    ttft = [o["ttft"] * 1000 for o in out]
    itl = [g * 1000 for o in out for g in o["gaps"]]
    e2e = [o["e2e"] * 1000 for o in out]
    toks = sum(o["tokens"] for o in out)
    print(f"| {c} | {len(out)} | {len(out) / wall:.2f} | {toks / wall:.1f} | "
          f"{pct(ttft, 50):.1f} / {pct(ttft, 90):.1f} / {pct(ttft, 99):.1f} | "
          f"{pct(itl, 50):.1f} / {pct(itl, 90):.1f} / {pct(itl, 99):.1f} | "
          f"{statistics.median(e2e):.0f} |", flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--api-key", default="none")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--long-every", type=int, default=0)
    ap.add_argument("--long-words", type=int, default=400)
    args = ap.parse_args()
    client = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0,
                         timeout=600)
    await one(client, args.model, "warm up", 4, [])
    print("| concurrency | requests | req/s | out tok/s | TTFT ms p50/p90/p99 | "
          "ITL ms p50/p90/p99 | e2e ms p50 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in [int(x) for x in args.concurrency.split(",")]:
        await run_level(client, args, c)


if __name__ == "__main__":
    asyncio.run(main())

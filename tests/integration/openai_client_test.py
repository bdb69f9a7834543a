#!/usr/bin/env python3
"""The official `openai` client against a wideep router (or any OpenAI-compatible base URL).

    python3 openai_client_test.py --base-url http://127.0.0.1:30000/v1 [--api-key KEY]
        [--model NAME] [--null-worker] [--only NAME[,NAME...]]

Checks chat and completions, streaming and not, stop strings, logprobs, usage, and that
the error cases raise the client's exception classes (BadRequestError, NotFoundError,
AuthenticationError, RateLimitError, APIStatusError for 413). Output checks hold for any
model; --null-worker adds the exact-text checks that rely on tests/bench's null worker
(it answers with the prompt's own tokens again). rate_limit and no_worker need a router set
up for them (see test_router_openai.sh) and run only when named in --only.
Exit 0 when every check passed.
"""
import argparse
import sys
import threading
import time

import openai

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


class Ctx:
    def __init__(self, args):
        self.args = args
        self.client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key or "none",
                                    max_retries=0, timeout=60)
        self.model = args.model


def expect_raises(cls, fn, status=None):
    try:
        fn()
    except cls as e:
        if status is not None:
            assert e.status_code == status, f"status {e.status_code}, want {status}"
        body = getattr(e, "body", None)
        assert isinstance(body, dict) and body.get("message"), f"no error body: {body!r}"
        return e
    except Exception as e:  # the wrong class
        raise AssertionError(f"raised {type(e).__name__}: {e}, want {cls.__name__}")
    raise AssertionError(f"no {cls.__name__} raised")


def msgs(text="Hello world, how are you"):
    return [{"role": "user", "content": text}]


@check
def models(c):
    ids = [m.id for m in c.client.models.list().data]
    assert c.model in ids, ids


@check
def chat(c):
    r = c.client.chat.completions.create(model=c.model, messages=msgs(), max_tokens=8,
                                         temperature=0)
    ch = r.choices[0]
    assert r.object == "chat.completion" and ch.message.role == "assistant"
    assert isinstance(ch.message.content, str)
    assert ch.finish_reason in ("stop", "length"), ch.finish_reason
    u = r.usage
    assert 0 < u.completion_tokens <= 8 and u.prompt_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if c.args.null_worker:
        assert ch.finish_reason == "length" and u.completion_tokens == 8
        full = "user\nHello world, how are you"
        assert full.startswith(ch.message.content) and ch.message.content, ch.message.content


@check
def chat_stream(c):
    whole = c.client.chat.completions.create(model=c.model, messages=msgs(), max_tokens=8,
                                             temperature=0, seed=1)
    chunks = list(c.client.chat.completions.create(
        model=c.model, messages=msgs(), max_tokens=8, temperature=0, seed=1, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks
                if ch.choices and ch.choices[0].finish_reason]
    assert len(finishes) == 1, finishes
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(ch.usage is None for ch in chunks[:-1])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)


@check
def completion(c):
    r = c.client.completions.create(model=c.model, prompt="Hello world, how are you",
                                    max_tokens=6, temperature=0)
    ch = r.choices[0]
    assert r.object == "text_completion" and isinstance(ch.text, str)
    assert 0 < r.usage.completion_tokens <= 6
    if c.args.null_worker:
        assert "Hello world, how are you".startswith(ch.text) and ch.text, repr(ch.text)


@check
def completion_stream(c):
    whole = c.client.completions.create(model=c.model, prompt="Hello world", max_tokens=6,
                                        temperature=0)
    parts = list(c.client.completions.create(model=c.model, prompt="Hello world", max_tokens=6,
                                             temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) == whole.choices[0].text
    assert parts[-1].choices[0].finish_reason in ("stop", "length")


@check
def stop(c):
    prompt = "Hello world, how are you"
    r = c.client.completions.create(model=c.model, prompt=prompt, max_tokens=20, temperature=0,
                                    stop=["how", "xyz"])
    ch = r.choices[0]
    assert "how" not in ch.text and "xyz" not in ch.text, ch.text
    if c.args.null_worker:
        assert ch.text == "Hello world, " and ch.finish_reason == "stop", (ch.text, ch)
    chunks = list(c.client.chat.completions.create(model=c.model, messages=msgs(prompt),
                                                   max_tokens=20, temperature=0, stop="how",
                                                   stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "how" not in text, text
    if c.args.null_worker:
        assert text == "user\nHello world, ", repr(text)


@check
def logprobs(c):
    r = c.client.chat.completions.create(model=c.model, messages=msgs(), max_tokens=5,
                                         temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens, (len(content), r.usage)
    for t in content:
        assert isinstance(t.token, str) and t.logprob <= 0 and 1 <= len(t.top_logprobs) <= 2
        assert t.bytes is not None
    r = c.client.completions.create(model=c.model, prompt="Hello world", max_tokens=4,
                                    temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == r.usage.completion_tokens
    assert all(len(d) <= 2 for d in lp.top_logprobs)
    assert lp.text_offset[0] == 0


@check
def bad_requests(c):
    e = expect_raises(openai.BadRequestError, lambda: c.client.chat.completions.create(
        model=c.model, messages=msgs(), n=2), 400)
    assert e.body.get("param") == "n", e.body
    expect_raises(openai.BadRequestError, lambda: c.client.chat.completions.create(
        model=c.model, messages=msgs(), max_tokens=4, extra_body={"no_such_option": 1}), 400)
    expect_raises(openai.BadRequestError, lambda: c.client.chat.completions.create(
        model=c.model, messages=msgs(), tools=[{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {}}}}]), 400)
    expect_raises(openai.BadRequestError, lambda: c.client.completions.create(
        model=c.model, prompt="x", max_tokens=10 ** 7), 400)
    expect_raises(openai.BadRequestError, lambda: c.client.chat.completions.create(
        model=c.model, messages=msgs(), temperature=-1), 400)


@check
def not_found(c):
    expect_raises(openai.NotFoundError, lambda: c.client.chat.completions.create(
        model="no-such-model", messages=msgs(), max_tokens=2), 404)
    expect_raises(openai.NotFoundError, lambda: c.client.models.retrieve(c.model), 404)


@check
def too_large(c):
    if not c.args.max_body_bytes:
        return "skipped (no --max-body-bytes)"
    e = expect_raises(openai.APIStatusError, lambda: c.client.completions.create(
        model=c.model, prompt="a" * (int(c.args.max_body_bytes) + 10), max_tokens=1), 413)
    assert e.status_code == 413


@check
def authentication(c):
    if not c.args.api_key:
        return "skipped (no --api-key)"
    bad = openai.OpenAI(base_url=c.args.base_url, api_key="wrong", max_retries=0)
    expect_raises(openai.AuthenticationError, lambda: bad.chat.completions.create(
        model=c.model, messages=msgs(), max_tokens=2), 401)


def rate_limit(c):
    """Needs a router with one slot, no queue and a slow worker."""
    holder = threading.Thread(target=lambda: list(c.client.completions.create(
        model=c.model, prompt="Hello", max_tokens=30, stream=True)))
    holder.start()
    time.sleep(1.0)
    e = expect_raises(openai.RateLimitError, lambda: c.client.completions.create(
        model=c.model, prompt="Hi", max_tokens=2), 429)
    assert e.response.headers.get("retry-after"), dict(e.response.headers)
    holder.join()


def no_worker(c):
    """Needs a router with no worker registered."""
    expect_raises(openai.InternalServerError, lambda: c.client.chat.completions.create(
        model=c.model, messages=msgs(), max_tokens=2), 503)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--model", default=None, help="default: the first of /v1/models")
    ap.add_argument("--null-worker", action="store_true")
    ap.add_argument("--max-body-bytes", default="",
                    help="the router's --max-body-bytes: checks the 413 (skipped without)")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    ctx = Ctx(args)
    if ctx.model is None:
        ctx.model = ctx.client.models.list().data[0].id
    todo = CHECKS
    if args.only:
        extra = {"rate_limit": rate_limit, "no_worker": no_worker}
        names = args.only.split(",")
        todo = [extra.get(n) or next(f for f in CHECKS if f.__name__ == n) for n in names]
    failed = 0
    for fn in todo:
        try:
            note = fn(ctx)
            print(f"ok   {fn.__name__}" + (f" ({note})" if note else ""))
        except Exception as e:
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
    print(f"{len(todo) - failed} passed, {failed} failed (openai {openai.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""HTTP clients for the serving tests (standard library only).

greedy URL FILE N              one /generate per line of FILE (input ids "1,2,3"), greedy,
                               N new tokens, ignore_eos; prints the output ids per line
concurrent URL FILE N C        C streaming /v1/completions at once over the prompts of
                               FILE (cycled); checks each ends with [DONE] and that its text
                               equals the non-streaming greedy text of its prompt
disconnect URL N               starts a streaming request of N tokens, reads until the
                               first token, closes the socket
stream URL N OUT               one streaming chat request of N tokens; every SSE line to
                               OUT (flushed as it comes), exit 0 when the stream ends
"""
import http.client
import json
import sys
import threading
import urllib.parse


def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def post(url, path, body):
    c = conn(url)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def read_prompts(path):
    return [[int(x) for x in line.split(",")] for line in open(path) if line.strip()]


def greedy(url, path, n):
    for ids in read_prompts(path):
        out = post(url, "/generate", {"input_ids": ids, "sampling_params": {
            "max_new_tokens": n, "temperature": 0, "ignore_eos": True}})
        print(json.dumps(out["output_ids"]))


def stream_completion(url, ids, n):
    c = conn(url)
    body = {"prompt": ids, "max_tokens": n, "temperature": 0, "ignore_eos": True,
            "stream": True}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}")
    text, done = "", False
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            break
        ev = json.loads(line[6:])
        if "error" in ev:
            raise RuntimeError(f"error event: {ev}")
        text += ev["choices"][0]["text"]
    c.close()
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    return text


def concurrent(url, path, n, c):
    prompts = read_prompts(path)
    want = []
    for ids in prompts:
        out = post(url, "/v1/completions", {"prompt": ids, "max_tokens": n, "temperature": 0,
                                            "ignore_eos": True})
        want.append(out["choices"][0]["text"])
    errors, got = [], [None] * c

    def one(i):
        try:
            got[i] = stream_completion(url, prompts[i % len(prompts)], n)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"request {i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    bad = [i for i in range(c) if got[i] != want[i % len(prompts)]]
    if errors or bad:
        print("\n".join(errors[:5]), file=sys.stderr)
        for i in bad[:3]:
            print(f"request {i}: got {got[i]!r}, want {want[i % len(prompts)]!r}", file=sys.stderr)
        sys.exit(1)
    print(f"{c} streams complete and correct")


def disconnect(url, n):
    c = conn(url)
    body = {"prompt": "Once upon a time", "max_tokens": n, "ignore_eos": True, "stream": True}
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    # Leave once tokens flow (the worker holds the request), not at a first empty event.
    for raw in r:
        if raw.startswith(b"data: {") and json.loads(raw[6:])["choices"][0].get("text"):
            break
    c.sock.close()
    print("disconnected after the first token")


def stream(url, n, out):
    c = conn(url)
    body = {"messages": [{"role": "user", "content": "Tell me a long story"}], "max_tokens": n,
            "ignore_eos": True, "stream": True}
    c.request("POST", "/v1/chat/completions", json.dumps(body),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    with open(out, "w") as f:
        f.write(f"status {r.status}\n")
        f.flush()
        for raw in r:
            f.write(raw.decode())
            f.flush()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "greedy":
        greedy(args[0], args[1], int(args[2]))
    elif cmd == "concurrent":
        concurrent(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "disconnect":
        disconnect(args[0], int(args[1]))
    elif cmd == "stream":
        stream(args[0], int(args[1]), args[2])
    else:
        sys.exit(f"unknown command {cmd}")

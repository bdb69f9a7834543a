#!/usr/bin/env bash
# wideep-router over HTTP with a null worker (tests/bench/null_worker.c): every endpoint
# answers in its shape, every error in OpenAI's ({"error": {...}}) with the right status:
# 503 without a worker, 404, 405, 401 with --api-key, 400 for malformed and unsupported
# bodies, 413 for an oversized body (by Content-Length and while a chunked body is read),
# 429 + Retry-After when the queue is full; garbage frames on the worker port are logged
# and refused while the router keeps serving.
. "$(dirname "$0")/router_lib.sh"

status() { # method path [curl args...] -> prints the HTTP status
    local m=$1 p=$2
    shift 2
    curl -s -o "$RL_TMP/body" -D "$RL_TMP/headers" -w '%{http_code}' -X "$m" "$RL_URL$p" "$@"
}
body_has() { grep -qE -- "$1" "$RL_TMP/body"; }
header_has() { grep -qiE -- "$1" "$RL_TMP/headers"; }
is_openai_error() { # the body is {"error": {"message", "type", "param", "code"}}
    python3 -c "import json,sys;e=json.load(open('$RL_TMP/body'))['error'];\
assert set(e)=={'message','type','param','code'} and e['message'];\
assert ('$1'=='' and e['param'] is None) or e['param']=='$1'" 2>/dev/null
}

CHAT='{"messages":[{"role":"user","content":"Hello world, how are you"}],"max_tokens":6}'

RL_KEY=sekret
rl_start_router r --api-key sekret --max-body-bytes 4096 || exit 1
AUTH=(-H "Authorization: Bearer sekret")

# Before any worker: 503 with Retry-After, in OpenAI's shape.
rl_check "503 without a worker" [ "$(status POST /v1/chat/completions "${AUTH[@]}" -d "$CHAT")" = 503 ]
rl_check "503 body names the cause" body_has "no compatible worker"
rl_check "503 is OpenAI-shaped" is_openai_error ""
rl_check "503 has Retry-After" header_has '^Retry-After: [0-9]+'

# Auth: /health and /metrics are open; the rest need the key.
rl_check "401 without a key" [ "$(status POST /v1/completions -d '{"prompt":"a"}')" = 401 ]
rl_check "401 is OpenAI-shaped" is_openai_error ""
rl_check "401 with a wrong key" \
    [ "$(status GET /v1/models -H 'Authorization: Bearer nope')" = 401 ]
rl_check "/health needs no key" [ "$(status GET /health)" = 200 ]
rl_check "/metrics needs no key" [ "$(status GET /metrics)" = 200 ]
rl_check "/metrics has wideep: families" body_has '^# TYPE wideep:router_requests_total counter'

# Routing errors.
rl_check "404 unknown path" [ "$(status GET /v2/nothing "${AUTH[@]}")" = 404 ]
rl_check "404 is OpenAI-shaped" is_openai_error ""
rl_check "405 wrong method" [ "$(status GET /v1/chat/completions "${AUTH[@]}")" = 405 ]
rl_check "405 says Allow: POST" header_has '^Allow: POST'

# Bodies.
rl_check "400 malformed JSON" [ "$(status POST /v1/chat/completions "${AUTH[@]}" -d '{"messages":')" = 400 ]
rl_check "400 is OpenAI-shaped" is_openai_error ""
rl_check "400 n=2 names n" \
    [ "$(status POST /v1/chat/completions "${AUTH[@]}" -d '{"messages":[{"role":"user","content":"x"}],"n":2}')" = 400 ]
rl_check "400 n=2 param" is_openai_error n
rl_check "400 tools names tools" \
    [ "$(status POST /v1/chat/completions "${AUTH[@]}" -d '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}')" = 400 ]
rl_check "400 tools param" is_openai_error tools
rl_check "404 unknown model" \
    [ "$(status POST /v1/completions "${AUTH[@]}" -d '{"prompt":"x","model":"gpt-9"}')" = 404 ]
big=$(python3 -c "print('{\"prompt\": \"' + 'a' * 5000 + '\"}')")
rl_check "413 by Content-Length" \
    [ "$(status POST /v1/completions "${AUTH[@]}" -d "$big")" = 413 ]
rl_check "413 is OpenAI-shaped" is_openai_error ""
rl_check "413 while reading a chunked body" \
    [ "$(status POST /v1/completions "${AUTH[@]}" -H 'Transfer-Encoding: chunked' -d "$big")" = 413 ]
# A Content-Length far over the cap is answered at once, without waiting for the body.
rl_check "a Content-Length 100 MB over the cap: 413 at once, body unread" python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)
s.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n'
          b'Content-Length: 100000000\r\n\r\n{\"prompt\"')
assert s.recv(4096).startswith(b'HTTP/1.1 413')" "$RL_HTTP"
rl_check "prompt over the context is 400" \
    [ "$(status POST /v1/completions "${AUTH[@]}" -d '{"prompt":"hi","max_tokens":600}')" = 400 ]
rl_check "context error names max_tokens" is_openai_error max_tokens

# A worker joins (after some garbage frames): everything answers.
rl_start_worker w1 --garbage 3 --token-interval-ms 20
rl_check "worker registers after garbage" rl_wait_workers 1
rl_check "garbage frames are logged" rl_wait_log "$RL_TMP/r.log" "refused a frame from w1"
rl_check "the sender is told" rl_wait_log "$RL_TMP/w1.wlog" "error 0 format: refused frame"

rl_check "chat 200" [ "$(status POST /v1/chat/completions "${AUTH[@]}" -d "$CHAT")" = 200 ]
rl_check "chat shape" python3 -c "import json;r=json.load(open('$RL_TMP/body'));\
c=r['choices'][0];assert r['object']=='chat.completion' and c['message']['role']=='assistant';\
assert c['finish_reason']=='length' and r['usage']['completion_tokens']==6;\
assert r['usage']['total_tokens']==r['usage']['prompt_tokens']+6"
rl_check "completion with a stop string" \
    [ "$(status POST /v1/completions "${AUTH[@]}" -d '{"prompt":"Hello world, how are you","max_tokens":12,"stop":["how"]}')" = 200 ]
rl_check "stop string cut, not returned" python3 -c "import json;r=json.load(open('$RL_TMP/body'));\
c=r['choices'][0];assert c['text']=='Hello world, ',c;assert c['finish_reason']=='stop' and c['matched_stop']=='how'"
rl_check "/generate 200" \
    [ "$(status POST /generate "${AUTH[@]}" -d '{"text":"Hello","sampling_params":{"max_new_tokens":3}}')" = 200 ]
rl_check "/generate shape" python3 -c "import json;r=json.load(open('$RL_TMP/body'));\
m=r['meta_info'];assert isinstance(r['text'],str) and len(r['output_ids'])==3;\
assert m['finish_reason']=={'type':'length','length':3} and m['completion_tokens']==3 and 'e2e_latency' in m"
rl_check "stream ends with [DONE]" bash -c "curl -sN '$RL_URL/v1/chat/completions' \
    -H 'Authorization: Bearer sekret' -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\
\"max_tokens\":4,\"stream\":true}' | tail -2 | grep -q '^data: \[DONE\]'"
rl_check "/v1/models" [ "$(status GET /v1/models "${AUTH[@]}")" = 200 ]
rl_check "/v1/models lists the model" body_has '"object":"list"'
rl_check "/health_generate" [ "$(status GET /health_generate "${AUTH[@]}")" = 200 ]
rl_check "/get_model_info" [ "$(status GET /get_model_info "${AUTH[@]}")" = 200 ]
rl_check "/get_server_info" [ "$(status GET /get_server_info "${AUTH[@]}")" = 200 ]
rl_check "/workers lists w1" bash -c "[ \"\$(curl -s '$RL_URL/workers' -H 'Authorization: Bearer sekret' |
    python3 -c 'import json,sys;print(json.load(sys.stdin)[\"workers\"][0][\"instance_id\"])')\" = w1 ]"
rl_check "metrics count successes" bash -c "curl -s '$RL_URL/metrics' |
    grep -qE '^wideep:router_requests_total\{outcome=\"success\"\} [1-9]'"
rl_check "metrics count the bad frames" bash -c "curl -s '$RL_URL/metrics' |
    grep -qE '^wideep:router_bad_worker_frames_total [1-9]'"
# 64 concurrent streams (the worker interleaves their tokens): each one complete and right.
streams=()
for i in $(seq 64); do
    curl -sN --max-time 30 "$RL_URL/v1/completions" "${AUTH[@]}" \
        -d '{"prompt":"Hello world, how are you","max_tokens":10,"stream":true}' \
        >"$RL_TMP/s$i" &
    streams+=($!)
done
wait "${streams[@]}" # (a bare wait would wait for the router too)
rl_check "64 concurrent streams all end with [DONE]" \
    [ "$(grep -l '^data: \[DONE\]' "$RL_TMP"/s[0-9]* | wc -l)" = 64 ]
rl_check "and each has the whole text" python3 -c "
import json,glob
texts=set()
for f in glob.glob('$RL_TMP/s[0-9]*'):
    ev=[json.loads(l[6:]) for l in open(f) if l.startswith('data: {')]
    texts.add(''.join(e['choices'][0]['text'] for e in ev if e['choices']))
assert len(texts)==1, texts
t=texts.pop(); assert 'Hello world, how are you'.startswith(t) and len(t)>10, t"
rl_stop "$RL_RPID"
RL_KEY=

# 429 + Retry-After: one slot, no queue, a slow worker holding the slot.
rl_start_router q --max-concurrent-requests 1 --queue-size 0 --retry-after-secs 3 || exit 1
rl_start_worker w2 --token-interval-ms 100
rl_wait_workers 1
curl -sN "$RL_URL/v1/completions" -d '{"prompt":"Hello","max_tokens":20,"stream":true}' \
    >"$RL_TMP/slow" &
slow=$!
rl_wait_log "$RL_TMP/w2.wlog" "^generate" 50
rl_check "429 when the queue is full" \
    [ "$(status POST /v1/completions -d '{"prompt":"Hi","max_tokens":2}')" = 429 ]
rl_check "429 has Retry-After: 3" header_has '^Retry-After: 3'
rl_check "429 is OpenAI-shaped" is_openai_error ""
wait $slow
rl_check "the slow request completed" grep -q '^data: \[DONE\]' "$RL_TMP/slow"
rl_check "200 again once the slot is free" \
    [ "$(status POST /v1/completions -d '{"prompt":"Hi","max_tokens":2}')" = 200 ]
rl_stop "$RL_RPID"
rl_finish

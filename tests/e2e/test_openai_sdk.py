"""The official `openai` SDK against `keel serve`: completions, streams, tools, and every
error class mapped to the exception (and status) the SDK raises for it."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from conftest import (
    ANTHROPIC_BACKED,
    FAST_TIMEOUT,
    PRICED,
    UNPRICED,
    cost_nanos,
    dollars,
    mock_prompt_tokens,
    mock_tokens,
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture()
def client(live_gateway):
    # max_retries=0: every error must reach the test as the gateway sent it.
    with openai.OpenAI(base_url=live_gateway.openai_base, api_key="unused", max_retries=0, timeout=30.0) as c:
        yield c


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# --- success paths ---------------------------------------------------------------------


def test_models_are_listed(client):
    ids = sorted(m.id for m in client.models.list())
    assert ids == sorted([PRICED, FAST_TIMEOUT, UNPRICED, ANTHROPIC_BACKED])


def test_chat_completion_content_usage_and_keel_headers(client):
    raw = client.chat.completions.with_raw_response.create(model=PRICED, messages=[user("Say hello")])
    assert raw.status_code == 200
    completion = raw.parse()

    reply = "Mock reply to: Say hello"
    assert completion.choices[0].message.content == reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "mock-1"
    prompt, output = mock_prompt_tokens("Say hello"), mock_tokens(reply)
    assert (prompt, output) == (6, 6)
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.completion_tokens == output
    assert completion.usage.total_tokens == prompt + output

    assert UUID_RE.match(raw.headers["x-keel-request-id"]), raw.headers["x-keel-request-id"]
    # 6 × $0.15/M + 6 × $0.60/M = $0.0000045, exactly.
    assert raw.headers["x-keel-cost-usd"] == dollars(cost_nanos(prompt, output)) == "0.0000045"


def test_caller_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model=PRICED, messages=[user("echo my id")], extra_headers={"x-keel-request-id": "e2e-openai-echo-1"}
    )
    assert raw.headers["x-keel-request-id"] == "e2e-openai-echo-1"


def test_unpriced_model_has_no_cost_header(client):
    raw = client.chat.completions.with_raw_response.create(model=UNPRICED, messages=[user("What does this cost?")])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Mock reply to: What does this cost?"
    assert completion.model == "house-model-v1"
    assert completion.usage.completion_tokens == mock_tokens("Mock reply to: What does this cost?")
    # Unpriced is never $0: no cost header at all.
    assert "x-keel-cost-usd" not in raw.headers


def _stream_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_with_include_usage(client):
    text = "Count the chunks of this streamed reply please"
    stream = client.chat.completions.create(
        model=PRICED, messages=[user(text)], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    reply = f"Mock reply to: {text}"
    assert _stream_text(chunks) == reply
    assert len(chunks) >= 3, "role chunk, content chunks, usage chunk"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == mock_prompt_tokens(text)
    assert last.usage.completion_tokens == mock_tokens(reply)
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_stream_without_include_usage_has_no_usage_chunk(client):
    text = "A stream that did not ask for usage"
    stream = client.chat.completions.create(model=PRICED, messages=[user(text)], stream=True)
    chunks = list(stream)
    assert _stream_text(chunks) == f"Mock reply to: {text}"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "no usage-only chunk (empty choices) was asked for"


def test_tool_call_round_trip(client):
    first = client.chat.completions.create(
        model=PRICED,
        messages=[user("What is the weather in Paris? [mock:tool=get_weather]")],
        tools=[WEATHER_TOOL],
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content in (None, "")
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "celsius"}
    assert call.id

    second = client.chat.completions.create(
        model=PRICED,
        messages=[
            user("What is the weather in Paris? [mock:tool=get_weather]"),
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Tool result received: Sunny, 21 C"
    assert not second.choices[0].message.tool_calls


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(
        model=PRICED,
        messages=[user("Weather in Oslo? [mock:tool=get_weather]")],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    name, args, finish = "", "", None
    for c in stream:
        for ch in c.choices:
            for tc in ch.delta.tool_calls or []:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = ch.finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "mock", "unit": "celsius"}
    assert finish == "tool_calls"


def test_unknown_fields_in_extra_body_are_accepted(client):
    completion = client.chat.completions.create(
        model=PRICED,
        messages=[user("extra fields")],
        extra_body={"keel_e2e_unknown": {"nested": [1, 2]}, "presence_penalty": 0.1, "logit_bias": {}},
    )
    assert completion.choices[0].message.content == "Mock reply to: extra fields"


def test_max_tokens_truncates_with_finish_reason_length(client):
    completion = client.chat.completions.create(model=PRICED, messages=[user("one two three four five")], max_tokens=3)
    assert completion.choices[0].message.content == "Mock reply to"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


# --- errors ----------------------------------------------------------------------------


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=[user("hi")])
    e = ei.value
    assert e.status_code == 404
    assert "no-such-model" in e.message
    assert e.code == "model_not_found"
    assert e.type == "invalid_request_error"
    assert e.response.headers.get("x-keel-request-id")


def test_empty_messages_is_bad_request_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=PRICED, messages=[])
    assert ei.value.status_code == 400
    assert "`messages`" in ei.value.message
    assert ei.value.type == "invalid_request_error"


def test_out_of_range_temperature_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=PRICED, messages=[user("hot")], temperature=7)
    assert ei.value.status_code == 400
    assert "`temperature`" in ei.value.message


def test_invalid_field_via_client_post_names_the_path(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.post(
            "/chat/completions",
            cast_to=httpx.Response,
            body={"model": PRICED, "messages": [{"role": "robot", "content": "beep"}]},
        )
    assert ei.value.status_code == 400
    assert "messages[0].role" in ei.value.message
    assert "robot" in ei.value.message

    with pytest.raises(openai.BadRequestError) as ei:
        client.post("/chat/completions", cast_to=httpx.Response, body={"model": PRICED, "messages": "hi"})
    assert "`messages`" in ei.value.message


def _raw_post(gw, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{gw.openai_base}/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30.0,
    )


def test_malformed_json_is_400(live_gateway):
    r = _raw_post(live_gateway, b'{"model": "mock-1", "messages": [')
    assert r.status_code == 400
    err = r.json()["error"]
    assert "not valid JSON" in err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_request"
    assert r.headers.get("x-keel-request-id")


def test_invalid_utf8_is_400(live_gateway):
    r = _raw_post(live_gateway, b'{"model": "mock-1", "messages": [{"role": "user", "content": "\xff\xfe"}]}')
    assert r.status_code == 400
    assert "UTF-8" in r.json()["error"]["message"]


def test_ten_megabyte_body_is_413(live_gateway):
    big = json.dumps({"model": PRICED, "messages": [user("x" * (10 * 1024 * 1024))]}).encode()
    r = _raw_post(live_gateway, big)
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["code"] == "body_too_large"
    assert "max_body_bytes" in err["message"]


def test_upstream_429_is_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=PRICED, messages=[user("slow down [mock:status=429]")])
    e = ei.value
    assert e.status_code == 429
    assert "injected 429" in e.message, "the upstream's own message passes through"
    assert e.code == "rate_limit_exceeded"
    assert e.response.headers.get("retry-after") == "1"


def test_upstream_500_is_502_internal_server_error(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=PRICED, messages=[user("break [mock:status=500]")])
    e = ei.value
    assert e.status_code == 502
    assert "upstream returned 500" in e.message
    assert "injected 500" in e.message


def test_upstream_timeout_is_504(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=FAST_TIMEOUT, messages=[user("hang [mock:timeout]")])
    e = ei.value
    assert e.status_code == 504
    assert "timed out" in e.message
    assert e.code == "upstream_timeout"


def test_upstream_garbage_is_502(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=PRICED, messages=[user("nonsense [mock:garbage]")])
    e = ei.value
    assert e.status_code == 502
    assert e.code == "upstream_invalid_response"


def test_stream_cut_midway_ends_with_an_error_event(client):
    whole = client.chat.completions.create(model=PRICED, messages=[user("Tell me a long story [mock:tokens=24]")])
    full_text = whole.choices[0].message.content
    assert mock_tokens(full_text) == 24

    stream = client.chat.completions.create(
        model=PRICED,
        messages=[user("Tell me a long story [mock:tokens=24] [mock:cut]")],
        stream=True,
        stream_options={"include_usage": True},
    )
    received = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            received.append(chunk)
    # The stream had started (HTTP 200, some content), then Keel sent an OpenAI error
    # event (`data: {"error": ...}`), which the SDK raises.
    assert not isinstance(ei.value, openai.APIStatusError)
    assert "cut" in ei.value.message
    assert ei.value.body["code"] == "upstream_stream_cut"
    partial = _stream_text(received)
    assert partial and full_text.startswith(partial) and partial != full_text
    assert all(c.usage is None for c in received)


def test_stream_cut_on_the_wire(live_gateway):
    """The same cut, as bytes: 200, content events, one error event last, no [DONE]."""
    body = {
        "model": PRICED,
        "stream": True,
        "messages": [user("Tell me a long story [mock:tokens=24] [mock:cut]")],
    }
    r = httpx.post(f"{live_gateway.openai_base}/chat/completions", json=body, timeout=30.0)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events), events
    assert "data: [DONE]" not in events
    last = json.loads(events[-1][len("data: "):])
    assert set(last) == {"error"}
    assert last["error"]["type"] == "upstream_error"
    assert last["error"]["code"] == "upstream_stream_cut"
    assert all("error" not in json.loads(e[len("data: "):]) for e in events[:-1])


def test_gateway_still_serves_after_errors(client, live_gateway):
    completion = client.chat.completions.create(model=PRICED, messages=[user("still alive?")])
    assert completion.choices[0].message.content == "Mock reply to: still alive?"
    health = httpx.get(f"{live_gateway.url}/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["models"] == 4


# --- OpenAI SDK → Keel → Anthropic upstream ---------------------------------------------


def test_openai_sdk_to_anthropic_provider(client):
    raw = client.chat.completions.with_raw_response.create(
        model=ANTHROPIC_BACKED, messages=[{"role": "system", "content": "Be brief."}, user("Translate me")]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Mock reply to: Translate me"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == mock_tokens("Mock reply to: Translate me")
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-keel-cost-usd"] == dollars(
        cost_nanos(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    )


def test_openai_sdk_stream_to_anthropic_provider(client):
    stream = client.chat.completions.create(
        model=ANTHROPIC_BACKED, messages=[user("Stream through Anthropic")], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert _stream_text(chunks) == "Mock reply to: Stream through Anthropic"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == mock_tokens("Mock reply to: Stream through Anthropic")


def test_upstream_429_through_anthropic_provider(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=ANTHROPIC_BACKED, messages=[user("[mock:status=429] slow")])
    assert ei.value.status_code == 429
    assert "injected 429" in ei.value.message


# --- /metrics --------------------------------------------------------------------------


def _metrics(gw) -> dict[tuple[str, frozenset], float]:
    r = httpx.get(f"{gw.url}/metrics", timeout=5)
    assert r.status_code == 200
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def _metric(snapshot, name: str, **labels) -> float:
    return snapshot.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_with_requests(client, live_gateway):
    before = _metrics(live_gateway)
    client.chat.completions.create(model=UNPRICED, messages=[user("metered")])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=PRICED, messages=[user("[mock:status=429]")])
    after = _metrics(live_gateway)

    unpriced = "keel_unpriced_requests_total"
    assert _metric(after, unpriced, model=UNPRICED) == _metric(before, unpriced, model=UNPRICED) + 1
    errors = "keel_errors_total"
    labels = {"model": PRICED, "class": "upstream_rate_limit"}
    assert _metric(after, errors, **labels) == _metric(before, errors, **labels) + 1
    out_tokens = "keel_tokens_total"
    tok = {"model": UNPRICED, "kind": "output"}
    assert _metric(after, out_tokens, **tok) == _metric(before, out_tokens, **tok) + mock_tokens("Mock reply to: metered")
    # Every request so far has finished (errors, cuts and disconnects included).
    assert after[("keel_requests_in_flight", frozenset())] == 0


def test_embeddings_create_gets_the_mocks_vectors_in_either_encoding(client):
    # The SDK asks for base64 by default and decodes it; float must give the same vectors.
    texts = ["the cat sat", "on the mat"]
    default = client.embeddings.create(model=PRICED, input=texts)
    floats = client.embeddings.create(model=PRICED, input=texts, encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 64
    for a, b in zip(default.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    norm = sum(x * x for x in floats.data[0].embedding) ** 0.5
    assert norm == pytest.approx(1.0, abs=1e-4)
    assert default.usage.prompt_tokens == sum(mock_tokens(t) for t in texts)
    small = client.embeddings.create(model=PRICED, input="the cat sat", dimensions=8)
    assert len(small.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=PRICED, input=[])
    assert "empty" in str(e.value)

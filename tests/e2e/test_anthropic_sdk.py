"""The official `anthropic` SDK against Keel's `POST /v1/messages`: whole replies,
streams, a tool-use round trip and errors. The model behind it (`mock-1`) sits on an
OpenAI-compatible provider, so each call is translated Anthropic → canonical → back."""

from __future__ import annotations

import anthropic
import pytest

from conftest import ANTHROPIC_BACKED, PRICED, cost_nanos, dollars, mock_prompt_tokens, mock_tokens

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture()
def client(live_gateway):
    # The SDK appends /v1/messages itself.
    with anthropic.Anthropic(base_url=live_gateway.url, api_key="unused", max_retries=0, timeout=30.0) as c:
        yield c


def test_messages_create_text_and_usage(client):
    raw = client.messages.with_raw_response.create(
        model=PRICED, max_tokens=200, messages=[{"role": "user", "content": "Hello from Anthropic"}]
    )
    msg = raw.parse()
    reply = "Mock reply to: Hello from Anthropic"
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == PRICED
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == reply
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == mock_prompt_tokens("Hello from Anthropic")
    assert msg.usage.output_tokens == mock_tokens(reply)
    assert raw.headers.get("x-keel-request-id")
    assert raw.headers["x-keel-cost-usd"] == dollars(cost_nanos(msg.usage.input_tokens, msg.usage.output_tokens))


def test_messages_with_system_prompt(client):
    msg = client.messages.create(
        model=PRICED,
        max_tokens=200,
        system="You are terse.",
        messages=[{"role": "user", "content": "Ping"}],
    )
    assert msg.content[0].text == "Mock reply to: Ping"
    # Two messages reach the mock: the system prompt and the user turn.
    assert msg.usage.input_tokens == mock_prompt_tokens("You are terse.", "Ping")


def test_messages_stream_text_and_final_usage(client):
    text = "Stream me a reply through the Anthropic SDK"
    with client.messages.stream(model=PRICED, max_tokens=200, messages=[{"role": "user", "content": text}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    reply = f"Mock reply to: {text}"
    assert len(pieces) > 1, "the reply arrived in several deltas"
    assert "".join(pieces) == reply
    assert final.content[0].text == reply
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == mock_tokens(reply)
    assert final.usage.input_tokens == mock_prompt_tokens(text)


def test_tool_use_round_trip(client):
    question = {"role": "user", "content": "Weather in Rome? [mock:tool=get_weather]"}
    first = client.messages.create(model=PRICED, max_tokens=200, tools=[WEATHER_TOOL], messages=[question])
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert uses[0].input == {"city": "mock"}
    assert uses[0].id

    second = client.messages.create(
        model=PRICED,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "Cloudy, 18 C"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].text == "Tool result received: Cloudy, 18 C"


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.messages.create(model="no-such-claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 404
    assert "no-such-claude" in ei.value.message
    assert ei.value.body["error"]["type"] == "not_found_error"


def test_upstream_429_is_rate_limit_error(client):
    with pytest.raises(anthropic.RateLimitError) as ei:
        client.messages.create(model=PRICED, max_tokens=10, messages=[{"role": "user", "content": "[mock:status=429] hi"}])
    assert ei.value.status_code == 429
    assert "injected 429" in ei.value.message


def test_anthropic_sdk_to_anthropic_provider(client):
    msg = client.messages.create(
        model=ANTHROPIC_BACKED, max_tokens=200, messages=[{"role": "user", "content": "Anthropic all the way"}]
    )
    assert msg.content[0].text == "Mock reply to: Anthropic all the way"
    assert msg.usage.output_tokens == mock_tokens("Mock reply to: Anthropic all the way")


def test_anthropic_sdk_stream_to_anthropic_provider(client):
    with client.messages.stream(
        model=ANTHROPIC_BACKED, max_tokens=200, messages=[{"role": "user", "content": "Both ends Anthropic"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Mock reply to: Both ends Anthropic"
    assert final.usage.output_tokens == mock_tokens(text)
    assert final.usage.input_tokens == mock_prompt_tokens("Both ends Anthropic")


def test_stream_cut_raises_from_the_error_event(client):
    received = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        with client.messages.stream(
            model=PRICED, max_tokens=200, messages=[{"role": "user", "content": "story [mock:tokens=24] [mock:cut]"}]
        ) as stream:
            for t in stream.text_stream:
                received.append(t)
    # Keel sent `event: error` after some text; the SDK raises it.
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] == "api_error"
    assert "cut" in ei.value.body["error"]["message"]
    partial = "".join(received)
    assert partial.startswith("Mock reply to: story")
    assert mock_tokens(partial) < 24


def test_missing_max_tokens_is_bad_request(client):
    """Anthropic requires `max_tokens`; anthropic/wire.rs keeps it optional "so Keel can
    report its absence itself", so Keel must answer 400 naming it, as Anthropic does."""
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.post(
            "/v1/messages",
            cast_to=object,
            body={"model": PRICED, "messages": [{"role": "user", "content": "no max_tokens"}]},
        )
    assert ei.value.status_code == 400
    assert "max_tokens" in ei.value.message
    assert ei.value.body["error"]["type"] == "invalid_request_error"


def test_empty_messages_is_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.messages.create(model=PRICED, max_tokens=10, messages=[])
    assert ei.value.status_code == 400
    assert "messages" in ei.value.message

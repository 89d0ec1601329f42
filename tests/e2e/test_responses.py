"""The OpenAI Responses API through `keel serve`, driven by the official `openai` SDK
(`responses.create` plain, streamed, with a function-tool round trip and a two-turn
conversation through `previous_response_id`; `retrieve` and `delete`) and by the OpenAI
Agents SDK running a one-tool agent to completion, every model call traced and priced."""

from __future__ import annotations

import asyncio
import json

import agents
import openai
import pytest

from conftest import ANTHROPIC_BACKED, PRICED, run_keel, start_gateway, stop_gateway_and_check

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture()
def client(live_gateway):
    with openai.OpenAI(base_url=live_gateway.openai_base, api_key="unused", max_retries=0, timeout=30.0) as c:
        yield c


@pytest.mark.parametrize("model", [PRICED, ANTHROPIC_BACKED])
def test_responses_create_answers_with_text_usage_and_a_request_id(client, model):
    raw = client.responses.with_raw_response.create(
        model=model, input="Say hello", instructions="Be brief.", metadata={"ticket": "T-7"}
    )
    assert raw.headers["x-keel-request-id"]
    assert raw.headers["x-keel-cost-usd"]
    r = raw.parse()
    assert r.object == "response" and r.status == "completed"
    assert r.id.startswith("resp_")
    assert "Say hello" in r.output_text
    assert r.metadata == {"ticket": "T-7"}
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0


def test_a_streamed_response_is_the_typed_event_sequence(client):
    events = list(client.responses.create(model=PRICED, input="stream this", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1].response
    assert done.output_text == text and "stream this" in text
    assert done.usage.output_tokens > 0


def test_a_function_tool_round_trip_and_a_second_turn_through_previous_response_id(client):
    first = client.responses.create(model=PRICED, input="[mock:tool=get_weather] Weather in Paris?", tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)
    second = client.responses.create(
        model=PRICED,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}],
    )
    assert "sunny, 21C" in second.output_text
    # A third turn with plain text continues the same conversation (stored by Keel).
    third = client.responses.create(model=PRICED, previous_response_id=second.id, input="Thanks!")
    assert "Thanks!" in third.output_text
    assert third.usage.input_tokens > second.usage.input_tokens

    got = client.responses.retrieve(third.id)
    assert got.output_text == third.output_text
    client.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(third.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=PRICED, previous_response_id=third.id, input="again")
    assert e.value.body["param"] == "previous_response_id"


def test_json_schema_output_and_refused_hosted_tools(client):
    r = client.responses.create(
        model=PRICED,
        input="Give me a city",
        text={"format": {"type": "json_schema", "name": "city", "strict": True,
                         "schema": {"type": "object", "properties": {"name": {"type": "string"}},
                                    "required": ["name"], "additionalProperties": False}}},
    )
    assert isinstance(json.loads(r.output_text)["name"], str)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=PRICED, input="x", tools=[{"type": "web_search_preview"}])
    assert e.value.body["param"] == "tools[0].type"


def test_an_agents_sdk_agent_runs_to_completion_with_every_call_traced_and_priced(tmp_path, mock_port):
    gw = start_gateway(tmp_path / "gw", mock_port)
    try:
        agents.set_tracing_disabled(True)
        client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key="unused", max_retries=0)
        seen: list[str] = []

        @agents.function_tool
        def get_weather(city: str) -> str:
            """Current weather for a city."""
            seen.append(city)
            return f"sunny in {city}"

        agent = agents.Agent(
            name="weather",
            instructions="Use the tool, then answer.",
            tools=[get_weather],
            model=agents.OpenAIResponsesModel(model=PRICED, openai_client=client),
        )
        result = asyncio.run(agents.Runner.run(agent, "[mock:tool=get_weather] Weather in Paris?"))
        assert len(seen) == 1, "the agent called its tool once"
        assert f"sunny in {seen[0]}" in result.final_output
    finally:
        stop_gateway_and_check(gw)
    r = run_keel("traces", "list", "--config", str(gw.config), "--json", "--limit", "0")
    assert r.returncode == 0, r.stderr
    traces = [t for t in json.loads(r.stdout) if t["endpoint"] == "/v1/responses"]
    assert len(traces) == 2, "two model calls: the tool call, then the answer"
    for t in traces:
        assert t["status"] == "ok" and t["cost"] and not t["unpriced"], t

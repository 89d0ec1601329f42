"""`keel traces`, `keel report` and `keel check` on the store a real gateway wrote.

A gateway of its own (own config, own store) takes a known set of requests, is stopped
with SIGTERM (which drains the trace queue), and the CLI must then show exactly one
trace per request, with the ids the clients got back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import anthropic
import httpx
import openai
import pytest

from conftest import (
    PRICED,
    UNPRICED,
    cost_nanos,
    mock_prompt_tokens,
    mock_tokens,
    run_keel,
    start_gateway,
    stop_gateway_and_check,
)


@dataclass
class Sent:
    id: str
    status: str  # ok | error | client_disconnected
    error_class: str | None = None
    model: str | None = None
    cost: int | None = None  # expected nano-dollars, None when not priced
    unpriced: bool = False
    stream: bool = False
    api: str = "openai"


@dataclass
class Traffic:
    config: str
    sent: dict[str, Sent]
    first_id: str
    first_reply: str
    first_prompt: str


def _ok(sent: dict, s: Sent) -> None:
    assert s.id and s.id not in sent, f"request id {s.id!r} missing or reused"
    sent[s.id] = s


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, mock_port) -> Traffic:
    gw = start_gateway(tmp_path_factory.mktemp("cli-gateway"), mock_port)
    sent: dict[str, Sent] = {}
    attribution = {"x-keel-tenant": "acme", "x-keel-feature": "e2e-cli", "x-keel-user": "alice"}
    try:
        oa = openai.OpenAI(base_url=gw.openai_base, api_key="unused", max_retries=0, timeout=30.0)

        # 1. A whole, priced completion with attribution headers.
        prompt1 = "First CLI request"
        raw = oa.chat.completions.with_raw_response.create(
            model=PRICED, messages=[{"role": "user", "content": prompt1}], extra_headers=attribution
        )
        c = raw.parse()
        first_id = raw.headers["x-keel-request-id"]
        _ok(sent, Sent(first_id, "ok", model=PRICED, cost=cost_nanos(c.usage.prompt_tokens, c.usage.completion_tokens)))
        first_reply = c.choices[0].message.content

        # 2. A priced stream (usage asked for).
        raw = oa.chat.completions.with_raw_response.create(
            model=PRICED,
            messages=[{"role": "user", "content": "Second, streamed"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
        usage = chunks[-1].usage
        _ok(sent, Sent(raw.headers["x-keel-request-id"], "ok", model=PRICED, stream=True,
                       cost=cost_nanos(usage.prompt_tokens, usage.completion_tokens)))

        # 3. A priced stream that did NOT ask for usage: Keel must still price it.
        text3 = "Third, streamed without usage"
        raw = oa.chat.completions.with_raw_response.create(
            model=PRICED, messages=[{"role": "user", "content": text3}], stream=True
        )
        list(raw.parse())
        _ok(sent, Sent(raw.headers["x-keel-request-id"], "ok", model=PRICED, stream=True,
                       cost=cost_nanos(mock_prompt_tokens(text3), mock_tokens(f"Mock reply to: {text3}"))))

        # 4. An unpriced model.
        raw = oa.chat.completions.with_raw_response.create(model=UNPRICED, messages=[{"role": "user", "content": "Fourth"}])
        raw.parse()
        _ok(sent, Sent(raw.headers["x-keel-request-id"], "ok", model=UNPRICED, unpriced=True))

        # 5. An upstream 429.
        try:
            oa.chat.completions.create(model=PRICED, messages=[{"role": "user", "content": "[mock:status=429]"}])
            pytest.fail("expected a 429")
        except openai.RateLimitError as e:
            _ok(sent, Sent(e.response.headers["x-keel-request-id"], "error", "upstream_rate_limit", model=PRICED))

        # 6. An unknown model.
        try:
            oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
            pytest.fail("expected a 404")
        except openai.NotFoundError as e:
            _ok(sent, Sent(e.response.headers["x-keel-request-id"], "error", "model_not_found", model="no-such-model"))

        # 7. The Anthropic API.
        an = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=30.0)
        raw = an.messages.with_raw_response.create(
            model=PRICED, max_tokens=100, messages=[{"role": "user", "content": "Seventh, via Anthropic"}]
        )
        m = raw.parse()
        _ok(sent, Sent(raw.headers["x-keel-request-id"], "ok", model=PRICED, api="anthropic",
                       cost=cost_nanos(m.usage.input_tokens, m.usage.output_tokens)))

        # 8. A stream the upstream cuts half-way: HTTP 200, then an error event.
        raw = oa.chat.completions.with_raw_response.create(
            model=PRICED,
            messages=[{"role": "user", "content": "Eighth [mock:tokens=24] [mock:cut]"}],
            stream=True,
        )
        cut_id = raw.headers["x-keel-request-id"]
        try:
            list(raw.parse())
            pytest.fail("expected the cut stream to raise")
        except openai.APIError:
            pass
        _ok(sent, Sent(cut_id, "error", "upstream_stream_cut", model=PRICED, stream=True))

        # 9. A client that reads one chunk of a slow stream, then hangs up.
        body = {
            "model": PRICED,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Ninth [mock:tokens=40] [mock:chunk_delay=250]"}],
        }
        with httpx.Client(timeout=30.0) as h:
            with h.stream("POST", f"{gw.openai_base}/chat/completions", json=body) as r:
                assert r.status_code == 200
                rid = r.headers["x-keel-request-id"]
                first_bytes = next(r.iter_raw())
                assert first_bytes.startswith(b"data: ")
            # Leaving the block closes the unread response, and with it the connection.
        _ok(sent, Sent(rid, "client_disconnected", "client_disconnected", model=PRICED, stream=True))
        time.sleep(1.0)  # let the gateway's next write fail on the closed socket
    finally:
        stop_gateway_and_check(gw)
    return Traffic(str(gw.config), sent, first_id, first_reply, prompt1)


def keel_json(*args: str):
    r = run_keel(*args)
    assert r.returncode == 0, f"`keel {' '.join(args)}` exited {r.returncode}\n{r.stderr}"
    return json.loads(r.stdout)


def test_every_request_has_exactly_one_trace(traffic):
    traces = keel_json("traces", "list", "--config", traffic.config, "--json", "--limit", "0")
    ids = [t["id"] for t in traces]
    assert sorted(ids) == sorted(traffic.sent), "one trace per request, with the ids the clients got"
    by_id = {t["id"]: t for t in traces}
    for rid, s in traffic.sent.items():
        t = by_id[rid]
        assert t["status"] == s.status, (rid, t)
        assert t["error_class"] == s.error_class, (rid, t)
        assert t["model_requested"] == s.model, (rid, t)
        assert t["api"] == s.api, (rid, t)
        assert t["stream"] == s.stream, (rid, t)
        if s.status == "ok":
            assert t["cost"] == s.cost, (rid, t)
            assert t["unpriced"] == s.unpriced, (rid, t)
            assert t["http_status"] == 200
    # Newest first.
    starts = [t["started_at_ms"] for t in traces]
    assert starts == sorted(starts, reverse=True)

    human = run_keel("traces", "list", "--config", traffic.config)
    assert human.returncode == 0, human.stderr
    assert f"{len(traffic.sent)} traces" in human.stdout
    assert traffic.first_id in human.stdout


def test_status_filter_lists_only_errors(traffic):
    traces = keel_json("traces", "list", "--config", traffic.config, "--status", "error", "--json")
    expected = {rid: s.error_class for rid, s in traffic.sent.items() if s.status == "error"}
    assert {t["id"]: t["error_class"] for t in traces} == expected
    statuses = {t["error_class"]: t["http_status"] for t in traces}
    # A stream that failed after it started was answered 200; the trace says so.
    assert statuses == {"model_not_found": 404, "upstream_rate_limit": 429, "upstream_stream_cut": 200}


def test_client_disconnect_is_traced(traffic):
    traces = keel_json("traces", "list", "--config", traffic.config, "--status", "client_disconnected", "--json")
    expected = [rid for rid, s in traffic.sent.items() if s.status == "client_disconnected"]
    assert [t["id"] for t in traces] == expected
    t = traces[0]
    assert t["error_class"] == "client_disconnected"
    assert t["ttft_ms"] is not None
    # The client left after one chunk, but the provider bills the whole answer: Keel read
    # the upstream stream to its end for its usage, and priced the call with it.
    out = t["output"]
    assert out is not None and out.startswith("Mock reply to: Ninth"), out
    assert t["output_tokens"] == 40, t
    assert t["usage_estimated"] is False, t
    assert t["cost"] is not None and t["cost"] > 0, "an abandoned stream is still priced"
    # A stream the upstream cut is priced from Keel's count of what was produced.
    cut = [t for t in keel_json("traces", "list", "--config", traffic.config, "--json", "--limit", "0")
           if t["error_class"] == "upstream_stream_cut"]
    assert cut and all(t["usage_estimated"] and t["cost"] for t in cut), cut


def test_traces_show_one_trace_in_full(traffic):
    t = keel_json("traces", "show", traffic.first_id, "--config", traffic.config, "--json")
    assert t["id"] == traffic.first_id
    assert t["status"] == "ok"
    assert t["http_status"] == 200
    assert t["endpoint"] == "/v1/chat/completions"
    assert t["model_requested"] == PRICED
    assert t["provider"] == "up"
    assert t["upstream_model"] == "mock-1"
    assert t["served_model"] == "mock-1"
    assert t["system_fingerprint"] == "fp_mock"
    assert (t["tenant"], t["feature"], t["user"]) == ("acme", "e2e-cli", "alice")
    assert t["input_tokens"] == mock_prompt_tokens(traffic.first_prompt)
    assert t["output_tokens"] == mock_tokens(traffic.first_reply)
    assert t["output"] == traffic.first_reply == f"Mock reply to: {traffic.first_prompt}"
    assert traffic.first_prompt in t["input"]
    assert t["finish_reason"] == "stop"

    human = run_keel("traces", "show", traffic.first_id, "--config", traffic.config)
    assert human.returncode == 0
    assert traffic.first_id in human.stdout and "acme" in human.stdout

    missing = run_keel("traces", "show", "no-such-trace", "--config", traffic.config)
    assert missing.returncode == 1
    assert "no-such-trace" in missing.stderr


def test_report_json_totals(traffic):
    rep = keel_json("report", "--config", traffic.config, "--since", "1h", "--json")
    sent = traffic.sent.values()
    totals = rep["totals"]
    assert totals["requests"] == len(traffic.sent)
    assert totals["errors"] == sum(1 for s in sent if s.status == "error")
    # Every priced trace counts: the calls above, and the streams that were cut or
    # abandoned (priced from the provider's usage, or Keel's estimate).
    traces = keel_json("traces", "list", "--config", traffic.config, "--json", "--limit", "0")
    assert totals["cost_nanos"] == sum(t["cost"] for t in traces if t["cost"] is not None)
    assert totals["cost_nanos"] > sum(s.cost for s in sent if s.cost)
    assert totals["unpriced_calls"] == 1
    unpriced = {u["model"]: u for u in rep["unpriced"]}
    assert list(unpriced) == [UNPRICED]
    assert unpriced[UNPRICED]["calls"] == 1
    assert unpriced[UNPRICED]["output_tokens"] == mock_tokens("Mock reply to: Fourth")
    models = {row["name"]: row for row in rep["by_model"]}
    assert models[PRICED]["requests"] == sum(1 for s in sent if s.model == PRICED)
    assert models[UNPRICED]["requests"] == 1
    assert models[UNPRICED]["unpriced_calls"] == 1
    features = {row["name"]: row["requests"] for row in rep["by_feature"]}
    assert features.get("e2e-cli") == 1


def test_report_markdown_has_tables(traffic):
    r = run_keel("report", "--config", traffic.config, "--since", "1h", "--markdown")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("## Keel report")
    header = [i for i, l in enumerate(lines) if l.startswith("| ") and PRICED not in l]
    assert header, r.stdout
    assert any(lines[i + 1].startswith("| ---") for i in header if i + 1 < len(lines)), r.stdout
    assert any(l.startswith(f"| {PRICED} |") for l in lines), r.stdout
    assert any(UNPRICED in l for l in lines), r.stdout


def test_check_accepts_the_config(traffic):
    r = run_keel("check", "--config", traffic.config)
    assert r.returncode == 0, r.stderr
    assert "ok (2 providers, 4 models)" in r.stdout


def test_check_names_a_typo_and_suggests_the_fix(tmp_path, traffic):
    text = open(traffic.config).read()
    assert 'upstream_model = "house-model-v1"' in text
    bad = tmp_path / "keel.toml"
    bad.write_text(text.replace('upstream_model = "house-model-v1"', 'upstrem_model = "house-model-v1"'))
    r = run_keel("check", "--config", str(bad))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"models.{UNPRICED}.upstrem_model" in r.stderr
    assert "did you mean `upstream_model`?" in r.stderr
    assert str(bad) in r.stderr

    j = run_keel("check", "--config", str(bad), "--json")
    assert j.returncode == 1
    out = json.loads(j.stdout)
    assert out["ok"] is False
    assert out["errors"][0]["path"] == f"models.{UNPRICED}.upstrem_model"
    assert out["errors"][0]["hint"] == "did you mean `upstream_model`?"

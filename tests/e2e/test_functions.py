"""Functions end to end, on the quickstart exactly as a new user runs it.

A copy of examples/quickstart is served by the real `keel serve` (which pushes the
prompts folder and sets the `production` label, per its [registry] table). The official
OpenAI SDK calls the `support-answer` function with template variables in `extra_body`;
the Anthropic SDK calls it too; a label moved with `keel prompt label` is served without
a restart; and the traces carry the function, variant, prompt version and release.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import KEEL_BIN, KeelProcess, REPO, free_port, project_store

QUICKSTART = REPO / "examples" / "quickstart"


def keel(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KEEL_BIN), *args, "--config", str(project / "keel.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    project = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(QUICKSTART, project, dirs_exist_ok=True)
    for stale in project.glob("keel.db*"):
        stale.unlink()
    project_store(project)
    port = free_port()
    proc = KeelProcess(
        "quickstart",
        ["serve", "--config", str(project / "keel.toml"), "--listen", f"127.0.0.1:{port}"],
        project / "logs",
    ).start()
    proc.wait_http(f"http://127.0.0.1:{port}/health")
    yield project, port, proc
    proc.terminate()


def client(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


VARS = {"product": "Keel", "question": "How do I rotate a key?"}


def test_the_openai_sdk_calls_a_function_with_variables(quickstart):
    _, port, _ = quickstart
    raw = client(port).chat.completions.with_raw_response.create(
        model="support-answer",
        messages=[],
        extra_body={"variables": VARS},
        extra_headers={"x-keel-user": "u-42", "x-keel-variant": "control"},
    )
    assert raw.headers["x-keel-variant"] == "control"
    assert raw.headers["x-keel-prompt-version"] == "1"
    reply = raw.parse()
    # The mock answers the last user message: the rendered prompt's.
    assert reply.choices[0].message.content == "Mock reply to: How do I rotate a key?"
    assert reply.model == "mock-1"


def test_the_split_is_sticky_per_user(quickstart):
    _, port, _ = quickstart
    c = client(port)
    seen = {}
    for i in range(60):
        user = f"user-{i}"
        raw = c.chat.completions.with_raw_response.create(
            model="support-answer", messages=[], extra_body={"variables": VARS},
            extra_headers={"x-keel-user": user},
        )
        seen[user] = raw.headers["x-keel-variant"]
    assert set(seen.values()) <= {"control", "candidate"}
    for user in list(seen)[:10]:
        raw = c.chat.completions.with_raw_response.create(
            model="support-answer", messages=[], extra_body={"variables": VARS},
            extra_headers={"x-keel-user": user},
        )
        assert raw.headers["x-keel-variant"] == seen[user]


def test_a_missing_variable_is_a_400_naming_it(quickstart):
    _, port, _ = quickstart
    with pytest.raises(openai.BadRequestError) as e:
        client(port).chat.completions.create(
            model="support-answer", messages=[], extra_body={"variables": {"product": "Keel"}}
        )
    assert "`question` is required" in str(e.value)
    assert e.value.code == "invalid_variables"


def test_streaming_and_the_anthropic_sdk_serve_functions(quickstart):
    _, port, _ = quickstart
    chunks = list(
        client(port).chat.completions.create(
            model="support-answer", messages=[], stream=True,
            stream_options={"include_usage": True}, extra_body={"variables": VARS},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: How do I rotate a key?"
    assert chunks[-1].usage is not None

    a = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="unused", max_retries=0)
    msg = a.messages.create(
        model="support-answer", max_tokens=100,
        messages=[{"role": "user", "content": "Is it free?"}],
        extra_body={"variables": VARS},
    )
    assert msg.content[0].text == "Mock reply to: Is it free?"


def test_a_moved_label_is_served_without_restart(quickstart):
    project, port, _ = quickstart
    prompt = project / "prompts" / "support" / "answer.toml"
    prompt.write_text(prompt.read_text().replace('content = "{{ question }}"', 'content = "Q: {{ question }}"'))
    out = keel(project, "prompt", "push", "--author", "e2e", "--message", "prefix the question")
    assert out.returncode == 0, out.stderr
    assert "created v2" in out.stdout
    out = keel(project, "prompt", "label", "support/answer", "2", "production", "--reason", "e2e")
    assert out.returncode == 0, out.stderr
    c = client(port)
    deadline = time.monotonic() + 10
    while True:
        raw = c.chat.completions.with_raw_response.create(
            model="support-answer", messages=[], extra_body={"variables": VARS},
            extra_headers={"x-keel-variant": "control"},
        )
        if raw.headers["x-keel-prompt-version"] == "2":
            break
        assert time.monotonic() < deadline, "the moved label was not served within 10 s"
        time.sleep(0.2)
    assert raw.parse().choices[0].message.content == "Mock reply to: Q: How do I rotate a key?"


def test_traces_record_the_function_variant_and_release(quickstart):
    project, port, proc = quickstart
    # Live calls: a sampled shadow call (25 %) may be newer, and mirrors its live call's
    # input rather than keeping a copy.
    out = keel(project, "traces", "list", "--function", "support-answer", "--status", "ok", "--origin", "live", "--limit", "0", "--json")
    # The gateway's writer flushes within milliseconds; give it a moment.
    for _ in range(50):
        traces = json.loads(out.stdout)
        if traces:
            break
        time.sleep(0.1)
        out = keel(project, "traces", "list", "--function", "support-answer", "--status", "ok", "--origin", "live", "--limit", "0", "--json")
    assert traces, out.stderr
    t = traces[0]
    assert t["function"] == "support-answer"
    assert t["variant"] in ("control", "candidate")
    assert t["prompt_name"] == "support/answer"
    assert t["prompt_version"] in (1, 2)
    assert t["release_id"].startswith("rel_")
    assert "variables" in t["input"]
    # `traces show` rebuilds what the call sent: the prompt rendered with its variables.
    shown = keel(project, "traces", "show", t["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    sent = json.loads(shown.stdout)["sent_messages"]
    assert sent and sent[0]["role"] == "system", sent
    assert "{{" not in json.dumps(sent), sent
    human = keel(project, "traces", "show", t["id"])
    assert "--- sent to the provider ---" in human.stdout, human.stdout


def test_status_reports_models_and_circuits(quickstart):
    project, port, _ = quickstart
    out = subprocess.run(
        [str(KEEL_BIN), "status", "--url", f"http://127.0.0.1:{port}", "--json"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["models"]["mock-1"]["circuit"] is None  # no routing, no breaker
    assert status["functions_unavailable"] == []
    down = subprocess.run(
        [str(KEEL_BIN), "status", "--url", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30,
    )
    assert down.returncode == 2
    assert "is `keel serve` running?" in down.stderr


def test_shadow_report_pairs_live_and_shadow_calls(quickstart):
    project, port, _ = quickstart
    c = client(port)
    for i in range(40):
        c.chat.completions.create(
            model="support-answer", messages=[], extra_body={"variables": VARS},
            extra_headers={"x-keel-user": f"shadow-{i}", "x-keel-variant": "control"},
        )
    report = None
    for _ in range(50):  # the shadows finish in the background
        out = keel(project, "shadow", "report", "support-answer", "--json", "--judge", "mock-1")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        if report["pairs"] >= 3:
            break
        time.sleep(0.1)
    assert report["pairs"] >= 3, report
    assert report["similarity"]["estimate"] == 1.0  # both variants answer alike on the mock
    assert report["judge"]["estimate"] >= 0.8
    assert report["at_parity"] is True, report["reasons"]
    # The Experiments page computes parity with the same code: same agreement, same verdict.
    import urllib.request
    no_judge = json.loads(keel(project, "shadow", "report", "support-answer", "--json").stdout)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/functions?since=7d", timeout=30) as r:
        page = r.read().decode()
    agreement = f"{no_judge['exact_agreement'] * 100:.1f}%"
    assert agreement in page, (agreement, page)
    assert "at parity</span>" in page, page

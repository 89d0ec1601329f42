"""Online evals end to end, on the quickstart as a new user runs it.

The quickstart's `support-quality` online eval judges half of `support-answer`'s live
calls off the request path, with the mock as judge (it grades the `candidate` variant's
cut-off answers low). The official OpenAI SDK makes the calls; the scores appear on the
traces (`keel traces show --json`), in `keel online status --json` and in the gateway's
`/metrics`, and the candidate fails where the control passes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import KEEL_BIN, REPO, free_port, project_store, serve_project

QUICKSTART = REPO / "examples" / "quickstart"


def keel(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KEEL_BIN), *args, "--config", str(project / "keel.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve_quickstart(tmp_path_factory, name: str):
    """A fresh copy of the quickstart served by the real binary: (project, port, process)."""
    project = tmp_path_factory.mktemp(name)
    shutil.copytree(QUICKSTART, project, dirs_exist_ok=True)
    for stale in project.glob("keel.db*"):
        stale.unlink()
    project_store(project)
    port = free_port()
    proc = serve_project(project, port, name)
    yield project, port, proc
    proc.terminate()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from serve_quickstart(tmp_path_factory, "online")


def test_live_calls_are_judged_and_the_scores_tell_the_variants_apart(served):
    project, port, _ = served
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    ids = {}
    for i in range(60):
        variant = "candidate" if i % 2 else "control"
        raw = client.chat.completions.with_raw_response.create(
            model="support-answer",
            messages=[],
            extra_body={"variables": {"product": "Keel", "question": "How do I get a refund?"}},
            extra_headers={"x-keel-variant": variant, "x-keel-user": f"u-{i}"},
        )
        ids[raw.headers["x-keel-request-id"]] = variant

    # Judging is off the request path: wait for it.
    deadline = time.time() + 30
    judged = 0
    while time.time() < deadline:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        judged = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("keel_online_judged_total{")
        )
        sampled = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("keel_online_sampled_total{")
        )
        if sampled > 0 and judged >= sampled:
            break
        time.sleep(0.2)
    # Half of 60 calls, within wide binomial bounds.
    assert 12 <= judged <= 48, metrics

    passed = {"control": [], "candidate": []}
    for rid, variant in ids.items():
        shown = keel(project, "traces", "show", rid, "--json")
        assert shown.returncode == 0, shown.stderr
        scores = [s for s in json.loads(shown.stdout)["scores"] if s["metric"] == "helpful"]
        if scores:
            assert scores[0]["eval"] == "support-quality"
            assert scores[0]["source"] == "online"
            passed[variant].append(scores[0]["passed"])
    assert passed["control"] and all(passed["control"]), passed
    assert passed["candidate"] and not any(passed["candidate"]), passed

    status = keel(project, "online", "status", "--json", "--url", f"http://127.0.0.1:{port}")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)["online_evals"][0]
    assert row["name"] == "support-quality"
    assert row["judged_last_hour"] == judged
    assert row["pending"] == 0
    assert not row["stalled"]
    rate = row["pass_rate_24h"]
    assert rate["n"] == judged and 0 < rate["rate"] < 1


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    yield from serve_quickstart(tmp_path_factory, "walkthrough")


def forty_questions(port: int) -> None:
    """Step 1's loop of the README walkthrough."""
    for i in range(1, 41):
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"x-keel-user": f"u-{i}", "x-keel-variant": "control"},
            json={
                "model": "support-answer",
                "variables": {"product": "Keel", "question": "How do I get a refund?"},
            },
        )
        assert r.status_code == 200, r.text


def rule(project: Path, name: str) -> dict:
    listed = keel(project, "alerts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return next(r for r in json.loads(listed.stdout)["rules"] if r["name"] == name)


def test_the_readme_walkthrough_a_worse_prompt_fires_the_quality_alert(walkthrough):
    project, port, _ = walkthrough
    # 1. Good answers: judged, passing, the rule quiet.
    forty_questions(port)
    time.sleep(2)
    status = keel(project, "online", "status", "--json", "--url", f"http://127.0.0.1:{port}")
    assert status.returncode == 0, status.stderr
    first = json.loads(status.stdout)["online_evals"][0]
    assert first["judged_last_hour"] >= 10 and first["pass_rate_24h"]["rate"] == 1.0, first
    assert rule(project, "support-quality-drop")["state"] == "ok"

    # 2. A worse prompt to production (the README's sed and push).
    prompt = project / "prompts" / "support" / "answer.toml"
    text = prompt.read_text()
    assert "\nmax_tokens = 300\n" in text
    prompt.write_text(text.replace("\nmax_tokens = 300\n", "\nmax_tokens = 12\n"))
    pushed = keel(project, "prompt", "push", "--label", "production", "--author", "you",
                  "--reason", "shorter answers")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    time.sleep(3)  # [registry] refresh = "2s"

    # 3. The same traffic; rules are measured once a minute.
    forty_questions(port)
    deadline = time.time() + 150
    r = rule(project, "support-quality-drop")
    while r["state"] != "firing" and time.time() < deadline:
        time.sleep(5)
        r = rule(project, "support-quality-drop")
    assert r["state"] == "firing", r
    notice = r["last_message"]
    assert "support-quality" in notice and "80.0" in notice, notice
    assert "prompt.label" in notice and "support/answer" in notice, notice
    failed = keel(project, "traces", "list", "--failed-eval", "support-quality", "--json")
    assert failed.returncode == 0 and len(json.loads(failed.stdout)) >= 5, failed.stdout[:500]

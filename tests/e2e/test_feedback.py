"""User feedback end to end, as the README tells an app to send it: the official `openai`
SDK makes a call with a virtual key, the app reads `x-keel-request-id` from the raw
response and posts a thumbs-down for it to `POST /v1/feedback` with the same key (plain
httpx), and `keel traces show ID --json` has it. Another tenant's key gets the 404 of an
unknown id. And the README's own Python example of it runs as written.

The first test's gateway is this module's own: auth required, an admin key to mint
the keys; the README's example runs on the suite's open gateway.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import httpx
import openai
import pytest

from conftest import PRICED, REPO, KeelProcess, free_port, gateway_config, new_store, run_keel

ADMIN_ENV = "KEEL_E2E_FEEDBACK_ADMIN"
ADMIN = "e2e-feedback-admin-key"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, mock_port):
    dir = tmp_path_factory.mktemp("feedback")
    port = free_port()
    config = dir / "keel.toml"
    config.write_text(
        gateway_config(port, mock_port, new_store(dir))
        + f'\n[auth]\nmode = "required"\nadmin_key_env = "{ADMIN_ENV}"\n'
    )
    os.environ[ADMIN_ENV] = ADMIN  # inherited by `keel serve`
    proc = KeelProcess("feedback-gateway", ["serve", "--config", str(config)], dir).start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/health")
    yield url, config
    assert proc.terminate() == 0, proc.stderr()


def new_key(url: str, tenant: str) -> str:
    r = httpx.post(f"{url}/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}, json={"tenant": tenant})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def send_feedback(url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/feedback", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=10.0)


def test_the_openai_sdk_makes_a_call_then_the_app_sends_feedback_for_it(gw):
    url, config = gw
    key = new_key(url, "acme")
    colleague = new_key(url, "acme")
    stranger = new_key(url, "globex")

    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=PRICED, messages=[{"role": "user", "content": "How do I rotate a key?"}]
        )
    reply = raw.parse()
    assert reply.choices[0].message.content
    request_id = raw.headers["x-keel-request-id"]

    # At once, as an app would when the user clicks: the trace may still be queued.
    r = send_feedback(url, key, {"request_id": request_id, "name": "thumbs", "value": -1, "comment": "too long"})
    assert r.status_code == 201, r.text
    assert r.json() == {"request_id": request_id, "name": "thumbs", "source": "user", "value": -1, "replaced": False}

    # Another tenant's key: the 404 of an id that does not exist.
    foreign = send_feedback(url, stranger, {"request_id": request_id, "name": "thumbs", "value": 1})
    unknown = send_feedback(url, stranger, {"request_id": "no-such-call", "name": "thumbs", "value": 1})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["code"] == unknown.json()["error"]["code"] == "request_not_found"
    assert foreign.text.replace(request_id, "ID") == unknown.text.replace("no-such-call", "ID")

    # A bad body: 400 naming the field.
    bad = send_feedback(url, key, {"request_id": request_id, "name": "thumbs", "value": {"up": False}})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "value"

    # Several names on the call (a colleague's key of the same tenant), a boolean and a
    # category; then the user changes their mind: 200, replaced.
    r = send_feedback(url, colleague, {"request_id": request_id, "name": "resolved", "value": False})
    assert r.status_code == 201, r.text
    r = send_feedback(url, key, {"request_id": request_id, "name": "reason", "value": "outdated"})
    assert r.status_code == 201, r.text
    r = send_feedback(url, key, {"request_id": request_id, "name": "thumbs", "value": 1})
    assert r.status_code == 200, r.text
    assert r.json()["replaced"] is True

    shown = run_keel("traces", "show", request_id, "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    trace = json.loads(shown.stdout)
    feedback = {f["name"]: f for f in trace["feedback"]}
    assert set(feedback) == {"thumbs", "resolved", "reason"}
    assert feedback["thumbs"]["value"] == 1 and feedback["thumbs"]["comment"] is None
    assert feedback["resolved"]["value"] is False
    assert feedback["reason"]["value"] == "outdated"
    assert all(f["source"] == "user" for f in feedback.values())
    at = datetime.fromisoformat(feedback["thumbs"]["at"].replace("Z", "+00:00"))
    assert at.tzinfo is not None and abs((datetime.now(timezone.utc) - at).total_seconds()) < 120

    # The replacement is in the audit log, with the key that made it.
    audit = run_keel("audit", "--config", str(config), "--json")
    assert audit.returncode == 0, audit.stderr
    events = [e for e in json.loads(audit.stdout)["events"] if e["action"] == "feedback.replace"]
    assert len(events) == 1
    assert events[0]["from_value"] == "-1" and events[0]["to_value"] == "1"
    assert events[0]["actor"].startswith("key:")


def readme_feedback_example() -> str:
    """The README's ```python block that posts to /v1/feedback."""
    text = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    found = [b for b in blocks if "/v1/feedback" in b]
    assert len(found) == 1, "the README has one Python example of POST /v1/feedback"
    return found[0]


def test_the_readmes_thumbs_down_example_runs_as_written(live_gateway):
    """The README's example, verbatim but for the gateway's address, on an open gateway
    (no key needed: the SDK's placeholder key is ignored)."""
    code = readme_feedback_example()
    assert 'KEEL = "http://127.0.0.1:8100"' in code
    scope: dict = {}
    exec(compile(code.replace("http://127.0.0.1:8100", live_gateway.url), "README.md", "exec"), scope)
    request_id = scope["request_id"]
    shown = run_keel("traces", "show", request_id, "--config", str(live_gateway.config), "--json")
    assert shown.returncode == 0, shown.stderr
    feedback = json.loads(shown.stdout)["feedback"]
    assert [(f["name"], f["value"], f["source"]) for f in feedback] == [("thumbs", -1, "user")]
    assert feedback[0]["comment"] == "It described the old command."

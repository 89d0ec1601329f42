"""The README's model-change walkthrough, run as written on a fresh copy of the quickstart.

The two shell blocks after "Walkthrough: the mock changes its model" in README.md are read,
their commands pointed at this test's gateway, binary and copy of the quickstart, and run
in bash; between them the gateway is restarted, as the README says. The mock's fingerprint
switches from fp_mock to fp_mock_2: the change is audited once, the quickstart's
`model-changed` rule fires, `keel models` lists both versions, `keel check` warns that
gpt-4o-mini retires (and `--strict` fails), and `check-successor` finds parity.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import KEEL_BIN, REPO, free_port, project_store, readme_blocks, run_readme_commands, serve_project

QUICKSTART = REPO / "examples" / "quickstart"
MARKER = "**Walkthrough: the mock changes its model.**"


@pytest.fixture()
def project(tmp_path):
    shutil.copytree(QUICKSTART, tmp_path, dirs_exist_ok=True)
    for stale in tmp_path.glob("keel.db*"):
        stale.unlink()
    project_store(tmp_path)
    return tmp_path


def test_the_readme_walkthrough_sees_the_mock_change_its_model(project):
    first, second = readme_blocks(MARKER, 2)
    assert len(first) >= 3 and len(second) >= 6, (first, second)
    port = free_port()
    gateway = serve_project(project, port, "model-change-1")
    try:
        steps, _ = run_readme_commands(first, project, port)
    finally:
        gateway.terminate()
    for cmd, code, out in steps:
        assert code == 0, f"{cmd}\n{out}"
    assert "fp_mock" in steps[-1][2] or "fp_mock" in "".join(o for _, _, o in steps), steps
    assert 'fingerprint = "fp_mock_2"' in (project / "keel.toml").read_text()

    gateway = serve_project(project, port, "model-change-2")
    try:
        steps, _ = run_readme_commands(second, project, port)
    finally:
        gateway.terminate()

    def step(fragment: str, nth: int = 0):
        found = [(c, code, out) for c, code, out in steps if fragment in c]
        assert len(found) > nth, f"no command with {fragment!r}"
        return found[nth][1], found[nth][2]

    code, out = step("audit --since")
    assert code == 0 and out.count("model.version_changed") == 1, out
    assert "fp_mock_2" in out, out
    code, out = step("alerts list")
    assert code == 0 and "model-changed" in out, out
    assert "firing" in out.lower(), out
    code, out = step("models --config")
    assert code == 0 and "fp_mock_2" in out and "fp_mock " in out, out
    code, out = step("check --config")
    assert code == 0 and "gpt-4o-mini" in out and "retire" in out, out
    code, out = step("check --strict")
    assert code == 1, out
    code, out = step("check-successor")
    assert code == 0 and "parity or better" in out, out

    inv = subprocess.run(
        [str(KEEL_BIN), "models", "--json", "--config", str(project / "keel.toml")],
        capture_output=True, text=True, timeout=60, cwd=project,
    )
    models = {m["name"]: m for m in json.loads(inv.stdout)["models"]}
    versions = [v["version"] for v in models["mock-1"]["deployments"][0]["versions"]]
    assert versions == ["fp_mock", "fp_mock_2"], versions

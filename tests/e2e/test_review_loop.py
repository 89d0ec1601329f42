"""The README's human-review walkthrough, run as written on a fresh copy of the quickstart.

The shell block after "Walkthrough: a bad answer becomes a test case" in README.md is
read, its commands pointed at this test's gateway, binary and copy of the quickstart, and
run one by one in one bash session: a cut-off answer gets a thumbs-down, enters the review
queue off the request path, is labelled bad with a correction from a terminal, becomes a
case of the support suite, the suite refuses to run until re-locked, and then the gate
passes the control variant and catches the candidate that produced the answer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KEEL_BIN, REPO, free_port, project_store, readme_blocks, run_readme_commands, serve_project

QUICKSTART = REPO / "examples" / "quickstart"
MARKER = "**Walkthrough: a bad answer becomes a test case.**"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("review-loop")
    shutil.copytree(QUICKSTART, project, dirs_exist_ok=True)
    for stale in project.glob("keel.db*"):
        stale.unlink()
    project_store(project)
    port = free_port()
    proc = serve_project(project, port, "review-loop")
    yield project, port
    proc.terminate()


def test_the_readme_walkthrough_turns_a_bad_answer_into_a_gated_case(project):
    project, port = project
    (commands,) = readme_blocks(MARKER)
    assert len(commands) >= 10, commands
    by_cmd, stderr = run_readme_commands(commands, project, port, timeout=240)

    def step(fragment: str, nth: int = 0):
        found = [(c, code, out) for c, code, out in by_cmd if fragment in c]
        assert len(found) > nth, f"no command with {fragment!r}"
        return found[nth][1], found[nth][2]

    code, out = step("review list")
    assert code == 0 and "support-review" in out, out
    code, out = step("review next")
    assert code == 0 and "saved item" in out, out
    code, out = step("dataset add")
    assert code == 0 and re.search(r"added [1-9]\d* cases? to", out), out
    assert "trace-" in out, out
    code, out = step("eval run support --config")
    assert code == 2, f"a changed dataset must refuse to run: {code}\n{out}\n{stderr}"
    assert "changed since it was locked" in stderr
    code, out = step("eval lock")
    assert code == 0 and "dataset v" in out, out
    code, out = step("dataset history")
    assert code == 0 and "refund answer cut off in production" in out, out
    code, out = step("eval run support --config", 1)
    assert code == 0, f"the control variant passes the gate\n{out}"
    code, out = step("--variant candidate")
    assert code == 1, f"the candidate fails the gate\n{out}"

    # The case is the call the customer disliked, the reviewer's correction its expected.
    lines = (project / "evals" / "support.jsonl").read_text().splitlines()
    cases = [json.loads(l) for l in lines if '"trace-' in l]
    assert len(cases) == 1, cases
    case = cases[0]
    assert case["variables"]["question"] == "Can I get a refund after two weeks?"
    assert case["expected"].startswith("Refunds are available within 30 days")
    assert case["metadata"]["function"] == "support-answer"
    # The candidate fails the new case (JUnit lists every case); the control passes it.
    for variant, fails in (("candidate", True), ("control", False)):
        junit = project / f"{variant}.xml"
        subprocess.run(
            [str(KEEL_BIN), "eval", "run", "support", "--variant", variant, "--junit", str(junit),
             "--config", str(project / "keel.toml")],
            capture_output=True, text=True, timeout=120, cwd=project,
        )
        xml = junit.read_text()
        at = xml.index(f'name="{case["id"]}"')
        verdict = xml[at : xml.index("</testcase>", at)] if "</testcase>" in xml[at:] else xml[at : at + 400]
        assert ("<failure" in verdict) == fails, f"{variant}: {verdict}"
    # The label is a human score on the trace.
    trace = subprocess.run(
        [str(KEEL_BIN), "traces", "show", case["metadata"]["trace_id"], "--json",
         "--config", str(project / "keel.toml")],
        capture_output=True, text=True, timeout=30, cwd=project,
    )
    scores = json.loads(trace.stdout)["scores"]
    assert any(s["source"] == "human" and s["metric"] == "verdict" and s["value"] == 0 for s in scores), scores

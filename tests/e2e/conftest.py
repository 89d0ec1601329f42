"""Fixtures that run the real `keel` binary: a mock upstream and a gateway in front of it.

Why this exists: the e2e suite checks what a user of the official SDKs would see, so
nothing here is in-process. `keel mock-provider` serves the OpenAI and Anthropic wire
formats on a loopback port; `keel serve` runs with a config written to a temporary
folder that points an `openai` provider and an `anthropic` provider at that mock.

The binary comes from `KEEL_BIN` (tests/e2e/run.sh sets it), else `target/debug/keel`.
Processes are session-scoped; `test_cli.py` starts its own gateway so that it can count
exactly the traces its own requests wrote.
"""

from __future__ import annotations

import os
import signal
import socket
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
KEEL_BIN = Path(os.environ.get("KEEL_BIN") or REPO / "target" / "debug" / "keel")

STARTUP_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0

# Model names of the test config (see `gateway_config`).
PRICED = "mock-1"  # $0.15 in / $0.60 out per million tokens
FAST_TIMEOUT = "mock-fast-timeout"  # timeout = "500ms"
UNPRICED = "house-model"  # no price in config or in the built-in table
ANTHROPIC_BACKED = "claude-mock"  # on the `anthropic` provider
INPUT_NANOS_PER_TOKEN = 150  # $0.15 / 1M tokens
OUTPUT_NANOS_PER_TOKEN = 600  # $0.60 / 1M tokens


# --- the mock's token arithmetic (documented in keel_providers::mock::tokens) ---------


def mock_tokens(text: str) -> int:
    """Tokens as the mock counts them: a run of word characters, or one other
    non-space character."""
    n = 0
    in_word = False
    for c in text:
        if c.isalnum() or c == "_":
            if not in_word:
                n += 1
                in_word = True
        else:
            in_word = False
            if not c.isspace():
                n += 1
    return n


def mock_prompt_tokens(*texts: str) -> int:
    """The mock's prompt_tokens: every message's tokens plus 4 per message."""
    return sum(mock_tokens(t) + 4 for t in texts)


def cost_nanos(prompt_tokens: int, completion_tokens: int) -> int:
    """What a call to `mock-1` costs, in nano-dollars."""
    return prompt_tokens * INPUT_NANOS_PER_TOKEN + completion_tokens * OUTPUT_NANOS_PER_TOKEN


def dollars(nanos: int) -> str:
    """Keel's dollar string (`Nanos::to_dollar_string`): at least two decimals, no
    trailing zeros beyond them, e.g. 4500 → `0.0000045`."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    frac_s = f"{frac:09d}"
    while len(frac_s) > 2 and frac_s.endswith("0"):
        frac_s = frac_s[:-1]
    return f"{sign}{whole}.{frac_s}"


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KeelProcess:
    """A running `keel` subcommand whose stdout/stderr go to files (never a full pipe)."""

    name: str
    args: list[str]
    log_dir: Path
    proc: subprocess.Popen | None = None
    stopped_rc: int | None = field(default=None)

    def start(self) -> "KeelProcess":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log_dir / f"{self.name}.stdout", "wb")
        self._err = open(self.log_dir / f"{self.name}.stderr", "wb")
        env = dict(os.environ)
        env.setdefault("KEEL_LOG", "info")
        env["NO_COLOR"] = "1"  # plain logs, readable when a failure prints them
        self.proc = subprocess.Popen(
            [str(KEEL_BIN), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
        )
        return self

    def stderr(self) -> str:
        self._err.flush()
        return (self.log_dir / f"{self.name}.stderr").read_text(errors="replace")

    def stdout(self) -> str:
        self._out.flush()
        return (self.log_dir / f"{self.name}.stdout").read_text(errors="replace")

    def wait_http(self, url: str) -> None:
        """Poll `url` until it answers 200; fail with the process's output if it dies
        or the deadline passes."""
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"`keel {' '.join(self.args)}` exited with {rc} before {url} answered.\n"
                    f"--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}"
                )
            try:
                r = httpx.get(url, timeout=1.0)
                if r.status_code == 200:
                    return
                last_error = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                last_error = repr(e)
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"`keel {' '.join(self.args)}` did not answer {url} within {STARTUP_DEADLINE_S}s "
            f"(last: {last_error}).\n--- stderr ---\n{self.stderr()}"
        )

    def terminate(self) -> int:
        """SIGTERM, then wait up to STOP_DEADLINE_S; returns the exit code. Raises (after
        killing it) when the process does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"`keel {self.name}` did not exit within {STOP_DEADLINE_S}s of SIGTERM.\n"
                f"--- stderr ---\n{self.stderr()}"
            )
        self.stopped_rc = rc
        self._out.close()
        self._err.close()
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_mock(log_dir: Path) -> tuple[KeelProcess, int]:
    """`keel mock-provider` on a free loopback port (retried if the port was taken)."""
    last: Exception | None = None
    for _ in range(3):
        port = free_port()
        p = KeelProcess("mock", ["mock-provider", "--listen", f"127.0.0.1:{port}", "--seed", "7"], log_dir).start()
        try:
            p.wait_http(f"http://127.0.0.1:{port}/health")
            return p, port
        except RuntimeError as e:
            last = e
            p.kill()
    raise RuntimeError(f"could not start the mock provider: {last}")


def gateway_config(listen_port: int, mock_port: int, store: Path | str) -> str:
    """The config every gateway of this suite runs: keys from
    crates/keel-core/src/config/raw.rs and examples/quickstart/keel.toml."""
    return f"""\
[gateway]
listen = "127.0.0.1:{listen_port}"
store = "{store}"
capture = "full"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[providers.anth]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock_port}/v1"

[models.{PRICED}]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[models.{FAST_TIMEOUT}]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
timeout = "500ms"

[models.{UNPRICED}]
provider = "up"
upstream_model = "house-model-v1"

[models.{ANTHROPIC_BACKED}]
provider = "anth"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"""


# KEEL_E2E_STORE=postgres: every gateway `start_gateway` starts keeps its store in a
# PostgreSQL database of its own (on KEEL_E2E_PG, default the local server), dropped when
# the session ends; the default is a SQLite file in the gateway's folder. Suites that
# run the README's walkthroughs in example folders call `project_store(project)`: the
# examples' own `store = "keel.db"` then gives way to a fresh database, written into the
# copied project's keel.toml.
E2E_STORE = os.environ.get("KEEL_E2E_STORE", "sqlite")
PG_SERVER = os.environ.get("KEEL_E2E_PG", "postgres://postgres@127.0.0.1:5432")
PG_DATABASES: list[str] = []


def psql(sql: str) -> None:
    done = subprocess.run(["psql", f"{PG_SERVER}/test", "-qc", sql], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed on {sql!r}: {done.stderr.strip()}")


def new_store(dir: Path) -> Path | str:
    """Where a new gateway keeps its store: a SQLite file in `dir`, or a fresh database."""
    if E2E_STORE != "postgres":
        return dir / "keel.db"
    name = f"keel_e2e_{os.getpid()}_{len(PG_DATABASES)}"
    psql(f"CREATE DATABASE {name}")
    PG_DATABASES.append(name)
    return f"{PG_SERVER}/{name}"


def project_store(project: Path) -> None:
    """KEEL_E2E_STORE=postgres: point a copied example's `keel.toml` at a fresh database
    (its `store = "keel.db"` line replaced), so its `keel serve`, CLI commands and README
    steps all share it; nothing otherwise."""
    if E2E_STORE != "postgres":
        return
    config = project / "keel.toml"
    text = config.read_text()
    pointed, n = re.subn(r'(?m)^store = "keel\.db"', f'store = "{new_store(project)}"', text)
    assert n == 1, f"{config} has no `store = \"keel.db\"` line to point at PostgreSQL"
    config.write_text(pointed)


@pytest.fixture(scope="session", autouse=True)
def drop_e2e_databases():
    yield
    for name in PG_DATABASES:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Gateway:
    process: KeelProcess
    port: int
    config: Path
    store: Path | str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def stop(self) -> int:
        """SIGTERM and return the exit code (the trace queue is drained before exit)."""
        if self.process.stopped_rc is not None:
            return self.process.stopped_rc
        return self.process.terminate()


def start_gateway(dir: Path, mock_port: int) -> Gateway:
    """`keel serve` on a free port with the suite's config in `dir`."""
    dir.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    store = new_store(dir)
    for _ in range(3):
        port = free_port()
        config = dir / "keel.toml"
        config.write_text(gateway_config(port, mock_port, store))
        p = KeelProcess("gateway", ["serve", "--config", str(config)], dir).start()
        try:
            p.wait_http(f"http://127.0.0.1:{port}/health")
            return Gateway(p, port, config, store)
        except RuntimeError as e:
            last = e
            p.kill()
    raise RuntimeError(f"could not start the gateway: {last}")


def stop_gateway_and_check(gw: Gateway) -> None:
    rc = gw.stop()
    assert rc == 0, f"`keel serve` exited with {rc} after SIGTERM (expected 0).\n--- stderr ---\n{gw.process.stderr()}"


def run_keel(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a one-shot `keel` command and capture its output."""
    return subprocess.run(
        [str(KEEL_BIN), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- README walkthroughs ----------------------------------------------------------------

README_STEP = "__KEEL_STEP_EXIT__"


def readme_blocks(marker: str, count: int = 1) -> list[list[str]]:
    """The first `count` ```sh blocks after `marker` in README.md, each as its commands:
    comments and blank lines out, continuation lines (`\\`, `|`) and `for … done` loops
    joined."""
    readme = (REPO / "README.md").read_text()
    at = readme.index(marker)
    out = []
    for _ in range(count):
        start = readme.index("```sh\n", at) + 6
        end = readme.index("```", start)
        commands, current = [], ""
        for line in readme[start:end].splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            current += line + "\n"
            continued = line.endswith("\\") or line.endswith("|")
            in_loop = current.lstrip().startswith("for ") and line.strip() != "done"
            if not (continued or in_loop):
                commands.append(current)
                current = ""
        assert not current, "a command of the walkthrough does not end"
        out.append(commands)
        at = end + 3
    return out


def run_readme_commands(commands: list[str], project: Path, port: int, timeout: float = 300):
    """Run README commands in one bash session, pointed at this test's binary, copy of
    the quickstart and gateway port: [(command, exit code, stdout)]."""
    script = ["set -u"]
    for c in commands:
        c = (
            c.replace("cargo run --release -p keel-cli --", str(KEEL_BIN))
            .replace("examples/quickstart/keel.toml", str(project / "keel.toml"))
            .replace("127.0.0.1:8100", f"127.0.0.1:{port}")
        )
        script.append(f'{c.rstrip()}\necho "{README_STEP} $?"')
    run = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=timeout, cwd=project
    )
    steps = re.split(rf"{README_STEP} (\d+)\n", run.stdout)
    outputs, codes = steps[0::2], [int(c) for c in steps[1::2]]
    assert len(codes) == len(commands), f"{run.stdout}\n{run.stderr}"
    return list(zip(commands, codes, outputs)), run.stderr


def serve_project(project: Path, port: int, name: str) -> KeelProcess:
    """`keel serve` on `project`'s keel.toml at `port`, once it answers /health."""
    proc = KeelProcess(
        name,
        ["serve", "--config", str(project / "keel.toml"), "--listen", f"127.0.0.1:{port}"],
        project / "logs",
    ).start()
    proc.wait_http(f"http://127.0.0.1:{port}/health")
    return proc


# --- fixtures --------------------------------------------------------------------------


def pytest_sessionstart(session):
    if not (KEEL_BIN.is_file() and os.access(KEEL_BIN, os.X_OK)):
        raise pytest.UsageError(
            f"keel binary not found at {KEEL_BIN}: run `cargo build -p keel-cli` or set KEEL_BIN "
            "(tests/e2e/run.sh does both)"
        )


@pytest.fixture(scope="session")
def mock_port(tmp_path_factory):
    proc, port = start_mock(tmp_path_factory.mktemp("mock"))
    yield port
    # `keel mock-provider` has no graceful shutdown: SIGTERM ends it. Only check that it
    # went away in time (terminate() raises otherwise).
    proc.terminate()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, mock_port):
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), mock_port)
    yield gw
    stop_gateway_and_check(gw)


@pytest.fixture()
def live_gateway(gateway):
    """The session gateway, failing the test with its stderr if it has died."""
    rc = gateway.process.proc.poll()
    if rc is not None:
        pytest.fail(f"the gateway died (exit {rc}).\n--- stderr ---\n{gateway.process.stderr()}")
    return gateway

"""`titus-flow up/down/status` against a real dev server, on private ports and home.

The tests of a running stack share one stack per module and xdist worker
(``env``); each brings it to the state it needs (``running`` starts it, `up`
being idempotent), so they pass in any order and any split between workers.
Tests of a stack's first start get a fresh one (``fresh_env``). The CLI runs as a
subprocess so its exit codes are the real ones.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_fork import run_cli

from titus_flow import stack, visibility
from titus_flow.config import Settings, load_settings
from titus_flow.metrics import PROCESS_INFO, parse_scrape, total

REPEAT = 3  # exit codes are checked over repeated runs (see sdk-python #300 in DESIGN.md)


@dataclass
class Env:
    home: Path
    port: int
    ui_port: int
    vars: dict[str, str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        return load_settings(environ=self.vars)


def make_env(home: Path, port: int, ui_port: int) -> Env:
    # Nothing of the developer's own configuration may leak in (or out to 7233).
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TITUS_FLOW_", "TEMPORAL_"))}
    base.update(
        TITUS_FLOW_HOME=str(home),
        TITUS_FLOW_ADDRESS=f"127.0.0.1:{port}",
        TITUS_FLOW_UI_PORT=str(ui_port),
    )
    return Env(home, port, ui_port, base)


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env=env.vars, timeout=180)


def expect(env: Env, code: int, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli(env, *args)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def live_pids(match: Callable[[str, str], bool]) -> list[int]:
    """Live (non-zombie) processes whose cmdline/environ satisfy ``match``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (
                (entry / "environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
            )
        except OSError:
            continue
        if state != "Z" and match(cmdline, environ):
            pids.append(int(entry.name))
    return pids


def stack_pids(home: Path) -> list[int]:
    """Processes of the stack in ``home``: the server names it, components inherit it."""
    return live_pids(lambda cmd, env: str(home) in cmd or f"TITUS_FLOW_HOME={home}\n" in env)


def server_pids(home: Path) -> list[int]:
    return live_pids(lambda cmd, _env: "start-dev" in cmd and str(home) in cmd)


pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs procfs"),
]

# The stack `up` starts includes the agent (where this install has one), which runs
# containers: tests of a running stack need Docker.
needs_stack = pytest.mark.docker


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[Env]:
    env = make_env(tmp_path_factory.mktemp("stack") / "home", free_port(), free_port())
    yield env
    cli(env, "down")  # whatever a failed test left behind


@pytest.fixture
def running(env: Env) -> None:
    """Start the module's stack if it is not running."""
    expect(env, 0, "up")


@pytest.fixture
def fresh_env(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Env]:
    """A stack never started before (its own home and ports)."""
    env = make_env(tmp_path / "home", free_port(), free_port())
    yield env
    cli(env, "down")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    # Its own process group, as a stack process would have: a wrong `down` could kill it.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    yield proc
    proc.kill()
    proc.wait()


# --- a stack before and after its first start -------------------------------------------


def test_status_before_up_exits_1(fresh_env: Env) -> None:
    env = fresh_env
    for _ in range(REPEAT):
        data = json.loads(expect(env, 1, "status", "-o", "json").stdout)
        assert data["running"] is False
        assert data["processes"][0] == {
            "name": "temporal",
            "running": False,
            "pid": None,
            "uptime_seconds": None,
            "log": str(env.home / "logs" / "temporal.log"),
            "metrics": None,
        }


@needs_stack
def test_up_twice_leaves_one_server(fresh_env: Env) -> None:
    env = fresh_env
    first = expect(env, 0, "up")
    assert f"http://127.0.0.1:{env.ui_port}" in first.stdout
    assert "started" in first.stdout
    pids = server_pids(env.home)
    assert len(pids) == 1
    second = json.loads(expect(env, 0, "up", "-o", "json").stdout)
    assert set(second["actions"].values()) == {"running"}
    assert server_pids(env.home) == pids
    assert (env.home / "temporal.db").is_file()
    assert (env.home / "run" / "temporal.pid").is_file()


@needs_stack
@pytest.mark.usefixtures("running")
def test_search_attributes_registered(env: Env, temporal_bin: Path) -> None:
    out = subprocess.run(
        [
            *(str(temporal_bin), "operator", "search-attribute", "list", "--address", env.address),
            *("-o", "json", "--disable-config-file", "--disable-config-env"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    custom = json.loads(out)["customAttributes"]
    for key in visibility.ALL:
        assert custom.get(key.name) == "INDEXED_VALUE_TYPE_KEYWORD"


@needs_stack
@pytest.mark.usefixtures("running")
def test_web_ui_answers(env: Env) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{env.ui_port}/", timeout=5) as resp:
                assert resp.status == 200
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@needs_stack
@pytest.mark.usefixtures("running")
def test_status_reports_running(env: Env) -> None:
    (pid,) = server_pids(env.home)
    for _ in range(REPEAT):
        data = json.loads(expect(env, 0, "status", "-o", "json").stdout)
        assert data["running"] is True
        assert data["address"] == env.address
        assert data["ui_url"] == f"http://127.0.0.1:{env.ui_port}"
        server = data["processes"][0]
        assert (server["name"], server["running"], server["pid"]) == ("temporal", True, pid)
        assert server["uptime_seconds"] >= 0
    text = expect(env, 0, "status").stdout
    assert f"pid {pid}" in text and env.address in text


@needs_stack
@pytest.mark.usefixtures("running")
def test_up_serves_metrics_and_keeps_their_ports(env: Env) -> None:
    served = {
        p["name"]: p["metrics"]
        for p in json.loads(expect(env, 0, "status", "-o", "json").stdout)["processes"]
    }
    assert served["temporal"] is None
    for name, role in (("worker", "worker"), ("agent", "agent")):
        url = served[name]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        deadline = time.monotonic() + 30
        while True:  # the process may still be starting its runtime, then setting the gauge
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    samples = parse_scrape(answer.read().decode())
                if total(samples, PROCESS_INFO, role=role) or time.monotonic() > deadline:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        assert total(samples, PROCESS_INFO, role=role) == 1
    again = json.loads(expect(env, 0, "up", "-o", "json").stdout)
    assert (again["actions"]["worker"], again["actions"]["agent"]) == ("running", "running")
    text = expect(env, 0, "status").stdout
    assert "\nMetrics    " in text and f" worker  {served['worker']}\n" in text
    assert f"Logs       JSON lines, one file per process in {env.home / 'logs'}" in text


def process(env: Env, name: str) -> stack.ProcessStatus:
    (found,) = [p for p in stack.status(env.settings).processes if p.name == name]
    return found


@needs_stack
@pytest.mark.usefixtures("running")
def test_components_idempotent_and_restarted_on_change(env: Env) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(300)"]
    assert stack.up(env.settings, [("sleeper", argv)]) == {
        "temporal": "running",
        "sleeper": "started",
    }
    first = process(env, "sleeper")
    assert first.running
    assert stack.up(env.settings, [("sleeper", argv)])["sleeper"] == "running"
    assert process(env, "sleeper").pid == first.pid

    changed = [*argv, "--changed"]
    assert stack.up(env.settings, [("sleeper", changed)])["sleeper"] == "restarted"
    second = process(env, "sleeper")
    assert second.running and second.pid != first.pid
    assert first.pid not in live_pids(lambda cmd, _env: "time.sleep(300)" in cmd)
    # The component got the stack's settings through its environment.
    environ = Path(f"/proc/{second.pid}/environ").read_bytes().split(b"\0")
    assert f"TITUS_FLOW_ADDRESS={env.address}".encode() in environ
    expect(env, 0, "status")


@needs_stack
def test_failing_component_names_its_log(env: Env) -> None:
    argv = [sys.executable, "-c", "import sys; print('bad flag --frobnicate'); sys.exit(3)"]
    with pytest.raises(stack.StackError) as err:
        stack.up(env.settings, [("broken", argv)])
    message = str(err.value)
    assert "exited with code 3" in message
    assert str(env.home / "logs" / "broken.log") in message
    assert "bad flag --frobnicate" in message
    assert not (env.home / "run" / "broken.pid").exists()


@needs_stack
@pytest.mark.usefixtures("running")
def test_down_stops_everything(env: Env) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    stack.up(env.settings, [("sleeper", sleeper)])  # a component besides the server
    recorded = {p.pid for p in stack.status(env.settings).processes if p.running}
    assert len(recorded) >= 2  # server and sleeper (and worker, agent where they exist)
    assert recorded <= set(stack_pids(env.home))
    out = expect(env, 0, "down").stdout
    assert "sleeper" in out and "temporal" in out
    assert stack_pids(env.home) == []
    assert list((env.home / "run").glob("*.pid")) == []
    assert (env.home / "temporal.db").is_file()  # state is kept
    assert (env.home / "logs" / "temporal.log").is_file()
    for _ in range(REPEAT):
        assert "nothing was running" in expect(env, 0, "down").stdout
        expect(env, 1, "status")


# --- refusals, without a server -----------------------------------------------------------


def test_up_refuses_a_remote_address(tmp_path: Path, free_port: Callable[[], int]) -> None:
    env = make_env(tmp_path / "home", free_port(), free_port())
    env.vars["TITUS_FLOW_ADDRESS"] = "temporal.example.com:7233"
    for _ in range(REPEAT):
        result = expect(env, 2, "up")
        assert "only manages" in result.stderr
    assert not (env.home / "run").exists()


def test_up_refuses_a_port_in_use(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        env = make_env(tmp_path / "home", listener.getsockname()[1], free_port())
        result = expect(env, 2, "up")
    assert "in use" in result.stderr
    assert server_pids(env.home) == []


def test_reused_pid_is_never_ours(
    tmp_path: Path, free_port: Callable[[], int], sleeper: subprocess.Popen[bytes]
) -> None:
    # A pid file whose pid now belongs to an unrelated process (started later).
    env = make_env(tmp_path / "home", free_port(), free_port())
    (env.home / "run").mkdir(parents=True)
    record = {"pid": sleeper.pid, "start": "1", "started_at": time.time(), "argv": ["x"]}
    (env.home / "run" / "temporal.pid").write_text(json.dumps(record))
    data = json.loads(expect(env, 1, "status", "-o", "json").stdout)
    assert data["processes"][0]["running"] is False
    assert "nothing was running" in expect(env, 0, "down").stdout
    assert sleeper.poll() is None  # not killed
    assert not (env.home / "run" / "temporal.pid").exists()

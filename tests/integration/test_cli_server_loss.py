"""Every CLI command against a Temporal server that is not there, or that dies while the
command runs (issue 13, finding 6): exit 1 with one line on stderr naming the address
and what to do, never a traceback; bad input still exits 2, before anything is sent.

Each command is a real subprocess (``python -m titus_flow``), so exit codes and stderr
are what a user sees.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import click
import pytest
import yaml
from cli_fork import run_cli

from titus_flow import stack
from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli
from titus_flow.client import TitusClient
from titus_flow.config import Settings
from titus_flow.lifecycle import JobState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ADVICE = "is the server running? start it with `titus-flow up`"

# Commands that never call the server, and why.
OFFLINE = {
    ("validate",): "reads files only",
    ("schema",): "prints the job schema",
    ("replay",): "replays a history file locally",
    ("up",): "starts the server itself",
    ("down",): "stops local processes by pid",
    ("status",): "reports the local stack: a stopped server is its normal answer (exit 1)",
    ("codec-key",): "prints a new key",
    ("codec-server",): "encodes and decodes payloads locally; never calls Temporal",
    ("fleet", "fetch-secret"): "reads AWS Secrets Manager on an instance at boot, not Temporal",
    ("import",): "translates a file offline",
}


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _job(name: str, **container: object) -> dict[str, object]:
    return {
        "name": name,
        "container": {"image": "busybox:latest", "command": "true", **container},
        "resources": {"cpu": 0.1, "memory": "32Mi", "disk": 0},
    }


def _jobs_file(path: Path, *jobs: dict[str, object]) -> str:
    return _write(path, yaml.safe_dump({"jobs": list(jobs)}))


def _server_commands(tmp: Path) -> list[tuple[tuple[str, ...], list[str], int]]:
    """(command, minimal valid arguments, expected exit code) for every command that calls
    the server; a few bad inputs too, which must exit 2 before any connection (tests/unit/
    test_cli.py has `run` of a bad file)."""
    job = _jobs_file(tmp / "job.yaml", _job("hello"))
    groups = _write(tmp / "groups.yaml", "capacity_groups:\n  - {name: prod, tier: critical}\n")
    fleet = str(EXAMPLES / "fleets" / "batch-pool.yaml")
    job_id, task_id = "hello-1a2b3c4d", "hello-1a2b3c4d-0"
    return [
        (("run",), [job], 1),
        (("run",), [str(EXAMPLES / "dag.yaml")], 1),  # depends_on: runs as a DAG workflow
        (("start",), [f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", "{}"], 1),
        (("start",), [f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", '{"chunks": 0}'], 2),
        (("schedule", "create"), ["nightly", job, "--every", "1h"], 1),
        (("schedule", "list"), [], 1),
        (("schedule", "pause"), ["nightly"], 1),
        (("schedule", "unpause"), ["nightly"], 1),
        (("schedule", "trigger"), ["nightly"], 1),
        (("schedule", "delete"), ["nightly"], 1),
        (("jobs", "list"), [], 1),
        (("job", "describe"), [job_id], 1),
        (("job", "kill"), [job_id], 1),
        (("job", "scale"), [job_id, "--desired", "2"], 1),
        (("job", "update"), [job_id, str(EXAMPLES / "web.yaml")], 1),
        (("job", "promote"), [job_id], 1),
        (("job", "rollback"), [job_id], 1),
        (("job", "autoscaling"), [job_id], 1),
        (("job", "autoscaling"), [job_id, "--pause"], 1),
        (("job", "load-balancers"), [job_id], 1),
        (("metrics", "put"), [job_id, "queue_depth", "12"], 1),
        (("metrics", "put"), [job_id, "queue_depth", "lots"], 2),
        (("metrics", "put"), [job_id, "bad name", "1"], 2),
        (("lb",), [job_id, "--name", "web", "--listen", "127.0.0.1:0"], 1),
        (("lb",), [job_id, "--name", "web", "--listen", "0.0.0.0:8080"], 2),
        (("task", "kill"), [task_id], 1),
        (("task", "logs"), [task_id, "--follow"], 1),
        (("events",), [], 1),
        (("events",), ["--job", job_id, "--follow"], 1),
        (("events",), ["--after", "not-a-cursor"], 2),
        (("export",), [job_id, "--to", "titus"], 1),
        (("export",), [job_id, "--to", "nomad"], 2),
        (("agents", "list"), [], 1),
        (("agents", "drain"), ["local"], 1),
        (("agents", "tasks"), ["local"], 1),
        (("capacity-groups", "list"), [], 1),
        (("capacity-groups", "create"), ["prod", "--tier", "critical"], 1),
        (("capacity-groups", "create"), ["prod", "--limit-cpu", "lots"], 2),
        (("capacity-groups", "update"), ["prod", "--limit-tasks", "10"], 1),
        (("apply",), [groups], 1),
        (("fleet", "apply"), [fleet], 1),
        (("fleet", "status"), ["batch-pool"], 1),
        (("fleet", "scale"), ["batch-pool", "--min", "0", "--max", "2"], 1),
        (("fleet", "scale"), ["batch-pool", "--min", "3", "--max", "2"], 2),
        (("fleet", "delete"), ["batch-pool"], 1),
        (("fleet", "user-data"), ["batch-pool"], 1),
        (("worker",), [], 1),
        (("agent",), ["--id", "loss-test", "--driver", "process"], 1),
    ]


def _titus(address: str, home: Path) -> list[str]:
    return [sys.executable, "-m", "titus_flow", "--address", address, "--home", str(home)]


def _env(tmp: Path) -> dict[str, str]:
    """The test's environment without a user's Temporal or titus-flow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TITUS_FLOW_"))}
    env["TITUS_FLOW_CONFIG"] = str(tmp / "no-config.yaml")
    # Workers and agents wait for a server that is not up (300 s by default): here
    # they are to give up at once.
    env["TITUS_FLOW_SERVER_WAIT_SECONDS"] = "0"
    return env


def _problems_with_exit(
    stderr: str, code: int | None, expected: int, address: str, *, progress: bool = False
) -> list[str]:
    """What is wrong with how a command ended: exit code, traceback, error lines.

    Exit 1 (the server): one line, naming the address and what to do; ``progress``:
    lines the command printed while it ran may come before it. Exit 2 (bad input,
    in click's or our format): found before any connection was tried.
    """
    problems = []
    if code != expected:
        problems.append(f"exit code {code}, expected {expected}")
    if "Traceback" in stderr:
        problems.append("a traceback")
    lines = stderr.strip().splitlines()
    if expected == 2:
        if "cannot reach" in stderr:
            problems.append("bad input was sent to the server")
        return [f"{p}; stderr:\n{stderr}" for p in problems]
    errors = [line for line in lines if line.startswith("error:")]
    if len(errors) != 1:
        problems.append(f"{len(errors)} error lines, expected one")
    elif lines[-1] != errors[0]:
        problems.append("the error is not the last line")
    if not progress and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected one")
    if not (errors and f"Temporal at {address}" in errors[0] and ADVICE in errors[0]):
        problems.append("the error does not name the address and what to do")
    return [f"{p}; stderr:\n{stderr}" for p in problems]


@pytest.fixture
def dead_address() -> Iterator[str]:
    """An address where nothing listens: a bound, never listening socket (refuses, and no
    other process can take the port meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent_address() -> Iterator[str]:
    """An address that takes connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes handshakes; nobody ever reads
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_every_command_with_no_server_exits_1_in_one_line(
    tmp_path: Path, dead_address: str, silent_address: str
) -> None:
    _register_commands()
    commands = [(*command, dead_address) for command in _server_commands(tmp_path)]
    # Every command is classified: a new one must be added here or to OFFLINE.
    assert set(_leaf_commands(cli)) == set(OFFLINE) | {c for c, *_ in commands}
    # A server that accepts but never answers is given up on in bounded time too.
    commands.append((("jobs", "list"), [], 1, silent_address))
    env = _env(tmp_path)

    def run(
        command: tuple[str, ...], args: list[str], address: str
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = run_cli(  # fail fast: no retrying for minutes
            [*_titus(address, tmp_path / "home")[3:], *command, *args],
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        return result, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1], c[3]), commands))
    failures = [
        f"{' '.join(command + tuple(args))} (at {address}): {problem}"
        for (command, args, expected, address), (result, _) in zip(commands, results, strict=True)
        for problem in _problems_with_exit(result.stderr, result.returncode, expected, address)
    ]
    assert not failures, "\n\n".join(failures)
    silent, took = results[-1]
    assert "(no answer in time)" in silent.stderr
    assert took < 40, f"gave up on a silent server after {took:.0f}s"


# --- the server killed while commands run ---------------------------------------------------


@dataclass
class Command:
    """A CLI subprocess whose stdout and stderr lines are read as they come."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            assert stream is not None
            reader = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            if name == "err":
                self.stderr.append(line)
            self.lines.put((name, line))

    def finish(self, deadline: float) -> int | None:
        """The exit code once the process ended and its output is read; None if by
        ``deadline`` (monotonic) it had not."""
        try:
            code = self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        for reader in self.readers:
            reader.join(10)
        return code

    def wait_for_line(self, stream: str, start: str, timeout: float = 30.0) -> str:
        """The first line on ``stream`` that starts with ``start``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                name, line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                said = "".join(self.stderr)
                raise AssertionError(
                    f"no {stream} line {start!r} in {timeout:g}s: {said}"
                ) from None
            if name == stream and line.startswith(start):
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Server:
    """A dev server of this test's own (the shared one must not be killed)."""

    address: str
    proc: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return stack.split_address(self.address)[1]


@pytest.fixture
def own_server(
    temporal_bin: Path, free_port: Callable[[], int], tmp_path: Path
) -> Iterator[Server]:
    address = f"127.0.0.1:{free_port()}"
    argv = stack.server_argv(
        temporal_bin, port=stack.split_address(address)[1], ui_port=None, db_filename=None
    )
    log = tmp_path / "temporal.log"
    proc = stack.start_process(argv, log)

    def alive() -> bool:
        return proc.poll() is None

    try:
        stack.wait_ready(temporal_bin, address, alive, log)
        yield Server(address, proc)
    finally:
        stack.stop_process_group(proc.pid, alive)


def _connected(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if fields[3] == "01" and remote_port == port and fields[9] in inodes:
            return True
    return False


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)


# `jobs list` reads a page in milliseconds: this runs the real CLI with pages of one job
# and holds before each next page until a line arrives on stdin, so the server can be
# killed while it pages.
PAGING_CLI = """
import asyncio, sys
from temporalio.client import WorkflowExecutionAsyncIterator
from titus_flow.cli import main

fetch = WorkflowExecutionAsyncIterator.fetch_next_page

async def fetch_slowly(self, *, page_size=None):
    if self.next_page_token is not None:
        print("paging", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    await fetch(self, page_size=1)

WorkflowExecutionAsyncIterator.fetch_next_page = fetch_slowly
main()
"""


@pytest.mark.slow
def test_commands_exit_1_in_one_line_when_the_server_is_killed_under_them(
    own_server: Server, tmp_path: Path
) -> None:
    address, home, env = own_server.address, tmp_path / "home", _env(tmp_path)
    titus = _titus(address, home)
    # A control worker and no agent: jobs wait for capacity forever.
    worker = stack.start_process([*titus, "worker"], tmp_path / "worker.log", env=env)
    started: list[Command] = []

    def start(argv: list[str], stdin: bool = False) -> Command:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        started.append(Command(proc))
        return started[-1]

    try:
        jobs_file = _jobs_file(tmp_path / "jobs.yaml", _job("waits"), _job("waits-too"))
        run = start([*titus, "run", jobs_file])
        job_id = run.wait_for_line("err", "submitted ").split()[1].rstrip(";")

        # A file whose second job the server refuses (its input is over the 2 MB blob
        # limit): the first job, already submitted, is killed and the error says so.
        partial = _jobs_file(
            tmp_path / "partial.yaml", _job("first"), _job("huge", env={"BIG": "x" * 2_500_000})
        )
        refused = subprocess.run(
            [*titus, "run", partial], capture_output=True, text=True, env=env, timeout=60
        )
        assert refused.returncode == 1, refused.stderr
        assert "Traceback" not in refused.stderr
        note = next(line for line in refused.stderr.splitlines() if line.startswith("note:"))
        assert "1 of the 2 jobs were submitted before the failure: killed first-" in note
        first_id = note.rsplit("killed ", 1)[1].strip()

        settings = Settings(address=address, home=home)

        async def check_killed_and_listed() -> None:
            client = await TitusClient.connect(settings)
            view = await asyncio.wait_for(client.wait(first_id), 30)
            assert view.state is JobState.KILLED
            # Jobs are in visibility, so `jobs list` has a second page.
            while len(await client.list_jobs()) < 2:
                await asyncio.sleep(0.1)

        asyncio.run(asyncio.wait_for(check_killed_and_listed(), 30))

        logs = start([*titus, "task", "logs", "--follow", f"{job_id}-0"])
        listing = start([sys.executable, "-c", PAGING_CLI, *titus[3:], "jobs", "list"], stdin=True)
        listing.wait_for_line("out", "paging")
        _wait(
            lambda: logs.proc.poll() is not None or _connected(logs.proc.pid, own_server.port),
            "task logs connected",
        )
        assert run.proc.poll() is None and logs.proc.poll() is None, "".join(logs.stderr)

        os.killpg(own_server.proc.pid, signal.SIGKILL)
        own_server.proc.wait(10)
        killed_at = time.monotonic()
        assert listing.proc.stdin is not None
        listing.proc.stdin.write("next page\n")
        listing.proc.stdin.flush()

        # Bounded: the client retries a lost server for about 10 s, then gives up.
        failures = []
        for name, command in (("run", run), ("task logs --follow", logs), ("jobs list", listing)):
            code = command.finish(deadline=killed_at + 30)
            stderr = "".join(command.stderr)
            failures += [
                f"{name}: {problem}"
                for problem in _problems_with_exit(
                    stderr, code, 1, address, progress=command is run
                )
            ]
        assert not failures, "\n\n".join(failures)
    finally:
        for command in started:
            command.stop()
        if worker.poll() is None:  # no state to save: it would only retry the lost server
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

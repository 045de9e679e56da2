"""The embedded stack: a local Temporal dev server plus titus-flow's own processes.

``titus-flow up`` starts ``temporal server start-dev`` (SQLite file, Web UI) and
extra components such as the control worker and a local agent, each detached in
its own session with a log file under ``<home>/logs`` and a pid file under
``<home>/run``. ``up`` is idempotent, ``down`` stops exactly what ``up`` started,
``status`` reports it.

The dev server's command line and readiness live in :mod:`titus_flow.dev_server`,
the detached processes and their pid files in :mod:`titus_flow.pidfiles`; the
names other code uses through ``stack.`` are re-exported here.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from titus_flow.config import Settings
from titus_flow.dev_server import (
    READY_TIMEOUT,
    is_managed,
    server_argv,
    split_address,
    temporal_binary,
    wait_ready,
)
from titus_flow.errors import UserError
from titus_flow.pidfiles import (
    SERVER,
    PidRecord,
    StackError,
    failure,
    locked,
    log_path,
    pid_path,
    read_record,
    recorded_names,
    start_process,
    stop_process_group,
    write_record,
)
from titus_flow.processes import start_marker

__all__ = [
    "SERVER",
    "Action",
    "ProcessStatus",
    "Progress",
    "StackError",
    "StackStatus",
    "down",
    "is_managed",
    "log_path",
    "metrics_address_in",
    "running_metrics_address",
    "server_argv",
    "split_address",
    "start_process",
    "status",
    "stop_process_group",
    "temporal_binary",
    "up",
    "wait_ready",
]

Action = Literal["started", "restarted", "running"]
"""What :func:`up` did with one component."""

Progress = Callable[[str], None]

METRICS_FLAG = "--metrics-address"
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_ALIVE_CHECK = 1.0


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the stack as its pid file and the kernel see it."""

    name: str
    running: bool
    pid: int | None
    uptime_seconds: float | None
    log_path: Path
    metrics_url: str | None = None
    """Where it serves Prometheus metrics (its ``--metrics-address``), if it does."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "name": self.name,
            "running": self.running,
            "pid": self.pid,
            "uptime_seconds": None if self.uptime_seconds is None else round(self.uptime_seconds),
            "log": str(self.log_path),
            "metrics": self.metrics_url,
        }


@dataclass(frozen=True)
class StackStatus:
    """The whole stack: the server first, then every component with a pid file."""

    address: str
    namespace: str
    ui_url: str
    home: Path
    processes: tuple[ProcessStatus, ...]

    @property
    def running(self) -> bool:
        """Whether the server and every recorded component run."""
        return all(p.running for p in self.processes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "running": self.running,
            "address": self.address,
            "namespace": self.namespace,
            "ui_url": self.ui_url,
            "home": str(self.home),
            "processes": [p.to_dict() for p in self.processes],
        }


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _component_env(settings: Settings) -> dict[str, str]:
    """Environment for components: they must reach the same server and home as `up`."""
    env = dict(os.environ)
    env.update(
        TITUS_FLOW_HOME=str(settings.home),
        TITUS_FLOW_ADDRESS=settings.address,
        TITUS_FLOW_NAMESPACE=settings.namespace,
    )
    return env


def _check_components(components: Sequence[tuple[str, Sequence[str]]]) -> None:
    names = [name for name, _ in components]
    for name in names:
        if not _NAME.match(name) or name == SERVER:
            raise UserError(f"component name {name!r}: use lower-case letters, digits, - or _")
    if len(set(names)) != len(names):
        raise UserError(f"component names must be unique: {names}")


def up(
    settings: Settings,
    components: Sequence[tuple[str, Sequence[str]]] = (),
    *,
    progress: Progress | None = None,
    ready_timeout: float = READY_TIMEOUT,
    ui_codec_endpoint: str | None = None,
) -> dict[str, Action]:
    """Ensure the dev server and ``components`` (name, argv) run; return what was done.

    Idempotent: a process that already runs with the same command line is left
    alone; one whose command line changed (e.g. other ``--workflows``, a codec
    endpoint for the Web UI given or dropped) is restarted.
    Raises :class:`UserError` for a non-local address or a port taken by another
    process, :class:`StackError` when a process fails to start.
    """
    if not is_managed(settings):
        raise UserError(
            f"address {settings.address} is not the local dev server: `up` only manages"
            " a Temporal dev server on 127.0.0.1. Unset TITUS_FLOW_ADDRESS/TEMPORAL_ADDRESS"
            " (or `address:` in the config file) to use the embedded stack, or run workers"
            " against your cluster yourself"
        )
    _check_components(components)
    report = progress or (lambda _msg: None)
    home = settings.home
    binary = temporal_binary()
    port = split_address(settings.address)[1]
    argv = server_argv(
        binary,
        port=port,
        ui_port=settings.ui_port,
        db_filename=home / "temporal.db",
        namespace=settings.namespace,
        ui_codec_endpoint=ui_codec_endpoint,
    )
    actions: dict[str, Action] = {}
    with locked(home):
        (home / "logs").mkdir(exist_ok=True)

        def server_ready(proc_alive: Callable[[], bool]) -> None:
            report(f"waiting for Temporal on {settings.address}")
            wait_ready(
                binary,
                settings.address,
                proc_alive,
                log_path(home, SERVER),
                namespace=settings.namespace,
                timeout=ready_timeout,
            )

        actions[SERVER], _ = _ensure(
            home, SERVER, argv, None, report, server_ready, (port, settings.ui_port)
        )
        env = _component_env(settings)
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        for name, comp_argv in components:
            actions[name], proc = _ensure(home, name, list(comp_argv), env, report, None, ())
            if proc is not None:
                started.append((name, proc))
        if started:
            # A component that dies on a bad flag or import does so within a second.
            report("checking components")
            time.sleep(_ALIVE_CHECK)
            for name, proc in started:
                if proc.poll() is not None:
                    pid_path(home, name).unlink(missing_ok=True)
                    raise failure(name, log_path(home, name), f"exited with code {proc.returncode}")
    return actions


def _ensure(
    home: Path,
    name: str,
    argv: list[str],
    env: dict[str, str] | None,
    report: Progress,
    ready: Callable[[Callable[[], bool]], None] | None,
    ports: tuple[int, ...],
) -> tuple[Action, subprocess.Popen[bytes] | None]:
    """Start ``name`` unless it already runs with ``argv``; restart it if argv changed.

    Returns what was done and the new process, if one was started. ``ready`` waits
    for a started process to serve; ``ports`` must be free before it starts.
    """
    pid_file = pid_path(home, name)
    record = read_record(pid_file)
    action: Action = "started"
    if record is not None and record.alive():
        if record.argv == argv:
            if ready is not None:
                ready(record.alive)  # running is not enough: it must answer, too
            return "running", None
        report(f"restarting {name} (its command line changed)")
        stop_process_group(record.pid, record.alive)
        action = "restarted"
    pid_file.unlink(missing_ok=True)
    for port in ports:
        if _port_in_use(port):
            raise UserError(
                f"port {port} on 127.0.0.1 is in use by a process `titus-flow up` did not"
                " start; stop it, or choose other ports (TITUS_FLOW_ADDRESS, TITUS_FLOW_UI_PORT)"
            )
    log = log_path(home, name)

    def launch() -> subprocess.Popen[bytes]:
        report(f"starting {name}")
        proc = start_process(argv, log, env)
        start = start_marker(proc.pid)
        if start is None:
            raise failure(name, log, f"exited at once with code {proc.wait()}")
        write_record(pid_file, PidRecord(proc.pid, start, time.time(), argv))
        return proc

    if ready is None:
        return action, launch()

    def serving(proc: subprocess.Popen[bytes]) -> None:
        try:
            ready(functools.partial(running, proc))
        except StackError:
            pid_file.unlink(missing_ok=True)
            raise

    return action, start_until_bound(launch, serving, log, ports)


def start_until_bound(
    launch: Callable[[], subprocess.Popen[bytes]],
    ready: Callable[[subprocess.Popen[bytes]], None],
    log: Path,
    ports: tuple[int, ...],
) -> subprocess.Popen[bytes]:
    """``launch`` a process and wait until it is ``ready``; again if it lost a port race.

    A process that fails ``ready`` (raising :class:`StackError`) is stopped; it
    is started again, up to :data:`PORT_RACE_TRIES` times in all, only when its
    ``log`` shows it died binding a port other than ``ports``
    (:func:`lost_a_port_race`).
    """
    for tries_left in reversed(range(PORT_RACE_TRIES)):
        proc = launch()
        try:
            ready(proc)
            return proc
        except StackError:
            stop_process_group(proc.pid, functools.partial(running, proc))
            if not (tries_left and lost_a_port_race(log, ports)):
                raise
    raise AssertionError("unreachable: the last try returns or raises")


def running(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` (a child of this process) has not exited."""
    return proc.poll() is None


PORT_RACE_TRIES = 3
"""Starts of the dev server when it loses a race for a port it picked itself."""


def lost_a_port_race(log: Path, ports: tuple[int, ...]) -> bool:
    """Whether a process died binding a port other than ``ports`` (the ones we chose).

    The dev server picks its HTTP API and metrics ports itself, as free ones;
    another process (an outgoing connection's ephemeral port) can take one
    before it binds, and it exits "address already in use". Starting it again
    picks other ports. A port the user chose is never retried: it is theirs to fix.
    """
    try:
        with log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            tail = file.read().decode(errors="replace")
    except OSError:
        return False
    lines = tail.splitlines()
    last_start = max((i for i, line in enumerate(lines) if line.startswith("--- ")), default=0)
    failed = [line for line in lines[last_start:] if "address already in use" in line]
    return bool(failed) and not any(f":{port}:" in line for line in failed for port in ports)


def metrics_address_in(argv: Sequence[str]) -> str | None:
    """The ``--metrics-address`` a component's command line gives, if any."""
    for flag, value in itertools.pairwise(argv):
        if flag == METRICS_FLAG:
            return value
    return None


def running_metrics_address(home: Path, name: str) -> str | None:
    """The metrics address of component ``name`` if it runs with one (``up`` keeps it)."""
    record = read_record(pid_path(home, name))
    return metrics_address_in(record.argv) if record is not None and record.alive() else None


def down(settings: Settings, *, progress: Progress | None = None) -> list[str]:
    """Stop every process ``up`` started (components first); return the names stopped.

    Removes their pid files (stale ones too) and nothing else: logs and the
    database stay. Works for any address, so a stack left behind can always be
    stopped.
    """
    report = progress or (lambda _msg: None)
    home = settings.home
    if not (home / "run").is_dir():
        return []
    stopped: list[str] = []
    with locked(home):
        # Server last, so workers can finish their last calls to it.
        for name in reversed(recorded_names(home)):
            pid_file = pid_path(home, name)
            record = read_record(pid_file)
            if record is not None and record.alive():
                report(f"stopping {name}")
                stop_process_group(record.pid, record.alive)
                stopped.append(name)
            pid_file.unlink(missing_ok=True)
    return stopped


def status(settings: Settings, expected: Sequence[str] = ()) -> StackStatus:
    """Which stack processes run, with pid, uptime and log, plus address and Web UI.

    Lists the server, every component ``up`` recorded, and the ``expected``
    components even before ``up`` ever started them (as not running).
    """
    home = settings.home
    now = time.time()
    processes = []
    recorded = recorded_names(home)
    for name in [*recorded, *sorted(set(expected) - set(recorded))]:
        record = read_record(pid_path(home, name))
        alive = record is not None and record.alive()
        metrics = metrics_address_in(record.argv) if record is not None and alive else None
        processes.append(
            ProcessStatus(
                name=name,
                running=alive,
                pid=record.pid if record is not None and alive else None,
                uptime_seconds=now - record.started_at if record is not None and alive else None,
                log_path=log_path(home, name),
                metrics_url=f"http://{metrics}/metrics" if metrics else None,
            )
        )
    return StackStatus(
        address=settings.address,
        namespace=settings.namespace,
        ui_url=settings.ui_url,
        home=home,
        processes=tuple(processes),
    )

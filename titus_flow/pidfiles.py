"""The stack's detached processes: started in a session of their own, recorded in pid files.

Each process ``up`` starts (the dev server, a worker, a local agent) runs in its
own session with a log file under ``<home>/logs`` and a pid file under
``<home>/run``. A pid file records the process's start marker as well as its
pid (:func:`titus_flow.processes.start_marker`), so a pid the kernel reused for
an unrelated process is never mistaken for ours, or signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from titus_flow.processes import (
    escalate,
    signal_group,
    start_marker,
    wait_until,
    write_atomically,
)

SERVER = "temporal"
"""Component name of the Temporal dev server."""

STOP_TIMEOUT = 15.0
"""Seconds a stack process has to end after SIGTERM before it is killed."""


class StackError(Exception):
    """A stack process failed to start or stop; the message names its log."""


def log_path(home: Path, name: str) -> Path:
    """Log file of component ``name``."""
    return home / "logs" / f"{name}.log"


def pid_path(home: Path, name: str) -> Path:
    """Pid file of component ``name``."""
    return home / "run" / f"{name}.pid"


@dataclass(frozen=True)
class PidRecord:
    """Contents of a pid file: which process runs a component, since when, with what argv."""

    pid: int
    start: str  # start marker: with the pid, it names one process
    started_at: float
    argv: list[str]

    def alive(self) -> bool:
        """Whether the recorded process still runs (not merely a process of that pid)."""
        return start_marker(self.pid) == self.start


def read_record(path: Path) -> PidRecord | None:
    """The pid file at ``path``; None when missing or unreadable (read as "not running")."""
    try:
        data = json.loads(path.read_text())
        return PidRecord(
            pid=int(data["pid"]),
            start=str(data["start"]),
            started_at=float(data["started_at"]),
            argv=[str(a) for a in data["argv"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or unreadable: treated as "not running"; down removes it.
        return None


def write_record(path: Path, record: PidRecord) -> None:
    """Write the pid file atomically: a concurrent `status` never reads half of one."""
    write_atomically(path, [json.dumps(asdict(record)).encode()])


def recorded_names(home: Path) -> list[str]:
    """Components with pid files, server first, others in name order."""
    names = sorted(p.stem for p in (home / "run").glob("*.pid"))
    return [SERVER] + [n for n in names if n != SERVER]


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialise up/down of one home so two concurrent `up`s start one server."""
    (home / "run").mkdir(parents=True, exist_ok=True)
    with (home / "run" / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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


def stop_process_group(pid: int, alive: Callable[[], bool], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if still alive after ``timeout``."""
    if not escalate(
        lambda signum: signal_group(pid, signum),
        lambda seconds: wait_until(lambda: not alive(), seconds),
        timeout,
    ):
        raise StackError(f"process {pid} survived SIGKILL")


def failure(name: str, log: Path, what: str) -> StackError:
    """A :class:`StackError` saying ``name`` ``what``, with the last lines of its log."""
    tail = _tail(log)
    detail = f"\nlast lines of {log}:\n{tail}" if tail else ""
    return StackError(f"{name} {what}; see {log}{detail}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

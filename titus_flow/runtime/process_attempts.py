"""One attempt of the process driver on disk: its supervisor script and its state files.

An attempt named ``<name>`` leaves four files in the driver's state directory
(:class:`AttemptFiles`): the driver's record of the launch (``<name>.json``), the
command's pid and exit written by the supervisor (``<name>.pid``,
``<name>.exit``) and, when the request names no log, the log. Everything the
driver knows about an attempt, after a restart too, is read back from them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from titus_flow.processes import is_alive, poll_until, write_atomically
from titus_flow.runtime.base import DriverError, Exit

# Run as ``sh -c SUPERVISOR sh <pid file> <exit file> <workdir> <argv...>`` with
# stdout a pipe to the driver and stderr the log file. A POSIX shell starts in
# about a millisecond, a Python interpreter in 25 ms of CPU: at hundreds of
# tasks a second that was most of an agent's work. ``setsid`` (util-linux) puts
# the command in a session and process group of its own, so the whole group can
# be signalled. The supervisor prints one line once the command runs (or could
# not start), then closes the pipe. Files are written as one short line each;
# a reader trusts a line only once it ends with a newline.
SUPERVISOR: Final = r"""
pid_file=$1 exit_file=$2 workdir=$3
shift 3
code=0 error=
if [ $# -eq 0 ]; then
    code=127 error="no command (the process driver ignores the image)"
elif [ -n "$workdir" ] && ! cd "$workdir" 2>/dev/null; then
    code=127 error="cannot enter the working directory $workdir"
elif ! command -v "$1" >/dev/null 2>&1; then
    code=127 error="cannot start '$1': command not found"
fi
if [ -n "$error" ]; then
    echo "titus-flow: $error" >&2
    echo started
    echo "$code $error" >"$exit_file"
    exit 0
fi
setsid "$@" 1>&2 &
child=$!
# "started" means the command's group can be signalled: wait (briefly, with
# builtins only) until setsid has made it.
tries=0
while ! kill -0 -"$child" 2>/dev/null && kill -0 "$child" 2>/dev/null && [ $tries -lt 5000 ]; do
    tries=$((tries + 1))
done
echo "$child" >"$pid_file"
trap 'kill -TERM -$child 2>/dev/null' TERM
trap 'kill -INT -$child 2>/dev/null' INT
echo started
exec 1>&2
while :; do
    wait "$child" 2>/dev/null  # no "Terminated" line in the task's log
    code=$?
    kill -0 "$child" 2>/dev/null || break  # a trapped signal ended the wait, not the child
done
kill -KILL -"$child" 2>/dev/null
echo "$code" >"$exit_file"
"""

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VANISHED: Final = 255  # exit code reported when the supervisor died without a word
_COPY_CHUNK: Final = 1 << 20  # bytes read at a time when keeping a log
_START_WAIT: Final = 5.0  # seconds for an adopted supervisor to report its command's pid


def is_attempt_name(name: str) -> bool:
    """Whether ``name`` can name an attempt (and so its files in the state directory)."""
    return _NAME.match(name) is not None


@dataclass(frozen=True)
class AttemptFiles:
    """The state files of one attempt, named after it in the driver's state directory."""

    state: Path  # JSON written by the driver: the request and the supervisor's pid
    pid: Path  # the command's pid (and process group), written by the supervisor
    exit: Path  # JSON exit record, written by the supervisor when the command ends
    log: Path  # the log when the request names none

    @classmethod
    def of(cls, directory: Path, name: str) -> AttemptFiles:
        """The files of attempt ``name``; raises :class:`DriverError` for a name not ours."""
        if not is_attempt_name(name):
            raise DriverError(f"invalid attempt name {name!r}")
        return cls(
            state=directory / f"{name}.json",
            pid=directory / f"{name}.pid",
            exit=directory / f"{name}.exit",
            log=directory / f"{name}.log",
        )


@dataclass(frozen=True)
class AttemptState:
    """What the driver recorded at launch (the state file)."""

    name: str
    job_id: str
    task_id: str
    attempt: int
    agent_id: str
    supervisor_pid: int
    supervisor_started: int | None  # start time in clock ticks: guards against pid reuse
    log_path: str
    working_dir: str | None
    env: dict[str, str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:  # files are written atomically: this is outside tampering
        raise DriverError(f"corrupt state file {path}: {err}") from err


def read_state(files: AttemptFiles) -> AttemptState | None:
    """The attempt's state file; None if it has none (never launched, or removed)."""
    data = _read_json(files.state)
    return None if data is None else AttemptState(**data)


def require_state(files: AttemptFiles) -> AttemptState:
    """The attempt's state file; raises :class:`DriverError` if it has none."""
    state = read_state(files)
    if state is None:
        raise DriverError(f"no process named {files.state.stem}")
    return state


def write_state(files: AttemptFiles, state: AttemptState) -> None:
    """Record ``state`` atomically, readable by the owner only (it holds the environment)."""
    data = json.dumps(dataclasses.asdict(state)).encode()
    write_atomically(files.state, [data], private=True)


async def keep_log(state: AttemptState, log_path: Path) -> None:
    """Copy the attempt's log to ``log_path``, unless it is that file already."""
    source = Path(state.log_path)
    if source != log_path and source.exists():
        await asyncio.to_thread(_copy_file, source, log_path)


def _copy_file(source: Path, target: Path) -> None:
    with source.open("rb") as data:
        write_atomically(target, iter(functools.partial(data.read, _COPY_CHUNK), b""))


def _read_line(path: Path) -> str | None:
    """A supervisor's one-line file, once completely written (else None)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text[:-1] if text.endswith("\n") else None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


def exit_of(state: AttemptState, files: AttemptFiles) -> Exit | None:
    """The attempt's exit, or None while it runs."""
    # Check liveness before reading the exit record: the supervisor writes the
    # record and then exits, so a dead supervisor's record is already there.
    alive = is_alive(state.supervisor_pid, state.supervisor_started)
    record = _read_line(files.exit)
    if record is not None:
        code, _, error = record.partition(" ")
        # The pid file was written as the command started, the record as it ended.
        return Exit(
            exit_code=int(code),
            started_at=_mtime(files.pid),
            finished_at=_mtime(files.exit),
            error=error,
        )
    if alive:
        return None
    return Exit(
        exit_code=_VANISHED,
        error="the process supervisor died without recording an exit (host reboot or kill)",
    )


async def running_group(state: AttemptState, files: AttemptFiles) -> int | None:
    """The process group of the attempt's command while it runs, else None."""
    group: int | None = None

    def known() -> bool:
        nonlocal group
        if exit_of(state, files) is not None:
            return True
        text = _read_line(files.pid)
        group = int(text) if text else None
        return group is not None

    # Only an adopted supervisor that is still starting has no pid file yet.
    await poll_until(known, _START_WAIT)
    return group if exit_of(state, files) is None else None

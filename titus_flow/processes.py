"""Local processes: who a pid is, stopping one for sure, and files that are never half-written.

One helper for what the stack (``titus-flow up``), the process driver, the
Docker driver's engine-start check and the test reaper all need:

* **Identity.** A pid alone is not a process: the kernel reuses pids, so a pid
  file or state file also records the process's start time (clock ticks since
  boot, field 22 of ``/proc/<pid>/stat``), and only a live process with that
  start time is "ours" to signal.
* **Escalation.** SIGTERM, a deadline, then SIGKILL and a short wait:
  :func:`escalate` (blocking) and :func:`escalate_async` share the steps; the
  waits with a deadline they use (:func:`wait_until`, :func:`poll_until`,
  :func:`wait_gone`) are here too.
* **Atomic writes.** :func:`write_atomically` renames a complete temporary file
  into place, so a reader (or a crash) sees the old content or the new, never half.

Written here rather than with ``psutil``: the start times already on disk (pid
files of a running stack, the process driver's state files of running attempts)
are raw clock ticks, which ``psutil`` only offers converted to a float wall-clock
time, so adopting it would change what those files mean across an upgrade; and
the whole of it is a few dozen lines over ``/proc`` that need no extra wheel on a
fresh machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

HAVE_PROC: Final = Path("/proc/self/stat").exists()
"""Whether this host has Linux's procfs (identity by start ticks needs it)."""

KILL_WAIT: Final = 5.0
"""Seconds to wait for a process to go after SIGKILL."""

_EXITED_STATES: Final = ("Z", "X")  # zombie, dead: it has exited, only not yet been reaped
_POLL_INTERVAL: Final = 0.05


# --- identity -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that tell a process apart."""

    state: str  # one letter: R, S, D, Z (zombie), ...
    ppid: int
    start_ticks: int  # clock ticks after boot when it started

    @property
    def exited(self) -> bool:
        """Whether the process has ended (a zombie waiting for its parent, or dead)."""
        return self.state in _EXITED_STATES


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``; None when there is no such process (or no procfs)."""
    if not HAVE_PROC:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or never was
        return None
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(state=fields[0], ppid=int(fields[1]), start_ticks=int(fields[19]))


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None if it does not exist, or no /proc)."""
    stat = proc_stat(pid)
    return None if stat is None else stat.start_ticks


def started_at(pid: int) -> datetime | None:
    """When ``pid`` started, as a wall-clock time; None if that cannot be told."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    try:
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def start_marker(pid: int) -> str | None:
    """Start time of a live (non-zombie) ``pid`` as text; None when there is no such process.

    Clock ticks where there is procfs; elsewhere (macOS) ``ps``'s start time.
    Together with the pid it names one process: a reused pid has a later start.
    """
    if HAVE_PROC:
        stat = proc_stat(pid)
        return None if stat is None or stat.exited else str(stat.start_ticks)
    out = subprocess.run(
        ["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not out or out.startswith("Z"):
        return None
    return out.split(None, 1)[1] if " " in out else out


def is_alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` runs and is the process that started at ``started`` ticks.

    ``started=None`` (recorded without procfs) accepts any live process of that pid.
    """
    if not HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = proc_stat(pid)
    return stat is not None and not stat.exited and (started is None or stat.start_ticks == started)


# --- signals and escalation ---------------------------------------------------------------


def signal_group(group: int, signum: int) -> None:
    """Send ``signum`` to process group ``group``; nothing if it is gone already."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def wait_until(
    condition: Callable[[], bool], timeout: float, *, interval: float = _POLL_INTERVAL
) -> bool:
    """Poll ``condition`` every ``interval`` s until it holds (True) or ``timeout`` s pass (False).

    Blocking, at a steady interval: for callers without an event loop (the
    stack, the reaper); :func:`poll_until` is the asynchronous one.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


async def poll_until(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    *,
    interval: float = 0.01,
    max_interval: float = 0.25,
) -> bool:
    """Call ``check`` at a doubling interval until it is true or ``timeout`` passes.

    Returns whether ``check`` became true. ``check`` is always called at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)


def _steps(grace: float, kill_wait: float) -> tuple[tuple[int, float], ...]:
    """The escalation: SIGTERM and ``grace`` seconds, then SIGKILL and ``kill_wait``."""
    return ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait))


def escalate(
    send: Callable[[int], None],
    gone_within: Callable[[float], bool],
    grace: float,
    kill_wait: float = KILL_WAIT,
) -> bool:
    """SIGTERM, wait up to ``grace`` s; if still there, SIGKILL and wait ``kill_wait`` s.

    ``send(signum)`` signals the target (a process, a group, a tree);
    ``gone_within(seconds)`` waits up to that long and says whether it is gone.
    Returns whether it went.
    """
    for signum, seconds in _steps(grace, kill_wait):
        send(signum)
        if gone_within(seconds):
            return True
    return False


async def escalate_async(
    send: Callable[[int], None],
    gone_within: Callable[[float], Awaitable[bool]],
    grace: float,
    kill_wait: float = KILL_WAIT,
) -> bool:
    """:func:`escalate` for an event loop: ``gone_within`` is awaited."""
    for signum, seconds in _steps(grace, kill_wait):
        send(signum)
        if await gone_within(seconds):
            return True
    return False


async def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process (``pid``, ``started``) to end.

    Returns whether it did. Uses a pidfd where the kernel has them (the loop
    wakes the moment the process exits, parent or not), else polls.
    """
    if not is_alive(pid, started):
        return True
    if timeout <= 0:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return await poll_until(lambda: not is_alive(pid, started), timeout)
    try:
        if not is_alive(pid, started):  # exited, or the pid was reused, before the open
            return True
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, _resolve, exited)
        try:
            await asyncio.wait_for(exited, timeout)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(pidfd)
        return True
    finally:
        os.close(pidfd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- atomic writes ------------------------------------------------------------------------


def write_atomically(
    path: Path, chunks: Iterable[bytes], *, private: bool = False, durable: bool = False
) -> None:
    """Write ``chunks`` to ``path`` through a temporary file renamed into place.

    A crash leaves either the previous file or the complete new one, never half
    (at most a stray ``<name>.<random>.partial``: each write has its own, so two
    at once cannot mix their bytes). ``private`` creates it readable by its
    owner only (mode 0600) from the first byte. ``durable`` also flushes the
    file and its directory to disk before returning, so the new file survives a
    crash of the host too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

"""The sim driver: tasks that only pretend to run, for hollow agents and benchmarks.

Nothing is started. An attempt "runs" for a duration and exits with a code,
both read from its environment (``TITUS_SIM_RUNTIME`` seconds,
``TITUS_SIM_EXIT``) or else from a simple shell command: ``sleep N``,
``exit N``, ``true`` and ``false``, joined by ``;``, ``&&`` or ``||``
(``sleep 2; exit 3`` runs 2 s and exits 3). Any other command counts as an
instant success. Each attempt is one entry in an in-memory table and one event
loop timer: no thread, process or file per task, so one process can hold
thousands. The table dies with the process: a restarted agent finds nothing to
adopt, as if its host had been replaced.

A test and benchmark tool: it proves the control plane, never that real
containers work.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from titus_flow.processes import write_atomically
from titus_flow.runtime.base import (
    DriverError,
    Exit,
    LaunchRequest,
    ManagedContainer,
)

SIM_RUNTIME_ENV: Final = "TITUS_SIM_RUNTIME"
SIM_EXIT_ENV: Final = "TITUS_SIM_EXIT"
KILLED_EXIT: Final = 137  # 128 + SIGKILL, as Docker reports a killed container
_SHELLS: Final = frozenset({"sh", "bash", "/bin/sh", "/bin/bash"})


def simulate(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """The (runtime seconds, exit code) of a simulated attempt of ``argv`` with ``env``.

    The environment wins over the command; a value that does not parse is an
    error, so a benchmark never silently runs something else than it asked for.
    """
    runtime, code = simulate_command(argv)
    env = env or {}
    try:
        if SIM_RUNTIME_ENV in env:
            runtime = max(0.0, float(env[SIM_RUNTIME_ENV]))
        if SIM_EXIT_ENV in env:
            code = int(env[SIM_EXIT_ENV])
    except ValueError as err:
        raise DriverError(f"sim driver: bad {SIM_RUNTIME_ENV}/{SIM_EXIT_ENV}: {err}") from err
    return runtime, code


def simulate_command(argv: list[str]) -> tuple[float, int]:
    """Interpret the few shell commands the sim driver knows (see the module doc)."""
    if len(argv) >= 3 and argv[0] in _SHELLS and argv[1] == "-c":
        script = argv[2]  # sh -c SCRIPT
    else:
        script = " ".join(argv)  # "sleep 2; exit 3" reaches us split as [sleep, 2;, exit, 3]
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace = " \t\r"  # newlines separate commands, as ";" does
    lexer.wordchars += "./-"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not ours to interpret
        return 0.0, 0
    runtime, status, skip = 0.0, 0, False
    words: list[str] = []
    for token in [*tokens, ";"]:
        if token not in (";", "\n", "&&", "||"):
            words.append(token)
            continue
        if words and not skip:
            seconds, status, exited = _run_one(words, status)
            runtime += seconds
            if exited:
                return runtime, status
        words = []
        # a && b runs b only after a success, a || b only after a failure.
        skip = (token == "&&" and status != 0) or (token == "||" and status == 0)
    return runtime, status


def _run_one(words: list[str], last_status: int) -> tuple[float, int, bool]:
    """(seconds, exit status, whether the shell exits) of one simple command."""
    name, args = words[0], words[1:]
    if name == "sleep" and args:
        return _seconds(args[0]), 0, False
    if name == "exit":
        return 0.0, _int(args[0], last_status) if args else last_status, True
    if name == "false":
        return 0.0, 1, False
    return 0.0, 0, False  # true, and anything else: an instant success


def _seconds(text: str) -> float:
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:])
    try:
        return max(0.0, float(text[:-1] if scale else text) * (scale or 1))
    except ValueError:
        return 0.0


def _int(text: str, default: int) -> int:
    try:
        return int(text) & 0xFF  # as a shell truncates exit codes
    except ValueError:
        return default


@dataclass
class _Attempt:
    """One simulated attempt: its identity, when it started and how it will end."""

    request: LaunchRequest
    started_at: datetime
    runtime: float
    code: int
    ended: asyncio.Future[Exit]
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def line(self) -> bytes:
        """The attempt's whole output: one fixed line."""
        return (
            f"titus-flow sim: {self.request.task_id} attempt {self.request.attempt}"
            f" ran {self.runtime:g}s\n"
        ).encode()


class SimDriver:
    """Pretends to run attempts with asyncio timers (see the module doc)."""

    name: str = "sim"

    def __init__(self) -> None:
        """An empty table; attempts live in memory only."""
        self._attempts: dict[str, _Attempt] = {}

    async def launch(self, request: LaunchRequest) -> None:
        """Start the attempt's timer; a second launch of the same name adopts it."""
        if request.name in self._attempts:
            return
        spec = request.container
        runtime, code = simulate(
            [*(spec.entrypoint or []), *(spec.command or [])], request.environment()
        )
        loop = asyncio.get_running_loop()
        attempt = _Attempt(
            request=request,
            started_at=datetime.now(UTC),
            runtime=runtime,
            code=code,
            ended=loop.create_future(),
        )
        attempt.timer = loop.call_later(runtime, self._end, attempt, code)
        self._attempts[request.name] = attempt

    async def wait(self, name: str, timeout: float) -> Exit | None:
        """Wait up to ``timeout`` seconds for the attempt's timer (or a stop)."""
        ended = self._get(name).ended
        if not ended.done():
            await asyncio.wait([ended], timeout=timeout)
        return ended.result() if ended.done() else None

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        """Every exec in a running attempt succeeds (health checks pass)."""
        if self._get(name).ended.done():
            raise DriverError(f"{name} is not running")
        return 0

    async def stop(self, name: str, grace: float) -> None:
        """End a running attempt at once, as killed (exit 137); no-op if gone or ended."""
        attempt = self._attempts.get(name)
        if attempt is not None:
            self._end(attempt, KILLED_EXIT)

    async def save_output(self, name: str, log_path: Path) -> None:
        """Write the attempt's one line to ``log_path``."""
        attempt = self._attempts.get(name)
        if attempt is not None:
            write_atomically(log_path, [attempt.line])

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Kill the attempt if it still runs, keep its line at ``log_path``, forget it."""
        attempt = self._attempts.get(name)
        if attempt is None:
            return
        self._end(attempt, KILLED_EXIT)
        if log_path is not None:
            write_atomically(log_path, [attempt.line])
        del self._attempts[name]

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        """The kept log, written on first ask (the line is known from the start)."""
        attempt = self._attempts.get(name)
        if attempt is None:
            return None
        if not log_path.exists():
            write_atomically(log_path, [attempt.line])
        return log_path

    async def list_managed(self) -> list[ManagedContainer]:
        """Every attempt in the table, running or not."""
        return [
            ManagedContainer(
                name=name,
                job_id=a.request.job_id,
                task_id=a.request.task_id,
                attempt=a.request.attempt,
                running=not a.ended.done(),
                agent_id=a.request.agent_id,
            )
            for name, a in self._attempts.items()
        ]

    async def image_exists(self, image: str) -> bool:
        """Always true: nothing is pulled."""
        return True

    async def close(self) -> None:
        """Nothing to release: the timers keep going, as containers would."""

    def _get(self, name: str) -> _Attempt:
        attempt = self._attempts.get(name)
        if attempt is None:
            raise DriverError(f"no such simulated attempt {name!r}")
        return attempt

    @staticmethod
    def _end(attempt: _Attempt, code: int) -> None:
        """Record the attempt's exit (the first one wins) and cancel its timer."""
        if attempt.ended.done():
            return
        if attempt.timer is not None:
            attempt.timer.cancel()
        attempt.ended.set_result(
            Exit(exit_code=code, started_at=attempt.started_at, finished_at=datetime.now(UTC))
        )

"""How a container ended, as the engine tells it, with what the engine leaves unsaid.

The engine's own record of an exit is not always the whole story: a command the
init could not run says why only on stderr, an OOM kill can be recorded a moment
after the exit it caused, and an engine that restarts as a container ends may
stamp a placeholder exit (docs/faults.md). :class:`ContainerExits` reads the
exit and fills those in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import docker.errors
import requests.exceptions

from titus_flow.runtime.base import DriverError, Exit
from titus_flow.runtime.engine_start import engine_started_at, socket_path

# Exit codes of a command that could not be executed (not executable, not found).
CANNOT_EXEC = (126, 127)
SIGKILLED = 128 + 9
# What the engine records for a container whose exit it lost (255) or whose start
# its own shutdown cut short (128), both stamped around its restart.
ENGINE_EXITS = (128, 255)
_RESTORE_WINDOW = timedelta(seconds=60)  # from the engine's start to its last restored stamp
_BEFORE_START = timedelta(seconds=30)  # an engine's shutdown and restart, before its new start
# Seconds an OOM event may trail the exit it caused, and how often to look
# meanwhile (an OOM kill ends the wait). 0.5 s was passed on a busy host. A
# container the agent stopped itself was SIGKILLed by that stop: one short look.
_LATE_OOM_WAIT = 3.0
_LATE_OOM_POLL = 0.25
_LATE_OOM_WAIT_STOPPED = 0.5


class ContainerExits:
    """Waits for containers of one engine to end and tells how they did (blocking calls)."""

    def __init__(self, api: Callable[[], Any], base_url: str | None) -> None:
        """Containers reached through ``api()`` (the low-level client) at ``base_url``."""
        self._api = api
        self._base_url = base_url
        self._stopped: set[str] = set()  # containers this agent stopped (their SIGKILL is its)

    def stopping(self, name: str) -> None:
        """Note that the agent stops container ``name`` (a SIGKILL exit is then explained)."""
        self._stopped.add(name)

    def forget(self, name: str) -> None:
        """Container ``name`` is removed: nothing more to know of it."""
        self._stopped.discard(name)

    def wait(self, name: str, timeout: float) -> Exit | None:
        """Block up to ``timeout`` seconds for container ``name`` to end; its exit, or None."""
        deadline = time.monotonic() + timeout
        # "not-running" returns at once for a container that was created but
        # never started; only "next-exit" waits for such a one to run and end.
        for condition in ("not-running", "next-exit"):
            if not self._block_until(name, condition, deadline):
                return None  # still running: no need to ask again
            state = self._inspect_state(name)
            exit_ = exit_from_state(state)
            if exit_ is not None and exit_.exit_code in CANNOT_EXEC and not exit_.error:
                exit_ = dataclasses.replace(exit_, error=self._init_error(name))
            if exit_ is not None and exit_.exit_code == SIGKILLED and not exit_.oom_killed:
                exit_ = self._late_oom(name, exit_)
            if exit_ is not None and exit_.exit_code in ENGINE_EXITS and not exit_.oom_killed:
                exit_ = self._lost_in_restart(exit_)
            if exit_ is not None or state["Status"] != "created":
                return exit_
        return None

    def _lost_in_restart(self, exit_: Exit) -> Exit:
        """Mark an exit the engine stamped around its own restart as the engine's.

        An exit it lost (255, stamped as it restores its containers) or a start
        its shutdown cut short (128, often without a finish time: then it is
        judged as seen now). A task's own 255 or 128 in that minute is read as
        the engine's too (relaunched, not charged): the rarer, cheaper mistake.
        """
        path = socket_path(self._base_url)
        started = engine_started_at(path) if path else None
        if started is None:
            return exit_
        finished = exit_.finished_at or datetime.now(UTC)
        if started - _BEFORE_START <= finished <= started + _RESTORE_WINDOW:
            return dataclasses.replace(exit_, lost_by_engine=True)
        return exit_

    def _late_oom(self, name: str, exit_: Exit) -> Exit:
        """Look again, for a few seconds, whether a SIGKILLed container was OOM-killed.

        The engine learns of an OOM kill from an event of its own, which on a
        busy host can arrive after it has recorded the exit: a late look keeps
        an OOM kill from reading as a plain failure.
        """
        wait = _LATE_OOM_WAIT_STOPPED if name in self._stopped else _LATE_OOM_WAIT
        deadline = time.monotonic() + wait
        while True:
            time.sleep(min(_LATE_OOM_POLL, wait))
            late = exit_from_state(self._inspect_state(name))
            if late is not None and late.oom_killed:
                return dataclasses.replace(exit_, oom_killed=True)
            if time.monotonic() >= deadline:
                return exit_

    def _init_error(self, name: str) -> str:
        """Why the container's init could not run the command ("" if it could).

        With an init as PID 1 the container starts even when the command cannot
        be executed; the init says why on stderr and exits 126 or 127.
        """
        try:
            tail: bytes = self._api().logs(name, stdout=False, stderr=True, tail=5)
        except docker.errors.APIError:
            return ""
        for line in tail.decode(errors="replace").splitlines():
            if line.startswith("[FATAL tini"):
                return line.partition("] ")[2].strip()
        return ""

    def _block_until(self, name: str, condition: str, deadline: float) -> bool:
        """Block until ``condition`` holds or ``deadline``; False if it timed out.

        With no time left it returns True at once, so the caller inspects.
        """
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return True
        try:
            self._api().wait(name, timeout=timeout, condition=condition)
        except docker.errors.NotFound as err:
            raise DriverError(f"no container named {name}") from err
        except requests.exceptions.RequestException:
            # The SDK reports its read timeout as a ConnectionError. One that
            # fails early is a daemon problem: let the inspect that follows say so.
            return time.monotonic() < deadline
        return True

    def _inspect_state(self, name: str) -> dict[str, Any]:
        try:
            state: dict[str, Any] = self._api().inspect_container(name)["State"]
        except docker.errors.NotFound as err:
            raise DriverError(f"no container named {name}") from err
        return state


def exit_from_state(state: dict[str, Any]) -> Exit | None:
    """Build the :class:`Exit` from an inspected ``State``; None until it has ended.

    Ended: it ran and stopped, or its start failed (``Error`` says why). The
    status alone does not tell: "removing" can be either, or neither.
    """
    started_at = parse_docker_time(state.get("StartedAt"))
    if state.get("Running") or (started_at is None and not state.get("Error")):
        return None
    finished_at = parse_docker_time(state.get("FinishedAt"))
    if started_at and finished_at and finished_at < started_at:
        # Docker stamps StartedAt once start returns, which can be after a
        # quick command has already exited: never report a negative runtime.
        started_at = finished_at
    return Exit(
        exit_code=int(state["ExitCode"]),
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started_at,
        finished_at=finished_at,
        error=state.get("Error") or "",
    )


def parse_docker_time(value: str | None) -> datetime | None:
    """Parse a Docker timestamp (RFC 3339, nanoseconds); None for Docker's zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value)

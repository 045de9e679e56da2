"""Health checks of a service task, run by the agent inside its supervise activity.

A :class:`HealthMonitor` probes one container (``http``, ``tcp`` or ``exec``, see
:mod:`titus_flow.spec.health`) and turns probe results into a state, as Docker,
Kubernetes and Nomad do:

* The state starts :attr:`Health.STARTING`. The first probe is due at once, then
  one every ``interval`` measured from the start of the previous probe.
* ``healthy_threshold`` consecutive successes make a task that is not
  :attr:`~Health.HEALTHY` healthy (from ``STARTING`` or ``UNHEALTHY``).
* ``unhealthy_threshold`` consecutive *counted* failures make a task that is not
  :attr:`~Health.UNHEALTHY` unhealthy (from ``STARTING`` or ``HEALTHY``).
* Grace period: a failed probe that *starts* before ``started_at +
  start_grace_period`` is not counted: the failure streak stays at zero. It
  still ends the success streak, because successes must be consecutive. The
  grace period also ends early the first time the task becomes healthy (as
  Docker's ``start_period``): once it has been up, every failure counts.

Probes never raise: a refused connection, a timeout or a driver error is a
failed probe whose message says why. Only HTTP 2xx is a successful ``http``
probe; redirects are not followed. Probes connect to the task's published host
port on the agent's publish address (``127.0.0.1`` by default) directly, never
to a container's own address, and never consult ``HTTP(S)_PROXY``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import string
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import quote

from titus_flow.runtime.base import EXEC_TIMED_OUT, Driver
from titus_flow.spec.health import ExecCheck, HealthCheck, HttpCheck

HOST: Final = "127.0.0.1"
"""Where ``http`` and ``tcp`` probes connect unless told: tasks' ports are published here."""

MAX_MESSAGE_CHARS: Final = 240
"""Longer probe messages are cut: they end up in workflow history."""

# Beyond the command's own timeout, which the driver enforces, the driver may take
# this long for its API round trips before a wedged runtime counts as a failure.
_EXEC_DRIVER_SLACK: Final = 5.0
_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s|$)")
_URL_SAFE = string.punctuation  # percent-encode only what cannot go on the wire as is


class Health(StrEnum):
    """A service task's health as its agent sees it."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthChange:
    """The state a task moved to, when, and the probe result that moved it."""

    state: Health
    at: datetime
    message: str  # e.g. "GET http://127.0.0.1:20001/ -> 503"


@dataclass(frozen=True)
class _Result:
    ok: bool
    message: str


class HealthMonitor:
    """Runs one task's health check and tracks its state.

    ``ports`` maps port names to host ports (as :attr:`LaunchRequest.ports
    <titus_flow.runtime.base.LaunchRequest.ports>`), published on ``host``;
    ``started_at`` is when the container started (a naive datetime is taken as
    UTC). ``clock`` measures intervals and the grace period; it is injectable
    for tests. Not safe for
    concurrent :meth:`probe` calls: one monitor, one loop.
    """

    def __init__(
        self,
        check: HealthCheck,
        *,
        ports: dict[str, int],
        container_name: str,
        driver: Driver,
        started_at: datetime,
        host: str = HOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self._host = host
        self._ports = ports
        self._container_name = container_name
        self._driver = driver
        self._clock = clock
        if started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=UTC)
        self._started_at = started_at
        # started_at on the monotonic clock: the wall clock is read once, so later
        # wall-clock jumps cannot move the grace period or the probe schedule.
        now = clock()
        self._start = now - (datetime.now(UTC) - started_at).total_seconds()
        self._grace_ends = self._start + check.start_grace_period.total_seconds()
        self._timeout = check.timeout.total_seconds()
        self._interval = check.interval.total_seconds()
        self._next_due = now
        self._state = Health.STARTING
        self._successes = 0
        self._failures = 0
        self._last_message = ""

    @property
    def state(self) -> Health:
        """The current state."""
        return self._state

    @property
    def last_message(self) -> str:
        """What the most recent probe found ("" before the first)."""
        return self._last_message

    def next_probe_in(self) -> float:
        """Seconds until the next probe is due (0 when it is due now)."""
        return max(0.0, self._next_due - self._clock())

    async def probe(self) -> HealthChange | None:
        """Run one probe now and update the counters; return the change it caused, if any."""
        began = self._clock()
        self._next_due = began + self._interval
        result = await self._run_probe()
        self._last_message = result.message
        if result.ok:
            self._failures = 0
            self._successes += 1
            if (
                self._state is not Health.HEALTHY
                and self._successes >= self.check.healthy_threshold
            ):
                self._grace_ends = min(self._grace_ends, began)
                return self._change(Health.HEALTHY, result.message)
            return None
        self._successes = 0
        if began < self._grace_ends:
            return None
        self._failures += 1
        if self._state is not Health.UNHEALTHY and self._failures >= self.check.unhealthy_threshold:
            return self._change(Health.UNHEALTHY, result.message)
        return None

    async def run(
        self, on_change: Callable[[HealthChange], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Probe on schedule, awaiting ``on_change`` for each change, until ``stop`` is set.

        Setting ``stop`` interrupts a wait or a probe in progress (never a running
        ``on_change``), and no ``on_change`` is called once it is set. An exception
        from ``on_change`` ends the loop and propagates.
        """
        stopped = asyncio.ensure_future(stop.wait())
        probing: asyncio.Future[HealthChange | None] | None = None
        try:
            while not stop.is_set():
                probing = asyncio.ensure_future(self._probe_when_due())
                await asyncio.wait({probing, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    return
                change = probing.result()
                if change is not None:
                    await on_change(change)
        finally:
            pending = {task for task in (stopped, probing) if task is not None and not task.done()}
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)  # let a cancelled probe close its connection

    # -- internals ---------------------------------------------------------------

    async def _probe_when_due(self) -> HealthChange | None:
        await asyncio.sleep(self.next_probe_in())
        return await self.probe()

    def _change(self, state: Health, message: str) -> HealthChange:
        self._state = state
        at = self._started_at + timedelta(seconds=self._clock() - self._start)
        return HealthChange(state=state, at=at, message=message)

    async def _run_probe(self) -> _Result:
        """Run the check once; every error becomes a failed result."""
        check = self.check
        attempt: Awaitable[_Result]
        if isinstance(check, ExecCheck):
            target = f"exec {shlex.join(check.command)}"
            attempt = self._exec(check, target)
            # The driver enforces the command's timeout; this guard is for the driver.
            limit = self._timeout + _EXEC_DRIVER_SLACK
            too_slow = f"{target}: the {self._driver.name} driver did not answer in {limit:g}s"
        else:
            port = self._ports.get(check.port)
            if port is None:
                return _result(False, f"port {check.port!r} has no host port on this task")
            if isinstance(check, HttpCheck):
                path = quote(check.path, safe=_URL_SAFE)
                target = f"GET http://{self._host}:{port}{path}"
                attempt = _over_tcp(self._host, port, _http_get(self._host, port, path, target))
            else:
                target = f"TCP {self._host}:{port}"
                attempt = _over_tcp(self._host, port, _connected(target))
            limit = self._timeout
            too_slow = f"{target}: timed out after {limit:g}s"
        try:
            async with asyncio.timeout(limit):
                return await attempt
        except TimeoutError:
            return _result(False, too_slow)
        except Exception as err:  # a probe never raises: any error is a failed probe
            return _result(False, f"{target}: {_describe(err)}")

    async def _exec(self, check: ExecCheck, target: str) -> _Result:
        code = await self._driver.exec(self._container_name, list(check.command), self._timeout)
        if code == EXEC_TIMED_OUT:
            return _result(False, f"{target}: timed out after {self._timeout:g}s (exit {code})")
        return _result(code == 0, f"{target} -> exit {code}")


# What a probe does on an open connection: the result decides the probe.
_Exchange = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[_Result]]


async def _over_tcp(host: str, port: int, exchange: _Exchange) -> _Result:
    """Connect to ``host:port``, run ``exchange`` on the connection, then close it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        return await exchange(reader, writer)
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def _connected(target: str) -> _Exchange:
    """The tcp check: having connected is the success."""

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Result:
        return _result(True, f"{target} connected")

    return exchange


def _http_get(host: str, port: int, path: str, target: str) -> _Exchange:
    """An HTTP/1.0 GET whose status line decides: 2xx succeeds, nothing else does."""

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Result:
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            "User-Agent: titus-flow-health\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        line = await reader.readline()  # the status line is all we need
        if not line:
            return _result(False, f"{target}: connection closed without a response")
        match = _STATUS_LINE.match(line)
        if match is None:
            return _result(False, f"{target}: not an HTTP response: {line[:60]!r}")
        status = int(match[1])
        return _result(200 <= status < 300, f"{target} -> {status}")

    return exchange


def _result(ok: bool, message: str) -> _Result:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return _Result(ok, message)


def _describe(err: Exception) -> str:
    """A short reason: "Connection refused" rather than "[Errno 111] Connect call failed"."""
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)  # asyncio's strerror is "Connect call failed (...)"
    return str(err) or type(err).__name__

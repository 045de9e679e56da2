"""Where the local load balancer sends requests: the registered targets, in turn.

A :class:`TargetSource` says which targets of the group are registered right
now; the :class:`TargetPool` asks it every poll period and hands out targets
round-robin. Targets that are registering or draining are never in the answer
(the service job workflow deregisters a task and waits the group's drain before
it stops it), so a target leaves the rotation at the next poll while the task
still serves: requests already sent to it finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

POLL_PERIOD = 0.5
"""Seconds between two asks of the target source (well under the 2 s local drain)."""


@dataclass(frozen=True, order=True)
class Target:
    """One registered task: where to connect."""

    task_id: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.task_id} ({self.host}:{self.port})"


class TargetSource(Protocol):
    """What the pool asks for the targets to route to."""

    async def registered(self) -> Sequence[Target]:
        """The targets registered now (never the registering or draining ones)."""
        ...


class TargetPool:
    """The registered targets, refreshed from a source, picked round-robin."""

    def __init__(self, source: TargetSource, poll_period: float = POLL_PERIOD) -> None:
        self._source = source
        self._poll_period = poll_period
        self._targets: tuple[Target, ...] = ()
        self._turn = -1  # the first pick is the first target
        self._last_error: str | None = None

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets of the last successful poll, sorted by task id."""
        return self._targets

    def pick(self, avoid: frozenset[Target] = frozenset()) -> Target | None:
        """The next target in turn that is not in ``avoid``; None if there is none."""
        for _ in self._targets:
            self._turn = (self._turn + 1) % len(self._targets)
            if self._targets[self._turn] not in avoid:
                return self._targets[self._turn]
        return None

    async def refresh(self) -> None:
        """Ask the source once; on an error, keep the targets known so far.

        A failed ask (Temporal busy, the control worker restarting) must not
        empty the rotation: the tasks still serve, and the workflow drains a
        target for longer than a few polls before it stops the task.
        """
        try:
            found = tuple(sorted(set(await self._source.registered())))
        except Exception as err:  # any failure of the source: log it once, keep routing
            message = f"{type(err).__name__}: {err}"
            if message != self._last_error:
                log.warning("cannot read the targets (%s); keeping %d", message, len(self._targets))
            self._last_error = message
            return
        self._last_error = None
        if found != self._targets:
            gone = sorted(set(self._targets) - set(found))
            added = sorted(set(found) - set(self._targets))
            log.info(
                "targets: %d (added %s, removed %s)",
                len(found),
                ", ".join(map(str, added)) or "none",
                ", ".join(map(str, gone)) or "none",
            )
            self._targets = found

    async def poll(self, stop: asyncio.Event) -> None:
        """Refresh every poll period until ``stop`` is set."""
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_period)

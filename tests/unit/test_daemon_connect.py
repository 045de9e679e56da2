"""Workers and agents wait for a Temporal server that is not up yet, for a bounded time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from titus_flow.cli import process_commands
from titus_flow.config import Settings
from titus_flow.errors import ServerUnreachableError


def _flaky_connect(failures: int, calls: list[int]) -> Any:
    async def connect(settings: Settings, runtime: object = None) -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ServerUnreachableError(settings.address, "connection refused", local=True)
        return "client"

    return connect


async def test_a_daemon_waits_for_the_server_then_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted while the server restarts, an agent exited for good (the chaos suite)."""
    calls: list[int] = []
    monkeypatch.setattr(process_commands, "connect", _flaky_connect(2, calls))
    monkeypatch.setattr(process_commands, "process_runtime", lambda *_: None)
    waits: list[float] = []

    async def no_wait(awaitable: Any, timeout: float) -> None:
        waits.append(timeout)
        awaitable.close()
        raise TimeoutError

    monkeypatch.setattr(process_commands.asyncio, "wait_for", no_wait)
    client = await process_commands._connect_when_up(Settings(), asyncio.Event(), "agent")
    assert client == "client" and len(calls) == 3
    assert waits == [1.0, 2.0]  # backing off between tries


async def test_a_daemon_gives_up_after_server_wait_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(process_commands, "connect", _flaky_connect(99, calls))
    monkeypatch.setattr(process_commands, "process_runtime", lambda *_: None)
    with pytest.raises(ServerUnreachableError):
        await process_commands._connect_when_up(
            Settings(server_wait_seconds=0), asyncio.Event(), "worker"
        )
    assert len(calls) == 1

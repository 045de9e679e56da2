"""An agent whose registration fails tries again within seconds (titus_flow/agent.py).

Agents register again only every AGENT_HEARTBEAT (5 minutes): an agent refused
by a busy server at start-up must not wait that long before it gets work
(1,000 hollow agents started at once lost 87 of their first registrations).
"""

from __future__ import annotations

import asyncio

from temporalio.service import RPCError, RPCStatusCode

from titus_flow.agent import register_every


async def test_a_failed_registration_is_retried_soon_then_waits_a_heartbeat() -> None:
    stop = asyncio.Event()
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def register() -> None:
        calls.append(loop.time())
        if len(calls) <= 2:
            raise RPCError("shard status unknown", RPCStatusCode.UNAVAILABLE, b"")

    running = asyncio.create_task(register_every(register, stop))
    async with asyncio.timeout(10):
        while len(calls) < 3:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # registered: the next one is a heartbeat away
    assert len(calls) == 3
    stop.set()
    await asyncio.wait_for(running, 1)


async def test_stop_ends_the_retries() -> None:
    stop = asyncio.Event()

    async def refused() -> None:
        raise RPCError("refused", RPCStatusCode.UNAVAILABLE, b"")

    running = asyncio.create_task(register_every(refused, stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(running, 1)

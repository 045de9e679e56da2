"""Run the local load balancer: the proxy, its target poll and its metric reports together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from titus_flow.errors import UserError
from titus_flow.lb.proxy import LocalProxy
from titus_flow.lb.reporter import REPORT_PERIOD, MetricSink, RequestMeter, report_loop
from titus_flow.lb.targets import POLL_PERIOD, TargetPool, TargetSource


async def run_local_lb(
    name: str,
    source: TargetSource,
    sink: MetricSink,
    listen: tuple[str, int],
    stop: asyncio.Event,
    on_listening: Callable[[str, int], None] = lambda host, port: None,
    poll_period: float = POLL_PERIOD,
    report_period: float = REPORT_PERIOD,
) -> None:
    """Serve ``listen`` until ``stop`` is set, then let requests in flight finish.

    The targets are read once before the proxy listens, so its first request
    already has them; ``on_listening`` gets the bound address (useful with port 0).
    Reports go out as ``lb:<name>``. An address that cannot be bound is a
    :class:`UserError`.
    """
    pool = TargetPool(source, poll_period)
    await pool.refresh()
    meter = RequestMeter()
    proxy = LocalProxy(pool, meter)
    try:
        host, port = await proxy.start(*listen)
    except OSError as err:  # the address is taken, or not this machine's
        raise UserError(f"cannot listen on {listen[0]}:{listen[1]}: {err.strerror or err}") from err
    on_listening(host, port)
    loops = [
        asyncio.create_task(pool.poll(stop)),
        asyncio.create_task(
            report_loop(f"lb:{name}", meter, lambda: len(pool.targets), sink, stop, report_period)
        ),
    ]
    try:
        await stop.wait()
    finally:
        stop.set()
        await proxy.close()
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

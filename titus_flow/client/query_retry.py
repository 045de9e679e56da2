"""Queries a starved worker failed with its deadlock detector are asked again.

The Python SDK fails any workflow activation that runs more than 2 s without
yielding (``[TMPRL1101] Potential deadlock detected``, a fixed limit), and a
query of a workflow the worker no longer caches replays its history first. On
a machine short of CPU that replay can pass the limit although nothing is
wrong: the same query a moment later usually succeeds. Every other query
failure is the caller's to handle, at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    WorkflowQueryFailedError,
)

DEADLOCK_CODE = "TMPRL1101"
"""How the SDK's deadlock detector marks the failures it makes."""
ATTEMPTS = 4
FIRST_DELAY_SECONDS = 0.5  # doubled after each attempt: 0.5 + 1 + 2 s at most


class QueryRetryInterceptor(Interceptor):
    """Client interceptor: asks a query again when the worker's deadlock detector failed it."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        """Wrap ``next`` so its queries are retried."""
        return _RetryingQueries(next)


class _RetryingQueries(OutboundInterceptor):
    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        delay = FIRST_DELAY_SECONDS
        for _ in range(ATTEMPTS - 1):
            try:
                return await super().query_workflow(input)
            except WorkflowQueryFailedError as err:
                if DEADLOCK_CODE not in str(err):
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        return await super().query_workflow(input)  # the last attempt: its failure is the caller's

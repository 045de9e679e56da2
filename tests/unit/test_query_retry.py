"""Queries failed by a starved worker's deadlock detector are asked again; others are not."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import OutboundInterceptor, QueryWorkflowInput, WorkflowQueryFailedError

from titus_flow.client import query_retry
from titus_flow.client.query_retry import ATTEMPTS, QueryRetryInterceptor

DEADLOCK = "[TMPRL1101] Potential deadlock detected: workflow didn't yield within 2 second(s)."


class Answers(OutboundInterceptor):
    """The next interceptor: fails with each of ``failures`` in turn, then answers."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.asked = 0

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        self.asked += 1
        if self.failures:
            raise WorkflowQueryFailedError(self.failures.pop(0))
        return "view"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(query_retry.asyncio, "sleep", sleep)
    return waits


async def ask(answers: Answers) -> Any:
    outbound = QueryRetryInterceptor().intercept_client(answers)
    return await outbound.query_workflow(None)  # type: ignore[arg-type]


async def test_a_deadlocked_query_is_asked_again_after_a_growing_wait(
    no_waiting: list[float],
) -> None:
    answers = Answers([DEADLOCK, DEADLOCK])
    assert await ask(answers) == "view"
    assert answers.asked == 3 and no_waiting == [0.5, 1.0]


async def test_it_gives_up_after_its_attempts_with_the_workers_error() -> None:
    answers = Answers([DEADLOCK] * ATTEMPTS)
    with pytest.raises(WorkflowQueryFailedError, match="TMPRL1101"):
        await ask(answers)
    assert answers.asked == ATTEMPTS


async def test_any_other_query_failure_is_raised_at_once(no_waiting: list[float]) -> None:
    answers = Answers(["unknown queryType describe"])
    with pytest.raises(WorkflowQueryFailedError, match="unknown queryType"):
        await ask(answers)
    assert answers.asked == 1 and no_waiting == []

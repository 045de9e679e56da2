"""Containers asked about together are judged with one question per job (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from titus_flow import reconcile
from titus_flow.reconcile import JudgedTogether, Verdict
from titus_flow.runtime.base import ManagedContainer


def container(job_id: str, index: int) -> ManagedContainer:
    task_id = f"{job_id}-{index}"
    return ManagedContainer(
        name=f"tf-{task_id}-a1", job_id=job_id, task_id=task_id, attempt=1, running=True
    )


async def test_one_judge_call_per_job_for_containers_asked_about_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    async def judge(client: Any, containers: Iterable[ManagedContainer]) -> list[Verdict]:
        held = list(containers)
        calls.append([c.task_id for c in held])
        # Even task indexes are still wanted, odd ones are not.
        return [Verdict(c, int(c.task_id.rpartition("-")[2]) % 2 == 0, "odd") for c in held]

    monkeypatch.setattr(reconcile, "judge", judge)
    together = JudgedTogether(window=0.05)
    asked = [container("web", i) for i in range(10)] + [container("etl", i) for i in range(3)]

    verdicts = await asyncio.gather(*(together.verdict(None, c) for c in asked))  # type: ignore[arg-type]

    assert sorted(len(c) for c in calls) == [3, 10]  # two questions, not 13
    assert [v.container for v in verdicts] == asked  # each caller gets its own verdict
    assert [v.current for v in verdicts] == [i % 2 == 0 for i in range(10)] + [True, False, True]


async def test_a_failed_question_fails_every_caller_and_the_next_round_asks_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[Exception | None] = [RuntimeError("server restarting"), None]

    async def judge(client: Any, containers: Iterable[ManagedContainer]) -> list[Verdict]:
        failure = answers.pop(0)
        if failure is not None:
            raise failure
        return [Verdict(c, True) for c in containers]

    monkeypatch.setattr(reconcile, "judge", judge)
    together = JudgedTogether(window=0.01)
    pair = [container("web", 0), container("web", 1)]

    failed = await asyncio.gather(
        *(together.verdict(None, c) for c in pair),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert [str(f) for f in failed] == ["server restarting"] * 2
    again = await together.verdict(None, pair[0])  # type: ignore[arg-type]
    assert again.current

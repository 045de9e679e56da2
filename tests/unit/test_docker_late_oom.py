"""A SIGKILLed container's OOM flag may come after its exit: the exit reader waits for it."""

from __future__ import annotations

from typing import Any

import pytest

from titus_flow.runtime import docker_exits
from titus_flow.runtime.docker_exits import ContainerExits

ENDED = {
    "Status": "exited",
    "Running": False,
    "ExitCode": 137,
    "StartedAt": "2026-12-02T12:00:00.000000000Z",
    "FinishedAt": "2026-12-02T12:00:01.000000000Z",
}


class Engine:
    """An engine whose container reads OOM-killed from the ``oom_from``-th inspect on."""

    def __init__(self, oom_from: int | None) -> None:
        self.oom_from = oom_from
        self.inspects = 0

    def wait(self, name: str, timeout: float, condition: str) -> None:
        pass

    def inspect_container(self, name: str) -> dict[str, Any]:
        self.inspects += 1
        oom = self.oom_from is not None and self.inspects >= self.oom_from
        return {"State": {**ENDED, "OOMKilled": oom}}


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The reader's sleeps, taken at once (the clock moves by them)."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(docker_exits.time, "sleep", sleep)
    monkeypatch.setattr(docker_exits.time, "monotonic", lambda: sum(sleeps))
    return sleeps


def read(engine: Engine, stopped: bool = False) -> Any:
    exits = ContainerExits(lambda: engine, None)
    if stopped:
        exits.stopping("c")
    return exits.wait("c", 10)


def test_an_oom_flag_a_second_late_still_counts(slept: list[float]) -> None:
    exit_ = read(Engine(oom_from=5))  # the exit's inspect, then 4 looks 0.25 s apart
    assert exit_.exit_code == 137 and exit_.oom_killed
    assert sum(slept) == pytest.approx(1.0)


def test_a_plain_sigkill_is_read_after_three_seconds_of_looking(slept: list[float]) -> None:
    exit_ = read(Engine(oom_from=None))
    assert exit_.exit_code == 137 and not exit_.oom_killed
    assert sum(slept) == pytest.approx(3.0)


def test_a_container_the_agent_stopped_gets_one_short_look(slept: list[float]) -> None:
    exit_ = read(Engine(oom_from=None), stopped=True)
    assert not exit_.oom_killed and sum(slept) == pytest.approx(0.5)

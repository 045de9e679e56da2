"""The job commands' output, with a fake client behind the CLI (issue 18, items 6 and 8):
nothing here reaches a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from titus_flow.cli import _register_commands, job_commands
from titus_flow.cli.app import cli
from titus_flow.client import TitusClient
from titus_flow.lifecycle import JobState, TaskState
from titus_flow.views import JobProgress, JobView, ServiceStatus, TaskView

LONG_REASON = (
    "no agent can hold cpu=64 memory=512Gi: the largest has cpu=2 memory=2Gi"
    " (3 agents; 0 fleets could launch one)"
)


class FakeClient:
    """Stands in for :class:`TitusClient`: scripted answers, every call recorded."""

    progress_script: list[JobProgress] = []
    final: JobView | None = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._progress = list(self.progress_script)
        self._ended = asyncio.Event()

    @classmethod
    async def connect(cls, settings: object = None) -> FakeClient:
        return cls()

    async def submit(self, job: object, job_id: str | None = None) -> str:
        return "stuck-1a2b3c4d"

    async def progress(self, job_id: str) -> JobProgress:
        answer = self._progress.pop(0) if len(self._progress) > 1 else self._progress[0]
        if len(self._progress) == 1:
            self._ended.set()  # the last answer: the job ends after it
        return answer

    async def wait(self, job_id: str) -> JobView:
        # Ends once the CLI has seen every progress answer (bounded: a CLI that never
        # asks fails the test instead of hanging it).
        await asyncio.wait_for(self._ended.wait(), 10)
        assert self.final is not None
        return self.final


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", FakeClient)
    monkeypatch.setattr(job_commands, "PROGRESS_POLL_SECONDS", 0.001, raising=False)
    return FakeClient


def invoke(tmp_path: Path, *args: str) -> Result:
    """Run the CLI in-process, off a terminal (CliRunner's streams are not TTYs)."""
    return CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "home"), "--address", "127.0.0.1:9", *args],
        env={"TITUS_FLOW_CONFIG": str(tmp_path / "no-config.yaml")},
    )


def job_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


# -- item 6: quiet off a terminal --------------------------------------------------------


def test_run_off_a_terminal_prints_a_line_per_change_unwrapped(
    fake: type[FakeClient], tmp_path: Path
) -> None:
    waiting = JobProgress(
        id="stuck-1a2b3c4d",
        state=JobState.ACCEPTED,
        counts={"Accepted": 1},
        pending_reasons=[LONG_REASON],
    )
    started = JobProgress(id="stuck-1a2b3c4d", state=JobState.RUNNING, counts={"Started": 1})
    fake.progress_script = [waiting, waiting, waiting, started, started]
    fake.final = JobView(id="stuck-1a2b3c4d", name="stuck", type="batch", state=JobState.SUCCEEDED)
    path = job_file(tmp_path, "name: stuck\ncontainer: {image: busybox}\n")

    result = invoke(tmp_path, "run", str(path))

    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [
        "submitted stuck-1a2b3c4d; waiting for it to finish",
        f"stuck-1a2b3c4d: Accepted; tasks: 1 Accepted; waiting: {LONG_REASON}",
        "stuck-1a2b3c4d: Running; tasks: 1 Started",
        "stuck-1a2b3c4d: Succeeded",
    ]


class FakeServiceClient(TitusClient):
    """The real service wait loop over scripted views."""

    views: list[JobView] = []

    def __init__(self) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self._views = list(self.views)

    @classmethod
    async def connect(cls, settings: object = None) -> FakeServiceClient:  # type: ignore[override]
        return cls()

    async def submit(self, job: object, job_id: str | None = None) -> str:
        return "web-1a2b3c4d"

    async def describe(self, job_id: str) -> JobView:
        return self._views.pop(0) if len(self._views) > 1 else self._views[0]


def service_view(state: JobState, message: str, healthy: bool, pending: str | None) -> JobView:
    task = TaskView(
        id="web-1a2b3c4d-0",
        index=0,
        state=TaskState.STARTED if healthy else TaskState.ACCEPTED,
        healthy=healthy,
        revision=1,
        pending_reason=pending,
    )
    return JobView(
        id="web-1a2b3c4d",
        name="web",
        type="service",
        state=state,
        message=message,
        tasks=[task],
        service=ServiceStatus(desired=1, min=0, max=2, revision=1, healthy=int(healthy)),
    )


def test_service_run_off_a_terminal_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", FakeServiceClient)
    waiting = service_view(JobState.ACCEPTED, "", False, LONG_REASON)
    FakeServiceClient.views = [
        waiting,
        waiting,
        service_view(JobState.RUNNING, "", True, None),
    ]
    path = job_file(
        tmp_path,
        "kind: service\nname: web\ncontainer: {image: busybox}\ncapacity: {desired: 1, max: 2}\n",
    )

    result = invoke(tmp_path, "run", str(path), "--timeout", "60")

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "submitted web-1a2b3c4d; waiting up to 60s until its tasks are healthy",
        f"web-1a2b3c4d: Accepted; 0/1 healthy; waiting: {LONG_REASON}",
        "web-1a2b3c4d: Running; 1/1 healthy",
        "web-1a2b3c4d: Running, 1/1 healthy, revision 1",
    ]

"""The job commands' output, with a fake client behind the CLI (issue 18, items 6 and 8):
nothing here reaches a cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from click.testing import CliRunner, Result
from temporalio.client import Client, WorkflowExecution
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from titus_flow import visibility
from titus_flow.activities.agent_outcome import exit_message
from titus_flow.cli import _register_commands, job_commands, load_balancer_commands, run_command
from titus_flow.cli.app import cli
from titus_flow.client import TitusClient
from titus_flow.config import Settings
from titus_flow.contracts import SuperviseInput
from titus_flow.contracts.load_balancers import (
    LoadBalancersView,
    TargetGroupView,
    TargetState,
    TargetView,
)
from titus_flow.lifecycle import JobState, TaskState
from titus_flow.runtime.base import Exit
from titus_flow.views import JobProgress, JobView, ServiceStatus, TaskQuery, TaskView
from titus_flow.workflows.batch import BatchJobWorkflow

LONG_REASON = (
    "no agent can hold cpu=64 memory=512Gi: the largest has cpu=2 memory=2Gi"
    " (3 agents; 0 fleets could launch one)"
)


class FakeClient:
    """Stands in for :class:`TitusClient`: scripted answers, every call recorded."""

    progress_script: list[JobProgress] = []
    final: JobView | None = None
    targets = LoadBalancersView(groups=[])

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._progress = list(self.progress_script)
        self._ended = asyncio.Event()

    @classmethod
    async def connect(cls, settings: object = None) -> FakeClient:
        return cls()

    async def submit(self, job: object, job_id: str | None = None) -> str:
        return "stuck-1a2b3c4d"

    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        return self.targets

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
    monkeypatch.setattr(run_command, "TitusClient", FakeClient)
    monkeypatch.setattr(run_command, "PROGRESS_POLL_SECONDS", 0.001, raising=False)
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

    async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
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
    monkeypatch.setattr(run_command, "TitusClient", FakeServiceClient)
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


# -- item 8: the smaller mismatches -------------------------------------------------------


class ListingClient(FakeClient):
    """Records what `jobs list` asks for."""

    asked: list[tuple[str | None, str | None, int]] = []

    async def list_jobs(
        self, state: str | None = None, job_type: str | None = None, limit: int = 100
    ) -> list[dict[str, str | None]]:
        self.asked.append((state, job_type, limit))
        return []


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> type[ListingClient]:
    """The commands with a client that records what they list (nothing yet)."""
    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", ListingClient)
    ListingClient.asked = []
    return ListingClient


def test_jobs_list_state_is_one_of_the_job_states_in_any_case(
    listing: type[ListingClient], tmp_path: Path
) -> None:
    bogus = invoke(tmp_path, "jobs", "list", "--state", "Bogus")
    assert bogus.exit_code == 2
    assert "invalid job state 'Bogus': use one of" in bogus.stderr
    assert all(state.value in bogus.stderr for state in JobState)
    assert ListingClient.asked == []  # nothing asked

    lower = invoke(tmp_path, "jobs", "list", "--state", "failed")
    assert lower.exit_code == 0, lower.output
    assert ListingClient.asked == [("Failed", None, 100)]


def test_jobs_alone_lists_with_the_defaults(listing: type[ListingClient], tmp_path: Path) -> None:
    listed = invoke(tmp_path, "jobs")
    assert listed.exit_code == 0, listed.output
    assert ListingClient.asked == [(None, None, 100)] and "Usage:" not in listed.output


def execution(job_id: str, started: int, closed: int | None, owner: str) -> WorkflowExecution:
    """A visibility entry of a job started (and closed) so many minutes past noon."""
    noon = datetime(2030, 1, 1, 12, tzinfo=UTC)
    attrs = TypedSearchAttributes(
        [
            SearchAttributePair(visibility.JOB_NAME, job_id.split("-")[0]),
            SearchAttributePair(visibility.JOB_TYPE, "batch"),
            SearchAttributePair(visibility.JOB_STATE, "Running" if closed is None else "Failed"),
            SearchAttributePair(visibility.OWNER, owner),
        ]
    )
    fake = SimpleNamespace(
        id=job_id,
        start_time=noon + timedelta(minutes=started),
        close_time=None if closed is None else noon + timedelta(minutes=closed),
        typed_search_attributes=attrs,
    )
    return cast(WorkflowExecution, fake)


class FakeVisibility:
    """Lists like SQL visibility: running ones newest started first, closed ones by close time.

    ``executions`` are given in that order (running first); a query on
    ``ExecutionStatus`` selects the running or the ended ones.
    """

    def __init__(self, executions: list[WorkflowExecution]) -> None:
        self.executions = executions
        self.read = 0
        self.queries: list[str] = []

    def list_workflows(
        self, query: str, limit: int | None = None
    ) -> AsyncIterator[WorkflowExecution]:
        self.queries.append(query)

        selected = self.executions
        if "ExecutionStatus = 'Running'" in query:
            selected = [wf for wf in selected if wf.close_time is None]
        elif "ExecutionStatus != 'Running'" in query:
            selected = [wf for wf in selected if wf.close_time is not None]

        async def listing() -> AsyncIterator[WorkflowExecution]:
            for wf in selected[:limit]:
                self.read += 1
                yield wf

        return listing()


async def test_jobs_are_listed_newest_first_and_no_owner_is_null() -> None:
    temporal = FakeVisibility(
        [
            execution("new-running-2", started=50, closed=None, owner="-"),
            execution("old-running-1", started=0, closed=None, owner="ops@example.com"),
            execution("mid-3", started=30, closed=45, owner="-"),
            execution("newer-4", started=40, closed=41, owner="-"),
            execution("oldish-5", started=10, closed=20, owner="-"),
            execution("oldest-6", started=1, closed=2, owner="-"),  # never read: see below
        ]
    )
    client = TitusClient(cast(Client, temporal), cast(Settings, None))

    jobs = await client.list_jobs(state="failed", limit=3)

    assert [j["id"] for j in jobs] == ["new-running-2", "newer-4", "mid-3"]
    assert [j["owner"] for j in jobs] == [None, None, None]
    assert "TitusJobState = 'Failed'" in temporal.queries[0]
    # After oldish-5 (closed at 20) three kept jobs started later: nothing older can follow.
    assert temporal.read == 5
    every = FakeVisibility(temporal.executions)
    everything = await TitusClient(cast(Client, every), cast(Settings, None)).list_jobs()
    assert [(j["id"], j["owner"]) for j in everything] == [
        ("new-running-2", None),
        ("newer-4", None),
        ("mid-3", None),
        ("oldish-5", None),
        ("oldest-6", None),
        ("old-running-1", "ops@example.com"),
    ]


def test_describe_of_a_service_shows_revision_health_and_a_held_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    held = "kill of web-1a2b3c4d-0 waits for the disruption budget"
    view = service_view(JobState.RUNNING, "", True, None)
    assert view.service is not None
    view.service.waiting = [held]

    class DescribingClient(FakeClient):
        async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
            return view

    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", DescribingClient)

    result = invoke(tmp_path, "job", "describe", "web-1a2b3c4d")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "revision 1: 1/1 healthy (min 0, max 2)" in lines
    assert f"waiting: {held}" in lines
    header = next(line for line in lines if "index" in line)
    assert "revision" in header and "healthy" in header
    row = next(line for line in lines if line.lstrip("│ ").startswith("0 "))
    assert "yes" in row and held in row


def test_describe_of_a_service_shows_each_tasks_registration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    view = service_view(JobState.RUNNING, "", True, None)
    target = TargetView(
        task_id="web-1a2b3c4d-0", target="127.0.0.1", port=31000, state=TargetState.DRAINING
    )
    group = TargetGroupView(target_group="local:web", drain=timedelta(seconds=2), targets=[target])

    class DescribingClient(FakeClient):
        targets = LoadBalancersView(groups=[group])

        async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
            return view

    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", DescribingClient)
    monkeypatch.setattr(load_balancer_commands, "TitusClient", DescribingClient)

    result = invoke(tmp_path, "job", "describe", "web-1a2b3c4d")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "load balancers" in next(line for line in lines if "index" in line)
    assert "draining" in next(line for line in lines if line.lstrip("│ ").startswith("0 "))

    shown = json.loads(invoke(tmp_path, "job", "describe", "web-1a2b3c4d", "-o", "json").stdout)
    assert shown["load_balancers"]["groups"][0]["targets"][0]["state"] == "draining"

    listed = invoke(tmp_path, "job", "load-balancers", "web-1a2b3c4d", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert LoadBalancersView.model_validate_json(listed.stdout).groups == [group]


def test_status_before_up_lists_every_component_of_the_stack(tmp_path: Path) -> None:
    _register_commands()
    result = invoke(tmp_path, "status", "-o", "json")
    assert result.exit_code == 1  # nothing runs
    processes = json.loads(result.stdout)["processes"]
    assert [p["name"] for p in processes] == ["temporal", "agent", "worker"]
    assert not any(p["running"] for p in processes)


def test_job_help_names_what_the_group_does() -> None:
    _register_commands()
    result = CliRunner().invoke(cli, ["job", "--help"])
    summary = result.output.split("Options:")[0]
    for action in ("describe", "kill", "scale", "update", "promote", "roll back"):
        assert action in summary, summary


async def test_killing_a_batch_task_says_killed() -> None:
    class BatchJobClient(TitusClient):
        async def _root_view(self, job_id: str) -> JobView:
            return JobView(id=job_id, name="b", type="batch", state=JobState.RUNNING)

        async def _update(self, workflow_id: str, update: Any, *args: Any) -> Any:
            assert (workflow_id, update, args) == (
                "b-1a2b3c4d",
                BatchJobWorkflow.kill_task,
                ("b-1a2b3c4d-3",),
            )
            return args[0]  # the batch workflow answers with the task's id

    client = BatchJobClient(cast(Client, None), cast(Settings, None))
    assert await client.kill_task("b-1a2b3c4d-3") == "killed"


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        (0, "a child process (not the main one, which exited 0) was killed for exceeding"),
        (137, "killed for exceeding its memory limit (the main process exited with code 137)"),
    ],
)
def test_an_oom_kill_says_which_process_it_hit(exit_code: int, expected: str) -> None:
    request = SuperviseInput(task_id="t-0", attempt=1, started_at=datetime.now(UTC))
    message = exit_message(None, Exit(exit_code=exit_code, oom_killed=True), request)
    assert expected in message


async def test_many_running_jobs_are_not_all_read() -> None:
    running = [execution(f"run-{i}", started=1000 - i, closed=None, owner="-") for i in range(50)]
    ended = [execution("ended-1", started=995, closed=999, owner="-")]
    temporal = FakeVisibility([*running, *ended])  # running: newest started first
    client = TitusClient(cast(Client, temporal), cast(Settings, None))

    jobs = await client.list_jobs(limit=3)

    assert [j["id"] for j in jobs] == ["run-0", "run-1", "run-2"]
    assert temporal.read <= 3 + len(ended)  # not the 50 running ones

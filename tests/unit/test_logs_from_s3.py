"""Where `task logs` reads an attempt from (issue 15, item 3): its agent, or S3 when the
agent is silent, fails the read or keeps nothing of it; without a server, the agent and
S3 faked (the real ones: tests/integration/test_task_logs_s3.py)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner
from test_log_uploads import FakeStore

from titus_flow.cli import _register_commands, job_commands
from titus_flow.cli.app import cli
from titus_flow.client.logs import AgentLogsUnavailableError, LogsClient, _LogSource
from titus_flow.config import Settings
from titus_flow.contracts import LogsChunk
from titus_flow.errors import ClusterError
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.log_store import LogLocation
from titus_flow.views import AttemptView, JobView, LogRef, TaskView

TASK = "job-1a2b-0"
AT = datetime(2026, 1, 1, tzinfo=UTC)
RECORDED = LogLocation("recorded", "p").ref(TASK, 1)
DERIVED = LogLocation("mine", "q").ref(TASK, 1)


class FakeLogs(LogsClient):
    """A logs client whose job, agent and S3 are in memory."""

    def __init__(self, settings: Settings, task: TaskView, store: FakeStore) -> None:
        super().__init__(cast(Any, None), settings)
        self.view = task
        self.polls = True  # the agent polled its queue lately
        self.agent_has: bytes | None = None  # the agent's kept log; None: it does not answer
        self.fetches = 0
        self.store = store

    async def task(self, task_id: str) -> TaskView:
        return self.view

    async def _agent_polls(self, agent: str) -> bool:
        return self.polls

    async def _fetch_logs(self, source: _LogSource, offset: int, wait: float = 0.0) -> LogsChunk:
        self.fetches += 1
        if self.agent_has is None:
            raise AgentLogsUnavailableError(f"agent {source.agent} did not answer")
        data = self.agent_has[offset:]
        # An agent that pruned the attempt answers nothing, not complete.
        return LogsChunk(
            data=data.decode(), next_offset=offset + len(data), complete=bool(self.agent_has)
        )


def ended_task(log: LogRef | None, attempts: int = 1) -> TaskView:
    return TaskView(
        id=TASK,
        index=0,
        state=TaskState.FINISHED,
        reason=FinishReason.NORMAL,
        attempt=attempts,
        agent="a1",
        attempts=[
            AttemptView(
                attempt=attempts,
                agent="a1",
                state=TaskState.FINISHED,
                reason=FinishReason.NORMAL,
                finished_at=AT,
                log=log,
            )
        ],
    )


def client(
    monkeypatch: pytest.MonkeyPatch,
    log: LogRef | None = RECORDED,
    *,
    bucket: str | None = None,
    attempts: int = 1,
) -> FakeLogs:
    store = FakeStore()
    for ref in (RECORDED, DERIVED):  # both hold the log; which one is read is the point
        bucket_name, _, key = ref.url.removeprefix("s3://").partition("/")
        store.put(bucket_name, key, io.BytesIO(gzip.compress(f"from {bucket_name}\n".encode())))
    monkeypatch.setattr("titus_flow.client.logs.S3Store", lambda: store)
    settings = Settings(log_bucket=bucket, log_prefix="q")
    return FakeLogs(settings, ended_task(log, attempts), store)


async def read(logs: FakeLogs, attempt: int | None = None) -> str:
    return "".join([chunk.data async for chunk in logs.logs(TASK, attempt)])


async def test_a_live_agent_that_keeps_the_log_is_read_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch)
    logs.agent_has = b"from the agent\n"
    assert await read(logs) == "from the agent\n"


async def test_a_silent_agent_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = client(monkeypatch)
    logs.polls = False
    assert await read(logs) == "from recorded\n"
    assert logs.fetches == 0


async def test_an_agent_that_does_not_answer_gives_way_to_s3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch)
    assert await read(logs) == "from recorded\n"


async def test_an_agent_that_pruned_the_log_gives_way_to_s3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch)
    logs.agent_has = b""
    assert await read(logs) == "from recorded\n"


async def test_neither_having_a_recorded_log_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = client(monkeypatch)
    logs.agent_has = b""
    logs.store.objects.clear()
    with pytest.raises(ClusterError, match=f"{RECORDED.url} does not exist"):
        await read(logs)


async def test_without_a_reference_the_readers_own_bucket_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch, log=None, bucket="mine")
    assert await read(logs) == "from mine\n"
    # Not there either: one error naming both.
    logs.store.objects.clear()
    with pytest.raises(ClusterError, match="did not answer, and s3://mine/"):
        await read(logs)


async def test_without_any_bucket_the_agents_failure_stands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch, log=None)
    with pytest.raises(AgentLogsUnavailableError):  # a UserError: exit 2, as before
        await read(logs)


async def test_an_attempt_the_row_no_longer_lists_is_read_from_the_readers_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = client(monkeypatch, bucket="mine", attempts=7)  # the row lists attempt 7 only
    assert await read(logs, attempt=1) == "from mine\n"
    assert logs.fetches == 0


def test_job_describe_shows_where_the_latest_attempt_s_log_went(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pending = LogRef(url=DERIVED.url, uploaded=False)
    view = JobView(
        id="job-1a2b",
        name="job",
        type="batch",
        state=JobState.SUCCEEDED,
        tasks=[ended_task(RECORDED), ended_task(pending).model_copy(update={"index": 1})],
    )

    class Describing:
        @classmethod
        async def connect(cls, settings: Settings) -> Describing:
            return cls()

        async def describe(self, job_id: str, query: object = None) -> JobView:
            return view

    _register_commands()
    monkeypatch.setattr(job_commands, "TitusClient", Describing)
    runner = CliRunner()
    home = ["--home", str(tmp_path), "--address", "127.0.0.1:9"]
    env = {"TITUS_FLOW_CONFIG": str(tmp_path / "none.yaml")}
    table = runner.invoke(cli, [*home, "job", "describe", "job-1a2b"], env=env)
    assert table.exit_code == 0, table.output
    assert "log (latest attempt)" in table.stdout
    assert RECORDED.url in table.stdout and f"{DERIVED.url} (pending)" in table.stdout
    as_json = runner.invoke(cli, [*home, "job", "describe", "job-1a2b", "-o", "json"], env=env)
    attempts = [task["attempts"][0]["log"] for task in json.loads(as_json.stdout)["tasks"]]
    assert attempts == [RECORDED.model_dump(), pending.model_dump()]

"""How the CLI reports Temporal's errors, and what `run` undoes when a submit fails partway
(issue 13, finding 6). In-process, with fakes: nothing here reaches a cluster (the walk
of every command against a dead or killed server is tests/integration/test_cli_server_loss.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.cli import _register_commands, run_command
from titus_flow.cli.app import cli, explain_temporal_error
from titus_flow.client import JobNotFoundError, TitusClient
from titus_flow.config import Settings
from titus_flow.errors import (
    ClusterError,
    ServerUnreachableError,
    UserError,
    connection_reason,
)
from titus_flow.views import JobView
from titus_flow.workflows.batch_partitions import PARTITION_SIZE

LOCAL = Settings(address="127.0.0.1:7233")
REMOTE = Settings(address="temporal.example.com:7233")
ADVICE = (
    "is the server running? start it with `titus-flow up`, or set --address / TITUS_FLOW_ADDRESS"
)


def rpc(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


# -- one line per Temporal error ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (
            rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error"),
            ServerUnreachableError,
            "cannot reach Temporal at 127.0.0.1:7233 (connection lost, then cannot connect): "
            + ADVICE,
        ),
        # A long poll cut by the server's death is not retried and says UNKNOWN.
        (
            rpc(RPCStatusCode.UNKNOWN, "transport error"),
            ServerUnreachableError,
            "cannot reach Temporal at 127.0.0.1:7233 (connection lost): " + ADVICE,
        ),
        (
            rpc(RPCStatusCode.CANCELLED, "Timeout expired"),
            ClusterError,
            "Temporal at 127.0.0.1:7233 did not answer in time (Timeout expired); a query"
            " also needs a running control worker: see `titus-flow status`",
        ),
        (
            rpc(RPCStatusCode.INVALID_ARGUMENT, "Blob data size exceeds limit."),
            ClusterError,
            "Temporal at 127.0.0.1:7233 refused the call: INVALID_ARGUMENT:"
            " Blob data size exceeds limit.",
        ),
        (
            WorkflowFailureError(cause=ApplicationError("boom", type="Oops")),
            ClusterError,
            "the workflow failed: Oops: boom",
        ),
        (
            WorkflowAlreadyStartedError("nightly-1", "Pipeline"),
            UserError,
            "workflow id 'nightly-1' is already in use; choose another id",
        ),
    ],
)
def test_temporal_errors_read_as_one_line(
    error: TemporalError, kind: type[Exception], says: str
) -> None:
    explained = explain_temporal_error(error, LOCAL)
    assert type(explained) is kind
    assert str(explained) == says
    assert "\n" not in str(explained)


def test_a_remote_server_gets_advice_that_fits_it() -> None:
    explained = explain_temporal_error(rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error"), REMOTE)
    assert "titus-flow up" not in str(explained)
    assert "check --address / TITUS_FLOW_ADDRESS and the TLS and API key settings" in str(explained)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Failed client connect: Server connection error: tonic::transport::Error(Transport,"
            ' ConnectError(ConnectError("tcp connect error", 127.0.0.1:9, Os { code: 111, kind:'
            ' ConnectionRefused, message: "Connection refused" })))',
            "connection refused",
        ),
        (
            "Failed client connect: `get_system_info` call error after connection: Status {"
            ' code: Cancelled, message: "Timeout expired", source: Some(tonic::transport::Error('
            "Transport, TimeoutExpired(()))) }",
            "no answer in time",
        ),
        ("dns error: failed to lookup address information", "unknown host"),
        ("invalid peer certificate: UnknownIssuer", "TLS handshake failed"),
        ("something else entirely\nsecond line", "something else entirely"),
    ],
)
def test_connection_failures_are_told_in_a_few_words(text: str, reason: str) -> None:
    assert connection_reason(text) == reason


# -- the client: what is "no such job", and what is not ------------------------------------


class PartitionedJob(TitusClient):
    """A batch job of two partitions (tasks 0 to 2 * PARTITION_SIZE - 1)."""

    def __init__(self) -> None:
        super().__init__(None, LOCAL)  # type: ignore[arg-type]
        self.updated: list[tuple[str, Any]] = []

    async def _root_view(self, job_id: str) -> JobView:
        return JobView(
            id=job_id, name="big", type="batch", partitions=[f"{job_id}-p0", f"{job_id}-p1"]
        )

    async def _update(self, workflow_id: str, update: Any, *args: Any) -> Any:
        self.updated.append((workflow_id, args))
        return args[0]


async def test_task_kill_past_the_last_partition_is_no_such_task() -> None:
    client = PartitionedJob()
    last = 2 * PARTITION_SIZE - 1
    assert await client.kill_task(f"big-1a2b3c4d-{last}") == "killed"
    assert client.updated == [("big-1a2b3c4d-p1", (f"big-1a2b3c4d-{last}",))]
    with pytest.raises(JobNotFoundError, match=r"job big-1a2b3c4d has no task 'big-1a2b3c4d-1000'"):
        await client.kill_task(f"big-1a2b3c4d-{2 * PARTITION_SIZE}")


class Handle:
    """A workflow handle whose result or query fails as scripted."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def result(self) -> JobView:
        raise self.error

    async def query(self, *args: Any) -> JobView:
        raise self.error


class Scripted(TitusClient):
    def __init__(self, error: BaseException) -> None:
        super().__init__(None, LOCAL)  # type: ignore[arg-type]
        self.error = error

    def _handle(self, job_id: str) -> Any:
        return Handle(self.error)


async def test_a_job_workflow_that_failed_without_a_view_is_a_cluster_error() -> None:
    terminated = WorkflowFailureError(cause=ApplicationError("terminated by an operator"))
    with pytest.raises(ClusterError, match="job x-1 workflow failed: terminated by an operator"):
        await Scripted(terminated).wait("x-1")


async def test_only_not_found_means_no_such_job() -> None:
    missing = rpc(RPCStatusCode.NOT_FOUND, "workflow not found for ID: x-1")
    with pytest.raises(JobNotFoundError, match="no job 'x-1': workflow not found"):
        await Scripted(missing).kill_task("x-1-0")
    # A lost server says nothing about the job: it stays an RPCError for the CLI to explain
    # (it used to read "no job", exit 2).
    lost = rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error")
    with pytest.raises(RPCError) as raised:
        await Scripted(lost).kill_task("x-1-0")
    assert raised.value is lost


# -- run: all jobs of a file, or none -----------------------------------------------------


class FlakyServer:
    """Accepts the first submit, then the server is gone; kills work as scripted."""

    kills_work = True

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.killed: list[str] = []

    @classmethod
    async def connect(cls, settings: object = None) -> FlakyServer:
        cls.last = cls()
        return cls.last

    async def submit(self, job: Any, job_id: str | None = None) -> str:
        if self.submitted:
            raise rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error")
        self.submitted.append(f"{job.name}-1a2b3c4d")
        return self.submitted[-1]

    async def kill(self, job_id: str) -> None:
        if not self.kills_work:
            raise rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error")
        self.killed.append(job_id)


def run_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kills_work: bool) -> Result:
    _register_commands()
    monkeypatch.setattr(run_command, "TitusClient", FlakyServer)
    monkeypatch.setattr(FlakyServer, "kills_work", kills_work)
    jobs = [
        {"name": name, "container": {"image": "busybox", "command": "true"}}
        for name in ("first", "second", "third")
    ]
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({"jobs": jobs}))
    return CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "home"), "--address", "127.0.0.1:9", "run", str(path)],
        env={"TITUS_FLOW_CONFIG": str(tmp_path / "no-config.yaml")},
    )


def test_a_submit_failing_partway_kills_the_jobs_submitted_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_file(tmp_path, monkeypatch, kills_work=True)
    assert isinstance(result.exception, ServerUnreachableError)
    assert FlakyServer.last.killed == ["first-1a2b3c4d"]
    assert result.exception.__notes__ == [
        "1 of the 3 jobs were submitted before the failure: killed first-1a2b3c4d"
    ]


def test_jobs_that_could_not_be_killed_are_named_with_the_command_to_kill_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_file(tmp_path, monkeypatch, kills_work=False)
    assert isinstance(result.exception, ServerUnreachableError)
    assert result.exception.__notes__ == [
        "1 of the 3 jobs were submitted before the failure: could not kill first-1a2b3c4d:"
        " run `titus-flow job kill first-1a2b3c4d`"
    ]

"""Task logs in S3 (issue 15, item 3), without S3: the key layout, the gzip round trip,
the agent's uploader (retries with backoff, never failing the task) against a fake
store, the settings, and the log reference carried on the attempt."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

import pytest
from click.testing import CliRunner
from temporalio.common import MetricMeter

from titus_flow.activities.agent import AgentActivities
from titus_flow.activities.agent_uploads import LogUploader, uploaded_marker
from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli
from titus_flow.config import load_settings
from titus_flow.contracts import AttemptExit
from titus_flow.errors import UserError
from titus_flow.lifecycle import FinishReason, TaskState
from titus_flow.log_store import (
    LogFileGoneError,
    LogLocation,
    LogNotFoundError,
    LogStoreError,
    parse_url,
    read_log,
    upload_log,
)
from titus_flow.metrics import LOG_UPLOADS
from titus_flow.runtime.base import Driver
from titus_flow.views import AttemptView, CarriedTasks, LogRef, TaskView

TASK = "job-1a2b-3"
LOCATION = LogLocation("bucket", "team/logs/")
FAST = (0.01, 0.01, 0.01)  # retry delays of a test


class FakeStore:
    """An in-memory object store whose first ``failures`` puts fail."""

    def __init__(self, failures: int = 0, gate: threading.Event | None = None) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.failures = failures
        self.puts = 0
        self.gate = gate  # when given, a put waits for it (a slow store)

    def put(self, bucket: str, key: str, body: IO[bytes]) -> None:
        self.puts += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.puts <= self.failures:
            raise LogStoreError("s3 is down")
        self.objects[bucket, key] = body.read()

    def get(self, bucket: str, key: str) -> bytes:
        if (bucket, key) not in self.objects:
            raise LogNotFoundError(f"s3://{bucket}/{key} does not exist")
        return self.objects[bucket, key]


def kept_log(root: Path, data: bytes, task_id: str = TASK, attempt: int = 1) -> Path:
    """An ended attempt's kept log and exit, as the agent leaves them."""
    log = root / task_id / f"attempt-{attempt}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(data)
    log.with_name(f"attempt-{attempt}.exit.json").write_text("{}")
    return log


# -- where a log goes -------------------------------------------------------------------


def test_the_key_is_prefix_job_task_attempt() -> None:
    assert LOCATION.key(TASK, 2) == "team/logs/job-1a2b/job-1a2b-3/2/log.gz"
    assert LogLocation("b", "").key(TASK, 1) == "job-1a2b/job-1a2b-3/1/log.gz"
    assert LOCATION.ref(TASK, 2) == LogRef(url="s3://bucket/team/logs/job-1a2b/job-1a2b-3/2/log.gz")
    assert parse_url(LOCATION.ref(TASK, 2).url) == ("bucket", LOCATION.key(TASK, 2))


@pytest.mark.parametrize("task_id", ["../../etc-0", "job", "a/b-1"])
def test_a_task_id_cannot_leave_the_prefix(task_id: str) -> None:
    with pytest.raises(UserError):
        LOCATION.key(task_id, 1)


def test_a_url_must_name_a_bucket_and_a_key() -> None:
    for url in ("bucket/key", "s3://bucket", "s3:///key"):
        with pytest.raises(ValueError):
            parse_url(url)


# -- gzip round trip -------------------------------------------------------------------


def test_a_log_is_stored_compressed_and_reads_back_whole(tmp_path: Path) -> None:
    data = "".join(f"line {n} ünïcode\n" for n in range(20_000)).encode()
    log = kept_log(tmp_path, data)
    store = FakeStore()
    upload_log(store, log, "bucket", LOCATION.key(TASK, 1))
    blob = store.objects["bucket", LOCATION.key(TASK, 1)]
    assert blob[:2] == b"\x1f\x8b" and len(blob) < len(data) // 5
    assert read_log(store, LOCATION.ref(TASK, 1).url) == data


def test_a_link_in_place_of_the_log_is_not_uploaded(tmp_path: Path) -> None:
    secret = tmp_path / "host-file"
    secret.write_text("not the task's")
    log = tmp_path / TASK / "attempt-1.log"
    log.parent.mkdir()
    log.symlink_to(secret)
    with pytest.raises(LogFileGoneError):
        upload_log(FakeStore(), log, "bucket", "k")


def test_a_missing_or_broken_object_is_an_error(tmp_path: Path) -> None:
    store = FakeStore()
    with pytest.raises(LogNotFoundError):
        read_log(store, "s3://bucket/nothing")
    store.objects["bucket", "broken"] = b"not gzip"
    with pytest.raises(LogStoreError, match="not a whole gzip file"):
        read_log(store, "s3://bucket/broken")


# -- the uploader ----------------------------------------------------------------------


class Tries:
    """A metric meter whose one counter tallies ``result`` labels."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.counts: Counter[str] = Counter()

    def create_counter(self, name: str, description: str | None = None) -> Tries:
        self.names.append(name)
        return self

    def add(self, value: int, attributes: dict[str, str]) -> None:
        self.counts[attributes["result"]] += value


async def test_a_failed_upload_is_retried_until_it_lands(tmp_path: Path) -> None:
    log = kept_log(tmp_path, b"hello\n")
    store = FakeStore(failures=2)
    tries = Tries()
    uploader = LogUploader(store, LOCATION, retry_delays=FAST, meter=cast(MetricMeter, tries))
    assert await uploader.submit(log, TASK, 1) is True
    assert store.puts == 3
    assert tries.names == [LOG_UPLOADS] and tries.counts == {"error": 2, "uploaded": 1}
    assert read_log(store, LOCATION.ref(TASK, 1).url) == b"hello\n"
    assert uploaded_marker(log).exists()
    # Done once: a later submit (or requeue) does not upload it again.
    assert await uploader.submit(log, TASK, 1) is True
    assert await uploader.requeue(tmp_path) == 0
    assert store.puts == 3


async def test_retries_are_bounded_and_the_next_requeue_tries_again(tmp_path: Path) -> None:
    log = kept_log(tmp_path, b"hello\n")
    store = FakeStore(failures=100)
    tries = Tries()
    uploader = LogUploader(store, LOCATION, retry_delays=FAST, meter=cast(MetricMeter, tries))
    assert await uploader.submit(log, TASK, 1) is False
    assert store.puts == len(FAST) + 1 and not uploaded_marker(log).exists()
    assert tries.counts == {"error": len(FAST) + 1, "gave_up": 1}
    store.failures = 0  # S3 is back
    assert await uploader.requeue(tmp_path) == 1
    assert await uploader.submit(log, TASK, 1) is True  # joins the requeued upload
    assert uploaded_marker(log).exists()
    assert read_log(store, LOCATION.ref(TASK, 1).url) == b"hello\n"


async def test_backoff_grows_between_tries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("titus_flow.activities.agent_uploads.asyncio.sleep", sleep)
    uploader = LogUploader(FakeStore(failures=100), LOCATION, retry_delays=(1.0, 2.0, 4.0))
    assert await uploader.submit(kept_log(tmp_path, b"x"), TASK, 1) is False
    assert slept == [0.0, 1.0, 2.0, 4.0]


async def test_requeue_finds_ended_attempts_not_uploaded(tmp_path: Path) -> None:
    logs = [kept_log(tmp_path, b"one", attempt=1), kept_log(tmp_path, b"two", attempt=2)]
    running = tmp_path / TASK / "attempt-3.log"  # no exit yet: still running
    running.write_bytes(b"three")
    (tmp_path / "not-a-task").mkdir()
    (tmp_path / "not-a-task" / "attempt-1.exit.json").write_text("{}")
    store = FakeStore()
    uploader = LogUploader(store, LOCATION, retry_delays=FAST)
    assert await uploader.requeue(tmp_path) == 2
    assert [await uploader.submit(log, TASK, n) for n, log in enumerate(logs, 1)] == [True] * 2
    assert sorted(store.objects) == [
        ("bucket", LOCATION.key(TASK, 1)),
        ("bucket", LOCATION.key(TASK, 2)),
    ]


async def test_closing_cancels_uploads_waiting_for_a_retry_at_once(tmp_path: Path) -> None:
    log = kept_log(tmp_path, b"x")
    store = FakeStore(failures=100)
    uploader = LogUploader(store, LOCATION, retry_delays=(60.0,))
    upload = uploader.submit(log, TASK, 1)
    while store.puts < 1:  # the first try failed: it waits a minute for the next
        await asyncio.sleep(0.01)
    await asyncio.wait_for(uploader.close(grace=30), 5)
    assert upload.cancelled() and not uploaded_marker(log).exists()


async def test_a_pruned_log_is_not_retried(tmp_path: Path) -> None:
    store = FakeStore()
    uploader = LogUploader(store, LOCATION, retry_delays=FAST)
    assert await uploader.submit(tmp_path / TASK / "attempt-1.log", TASK, 1) is False
    assert store.puts == 0


# -- supervise's side: the exit says where, and S3 never fails or holds it ---------------


class EndedDriver:
    """A driver whose attempt has ended and whose output is kept already."""

    name = "fake"

    async def save_output(self, name: str, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"done\n")

    async def remove(self, name: str, log_path: Path | None) -> None:
        pass


def agent(tmp_path: Path, store: FakeStore | None) -> AgentActivities:
    uploader = None if store is None else LogUploader(store, LOCATION, retry_delays=FAST)
    driver = cast(Driver, EndedDriver())
    return AgentActivities("a1", driver, tmp_path / "logs", uploader=uploader)


def exit_() -> AttemptExit:
    return AttemptExit(reason=FinishReason.NORMAL, exit_code=0, finished_at=datetime.now(UTC))


async def test_the_exit_names_the_uploaded_log(tmp_path: Path) -> None:
    store = FakeStore()
    result = await agent(tmp_path, store)._keep_and_remove("c", TASK, 1, exit_())
    assert result.log == LogRef(url=LOCATION.ref(TASK, 1).url, uploaded=True)
    assert read_log(store, result.log.url) == b"done\n"


async def test_an_upload_that_fails_never_fails_the_attempt(tmp_path: Path) -> None:
    store = FakeStore(failures=100)
    activities = agent(tmp_path, store)
    result = await activities._keep_and_remove("c", TASK, 1, exit_())
    assert result.reason is FinishReason.NORMAL
    assert result.log == LogRef(url=LOCATION.ref(TASK, 1).url, uploaded=False)
    assert activities.uploader is not None
    await activities.uploader.close()


async def test_a_slow_store_holds_the_exit_at_most_the_upload_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("titus_flow.activities.agent.UPLOAD_WAIT_SECONDS", 0.2)
    gate = threading.Event()
    store = FakeStore(gate=gate)
    activities = agent(tmp_path, store)
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = await activities._keep_and_remove("c", TASK, 1, exit_())
    assert loop.time() - began < 2.0
    assert result.log is not None and result.log.uploaded is False
    gate.set()  # the upload goes on, and lands
    assert activities.uploader is not None
    await activities.uploader.close()
    assert read_log(store, result.log.url) == b"done\n"


async def test_without_a_bucket_nothing_is_uploaded(tmp_path: Path) -> None:
    result = await agent(tmp_path, None)._keep_and_remove("c", TASK, 1, exit_())
    assert result.log is None


# -- settings --------------------------------------------------------------------------


def test_the_bucket_and_prefix_come_from_the_environment(tmp_path: Path) -> None:
    env = {"TITUS_FLOW_HOME": str(tmp_path)}
    assert load_settings(environ=env).log_bucket is None
    settings = load_settings(
        environ={**env, "TITUS_FLOW_LOG_BUCKET": "my-logs", "TITUS_FLOW_LOG_PREFIX": "p/q"}
    )
    assert (settings.log_bucket, settings.log_prefix) == ("my-logs", "p/q")


def test_a_bad_bucket_name_names_the_setting(tmp_path: Path) -> None:
    env = {"TITUS_FLOW_HOME": str(tmp_path), "TITUS_FLOW_LOG_BUCKET": "s3://my-logs/x"}
    with pytest.raises(UserError, match=r"setting log_bucket: .*not an S3 bucket name"):
        load_settings(environ=env)


def test_the_agent_refuses_a_bad_log_bucket_flag(tmp_path: Path) -> None:
    _register_commands()
    result = CliRunner().invoke(
        cli,
        ["agent", "--log-bucket", "My_Bucket"],
        env={"TITUS_FLOW_HOME": str(tmp_path)},
    )
    # A UserError: main() prints its one line and exits 2, before anything connects.
    assert isinstance(result.exception, UserError), result.output
    assert "--log-bucket: 'My_Bucket' is not an S3 bucket name" in str(result.exception)


# -- the reference on the attempt --------------------------------------------------------


def finished(log: LogRef | None) -> TaskView:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return TaskView(
        id=f"{TASK.rpartition('-')[0]}-0",
        index=0,
        state=TaskState.FINISHED,
        reason=FinishReason.NORMAL,
        attempt=1,
        agent="a1",
        attempts=[
            AttemptView(
                attempt=1,
                agent="a1",
                state=TaskState.FINISHED,
                reason=FinishReason.NORMAL,
                launched_at=at,
                finished_at=at,
                log=log,
            )
        ],
    )


@pytest.mark.parametrize("log", [None, LogRef(url="s3://b/k/log.gz", uploaded=True)])
def test_a_carried_attempt_keeps_its_log_reference(log: LogRef | None) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    carried = CarriedTasks.of([finished(log)], {}, base)
    attempt_row = carried.rows[0][7][0]  # type: ignore[index]
    assert len(attempt_row) == (10 if log is None else 11)  # type: ignore[arg-type]
    [(view, _)] = CarriedTasks.model_validate_json(carried.model_dump_json()).tasks("job-1a2b")
    assert view.attempts[0].log == log

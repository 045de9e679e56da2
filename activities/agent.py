"""Activities an agent runs on its own task queue: launch, supervise, stop, read logs.

All container I/O goes through one :class:`~titus_flow.runtime.base.Driver`.
Each attempt's output is kept at ``<log_dir>/<task id>/attempt-<n>.log`` and
its exit at ``attempt-<n>.exit.json``, so both outlive the container and a
retried supervise (a restarted agent) can report an exit it did not see.
While an attempt runs, ``read_logs`` reads the driver's live copy of its output
(:meth:`~titus_flow.runtime.base.Driver.live_output`) at the same byte offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import JsonValue
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from titus_flow.client import job_id_of_task
from titus_flow.contracts import (
    LOGS_MAX_WAIT_SECONDS,
    LOGS_PAGE_BYTES,
    AttemptExit,
    LaunchInput,
    LaunchResult,
    LogsChunk,
    LogsInput,
    StopInput,
    SuperviseInput,
    TaskHealth,
)
from titus_flow.errors import UserError
from titus_flow.ids import check_id
from titus_flow.lifecycle import FinishReason, reason_for_exit
from titus_flow.processes import poll_until, write_atomically
from titus_flow.reconcile import JudgedTogether
from titus_flow.runtime.base import (
    MAX_OUTPUT_BYTES,
    OUTPUT_FILE,
    Driver,
    DriverError,
    EngineUnavailableError,
    Exit,
    ImageNotFoundError,
    LaunchRefusedError,
    LaunchRequest,
    ManagedContainer,
    attempt_name,
)
from titus_flow.runtime.health import HOST, Health, HealthChange, HealthMonitor
from titus_flow.secrets import SecretUnavailableError, resolve_secrets

LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 4096
STOP_GRACE_SECONDS = 10.0
ENGINE_OUTAGE_SECONDS = 300.0  # how long supervise waits out an engine that does not answer
ENGINE_RETRY_SECONDS = 1.0
LOGS_POLL_SECONDS = 0.2  # how often a waiting read looks for new output


async def _through_outages(call: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``call``, again while the engine does not answer (up to ENGINE_OUTAGE_SECONDS)."""
    loop = asyncio.get_running_loop()
    since = loop.time()
    while True:
        try:
            await call()
            return
        except EngineUnavailableError as err:
            if loop.time() - since > ENGINE_OUTAGE_SECONDS:
                raise
            activity.logger.warning("engine unavailable, trying the %s again: %s", what, err)
        await asyncio.sleep(ENGINE_RETRY_SECONDS)


def _reason_for(exit_: Exit | None) -> FinishReason:
    """The finish reason of an attempt whose container ended on its own (or vanished)."""
    if exit_ is None:
        return reason_for_exit(137, False)
    if exit_.lost_by_engine:
        return FinishReason.SYSTEM_ERROR
    return reason_for_exit(exit_.exit_code, exit_.oom_killed)


class AgentActivities:
    """The activities of one agent, bound to its driver and log directory."""

    def __init__(
        self,
        agent_id: str,
        driver: Driver,
        log_dir: Path,
        heartbeat_every: float = 2.0,
        *,
        secrets_dir: Path | None = None,
        probe_host: str = HOST,
    ) -> None:
        """``secrets_dir``: the only place ``env_file:`` secrets are read from (None: none).

        ``probe_host``: where health checks reach tasks' published ports.
        """
        self.agent_id = agent_id
        self.driver = driver
        self.log_dir = log_dir
        self.heartbeat_every = heartbeat_every
        # When each attempt's engine stopped answering (see _wait), by container name.
        self._engine_down_since: dict[str, float] = {}
        self.secrets_dir = secrets_dir
        self.probe_host = probe_host
        # Supervise activities a job's continue-as-new forgot all ask at once.
        self._judged = JudgedTogether()

    def _task_dir(self, task_id: str) -> Path:
        # Task ids come from workflows and log readers: never let one leave log_dir.
        return self.log_dir / check_id(task_id, "task id")

    def log_path(self, task_id: str, attempt: int) -> Path:
        """Where the output of ``attempt`` of ``task_id`` is kept."""
        return self._task_dir(task_id) / f"attempt-{attempt}.log"

    def output_dir(self, task_id: str, attempt: int) -> Path:
        """Host directory the attempt may write its JSON result into."""
        return self._task_dir(task_id) / f"attempt-{attempt}.out"

    def _exit_path(self, task_id: str, attempt: int) -> Path:
        return self._task_dir(task_id) / f"attempt-{attempt}.exit.json"

    @activity.defn(name="launch")
    async def launch(self, request: LaunchInput) -> LaunchResult:
        """Start the attempt's container (adopting one a previous try made).

        Heartbeats while the driver pulls and starts. Cancelled (the task was
        killed, the job's workflow is gone, the launch timed out), it waits for
        the driver to settle, then stops and removes whatever it started before
        the cancellation completes: the job frees the attempt's capacity only
        after that. An agent shutting down leaves the container to the retried
        launch, which adopts it.
        """
        try:
            output_dir = self.output_dir(request.task_id, request.attempt)
            # Resolved here, on every try: the values live only in this process
            # and the container, never in the activity's input or result.
            secret_env = await resolve_secrets(
                request.container.secrets, secrets_dir=self.secrets_dir
            )
        except (UserError, LaunchRefusedError) as err:
            raise ApplicationError(str(err), type="LaunchRefused", non_retryable=True) from None
        except SecretUnavailableError as err:  # AWS down or throttled: a platform fault
            raise ApplicationError(str(err), type="SecretUnavailable") from None
        output_dir.mkdir(parents=True, exist_ok=True)
        output_dir.chmod(0o777)  # the container's user may be anyone
        launching = asyncio.ensure_future(
            self._launch_through_outages(
                LaunchRequest(
                    job_id=request.job_id,
                    task_id=request.task_id,
                    task_index=request.task_index,
                    attempt=request.attempt,
                    agent_id=self.agent_id,
                    container=request.container,
                    resources=request.resources,
                    ports=request.ports,
                    log_path=self.log_path(request.task_id, request.attempt),
                    output_dir=output_dir,
                    secret_env=secret_env,
                )
            )
        )
        try:
            await self._heartbeating(asyncio.shield(launching))
        except ImageNotFoundError as err:
            raise ApplicationError(str(err), type="ImageNotFound", non_retryable=True) from err
        except LaunchRefusedError as err:
            raise ApplicationError(str(err), type="LaunchRefused", non_retryable=True) from err
        except DriverError as err:  # ImagePullError among them: a platform fault, retried
            raise ApplicationError(str(err), type=type(err).__name__) from err
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            launching.cancel()  # the driver settles before this cancellation ends
            if details is not None and details.worker_shutdown:
                raise
            await asyncio.shield(self._heartbeating(self._undo_launch(launching, request)))
            raise
        return LaunchResult(agent_id=self.agent_id, started_at=datetime.now(UTC))

    async def _stop_through_outages(self, name: str) -> None:
        """Stop the container, trying again while the engine does not answer.

        A stop that failed on a restarting engine ended supervise with the
        container still running, and nothing stopped it after (chaos suite).
        """
        await _through_outages(lambda: self.driver.stop(name, STOP_GRACE_SECONDS), "stop")

    async def _launch_through_outages(self, request: LaunchRequest) -> None:
        """Launch, trying again while the engine does not answer (up to ENGINE_OUTAGE_SECONDS).

        A launch is idempotent (a second one adopts the container the first made),
        and failing would end the attempt while a container it made may still
        start: the next attempt would then run beside it.
        """
        await _through_outages(lambda: self.driver.launch(request), "launch")

    async def _undo_launch(self, launching: asyncio.Future[None], request: LaunchInput) -> None:
        """Once the cancelled ``launching`` has settled, remove what it may have started."""
        with contextlib.suppress(
            asyncio.CancelledError, DriverError, ImageNotFoundError, LaunchRefusedError
        ):
            await launching
        name = attempt_name(request.task_id, request.attempt)
        activity.logger.info("launch of %s cancelled: removing what it started", name)
        await self.stop_and_remove(name, request.task_id, request.attempt, "killed during launch")

    @activity.defn(name="supervise")
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        """Heartbeat until the container exits, overruns its limit or turns unhealthy."""
        name = attempt_name(request.task_id, request.attempt)
        log_path = self.log_path(request.task_id, request.attempt)
        saved = self._read_saved_exit(request.task_id, request.attempt)
        if saved is not None:
            # A previous try saved the exit, then the agent died before the
            # container was gone: finish the removal, report what it saw.
            await self.driver.remove(name, log_path)
            return saved
        deadline = None
        if request.runtime_limit_seconds is not None:
            deadline = request.started_at.timestamp() + request.runtime_limit_seconds
        health = _HealthWatch(self, request, name) if request.health_check else None
        reason: FinishReason | None = None
        message = ""
        try:
            while True:
                timeout = self.heartbeat_every
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - datetime.now(UTC).timestamp()))
                exit_ = await self._wait(name, timeout)
                if exit_ is not None:
                    break
                if deadline is not None and datetime.now(UTC).timestamp() >= deadline:
                    reason = FinishReason.RUNTIME_LIMIT_EXCEEDED
                elif health is not None and health.unhealthy is not None:
                    reason, message = FinishReason.FAILED, f"unhealthy: {health.unhealthy}"
                if reason is not None:
                    await self._heartbeating(self._stop_through_outages(name))
                    exit_ = await self._wait(name, STOP_GRACE_SECONDS + 5)
                    break
                activity.heartbeat()
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is not None and details.worker_shutdown:
                raise  # this agent is restarting: the retried supervise adopts the container
            if details is not None and details.not_found:
                # The server forgot this activity: its workflow ended (terminated,
                # cancelled), or its run continued as new and supervises the
                # container afresh. Only the job can tell which.
                why = await self._abandoned_because(request)
                if why is None:
                    raise
                activity.logger.warning("stopping %s: %s", name, why)
            else:
                why = "killed by request"
            # Stop the container, keep its output, and keep heartbeating
            # meanwhile so the stop is not mistaken for a lost agent.
            await asyncio.shield(
                self._heartbeating(
                    self.stop_and_remove(name, request.task_id, request.attempt, why)
                )
            )
            raise
        finally:
            if health is not None:
                await health.close()
        result = AttemptExit(
            reason=reason or _reason_for(exit_),
            exit_code=exit_.exit_code if exit_ else None,
            finished_at=(exit_.finished_at if exit_ and exit_.finished_at else datetime.now(UTC)),
            message=message or self._message(reason, exit_, request),
            became_healthy=health is not None and health.became_healthy,
        )
        return await self._keep_and_remove(name, request.task_id, request.attempt, result)

    async def _keep_and_remove(
        self, name: str, task_id: str, attempt: int, result: AttemptExit
    ) -> AttemptExit:
        """Keep the attempt's output and exit, then remove its container; return the exit.

        The exit is saved before the container is removed: an agent that dies in
        between leaves both, and the retried supervise reports the saved exit.
        """
        log_path = self.log_path(task_id, attempt)
        await self.driver.save_output(name, log_path)
        result.log_tail = _tail(log_path)
        result.output, problem = _read_output(self.output_dir(task_id, attempt))
        if problem:
            result.message = f"{result.message}; {problem}" if result.message else problem
        self._save_exit(task_id, attempt, result)
        await self.driver.remove(name, log_path)
        return result

    @activity.defn(name="stop")
    async def stop(self, request: StopInput) -> None:
        """Stop and remove the attempt's container, keeping its output; a no-op once gone."""
        name = attempt_name(request.task_id, request.attempt)
        if self._read_saved_exit(request.task_id, request.attempt) is not None:
            # It ended on its own: keep that exit, finish a removal a crash cut short.
            await self.driver.remove(name, self.log_path(request.task_id, request.attempt))
            return
        activity.logger.info("stopping %s: %s", name, request.message)
        await self._heartbeating(
            self.stop_and_remove(name, request.task_id, request.attempt, request.message)
        )

    @activity.defn(name="read_logs")
    async def read_logs(self, request: LogsInput) -> LogsChunk:
        """Read an attempt's output from ``offset``: live while it runs, the kept log after.

        With ``request.wait``, waits (bounded) for output past ``offset`` or for
        the attempt to end before answering with an empty chunk.
        """
        wait = min(request.wait, LOGS_MAX_WAIT_SECONDS)
        chunk = await self._read_chunk(request)

        async def ready() -> bool:
            nonlocal chunk
            chunk = await self._read_chunk(request)
            return bool(chunk.data) or chunk.complete

        if not (chunk.data or chunk.complete) and wait > 0:
            await poll_until(ready, wait, interval=0.05, max_interval=LOGS_POLL_SECONDS)
        return chunk

    async def _read_chunk(self, request: LogsInput) -> LogsChunk:
        """One page of the attempt's output at ``request.offset``, as it is now."""
        kept = self.log_path(request.task_id, request.attempt)
        ended = self._exit_path(request.task_id, request.attempt).exists()
        path = kept
        if not ended:  # still running (or never started): its live output, if the driver has it
            try:
                live = await self.driver.live_output(
                    attempt_name(request.task_id, request.attempt), kept
                )
            except DriverError as err:
                raise ApplicationError(str(err), type="DriverError") from err
            if live is not None and live.exists():
                path = live
        data, size = _read_page(path, request.offset, min(request.limit, LOGS_PAGE_BYTES))
        if not (ended and request.offset + len(data) >= size):
            data = _whole_characters(data)  # the rest of a character cut short comes next time
        next_offset = request.offset + len(data)
        return LogsChunk(
            data=data.decode(errors="replace"),
            next_offset=next_offset,
            complete=ended and next_offset >= size,
            more=next_offset < size,
            attempt=request.attempt,
        )

    async def _wait(self, name: str, timeout: float) -> Exit | None:
        """The container's exit, or None while it runs (or while its engine restarts).

        An engine that does not answer is waited out for up to
        :data:`ENGINE_OUTAGE_SECONDS` (the caller heartbeats meanwhile): a
        supervise that failed on it would be retried after a backoff, and a kill
        arriving in that gap would find no activity to stop the container.
        """
        try:
            exit_ = await self.driver.wait(name, timeout)
        except EngineUnavailableError as err:
            now = asyncio.get_running_loop().time()
            since = self._engine_down_since.setdefault(name, now)
            if now - since > ENGINE_OUTAGE_SECONDS:
                raise ApplicationError(str(err), type="DriverError") from err
            activity.logger.warning("engine unavailable, waiting for it: %s", err)
            await asyncio.sleep(min(max(timeout, 0.1), ENGINE_RETRY_SECONDS))
            return None
        except DriverError as err:
            raise ApplicationError(str(err), type="DriverError") from err
        self._engine_down_since.pop(name, None)
        return exit_

    async def _heartbeating(self, work: Awaitable[None]) -> None:
        """Await ``work``, heartbeating every ``heartbeat_every`` seconds until it is done."""
        task = asyncio.ensure_future(work)
        while not task.done():
            await asyncio.wait([task], timeout=self.heartbeat_every)
            activity.heartbeat()
        await task

    async def stop_and_remove(self, name: str, task_id: str, attempt: int, message: str) -> None:
        """Stop an attempt nobody should run; keep its output and its (killed) exit, remove it.

        The saved exit is what tells a log reader the attempt has ended.
        """
        await self._stop_through_outages(name)
        try:
            exit_ = await self._wait(name, 5.0)
        except ApplicationError:  # already gone: nothing to wait for
            exit_ = None
        killed = AttemptExit(
            reason=FinishReason.KILLED,
            exit_code=exit_.exit_code if exit_ else None,
            finished_at=exit_.finished_at if exit_ and exit_.finished_at else datetime.now(UTC),
            message=message,
        )
        await self._keep_and_remove(name, task_id, attempt, killed)

    async def _abandoned_because(self, request: SuperviseInput) -> str | None:
        """Why no job runs ``request``'s attempt any more; None if one still does (or may)."""
        info = activity.info()
        container = ManagedContainer(
            name=attempt_name(request.task_id, request.attempt),
            job_id=job_id_of_task(request.task_id),
            task_id=request.task_id,
            attempt=request.attempt,
            running=True,
            agent_id=self.agent_id,
        )
        try:
            verdict = await self._judged.verdict(activity.client(), container)
        except RPCError as err:
            activity.logger.warning("cannot tell if %s is wanted (%s)", info.activity_id, err)
            return None
        return None if verdict.current else verdict.reason

    @staticmethod
    def _message(reason: FinishReason | None, exit_: Exit | None, request: SuperviseInput) -> str:
        if reason is FinishReason.RUNTIME_LIMIT_EXCEEDED:
            return f"ran longer than its runtime limit of {request.runtime_limit_seconds:g}s"
        if exit_ is None:
            return "container did not report an exit"
        if exit_.lost_by_engine:
            return (
                "the container engine restarted as the container ended and kept no exit code"
                f" ({exit_.exit_code} is its placeholder): relaunched, not charged to retries"
            )
        if exit_.oom_killed and exit_.exit_code == 0:
            # The engine only says a process of the container hit the limit; the
            # main one exited 0, so it was a child of it (e.g. a command of a shell).
            return (
                "a child process (not the main one, which exited 0) was killed for exceeding"
                " the memory limit: its work may be incomplete"
            )
        if exit_.oom_killed:
            return (
                f"killed for exceeding its memory limit (the main process exited with code"
                f" {exit_.exit_code})"
            )
        return "" if exit_.exit_code == 0 else f"exited with code {exit_.exit_code}"

    def _save_exit(self, task_id: str, attempt: int, result: AttemptExit) -> None:
        """Keep the attempt's exit on disk, whole or not at all, before anything is removed."""
        write_atomically(
            self._exit_path(task_id, attempt), [result.model_dump_json().encode()], durable=True
        )

    def _read_saved_exit(self, task_id: str, attempt: int) -> AttemptExit | None:
        path = self._exit_path(task_id, attempt)
        if not path.exists():
            return None
        try:
            return AttemptExit.model_validate(json.loads(path.read_text()))
        except (ValueError, OSError):
            return None


class _HealthWatch:
    """Runs a task's health checks beside supervise and reports changes to its job.

    Probes stay on the agent; only state changes travel, as a ``task_health``
    signal, so a health check every few seconds does not grow the job's history.
    """

    def __init__(self, agent: AgentActivities, request: SuperviseInput, name: str) -> None:
        assert request.health_check is not None
        self.unhealthy: str | None = None
        self.became_healthy = False
        self._request = request
        self._client = activity.client()
        self._stop = asyncio.Event()
        monitor = HealthMonitor(
            request.health_check,
            ports=request.ports,
            container_name=name,
            driver=agent.driver,
            started_at=request.started_at,
            host=agent.probe_host,
        )
        self._task = asyncio.create_task(monitor.run(self._on_change, self._stop))

    async def _on_change(self, change: HealthChange) -> None:
        if change.state is Health.UNHEALTHY:
            self.unhealthy = change.message
        self.became_healthy = self.became_healthy or change.state is Health.HEALTHY
        if self._request.workflow_id is None:
            return
        handle = self._client.get_workflow_handle(self._request.workflow_id)
        try:
            await handle.signal(
                "task_health",
                TaskHealth(
                    task_id=self._request.task_id,
                    attempt=self._request.attempt,
                    healthy=change.state is Health.HEALTHY,
                    message=change.message,
                    at=change.at,
                ),
            )
        except RPCError as err:  # the job may have ended meanwhile; supervision goes on
            activity.logger.warning("could not report health of %s: %s", self._request.task_id, err)

    async def close(self) -> None:
        """Stop probing and wait for the probe loop to end."""
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()


def _read_output(directory: Path) -> tuple[JsonValue, str]:
    """The task's JSON result, and why it could not be used if so.

    A task that wrote none has none; a broken or oversized one is reported in the
    attempt's message rather than failing the task. The directory is the task's
    to write, and the agent may run as root: the file is opened without following
    a link (a ``result.json`` pointing at ``/etc/shadow`` is refused), only if it
    is a regular file with no other name (no hard link to a host file), and its
    size is checked on the open descriptor, so nothing can be swapped in between.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(directory, flags | os.O_DIRECTORY)
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"output ignored: cannot open its directory ({err.strerror})"
    try:
        try:
            # O_NONBLOCK: a FIFO planted as result.json must not hang the agent.
            fd = os.open(OUTPUT_FILE, flags | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None, ""
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None, f"output ignored: {OUTPUT_FILE} is a symbolic link"
            return None, f"output ignored: cannot open {OUTPUT_FILE} ({err.strerror})"
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"output ignored: {OUTPUT_FILE} is not a regular file"
        if info.st_nlink != 1:
            return None, f"output ignored: {OUTPUT_FILE} has other names (a hard link)"
        if info.st_size > MAX_OUTPUT_BYTES:
            return None, (
                f"output ignored: {info.st_size} bytes is over the {MAX_OUTPUT_BYTES} byte limit"
            )
        data = file.read(MAX_OUTPUT_BYTES + 1)
    if len(data) > MAX_OUTPUT_BYTES:  # grew after the check
        return None, f"output ignored: over the {MAX_OUTPUT_BYTES} byte limit"
    try:
        value: JsonValue = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"output ignored: {OUTPUT_FILE} is not valid JSON ({err})"
    return value, ""


@dataclass(frozen=True)
class _KeptAttempt:
    """The files an ended attempt left in the log directory."""

    ended: float  # when its exit was saved (seconds since the epoch)
    size: int  # bytes
    paths: list[Path]


def prune_kept_output(
    log_dir: Path,
    *,
    max_age: float,
    max_total_bytes: int,
    min_age: float = 60.0,
    now: float | None = None,
) -> int:
    """Delete what ended attempts left (log, exit, output) beyond an age or a total size.

    An attempt older than ``max_age`` seconds goes; then the oldest go until the
    rest take at most ``max_total_bytes``. An attempt counts as ended once its
    exit is saved; none that ended less than ``min_age`` seconds ago is deleted
    (its job may still be reading its exit). Returns how many attempts went.
    """
    now = time.time() if now is None else now
    kept = sorted(_kept_attempts(log_dir), key=lambda attempt: attempt.ended)
    total = sum(attempt.size for attempt in kept)
    removed = 0
    for attempt in kept:
        age = now - attempt.ended
        if age < min_age or (age <= max_age and total <= max_total_bytes):
            continue
        for path in attempt.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)  # fd-based: never follows a link
            else:
                path.unlink(missing_ok=True)
        total -= attempt.size
        removed += 1
        with contextlib.suppress(OSError):
            attempt.paths[0].parent.rmdir()  # the task's directory, once empty
    return removed


def _kept_attempts(log_dir: Path) -> list[_KeptAttempt]:
    found = []
    for exit_file in log_dir.glob("*/attempt-*.exit.json"):
        prefix = exit_file.name.removesuffix(".exit.json")
        try:
            paths = [
                path for path in exit_file.parent.iterdir() if path.name.startswith(prefix + ".")
            ]
            ended = exit_file.lstat().st_mtime
        except OSError:
            continue  # pruned meanwhile
        found.append(_KeptAttempt(ended, sum(map(_disk_bytes, paths)), paths))
    return found


def _disk_bytes(path: Path) -> int:
    """Bytes of ``path``, a file or a directory tree (links not followed)."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    return sum(_disk_bytes(Path(root) / name) for root, _, files in os.walk(path) for name in files)


def _read_page(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of ``path`` from ``offset``, and the file's size (0 if absent)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(offset)
            return f.read(limit), size
    except FileNotFoundError:
        return b"", 0


def _whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the character starts further back
        if byte >= 0xF0:
            length = 4
        elif byte >= 0xE0:
            length = 3
        elif byte >= 0xC0:
            length = 2
        else:
            length = 1
        return data[:-back] if length > back else data
    return data


def _tail(path: Path) -> list[str]:
    """The last lines of a log file, bounded so they fit in workflow history."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        data = f.read().decode(errors="replace")
    return data.splitlines()[-LOG_TAIL_LINES:]

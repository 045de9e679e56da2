"""Activities an agent runs on its own task queue: launch, supervise, stop, read logs.

All container I/O goes through one :class:`~titus_flow.runtime.base.Driver`.
Each attempt's output is kept at ``<log_dir>/<task id>/attempt-<n>.log`` and
its exit at ``attempt-<n>.exit.json``, so both outlive the container and a
retried supervise (a restarted agent) can report an exit it did not see.
While an attempt runs, ``read_logs`` reads the driver's live copy of its output
(:meth:`~titus_flow.runtime.base.Driver.live_output`) at the same byte offsets.

Beside it: :mod:`~titus_flow.activities.agent_files` (the files an attempt leaves
and their pruning), :mod:`~titus_flow.activities.agent_outcome` (the finish
reason and message) and :mod:`~titus_flow.activities.agent_health` (health
checks beside supervise).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from titus_flow.activities.agent_files import (
    log_chunk,
    log_tail,
    read_output,
    read_saved_exit,
    save_exit,
)
from titus_flow.activities.agent_health import HealthWatch
from titus_flow.activities.agent_outcome import exit_message, finish_reason
from titus_flow.activities.agent_uploads import UPLOAD_WAIT_SECONDS, LogUploader
from titus_flow.activities.agent_usage import CpuReporter
from titus_flow.activities.interfaces import AgentActivityInterface, implements
from titus_flow.client import job_id_of_task
from titus_flow.contracts import (
    LOGS_MAX_WAIT_SECONDS,
    AttemptExit,
    LaunchInput,
    LaunchResult,
    LogsChunk,
    LogsInput,
    StopInput,
    SuperviseInput,
)
from titus_flow.errors import UserError
from titus_flow.ids import check_id
from titus_flow.lifecycle import FinishReason
from titus_flow.processes import poll_until
from titus_flow.reconcile import JudgedTogether
from titus_flow.runtime.base import (
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
from titus_flow.runtime.health import HOST
from titus_flow.secrets import SecretUnavailableError, resolve_secrets
from titus_flow.telemetry import agent_meters

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


class AgentActivities(AgentActivityInterface):
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
        uploader: LogUploader | None = None,
    ) -> None:
        """``secrets_dir``: the only place ``env_file:`` secrets are read from (None: none).

        ``probe_host``: where health checks reach tasks' published ports.
        ``uploader``: where ended attempts' logs are uploaded (None: they stay here).
        """
        self.agent_id = agent_id
        self.driver = driver
        self.log_dir = log_dir
        self.heartbeat_every = heartbeat_every
        # When each attempt's engine stopped answering (see _wait), by container name.
        self._engine_down_since: dict[str, float] = {}
        self.secrets_dir = secrets_dir
        self.probe_host = probe_host
        self.uploader = uploader
        # Supervise activities a job's continue-as-new forgot all ask at once.
        self._judged = JudgedTogether()
        self._cpu = CpuReporter(agent_id, driver)  # for jobs that scale on cpu_utilization

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

    @implements(AgentActivityInterface.launch)
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
                    volumes=tuple(request.volumes),
                    security=request.security,
                )
            )
        )
        try:
            with agent_meters().launching(self.driver.name):
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
        activity.logger.info("launched %s", attempt_name(request.task_id, request.attempt))
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

    @implements(AgentActivityInterface.supervise)
    async def supervise(self, request: SuperviseInput) -> AttemptExit:
        """Heartbeat until the container exits, overruns its limit or turns unhealthy."""
        name = attempt_name(request.task_id, request.attempt)
        log_path = self.log_path(request.task_id, request.attempt)
        saved = read_saved_exit(self._exit_path(request.task_id, request.attempt))
        if saved is not None:
            # A previous try saved the exit, then the agent died before the
            # container was gone: finish the removal, report what it saw.
            await self.driver.remove(name, log_path)
            return saved
        deadline = None
        if request.runtime_limit_seconds is not None:
            deadline = request.started_at.timestamp() + request.runtime_limit_seconds
        health = (
            HealthWatch(request, name, driver=self.driver, host=self.probe_host)
            if request.health_check
            else None
        )
        reason: FinishReason | None = None
        message = ""
        agent_meters().attempt_running(self.driver.name, +1)
        self._cpu.watch(request, name)
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
            self._cpu.unwatch(request, name)
            agent_meters().attempt_running(self.driver.name, -1)
            if health is not None:
                await health.close()
        result = AttemptExit(
            reason=reason or finish_reason(exit_),
            exit_code=exit_.exit_code if exit_ else None,
            finished_at=(exit_.finished_at if exit_ and exit_.finished_at else datetime.now(UTC)),
            message=message or exit_message(reason, exit_, request),
            became_healthy=health is not None and health.became_healthy,
        )
        activity.logger.info("%s exited: %s (code %s)", name, result.reason, result.exit_code)
        return await self._keep_and_remove(name, request.task_id, request.attempt, result)

    async def _keep_and_remove(
        self, name: str, task_id: str, attempt: int, result: AttemptExit
    ) -> AttemptExit:
        """Keep the attempt's output and exit, then remove its container; return the exit.

        The exit is saved before the container is removed: an agent that dies in
        between leaves both, and the retried supervise reports the saved exit.
        With an uploader, the kept log then goes to S3 in the background (the
        exit says where, and whether it got there within UPLOAD_WAIT_SECONDS).
        """
        log_path = self.log_path(task_id, attempt)
        await self.driver.save_output(name, log_path)
        result.log_tail = log_tail(log_path)
        result.output, problem = read_output(self.output_dir(task_id, attempt))
        if problem:
            result.message = f"{result.message}; {problem}" if result.message else problem
        if self.uploader is not None:
            result.log = self.uploader.ref(task_id, attempt)
        save_exit(self._exit_path(task_id, attempt), result)
        await self.driver.remove(name, log_path)
        if self.uploader is not None and result.log is not None:  # the log is whole now
            upload = self.uploader.submit(log_path, task_id, attempt)
            result.log.uploaded = await self.uploader.settled(upload, UPLOAD_WAIT_SECONDS)
        return result

    @implements(AgentActivityInterface.stop)
    async def stop(self, request: StopInput) -> None:
        """Stop and remove the attempt's container, keeping its output; a no-op once gone."""
        name = attempt_name(request.task_id, request.attempt)
        if read_saved_exit(self._exit_path(request.task_id, request.attempt)) is not None:
            # It ended on its own: keep that exit, finish a removal a crash cut short.
            await self.driver.remove(name, self.log_path(request.task_id, request.attempt))
            return
        activity.logger.info("stopping %s: %s", name, request.message)
        await self._heartbeating(
            self.stop_and_remove(name, request.task_id, request.attempt, request.message)
        )

    @implements(AgentActivityInterface.read_logs)
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
        return log_chunk(path, request, ended)

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
